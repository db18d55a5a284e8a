"""Benchmarks: `make bench` or `python -m bench`. Results are ratios measured side by side in one run."""
