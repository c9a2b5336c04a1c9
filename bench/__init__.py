"""Benchmarks: `pytest bench/ --benchmark-only` for the targets, `python -m bench.run` for the strategy table."""
