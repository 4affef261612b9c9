"""Chapter 1 — implicit regularization may not be explainable by norms: deep matrix factorization on the 2×2
completion problem (§1.1–1.3) and larger matrices (§1.4), and tensor completion against a linear model (§1.5); the
DMF experiments share :mod:`~rankrepro.experiments.ch1.common`.
"""
