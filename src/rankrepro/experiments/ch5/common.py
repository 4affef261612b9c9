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
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from rankrepro.core.errors import ConfigError
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
from rankrepro.hessian import exact
from rankrepro.hessian import maps as hessian
from rankrepro.hessian.maps import MLP, data_rank, glorot_normal_init, map_ranks, predicted_ranks
from rankrepro.pipeline.claims import DATA_UNAVAILABLE, NOT_SHOWN, ClaimResult, Gate, apply_gate, decide
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
#: the maps as claim texts name them
KIND_NAMES = {"loss": "H_L", "outer": "H_O", "functional": "H_F"}
LOSS_LABELS = {"mse": "MSE", "ce": "cross-entropy", "logcosh": "log-cosh"}
DATASET_LABELS = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar-10": "CIFAR-10 (grey)"}
REFERENCE = (
    "Singh et al. 2021: for linear networks the numerical rank equals the closed forms at every sweep "
    "point (authors' MNIST/CE width sweep, r = 41: rank H_L 216, 464, 639, 783 … 1,503; H_O plateaus at "
    "9·41 = 369); rank ∝ width while p ∝ width² (rank ≈ O(√p)); ReLU/tanh ranks stay close to the formulas"
)
#: a claim is decided only on sweeps (dataset × loss × activation × data variant) where at most this fraction of the
#: points have an ill-defined rank (:func:`decidable_sweeps`), the same rule for every claim of the chapter
MAX_ILL_POSED = 0.25
#: the paper's claim for ReLU/tanh networks — the linear-network formula is a faithful estimate of the rank — is
#: asserted as |rank H_L / formula − 1| ≤ this at every well-defined point. Fixed before the run from the spec: the
#: paper presents the formula as a tight estimate; the spec's own measurement on 8×8 digits (n = 100) spans −42 % …
#: +43 % for ReLU; a formula off by more than half the rank no longer estimates it
ESTIMATE_TOLERANCE = 0.5
#: settings a point's key already names (its dataset, loss, activation, data variant), or that only choose which
#: points run (``activation_max_params``): left out of its fingerprint, so that adding a dataset, loss, activation or
#: variant, or raising a cap, recomputes no other point
POINT_KEY_SETTINGS = (
    "datasets",
    "optional_datasets",
    "losses",
    "activations",
    "linear_variants",
    "activation_max_params",
)
#: version of the exact-rank records (:func:`exact_point`) in their fingerprints
EXACT_FORMAT = 1
#: exact ranks are computed for networks of at most this many parameters: their cost grows as p·k² + k³ (k ≈ the
#: rank), a few seconds at p ≈ 4,000 (the width sweep's widest) but over a minute at the depth sweep's p = 5,650 (one
#: core); above it an ill-defined float64 rank stays unsettled (hollow in the figures)
EXACT_MAX_PARAMS = 4500
#: the variant name of a sweep's own data and networks (its ``bias`` setting, the data as loaded)
MAIN = "main"

Dataset = Literal["mnist", "fashion-mnist", "cifar-10"]
Loss = Literal["mse", "ce", "logcosh"]
Activation = Literal["linear", "relu", "tanh"]


@dataclass(frozen=True)
class LinearVariant(SettingsRecord):
    """An extra run of a sweep's linear networks (schema ``hessian_linear_variant``): on data whose singular
    directions below ``near_null_fraction`` · σ_1(X) are projected out (0: the data as loaded), with biases in every
    layer when ``bias``, and with the first hidden layer's width fixed at ``first_hidden_width`` (None: the sweep's
    networks) — a bottleneck below the other hidden layers, where the biases above it add 2 M_l − q to rank H_F
    rather than q (:func:`rankrepro.hessian.maps.hidden_bias_excess`)."""

    near_null_fraction: float
    bias: bool
    first_hidden_width: int | None

    @property
    def name(self) -> str:
        """The variant's name in point keys, metrics and claim ids, e.g. ``near_null_0.01``, ``bias``,
        ``bias_first_4``."""
        parts = (
            ([f"near_null_{self.near_null_fraction:g}"] if self.near_null_fraction > 0 else [])
            + (["bias"] if self.bias else [])
            + ([f"first_{self.first_hidden_width}"] if self.first_hidden_width else [])
        )
        return "_".join(parts) or "plain"

    def short(self) -> str:
        """A few words for a figure panel's title, e.g. ``linear, σ<0.01σ1 cut``, ``linear + biases, M1=4``."""
        cut = f", σ<{self.near_null_fraction:g}σ1 cut" if self.near_null_fraction else ""
        first = f", M1={self.first_hidden_width}" if self.first_hidden_width else ""
        return f"linear{' + biases' if self.bias else ''}{cut}{first}"

    def text(self) -> str:
        """The variant in words (figure titles, claim statements)."""
        parts = (
            ([f"data without directions σ < {self.near_null_fraction:g}·σ1"] if self.near_null_fraction else [])
            + (["with biases"] if self.bias else [])
            + ([f"first hidden layer of width {self.first_hidden_width}"] if self.first_hidden_width else [])
        )
        return ", ".join(parts) or "as the main sweep"

    def fingerprinted(self) -> dict[str, Any]:
        """What a variant's points' numbers depend on beyond the sweep's settings (their fingerprint): the data cut
        and biases, and the first hidden width only where it is set (a variant without it keeps its fingerprints)."""
        fields: dict[str, Any] = {"near_null_fraction": self.near_null_fraction, "bias": self.bias}
        return fields | ({"first_hidden_width": self.first_hidden_width} if self.first_hidden_width else {})

    def network_point(self, point: Point) -> Point:
        """The sweep point's network in this variant: hidden widths (m, M_2, …) with m = ``first_hidden_width``,
        the same x value and samples (the point itself where the width is not set)."""
        if not self.first_hidden_width:
            return point
        if not point.hidden:
            raise ConfigError(f"variant {self.name}: point {point.value} has no hidden layer to narrow")
        return Point(point.value, (self.first_hidden_width, *point.hidden[1:]), point.num_samples)


@dataclass(frozen=True)
class ImageDataSettings(SettingsRecord):
    """What every chapter-5 experiment's settings hold: the data (the first training images of each of
    ``datasets``, grey, resized to ``image_side`` × ``image_side`` by ``resize``), the losses and hidden-layer
    activations swept, and the ``seed`` of the networks' init. An experiment that admits fewer losses or activations
    narrows the two fields' types (a redeclared field keeps its place)."""

    seed: int
    datasets: tuple[Dataset, ...]
    losses: tuple[Loss, ...]
    activations: tuple[Activation, ...]
    image_side: int
    resize: Literal["nearest", "area"]


@dataclass(frozen=True)
class HessianSweepSettings(ImageDataSettings):
    """What every chapter-5 sweep's settings hold (schema ``hessian_common``): the data, losses, activations and seed
    of :class:`ImageDataSettings`, datasets run only where available (``optional_datasets``), the networks' init
    (Glorot-normal; biases in every layer when ``bias``), and the extra runs of the linear networks on other data or
    with biases (``linear_variants``), and the largest network each activation listed in ``activation_max_params``
    is computed for (a tier's budget: a map's decomposition costs ∝ p³)."""

    optional_datasets: tuple[Dataset, ...]
    bias: bool
    linear_variants: tuple[LinearVariant, ...]
    activation_max_params: Mapping[Activation, int]

    def computes(self, activation: str, num_params: int) -> bool:
        """Whether the sweep computes a network of ``activation`` with p = ``num_params`` parameters: p at most the
        activation's ``activation_max_params`` entry (no entry: every point)."""
        return num_params <= self.activation_max_params.get(activation, num_params)

    def variant(self, name: str) -> LinearVariant | None:
        """The linear variant called ``name`` (None for :data:`MAIN`)."""
        return next((v for v in self.linear_variants if v.name == name), None)


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


def remove_near_null_directions(X: torch.Tensor, fraction: float) -> torch.Tensor:
    """X ``(n, d)`` with its singular directions of σ_i < ``fraction`` · σ_1 projected out: X V_k V_kᵀ, V_k the right
    singular vectors of the kept σ_i (X itself when ``fraction`` is 0). The result has rank k exactly (up to rounding
    of order eps·σ_1 in the removed directions), its smallest singular value ≥ fraction · σ_1: the data's rank is
    separated from zero by a stated gap instead of by whatever the images happen to give."""
    if fraction <= 0:
        return X
    _, sigma, vh = torch.linalg.svd(X.to(torch.float64), full_matrices=False)
    kept = vh[sigma >= fraction * sigma[0]]
    return (X.to(torch.float64) @ kept.T) @ kept


# ----------------------------------------------------------------------------------------------------- compute
def point_key(dataset: str, loss: str, activation: str, point: Point, variant: str = MAIN) -> str:
    """File-name key of one point's record (the variant's name appended for a linear variant)."""
    key = f"{dataset}_{loss}_{activation}_{point.value}"
    return key if variant == MAIN else f"{key}_{variant}"


def network_for(
    point: Point, num_inputs: int, num_outputs: int, activation: str, bias: bool, seed: int
) -> tuple[MLP, torch.Tensor]:
    """The MLP of a point and its Glorot-normal θ, seeded by (seed, widths): one network per architecture."""
    mlp = MLP((num_inputs, *point.hidden, num_outputs), activation=activation, bias=bias)
    return mlp, glorot_normal_init(mlp, seeded_generator(seed, len(mlp.widths), *mlp.widths))


def network_size(point: Point, num_inputs: int, num_outputs: int, bias: bool) -> int:
    """p of the point's MLP (d, M_1, …, M_{L-1}, K) (:attr:`rankrepro.hessian.maps.MLP.num_params`)."""
    return MLP((num_inputs, *point.hidden, num_outputs), bias=bias).num_params


def compute_point(
    X: torch.Tensor,
    Y: torch.Tensor,
    loss: str,
    activation: str,
    point: Point,
    bias: bool,
    seed: int,
    device: torch.device,
) -> dict[str, Any]:
    """Ranks (with robustness reports), closed-form predictions and bounds of one network (biases when ``bias``, init
    seed ``seed``) on (X, Y)."""
    started = time.time()
    mlp, theta = network_for(point, X.shape[1], Y.shape[1], activation, bias, seed)
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
        "predicted_with_biases": biased_predictions(X, r, point.hidden, int(Y.shape[1]), loss) if bias else None,
        "bounds": None if mlp.bias else hessian.rank_upper_bounds(mlp, int(X.shape[0]), r, loss),
        "time_s": round(time.time() - started, 3),
    }


def biased_predictions(X: torch.Tensor, r: int, hidden: tuple[int, ...], num_outputs: int, loss: str) -> dict[str, int]:
    """The closed forms of a linear network with biases (:func:`rankrepro.hessian.maps.predicted_ranks_with_biases`,
    with r̂ = rank [X 1]): H_O derived, H_F proved up to two hidden layers and conjectured beyond, H_L (with a
    hidden layer) conjectured, from exact ranks; the paper's formulas are for bias-free networks."""
    augmented = hessian.augmented_data_rank(X)
    return {
        **hessian.predicted_ranks_with_biases(r, augmented, hidden, num_outputs, loss),
        "augmented_data_rank": augmented,
    }


def exact_point(
    X: torch.Tensor, Y: torch.Tensor, loss: str, point: Point, bias: bool, seed: int, ranks: dict[str, dict]
) -> dict[str, Any]:
    """:func:`exact_measurement` of a sweep point's linear network (biases when ``bias``, init seed ``seed``). Only for
    data as loaded: a near-null variant's projected data are exactly of full rank over Q (the projection is rounded),
    so their exact ranks would answer another question than the variant asks — it is decided in float64, by design."""
    mlp, theta = network_for(point, X.shape[1], Y.shape[1], "linear", bias, seed)
    return exact_measurement(mlp, theta, X, Y, loss, ranks, seed)


def exact_measurement(
    mlp: MLP, theta: torch.Tensor, X: torch.Tensor, Y: torch.Tensor, loss: str, ranks: dict[str, dict], seed: int
) -> dict[str, Any]:
    """Exact ranks over Q of those of a linear network's H_L, H_O, H_F at θ whose float64 count in ``ranks`` is
    ill-defined (:func:`rankrepro.hessian.exact.exact_ranks`, sketches sized from those counts, drawn from ``seed``),
    the data's exact rank r (and
    r̂ = rank [X 1] with biases) and the closed forms at that r: the float64 problem taken exactly, for points whose
    float64 rank is ill-defined."""
    started = time.time()
    hidden, outputs = mlp.hidden, int(Y.shape[1])
    expected = {  # the maps whose float64 count is ill-defined; the others are settled already
        kind: max(report["ranks_at"].values()) for kind, report in ranks.items() if not report_is_well_defined(report)
    }
    r = exact.exact_matrix_rank(X, seed)
    record: dict[str, Any] = {
        "ranks": exact.exact_ranks(mlp, theta, X, Y, loss, expected, seed),
        "r": r,
        "predicted": predicted_ranks(r, hidden, outputs, loss),
        "moduli": list(exact.MODULI),
    }
    if mlp.bias:
        augmented = exact.exact_matrix_rank(hessian.with_constant_feature(X), seed)
        record["predicted_with_biases"] = {
            **hessian.predicted_ranks_with_biases(r, augmented, hidden, outputs, loss),
            "augmented_data_rank": augmented,
        }
    record["time_s"] = round(time.time() - started, 3)
    return record


def report_is_well_defined(report: dict) -> bool:
    """A map's float64 count (its record's rank report) is the same at τ/100, τ and 100τ."""
    return len(set(report["ranks_at"].values())) == 1


def ranks_are_well_defined(ranks: dict[str, dict]) -> bool:
    """Every map's float64 count is the same at τ/100, τ and 100τ (a point record's ``ranks``)."""
    return all(report_is_well_defined(report) for report in ranks.values())


def needs_exact_ranks(activation: str, near_null_fraction: float, record: dict) -> bool:
    """Whether a sweep point gets exact ranks (:func:`exact_point`): a linear network on the data as loaded (not a
    near-null projection: rounded, it is of full rank over Q), of at most :data:`EXACT_MAX_PARAMS` parameters, whose
    float64 rank is ill-defined."""
    return (
        activation == "linear"
        and near_null_fraction == 0
        and record["p"] <= EXACT_MAX_PARAMS
        and not ranks_are_well_defined(record["ranks"])
    )


def _exact_source_hash() -> str:
    """Hash of the library code the exact ranks depend on."""
    return mechanism_hash(hessian, exact)


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
    """Compute every point of the sweep (cached per point) — every dataset × loss × activation on the data as loaded,
    then the linear networks of each of ``linear_variants`` — and write metrics (one row per point × Hessian) and the
    summary (point records, the data's rank and conditioning per n and variant, the largest Hessian and its time, the
    CPU time of each variant, and the ranks with biases against the bias-free formula)."""
    started = time.time()
    out = Path(out)
    sweep_points = points(settings)
    max_samples = max(point.num_samples for point in sweep_points)
    sample_sizes = sorted({point.num_samples for point in sweep_points})
    common = point_settings(settings)
    code, exact_code = _source_hash(), _exact_source_hash()  # read the sources once, not per point
    records, unavailable = [], {}
    conditioning: dict[str, dict[str, list]] = {MAIN: {}, **{v.name: {} for v in settings.linear_variants}}
    runs = [(MAIN, settings.activations, None)] + [(v.name, ("linear",), v) for v in settings.linear_variants]
    for dataset, images in available_datasets(
        settings.datasets, settings.optional_datasets, data.image_classification, unavailable
    ):
        X_all, Y_all = first_samples(images, max_samples, settings.image_side, settings.resize)
        for variant, activations, spec in runs:
            fraction, bias = (0.0, settings.bias) if spec is None else (spec.near_null_fraction, spec.bias)
            inputs = {n: remove_near_null_directions(X_all[:n], fraction) for n in sample_sizes}
            conditioning[variant][dataset] = [data_conditioning(inputs[n]) for n in sample_sizes]
            point_common = common if spec is None else {**common, **spec.fingerprinted()}
            run_points = sweep_points if spec is None else [spec.network_point(point) for point in sweep_points]
            for loss in settings.losses:
                for activation in activations:
                    for point in run_points:
                        if not settings.computes(activation, network_size(point, X_all.shape[1], Y_all.shape[1], bias)):
                            continue
                        key = point_key(dataset, loss, activation, point, variant)
                        fingerprint = run_fingerprint(point_common, key, POINT_FORMAT, code)

                        def compute(point=point, loss=loss, activation=activation, key=key, fingerprint=fingerprint):
                            X, Y = inputs[point.num_samples], Y_all[: point.num_samples]
                            record = compute_point(X, Y, loss, activation, point, bias, settings.seed, ctx.device)
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
                        if needs_exact_ranks(activation, fraction, record):
                            exact_fingerprint = run_fingerprint(point_common, key, EXACT_FORMAT, exact_code)

                            def compute_exact(point=point, loss=loss, ranks=record["ranks"], fp=exact_fingerprint):
                                X, Y = inputs[point.num_samples], Y_all[: point.num_samples]
                                return {"fingerprint": fp, **exact_point(X, Y, loss, point, bias, settings.seed, ranks)}

                            found, _ = cached_batch(
                                out / BATCH_DIR / f"{key}.exact.json", exact_fingerprint, compute_exact
                            )
                            record = {**record, "exact": {k: v for k, v in found.items() if k != "fingerprint"}}
                            log.info("%s: exact ranks %s", key, {k: v["rank"] for k, v in found["ranks"].items()})
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
                        records.append({**record, "variant": variant})
    metrics = tidy_metrics(records, sweep)
    extra = {
        "sweep": sweep,
        "points": [{k: v for k, v in r.items() if k != "fingerprint"} for r in records],
        "data": conditioning[MAIN],
        "variants": {v.name: {**v.fingerprinted(), "data": conditioning[v.name]} for v in settings.linear_variants},
        "variant_time_s": {
            name: round(sum(r["time_s"] for r in records if r["variant"] == name), 1) for name in conditioning
        },
        "exact_time_s": round(sum((r.get("exact") or {}).get("time_s", 0.0) for r in records), 1),
        "bias_against_formula": bias_against_formula(records, set(biased_runs(settings))),
        "unavailable": unavailable,
        "torch_threads": torch.get_num_threads(),
        "largest": max(
            ({"p": r["p"], "time_s": r["time_s"], "key": r["key"]} for r in records), key=lambda item: item["p"]
        ),
    }
    write_results(out, metrics, settings.record(), ctx, started, extra)


def bias_against_formula(records: list[dict], biased: set[str]) -> dict[str, dict[str, Any]]:
    """Descriptive, not a claim (the paper gives no formula with biases): for the linear networks with biases, per
    dataset/loss/variant and Hessian, the range (min, max) of rank − bias-free formula and how many points' ranks
    are well defined (same at τ/100, τ, 100τ). ``biased``: the names of the variants whose networks have biases."""
    out: dict[str, dict[str, Any]] = {}
    for record in records:
        if record["activation"] != "linear" or record["variant"] not in biased:
            continue
        entry = out.setdefault(
            f"{record['dataset']}/{record['loss']}/{record['variant']}", {"points": 0, "well_defined": 0}
        )
        entry["points"] += 1
        entry["well_defined"] += all(len(set(record["ranks"][k]["ranks_at"].values())) == 1 for k in KINDS)
        for kind in KINDS:
            excess = record["ranks"][kind]["rank"] - record["predicted"][kind]
            low, high = entry.get(f"{kind}_minus_formula", [excess, excess])
            entry[f"{kind}_minus_formula"] = [min(low, excess), max(high, excess)]
    return out


def exact_entry(record: dict, kind: str) -> tuple[int | None, int | None]:
    """(exact rank over Q, closed form at the data's exact rank) of one map of a point record, or (None, None) where
    it has none (:func:`exact_point`)."""
    found = record.get("exact") or {}
    if kind not in found.get("ranks", {}):
        return None, None
    return found["ranks"][kind]["rank"], found["predicted"][kind]


def tidy_metrics(records: list[dict], sweep: str) -> pd.DataFrame:
    """One row per point × Hessian: rank, prediction, bound, ranks at the other tolerances and the gap; where the
    float64 rank is ill-defined for a linear network, its exact rank over Q and the closed form at the data's exact
    rank (``rank_exact``, ``predicted_exact``; empty elsewhere)."""
    rows = []
    for record in records:
        for kind in KINDS:
            report = record["ranks"][kind]
            rank_exact, predicted_exact = exact_entry(record, kind)
            low, high = (
                report["ranks_at"][f"{f:g}"] for f in (hessian.TOLERANCE_FACTORS[0], hessian.TOLERANCE_FACTORS[-1])
            )
            rows.append(
                {
                    "variant": record["variant"],
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
                    "predicted_with_biases": (record.get("predicted_with_biases") or {}).get(kind),
                    "bound": None if record["bounds"] is None else record["bounds"][kind],
                    "rank_tol_low": low,
                    "rank_tol_high": high,
                    "gap_log10": report["gap_log10"],
                    "largest_eigenvalue": report["largest"],
                    "rank_exact": rank_exact,
                    "predicted_exact": predicted_exact,
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


def plot_ranks(ax: Any, x: pd.Series, rows: pd.DataFrame, marker: str, colour: str, label: str) -> int:
    """Draw the ranks of ``rows`` at ``x``: filled markers where the rank is the same at τ/100 and 100τ; where it is
    ill-defined (it changes between the two), the exact rank over Q with a black edge when it was computed
    (``rank_exact``), else the float64 count hollow; returns the number of hollow points."""
    fragile = rows["rank_tol_low"] != rows["rank_tol_high"]
    known = rows["rank_exact"].notna() if "rank_exact" in rows else pd.Series(False, index=rows.index)
    ax.plot(x[~fragile], rows["rank"][~fragile], marker, ms=3.5, mfc=colour, color=colour, label=label)
    settled = fragile & known
    ax.plot(x[settled], rows["rank_exact"][settled] if settled.any() else rows["rank"][settled], marker, ms=3.5,
            mfc=colour, mec="k", mew=0.7, color=colour, label=label)  # fmt: skip
    hollow = fragile & ~known
    ax.plot(x[hollow], rows["rank"][hollow], marker, ms=3.5, mfc="none", color=colour, label=label)
    return int(hollow.sum())


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
    """Rows = losses, columns = dataset × activation, then dataset × linear variant: empirical ranks of H_L, H_O, H_F
    (markers: filled where the rank is well defined, hollow where it changes between τ/100 and 100τ), the
    linear-network formulas (lines: with biases for the variants with biases; dotted where the network is not linear,
    for comparison only) and p
    (grey dashes), log scale. The settings are read from the summary as ``settings_class``; ``describe(settings)``
    says what the sweep's networks and samples are (caption)."""
    metrics, summary, settings = load_sweep(results, settings_class)
    details = describe(settings) + " " + data_details(settings)
    losses = [loss for loss in settings.losses if loss in set(metrics["loss"])]
    datasets = computed_datasets(settings, summary["data"])
    columns = [(d, a, MAIN) for d in datasets for a in settings.activations] + [
        (d, "linear", v.name) for d in datasets for v in settings.linear_variants
    ]
    columns = [
        column
        for column in columns
        if (
            (metrics["dataset"] == column[0]) & (metrics["activation"] == column[1]) & (metrics["variant"] == column[2])
        ).any()
    ]
    apply_style()
    fig, axes = plt.subplots(
        len(losses),
        len(columns),
        figsize=(3.1 * len(columns) + 0.6, 2.6 * len(losses) + 1.1),
        squeeze=False,
        layout="constrained",
        sharex=True,
    )
    colours = {kind: f"C{k}" for k, kind in enumerate(KINDS)}
    markers = {"loss": "o", "outer": "s", "functional": "^"}
    ill_defined = 0
    for i, loss in enumerate(losses):
        for j, (dataset, activation, variant) in enumerate(columns):
            ax = axes[i][j]
            part = metrics[
                (metrics["loss"] == loss)
                & (metrics["dataset"] == dataset)
                & (metrics["activation"] == activation)
                & (metrics["variant"] == variant)
            ]
            spec = settings.variant(variant)
            linear = activation == "linear"  # its closed forms: bias-free, or with biases (their own column)
            formula = "predicted_with_biases" if linear and (spec.bias if spec else settings.bias) else "predicted"
            for kind in KINDS:
                rows = part[part["kind"] == kind].sort_values("value")
                ax.plot(
                    rows["value"],
                    rows[formula],
                    "-" if linear else ":",
                    color=colours[kind],
                    lw=1.3,
                    label=f"formula {KIND_LABELS[kind]}" if linear else f"linear bias-free formula {KIND_LABELS[kind]}",
                )
                ill_defined += plot_ranks(
                    ax, rows["value"], rows, markers[kind], colours[kind], f"rank {KIND_LABELS[kind]}"
                )
            params = part[part["kind"] == "loss"].sort_values("value")
            ax.plot(params["value"], params["p"], "--", color="0.5", lw=1, label="#params p")
            ax.set_yscale("log")
            ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
            where = activation if spec is None else spec.short()
            ax.set_title(f"{DATASET_LABELS.get(dataset, dataset)}, {where}, {LOSS_LABELS[loss]}", fontsize=7.5)
            if i == len(losses) - 1:
                ax.set_xlabel(xlabel)
            if j == 0:
                ax.set_ylabel("rank")
    legend = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    exact_count = int(
        ((metrics["rank_tol_low"] != metrics["rank_tol_high"]) & metrics["rank_exact"].notna()).sum()
        if "rank_exact" in metrics
        else 0
    )
    if exact_count:
        legend["black edge: exact rank over Q"] = Line2D([], [], marker="o", ls="", ms=3.5, mec="k", color="0.6")
    legend["hollow: rank ill-defined"] = Line2D([], [], marker="o", ls="", ms=3.5, mfc="none", color="0.3")
    fig.legend(legend.values(), legend.keys(), loc="outside right upper", fontsize=7.5)
    add_title(fig, f"§{section} {title}")
    marking = (
        f" Filled markers: the float64 rank is well defined (the same at τ/100, τ and 100τ); black-edged markers "
        f"({exact_count} of {len(metrics)} here): it is ill-defined (an eigenvalue lies within 100× of the "
        f"tolerance) and the exact rank over Q of the float64 problem is shown (linear networks, computed modulo "
        f"primes); hollow markers ({ill_defined} here): ill-defined, the float64 count at τ."
    )
    add_caption(
        fig,
        caption_text(
            f"§{section}", figure.tier, details + marking + variant_details(settings), substitutions(summary, figure)
        ),
    )
    return save_figure(fig, figure_png)


def data_details(settings: HessianSweepSettings) -> str:
    """Caption text on the data and the networks."""
    side = settings.image_side
    return (
        f"First n training images, pixels/255, {settings.resize}-resized to {side}×{side} (d = {side * side}), "
        f"one-hot labels (K = 10); {'networks with biases' if settings.bias else 'bias-free networks'}, "
        f"Glorot-normal init (one draw per architecture, seed {settings.seed}), at initialisation, float64. Rank: "
        f"eigenvalues of the symmetric Hessian above τ = |λ|max·p·eps (H_O from the squared singular values of its "
        f"nK×p factor), each map decomposed on a subspace that holds its range (exact; H_L and H_F whole where "
        f"p < 800)." + size_cut_details(settings)
    )


def size_cut_details(settings: HessianSweepSettings) -> str:
    """Caption text on the activations computed only up to a parameter count (none: empty)."""
    cuts = [
        f"{activation} networks only up to p = {cap:,}" for activation, cap in settings.activation_max_params.items()
    ]
    return f" This tier computes {', '.join(cuts)} (their maps' decompositions cost ∝ p³)." if cuts else ""


def variant_details(settings: HessianSweepSettings) -> str:
    """Caption text on the extra runs of the linear networks (none: empty)."""
    texts = []
    for v in settings.linear_variants:
        text = f" Columns '{v.short()}': the linear networks again"
        if v.near_null_fraction:
            text += (
                f", on the data X projected onto its singular directions with σ ≥ {v.near_null_fraction:g}·σ1(X) "
                f"(per n), so that r = rank(X) is separated from zero by a stated gap"
            )
        if v.first_hidden_width:
            text += (
                f", with the first hidden layer of width {v.first_hidden_width} (a bottleneck below the others; "
                f"the x value is the other layers' width)"
            )
        if v.bias:
            text += (
                ", with biases in every layer: the lines are the closed forms with biases of docs/chapters/ch5.md "
                "(not the paper's, which are bias-free): H_O's derived, H_F's proved up to two hidden layers, H_L's "
                "conjectured from exact ranks of random networks"
            )
        texts.append(text + ".")
    return "".join(texts)


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
    """One row per computed point: keys (variant, dataset, loss, activation, value), n, d, r, p, hidden and the
    ranks/predictions/bounds/gaps per Hessian."""
    rows = []
    for record in summary["points"]:
        row = {k: record[k] for k in ("dataset", "loss", "activation", "value", "n", "d", "K", "p", "r")}
        row["variant"] = record.get("variant", MAIN)
        row["hidden"] = tuple(record["hidden"])
        for kind in KINDS:
            row[f"predicted_biased_{kind}"] = (record.get("predicted_with_biases") or {}).get(kind)
            row[f"predicted_biased_exact_{kind}"] = (
                (record.get("exact") or {}).get("predicted_with_biases") or {}
            ).get(kind)
            report = record["ranks"][kind]
            row[f"exact_{kind}"], row[f"predicted_exact_{kind}"] = exact_entry(record, kind)
            row[f"rank_{kind}"] = report["rank"]
            row[f"predicted_{kind}"] = record["predicted"][kind]
            row[f"bound_{kind}"] = None if record["bounds"] is None else record["bounds"][kind]
            row[f"ranks_at_{kind}"] = tuple(report["ranks_at"].values())
            row[f"gap_{kind}"] = report["gap_log10"]
        rows.append(row)
    columns = ["variant", "dataset", "loss", "activation", "value", "n", "d", "K", "p", "r", "hidden"]
    return pd.DataFrame(rows, columns=None if rows else columns)


def float_rank_is_well_defined(row: Any, kind: str) -> bool:
    """One map's float64 count at a point-table row is the same at τ/100, τ and 100τ."""
    return len(set(getattr(row, f"ranks_at_{kind}"))) == 1


def is_well_posed(row: Any) -> bool:
    """The numerical ranks of a point are well defined: every one is the same at τ/100, τ and 100τ, i.e. no computed
    eigenvalue lies within two orders of magnitude of the tolerance, where float64 cannot tell a small eigenvalue
    from rounding noise of a zero one (eigenvalues are accurate to ≈ eps·|λ|max, and τ = |λ|max·p·eps)."""
    return all(float_rank_is_well_defined(row, kind) for kind in KINDS)


def bias_free(table: pd.DataFrame, settings: HessianSweepSettings) -> pd.DataFrame:
    """The rows of networks without biases (the main sweep unless ``settings.bias``; variants without ``bias``)."""
    biased = {v.name for v in settings.linear_variants if v.bias} | ({MAIN} if settings.bias else set())
    return table[~table["variant"].isin(biased)] if len(table) else table


#: what identifies one sweep (a line of points) in the point table
SWEEP_KEYS = ["variant", "dataset", "loss", "activation"]


def sweep_name(key: tuple) -> str:
    """'dataset/loss/activation' (+ '/variant' for a linear variant) of a :data:`SWEEP_KEYS` tuple."""
    variant, dataset, loss, activation = key
    return "/".join([dataset, loss, activation] + ([] if variant == MAIN else [variant]))


def decidable_sweeps(
    table: pd.DataFrame, what: str, decisive: Callable[[Any], bool] = is_well_posed
) -> tuple[dict[tuple, pd.DataFrame], Gate]:
    """The one rule every chapter-5 claim is decided under. A point decides a claim only when the claim's check gives
    the same answer at τ/100, τ and 100τ — for the claims of equality with a closed form, when its ranks are well
    defined (:func:`is_well_posed`, the default ``decisive``). The claim's points are grouped into sweeps
    (:data:`SWEEP_KEYS`); a sweep counts only when at most :data:`MAX_ILL_POSED` of its points are not decisive, and
    then only at its decisive points. Returns those sweeps (key → decisive rows, sorted by the swept value) and the
    claim's :class:`Gate`: at least one sweep counts (else the claim cannot be decided at this scale)."""
    kept, counts = {}, []
    if len(table):
        for key, rows in table.groupby(SWEEP_KEYS, sort=True):
            posed = rows[[decisive(row) for row in rows.itertuples()]].sort_values("value")
            counts.append(f"{sweep_name(key)} {len(posed)}/{len(rows)}")
            if len(rows) - len(posed) <= MAX_ILL_POSED * len(rows):
                kept[key] = posed
    gate = Gate(
        f"{what}: at least one sweep where the check gives the same answer at τ/100, τ and 100τ at ≥ "
        f"{1 - MAX_ILL_POSED:.0%} of its points; decided on such sweeps at those points",
        bool(kept),
        "decisive points per sweep: " + ("; ".join(counts) if counts else "no points"),
    )
    return kept, gate


def smallest_gap(rows: pd.DataFrame) -> float | None:
    """The smallest spectral gap at the cut (log10) over the rows and Hessians (None: no finite gap)."""
    gaps = [g for kind in KINDS for g in rows[f"gap_{kind}"] if g is not None and not pd.isna(g)]
    return round(float(min(gaps)), 2) if gaps else None


def _bracketed(row: Any, kind: str) -> bool:
    """The closed form lies between the ranks counted at 100τ and at τ/100."""
    ranks = getattr(row, f"ranks_at_{kind}")
    return min(ranks) <= getattr(row, f"predicted_{kind}") <= max(ranks)


def exact_rank_of(row: Any, kind: str) -> int | None:
    """The exact rank over Q of one map at a point, where it was computed (the float64 rank was ill-defined)."""
    value = getattr(row, f"exact_{kind}", None)
    return None if value is None or pd.isna(value) else int(value)


def has_exact_rank(row: Any) -> bool:
    """Some map of the point has an exact rank over Q (its float64 count was ill-defined)."""
    return any(exact_rank_of(row, kind) is not None for kind in KINDS)


def settled_rank(row: Any, kind: str, formula: str = "predicted") -> tuple[int, int] | None:
    """(rank, closed form) of one map at a point as a claim reads it: the exact rank over Q and the closed form at the
    data's exact rank where it was computed (the map's float64 count was ill-defined); else the float64 count and
    closed form where that count is the same at τ/100, τ and 100τ; None when neither (an ill-defined rank of a
    nonlinear network). ``formula``: the point table's closed-form columns, ``predicted`` (bias-free) or
    ``predicted_biased`` (with biases)."""
    exact_value = exact_rank_of(row, kind)
    if exact_value is not None:
        return exact_value, int(getattr(row, f"{formula}_exact_{kind}"))
    if float_rank_is_well_defined(row, kind):
        return int(getattr(row, f"rank_{kind}")), int(getattr(row, f"{formula}_{kind}"))
    return None


def is_settled(row: Any) -> bool:
    """Every map's rank at the point is settled (:func:`settled_rank`): well defined in float64, or exact."""
    return all(settled_rank(row, kind) is not None for kind in KINDS)


def formula_mismatches(row: Any) -> list[str]:
    """'kind rank vs prediction' for every Hessian of a point whose rank differs from the closed form (the settled
    rank where there is one, :func:`settled_rank`; the float64 count otherwise)."""
    out = []
    for kind in KINDS:
        rank, predicted = settled_rank(row, kind) or (getattr(row, f"rank_{kind}"), getattr(row, f"predicted_{kind}"))
        if rank != predicted:
            out.append(f"{kind} {rank} vs {predicted}" + (" (exact)" if exact_rank_of(row, kind) is not None else ""))
    return out


def _data_ratio(summary: dict, variant: str, dataset: str) -> float | None:
    """The data's smallest counted singular value over its largest, the worst over the sweep's n."""
    data = summary["data"] if variant == MAIN else summary.get("variants", {}).get(variant, {}).get("data", {})
    return min((c["smallest_over_largest"] for c in data.get(dataset, [])), default=None)


def formula_claims(summary: dict, settings: HessianSweepSettings, name: str, section: str) -> list[ClaimResult]:
    """Per data variant (the main sweep, then every bias-free linear variant), dataset and loss: at every
    linear-network point whose numerical rank is well defined, rank H_L, H_O, H_F equal the closed forms, under
    :func:`decidable_sweeps`. Ill-defined points (eigenvalues next to the tolerance, which happens when the data X
    have directions of tiny variance) are listed with what they gave, and counted where the formula at least lies
    between the ranks at 100τ and τ/100. With biases in the main sweep its claims are not shown (the closed forms are
    bias-free)."""
    table = point_table(summary)
    linear = table[table["activation"] == "linear"] if len(table) else table
    variants = [(MAIN, None)] + [(v.name, v) for v in settings.linear_variants if not v.bias]
    out = []
    for variant, spec in variants:
        for dataset in computed_datasets(settings, summary["data"]):
            worst = _data_ratio(summary, variant, dataset)
            for loss in settings.losses:
                part = (
                    linear[(linear["loss"] == loss) & (linear["dataset"] == dataset) & (linear["variant"] == variant)]
                    if len(linear)
                    else linear
                )
                out.append(_formula_claim(part, variant, spec, dataset, loss, worst, settings, name, section))
    return out


def _formula_claim(
    part: pd.DataFrame,
    variant: str,
    spec: LinearVariant | None,
    dataset: str,
    loss: str,
    worst: float | None,
    settings: HessianSweepSettings,
    name: str,
    section: str,
) -> ClaimResult:
    """The formula claim of one sweep (see :func:`formula_claims`)."""
    label = f"{DATASET_LABELS.get(dataset, dataset)}, {LOSS_LABELS[loss]}"
    if spec is not None:
        label += f", {spec.text()}"
    kept, gate = decidable_sweeps(part, f"{label}, linear networks", is_settled)
    rows = [(row, is_settled(row), formula_mismatches(row)) for row in part.itertuples()]
    failures = [f"x={row.value}: {', '.join(bad)}" for row, posed, bad in rows if posed and bad]
    ill_posed = [f"x={row.value} ({', '.join(bad) or 'equal at τ'})" for row, posed, bad in rows if not posed]
    exact_points = [row.value for row, _, _ in rows if has_exact_rank(row)]
    k_eff = hessian.effective_outputs(10, loss)
    bottleneck = sum(min(row.hidden, default=10**9) < min(row.r, k_eff) for row, _, _ in rows)
    deficient = int((part["r"] < part["d"]).sum()) if len(part) else 0
    bracketed = sum(all(_bracketed(row, kind) for kind in KINDS) for row, posed, _ in rows if not posed)
    details = (
        f"{len(part)} points ({bottleneck} with a hidden width as the bottleneck q, {deficient} with r < d); "
        f"smallest spectral gap at the cut 10^{smallest_gap(part) if len(part) else None}"
        + (f"; MISMATCHES: {'; '.join(failures[:8])}" if failures else "")
        + (
            f"; {len(exact_points)} point(s) whose float64 rank is ill-defined (the data's smallest counted singular "
            f"value is {'?' if worst is None else f'{worst:.1e}'} of its largest) decided by exact ranks over Q: "
            f"x = {', '.join(map(str, exact_points[:12]))}{' …' if len(exact_points) > 12 else ''}"
            if exact_points
            else ""
        )
        + (
            f"; {len(ill_posed)} ill-defined point(s) (a rank changes between τ/100 and 100τ; the data's smallest "
            f"counted singular value is {'?' if worst is None else f'{worst:.1e}'} of its largest): "
            f"{'; '.join(ill_posed[:6])}"
            if ill_posed
            else ""
        )
    )
    verdict = decide(not failures)
    if variant == MAIN and settings.bias:
        details, verdict = "the closed forms are for bias-free networks; this tier's networks have biases", NOT_SHOWN
    elif part.empty:
        details = "the tier runs no linear network"
    claim = ClaimResult(
        f"{dataset}_linear_{loss}_ranks_equal_formulas" + ("" if variant == MAIN else f"_{variant}"),
        name,
        section,
        f"{label}, linear networks: the rank of H_L, H_O and H_F equals the closed forms at every sweep point — the "
        f"float64 numerical rank where it is well defined (the same at τ/100, τ and 100τ), elsewhere the exact rank "
        f"over Q of the float64 problem (computed modulo primes; the closed form then at the data's exact rank)"
        + (
            f" — on the data projected onto its singular directions with σ ≥ {spec.near_null_fraction:g}·σ1, r its rank"
            if spec is not None and spec.near_null_fraction
            else ""
        ),
        verdict,
        {
            "points": len(part),
            "mismatches": len(failures),
            "ill_posed_points": len(ill_posed),
            "exact_rank_points": len(exact_points),
            "mismatches_at_ill_posed_points": sum(bool(bad) for _, posed, bad in rows if not posed),
            "bottleneck_points": int(bottleneck),
            "rank_deficient_points": deficient,
            "smallest_gap_log10": smallest_gap(part) if len(part) else None,
            "data_smallest_singular_ratio": worst,
            "ill_defined_points_with_formula_within_tolerance_range": bracketed,
        },
        REFERENCE,
        details,
    )
    return apply_gate(gate, [claim])[0]


def maps_are_settled(kinds: tuple[str, ...]) -> Callable[[Any], bool]:
    """The decisive-point test of a claim on the maps ``kinds``: each one's rank at the point is settled — exact over
    Q, or the same in float64 at τ/100, τ and 100τ (:func:`settled_rank`)."""
    return lambda row: all(settled_rank(row, kind) is not None for kind in kinds)


def biased_runs(settings: HessianSweepSettings) -> list[str]:
    """The runs whose networks have biases: the main sweep when ``settings.bias``, then each variant with ``bias``."""
    return ([MAIN] if settings.bias else []) + [v.name for v in settings.linear_variants if v.bias]


#: the claims on networks with biases: (maps, claim-id stem, statement, reference) — H_O's closed form is derived,
#: H_F's proved up to two hidden layers, H_L's conjectured from exact ranks
#: (:func:`rankrepro.hessian.maps.predicted_ranks_with_biases`)
BIAS_CLAIMS = (
    (
        ("outer",),
        "outer_rank_equals_bias_formula",
        "the rank of H_O equals the closed form with biases — q(r + K' − q) + K' when the all-ones vector is not in "
        "the column space of X, q(r + K' − q) + (K' − q)·[q < r] when it is",
        "derived here (docs/chapters/ch5.md; Singh et al. 2021 give the formulas of bias-free networks only); the "
        "spec observes rank H_O gaining K when the all-ones vector is not in the row space of Xᵀ",
    ),
    (
        ("functional", "loss"),
        "functional_and_loss_ranks_equal_bias_formulas",
        "the ranks of H_F and H_L equal the closed forms with biases — H_F: the bias-free formula at r̂ = rank [X 1] "
        "plus Σ_{l=2}^{L-1} e_l (e_l = 2M_l − q when the narrowest layer is a hidden layer below l and none above "
        "it, else q), H_L = H_O + H_F − (q(2s − q) − q), q and s at r̂",
        "H_F proved here for one and two hidden layers at a generic point, conjectured for more; H_L conjectured "
        "from exact ranks over Q of random networks (docs/chapters/ch5.md; scripts/bias_formula_evidence.py); the "
        "paper's bias formulas were not available offline — this checks that the closed forms hold on the paper's "
        "data",
    ),
)


def bias_formula_claims(summary: dict, settings: HessianSweepSettings, name: str, section: str) -> list[ClaimResult]:
    """Per run with biases (:func:`biased_runs`), dataset, loss and entry of :data:`BIAS_CLAIMS`: at every
    linear-network point where the ranks of the entry's maps are settled (:func:`maps_are_settled`), they equal the
    closed forms with biases (:func:`rankrepro.hessian.maps.predicted_ranks_with_biases`), under
    :func:`decidable_sweeps`. Exact equality, as for the bias-free formulas."""
    table = point_table(summary)
    linear = table[table["activation"] == "linear"] if len(table) else table
    out = []
    for variant in biased_runs(settings):
        spec = settings.variant(variant)
        for dataset in computed_datasets(settings, summary["data"]):
            for loss in settings.losses:
                part = (
                    linear[(linear["loss"] == loss) & (linear["dataset"] == dataset) & (linear["variant"] == variant)]
                    if len(linear)
                    else linear
                )
                out.extend(
                    _bias_formula_claim(part, variant, spec, dataset, loss, name, section, entry)
                    for entry in BIAS_CLAIMS
                )
    return out


def _bias_formula_claim(
    part: pd.DataFrame,
    variant: str,
    spec: LinearVariant | None,
    dataset: str,
    loss: str,
    name: str,
    section: str,
    entry: tuple,
) -> ClaimResult:
    """One claim of :data:`BIAS_CLAIMS` on one sweep (see :func:`bias_formula_claims`); ``spec``: the sweep's linear
    variant (None: the main sweep), whose first hidden width, when set, the statement names."""
    kinds, stem, statement, reference = entry
    maps = ", ".join(KIND_NAMES[kind] for kind in kinds)
    first = spec.first_hidden_width if spec is not None else None
    label = f"{DATASET_LABELS.get(dataset, dataset)}, {LOSS_LABELS[loss]}, linear networks with biases" + (
        f" and a first hidden layer of width {first}" if first else ""
    )
    settled = maps_are_settled(kinds)
    kept, gate = decidable_sweeps(part, f"{label} ({maps})", settled)
    checked, failures, added = 0, [], {kind: set() for kind in kinds}
    for rows in kept.values():
        for row in rows.itertuples():
            checked += 1
            for kind in kinds:
                added[kind].add(int(getattr(row, f"predicted_biased_{kind}") - getattr(row, f"predicted_{kind}")))
                rank, predicted = settled_rank(row, kind, "predicted_biased")
                if rank != predicted:
                    failures.append(f"x={row.value} {KIND_NAMES[kind]}: {rank} vs {predicted}")
    ill_posed = [f"x={row.value}" for row in part.itertuples() if not settled(row)]
    exact_points = [
        str(row.value) for row in part.itertuples() if any(exact_rank_of(row, kind) is not None for kind in kinds)
    ]
    added_text = "; ".join(f"{KIND_NAMES[kind]} {sorted(added[kind])}" for kind in kinds)
    claim = ClaimResult(
        f"{dataset}_linear_{loss}_{stem}" + ("" if variant == MAIN else f"_{variant}"),
        name,
        section,
        f"{label}: {statement} — at every sweep point: the float64 numerical rank where it is well defined (the same "
        f"at τ/100, τ and 100τ), elsewhere the exact rank over Q (the closed form then at the data's exact ranks)",
        decide(not failures, checked > 0),
        {
            "points": len(part),
            "points_checked": checked,
            "mismatches": len(failures),
            "ill_posed_points": len(ill_posed),
            "exact_rank_points": len(exact_points),
            "formula_minus_bias_free_formula": (
                sorted(added[kinds[0]]) if len(kinds) == 1 else {kind: sorted(added[kind]) for kind in kinds}
            ),
        },
        reference,
        (f"MISMATCHES: {'; '.join(failures[:8])}; " if failures else "")
        + f"{checked} points checked; the formula with biases minus the bias-free one: {added_text}"
        + (f"; exact ranks over Q at x = {', '.join(exact_points[:12])}" if exact_points else "")
        + (f"; ill-defined at {', '.join(ill_posed[:8])}" if ill_posed else "")
        + ("" if len(part) else "; the tier runs no linear network with biases"),
    )
    return apply_gate(gate, [claim])[0]


def estimate_ratios(nonlinear: pd.DataFrame) -> dict[str, dict[str, list[float]]]:
    """(min, max) of rank / linear-network formula for each Hessian and of rank H_L / p, per activation and loss."""
    ratios = {}
    for (activation, loss), part in nonlinear.groupby(["activation", "loss"]):
        entry = {}
        for kind in KINDS:
            relative = part[f"rank_{kind}"] / part[f"predicted_{kind}"].where(part[f"predicted_{kind}"] > 0)
            entry[f"{kind}_over_formula"] = [round(float(relative.min()), 3), round(float(relative.max()), 3)]
        fraction = part["rank_loss"] / part["p"]
        entry["loss_over_p"] = [round(float(fraction.min()), 3), round(float(fraction.max()), 3)]
        ratios[f"{activation}/{loss}"] = entry
    return ratios


def within_estimate(rank: int, formula: int) -> bool:
    """|rank / formula − 1| ≤ :data:`ESTIMATE_TOLERANCE` (a formula of 0 estimates only a rank of 0)."""
    return rank == 0 if formula == 0 else abs(rank / formula - 1) <= ESTIMATE_TOLERANCE


def estimate_can_fail_both_ways(row: Any) -> bool:
    """The ±:data:`ESTIMATE_TOLERANCE` band around a point's formula lies below p: (1 + tol)·formula < p. Every rank
    is ≤ p, so where the band reaches p a rank above the formula can never leave it, and the check could fail only
    from below — such a point cannot show the formula to be an estimate. Decided from p and the formula alone, before
    any rank is read."""
    return (1 + ESTIMATE_TOLERANCE) * row.predicted_loss < row.p


def two_sided_points(table: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The rows where the estimate check can fail both ways (:func:`estimate_can_fail_both_ways`) and how many were
    left out. The estimate claims are decided on these rows only (then under :func:`decidable_sweeps`)."""
    if not len(table):
        return table, 0
    keep = [estimate_can_fail_both_ways(row) for row in table.itertuples()]
    return table[keep], len(table) - sum(keep)


def estimate_sweeps(table: pd.DataFrame, what: str) -> tuple[dict[tuple, pd.DataFrame], Gate, int]:
    """The estimate claims' one rule: their points where the check can fail both ways (:func:`two_sided_points`),
    under :func:`decidable_sweeps` with :func:`estimate_is_decisive` — the kept sweeps, the gate and how many points
    were left out as one-sided."""
    two_sided, left_out = two_sided_points(table)
    kept, gate = decidable_sweeps(two_sided, what, estimate_is_decisive)
    return kept, gate, left_out


def left_out_text(count: int) -> str:
    """The note an estimate claim adds for the points :func:`two_sided_points` left out."""
    if not count:
        return ""
    return (
        f"; {count} point(s) left out before any rank was read: there {1 + ESTIMATE_TOLERANCE:g} × formula ≥ p, so a "
        "rank above the formula could not leave the band"
    )


def estimate_is_decisive(row: Any) -> bool:
    """The estimate check of a point gives the same answer for the ranks of H_L at τ/100, τ and 100τ."""
    return len({within_estimate(rank, row.predicted_loss) for rank in row.ranks_at_loss}) == 1


#: how a non-linear activation is named in the estimate claims' statements
ACTIVATION_LABELS = {"relu": "ReLU", "tanh": "tanh"}


def estimate_claim_id(activations: tuple[str, ...] | None) -> str:
    """The estimate claim's id: ``nonlinear_rank_estimated_by_linear_formula`` for ReLU (its id since it covered every
    non-linear activation of the tiers, ReLU alone in the default tier) or all of them, ``<activation>_rank_…``
    otherwise."""
    if activations is None or activations == ("relu",):
        return "nonlinear_rank_estimated_by_linear_formula"
    return "_".join(activations) + "_rank_estimated_by_linear_formula"


def estimate_claims(summary: dict, settings: HessianSweepSettings, name: str, section: str) -> list[ClaimResult]:
    """One :func:`estimate_claim` per non-linear activation of the tier (the same tolerance and gate rule for each),
    or the one claim, not shown, when the tier runs none."""
    nonlinear = [a for a in settings.activations if a != "linear"]
    if not nonlinear:
        return [estimate_claim(summary, settings, name, section)]
    return [estimate_claim(summary, settings, name, section, (activation,)) for activation in nonlinear]


def estimate_claim(
    summary: dict,
    settings: HessianSweepSettings,
    name: str,
    section: str,
    activations: tuple[str, ...] | None = None,
) -> ClaimResult:
    """Non-linear networks (the paper: the linear formula stays a faithful estimate of the rank for ReLU and tanh),
    those of ``activations`` (None: every non-linear one):
    |rank H_L / formula − 1| ≤ :data:`ESTIMATE_TOLERANCE` at every point where that check can fail both ways
    (:func:`two_sided_points`) and is the same at τ/100, τ and 100τ (:func:`estimate_is_decisive`), under
    :func:`decidable_sweeps`. A ReLU network's H_L has no spectral gap
    at τ (its rank moves by ≈ 1 % between τ/100 and 100τ), so the equality rule of the linear claims would leave
    nothing to decide, while a ±50 % check is unaffected by it. The ratios for H_O and H_F and rank/p are reported,
    not asserted."""
    table = bias_free(point_table(summary), settings)
    nonlinear = table[table["activation"] != "linear"] if len(table) else table
    if activations is not None and len(nonlinear):
        nonlinear = nonlinear[nonlinear["activation"].isin(activations)]
    label = "ReLU/tanh" if activations is None else "/".join(ACTIVATION_LABELS.get(a, a) for a in activations)
    kept, gate, left_out = estimate_sweeps(nonlinear, f"{label} networks")
    outside, checked = [], 0
    for key, rows in kept.items():
        for row in rows.itertuples():
            checked += 1
            if not within_estimate(row.rank_loss, row.predicted_loss):
                ratio = row.rank_loss / row.predicted_loss
                outside.append(f"{sweep_name(key)} x={row.value}: {row.rank_loss}/{row.predicted_loss} = {ratio:.2f}")
    ratios = estimate_ratios(nonlinear) if len(nonlinear) else {}
    claim = ClaimResult(
        estimate_claim_id(activations),
        name,
        section,
        f"{label} networks: the linear-network formula is a faithful estimate of the loss Hessian's rank, "
        f"|rank H_L / formula − 1| ≤ {ESTIMATE_TOLERANCE:g} at every point where this check can fail both ways "
        f"({1 + ESTIMATE_TOLERANCE:g} × formula < p) and is the same at τ/100, τ and 100τ (tolerance fixed before "
        f"the run)",
        decide(not outside),
        {"points_checked": checked, "outside": len(outside), "left_out_one_sided": left_out, "ranges": ratios},
        "Singh et al. 2021: the bounds remain a faithful estimate of the numerical rank for ReLU and tanh networks; "
        "spec: ReLU −42 % … +43 % of the linear formula on 8×8 digits (dead units at small width), tanh up to +58 %",
        (f"OUTSIDE ±{ESTIMATE_TOLERANCE:g}: " + "; ".join(outside[:10]) + "; " if outside else "")
        + (
            "rank / linear formula and rank H_L / p, (min, max) over all points: " + str(ratios)
            if ratios
            else "the tier runs no non-linear network"
        )
        + left_out_text(left_out),
    )
    return apply_gate(gate, [claim])[0]


def sweep_claims(summary: dict, settings: HessianSweepSettings, name: str, section: str) -> list[ClaimResult]:
    """The claims every sweep checks: closed forms (linear networks, main data and variants) and the linear formula
    as an estimate (non-linear ones)."""
    return (
        formula_claims(summary, settings, name, section)
        + bias_formula_claims(summary, settings, name, section)
        + estimate_claims(summary, settings, name, section)
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
