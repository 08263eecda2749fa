"""Benchmarks: each prints one table of ratios against a baseline measured in the same run."""
