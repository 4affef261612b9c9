"""Shared machinery of the chapter-1 deep-matrix-factorization experiments (spec §1.1–§1.4).

Problems, batched training of a list of runs, per-run summaries, the figure panels and the claim helpers live
here once; each experiment module only states its runs, its figure layout and its claims.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm

from rankrepro.core import measures, trainer
from rankrepro.core.errors import ConfigError
from rankrepro.core.trainer import StopRule, TrainSettings
from rankrepro.experiments.base import Context, checkpoint_path, mechanism_hash, run_fingerprint
from rankrepro.factorization import dmf, dmf_kernel
from rankrepro.factorization.dmf import init_factors
from rankrepro.factorization.dmf_kernel import train_dmf
from rankrepro.pipeline.plotting import caption_text
from rankrepro.pipeline.settings import FigureContext, SettingsRecord

ITERATION_CMAP = "viridis"


@dataclass(frozen=True)
class DMFRun(SettingsRecord):
    """One gradient-descent run: depth N, step size η, end-to-end init scale α, balanced factors or i.i.d. ones, the
    required sign of det W(0), the per-factor std factor c of unbalanced runs (factors i.i.d. N(0, (c·α^{1/N})²);
    balanced runs keep c = 1), the index of an earlier run whose initial draw this run reuses (``init_of``: a control
    that differs only in η or c; None: its own draw) and the hidden width (None: min(m, n)). An item of §1.1's
    ``runs`` (schema ``dmf_run``); §1.2–§1.4 build theirs."""

    depth: int
    lr: float
    init_scale: float
    balanced: bool
    det_sign: Literal[-1, 1]
    factor_std_scale: float
    init_of: int | None
    hidden_width: int | None

    @property
    def label(self) -> str:
        """Legend text, e.g. ``lr 6e-03, init 1e-05, balanced, det>0`` (``, c 0.1``/``, width 10`` when set)."""
        kind = "balanced" if self.balanced else "unbalanced"
        sign = "det>0" if self.det_sign > 0 else "det<0"
        extra = "" if self.factor_std_scale == 1.0 else f", c {self.factor_std_scale:g}"
        extra += "" if self.hidden_width is None else f", width {self.hidden_width}"
        return f"lr {self.lr:.1e}, init {self.init_scale:.0e}, {kind}{extra}, {sign}"


def plain_run(depth: int, lr: float, init_scale: float, balanced: bool, det_sign: Literal[-1, 1]) -> DMFRun:
    """A run with the spec's per-factor std (c = 1), its own draw and hidden width min(m, n)."""
    return DMFRun(depth, lr, init_scale, balanced, det_sign, 1.0, None, None)


def initial_factors(run: DMFRun, shape: tuple[int, int], generator: torch.Generator) -> tuple[list[torch.Tensor], int]:
    """The initial factors [W_1, …, W_N] of ``run`` on an m×n problem and the number of draws used.

    Hidden width min(m, n): :func:`rankrepro.factorization.dmf.init_factors` (balanced: SVD split of P ~ N(0, α²);
    unbalanced: i.i.d. N(0, α^{2/N})). A wider hidden layer k > min(m, n) (unbalanced only: a balanced split of P has
    min(m, n) non-zero directions, and zero padding leaves the dynamics unchanged): W_1 ∈ ℝ^{k×n}, W_j ∈ ℝ^{k×k},
    W_N ∈ ℝ^{m×k} i.i.d. N(0, α^{2/N}). Draws repeat until sign(det) of the product's leading min(m, n) block is
    ``run.det_sign``. Every factor is then multiplied by c = ``run.factor_std_scale`` (exact for c = 1), which leaves
    that sign unchanged for depth N and c > 0.
    """
    width = min(shape) if run.hidden_width is None else run.hidden_width
    if width == min(shape):
        factors, attempts = init_factors(
            shape, run.depth, run.depth, run.init_scale, run.balanced, run.det_sign, generator
        )
    elif run.balanced or width < min(shape):
        raise ConfigError(
            f"hidden width {width} on a {shape[0]}×{shape[1]} problem: only unbalanced runs may be wider than "
            f"min(m, n) = {min(shape)}, and no run narrower"
        )
    else:
        factors, attempts = _wide_unbalanced_factors(shape, run.depth, width, run.init_scale, run.det_sign, generator)
    return [f * run.factor_std_scale for f in factors], attempts


def _wide_unbalanced_factors(
    shape: tuple[int, int], depth: int, width: int, scale: float, det_sign: int, generator: torch.Generator
) -> tuple[list[torch.Tensor], int]:
    """i.i.d. N(0, α^{2/N}) factors n → width → … → width → m, redrawn until the leading block's det has sign
    ``det_sign``."""
    m, n = shape
    k = min(shape)
    dims = [n] + [width] * (depth - 1) + [m]
    std = scale ** (1.0 / depth)
    for attempt in range(1, 10_001):
        factors = [
            torch.randn(dims[i + 1], dims[i], generator=generator, dtype=torch.float64) * std for i in range(depth)
        ]
        if torch.sign(torch.linalg.det(dmf.product(factors)[:k, :k])) == det_sign:
            return factors, attempt
    raise RuntimeError(f"no initialization with det sign {det_sign} in 10000 draws")


@dataclass(frozen=True)
class DMFTraining(SettingsRecord):
    """The gradient-descent budget and cadence every §1.1–§1.4 section shares (schema ``dmf_training``): run ``b``
    draws its init from ``seed + b`` (+ the batch's offset); a run stops once ½Σ_Ω(W−Y)² < ``loss_threshold`` or
    after ``max_iters`` iterations; metrics every ``log_every`` iterations, a checkpoint every ``checkpoint_every``
    (0: none)."""

    seed: int
    loss_threshold: float
    max_iters: int
    log_every: int
    checkpoint_every: int

    def train_settings(self) -> TrainSettings:
        """The trainer's loop settings: stop at the first iteration whose loss < ``loss_threshold``."""
        return TrainSettings(
            max_iters=self.max_iters,
            stop=StopRule(threshold=self.loss_threshold),
            log_every=self.log_every,
            checkpoint_every=self.checkpoint_every,
        )


@dataclass(frozen=True)
class DMFSingleRunSettings(DMFTraining):
    """Settings of §1.3 and §1.4 (schema ``dmf_perturbed_problem``/``dmf_larger_matrices`` less their problem list):
    the training budget and the one run — depth N, step size η, end-to-end init scale α, balanced or not — trained
    on each of their problems."""

    depth: int
    lr: float
    init_scale: float
    balanced: bool

    def dmf_run(self, det_sign: Literal[-1, 1]) -> DMFRun:
        """The run these settings describe, with det W(0) of sign ``det_sign``."""
        return plain_run(self.depth, self.lr, self.init_scale, self.balanced, det_sign)


def completion_problem(
    observed: dict[tuple[int, int], float], shape: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Target Y (zeros off Ω) and 0/1 mask of a completion problem with the given observed entries."""
    target = torch.zeros(shape, dtype=torch.float64)
    mask = torch.zeros(shape, dtype=torch.float64)
    for (i, j), value in observed.items():
        target[i, j] = value
        mask[i, j] = 1.0
    return target, mask


def problem_2x2(w12: float = 1.0, w21: float = 1.0, w22: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The 2×2 problem: w12, w21, w22 observed; w11 (index (0, 0)) unobserved."""
    return completion_problem({(0, 1): w12, (1, 0): w21, (1, 1): w22}, (2, 2))


def larger_problem(m: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Spec §1.4: W[0,1] = W[1,0] = 1, W[i,i] = 1 for 2 ≤ i < min(m, n), zeros elsewhere; all but (0,0) observed."""
    observed = {(i, j): 0.0 for i in range(m) for j in range(n) if (i, j) != (0, 0)}
    observed[(0, 1)] = observed[(1, 0)] = 1.0
    for i in range(2, min(m, n)):
        observed[(i, i)] = 1.0
    return completion_problem(observed, (m, n))


def blowup_bound(loss: float) -> float:
    """Lower bound on |w11| at ½-SSE loss ℓ for det(W) > 0 on the 2×2 problem: (1 − √(2ℓ))² / √(2ℓ)."""
    root = math.sqrt(2.0 * loss)
    return (1.0 - root) ** 2 / root


def train_runs(
    runs: list[DMFRun],
    targets: torch.Tensor,
    masks: torch.Tensor,
    settings: DMFTraining,
    out: Path,
    key: str,
    ctx: Context,
    tracked: tuple[tuple[int, int], ...],
    seed_offset: int = 0,
    draw_of: list[int] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train ``runs`` (targets/masks ``(B, m, n)``) by plain GD, each run's loop compiled (:mod:`rankrepro.
    dmf_kernel`), up to ``ctx.threads`` runs at a time; return (metrics, per-run table).

    Run ``b`` draws its initialization (:func:`initial_factors`) from ``torch.Generator().manual_seed(seed +
    seed_offset + k)`` with k = ``draw_of[b]`` (default b): runs that share k and their depth, α, balance and det sign
    start from the same random direction (paired designs). The checkpoint is tied to the whole section ``settings``
    records, the runs, their draws, the problems and the library code.
    """
    shape = (targets.shape[-2], targets.shape[-1])
    draw_of = list(range(len(runs))) if draw_of is None else list(draw_of)
    per_run, draws = [], []
    for run, k in zip(runs, draw_of, strict=True):
        generator = torch.Generator().manual_seed(settings.seed + seed_offset + k)
        factors, attempts = initial_factors(run, shape, generator)
        per_run.append(factors)
        draws.append(attempts)
    fp = run_fingerprint(
        settings.record(),
        key,
        seed_offset,
        draw_of,
        [asdict(r) for r in runs],
        targets.tolist(),
        masks.tolist(),
        mechanism_hash(dmf, dmf_kernel, trainer, measures),
    )
    result = train_dmf(
        per_run,
        targets,
        masks,
        [r.lr for r in runs],
        settings.train_settings(),
        tracked,
        threads=ctx.threads,
        checkpoint_path=checkpoint_path(out, key),
        fingerprint=fp,
        progress=key if ctx.progress else None,
    )
    table = pd.DataFrame([{**asdict(r), "label": r.label} for r in runs])
    for optional in ("init_of", "hidden_width"):  # None stays None in summary.json (not NaN)
        table[optional] = pd.Series([getattr(r, optional) for r in runs], dtype=object)
    table.insert(0, "run", np.arange(len(runs)))
    table["draw_of"] = draw_of
    table["init_draws"] = draws
    table["status"] = result.status_names()
    table["iterations"] = result.stopped_at.cpu().numpy()
    metrics = result.metrics_frame().merge(
        table[["run", "depth", "lr", "init_scale", "balanced", "det_sign"]], on="run", how="left"
    )
    return metrics, table


def train_2x2_batch(
    runs: list[DMFRun],
    settings: DMFTraining,
    out: Path,
    ctx: Context,
    tracked: tuple[tuple[int, int], ...],
    draw_of: list[int],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train ``runs`` on the 2×2 problem as one batch (:func:`train_runs`, run b drawn from seed + ``draw_of[b]``);
    return the metrics and the :func:`finished_table` of |w11|."""
    target, mask = problem_2x2()
    batch = len(runs)
    metrics, table = train_runs(
        runs, target.expand(batch, 2, 2), mask.expand(batch, 2, 2), settings, out, "batch", ctx, tracked, 0, draw_of
    )
    return metrics, finished_table(metrics, table, "w00")


def final_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its final state."""
    return metrics[metrics["final"]].set_index("run").sort_index()


def det_sign_changes(metrics: pd.DataFrame) -> pd.Series:
    """Per run: whether sign(det W) at any logged iteration differs from the run's required initial sign."""
    changed = np.sign(metrics["det"]) != metrics["det_sign"]
    return changed.groupby(metrics["run"]).any()


def value_at_first_loss_below(metrics: pd.DataFrame, column: str, thresholds: list[float]) -> pd.DataFrame:
    """``column`` at the first logged row with loss < each threshold, per run (NaN if never below)."""
    records = []
    for run, rows in metrics.sort_values("iteration").groupby("run"):
        record: dict[str, Any] = {"run": run}
        for thr in thresholds:
            below = rows[rows["loss"] < thr]
            record[f"{thr:g}"] = float(below[column].iloc[0]) if len(below) else float("nan")
        records.append(record)
    return pd.DataFrame(records).set_index("run")


def monotone_after(rows: pd.DataFrame, column: str, loss_below: float, rtol: float = 1e-9) -> bool:
    """Whether ``column`` is non-decreasing over the logged rows once loss < ``loss_below`` (relative tol)."""
    series = rows.sort_values("iteration")
    series = series[series["loss"] < loss_below][column].to_numpy()
    if series.size < 2:
        return True
    return bool(np.all(np.diff(series) >= -rtol * np.abs(series[:-1])))


def draw_unobserved_vs_loss(
    ax: Axes,
    metrics: pd.DataFrame,
    runs: list[int],
    column: str,
    labels: dict[int, str],
    max_iteration: int,
    loss_range: tuple[float, float],
) -> object:
    """Paper-style panel: |unobserved entry| vs loss (log, inverted), colour = iteration; returns the mappable.

    Each run is a grey line with markers coloured by iteration (log colour scale), one marker shape per run.
    """
    markers = ["o", "s", "^", "D", "v", "P", "X", "*"]
    norm = LogNorm(vmin=1, vmax=max(max_iteration, 10))
    mappable = None
    for k, run in enumerate(runs):
        rows = metrics[metrics["run"] == run].sort_values("iteration")
        ax.plot(rows["loss"], np.abs(rows[column]), color="0.55", lw=0.8, zorder=1)
        picks = _log_spaced_rows(rows, 28)
        mappable = ax.scatter(
            picks["loss"],
            np.abs(picks[column]),
            c=np.maximum(picks["iteration"], 1),
            cmap=ITERATION_CMAP,
            norm=norm,
            marker=markers[k % len(markers)],
            s=20,
            edgecolors="k",
            linewidths=0.3,
            zorder=2,
            label=labels[run],
        )
    set_loss_axis(ax, loss_range)
    return mappable


def _log_spaced_rows(rows: pd.DataFrame, count: int) -> pd.DataFrame:
    """About ``count`` rows spread evenly in log(loss), so markers are visible along the whole curve."""
    loss = np.log10(rows["loss"].clip(lower=1e-300).to_numpy())
    targets = np.linspace(loss.max(), loss.min(), count)
    picks = np.unique([int(np.argmin(np.abs(loss - t))) for t in targets])
    return rows.iloc[picks]


def loss_axis_range(losses: pd.Series, eps: float) -> tuple[float, float]:
    """(smallest, largest) loss the inverted loss axis spans: from min(ε, the smallest logged loss) to max(1.05, the
    largest), over the finite losses only — a diverged run logs NaN or ±inf, which no axis can show."""
    finite = losses[np.isfinite(losses.to_numpy(dtype=float))]
    low = float(finite.min()) if len(finite) else eps
    high = float(finite.max()) if len(finite) else 1.05
    return min(eps, low), max(1.05, high)


def set_loss_axis(ax: Axes, loss_range: tuple[float, float]) -> None:
    """Log-scale loss x-axis, inverted (largest loss on the left) as in the paper."""
    ax.set_xscale("log")
    ax.set_xlim(loss_range[1], loss_range[0])
    ax.set_xlabel("loss ½Σ_Ω(W−Y)²  (training proceeds →)")


def plot_unobserved_panels(
    metrics: pd.DataFrame,
    table: pd.DataFrame,
    groups: dict[str, list[int]],
    column: str,
    eps: float,
    bound: float | None,
    title: str,
    caption: str,
    figure_png: Path,
    overlay: Callable[[Axes], None] | None = None,
) -> list[Path]:
    """One paper-style panel per group of runs (|unobserved| vs inverted log loss, colour = iteration) + erank row;
    ``overlay`` draws more reference curves on each upper panel."""
    import matplotlib.pyplot as plt

    from rankrepro.pipeline.plotting import add_caption, add_title, apply_style, save_figure

    apply_style()
    fig, axes = plt.subplots(
        2,
        len(groups),
        figsize=(5.2 * len(groups) + 1.2, 7.8),
        squeeze=False,
        layout="constrained",
        height_ratios=[1.4, 0.8],
    )
    loss_range = loss_axis_range(metrics["loss"], eps)
    max_iteration = int(metrics["iteration"].max())
    labels = dict(zip(table["run"], table["label"]))
    mappable = None
    for col, (name, runs) in enumerate(groups.items()):
        top, low = axes[0, col], axes[1, col]
        mappable = draw_unobserved_vs_loss(top, metrics, runs, column, labels, max_iteration, loss_range) or mappable
        if bound is not None:
            top.axhline(bound, color="crimson", ls=":", lw=1, label="(1−√2ε)²/√2ε")
        if overlay is not None:
            overlay(top)
        top.set_title(name)
        top.set_ylabel("|unobserved entry|")
        top.legend(fontsize=6.5, loc="upper left")
        for k, run_id in enumerate(runs):
            rows = metrics[metrics["run"] == run_id].sort_values("iteration")
            low.plot(rows["loss"], rows["effective_rank"], color=f"C{k}", lw=1.3, label=labels[run_id])
        set_loss_axis(low, loss_range)
        low.set_ylabel("effective rank of W")
        low.legend(fontsize=6, loc="upper right")
    if mappable is not None:
        fig.colorbar(mappable, ax=axes[0, -1], label="iteration", pad=0.02)
    add_title(fig, title)
    add_caption(fig, caption)
    return save_figure(fig, figure_png)


def training_caption(section: str, figure: FigureContext, settings: DMFTraining, extra: str) -> str:
    """The caption of a §1.2–§1.4 figure: the optimisation settings, ``extra``, and how ``settings`` depart from
    the paper tier's."""
    details = (
        f"Plain GD on ½Σ_Ω(W−Y)², float64, stop at loss < {settings.loss_threshold:g} "
        f"(≤ {settings.max_iters:.0e} iterations), seed {settings.seed}. {extra}"
    )
    return caption_text(f"§{section}", figure.tier, details, figure.substitutions(settings.record()))


def finished_table(metrics: pd.DataFrame, table: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per-run table plus final loss, |final unobserved entry|, det sign changes and final det."""
    final = final_rows(metrics)
    table = table.copy()
    table["final_loss"] = final["loss"].to_numpy()
    table[f"final_abs_{column}"] = final[column].abs().to_numpy()
    table["det_sign_changed"] = det_sign_changes(metrics).sort_index().to_numpy()
    table["final_det"] = final["det"].to_numpy()
    return table
