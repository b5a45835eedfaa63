"""Concerning answers: the escalation rules (data in ``rules/``), the advice a patient sees, cases and their
SLAs in opening hours, practitioner alerts and re-alerts, the case book for staff pages, and the clinic's
configuration file (alert routes, SLA, opening hours, reporting thresholds).

May import: ``models``, ``needlecare.core``, ``intake``, ``followup``.
"""
