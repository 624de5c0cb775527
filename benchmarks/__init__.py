"""Reproducible benchmarks: `python -m benchmarks <scenario>`, each against its limit and a peer."""
