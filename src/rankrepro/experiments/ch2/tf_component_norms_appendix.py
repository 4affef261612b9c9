"""§2.1 (appendix variants) — component-norm dynamics under other losses, optimizers, orders and ranks.

The paper's code exposes what its appendix varies: the training loss (ℓ2, ℓ1, Huber = PyTorch's SmoothL1 with
threshold 1), the optimizer (GroupRMSprop, Adam, plain SGD/GD), completion or sensing, and the target's order and
CP rank. Each variant here is the §2.1 experiment (:mod:`rankrepro.experiments.ch2.common`) with one of those
changed: a CP model with many components trained from several small init scales; the claims are §2.1's (components
emerge one at a time, the learned rank equals the target's, smaller init → lower error), checked per variant at each of
``num_seeds`` init directions — a claim passes only if it holds at every one, so that no single draw's margin decides
it — each under §2.1's gate on its own variant's runs (every run of the variant, every seed, converged).

As in the paper's code, the stop rule reads the train mean squared error whatever the training loss; the ℓ1 and
Huber variants log their training loss as ``train_loss``. With ‖W*‖_F = 1 every residual is far below the Huber
threshold 1, so the Huber loss is ½ × the MSE on the whole trajectory.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import matplotlib.pyplot as plt
import pandas as pd

from rankrepro.core import losses
from rankrepro.core.errors import ConfigError
from rankrepro.experiments.base import (
    Context,
    PatientStopSettings,
    load_results,
    mechanism_hash,
    write_results,
)
from rankrepro.experiments.ch2.common import (
    ComponentDynamicsSettings,
    check_settings,
    draw_component_norms,
    init_seeds,
    make_objective,
    seed_range,
    seeded_dynamics_claims,
    train_every_seed,
)
from rankrepro.factorization import cp, cp_losses, cp_sensing
from rankrepro.pipeline.claims import ClaimResult
from rankrepro.pipeline.plotting import add_caption, add_title, apply_style, caption_text, save_figure
from rankrepro.pipeline.settings import FigureContext, SettingsRecord

NAME = "tf_component_norms_appendix"
CHAPTER = "ch2"
SECTION = "2.1"
TITLE = "Tensor factorization learns components one at a time (appendix: other losses, optimizers, order and rank)"
REFERENCE = (
    "paper appendix and code: the incremental learning of components of §2.1 persists under ℓ1 and Huber losses, "
    "Adam and plain gradient descent, and at other orders and target ranks (no numbers are given for the variants "
    "in the spec; §2.1's thresholds apply)"
)
NOTE = "Synthetic targets; the emergence times depend on their draw."

OPTIMIZER_NAMES = {"group_rmsprop": "GroupRMSprop", "gd": "GD", "adam": "Adam"}
LOSS_NAMES = {"l2": "ℓ2", "l1": "ℓ1", "huber": "Huber"}


@dataclass(frozen=True)
class AppendixVariant(SettingsRecord):
    """One variant (schema ``$defs.tf_appendix_variant``): the §2.1 problem of order ``order``, mode dimension
    ``dim``, CP rank ``target_rank`` seen through ``n_observed`` entries (completion) or Gaussian measurements
    (sensing), fitted under ``loss`` by ``optimizer`` at ``lr`` with ``components`` components from each of
    ``init_scales``, at most ``max_iters`` iterations."""

    name: str
    measurement: Literal["completion", "sensing"]
    loss: Literal["l2", "l1", "huber"]
    optimizer: Literal["group_rmsprop", "gd", "adam"]
    lr: float
    order: int
    dim: int
    target_rank: int
    n_observed: int
    components: int
    init_scales: tuple[float, ...]
    max_iters: int

    @property
    def label(self) -> str:
        """Panel and claim text, e.g. ``ℓ1 loss, GroupRMSprop lr 1e-03; order 3, dim 10, rank 3, completion``."""
        return (
            f"{LOSS_NAMES[self.loss]} loss, {OPTIMIZER_NAMES[self.optimizer]} lr {self.lr:.0e}; order {self.order}, "
            f"dim {self.dim}, rank {self.target_rank}, R = {self.components}, {self.measurement}"
        )


@dataclass(frozen=True)
class Settings(PatientStopSettings):
    """Schema ``$defs.tf_component_norms_appendix``: the seeds, the Huber threshold, the tracked norms, the CP
    gradient method and the stop rule shared by every variant, and the variants. Every variant trains from
    ``num_seeds`` init directions, seeded ``seed``, ``seed + 1``, …"""

    data_seed: int
    seed: int
    num_seeds: int
    huber_threshold: float
    top_k: int
    method: Literal["auto", "gather", "dense"]
    variants: tuple[AppendixVariant, ...]

    @property
    def init_seeds(self) -> tuple[int, ...]:
        """The seeds of every variant's init directions (:func:`~rankrepro.experiments.ch2.common.init_seeds`)."""
        return init_seeds(self.seed, self.num_seeds)

    def variant_settings(self, variant: AppendixVariant) -> ComponentDynamicsSettings:
        """The §2.1 settings of one variant (its problem, model and optimizer; the shared seeds and stop rule)."""
        return ComponentDynamicsSettings.from_mapping(
            {
                "data_seed": self.data_seed,
                "seed": self.seed,
                "num_seeds": self.num_seeds,
                "order": variant.order,
                "dim": variant.dim,
                "target_rank": variant.target_rank,
                "n_observed": variant.n_observed,
                "components": variant.components,
                "init_scales": list(variant.init_scales),
                "optimizer": variant.optimizer,
                "lr": variant.lr,
                "loss_threshold": self.loss_threshold,
                "stop_patience": self.stop_patience,
                "check_every": self.check_every,
                "max_iters": variant.max_iters,
                "log_every": self.log_every,
                "checkpoint_every": self.checkpoint_every,
                "top_k": self.top_k,
                "method": self.method,
            },
            f"experiments.{NAME}.variants.{variant.name}",
        )


def check_variants(settings: Settings) -> None:
    """What the schema cannot say: unique variant names, and every variant's §2.1 constraints
    (:func:`~rankrepro.experiments.ch2.common.check_settings`)."""
    names = [variant.name for variant in settings.variants]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"config key 'experiments.{NAME}.variants': repeated variant name(s) {repeated}")
    for i, variant in enumerate(settings.variants):
        check_settings(settings.variant_settings(variant), f"{NAME}.variants.{i}")


def run(settings: Settings, out: Path, ctx: Context) -> None:
    """Train every variant from every init seed (:func:`~rankrepro.experiments.ch2.common.train_every_seed`: one
    batched program per variant, one run per init seed and init scale); write one metrics table (columns ``variant``,
    ``seed``) and one summary (one record per variant, its runs carrying their ``seed``)."""
    started = time.time()
    check_variants(settings)
    out = Path(out)
    frames, records = [], []
    mechanism = mechanism_hash(cp, cp_sensing, cp_losses, losses)
    for variant in settings.variants:
        problem = settings.variant_settings(variant)
        objective = make_objective(problem, variant.measurement, ctx.device, variant.loss, settings.huber_threshold)
        outcome = train_every_seed(
            problem,
            objective,
            ctx,
            out,
            f"train_{variant.name}",
            (variant.measurement, variant.loss, settings.huber_threshold, mechanism),
            f"{NAME} {variant.name}" if ctx.progress else None,
        )
        frames.append(outcome.frame.assign(variant=variant.name))
        records.append(
            {
                "variant": variant.name,
                "label": variant.label,
                "target_rank": variant.target_rank,
                "method": getattr(objective, "method", "dense"),
                "runs": outcome.runs,
                **outcome.timing,
            }
        )
    write_results(out, pd.concat(frames, ignore_index=True), settings.record(), ctx, started, {"variants": records})


# ----------------------------------------------------------------------------------------------------- figure
def plot(results: Path, figure_png: Path, figure: FigureContext) -> list[Path]:
    """One panel per variant: the top-k component norms of its smallest-init run from the first init seed vs
    iterations (emergence times dotted), with every init's lowest reconstruction error from that seed in the panel."""
    metrics, summary = load_results(results)
    settings = Settings.from_mapping(summary["settings"])
    metrics = metrics[metrics["seed"] == settings.seed]
    variants = summary["variants"]
    columns = min(3, len(variants))
    rows = math.ceil(len(variants) / columns)
    apply_style()
    fig, axes = plt.subplots(rows, columns, figsize=(5.0 * columns, 3.6 * rows + 1.2), layout="constrained")
    flat_axes = list(axes.flat) if hasattr(axes, "flat") else [axes]
    curves = metrics[~metrics["final"].astype(bool)]
    for i, (ax, record) in enumerate(zip(flat_axes, variants)):
        runs = pd.DataFrame(record["runs"])
        runs = runs[runs["seed"] == settings.seed]
        smallest = runs.loc[runs["init_scale"].idxmin()]
        curve = curves[(curves["variant"] == record["variant"]) & (curves["run"] == smallest["run"])]
        draw_component_norms(ax, curve, smallest["emergence_iterations"])
        label = record["label"].replace("; ", "\n")
        ax.set_title(f"{record['variant']}: {label}, init {smallest['init_scale']:.0e}", fontsize=7.5)
        ax.set_ylabel("component norm" if i % columns == 0 else "")
        errors = "\n".join(
            f"init {r['init_scale']:.0e}: lowest error {r['min_reconstruction_error']:.1e} ({r['status']})"
            for _, r in runs.sort_values("init_scale").iterrows()
        )
        ax.text(0.98, 0.03, errors, transform=ax.transAxes, ha="right", va="bottom", fontsize=6.5, color="0.25")
    for ax in flat_axes[len(variants) :]:
        ax.set_axis_off()
    handles, labels = flat_axes[0].get_legend_handles_labels()
    legend_ax = flat_axes[-1] if len(flat_axes) > len(variants) else flat_axes[0]
    legend_ax.legend(handles, labels, fontsize=7, title="k-th largest norm", title_fontsize=7, loc="center", ncols=2)
    add_title(fig, f"§{SECTION} {TITLE}")
    seeds = settings.init_seeds
    read = f" (the claims read all {len(seeds)}: seeds {seed_range(seeds)})" if len(seeds) > 1 else ""
    details = (
        f"Each panel is the §2.1 experiment with the loss, optimizer, measurement, order or rank changed: target CP "
        f"rank as stated, factors N(0,1), ‖W*‖ = 1; sensing: Gaussian measurements with entries N(0, 1/numel); CP "
        f"model factors N(0, init²) (one init direction per seed, scaled); stop when "
        f"the train MSE < {settings.loss_threshold:g} at {settings.stop_patience} checks every "
        f"{settings.check_every} iterations, whatever the training loss (as the paper's code); Huber threshold "
        f"{settings.huber_threshold:g}. Dotted: emergence times of the smallest init (k-th norm reaches half its "
        f"final value). Drawn: the init direction of seed {settings.seed}{read}. {NOTE}"
    )
    keyed, notes = by_variant_name(summary["settings"], figure)
    add_caption(fig, caption_text(f"§{SECTION}", figure.tier, details, keyed.substitutions(*notes)))
    return save_figure(fig, figure_png)


@dataclass(frozen=True)
class _KeyedSubstitutions:
    """The caption's substitutions with variants compared by name (see :func:`by_variant_name`)."""

    settings: dict[str, Any]
    figure: FigureContext

    def substitutions(self, *notes: str) -> str:
        """:meth:`FigureContext.substitutions` of the keyed settings."""
        return self.figure.substitutions(self.settings, *notes)


def _keyed(section: Mapping[str, Any], names: set[str] | None = None) -> dict[str, Any]:
    """``section`` with its variants list as a mapping name → the variant's other keys (only ``names``, if given)."""
    variants = {
        v["name"]: {k: x for k, x in v.items() if k != "name"}
        for v in section.get("variants", [])
        if names is None or v["name"] in names
    }
    return {**section, "variants": variants}


def by_variant_name(settings: Mapping[str, Any], figure: FigureContext) -> tuple[_KeyedSubstitutions, list[str]]:
    """Settings and paper section keyed by variant name, so that the caption names each variant's departures key by
    key (``variants.l2_gd.max_iters 40,000 (paper: …)``); variants run by only one of the two tiers are not
    compared but named in the returned notes."""
    if figure.paper is None:
        return _KeyedSubstitutions(_keyed(settings), figure), []
    ours = {v["name"] for v in settings.get("variants", [])}
    theirs = {v["name"] for v in figure.paper.get("variants", [])}
    shared = ours & theirs
    notes = []
    if ours - theirs:
        only = [v["name"] for v in settings["variants"] if v["name"] not in theirs]
        notes.append(f"variant(s) {', '.join(only)} not in the paper tier")
    if theirs - ours:
        only = [v["name"] for v in figure.paper["variants"] if v["name"] not in ours]
        notes.append(f"the paper tier also runs {', '.join(only)}")
    keyed_figure = dataclasses.replace(figure, paper=_keyed(figure.paper, shared))
    return _KeyedSubstitutions(_keyed(settings, shared), keyed_figure), notes


# ----------------------------------------------------------------------------------------------------- claims
def claims(results: Path, tier: str) -> list[ClaimResult]:
    """§2.1's four claims for every variant (ids prefixed with the variant's name, statements with its label), each
    decided at every init seed under §2.1's gate read on the runs it is about — every run of its variant converged,
    from every seed (:func:`~rankrepro.experiments.ch2.common.seeded_dynamics_claims`). The variants are separate
    problems (another target, loss or measurement), so one variant's unconverged runs withhold its own claims only."""
    metrics, summary = load_results(results)
    seeds = Settings.from_mapping(summary["settings"]).init_seeds
    records: list[ClaimResult] = []
    for variant in summary["variants"]:
        name = variant["variant"]
        records += seeded_dynamics_claims(
            metrics[metrics["variant"] == name],
            pd.DataFrame(variant["runs"]),
            variant["target_rank"],
            seeds,
            NAME,
            SECTION,
            REFERENCE,
            prefix=f"{name}_",
            label=f"[{variant['label']}] ",
            who=name,
        )
    return records
