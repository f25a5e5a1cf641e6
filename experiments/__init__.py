"""Experiments over agents x tasks x seeds: the results format, the comparison grid and its report."""
