"""§2.1: tensor sensing gradients, component-norm tracking, emergence times and the dynamics claims."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rankrepro.core.errors import ConfigError
from rankrepro.core.io import atomic_write_sealed_json, read_json
from rankrepro.core.seeding import derived_seed, seeded_generator
from rankrepro.experiments.base import Context
from rankrepro.experiments.ch2 import tf_component_norms, tf_sensing_component_norms
from rankrepro.experiments.ch2.common import (
    WithComponentNorms,
    check_settings,
    emergence_iterations,
    learned_components,
)
from rankrepro.factorization.cp import CPCompletionObjective, multi_indices, random_cp_tensor
from rankrepro.factorization.cp_sensing import (
    CPSensingObjective,
    cp_sensing_loss,
    cp_sensing_loss_and_grads,
    gaussian_measurements,
)
from rankrepro.pipeline.claims import FAILED, NOT_SHOWN, PASSED


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
    loss, grads = cp_sensing_loss_and_grads(factors, measurements, values)
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
    _, grads = cp_sensing_loss_and_grads(factors, measurements, values)
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
    sensing = CPSensingObjective(target, onehot)
    (loss_c, grads_c), (loss_s, grads_s) = completion.loss_and_grads(factors), sensing.loss_and_grads(factors)
    assert torch.allclose(loss_c, loss_s, rtol=1e-12)
    for a, b in zip(grads_c, grads_s):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_sensing_objective_rejects_wrong_measurement_width():
    with pytest.raises(ValueError, match="columns"):
        CPSensingObjective(torch.zeros(3, 3), torch.zeros(4, 10))


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
    settings = {"order": 3, "dim": 10, "n_observed": 500, "components": 20, "top_k": 10, "target_rank": 3, **change}
    with pytest.raises(ConfigError, match=f"tf_component_norms.{key}"):
        check_settings(settings, "tf_component_norms")


def test_derived_seeds_are_stable_and_distinct():
    assert derived_seed(1, 2) == derived_seed(1, 2) != derived_seed(2, 1)
    a, b = seeded_generator(5), seeded_generator(5)
    assert torch.equal(torch.rand(3, generator=a), torch.rand(3, generator=b))


SMALL = {
    "data_seed": 1,
    "seed": 2,
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


@pytest.fixture(scope="module")
def tiny_scale_results(tmp_path_factory):
    """The spec's tiny scale (order 3, dim 10, CP rank 3, R = 100, 500 observations): a few seconds."""
    previous = torch.get_default_dtype()  # a module fixture runs outside conftest's per-test dtype guard
    torch.set_default_dtype(torch.float64)
    try:
        out = tmp_path_factory.mktemp("tf") / "tf_component_norms"
        tf_component_norms.run(SMALL, out, Context(tier="test", device=torch.device("cpu"), progress=False))
    finally:
        torch.set_default_dtype(previous)
    return out


def test_tiny_scale_learns_three_components_one_at_a_time(tiny_scale_results):
    verdicts = {c.claim_id: c for c in tf_component_norms.claims(tiny_scale_results, "test")}
    assert {c.verdict for c in verdicts.values()} == {PASSED}, verdicts
    times = verdicts["emergence_separated"].measured["emergence_iterations"]
    assert times[0] < times[1] < times[2]


def test_tiny_scale_figure(tiny_scale_results, tmp_path):
    paths = tf_component_norms.plot(tiny_scale_results, tmp_path / "fig.png", "test")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in paths)


def test_capped_run_is_not_shown(tmp_path):
    """A run stopped by the iteration cap before the loss criterion shows no claim (never a silent pass)."""
    capped = tmp_path / "capped"
    tf_sensing_component_norms.run(
        {**SMALL, "max_iters": 200}, capped, Context(tier="test", device=torch.device("cpu"), progress=False)
    )
    claims = tf_sensing_component_norms.claims(capped, "test")
    assert {c.verdict for c in claims} == {NOT_SHOWN}
    assert all(c.claim_id.startswith("sensing_") for c in claims)


def test_wrong_learned_rank_and_unordered_errors_fail(tiny_scale_results, tmp_path):
    """The checks read the numbers: a learned rank ≠ the target's, or errors not ordered by init, fail."""
    summary = read_json(tiny_scale_results / "summary.json")
    smallest = min(summary["runs"], key=lambda r: r["init_scale"])
    smallest["learned_components"] = 4
    smallest["reconstruction_error"] = 1.0
    altered = tmp_path / "altered"
    shutil.copytree(tiny_scale_results, altered)
    atomic_write_sealed_json(altered / "summary.json", summary)
    verdicts = {c.claim_id: c.verdict for c in tf_component_norms.claims(altered, "test")}
    assert verdicts["learned_rank_equals_true_rank"] == FAILED
    assert verdicts["error_ordered_by_init"] == FAILED
    assert verdicts["emergence_separated"] == PASSED


def test_scale_substitutions_name_every_departure_from_the_paper():
    from rankrepro.experiments.ch2.common import PAPER_SCALE, scale_substitutions

    assert scale_substitutions(dict(PAPER_SCALE)) == "none"
    text = scale_substitutions({**PAPER_SCALE, "order": 3, "components": 100})
    assert text == "order 3 instead of 4; R 100 instead of 1,000"


def test_a_job_that_resumes_a_finished_run_gives_the_same_numbers_and_a_figure(tmp_path):
    """Rerunning on a finished checkpoint (Snakemake reruns a job after a code edit) reproduces the results."""
    ckpt = tmp_path / "resume"
    settings = {**SMALL, "checkpoint_every": 500}
    tf_component_norms.run(settings, ckpt, Context(tier="test", device=torch.device("cpu"), progress=False))
    first = read_json(ckpt / "summary.json")
    tf_component_norms.run(settings, ckpt, Context(tier="test", device=torch.device("cpu"), progress=False))
    second = read_json(ckpt / "summary.json")
    assert second["ms_per_iteration"] is None and second["runs"] == first["runs"]
    assert tf_component_norms.plot(ckpt, tmp_path / "fig.png", "test")[0].is_file()
