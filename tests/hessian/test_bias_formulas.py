"""Closed-form ranks of linear networks with biases (:func:`rankrepro.hessian.maps.predicted_ranks_with_biases`)
against exact ranks over Q: known values of the hidden-bias term, and the exact ranks of small random networks on
integer data (exactly of the rank they are built with), with zero biases (the sweeps' initialisation) and non-zero
ones, covering each branch of the formula."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rankrepro.hessian import maps as hs

SPEC = importlib.util.spec_from_file_location(
    "bias_formula_evidence", Path(__file__).resolve().parents[2] / "scripts" / "bias_formula_evidence.py"
)
evidence = importlib.util.module_from_spec(SPEC)
sys.modules[SPEC.name] = evidence  # its dataclasses look their module up there
SPEC.loader.exec_module(evidence)


def _exact_biased_ranks(
    d: int, r: int, k: int, hidden: tuple[int, ...], loss: str, constant: bool, noisy_bias: bool, seed: int
) -> tuple[dict[str, int], dict[str, int]]:
    """(exact ranks of H_L, H_O, H_F over Q, closed forms with biases) of a random linear network with biases on
    n = 14 integer samples of exact rank r (a constant first feature when ``constant``: 1 in the span of X), by the
    evidence script's own construction."""
    case = evidence.Case(d, r, k, hidden, loss, n=14, constant=constant, noisy=noisy_bias, seed=seed)
    return evidence.exact_and_predicted(case)


@pytest.mark.parametrize(
    "r_hat,hidden,k,expected",
    [
        (6, (4,), 3, 0),  # one hidden layer: no hidden bias past the first layer
        (6, (2, 6), 3, 2 * 6 - 2),  # narrowest layer below (M_1 = 2 < s = 3): 2 M_2 − q
        (6, (6, 2), 3, 2),  # narrowest layer is M_2 itself: q
        (6, (4, 4), 3, 3),  # the outputs are the bottleneck (q = s = K): q
        (6, (1, 6, 1), 4, 1 + 1),  # narrowest below and above layer 2: q; layer 3 is narrowest: q
        (6, (2, 5, 3), 3, (2 * 5 - 2) + (2 * 3 - 2)),  # narrowest at M_1, below both hidden biases
        (4, (4, 5, 2, 4), 5, 2 + 2 + (2 * 4 - 2)),  # M_3 narrowest: above layer 2, at layer 3, below layer 4
    ],
)
def test_hidden_bias_excess_known_values(r_hat, hidden, k, expected):
    assert hs.hidden_bias_excess(r_hat, hidden, k, "mse") == expected


def test_one_hidden_layer_is_the_bias_free_formula_at_the_augmented_rank():
    """f = W² (W¹ x + b¹) + b² = W² [W¹ b¹] [x; 1] + b²: H_F is the bias-free one on [X 1] (b² is linear in f)."""
    for r_hat, m, k in [(5, 3, 10), (9, 12, 10), (3, 7, 2)]:
        biased = hs.predicted_ranks_with_biases(r_hat - 1, r_hat, (m,), k, "mse")
        assert biased["functional"] == hs.predicted_ranks(r_hat, (m,), k, "mse")["functional"] == 2 * m * min(r_hat, k)


def test_no_hidden_layer_has_no_functional_hessian():
    assert hs.predicted_ranks_with_biases(4, 5, (), 3, "mse") == {"loss": 15, "outer": 15, "functional": 0}


@pytest.mark.parametrize(
    "d,r,k,hidden,loss,constant",
    [
        (6, 4, 3, (4, 4), "mse", False),  # q = s: every hidden bias adds q
        (6, 4, 4, (2, 5), "mse", False),  # hidden bottleneck below layer 2: 2 M_2 − q
        (6, 4, 4, (5, 2, 4), "ce", False),  # bottleneck at layer 2, below layer 3; cross-entropy (K' = K − 1)
        (6, 4, 4, (4, 5, 2), "mse", True),  # bottleneck above layers 2 and 3; 1 in the span of X (r̂ = r)
        (5, 3, 5, (1, 4, 1), "mse", False),  # bottleneck below and above layer 3
    ],
)
@pytest.mark.parametrize("noisy_bias", [False, True])
def test_exact_ranks_with_biases_equal_the_closed_forms(d, r, k, hidden, loss, constant, noisy_bias):
    ranks, predicted = _exact_biased_ranks(d, r, k, hidden, loss, constant, noisy_bias, seed=len(hidden) + d)
    assert ranks == predicted


@given(
    d=st.integers(2, 7),
    r=st.integers(1, 7),
    k=st.integers(2, 5),
    hidden=st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple),
    loss=st.sampled_from(["mse", "ce"]),
    constant=st.booleans(),
    noisy_bias=st.booleans(),
    seed=st.integers(0, 10_000),
)
@settings(max_examples=40, deadline=None)
def test_exact_ranks_with_biases_equal_the_closed_forms_on_random_networks(
    d, r, k, hidden, loss, constant, noisy_bias, seed
):
    ranks, predicted = _exact_biased_ranks(d, min(r, d), k, hidden, loss, constant, noisy_bias, seed)
    assert ranks == predicted


def test_the_evidence_script_draws_networks_inside_its_family_and_reports_mismatches(capsys):
    family = evidence.FAMILIES[1]
    rng = random.Random(0)
    for seed in range(50):
        case = evidence.draw_case(family, rng, seed)
        assert family.depths[0] <= len(case.hidden) + 1 <= family.depths[1]
        assert all(family.widths[0] <= m <= family.widths[1] for m in case.hidden)
        assert 1 <= case.r <= case.d and case.r + 2 <= case.n <= family.max_samples
    assert evidence.main(["--networks", "3"]) == 0
    assert "0 mismatches" in capsys.readouterr().out


def _core_ranks(s: int, m1: int, m2: int, seed: int) -> tuple[int, int]:
    """Ranks of the Hessian, at a random point, of the two-hidden-layer core of docs/chapters/ch5.md (the proof of
    rank H_F with L = 3): f = tr(V W U) without biases, f + ε V β with the second layer's bias β (U: m1 × s,
    W: m2 × m1, V: s × m2, ε a covector) — float64 ranks of tiny, well-conditioned Hessians."""
    g = torch.Generator().manual_seed(seed)
    U, W, V = (torch.randn(*shape, generator=g, dtype=torch.float64) for shape in [(m1, s), (m2, m1), (s, m2)])
    eps = torch.randn(s, generator=g, dtype=torch.float64)
    sizes = [m1 * s, m2 * m1, s * m2, m2]

    def core(theta: torch.Tensor) -> torch.Tensor:
        a, b, c, beta = torch.split(theta, sizes)
        product = (V + c.reshape(s, m2)) @ (W + b.reshape(m2, m1)) @ (U + a.reshape(m1, s))
        return torch.trace(product) + eps @ (V + c.reshape(s, m2)) @ beta

    hessian = torch.autograd.functional.hessian(core, torch.zeros(sum(sizes), dtype=torch.float64))
    without = sum(sizes[:3])
    return (
        int(torch.linalg.matrix_rank(hessian[:without, :without])),
        int(torch.linalg.matrix_rank(hessian)),
    )


def test_the_two_hidden_layer_core_gains_what_the_proof_counts():
    """Every order of s, M_1, M_2 (s ≤ 5, widths ≤ 6): the core's rank without biases is Singh et al.'s
    2q(M_1 + M_2) + 2qs − 3q², and the second layer's bias adds e_2 = 2M_2 − q when M_1 = q < s, else q — the case
    count of the proof (a miscounted case, or 'e_2 = q always', fails here)."""
    for s in range(1, 6):
        for m1 in range(1, 7):
            for m2 in range(1, 7):
                without, with_bias = _core_ranks(s, m1, m2, seed=100 * s + 10 * m1 + m2)
                q = min(s, m1, m2)
                assert without == 2 * q * (m1 + m2) + 2 * q * s - 3 * q * q, (s, m1, m2)
                excess = 2 * m2 - q if m1 == q < s else q
                assert with_bias - without == excess == hs.hidden_bias_excess(s, (m1, m2), s, "mse"), (s, m1, m2)


def _one_hidden_layer_reduced_ranks(rho: int, m: int, k: int, point: str, seed: int = 0) -> tuple[int, int]:
    """(rank of the bias-free form H⁰, rank of the reduced form Q') of the one-hidden-layer MSE proof of
    docs/chapters/ch5.md at a random or at the proof's special point: Q'(dU₁, du, dV) = ‖dV U₁ + V dU₁‖²
    + 2 tr(dV dU₁ Ω₁) + 2 ωᵀ dV du (U₁: m × ρ, V: k × m, Ω₁: ρ × k, ω ∈ R^k; H⁰ is Q' without du), halved so that
    it is the Hessian of a quadratic — float64 ranks of tiny, well-conditioned matrices."""
    g = torch.Generator().manual_seed(seed)
    if point == "random":
        U1, V, Om, om = (
            torch.randn(*shape, generator=g, dtype=torch.float64) for shape in [(m, rho), (k, m), (rho, k), (k,)]
        )
    elif m >= k:  # V = [I 0], U_a = [I 0], U_b = 0, Ω₁ = [I; 0]: Π = Γ = I
        V, U1, Om = (
            torch.eye(k, m, dtype=torch.float64),
            torch.eye(m, rho, dtype=torch.float64),
            torch.eye(rho, k, dtype=torch.float64),
        )
        U1[k:] = 0
        om = torch.eye(k, dtype=torch.float64)[0]
    else:  # V = [I; 0], U₁ = [2I 0], Ω₁ = [I; 0], ω on the rows outside V's columns
        V, Om = torch.eye(k, m, dtype=torch.float64), torch.eye(rho, k, dtype=torch.float64)
        U1 = 2 * torch.eye(m, rho, dtype=torch.float64)
        om = torch.eye(k, dtype=torch.float64)[-1]
    sizes = [m * rho, k * m, m]

    def reduced(theta: torch.Tensor) -> torch.Tensor:
        du1, dv, du = torch.split(theta, sizes)
        du1, dv = du1.reshape(m, rho), dv.reshape(k, m)
        gauss_newton = dv @ U1 + V @ du1
        return 0.5 * (gauss_newton**2).sum() + torch.trace(dv @ du1 @ Om) + om @ dv @ du

    hessian = torch.autograd.functional.hessian(reduced, torch.zeros(sum(sizes), dtype=torch.float64))
    without = sum(sizes[:2])
    return int(torch.linalg.matrix_rank(hessian[:without, :without])), int(torch.linalg.matrix_rank(hessian))


@pytest.mark.parametrize("point", ["special", "random"])
def test_one_hidden_layer_mse_loss_rank_with_biases_is_what_the_proof_counts(point):
    """One hidden layer, MSE, ρ = r̂ − 1 ≥ K: the reduced form has rank h + min(K, M), h the bias-free rank of
    Singh et al. at data rank ρ — at the proof's special points (where it is computed by hand) and at random ones
    (so the special points are not special in rank). A proof step off by one (rank h + K for M < K, or h) fails."""
    for k in range(1, 5):
        for rho in range(k, k + 3):
            for m in range(1, k + 4):
                h, reduced = _one_hidden_layer_reduced_ranks(rho, m, k, point, seed=100 * k + 10 * rho + m)
                assert h == hs.predicted_ranks(rho, (m,), k, "mse")["loss"], (rho, m, k)
                assert reduced == h + min(k, m), (rho, m, k)


def test_one_hidden_layer_mse_closed_form_with_biases_is_k_plus_q_plus_the_bias_free_form():
    """The conjectured form with biases, at one hidden layer and r̂ > K, equals what the proof gives:
    rank H_L = K + min(K, M) + [bias-free rank H_L at data rank r̂ − 1], in both cases r̂ = r + 1 and r̂ = r."""
    for k in range(1, 6):
        for r_hat in range(k + 1, k + 6):
            for m in range(1, k + 6):
                proved = k + min(k, m) + hs.predicted_ranks(r_hat - 1, (m,), k, "mse")["loss"]
                for r in (r_hat - 1, r_hat):
                    assert hs.predicted_ranks_with_biases(r, r_hat, (m,), k, "mse")["loss"] == proved, (r, r_hat, m, k)
