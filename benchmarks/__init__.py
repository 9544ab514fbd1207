"""Benchmarks (kept apart from tests)."""
