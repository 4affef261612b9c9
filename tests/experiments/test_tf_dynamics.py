"""§2.1: tensor sensing gradients, component-norm tracking, emergence times and the dynamics claims."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rankrepro.core.errors import ConfigError
from rankrepro.core.io import atomic_write_sealed_json, read_json
from rankrepro.core.seeding import derived_seed, seeded_generator
from rankrepro.experiments.base import Context, load_results
from rankrepro.experiments.ch2 import tf_component_norms, tf_sensing_component_norms
from rankrepro.experiments.ch2.common import (
    ComponentDynamicsSettings,
    WithComponentNorms,
    check_settings,
    emergence_iterations,
    learned_components,
    make_objective,
    train_dynamics,
)
from rankrepro.factorization.cp import CPCompletionObjective, multi_indices, random_cp_tensor
from rankrepro.factorization.cp_losses import CPMeasuredLossObjective, cp_measured_loss_and_grads
from rankrepro.factorization.cp_sensing import cp_sensing_loss, gaussian_measurements
from rankrepro.pipeline.claims import FAILED, NOT_SHOWN, PASSED
from rankrepro.pipeline.config import experiment_section, load_config, load_schema
from rankrepro.pipeline.settings import FigureContext, bookkeeping_keys

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
TIERS = ("smoke.yaml", "config.yaml", "paper.yaml")


SMALL = {
    "data_seed": 1,
    "seed": 2,
    "num_seeds": 1,
    "order": 3,
    "dim": 10,
    "target_rank": 3,
    "n_observed": 500,
    "components": 100,
    "init_scales": [1.0e-2, 1.0e-3],
    "optimizer": "group_rmsprop",
    "lr": 1.0e-2,
    "loss_threshold": 1.0e-8,
    "stop_patience": 50,
    "check_every": 5,
    "max_iters": 20000,
    "log_every": 5,
    "checkpoint_every": 0,
    "top_k": 6,
    "method": "auto",
}


def _factors(dims, rank, batch, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, d, rank, generator=g) for d in dims]


@given(
    dims=st.lists(st.integers(1, 4), min_size=2, max_size=4),
    rank=st.integers(1, 4),
    batch=st.integers(1, 3),
    m=st.integers(1, 12),
    seed=st.integers(0, 10_000),
)
def test_sensing_gradient_matches_autograd(dims, rank, batch, m, seed):
    factors = _factors(dims, rank, batch, seed)
    measurements = gaussian_measurements(m, dims, torch.Generator().manual_seed(seed + 1))
    values = torch.randn(m, generator=torch.Generator().manual_seed(seed + 2))
    loss, _, grads = cp_measured_loss_and_grads(factors, measurements, values, "l2")
    leaves = [f.clone().requires_grad_(True) for f in factors]
    reference = cp_sensing_loss(leaves, measurements, values)
    expected = torch.autograd.grad(reference.sum(), leaves)
    assert torch.allclose(loss, reference.detach(), rtol=1e-11, atol=1e-12)
    for got, want in zip(grads, expected):
        assert torch.allclose(got, want, rtol=1e-10, atol=1e-11)


def test_sensing_gradient_matches_finite_differences():
    dims, rank = (3, 2, 4), 2
    factors = _factors(dims, rank, 1, 7)
    measurements = gaussian_measurements(5, dims, torch.Generator().manual_seed(8))
    values = torch.randn(5, generator=torch.Generator().manual_seed(9))
    _, _, grads = cp_measured_loss_and_grads(factors, measurements, values, "l2")
    step = 1e-6
    for n in range(len(factors)):
        for index in [(0, 0, 0), (0, dims[n] - 1, rank - 1)]:
            plus = [f.clone() for f in factors]
            minus = [f.clone() for f in factors]
            plus[n][index] += step
            minus[n][index] -= step
            numeric = (cp_sensing_loss(plus, measurements, values) - cp_sensing_loss(minus, measurements, values)) / (
                2 * step
            )
            assert math.isclose(float(numeric[0]), float(grads[n][index]), rel_tol=1e-6, abs_tol=1e-9)


def test_gaussian_measurements_have_unit_expected_norm():
    measurements = gaussian_measurements(4000, (5, 5, 4), torch.Generator().manual_seed(0))
    assert measurements.shape == (4000, 100)
    assert abs(float(measurements.pow(2).sum(1).mean()) - 1.0) < 0.02


def test_sensing_with_one_hot_measurements_is_completion():
    """Completion is the special case of sensing whose measurements are one-hot: same loss and gradients."""
    dims = (4, 3, 5)
    target = random_cp_tensor(dims, 2, torch.Generator().manual_seed(1))
    flat = torch.randperm(60, generator=torch.Generator().manual_seed(2))[:25]
    onehot = torch.zeros(25, 60)
    onehot[torch.arange(25), flat] = 1.0
    factors = _factors(dims, 3, 2, 3)
    completion = CPCompletionObjective(target, multi_indices(flat, dims), "gather")
    sensing = CPMeasuredLossObjective(target, onehot, "l2")
    (loss_c, grads_c), (loss_s, grads_s) = completion.loss_and_grads(factors), sensing.loss_and_grads(factors)
    assert torch.allclose(loss_c, loss_s, rtol=1e-12)
    for a, b in zip(grads_c, grads_s):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_sensing_objective_rejects_wrong_measurement_width():
    with pytest.raises(ValueError, match="columns"):
        CPMeasuredLossObjective(torch.zeros(3, 3), torch.zeros(4, 10), "l2")


def test_top_norms_are_the_sorted_largest_component_norms():
    factors = [torch.zeros(1, 2, 4) for _ in range(3)]
    for r, scale in enumerate([0.5, 3.0, 1.0, 2.0]):
        for f in factors:
            f[0, 0, r] = scale  # ‖component r‖ = scale³
    target = torch.zeros(2, 2, 2)
    wrapped = WithComponentNorms(CPCompletionObjective(target, torch.zeros(1, 3, dtype=torch.int64)), top_k=3)
    top = wrapped.metrics(factors)["top_norms"]
    assert torch.allclose(top, torch.tensor([[27.0, 8.0, 1.0]]))


def test_emergence_iterations_first_reach_half_the_final_value():
    curve = pd.DataFrame(
        {
            "iteration": [0, 10, 20, 30, 40],
            "top_norms_0": [0.0, 0.6, 1.0, 1.0, 1.0],
            "top_norms_1": [0.0, 0.0, 0.1, 0.3, 0.5],
            "top_norms_2": [0.0, 0.0, 0.0, 0.0, 0.0],
        }
    )
    assert emergence_iterations(curve, 3) == [10, 30, None]


def test_learned_components_counts_norms_above_five_percent_of_the_largest():
    assert learned_components(np.array([1.0, 0.5, 0.06, 0.04, 0.0])) == 3
    assert learned_components(np.array([])) == 0


@pytest.mark.parametrize(
    "change, key", [({"n_observed": 2000}, "n_observed"), ({"top_k": 50}, "top_k"), ({"top_k": 3}, "top_k")]
)
def test_bad_dynamics_settings_name_the_key(change, key):
    settings = ComponentDynamicsSettings.from_mapping({**SMALL, "components": 20, "top_k": 10, **change})
    check_settings(ComponentDynamicsSettings.from_mapping({**SMALL, "components": 20, "top_k": 10}), "x")  # valid
    with pytest.raises(ConfigError, match=f"tf_component_norms.{key}"):
        check_settings(settings, "tf_component_norms")


def test_derived_seeds_are_stable_and_distinct():
    assert derived_seed(1, 2) == derived_seed(1, 2) != derived_seed(2, 1)
    a, b = seeded_generator(5), seeded_generator(5)
    assert torch.equal(torch.rand(3, generator=a), torch.rand(3, generator=b))


@pytest.fixture(scope="module")
def tiny_scale_results(tmp_path_factory):
    """The spec's tiny scale (order 3, dim 10, CP rank 3, R = 100, 500 observations): a few seconds."""
    previous = torch.get_default_dtype()  # a module fixture runs outside conftest's per-test dtype guard
    torch.set_default_dtype(torch.float64)
    try:
        out = tmp_path_factory.mktemp("tf") / "tf_component_norms"
        tf_component_norms.run(Settings(SMALL), out, Context(tier="test", device=torch.device("cpu"), progress=False))
    finally:
        torch.set_default_dtype(previous)
    return out


def test_tiny_scale_learns_three_components_one_at_a_time(tiny_scale_results):
    verdicts = {c.claim_id: c for c in tf_component_norms.claims(tiny_scale_results, "test")}
    assert {c.verdict for c in verdicts.values()} == {PASSED}, verdicts
    times = verdicts["emergence_separated"].measured["emergence_iterations"]
    assert times[0] < times[1] < times[2]


def test_tiny_scale_figure(tiny_scale_results, tmp_path):
    paths = tf_component_norms.plot(tiny_scale_results, tmp_path / "fig.png", FigureContext("test"))
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in paths)


def test_the_figure_does_not_depend_on_the_machine_timings(tiny_scale_results, retimed_copy, tmp_path):
    """A rerun elsewhere (other ms/iteration, threads) draws the same bytes: the caption states results only."""
    first = tf_component_norms.plot(tiny_scale_results, tmp_path / "a.png", FigureContext("test"))
    second = tf_component_norms.plot(retimed_copy(tiny_scale_results), tmp_path / "b.png", FigureContext("test"))
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def test_capped_run_is_not_shown(tmp_path):
    """A run stopped by the iteration cap before the loss criterion shows no claim (never a silent pass)."""
    capped = tmp_path / "capped"
    tf_sensing_component_norms.run(
        Settings({**SMALL, "max_iters": 200}), capped, Context(tier="test", device=torch.device("cpu"), progress=False)
    )
    claims = tf_sensing_component_norms.claims(capped, "test")
    assert {c.verdict for c in claims} == {NOT_SHOWN}
    assert all(c.claim_id.startswith("sensing_") for c in claims)


def _altered(results, tmp_path, name, change):
    """A copy of ``results`` whose summary's runs went through ``change(runs)``."""
    summary = read_json(results / "summary.json")
    change(sorted(summary["runs"], key=lambda r: r["init_scale"]))
    altered = tmp_path / name
    shutil.copytree(results, altered)
    atomic_write_sealed_json(altered / "summary.json", summary)
    return {c.claim_id: c for c in tf_component_norms.claims(altered, "test")}


def test_wrong_learned_rank_and_unordered_errors_fail(tiny_scale_results, tmp_path):
    """The checks read the numbers: a learned rank ≠ the target's, or final errors not ordered by init, fail."""

    def change(runs):
        runs[0]["learned_components"] = 4
        runs[0]["reconstruction_error"] = 1.0

    verdicts = {k: c.verdict for k, c in _altered(tiny_scale_results, tmp_path, "altered", change).items()}
    assert verdicts["learned_rank_equals_true_rank"] == FAILED
    assert verdicts["error_ordered_by_init"] == FAILED
    assert verdicts["emergence_separated"] == PASSED


@pytest.mark.parametrize(
    ("lowest", "final", "verdict"),
    [
        ((1e-5, 1e-3), (4e-3, 3e-3), FAILED),  # lowest ordered, but the final errors are not: the final decides
        ((2e-3, 1e-3), (1e-5, 1e-3), PASSED),  # final errors ordered by ≥ the factor; the lowest ones do not count
        ((1e-5, 1.5e-5), (1e-5, 1.5e-5), FAILED),  # ordered, but by less than ERROR_FACTOR
        ((1e-3, 1e-5), (1e-3, 1e-5), FAILED),  # the smallest init is not the lowest
        ((0.06, 0.2), (0.06, 0.2), FAILED),  # ordered by more than the factor, but the smallest init's error > 0.05
        ((1e-5, 1e-3), (math.nan, 1e-3), FAILED),  # a diverged smallest init: no ratio can be taken (was inf: held)
    ],
)
def test_error_ordering_compares_the_final_errors_by_a_factor(tiny_scale_results, tmp_path, lowest, final, verdict):
    """The ordering is judged on the errors at the stop; the lowest errors (chosen with the unobserved entries) are
    reported beside it."""

    def change(runs):
        for run, low, last in zip(runs, lowest, final):
            run["min_reconstruction_error"], run["reconstruction_error"] = low, last

    claim = _altered(tiny_scale_results, tmp_path, "ordering", change)["error_ordered_by_init"]
    assert claim.verdict == verdict, claim
    inits = [f"{r:.0e}" for r in sorted(SMALL["init_scales"])]
    assert list(claim.measured["final_error"]) == inits
    assert list(claim.measured["final_error"].values()) == pytest.approx(list(final), nan_ok=True)
    assert claim.measured["lowest_error_during_training"] == dict(zip(inits, lowest))


@pytest.mark.parametrize("capped", [0, -1])
def test_the_gate_turns_every_verdict_into_not_shown(tiny_scale_results, tmp_path, capped):
    """One gate for every §2.1 claim: any run (the smallest init, or a larger one) stopped by the iteration cap ⇒
    passes and failures alike are not shown; the gate met ⇒ the verdicts stand."""

    def at_cap(runs):
        runs[capped]["status"] = "max_iters"
        runs[0]["learned_components"] = 4  # would fail

    claims = _altered(tiny_scale_results, tmp_path, f"gated{capped}", at_cap)
    assert {c.verdict for c in claims.values()} == {NOT_SHOWN}
    assert all("gate:" in c.details and "NOT met" in c.details and "max_iters" in c.details for c in claims.values())
    met = {c.claim_id: c for c in tf_component_norms.claims(tiny_scale_results, "test")}
    assert all("gate:" in c.details and "— met" in c.details for c in met.values())


def Settings(mapping):
    """The typed settings of a §2.1 section (both experiments share the class)."""
    return ComponentDynamicsSettings.from_mapping(mapping, "experiments.tf_component_norms")


@pytest.mark.parametrize("module", [tf_component_norms, tf_sensing_component_norms])
@pytest.mark.parametrize("tier", TIERS)
def test_settings_build_from_every_tier_and_record_the_section(module, tier):
    config = load_config(CONFIG_DIR / tier)
    if module.NAME not in config["experiments"]:
        pytest.skip(f"{tier} does not run {module.NAME}")
    section = experiment_section(config, module.NAME)
    settings = module.Settings.from_mapping(section, f"experiments.{module.NAME}")
    assert settings.record() == section
    assert settings.dims == (section["dim"],) * section["order"]
    assert isinstance(settings.lr, float) and all(isinstance(a, float) for a in settings.init_scales)


def test_train_settings_carry_the_budget_and_sync_at_least_every_thousand_iterations():
    loop = Settings(SMALL).train_settings()
    assert (loop.max_iters, loop.log_every, loop.checkpoint_every) == (20000, 5, 0)
    assert (loop.stop.threshold, loop.stop.patience, loop.stop.check_every) == (1e-8, 50, 5)
    assert loop.sync_every == 1000
    assert Settings({**SMALL, "check_every": 2500}).train_settings().sync_every == 2500


def _caption_substitutions(results, figure):
    """The caption's substitutions text of the tiny-scale results drawn with ``figure``."""
    summary = read_json(results / "summary.json")
    return figure.substitutions(summary["settings"])


def test_caption_names_the_settings_that_depart_from_the_paper_tier(tiny_scale_results):
    paper_config = load_config(CONFIG_DIR / "paper.yaml")
    paper = experiment_section(paper_config, "tf_component_norms")
    bookkeeping = bookkeeping_keys(load_schema(), "tf_component_norms")
    assert bookkeeping == {"checkpoint_every"}
    figure = FigureContext("test", paper, bookkeeping)
    text = _caption_substitutions(tiny_scale_results, figure)
    assert "order 3 (paper: 4)" in text and "components 100 (paper: 1,000)" in text
    assert "max_iters 20,000 (paper: 1,000,000)" in text
    assert "checkpoint_every" not in text  # bookkeeping: not a departure
    assert figure.substitutions(paper) == "none"  # the paper tier departs from nothing


def test_smoke_caption_departs_and_paper_caption_does_not():
    """Drawn from the tier configs: the smoke tier departs from the paper tier in its scale, the paper tier in
    nothing (also for the sensing variant, which the smoke tier does not run)."""
    paper_config = load_config(CONFIG_DIR / "paper.yaml")
    for name in ("tf_component_norms", "tf_sensing_component_norms"):
        figure = FigureContext("paper", experiment_section(paper_config, name), bookkeeping_keys(load_schema(), name))
        assert figure.substitutions(experiment_section(paper_config, name)) == "none"
    smoke = experiment_section(load_config(CONFIG_DIR / "smoke.yaml"), "tf_component_norms")
    figure = FigureContext(
        "smoke",
        experiment_section(paper_config, "tf_component_norms"),
        bookkeeping_keys(load_schema(), "tf_component_norms"),
    )
    assert "target_rank 3 (paper: 5)" in figure.substitutions(smoke)


def test_a_job_that_resumes_a_finished_run_gives_the_same_numbers_and_a_figure(tmp_path):
    """Rerunning on a finished checkpoint (Snakemake reruns a job after a code edit) reproduces the results."""
    ckpt = tmp_path / "resume"
    settings = Settings({**SMALL, "checkpoint_every": 500})
    tf_component_norms.run(settings, ckpt, Context(tier="test", device=torch.device("cpu"), progress=False))
    first = read_json(ckpt / "summary.json")
    tf_component_norms.run(settings, ckpt, Context(tier="test", device=torch.device("cpu"), progress=False))
    second = read_json(ckpt / "summary.json")
    assert second["ms_per_iteration"] is None and second["runs"] == first["runs"]
    assert tf_component_norms.plot(ckpt, tmp_path / "fig.png", FigureContext("test"))[0].is_file()


def test_every_seed_in_one_program_leaves_each_seeds_completion_numbers_as_alone_and_decides_at_every_seed(tmp_path):
    """num_seeds = 2 trains seeds 2 and 3 as one batched program (one checkpoint); dense completion's runs are
    independent, so seed 2's runs and metrics are bit for bit those of seed 2 trained alone; each claim then reads
    both seeds."""
    alone, both = tmp_path / "alone", tmp_path / "both"
    context = Context(tier="test", device=torch.device("cpu"), progress=False)
    tf_component_norms.run(Settings(SMALL), alone, context)
    tf_component_norms.run(Settings({**SMALL, "checkpoint_every": 500, "num_seeds": 2}), both, context)
    one, two = read_json(alone / "summary.json"), read_json(both / "summary.json")
    assert [r["seed"] for r in two["runs"]] == [2] * len(SMALL["init_scales"]) + [3] * len(SMALL["init_scales"])
    assert [r for r in two["runs"] if r["seed"] == 2] == one["runs"]
    assert two["iterations_executed"] == max(r["iterations"] for r in two["runs"])
    metrics_one, _ = load_results(alone)
    metrics_two, _ = load_results(both)
    assert metrics_two[metrics_two["seed"] == 2].reset_index(drop=True).equals(metrics_one)
    assert [p.name for p in (both / "checkpoints").glob("*.pt")] == ["train.pt"]
    claims = tf_component_norms.claims(both, "test")
    assert all(c.statement.startswith("at every one of 2 init seeds (2–3) — ") for c in claims)
    assert all(c.measured["seeds_holding"].endswith("of 2") for c in claims)
    assert all("seed 3, init 1e-03: " in c.details for c in claims)  # the gate reads every seed's runs
    assert tf_component_norms.plot(both, tmp_path / "fig.png", FigureContext("test"))[0].is_file()


def test_computing_only_the_running_runs_leaves_every_completion_number_as_it_was():
    """Dense CP completion declares its runs independent: the trainer evaluates, after each sync, only the runs
    still active. Runs that stop at different times end bit for bit where the whole-batch loop ends them."""
    settings = Settings({**SMALL, "init_scales": [5e-2, 1e-2, 1e-3], "max_iters": 3000, "method": "dense"})
    context = Context(tier="test", device=torch.device("cpu"), progress=False)
    objective = make_objective(settings, "completion", context.device)
    assert objective.runs_independent and WithComponentNorms(objective, 3).runs_independent
    compact = train_dynamics(settings, objective, context, None, "", None)
    objective.runs_independent = False
    whole = train_dynamics(settings, objective, context, None, "", None)
    first, second, capped = sorted(r["iterations"] for r in whole.runs)
    assert first < 2000 < second < capped == 3000  # two runs after the sync at 2000, then the capped one alone
    assert compact.frame.equals(whole.frame) and compact.runs == whole.runs


def test_objectives_that_round_a_smaller_batch_differently_do_not_declare_independent_runs():
    """Gather completion's scatter-adds and the sensing products change in the last digit with the batch size."""
    gather = make_objective(Settings({**SMALL, "method": "gather"}), "completion", torch.device("cpu"))
    sensing = make_objective(Settings(SMALL), "sensing", torch.device("cpu"))
    assert not gather.runs_independent and not getattr(sensing, "runs_independent", False)
    assert not WithComponentNorms(sensing, 3).runs_independent
