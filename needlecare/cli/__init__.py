"""The ``needlecare`` command (Typer): one module per command group (clinic, session, staff, protocols, export,
report, dashboard, demo) wired together in ``main``.

May import: everything (it is the top layer).
"""
