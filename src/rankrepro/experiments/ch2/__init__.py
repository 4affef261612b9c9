"""Chapter 2 — implicit regularization in tensor factorization: dynamics of CP component norms in completion and
sensing (§2.1, sharing :mod:`~rankrepro.experiments.ch2.common`) and tensor rank as a measure of complexity on MNIST
and Fashion-MNIST (§2.2).
"""
