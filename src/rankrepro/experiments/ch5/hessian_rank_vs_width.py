"""§5.1 — Hessian rank vs width: the rank grows linearly with the width while the parameter count grows
quadratically (rank ≈ O(√p)).

Networks d → w → … → w → K on the first n images (the paper's n, image side and widths: config/paper.yaml). The
mechanism is in :mod:`rankrepro.experiments.ch5.common`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rankrepro.data.sources import DataSource
from rankrepro.experiments.base import Context
from rankrepro.experiments.ch5.common import (
    REFERENCE,
    SWEEP_KEYS,
    HessianSweepSettings,
    Point,
    bias_free,
    decidable_sweeps,
    load_sweep,
    loglog_slope,
    plot_sweep,
    point_table,
    run_sweep,
    sweep_claims,
    sweep_name,
)
from rankrepro.hessian import maps as hessian
from rankrepro.pipeline.claims import ClaimResult, apply_gate, decide
from rankrepro.pipeline.settings import FigureContext

NAME = "hessian_rank_vs_width"
CHAPTER = "ch5"
SECTION = "5.1"
TITLE = "Hessian rank grows linearly with width while the parameter count grows quadratically"
DATASETS = ("mnist", "fashion-mnist", "cifar-10")
#: the figure's x axis: the swept quantity
XLABEL = "hidden width w"


@dataclass(frozen=True)
class WidthSweepSettings(HessianSweepSettings):
    """Settings of the width sweep: the shared data, losses, activations and init (:class:`HessianSweepSettings`),
    networks of ``hidden_layers`` hidden layers of each width in ``widths``, on the first ``num_samples`` images."""

    num_samples: int
    hidden_layers: int
    widths: tuple[int, ...]


Settings = WidthSweepSettings


def points(settings: WidthSweepSettings) -> list[Point]:
    """One point per width w: ``hidden_layers`` hidden layers of width w, n = ``num_samples``."""
    return [Point(w, (w,) * settings.hidden_layers, settings.num_samples) for w in settings.widths]


def describe(settings: WidthSweepSettings) -> str:
    """Caption text: the networks and samples of the sweep."""
    return f"Networks d→w→…→K with {settings.hidden_layers} hidden layers of width w, n = {settings.num_samples}."


def run(settings: WidthSweepSettings, out: Path, ctx: Context, data: DataSource) -> None:
    """Ranks of H_L, H_O, H_F at every point, dataset, loss and activation (cached per point)."""
    run_sweep(settings, out, ctx, data, "width", points)


def plot(results: Path, figure_png: Path, figure: FigureContext) -> list[Path]:
    """Ranks against the closed forms and p (PNG + PDF)."""
    return plot_sweep(
        results, figure_png, figure, Settings, section=SECTION, title=TITLE, xlabel=XLABEL, describe=describe
    )


def fraction_claim(summary: dict, settings: WidthSweepSettings) -> ClaimResult:
    """Linear bias-free networks: rank(H_L)/p is lower at the widest point than at the first width past the
    bottleneck (w ≥ min(r, K'), where q stops growing and the rank becomes affine in w while p stays quadratic);
    shown for a sweep (dataset, loss, data variant) that reaches twice that width, under
    :func:`~rankrepro.experiments.ch5.common.decidable_sweeps`. The log-log slope of rank against p over those widths
    is reported (→ 0.5 as w → ∞: rank ≈ O(√p))."""
    table = bias_free(point_table(summary), settings)
    linear = table[table["activation"] == "linear"] if len(table) else table
    kept, gate = decidable_sweeps(linear, "linear networks")
    rising, measured, shown = [], {}, False
    for key, rows in kept.items():
        if rows.empty:
            continue
        loss = key[SWEEP_KEYS.index("loss")]
        start = min(int(rows["r"].iloc[0]), hessian.effective_outputs(int(rows["K"].iloc[0]), loss))
        beyond = rows[rows["value"] >= start]
        if len(beyond) < 2 or beyond["value"].max() < 2 * start:
            continue
        shown = True
        fraction = (beyond["rank_loss"] / beyond["p"]).round(4).tolist()
        measured[sweep_name(key)] = {
            "from_width": int(beyond["value"].iloc[0]),
            "rank_over_p": fraction,
            "loglog_slope": loglog_slope(beyond["p"].tolist(), beyond["rank_loss"].tolist()),
        }
        if fraction[-1] >= fraction[0]:
            rising.append(f"{sweep_name(key)}: {fraction[0]} → {fraction[-1]}")
    claim = ClaimResult(
        "linear_rank_fraction_falls_with_width",
        NAME,
        SECTION,
        "linear networks: past the bottleneck, rank(H_L)/p falls as the width grows (rank linear, p quadratic in w)",
        decide(not rising, shown),
        measured,
        REFERENCE,
        "; ".join(rising)
        or (
            "falls for every decidable sweep"
            if shown
            else "no decidable sweep reaches twice the width min(r, K') where the rank becomes affine in w"
        ),
    )
    return apply_gate(gate, [claim])[0]


def claims(results: Path, tier: str) -> list[ClaimResult]:
    """Closed forms exact for linear networks, rank/p falling with width, exact bounds for the others."""
    _, summary, settings = load_sweep(results, Settings)
    return sweep_claims(summary, settings, NAME, SECTION) + [fraction_claim(summary, settings)]
