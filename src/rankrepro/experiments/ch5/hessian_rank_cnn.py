"""§5.5 — Hessian rank of convolutional networks grows like √p (Singh, Hofmann & Schölkopf, ICML 2023,
arXiv 2305.09088: "even in CNNs, the Hessian rank grows as the square root of the number of parameters").

Bias-free CNNs s × s → [conv k × k, m channels, σ] × D → fully connected head → K = 10, at a Glorot-normal
initialisation, on the first n training images (the chapter's data pipeline: pixels / 255, resized, one-hot). For
each dataset × loss × activation × depth D × channel count m, the exact float64 maps H_L, H_O, H_F are formed
(:mod:`rankrepro.hessian.conv`: the CNN is the fully connected network at its Toeplitz weights), their numerical
ranks counted by the chapter's one rule, and compared with upper bounds **derived here**
(:func:`rankrepro.hessian.conv.conv_rank_bounds`; the paper's own formulas were not available to this
reproduction). The claims are fixed before the run (constants below).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import matplotlib.pyplot as plt
import pandas as pd
import torch
from matplotlib.ticker import NullFormatter

from rankrepro.core.seeding import seeded_generator
from rankrepro.data.sources import DataSource, available_datasets
from rankrepro.experiments.base import BATCH_DIR, Context, cached_batch, mechanism_hash, run_fingerprint, write_results
from rankrepro.experiments.ch5.common import (
    DATASET_LABELS,
    ESTIMATE_TOLERANCE,
    KIND_LABELS,
    KINDS,
    LOSS_LABELS,
    ImageDataSettings,
    data_conditioning,
    decidable_sweeps,
    estimate_is_decisive,
    estimate_sweeps,
    first_samples,
    is_well_posed,
    left_out_text,
    load_sweep,
    loglog_slope,
    plot_ranks,
    substitutions,
    sweep_name,
    within_estimate,
)
from rankrepro.hessian import conv, maps
from rankrepro.hessian.maps import data_rank
from rankrepro.pipeline.claims import ClaimResult, Gate, apply_gate, decide
from rankrepro.pipeline.plotting import add_caption, add_title, apply_style, caption_text, save_figure
from rankrepro.pipeline.settings import FigureContext

log = logging.getLogger(__name__)

NAME = "hessian_rank_cnn"
CHAPTER = "ch5"
SECTION = "5.5"
TITLE = "Hessian rank of convolutional networks grows like the square root of the parameter count"
DATASETS = ("mnist", "fashion-mnist")

#: bump when the way a point is computed changes (invalidates cached point files)
POINT_FORMAT = 1
#: the √p claim: least-squares slope of log rank H_L against log p over a linear sweep's points whose p is mostly
#: quadratic in the channels (:attr:`ConvNet.quadratic_params` ≥ half of p), within SLOPE_TARGET ± SLOPE_TOLERANCE.
#: Fixed before the run: the paper's law is rank ∝ √p (slope 0.5). On a finite range, an affine rank a·m + b (b ≥ 0)
#: against p = c·m² + e·m with e·m ≤ c·m² has local slope (am / (am + b)) / ((2cm² + em) / (cm² + em)) ≤ 2/3, so ±0.2
#: admits the law's finite-size range and rejects a rank proportional to p (slope 1)
SLOPE_TARGET = 0.5
SLOPE_TOLERANCE = 0.2
#: fewest such points for the slope to be fitted (else the claim is not shown at this scale)
MIN_SLOPE_POINTS = 3
REFERENCE = (
    "Singh, Hofmann & Schölkopf, ICML 2023 (arXiv 2305.09088): tight upper bounds on the Hessian rank of linear "
    "CNNs via the Toeplitz representation, exact for one hidden layer, of the order of the square root of the "
    "trivial bound; they closely follow the empirical rank and hold in practice with ReLU; the rank grows like √p. "
    "The bounds checked here are derived in rankrepro.hessian.conv (the paper's formulas were not available)"
)

Dataset = Literal["mnist", "fashion-mnist"]
Loss = Literal["mse", "ce"]
Activation = Literal["linear", "relu"]


@dataclass(frozen=True)
class Settings(ImageDataSettings):
    """Settings of the CNN sweep: data (the first ``num_samples`` images, resized to ``image_side``²), losses,
    activations, init ``seed``, and the networks: ``kernel_size`` × ``kernel_size`` convolutions, D hidden
    convolutions for D in ``depths``, each of m channels for m in ``channels``."""

    datasets: tuple[Dataset, ...]
    losses: tuple[Loss, ...]
    activations: tuple[Activation, ...]
    num_samples: int
    kernel_size: int
    depths: tuple[int, ...]
    channels: tuple[int, ...]


# ----------------------------------------------------------------------------------------------------- compute
def variant_name(depth: int) -> str:
    """The sweep-variant label of a depth (the chapter's sweep keys name a variant): ``"2 hidden"``."""
    return f"{depth} hidden"


def network_for(settings: Settings, depth: int, channels: int, activation: str) -> tuple[conv.ConvNet, torch.Tensor]:
    """The CNN of a point and its Glorot-normal θ, seeded by (seed, side, kernel, depth, m): one network per
    architecture, the same for every loss, dataset and activation."""
    net = conv.ConvNet(settings.image_side, settings.kernel_size, (channels,) * depth, 10, activation)
    generator = seeded_generator(settings.seed, settings.image_side, settings.kernel_size, depth, channels)
    return net, conv.glorot_normal_conv(net, generator)


def compute_point(
    settings: Settings,
    X: torch.Tensor,
    Y: torch.Tensor,
    loss: str,
    activation: str,
    depth: int,
    channels: int,
    device: torch.device | None = None,
) -> dict[str, Any]:
    """Ranks (with robustness reports) of one CNN on (X, Y), its bounds and the linear network's bounds. The maps are
    formed and decomposed on ``device`` (default: where X is); θ is drawn on the CPU (the same draw everywhere)."""
    started = time.time()
    device = X.device if device is None else device
    net, theta = network_for(settings, depth, channels, activation)
    X, Y, theta = X.to(device), Y.to(device), theta.to(device)
    r, r_patch = data_rank(X), conv.patch_rank(X, net.side, net.kernel)
    reports = conv.conv_map_ranks(net, theta, X, Y, loss)
    n = int(X.shape[0])
    return {
        "n": n,
        "d": int(X.shape[1]),
        "r": r,
        "r_patch": r_patch,
        "depth": depth,
        "channels": channels,
        "p": net.num_params,
        "quadratic_params": net.quadratic_params,
        "ranks": {kind: report.as_dict() for kind, report in reports.items()},
        "bounds": conv.conv_rank_bounds(net, n, r, r_patch, loss, activation),
        "linear_bounds": conv.conv_rank_bounds(net, n, r, r_patch, loss, "linear"),
        "time_s": round(time.time() - started, 3),
    }


def run(settings: Settings, out: Path, ctx: Context, data: DataSource) -> None:
    """Every dataset × loss × activation × depth × channel point (cached per point), then metrics and summary."""
    started = time.time()
    out = Path(out)
    common = {k: v for k, v in settings.record().items() if k not in ("datasets", "losses", "activations")}
    source = mechanism_hash(conv, maps)  # conv ranks its maps with maps' rule
    records, unavailable, conditioning = [], {}, {}
    for dataset, images in available_datasets(settings.datasets, (), data.image_classification, unavailable):
        X, Y = first_samples(images, settings.num_samples, settings.image_side, settings.resize)
        conditioning[dataset] = data_conditioning(X)
        for loss in settings.losses:
            for activation in settings.activations:
                for depth in settings.depths:
                    for channels in settings.channels:
                        key = f"{dataset}_{loss}_{activation}_{depth}_{channels}"
                        fingerprint = run_fingerprint(common, key, POINT_FORMAT, source)

                        def compute(loss=loss, activation=activation, depth=depth, channels=channels, key=key):
                            record = compute_point(settings, X, Y, loss, activation, depth, channels, ctx.device)
                            return {
                                "fingerprint": fingerprint,
                                "key": key,
                                "dataset": dataset,
                                "loss": loss,
                                "activation": activation,
                                **record,
                            }

                        record, hit = cached_batch(out / BATCH_DIR / f"{key}.json", fingerprint, compute)
                        log.info(
                            "%s: p=%d ranks %s bounds %s (%s, %.1f s)",
                            key,
                            record["p"],
                            {k: v["rank"] for k, v in record["ranks"].items()},
                            record["bounds"],
                            "cached" if hit else "computed",
                            record["time_s"],
                        )
                        records.append({k: v for k, v in record.items() if k != "fingerprint"})
    extra = {
        "points": records,
        "data": conditioning,
        "unavailable": unavailable,
        "torch_threads": torch.get_num_threads(),
        "compute_time_s": round(sum(r["time_s"] for r in records), 1),
    }
    write_results(out, tidy_metrics(records), settings.record(), ctx, started, extra)


def tidy_metrics(records: list[dict]) -> pd.DataFrame:
    """One row per point × Hessian: rank, its bound, the linear network's bound, ranks at τ/100 and 100τ, gap."""
    rows = []
    for record in records:
        for kind in KINDS:
            report = record["ranks"][kind]
            tolerances = list(report["ranks_at"].values())
            rows.append(
                {
                    **{k: record[k] for k in ("dataset", "loss", "activation", "depth", "channels", "n", "d")},
                    **{k: record[k] for k in ("r", "r_patch", "p", "quadratic_params")},
                    "kind": kind,
                    "rank": report["rank"],
                    "bound": record["bounds"][kind],
                    "linear_bound": record["linear_bounds"][kind],
                    "rank_tol_low": tolerances[0],
                    "rank_tol_high": tolerances[-1],
                    "gap_log10": report["gap_log10"],
                    "time_s": record["time_s"],
                }
            )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------- figure
def plot(results: Path, figure_png: Path, figure: FigureContext) -> list[Path]:
    """Rows = depths, columns = dataset × activation; rank of H_L, H_O, H_F against p (log-log, one marker style
    per loss), the bounds (lines), p and a √p line through the first H_L point (PNG + PDF)."""
    metrics, summary, settings = load_sweep(results, Settings)
    datasets = [d for d in settings.datasets if d in summary["data"]]
    columns = [(d, a) for d in datasets for a in settings.activations]
    apply_style()
    fig, axes = plt.subplots(
        len(settings.depths),
        len(columns),
        figsize=(3.2 * len(columns) + 0.6, 2.9 * len(settings.depths) + 1.2),
        squeeze=False,
        layout="constrained",
    )
    colours = {kind: f"C{k}" for k, kind in enumerate(KINDS)}
    markers = {"mse": "o", "ce": "s"}
    ill_defined = 0
    for i, depth in enumerate(settings.depths):
        for j, (dataset, activation) in enumerate(columns):
            ax = axes[i][j]
            part = metrics[
                (metrics["depth"] == depth) & (metrics["dataset"] == dataset) & (metrics["activation"] == activation)
            ]
            for loss in settings.losses:
                for kind in KINDS:
                    rows = part[(part["kind"] == kind) & (part["loss"] == loss)].sort_values("p")
                    ax.plot(
                        rows["p"],
                        rows["bound"],
                        "-" if loss == "mse" else "--",
                        color=colours[kind],
                        lw=1.1,
                        label=f"bound {KIND_LABELS[kind]} ({LOSS_LABELS[loss]})",
                    )
                    ill_defined += plot_ranks(
                        ax,
                        rows["p"],
                        rows,
                        markers[loss],
                        colours[kind],
                        f"rank {KIND_LABELS[kind]} ({LOSS_LABELS[loss]})",
                    )
            first = part[part["kind"] == "loss"].sort_values("p")
            if len(first):
                p = first["p"].drop_duplicates()
                ax.plot(p, p, ":", color="0.5", lw=1, label="p")
                anchor = first.iloc[0]
                ax.plot(p, anchor["rank"] * (p / anchor["p"]) ** 0.5, "-.", color="0.3", lw=1, label="∝ √p")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_title(f"{DATASET_LABELS[dataset]}, {activation}, {depth} hidden conv", fontsize=7.5)
            ax.set_xlabel("parameters p")
            if j == 0:
                ax.set_ylabel("rank")
    legend = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    fig.legend(legend.values(), legend.keys(), loc="outside right upper", fontsize=7)
    add_title(fig, f"§{SECTION} {TITLE}")
    details = (
        f"Bias-free CNNs {settings.image_side}×{settings.image_side} → [conv {settings.kernel_size}×"
        f"{settings.kernel_size}, m channels, σ]×D → linear head → K = 10, m ∈ {list(settings.channels)}, at a "
        f"Glorot-normal init (seed {settings.seed}), float64, on the first n = {settings.num_samples} training images "
        f"({settings.resize}-resized, pixels/255, one-hot). Rank: eigenvalues above τ = |λ|max·p·eps; hollow markers "
        f"({ill_defined} of {len(metrics)}): the count changes between τ/100 and 100τ. Lines: upper bounds derived "
        f"here (rankrepro.hessian.conv; for ReLU the bound with n·K' for H_O), not the paper's formulas."
    )
    add_caption(fig, caption_text(f"§{SECTION}", figure.tier, details, substitutions(summary, figure)))
    return save_figure(fig, figure_png)


# ----------------------------------------------------------------------------------------------------- claims
def point_table(summary: dict) -> pd.DataFrame:
    """One row per point in the chapter's point-table layout (:func:`~rankrepro.experiments.ch5.common.point_table`):
    the depth as the sweep variant, m as the swept value, ``predicted_*`` the linear network's bound (the estimate the
    ReLU claim compares with) and ``bound_*`` the point's own bound."""
    rows = []
    for record in summary["points"]:
        row = {k: record[k] for k in ("dataset", "loss", "activation", "p", "r", "r_patch", "depth")}
        row.update(variant=variant_name(record["depth"]), value=record["channels"], K=10)
        row["quadratic_params"] = record["quadratic_params"]
        for kind in KINDS:
            report = record["ranks"][kind]
            row[f"rank_{kind}"] = report["rank"]
            row[f"predicted_{kind}"] = record["linear_bounds"][kind]
            row[f"bound_{kind}"] = record["bounds"][kind]
            row[f"ranks_at_{kind}"] = tuple(report["ranks_at"].values())
            row[f"gap_{kind}"] = report["gap_log10"]
        rows.append(row)
    return pd.DataFrame(rows)


def experiment_gate(table: pd.DataFrame) -> tuple[dict, dict, Gate, int]:
    """The one gate: the chapter's rule (:func:`~rankrepro.experiments.ch5.common.decidable_sweeps`) for the linear
    sweeps (ranks well defined) and the ReLU sweeps (the ±50 % check decisive at τ/100, τ, 100τ, on the points where
    it can fail both ways: :func:`~rankrepro.experiments.ch5.common.two_sided_points`) — at least one
    sweep of each kind the tier runs passes it. Returns the kept linear sweeps, kept ReLU sweeps, the gate and how many
    ReLU points were left out as one-sided."""
    linear = table[table["activation"] == "linear"] if len(table) else table
    relu = table[table["activation"] == "relu"] if len(table) else table
    kept_linear, gate_linear = decidable_sweeps(linear, "linear CNNs")
    kept_relu, gate_relu, left_out = estimate_sweeps(relu, "ReLU CNNs")
    holds = gate_linear.holds and (gate_relu.holds or relu.empty)
    gate = Gate(
        "linear CNNs (ranks well defined) and ReLU CNNs (±50 % check decisive), by the chapter's rule: "
        + gate_linear.statement.split(": ", 1)[1],
        holds,
        f"linear: {gate_linear.measured}; ReLU: {gate_relu.measured}",
    )
    return kept_linear, kept_relu, gate, left_out


def slope_claim(kept: dict) -> ClaimResult:
    """Linear CNNs of ≥ 2 hidden convolutions: the log-log slope of rank H_L against p, over the points where p is
    mostly quadratic in the channels, lies within :data:`SLOPE_TARGET` ± :data:`SLOPE_TOLERANCE`."""
    slopes, outside = {}, []
    for key, rows in kept.items():
        part = rows[(rows["depth"] >= 2) & (2 * rows["quadratic_params"] >= rows["p"])]
        if len(part) < MIN_SLOPE_POINTS:
            continue
        slope = loglog_slope(part["p"].tolist(), part["rank_loss"].tolist())
        slopes[sweep_name(key)] = {
            "slope": slope,
            "m": part["value"].tolist(),
            "p": part["p"].tolist(),
            "rank_loss": part["rank_loss"].tolist(),
        }
        if slope is None or abs(slope - SLOPE_TARGET) > SLOPE_TOLERANCE:
            outside.append(f"{sweep_name(key)}: {slope}")
    return ClaimResult(
        "linear_cnn_rank_grows_like_sqrt_p",
        NAME,
        SECTION,
        f"linear CNNs (≥ 2 hidden convolutions): rank H_L grows like √p — the least-squares log-log slope of rank "
        f"against p over the points whose p is mostly quadratic in the channels is within {SLOPE_TARGET:g} ± "
        f"{SLOPE_TOLERANCE:g} (tolerance fixed before the run)",
        decide(not outside, bool(slopes)),
        slopes,
        REFERENCE,
        ("OUTSIDE: " + "; ".join(outside))
        if outside
        else (
            "slopes " + ", ".join(f"{k} {v['slope']}" for k, v in slopes.items())
            if slopes
            else f"no decided sweep has {MIN_SLOPE_POINTS} points with ≥ 2 hidden convolutions and p mostly quadratic"
        ),
    )


def estimate_claim(kept: dict, left_out: int = 0) -> ClaimResult:
    """ReLU CNNs: the linear network's bound on rank H_L is a faithful estimate, |rank / bound − 1| ≤
    :data:`~rankrepro.experiments.ch5.common.ESTIMATE_TOLERANCE` at every decisive point (the chapter's ±50 %);
    ``left_out``: the ReLU points where the check could not fail both ways, reported."""
    outside, checked, ratios = [], 0, {}
    for key, rows in kept.items():
        decisive = rows[[estimate_is_decisive(row) for row in rows.itertuples()]]
        if len(decisive):
            ratio = decisive["rank_loss"] / decisive["predicted_loss"]
            ratios[sweep_name(key)] = [round(float(ratio.min()), 3), round(float(ratio.max()), 3)]
        for row in decisive.itertuples():
            checked += 1
            if not within_estimate(row.rank_loss, row.predicted_loss):
                outside.append(f"{sweep_name(key)} m={row.value}: {row.rank_loss}/{row.predicted_loss}")
    return ClaimResult(
        "relu_cnn_rank_estimated_by_linear_bound",
        NAME,
        SECTION,
        f"ReLU CNNs: the linear CNN's bound on rank H_L is a faithful estimate, |rank H_L / bound − 1| ≤ "
        f"{ESTIMATE_TOLERANCE:g} at every point where this check can fail both ways ({1 + ESTIMATE_TOLERANCE:g} × "
        f"bound < p) and is the same at τ/100, τ and 100τ (the chapter's tolerance and rule, fixed before the run)",
        decide(not outside, checked > 0),
        {
            "points_checked": checked,
            "outside": len(outside),
            "left_out_one_sided": left_out,
            "rank_over_bound_range": ratios,
        },
        REFERENCE,
        (
            f"OUTSIDE ±{ESTIMATE_TOLERANCE:g}: " + "; ".join(outside[:10]) + " — a ReLU network is not linear in x, "
            "so its H_O is not confined to the K'r of a linear one; where H_O dominates H_L the linear bound "
            "underestimates; "
            if outside
            else ""
        )
        + f"rank H_L / linear bound (min, max) per sweep: {ratios}"
        + left_out_text(left_out),
    )


def claims(results: Path, tier: str) -> list[ClaimResult]:
    """Rank ∝ √p (linear) and the linear bound estimates ReLU ranks — one gate. (That the linear ranks stay within
    the bounds derived here, and meet them for one hidden layer, is a property of our derivation, not a claim of the
    paper: it is tested on exact tiny cases, tests/hessian/test_conv.py, and drawn in the figure, not scored.)"""
    _, summary, _ = load_sweep(results, Settings)
    table = point_table(summary)
    kept_linear, kept_relu, gate, left_out = experiment_gate(table)
    well_posed = {key: rows[[is_well_posed(row) for row in rows.itertuples()]] for key, rows in kept_linear.items()}
    found = [slope_claim(well_posed)]
    if kept_relu or (len(table) and (table["activation"] == "relu").any()):
        found.append(estimate_claim(kept_relu, left_out))
    return apply_gate(gate, found)
