"""The web app: ingress API, outbox (development) and, later, survey pages and the dashboard."""
