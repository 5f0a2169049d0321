"""Benchmark suite for dictdb: ``python -m benchmarks [--quick]`` (see README.md).

Kept import-free so that ``python -m benchmarks._worker`` starts fast.
"""
