"""Side-by-side benchmarks: `python -m benchmarks` (or `make bench`) prints ratio tables."""
