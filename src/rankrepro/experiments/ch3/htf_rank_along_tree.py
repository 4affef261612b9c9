"""§3.1 appendix — hierarchical tensor rank along the mode tree, not across it, under loss and optimizer variants.

The §3.1 HTF completion problem (an order-N HTF target of small widths, ``n_observed`` of its entries observed;
:func:`rankrepro.experiments.ch3.rank_dynamics_common.htf_completion_data`) is fitted from small init by an HTF of
widths ``widths`` under every variant (loss × optimizer) of the original HTF runner: loss ℓ2, ℓ1 or Huber (δ =
``huber_threshold``; :mod:`rankrepro.core.losses`), optimizer GroupRMSprop or gradient descent, ``seeds``
initializations each (init seeds ``seed``, ``seed`` + 1, …; the ℓ2 / GroupRMSprop run of ``seed`` is the §3.1 HTF
run). As in the original code every variant stops on the train MSE (< ``loss_threshold`` at ``stop_patience``
consecutive checks), whatever loss its gradients follow.

Every ``log_every`` iterations the end tensor W_t is matricized w.r.t. every tree node ν (the hierarchical rank)
and every non-node mode subset S of :func:`rankrepro.factorization.htf.non_node_subsets` (order 4: {1,3}
interleaved and {1,4} crossing — with the nodes, every matricization of an order-4 tensor), and its rank is counted
as #{i: σ_i(W_t; S) > τ·σ_1(W*; S)} with τ = :data:`RANK_FRACTION` (:func:`rankrepro.factorization.htf.numerical_rank`
with the target's top singular value as the scale: a direction counts once it is 5 % of the target's largest, so a
run starts at rank 0 and its rank counts the directions it has learned). The thesis: incremental learning of local
components lowers the hierarchical rank — the ranks along the tree — and not the ranks across it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from torch import Tensor

from rankrepro.core import losses, measures
from rankrepro.core.errors import ConfigError
from rankrepro.core.losses import Loss
from rankrepro.core.measures import normalized_reconstruction_error
from rankrepro.core.optim import make_optimizer
from rankrepro.core.seeding import seeded_generator
from rankrepro.core.trainer import TrainSettings, train
from rankrepro.experiments.base import (
    Context,
    PatientStopSettings,
    checkpoint_path,
    load_results,
    mechanism_hash,
    run_fingerprint,
    write_results,
)
from rankrepro.experiments.ch2.common import LEARNED_FRACTION, emergence_iterations, learned_components
from rankrepro.experiments.ch3.rank_dynamics_common import (
    MAX_ERROR,
    MODEL_IDS,
    column_suffix,
    heldout_error,
    htf_completion_data,
    htf_effective_ranks,
    htf_root_rank,
    model_claims,
    spec_name,
    top_sorted,
)
from rankrepro.factorization import htf
from rankrepro.factorization.cp import multi_indices
from rankrepro.pipeline.claims import ClaimResult, Gate, apply_gate, decide, paired_interval, seed_means
from rankrepro.pipeline.plotting import add_caption, add_title, apply_style, caption_text, save_figure
from rankrepro.pipeline.settings import FigureContext, describe

NAME = "htf_rank_along_tree"
CHAPTER = "ch3"
SECTION = "3.1"
TITLE = "Hierarchical tensor rank along the tree vs across it, under loss and optimizer variants (appendix)"

log = logging.getLogger(__name__)

OptimizerName = Literal["group_rmsprop", "gd"]
#: a direction of a matricization counts once its singular value exceeds this fraction of the target's largest
#: (the spec's "learned component" fraction, §2.1)
RANK_FRACTION = LEARNED_FRACTION
#: node claim: a learned tree-node rank may exceed the target's exact rank at that node by at most this (the §3.1
#: "≤ 6 non-negligible components" for rank-5 targets: one spare)
NODE_RANK_SLACK = 1
#: fit precondition: final train MSE ≤ this fraction of the observed values' mean square (relative train error ≤
#: §3.1's error bound 0.1)
FIT_FRACTION = MAX_ERROR**2
#: exact-rank tolerance of the target (relative to its own σ_1), as §3.1 counts the target's root components
TARGET_RANK_TOL = 1e-6
REFERENCE = (
    "thesis/paper: incremental learning of local components lowers the hierarchical tensor rank — the ranks of the "
    "tree nodes' matricizations — and not the rank of other matricizations ({1,3} shown in the appendix figure); "
    "the original HTF runner offers losses l2 / l1 / huber (threshold 1) and optimizers grouprmsprop / sgd"
)


# ----------------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Settings(PatientStopSettings):
    """Schema ``$defs/htf_rank_along_tree``: the §3.1 HTF completion problem (target of widths ``target_widths``,
    ‖·‖_F = ``target_norm``, ``n_observed`` entries), the model (``widths``, N(0, ``init``²)), the variants
    (``losses`` × ``optimizers`` at ``lr``; ``seeds`` inits each) and the budget."""

    data_seed: int
    seed: int
    seeds: int
    target_norm: float
    n_observed: int
    order: int
    dim: int
    widths: tuple[int, ...]
    target_widths: tuple[int, ...]
    init: float
    losses: tuple[Loss, ...]
    huber_threshold: float
    optimizers: tuple[OptimizerName, ...]
    lr: float
    max_iters: int
    top_k: int

    @property
    def dims(self) -> tuple[int, ...]:
        """Shape of the target: (dim,)·order."""
        return (self.dim,) * self.order

    def variants(self) -> list[tuple[OptimizerName, Loss]]:
        """(optimizer, loss) pairs, optimizer-major, in config order."""
        return [(opt, loss) for opt in self.optimizers for loss in self.losses]

    def train_settings(self) -> TrainSettings:
        """The trainer's budget and cadence, capped at ``max_iters``."""
        return self.loop_settings(self.max_iters)


def variant_name(optimizer: str, loss: str) -> str:
    """The variant's key: ``group_rmsprop/l2``."""
    return f"{optimizer}/{loss}"


def variant_keys(settings: Settings) -> list[str]:
    """The variants' keys in config order (the summary's JSON sorts its keys)."""
    return [variant_name(*v) for v in settings.variants()]


def subsets_of(order: int) -> tuple[list[htf.Node], list[htf.Node]]:
    """(tree nodes except the root, non-node subsets) of an order-``order`` tensor."""
    return htf.tree_nodes(order), htf.non_node_subsets(order)


def check_settings(settings: Settings) -> None:
    """What the schema cannot say: a valid tree for model and target, observations that fit in the tensor,
    ``top_k`` within the root's width, and at least two init seeds to pair (the schema keeps the Huber threshold
    positive)."""
    htf.param_shapes(settings.dims, settings.widths)
    htf.param_shapes(settings.dims, settings.target_widths)
    where = f"config key 'experiments.{NAME}"
    if settings.n_observed > math.prod(settings.dims):
        raise ConfigError(f"{where}.n_observed': {settings.n_observed} exceeds the {math.prod(settings.dims)} entries")
    if settings.top_k > settings.widths[-1]:
        raise ConfigError(f"{where}.top_k': {settings.top_k} exceeds the root's {settings.widths[-1]} components")
    if settings.seeds < 2:
        raise ConfigError(f"{where}.seeds': the paired comparison across the tree needs ≥ 2 init seeds")
    if not htf.non_node_subsets(settings.order):
        raise ConfigError(f"{where}.order': an order-{settings.order} tensor has no non-node mode subset")


# ----------------------------------------------------------------------------------------------------- objective
def subset_ranks(full: Tensor, subsets: Sequence[htf.Node], scales: dict[htf.Node, float]) -> dict[str, Tensor]:
    """``rank_<modes>`` ``(B,)`` (float) for every mode subset S: #{i: σ_i(W; S) > τ·σ_1(W*; S)}, τ =
    :data:`RANK_FRACTION`, ``scales[S]`` = σ_1(W*; S)."""
    order = full.dim() - 1
    return {
        f"rank_{column_suffix(s)}": htf.numerical_rank(
            htf.matricization_singular_values(full, s, order), RANK_FRACTION, scales[s]
        ).to(full.dtype)
        for s in subsets
    }


class VariantCompletion:
    """HTF completion under a variant loss: gradients of (1/|Ω|) Σ_Ω ρ(W[ω] − y) (ρ of :mod:`rankrepro.core.losses`)
    for every run, while the value handed to the trainer — its stop criterion and divergence check — is the train
    MSE, as the original runner stops on ``train_mse_loss`` whatever it trains on.

    ``metrics``: the ``top_k`` largest root local-component norms (``top_norms``), the variant's train loss, the
    reconstruction and held-out errors, and the ranks of every tracked subset (:func:`subset_ranks`).
    """

    def __init__(
        self,
        target: Tensor,
        flat: Tensor,
        loss: Loss,
        huber_threshold: float,
        top_k: int,
        subsets: Sequence[htf.Node],
    ) -> None:
        losses.check_loss(loss, huber_threshold)
        self.target, self.loss, self.huber_threshold, self.top_k = target, loss, huber_threshold, top_k
        self.indices = multi_indices(flat, tuple(target.shape))
        self.values = target.reshape(-1)[flat]
        self.heldout = torch.ones_like(target)
        self.heldout.view(-1)[flat] = 0.0
        self.subsets = list(subsets)
        order = target.dim()
        self.scales = {s: float(htf.matricization_singular_values(target, s, order)[0]) for s in self.subsets}

    def train_loss(self, params: Sequence[Tensor]) -> Tensor:
        """The variant's per-run loss ``(B,)`` (differentiable)."""
        return losses.mean_loss(htf.htf_predict(params, self.indices) - self.values, self.loss, self.huber_threshold)

    def loss_and_grads(self, params: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """Per-run train MSE ``(B,)`` and the gradients of the variant's loss (one forward pass, one backward)."""
        with torch.enable_grad():
            leaves = [p.detach().requires_grad_(True) for p in params]
            prediction = htf.htf_predict(leaves, self.indices)
            loss = losses.mean_loss(prediction - self.values, self.loss, self.huber_threshold)
            grads = torch.autograd.grad(loss.sum(), leaves)
        mse = (prediction.detach() - self.values).pow(2).mean(-1)
        return mse, [g.detach() for g in grads]

    def metrics(self, params: list[Tensor]) -> dict[str, Tensor]:
        """See the class docstring."""
        with torch.no_grad():
            full = htf.htf_reconstruct(params)
            root = htf.local_component_norms(params)[tuple(range(self.target.dim()))]
            return {
                "top_norms": top_sorted(root, self.top_k),
                "train_loss": self.train_loss(params),
                "reconstruction_error": normalized_reconstruction_error(full, self.target),
                "heldout_error": heldout_error(full, self.target, self.heldout),
                **subset_ranks(full, self.subsets, self.scales),
            }


# ----------------------------------------------------------------------------------------------------- run
def init_runs(settings: Settings) -> list[Tensor]:
    """``seeds`` runs' parameters, run s drawn from (``seed`` + s, HTF) — the §3.1 HTF init for s = 0."""
    generators = [seeded_generator(settings.seed + s, MODEL_IDS["htf"]) for s in range(settings.seeds)]
    return htf.init_htf(settings.dims, settings.widths, torch.full((settings.seeds,), settings.init), generators)


def target_ranks(target: Tensor, subsets: Sequence[htf.Node]) -> dict[str, dict[str, int]]:
    """The target's ranks per subset (spec name): ``exact`` (relative tol 1e-6) and ``tau`` (the tracked count,
    σ_i > τ·σ_1)."""
    order = target.dim()
    out = {}
    for s in subsets:
        sigma = htf.matricization_singular_values(target, s, order)
        out[spec_name(s)] = {
            "exact": int(htf.numerical_rank(sigma, TARGET_RANK_TOL)),
            "tau": int(htf.numerical_rank(sigma, RANK_FRACTION)),
        }
    return out


def variant_objective(
    settings: Settings,
    target: Tensor,
    flat: Tensor,
    loss: Loss,
    subsets: Sequence[htf.Node],
    device: torch.device | str,
) -> VariantCompletion:
    """One variant's objective on ``device`` (where the trainer puts the parameters): the target and the observed
    positions, drawn on the CPU, are moved there first."""
    return VariantCompletion(
        target.to(device), flat.to(device), loss, settings.huber_threshold, settings.top_k, subsets
    )


def run_record(
    frame: pd.DataFrame, result: Any, run: int, params: list[Tensor], timed: int, allowed: int
) -> dict[str, Any]:
    """One run's summary in :func:`rankrepro.experiments.ch3.rank_dynamics_common.model_claims`'s format (model
    ``htf``), plus its status."""
    curve = frame[(frame["run"] == run) & ~frame["final"]]
    final = {k: v[run] for k, v in result.final_metrics.items()}
    own = [p[run : run + 1] for p in params]
    with torch.no_grad():
        norms = htf.local_component_norms(own)[tuple(range((len(own) + 1) // 2))][0].cpu().numpy()
        effective = htf_effective_ranks(htf.htf_reconstruct(own))
    return {
        "model": "htf",
        "run": run,
        "status": result.status_names()[run],
        "iterations": int(result.stopped_at[run]),
        "final_loss": float(final["loss"]),
        "final_train_loss": float(final["train_loss"]),
        "reconstruction_error": float(final["reconstruction_error"]),
        "heldout_error": float(final["heldout_error"]),
        "final_top_norms": [float(v) for v in final["top_norms"].cpu()],
        "learned_components": learned_components(norms),
        "allowed_components": allowed,
        "emergence_iterations": emergence_iterations(curve, timed),
        "effective_ranks": effective,
    }


def run(settings: Settings, out: Path, ctx: Context) -> None:
    """Train every variant's ``seeds`` runs (one batch per variant); write the tidy metrics (columns ``variant``,
    ``run``) and per-run records."""
    started = time.time()
    check_settings(settings)
    out = Path(out)
    target, flat = htf_completion_data(
        settings.data_seed, settings.dims, settings.target_widths, settings.target_norm, settings.n_observed
    )
    nodes, others = subsets_of(settings.order)
    timed = htf_root_rank(target)
    frames, records = [], {}
    for optimizer_name, loss in settings.variants():
        key = variant_name(optimizer_name, loss)
        t0 = time.time()
        objective = variant_objective(settings, target, flat, loss, nodes + others, ctx.device)
        optimizer = make_optimizer(
            optimizer_name, torch.full((settings.seeds,), settings.lr, dtype=torch.float64, device=ctx.device)
        )
        fingerprint = run_fingerprint(settings.record(), key, mechanism_hash(htf, losses, measures))
        result = train(
            objective,
            [p.to(ctx.device) for p in init_runs(settings)],
            optimizer,
            settings.train_settings(),
            checkpoint_path=checkpoint_path(out, key.replace("/", "-")),
            fingerprint=fingerprint,
            progress=f"{NAME}:{key}" if ctx.progress else None,
        )
        frame = result.metrics_frame()
        frame.insert(0, "variant", key)
        frames.append(frame)
        records[key] = {
            "runs": [
                run_record(frame, result, b, result.params, timed, settings.widths[-1]) for b in range(settings.seeds)
            ],
            "train_time_s": round(time.time() - t0, 3),
            "resumed_from": result.resumed_from,
        }
        log.info("%s %s: %s", NAME, key, [r["status"] for r in records[key]["runs"]])
    write_results(
        out,
        pd.concat(frames, ignore_index=True),
        settings.record(),
        ctx,
        started,
        {
            "variants": records,
            "node_subsets": [spec_name(s) for s in nodes],
            "non_node_subsets": [spec_name(s) for s in others],
            "target_ranks": target_ranks(target, nodes + others),
            "observed_mean_square": float(target.reshape(-1)[flat].pow(2).mean()),
            "timed_components": timed,
        },
    )


# ----------------------------------------------------------------------------------------------------- figure
def rank_column(name: str) -> str:
    """Metric column of a subset given by its spec name: ``{1,3}`` → ``rank_0_2``."""
    return "rank_" + "_".join(str(int(n) - 1) for n in name.strip("{}").split(","))


def plot(results: Path, figure_png: Path, figure: FigureContext) -> list[Path]:
    """One panel per variant: the tracked rank of every tree-node matricization (solid) and every non-node one
    (dashed) vs iterations, every seed (the first bold); dotted: the target's exact ranks."""
    metrics, summary = load_results(results)
    settings = Settings.from_mapping(summary["settings"])
    variants, nodes, others = summary["variants"], summary["node_subsets"], summary["non_node_subsets"]
    keys = variant_keys(settings)
    apply_style()
    count = len(keys)
    columns = min(count, 3)
    rows = math.ceil(count / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.8 * columns, 3.8 * rows + 1.4), layout="constrained")
    axes = np.atleast_1d(axes).ravel()
    palette = dict(zip(nodes + others, plt.get_cmap("tab10")(np.arange(len(nodes) + len(others)) % 10)))
    for ax, key in zip(axes, keys):
        curves = metrics[(metrics["variant"] == key) & ~metrics["final"].astype(bool)]
        for run, curve in curves.groupby("run"):
            bold = run == 0
            for name in nodes + others:
                ax.plot(
                    curve["iteration"],
                    curve[rank_column(name)],
                    color=palette[name],
                    ls="-" if name in nodes else "--",
                    lw=1.5 if bold else 0.7,
                    alpha=1.0 if bold else 0.5,
                    label=(f"{name} ({'node' if name in nodes else 'not a node'})" if bold else None),
                )
        for name in nodes + others:
            ax.axhline(summary["target_ranks"][name]["exact"], color=palette[name], ls=":", lw=0.8)
        statuses = ", ".join(f"{r['status']} {r['iterations']:,}" for r in variants[key]["runs"])
        ax.set_title(f"{key} ({statuses})", fontsize=9)
        ax.set_xlabel("iteration")
        ax.set_ylabel(f"rank (σ > {RANK_FRACTION:g}·σ₁ of target)")
    for ax in axes[count:]:
        ax.axis("off")
    axes[0].legend(fontsize=7, loc="upper left")
    add_title(fig, f"§{SECTION} {TITLE}")
    exact = ", ".join(f"{k} {v['exact']}" for k, v in summary["target_ranks"].items())
    details = (
        f"Order-{settings.order} dim-{settings.dim} target of HTF widths {describe(settings.target_widths)} "
        f"(‖·‖_F = {settings.target_norm:g}), {settings.n_observed:,} observed entries; HTF widths "
        f"{describe(settings.widths)} from N(0, {settings.init:g}²), {settings.seeds} init seeds per variant "
        f"(bold: seed {settings.seed}); lr {settings.lr:g}, Huber δ = {settings.huber_threshold:g}; stop at train "
        f"MSE < {settings.loss_threshold:g} for {settings.stop_patience} checks (cap {settings.max_iters:,}). Rank of "
        f"a matricization = #σ_i above {RANK_FRACTION:g}× the target's σ_1 there; solid: tree nodes, dashed: "
        f"non-node subsets; dotted: the target's exact ranks ({exact})."
    )
    add_caption(fig, caption_text(f"§{SECTION}", figure.tier, details, figure.substitutions(summary["settings"])))
    return save_figure(fig, figure_png)


# ----------------------------------------------------------------------------------------------------- claims
def all_runs(summary: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(variant, run record) for every run, in variant (config order) then seed order."""
    keys = variant_keys(Settings.from_mapping(summary["settings"]))
    return [(key, record) for key in keys for record in summary["variants"][key]["runs"]]


def fit_gate(summary: dict[str, Any]) -> Gate:
    """The one precondition: every run fitted its observations — final train MSE ≤ :data:`FIT_FRACTION` × the
    observed values' mean square (relative train error ≤ 0.1) and no run diverged."""
    bound = FIT_FRACTION * summary["observed_mean_square"]
    runs = all_runs(summary)
    holds = all(r["status"] != "diverged" and r["final_loss"] <= bound for _, r in runs)
    worst = max(r["final_loss"] for _, r in runs)
    return Gate(
        f"every run fitted its observations (final train MSE ≤ {FIT_FRACTION:g} × the observed mean square = "
        f"{bound:.3g}) without diverging",
        holds,
        f"largest final train MSE {worst:.3g}; "
        + ", ".join(f"{k}#{r['run']} {r['status']} at {r['iterations']:,}" for k, r in runs),
    )


def node_excess(metrics: pd.DataFrame, summary: dict[str, Any]) -> dict[str, int]:
    """Per variant: the largest (tracked rank − the target's exact rank) over its runs, logged iterations (and final
    rows) and tree nodes."""
    exact = {name: summary["target_ranks"][name]["exact"] for name in summary["node_subsets"]}
    out = {}
    for key, rows in metrics.groupby("variant", sort=False):
        out[str(key)] = int(max((rows[rank_column(n)] - exact[n]).max() for n in exact))
    return out


def time_averaged_ranks(metrics: pd.DataFrame, summary: dict[str, Any]) -> pd.DataFrame:
    """Per run (variant, run): the mean over its logged iterations of (a) the mean rank over the non-node subsets
    and (b) the mean rank over the tree nodes of the same sizes."""
    others = summary["non_node_subsets"]
    sizes = {len(name.split(",")) for name in others}
    nodes = [n for n in summary["node_subsets"] if len(n.split(",")) in sizes]
    curves = metrics[~metrics["final"].astype(bool)].copy()
    curves["non_node"] = curves[[rank_column(n) for n in others]].mean(axis=1)
    curves["node"] = curves[[rank_column(n) for n in nodes]].mean(axis=1)
    return curves.groupby(["variant", "run"], sort=False)[["non_node", "node"]].mean().reset_index()


def claims(results: Path, tier: str) -> list[ClaimResult]:
    """Node ranks stay near the target's (the non-node ranks beside them, as a measurement: the target's own ranks
    are higher across the tree, so no claim could rest on it), and §3.1's claims hold under every variant — all
    under :func:`fit_gate`."""
    metrics, summary = load_results(results)
    settings = Settings.from_mapping(summary["settings"])
    out: list[ClaimResult] = []
    excess = node_excess(metrics, summary)
    exact = {n: summary["target_ranks"][n]["exact"] for n in summary["node_subsets"]}
    # across the tree: reported beside the claim, not claimed — the target's own ranks are higher across the tree,
    # so any fit that follows it shows the same difference whether or not the thesis holds
    # every variant starts from the same seeded inits on the same data: the init seed (``run``) is the unit
    per_seed = seed_means(time_averaged_ranks(metrics, summary), ["non_node", "node"], seed="run")
    across = paired_interval(per_seed["non_node"], per_seed["node"])
    out.append(
        ClaimResult(
            "node_ranks_low",
            NAME,
            SECTION,
            f"at every logged iteration of every run and variant, the rank of every tree-node matricization (σ_i > "
            f"{RANK_FRACTION:g}·σ_1 of the target's) is ≤ the target's exact rank there + {NODE_RANK_SLACK} — the "
            f"learned tensor stays at low hierarchical rank along the way",
            decide(max(excess.values()) <= NODE_RANK_SLACK),
            {
                "largest_excess_per_variant": excess,
                "target_exact_ranks": exact,
                "non_node_minus_node_time_averaged_rank": {
                    "mean": round(across.mean, 3),
                    "interval": [round(across.low, 3), round(across.high, 3)],
                    "n": across.n,
                    "target_tau_ranks": {k: v["tau"] for k, v in summary["target_ranks"].items()},
                },
            },
            REFERENCE,
        )
    )
    for key in variant_keys(settings):
        verdicts = {}
        for record in summary["variants"][key]["runs"]:
            for claim, _, holds, measured in model_claims(record, settings.order, "completion"):
                verdicts[f"#{record['run']} {claim}"] = {"holds": bool(holds), **measured}
        out.append(
            ClaimResult(
                f"incremental_{key.replace('/', '_')}",
                NAME,
                SECTION,
                f"{key}: §3.1's HTF claims hold for every seed — the root's local components are learned one after "
                f"another, ≤ 6 are non-negligible, held-out error < {MAX_ERROR}, tree-node effective ranks ≤ 6",
                decide(all(v["holds"] for v in verdicts.values())),
                verdicts,
                REFERENCE,
            )
        )
    return apply_gate(fit_gate(summary), out)
