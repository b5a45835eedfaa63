"""Prefect flows and tasks: thin orchestration over needlecare."""
