"""Chapter 5 experiments: data preparation, the cached/resumable sweeps, figures and the claims' logic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rankrepro.core.errors import ConfigError, DataError
from rankrepro.core.io import read_json
from rankrepro.data.image_datasets import ImageDataset
from rankrepro.experiments.base import Context, load_results
from rankrepro.experiments.ch5 import common, hessian_rank_vs_depth, hessian_rank_vs_sample_size, hessian_rank_vs_width
from rankrepro.hessian.maps import predicted_ranks_with_biases
from rankrepro.pipeline.claims import DATA_UNAVAILABLE, FAILED, NOT_SHOWN, PASSED
from rankrepro.pipeline.config import experiment_section, load_config, load_schema, validate_config
from rankrepro.pipeline.settings import FigureContext, bookkeeping_keys

ROOT = Path(__file__).resolve().parents[2]
MODULES = (hessian_rank_vs_width, hessian_rank_vs_depth, hessian_rank_vs_sample_size)

COMMON = {
    "seed": 5,
    "datasets": ["mnist"],
    "optional_datasets": [],
    "losses": ["mse", "ce"],
    "activations": ["linear", "relu"],
    "image_side": 4,
    "resize": "nearest",
    "bias": False,
    "linear_variants": [],
    "activation_max_params": {},
}
WIDTH = {**COMMON, "num_samples": 20, "hidden_layers": 2, "widths": [2, 6, 12, 24]}
DEPTH = {**COMMON, "num_samples": 12, "width": 5, "depths": [0, 1, 2]}
SAMPLES = {**COMMON, "hidden": [4], "sample_sizes": [2, 6, 12, 16, 20, 24]}


class FakeData:
    """A DataSource stand-in: random 28×28 uint8 images with labels 0…9; CIFAR-10 cannot be obtained."""

    def image_classification(self, name: str) -> ImageDataset:
        if name == "cifar-10":
            raise DataError("dataset 'cifar-10' is unavailable: offline test")
        rng = np.random.default_rng(0)
        return ImageDataset(
            name=name,
            train_images=rng.integers(0, 256, (60, 28, 28), dtype=np.uint8),
            train_labels=np.arange(60) % 10,
            test_images=np.zeros((1, 28, 28), np.uint8),
            test_labels=np.zeros(1, np.int64),
            class_names=tuple("0123456789"),
        )


CTX = Context(tier="test", device=torch.device("cpu"), threads=1, progress=False)
FIGURE = FigureContext("test")


def width(**changes) -> hessian_rank_vs_width.Settings:
    """The width sweep's test settings, typed, with ``changes``."""
    return hessian_rank_vs_width.Settings.from_mapping({**WIDTH, **changes})


def depth(**changes) -> hessian_rank_vs_depth.Settings:
    """The depth sweep's test settings, typed, with ``changes``."""
    return hessian_rank_vs_depth.Settings.from_mapping({**DEPTH, **changes})


def sample_size(**changes) -> hessian_rank_vs_sample_size.Settings:
    """The sample-size sweep's test settings, typed, with ``changes``."""
    return hessian_rank_vs_sample_size.Settings.from_mapping({**SAMPLES, **changes})


# ----------------------------------------------------------------------------------------------------- data
def test_downsampling_by_area_averages_blocks_and_nearest_samples_pixels():
    image = np.arange(64, dtype=np.uint8).reshape(1, 8, 8)
    area = common.downsample_images(image, 4, "area").reshape(4, 4) * 255
    assert area[0, 0].item() == pytest.approx((0 + 1 + 8 + 9) / 4)
    assert area[3, 3].item() == pytest.approx((54 + 55 + 62 + 63) / 4)
    nearest = common.downsample_images(image, 4, "nearest").reshape(4, 4) * 255
    assert nearest.tolist() == [[0, 2, 4, 6], [16, 18, 20, 22], [32, 34, 36, 38], [48, 50, 52, 54]]
    assert common.downsample_images(image, 4, "nearest").dtype == torch.float64


def test_colour_images_become_grey_by_the_itu_601_luma():
    rgb = np.zeros((1, 2, 2, 3), np.uint8)
    rgb[0, 0, 0] = (255, 0, 0)
    rgb[0, 1, 1] = (255, 255, 255)
    grey = common.grey_pixels(rgb)
    assert grey.shape == (1, 2, 2) and grey[0, 0, 0].item() == pytest.approx(0.299)
    assert grey[0, 1, 1].item() == pytest.approx(1.0) and grey[0, 0, 1].item() == 0.0
    assert common.downsample_images(rgb, 1, "area").item() == pytest.approx((0.299 + 1.0) / 4)


def test_first_samples_are_the_first_images_with_one_hot_labels():
    images = FakeData().image_classification("mnist")
    X, Y = common.first_samples(images, 7, 4, "nearest")
    assert X.shape == (7, 16) and Y.shape == (7, 10)
    assert Y.argmax(1).tolist() == list(range(7)) and torch.all(Y.sum(1) == 1)
    assert torch.equal(X, common.downsample_images(images.train_images[:7], 4, "nearest"))
    with pytest.raises(ValueError, match="61 samples requested"):
        common.first_samples(images, 61, 4, "nearest")


def test_the_network_of_an_architecture_is_the_same_for_every_loss_and_n():
    point = common.Point(6, (6, 6), 20)
    _, a = common.network_for(point, 16, 10, "linear", False, 5)
    _, b = common.network_for(common.Point(6, (6, 6), 40), 16, 10, "relu", False, 5)
    _, c = common.network_for(common.Point(7, (7, 7), 20), 16, 10, "linear", False, 5)
    assert torch.equal(a, b) and a.shape != c.shape


# ----------------------------------------------------------------------------------------------------- sweeps
@pytest.fixture(scope="module")
def width_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("width")
    hessian_rank_vs_width.run(width(), out, CTX, FakeData())
    return out


def test_width_sweep_writes_one_row_per_point_and_hessian(width_results):
    metrics, summary = load_results(width_results)
    assert len(metrics) == 1 * 2 * 2 * 4 * 3  # datasets × losses × activations × widths × Hessians
    assert set(metrics["kind"]) == {"loss", "outer", "functional"}
    linear = metrics[metrics["activation"] == "linear"]
    assert (linear["rank"] == linear["predicted"]).all()  # random 4×4 images: generic data, exact closed forms
    assert summary["largest"]["p"] == 24 * 24 + 24 * 26
    assert (metrics["p"] == [common.MLP((16, w, w, 10)).num_params for w in metrics["value"]]).all()


def test_a_finished_sweep_is_served_from_its_point_files(width_results, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("a cached point was recomputed")

    monkeypatch.setattr(common, "compute_point", fail)
    hessian_rank_vs_width.run(width(), width_results, CTX, FakeData())


def test_an_interrupted_sweep_recomputes_only_its_missing_points(tmp_path, monkeypatch):
    settings = depth(losses=["mse"], activations=["linear"])
    hessian_rank_vs_depth.run(settings, tmp_path, CTX, FakeData())
    before = read_json(tmp_path / "summary.json")["points"]
    (tmp_path / "batches" / "mnist_mse_linear_1.json").unlink()
    calls = []
    original = common.compute_point
    monkeypatch.setattr(common, "compute_point", lambda *a, **k: calls.append(a[4].value) or original(*a, **k))
    hessian_rank_vs_depth.run(settings, tmp_path, CTX, FakeData())
    assert calls == [1]
    after = read_json(tmp_path / "summary.json")["points"]
    strip = [{k: v for k, v in p.items() if k != "time_s"} for p in before]
    assert strip == [{k: v for k, v in p.items() if k != "time_s"} for p in after]


def test_a_point_file_from_other_settings_is_recomputed(tmp_path, monkeypatch):
    settings = {"losses": ["mse"], "activations": ["linear"], "depths": [1]}
    hessian_rank_vs_depth.run(depth(**settings), tmp_path, CTX, FakeData())
    calls = []
    original = common.compute_point
    monkeypatch.setattr(common, "compute_point", lambda *a, **k: calls.append(1) or original(*a, **k))
    hessian_rank_vs_depth.run(depth(**settings, seed=6), tmp_path, CTX, FakeData())
    assert calls == [1]


def test_width_claims_and_figure(width_results, tmp_path):
    verdicts = {c.claim_id: c.verdict for c in hessian_rank_vs_width.claims(width_results, "test")}
    assert verdicts["mnist_linear_mse_ranks_equal_formulas"] == PASSED
    assert verdicts["mnist_linear_ce_ranks_equal_formulas"] == PASSED
    # networks this small have 1.5 × formula ≥ p at every width: the estimate check could fail only from below
    estimate = hessian_rank_vs_width.claims(width_results, "test")
    estimate = next(c for c in estimate if c.claim_id == "nonlinear_rank_estimated_by_linear_formula")
    assert estimate.verdict == NOT_SHOWN and estimate.measured["left_out_one_sided"] == 8
    # r = 16, K' = 10 for MSE: the rank is affine in w from w = 10 on and the sweep reaches 24 ≥ 2·10
    assert verdicts["linear_rank_fraction_falls_with_width"] == PASSED
    paths = hessian_rank_vs_width.plot(width_results, tmp_path / "fig.png", FIGURE)
    assert {p.suffix for p in paths} == {".png", ".pdf"} and all(p.stat().st_size > 0 for p in paths)


def test_sample_size_sweep_saturates_once_the_data_rank_does(tmp_path):
    hessian_rank_vs_sample_size.run(sample_size(losses=["mse"], activations=["linear"]), tmp_path, CTX, FakeData())
    _, summary = load_results(tmp_path)
    assert [p["r"] for p in summary["points"]] == [2, 6, 12, 16, 16, 16]
    claims = {c.claim_id: c for c in hessian_rank_vs_sample_size.claims(tmp_path, "test")}
    assert claims["linear_rank_saturates_in_n"].verdict == PASSED
    assert claims["linear_rank_saturates_in_n"].measured["plateaus"]["mnist/mse/linear"]["from_n"] == 16
    assert claims["mnist_linear_mse_ranks_equal_formulas"].verdict == PASSED
    assert [c["r"] for c in summary["data"]["mnist"]] == [2, 6, 12, 16, 16, 16]


def test_an_optional_dataset_that_cannot_be_obtained_is_reported_as_unavailable(tmp_path):
    settings = {"losses": ["mse"], "activations": ["linear"], "depths": [1], "optional_datasets": ["cifar-10"]}
    hessian_rank_vs_depth.run(depth(**settings), tmp_path, CTX, FakeData())
    metrics, summary = load_results(tmp_path)
    assert set(metrics["dataset"]) == {"mnist"} and "offline test" in summary["unavailable"]["cifar-10"]
    claims = {c.claim_id: c for c in hessian_rank_vs_depth.claims(tmp_path, "test")}
    assert claims["cifar-10_ranks_equal_formulas"].verdict == DATA_UNAVAILABLE
    assert claims["mnist_linear_mse_ranks_equal_formulas"].verdict == PASSED
    paths = hessian_rank_vs_depth.plot(tmp_path, tmp_path / "fig.png", FIGURE)
    assert all(p.is_file() for p in paths)
    with pytest.raises(DataError, match="offline test"):  # a required dataset stops the run
        hessian_rank_vs_depth.run(
            depth(**{**settings, "datasets": ["cifar-10"], "optional_datasets": []}),
            tmp_path / "again",
            CTX,
            FakeData(),
        )


# ----------------------------------------------------------------------------------------------------- claims logic
def _summary_with(records: list[dict], **settings) -> dict:
    return {"settings": {**COMMON, **settings}, "points": records, "data": {"mnist": []}}


def _settings(summary: dict) -> common.HessianSweepSettings:
    """The shared sweep settings a summary of :func:`_summary_with` records, typed."""
    return common.HessianSweepSettings.from_mapping(summary["settings"])


def _record(
    value: int, rank: int, predicted: int, ranks_at: dict | None = None, r: int = 5, gap: float = 8.0, **extra
) -> dict:
    report = {
        "rank": rank,
        "tolerance": 1e-12,
        "largest": 1.0,
        "gap_log10": gap,
        "ranks_at": ranks_at or {"0.01": rank, "1": rank, "100": rank},
    }
    return {
        "dataset": "mnist",
        "loss": "mse",
        "activation": "linear",
        "value": value,
        "n": 20,
        "d": 16,
        "K": 10,
        "p": 400 + value,
        "r": r,
        "hidden": [value, value],
        "ranks": {kind: report for kind in common.KINDS},
        "predicted": {kind: predicted for kind in common.KINDS},
        "bounds": {kind: 10**6 for kind in common.KINDS},
        **extra,
    }


def test_formula_claim_fails_on_a_mismatch_at_a_well_posed_point():
    summary = _summary_with(
        [_record(4, 100, 100), _record(8, 150, 151), _record(12, 200, 200), _record(16, 250, 250)], losses=["mse"]
    )
    claim = common.formula_claims(summary, _settings(summary), "x", "5.1")[0]
    assert claim.verdict == FAILED and claim.measured["mismatches"] == 1 and "x=8" in claim.details
    assert claim.claim_id == "mnist_linear_mse_ranks_equal_formulas"


def test_formula_claim_lists_ill_defined_points_and_shows_nothing_when_most_are():
    fragile = {"0.01": 151, "1": 150, "100": 149}  # eigenvalues next to τ: the count depends on the tolerance
    few = _summary_with(
        [
            _record(4, 100, 100),
            _record(8, 150, 151, fragile),
            _record(12, 200, 200),
            _record(16, 250, 250),
            _record(20, 300, 300),
        ],
        losses=["mse"],
    )
    claim = common.formula_claims(few, _settings(few), "x", "5.1")[0]
    assert claim.verdict == PASSED and claim.measured["ill_posed_points"] == 1
    assert claim.measured["mismatches_at_ill_posed_points"] == 1 and "ill-defined" in claim.details
    assert claim.measured["ill_defined_points_with_formula_within_tolerance_range"] == 1
    many = _summary_with([_record(4, 100, 100, fragile), _record(8, 150, 151, fragile)], losses=["mse"])
    assert common.formula_claims(many, _settings(many), "x", "5.1")[0].verdict == NOT_SHOWN


def _exact(rank: int, predicted: int, r: int = 5, **extra) -> dict:
    """An exact-rank record (:func:`common.exact_measurement`) with the same rank and closed form for every map."""
    found = {kind: {"rank": rank, "per_modulus": [rank, rank], "columns": rank + 32} for kind in common.KINDS}
    return {"ranks": found, "r": r, "predicted": {kind: predicted for kind in common.KINDS}, **extra}


def test_exact_ranks_decide_the_points_whose_float64_rank_is_ill_defined():
    """Ill-defined in float64 but exact over Q: the point is settled and checked against the closed form at the exact
    data rank — a pass when they agree, a failure when they do not (the exact rank can contradict the formula)."""
    fragile = {"0.01": 151, "1": 150, "100": 149}
    agree = [_record(w, 150, 151, fragile, exact=_exact(151, 151)) for w in (4, 8, 12)] + [_record(16, 250, 250)]
    summary = _summary_with(agree, losses=["mse"])
    claim = common.formula_claims(summary, _settings(summary), "x", "5.1")[0]
    assert claim.verdict == PASSED and claim.measured["exact_rank_points"] == 3
    assert claim.measured["ill_posed_points"] == 0 and "exact ranks over Q" in claim.details
    table = common.point_table(summary)
    row = next(table.itertuples())
    assert common.settled_rank(row, "loss") == (151, 151) and common.is_settled(row) and not common.is_well_posed(row)
    wrong = [*agree[:2], _record(12, 150, 151, fragile, exact=_exact(152, 151)), agree[3]]
    summary = _summary_with(wrong, losses=["mse"])
    claim = common.formula_claims(summary, _settings(summary), "x", "5.1")[0]
    assert claim.verdict == FAILED and "x=12: loss 152 vs 151 (exact)" in claim.details
    # the closed form is the one at the data's exact rank
    shifted = [_record(w, 150, 151, fragile, exact=_exact(160, 160, r=6)) for w in (4, 8, 12)]
    summary = _summary_with(shifted, losses=["mse"])
    assert common.formula_claims(summary, _settings(summary), "x", "5.1")[0].verdict == PASSED


def test_exact_outer_rank_decides_the_bias_claim_at_ill_defined_points():
    variants = [{"near_null_fraction": 0.0, "bias": True}]
    fragile = {"0.01": 61, "1": 59, "100": 59}
    with_biases = {kind: 60 for kind in common.KINDS}
    exact_found = _exact(60, 50, predicted_with_biases={**with_biases, "augmented_data_rank": 6})
    records = [{**_biased_record(w, 59, 60, fragile), "exact": exact_found} for w in (4, 8, 12, 16)]
    summary = _summary_with(records, losses=["mse"], linear_variants=variants)
    for claim in common.bias_formula_claims(summary, _settings(summary), "x", "5.1"):
        assert claim.verdict == PASSED and claim.measured["exact_rank_points"] == 4


def test_formula_claims_do_not_apply_to_networks_with_biases():
    summary = _summary_with([_record(4, 100, 100)], losses=["mse"], bias=True)
    claim = common.formula_claims(summary, _settings(summary), "x", "5.1")[0]
    assert claim.verdict == NOT_SHOWN and "bias-free" in claim.details


def test_estimate_claim_passes_within_the_tolerance_and_fails_outside_it():
    # rank/formula 1.5 and 0.5 are the edges of ±0.5: inside; 0.49 is outside
    inside = [_record(w, rank, 100, activation="relu") for w, rank in ((4, 150), (8, 50), (12, 100), (16, 120))]
    summary = _summary_with(inside)
    claim = common.estimate_claim(summary, _settings(summary), "x", "5.1")
    assert claim.verdict == PASSED and claim.measured["points_checked"] == 4
    assert claim.measured["ranges"]["relu/mse"]["loss_over_formula"] == [0.5, 1.5]
    outside = [*inside, _record(20, 49, 100, activation="relu")]
    summary = _summary_with(outside)
    claim = common.estimate_claim(summary, _settings(summary), "x", "5.1")
    assert claim.verdict == FAILED and claim.measured["outside"] == 1 and "x=20: 49/100 = 0.49" in claim.details


def test_estimate_claim_leaves_out_points_where_it_could_fail_only_from_below():
    """Every rank is ≤ p, so where 1.5 × formula ≥ p no rank above the formula can leave the band: such a point is
    left out before any rank is read (a claim of those points alone is not shown), and a two-sided point still fails
    a rank 3 × its formula."""
    one_sided = [_record(w, 400 + w, 300, activation="relu") for w in (4, 8)]  # p = 404, 408 ≤ 450
    summary = _summary_with(one_sided)
    claim = common.estimate_claim(summary, _settings(summary), "x", "5.1")
    assert claim.verdict == NOT_SHOWN and claim.measured["left_out_one_sided"] == 2
    assert "2 point(s) left out" in claim.details
    two_sided = [_record(w, 300, 100, activation="relu") for w in (12, 16)]  # 150 < p = 412, 416; ratio 3
    summary = _summary_with(one_sided + two_sided)
    claim = common.estimate_claim(summary, _settings(summary), "x", "5.1")
    assert claim.verdict == FAILED and claim.measured["points_checked"] == 2
    assert claim.measured["left_out_one_sided"] == 2
    row = next(common.point_table(summary).itertuples())
    assert not common.estimate_can_fail_both_ways(row) and not common.estimate_can_fail_both_ways(row._replace(p=450))
    assert common.estimate_can_fail_both_ways(row._replace(p=451))


def test_estimate_claim_is_not_shown_where_its_check_depends_on_the_tolerance():
    straddling = {"0.01": 151, "1": 150, "100": 149}  # 1.51 outside ±0.5, 1.5 and 1.49 inside: undecided
    # 2 of 4 points undecided (> 25 %): the sweep does not count, though its other ranks are far from the formula
    records = [
        _record(w, 150, 100, straddling, activation="relu") if w < 12 else _record(w, 300, 100, activation="relu")
        for w in (4, 8, 12, 16)
    ]
    summary = _summary_with(records)
    claim = common.estimate_claim(summary, _settings(summary), "x", "5.1")
    assert claim.verdict == NOT_SHOWN and "NOT met" in claim.details and "2/4" in claim.details
    # a rank that moves with the tolerance but stays on one side of the ±0.5 edges decides the check
    moving = {"0.01": 101, "1": 100, "100": 95}
    summary = _summary_with([_record(w, 100, 100, moving, activation="relu") for w in (4, 8)])
    assert common.estimate_claim(summary, _settings(summary), "x", "5.1").verdict == PASSED
    linear_only = _summary_with([_record(4, 1, 1)])
    assert common.estimate_claim(linear_only, _settings(linear_only), "x", "5.1").verdict == NOT_SHOWN
    with_biases = _summary_with([_record(4, 300, 100, activation="relu")], bias=True)
    assert common.estimate_claim(with_biases, _settings(with_biases), "x", "5.1").verdict == NOT_SHOWN


def test_one_ill_defined_point_in_four_keeps_a_sweep_decidable_at_its_well_defined_points():
    fragile = {"0.01": 151, "1": 150, "100": 149}
    rows = common.point_table(
        _summary_with([_record(w, 100, 100, fragile if w == 4 else None) for w in (4, 8, 12, 16)])
    )
    kept, gate = common.decidable_sweeps(rows, "test")
    assert gate.holds and list(kept) == [("main", "mnist", "mse", "linear")]
    assert kept[("main", "mnist", "mse", "linear")]["value"].tolist() == [8, 12, 16]
    rows = common.point_table(_summary_with([_record(w, 100, 100, fragile if w < 12 else None) for w in (4, 8, 12)]))
    kept, gate = common.decidable_sweeps(rows, "test")
    assert not gate.holds and kept == {} and "1/3" in gate.measured


def test_a_variant_s_formula_claims_carry_its_name_and_the_bias_variant_makes_none():
    variants = [{"near_null_fraction": 0.01, "bias": False}, {"near_null_fraction": 0.0, "bias": True}]
    records = [_record(4, 100, 100), _record(4, 100, 101, variant="near_null_0.01"), _record(4, 90, 80, variant="bias")]
    summary = _summary_with(records, losses=["mse"], linear_variants=variants)
    claims = {c.claim_id: c for c in common.formula_claims(summary, _settings(summary), "x", "5.1")}
    assert set(claims) == {
        "mnist_linear_mse_ranks_equal_formulas",
        "mnist_linear_mse_ranks_equal_formulas_near_null_0.01",
    }
    assert claims["mnist_linear_mse_ranks_equal_formulas"].verdict == PASSED
    variant = claims["mnist_linear_mse_ranks_equal_formulas_near_null_0.01"]
    assert variant.verdict == FAILED and "0.01·σ1" in variant.statement


def test_removing_near_null_directions_keeps_exactly_the_directions_above_the_fraction():
    u, _ = torch.linalg.qr(torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    v, _ = torch.linalg.qr(torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    X = u @ torch.diag(torch.tensor([1.0, 0.5, 0.02, 1e-5], dtype=torch.float64)) @ v.T
    kept = common.remove_near_null_directions(X, 0.01)
    expected = u[:, :3] @ torch.diag(torch.tensor([1.0, 0.5, 0.02], dtype=torch.float64)) @ v[:, :3].T
    assert torch.allclose(kept, expected, atol=1e-14)
    assert hessian_data_rank(X) == 4 and hessian_data_rank(kept) == 3
    assert hessian_data_rank(common.remove_near_null_directions(X, 0.6)) == 1
    assert common.remove_near_null_directions(X, 0.0) is X


def hessian_data_rank(X: torch.Tensor) -> int:
    from rankrepro.hessian.maps import data_rank  # noqa: PLC0415

    return data_rank(X)


def test_linear_variants_run_the_linear_networks_again_on_their_data(tmp_path):
    variants = [{"near_null_fraction": 0.05, "bias": False}, {"near_null_fraction": 0.0, "bias": True}]
    settings = depth(losses=["mse"], depths=[1, 2], linear_variants=variants)
    assert [v.name for v in settings.linear_variants] == ["near_null_0.05", "bias"]
    hessian_rank_vs_depth.run(settings, tmp_path, CTX, FakeData())
    metrics, summary = load_results(tmp_path)
    assert sorted(set(zip(metrics["variant"], metrics["activation"]))) == [
        ("bias", "linear"),
        ("main", "linear"),
        ("main", "relu"),
        ("near_null_0.05", "linear"),
    ]
    assert (tmp_path / "batches" / "mnist_mse_linear_1_near_null_0.05.json").is_file()
    X, _ = common.first_samples(FakeData().image_classification("mnist"), 12, 4, "nearest")
    sigma = torch.linalg.svdvals(X)
    kept_rank = int((sigma >= 0.05 * sigma[0]).sum())
    projected = [p for p in summary["points"] if p["variant"] == "near_null_0.05"]
    assert {p["r"] for p in projected} == {kept_rank} and kept_rank < 12
    assert summary["variants"]["near_null_0.05"]["data"]["mnist"][0]["r"] == kept_rank
    assert set(summary["variant_time_s"]) == {"main", "near_null_0.05", "bias"}
    bias = summary["bias_against_formula"]["mnist/mse/bias"]
    assert bias["points"] == 2 and len(bias["outer_minus_formula"]) == 2
    biased = [p for p in summary["points"] if p["variant"] == "bias"]
    assert all(p["p"] == common.MLP((16, *p["hidden"], 10), bias=True).num_params for p in biased)
    claims = {c.claim_id: c.verdict for c in hessian_rank_vs_depth.claims(tmp_path, "test")}
    assert claims["mnist_linear_mse_ranks_equal_formulas_near_null_0.05"] == PASSED
    # the bias variant makes no bias-free formula claim, only the claims against the formulas with biases
    assert [c for c in claims if c.endswith("_bias")] == [
        "mnist_linear_mse_outer_rank_equals_bias_formula_bias",
        "mnist_linear_mse_functional_and_loss_ranks_equal_bias_formulas_bias",
    ]
    assert all(p["predicted_with_biases"]["augmented_data_rank"] in (p["r"], p["r"] + 1) for p in biased)
    paths = hessian_rank_vs_depth.plot(tmp_path, tmp_path / "fig.png", FIGURE)
    assert all(p.is_file() for p in paths)


def test_an_activation_cap_skips_only_that_activation_s_larger_networks_and_keeps_the_other_points(tmp_path):
    """Depths 0, 1, 2 of width 5 on 4 × 4 inputs have p = d·K = 160, d·w + w·K = 130 and 130 + w² = 155: a ReLU cap
    of 150 drops ReLU's depth-0 and depth-2 networks alone; the cap is no part of a point's fingerprint, so the
    capped run is served from the uncapped run's point files, value for value."""
    assert [common.network_size(p, 16, 10, False) for p in hessian_rank_vs_depth.points(depth())] == [160, 130, 155]
    assert common.network_size(common.Point(1, (5,), 12), 16, 10, True) == 130 + 15
    hessian_rank_vs_depth.run(depth(losses=["mse"]), tmp_path, CTX, FakeData())
    full, _ = load_results(tmp_path)
    written = {f.name: f.stat().st_mtime_ns for f in (tmp_path / "batches").iterdir()}
    capped = depth(losses=["mse"], activation_max_params={"relu": 150})
    assert capped.computes("relu", 150) and not capped.computes("relu", 151) and capped.computes("linear", 10**6)
    hessian_rank_vs_depth.run(capped, tmp_path, CTX, FakeData())
    metrics, _ = load_results(tmp_path)
    values = metrics[metrics["kind"] == "loss"].groupby("activation")["value"].apply(sorted).to_dict()
    assert values == {"linear": [0, 1, 2], "relu": [1]}
    kept = full[(full["activation"] != "relu") | (full["value"] == 1)].reset_index(drop=True)
    assert kept.equals(metrics)
    assert written == {f.name: f.stat().st_mtime_ns for f in (tmp_path / "batches").iterdir()}
    assert "relu networks only up to p = 150" in common.size_cut_details(capped)
    assert common.size_cut_details(depth()) == ""


def test_a_first_hidden_width_variant_narrows_the_first_layer_and_keeps_other_fingerprints():
    plain = common.LinearVariant.from_mapping({"near_null_fraction": 0.0, "bias": True})
    narrow = common.LinearVariant.from_mapping({"near_null_fraction": 0.0, "bias": True, "first_hidden_width": 3})
    assert (plain.name, narrow.name) == ("bias", "bias_first_3")
    assert plain.fingerprinted() == {"near_null_fraction": 0.0, "bias": True}  # the fingerprints it had before
    assert narrow.fingerprinted() == {"near_null_fraction": 0.0, "bias": True, "first_hidden_width": 3}
    point = common.Point(12, (12, 12), 20)
    assert plain.network_point(point) == point
    assert narrow.network_point(point) == common.Point(12, (3, 12), 20)
    with pytest.raises(ConfigError, match="no hidden layer"):
        narrow.network_point(common.Point(0, (), 20))
    assert "first hidden layer of width 3" in narrow.text() and "M1=3" in narrow.short()


def test_a_bottleneck_below_exercises_the_wide_branch_of_the_bias_formula(tmp_path):
    """Hidden (2, w) with biases: the bias of layer 2 sits above the narrowest layer, so the closed form adds
    2 w − q to rank H_F (not q); the exact ranks of the run must agree at every point, and they do only with that
    branch — the claim would fail under 'e_l = q always' from w = 6 on."""
    variants = [{"near_null_fraction": 0.0, "bias": True, "first_hidden_width": 2}]
    settings = width(losses=["mse"], activations=["linear"], widths=[2, 6, 12], linear_variants=variants)
    hessian_rank_vs_width.run(settings, tmp_path, CTX, FakeData())
    _, summary = load_results(tmp_path)
    narrowed = [p for p in summary["points"] if p["variant"] == "bias_first_2"]
    assert [p["hidden"] for p in narrowed] == [[2, 2], [2, 6], [2, 12]]
    assert summary["variants"]["bias_first_2"]["first_hidden_width"] == 2
    q = 2  # min(r̂, K', 2, w)
    bias_free = [
        common.predicted_ranks(p["predicted_with_biases"]["augmented_data_rank"], p["hidden"], 10, "mse")["functional"]
        for p in narrowed
    ]
    assert [p["predicted_with_biases"]["functional"] - f for p, f in zip(narrowed, bias_free)] == [
        2 * w - q for w in (2, 6, 12)
    ]
    claims = {c.claim_id: c for c in hessian_rank_vs_width.claims(tmp_path, "test")}
    verdict = claims["mnist_linear_mse_functional_and_loss_ranks_equal_bias_formulas_bias_first_2"]
    assert verdict.verdict == PASSED and verdict.measured["points_checked"] == 3


def test_bias_against_formula_reports_rank_minus_the_bias_free_formula():
    records = [
        {**_record(4, 110, 100), "variant": "bias"},
        {**_record(8, 95, 100, {"0.01": 96, "1": 95, "100": 95}), "variant": "bias"},
        {**_record(8, 1, 1), "variant": "main"},
    ]
    described = common.bias_against_formula(records, {"bias"})
    assert described == {
        "mnist/mse/bias": {
            "points": 2,
            "well_defined": 1,
            "loss_minus_formula": [-5, 10],
            "outer_minus_formula": [-5, 10],
            "functional_minus_formula": [-5, 10],
        }
    }


def test_saturation_claim_fails_when_the_rank_moves_on_the_plateau():
    records = [
        _record(n, rank, rank, r=r) for n, rank, r in ((2, 10, 2), (4, 20, 4), (6, 30, 5), (8, 30, 5), (10, 31, 5))
    ]
    summary = _summary_with(records, losses=["mse"])
    claim = hessian_rank_vs_sample_size.saturation_claim(summary, _settings(summary))
    assert claim.verdict == FAILED and "[30, 31]" in claim.details
    short = _summary_with(records[:4], losses=["mse"])
    assert hessian_rank_vs_sample_size.saturation_claim(short, _settings(short)).verdict == NOT_SHOWN
    # the moving rank sits at a point without a spectral gap: ill-defined (1 of 6 points), left out
    records.append(_record(12, 30, 30, r=5))
    records[4] = _record(10, 31, 30, {"0.01": 32, "1": 31, "100": 30}, r=5)
    fixed = _summary_with(records, losses=["mse"])
    assert hessian_rank_vs_sample_size.saturation_claim(fixed, _settings(fixed)).verdict == PASSED


def test_fraction_claim_is_not_shown_below_twice_the_bottleneck_width():
    records = [_record(w, 40 * w, 40 * w, r=16) for w in (2, 4, 6, 8, 10, 12, 14, 16)]
    summary = _summary_with(records, losses=["mse"])
    assert hessian_rank_vs_width.fraction_claim(summary, _settings(summary)).verdict == NOT_SHOWN
    # r = 16, K' = 10: affine from w = 10, shown to w = 20; a rising rank/p fails
    rising = [_record(w, w * w, w * w, r=16, p=100 * w) for w in (10, 14, 20)]
    summary = _summary_with(rising, losses=["mse"])
    claim = hessian_rank_vs_width.fraction_claim(summary, _settings(summary))
    assert claim.verdict == FAILED and "mnist/mse/linear" in claim.details
    falling = [_record(w, 40 * w, 40 * w, r=16, p=w * w) for w in (10, 14, 20)]
    summary = _summary_with(falling, losses=["mse"])
    assert hessian_rank_vs_width.fraction_claim(summary, _settings(summary)).verdict == PASSED


# ----------------------------------------------------------------------------------------------------- config
def test_bad_chapter5_settings_are_config_errors_naming_the_key():
    config = {"tier": "t", "experiments": {"hessian_rank_vs_width": {**WIDTH, "losses": ["hinge"]}}}
    with pytest.raises(ConfigError, match="experiments.hessian_rank_vs_width.losses.0"):
        validate_config(config)
    config["experiments"]["hessian_rank_vs_width"] = {k: v for k, v in WIDTH.items() if k != "widths"}
    with pytest.raises(ConfigError, match="'widths' is a required property"):
        validate_config(config)
    config["experiments"]["hessian_rank_vs_width"] = {**WIDTH, "activation_max_params": {"sigmoid": 100}}
    with pytest.raises(ConfigError, match="activation_max_params"):
        validate_config(config)


def test_shared_defaults_are_filled_in_from_the_common_block():
    minimal = {"seed": 1, "image_side": 4, "num_samples": 10, "widths": [2]}
    settings = validate_config({"tier": "t", "experiments": {"hessian_rank_vs_width": minimal}})
    filled = settings["experiments"]["hessian_rank_vs_width"]
    assert filled["losses"] == ["mse", "ce", "logcosh"] and filled["resize"] == "nearest"
    assert filled["bias"] is False and filled["hidden_layers"] == 2 and filled["optional_datasets"] == []


@pytest.mark.parametrize("tier", ["smoke.yaml", "config.yaml", "paper.yaml"])
@pytest.mark.parametrize("module", MODULES, ids=lambda module: module.NAME)
def test_settings_are_built_from_every_tier_and_record_its_section_unchanged(module, tier):
    section = experiment_section(load_config(ROOT / "config" / tier), module.NAME)
    settings = module.Settings.from_mapping(section, f"experiments.{module.NAME}")
    assert settings.record() == section
    assert isinstance(settings.losses, tuple) and isinstance(settings.bias, bool) and settings.seed == section["seed"]
    assert common.computed_datasets(settings, dict.fromkeys(section["datasets"])) == section["datasets"]


def test_settings_refuse_a_value_their_type_does_not_admit():
    with pytest.raises(ConfigError, match="resize"):
        width(resize="bicubic")
    with pytest.raises(ConfigError, match="widths.1"):
        width(widths=[2, 2.5])
    assert width().widths == (2, 6, 12, 24) and sample_size().hidden == (4,)


def _figure(module, tier: str) -> tuple[FigureContext, dict]:
    """The figure context of ``module`` against config/paper.yaml (as ``rankrepro plot`` builds it) and the
    experiment's section of config/``tier``."""
    paper = experiment_section(load_config(ROOT / "config" / "paper.yaml"), module.NAME)
    figure = FigureContext(tier, paper, bookkeeping_keys(load_schema(), module.NAME))
    return figure, experiment_section(load_config(ROOT / "config" / f"{tier}.yaml"), module.NAME)


@pytest.mark.parametrize("module", MODULES, ids=lambda module: module.NAME)
def test_the_caption_names_how_the_smoke_tier_departs_from_the_paper_tier(module):
    figure, smoke = _figure(module, "smoke")
    text = common.substitutions({"settings": smoke, "unavailable": {}}, figure)
    assert text.startswith("settings departing from the paper tier: ")
    assert "activations [linear, relu] (paper: [linear, relu, tanh])" in text
    assert "optional_datasets [] (paper: [cifar-10])" in text
    assert "seed" not in text and "resize" not in text  # the same in both tiers


@pytest.mark.parametrize("module", MODULES, ids=lambda module: module.NAME)
def test_the_paper_tier_caption_has_no_substitutions_unless_a_dataset_was_unavailable(module):
    figure, paper = _figure(module, "paper")
    assert common.substitutions({"settings": paper, "unavailable": {}}, figure) == "none"
    missing = common.substitutions({"settings": paper, "unavailable": {"cifar-10": "offline"}}, figure)
    assert missing == "CIFAR-10 (grey) unavailable here (data-unavailable in the scorecard)"


def _biased_record(
    value: int, rank: int, formula: int, ranks_at: dict | None = None, functional: int | None = None
) -> dict:
    """A linear point with biases whose every map has rank ``rank``, the formulas with biases ``formula`` (10 above
    the bias-free ones; H_F's ``functional`` when given)."""
    record = _record(value, rank, formula - 10, ranks_at, variant="bias")
    biased = {"outer": formula, "loss": formula, "functional": formula if functional is None else functional}
    return {**record, "predicted_with_biases": {**biased, "augmented_data_rank": 6}}


def test_bias_formula_claim_passes_on_equality_and_fails_on_a_mismatch_at_a_well_defined_h_o():
    variants = [{"near_null_fraction": 0.0, "bias": True}]
    equal = [_biased_record(w, 60, 60) for w in (4, 8, 12, 16)]
    summary = _summary_with(equal, losses=["mse"], linear_variants=variants)
    outer, rest = common.bias_formula_claims(summary, _settings(summary), "x", "5.1")
    assert outer.claim_id == "mnist_linear_mse_outer_rank_equals_bias_formula_bias" and outer.verdict == PASSED
    assert outer.measured["points_checked"] == 4 and outer.measured["formula_minus_bias_free_formula"] == [10]
    assert rest.claim_id == "mnist_linear_mse_functional_and_loss_ranks_equal_bias_formulas_bias"
    assert rest.verdict == PASSED
    assert rest.measured["formula_minus_bias_free_formula"] == {"functional": [10], "loss": [10]}
    summary = _summary_with([*equal[:3], _biased_record(16, 59, 60)], losses=["mse"], linear_variants=variants)
    outer, rest = common.bias_formula_claims(summary, _settings(summary), "x", "5.1")
    assert outer.verdict == FAILED and "x=16 H_O: 59 vs 60" in outer.details
    assert rest.verdict == FAILED and "x=16 H_F: 59 vs 60" in rest.details and "x=16 H_L: 59 vs 60" in rest.details
    # an ill-defined H_O (its rank moves between τ/100 and 100τ) decides nothing; two of four: the sweep does not count
    fragile = {"0.01": 61, "1": 59, "100": 59}
    records = [*equal[:2], _biased_record(12, 59, 60, fragile), _biased_record(16, 59, 60, fragile)]
    summary = _summary_with(records, losses=["mse"], linear_variants=variants)
    outer, rest = common.bias_formula_claims(summary, _settings(summary), "x", "5.1")
    assert outer.verdict == NOT_SHOWN and rest.verdict == NOT_SHOWN
    # a tier without biased networks makes no such claim
    summary = _summary_with(equal, losses=["mse"])
    assert common.bias_formula_claims(summary, _settings(summary), "x", "5.1") == []


def test_the_functional_bias_claim_fails_alone_when_only_h_f_misses_its_formula():
    variants = [{"near_null_fraction": 0.0, "bias": True}]
    records = [_biased_record(w, 60, 60, functional=61 if w == 8 else 60) for w in (4, 8, 12, 16)]
    summary = _summary_with(records, losses=["mse"], linear_variants=variants)
    outer, rest = common.bias_formula_claims(summary, _settings(summary), "x", "5.1")
    assert outer.verdict == PASSED
    assert rest.verdict == FAILED and rest.measured["mismatches"] == 1 and "x=8 H_F: 60 vs 61" in rest.details


def test_biased_predictions_are_the_closed_forms_with_biases_at_the_augmented_rank():
    X = torch.tensor([[1.0, 2.0], [2.0, 4.0], [0.0, 1.0], [3.0, 1.0]])  # rank 2; [X 1] rank 3
    got = common.biased_predictions(X, 2, (3, 3), 4, "mse")
    assert got["augmented_data_rank"] == 3
    assert {k: got[k] for k in common.KINDS} == predicted_ranks_with_biases(2, 3, (3, 3), 4, "mse")


def test_each_nonlinear_activation_gets_its_own_estimate_claim_and_relu_keeps_its_id():
    records = [_record(4, 150, 100, activation="relu"), _record(4, 170, 100, activation="tanh")]
    summary = _summary_with(records, activations=["linear", "relu", "tanh"])
    claims = {c.claim_id: c for c in common.estimate_claims(summary, _settings(summary), "x", "5.1")}
    assert claims["nonlinear_rank_estimated_by_linear_formula"].verdict == PASSED
    assert claims["nonlinear_rank_estimated_by_linear_formula"].statement.startswith("ReLU networks")
    tanh = claims["tanh_rank_estimated_by_linear_formula"]
    assert tanh.verdict == FAILED and "1.70" in tanh.details and tanh.statement.startswith("tanh networks")
