"""§1.1 — Deep matrix factorization on the 2×2 completion problem: every norm grows while the rank falls.

Observed w12 = 1, w21 = 1, w22 = 0; w11 unobserved. From det W(0) > 0 (preserved by gradient flow for balanced
factors), zero loss needs w22 → 0 with w11·w22 > 1, so |w11| ≥ (1 − √(2ℓ))²/√(2ℓ) → ∞ — and with it every norm —
while W approaches rank 1 (effective rank → 1). A det W(0) < 0 control converges with |w11| bounded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from rankrepro.experiments.base import Context, load_results, write_results
from rankrepro.experiments.ch1 import common
from rankrepro.pipeline.claims import ClaimResult, decide
from rankrepro.pipeline.plotting import add_caption, add_title, apply_style, caption_text, save_figure
from rankrepro.pipeline.settings import FigureContext

NAME = "dmf_2x2_norms_vs_rank"
CHAPTER = "ch1"
SECTION = "1.1"
TITLE = "DMF on the 2×2 completion problem: norms grow to infinity while the effective rank falls to 1"
TRACKED = ((0, 0), (0, 1), (1, 0), (1, 1))
REFERENCE_TRAJECTORY = {"0.1": 1.9, "0.01": 6.9, "0.001": 22.3, "0.0001": 70.0}
TRAJECTORY_LOSSES = [1e-1, 1e-2, 1e-3, 1e-4]


@dataclass(frozen=True)
class NormsVsRankSettings(common.DMFTraining):
    """§1.1 settings (schema ``dmf_2x2_norms_vs_rank``): the GD budget and the runs (depth, η, α, balanced, sign of
    det W(0)), all trained on the 2×2 problem as one batched program."""

    runs: tuple[common.DMFRun, ...]


Settings = NormsVsRankSettings


def run(settings: NormsVsRankSettings, out: Path, ctx: Context) -> None:
    """Train every configured run in one batched GD program; write metrics.csv and summary.json."""
    started = time.time()
    runs = list(settings.runs)
    target, mask = common.problem_2x2()
    batch = len(runs)
    metrics, table = common.train_runs(
        runs, target.expand(batch, 2, 2), mask.expand(batch, 2, 2), settings, out, "batch", ctx, TRACKED
    )
    table = common.finished_table(metrics, table, "w00")
    write_results(out, metrics, settings.record(), ctx, started, {"runs": table.to_dict(orient="records")})


def plot(results: Path, figure_png: Path, figure: FigureContext) -> list[Path]:
    """Per depth (columns): |w11| vs loss coloured by iteration; ‖W‖_F and ‖W‖_* vs loss; effective rank vs loss."""
    metrics, summary = load_results(results)
    settings = Settings.from_mapping(summary["settings"])
    table = pd.DataFrame(summary["runs"])
    apply_style()
    depths = sorted(table["depth"].unique())
    fig, axes = plt.subplots(
        3,
        len(depths),
        figsize=(4.8 * len(depths) + 1.2, 11),
        squeeze=False,
        layout="constrained",
        height_ratios=[1.3, 1, 0.8],
    )
    eps = settings.loss_threshold
    loss_range = (min(eps, float(metrics["loss"].min())), max(1.05, float(metrics["loss"].max())))
    max_iteration = int(metrics["iteration"].max())
    mappable = None
    for col, depth in enumerate(depths):
        sub = table[table["depth"] == depth]
        labels = {r: f"run {r}: {lab}" for r, lab in zip(sub["run"], sub["label"])}
        top, mid, low = axes[0, col], axes[1, col], axes[2, col]
        mappable = (
            common.draw_unobserved_vs_loss(top, metrics, list(sub["run"]), "w00", labels, max_iteration, loss_range)
            or mappable
        )
        if depth >= 3:
            top.axhline(common.blowup_bound(eps), color="crimson", ls=":", lw=1, label="(1−√2ε)²/√2ε")
        top.set_title(f"depth {depth}")
        top.set_ylabel("|w₁₁|  (unobserved entry)")
        top.legend(fontsize=6.5, loc="upper left")
        for k, run_id in enumerate(sub["run"]):
            rows = metrics[metrics["run"] == run_id].sort_values("iteration")
            mid.plot(rows["loss"], rows["fro_norm"], color=f"C{k}", lw=1.5, label=f"run {run_id} ‖W‖_F")
            mid.plot(rows["loss"], rows["nuclear_norm"], color=f"C{k}", lw=1.0, ls="--", label=f"run {run_id} ‖W‖_*")
            low.plot(rows["loss"], rows["effective_rank"], color=f"C{k}", lw=1.3, label=f"run {run_id}")
        common.set_loss_axis(mid, loss_range)
        common.set_loss_axis(low, loss_range)
        mid.set_ylabel("norm of W  (solid ‖·‖_F, dashed ‖·‖_*)")
        mid.legend(fontsize=6, ncol=2, loc="upper left")
        low.set_ylabel("effective rank of W")
        low.set_ylim(0.95, 2.05)
        low.legend(fontsize=6, loc="upper right")
    if mappable is not None:
        fig.colorbar(mappable, ax=axes[0, -1], label="iteration", pad=0.02)
    add_title(fig, f"§{SECTION} {TITLE}")
    details = (
        f"Plain GD on ½Σ_Ω(W−Y)², float64, stop at loss < {eps:g} (≤ {settings.max_iters:.0e} iterations). "
        f"Init α = scale of the end-to-end matrix (balanced: SVD split of P ~ N(0, α²); unbalanced: factors "
        f"N(0, α^(2/N))); det W(0) > 0 enforced for every run except the det<0 controls. Red dotted line: the "
        f"lower bound (1−√(2ε))²/√(2ε) on |w₁₁| for det W > 0. Depth 2 with discrete GD converges with bounded "
        f"|w₁₁| (shown, not asserted)."
    )
    add_caption(fig, caption_text(f"§{SECTION}", figure.tier, details, figure.substitutions(summary["settings"])))
    return save_figure(fig, figure_png)


def claims(results: Path, tier: str) -> list[ClaimResult]:
    """The §1.1 claims on depth ≥ 3 runs with det W(0) > 0, and the det W(0) < 0 control."""
    metrics, summary = load_results(results)
    eps = Settings.from_mapping(summary["settings"]).loss_threshold
    table = pd.DataFrame(summary["runs"]).set_index("run")
    bound = common.blowup_bound(eps)
    deep = table[(table["depth"] >= 3) & (table["det_sign"] > 0)]
    control = table[table["det_sign"] < 0]
    trajectory = common.value_at_first_loss_below(metrics, "w00", TRAJECTORY_LOSSES).abs()
    out: list[ClaimResult] = []

    def record(
        claim_id: str, statement: str, holds: bool, measured, reference: str, details: str = "", shown: bool = True
    ) -> None:
        out.append(ClaimResult(claim_id, NAME, SECTION, statement, decide(holds, shown), measured, reference, details))

    converged = deep["status"].eq("converged") & (deep["final_loss"] < eps)
    record(
        "loss_reaches_threshold",
        f"every depth ≥ 3 run with det W(0) > 0 reaches loss < ε = {eps:g}",
        bool(converged.all()) and len(deep) > 0,
        {"runs": len(deep), "converged": int(converged.sum()), "iterations": [int(i) for i in deep["iterations"]]},
        "all converge; ≈1.4e6–3.6e6 iterations to 1e-4 (depth 3/4)",
    )
    for kind, subset in (("balanced", deep[deep["balanced"]]), ("unbalanced", deep[~deep["balanced"]])):
        measured_w = {int(r): round(float(v), 3) for r, v in subset["final_abs_w00"].items()}
        changed = [int(r) for r, c in subset["det_sign_changed"].items() if c]
        holds = bool((subset["final_abs_w00"] >= 0.9 * bound).all()) and len(subset) > 0
        details = (
            f"det W changed sign during training in runs {changed}: the bound assumes det W > 0 throughout, which "
            f"gradient flow preserves for balanced factors only"
            if changed
            else ""
        )
        record(
            f"unobserved_entry_blows_up_{kind}",
            f"{kind} depth ≥ 3 runs with det W(0) > 0: |w11| ≥ 0.9·(1−√(2ε))²/√(2ε) = {0.9 * bound:.1f} at the end",
            holds,
            {
                "final_abs_w11": measured_w,
                "first_logged_below": {
                    int(r): {k: round(float(v), 2) for k, v in trajectory.loc[r].items()} for r in subset.index
                },
            },
            f"|w11| at loss < 1e-1/1e-2/1e-3/1e-4 ≈ {list(REFERENCE_TRAJECTORY.values())} (≈ 1/√(2ℓ))",
            details,
            shown=len(subset) > 0,
        )
    monotone = {}
    for run_id in deep.index:
        rows = metrics[(metrics["run"] == run_id)].copy()
        rows["abs_w00"] = rows["w00"].abs()
        monotone[int(run_id)] = all(
            common.monotone_after(rows, c, 0.5) for c in ("abs_w00", "fro_norm", "nuclear_norm")
        )
    record(
        "norms_nondecreasing",
        "|w11|, ‖W‖_F and ‖W‖_* are non-decreasing once loss < 0.5 (det W(0) > 0, depth ≥ 3, whose det stays > 0)",
        all(v for r, v in monotone.items() if not table.loc[r, "det_sign_changed"]),
        {"monotone_per_run": monotone},
        "monotone growth; Fro and nuclear norms ≈ |w11| at the end",
    )
    final = common.final_rows(metrics)
    final = final.loc[deep.index]
    ratio = final["singular_values_1"] / final["singular_values_0"]
    kept = [r for r in deep.index if not table.loc[r, "det_sign_changed"]]
    erank_ok = bool((final.loc[kept, "effective_rank"] <= 1.01).all()) and bool((ratio.loc[kept] <= 1e-3).all())
    record(
        "effective_rank_to_minimum",
        "erank(W_final) ≤ 1.01 and σ₂/σ₁ ≤ 1e-3 (det W stays > 0, depth ≥ 3)",
        erank_ok and len(kept) > 0,
        {
            "effective_rank": {int(r): round(float(v), 6) for r, v in final["effective_rank"].items()},
            "sigma2_over_sigma1": {int(r): float(f"{v:.3g}") for r, v in ratio.items()},
        },
        "erank ≤ 1.0003 throughout",
        shown=len(kept) > 0,
    )
    if len(control):
        limit = 0.5 * bound
        ok = bool(control["status"].eq("converged").all() and (control["final_abs_w00"] < limit).all())
        record(
            "negative_det_control_bounded",
            f"det W(0) < 0 controls reach loss < ε with |w11| < 0.5·(1−√(2ε))²/√(2ε) = {limit:.1f} (bounded: "
            f"they converge to a finite |w11| while det > 0 runs must exceed the bound)",
            ok,
            {
                "final_abs_w11": {int(r): round(float(v), 3) for r, v in control["final_abs_w00"].items()},
                "status": control["status"].tolist(),
            },
            "with det < 0 the blow-up does not happen (|w11| converges to a finite value)",
            "shown only at ε ≤ 1e-4: at larger ε the controls are still on the shared early trajectory "
            "(a pilot: |w11| = 22.3 at 1e-3, converging to 29.0 by 1e-6, while det > 0 runs pass 70 at 1e-4)",
            shown=eps <= 1e-4,
        )
    return out
