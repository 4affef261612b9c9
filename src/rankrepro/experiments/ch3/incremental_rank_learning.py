"""§3.1 — Incremental rank learning in matrix, tensor and hierarchical tensor factorization (completion).

A depth-3 matrix factorization, a CP tensor factorization and a hierarchical tensor factorization, each from small
init, complete a low-rank target from half of its entries. In all three the components (singular values, CP
component norms, the root's local components) leave zero one at a time and the fit ends at low (hierarchical
tensor) rank (see :mod:`rankrepro.experiments.ch3.rank_dynamics_common`).
"""

from __future__ import annotations

from pathlib import Path

from rankrepro.experiments.base import Context
from rankrepro.experiments.ch3.rank_dynamics_common import (
    REFERENCES,
    RankDynamicsSettings,
    plot_rank_dynamics,
    rank_dynamics_claims,
    run_rank_dynamics,
)
from rankrepro.pipeline.claims import ClaimResult
from rankrepro.pipeline.settings import FigureContext

NAME = "incremental_rank_learning"
CHAPTER = "ch3"
SECTION = "3.1"
TITLE = "Incremental rank learning in MF, TF and HTF (completion)"
#: its settings: the §3.1 section shared with the other measurement (schema ``$defs/rank_dynamics``)
Settings = RankDynamicsSettings
NOTE = "Synthetic targets; the emergence times depend on their draws."


def run(settings: RankDynamicsSettings, out: Path, ctx: Context) -> None:
    """Train MF, TF and HTF on the completion problems; write metrics.csv and summary.json."""
    run_rank_dynamics(settings, out, ctx, NAME, "completion")


def plot(results: Path, figure_png: Path, figure: FigureContext) -> list[Path]:
    """Components vs iterations for the three models; HTF node/root norms and matricization spectra."""
    return plot_rank_dynamics(results, figure_png, figure, SECTION, TITLE, NOTE)


def claims(results: Path, tier: str) -> list[ClaimResult]:
    """The §3.1 claims on the completion runs."""
    return rank_dynamics_claims(results, tier, NAME, SECTION, REFERENCES)
