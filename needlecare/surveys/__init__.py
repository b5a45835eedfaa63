"""surveys."""
