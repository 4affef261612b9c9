"""§4.1, Table 1 — Is-Same-Class on graphs: a GNN models the interaction between two images better when the
partition separating them has a high walk index.

Each example is two Fashion-MNIST images cut into 16 chunks each, placed on the vertices of two 16-cliques joined by
one edge; the label says whether the images show the same class. The ``low`` arrangement puts each image on its own
clique (walk index 548 for depth 3), the ``high`` one interleaves them (8,258). GCN, GAT and GIN (depth 3, width 16,
conv → ReLU → LayerNorm, mean pooling, linear head) are trained full batch with BCE and early stopping on the training
accuracy; the table reports the last epoch's train and test accuracy, mean ± std over seeds.

Every (model, arrangement, seed) run is cached in ``batches/``; the same seed gives the same initial weights to the
low and high runs of a model (a paired comparison). All runs see the same pairs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from rankrepro.core.errors import ConfigError
from rankrepro.core.io import atomic_write_csv, atomic_write_text
from rankrepro.core.seeding import derived_seed
from rankrepro.data import pairs
from rankrepro.data.sources import DataSource
from rankrepro.experiments.base import (
    BATCH_DIR,
    Context,
    cached_batch,
    load_results,
    mechanism_hash,
    run_fingerprint,
    write_results,
)
from rankrepro.experiments.ch4.common import MODEL_LABELS, GnnModel, check_model_seeds, seeds_of
from rankrepro.gnn import is_same_class_graphs as isc
from rankrepro.gnn import models as gnn
from rankrepro.gnn import training as gnn_training
from rankrepro.gnn.walk_index import walk_index
from rankrepro.pipeline.claims import PASSED, ClaimResult, Gate, apply_gate, decide, paired_interval, verdict_greater
from rankrepro.pipeline.plotting import add_caption, add_title, apply_style, caption_text, save_figure
from rankrepro.pipeline.settings import FigureContext, SettingsRecord

NAME = "is_same_class_gnn"
CHAPTER = "ch4"
SECTION = "4.1"
TITLE = "Is-Same-Class on graphs: higher walk index of the image partition, better fit (Table 1)"
DATASETS = ("fashion-mnist", "mnist")
#: files the plot job writes beside the figure: Table 1 as markdown and CSV
FIGURE_EXTRAS = (".md", ".csv")
REFERENCE = (
    "Razin, Verbin & Cohen 2023, Table 1 (10,000/2,000 pairs, ≤ 10,000 epochs, 5 seeds): high > low train "
    "and test accuracy for GCN, GAT, GIN; reduced pilot (1,000/500 pairs, 300 epochs): GCN 76/52 vs 84/65, "
    "GAT 74/56 vs 91/69, GIN 82/51 vs 98/60 (train/test %, low vs high)"
)
#: what metrics.csv records of each run (besides model, arrangement, seed)
RUN_COLUMNS = ("train_acc", "test_acc", "epochs", "best_epoch", "time_s")
#: below these, the comparison is noise: the gate fails and the claims are not shown (never a silent pass)
MIN_TRAIN_PAIRS, MIN_EPOCHS, MIN_SEEDS = 500, 100, 2
#: the gate's "the net learned": train accuracy at least this in every run (chance: 0.5)
LEARNED = 0.6

#: what the caption says that the settings cannot show
DENSE_LAYERS_NOTE = "dense torch_geometric layers with a shared adjacency (the same function as the edge-list layers)"

log = logging.getLogger(__name__)

ImageDatasetName = Literal["fashion-mnist", "mnist"]


@dataclass(frozen=True)
class PixelNormalization(SettingsRecord):
    """Pixel normalisation of the vertex features: a pixel x ∈ [0, 1] becomes (x − mean) / std."""

    mean: float
    std: float


@dataclass(frozen=True)
class ModelSeeds(SettingsRecord):
    """What one GNN runs when the tier restricts it (``per_model``): the first ``seeds`` seeds of the experiment."""

    seeds: int


@dataclass(frozen=True)
class IsSameClassGnnSettings(SettingsRecord):
    """Settings of §4.1 Table 1 (section ``experiments.is_same_class_gnn``): the seeded image pairs of ``dataset``,
    the GNNs ``models`` (``depth`` layers of width ``width``, ``heads`` GAT heads) and their full-batch Adam training
    (learning rate ``lr[model]``, ≤ ``max_epochs`` epochs, early stopping after ``patience`` epochs without a better
    train accuracy), ``seeds`` initialisations per model and arrangement (the first ``per_model[model].seeds`` of
    them for a model with a plan)."""

    seed: int
    dataset: ImageDatasetName
    datasets: tuple[ImageDatasetName, ...]
    models: tuple[GnnModel, ...]
    train_pairs: int
    test_pairs: int
    max_epochs: int
    patience: int
    seeds: int
    width: int
    depth: int
    heads: int
    lr: Mapping[str, float]
    normalize: PixelNormalization
    per_model: Mapping[str, ModelSeeds]

    def seeds_of(self, model: GnnModel) -> int:
        """Number of seeds ``model`` runs: its ``per_model`` seeds where it has a plan, else ``seeds``."""
        return seeds_of(self.per_model, self.seeds, model)

    def fewest_seeds(self) -> int:
        """The fewest seeds any of the models runs (what the gate asks of every model)."""
        return min((self.seeds_of(model) for model in self.models), default=self.seeds)

    def check_plans(self) -> None:
        """A ConfigError for a ``per_model`` plan naming a model outside ``models`` or more seeds than ``seeds``."""
        check_model_seeds(f"{NAME}.per_model", self.per_model, self.models, self.seeds)


Settings = IsSameClassGnnSettings
#: keys a run's fingerprint leaves out: adding a model, a seed, another model's learning rate or a model's plan keeps
#: the cached runs
PER_RUN_KEYS = ("models", "seeds", "lr", "per_model")


def _mechanism() -> str:
    """Source hash of what a run depends on: a cached run made by other code is recomputed."""
    return mechanism_hash(gnn, gnn_training, isc, pairs)


def arrangement_walk_indices(depth: int) -> dict[str, int]:
    """Walk index of the image-1 / image-2 partition (graph prediction, walks of length depth − 1) per
    arrangement."""
    edges = isc.two_clique_edges()
    return {kind: walk_index(edges, isc.NUM_VERTICES, isc.image_one_side(kind), depth) for kind in isc.ARRANGEMENTS}


def draw_pairs(seed: int, labels: np.ndarray, count: int, stream: int) -> np.ndarray:
    """The seeded (image, image, same-class) pairs of one split (stream 0: train, 1: test)."""
    return pairs.sample_pairs(labels, count, np.random.default_rng(derived_seed(seed, stream)))


def run_one(settings: Settings, model_kind: GnnModel, kind: str, seed_index: int, train: tuple, test: tuple) -> dict:
    """Train one model on one arrangement from the seed's initial weights; accuracies, epochs, curve."""
    torch.manual_seed(derived_seed(settings.seed, 100 + seed_index))
    model = gnn.GNN(
        model_kind,
        train[0].shape[-1],
        settings.width,
        settings.depth,
        1,
        graph_level=True,
        heads=settings.heads,
        dense=True,
    )
    outcome = gnn_training.train_graph_classifier(
        model,
        train,
        test,
        isc.shared_adjacency(),
        lr=settings.lr[model_kind],
        max_epochs=settings.max_epochs,
        patience=settings.patience,
    )
    return {
        "train_acc": outcome.accuracies["train"],
        "test_acc": outcome.accuracies["test"],
        "epochs": outcome.epochs,
        "best_epoch": outcome.best_epoch,
        "time_s": round(outcome.time_s, 3),
        "curve": outcome.curve,
    }


def run(settings: Settings, out: Path, ctx: Context, data: DataSource) -> None:
    """Every model × arrangement × seed (cached per run); metrics.csv has one row per run."""
    started = time.time()
    out = Path(out)
    if settings.dataset not in settings.datasets:
        raise ConfigError(
            f"{NAME}: dataset '{settings.dataset}' must be listed under 'datasets' (the datasets the "
            f"workflow fetches first), got {list(settings.datasets)}"
        )
    missing = [m for m in settings.models if m not in settings.lr]
    if missing:
        raise ConfigError(f"{NAME}: no learning rate for model(s) {missing} under 'lr'")
    settings.check_plans()
    images = data.image_classification(settings.dataset)
    train_pairs = draw_pairs(settings.seed, images.train_labels, settings.train_pairs, 0)
    test_pairs = draw_pairs(settings.seed, images.test_labels, settings.test_pairs, 1)
    mean, std = settings.normalize.mean, settings.normalize.std
    common = {k: v for k, v in settings.record().items() if k not in PER_RUN_KEYS}
    rows = []
    for kind in isc.ARRANGEMENTS:
        train = (
            isc.pair_features(images.train_images, train_pairs, kind, mean, std),
            torch.from_numpy(train_pairs[:, 2]).float(),
        )
        test = (
            isc.pair_features(images.test_images, test_pairs, kind, mean, std),
            torch.from_numpy(test_pairs[:, 2]).float(),
        )
        for model_kind in settings.models:
            for seed_index in range(settings.seeds_of(model_kind)):
                key = f"{model_kind}_{kind}_seed{seed_index}"
                fingerprint = run_fingerprint(common, key, settings.lr[model_kind], _mechanism())

                def compute(model_kind=model_kind, kind=kind, seed_index=seed_index, fingerprint=fingerprint):
                    return {"fingerprint": fingerprint, **run_one(settings, model_kind, kind, seed_index, train, test)}

                record, hit = cached_batch(out / BATCH_DIR / f"{key}.json", fingerprint, compute)
                log.info(
                    "%s: train %.3f test %.3f after %d epochs (%s, %.1f s)",
                    key,
                    record["train_acc"],
                    record["test_acc"],
                    record["epochs"],
                    "cached" if hit else "computed",
                    record["time_s"],
                )
                rows.append(
                    {
                        "model": model_kind,
                        "arrangement": kind,
                        "seed": seed_index,
                        **{column: record[column] for column in RUN_COLUMNS},
                    }
                )
    metrics = pd.DataFrame(rows, columns=["model", "arrangement", "seed", *RUN_COLUMNS])
    extra = {
        "walk_index": arrangement_walk_indices(settings.depth),
        "same_class_fraction": {"train": float(train_pairs[:, 2].mean()), "test": float(test_pairs[:, 2].mean())},
        "torch_threads": torch.get_num_threads(),
    }
    write_results(out, metrics, settings.record(), ctx, started, extra)


def table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean and std (over seeds, ddof 0) of train and test accuracy in %, one row per model × arrangement."""
    grouped = metrics.groupby(["model", "arrangement"], sort=False)[["train_acc", "test_acc"]]
    stats = grouped.agg(["mean", "std", "count"])
    rows = []
    for (model, kind), row in stats.iterrows():
        runs = int(row[("train_acc", "count")])
        rows.append(
            {
                "model": model,
                "arrangement": kind,
                "seeds": runs,
                **{
                    f"{split}_{stat}": 100 * float(np.nan_to_num(row[(f"{split}_acc", stat)]))
                    for split in ("train", "test")
                    for stat in ("mean", "std")
                },
            }
        )
    return pd.DataFrame(rows)


def markdown_table(stats: pd.DataFrame, walk_indices: dict[str, int]) -> str:
    """Table 1 as markdown: model, then train and test accuracy (mean ± std %) for low and high walk index."""
    lines = [
        f"| model | train, low WI ({walk_indices['low']:,}) | train, high WI ({walk_indices['high']:,}) | "
        f"test, low WI | test, high WI |",
        "|---|---:|---:|---:|---:|",
    ]
    for model, rows in stats.groupby("model", sort=False):
        cells = {
            (r.arrangement, split): f"{getattr(r, split + '_mean'):.1f} ± {getattr(r, split + '_std'):.1f}"
            for r in rows.itertuples()
            for split in ("train", "test")
        }
        lines.append(
            f"| {MODEL_LABELS.get(model, model)} | {cells[('low', 'train')]} | {cells[('high', 'train')]} | "
            f"{cells[('low', 'test')]} | {cells[('high', 'test')]} |"
        )
    return "\n".join(lines) + "\n"


def seeds_text(settings: Settings) -> str:
    """How many seeds the table's means are over: one number, or per model where the models differ."""
    counts = {model: settings.seeds_of(model) for model in settings.models}
    if len(set(counts.values())) <= 1:
        return f"{settings.fewest_seeds()} seed(s)"
    by_count: dict[int, list[str]] = {}
    for model, count in counts.items():
        by_count.setdefault(count, []).append(MODEL_LABELS.get(model, model))
    return " / ".join(f"{count} ({', '.join(names)})" for count, names in by_count.items()) + " seeds"


def describe(settings: Settings, walk_indices: Mapping[str, int]) -> str:
    """Caption text: data, models and training of the tier, and the walk index of each arrangement."""
    return (
        f"{settings.train_pairs:,} train / {settings.test_pairs:,} test pairs of Fashion-MNIST images "
        f"(16 chunks of 49 pixels per image, normalised with mean {settings.normalize.mean} and std "
        f"{settings.normalize.std}); depth {settings.depth}, width {settings.width}; Adam, full "
        f"batch, ≤ {settings.max_epochs:,} epochs, early stopping on train accuracy (patience "
        f"{settings.patience:,}); mean ± std over {seeds_text(settings)}. Walk index of the image "
        f"partition: low {walk_indices['low']:,}, high {walk_indices['high']:,}."
    )


def plot(results: Path, figure_png: Path, figure: FigureContext) -> list[Path]:
    """Bar chart of train and test accuracy per model, low vs high walk index (mean ± std); writes Table 1 beside
    the figure as ``<figure>.md`` and ``<figure>.csv``."""
    metrics, summary = load_results(results)
    stats = table(metrics)
    figure_png = Path(figure_png)
    atomic_write_csv(figure_png.with_suffix(".csv"), stats.round(2))
    atomic_write_text(figure_png.with_suffix(".md"), markdown_table(stats, summary["walk_index"]))
    apply_style()
    models = list(dict.fromkeys(stats["model"]))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), layout="constrained", sharey=True)
    width = 0.38
    for ax, split in zip(axes, ("train", "test")):
        for k, kind in enumerate(isc.ARRANGEMENTS):
            rows = stats[stats["arrangement"] == kind].set_index("model").loc[models]
            positions = np.arange(len(models)) + (k - 0.5) * width
            ax.bar(
                positions,
                rows[f"{split}_mean"],
                width,
                yerr=rows[f"{split}_std"],
                capsize=3,
                color=f"C{k}",
                label=f"{kind} walk index ({summary['walk_index'][kind]:,})",
            )
        ax.set_xticks(np.arange(len(models)), [MODEL_LABELS.get(m, m) for m in models])
        ax.set_title(f"{split} accuracy", fontsize=10)
        ax.axhline(50, color="0.5", lw=0.8, ls="--")
        ax.set_ylim(40, 100)
    axes[0].set_ylabel("accuracy (%)")
    axes[1].legend(loc="upper right", fontsize=8)
    add_title(fig, f"§{SECTION} {TITLE}")
    add_caption(fig, caption(summary, figure))
    return save_figure(fig, figure_png)


def caption(summary: Mapping[str, Any], figure: FigureContext) -> str:
    """The figure's caption: the protocol of the settings ``summary`` records and their substitutions (the settings
    departing from the paper tier's, after what the settings cannot show)."""
    settings = Settings.from_mapping(summary["settings"])
    return caption_text(
        f"§{SECTION}",
        figure.tier,
        describe(settings, summary["walk_index"]) + " Dashed: chance.",
        figure.substitutions(summary["settings"], DENSE_LAYERS_NOTE),
    )


def _paired(rows: pd.DataFrame, column: str) -> tuple[list[float], list[float]]:
    """The high and low values of ``column`` (in %) of one model's runs, paired by seed (seeds with both runs)."""
    table = rows.pivot_table(index="seed", columns="arrangement", values=column).dropna()
    if not {"low", "high"} <= set(table.columns):
        return [], []
    return list(100 * table["high"]), list(100 * table["low"])


def model_claim(metrics: pd.DataFrame, model: GnnModel) -> ClaimResult:
    """High walk index beats low on train and on test accuracy: the paired (same seed: same initial weights, same
    pairs) 95 % interval of high − low lies above 0 for both; fewer than two paired seeds cannot show it."""
    rows = metrics[metrics["model"] == model]
    intervals, measured = {}, {}
    for split in ("train", "test"):
        high, low = _paired(rows, f"{split}_acc")
        measured[f"{split}_acc_low_high"] = (
            [round(float(np.mean(low)), 2), round(float(np.mean(high)), 2)] if low else []
        )
        if len(high) >= MIN_SEEDS:
            intervals[split] = paired_interval(high, low)
            measured[f"{split}_gap_points"] = {
                "mean": round(intervals[split].mean, 2),
                "ci95": [round(intervals[split].low, 2), round(intervals[split].high, 2)],
                "pairs": intervals[split].n,
            }
    shown = len(intervals) == 2
    holds = shown and all(verdict_greater(interval) == PASSED for interval in intervals.values())
    details = (
        "; ".join(f"high − low, {split}: {interval.text()} (points)" for split, interval in intervals.items())
        if shown
        else f"fewer than {MIN_SEEDS} seeds with both arrangements"
    )
    return ClaimResult(
        f"{model}_high_walk_index_fits_better",
        NAME,
        SECTION,
        f"{MODEL_LABELS.get(model, model)}: the high-walk-index arrangement gives higher train and test accuracy "
        f"than the low one (paired by seed — same initial weights, same pairs: the 95 % interval of high − low "
        f"lies above 0 for both)",
        decide(holds, shown),
        measured,
        REFERENCE,
        details,
    )


def gate(metrics: pd.DataFrame, settings: Settings) -> Gate:
    """The precondition of every Table 1 claim: a tier large enough to compare (≥ MIN_TRAIN_PAIRS train pairs,
    ≥ MIN_EPOCHS epochs, ≥ MIN_SEEDS seeds for every model) whose every net learned (train accuracy ≥ LEARNED,
    chance 50 %). How many runs stopped by the criterion (no better train accuracy for ``patience`` epochs) rather
    than by the epoch budget is recorded, not required: the default tier's budget stops every run."""
    scale = (
        settings.train_pairs >= MIN_TRAIN_PAIRS
        and settings.max_epochs >= MIN_EPOCHS
        and settings.fewest_seeds() >= MIN_SEEDS
    )
    lowest = float(metrics["train_acc"].min()) if len(metrics) else float("nan")
    stopped = int((metrics["epochs"] < settings.max_epochs).sum())
    return Gate(
        f"≥ {MIN_TRAIN_PAIRS} train pairs, ≥ {MIN_EPOCHS} epochs, ≥ {MIN_SEEDS} seeds per model, and every net learned "
        f"(train accuracy ≥ {100 * LEARNED:g} %, chance 50 %)",
        bool(scale and len(metrics) and lowest >= LEARNED),
        f"{settings.train_pairs} pairs, ≤ {settings.max_epochs} epochs, {seeds_text(settings)}; lowest train "
        f"accuracy {100 * lowest:.1f} %; {stopped} of {len(metrics)} runs stopped by the patience criterion, the "
        f"others by the epoch budget",
    )


def claims(results: Path, tier: str) -> list[ClaimResult]:
    """One claim per model (Table 1), under the experiment's gate."""
    metrics, summary = load_results(results)
    settings = Settings.from_mapping(summary["settings"])
    return apply_gate(gate(metrics, settings), [model_claim(metrics, model) for model in settings.models])
