"""Benchmarks of the compiled kernels against their NumPy twins (and PyTorch when present).

Run ``python -m minigrad.bench [group ...] [--quick] [--json PATH]``; see ``harness.py``.
"""
