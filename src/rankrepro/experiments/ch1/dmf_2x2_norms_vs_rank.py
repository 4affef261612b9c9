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

from rankrepro.core.errors import ConfigError
from rankrepro.experiments.base import Context, load_results, write_results
from rankrepro.experiments.ch1 import common
from rankrepro.pipeline.claims import ClaimResult, Gate, apply_gate, decide
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
    det W(0), per-factor std factor c of unbalanced runs, shared draws), all trained on the 2×2 problem as one
    batched program."""

    runs: tuple[common.DMFRun, ...]

    def __post_init__(self) -> None:
        for index, run in enumerate(self.runs):
            where = f"config key 'experiments.{NAME}.runs[{index}]'"
            if run.balanced and run.factor_std_scale != 1.0:
                raise ConfigError(f"{where}: factor_std_scale applies to unbalanced runs only (balanced keep 1)")
            if run.init_of is None:
                continue
            if not 0 <= run.init_of < index:
                raise ConfigError(f"{where}: init_of {run.init_of} must name an earlier run (0 … {index - 1})")
            base = self.runs[run.init_of]
            same = (base.depth, base.init_scale, base.balanced, base.det_sign)
            if same != (run.depth, run.init_scale, run.balanced, run.det_sign):
                raise ConfigError(
                    f"{where}: init_of {run.init_of} names a run of another depth, init, balance or det sign: "
                    "its draw would not be the same random direction"
                )

    def draw_of(self) -> list[int]:
        """Per run: the index whose seed draws its initialization (``init_of``, else its own)."""
        return [b if run.init_of is None else run.init_of for b, run in enumerate(self.runs)]


Settings = NormsVsRankSettings


def run(settings: NormsVsRankSettings, out: Path, ctx: Context) -> None:
    """Train every configured run in one batched GD program; write metrics.csv and summary.json."""
    started = time.time()
    runs = list(settings.runs)
    metrics, table = common.train_2x2_batch(runs, settings, out, ctx, TRACKED, settings.draw_of())
    write_results(out, metrics, settings.record(), ctx, started, {"runs": table.to_dict(orient="records")})


def near_zero(table: pd.DataFrame) -> pd.Series:
    """Per run: unbalanced with per-factor std factor c < 1 (the near-zero reading of "init α")."""
    return ~table["balanced"] & (table["factor_std_scale"] < 1.0)


def plot(results: Path, figure_png: Path, figure: FigureContext) -> list[Path]:
    """Per depth (columns): |w11| vs loss coloured by iteration — balanced runs with the c = 1 unbalanced reading, then
    the near-zero (c < 1) unbalanced runs; ‖W‖_F and ‖W‖_* vs loss; effective rank vs loss."""
    metrics, summary = load_results(results)
    settings = Settings.from_mapping(summary["settings"])
    table = pd.DataFrame(summary["runs"])
    apply_style()
    depths = sorted(table["depth"].unique())
    small = near_zero(table)
    rows = [("balanced & unbalanced c = 1", ~small)] + (
        [("unbalanced, near zero (c < 1)", small)] if small.any() else []
    )
    fig, axes = plt.subplots(
        len(rows) + 2,
        len(depths),
        figsize=(4.8 * len(depths) + 1.2, 4.6 * len(rows) + 6.5),
        squeeze=False,
        layout="constrained",
        height_ratios=[1.3] * len(rows) + [1, 0.8],
    )
    eps = settings.loss_threshold
    loss_range = common.loss_axis_range(metrics["loss"], eps)
    max_iteration = int(metrics["iteration"].max())
    mappable = None
    for col, depth in enumerate(depths):
        at_depth = table["depth"] == depth
        for row, (name, chosen) in enumerate(rows):
            sub = table[at_depth & chosen]
            top = axes[row, col]
            if sub.empty:
                top.set_axis_off()
                top.text(0.5, 0.5, f"depth {depth}: no {name} runs", ha="center", va="center", transform=top.transAxes)
                continue
            labels = {r: f"run {r}: {lab}" for r, lab in zip(sub["run"], sub["label"])}
            mappable = (
                common.draw_unobserved_vs_loss(top, metrics, list(sub["run"]), "w00", labels, max_iteration, loss_range)
                or mappable
            )
            if depth >= 3:
                top.axhline(common.blowup_bound(eps), color="crimson", ls=":", lw=1, label="(1−√2ε)²/√2ε")
            top.set_title(f"depth {depth}: {name}")
            top.set_ylabel("|w₁₁|  (unobserved entry)")
            top.legend(fontsize=6, loc="upper left")
        mid, low = axes[len(rows), col], axes[len(rows) + 1, col]
        for k, run_id in enumerate(table.loc[at_depth, "run"]):
            trace = metrics[metrics["run"] == run_id].sort_values("iteration")
            mid.plot(trace["loss"], trace["fro_norm"], color=f"C{k}", lw=1.5, label=f"run {run_id} ‖W‖_F")
            mid.plot(trace["loss"], trace["nuclear_norm"], color=f"C{k}", lw=1.0, ls="--", label=f"run {run_id} ‖W‖_*")
            low.plot(trace["loss"], trace["effective_rank"], color=f"C{k}", lw=1.3, label=f"run {run_id}")
        common.set_loss_axis(mid, loss_range)
        common.set_loss_axis(low, loss_range)
        mid.set_ylabel("norm of W  (solid ‖·‖_F, dashed ‖·‖_*)")
        mid.legend(fontsize=5.5, ncol=2, loc="upper left")
        low.set_ylabel("effective rank of W")
        low.set_ylim(0.95, 2.05)
        low.legend(fontsize=5.5, loc="upper right")
    if mappable is not None:
        fig.colorbar(mappable, ax=axes[0, -1], label="iteration", pad=0.02)
    add_title(fig, f"§{SECTION} {TITLE}")
    details = (
        f"Plain GD on ½Σ_Ω(W−Y)², float64, stop at loss < {eps:g} (≤ {settings.max_iters:.0e} iterations). "
        f"Init α = scale of the end-to-end matrix. Balanced: SVD split of P ~ N(0, α²). Unbalanced, two readings: "
        f"c = 1, factors i.i.d. N(0, α^(2/N)) (the spec's reading; ≈ the original code's per-factor std 8e-3 at "
        f"depth 3) — the product has scale ≈ α but the factors sit at ≈ α^(1/N), far from balanced; c < 1, factors "
        f"N(0, (c·α^(1/N))²): c^N× nearer the origin and 1/c²× more balanced, the near-zero, near-balanced start the "
        f"thesis's blow-up assumes. Runs with 'init_of' reuse an earlier run's draw (same direction): an lr/4 run "
        f"of a c = 1 run separates discrete-step effects from gradient flow. det W(0) > 0 enforced for every run "
        f"except the det<0 controls. Red dotted line: the lower bound (1−√(2ε))²/√(2ε) on |w₁₁| for det W > 0. "
        f"Depth 2 with discrete GD converges with bounded |w₁₁| (shown, not asserted)."
    )
    add_caption(fig, caption_text(f"§{SECTION}", figure.tier, details, figure.substitutions(summary["settings"])))
    return save_figure(fig, figure_png)


def claims(results: Path, tier: str) -> list[ClaimResult]:
    """The §1.1 claims on depth ≥ 3 runs with det W(0) > 0 (per reading of the unbalanced init) and the det W(0) < 0
    control, all under one gate: every depth ≥ 3 run with det W(0) > 0 converged."""
    metrics, summary = load_results(results)
    settings = Settings.from_mapping(summary["settings"])
    eps = settings.loss_threshold
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

    def blowup(claim_id: str, statement: str, subset: pd.DataFrame, details: str) -> None:
        measured_w = {int(r): round(float(v), 3) for r, v in subset["final_abs_w00"].items()}
        changed = [int(r) for r, c in subset["det_sign_changed"].items() if c]
        if changed:
            details += (
                f" det W changed sign during training in runs {changed}: the bound assumes det W > 0 throughout, "
                "which gradient flow preserves for balanced factors only."
            )
        record(
            claim_id,
            f"{statement}: |w11| ≥ 0.9·(1−√(2ε))²/√(2ε) = {0.9 * bound:.1f} at the end",
            bool((subset["final_abs_w00"] >= 0.9 * bound).all()),
            {
                "final_abs_w11": measured_w,
                "first_logged_below": {
                    int(r): {k: round(float(v), 2) for k, v in trajectory.loc[r].items()} for r in subset.index
                },
            },
            f"|w11| at loss < 1e-1/1e-2/1e-3/1e-4 ≈ {list(REFERENCE_TRAJECTORY.values())} (≈ 1/√(2ℓ))",
            details.strip(),
            shown=len(subset) > 0,
        )

    balanced = deep[deep["balanced"]]
    blowup("unobserved_entry_blows_up_balanced", "balanced depth ≥ 3 runs with det W(0) > 0", balanced, "")
    unbalanced = deep[~deep["balanced"]]
    for c, subset in unbalanced.groupby("factor_std_scale"):
        reading = (
            "the spec's reading, factors i.i.d. N(0, α^(2/N))"
            if c == 1.0
            else f"factors i.i.d. N(0, ({c:g}·α^(1/N))²): near zero and near balance, the thesis's premise"
            if c < 1.0
            else f"factors i.i.d. N(0, ({c:g}·α^(1/N))²)"
        )
        blowup(
            f"unobserved_entry_blows_up_unbalanced_c{c:g}",
            f"unbalanced depth ≥ 3 runs with det W(0) > 0 at c = {c:g} ({reading})",
            subset,
            step_size_evidence(table, subset)
            + (
                " At c ≥ 1 the factors start at ≈ c·α^(1/N), far from balance relative to ‖W(0)‖ ≈ α: not the "
                "near-zero, near-balanced start the thesis's blow-up assumes."
                if c >= 1.0
                else ""
            ),
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
        "|w11|, ‖W‖_F and ‖W‖_* are non-decreasing once loss < 0.5 in every depth ≥ 3 run with det W(0) > 0 "
        "(every init reading, none left out)",
        all(monotone.values()),
        {"monotone_per_run": monotone},
        "monotone growth; Fro and nuclear norms ≈ |w11| at the end",
        shown=len(deep) > 0,
    )
    final = common.final_rows(metrics).loc[deep.index]
    ratio = final["singular_values_1"] / final["singular_values_0"]
    premise = deep[deep["balanced"] | near_zero(deep)]
    left_out = deep.index.difference(premise.index)
    meets = (final["effective_rank"] <= 1.01) & (ratio <= 1e-3)
    erank_ok = bool(meets.loc[premise.index].all())
    outside_premise = [int(r) for r in left_out if not meets.loc[r]]
    record(
        "effective_rank_to_minimum",
        f"erank(W_final) ≤ 1.01 and σ₂/σ₁ ≤ 1e-3 in every depth ≥ 3, det W(0) > 0 run started near zero and near "
        f"balance (balanced, or unbalanced with c < 1: {len(premise)} runs; the {len(left_out)} unbalanced c = 1 "
        f"runs are outside that premise: reported, not judged)",
        erank_ok,
        {
            "effective_rank": {int(r): round(float(v), 6) for r, v in final["effective_rank"].items()},
            "sigma2_over_sigma1": {int(r): float(f"{v:.3g}") for r, v in ratio.items()},
            "judged_runs": [int(r) for r in premise.index],
            "outside_premise_not_meeting_it": outside_premise,
        },
        "erank ≤ 1.0003 throughout",
        shown=len(premise) > 0,
        details=(
            f"outside the premise (unbalanced, c = 1), not judged: {len(outside_premise)} of {len(left_out)} runs "
            f"would not meet the check (runs {outside_premise})"
            if left_out.size
            else ""
        ),
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
    return apply_gate(convergence_gate(deep, eps, settings.max_iters), out)


def convergence_gate(deep: pd.DataFrame, eps: float, max_iters: int) -> Gate:
    """The experiment's precondition: every depth ≥ 3 run with det W(0) > 0 reached loss < ε within the budget."""
    converged = deep["status"].eq("converged") & (deep["final_loss"] < eps)
    iterations = deep["iterations"].astype(int)
    return Gate(
        f"every depth ≥ 3 run with det W(0) > 0 reaches loss < ε = {eps:g} within {max_iters:.0e} iterations",
        bool(converged.all()) and len(deep) > 0,
        f"{int(converged.sum())}/{len(deep)} converged; iterations {int(iterations.min()) if len(deep) else 0}"
        f"–{int(iterations.max()) if len(deep) else 0}",
    )


def step_size_evidence(table: pd.DataFrame, subset: pd.DataFrame) -> str:
    """For each run of ``subset`` that reuses another run's draw at another step size (same c): both final |w11| —
    equal values mean the outcome is the gradient flow's, not a discrete-step effect."""
    parts = []
    for run_id, row in subset.iterrows():
        base = row["init_of"]
        if base is None or pd.isna(base) or int(base) not in table.index:
            continue
        other = table.loc[int(base)]
        if other["lr"] == row["lr"] or other["factor_std_scale"] != row["factor_std_scale"]:
            continue
        a, b = float(row["final_abs_w00"]), float(other["final_abs_w00"])
        parts.append(
            f"run {int(run_id)} (lr {row['lr']:g}) starts from run {int(base)}'s draw (lr {other['lr']:g}): final "
            f"|w11| {a:.4g} vs {b:.4g} (relative difference {abs(a - b) / max(b, 1e-300):.1e})"
        )
    if not parts:
        return ""
    return "Step-size control: " + "; ".join(parts) + " — the same value at a smaller step is the gradient flow's."
