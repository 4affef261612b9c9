"""§3.1: the generic sensing objective, the MF/TF/HTF problem builders, the typed settings, run → plot → claims on
the tiny tier, the caption's departures from the paper tier, and claims that fail or are not shown on doctored
results."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from rankrepro.cli import figure_context
from rankrepro.core.errors import ConfigError
from rankrepro.core.io import atomic_write_sealed_json, read_json
from rankrepro.experiments.base import Context
from rankrepro.experiments.ch3 import incremental_rank_learning as irl
from rankrepro.experiments.ch3 import incremental_rank_learning_sensing as irl_sensing
from rankrepro.experiments.ch3 import rank_dynamics_common
from rankrepro.experiments.ch3.rank_dynamics_common import (
    MODELS,
    RankDynamicsSettings,
    Tracked,
    build_problem,
    check_settings,
)
from rankrepro.factorization import dmf, htf
from rankrepro.factorization.cp_sensing import gaussian_measurements
from rankrepro.factorization.sensing import SensingObjective, sensing_loss
from rankrepro.pipeline.claims import FAILED, NOT_SHOWN, PASSED
from rankrepro.pipeline.config import experiment_section, load_config
from rankrepro.pipeline.registry import get_experiment

TINY = Path(__file__).resolve().parents[1] / "tiny.yaml"
CONFIG = Path(__file__).resolve().parents[2] / "config"
PAPER = CONFIG / "paper.yaml"
CTX = Context(tier="test", device=torch.device("cpu"), progress=False)


def _tiny(name: str = "incremental_rank_learning") -> dict:
    """The tiny tier's (validated, defaults filled) section of an experiment."""
    return copy.deepcopy(experiment_section(load_config(TINY), name))


def _settings(section: dict | None = None) -> RankDynamicsSettings:
    """The typed settings of a section (the tiny tier's by default), as the CLI builds them."""
    return RankDynamicsSettings.from_mapping(_tiny() if section is None else section, "experiments.test")


@pytest.mark.parametrize("tier", ["smoke.yaml", "config.yaml", "paper.yaml"])
@pytest.mark.parametrize("name", ["incremental_rank_learning", "incremental_rank_learning_sensing"])
def test_settings_are_built_from_every_tier_and_record_their_section(tier, name):
    section = experiment_section(load_config(CONFIG / tier), name)
    settings = get_experiment(name).Settings.from_mapping(section, f"experiments.{name}")
    assert settings.record() == section
    assert isinstance(settings.target_norm, float) and isinstance(settings.htf.widths, tuple)
    assert settings.htf.widths == tuple(section["htf"]["widths"]) and settings.tf.method == section["tf"]["method"]
    assert settings.train_settings().stop.threshold == section["loss_threshold"]


def test_settings_refuse_a_missing_or_unknown_key():
    section = _tiny()
    del section["mf"]["depth"]
    with pytest.raises(ConfigError, match="experiments.test.mf.depth"):
        _settings(section)
    with pytest.raises(ConfigError, match="no field"):
        _settings({**_tiny(), "width": 3})


@pytest.mark.parametrize(
    "reconstruct, shapes",
    [(dmf.product, [(1, 3, 3)] * 3), (htf.htf_reconstruct, [(1, 2, 2)] * 4 + [(1, 2, 2)] * 2 + [(1, 2)])],
)
def test_sensing_loss_gradient_check(reconstruct, shapes):
    """∇ of (1/m) Σ (⟨A_i, W(θ)⟩ − y_i)² by autograd matches finite differences (float64 gradcheck)."""
    g = torch.Generator().manual_seed(0)
    params = [torch.randn(s, generator=g, dtype=torch.float64, requires_grad=True) for s in shapes]
    numel = reconstruct(params)[0].numel()
    matrix = gaussian_measurements(5, (numel,), g)
    values = torch.randn(5, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda *p: sensing_loss(reconstruct(p), matrix, values), params)
    loss, grads = SensingObjective(reconstruct, matrix, values).loss_and_grads([p.detach() for p in params])
    expected = torch.autograd.grad(sensing_loss(reconstruct(params), matrix, values).sum(), params)
    assert torch.allclose(loss, sensing_loss(reconstruct(params), matrix, values).detach())
    assert all(torch.allclose(a, b) for a, b in zip(grads, expected))


def test_sensing_objective_rejects_mismatched_values():
    with pytest.raises(ConfigError, match="sensing needs"):
        SensingObjective(dmf.product, torch.zeros(4, 9), torch.zeros(3))


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("measurement", ["completion", "sensing"])
def test_problem_builder_is_seeded_and_sized(model, measurement):
    """Targets have the configured norm; n entries are observed (the rest held out); equal seeds, equal problems."""
    settings = _settings()
    first, second = build_problem(settings, model, measurement), build_problem(settings, model, measurement)
    assert torch.equal(first.target, second.target)
    assert all(torch.equal(a, b) for a, b in zip(first.params, second.params))
    assert float(first.target.norm()) == pytest.approx(settings.target_norm)
    held = int(first.heldout.sum())
    assert held == (first.target.numel() - settings.n_observed if measurement == "completion" else first.target.numel())
    full = first.reconstruct(first.params)
    assert full.shape == (1, *first.target.shape)
    assert first.components(first.params).shape == (1, first.allowed)
    loss, grads = first.objective.loss_and_grads(first.params)
    assert loss.shape == (1,) and [g.shape for g in grads] == [p.shape for p in first.params]
    other = build_problem(_settings({**_tiny(), "data_seed": settings.data_seed + 1}), model, measurement)
    assert not torch.equal(first.target, other.target)


def test_mf_completion_loss_is_the_mse_over_observed_entries():
    problem = build_problem(_settings(), "mf", "completion")
    full = problem.reconstruct(problem.params)[0]
    observed = 1.0 - problem.heldout
    expected = ((full - problem.target) * observed).pow(2).sum() / observed.sum()
    assert float(problem.objective.loss_and_grads(problem.params)[0][0]) == pytest.approx(float(expected))


@pytest.mark.parametrize(
    "change, key", [({"n_observed": 100}, "n_observed"), ({"top_k": 2}, "top_k"), ({"top_k": 9}, "top_k")]
)
def test_bad_settings_name_the_key(change, key):
    with pytest.raises(ConfigError, match=f"incremental_rank_learning.{key}"):
        check_settings(_settings({**_tiny(), **change}), "incremental_rank_learning", "completion")


def test_sensing_may_take_more_measurements_than_entries():
    check_settings(_settings({**_tiny(), "n_observed": 100}), "incremental_rank_learning_sensing", "sensing")


def test_bad_htf_widths_are_a_config_error():
    section = _tiny()
    section["htf"]["widths"] = [4]
    with pytest.raises(ConfigError, match="widths"):
        check_settings(_settings(section), "incremental_rank_learning", "completion")


def test_registered_after_tensor_rank_mnist():
    from rankrepro.pipeline.registry import EXPERIMENTS

    names = list(EXPERIMENTS)
    at = names.index("tensor_rank_mnist")
    assert names[at + 1 : at + 3] == ["incremental_rank_learning", "incremental_rank_learning_sensing"]
    assert get_experiment("incremental_rank_learning_sensing").CHAPTER == "ch3"


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory):
    """The completion experiment on the tiny tier (a few seconds)."""
    out = tmp_path_factory.mktemp("irl") / "incremental_rank_learning"
    irl.run(_settings(), out, CTX)
    return out


def test_run_writes_tidy_metrics_and_summary(tiny_results):
    summary = read_json(tiny_results / "summary.json")
    metrics = pd.read_csv(tiny_results / "metrics.csv")
    assert set(metrics["model"]) == set(MODELS) == set(summary["models"])
    assert {"iteration", "top_norms_0", "heldout_error", "norms_0_1_0", "sv_0_1_0", "sv_0_2_0"} <= set(metrics.columns)
    record = summary["models"]["htf"]
    assert {"{1}", "{1,2}", "{3,4}", "{1,3}"} <= set(record["effective_ranks"])
    assert len(summary["models"]["mf"]["emergence_iterations"]) == 2


def test_tiny_run_plot_and_claims(tiny_results, tmp_path):
    paths = irl.plot(tiny_results, tmp_path / "fig.png", figure_context("test", irl.NAME, str(PAPER)))
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in paths)
    claims = irl.claims(tiny_results, "test")
    ids = {c.claim_id for c in claims}
    assert {f"{m}_{c}" for m in MODELS for c in ("emergence_separated", "few_components", "low_error")} <= ids
    assert "htf_tree_node_effective_rank" in ids
    assert all(c.reference for c in claims)


def test_the_figure_does_not_depend_on_the_machine_timings(tiny_results, retimed_copy, tmp_path):
    figure = figure_context("test", irl.NAME, str(PAPER))
    first = irl.plot(tiny_results, tmp_path / "a.png", figure)
    second = irl.plot(retimed_copy(tiny_results), tmp_path / "b.png", figure)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def _doctored(results: Path, tmp_path: Path, change) -> Path:
    """A copy of the results whose summary is altered by ``change(summary)``."""
    altered = tmp_path / "altered"
    shutil.copytree(results, altered)
    summary = read_json(results / "summary.json")
    change(summary)
    atomic_write_sealed_json(altered / "summary.json", summary)
    return altered


def test_claims_fail_on_doctored_numbers(tiny_results, tmp_path):
    """Emergence times not increasing, too many components or a large error fail; a capped run is not shown."""

    def change(summary):
        for record in summary["models"].values():
            record["status"] = "converged"
        summary["models"]["mf"]["emergence_iterations"] = [500, 100]
        summary["models"]["tf"]["learned_components"] = 7
        summary["models"]["htf"]["heldout_error"] = 0.5
        summary["models"]["htf"]["effective_ranks"]["{1,2}"] = 6.5

    verdicts = {c.claim_id: c.verdict for c in irl.claims(_doctored(tiny_results, tmp_path, change), "test")}
    assert verdicts["mf_emergence_separated"] == FAILED
    assert verdicts["tf_few_components"] == FAILED
    assert verdicts["htf_low_error"] == FAILED
    assert verdicts["htf_tree_node_effective_rank"] == FAILED


def test_one_gate_withholds_every_claim_when_a_run_is_capped(tiny_results, tmp_path):
    def change(summary):
        for record in summary["models"].values():
            record["status"] = "converged"
        summary["models"]["mf"]["emergence_iterations"] = [500, 100]  # a failure the gate turns into not shown
        summary["models"]["tf"]["status"] = "max_iters"

    claims = irl.claims(_doctored(tiny_results, tmp_path, change), "test")
    assert {c.verdict for c in claims} == {NOT_SHOWN}
    assert all("NOT met" in c.details and "TF max_iters" in c.details for c in claims)


@pytest.mark.parametrize(
    ("times", "verdict"),
    [
        ([100, 105, 2000], PASSED),  # the thesis states no minimum gap: 5 % apart is still one after another
        ([100, 100, 2000], FAILED),  # two components emerge at the same logged iteration
        ([100, 2000, 1900], FAILED),
        ([100, None, 2000], FAILED),  # a component that never grew
    ],
)
def test_emergence_one_after_another(tiny_results, tmp_path, times, verdict):
    def change(summary):
        for record in summary["models"].values():
            record["status"] = "converged"
        summary["models"]["htf"]["emergence_iterations"] = times

    claims = {c.claim_id: c for c in irl.claims(_doctored(tiny_results, tmp_path, change), "test")}
    assert claims["htf_emergence_separated"].verdict == verdict
    assert "— met" in claims["htf_emergence_separated"].details


def test_sensing_variant_end_to_end(tmp_path):
    out = tmp_path / "sensing"
    irl_sensing.run(_settings(_tiny("incremental_rank_learning_sensing")), out, CTX)
    summary = read_json(out / "summary.json")
    assert summary["measurement"] == "sensing"
    for record in summary["models"].values():  # sensing: the held-out error is the reconstruction error
        assert record["heldout_error"] == pytest.approx(record["reconstruction_error"])
    claims = irl_sensing.claims(out, "test")
    assert all(c.claim_id.startswith("sensing_") for c in claims)
    assert irl_sensing.plot(out, tmp_path / "fig.png", figure_context("test", irl_sensing.NAME, None))[0].is_file()


def _caption(monkeypatch, results: Path, tmp_path: Path, tier_config: Path) -> str:
    """The caption irl.plot writes for ``results`` drawn as tier ``tier_config``'s, compared with config/paper.yaml."""
    captions: list[str] = []
    monkeypatch.setattr(rank_dynamics_common, "add_caption", lambda fig, text: captions.append(text))
    irl.plot(results, tmp_path / "fig.png", figure_context(load_config(tier_config)["tier"], irl.NAME, str(PAPER)))
    return captions[0]


def _as_tier(results: Path, tmp_path: Path, tier_config: Path) -> Path:
    """The results with the settings of tier ``tier_config`` recorded in their summary."""
    section = experiment_section(load_config(tier_config), irl.NAME)
    return _doctored(results, tmp_path / tier_config.stem, lambda summary: summary.update(settings=section))


def test_the_caption_names_every_setting_departing_from_the_paper_tier(tiny_results, tmp_path, monkeypatch):
    caption = _caption(monkeypatch, _as_tier(tiny_results, tmp_path, CONFIG / "smoke.yaml"), tmp_path, TINY)
    substitutions = caption.split("Substitutions: ")[1]
    assert "htf.widths [16, 16] (paper: [512, 512])" in substitutions
    assert "max_iters 40,000 (paper: 500,000)" in substitutions and "tf.components 16 (paper: 256)" in substitutions
    assert "mf.depth" not in substitutions  # equal to the paper's


def test_the_paper_tiers_caption_has_no_substitutions(tiny_results, tmp_path, monkeypatch):
    caption = _caption(monkeypatch, _as_tier(tiny_results, tmp_path, PAPER), tmp_path, PAPER)
    assert caption.endswith("Substitutions: none.")


def test_checkpoint_cadence_is_not_a_departure(tiny_results, tmp_path, monkeypatch):
    """The tiny tier checkpoints never (paper: every 5,000 iterations): bookkeeping, not a departure."""
    substitutions = _caption(monkeypatch, tiny_results, tmp_path, TINY).split("Substitutions: ")[1]
    assert "log_every 10 (paper: 50)" in substitutions and "checkpoint_every" not in substitutions


@pytest.mark.parametrize("model", ["mf", "tf", "htf"])
@pytest.mark.parametrize("measurement", ["completion", "sensing"])
def test_the_problem_lives_on_the_training_device(model, measurement, meta_device):
    """A GPU run moves the parameters to the device: every tensor the objective and its metrics touch must be there
    too (the meta device stands in for the GPU; built on the CPU instead, the same calls raise)."""
    problem = build_problem(_settings(), model, measurement, meta_device)
    params = [p.to(meta_device) for p in problem.params]
    tracked = Tracked(problem, top_k=3)
    loss, grads = tracked.loss_and_grads(params)
    assert loss.device == meta_device and all(g.device == meta_device for g in grads)
    assert all(value.device == meta_device for value in tracked.metrics(params).values())
    assert problem.target.device == problem.heldout.device == meta_device
    on_cpu = build_problem(_settings(), model, measurement)
    with pytest.raises(RuntimeError, match="device"):
        Tracked(on_cpu, top_k=3).loss_and_grads(params)
