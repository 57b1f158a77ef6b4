"""Measurements: run each script with ``python bench/NAME.py``; see docs/performance.md."""
