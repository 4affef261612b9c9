"""Chapter 3 — hierarchical tensor factorization and the locality of CNNs: incremental rank learning in MF, TF and
HTF (§3.1, sharing :mod:`~rankrepro.experiments.ch3.rank_dynamics_common`) and countering locality on Is-Same-Class
and Pathfinder (§3.2, sharing :mod:`~rankrepro.experiments.ch3.locality_common`).
"""
