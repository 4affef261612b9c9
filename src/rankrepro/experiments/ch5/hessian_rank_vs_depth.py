"""§5.2 — Hessian rank vs depth: networks of D hidden layers of a fixed width.

Paper: n = 50, 4×4 images (d = 16), D = 1 … 9 hidden layers of width 25 (p = 625 D + 25 … ). The mechanism is in
:mod:`rankrepro.experiments.ch5.common`.
"""

from __future__ import annotations

from pathlib import Path

from rankrepro.data.sources import DataSource
from rankrepro.experiments.base import Context, load_results
from rankrepro.experiments.ch5.common import Point, plot_sweep, run_sweep, sweep_claims
from rankrepro.pipeline.claims import ClaimResult

NAME = "hessian_rank_vs_depth"
CHAPTER = "ch5"
SECTION = "5.2"
TITLE = "Hessian rank vs depth: the closed forms hold at every depth of a linear network"
DATASETS = ("mnist", "fashion-mnist", "cifar-10")


def points(settings: dict) -> list[Point]:
    """One point per depth D: D hidden layers of width ``width``, n = ``num_samples``."""
    return [
        Point(int(depth), (int(settings["width"]),) * int(depth), int(settings["num_samples"]))
        for depth in settings["depths"]
    ]


def describe(settings: dict) -> str:
    """Caption text: the networks and samples of the sweep."""
    return f"Networks with D hidden layers of width {settings['width']}, n = {settings['num_samples']}."


def run(settings: dict, out: Path, ctx: Context, data: DataSource) -> None:
    """Ranks of H_L, H_O, H_F at every point, dataset, loss and activation (cached per point)."""
    run_sweep(settings, out, ctx, data, "depth", points)


def plot(results: Path, figure_png: Path, tier: str) -> list[Path]:
    """Ranks against the closed forms and p (PNG + PDF)."""
    return plot_sweep(
        results, figure_png, tier, section=SECTION, title=TITLE, xlabel="hidden layers D", describe=describe
    )


def claims(results: Path, tier: str) -> list[ClaimResult]:
    """Closed forms exact for linear networks, exact bounds for the others."""
    _, summary = load_results(results)
    return sweep_claims(summary, NAME, SECTION)
