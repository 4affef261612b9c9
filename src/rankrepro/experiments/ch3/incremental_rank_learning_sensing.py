"""§3.1 (appendix variant) — incremental rank learning in MF, TF and HTF for sensing with Gaussian measurements.

Instead of observed entries each target is seen through m Gaussian measurements y_i = ⟨A_i, W*⟩ (entries of A_i
i.i.d. N(0, 1/numel)); models, optimizer and tracking are those of the completion experiment (see
:mod:`rankrepro.experiments.ch3.rank_dynamics_common`).
"""

from __future__ import annotations

from rankrepro.experiments.ch3.rank_dynamics_common import MODELS, experiment_functions

NAME = "incremental_rank_learning_sensing"
CHAPTER = "ch3"
SECTION = "3.1"
TITLE = "Incremental rank learning in MF, TF and HTF (sensing variant)"
REFERENCE = (
    "paper appendix: sensing shows the same incremental rank learning as completion in all three models "
    "(no numbers are given for it in the spec); reconstruction error < 0.1"
)
NOTE = "Synthetic targets and Gaussian measurements."

run, plot, claims = experiment_functions(
    NAME, SECTION, TITLE, NOTE, "sensing", dict.fromkeys(MODELS, REFERENCE), prefix="sensing_"
)
