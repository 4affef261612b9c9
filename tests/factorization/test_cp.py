"""CP factorization (gather and dense gradients), the linear baseline and CP-ALS rank estimation."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rankrepro.core.measures import normalized_reconstruction_error
from rankrepro.factorization.cp import (
    CPCompletionObjective,
    choose_method,
    component_norms,
    cp_loss,
    cp_loss_and_grads_dense,
    cp_loss_and_grads_gather,
    cp_predict,
    cp_reconstruct,
    init_factors,
    linear_completion,
    max_cp_rank,
    multi_indices,
    random_cp_tensor,
)
from rankrepro.factorization.cp_als import ALSSettings, cp_als, estimate_cp_rank, mean_squared_error


def _problem(dims, rank, batch, n_obs, seed):
    """Random factors (B, d_n, R), observed multi-indices and per-run observed values."""
    g = torch.Generator().manual_seed(seed)
    factors = [torch.randn(batch, d, rank, generator=g) for d in dims]
    flat = torch.randperm(math.prod(dims), generator=g)[:n_obs]
    indices = multi_indices(flat, dims)
    values = torch.randn(batch, n_obs, generator=g)
    return factors, indices, values


def _dense_einsum(factors):
    letters = "abcdef"[: len(factors)]
    spec = ",".join(f"z{c}r" for c in letters) + f"->z{letters}"
    return torch.einsum(spec, *factors)


shapes = st.lists(st.integers(1, 4), min_size=2, max_size=4)


@settings(max_examples=30)
@given(dims=shapes, rank=st.integers(1, 5), batch=st.integers(1, 3), seed=st.integers(0, 10_000))
def test_forward_matches_dense_einsum(dims, rank, batch, seed):
    n_obs = max(1, math.prod(dims) // 2)
    factors, indices, _ = _problem(dims, rank, batch, n_obs, seed)
    dense = _dense_einsum(factors)
    assert torch.allclose(cp_reconstruct(factors), dense, rtol=1e-12, atol=1e-12)
    expected = dense[(slice(None), *indices.T)]
    assert torch.allclose(cp_predict(factors, indices), expected, rtol=1e-12, atol=1e-12)


def test_multi_indices_are_row_major():
    dims = (2, 3, 4)
    flat = torch.arange(24)
    idx = multi_indices(flat, dims)
    assert torch.equal(idx[7], torch.tensor([0, 1, 3]))
    assert torch.equal((idx * torch.tensor([12, 4, 1])).sum(-1), flat)


@settings(max_examples=25)
@given(
    dims=shapes,
    rank=st.integers(1, 4),
    batch=st.integers(1, 3),
    seed=st.integers(0, 10_000),
    chunk=st.sampled_from([1, 7, 1 << 16]),
)
def test_gather_and_dense_gradients_match_autograd(dims, rank, batch, seed, chunk):
    n_obs = max(1, (2 * math.prod(dims)) // 3)
    factors, indices, values = _problem(dims, rank, batch, n_obs, seed)
    leaves = [f.clone().requires_grad_(True) for f in factors]
    loss = cp_loss(leaves, indices, values)
    auto = torch.autograd.grad(loss.sum(), leaves)
    g_loss, g_grads = cp_loss_and_grads_gather(factors, indices, values, chunk_elements=chunk)
    assert torch.allclose(g_loss, loss.detach(), rtol=1e-12, atol=1e-14)
    for a, b in zip(auto, g_grads):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    if batch == 1:  # the dense path takes one target shared by the batch
        target = torch.zeros(dims, dtype=torch.float64)
        mask = torch.zeros(dims, dtype=torch.float64)
        target[tuple(indices.T)] = values[0]
        mask[tuple(indices.T)] = 1.0
        d_loss, d_grads = cp_loss_and_grads_dense(factors, mask, target, n_obs)
        assert torch.allclose(d_loss, loss.detach(), rtol=1e-12, atol=1e-14)
        for a, b in zip(auto, d_grads):
            assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_gradient_matches_finite_differences():
    dims, rank = (3, 4, 2, 3), 2
    factors, indices, values = _problem(dims, rank, 1, 40, seed=7)
    _, grads = cp_loss_and_grads_gather(factors, indices, values)
    h = 1e-6
    for n in range(len(factors)):
        for pos in [(0, 0, 0), (0, dims[n] - 1, rank - 1), (0, 1, 1)]:
            plus = [f.clone() for f in factors]
            minus = [f.clone() for f in factors]
            plus[n][pos] += h
            minus[n][pos] -= h
            numeric = (cp_loss(plus, indices, values) - cp_loss(minus, indices, values)) / (2 * h)
            assert float(numeric) == pytest.approx(float(grads[n][pos]), rel=1e-6, abs=1e-9)


def test_objective_methods_agree_and_report_error():
    dims = (4, 4, 4)
    g = torch.Generator().manual_seed(0)
    target = random_cp_tensor(dims, 2, g)
    indices = multi_indices(torch.randperm(64, generator=g)[:30], dims)
    factors = init_factors(dims, 8, torch.tensor([0.5, 0.1]), [torch.Generator().manual_seed(s) for s in (1, 2)])
    gather = CPCompletionObjective(target, indices, "gather")
    dense = CPCompletionObjective(target, indices, "dense")
    (l1, g1), (l2, g2) = gather.loss_and_grads(factors), dense.loss_and_grads(factors)
    assert torch.allclose(l1, l2, rtol=1e-12)
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-14)
    err = gather.metrics(factors)["reconstruction_error"]
    assert err.shape == (2,)
    assert torch.allclose(err, normalized_reconstruction_error(cp_reconstruct(factors), target))
    with pytest.raises(ValueError):
        CPCompletionObjective(target, indices, "onehot")


def test_choose_method_prefers_dense_for_small_tensors_with_many_observations():
    assert choose_method((8,) * 4, 2000) == "dense"
    assert choose_method((100,) * 3, 500) == "gather"


def test_component_norms_of_hand_built_model():
    # component 0: (3,4,0) ⊗ (1,0) ⊗ (2) → 5·1·2 = 10; component 1: (0,0,1) ⊗ (0,2) ⊗ (−3) → 1·2·3 = 6
    f1 = torch.tensor([[[3.0, 0.0], [4.0, 0.0], [0.0, 1.0]]])
    f2 = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    f3 = torch.tensor([[[2.0, -3.0]]])
    assert torch.allclose(component_norms([f1, f2, f3]), torch.tensor([[10.0, 6.0]]))
    # for a rank-1 tensor the component norm is the tensor's Frobenius norm
    assert torch.allclose(cp_reconstruct([f1[..., :1], f2[..., :1], f3[..., :1]]).norm(), torch.tensor(10.0))


def test_max_cp_rank():
    assert max_cp_rank((8, 8, 8)) == 64
    assert max_cp_rank((8, 8, 8, 8)) == 512
    assert max_cp_rank((2, 3, 5)) == 6


def test_random_target_has_unit_norm_and_init_scales():
    g = torch.Generator().manual_seed(3)
    assert random_cp_tensor((8, 8, 8), 3, g).norm().item() == pytest.approx(1.0, rel=1e-14)
    gens = [torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)]
    a, b = init_factors((3, 4), 2, torch.tensor([1e-2, 1e-3]), gens)[0]
    assert torch.allclose(a, 10 * b)  # same seed: same direction, different scale


@settings(max_examples=20)
@given(n=st.integers(0, 512), seed=st.integers(0, 1000))
def test_linear_baseline_error_is_exact(n, seed):
    g = torch.Generator().manual_seed(seed)
    dims = (8, 8, 8)
    target = random_cp_tensor(dims, 1, g)
    flat = torch.randperm(512, generator=g)[:n]
    linear = linear_completion(target, multi_indices(flat, dims))
    expected = math.sqrt(max(0.0, 1.0 - float(target.reshape(-1)[flat].pow(2).sum())))
    assert float(normalized_reconstruction_error(linear, target)) == pytest.approx(expected, rel=1e-9, abs=1e-7)
    assert torch.equal(linear.reshape(-1)[flat], target.reshape(-1)[flat])
    assert int((linear != 0).sum()) <= n


FAST_ALS = ALSSettings(max_iters=300, restarts=2)


def test_cp_als_fits_a_rank_two_tensor():
    g = torch.Generator().manual_seed(11)
    tensor = random_cp_tensor((6, 5, 4), 2, g)
    factors, mse = cp_als(tensor[None], 2, FAST_ALS)
    assert float(mse[0]) < 1e-6
    assert float(mean_squared_error(cp_reconstruct(factors), tensor[None])[0]) == pytest.approx(float(mse[0]))


def test_rank_estimation_recovers_known_ranks_and_zero():
    g = torch.Generator().manual_seed(3)
    tensors = torch.stack([random_cp_tensor((8, 8, 8), 1, g), random_cp_tensor((8, 8, 8), 3, g), torch.zeros(8, 8, 8)])
    estimate = estimate_cp_rank(tensors, FAST_ALS)
    assert estimate.ranks.tolist() == [1, 3, 0]
    assert estimate.found.tolist() == [True, True, True]
    assert estimate.fits[2] == []  # the zero tensor needs no fit


def test_rank_estimation_reports_when_no_rank_fits():
    g = torch.Generator().manual_seed(4)
    tensor = random_cp_tensor((4, 4, 4), 6, g)
    estimate = estimate_cp_rank(tensor[None], ALSSettings(max_iters=20, restarts=1), r_max=2)
    assert estimate.ranks.tolist() == [2]
    assert estimate.found.tolist() == [False]


def test_rank_estimation_is_deterministic_and_batch_independent():
    g = torch.Generator().manual_seed(5)
    a, b = random_cp_tensor((5, 5, 5), 2, g), random_cp_tensor((5, 5, 5), 4, g)
    together = estimate_cp_rank(torch.stack([a, b]), FAST_ALS).ranks.tolist()
    alone = [estimate_cp_rank(t[None], FAST_ALS).ranks.item() for t in (a, b)]
    assert together == alone == [2, 4]


def test_als_settings_are_validated():
    with pytest.raises(ValueError):
        ALSSettings(tol=0.0)
    with pytest.raises(ValueError):
        cp_als(torch.zeros(1, 2, 2), 0)
