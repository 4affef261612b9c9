"""§3.1 (appendix variant) — incremental rank learning in MF, TF and HTF for sensing with Gaussian measurements.

Instead of observed entries each target is seen through m Gaussian measurements y_i = ⟨A_i, W*⟩ (entries of A_i
i.i.d. N(0, 1/numel)); models, optimizer and tracking are those of the completion experiment (see
:mod:`rankrepro.experiments.ch3.rank_dynamics_common`).
"""

from __future__ import annotations

from pathlib import Path

from rankrepro.experiments.base import Context
from rankrepro.experiments.ch3.rank_dynamics_common import (
    MODELS,
    RankDynamicsSettings,
    plot_rank_dynamics,
    rank_dynamics_claims,
    run_rank_dynamics,
)
from rankrepro.pipeline.claims import ClaimResult
from rankrepro.pipeline.settings import FigureContext

NAME = "incremental_rank_learning_sensing"
CHAPTER = "ch3"
SECTION = "3.1"
TITLE = "Incremental rank learning in MF, TF and HTF (sensing variant)"
REFERENCE = (
    "paper appendix: sensing shows the same incremental rank learning as completion in all three models "
    "(no numbers are given for it in the spec); reconstruction error < 0.1"
)
#: its settings: the §3.1 section shared with the other measurement (schema ``$defs/rank_dynamics``)
Settings = RankDynamicsSettings
NOTE = "Synthetic targets and Gaussian measurements."


def run(settings: RankDynamicsSettings, out: Path, ctx: Context) -> None:
    """Train MF, TF and HTF on the sensing problems; write metrics.csv and summary.json."""
    run_rank_dynamics(settings, out, ctx, NAME, "sensing")


def plot(results: Path, figure_png: Path, figure: FigureContext) -> list[Path]:
    """Components vs iterations for the three models; HTF node/root norms and matricization spectra."""
    return plot_rank_dynamics(results, figure_png, figure, SECTION, TITLE, NOTE)


def claims(results: Path, tier: str) -> list[ClaimResult]:
    """The §3.1 claims on the sensing runs (ids prefixed ``sensing_``)."""
    return rank_dynamics_claims(results, tier, NAME, SECTION, dict.fromkeys(MODELS, REFERENCE), prefix="sensing_")
