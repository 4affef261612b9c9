"""§1.5 — Tensor completion: CP tensor factorization (a shallow non-linear network) vs a linear model.

Targets are random CP-rank-1 (variant: rank-3) 8×8×8 and 8×8×8×8 tensors with ‖W*‖_F = 1; the first n entries of a
fixed random permutation are observed (nested designs). A CP model with the maximal number of components
R = ∏d / max d, trained by GroupRMSprop from small init on the mean squared error over the observed entries, fits
them and recovers the unobserved ones (normalized error ≪ 1) with a low estimated tensor rank; the linear model
(observed entries, zeros elsewhere — what gradient descent from zero converges to) does not generalize and has a
high tensor rank. Smaller init gives lower error.

Work is split into batches, one per (order, target rank, n, init scale) with every seed batched in one tensor
program, plus one "linear" batch per (order, target rank). Each finished batch is written atomically to
``<out>/batches/<key>.json`` (tagged with a fingerprint of the settings and source that produced it) and is skipped
on a rerun; a batch interrupted mid-training resumes from its trainer checkpoint.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from rankrepro.core import measures, optim, trainer
from rankrepro.core.errors import ConfigError
from rankrepro.core.optim import GroupRMSprop
from rankrepro.core.seeding import derived_seed
from rankrepro.core.trainer import train
from rankrepro.experiments.base import (
    BATCH_DIR,
    CHECKPOINT_DIR,
    Context,
    PatientStopSettings,
    cached_batch,
    checkpoint_path,
    load_results,
    mechanism_hash,
    run_fingerprint,
    write_results,
)
from rankrepro.factorization import cp, cp_als
from rankrepro.factorization.cp import (
    CPCompletionObjective,
    init_factors,
    linear_completion,
    max_cp_rank,
    multi_indices,
)
from rankrepro.factorization.cp_als import ALSSettings, estimate_cp_rank
from rankrepro.pipeline.claims import NOT_SHOWN, ClaimResult, decide
from rankrepro.pipeline.plotting import add_caption, apply_style, caption_text, save_figure
from rankrepro.pipeline.settings import FigureContext, SettingsRecord

NAME = "tensor_completion_vs_linear"
CHAPTER = "ch1"
SECTION = "1.5"
TITLE = "Tensor completion: tensor factorization finds low tensor rank, a linear model does not"

log = logging.getLogger(__name__)

#: bump when the way a batch is computed changes (invalidates cached batch files)
BATCH_FORMAT = 1
#: claims hold from this many observations on (spec §1.5)
CLAIM_MIN_N = {3: 200, 4: 1000}
#: a median over fewer seeds is decided by a single run (the median of 2 is their mean): such tiers do not show
#: the median-based claims
MIN_SEEDS_FOR_MEDIAN = 3
#: the spec's smallest acceptable iteration cap; a claim whose runs hit a smaller (tier) cap is not shown, pass or fail
SPEC_MIN_CAP = 50_000
REFERENCE = {
    3: "order 3: tf init 1e-3 error ≈1e-1 @50, 3e-3 @100, ≈5e-6 from 200 on, rank 1 everywhere; init 1e-2 "
    "≈1e-3…4e-4 from 300; linear error 0.95 → 0.07, rank 12–18 mid-range, 2 at 511",
    4: "order 4: tf error ≈1e-5 (init 1e-2) / ≈7e-7 (init 1e-3) from n = 1000 on, rank 1–2; linear rank up to ≈52",
}


# ----------------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class TensorOrderSettings(SettingsRecord):
    """One tensor order of the grid (an item of ``orders``): tensors of order N = ``order`` with every mode of
    dimension d = ``dim``, the numbers n of observed entries, the iteration cap of every run, and its own number of
    seeds (None: the section's ``num_seeds``)."""

    order: Literal[3, 4]
    dim: int
    n_observed: tuple[int, ...]
    max_iters: int
    num_seeds: int | None

    @property
    def dims(self) -> tuple[int, ...]:
        """The tensor's shape (d, …, d), N times."""
        return (self.dim,) * self.order

    @property
    def numel(self) -> int:
        """Its number of entries dᴺ."""
        return self.dim**self.order


@dataclass(frozen=True)
class RankEstimationSettings(SettingsRecord):
    """CP-ALS budget of the CP-rank estimate (``rank_estimation``): the estimated rank is the smallest r whose best
    fit (of ``restarts`` seeded restarts, ≤ ``max_iters`` iterations, ridge ρ) has MSE < ``tol`` over all entries."""

    tol: float
    max_iters: int
    restarts: int
    ridge: float
    seed: int

    def als_settings(self) -> ALSSettings:
        """The CP-ALS settings of the estimate."""
        return ALSSettings(
            tol=self.tol, max_iters=self.max_iters, restarts=self.restarts, ridge=self.ridge, seed=self.seed
        )


@dataclass(frozen=True)
class TensorCompletionSettings(PatientStopSettings):
    """§1.5 settings (schema ``tensor_completion_vs_linear``): seeds of the targets and of the inits, seeds per
    (order, target rank, n, init), init scales, GroupRMSprop step size, the stop rule (train MSE < ``loss_threshold``
    at ``stop_patience`` consecutive checks every ``check_every`` iterations), logging and checkpoint cadence, the CP
    gradient implementation, the target CP ranks, the orders and the rank-estimation budget."""

    data_seed: int
    seed: int
    num_seeds: int
    init_scales: tuple[float, ...]
    lr: float
    method: Literal["auto", "gather", "dense"]
    target_ranks: tuple[int, ...]
    orders: tuple[TensorOrderSettings, ...]
    rank_estimation: RankEstimationSettings

    def seeds_of(self, entry: TensorOrderSettings) -> int:
        """Runs per (n, init) of one order: its own ``num_seeds`` if set, else the section's."""
        return self.num_seeds if entry.num_seeds is None else entry.num_seeds


Settings = TensorCompletionSettings


# ----------------------------------------------------------------------------------------------------- problem
def make_problem(order: int, dim: int, target_rank: int, data_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Target tensor (CP rank ``target_rank``, factors N(0,1), ‖·‖_F = 1) and a fixed permutation of its entries."""
    generator = torch.Generator().manual_seed(derived_seed(data_seed, order, dim, target_rank))
    target = cp.random_cp_tensor((dim,) * order, target_rank, generator)
    permutation = torch.randperm(dim**order, generator=generator)
    return target, permutation


def observed_indices(permutation: torch.Tensor, n: int, dims: tuple[int, ...]) -> torch.Tensor:
    """Multi-indices of the first ``n`` entries of the permutation: ``(n, N)``."""
    return multi_indices(permutation[:n], dims)


def _source_hash() -> str:
    """Hash of the library code a batch's numbers depend on."""
    return mechanism_hash(cp, cp_als, trainer, optim, measures)


def _batch_fingerprint(settings: TensorCompletionSettings, entry: TensorOrderSettings, key: str) -> str:
    """Ties a batch file / checkpoint to everything that determines its numbers (not the other batches' grids)."""
    relevant = {k: v for k, v in settings.record().items() if k not in ("orders", "target_ranks", "init_scales")}
    relevant["order_entry"] = {k: v for k, v in entry.record().items() if k != "n_observed"}
    return run_fingerprint(relevant, key, BATCH_FORMAT, _source_hash())


def _linear_fingerprint(settings: TensorCompletionSettings, entry: TensorOrderSettings, key: str) -> str:
    """Ties a linear-baseline batch file to what determines its numbers: the n-grid, the targets and the ALS budget."""
    relevant = {
        "grid": list(entry.n_observed),
        "dim": entry.dim,
        "data_seed": settings.data_seed,
        "rank": settings.rank_estimation.record(),
    }
    return run_fingerprint(relevant, key, BATCH_FORMAT, _source_hash())


# ----------------------------------------------------------------------------------------------------- batches
def _train_batch(
    settings: TensorCompletionSettings,
    entry: TensorOrderSettings,
    target_rank: int,
    n: int,
    init: float,
    out: Path,
    ctx: Context,
    key: str,
    fingerprint: str,
) -> dict[str, Any]:
    """Train every seed of one (order, target rank, n, init) as one batched program; estimate the ranks."""
    started = time.time()
    order, dims = entry.order, entry.dims
    target, permutation = make_problem(order, entry.dim, target_rank, settings.data_seed)
    indices = observed_indices(permutation, n, dims)
    seeds = settings.seeds_of(entry)
    components = max_cp_rank(dims)
    generators = [torch.Generator().manual_seed(derived_seed(settings.seed, order, s)) for s in range(seeds)]
    params = [p.to(ctx.device) for p in init_factors(dims, components, torch.full((seeds,), init), generators)]
    objective = CPCompletionObjective(target.to(ctx.device), indices.to(ctx.device), settings.method)
    optimizer = GroupRMSprop(torch.full((seeds,), settings.lr, dtype=torch.float64, device=ctx.device))
    max_iters = entry.max_iters
    ckpt = checkpoint_path(out, key)
    result = train(
        objective,
        params,
        optimizer,
        settings.loop_settings(max_iters),
        checkpoint_path=ckpt,
        fingerprint=fingerprint,
        progress=key if ctx.progress else None,
    )
    trained_s = time.time() - started
    final = cp.cp_reconstruct([p.detach() for p in result.params]).cpu()
    ranks = estimate_cp_rank(final, settings.rank_estimation.als_settings())
    frame = result.metrics_frame()
    iterations = [int(i) for i in result.stopped_at.cpu()]
    executed = max(iterations) - result.resumed_from
    runs = [
        {
            "seed": s,
            "status": status,
            "iterations": iterations[s],
            "hit_cap": status == "max_iters",
            "final_loss": float(result.final_metrics["loss"][s]),
            "reconstruction_error": float(result.final_metrics["reconstruction_error"][s]),
            "estimated_rank": int(ranks.ranks[s]),
            "rank_found": bool(ranks.found[s]),
        }
        for s, status in enumerate(result.status_names())
    ]
    ckpt.unlink(missing_ok=True)  # the batch file supersedes it
    return {
        "fingerprint": fingerprint,
        "key": key,
        "order": order,
        "target_rank": target_rank,
        "n_observed": n,
        "init_scale": init,
        "components": components,
        "max_iters": max_iters,
        "method": objective.method,
        "runs": runs,
        "curve": {c: frame[c].tolist() for c in ("run", "iteration", "final", "loss", "reconstruction_error")},
        "train_time_s": round(trained_s, 3),
        "rank_time_s": round(time.time() - started - trained_s, 3),
        "iterations_executed": executed,
        "resumed_from": result.resumed_from,
        "ms_per_iteration": round(1e3 * trained_s / executed, 4) if executed > 0 else None,
    }


def _linear_batch(
    settings: TensorCompletionSettings, entry: TensorOrderSettings, target_rank: int, fingerprint: str, key: str
) -> dict[str, Any]:
    """The linear baseline at every n of the grid, and the ALS rank of the target itself (sanity check)."""
    started = time.time()
    order, dims = entry.order, entry.dims
    target, permutation = make_problem(order, entry.dim, target_rank, settings.data_seed)
    grid = list(entry.n_observed)
    tensors = torch.stack([linear_completion(target, observed_indices(permutation, n, dims)) for n in grid] + [target])
    ranks = estimate_cp_rank(tensors, settings.rank_estimation.als_settings())
    errors = measures.normalized_reconstruction_error(tensors, target)
    rows = [
        {
            "n_observed": n,
            "reconstruction_error": float(errors[i]),
            "exact_error": math.sqrt(max(0.0, 1.0 - float(target.reshape(-1)[permutation[:n]].pow(2).sum()))),
            "estimated_rank": int(ranks.ranks[i]),
            "rank_found": bool(ranks.found[i]),
        }
        for i, n in enumerate(grid)
    ]
    return {
        "fingerprint": fingerprint,
        "key": key,
        "order": order,
        "target_rank": target_rank,
        "rows": rows,
        "target_estimated_rank": int(ranks.ranks[-1]),
        "time_s": round(time.time() - started, 3),
    }


def _check_settings(settings: TensorCompletionSettings) -> None:
    """What the schema cannot say: every n fits the tensor (n ≤ dᴺ), orders appear once."""
    orders = [entry.order for entry in settings.orders]
    if len(set(orders)) != len(orders):
        raise ConfigError(f"config key 'experiments.{NAME}.orders': each order may appear once (got {orders})")
    for k, entry in enumerate(settings.orders):
        bad = [n for n in entry.n_observed if n > entry.numel]
        if bad:
            raise ConfigError(
                f"config key 'experiments.{NAME}.orders.{k}.n_observed': {bad} exceed the {entry.numel} "
                f"entries of an order-{entry.order} tensor of dimension {entry.dim}"
            )


def run(settings: TensorCompletionSettings, out: Path, ctx: Context) -> None:
    """Train every (order, target rank, n, init) batch, evaluate the linear baseline, write metrics and summary."""
    started = time.time()
    _check_settings(settings)
    out = Path(out)
    batch_dir = out / BATCH_DIR
    tf_records, linear_records = [], []
    for target_rank in settings.target_ranks:
        for entry in settings.orders:
            order = entry.order
            key = f"o{order}_r{target_rank}_linear"
            fp = _linear_fingerprint(settings, entry, key)
            record, hit = cached_batch(
                batch_dir / f"{key}.json", fp, lambda: _linear_batch(settings, entry, target_rank, fp, key)
            )
            log.info("%s: %s (%.1f s)", key, "cached" if hit else "computed", record["time_s"])
            linear_records.append(record)
            for n in entry.n_observed:
                for init in settings.init_scales:
                    key = f"o{order}_r{target_rank}_n{n}_init{init:.0e}"
                    fp = _batch_fingerprint(settings, entry, key)
                    record, hit = cached_batch(
                        batch_dir / f"{key}.json",
                        fp,
                        lambda: _train_batch(settings, entry, target_rank, n, init, out, ctx, key, fp),
                    )
                    log.info(
                        "%s: %s; %s iterations %s, errors %s, ranks %s",
                        key,
                        "cached" if hit else "trained",
                        record["method"],
                        [r["iterations"] for r in record["runs"]],
                        [f"{r['reconstruction_error']:.1e}" for r in record["runs"]],
                        [r["estimated_rank"] for r in record["runs"]],
                    )
                    tf_records.append(record)
    metrics, table = _assemble(tf_records, linear_records)
    capped = table[table["hit_cap"].fillna(False).astype(bool)]
    extra = {
        "runs": table.to_dict(orient="records"),
        "iteration_caps": {str(entry.order): entry.max_iters for entry in settings.orders},
        "capped_runs": capped[["order", "target_rank", "n_observed", "init_scale", "seed"]].to_dict(orient="records"),
        "targets": [
            {"order": r["order"], "target_rank": r["target_rank"], "target_estimated_rank": r["target_estimated_rank"]}
            for r in linear_records
        ],
        "batches": [
            {
                k: r[k]
                for k in (
                    "key",
                    "method",
                    "components",
                    "max_iters",
                    "train_time_s",
                    "rank_time_s",
                    "iterations_executed",
                    "ms_per_iteration",
                )
            }
            for r in tf_records
        ]
        + [{"key": r["key"], "time_s": r["time_s"]} for r in linear_records],
    }
    write_results(out, metrics, settings.record(), ctx, started, extra)
    ckpt_dir = out / CHECKPOINT_DIR
    if ckpt_dir.is_dir() and not any(ckpt_dir.iterdir()):
        ckpt_dir.rmdir()


def _assemble(tf_records: list[dict], linear_records: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tidy metrics (one row per run × logged iteration, plus final rows) and the per-run final table."""
    frames, rows = [], []
    for record in tf_records:
        curve = pd.DataFrame(record["curve"]).rename(columns={"run": "seed"})
        finals = pd.DataFrame(record["runs"])
        curve = curve.merge(finals[["seed", "estimated_rank", "status"]], on="seed", how="left")
        curve.loc[~curve["final"], ["estimated_rank", "status"]] = [np.nan, None]
        curve.insert(0, "model", "tf")
        for name in ("order", "target_rank", "n_observed", "init_scale"):
            curve.insert(1, name, record[name])
        frames.append(curve)
        for run in record["runs"]:
            rows.append(
                {
                    "order": record["order"],
                    "target_rank": record["target_rank"],
                    "n_observed": record["n_observed"],
                    "model": "tf",
                    "init_scale": record["init_scale"],
                    "max_iters": record["max_iters"],
                    "method": record["method"],
                    **run,
                }
            )
    for record in linear_records:
        for row in record["rows"]:
            base = {
                "order": record["order"],
                "target_rank": record["target_rank"],
                "n_observed": row["n_observed"],
                "model": "linear",
                "init_scale": np.nan,
            }
            rows.append(
                {
                    **base,
                    "max_iters": None,
                    "method": "closed form",
                    "seed": 0,
                    "status": "exact",
                    "iterations": 0,
                    "hit_cap": False,
                    "final_loss": 0.0,
                    **row,
                }
            )
            frames.append(
                pd.DataFrame(
                    [
                        {
                            **base,
                            "seed": 0,
                            "iteration": 0,
                            "final": True,
                            "loss": 0.0,
                            "reconstruction_error": row["reconstruction_error"],
                            "estimated_rank": row["estimated_rank"],
                            "status": "exact",
                        }
                    ]
                )
            )
    metrics = pd.concat(frames, ignore_index=True)
    columns = [
        "model",
        "order",
        "target_rank",
        "n_observed",
        "init_scale",
        "seed",
        "iteration",
        "final",
        "loss",
        "reconstruction_error",
        "estimated_rank",
        "status",
    ]
    return metrics[columns], pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------- figure
def _per_n(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """Median and 25/75 % quantiles over seeds of ``column`` per n."""
    grouped = table.groupby("n_observed")[column]
    return pd.DataFrame({"median": grouped.median(), "q25": grouped.quantile(0.25), "q75": grouped.quantile(0.75)})


def _panels(table: pd.DataFrame) -> list[tuple[int, int]]:
    return sorted({(int(o), int(r)) for o, r in zip(table["order"], table["target_rank"])}, key=lambda x: (x[1], x[0]))


def plot(results: Path, figure_png: Path, figure: FigureContext) -> list[Path]:
    """Per (order, target rank) a row: error (log) vs n and estimated CP rank vs n; linear vs TF per init."""
    _, summary = load_results(results)
    settings = Settings.from_mapping(summary["settings"])
    shapes = {entry.order: entry.dims for entry in settings.orders}
    table = pd.DataFrame(summary["runs"])
    apply_style()
    panels = _panels(table)
    fig, axes = plt.subplots(len(panels), 2, figsize=(11, 3.6 * len(panels) + 1.2), squeeze=False, layout="constrained")
    inits = sorted({float(a) for a in table.loc[table["model"] == "tf", "init_scale"]}, reverse=True)
    for row, (order, rank) in enumerate(panels):
        sub = table[(table["order"] == order) & (table["target_rank"] == rank)]
        linear = sub[sub["model"] == "linear"].sort_values("n_observed")
        err_ax, rank_ax = axes[row]
        err_ax.plot(linear["n_observed"], linear["reconstruction_error"], "o-", color="C7", label="linear")
        rank_ax.plot(linear["n_observed"], linear["estimated_rank"], "o-", color="C7", label="linear")
        for k, init in enumerate(inits):
            runs = sub[(sub["model"] == "tf") & np.isclose(sub["init_scale"].astype(float), init)]
            if runs.empty:
                continue
            colour = f"C{k}"
            for ax, column in ((err_ax, "reconstruction_error"), (rank_ax, "estimated_rank")):
                stats = _per_n(runs, column)
                ax.plot(stats.index, stats["median"], "o-", color=colour, label=f"tf, init {init:.0e}")
                ax.fill_between(stats.index, stats["q25"], stats["q75"], color=colour, alpha=0.25, lw=0)
            capped = runs[runs["hit_cap"].astype(bool)].groupby("n_observed").size()
            if len(capped):
                medians = _per_n(runs, "reconstruction_error").loc[capped.index, "median"]
                err_ax.plot(
                    capped.index,
                    medians,
                    "x",
                    color=colour,
                    ms=9,
                    mew=2,
                    label=f"init {init:.0e}: some runs hit the cap",
                )
        rank_ax.axhline(rank, color="k", ls="--", lw=1.2, label="ground truth rank")
        err_ax.set_yscale("log")
        err_ax.set_ylabel("normalized reconstruction error")
        rank_ax.set_ylabel("estimated CP rank")
        for ax in (err_ax, rank_ax):
            ax.set_xlabel("# observed entries n")
            ax.set_title(f"order {order} ({'×'.join(map(str, shapes[order]))}), target CP rank {rank}", fontsize=10)
            ax.legend(fontsize=7)
        rank_ax.set_ylim(bottom=0)
    fig.suptitle(f"§{SECTION} {TITLE}", fontsize=11)
    grids = "; ".join(
        f"order {entry.order}: n ∈ {{{', '.join(str(n) for n in entry.n_observed)}}}, "
        f"{settings.seeds_of(entry)} seeds, cap {entry.max_iters:,} iterations"
        for entry in settings.orders
    )
    components = " / ".join(str(max_cp_rank(entry.dims)) for entry in settings.orders)
    rank_cfg = settings.rank_estimation
    n_capped = len(summary.get("capped_runs", []))
    details = (
        f"CP model with R = ∏d/max d components ({components}), factors N(0, init²), GroupRMSprop lr {settings.lr}, "
        f"MSE over observed entries, stop when train MSE < {settings.loss_threshold:g} at "
        f"{settings.stop_patience} consecutive checks every {settings.check_every} iterations. {grids}. "
        f"Lines: median over seeds, bands 25–75 %. {n_capped} run(s) hit the iteration cap (× markers). "
        f"Linear = observed entries, zeros elsewhere. Estimated CP rank = smallest r whose CP-ALS fit "
        f"(best of {rank_cfg.restarts} seeded restarts, ≤ {rank_cfg.max_iters} iterations) has MSE < "
        f"{rank_cfg.tol:g} over all entries."
    )
    add_caption(fig, caption_text(f"§{SECTION}", figure.tier, details, figure.substitutions(summary["settings"])))
    return save_figure(fig, figure_png)


# ----------------------------------------------------------------------------------------------------- claims
def claims(results: Path, tier: str) -> list[ClaimResult]:
    """The §1.5 claims per order, on the rank-1 targets (the rank-3 variant is shown in the figure only)."""
    _, summary = load_results(results)
    table = pd.DataFrame(summary["runs"])
    table = table[table["target_rank"] == 1]
    out: list[ClaimResult] = []
    for order in (3, 4):
        out.extend(_order_claims(table[table["order"] == order], order))
    return out


def _order_claims(table: pd.DataFrame, order: int) -> list[ClaimResult]:
    """The five claims of one order (all ``not-shown-at-this-scale`` when the tier did not run that order)."""
    threshold = CLAIM_MIN_N[order]
    numel = 8**order
    tf = table[table["model"] == "tf"].copy()
    linear = table[table["model"] == "linear"].set_index("n_observed").sort_index()
    tf["init_scale"] = tf["init_scale"].astype(float)
    inits = sorted(tf["init_scale"].unique(), reverse=True) if len(tf) else []
    small = min(inits) if inits else None
    large_n = sorted(n for n in tf["n_observed"].unique() if n >= threshold)
    reference = REFERENCE[order]
    out: list[ClaimResult] = []

    def medians(column: str, init: float, ns) -> dict[int, float]:
        sub = tf[np.isclose(tf["init_scale"], init) & tf["n_observed"].isin(list(ns))]
        return {int(n): float(v) for n, v in sub.groupby("n_observed")[column].median().items()}

    def capped_below_spec(ns, init_list) -> list[str]:
        sub = tf[tf["n_observed"].isin(list(ns)) & tf["init_scale"].isin(list(init_list))]
        sub = sub[sub["hit_cap"].astype(bool) & (sub["max_iters"].astype(float) < SPEC_MIN_CAP)]
        return sorted({f"n={int(n)}, init {a:.0e}" for n, a in zip(sub["n_observed"], sub["init_scale"])})

    def record(
        claim: str,
        statement: str,
        holds: bool,
        shown: bool,
        measured: Any,
        details: str = "",
        capped: list[str] | None = None,
    ) -> None:
        verdict = decide(holds, shown)
        if shown and capped:  # passes and failures alike: a capped run's error is not the one its method reaches
            verdict = NOT_SHOWN
            details = (
                f"runs hit this tier's iteration cap (< the spec's {SPEC_MIN_CAP:,}) before the stop "
                f"criterion: {', '.join(capped)}; the check would have {'held' if holds else 'failed'}. " + details
            ).strip()
        if not shown and not details:
            details = "this tier's grid/seeds do not cover the claim"
            if len(tf) and not enough_seeds and claim != "linear_rank_high":
                details = (
                    f"{seeds} seed(s) per (n, init): a median needs ≥ {MIN_SEEDS_FOR_MEDIAN} to be robust to one run"
                )
        out.append(
            ClaimResult(f"order{order}_{claim}", NAME, SECTION, statement, verdict, measured, reference, details)
        )

    seeds = int(tf.groupby(["n_observed", "init_scale"])["seed"].nunique().min()) if len(tf) else 0
    enough_seeds = seeds >= MIN_SEEDS_FOR_MEDIAN
    shown_large = bool(large_n) and small is not None and enough_seeds
    # 1. small init reaches low error
    errs = medians("reconstruction_error", small, large_n) if shown_large else {}
    bad = [n for n, v in errs.items() if v > 1e-3]
    record(
        "tf_small_init_error",
        f"order {order}, n ≥ {threshold}: median error of TF with the smallest init (1e-3) ≤ 1e-3 at every n",
        not bad,
        shown_large and small <= 1e-3 + 1e-15,
        {"init": None if small is None else float(small), "median_error": errs},
        f"median error > 1e-3 at n = {bad}" if bad else "",
        capped=capped_below_spec(large_n, [small] if inits else []),
    )
    # 2. TF beats linear by 10×
    ratios: dict[str, dict[int, float]] = {}
    for init in inits:
        med = medians("reconstruction_error", init, large_n)
        ratios[f"{init:.0e}"] = {
            n: v / float(linear.loc[n, "reconstruction_error"]) for n, v in med.items() if n in linear.index
        }
    values = [v for r in ratios.values() for v in r.values()]
    bad = [
        f"init {a}, n = {n}: ratio {v:.3g} (linear error {float(linear.loc[n, 'reconstruction_error']):.3g})"
        for a, r in ratios.items()
        for n, v in r.items()
        if v > 0.1
    ]
    record(
        "tf_beats_linear",
        f"order {order}, n ≥ {threshold}: median error of TF (every init) ≤ 0.1 × error of the linear model",
        bool(values) and not bad,
        shown_large and bool(values),
        {"error_ratio_tf_over_linear": ratios},
        (
            "violated at " + "; ".join(bad) + ". Near n = ∏d the linear error is the norm of the few unobserved "
            "entries, which depends on the target draw"
        )
        if bad
        else "",
        capped=capped_below_spec(large_n, inits),
    )
    # 3. TF has low rank
    ranks = {f"{init:.0e}": medians("estimated_rank", init, large_n) for init in inits}
    max_ranks = {
        f"{init:.0e}": {
            int(n): int(v)
            for n, v in tf[np.isclose(tf["init_scale"], init) & tf["n_observed"].isin(large_n)]
            .groupby("n_observed")["estimated_rank"]
            .max()
            .items()
        }
        for init in inits
    }
    rank_values = [v for r in ranks.values() for v in r.values()]
    bad = [f"init {a}, n = {n}: {v:g}" for a, r in ranks.items() for n, v in r.items() if v > 2]
    record(
        "tf_rank_low",
        f"order {order}, n ≥ {threshold}: median estimated CP rank of TF (every init) ≤ 2",
        bool(rank_values) and not bad,
        shown_large and bool(rank_values),
        {"median_rank": ranks, "max_rank": max_ranks},
        ("median rank > 2 at " + "; ".join(bad)) if bad else "",
        capped=capped_below_spec(large_n, inits),
    )
    # 4. linear has high rank mid-range
    mid = [int(n) for n in linear.index if 0.25 * numel <= n <= 0.75 * numel]
    lin_ranks = {n: int(linear.loc[n, "estimated_rank"]) for n in mid}
    record(
        "linear_rank_high",
        f"order {order}: the linear model's estimated CP rank is ≥ 5 at every n in the mid-range "
        f"[{numel // 4}, {3 * numel // 4}]",
        bool(lin_ranks) and all(v >= 5 for v in lin_ranks.values()),
        bool(lin_ranks),
        {"linear_rank": lin_ranks, "all_n": {int(n): int(v) for n, v in linear["estimated_rank"].items()}},
        "" if mid else f"no n of the grid lies in the mid-range [{numel // 4}, {3 * numel // 4}]",
    )
    # 5. smaller init better at most n
    grid = sorted(tf["n_observed"].unique())
    if len(inits) >= 2:
        lo_err = medians("reconstruction_error", min(inits), grid)
        hi_err = medians("reconstruction_error", max(inits), grid)
        better = {int(n): lo_err[n] < hi_err[n] for n in lo_err if n in hi_err}
    else:
        better = {}
    record(
        "smaller_init_better",
        f"order {order}: median error with the smaller init < with the larger init at most (> half of the) n",
        bool(better) and sum(better.values()) > len(better) / 2,
        len(better) >= 3 and enough_seeds,
        {
            "smaller_better_at": [n for n, b in better.items() if b],
            "larger_better_at": [n for n, b in better.items() if not b],
        },
        capped=capped_below_spec(grid, inits),
    )
    return out
