"""§5.5 CNN Hessian-rank sweep: settings from every tier, a tiny run on fake data, the claims' logic."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tests.experiments.test_hessian_rank_experiments import FakeData

from rankrepro.core.errors import ConfigError
from rankrepro.experiments.base import Context, load_results
from rankrepro.experiments.ch5 import hessian_rank_cnn as cnn
from rankrepro.pipeline.claims import FAILED, NOT_SHOWN, PASSED
from rankrepro.pipeline.config import experiment_section, load_config, validate_config
from rankrepro.pipeline.settings import FigureContext

ROOT = Path(__file__).resolve().parents[2]
TINY = {
    "seed": 3,
    "datasets": ["mnist"],
    "losses": ["mse"],
    "activations": ["linear", "relu"],
    "image_side": 5,
    "resize": "nearest",
    "num_samples": 12,
    "kernel_size": 3,
    "depths": [1, 2],
    "channels": [1, 4, 6, 8],
}
CTX = Context(tier="test", device=torch.device("cpu"), threads=1, progress=False)


@pytest.mark.parametrize("tier", ["smoke.yaml", "config.yaml", "paper.yaml"])
def test_settings_build_from_every_tier(tier):
    config = load_config(ROOT / "config" / tier)
    settings = cnn.Settings.from_mapping(experiment_section(config, cnn.NAME))
    assert settings.kernel_size >= 1 and settings.depths and settings.channels


def test_a_bad_section_is_a_config_error():
    section = {**TINY, "activations": ["tanh"]}
    with pytest.raises(ConfigError, match="activations"):
        validate_config({"tier": "t", "experiments": {cnn.NAME: section}})


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("cnn")
    cnn.run(cnn.Settings.from_mapping(TINY), out, CTX, FakeData())
    return out


def test_run_writes_a_row_per_point_and_hessian_and_plots(results, tmp_path):
    metrics, summary = load_results(results)
    assert len(metrics) == 2 * 2 * 4 * 3  # activations × depths × channels × Hessians
    linear = metrics[metrics["activation"] == "linear"]
    assert (linear["rank"] <= linear["bound"]).all()
    assert {p["key"] for p in summary["points"]} >= {"mnist_mse_linear_2_8", "mnist_mse_relu_1_1"}
    paths = cnn.plot(results, tmp_path / "cnn.png", FigureContext("test"))
    assert all(path.exists() for path in paths)


def test_every_point_is_computed_on_the_context_device(monkeypatch, meta_device, tmp_path):
    """run forms and ranks every point's maps on ctx.device (meta standing in for a GPU; the rank counting, which
    reads values, is replaced by spies that record where their inputs live)."""
    seen = []

    def spy(name, result):
        def record(*args, **kwargs):
            seen.append((name, {a.device.type for a in args if torch.is_tensor(a)}))
            return result

        return record

    factors = {f"{factor:g}": 1 for factor in cnn.maps.TOLERANCE_FACTORS}
    report = cnn.maps.RankReport(rank=1, tolerance=0.0, largest=1.0, ranks_at=factors, gap_log10=None)
    monkeypatch.setattr(cnn, "data_rank", spy("data_rank", 1))
    monkeypatch.setattr(cnn.conv, "patch_rank", spy("patch_rank", 1))
    monkeypatch.setattr(cnn.conv, "conv_map_ranks", spy("maps", dict.fromkeys(cnn.KINDS, report)))
    ctx = Context(tier="test", device=meta_device, threads=1, progress=False)
    settings = cnn.Settings.from_mapping({**TINY, "activations": ["linear", "relu"], "depths": [1], "channels": [2]})
    cnn.run(settings, tmp_path, ctx, FakeData())
    assert seen == [(name, {"meta"}) for name in ("data_rank", "patch_rank", "maps")] * 2


def test_claims_on_generic_data(results):
    verdicts = {c.claim_id: c for c in cnn.claims(results, "test")}
    assert set(verdicts) == {"linear_cnn_rank_grows_like_sqrt_p", "relu_cnn_rank_estimated_by_linear_bound"}
    assert verdicts["linear_cnn_rank_grows_like_sqrt_p"].verdict in (PASSED, FAILED)


def _table(ranks: list[int], ps: list[int], quadratic: list[int], activation: str = "linear"):
    rows = []
    for m, (rank, p, q) in enumerate(zip(ranks, ps, quadratic), start=1):
        rows.append(
            {
                "dataset": "mnist", "loss": "mse", "activation": activation, "p": p, "r": 30, "r_patch": 9,
                "depth": 2, "channels": m, "quadratic_params": q,
                "ranks": {k: {"rank": rank, "ranks_at": {"0.01": rank, "1": rank, "100": rank}, "gap_log10": 9.0}
                          for k in cnn.KINDS},
                "bounds": {k: rank for k in cnn.KINDS}, "linear_bounds": {k: 2 * rank for k in cnn.KINDS},
            }
        )  # fmt: skip
    return cnn.point_table({"points": rows})


def test_the_slope_claim_fails_for_a_rank_proportional_to_p_and_passes_for_sqrt_p():
    ps, quadratic = [100, 400, 1600, 6400], [60, 300, 1400, 6000]
    linear_rank = cnn.slope_claim(cnn.experiment_gate(_table([50, 200, 800, 3200], ps, quadratic))[0])
    sqrt_rank = cnn.slope_claim(cnn.experiment_gate(_table([50, 100, 200, 400], ps, quadratic))[0])
    assert linear_rank.verdict == FAILED and sqrt_rank.verdict == PASSED
    few = cnn.slope_claim(cnn.experiment_gate(_table([50, 100, 200, 400], ps, [0, 0, 1400, 6000]))[0])
    assert few.verdict == NOT_SHOWN


def test_the_estimate_claim_fails_outside_fifty_percent():
    table = _table([50, 100, 200, 400], [100, 400, 1600, 6400], [60, 300, 1400, 6000], "relu")
    claim = cnn.estimate_claim(cnn.experiment_gate(table)[1])
    assert claim.verdict == PASSED  # rank / bound = 0.5: on the edge, within
    table["predicted_loss"] = table["rank_loss"] * 3
    assert cnn.estimate_claim(cnn.experiment_gate(table)[1]).verdict == FAILED
