"""One module per metric family; each follows the standard protocol of its benchmarks (see module docstrings)."""
