"""§2.2 — Tensor rank is a measure of complexity that captures natural data: MNIST and Fashion-MNIST.

A one-vs-all prediction task is a tensor completion problem: a binarized image x ∈ {0,1}^784 indexes an order-784
tensor with mode dimension 2, its label (2 for the positive class 6 — MNIST digit 6, Fashion-MNIST "Shirt" — and 0
otherwise) is the entry's value, the training set is the observed entries. A CP model of rank R,
f(x) = Σ_r ∏_p F[p, x_p, r], is fit by mini-batch Adam on the MSE (log-domain float64 arithmetic:
:mod:`rankrepro.factorization.log_cp`). Natural data is fit well at low tensor rank and generalizes; the same images
with random labels, or random images with the true labels, are fit far worse at low rank and do not generalize.

Reported errors are on the 0/1 label scale (divided by 4): train = full-train MSE / 4; test = clamped test error / 4
(each sample's squared error clamped at 4, the error of the opposite label). The "variance" line p(1 − p), with p
the positive fraction of the training labels, is the error of the best constant predictor.

Work is split into batches, one per (dataset, R), with every (variant, seed) batched in one tensor program; each
finished batch is written atomically to ``<out>/batches/<key>.json`` and skipped on a rerun, and an interrupted batch
resumes from its checkpoint.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from rankrepro.core import optim
from rankrepro.core.errors import ConfigError
from rankrepro.core.seeding import seeded_generator
from rankrepro.data.image_datasets import ImageDataset
from rankrepro.data.sources import DataSource
from rankrepro.experiments.base import (
    BATCH_DIR,
    CHECKPOINT_DIR,
    Context,
    cached_batch,
    checkpoint_path,
    load_results,
    mechanism_hash,
    run_fingerprint,
    write_results,
)
from rankrepro.factorization import log_cp
from rankrepro.factorization.log_cp import FitSettings, binarize_images, fit, init_factors
from rankrepro.pipeline.claims import (
    PASSED,
    ClaimResult,
    Gate,
    PairedInterval,
    apply_gate,
    decide,
    paired_interval,
    verdict_greater,
)
from rankrepro.pipeline.plotting import add_caption, add_title, apply_style, caption_text, save_figure
from rankrepro.pipeline.settings import FigureContext, SettingsRecord

NAME = "tensor_rank_mnist"
CHAPTER = "ch2"
SECTION = "2.2"
TITLE = "Tensor rank captures natural data: MNIST and Fashion-MNIST are fit at low tensor rank, random data is not"
DATASETS = ("mnist", "fashion-mnist")

log = logging.getLogger(__name__)

#: bump when the way a batch is computed changes (invalidates cached batch files)
BATCH_FORMAT = 1
#: the data variants: natural, its labels shuffled, random binary images with the labels kept
Variant = Literal["natural", "random_labels", "random_images"]
VARIANTS: tuple[Variant, ...] = get_args(Variant)
VARIANT_LABELS = {"natural": "original", "random_labels": "rand label", "random_images": "rand image"}
#: the plotted errors are on the 0/1 label scale: squared errors with targets {0, 2} divided by 4
LABEL_SCALE = 4.0
POSITIVE_TARGET = 2.0
#: claims that compare natural and random data at low tensor rank use R ≤ this (spec §2.2)
LOW_RANK = 3
#: training and test images of MNIST and of Fashion-MNIST (a subsample is drawn when n_train / n_test are set)
FULL_TRAIN_IMAGES = 60_000
FULL_TEST_IMAGES = 10_000
#: the tail of a fit: its last 20 % of epochs — the gate asks the natural fits to have levelled off over it, and a
#: run's error is the mean of its evaluations there (one end-point of mini-batch Adam wanders by ≈ 10 %)
TAIL_FRACTION = 0.2
#: a natural-data fit still "improving" lost more than this fraction of its train error over the tail
STILL_IMPROVING = 0.02
REFERENCE = (
    "paper (60k/10k images, 10,000 epochs): MNIST original train ≈0.023 (R=1) → 0.003 (R=15), test "
    "≈0.02–0.03; random variants' train starts ≈0.09 and falls slowly (≈0.015–0.044 at R=15) while their "
    "test rises to ≈0.14–0.15; Fashion-MNIST original train ≈0.033 → 0.01, test ≈0.037 → 0.055; "
    "variance ≈0.09"
)


@dataclass(frozen=True)
class Settings(SettingsRecord):
    """§2.2 settings (schema ``$defs.tensor_rank_mnist``): for each of ``datasets``, a one-vs-all task (class
    ``positive_class``) on a seeded subsample of ``n_train`` / ``n_test`` images (None: all), fitted by CP models of
    each rank in ``ranks`` (factors N(init_mean, init_std²)) for every variant in ``variants`` and ``num_seeds``
    seeds, by ``epochs`` epochs of Adam at ``lr`` on mini-batches of ``batch_size``; errors recorded every
    ``eval_every`` epochs."""

    data_seed: int
    seed: int
    datasets: tuple[Literal["mnist", "fashion-mnist"], ...]
    positive_class: int
    n_train: int | None
    n_test: int | None
    ranks: tuple[int, ...]
    variants: tuple[Variant, ...]
    num_seeds: int
    epochs: int
    batch_size: int
    lr: float
    init_mean: float
    init_std: float
    eval_every: int
    checkpoint_every: int

    def fit_settings(self, rank: int) -> FitSettings:
        """Mini-batch Adam's budget and cadence for the batch of tensor rank ``rank`` (its mini-batch order seeded by
        seed + rank)."""
        return FitSettings(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            eval_every=self.eval_every,
            shuffle_seed=self.seed + rank,
            checkpoint_every=self.checkpoint_every,
        )

    def adam_steps(self) -> int:
        """Adam steps per run: epochs × ⌈n_train / batch_size⌉ (n_train: all 60,000 images when None)."""
        n_train = self.n_train or FULL_TRAIN_IMAGES
        return self.epochs * -(-n_train // self.batch_size)


# ----------------------------------------------------------------------------------------------------- data
def subsample(count: int, size: int | None, generator: torch.Generator) -> torch.Tensor:
    """Indices of a uniformly random subset of ``size`` of ``count`` samples (sorted), or all when ``size`` is None."""
    if size is None or size >= count:
        return torch.arange(count)
    return torch.randperm(count, generator=generator)[:size].sort().values


def one_vs_all_targets(labels: np.ndarray, positive_class: int) -> torch.Tensor:
    """y = 2 for the positive class, 0 otherwise (float64)."""
    return torch.as_tensor(labels == positive_class, dtype=torch.float64) * POSITIVE_TARGET


def variant_split(
    X: torch.Tensor, y: torch.Tensor, variant: str, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One split of a variant: ``natural`` (X, y); ``random_labels`` (X, y permuted); ``random_images`` (pixels i.i.d.
    uniform on {0, 1}, labels kept). X is bool ``(n, 784)``."""
    if variant == "natural":
        return X, y
    if variant == "random_labels":
        return X, y[torch.randperm(len(y), generator=generator)]
    if variant == "random_images":
        return torch.rand(X.shape, generator=generator, dtype=torch.float64) < 0.5, y
    raise ValueError(f"unknown variant '{variant}' (expected one of {VARIANTS})")


def prepare_task(images: ImageDataset, settings: Settings, dataset_index: int) -> dict[str, torch.Tensor]:
    """Seeded subsample, binarized images (bool ``(n, 784)``) and one-vs-all targets of the train and test sets."""
    generator = seeded_generator(settings.data_seed, dataset_index)
    task = {}
    for split, pixels, labels, size in (
        ("train", images.train_images, images.train_labels, settings.n_train),
        ("test", images.test_images, images.test_labels, settings.n_test),
    ):
        index = subsample(len(labels), size, generator).numpy()
        task[f"X_{split}"] = binarize_images(pixels[index]).to(torch.bool)
        task[f"y_{split}"] = one_vs_all_targets(labels[index], settings.positive_class)
    return task


def batch_runs(settings: Settings) -> list[tuple[Variant, int]]:
    """The (variant, seed) runs of every batch, in batch order."""
    return [(variant, seed) for variant in settings.variants for seed in range(settings.num_seeds)]


def batch_data(
    task: dict[str, torch.Tensor], settings: Settings, dataset_index: int
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Per-run train and test data ``(B, n, 784)`` bool and ``(B, n)`` targets; the randomization of (variant, seed)
    is the same at every R, so the ranks of one dataset see the same random data."""
    train_X, train_y, test_X, test_y = [], [], [], []
    for variant, seed in batch_runs(settings):
        generator = seeded_generator(settings.data_seed, dataset_index, VARIANTS.index(variant), seed)
        X, y = variant_split(task["X_train"], task["y_train"], variant, generator)
        train_X.append(X)
        train_y.append(y)
        X, y = variant_split(task["X_test"], task["y_test"], variant, generator)
        test_X.append(X)
        test_y.append(y)
    return (torch.stack(train_X), torch.stack(train_y)), (torch.stack(test_X), torch.stack(test_y))


# ----------------------------------------------------------------------------------------------------- training
def _source_hash() -> str:
    """Hash of the library code a batch's numbers depend on."""
    return mechanism_hash(log_cp, optim)


def _fit_batch(
    settings: Settings,
    dataset: str,
    dataset_index: int,
    rank: int,
    task: dict[str, torch.Tensor],
    out: Path,
    ctx: Context,
    key: str,
    fingerprint: str,
) -> dict[str, Any]:
    """Fit every (variant, seed) of one (dataset, R) as one batched program."""
    started = time.time()
    runs = batch_runs(settings)
    train, test = batch_data(task, settings, dataset_index)
    generators = [seeded_generator(settings.seed, dataset_index, rank, seed) for _, seed in runs]
    factors = init_factors(
        len(runs), train[0].shape[-1], rank, settings.init_mean, settings.init_std, generators=generators
    ).to(ctx.device)
    ckpt = checkpoint_path(out, key)
    result = fit(
        factors,
        train,
        test,
        settings.fit_settings(rank),
        checkpoint_path=ckpt,
        fingerprint=fingerprint,
        progress=ctx.progress,
    )
    ckpt.unlink(missing_ok=True)  # the batch file supersedes it
    history = result.history
    variance = variance_line(task["y_train"])
    return {
        "fingerprint": fingerprint,
        "key": key,
        "dataset": dataset,
        "rank": rank,
        "variance": variance,
        "positive_fraction": float((task["y_train"] > 0).double().mean()),
        "runs": [
            {
                "variant": variant,
                "seed": seed,
                "train_error": float(result.train_mse[b]) / LABEL_SCALE,
                "test_error": float(result.test_error[b]) / LABEL_SCALE,
                "diverged": bool(result.diverged[b]),
            }
            for b, (variant, seed) in enumerate(runs)
        ],
        "curve": {
            "epoch": history["epoch"].tolist(),
            "run": history["run"].tolist(),
            "train_error": (history["train_mse"] / LABEL_SCALE).tolist(),
            "test_error": (history["test_error"] / LABEL_SCALE).tolist(),
        },
        "fit_time_s": round(time.time() - started, 3),
        "resumed_from_epoch": result.resumed_from,
    }


def variance_line(y_train: torch.Tensor) -> float:
    """p(1 − p) with p the positive fraction: the 0/1-scale error of the best constant prediction."""
    p = float((y_train > 0).double().mean())
    return p * (1.0 - p)


def _check_settings(settings: Settings) -> None:
    """What the schema cannot say: the variants include the natural data."""
    if "natural" not in settings.variants:
        raise ConfigError(
            f"config key 'experiments.{NAME}.variants': must include 'natural' (got {list(settings.variants)})"
        )


def run(settings: Settings, out: Path, ctx: Context, data: DataSource) -> None:
    """Fit every (dataset, R) batch on the verified datasets; write metrics (learning curves) and the summary."""
    started = time.time()
    _check_settings(settings)
    out = Path(out)
    records = []
    shared = {k: v for k, v in settings.record().items() if k not in ("ranks", "datasets")}  # what every batch reads
    for dataset in settings.datasets:
        dataset_index = DATASETS.index(dataset)
        task = None
        for rank in settings.ranks:
            key = f"{dataset}_R{rank}"
            fingerprint = run_fingerprint(shared, key, BATCH_FORMAT, _source_hash())

            def compute(rank=rank, key=key, fingerprint=fingerprint):
                nonlocal task
                if task is None:  # load and prepare the dataset only when a batch needs training
                    task = prepare_task(data.image_classification(dataset), settings, dataset_index)
                return _fit_batch(settings, dataset, dataset_index, rank, task, out, ctx, key, fingerprint)

            record, hit = cached_batch(out / BATCH_DIR / f"{key}.json", fingerprint, compute)
            finals = pd.DataFrame(record["runs"]).groupby("variant")[["train_error", "test_error"]].mean()
            log.info(
                "%s: %s in %.0f s; mean train/test error %s",
                key,
                "cached" if hit else "trained",
                record["fit_time_s"],
                {v: (round(r.train_error, 4), round(r.test_error, 4)) for v, r in finals.iterrows()},
            )
            records.append(record)
    metrics, table = _assemble(records)
    extra = {
        "runs": table.to_dict(orient="records"),
        "variance": {r["dataset"]: r["variance"] for r in records},
        "positive_fraction": {r["dataset"]: r["positive_fraction"] for r in records},
        "batches": [{"key": r["key"], "fit_time_s": r["fit_time_s"]} for r in records],
    }
    write_results(out, metrics, settings.record(), ctx, started, extra)
    ckpt_dir = out / CHECKPOINT_DIR
    if ckpt_dir.is_dir() and not any(ckpt_dir.iterdir()):
        ckpt_dir.rmdir()


def _assemble(records: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tidy learning curves (dataset, rank, variant, seed, epoch, errors) and the per-run final table."""
    curves, rows = [], []
    for record in records:
        runs = record["runs"]
        curve = pd.DataFrame(record["curve"])
        curve["variant"] = [runs[b]["variant"] for b in curve["run"]]
        curve["seed"] = [runs[b]["seed"] for b in curve["run"]]
        curve["dataset"], curve["rank"] = record["dataset"], record["rank"]
        curves.append(curve.drop(columns="run"))
        rows.extend({"dataset": record["dataset"], "rank": record["rank"], **run} for run in runs)
    columns = ["dataset", "rank", "variant", "seed", "epoch", "train_error", "test_error"]
    return pd.concat(curves, ignore_index=True)[columns], pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------- figure
def _stats(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of the runs' (tail-mean) errors per (dataset, variant, rank)."""
    return table.groupby(["dataset", "variant", "rank"])[["train_error", "test_error"]].agg(["mean", "std"])


def plot(results: Path, figure_png: Path, figure: FigureContext) -> list[Path]:
    """One panel per dataset: error (0/1 scale) vs tensor rank, train solid / test dashed per variant, ± std over
    seeds, and the variance line. The caption's substitutions are the settings that depart from the paper tier's."""
    curves, summary = load_results(results)
    settings = Settings.from_mapping(summary["settings"])
    table = tail_errors(curves, pd.DataFrame(summary["runs"]))
    stats = _stats(table).fillna(0.0)
    apply_style()
    datasets = [d for d in settings.datasets if d in set(table["dataset"])]
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.6 * len(datasets), 4.6), squeeze=False, layout="constrained")
    colours = {variant: f"C{k}" for k, variant in enumerate(VARIANTS)}
    for ax, dataset in zip(axes[0], datasets):
        for variant in settings.variants:
            part = stats.loc[(dataset, variant)]
            for column, style in (("train_error", "-"), ("test_error", "--")):
                mean, std = part[(column, "mean")], part[(column, "std")]
                ax.plot(
                    part.index,
                    mean,
                    style,
                    marker="o",
                    ms=4,
                    color=colours[variant],
                    label=f"{VARIANT_LABELS[variant]} {column.split('_')[0]}",
                )
                ax.fill_between(part.index, mean - std, mean + std, color=colours[variant], alpha=0.2, lw=0)
        ax.axhline(summary["variance"][dataset], color="0.3", ls=":", lw=1.2, label="variance p(1−p)")
        ax.set_xlabel("tensor rank R")
        ax.set_ylabel("mean error (0/1 label scale)")
        ax.set_xticks(sorted(set(table["rank"])))
        ax.set_ylim(bottom=0)
        ax.set_title(
            {"mnist": "MNIST (digit 6 vs rest)", "fashion-mnist": "Fashion-MNIST (shirt vs rest)"}.get(
                dataset, dataset
            ),
            fontsize=10,
        )
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    add_title(fig, f"§{SECTION} {TITLE}")
    sizes = (
        f"full {FULL_TRAIN_IMAGES:,} / {FULL_TEST_IMAGES:,}"
        if settings.n_train is None and settings.n_test is None
        else f"{settings.n_train or FULL_TRAIN_IMAGES:,} train / {settings.n_test or FULL_TEST_IMAGES:,} test images "
        f"(seeded random subsample)"
    )
    details = (
        f"Binarized images (pixel ≥ 128) as indices of an order-784 tensor, one-vs-all class "
        f"{settings.positive_class} → 2, others → 0; {sizes}. CP model of rank R, factors N("
        f"{settings.init_mean}, {settings.init_std}²), log-domain float64; Adam lr {settings.lr}, "
        f"batch {settings.batch_size}, {settings.epochs:,} epochs ({settings.adam_steps():,} Adam steps per run). "
        f"Train: MSE/4; test: clamped error/4; a run's error is the mean of its evaluations over the last "
        f"{TAIL_FRACTION:.0%} of its epochs. Mean ± std over {settings.num_seeds} seed(s). Random labels: permuted "
        f"within train and within test; random images: pixels i.i.d. uniform on {{0,1}}."
    )
    add_caption(fig, caption_text(f"§{SECTION}", figure.tier, details, figure.substitutions(summary["settings"])))
    return save_figure(fig, figure_png)


# ----------------------------------------------------------------------------------------------------- claims
def tail_start(last_epoch: float) -> float:
    """The first epoch of a fit's tail: (1 − TAIL_FRACTION) × its last epoch."""
    return last_epoch - TAIL_FRACTION * last_epoch


def tail_errors(curves: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Each run's train and test error as the mean of its evaluations at epochs ≥ :func:`tail_start` (the last
    20 % of its epochs), beside its ``diverged`` flag, for the runs of ``runs``: one row per (dataset, rank, variant,
    seed)."""
    keys = ["dataset", "rank", "variant", "seed"]
    last = curves.groupby(keys)["epoch"].transform("max")
    tail = curves[curves["epoch"] >= tail_start(last)]
    means = tail.groupby(keys, as_index=False)[["train_error", "test_error"]].mean()
    return means.merge(runs[[*keys, "diverged"]], on=keys, how="inner")


def still_improving(curves: pd.DataFrame, ranks: list[int] | None = None) -> dict[int, float]:
    """Relative decrease of the natural-data train error (mean over seeds) over the last 20 % of the epochs, per rank
    (every rank of ``curves``, or those in ``ranks``), where it exceeds STILL_IMPROVING (the fit had not levelled
    off)."""
    natural = curves[curves["variant"] == "natural"]
    if ranks is not None:
        natural = natural[natural["rank"].isin(ranks)]
    out = {}
    for rank, part in natural.groupby("rank"):
        mean = part.groupby("epoch")["train_error"].mean().sort_index()
        if len(mean) < 2:
            continue
        cutoff = tail_start(mean.index[-1])
        earlier = mean[mean.index <= cutoff]
        start = float(earlier.iloc[-1]) if len(earlier) else float(mean.iloc[0])
        drop = (start - float(mean.iloc[-1])) / start if start > 0 else 0.0
        if drop > STILL_IMPROVING:
            out[int(rank)] = round(drop, 4)
    return out


def fit_gate(curves: pd.DataFrame, datasets: tuple[str, ...], steps: int) -> Gate:
    """The one precondition of every §2.2 claim: the natural-data fits levelled off — at every rank of every dataset
    the mean train error fell by at most STILL_IMPROVING over the last 20 % of the epochs. (Random-data fits are
    not required to level off: at the paper's budget their train error still falls slowly; every claim compares
    natural and random data at the same budget.)"""
    improving = {d: still_improving(curves[curves["dataset"] == d]) for d in datasets}
    improving = {d: v for d, v in improving.items() if v}
    return Gate(
        f"the natural-data fits levelled off: at every rank the mean train error fell by ≤ {STILL_IMPROVING:.0%} over "
        "the last 20 % of the epochs",
        not improving,
        f"{steps:,} Adam steps per run; "
        + (f"still falling (relative drop per rank): {improving}" if improving else "every natural fit levelled off"),
    )


def claims(results: Path, tier: str) -> list[ClaimResult]:
    """The §2.2 claims per dataset (paired over seeds; a run's errors are its tail means, :func:`tail_errors`), all
    under one gate (:func:`fit_gate`)."""
    curves, summary = load_results(results)
    settings = Settings.from_mapping(summary["settings"])
    table = tail_errors(curves, pd.DataFrame(summary["runs"]))
    out: list[ClaimResult] = []
    for dataset in settings.datasets:
        out.extend(_dataset_claims(table[table["dataset"] == dataset], dataset, summary["variance"].get(dataset)))
    return apply_gate(fit_gate(curves, settings.datasets, settings.adam_steps()), out)


def _paired(table: pd.DataFrame, a: tuple[str, int], b: tuple[str, int], column: str = "train_error") -> tuple:
    """Final ``column`` of the runs (variant, rank) ``a`` and ``b``, paired by seed (the seeds both have, in order)."""
    first = table[(table["variant"] == a[0]) & (table["rank"] == a[1])].set_index("seed")[column]
    second = table[(table["variant"] == b[0]) & (table["rank"] == b[1])].set_index("seed")[column]
    seeds = sorted(set(first.index) & set(second.index))
    return first.loc[seeds].to_list(), second.loc[seeds].to_list()


def _interval(a: list[float], b: list[float]) -> PairedInterval | None:
    """The paired interval of a − b, or None with fewer than two pairs."""
    return paired_interval(a, b) if len(a) >= 2 else None


def _dataset_claims(table: pd.DataFrame, dataset: str, variance: float | None) -> list[ClaimResult]:
    """Four claims on one dataset, each a paired comparison over seeds (95 % Student-t interval of the paired
    differences must exclude 0); not shown when the tier lacks what the claim compares, or has < 2 seeds. (That
    random data's train error also falls with the rank is no claim: a CP model of higher rank contains those of lower
    rank, so it holds on any data, whether or not tensor rank tells natural data from random.)"""
    variants = set(table["variant"])
    randoms = [v for v in ("random_labels", "random_images") if v in variants]
    ranks = sorted(set(table["rank"]))
    low = [r for r in ranks if r <= LOW_RANK]
    seeds = table["seed"].nunique()
    diverged = sorted({f"{v} R={r}" for v, r, d in zip(table["variant"], table["rank"], table["diverged"]) if d})
    note = f"diverged runs (frozen at their last finite step): {', '.join(diverged)}. " if diverged else ""
    few_seeds = f"a paired interval needs ≥ 2 seeds, the tier has {seeds}" if seeds < 2 else ""
    no_random = "" if "natural" in variants and randoms else "the tier has no random variant to compare with"
    out: list[ClaimResult] = []

    def record(
        claim: str,
        statement: str,
        checks: dict[str, PairedInterval | None],
        lacking: str,
        **context: Any,
    ) -> None:
        """Passed when every interval lies above 0, not shown when the tier lacks what the claim compares
        (``lacking`` says what, or is empty); the intervals (and ``context``) are the measured values."""
        computed = {k: v for k, v in checks.items() if v is not None}
        lacking = lacking or few_seeds or ("" if computed and len(computed) == len(checks) else "no complete pairs")
        below = [f"{k}: {v.text(3)}" for k, v in computed.items() if verdict_greater(v) != PASSED]
        measured = {k: {"mean": v.mean, "low": v.low, "high": v.high, "n": v.n} for k, v in computed.items()}
        why = lacking or ("interval not above 0 at " + "; ".join(below) if below else "")
        out.append(
            ClaimResult(
                f"{dataset}_{claim}",
                NAME,
                SECTION,
                statement,
                decide(not below, not lacking),
                {**measured, **context},
                REFERENCE,
                (note + why).strip(),
            )
        )

    def versus_natural(variant: str, rank: int, weight: float = 1.0) -> PairedInterval | None:
        """weight × train(variant) − train(natural) at ``rank``, paired by seed."""
        random, natural = _paired(table, (variant, rank), ("natural", rank))
        return _interval([weight * e for e in random], natural)

    no_low = "" if low else f"the tier has no rank ≤ {LOW_RANK}"

    # 1. natural data is fit better at every rank
    record(
        "natural_fit_better_every_rank",
        f"{dataset}: at every tensor rank, train error(natural) < train error(random labels / random images) "
        "(95 % paired interval over seeds of random − natural above 0)",
        {f"{v} R={r}": versus_natural(v, r) for v in randoms for r in ranks},
        no_random,
    )
    # 2. far better at low rank
    record(
        "natural_fit_far_better_low_rank",
        f"{dataset}: at R ≤ {LOW_RANK}, train error(natural) < 0.5 × train error(random) (95 % paired interval over "
        "seeds of 0.5 × random − natural above 0)",
        {f"{v} R={r}": versus_natural(v, r, 0.5) for v in randoms for r in low},
        no_random or no_low,
    )
    # 3. natural data generalizes at low rank
    natural_test = {r: _paired(table, ("natural", r), ("natural", r), "test_error")[0] for r in low}
    record(
        "natural_generalizes_low_rank",
        f"{dataset}: at R ≤ {LOW_RANK}, test error(natural) < the variance p(1−p) of the training labels (95 % "
        "interval over seeds of variance − test error above 0)",
        {f"R={r}": _interval([variance] * len(e), e) for r, e in natural_test.items()} if variance is not None else {},
        no_low or ("" if variance is not None else "no variance recorded"),
        variance=variance,
    )
    r_min, r_max = ranks[0], ranks[-1]
    single_rank = "" if r_max > r_min else "the tier has a single rank"
    # 4. natural data is fit better with more rank (the paper's falling "original train" line)
    natural = _paired(table, ("natural", r_min), ("natural", r_max))
    record(
        "natural_fit_improves_with_rank",
        f"{dataset}: natural data's train error falls with tensor rank from the lowest rank R={r_min} to the highest "
        f"R={r_max} (95 % paired interval over seeds of train(R={r_min}) − train(R={r_max}) above 0)",
        {f"natural R={r_min} − R={r_max}": _interval(*natural)},
        single_rank,
    )
    return out
