"""Chapter 5 — rank of the Hessian maps of fully connected networks at initialisation: shared by the width, depth
and sample-size sweeps.

Every sweep point is a network (hidden widths) and a data set (the first n training images, pixels / 255,
downsampled to side × side, one-hot labels over K = 10 classes). For each dataset × loss × activation × point, the
exact float64 Hessian maps H_L, H_O, H_F of a Glorot-normal network are formed (:mod:`rankrepro.hessian.maps`), their
numerical ranks counted (eigenvalues above |λ|_max · p · eps, from one decomposition per map of the maps restricted to
a subspace that holds their range: :func:`rankrepro.hessian.maps.map_ranks`), and compared with the closed forms for
deep linear networks and with the exact upper bounds that hold for any activation. The network of a given architecture
is the same for every loss, dataset and n (its seed is derived from the widths).

Each point is written to ``<out>/batches/<key>.json`` when done, so an interrupted sweep resumes point by point.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as nnf
from matplotlib.ticker import MaxNLocator

from rankrepro.core.seeding import seeded_generator
from rankrepro.data.image_datasets import ImageDataset
from rankrepro.data.sources import DataSource, available_datasets
from rankrepro.experiments.base import (
    BATCH_DIR,
    Context,
    cached_batch,
    load_results,
    mechanism_hash,
    run_fingerprint,
    write_results,
)
from rankrepro.hessian import maps as hessian
from rankrepro.hessian.maps import MLP, data_rank, glorot_normal_init, map_ranks, predicted_ranks
from rankrepro.pipeline.claims import DATA_UNAVAILABLE, ClaimResult, decide
from rankrepro.pipeline.plotting import add_caption, add_title, apply_style, caption_text, save_figure
from rankrepro.pipeline.settings import FigureContext, SettingsRecord

log = logging.getLogger(__name__)

#: bump when the way a point is computed changes (invalidates cached point files); 2: map_ranks (structural maps,
#: decomposed on a subspace that holds their range) instead of autodiff maps decomposed whole
POINT_FORMAT = 2
#: weights of R, G, B in the grey value of a colour image (ITU-R 601-2, as PIL's "L" mode)
LUMA = (0.299, 0.587, 0.114)
KINDS = ("loss", "outer", "functional")
KIND_LABELS = {"loss": "$H_L$", "outer": "$H_O$", "functional": "$H_F$"}
LOSS_LABELS = {"mse": "MSE", "ce": "cross-entropy", "logcosh": "log-cosh"}
DATASET_LABELS = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar-10": "CIFAR-10 (grey)"}
REFERENCE = (
    "Singh et al. 2021: for linear networks the numerical rank equals the closed forms at every sweep "
    "point (authors' MNIST/CE width sweep, r = 41: rank H_L 216, 464, 639, 783 … 1,503; H_O plateaus at "
    "9·41 = 369); rank ∝ width while p ∝ width² (rank ≈ O(√p)); ReLU/tanh ranks stay close to the formulas"
)
#: the formula claims show nothing when more than this fraction of a sweep's points have an ill-defined rank
MAX_ILL_POSED = 0.25
#: settings a point's key already names (its dataset, loss, activation): left out of its fingerprint, so that adding a
#: dataset, loss or activation recomputes no other point
POINT_KEY_SETTINGS = ("datasets", "optional_datasets", "losses", "activations")

Dataset = Literal["mnist", "fashion-mnist", "cifar-10"]
Loss = Literal["mse", "ce", "logcosh"]
Activation = Literal["linear", "relu", "tanh"]


@dataclass(frozen=True)
class HessianSweepSettings(SettingsRecord):
    """What every chapter-5 sweep's settings hold (schema ``hessian_common``): the data (the first training images of
    each dataset, grey, resized to ``image_side`` × ``image_side`` by ``resize``), the losses and hidden-layer
    activations swept, and the networks' init (Glorot-normal, ``seed``; biases in every layer when ``bias``)."""

    seed: int
    datasets: tuple[Dataset, ...]
    optional_datasets: tuple[Dataset, ...]
    losses: tuple[Loss, ...]
    activations: tuple[Activation, ...]
    image_side: int
    resize: Literal["nearest", "area"]
    bias: bool


SweepSettings = TypeVar("SweepSettings", bound=HessianSweepSettings)


@dataclass(frozen=True)
class Point:
    """One sweep point: the value on the x axis, the hidden widths and the number of samples."""

    value: int
    hidden: tuple[int, ...]
    num_samples: int


# ----------------------------------------------------------------------------------------------------- data
def grey_pixels(images: np.ndarray) -> torch.Tensor:
    """uint8 images ``(n, h, w)`` or RGB ``(n, h, w, 3)`` → one channel ``(n, h, w)`` float64 in [0, 1]: pixels / 255,
    RGB through the ITU-R 601-2 luma L = 0.299 R + 0.587 G + 0.114 B (PIL's "L" mode)."""
    pixels = torch.as_tensor(images, dtype=torch.float64) / 255.0
    if pixels.ndim == 4:
        pixels = pixels @ torch.tensor(LUMA, dtype=torch.float64)
    return pixels


def downsample_images(images: np.ndarray, side: int, method: str) -> torch.Tensor:
    """Images (see :func:`grey_pixels`) → ``(n, side²)`` float64 in [0, 1], resized to side × side by ``nearest``
    interpolation or ``area`` (average pooling over the pixel areas each output pixel covers)."""
    pixels = grey_pixels(images)[:, None]
    resized = nnf.interpolate(pixels, size=(side, side), mode=method)
    return resized.reshape(len(images), side * side)


def one_hot(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """``(n, K)`` float64 one-hot rows."""
    return nnf.one_hot(torch.as_tensor(labels, dtype=torch.int64), num_classes).to(torch.float64)


def first_samples(images: ImageDataset, count: int, side: int, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``count`` training images (downsampled, flattened) and their one-hot labels."""
    if count > len(images.train_labels):
        raise ValueError(f"{count} samples requested, '{images.name}' has {len(images.train_labels)}")
    return (
        downsample_images(images.train_images[:count], side, method),
        one_hot(images.train_labels[:count], images.num_classes),
    )


# ----------------------------------------------------------------------------------------------------- compute
def point_key(dataset: str, loss: str, activation: str, point: Point) -> str:
    """File-name key of one point's record."""
    return f"{dataset}_{loss}_{activation}_{point.value}"


def network_for(
    point: Point, num_inputs: int, num_outputs: int, activation: str, bias: bool, seed: int
) -> tuple[MLP, torch.Tensor]:
    """The MLP of a point and its Glorot-normal θ, seeded by (seed, widths): one network per architecture."""
    mlp = MLP((num_inputs, *point.hidden, num_outputs), activation=activation, bias=bias)
    return mlp, glorot_normal_init(mlp, seeded_generator(seed, len(mlp.widths), *mlp.widths))


def compute_point(
    X: torch.Tensor,
    Y: torch.Tensor,
    loss: str,
    activation: str,
    point: Point,
    settings: HessianSweepSettings,
    device: torch.device,
) -> dict[str, Any]:
    """Ranks (with robustness reports), closed-form predictions and bounds of one network on (X, Y); the network's
    biases and init seed are the sweep's ``settings``."""
    started = time.time()
    mlp, theta = network_for(point, X.shape[1], Y.shape[1], activation, settings.bias, settings.seed)
    r = data_rank(X)
    reports = map_ranks(mlp, theta.to(device), X.to(device), Y.to(device), loss)
    return {
        "n": int(X.shape[0]),
        "d": int(X.shape[1]),
        "K": int(Y.shape[1]),
        "hidden": list(point.hidden),
        "p": mlp.num_params,
        "r": r,
        "ranks": {kind: report.as_dict() for kind, report in reports.items()},
        "predicted": predicted_ranks(r, point.hidden, int(Y.shape[1]), loss),
        "bounds": None if mlp.bias else hessian.rank_upper_bounds(mlp, int(X.shape[0]), r, loss),
        "time_s": round(time.time() - started, 3),
    }


def _source_hash() -> str:
    """Hash of the library code a point's numbers depend on."""
    return mechanism_hash(hessian)


def data_conditioning(X: torch.Tensor) -> dict[str, float | int]:
    """r = rank(X) and σ_r(X)/σ_1(X), the smallest singular value the rank counts relative to the largest: data
    close to rank deficient (a small ratio) put Hessian eigenvalues near the tolerance."""
    sigma = torch.linalg.svdvals(X.to(torch.float64))
    r = data_rank(X)
    return {"n": int(X.shape[0]), "r": r, "smallest_over_largest": float(sigma[r - 1] / sigma[0]) if r else 0.0}


def point_settings(settings: HessianSweepSettings) -> dict[str, Any]:
    """The settings a point's numbers depend on beyond its key, as recorded (fingerprinted): all but
    :data:`POINT_KEY_SETTINGS`."""
    return {key: value for key, value in settings.record().items() if key not in POINT_KEY_SETTINGS}


def run_sweep(
    settings: SweepSettings,
    out: Path,
    ctx: Context,
    data: DataSource,
    sweep: str,
    points: Callable[[SweepSettings], list[Point]],
) -> None:
    """Compute every point of the sweep (cached per point) and write metrics (one row per point × Hessian) and the
    summary (point records, the data's rank and conditioning per n, the largest Hessian and its time)."""
    started = time.time()
    out = Path(out)
    sweep_points = points(settings)
    max_samples = max(point.num_samples for point in sweep_points)
    sample_sizes = sorted({point.num_samples for point in sweep_points})
    common = point_settings(settings)
    records, conditioning, unavailable = [], {}, {}
    for dataset, images in available_datasets(
        settings.datasets, settings.optional_datasets, data.image_classification, unavailable
    ):
        X_all, Y_all = first_samples(images, max_samples, settings.image_side, settings.resize)
        conditioning[dataset] = [data_conditioning(X_all[:n]) for n in sample_sizes]
        for loss in settings.losses:
            for activation in settings.activations:
                for point in sweep_points:
                    key = point_key(dataset, loss, activation, point)
                    fingerprint = run_fingerprint(common, key, POINT_FORMAT, _source_hash())

                    def compute(point=point, loss=loss, activation=activation, key=key, fingerprint=fingerprint):
                        X, Y = X_all[: point.num_samples], Y_all[: point.num_samples]
                        record = compute_point(X, Y, loss, activation, point, settings, ctx.device)
                        return {
                            "fingerprint": fingerprint,
                            "key": key,
                            "dataset": dataset,
                            "loss": loss,
                            "activation": activation,
                            "value": point.value,
                            **record,
                        }

                    record, hit = cached_batch(out / BATCH_DIR / f"{key}.json", fingerprint, compute)
                    log.info(
                        "%s: p=%d r=%d ranks %s predicted %s (%s, %.1f s)",
                        key,
                        record["p"],
                        record["r"],
                        {k: v["rank"] for k, v in record["ranks"].items()},
                        record["predicted"],
                        "cached" if hit else "computed",
                        record["time_s"],
                    )
                    records.append(record)
    metrics = tidy_metrics(records, sweep)
    extra = {
        "sweep": sweep,
        "points": [{k: v for k, v in r.items() if k != "fingerprint"} for r in records],
        "data": conditioning,
        "unavailable": unavailable,
        "torch_threads": torch.get_num_threads(),
        "largest": max(
            ({"p": r["p"], "time_s": r["time_s"], "key": r["key"]} for r in records), key=lambda item: item["p"]
        ),
    }
    write_results(out, metrics, settings.record(), ctx, started, extra)


def tidy_metrics(records: list[dict], sweep: str) -> pd.DataFrame:
    """One row per point × Hessian: rank, prediction, bound, ranks at the other tolerances and the gap."""
    rows = []
    for record in records:
        for kind in KINDS:
            report = record["ranks"][kind]
            low, high = (
                report["ranks_at"][f"{f:g}"] for f in (hessian.TOLERANCE_FACTORS[0], hessian.TOLERANCE_FACTORS[-1])
            )
            rows.append(
                {
                    "dataset": record["dataset"],
                    "loss": record["loss"],
                    "activation": record["activation"],
                    "sweep": sweep,
                    "value": record["value"],
                    "n": record["n"],
                    "d": record["d"],
                    "r": record["r"],
                    "p": record["p"],
                    "hidden": "x".join(map(str, record["hidden"])),
                    "kind": kind,
                    "rank": report["rank"],
                    "predicted": record["predicted"][kind],
                    "bound": None if record["bounds"] is None else record["bounds"][kind],
                    "rank_tol_low": low,
                    "rank_tol_high": high,
                    "gap_log10": report["gap_log10"],
                    "largest_eigenvalue": report["largest"],
                    "time_s": record["time_s"],
                }
            )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------- figure
def load_sweep(
    results: Path, settings_class: type[SweepSettings]
) -> tuple[pd.DataFrame, dict[str, Any], SweepSettings]:
    """A sweep's metrics and summary (:func:`load_results`) and its settings, typed from the mapping the summary
    records."""
    metrics, summary = load_results(results)
    return metrics, summary, settings_class.from_mapping(summary["settings"], f"settings in {results}")


def plot_sweep(
    results: Path,
    figure_png: Path,
    figure: FigureContext,
    settings_class: type[SweepSettings],
    *,
    section: str,
    title: str,
    xlabel: str,
    describe: Callable[[SweepSettings], str],
) -> list[Path]:
    """Rows = losses, columns = dataset × activation: empirical ranks of H_L, H_O, H_F (markers), the linear-network
    formulas (lines; dotted where the network is not linear, for comparison only) and p (grey dashes), log scale.
    The settings are read from the summary as ``settings_class``; ``describe(settings)`` says what the sweep's networks
    and samples are (caption)."""
    metrics, summary, settings = load_sweep(results, settings_class)
    details = describe(settings) + " " + data_details(settings)
    losses = [loss for loss in settings.losses if loss in set(metrics["loss"])]
    columns = [
        (dataset, activation)
        for dataset in computed_datasets(settings, summary["data"])
        for activation in settings.activations
        if ((metrics["dataset"] == dataset) & (metrics["activation"] == activation)).any()
    ]
    apply_style()
    fig, axes = plt.subplots(
        len(losses),
        len(columns),
        figsize=(3.4 * len(columns) + 0.6, 2.7 * len(losses) + 0.9),
        squeeze=False,
        layout="constrained",
        sharex=True,
    )
    colours = {kind: f"C{k}" for k, kind in enumerate(KINDS)}
    markers = {"loss": "o", "outer": "s", "functional": "^"}
    for i, loss in enumerate(losses):
        for j, (dataset, activation) in enumerate(columns):
            ax = axes[i][j]
            part = metrics[
                (metrics["loss"] == loss) & (metrics["dataset"] == dataset) & (metrics["activation"] == activation)
            ]
            linear = activation == "linear"
            for kind in KINDS:
                rows = part[part["kind"] == kind].sort_values("value")
                ax.plot(
                    rows["value"],
                    rows["predicted"],
                    "-" if linear else ":",
                    color=colours[kind],
                    lw=1.3,
                    label=f"formula {KIND_LABELS[kind]}" if linear else f"linear formula {KIND_LABELS[kind]}",
                )
                ax.plot(
                    rows["value"],
                    rows["rank"],
                    markers[kind],
                    ms=3.5,
                    mfc="none",
                    color=colours[kind],
                    label=f"rank {KIND_LABELS[kind]}",
                )
            params = part[part["kind"] == "loss"].sort_values("value")
            ax.plot(params["value"], params["p"], "--", color="0.5", lw=1, label="#params p")
            ax.set_yscale("log")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_title(f"{DATASET_LABELS.get(dataset, dataset)}, {activation}, {LOSS_LABELS[loss]}", fontsize=9)
            if i == len(losses) - 1:
                ax.set_xlabel(xlabel)
            if j == 0:
                ax.set_ylabel("rank")
    legend = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    fig.legend(legend.values(), legend.keys(), loc="outside right upper", fontsize=7.5)
    add_title(fig, f"§{section} {title}")
    add_caption(fig, caption_text(f"§{section}", figure.tier, details, substitutions(summary, figure)))
    return save_figure(fig, figure_png)


def data_details(settings: HessianSweepSettings) -> str:
    """Caption text on the data and the networks."""
    side = settings.image_side
    return (
        f"First n training images, pixels/255, {settings.resize}-resized to {side}×{side} (d = {side * side}), "
        f"one-hot labels (K = 10); bias-free networks{' with biases' if settings.bias else ''}, Glorot-normal "
        f"init (one draw per architecture, seed {settings.seed}), at initialisation, float64. Rank: eigenvalues "
        f"of the symmetric Hessian above |λ|max·p·eps (H_O from the squared singular values of its nK×p factor), "
        f"each map decomposed on a subspace that holds its range (exact; H_L and H_F whole where p < 800)."
    )


def substitutions(summary: dict[str, Any], figure: FigureContext) -> str:
    """The caption's substitutions: the optional datasets the run could not obtain (what the settings cannot show),
    then how the recorded settings depart from the paper tier's (:meth:`FigureContext.substitutions`)."""
    unavailable = [
        f"{DATASET_LABELS.get(d, d)} unavailable here (data-unavailable in the scorecard)"
        for d in summary.get("unavailable", {})
    ]
    return figure.substitutions(summary["settings"], *unavailable)


def computed_datasets(settings: HessianSweepSettings, data: Mapping[str, Any]) -> list[str]:
    """The datasets the sweep ran on (those with a record in the summary's ``data``), in config order: optional ones
    that could not be obtained left out."""
    return [d for d in (*settings.datasets, *settings.optional_datasets) if d in data]


# ----------------------------------------------------------------------------------------------------- claims
def point_table(summary: dict) -> pd.DataFrame:
    """One row per computed point: keys, n, d, r, p, hidden and the ranks/predictions/bounds/gaps per Hessian."""
    rows = []
    for record in summary["points"]:
        row = {k: record[k] for k in ("dataset", "loss", "activation", "value", "n", "d", "K", "p", "r")}
        row["hidden"] = tuple(record["hidden"])
        for kind in KINDS:
            report = record["ranks"][kind]
            row[f"rank_{kind}"] = report["rank"]
            row[f"predicted_{kind}"] = record["predicted"][kind]
            row[f"bound_{kind}"] = None if record["bounds"] is None else record["bounds"][kind]
            row[f"ranks_at_{kind}"] = tuple(report["ranks_at"].values())
            row[f"gap_{kind}"] = report["gap_log10"]
        rows.append(row)
    return pd.DataFrame(rows)


def is_well_posed(row: Any) -> bool:
    """The numerical ranks of a point are well defined: every one is the same at τ/100, τ and 100τ, i.e. no computed
    eigenvalue lies within two orders of magnitude of the tolerance, where float64 cannot tell a small eigenvalue
    from rounding noise of a zero one (eigenvalues are accurate to ≈ eps·|λ|max, and τ = |λ|max·p·eps)."""
    return all(len(set(getattr(row, f"ranks_at_{kind}"))) == 1 for kind in KINDS)


def smallest_gap(rows: pd.DataFrame) -> float | None:
    """The smallest spectral gap at the cut (log10) over the rows and Hessians (None: no finite gap)."""
    gaps = [g for kind in KINDS for g in rows[f"gap_{kind}"] if g is not None and not pd.isna(g)]
    return round(float(min(gaps)), 2) if gaps else None


def _bracketed(row: Any, kind: str) -> bool:
    """The closed form lies between the ranks counted at 100τ and at τ/100."""
    ranks = getattr(row, f"ranks_at_{kind}")
    return min(ranks) <= getattr(row, f"predicted_{kind}") <= max(ranks)


def _mismatches(row: Any) -> list[str]:
    """'kind rank vs prediction' for every Hessian of a point whose rank differs from the closed form."""
    return [
        f"{kind} {getattr(row, f'rank_{kind}')} vs {getattr(row, f'predicted_{kind}')}"
        for kind in KINDS
        if getattr(row, f"rank_{kind}") != getattr(row, f"predicted_{kind}")
    ]


def formula_claims(summary: dict, settings: HessianSweepSettings, name: str, section: str) -> list[ClaimResult]:
    """Per dataset and loss: at every linear-network point whose numerical rank is well defined (:func:`is_well_posed`),
    rank H_L, H_O, H_F equal the closed forms. Ill-defined points (eigenvalues next to the tolerance, which happens
    when the data X have directions of tiny variance) are listed with what they gave, and counted where the formula
    at least lies between the ranks at 100τ and τ/100; when more than MAX_ILL_POSED of the points are ill-defined
    the claim is not shown."""
    table = point_table(summary)
    linear = table[table["activation"] == "linear"]
    out = []
    for dataset in computed_datasets(settings, summary["data"]):
        conditioning = summary["data"][dataset]
        worst = min((c["smallest_over_largest"] for c in conditioning), default=None)
        for loss in settings.losses:
            part = linear[(linear["loss"] == loss) & (linear["dataset"] == dataset)]
            rows = [(row, is_well_posed(row), _mismatches(row)) for row in part.itertuples()]
            failures = [f"x={row.value}: {', '.join(bad)}" for row, posed, bad in rows if posed and bad]
            ill_posed = [f"x={row.value} ({', '.join(bad) or 'equal at τ'})" for row, posed, bad in rows if not posed]
            k_eff = hessian.effective_outputs(10, loss)
            bottleneck = sum(min(row.hidden, default=10**9) < min(row.r, k_eff) for row, _, _ in rows)
            deficient = int((part["r"] < part["d"]).sum())
            bracketed = sum(all(_bracketed(row, kind) for kind in KINDS) for row, posed, _ in rows if not posed)
            shown = len(part) > 0 and not settings.bias and len(ill_posed) <= MAX_ILL_POSED * len(part)
            details = (
                f"{len(part)} points ({bottleneck} with a hidden width as the bottleneck q, {deficient} with "
                f"r < d); smallest spectral gap at the cut 10^{smallest_gap(part)}"
                + (f"; MISMATCHES: {'; '.join(failures[:8])}" if failures else "")
                + (
                    f"; {len(ill_posed)} ill-defined point(s) (a rank changes between τ/100 and 100τ; the data's "
                    f"smallest counted singular value is {'?' if worst is None else f'{worst:.1e}'} of its "
                    f"largest): {'; '.join(ill_posed[:6])}"
                    if ill_posed
                    else ""
                )
            )
            if settings.bias:
                details = "the closed forms are for bias-free networks; this tier's networks have biases"
            elif part.empty:
                details = "the tier runs no linear network"
            out.append(
                ClaimResult(
                    f"{dataset}_linear_{loss}_ranks_equal_formulas",
                    name,
                    section,
                    f"{DATASET_LABELS.get(dataset, dataset)}, {LOSS_LABELS[loss]}, linear networks: the numerical rank "
                    f"of H_L, H_O and H_F equals the closed forms at every sweep point where it is well defined "
                    f"(the same at τ/100, τ and 100τ)",
                    decide(not failures, shown),
                    {
                        "points": len(part),
                        "mismatches": len(failures),
                        "ill_posed_points": len(ill_posed),
                        "mismatches_at_ill_posed_points": sum(bool(bad) for _, posed, bad in rows if not posed),
                        "bottleneck_points": int(bottleneck),
                        "rank_deficient_points": deficient,
                        "smallest_gap_log10": smallest_gap(part),
                        "data_smallest_singular_ratio": worst,
                        "ill_defined_points_with_formula_within_tolerance_range": bracketed,
                    },
                    REFERENCE,
                    details,
                )
            )
    return out


def nonlinear_rows(summary: dict) -> pd.DataFrame:
    """Points of the non-linear networks."""
    table = point_table(summary)
    return table[table["activation"] != "linear"]


def estimate_ratios(nonlinear: pd.DataFrame) -> dict[str, dict[str, list[float]]]:
    """(min, max) of rank H_L / linear-network formula and of rank H_L / p per activation and loss."""
    ratios = {}
    for (activation, loss), part in nonlinear.groupby(["activation", "loss"]):
        relative = part["rank_loss"] / part["predicted_loss"]
        fraction = part["rank_loss"] / part["p"]
        ratios[f"{activation}/{loss}"] = {
            "rank_over_formula": [round(float(relative.min()), 3), round(float(relative.max()), 3)],
            "rank_over_p": [round(float(fraction.min()), 3), round(float(fraction.max()), 3)],
        }
    return ratios


def bound_claim(summary: dict, settings: HessianSweepSettings, name: str, section: str) -> ClaimResult:
    """Non-linear networks: every rank is within the exact upper bounds. How far the linear-network formula is from
    their rank is reported (rank/formula, rank/p), never asserted: the paper calls it an estimate."""
    nonlinear = nonlinear_rows(summary)
    above = [
        f"{row.dataset} {row.loss} {row.activation} x={row.value} {kind} {getattr(row, f'rank_{kind}')} > "
        f"{getattr(row, f'bound_{kind}')}"
        for row in nonlinear.itertuples()
        for kind in KINDS
        if getattr(row, f"bound_{kind}") is not None and getattr(row, f"rank_{kind}") > getattr(row, f"bound_{kind}")
    ]
    ratios = estimate_ratios(nonlinear)
    return ClaimResult(
        "nonlinear_ranks_within_bounds",
        name,
        section,
        "ReLU/tanh networks: rank ≤ p − (d − r)·M_1 (− M_{L−1} for CE), rank H_O ≤ n·K', and with one ReLU "
        "layer rank H_F ≤ 2M·min(r, K'); the linear formula is compared (rank/formula reported), never asserted",
        decide(not above, not nonlinear.empty and not settings.bias),
        {"points": int(len(nonlinear)), "violations": len(above), "ranges": ratios},
        "spec: bounds exact for any activation; ReLU −42 % … +43 % of the linear formula on 8×8 digits (dead units "
        "at small width), tanh up to +58 %",
        ("; ".join(above[:8]) + "; " if above else "")
        + (
            "rank H_L / linear formula and rank H_L / p, (min, max): " + str(ratios)
            if ratios
            else "the tier runs no non-linear network"
        ),
    )


def sweep_claims(summary: dict, settings: HessianSweepSettings, name: str, section: str) -> list[ClaimResult]:
    """The claims every sweep checks: closed forms (linear networks) and exact bounds (non-linear ones)."""
    return (
        formula_claims(summary, settings, name, section)
        + [bound_claim(summary, settings, name, section)]
        + unavailable_claims(summary, name, section)
    )


def unavailable_claims(summary: dict, name: str, section: str) -> list[ClaimResult]:
    """One ``data-unavailable`` record per optional dataset the run could not obtain (with the reason)."""
    return [
        ClaimResult(
            f"{dataset}_ranks_equal_formulas",
            name,
            section,
            f"{DATASET_LABELS.get(dataset, dataset)}: the sweep's claims on this dataset",
            DATA_UNAVAILABLE,
            None,
            REFERENCE,
            reason,
        )
        for dataset, reason in summary.get("unavailable", {}).items()
    ]


def loglog_slope(x: list[float], y: list[float]) -> float | None:
    """Least-squares slope of log y against log x (None with fewer than two positive points)."""
    pairs = [(math.log(a), math.log(b)) for a, b in zip(x, y) if a > 0 and b > 0]
    if len(pairs) < 2:
        return None
    return round(float(np.polyfit([a for a, _ in pairs], [b for _, b in pairs], 1)[0]), 3)
