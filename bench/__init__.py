"""Benchmarks that print figures (not timed tests). See bench/README.md."""

NAIVE_DEPLOYMENT = "naive-on-session-completed"
