"""§3.1 appendix (htf_rank_along_tree): settings from every tier, the variant objective (MSE for the trainer, the
variant's gradients), the tracked ranks, the problem shared with §3.1, run → plot → claims on the tiny tier, and
claims that fail or are withheld on doctored results."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from rankrepro.cli import figure_context
from rankrepro.core import losses
from rankrepro.core.errors import ConfigError
from rankrepro.core.io import atomic_write_sealed_json, read_json, sha256_file
from rankrepro.experiments.base import METRICS_FILE, METRICS_RECORD, Context
from rankrepro.experiments.ch3 import htf_rank_along_tree as exp
from rankrepro.experiments.ch3.rank_dynamics_common import RankDynamicsSettings, build_problem, init_params
from rankrepro.factorization import htf
from rankrepro.pipeline.claims import FAILED, NOT_SHOWN, PASSED
from rankrepro.pipeline.config import experiment_section, load_config
from rankrepro.pipeline.registry import EXPERIMENTS

TINY = Path(__file__).resolve().parents[1] / "tiny.yaml"
CONFIG = Path(__file__).resolve().parents[2] / "config"
PAPER = CONFIG / "paper.yaml"
CTX = Context(tier="test", device=torch.device("cpu"), progress=False)


def _section(name: str = exp.NAME) -> dict:
    return copy.deepcopy(experiment_section(load_config(TINY), name))


def _settings(section: dict | None = None) -> exp.Settings:
    return exp.Settings.from_mapping(_section() if section is None else section, "experiments.test")


@pytest.mark.parametrize("tier", ["smoke.yaml", "config.yaml", "paper.yaml"])
def test_settings_are_built_from_every_tier(tier):
    section = experiment_section(load_config(CONFIG / tier), exp.NAME)
    settings = exp.Settings.from_mapping(section, f"experiments.{exp.NAME}")
    assert settings.record() == section
    assert settings.losses == ("l2", "l1", "huber") and settings.optimizers == ("group_rmsprop",)
    assert settings.variants()[0] == ("group_rmsprop", "l2") and isinstance(settings.widths, tuple)
    exp.check_settings(settings)


def test_registered_after_the_section_it_extends():
    names = list(EXPERIMENTS)
    assert names.index(exp.NAME) == names.index("incremental_rank_learning_sensing") + 1


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"n_observed": 100}, "n_observed"),
        ({"top_k": 5}, "top_k"),
        ({"seeds": 1}, "≥ 2 init seeds"),
        ({"widths": [4]}, "needs 2 widths"),
    ],
)
def test_bad_settings_name_the_key(change, match):
    with pytest.raises(ConfigError, match=match):
        exp.check_settings(_settings({**_section(), **change}))


def test_the_problem_and_first_init_are_section_3_1s():
    """The target, observed entries and the first run's init are §3.1's HTF problem (same seeds, same draws)."""
    section = _section("incremental_rank_learning")
    rd = RankDynamicsSettings.from_mapping(section, "experiments.test")
    settings = _settings()
    problem = build_problem(rd, "htf", "completion")
    target, flat = exp.htf_completion_data(rd.data_seed, rd.dims("htf"), rd.htf.target_widths, rd.target_norm, 40)
    torch.testing.assert_close(target, problem.target)
    assert set(flat.tolist()) == set(torch.nonzero(problem.heldout.reshape(-1) == 0).flatten().tolist())
    first = [p[:1] for p in exp.init_runs(settings)]
    for mine, theirs in zip(first, init_params(rd, "htf")):
        torch.testing.assert_close(mine, theirs)


def _objective(loss: str) -> tuple[exp.VariantCompletion, list[torch.Tensor]]:
    settings = _settings()
    target, flat = exp.htf_completion_data(1, settings.dims, (2, 2), 8.0, 40)
    nodes, others = exp.subsets_of(4)
    objective = exp.VariantCompletion(target, flat, loss, 0.5, 4, nodes + others)
    generators = [torch.Generator().manual_seed(s) for s in (1, 2)]
    params = htf.init_htf(settings.dims, (4, 4), torch.tensor([0.7, 0.9]), generators)
    return objective, params


@pytest.mark.parametrize("loss", ["l2", "l1", "huber"])
def test_variant_objective_hands_the_trainer_the_mse_and_the_variants_gradients(loss):
    objective, params = _objective(loss)
    value, grads = objective.loss_and_grads(params)
    prediction = htf.htf_predict(params, objective.indices)
    torch.testing.assert_close(value, (prediction - objective.values).pow(2).mean(-1))
    leaves = [p.clone().requires_grad_(True) for p in params]
    expected = torch.autograd.grad(
        losses.mean_loss(htf.htf_predict(leaves, objective.indices) - objective.values, loss, 0.5).sum(), leaves
    )
    for g, e in zip(grads, expected):
        torch.testing.assert_close(g, e)
    if loss == "l2":  # ℓ2 is §3.1's objective exactly
        _, reference = htf.HTFCompletionObjective(objective.target, objective.indices).loss_and_grads(params)
        for g, e in zip(grads, reference):
            torch.testing.assert_close(g, e)


def test_tracked_ranks_count_directions_against_the_targets_scale():
    objective, params = _objective("l2")
    target = objective.target
    own = objective.metrics(params)
    assert {f"rank_{'_'.join(map(str, s))}" for s in objective.subsets} <= set(own)
    # the target against its own scale: its τ-rank; a tiny tensor: rank 0; 2·target: at least the τ-rank
    ranks = exp.subset_ranks(torch.stack([target, 1e-6 * target, 2 * target]), objective.subsets, objective.scales)
    tau = exp.target_ranks(target, objective.subsets)
    for s in objective.subsets:
        column = ranks[f"rank_{'_'.join(map(str, s))}"]
        assert column[0] == tau[exp.spec_name(s)]["tau"] and column[1] == 0 and column[2] >= column[0]


def test_rank_column_inverts_spec_names():
    assert exp.rank_column("{1,3}") == "rank_0_2" and exp.rank_column("{4}") == "rank_3"


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("along") / exp.NAME
    exp.run(_settings(), out, CTX)
    return out


def test_run_writes_every_variants_runs_and_ranks(tiny_results):
    summary = read_json(tiny_results / "summary.json")
    metrics = pd.read_csv(tiny_results / METRICS_FILE)
    assert set(summary["variants"]) == {"group_rmsprop/l2", "group_rmsprop/huber"}
    assert summary["non_node_subsets"] == ["{1,3}", "{1,4}"] and len(summary["node_subsets"]) == 6
    assert {"rank_0", "rank_0_1", "rank_0_2", "rank_0_3", "top_norms_0", "train_loss"} <= set(metrics.columns)
    assert set(metrics["run"]) == {0, 1}
    assert all(len(v["runs"]) == 2 for v in summary["variants"].values())


def test_tiny_run_plot_and_claims(tiny_results, tmp_path):
    paths = exp.plot(tiny_results, tmp_path / "fig.png", figure_context("test", exp.NAME, str(PAPER)))
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in paths)
    ids = [c.claim_id for c in exp.claims(tiny_results, "test")]
    assert ids == [
        "node_ranks_low",
        "incremental_group_rmsprop_l2",
        "incremental_group_rmsprop_huber",
    ]


def _doctored(results: Path, tmp_path: Path, summary_change=None, metrics_change=None) -> Path:
    altered = tmp_path / "altered"
    shutil.copytree(results, altered)
    summary = read_json(results / "summary.json")
    if metrics_change is not None:
        metrics = pd.read_csv(results / METRICS_FILE)
        metrics_change(metrics)
        metrics.to_csv(altered / METRICS_FILE, index=False)
        summary[METRICS_RECORD] = {"sha256": sha256_file(altered / METRICS_FILE), "rows": len(metrics)}
    for record in (r for v in summary["variants"].values() for r in v["runs"]):
        record["final_loss"] = 0.0
        record["status"] = "converged"
    if summary_change is not None:
        summary_change(summary)
    atomic_write_sealed_json(altered / "summary.json", summary)
    return altered


def _set_ranks(node: float, other: float, jitter: bool = True):
    def change(metrics):
        for column in metrics.columns:
            if column.startswith("rank_"):
                is_other = column in ("rank_0_2", "rank_0_3")
                metrics[column] = other if is_other else node
        if jitter:
            metrics.loc[metrics["run"] == 1, "rank_0_2"] = other + 1

    return change


def test_node_claim_passes_and_fails_on_doctored_ranks_and_reports_the_non_node_ranks(tiny_results, tmp_path):
    exact = read_json(tiny_results / "summary.json")["target_ranks"]["{1,2}"]["exact"]
    good = {c.claim_id: c for c in exp.claims(_doctored(tiny_results, tmp_path, None, _set_ranks(1, 3)), "t")}
    assert good["node_ranks_low"].verdict == PASSED
    assert good["node_ranks_low"].measured["non_node_minus_node_time_averaged_rank"]["mean"] > 2
    assert good["node_ranks_low"].measured["non_node_minus_node_time_averaged_rank"]["n"] == 2  # seeds, not runs
    shutil.rmtree(tmp_path / "altered")
    bad = {
        c.claim_id: c.verdict
        for c in exp.claims(_doctored(tiny_results, tmp_path, None, _set_ranks(exact + 2, exact + 1)), "t")
    }
    assert bad["node_ranks_low"] == FAILED


def test_incremental_claim_fails_when_a_variant_learns_all_at_once(tiny_results, tmp_path):
    def change(summary):
        summary["variants"]["group_rmsprop/huber"]["runs"][1]["emergence_iterations"] = [100, 100]

    verdicts = {c.claim_id: c.verdict for c in exp.claims(_doctored(tiny_results, tmp_path, change), "t")}
    assert verdicts["incremental_group_rmsprop_huber"] == FAILED


def test_one_gate_withholds_every_claim_when_a_run_did_not_fit(tiny_results, tmp_path):
    def change(summary):
        summary["variants"]["group_rmsprop/l2"]["runs"][0]["final_loss"] = 1.0

    claims = exp.claims(_doctored(tiny_results, tmp_path, change), "t")
    assert {c.verdict for c in claims} == {NOT_SHOWN}
    assert all("NOT met" in c.details for c in claims)


def test_every_variant_objective_lives_on_the_training_device(meta_device):
    """The target and observed positions are drawn on the CPU and moved to the device of the parameters (meta
    standing in for a GPU): loss, gradients and every metric compute there."""
    settings = _settings()
    target, flat = exp.htf_completion_data(
        settings.data_seed, settings.dims, settings.target_widths, settings.target_norm, settings.n_observed
    )
    nodes, others = exp.subsets_of(settings.order)
    params = [p.to(meta_device) for p in exp.init_runs(settings)]
    for _, loss in settings.variants():
        objective = exp.variant_objective(settings, target, flat, loss, nodes + others, meta_device)
        value, grads = objective.loss_and_grads(params)
        assert value.device == meta_device and all(g.device == meta_device for g in grads)
        assert all(v.device == meta_device for v in objective.metrics(params).values())
    on_cpu = exp.variant_objective(settings, target, flat, loss, nodes + others, "cpu")
    with pytest.raises(RuntimeError, match="device"):
        on_cpu.loss_and_grads(params)


def test_the_interval_across_the_tree_counts_init_seeds_not_runs():
    """Every variant starts from the same seeded inits: a seed's runs are averaged over the variants first, so the
    interval has one pair per seed."""
    import pandas as pd

    from rankrepro.pipeline.claims import seed_means

    averaged = pd.DataFrame(
        {"variant": ["a", "a", "b", "b"], "run": [0, 1, 0, 1], "non_node": [5.0, 7.0, 6.0, 8.0], "node": [1.0] * 4}
    )
    per_seed = seed_means(averaged, ["non_node", "node"], seed="run")
    assert per_seed.index.tolist() == [0, 1] and per_seed["non_node"].tolist() == [5.5, 7.5]
