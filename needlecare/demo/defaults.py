"""The demo's defaults that the command line shows in its help (kept apart so that `needlecare --help` imports
nothing heavier than this)."""

DEFAULT_SEED = 7
DEMO_HISTORY_CLINIC_ID = "demo-clinic"
"""The clinic ``needlecare demo`` fills by default; never the clinic of ``make run``."""
