"""§3.2 — countering the locality of CNNs: what the Is-Same-Class and Pathfinder experiments share.

Both sweep a *range* (the gap between the two images; the path length) × regularization strengths λ × seeds. Each
(range, λ, seed) run trains a fresh ResNet-18 (one logit, BCE) by SGD with momentum, with the input-gradient-change
penalty ``λ · mean |cos(∇_{x_I} f(x), ∇_{x_I} f(x'))|`` (:mod:`rankrepro.cnn.locality_training`), and records its final
train and test accuracy. Within a seed every run starts from the same initial weights and sees the same batches order
(a paired comparison across ranges and λ). Every run is cached in ``batches/`` (one JSON per run).

Claims (the paper: the accuracy of λ = 0 falls towards chance as the range grows; the regularizer recovers most of it
at long range and does not hurt at short range) compare test accuracies of the same seeds, each by a paired 95 %
Student-t interval over seeds (:func:`rankrepro.pipeline.claims.paired_interval`), never by a threshold on a mean. All
three stand on one gate (:func:`sweep_gate`, the same for both sweeps): ≥ 2 seeds per cell, ≥ ``MIN_TEST_SAMPLES``
test samples per run, λ = 0 learns the task at the shortest range (≥ ``LEARNS_AT_SHORT_RANGE``), and every net the
claims compare fitted its training set (100 % train accuracy, the paper's protocol) — a net that never fits in the
epoch budget confounds the range's effect with under-training. Where the gate fails every claim is
``not-shown-at-this-scale``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from rankrepro.cnn import locality, locality_training, resnet
from rankrepro.cnn.locality_training import RegionSampler, SGDSchedule, train_locality_classifier
from rankrepro.cnn.resnet import ResNet18, ResNetConfig, receptive_field
from rankrepro.core.errors import ConfigError
from rankrepro.core.seeding import derived_seed
from rankrepro.experiments.base import (
    BATCH_DIR,
    Context,
    cached_batch,
    load_results,
    mechanism_hash,
    run_fingerprint,
    write_results,
)
from rankrepro.pipeline.claims import (
    NOT_SHOWN,
    PASSED,
    ClaimResult,
    Gate,
    PairedInterval,
    apply_gate,
    decide,
    paired_interval,
    verdict_greater,
    verdict_not_worse,
)
from rankrepro.pipeline.plotting import add_caption, add_title, apply_style, caption_text, save_figure
from rankrepro.pipeline.settings import FigureContext, SettingsRecord

log = logging.getLogger(__name__)

#: λ = 0 must reach this test accuracy at the shortest range for the scale to show anything (chance = 0.5)
LEARNS_AT_SHORT_RANGE = 0.65
#: "near chance": within this many accuracy points (fraction) above 50 %
CHANCE_BAND = 0.10
#: no harm: every λ > 0 is not worse than λ = 0 at the shortest range by this much (non-inferiority margin; the
#: paper's differences there are ≤ 0.1 points)
MAX_SHORT_RANGE_LOSS = 0.03
#: below this many test samples per run the accuracy's standard error (≥ 2.2 points) blurs the few-point effects
MIN_TEST_SAMPLES = 500
#: what metrics.csv records of each run (besides range, strength, seed)
RUN_COLUMNS = ("train_acc", "test_acc", "epochs", "fitted_epoch", "final_penalty", "time_s")

#: a task: (range value, seed index) → (train images, train labels), (test images, test labels), region sampler
TaskBuilder = Callable[
    [int, int], tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor], RegionSampler]
]


@dataclass(frozen=True)
class LocalityTrainingSettings(SettingsRecord):
    """The network and training shared by the §3.2 sweeps (schema ``$defs/locality_training``): seed, strengths λ,
    seeds per (range, λ), the ResNet-18 layout (stage ``widths``, ``stem``) and SGD (``lr``, ``momentum``,
    ``batch_size``, ``max_epochs``, ``stop_after_fit``). Each sweep's settings extend it with its task's keys."""

    seed: int
    strengths: tuple[float, ...]
    seeds: int
    widths: tuple[int, int, int, int]
    stem: Literal["paper", "small"]
    lr: float
    momentum: float
    batch_size: int
    max_epochs: int
    stop_after_fit: int

    def schedule(self) -> SGDSchedule:
        """The SGD schedule: lr, momentum, batch size, epoch cap, epochs to go on after fitting the train set."""
        return SGDSchedule(
            lr=self.lr,
            momentum=self.momentum,
            batch_size=self.batch_size,
            max_epochs=self.max_epochs,
            stop_after_fit=self.stop_after_fit,
        )

    def network(self, in_channels: int) -> ResNetConfig:
        """The ResNet-18 layout (stage widths, stem) on ``in_channels`` input channels."""
        return ResNetConfig(widths=self.widths, stem=self.stem, in_channels=in_channels)


def check_receptive_field(settings: LocalityTrainingSettings, in_channels: int, span: int, name: str) -> int:
    """The network's receptive field; a ConfigError when it cannot see ``span`` pixels (both regions at once)."""
    field = receptive_field(settings.network(in_channels))
    if field < span:
        raise ConfigError(
            f"{name}: the ResNet's receptive field ({field} px) does not cover the {span} px the task "
            f"spans; widen the stem ('paper') or shrink the canvas"
        )
    return field


def run_fingerprint_settings(settings: LocalityTrainingSettings, range_key: str) -> dict[str, Any]:
    """The settings a run's fingerprint covers: all but the sweep's axes — the ranges (``range_key``), the strengths
    and the number of seeds — since a run's own range, λ and seed are in its key and its data, initial weights and
    batches depend on those values alone. Adding or dropping a range, a λ or a seed keeps every other run's cache."""
    return {k: v for k, v in settings.record().items() if k not in (range_key, "strengths", "seeds")}


def run_sweep(
    settings: LocalityTrainingSettings,
    out: Path,
    ctx: Context,
    name: str,
    range_key: str,
    in_channels: int,
    build_task: TaskBuilder,
    extra: dict[str, Any],
    task_modules: tuple[ModuleType, ...],
) -> None:
    """Every range (the settings' ``range_key`` values) × λ × seed run (cached per run); metrics.csv has one row per
    run with ``RUN_COLUMNS``.

    A cached run is reused only if its settings (:func:`run_fingerprint_settings`) and the source of the training
    modules and of ``task_modules`` (library modules that build the data, e.g. the Pathfinder generator) are
    unchanged."""
    started = time.time()
    out = Path(out)
    strengths = settings.strengths
    if 0.0 not in strengths or len(strengths) < 2:
        raise ConfigError(
            f"{name}: 'strengths' must hold 0 (plain training) and at least one λ > 0, got {list(strengths)}"
        )
    plan, mechanism = settings.schedule(), mechanism_hash(locality, locality_training, resnet, *task_modules)
    recorded = run_fingerprint_settings(settings, range_key)
    rows = []
    for value in getattr(settings, range_key):
        for seed_index in range(settings.seeds):
            task = None
            for strength in strengths:
                key = f"range{value}_lambda{strength:g}_seed{seed_index}"
                fingerprint = run_fingerprint(recorded, key, mechanism)

                def compute(value=value, seed_index=seed_index, strength=strength, fingerprint=fingerprint):
                    nonlocal task
                    task = task or build_task(value, seed_index)
                    return {
                        "fingerprint": fingerprint,
                        **train_run(settings, plan, task, in_channels, strength, seed_index, ctx),
                    }

                record, hit = cached_batch(out / BATCH_DIR / f"{key}.json", fingerprint, compute)
                log.info(
                    "%s: train %.3f test %.3f after %d epochs (%s, %.0f s)",
                    key,
                    record["train_acc"],
                    record["test_acc"],
                    record["epochs"],
                    "cached" if hit else "computed",
                    record["time_s"],
                )
                rows.append(
                    {
                        "range": value,
                        "strength": strength,
                        "seed": seed_index,
                        **{column: record[column] for column in RUN_COLUMNS},
                    }
                )
    metrics = pd.DataFrame(rows, columns=["range", "strength", "seed", *RUN_COLUMNS])
    write_results(out, metrics, settings.record(), ctx, started, {**extra, "torch_threads": torch.get_num_threads()})


def train_run(
    settings: LocalityTrainingSettings,
    plan: SGDSchedule,
    task: tuple,
    in_channels: int,
    strength: float,
    seed_index: int,
    ctx: Context,
) -> dict[str, Any]:
    """One run: a fresh ResNet-18 (init seeded by (seed, seed index), shared by every range and λ), trained on the
    task; its final accuracies, epochs, first fitted epoch, last epoch's mean penalty and the training curve."""
    train, test, draw_regions = task
    seed = settings.seed
    init = torch.Generator().manual_seed(derived_seed(seed, seed_index, 0))
    model = ResNet18(settings.network(in_channels), generator=init)
    outcome = train_locality_classifier(
        model,
        train,
        test,
        plan,
        strength,
        draw_regions,
        np.random.default_rng(derived_seed(seed, seed_index, 1)),
        device=ctx.device,
    )
    penalty = outcome.penalty[-1]
    return {
        "train_acc": outcome.train_accuracy[-1],
        "test_acc": outcome.test_accuracy,
        "epochs": outcome.epochs,
        "fitted_epoch": outcome.fitted_epoch,
        "final_penalty": None if np.isnan(penalty) else penalty,
        "time_s": round(outcome.seconds, 2),
        "train_curve": [round(a, 4) for a in outcome.train_accuracy],
    }


# ------------------------------------------------------------------------------------------------------ figure
def accuracy_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean and std (ddof 0) over seeds of train and test accuracy in %, one row per (strength, range)."""
    grouped = metrics.groupby(["strength", "range"])[["train_acc", "test_acc"]]
    stats = pd.concat([100 * grouped.mean().add_suffix("_mean"), 100 * grouped.std(ddof=0).add_suffix("_std")], axis=1)
    return stats.reset_index()


def plot_sweep(
    results: Path,
    figure_png: Path,
    figure: FigureContext,
    section: str,
    title: str,
    range_label: str,
    reference: dict[float, list[float]],
    reference_ranges: Sequence[int],
    details: str,
    notes: Sequence[str] = (),
) -> list[Path]:
    """Left: test accuracy vs range per λ (mean ± std over seeds; the paper's values dotted on their own x axis
    when the tier runs the paper's ranges); right: final train accuracy vs range per λ. The caption's substitutions:
    ``notes`` (what the settings cannot show), then the settings that depart from the paper tier's."""
    metrics, summary = load_results(results)
    stats = accuracy_table(metrics)
    apply_style()
    fig, (test_ax, train_ax) = plt.subplots(1, 2, figsize=(10, 3.9), layout="constrained", sharex=True)
    strengths = sorted(stats["strength"].unique())
    ranges = sorted(stats["range"].unique())
    for k, strength in enumerate(strengths):
        rows = stats[stats["strength"] == strength].sort_values("range")
        for ax, split in ((test_ax, "test"), (train_ax, "train")):
            ax.errorbar(
                rows["range"],
                rows[f"{split}_acc_mean"],
                yerr=rows[f"{split}_acc_std"],
                marker="o",
                ms=4,
                capsize=3,
                lw=1.4,
                color=f"C{k}",
                label=f"λ = {strength:g}",
            )
        if strength in reference and ranges == sorted(reference_ranges):
            test_ax.plot(reference_ranges, reference[strength], ls=":", color=f"C{k}", lw=1.2)
    for ax, label in ((test_ax, "test accuracy (%)"), (train_ax, "train accuracy, last epoch (%)")):
        ax.axhline(50, color="0.5", lw=0.8, ls="--")
        ax.set_xlabel(range_label)
        ax.set_ylabel(label)
        ax.set_xticks(ranges)
        ax.set_ylim(40, 101)
    test_ax.set_title("test accuracy, mean ± std over seeds", fontsize=10)
    train_ax.set_title("train accuracy at the end of training", fontsize=10)
    test_ax.legend(fontsize=8, loc="lower left")
    add_title(fig, f"§{section} {title}")
    substitutions = figure.substitutions(summary["settings"], *notes)
    add_caption(fig, caption_text(f"§{section}", figure.tier, details + " Dashed: chance.", substitutions))
    return save_figure(fig, figure_png)


def training_text(settings: LocalityTrainingSettings, receptive_field: int) -> str:
    """Caption text on the network (``receptive_field`` px, as the run measured it) and the training of a tier."""
    fitted = f"stop {settings.stop_after_fit} epochs after 100 % train accuracy, ≤ {settings.max_epochs} epochs"
    return (
        f"ResNet-18 layout (widths {'/'.join(map(str, settings.widths))}, {settings.stem} stem, receptive "
        f"field {receptive_field} px, random init), one logit, BCE + λ·input-gradient-change penalty; "
        f"SGD lr {settings.lr:g}, momentum {settings.momentum:g}, batch {settings.batch_size}, {fitted}; "
        f"{settings.seeds} seed(s) (the same initial weights for every range and λ of a seed)."
    )


# ------------------------------------------------------------------------------------------------------ claims
def pct(value: float) -> float:
    """A fraction as percentage points, rounded to 0.01."""
    return round(100 * float(value), 2)


def interval_text(interval: PairedInterval) -> str:
    """A paired interval of accuracy differences in percentage points."""
    return (
        f"mean {pct(interval.mean):g}, {interval.level:.0%} CI [{pct(interval.low):g}, {pct(interval.high):g}] "
        f"points over {interval.n} seeds"
    )


def per_seed(metrics: pd.DataFrame, strength: float, value: int) -> np.ndarray:
    """Test accuracies of one (λ, range) cell, ordered by seed (the pairing of every paired interval)."""
    cell = metrics[(metrics["strength"] == strength) & (metrics["range"] == value)].sort_values("seed")
    return cell["test_acc"].to_numpy(dtype=float)


def sweep_gate(metrics: pd.DataFrame, range_name: str, test_samples: int) -> Gate:
    """The one precondition of every §3.2 claim (both sweeps alike): ≥ 2 seeds per cell, the same seeds in every
    cell (the paired intervals need them, paired seed by seed), ≥ ``MIN_TEST_SAMPLES`` test samples per run, λ = 0
    learns the task at the shortest range (mean test accuracy ≥ ``LEARNS_AT_SHORT_RANGE``: the spec's pilot rule,
    else "the scale says nothing"), and every net the claims compare — every λ and seed at the shortest and at the
    longest range — fitted its training set (reached 100 % train accuracy in some epoch: the paper's protocol trains
    to fit, then on for ``stop_after_fit`` epochs)."""
    ranges = sorted(metrics["range"].unique())
    short, long = ranges[0], ranges[-1]
    seeds = int(metrics.groupby(["strength", "range"])["seed"].nunique().min())
    # the paired intervals pair cells seed by seed, in seed order (per_seed): every cell must hold the same seeds
    seed_sets = metrics.groupby(["strength", "range"])["seed"].agg(lambda s: tuple(sorted(s))).nunique()
    plain_short = float(per_seed(metrics, 0.0, short).mean())
    compared = metrics[metrics["range"].isin([short, long])]
    fitted = compared["fitted_epoch"].notna()
    unfit = compared[~fitted]
    unfit_text = (
        ", ".join(
            f"λ={s:g} {range_name} {r} seed {k}: {pct(a):g} %"
            for s, r, k, a in unfit[["strength", "range", "seed", "train_acc"]].itertuples(index=False)
        )
        if len(unfit)
        else "none"
    )
    holds = (
        seeds >= 2
        and seed_sets == 1
        and test_samples >= MIN_TEST_SAMPLES
        and plain_short >= LEARNS_AT_SHORT_RANGE
        and bool(fitted.all())
    )
    return Gate(
        f"≥ 2 seeds per cell, the same in every cell, ≥ {MIN_TEST_SAMPLES} test samples per run, λ = 0 learns the "
        f"task at the shortest {range_name} (mean test accuracy ≥ {pct(LEARNS_AT_SHORT_RANGE):g} %), and every net "
        f"compared (every λ and seed at the shortest and the longest {range_name}) fitted its training set (100 % "
        "train accuracy in some epoch, the paper's protocol)",
        holds,
        f"{seeds} seed(s) per cell{'' if seed_sets == 1 else f' ({seed_sets} different seed sets)'}; "
        f"{test_samples} test samples per run; λ = 0 at {range_name} {short}: "
        f"{pct(plain_short):g} % test; {int(fitted.sum())}/{len(compared)} compared nets fitted (not fitted, "
        f"last-epoch train accuracy: {unfit_text})",
    )


def sweep_claims(
    results: Path, name: str, section: str, reference: str, range_name: str, test_samples: int, paper_geometry: bool
) -> list[ClaimResult]:
    """The three §3.2 claims on a sweep, each decided by a paired 95 % Student-t interval over seeds (every seed
    shares its initial weights and batch order across ranges and λ), all under the one gate of :func:`sweep_gate`:

    - the fall: λ = 0's test accuracy drops from the shortest to the longest range (interval of the drop above 0);
      on the paper's geometry (``paper_geometry``) also to chance (interval of accuracy − 50 % below
      ``CHANCE_BAND``) — a reduced geometry's ranges need not be long enough to reach chance;
    - the repair: the strongest λ (the paper's strongest recovers most in both panels; no choice on the outcome)
      recovers more than half of λ = 0's drop at the longest range (interval of gain − drop/2 above 0);
    - no harm: at the shortest range every λ > 0 is not worse than λ = 0 by ``MAX_SHORT_RANGE_LOSS`` or more
      (interval of the difference above −``MAX_SHORT_RANGE_LOSS``)."""
    metrics, _ = load_results(results)
    gate = sweep_gate(metrics, range_name, test_samples)
    means = metrics.groupby(["strength", "range"])["test_acc"].mean()
    ranges = sorted(metrics["range"].unique())
    short, long = ranges[0], ranges[-1]
    strengths = sorted(metrics["strength"].unique())
    strongest = strengths[-1]
    table = {f"λ={s:g}": {str(r): pct(means.loc[(s, r)]) for r in ranges} for s in strengths}
    plain_short, plain_long = per_seed(metrics, 0.0, short), per_seed(metrics, 0.0, long)
    pairs = len(plain_short)
    out = []

    def interval(a: np.ndarray, b: np.ndarray) -> PairedInterval | None:
        return paired_interval(a, b) if pairs >= 2 else None

    def decided(verdict: str | None) -> str:
        return verdict if verdict is not None else NOT_SHOWN

    few = f"decided on {pairs} seed(s): a paired interval needs ≥ 2"
    drop = interval(plain_short, plain_long)
    chance = interval(plain_long, np.full(pairs, 0.5))
    fall_verdict = None
    if drop is not None and chance is not None:
        falls = verdict_greater(drop) == PASSED
        to_chance = chance.high < CHANCE_BAND
        fall_verdict = decide(falls and (to_chance or not paper_geometry))
    geometry = (
        f", to within {pct(CHANCE_BAND):g} points of chance (95 % interval of accuracy − 50 % below "
        f"{pct(CHANCE_BAND):g} points)"
        if paper_geometry
        else " (reduced geometry: its longest range need not reach chance; the fall alone is claimed)"
    )
    out.append(
        ClaimResult(
            "unregularized_falls_to_chance_with_range",
            name,
            section,
            f"λ = 0: test accuracy falls from the shortest to the longest {range_name} (paired 95 % interval of the "
            f"drop over seeds above 0){geometry}",
            decided(fall_verdict),
            {
                "test_acc_percent": table,
                "drop_points": interval_text(drop) if drop else few,
                "longest_minus_chance_points": interval_text(chance) if chance else few,
            },
            reference,
            "" if drop else few,
        )
    )

    reg_long = per_seed(metrics, strongest, long)
    # per seed: gain of the strongest λ over λ = 0 at the longest range, minus half of λ = 0's drop
    repair = interval(reg_long - plain_long - 0.5 * (plain_short - plain_long), np.zeros(pairs))
    gain = interval(reg_long, plain_long)
    out.append(
        ClaimResult(
            "regularizer_recovers_long_range",
            name,
            section,
            f"at the longest {range_name}, the strongest λ ({strongest:g}) recovers more than half of λ = 0's drop "
            f"from the shortest {range_name}: paired 95 % interval over seeds of (acc_λ − acc_0 at the longest) − "
            f"½ (acc_0 at the shortest − acc_0 at the longest) above 0",
            decided(verdict_greater(repair) if repair else None),
            {
                "test_acc_percent": table,
                "strength": float(strongest),
                "gain_minus_half_drop_points": interval_text(repair) if repair else few,
                "gain_points": interval_text(gain) if gain else few,
            },
            reference,
            "" if repair else few,
        )
    )

    losses = {s: interval(per_seed(metrics, s, short), plain_short) for s in strengths if s > 0}
    harmless = [verdict_not_worse(i, MAX_SHORT_RANGE_LOSS) for i in losses.values() if i is not None]
    out.append(
        ClaimResult(
            "regularizer_harmless_at_short_range",
            name,
            section,
            f"at the shortest {range_name}, every λ > 0 is not worse than λ = 0 by {pct(MAX_SHORT_RANGE_LOSS):g} "
            f"test-accuracy points or more (paired 95 % interval of acc_λ − acc_0 over seeds above "
            f"−{pct(MAX_SHORT_RANGE_LOSS):g})",
            decided(decide(all(v == PASSED for v in harmless)) if harmless else None),
            {
                "test_acc_percent": table,
                "difference_points": {f"λ={s:g}": interval_text(i) if i else few for s, i in losses.items()},
            },
            reference,
            "" if harmless else few,
        )
    )
    return apply_gate(gate, out)
