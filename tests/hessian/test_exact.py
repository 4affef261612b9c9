"""Exact ranks over Q by arithmetic modulo primes: the reduction of float64 numbers, exact modular products, the
blocked LU rank, and the sketched maps against float64 ranks where those are well defined — and where float64 cannot
decide, against ranks known by construction."""

from __future__ import annotations

import fractions

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rankrepro.hessian import exact
from rankrepro.hessian import maps as hs
from rankrepro.hessian.maps import MLP

P = exact.MODULI[0]


def _as_residue(value: float, modulus: int = P) -> int:
    """The residue of a float's exact rational value p/q (q a power of two), by Python's big integers."""
    ratio = fractions.Fraction(value)
    return ratio.numerator % modulus * pow(ratio.denominator, -1, modulus) % modulus


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=1, max_size=20))
@settings(max_examples=60, deadline=None)
def test_residues_are_the_exact_rationals_mod_p(values):
    got = exact.residues(np.array(values), P)
    assert [int(v) for v in got] == [_as_residue(v) for v in values]


def test_residues_respect_exact_arithmetic():
    """0.375 · (−2.5) = −0.9375 exactly: the reduction is a ring homomorphism on dyadic rationals."""
    a, b = exact.residues(np.array([0.375]), P), exact.residues(np.array([-2.5]), P)
    assert exact.mod_product(a, b, P)[0] == exact.residues(np.array([0.375 * -2.5]), P)[0]
    assert exact.residues(np.array([0.5]), P)[0] * 2 % P == 1


def test_mod_matmul_is_exact_across_chunks(monkeypatch):
    monkeypatch.setattr(exact, "MAX_INNER", 7)  # many chunks
    rng = np.random.default_rng(0)
    left = rng.integers(0, P, (5, 30)).astype(np.float64)
    right = rng.integers(0, P, (30, 4)).astype(np.float64)
    expected = (left.astype(object) @ right.astype(object)) % P
    assert (exact.mod_matmul(left, right, P) == expected.astype(np.float64)).all()


@pytest.mark.parametrize("size, rank", [(1, 0), (1, 1), (10, 3), (70, 70), (130, 64), (200, 150), (129, 1)])
def test_sketch_rank_of_products_of_known_rank(size, rank):
    rng = np.random.default_rng(size + rank)
    factor = rng.integers(0, P, (size, rank)).astype(np.float64)
    other = rng.integers(0, P, (rank, size)).astype(np.float64)
    matrix = exact.mod_matmul(factor, other, P) if rank else np.zeros((size, size))
    assert exact.sketch_rank(matrix, P) == rank


def test_sketch_rank_reports_an_unlucky_pivot():
    """A zero leading pivot with a nonzero Schur complement cannot be ranked without pivoting: None (redraw)."""
    assert exact.sketch_rank(np.array([[0.0, 1.0], [1.0, 0.0]]), P) is None


def test_exact_matrix_rank_sees_what_float64_rounds_away():
    """Column 3 = fl(column 0 + column 1) is not their exact sum: rank 4 over Q, 3 in float64; an exact duplicate
    column and a zero column do not count."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(12, 6, generator=g, dtype=torch.float64)
    X[:, 3] = X[:, 0] + X[:, 1]
    X[:, 4] = X[:, 2]
    X[:, 5] = 0.0
    assert hs.data_rank(X) == 3
    exact_rank = exact.exact_matrix_rank(X, seed=1)
    sums = (X[:, 0].double() + X[:, 1].double()).numpy()
    exactly_dependent = all(fractions.Fraction(a) + fractions.Fraction(b) == fractions.Fraction(c)
                            for a, b, c in zip(X[:, 0].tolist(), X[:, 1].tolist(), sums))  # fmt: skip
    assert exact_rank == (3 if exactly_dependent else 4)
    Z = X.clone()
    Z[:, 3] = X[:, 0]
    assert exact.exact_matrix_rank(Z, seed=1) == 3


def _problem(widths: tuple[int, ...], bias: bool, seed: int):
    mlp = MLP(widths, activation="linear", bias=bias)
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(mlp.num_params, generator=g, dtype=torch.float64)
    X = torch.randn(12, widths[0], generator=g, dtype=torch.float64)
    X[:, 1] = X[:, 0]  # exact dependencies only: the float64 and the exact rank of X agree
    X[:, -1] = 0.0
    Y = torch.eye(widths[-1], dtype=torch.float64)[torch.randint(widths[-1], (12,), generator=g)]
    return mlp, theta, X, Y


@pytest.mark.parametrize("loss", ["mse", "ce", "logcosh"])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("hidden", [(), (5,), (6, 4), (3, 8, 2)])
def test_exact_ranks_equal_the_float64_ranks_where_those_are_well_defined(loss, bias, hidden):
    mlp, theta, X, Y = _problem((7, *hidden, 4), bias, seed=len(hidden) + 10 * bias)
    reports = hs.hessian_ranks(hs.hessian_maps(mlp, theta, X, Y, loss), restrict=False)
    found = exact.exact_ranks(mlp, theta, X, Y, loss, {kind: 0 for kind in reports}, seed=3)
    for kind, report in reports.items():
        assert all(v <= mlp.num_params for v in found[kind]["per_modulus"])
        if len(set(report.ranks_at.values())) == 1:
            assert found[kind]["rank"] == report.rank, kind


@pytest.mark.parametrize("loss", ["mse", "ce", "logcosh"])
def test_exact_ranks_equal_the_closed_forms_of_generic_linear_networks(loss):
    """Singh et al.'s formulas at a generic point, at sizes where they bind (q = a hidden width, r < d)."""
    mlp, theta, X, Y = _problem((7, 5, 3, 4), False, seed=7)
    predicted = hs.predicted_ranks(exact.exact_matrix_rank(X, seed=0), mlp.hidden, 4, loss)
    found = exact.exact_ranks(mlp, theta, X, Y, loss, {kind: 0 for kind in predicted}, seed=5)
    assert {kind: found[kind]["rank"] for kind in predicted} == predicted


def test_a_small_sketch_grows_until_it_is_not_full():
    mlp, theta, X, Y = _problem((7, 6, 4), False, seed=2)
    found = exact.exact_ranks(mlp, theta, X, Y, "mse", {"loss": 0, "outer": 0, "functional": 0}, seed=4)
    reports = hs.hessian_ranks(hs.hessian_maps(mlp, theta, X, Y, "mse"), restrict=False)
    assert found["loss"]["rank"] == reports["loss"].rank
    assert found["loss"]["columns"] > found["loss"]["rank"]


def test_exact_ranks_refuse_nonlinear_networks():
    mlp = MLP((3, 2, 2), activation="relu")
    with pytest.raises(ValueError, match="without activation"):
        exact.exact_ranks(mlp, torch.zeros(mlp.num_params, dtype=torch.float64), torch.ones(2, 3),
                          torch.eye(2), "mse", {"loss": 0, "outer": 0, "functional": 0}, seed=0)  # fmt: skip
