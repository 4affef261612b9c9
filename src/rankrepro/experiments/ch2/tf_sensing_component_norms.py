"""§2.1 (appendix variant) — the same component-norm dynamics for tensor sensing with Gaussian measurements.

Instead of observed entries, the target is seen through m Gaussian measurements y_i = ⟨A_i, W*⟩ (entries of A_i
i.i.d. N(0, 1/numel)); the CP model, optimizer and tracking are those of §2.1 (see
:mod:`rankrepro.experiments.ch2.common`).
"""

from __future__ import annotations

from pathlib import Path

from rankrepro.experiments.base import Context
from rankrepro.experiments.ch2.common import ComponentDynamicsSettings, dynamics_claims, plot_dynamics, run_dynamics
from rankrepro.pipeline.claims import ClaimResult
from rankrepro.pipeline.settings import FigureContext

NAME = "tf_sensing_component_norms"
CHAPTER = "ch2"
SECTION = "2.1"
TITLE = "Tensor factorization learns components one at a time (sensing variant)"
REFERENCE = (
    "paper appendix: tensor sensing shows the same incremental learning of components as completion "
    "(no numbers are given for it in the spec)"
)
NOTE = "Synthetic target and Gaussian measurements."
#: typed settings (schema ``$defs.tf_component_dynamics``), shared with :mod:`.tf_component_norms`
Settings = ComponentDynamicsSettings


def run(settings: Settings, out: Path, ctx: Context) -> None:
    """Train the CP model from every init scale on the sensing problem (one batched program)."""
    run_dynamics(settings, out, ctx, NAME, "sensing")


def plot(results: Path, figure_png: Path, figure: FigureContext) -> list[Path]:
    """Top-k component norms (smallest init) and reconstruction error per init vs iterations."""
    return plot_dynamics(results, figure_png, figure, SECTION, TITLE, NOTE)


def claims(results: Path, tier: str) -> list[ClaimResult]:
    """The §2.1 claims on the sensing runs."""
    return dynamics_claims(results, tier, NAME, SECTION, REFERENCE, prefix="sensing_")
