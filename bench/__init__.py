"""Benchmarks and long-running checks of ogcache; run them with ``python -m bench``."""
