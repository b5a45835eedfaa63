"""needlecare core: settings, database, clinical data, ingest, delivery. No Prefect flows here."""
