"""§2.1 appendix variants: settings from every tier, one batched training per variant and init seed, §2.1's claims
per variant decided at every seed under §2.1's gate read on that variant's runs, the keyed caption substitutions."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from rankrepro.core.errors import ConfigError
from rankrepro.core.io import atomic_write_sealed_json, read_json
from rankrepro.experiments.base import Context, load_results
from rankrepro.experiments.ch2 import tf_component_norms_appendix as appendix
from rankrepro.experiments.ch2.common import ComponentDynamicsSettings, at_every_seed
from rankrepro.pipeline.claims import DATA_UNAVAILABLE, FAILED, NOT_SHOWN, PASSED, ClaimResult
from rankrepro.pipeline.config import experiment_section, load_config, load_schema
from rankrepro.pipeline.settings import FigureContext, bookkeeping_keys

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
TIERS = ("smoke.yaml", "config.yaml", "paper.yaml")

VARIANT = {
    "measurement": "completion",
    "optimizer": "group_rmsprop",
    "lr": 1e-3,
    "order": 3,
    "dim": 10,
    "target_rank": 3,
    "n_observed": 500,
    "components": 100,
    "init_scales": [1e-2, 1e-3],
    "max_iters": 9000,
}
SECTION = {
    "data_seed": 1,
    "seed": 2,
    "num_seeds": 2,
    "huber_threshold": 1.0,
    "loss_threshold": 1e-8,
    "stop_patience": 50,
    "check_every": 5,
    "log_every": 5,
    "checkpoint_every": 0,
    "top_k": 10,
    "method": "auto",
    "variants": [{**VARIANT, "name": "l2_rms", "loss": "l2"}, {**VARIANT, "name": "huber_rms", "loss": "huber"}],
}


def Settings(mapping):
    return appendix.Settings.from_mapping(mapping, f"experiments.{appendix.NAME}")


def _run(settings, out):
    previous = torch.get_default_dtype()  # a module fixture runs outside conftest's per-test dtype guard
    torch.set_default_dtype(torch.float64)
    try:
        appendix.run(settings, out, Context(tier="test", device=torch.device("cpu"), progress=False))
    finally:
        torch.set_default_dtype(previous)
    return out


@pytest.fixture(scope="module")
def two_variants(tmp_path_factory):
    """ℓ2 and Huber with GroupRMSprop at the spec's tiny scale (order 3, rank 3, R = 100), init seeds 2 and 3: a few
    seconds."""
    return _run(Settings(SECTION), tmp_path_factory.mktemp("appendix") / appendix.NAME)


@pytest.mark.parametrize("tier", TIERS)
def test_settings_build_from_every_tier_and_record_the_section(tier):
    config = load_config(CONFIG_DIR / tier)
    section = experiment_section(config, appendix.NAME)
    settings = appendix.Settings.from_mapping(section, f"experiments.{appendix.NAME}")
    assert settings.record() == section
    losses = {v.loss for v in settings.variants}
    optimizers = {v.optimizer for v in settings.variants}
    assert losses == {"l2", "l1", "huber"} and optimizers == {"group_rmsprop", "gd", "adam"}
    appendix.check_variants(settings)
    assert settings.init_seeds == tuple(range(settings.seed, settings.seed + settings.num_seeds))
    for variant in settings.variants:
        problem = settings.variant_settings(variant)
        assert isinstance(problem, ComponentDynamicsSettings)
        assert (problem.order, problem.lr, problem.optimizer, problem.max_iters) == (
            variant.order,
            variant.lr,
            variant.optimizer,
            variant.max_iters,
        )
        assert problem.loss_threshold == settings.loss_threshold and problem.init_seeds == settings.init_seeds


def test_the_default_tier_runs_completion_and_sensing_and_the_paper_tier_adds_order_four():
    default = Settings(experiment_section(load_config(CONFIG_DIR / "config.yaml"), appendix.NAME))
    paper = Settings(experiment_section(load_config(CONFIG_DIR / "paper.yaml"), appendix.NAME))
    for tier in (default, paper):
        for measurement in ("completion", "sensing"):
            assert {(v.loss, v.optimizer) for v in tier.variants if v.measurement == measurement} == {
                ("l2", "group_rmsprop"),
                ("huber", "group_rmsprop"),
                ("l1", "group_rmsprop"),
                ("l2", "gd"),
                ("l2", "adam"),
            }
    assert {(v.order, v.target_rank) for v in default.variants} == {(3, 3)}
    assert {(v.order, v.target_rank) for v in paper.variants} == {(3, 3), (4, 5)}
    assert {v.name for v in default.variants} < {v.name for v in paper.variants}


def test_repeated_names_and_bad_variants_name_the_key():
    twice = {**SECTION, "variants": [SECTION["variants"][0], SECTION["variants"][0]]}
    with pytest.raises(ConfigError, match="repeated variant name"):
        appendix.check_variants(Settings(twice))
    too_many = {**SECTION, "variants": [{**SECTION["variants"][0], "n_observed": 2000}]}
    with pytest.raises(ConfigError, match=r"variants\.0\.n_observed"):
        appendix.check_variants(Settings(too_many))
    with pytest.raises(ConfigError, match="not one of"):
        Settings({**SECTION, "variants": [{**SECTION["variants"][0], "optimizer": "sgd"}]})


def test_each_variant_shows_the_section_claims_and_huber_logs_its_loss(two_variants):
    claims = {c.claim_id: c for c in appendix.claims(two_variants, "test")}
    expected = {
        f"{v}_{c}"
        for v in ("l2_rms", "huber_rms")
        for c in ("emergence_separated", "next_norm_small", "error_ordered_by_init", "learned_rank_equals_true_rank")
    }
    assert set(claims) == expected
    assert {c.verdict for c in claims.values()} == {PASSED}, claims
    assert claims["huber_rms_emergence_separated"].statement.startswith(
        "[Huber loss, GroupRMSprop lr 1e-03; order 3, dim 10, rank 3, R = 100, completion] at every one of 2 init "
        "seeds (2–3) — smallest init:"
    )
    assert all(c.measured["seeds_holding"] == "2 of 2" for c in claims.values())
    for claim_id, claim in claims.items():  # each variant's claims under the gate read on its own runs, every seed
        own, other = ("huber_rms", "l2_rms") if claim_id.startswith("huber_rms") else ("l2_rms", "huber_rms")
        assert all(f"{own} seed {s}, init 1e-03: converged" in claim.details for s in (2, 3))
        assert f"{other} seed" not in claim.details
    metrics, summary = load_results(two_variants)
    assert [v["variant"] for v in summary["variants"]] == ["l2_rms", "huber_rms"]
    assert sorted(set(metrics["seed"])) == [2, 3]
    for variant in summary["variants"]:  # one batched program per variant: each seed's own init direction
        assert [r["seed"] for r in variant["runs"]] == [2, 2, 3, 3]
        assert variant["iterations_executed"] == max(r["iterations"] for r in variant["runs"])
        errors = {r["seed"]: r["min_reconstruction_error"] for r in variant["runs"] if r["init_scale"] == 1e-2}
        assert errors[2] != errors[3]
    huber = metrics[(metrics["variant"] == "huber_rms") & ~metrics["final"].astype(bool)]
    # residuals ≪ the threshold 1: the Huber loss is half the MSE
    assert torch.allclose(
        torch.tensor(huber["train_loss"].to_numpy()), 0.5 * torch.tensor(huber["loss"].to_numpy()), rtol=1e-9
    )
    assert metrics.loc[metrics["variant"] == "l2_rms", "train_loss"].isna().all()


def _altered(results, tmp_path, name, change):
    summary = read_json(results / "summary.json")
    change(summary["variants"])
    altered = tmp_path / name
    shutil.copytree(results, altered)
    atomic_write_sealed_json(altered / "summary.json", summary)
    return {c.claim_id: c for c in appendix.claims(altered, "test")}


def test_a_variant_that_does_not_reproduce_fails_with_an_explanation(two_variants, tmp_path):
    def change(variants):  # only seed 3's smallest init learns a higher rank
        smallest = min((r for r in variants[1]["runs"] if r["seed"] == 3), key=lambda r: r["init_scale"])
        smallest["learned_components"] = 10

    claims = _altered(two_variants, tmp_path, "higher_rank", change)
    failed = claims["huber_rms_learned_rank_equals_true_rank"]
    assert failed.verdict == FAILED and failed.details.startswith("seed 3: 10 components above 5% of the largest")
    assert "seed 2:" not in failed.details and failed.measured["seeds_holding"] == "1 of 2"
    assert failed.measured["per_seed"]["3"]["learned_components"] == 10
    assert claims["l2_rms_learned_rank_equals_true_rank"].verdict == PASSED


def test_one_capped_run_hides_every_claim_of_its_variant_and_no_other(two_variants, tmp_path):
    def change(variants):  # one run of one seed
        variants[0]["runs"][-1]["status"] = "max_iters"

    claims = _altered(two_variants, tmp_path, "capped", change)
    capped = [c for claim_id, c in claims.items() if claim_id.startswith("l2_rms_")]
    others = [c for claim_id, c in claims.items() if claim_id.startswith("huber_rms_")]
    assert len(capped) == len(others) == 4
    assert {c.verdict for c in capped} == {NOT_SHOWN}
    assert all("NOT met" in c.details and "l2_rms seed 3, init 1e-03: max_iters" in c.details for c in capped)
    assert {c.verdict for c in others} == {PASSED} and all("— met" in c.details for c in others)


def test_figure_and_caption_name_departures_per_variant(two_variants, tmp_path):
    paper = experiment_section(load_config(CONFIG_DIR / "paper.yaml"), appendix.NAME)
    paper = {**paper, "variants": [{**paper["variants"][0], "name": "l2_rms"}, *paper["variants"][1:]]}
    figure = FigureContext("test", paper, bookkeeping_keys(load_schema(), appendix.NAME))
    keyed, notes = appendix.by_variant_name(read_json(two_variants / "summary.json")["settings"], figure)
    text = keyed.substitutions()
    assert "variants.l2_rms.max_iters 9,000 (paper: 1,000,000)" in text and "checkpoint_every" not in text
    assert "huber_rms" not in text  # not in the paper tier: compared by name, never against another variant
    assert notes[0] == "variant(s) huber_rms not in the paper tier"
    assert "l2_gd_sensing" in notes[1] and "l2_rms," not in notes[1]
    paths = appendix.plot(two_variants, tmp_path / "fig.png", figure)
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in paths)


def test_the_figure_does_not_depend_on_the_machine_timings(two_variants, retimed_copy, tmp_path):
    figure = FigureContext("test")
    first = appendix.plot(two_variants, tmp_path / "a.png", figure)
    second = appendix.plot(retimed_copy(two_variants), tmp_path / "b.png", figure)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def test_the_paper_tier_departs_from_nothing():
    paper = experiment_section(load_config(CONFIG_DIR / "paper.yaml"), appendix.NAME)
    figure = FigureContext("paper", paper, bookkeeping_keys(load_schema(), appendix.NAME))
    keyed, notes = appendix.by_variant_name(paper, figure)
    assert keyed.substitutions() == "none" and notes == []


def _claim(claim_id, verdict, measured, details=""):
    return ClaimResult(claim_id, appendix.NAME, "2.1", "statement", verdict, measured, "ref", details)


def test_a_claim_passes_only_at_every_seed_fails_at_any_failing_one_else_is_not_shown_where_one_cannot_show_it():
    per_seed = {
        2: [_claim("a", PASSED, 1), _claim("b", PASSED, 2), _claim("c", NOT_SHOWN, 3, "one init")],
        3: [_claim("a", PASSED, 4), _claim("b", FAILED, 5, "ratio 1.9 < 2"), _claim("c", PASSED, 6)],
        4: [_claim("a", PASSED, 7), _claim("b", FAILED, 8), _claim("c", FAILED, 9, "broken")],
    }
    a, b, c = at_every_seed(per_seed)
    assert (a.verdict, b.verdict, c.verdict) == (PASSED, FAILED, FAILED)  # one seed's failure decides
    assert a.measured == {"seeds_holding": "3 of 3", "per_seed": {"2": 1, "3": 4, "4": 7}} and a.details == ""
    assert b.measured["seeds_holding"] == "1 of 3" and b.details == "seed 3: ratio 1.9 < 2; seed 4: failed"
    assert c.details == "seed 2: one init; seed 4: broken"
    assert (a.claim_id, a.statement, a.reference) == ("a", "statement", "ref")
    (undecided,) = at_every_seed({2: [_claim("d", PASSED, 1)], 3: [_claim("d", NOT_SHOWN, 2)]})
    assert undecided.verdict == NOT_SHOWN and undecided.details == "seed 3: not-shown-at-this-scale"
    # a seed without its data never turns into a pass (before: anything not failed or not shown counted as passed)
    (missing,) = at_every_seed({2: [_claim("e", DATA_UNAVAILABLE, 1)], 3: [_claim("e", DATA_UNAVAILABLE, 2)]})
    assert missing.verdict == DATA_UNAVAILABLE
    (partly,) = at_every_seed({2: [_claim("e", PASSED, 1)], 3: [_claim("e", DATA_UNAVAILABLE, 2)]})
    assert partly.verdict == DATA_UNAVAILABLE


def test_one_seed_leaves_its_claims_as_they_are_and_seeds_must_agree_on_the_claims():
    claims = [_claim("a", FAILED, 1, "why")]
    assert at_every_seed({2: claims}) == claims
    with pytest.raises(ValueError, match="disagree"):
        at_every_seed({2: [_claim("a", PASSED, 1)], 3: [_claim("b", PASSED, 1)]})


def test_a_seed_trains_the_same_runs_alone_as_beside_other_seeds(two_variants, tmp_path):
    alone = _run(Settings({**SECTION, "seed": 3, "num_seeds": 1, "variants": SECTION["variants"][:1]}), tmp_path / "s")
    runs = load_results(alone)[1]["variants"][0]["runs"]
    beside = [r for r in load_results(two_variants)[1]["variants"][0]["runs"] if r["seed"] == 3]
    assert runs == beside
