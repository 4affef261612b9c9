"""§5.4 Hessian rank along training: the gradient-descent segments, the cached runs, the gate and the claims."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rankrepro.core.errors import ConfigError
from rankrepro.experiments.base import load_results
from rankrepro.experiments.ch5 import hessian_rank_during_training as training
from rankrepro.hessian.maps import MLP, glorot_normal_init
from rankrepro.pipeline.claims import NOT_SHOWN, PASSED
from rankrepro.pipeline.config import experiment_section, load_config, validate_config

from .test_hessian_rank_experiments import CTX, FIGURE, FakeData

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {
    "seed": 3,
    "datasets": ["mnist"],
    "losses": ["mse", "ce"],
    "activations": ["linear", "relu"],
    "image_side": 3,
    "resize": "nearest",
    "num_samples": 30,
    "hidden": [4, 4],
    "learning_rate": 0.05,
    "checkpoints": [0, 20, 200],
}


def settings(**changes) -> training.Settings:
    return training.Settings.from_mapping({**SETTINGS, **changes})


def test_gradient_descent_in_segments_is_the_uninterrupted_trajectory():
    g = torch.Generator().manual_seed(0)
    X, Y = torch.rand(8, 3, generator=g, dtype=torch.float64), torch.eye(2, dtype=torch.float64)[[0, 1] * 4]
    mlp = MLP((3, 4, 2), activation="relu")
    objective = training.MeanLoss(mlp, X, Y, "ce")
    start = glorot_normal_init(mlp, g)
    whole = training.descend(objective, start, 12, 0.1)
    assert torch.equal(training.descend(objective, training.descend(objective, start, 5, 0.1), 7, 0.1), whole)
    assert torch.equal(training.descend(objective, start, 0, 0.1), start)
    assert objective.value([whole[None]]) < objective.value([start[None]])
    # one explicit step: θ − η ∇ (1/n) Σ ℓ
    theta = start.clone().requires_grad_(True)
    objective.value([theta[None]]).sum().backward()
    assert torch.allclose(training.descend(objective, start, 1, 0.1), start - 0.1 * theta.grad)


def test_a_run_keeps_the_linear_ranks_at_the_closed_forms_and_is_served_from_its_files(tmp_path, monkeypatch):
    training.run(settings(), tmp_path, CTX, FakeData())
    metrics, summary = load_results(tmp_path)
    assert len(metrics) == 1 * 2 * 2 * 3 * 3  # datasets × losses × activations × checkpoints × Hessians
    assert set(summary["runs"]) == {"mnist_mse_linear", "mnist_mse_relu", "mnist_ce_linear", "mnist_ce_relu"}
    linear = metrics[metrics["activation"] == "linear"]
    assert (linear["rank"] == linear["predicted"]).all()  # generic random images: every checkpoint well defined
    losses = metrics[(metrics["kind"] == "loss") & (metrics["activation"] == "linear") & (metrics["loss"] == "mse")]
    assert losses.sort_values("value")["train_loss"].is_monotonic_decreasing
    found = {c.claim_id: c for c in training.claims(tmp_path, "test")}
    assert set(found) == {
        "mnist_linear_mse_ranks_stay_at_formulas_during_training",
        "mnist_linear_ce_ranks_stay_at_formulas_during_training",
        "relu_rank_estimated_by_linear_formula_during_training",
    }
    assert all("gate: every run's training loss fell" in c.details for c in found.values())
    paths = training.plot(tmp_path, tmp_path / "fig.png", FIGURE)
    assert all(p.is_file() for p in paths)

    def refuse(*args, **kwargs):
        raise AssertionError("a finished run was recomputed")

    monkeypatch.setattr(training, "training_run", refuse)
    training.run(settings(), tmp_path, CTX, FakeData())


def test_the_gate_needs_every_run_to_cut_its_loss_by_the_fixed_fraction():
    runs = {"a": {"initial_loss": 1.0, "final_loss": 0.7}, "b": {"initial_loss": 2.0, "final_loss": 0.2}}
    assert training.training_gate({"runs": runs}).holds  # 30 % and 90 %
    runs["a"]["final_loss"] = 0.71
    gate = training.training_gate({"runs": runs})
    assert not gate.holds and "a 29%" in gate.measured
    assert not training.training_gate({"runs": {}}).holds


def test_claims_are_not_shown_when_training_barely_moved(tmp_path):
    training.run(settings(checkpoints=[0, 1]), tmp_path, CTX, FakeData())
    assert {c.verdict for c in training.claims(tmp_path, "test")} == {NOT_SHOWN}


def test_linear_claim_passes_at_well_defined_checkpoints_only():
    from rankrepro.experiments.ch5.common import point_table

    from .test_hessian_rank_experiments import _record, _summary_with

    fragile = {"0.01": 99, "1": 98, "100": 98}
    records = [_record(step, 100, 100) for step in (0, 10, 100)] + [_record(1000, 98, 100, fragile)]
    claim = training.linear_claim(point_table(_summary_with(records)), "mnist", "mse")
    assert claim.verdict == PASSED and claim.measured["checked"] == 3 and "ill-defined at step 1000" in claim.details


@pytest.mark.parametrize("tier", ["smoke.yaml", "config.yaml", "paper.yaml"])
def test_settings_are_built_from_every_tier(tier):
    section = experiment_section(load_config(ROOT / "config" / tier), training.NAME)
    built = training.Settings.from_mapping(section, f"experiments.{training.NAME}")
    assert built.record() == section and 0 in built.checkpoints and isinstance(built.hidden, tuple)


def test_bad_settings_are_config_errors_naming_the_key():
    config = {"tier": "t", "experiments": {training.NAME: {**SETTINGS, "checkpoints": [0]}}}
    with pytest.raises(ConfigError, match="checkpoints"):
        validate_config(config)
    config["experiments"][training.NAME] = {**SETTINGS, "learning_rate": 0}
    with pytest.raises(ConfigError, match="learning_rate"):
        validate_config(config)


def test_a_diverging_learning_rate_is_a_config_error_naming_the_key():
    """Gradient descent that diverges leaves NaN or inf weights, whose Hessian ranks mean nothing: one line naming the
    key (exit 2 through the CLI), not a traceback."""
    from rankrepro.hessian.maps import MLP, glorot_normal_init

    generator = torch.Generator().manual_seed(0)
    mlp = MLP((4, 3, 2), "linear", False)
    X = torch.randn(6, 4, dtype=torch.float64, generator=generator)
    Y = torch.nn.functional.one_hot(torch.arange(6) % 2, 2).double()
    objective = training.MeanLoss(mlp, X, Y, "mse")
    theta = glorot_normal_init(mlp, generator)
    assert torch.isfinite(training.descend(objective, theta, 20, 0.01)).all()
    with pytest.raises(ConfigError, match="learning_rate': gradient descent diverged at learning rate 1000; lower it"):
        training.descend(objective, theta, 200, 1000.0)
