"""What every stage uses: settings, the database engine and migrations, the clock, the one event-emit wrapper,
HMAC signing, survey tokens, template rendering, the clinical catalogue, row claims and SQL helpers.

May import: ``models`` and third-party libraries only. Nothing here knows a stage.
"""
