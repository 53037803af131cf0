"""asv regression benchmarks (``asv run``, ``asv continuous``): speed, memory and accuracy per interpolator."""
