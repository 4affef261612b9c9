"""Chapter 5 — the rank of neural-network Hessian maps against width (§5.1), depth (§5.2) and sample size (§5.3); the
three sweeps share :mod:`~rankrepro.experiments.ch5.common`.
"""
