"""Chapter 5 mechanisms: exact Hessian maps of MLPs, their numerical ranks, the closed forms and the bounds."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rankrepro.core.errors import ConfigError
from rankrepro.hessian import maps as hs
from rankrepro.hessian.maps import MLP


def _data(n: int, d: int, k: int, rank: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """X (n, d) of rank ``rank`` (generic) and one-hot Y (n, k)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, rank, generator=g, dtype=torch.float64) @ torch.randn(rank, d, generator=g, dtype=torch.float64)
    Y = torch.eye(k, dtype=torch.float64)[torch.randint(k, (n,), generator=g)]
    return X, Y


def _net(widths: tuple[int, ...], activation: str = "linear", bias: bool = False, seed: int = 0):
    mlp = MLP(widths, activation=activation, bias=bias)
    theta = hs.glorot_normal_init(mlp, torch.Generator().manual_seed(seed))
    if bias:  # non-zero biases, so that they matter in the checks
        theta = theta + 0.1 * torch.randn(
            theta.shape, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64
        )
    return mlp, theta


# ----------------------------------------------------------------------------------------------------- network
def test_parameter_count_and_unflatten_layout():
    mlp = MLP((3, 4, 2), bias=True)
    assert mlp.num_params == 3 * 4 + 4 + 4 * 2 + 2 and mlp.depth == 2 and mlp.hidden == (4,)
    theta = torch.arange(mlp.num_params, dtype=torch.float64)
    (w1, b1), (w2, b2) = hs.unflatten(mlp, theta)
    assert w1.shape == (4, 3) and w1[0, 0] == 0 and w1[1, 0] == 3 and b1.tolist() == [12, 13, 14, 15]
    assert w2.shape == (2, 4) and w2[0, 0] == 16 and b2.tolist() == [24, 25]
    with pytest.raises(ValueError, match="θ has 5 entries"):
        hs.unflatten(mlp, torch.zeros(5))


def test_forward_is_the_layered_map():
    mlp, theta = _net((3, 5, 4, 2), "tanh", bias=True)
    (w1, b1), (w2, b2), (w3, b3) = hs.unflatten(mlp, theta)
    X = torch.randn(6, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    expected = torch.tanh(torch.tanh(X @ w1.T + b1) @ w2.T + b2) @ w3.T + b3
    assert torch.allclose(hs.forward(mlp, theta, X), expected, atol=1e-14)


def test_bad_network_and_loss_names_are_config_errors():
    with pytest.raises(ConfigError, match="unknown activation 'gelu'"):
        MLP((2, 2), activation="gelu")
    with pytest.raises(ConfigError, match="all ≥ 1"):
        MLP((2, 0, 2))
    with pytest.raises(ConfigError, match="unknown loss 'hinge'"):
        hs.loss_value("hinge", torch.zeros(1, 2), torch.zeros(1, 2))


def test_glorot_normal_init_is_seeded_with_the_glorot_variance():
    mlp = MLP((300, 200, 10))
    a = hs.glorot_normal_init(mlp, torch.Generator().manual_seed(5))
    b = hs.glorot_normal_init(mlp, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    (w1, _), (w2, _) = hs.unflatten(mlp, a)
    assert w1.var().item() == pytest.approx(2 / 500, rel=0.02)
    assert w2.var().item() == pytest.approx(2 / 210, rel=0.1)


# ----------------------------------------------------------------------------------------------------- losses
@pytest.mark.parametrize("loss", hs.LOSSES)
def test_output_gradient_and_hessian_match_autograd(loss):
    g = torch.Generator().manual_seed(3)
    F = torch.randn(4, 3, generator=g, dtype=torch.float64)
    Y = torch.eye(3, dtype=torch.float64)[torch.tensor([0, 2, 1, 2])]
    grad = torch.func.grad(lambda f: hs.loss_value(loss, f, Y))(F)
    assert torch.allclose(hs.output_gradient(loss, F, Y), grad, atol=1e-12)
    for i in range(4):  # per-sample curvature: the loss is a sum over samples
        exact = torch.func.hessian(lambda f: hs.loss_value(loss, f[None], Y[i : i + 1]))(F[i])
        assert torch.allclose(hs.output_hessian(loss, F, Y)[i], exact, atol=1e-12)
    root = hs.output_hessian_root(loss, F, Y)
    assert torch.allclose(root.transpose(-1, -2) @ root, hs.output_hessian(loss, F, Y), atol=1e-12)


def test_log_cosh_is_stable_and_exact():
    z = torch.tensor([-800.0, -3.0, 0.0, 0.5, 800.0], dtype=torch.float64)
    values = hs.log_cosh(z)
    assert torch.isfinite(values).all()
    assert values[0].item() == pytest.approx(800 - math.log(2))
    assert torch.allclose(values[1:4], torch.log(torch.cosh(z[1:4])), atol=1e-15)


def test_cross_entropy_curvature_has_rank_k_minus_one():
    F = torch.randn(5, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    A = hs.output_hessian("ce", F, torch.eye(4, dtype=torch.float64)[torch.tensor([0, 1, 2, 3, 0])])
    assert all(int(torch.linalg.matrix_rank(a)) == 3 for a in A)
    assert torch.allclose(A @ torch.ones(4, dtype=torch.float64), torch.zeros(5, 4, dtype=torch.float64), atol=1e-15)


# ----------------------------------------------------------------------------------------------------- Hessians
@pytest.mark.parametrize("loss", hs.LOSSES)
@pytest.mark.parametrize("activation", ["linear", "tanh"])
def test_loss_hessian_matches_finite_differences_of_the_gradient(loss, activation):
    mlp, theta = _net((3, 4, 3), activation, bias=True, seed=7)
    X, Y = _data(5, 3, 3, 3, seed=8)
    H = hs.loss_hessian(mlp, theta, X, Y, loss)
    grad = torch.func.grad(lambda t: hs.total_loss(mlp, t, X, Y, loss))
    h = 1e-5
    columns = [(grad(theta + h * e) - grad(theta - h * e)) / (2 * h) for e in torch.eye(mlp.num_params)]
    numeric = torch.stack(columns, dim=1)
    assert torch.allclose(H, numeric, atol=1e-7, rtol=1e-6)
    assert torch.allclose(H, H.T, atol=1e-12)


@pytest.mark.parametrize("loss", hs.LOSSES)
@pytest.mark.parametrize("activation,bias", [("linear", False), ("relu", True), ("tanh", False)])
def test_loss_hessian_is_outer_plus_functional(loss, activation, bias):
    mlp, theta = _net((4, 5, 3, 3), activation, bias=bias, seed=11)
    X, Y = _data(6, 4, 3, 4, seed=12)
    maps = hs.hessian_maps(mlp, theta, X, Y, loss)
    assert torch.allclose(maps.loss, hs.loss_hessian(mlp, theta, X, Y, loss), atol=1e-11)
    assert torch.allclose(maps.outer, hs.outer_product_hessian(mlp, theta, X, Y, loss), atol=1e-11)


def test_functional_hessian_of_a_network_without_hidden_layer_is_exactly_zero():
    mlp, theta = _net((4, 3))
    X, Y = _data(6, 4, 3, 4, seed=1)
    functional = hs.functional_hessian(mlp, theta, X, Y, "mse")
    assert torch.count_nonzero(functional) == 0
    assert hs.symmetric_rank(functional).rank == 0
    assert torch.count_nonzero(hs.hessian_maps(mlp, theta, X, Y, "mse").functional) == 0


# ----------------------------------------------------------------------------------------------------- structure
def _autodiff_and_structural(mlp, theta, X, Y, loss):
    derivatives = hs.network_derivatives(mlp, theta, X)
    residual = hs.output_gradient(loss, derivatives.outputs, Y)
    return (
        (hs.output_jacobian(mlp, theta, X), hs.structural_jacobian(derivatives)),
        (hs.functional_hessian(mlp, theta, X, Y, loss), hs.structural_functional_hessian(derivatives, residual)),
    )


def _close(reference: torch.Tensor, value: torch.Tensor) -> bool:
    """Equal up to float64 rounding of sums of products, relative to the largest entry."""
    scale = max(float(reference.abs().max()), 1.0)
    return reference.shape == value.shape and float((reference - value).abs().max()) <= 1e-12 * scale


def test_flatten_layer_puts_weights_row_major_then_biases():
    block = torch.arange(2 * 4, dtype=torch.float64).reshape(2, 4)  # M_l = 2, M_{l-1} = 3, last column = bias
    assert hs.flatten_layer(block, True).tolist() == [0, 1, 2, 4, 5, 6, 3, 7]
    assert hs.flatten_layer(block, False).tolist() == list(range(8))
    mlp = MLP((3, 2), bias=True)  # the same layout as unflatten
    theta = torch.arange(mlp.num_params, dtype=torch.float64)
    ((weight, bias),) = hs.unflatten(mlp, theta)
    assert torch.equal(hs.flatten_layer(torch.cat([weight, bias[:, None]], dim=1), True), theta)


def test_chain_jacobians_of_a_linear_network_are_weight_products():
    mlp, theta = _net((3, 4, 5, 2), seed=3)
    X, _ = _data(4, 3, 2, 3, seed=3)
    derivatives = hs.network_derivatives(mlp, theta, X)
    (w1, _), (w2, _), (w3, _) = hs.unflatten(mlp, theta)
    assert torch.allclose(derivatives.chain[2][0], (w3 @ w2).expand(4, 2, 4), atol=1e-14)
    assert torch.allclose(derivatives.chain[2][1], w3.expand(4, 2, 5), atol=1e-15)
    assert torch.equal(derivatives.chain[1][1], torch.eye(5, dtype=torch.float64).expand(4, 5, 5))
    assert torch.allclose(derivatives.outputs, X @ (w3 @ w2 @ w1).T, atol=1e-14)
    assert derivatives.bends is None and torch.equal(derivatives.inputs[0], X)


@pytest.mark.parametrize("loss", hs.LOSSES)
@pytest.mark.parametrize(
    "activation,bias",
    [("linear", False), ("linear", True), ("relu", False), ("relu", True), ("tanh", False), ("tanh", True)],
)
@pytest.mark.parametrize("widths", [(4, 3), (4, 5, 3), (3, 4, 2, 5, 3)])
def test_structural_maps_equal_autodiff(widths, activation, bias, loss):
    mlp, theta = _net(widths, activation, bias=bias, seed=len(widths))
    X, Y = _data(7, widths[0], widths[-1], widths[0], seed=5)
    (jac, jac_s), (hess, hess_s) = _autodiff_and_structural(mlp, theta, X, Y, loss)
    assert _close(jac, jac_s) and _close(hess, hess_s) and _close(hess_s, hess_s.T)


def test_relu_slope_at_the_kink_is_autograds():
    """A zero sample gives z = 0 in every unit of a bias-free network: σ'(0) = 0 in both constructions."""
    mlp, theta = _net((3, 4, 4, 2), "relu", seed=2)
    X, Y = _data(5, 3, 2, 3, seed=2)
    X[1] = 0.0
    (jac, jac_s), (hess, hess_s) = _autodiff_and_structural(mlp, theta, X, Y, "mse")
    assert torch.equal(jac_s[1], torch.zeros_like(jac_s[1])) and _close(jac, jac_s) and _close(hess, hess_s)


@pytest.mark.parametrize("loss", hs.LOSSES)
@pytest.mark.parametrize("activation,bias", [("linear", False), ("relu", True), ("tanh", False)])
def test_structural_gram_is_the_outer_product_hessian(activation, bias, loss):
    mlp, theta = _net((4, 5, 3, 3), activation, bias=bias, seed=13)
    X, Y = _data(7, 4, 3, 4, seed=13)
    derivatives = hs.network_derivatives(mlp, theta, X)
    gram = hs.structural_gram(derivatives, hs.output_hessian_root(loss, derivatives.outputs, Y))
    assert _close(hs.outer_product_hessian(mlp, theta, X, Y, loss), gram) and torch.equal(gram, gram.T)
    maps = hs.maps_from_derivatives(derivatives, Y, loss, gram=True)
    assert torch.equal(maps.outer, gram) and _close(hs.loss_hessian(mlp, theta, X, Y, loss), maps.loss)
    index = torch.arange(mlp.num_params) % 3 != 1
    assert torch.equal(maps.restricted(index).gram, gram[index][:, index])


@given(
    n=st.integers(1, 6),
    d=st.integers(1, 5),
    k=st.integers(1, 4),
    hidden=st.lists(st.integers(1, 4), max_size=3),
    activation=st.sampled_from(hs.ACTIVATIONS),
    bias=st.booleans(),
    loss=st.sampled_from(hs.LOSSES),
    seed=st.integers(0, 2**16),
)
def test_structural_maps_equal_autodiff_on_random_networks(n, d, k, hidden, activation, bias, loss, seed):
    mlp, theta = _net((d, *hidden, k), activation, bias=bias, seed=seed)
    X, Y = _data(n, d, k, min(n, d), seed)
    (jac, jac_s), (hess, hess_s) = _autodiff_and_structural(mlp, theta, X, Y, loss)
    assert _close(jac, jac_s) and _close(hess, hess_s)


# ----------------------------------------------------------------------------------------------------- ranks
def test_rank_report_of_a_known_spectrum():
    eigenvalues = torch.tensor([5.0, -2.0, 1e-3, 1e-20, 0.0], dtype=torch.float64)
    report = hs.rank_report(eigenvalues, 5)
    assert report.rank == 3 and report.largest == 5.0
    assert report.tolerance == pytest.approx(5.0 * 5 * torch.finfo(torch.float64).eps)
    assert report.ranks_at == {"0.01": 3, "1": 3, "100": 3}
    assert report.gap_log10 == pytest.approx(17.0)
    assert hs.rank_report(torch.zeros(3, dtype=torch.float64), 3).rank == 0
    full = hs.rank_report(torch.tensor([1.0, 2.0], dtype=torch.float64), 2)
    assert full.rank == 2 and full.gap_log10 is None
    exact_zeros = hs.rank_report(torch.tensor([1.0, 0.0], dtype=torch.float64), 2)
    assert exact_zeros.rank == 1 and exact_zeros.gap_log10 is None


def test_rank_report_recounts_at_other_tolerances():
    eps = torch.finfo(torch.float64).eps
    report = hs.rank_report(torch.tensor([1.0, 4 * eps * 10, 4 * eps * 0.5], dtype=torch.float64), 4)
    assert report.rank == 2 and report.ranks_at == {"0.01": 3, "1": 2, "100": 1}


@given(m=st.integers(1, 12), p=st.integers(1, 12), k=st.integers(1, 12), seed=st.integers(0, 2**16))
def test_gram_rank_equals_matrix_rank_of_the_gram_matrix(m, p, k, seed):
    g = torch.Generator().manual_seed(seed)
    k = min(k, m, p)
    G = torch.randn(m, k, generator=g, dtype=torch.float64) @ torch.randn(k, p, generator=g, dtype=torch.float64)
    gram = G.T @ G
    assert hs.gram_rank(G).rank == int(torch.linalg.matrix_rank(gram, hermitian=True)) == k
    assert hs.symmetric_rank(gram).rank == k


def _dense_ranks(maps) -> dict[str, hs.RankReport]:
    """The reference: every map decomposed at its full p × p (p × nK for G) size."""
    return {
        "loss": hs.symmetric_rank(maps.loss),
        "outer": hs.gram_rank(maps.outer_factor),
        "functional": hs.symmetric_rank(maps.functional),
    }


def _dead_unit_network(bias: bool = False):
    """d = 4 → ReLU 5 → ReLU 3 → 2 on positive inputs whose input 2 is always zero; positive hidden weights (every
    unit active) except the incoming weights of hidden unit 1 of layer 1, negative (never active)."""
    mlp, theta = _net((4, 5, 3, 2), "relu", bias=bias, seed=21)
    X = torch.rand(8, 4, generator=torch.Generator().manual_seed(22), dtype=torch.float64) + 0.1
    X[:, 2] = 0.0
    (w1, b1), (w2, b2), _ = hs.unflatten(mlp, theta)  # views into θ
    w1.abs_(), w2.abs_()
    w1[1] = -w1[1]
    if bias:
        b1.abs_(), b2.abs_()
        b1[1] = -1.0
    Y = torch.eye(2, dtype=torch.float64)[torch.arange(8) % 2]
    return mlp, theta, X, Y


def test_inert_parameters_are_the_dead_inputs_and_dead_units():
    mlp, theta, X, Y = _dead_unit_network()
    maps = hs.hessian_maps(mlp, theta, X, Y, "mse")
    inert = hs.inert_parameters(maps)
    index = torch.arange(mlp.num_params)
    w1 = index[:20].reshape(5, 4)  # W^1 (5 × 4), then W^2 (3 × 5), then W^3 (2 × 3)
    w2 = index[20:35].reshape(3, 5)
    expected = torch.zeros(mlp.num_params, dtype=torch.bool)
    expected[w1[:, 2]] = True  # input 2 is zero in every sample
    expected[w1[1]] = True  # unit 1 never active: its incoming weights …
    expected[w2[:, 1]] = True  # … and its outgoing weights
    assert torch.equal(inert, expected)
    for matrix in (maps.loss, maps.outer, maps.functional):
        assert torch.count_nonzero(matrix[inert]) == 0 and torch.count_nonzero(matrix[:, inert]) == 0


def _spectra_agree(maps) -> bool:
    """eig(H) = eig(H restricted off the inert parameters) ∪ zeros, for H_L, H_O (via σ(G)²) and H_F: the sorted
    magnitudes agree to float64 rounding (≤ p·eps·|λ|max, the tolerance τ), the dense extra ones are ≤ τ."""
    live = ~hs.inert_parameters(maps)
    compact = hs.HessianMaps(maps.outer_factor[:, live], maps.functional[live][:, live])
    size, eps = maps.functional.shape[-1], torch.finfo(torch.float64).eps
    for dense, restricted in (
        (torch.linalg.eigvalsh(maps.loss), torch.linalg.eigvalsh(compact.loss)),
        (torch.linalg.svdvals(maps.outer_factor) ** 2, torch.linalg.svdvals(compact.outer_factor) ** 2),
        (torch.linalg.eigvalsh(maps.functional), torch.linalg.eigvalsh(compact.functional)),
    ):
        dense = dense.abs().sort(descending=True).values
        restricted = restricted.abs().sort(descending=True).values
        tau = size * eps * float(dense[0])
        if not (
            torch.allclose(dense[: len(restricted)], restricted, rtol=0, atol=tau)
            and bool((dense[len(restricted) :] <= tau).all())
        ):
            return False
    return True


@pytest.mark.parametrize("loss", hs.LOSSES)
@pytest.mark.parametrize("bias", [False, True])
def test_ranks_without_inert_parameters_equal_the_dense_ranks(loss, bias):
    """The restricted decomposition gives the dense spectrum (minus zeros), so the same rank at τ and 100τ, and the
    same τ (it counts the full p). At τ/100 < eps·|λ|max (p < 100 here) the dense count may include the rounding noise
    of the inert block's zero eigenvalues, which the restricted one does not have: not compared."""
    mlp, theta, X, Y = _dead_unit_network(bias)
    maps = hs.hessian_maps(mlp, theta, X, Y, loss)
    assert hs.inert_parameters(maps).sum() >= 4 + 4 + 3
    assert _spectra_agree(maps)
    compact, dense = hs.hessian_ranks(maps), _dense_ranks(maps)
    for kind in compact:
        assert compact[kind].rank == dense[kind].rank and compact[kind].ranks_at["100"] == dense[kind].ranks_at["100"]
        assert compact[kind].largest == pytest.approx(dense[kind].largest, rel=1e-12)
        assert compact[kind].tolerance == pytest.approx(dense[kind].tolerance, rel=1e-12)  # τ counts the full p


def test_a_map_without_inert_parameters_is_decomposed_whole():
    mlp, theta = _net((3, 4, 2), "tanh", seed=4)
    X, Y = _data(6, 3, 2, 3, seed=4)
    maps = hs.hessian_maps(mlp, theta, X, Y, "ce")
    assert not hs.inert_parameters(maps).any()
    compact, dense = hs.hessian_ranks(maps), _dense_ranks(maps)
    assert all(compact[kind] == dense[kind] for kind in compact)


@given(
    n=st.integers(1, 8),
    d=st.integers(1, 5),
    zero_inputs=st.integers(0, 3),
    k=st.integers(2, 4),
    hidden=st.lists(st.integers(1, 5), max_size=2),
    activation=st.sampled_from(hs.ACTIVATIONS),
    loss=st.sampled_from(hs.LOSSES),
    seed=st.integers(0, 2**16),
)
def test_restricted_spectra_equal_the_dense_spectra_on_random_networks(
    n, d, zero_inputs, k, hidden, activation, loss, seed
):
    """Random networks, data with always-zero inputs (ReLU adds dead units by chance): the restricted decompositions
    give the dense spectra (minus zeros) and the same rank at τ."""
    X, Y = _data(n, d + zero_inputs, k, min(n, d + zero_inputs), seed)
    X[:, :zero_inputs] = 0.0
    mlp, theta = _net((d + zero_inputs, *hidden, k), activation, seed=seed)
    maps = hs.hessian_maps(mlp, theta, X, Y, loss)
    assert _spectra_agree(maps)
    compact, dense = hs.hessian_ranks(maps), _dense_ranks(maps)
    assert {kind: r.rank for kind, r in compact.items()} == {kind: r.rank for kind, r in dense.items()}


# ----------------------------------------------------------------------------------------------------- linear range
def test_leading_basis_contains_every_leading_set_of_generators_even_dependent_ones():
    g = torch.Generator().manual_seed(3)
    A = torch.randn(6, 2, generator=g, dtype=torch.float64)
    A = torch.cat([A, A @ torch.tensor([[1.0], [2.0]], dtype=torch.float64), torch.zeros(6, 1)], dim=1)  # rank 2
    Q = hs.leading_basis(A)
    assert torch.allclose(Q.T @ Q, torch.eye(6, dtype=torch.float64), atol=1e-14)
    for j in range(1, 5):
        inside = Q[:, :j] @ (Q[:, :j].T @ A[:, :j])
        assert torch.allclose(inside, A[:, :j], atol=1e-14)
    assert torch.equal(hs.leading_basis(torch.zeros(3, 0, dtype=torch.float64)), torch.eye(3, dtype=torch.float64))


def _linear_point(widths, n, rank, zero_inputs, seed):
    mlp, theta = _net(widths, seed=seed)
    X, Y = _data(n, widths[0], widths[-1], rank, seed)
    X[:, :zero_inputs] = 0.0
    return mlp, theta, X, Y


def test_range_bases_are_orthogonal_and_span_the_generators():
    mlp, theta, X, Y = _linear_point((12, 15, 15, 4), 8, 6, 3, seed=5)
    derivatives = hs.network_derivatives(mlp, theta, X)
    residual = hs.output_gradient("mse", derivatives.outputs, Y)
    bases = hs.linear_range_bases(derivatives, residual)
    for l, basis in enumerate(bases):
        for Q in (basis.outputs, basis.inputs):
            assert torch.allclose(Q.T @ Q, torch.eye(Q.shape[0], dtype=torch.float64), atol=1e-13)
        # 𝓓_l: the rows of C_l lie in the first t = 4 output directions
        rotated = derivatives.chain[-1][l][0] @ basis.outputs
        assert l == 2 or rotated[:, 4:].abs().max() <= 1e-13 * rotated.abs().max()
        # 𝓔_{l-1}: Σ_i a_i g_iᵀ lies in the first e = 4 input directions (of the layers that are column layers)
        if l < 2:
            correlation = basis.inputs.T @ derivatives.inputs[l].T @ residual
            assert correlation[4:].abs().max() <= 1e-13 * correlation.abs().max()
    # the first layer: the 9 active inputs first, exactly (a permutation and a rotation among them)
    assert torch.equal(bases[0].inputs[:3, :9], torch.zeros(3, 9, dtype=torch.float64))
    assert bases[0].keep.sum() == 15 * 4 + 4 * (9 - 4)  # b < e = 4 (column layer), a < t = 4 and b < nz = 9 (J)
    assert bases[1].keep.sum() == 15 * 15 - (15 - 4) * (15 - 4)  # a < t (row layer) or b < e (column layer)
    assert bases[2].keep.all()  # the output layer: 𝓓 = R^K, no rotation
    assert torch.equal(bases[2].outputs, torch.eye(4, dtype=torch.float64))
    assert torch.equal(bases[2].inputs, torch.eye(15, dtype=torch.float64))
    with pytest.raises(ValueError, match="bias-free linear"):
        relu, theta_relu = _net((3, 4, 2), "relu")
        hs.linear_range_bases(hs.network_derivatives(relu, theta_relu, X[:, :3]), Y[:, :2])


def test_range_bases_rotate_nothing_where_no_direction_can_be_dropped():
    """Hidden widths ≤ K: 𝓓_l is the whole output side of every layer; only the inactive inputs go."""
    mlp, theta, X, Y = _linear_point((12, 4, 4, 4), 8, 6, 3, seed=5)
    derivatives = hs.network_derivatives(mlp, theta, X)
    bases = hs.linear_range_bases(derivatives, hs.output_gradient("ce", derivatives.outputs, Y))
    assert all(torch.equal(b.outputs, torch.eye(4, dtype=torch.float64)) for b in bases)
    assert torch.equal(bases[0].inputs, torch.eye(12, dtype=torch.float64)[:, [*range(3, 12), 0, 1, 2]])
    assert bases[0].keep.sum() == 4 * 9 and bases[1].keep.all() and bases[2].keep.all()
    reduced = hs.reduced_maps(mlp, theta, X, Y, "ce")
    maps = hs.hessian_maps(mlp, theta, X, Y, "ce")
    live = ~hs.inert_parameters(maps)
    assert torch.equal(reduced.functional, maps.functional[live][:, live])  # the same numbers, permuted


@pytest.mark.parametrize("loss", hs.LOSSES)
def test_rotated_maps_vanish_off_the_kept_coordinates(loss):
    mlp, theta, X, Y = _linear_point((10, 12, 12, 12, 3), 20, 7, 2, seed=9)
    derivatives = hs.network_derivatives(mlp, theta, X)
    bases = hs.linear_range_bases(derivatives, hs.output_gradient(loss, derivatives.outputs, Y))
    keep = torch.cat([basis.keep.flatten() for basis in bases])
    rotated = hs.maps_from_derivatives(hs.rotate_derivatives(derivatives, bases), Y, loss)
    full = hs.hessian_maps(mlp, theta, X, Y, loss)
    assert rotated.functional[~keep].abs().max() <= 1e-13 * full.functional.abs().max()
    assert rotated.outer_factor[:, ~keep].abs().max() <= 1e-13 * full.outer_factor.abs().max()
    # an orthogonal change of coordinates: the same Frobenius norms
    assert torch.linalg.norm(rotated.loss) == pytest.approx(float(torch.linalg.norm(full.loss)), rel=1e-12)


@given(
    n=st.integers(1, 9),
    d=st.integers(1, 6),
    zero_inputs=st.integers(0, 2),
    k=st.integers(2, 4),
    hidden=st.lists(st.integers(1, 6), max_size=3),
    deficiency=st.integers(0, 3),
    loss=st.sampled_from(hs.LOSSES),
    seed=st.integers(0, 2**16),
)
def test_reduced_maps_of_linear_networks_keep_the_spectra(n, d, zero_inputs, k, hidden, deficiency, loss, seed):
    """Bottlenecks, r < d, n < d, zero inputs: eig(QᵀHQ) = eig(H) ∪ zeros for H_L, H_O, H_F, and the ranks are the
    closed forms."""
    rank = max(1, min(n, d) - deficiency)
    mlp, theta, X, Y = _linear_point((d + zero_inputs, *hidden, k), n, rank, 0, seed)
    X[:, d:] = 0.0
    maps, reduced = hs.hessian_maps(mlp, theta, X, Y, loss), hs.reduced_maps(mlp, theta, X, Y, loss)
    size, eps = mlp.num_params, torch.finfo(torch.float64).eps
    for dense, restricted in (
        (torch.linalg.eigvalsh(maps.loss), torch.linalg.eigvalsh(reduced.loss)),
        (torch.linalg.svdvals(maps.outer_factor) ** 2, torch.linalg.svdvals(reduced.outer_factor) ** 2),
        (torch.linalg.eigvalsh(maps.functional), torch.linalg.eigvalsh(reduced.functional)),
    ):
        dense = dense.abs().sort(descending=True).values
        restricted = restricted.abs().sort(descending=True).values
        tau = size * eps * float(dense[0])
        assert torch.allclose(dense[: len(restricted)], restricted, rtol=1e-9, atol=tau)
        assert bool((dense[len(restricted) :] <= tau).all())
    ranks = hs.hessian_ranks(reduced, size)
    assert {kind: r.rank for kind, r in ranks.items()} == hs.predicted_ranks(hs.data_rank(X), hidden, k, loss)


def test_reduced_maps_of_other_networks_are_the_full_maps():
    for activation, bias in (("relu", False), ("linear", True)):
        mlp, theta = _net((4, 5, 3), activation, bias=bias, seed=2)
        X, Y = _data(6, 4, 3, 4, seed=2)
        reduced, full = hs.reduced_maps(mlp, theta, X, Y, "ce"), hs.hessian_maps(mlp, theta, X, Y, "ce")
        assert torch.equal(reduced.functional, full.functional) and torch.equal(reduced.outer_factor, full.outer_factor)


def test_small_maps_are_decomposed_whole_and_large_ones_restricted(monkeypatch):
    assert not hs.restricts(799) and hs.restricts(800)
    calls = []
    original = hs.reduced_maps
    monkeypatch.setattr(hs, "reduced_maps", lambda *a: calls.append(a[0].num_params) or original(*a))
    for widths in ((16, 25, 10), (16, 25, 25, 10)):  # p = 650 (whole), 1,275 (restricted)
        mlp, theta, X, Y = _linear_point(widths, 50, 9, 7, seed=1)
        ranks = hs.map_ranks(mlp, theta, X, Y, "mse")
        assert {kind: r.rank for kind, r in ranks.items()} == hs.predicted_ranks(9, widths[1:-1], 10, "mse")
        maps = hs.hessian_maps(mlp, theta, X, Y, "mse")
        assert all(
            ranks[kind].tolerance == pytest.approx(report.tolerance, rel=1e-10)
            for kind, report in _dense_ranks(maps).items()
        )
    assert calls == [1275]


# ----------------------------------------------------------------------------------------------------- formulas
def test_closed_forms_reproduce_the_spec_examples():
    # n = 50, d = 16 (r = 16), K = 10, six hidden layers of width 25, MSE
    assert hs.predicted_ranks(16, [25] * 6, 10, "mse") == {"outer": 160, "functional": 2500, "loss": 2560}
    # 8×8 digits with r = 56, hidden (10, 10), log-cosh
    assert hs.predicted_ranks(56, [10, 10], 10, "logcosh") == {"outer": 560, "functional": 300, "loss": 760}
    # the authors' committed MNIST / CE width sweep (r = 41): H_L 216, 464, 639, 783 … 1,503; H_O plateau 9·41
    sweep = [hs.predicted_ranks(41, [w, w], 10, "ce") for w in range(4, 40, 4)]
    assert [s["loss"] for s in sweep[:4]] == [216, 464, 639, 783] and sweep[-1]["loss"] == 1503
    assert all(s["outer"] == 369 for s in sweep[2:])


def test_closed_forms_without_hidden_layer():
    assert hs.predicted_ranks(5, [], 3, "mse") == {"outer": 15, "functional": 0, "loss": 15}
    assert hs.predicted_ranks(5, [], 3, "ce") == {"outer": 10, "functional": 0, "loss": 10}


@given(
    n=st.integers(1, 9),
    d=st.integers(1, 6),
    k=st.integers(2, 4),
    hidden=st.lists(st.integers(1, 5), max_size=3),
    deficiency=st.integers(0, 3),
    loss=st.sampled_from(hs.LOSSES),
    seed=st.integers(0, 2**16),
)
def test_closed_forms_equal_numerical_ranks_of_linear_networks(n, d, k, hidden, deficiency, loss, seed):
    """The property of the paper: a generic linear network has exactly the predicted ranks, for every depth, width
    (bottlenecks included), n, d, K, loss and data rank r ≤ min(n, d)."""
    rank = max(1, min(n, d) - deficiency)
    X, Y = _data(n, d, k, rank, seed)
    mlp, theta = _net((d, *hidden, k), seed=seed)
    r = hs.data_rank(X)
    assert r == rank
    measured = {kind: report.rank for kind, report in hs.hessian_ranks(hs.hessian_maps(mlp, theta, X, Y, loss)).items()}
    assert measured == hs.predicted_ranks(r, hidden, k, loss)


@given(
    n=st.integers(2, 9),
    d=st.integers(2, 6),
    k=st.integers(2, 4),
    hidden=st.lists(st.integers(1, 5), max_size=2),
    deficiency=st.integers(0, 3),
    loss=st.sampled_from(hs.LOSSES),
    activation=st.sampled_from(["relu", "tanh"]),
    seed=st.integers(0, 2**16),
)
def test_nonlinear_ranks_respect_the_exact_bounds(n, d, k, hidden, deficiency, loss, activation, seed):
    rank = max(1, min(n, d) - deficiency)
    X, Y = _data(n, d, k, rank, seed)
    mlp, theta = _net((d, *hidden, k), activation, seed=seed)
    reports = hs.hessian_ranks(hs.hessian_maps(mlp, theta, X, Y, loss))
    bounds = hs.rank_upper_bounds(mlp, n, hs.data_rank(X), loss)
    assert all(reports[kind].rank <= bounds[kind] for kind in bounds)


def test_rank_upper_bounds_of_small_networks():
    # d = 4, r = 2, M_1 = 3, K = 2 (K' = 1 for CE): (d − r)·M_1 input-null directions, M_{L−1} softmax-shift ones
    mlp = MLP((4, 3, 2))
    bounds = hs.rank_upper_bounds(mlp, 10, 2, "ce")
    assert bounds["loss"] == mlp.num_params - (4 - 2) * 3 - 3
    assert bounds["outer"] == min(bounds["loss"], 10 * 1)
    relu = MLP((4, 3, 2), activation="relu")
    assert hs.rank_upper_bounds(relu, 10, 2, "mse")["functional"] == 2 * 3 * 2
    with pytest.raises(ConfigError, match="bias-free"):
        hs.rank_upper_bounds(MLP((4, 3, 2), bias=True), 10, 2, "mse")


def test_data_rank_is_the_rank_of_the_gram_matrix():
    X, _ = _data(7, 5, 2, 3, seed=4)
    assert hs.data_rank(X) == 3 == int(torch.linalg.matrix_rank(X.T @ X, hermitian=True))


# ----------------------------------------------------------------------------------------------------- biases
def _data_with_ones(n: int, d: int, k: int, rank: int, ones_in_span: bool, seed: int):
    """X (n, d) of rank ``rank`` whose column space holds the all-ones vector when ``ones_in_span``, and one-hot Y."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(n, rank, generator=g, dtype=torch.float64)
    if ones_in_span:
        basis[:, 0] = 1.0
    X = basis @ torch.randn(rank, d, generator=g, dtype=torch.float64)
    Y = torch.eye(k, dtype=torch.float64)[torch.randint(k, (n,), generator=g)]
    return X, Y


def test_outer_rank_with_biases_of_small_cases_by_hand():
    # r = 6, K = 4, one hidden layer of 3: q = 3, bias-free 3·(6 + 4 − 3) = 21
    assert hs.predicted_outer_rank_with_biases(6, 7, [3], 4, "mse") == 21 + 4  # 1 ∉ col X: + K
    assert hs.predicted_outer_rank_with_biases(6, 6, [3], 4, "mse") == 21 + 1  # 1 ∈ col X, q < r: + K − q
    assert hs.predicted_outer_rank_with_biases(6, 6, [3], 4, "ce") == 18  # K' = 3 = q: nothing added
    assert hs.predicted_outer_rank_with_biases(6, 7, [3], 4, "ce") == 18 + 3
    assert hs.predicted_outer_rank_with_biases(3, 3, [5], 4, "mse") == 3 * 4  # q = r: every K × r map already
    assert hs.predicted_outer_rank_with_biases(6, 7, [], 4, "mse") == 4 * 7  # one affine layer: K · rank [X 1]
    with pytest.raises(ValueError, match="one more"):
        hs.predicted_outer_rank_with_biases(6, 8, [3], 4, "mse")


@pytest.mark.parametrize("ones_in_span", [False, True])
@pytest.mark.parametrize("loss", hs.LOSSES)
@pytest.mark.parametrize(
    ("n", "d", "hidden", "k", "rank"),
    [(12, 6, (3,), 4, 6), (12, 6, (5,), 4, 6), (12, 6, (2,), 4, 6), (12, 8, (3, 4), 4, 5), (12, 6, (), 4, 6),
     (12, 8, (2, 3), 5, 5), (30, 8, (3, 6), 5, 8), (5, 8, (3,), 4, 5), (12, 3, (4,), 5, 2)],
)  # fmt: skip
def test_outer_rank_with_biases_equals_the_numerical_rank(n, d, hidden, k, rank, loss, ones_in_span):
    """Random float64 networks with non-zero biases on data with and without the all-ones vector in their column
    space (n = r forces it in): the numerical rank of H_O is the closed form."""
    X, Y = _data_with_ones(n, d, k, rank, ones_in_span, seed=1)
    mlp, theta = _net((d, *hidden, k), bias=True, seed=3)
    r, augmented = hs.data_rank(X), hs.augmented_data_rank(X)
    assert r == rank and augmented == rank + (0 if ones_in_span or n == rank else 1)
    report = hs.hessian_ranks(hs.hessian_maps(mlp, theta, X, Y, loss), mlp.num_params, restrict=False)["outer"]
    assert report.rank == hs.predicted_outer_rank_with_biases(r, augmented, hidden, k, loss)


def test_diagonal_blocks_are_placed_exactly_symmetric_and_symmetric_ones_unchanged():
    """Some CPUs' BLAS kernels return EᵀE not exactly symmetric (the structural gram failed torch.equal(G, Gᵀ) on an
    AMD EPYC): a diagonal block is written as (B + Bᵀ)/2, which is B bit for bit when B is symmetric."""
    generator = torch.Generator().manual_seed(0)
    factor = torch.randn(3, 3, generator=generator, dtype=torch.float64)
    symmetric = factor @ factor.T
    symmetric = torch.tril(symmetric) + torch.tril(symmetric, -1).T  # exactly symmetric whatever the BLAS
    skewed = symmetric.clone()
    skewed[0, 1] += 1e-15
    off_diagonal = torch.randn(2, 3, generator=generator, dtype=torch.float64)
    for block, exact in ((symmetric, True), (skewed, False)):
        matrix = torch.zeros(5, 5, dtype=torch.float64)
        hs._place_symmetric(matrix, [0, 3, 5], 0, 0, block)
        hs._place_symmetric(matrix, [0, 3, 5], 1, 0, off_diagonal)
        assert torch.equal(matrix, matrix.T)
        assert torch.equal(matrix[:3, :3], block) is exact and torch.equal(matrix[3:, :3], off_diagonal)


@pytest.mark.parametrize("activation", ["linear", "relu", "tanh"])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("loss", ["mse", "ce", "logcosh"])
def test_the_maps_are_built_where_the_parameters_and_data_are(activation, bias, loss, meta_device):
    """Chapter 5's GPU jobs build J, H_O, H_F and H_L on the device of θ and the data (meta standing in for a GPU):
    no helper tensor (identities, index ranges, output curvature) is made on the CPU."""
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(12, 5, generator=generator, dtype=torch.float64)
    Y = torch.nn.functional.one_hot(torch.arange(12) % 3, 3).double()
    mlp = MLP((5, 4, 4, 3), activation, bias)
    theta = hs.glorot_normal_init(mlp, generator)
    built = hs.hessian_maps(mlp, theta.to(meta_device), X.to(meta_device), Y.to(meta_device), loss)
    tensors = {name: value for name, value in vars(built).items() if isinstance(value, torch.Tensor)}
    assert tensors and all(value.device == meta_device for value in tensors.values())
    with pytest.raises(RuntimeError, match="device"):
        hs.hessian_maps(mlp, theta.to(meta_device), X, Y, loss)
