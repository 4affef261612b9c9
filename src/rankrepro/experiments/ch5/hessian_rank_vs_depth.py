"""§5.2 — Hessian rank vs depth: networks of D hidden layers of a fixed width.

The paper's n, image side, width and depths: config/paper.yaml. The mechanism is in
:mod:`rankrepro.experiments.ch5.common`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rankrepro.data.sources import DataSource
from rankrepro.experiments.base import Context
from rankrepro.experiments.ch5.common import (
    HessianSweepSettings,
    Point,
    load_sweep,
    plot_sweep,
    run_sweep,
    sweep_claims,
)
from rankrepro.pipeline.claims import ClaimResult
from rankrepro.pipeline.settings import FigureContext

NAME = "hessian_rank_vs_depth"
CHAPTER = "ch5"
SECTION = "5.2"
TITLE = "Hessian rank vs depth: the closed forms hold at every depth of a linear network"
DATASETS = ("mnist", "fashion-mnist", "cifar-10")
#: the figure's x axis: the swept quantity
XLABEL = "hidden layers D"


@dataclass(frozen=True)
class DepthSweepSettings(HessianSweepSettings):
    """Settings of the depth sweep: the shared data, losses, activations and init (:class:`HessianSweepSettings`),
    networks of D hidden layers of width ``width`` for each D in ``depths``, on the first ``num_samples`` images."""

    num_samples: int
    width: int
    depths: tuple[int, ...]


Settings = DepthSweepSettings


def points(settings: DepthSweepSettings) -> list[Point]:
    """One point per depth D: D hidden layers of width ``width``, n = ``num_samples``."""
    return [Point(depth, (settings.width,) * depth, settings.num_samples) for depth in settings.depths]


def describe(settings: DepthSweepSettings) -> str:
    """Caption text: the networks and samples of the sweep."""
    return f"Networks with D hidden layers of width {settings.width}, n = {settings.num_samples}."


def run(settings: DepthSweepSettings, out: Path, ctx: Context, data: DataSource) -> None:
    """Ranks of H_L, H_O, H_F at every point, dataset, loss and activation (cached per point)."""
    run_sweep(settings, out, ctx, data, "depth", points)


def plot(results: Path, figure_png: Path, figure: FigureContext) -> list[Path]:
    """Ranks against the closed forms and p (PNG + PDF)."""
    return plot_sweep(
        results, figure_png, figure, Settings, section=SECTION, title=TITLE, xlabel=XLABEL, describe=describe
    )


def claims(results: Path, tier: str) -> list[ClaimResult]:
    """Closed forms exact for linear networks, exact bounds for the others."""
    _, summary, settings = load_sweep(results, Settings)
    return sweep_claims(summary, settings, NAME, SECTION)
