"""Benchmark harness: `make bench` (``python -m benchmarks``). Figures go to BENCHMARKS.md."""
