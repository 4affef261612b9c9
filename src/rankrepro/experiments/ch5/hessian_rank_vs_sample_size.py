"""§5.3 — Hessian rank vs sample size: the rank depends on the data only through r = rank(Σ x xᵀ), so it grows
with n while r does and saturates once r stops growing (at r = d for data spanning the input space).

The paper's sample sizes, image side and hidden widths: config/paper.yaml. The mechanism is in
:mod:`rankrepro.experiments.ch5.common`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rankrepro.data.sources import DataSource
from rankrepro.experiments.base import Context
from rankrepro.experiments.ch5.common import (
    KINDS,
    REFERENCE,
    HessianSweepSettings,
    Point,
    bias_free,
    decidable_sweeps,
    load_sweep,
    plot_sweep,
    point_table,
    run_sweep,
    sweep_claims,
    sweep_name,
)
from rankrepro.pipeline.claims import ClaimResult, apply_gate, decide
from rankrepro.pipeline.settings import FigureContext

NAME = "hessian_rank_vs_sample_size"
CHAPTER = "ch5"
SECTION = "5.3"
TITLE = "Hessian rank vs sample size: it grows with the data rank r and saturates once r stops growing"
DATASETS = ("mnist", "fashion-mnist", "cifar-10")
#: the figure's x axis: the swept quantity
XLABEL = "number of samples n"
#: the final plateau of r must hold at least this many sweep points for the saturation claim to show
MIN_PLATEAU = 3


@dataclass(frozen=True)
class SampleSizeSweepSettings(HessianSweepSettings):
    """Settings of the sample-size sweep: the shared data, losses, activations and init (:class:`HessianSweepSettings`),
    networks of hidden widths ``hidden`` on the first n images for each n in ``sample_sizes``."""

    hidden: tuple[int, ...]
    sample_sizes: tuple[int, ...]


Settings = SampleSizeSweepSettings


def points(settings: SampleSizeSweepSettings) -> list[Point]:
    """One point per sample size n, hidden widths ``hidden``."""
    return [Point(n, settings.hidden, n) for n in settings.sample_sizes]


def describe(settings: SampleSizeSweepSettings) -> str:
    """Caption text: the networks and samples of the sweep."""
    return f"Networks d→{'→'.join(str(w) for w in settings.hidden)}→K on the first n images."


def run(settings: SampleSizeSweepSettings, out: Path, ctx: Context, data: DataSource) -> None:
    """Ranks of H_L, H_O, H_F at every point, dataset, loss and activation (cached per point)."""
    run_sweep(settings, out, ctx, data, "sample_size", points)


def plot(results: Path, figure_png: Path, figure: FigureContext) -> list[Path]:
    """Ranks against the closed forms and p (PNG + PDF)."""
    return plot_sweep(
        results, figure_png, figure, Settings, section=SECTION, title=TITLE, xlabel=XLABEL, describe=describe
    )


def saturation_claim(summary: dict, settings: SampleSizeSweepSettings) -> ClaimResult:
    """Linear bias-free networks: over the final plateau of r(n) every well-defined rank stays constant; shown for a
    sweep (dataset, loss, data variant) whose plateau holds at least MIN_PLATEAU well-defined points, under
    :func:`~rankrepro.experiments.ch5.common.decidable_sweeps`."""
    table = bias_free(point_table(summary), settings)
    linear = table[table["activation"] == "linear"] if len(table) else table
    kept, gate = decidable_sweeps(linear, "linear networks")
    changing, plateaus, shown = [], {}, False
    for key, rows in kept.items():
        if rows.empty:
            continue
        final_r = int(rows["r"].iloc[-1])
        plateau = rows[rows["value"] >= rows.loc[rows["r"] == final_r, "value"].min()]
        plateaus[sweep_name(key)] = {
            "r": final_r,
            "d": int(rows["d"].iloc[0]),
            "from_n": int(plateau["value"].min()),
            "points": len(plateau),
            "rank_H_L": int(plateau["rank_loss"].iloc[-1]),
        }
        if len(plateau) < MIN_PLATEAU:
            continue
        shown = True
        for kind in KINDS:
            if plateau[f"rank_{kind}"].nunique() > 1:
                changing.append(f"{sweep_name(key)} {kind}: {sorted(set(plateau[f'rank_{kind}']))}")
    claim = ClaimResult(
        "linear_rank_saturates_in_n",
        NAME,
        SECTION,
        "linear networks: once r = rank(X) stops growing with n (r = d when the data span the input space), "
        "the (well-defined) ranks of H_L, H_O and H_F stop growing",
        decide(not changing, shown),
        {"plateaus": plateaus},
        REFERENCE,
        ("; ".join(changing) or "constant on every plateau")
        + ("" if shown else f"; no decidable sweep's plateau of r spans {MIN_PLATEAU} well-defined points"),
    )
    return apply_gate(gate, [claim])[0]


def claims(results: Path, tier: str) -> list[ClaimResult]:
    """Closed forms exact for linear networks, saturation in n, exact bounds for the others."""
    _, summary, settings = load_sweep(results, Settings)
    return sweep_claims(summary, settings, NAME, SECTION) + [saturation_claim(summary, settings)]
