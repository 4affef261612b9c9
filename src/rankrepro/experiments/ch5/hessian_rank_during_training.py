"""§5.4 — Hessian rank along training: the ranks of H_L, H_O and H_F of a linear network stay at their closed forms
while gradient descent moves the weights; for ReLU networks the linear formula stays an estimate of the rank.

The closed forms hold at any generic point of parameter space, not only at a random initialisation: gradient descent
from a generic point (the data and the seeded Glorot-normal init) should keep every checkpoint generic, so the rank
should not move while the loss falls. The networks, data and rank rule are those of the sweeps
(:mod:`rankrepro.experiments.ch5.common`: the first n images, resized, one-hot over K = 10, float64, one network per
architecture — the linear and the ReLU network start from the same weights). Training is full-batch gradient descent
on the mean loss (:class:`rankrepro.core.optim.GradientDescent` in :func:`rankrepro.core.trainer.train`), stopped at
each checkpoint step to count the ranks (:func:`rankrepro.hessian.maps.map_ranks`). Each run (dataset × loss ×
activation) is written to ``<out>/batches/<key>.json`` when done.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import matplotlib.pyplot as plt
import pandas as pd
import torch
from matplotlib.lines import Line2D

from rankrepro.core import optim, trainer
from rankrepro.core.autodiff import autograd_loss_and_grads
from rankrepro.core.errors import ConfigError
from rankrepro.core.optim import GradientDescent
from rankrepro.core.trainer import StopRule, TrainSettings, train
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
from rankrepro.experiments.ch5.common import (
    ACTIVATION_LABELS,
    DATASET_LABELS,
    ESTIMATE_TOLERANCE,
    EXACT_FORMAT,
    KIND_LABELS,
    KINDS,
    LOSS_LABELS,
    MAIN,
    ImageDataSettings,
    Point,
    decidable_sweeps,
    estimate_sweeps,
    exact_measurement,
    first_samples,
    formula_mismatches,
    has_exact_rank,
    is_settled,
    left_out_text,
    network_for,
    plot_ranks,
    point_table,
    ranks_are_well_defined,
    settled_rank,
    sweep_name,
    tidy_metrics,
    within_estimate,
)
from rankrepro.hessian import exact
from rankrepro.hessian import maps as hessian
from rankrepro.hessian.maps import MLP, data_rank, map_ranks, predicted_ranks, total_loss
from rankrepro.pipeline.claims import ClaimResult, Gate, apply_gate, decide
from rankrepro.pipeline.plotting import add_caption, add_title, apply_style, caption_text, save_figure
from rankrepro.pipeline.settings import FigureContext

NAME = "hessian_rank_during_training"
CHAPTER = "ch5"
SECTION = "5.4"
TITLE = "Hessian rank along training: linear networks keep the closed-form rank"
DATASETS = ("mnist", "fashion-mnist")

#: the experiment's gate: every run's training loss at its last checkpoint is at most (1 − this) × its initial loss,
#: so the checkpoints lie on a trajectory that moved. Fixed before the run: a reduction by under a third would leave
#: the weights close to the initial point, where the ranks are already known to equal the closed forms (§5.1–5.3)
MIN_LOSS_REDUCTION = 0.3
#: bump when the way a run is computed changes (invalidates cached run files)
RUN_FORMAT = 1
REFERENCE = (
    "Singh et al. 2021: the closed forms hold at generic points (exact for linear networks) and remain a faithful "
    "estimate of the numerical rank for ReLU/tanh networks; spec: equality also holds during gradient descent for MSE, "
    "near convergence CE deviates (H_O 471 vs 477)"
)

#: the datasets this experiment reads (the losses and activations are the chapter's, :class:`ImageDataSettings`)
Dataset = Literal["mnist", "fashion-mnist"]


@dataclass(frozen=True)
class Settings(ImageDataSettings):
    """Networks d → ``hidden`` → K (bias-free, Glorot-normal init seeded by ``seed`` and the widths) trained by
    full-batch gradient descent at ``learning_rate`` on the mean loss over the first ``num_samples`` images of each
    dataset (grey, ``resize``-d to ``image_side`` × ``image_side``); the ranks are counted at every step of
    ``checkpoints``."""

    datasets: tuple[Dataset, ...]
    num_samples: int
    hidden: tuple[int, ...]
    learning_rate: float
    checkpoints: tuple[int, ...]


# ----------------------------------------------------------------------------------------------------- training
@dataclass(frozen=True)
class MeanLoss:
    """The trainer's objective for one network (a batch of B = 1 run): (1/n) Σ_i ℓ(F(x_i; θ), y_i) and its gradient."""

    mlp: MLP
    X: torch.Tensor
    Y: torch.Tensor
    loss: str

    def value(self, params: list[torch.Tensor]) -> torch.Tensor:
        """The mean loss ``(1,)`` at θ = ``params[0][0]``."""
        return (total_loss(self.mlp, params[0][0], self.X, self.Y, self.loss) / self.X.shape[0]).reshape(1)

    def loss_and_grads(self, params: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Mean loss and its gradient by autograd."""
        return autograd_loss_and_grads(self.value, params)

    def metrics(self, params: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Nothing beyond the loss the trainer logs."""
        return {}


def descend(objective: MeanLoss, theta: torch.Tensor, steps: int, learning_rate: float) -> torch.Tensor:
    """θ after ``steps`` full-batch gradient-descent steps θ ← θ − η ∇L(θ) from ``theta`` (the shared trainer loop;
    gradient descent keeps no state, so a trajectory cut into segments is the uninterrupted one)."""
    if steps == 0:
        return theta
    settings = TrainSettings(max_iters=steps, stop=StopRule(-math.inf), log_every=steps, sync_every=steps)
    lr = torch.tensor([learning_rate], dtype=theta.dtype, device=theta.device)
    result = train(objective, [theta[None].clone()], GradientDescent(lr), settings)
    if int(result.status[0]) == 3:  # diverged: the ranks of a network at NaN or inf weights mean nothing
        raise ConfigError(
            f"config key 'experiments.{NAME}.learning_rate': gradient descent diverged at learning rate "
            f"{learning_rate:g}; lower it"
        )
    return result.params[0][0]


@dataclass(frozen=True)
class Checkpoint:
    """A network at one checkpoint of its training: the step, the network, θ there and the objective (on the device's
    copies of X and Y)."""

    step: int
    mlp: MLP
    theta: torch.Tensor
    objective: MeanLoss


def trajectory(
    X: torch.Tensor,
    Y: torch.Tensor,
    loss: str,
    activation: str,
    settings: Settings,
    device: torch.device,
    until: int | None = None,
) -> Iterator[Checkpoint]:
    """The network of ``settings`` (bias-free, its seeded init) trained by :func:`descend` through the sorted
    checkpoints (up to step ``until`` when given), yielded at each: one descent shared by the float64 ranks and the
    exact ones, so θ at a step is the same bits for both."""
    point = Point(0, tuple(settings.hidden), int(X.shape[0]))
    mlp, theta = network_for(point, X.shape[1], Y.shape[1], activation, False, settings.seed)
    X, Y, theta = X.to(device), Y.to(device), theta.to(device)
    objective = MeanLoss(mlp, X, Y, loss)
    step = 0
    for target in sorted(settings.checkpoints):
        if until is not None and target > until:
            return
        theta = descend(objective, theta, target - step, settings.learning_rate)
        step = target
        yield Checkpoint(step, mlp, theta, objective)


def training_run(
    X: torch.Tensor, Y: torch.Tensor, loss: str, activation: str, settings: Settings, device: torch.device
) -> dict[str, Any]:
    """One network trained through the checkpoints: at each, the mean training loss, the rank reports of H_L, H_O,
    H_F and the time; the closed forms (the same at every step: they depend on r, the widths, K and the loss)."""
    started = time.time()
    checkpoints, mlp = [], None
    for checkpoint in trajectory(X, Y, loss, activation, settings, device):
        counted, mlp, objective = time.time(), checkpoint.mlp, checkpoint.objective
        reports = map_ranks(mlp, checkpoint.theta, objective.X, objective.Y, loss)
        checkpoints.append(
            {
                "step": checkpoint.step,
                "train_loss": float(objective.value([checkpoint.theta[None]])[0]),
                "ranks": {kind: report.as_dict() for kind, report in reports.items()},
                "time_s": round(time.time() - counted, 3),
            }
        )
    r = data_rank(X.to(device))
    return {
        "n": int(X.shape[0]),
        "d": int(X.shape[1]),
        "K": int(Y.shape[1]),
        "hidden": list(settings.hidden),
        "p": mlp.num_params,
        "r": r,
        "predicted": predicted_ranks(r, settings.hidden, int(Y.shape[1]), loss),
        "checkpoints": checkpoints,
        "time_s": round(time.time() - started, 3),
    }


def ill_defined_steps(run: dict[str, Any]) -> dict[int, dict]:
    """step → float64 rank reports of the checkpoints of a linear run whose rank is ill-defined."""
    if run["activation"] != "linear":
        return {}
    return {c["step"]: c["ranks"] for c in run["checkpoints"] if not ranks_are_well_defined(c["ranks"])}


def exact_checkpoints(
    X: torch.Tensor, Y: torch.Tensor, loss: str, settings: Settings, wanted: dict[int, dict], device: torch.device
) -> dict[str, dict]:
    """Exact ranks over Q (:func:`~rankrepro.experiments.ch5.common.exact_measurement`) of the linear network at the
    checkpoints in ``wanted`` (step → float64 rank reports), on :func:`training_run`'s :func:`trajectory` (so θ is
    bit-identical)."""
    return {
        str(checkpoint.step): exact_measurement(
            checkpoint.mlp, checkpoint.theta.cpu(), X.cpu(), Y.cpu(), loss, wanted[checkpoint.step], settings.seed
        )
        for checkpoint in trajectory(X, Y, loss, "linear", settings, device, until=max(wanted, default=-1))
        if checkpoint.step in wanted
    }


def checkpoint_records(run: dict[str, Any], exact_ranks: dict[str, dict] | None = None) -> list[dict[str, Any]]:
    """A run as one point record per checkpoint (the sweeps' layout, :func:`point_table`; ``value`` is the step,
    ``time_s`` that of counting its ranks; ``exact`` where ``exact_ranks`` has the step)."""
    shared = {k: v for k, v in run.items() if k not in ("checkpoints", "time_s", "fingerprint")}
    exact_ranks = exact_ranks or {}
    return [  # fmt: skip
        {
            **shared,
            "variant": MAIN,
            "value": c["step"],
            "train_loss": c["train_loss"],
            "ranks": c["ranks"],
            "bounds": None,
            "time_s": c["time_s"],
            **({"exact": exact_ranks[str(c["step"])]} if str(c["step"]) in exact_ranks else {}),
        }
        for c in run["checkpoints"]
    ]


def run(settings: Settings, out: Path, ctx: Context, data: DataSource) -> None:
    """Train every dataset × loss × activation through the checkpoints (cached per run); write one metrics row per
    checkpoint × Hessian (with the training loss) and the summary (checkpoint records, the runs' losses)."""
    started = time.time()
    out = Path(out)
    records, runs, unavailable = [], {}, {}
    code = mechanism_hash(hessian, trainer, optim)  # read the sources once, not per run
    exact_code = mechanism_hash(hessian, trainer, optim, exact)
    for dataset, images in available_datasets(settings.datasets, (), data.image_classification, unavailable):
        X, Y = first_samples(images, settings.num_samples, settings.image_side, settings.resize)
        for loss in settings.losses:
            for activation in settings.activations:
                key = f"{dataset}_{loss}_{activation}"
                fingerprint = run_fingerprint(settings.record(), key, RUN_FORMAT, code)

                def compute(loss=loss, activation=activation, key=key, fingerprint=fingerprint):
                    trained = training_run(X, Y, loss, activation, settings, ctx.device)
                    return {"fingerprint": fingerprint, "key": key, "dataset": dataset, "loss": loss,
                            "activation": activation, **trained}  # fmt: skip

                result, hit = cached_batch(out / BATCH_DIR / f"{key}.json", fingerprint, compute)
                logging.getLogger(__name__).info(
                    "%s: losses %s ranks H_L %s predicted %s (%s, %.1f s)",
                    key,
                    [round(c["train_loss"], 4) for c in result["checkpoints"]],
                    [c["ranks"]["loss"]["rank"] for c in result["checkpoints"]],
                    result["predicted"]["loss"],
                    "cached" if hit else "computed",
                    result["time_s"],
                )
                found = {}
                wanted = ill_defined_steps(result)
                if wanted:
                    exact_fingerprint = run_fingerprint(settings.record(), key, EXACT_FORMAT, exact_code)

                    def compute_exact(loss=loss, wanted=wanted, fingerprint=exact_fingerprint):
                        steps = exact_checkpoints(X, Y, loss, settings, wanted, ctx.device)
                        return {"fingerprint": fingerprint, "steps": steps}

                    batch, _ = cached_batch(out / BATCH_DIR / f"{key}.exact.json", exact_fingerprint, compute_exact)
                    found = batch["steps"]
                runs[key] = {
                    "initial_loss": result["checkpoints"][0]["train_loss"],
                    "final_loss": result["checkpoints"][-1]["train_loss"],
                    "time_s": result["time_s"],
                    "exact_time_s": round(sum(record["time_s"] for record in found.values()), 1),
                }
                records += checkpoint_records(result, found)
    metrics = tidy_metrics(records, "training step")
    losses = {(r["dataset"], r["loss"], r["activation"], r["value"]): r["train_loss"] for r in records}
    metrics["train_loss"] = [
        losses[key] for key in zip(metrics["dataset"], metrics["loss"], metrics["activation"], metrics["value"])
    ]
    extra = {"points": records, "runs": runs, "data": {d: [] for d in {r["dataset"] for r in records}}}
    write_results(out, metrics, settings.record(), ctx, started, extra)


# ----------------------------------------------------------------------------------------------------- claims
def training_gate(summary: dict) -> Gate:
    """The experiment's one gate: every run's training loss fell by at least :data:`MIN_LOSS_REDUCTION` of its
    initial value by the last checkpoint."""
    reductions = {
        key: 1 - run["final_loss"] / run["initial_loss"] if run["initial_loss"] > 0 else 0.0
        for key, run in summary["runs"].items()
    }
    return Gate(
        f"every run's training loss fell by ≥ {MIN_LOSS_REDUCTION:.0%} of its initial value by the last checkpoint",
        bool(reductions) and all(value >= MIN_LOSS_REDUCTION for value in reductions.values()),
        "loss reduction per run: " + ", ".join(f"{key} {value:.0%}" for key, value in reductions.items()),
    )


def linear_claim(table: pd.DataFrame, dataset: str, loss: str) -> ClaimResult:
    """Linear networks, one dataset and loss: at every checkpoint whose ranks are settled (:func:`is_settled`: well
    defined in float64, or exact over Q), rank H_L, H_O, H_F equal the closed forms, under :func:`decidable_sweeps`
    (the checkpoints of the run)."""
    part = table[(table["activation"] == "linear") & (table["dataset"] == dataset) & (table["loss"] == loss)]
    label = f"{DATASET_LABELS.get(dataset, dataset)}, {LOSS_LABELS[loss]}, linear network"
    kept, decidable = decidable_sweeps(part, label, is_settled)
    checked = [row for rows in kept.values() for row in rows.itertuples()]
    failures = [f"step {row.value}: {', '.join(formula_mismatches(row))}" for row in checked if formula_mismatches(row)]
    ill = [f"step {row.value}" for row in part.itertuples() if not is_settled(row)]
    exact_steps = [str(row.value) for row in part.itertuples() if has_exact_rank(row)]
    ranks = {
        kind: sorted({settled[0] for row in part.itertuples() if (settled := settled_rank(row, kind)) is not None})
        for kind in KINDS
    }
    return ClaimResult(
        f"{dataset}_linear_{loss}_ranks_stay_at_formulas_during_training",
        NAME,
        SECTION,
        f"{label}: along gradient descent, the rank of H_L, H_O and H_F equals the closed forms at every checkpoint "
        f"— the float64 numerical rank where it is well defined (the same at τ/100, τ and 100τ), elsewhere the exact "
        f"rank over Q of the float64 problem (the closed form then at the data's exact rank)",
        decide(not failures, bool(checked)),
        {
            "checkpoints": len(part),
            "checked": len(checked),
            "mismatches": len(failures),
            "ill_posed_checkpoints": len(ill),
            "exact_rank_checkpoints": len(exact_steps),
            "ranks_seen": ranks,
            "predicted": {kind: int(part[f"predicted_{kind}"].iloc[0]) for kind in KINDS} if len(part) else None,
        },
        REFERENCE,
        (f"MISMATCHES: {'; '.join(failures[:8])}; " if failures else "")
        + f"ranks seen along training {ranks}"
        + (f"; exact ranks over Q (float64 ill-defined) at steps {', '.join(exact_steps)}" if exact_steps else "")
        + (f"; ill-defined at {', '.join(ill)}" if ill else "")
        + f" [{decidable.describe()}]",
    )


def nonlinear_claim(table: pd.DataFrame, activation: str) -> ClaimResult:
    """Networks of one non-linear activation: |rank H_L / linear formula − 1| ≤ :data:`ESTIMATE_TOLERANCE` at every
    checkpoint where that check can fail both ways (:func:`two_sided_points`) and is the same at τ/100, τ and 100τ
    (:func:`estimate_is_decisive`), under
    :func:`decidable_sweeps` — the §5.1–5.3 estimate claim, its tolerance and rule, applied along training. How the
    rank moves (first and last checkpoint) is reported, not asserted."""
    part = table[table["activation"] == activation]
    label = ACTIVATION_LABELS.get(activation, activation)
    kept, decidable, left_out = estimate_sweeps(part, f"{label} networks")
    outside, checked, moves = [], 0, {}
    for key, rows in kept.items():
        for row in rows.itertuples():
            checked += 1
            if not within_estimate(row.rank_loss, row.predicted_loss):
                ratio = row.rank_loss / row.predicted_loss
                where = f"{sweep_name(key)} step {row.value}"
                outside.append(f"{where}: {row.rank_loss}/{row.predicted_loss} = {ratio:.2f}")
    for key, rows in part.groupby(["dataset", "loss"]):
        rows = rows.sort_values("value")
        moves["/".join(key)] = {
            kind: [int(rows[f"rank_{kind}"].iloc[0]), int(rows[f"rank_{kind}"].iloc[-1])] for kind in KINDS
        } | {"formula_loss": int(rows["predicted_loss"].iloc[0])}
    return ClaimResult(
        f"{activation}_rank_estimated_by_linear_formula_during_training",
        NAME,
        SECTION,
        f"{label} networks: along gradient descent, the linear-network formula stays a faithful estimate of the loss "
        f"Hessian's rank, |rank H_L / formula − 1| ≤ {ESTIMATE_TOLERANCE:g} at every checkpoint where this check can "
        f"fail both ways ({1 + ESTIMATE_TOLERANCE:g} × formula < p) and is the same at τ/100, τ and 100τ (the "
        f"§5.1–5.3 tolerance and rule, fixed before the run)",
        decide(not outside, checked > 0),
        {"checked": checked, "outside": len(outside), "left_out_one_sided": left_out, "first_and_last_rank": moves},
        REFERENCE,
        (f"OUTSIDE ±{ESTIMATE_TOLERANCE:g}: " + "; ".join(outside[:8]) + "; " if outside else "")
        + f"rank at the first and last checkpoint (per dataset/loss): {moves}{left_out_text(left_out)} "
        f"[{decidable.describe()}]",
    )


def claims(results: Path, tier: str) -> list[ClaimResult]:
    """Linear networks keep the closed-form ranks along training (per dataset and loss); the linear formula stays an
    estimate for each non-linear activation — all under the training gate."""
    _, summary = load_results(results)
    settings = Settings.from_mapping(summary["settings"], f"settings in {results}")
    table = point_table(summary)
    datasets = [d for d in settings.datasets if d in summary["data"]]
    found = []
    if "linear" in settings.activations:
        found += [linear_claim(table, dataset, loss) for dataset in datasets for loss in settings.losses]
    found += [nonlinear_claim(table, a) for a in settings.activations if a != "linear"]
    return apply_gate(training_gate(summary), found)


# ----------------------------------------------------------------------------------------------------- figure
def plot(results: Path, figure_png: Path, figure: FigureContext) -> list[Path]:
    """Rows = losses, columns = dataset × activation: the ranks of H_L, H_O, H_F at each checkpoint (filled markers
    where well defined; where the count changes between τ/100 and 100τ, black-edged at the exact rank over Q for linear
    networks, hollow otherwise: :func:`plot_ranks`), the linear formulas as horizontal
    lines (dotted for non-linear networks), and the training loss (grey, right axis); x = step (symlog)."""
    metrics, summary = load_results(results)
    settings = Settings.from_mapping(summary["settings"], f"settings in {results}")
    losses = [loss for loss in settings.losses if loss in set(metrics["loss"])]
    columns = [(d, a) for d in settings.datasets if d in summary["data"] for a in settings.activations]
    apply_style()
    fig, axes = plt.subplots(
        len(losses), len(columns), figsize=(3.0 * len(columns) + 0.8, 2.5 * len(losses) + 1.2),
        squeeze=False, layout="constrained", sharex=True,
    )  # fmt: skip
    colours = {kind: f"C{k}" for k, kind in enumerate(KINDS)}
    markers = {"loss": "o", "outer": "s", "functional": "^"}
    for i, loss in enumerate(losses):
        for j, (dataset, activation) in enumerate(columns):
            ax = axes[i][j]
            part = metrics[(metrics["loss"] == loss) & (metrics["dataset"] == dataset)]
            part = part[part["activation"] == activation]
            for kind in KINDS:
                rows = part[part["kind"] == kind].sort_values("value")
                style = "-" if activation == "linear" else ":"
                ax.plot(rows["value"], rows["predicted"], style, color=colours[kind], lw=1.2,
                        label=f"formula {KIND_LABELS[kind]}")  # fmt: skip
                plot_ranks(ax, rows["value"], rows, markers[kind], colours[kind], f"rank {KIND_LABELS[kind]}")
            ax.set_xscale("symlog", linthresh=max(1, min((s for s in settings.checkpoints if s > 0), default=1)))
            ax.set_title(f"{DATASET_LABELS.get(dataset, dataset)}, {activation}, {LOSS_LABELS[loss]}", fontsize=7.5)
            twin = ax.twinx()
            curve = part[part["kind"] == "loss"].sort_values("value")
            twin.plot(curve["value"], curve["train_loss"], "--", color="0.55", lw=1, label="training loss (right)")
            twin.tick_params(labelsize=6, colors="0.45")
            if i == len(losses) - 1:
                ax.set_xlabel("gradient-descent step")
            if j == 0:
                ax.set_ylabel("rank")
    legend = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    legend["black edge: exact rank over Q"] = Line2D([], [], marker="o", ls="", ms=3.5, mec="k", color="0.6")
    legend["hollow: rank ill-defined"] = Line2D([], [], marker="o", ls="", ms=3.5, mfc="none", color="0.3")
    fig.legend(legend.values(), legend.keys(), loc="outside right upper", fontsize=7.5)
    add_title(fig, f"§{SECTION} {TITLE}")
    side = settings.image_side
    details = (
        f"Networks d→{'→'.join(map(str, settings.hidden))}→K (bias-free, Glorot-normal init, seed {settings.seed}; "
        f"the linear and non-linear networks start from the same weights), full-batch gradient descent on the mean "
        f"loss at η = {settings.learning_rate:g}, on the first n = {settings.num_samples} training images, pixels/255, "
        f"{settings.resize}-resized to {side}×{side} (d = {side * side}), one-hot labels (K = 10), float64. Ranks at "
        f"steps {', '.join(map(str, settings.checkpoints))}: eigenvalues above τ = |λ|max·p·eps; where that count "
        f"changes between τ/100 and 100τ (ill-defined) a linear network's exact rank over Q of the float64 problem "
        f"is shown black-edged (computed modulo primes), a non-linear network's count hollow. Lines: the closed forms "
        f"for linear networks (dotted: for comparison with the non-linear ones)."
    )
    add_caption(fig, caption_text(f"§{SECTION}", figure.tier, details, figure.substitutions(summary["settings"])))
    return save_figure(fig, figure_png)
