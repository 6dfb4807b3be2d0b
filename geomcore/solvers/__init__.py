"""Solvers for the nearest-point problem between convex hulls.

``nearest_point`` iterates (JAX, batched), ``certificates`` verifies (numpy,
float64), ``exact_lp`` decides what the iterations could not (HiGHS), and
``pairs`` drives the three over working sets.
"""
