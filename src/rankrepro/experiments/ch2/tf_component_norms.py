"""§2.1 — Tensor factorization learns components one at a time: dynamics of the CP component norms (completion).

A CP model with R = 1000 components (the maximal rank of a 10×10×10×10 tensor) completes a CP-rank-5 target from
2,000 observed entries. From small init the component norms leave zero one after another and the reconstruction
error falls as a staircase, ending at a rank-5 solution; the smaller the init, the cleaner (see
:mod:`rankrepro.experiments.ch2.common`).
"""

from __future__ import annotations

from pathlib import Path

from rankrepro.experiments.base import Context
from rankrepro.experiments.ch2.common import ComponentDynamicsSettings, dynamics_claims, plot_dynamics, run_dynamics
from rankrepro.pipeline.claims import ClaimResult
from rankrepro.pipeline.settings import FigureContext

NAME = "tf_component_norms"
CHAPTER = "ch2"
SECTION = "2.1"
TITLE = "Tensor factorization learns components one at a time (completion)"
REFERENCE = (
    "paper (order 4, R = 1000, init 5e-3): five components jump at ≈4.2k, 5.3k, 7.0k, 9.8k, 11.3k "
    "iterations to ≈0.63, 0.59, 0.40, 0.31, 0.21; error staircase 1.0 → 0.82 → 0.56 → 0.39 → 0.22 → 0.01; "
    "final errors 8e-2 (init 5e-2), 3e-2 (1e-2), 7e-6 (5e-3)"
)
NOTE = "Synthetic target; the emergence times depend on its draw."
#: typed settings (schema ``$defs.tf_component_dynamics``), shared with :mod:`.tf_sensing_component_norms`
Settings = ComponentDynamicsSettings


def run(settings: Settings, out: Path, ctx: Context) -> None:
    """Train the CP model from every init scale on the completion problem (one batched program)."""
    run_dynamics(settings, out, ctx, NAME, "completion")


def plot(results: Path, figure_png: Path, figure: FigureContext) -> list[Path]:
    """Top-k component norms (smallest init) and reconstruction error per init vs iterations."""
    return plot_dynamics(results, figure_png, figure, SECTION, TITLE, NOTE)


def claims(results: Path, tier: str) -> list[ClaimResult]:
    """The §2.1 claims on the completion runs."""
    return dynamics_claims(results, tier, NAME, SECTION, REFERENCE)
