"""§3.1 — Incremental rank learning in matrix, tensor and hierarchical tensor factorization (completion).

A depth-3 matrix factorization, a CP tensor factorization and a hierarchical tensor factorization, each from small
init, complete a low-rank target from half of its entries. In all three the components (singular values, CP
component norms, the root's local components) leave zero one at a time and the fit ends at low (hierarchical
tensor) rank (see :mod:`rankrepro.experiments.ch3.rank_dynamics_common`).
"""

from __future__ import annotations

from rankrepro.experiments.ch3.rank_dynamics_common import REFERENCES, experiment_functions

NAME = "incremental_rank_learning"
CHAPTER = "ch3"
SECTION = "3.1"
TITLE = "Incremental rank learning in MF, TF and HTF (completion)"
NOTE = "Synthetic targets; the emergence times depend on their draws."

run, plot, claims = experiment_functions(NAME, SECTION, TITLE, NOTE, "completion", REFERENCES)
