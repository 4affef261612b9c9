"""Chapter 1's typed settings: built from every tier's section and recording it unchanged; the figures' substitutions
derived from the paper tier (config/paper.yaml), bookkeeping keys left out; the §1.1–§1.4 run → plot → claims path
on a tiny budget."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from rankrepro.cli import figure_context
from rankrepro.core.errors import ConfigError
from rankrepro.experiments.base import Context
from rankrepro.experiments.ch1 import common, dmf_larger_matrices, tensor_completion_vs_linear
from rankrepro.pipeline import plotting
from rankrepro.pipeline.config import experiment_section, load_config, validate_config
from rankrepro.pipeline.registry import get_experiment

ROOT = Path(__file__).resolve().parents[2]
PAPER = ROOT / "config" / "paper.yaml"
TIERS = ("smoke", "config", "paper")
CHAPTER_1 = (
    "dmf_2x2_norms_vs_rank",
    "dmf_init_scale_sweep",
    "dmf_perturbed_problem",
    "dmf_larger_matrices",
    "tensor_completion_vs_linear",
)


def section(tier: str, experiment: str) -> dict:
    """The validated section of ``experiment`` in config/<tier>.yaml (defaults filled, resources left out)."""
    return experiment_section(load_config(ROOT / "config" / f"{tier}.yaml"), experiment)


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("experiment", CHAPTER_1)
def test_settings_build_from_every_tier_and_record_the_section(experiment, tier):
    mapping = section(tier, experiment)
    settings = get_experiment(experiment).Settings.from_mapping(mapping, f"experiments.{experiment}")
    assert settings.record() == mapping
    assert isinstance(settings.seed, int) and isinstance(settings.loss_threshold, float)


def test_nested_settings_are_typed():
    runs = get_experiment("dmf_2x2_norms_vs_rank").Settings.from_mapping(section("paper", "dmf_2x2_norms_vs_rank")).runs
    assert all(isinstance(run, common.DMFRun) and isinstance(run.lr, float) for run in runs)
    assert [run.det_sign for run in runs].count(-1) == 2  # the schema's default det_sign 1 elsewhere
    tc = tensor_completion_vs_linear.Settings.from_mapping(section("config", "tensor_completion_vs_linear"))
    assert [tc.seeds_of(entry) for entry in tc.orders] == [5, 3]  # order 4 overrides num_seeds
    assert tc.orders[1].dims == (8, 8, 8, 8) and tc.orders[1].numel == 4096
    assert tc.rank_estimation.als_settings().restarts == 3
    shapes = dmf_larger_matrices.Settings.from_mapping(section("config", "dmf_larger_matrices")).shapes
    assert shapes == ((2, 2), (5, 5), (5, 10))


def test_a_missing_or_mistyped_key_is_refused():
    mapping = section("smoke", "dmf_perturbed_problem")
    settings_class = get_experiment("dmf_perturbed_problem").Settings
    with pytest.raises(ConfigError, match="epsilons' is missing"):
        settings_class.from_mapping({k: v for k, v in mapping.items() if k != "epsilons"})
    with pytest.raises(ConfigError, match="depth' must be int"):
        settings_class.from_mapping({**mapping, "depth": 3.0})


def test_one_budget_per_shape():
    dmf = get_experiment("dmf_perturbed_problem").Settings.from_mapping(section("config", "dmf_perturbed_problem"))
    loop = dmf.train_settings()
    assert (loop.max_iters, loop.stop.threshold, loop.stop.patience, loop.log_every) == (10**8, 1e-4, 1, 1000)
    assert loop.checkpoint_every == 5_000_000
    tc = tensor_completion_vs_linear.Settings.from_mapping(section("smoke", "tensor_completion_vs_linear"))
    loop = tc.loop_settings(4000)
    assert (loop.max_iters, loop.stop.patience, loop.stop.check_every, loop.sync_every) == (4000, 3, 100, 1000)


@pytest.mark.parametrize("experiment", CHAPTER_1)
def test_the_paper_tier_departs_from_nothing_and_the_smoke_tier_says_how(experiment):
    smoke, paper = figure_context("smoke", experiment, str(PAPER)), figure_context("paper", experiment, str(PAPER))
    assert paper.substitutions(section("paper", experiment)) == "none"
    text = smoke.substitutions(section("smoke", experiment))
    assert text.startswith("settings departing from the paper tier: ")
    assert "loss_threshold 0.001 (paper: 0.0001)" in text or "orders [" in text
    assert "log_every" not in text and "checkpoint_every" not in text  # bookkeeping: the numbers do not change


def test_a_key_that_changes_the_numbers_is_a_departure():
    paper = section("paper", "tensor_completion_vs_linear")
    figure = figure_context("paper", "tensor_completion_vs_linear", str(PAPER))
    changed = {**paper, "method": "dense", "check_every": 50, "log_every": 7, "checkpoint_every": 0}
    text = figure.substitutions(changed)
    assert "method dense (paper: auto)" in text and "check_every 50 (paper: 100)" in text
    assert "log_every" not in text and "checkpoint_every" not in text
    nested = copy.deepcopy(paper)
    nested["rank_estimation"]["restarts"] = 2
    assert figure.substitutions(nested).endswith("rank_estimation.restarts 2 (paper: 3)")


TINY_DMF = {
    "seed": 5,
    "loss_threshold": 1.0e-2,
    "max_iters": 3000,
    "log_every": 100,
    "depth": 3,
    "lr": 3.0e-2,
    "init_scale": 1.0e-2,
    "balanced": True,
    "shapes": [[2, 2], [3, 4]],
}


def test_dmf_run_plot_and_claims_on_a_tiny_budget(tmp_path, monkeypatch):
    module = dmf_larger_matrices
    validated = validate_config({"tier": "test", "experiments": {module.NAME: TINY_DMF}})
    settings = module.Settings.from_mapping(experiment_section(validated, module.NAME))
    out = tmp_path / "results"
    module.run(settings, out, Context("test", torch.device("cpu"), threads=1, progress=False))
    captions: list[str] = []
    monkeypatch.setattr(plotting, "add_caption", lambda fig, caption: captions.append(caption))
    paths = module.plot(out, tmp_path / "fig.png", figure_context("test", module.NAME, str(PAPER)))
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    (caption,) = captions
    assert caption.startswith("§1.4 — tier 'test'.") and "seed 5" in caption
    assert "shapes [[2, 2], [3, 4]] (paper: [[2, 2], [5, 5], [5, 10]])" in caption
    assert "max_iters 3,000 (paper: 5,000,000)" in caption and "log_every" not in caption
    records = module.claims(out, "test")
    assert [r.claim_id for r in records] == ["unobserved_entry_blows_up_2x2", "unobserved_entry_blows_up_3x4"]


@pytest.mark.parametrize("experiment", ["dmf_init_scale_sweep", "dmf_larger_matrices", "dmf_perturbed_problem"])
def test_diverged_runs_are_plotted_and_withheld_not_a_traceback(experiment, tmp_path):
    """lr 1.0 diverges every smoke run (NaN or inf losses, stored as "nan"/"inf" in summary.json): the plot skips what
    no axis can show, the claims see floats and the convergence gate withholds them."""
    from rankrepro.experiments.base import load_results
    from rankrepro.pipeline.claims import NOT_SHOWN
    from rankrepro.pipeline.settings import FigureContext

    module = get_experiment(experiment)
    settings = module.Settings.from_mapping({**section("smoke", experiment), "lr": 1.0})
    module.run(settings, tmp_path, Context("test", torch.device("cpu"), threads=1, progress=False))
    _, summary = load_results(tmp_path)
    assert any(run["status"] == "diverged" for run in summary["runs"])
    assert all(path.stat().st_size > 0 for path in module.plot(tmp_path, tmp_path / "fig.png", FigureContext("test")))
    assert {claim.verdict for claim in module.claims(tmp_path, "test")} == {NOT_SHOWN}
