"""Effective rank, norms and reconstruction errors on matrices with known values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from rankrepro.core.measures import (
    effective_rank,
    effective_rank_from_singular_values,
    frobenius_norm,
    matrix_summary,
    normalized_reconstruction_error,
    nuclear_norm,
    singular_values,
    spectral_norm,
)


def _entropy(p: list[float]) -> float:
    return -sum(x * math.log(x) for x in p if x > 0)


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_effective_rank_of_identity_is_n(n):
    assert effective_rank(torch.eye(n)).item() == pytest.approx(n, rel=1e-14)


def test_effective_rank_of_scaled_orthogonal_is_n(generator):
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=generator))
    assert effective_rank(3.7 * q).item() == pytest.approx(5.0, rel=1e-12)


def test_effective_rank_of_rank_one_is_one(generator):
    u, v = torch.randn(4, 1, generator=generator), torch.randn(1, 6, generator=generator)
    # svdvals of an exact rank-1 product gives σ_2 ≈ 1e-16 σ_1, contributing ~1e-15 to the entropy
    assert effective_rank(u @ v).item() == pytest.approx(1.0, abs=1e-12)
    assert effective_rank(torch.tensor([[2.0, 0.0], [0.0, 0.0]])).item() == 1.0


def test_effective_rank_of_diag_110_is_two():
    assert effective_rank(torch.diag(torch.tensor([1.0, 1.0, 0.0]))).item() == pytest.approx(2.0, rel=1e-15)


def test_effective_rank_of_diag_31_is_exp_entropy():
    expected = math.exp(_entropy([0.75, 0.25]))  # ≈ 1.7548
    assert effective_rank(torch.diag(torch.tensor([3.0, 1.0]))).item() == pytest.approx(expected, rel=1e-14)
    assert expected == pytest.approx(1.75476, abs=1e-5)


def test_effective_rank_of_zero_matrix_is_zero_by_convention():
    assert effective_rank(torch.zeros(3, 4)).item() == 0.0
    assert not torch.isnan(effective_rank(torch.zeros(2, 2)))


def test_effective_rank_is_batched_and_matches_single_calls():
    batch = torch.stack(
        [
            torch.eye(3),
            torch.diag(torch.tensor([3.0, 1.0, 0.0])),
            torch.zeros(3, 3),
            torch.diag(torch.tensor([1.0, 1.0, 0.0])),
        ]
    )
    got = effective_rank(batch)
    assert got.shape == (4,)
    expected = torch.tensor([3.0, math.exp(_entropy([0.75, 0.25])), 0.0, 2.0])
    torch.testing.assert_close(got, expected, rtol=1e-14, atol=0)
    nested = effective_rank(batch.reshape(2, 2, 3, 3))
    assert nested.shape == (2, 2)
    torch.testing.assert_close(nested.reshape(4), got, rtol=0, atol=0)


def test_zero_tol_drops_small_singular_values():
    sigma = torch.tensor([1.0, 1.0, 1e-9])
    assert effective_rank_from_singular_values(sigma).item() > 2.0
    assert effective_rank_from_singular_values(sigma, zero_tol=1e-6).item() == pytest.approx(2.0, rel=1e-15)


@given(
    arrays(
        np.float64,
        st.tuples(st.integers(1, 5), st.integers(1, 5)),
        elements=st.floats(-10, 10, allow_nan=False, allow_subnormal=False),
    )
)
def test_effective_rank_bounds_and_scale_invariance(a):
    w = torch.from_numpy(a)
    er = effective_rank(w).item()
    sigma = np.linalg.svd(a, compute_uv=False)
    if sigma.max() == 0:
        assert er == 0.0
        return
    assert 1.0 - 1e-12 <= er <= min(a.shape) + 1e-12
    # exp(H(p)) ≤ #non-zero singular values (with a tolerance for round-off singular values)
    assert er <= np.sum(sigma > 1e-12 * sigma.max()) + 1e-6
    assert effective_rank(2.5 * w).item() == pytest.approx(er, rel=1e-10)
    p = sigma[sigma > 0] / sigma[sigma > 0].sum()
    assert er == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-10)


@given(
    arrays(
        np.float64,
        st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 5)),
        elements=st.floats(-100, 100, allow_nan=False, allow_subnormal=False),
    )
)
def test_norms_match_numpy(a):
    w = torch.from_numpy(a)
    fro = np.array([np.linalg.norm(m, "fro") for m in a])
    nuc = np.array([np.linalg.norm(m, "nuc") for m in a])
    spec = np.array([np.linalg.norm(m, 2) for m in a])
    np.testing.assert_allclose(frobenius_norm(w).numpy(), fro, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(nuclear_norm(w).numpy(), nuc, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(spectral_norm(w).numpy(), spec, rtol=1e-12, atol=1e-10)
    summary = matrix_summary(w)
    np.testing.assert_allclose(summary["fro_norm"].numpy(), fro, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(summary["nuclear_norm"].numpy(), nuc, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(summary["spectral_norm"].numpy(), spec, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(
        summary["singular_values"].numpy(), np.linalg.svd(a, compute_uv=False), rtol=1e-12, atol=1e-10
    )
    torch.testing.assert_close(summary["effective_rank"], effective_rank(w), rtol=1e-12, atol=1e-12)


def test_norms_of_known_matrix():
    w = torch.tensor([[3.0, 0.0], [0.0, -4.0]])
    assert frobenius_norm(w).item() == pytest.approx(5.0, rel=1e-15)
    assert nuclear_norm(w).item() == pytest.approx(7.0, rel=1e-15)
    assert spectral_norm(w).item() == pytest.approx(4.0, rel=1e-15)
    torch.testing.assert_close(singular_values(w), torch.tensor([4.0, 3.0]))


def test_normalized_reconstruction_error_known_values():
    target = torch.tensor([[3.0, 0.0], [0.0, 4.0]])  # ‖W*‖_F = 5
    estimate = torch.tensor([[3.0, 1.0], [0.0, 4.0]])
    assert normalized_reconstruction_error(estimate, target).item() == pytest.approx(0.2, rel=1e-15)
    assert normalized_reconstruction_error(target, target).item() == 0.0
    assert normalized_reconstruction_error(torch.zeros(2, 2), target).item() == pytest.approx(1.0, rel=1e-15)


def test_normalized_reconstruction_error_batched_over_tensor_entries():
    target = torch.zeros(2, 2, 2)
    target[0, 0, 0] = 1.0  # ‖T‖_F = 1
    estimates = torch.stack([target, torch.zeros_like(target), target + 0.5])  # (3, 2, 2, 2)
    err = normalized_reconstruction_error(estimates, target)
    assert err.shape == (3,)
    torch.testing.assert_close(err, torch.tensor([0.0, 1.0, math.sqrt(8 * 0.25)]), rtol=1e-15, atol=0)
    # only the last two dimensions: one error per matrix slice
    per_slice = normalized_reconstruction_error(torch.zeros_like(target), target + 1.0, dims=2)
    torch.testing.assert_close(per_slice, torch.ones(2), rtol=1e-15, atol=0)
