"""The log-domain order-784 CP classifier (§2.2): forward, exact gradient, zeros, overflow, Adam, fit and resume."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

import rankrepro.factorization.log_cp as log_cp
from rankrepro.core.checkpoint import load_checkpoint
from rankrepro.core.errors import CheckpointError
from rankrepro.core.optim import Adam
from rankrepro.factorization.log_cp import (
    BinaryRows,
    FitSettings,
    binarize_images,
    clamped_squared_error,
    direct_product_forward,
    distinct_slices,
    epoch_permutation,
    fit,
    init_factors,
    log_cp_forward,
    log_cp_mse_and_grad,
)

ORDER, RANK, N = 6, 3, 20


def _problem(seed: int = 0, batch: int = 2, order: int = ORDER, rank: int = RANK, n: int = N, per_run: bool = False):
    """Factors with mixed signs (so parities matter), binary X (shared or per run), real targets."""
    g = torch.Generator().manual_seed(seed)
    factors = torch.randn(batch, order, 2, rank, generator=g) + 0.3
    shape = (batch, n, order) if per_run else (n, order)
    X = (torch.rand(shape, generator=g) < 0.5).to(torch.float64)
    y = torch.randn(n, generator=g)
    return factors, X, y


def _direct_mse(factors: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (direct_product_forward(factors, X) - y).pow(2).mean(-1)


def _autograd(factors: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    leaf = factors.clone().requires_grad_(True)
    loss = _direct_mse(leaf, X, y)
    (grad,) = torch.autograd.grad(loss.sum(), leaf)
    return loss.detach(), grad


# ---------------------------------------------------------------------------------------------------------------
# data and initialisation


def test_binarize_images_thresholds_at_half_and_flattens():
    images = np.zeros((2, 28, 28), dtype=np.uint8)
    images[0, 0, :4] = [127, 128, 255, 0]
    images[1, 27, 27] = 200
    X = binarize_images(images)
    assert X.dtype == torch.float64 and X.shape == (2, 784)
    assert X[0, :4].tolist() == [0.0, 1.0, 1.0, 0.0]
    assert X.sum().item() == 3.0 and X[1, 783].item() == 1.0
    # round(pixel / 255) for every possible pixel value
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 256)
    expected = np.round(np.arange(256) / 255.0)
    assert binarize_images(pixels)[0].tolist() == expected.tolist()
    assert torch.equal(binarize_images(torch.from_numpy(images)), X)
    with pytest.raises(ValueError, match="uint8"):
        binarize_images(images.astype(np.float32))


def test_init_factors_per_run_generators():
    gens = [torch.Generator().manual_seed(s) for s in (3, 4)]
    factors = init_factors(2, 784, 5, 1.0, 1e-3, generators=gens)
    assert factors.shape == (2, 784, 2, 5) and factors.dtype == torch.float64
    alone = init_factors(1, 784, 5, 1.0, 1e-3, generators=[torch.Generator().manual_seed(4)])
    assert torch.equal(alone[0], factors[1])  # a run's draw does not depend on the other runs
    assert abs(factors.mean().item() - 1.0) < 1e-4 and abs(factors.std().item() - 1e-3) < 1e-4
    with pytest.raises(ValueError, match="one generator per run"):
        init_factors(3, 10, 2, generators=gens)


# ---------------------------------------------------------------------------------------------------------------
# forward and gradient on small orders, against the direct float64 product


@pytest.mark.parametrize("per_run", [False, True])
def test_forward_equals_direct_product_with_signs(per_run):
    factors, X, _ = _problem(per_run=per_run)
    assert (factors < 0).any() and (factors > 0).any()
    reference = direct_product_forward(factors, X)
    assert (reference < 0).any()  # negative products: the parity of the selected negative factors matters
    torch.testing.assert_close(log_cp_forward(factors, X), reference, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(log_cp_forward(factors, BinaryRows.from_dense(X)), reference, rtol=1e-12, atol=1e-14)


def test_sign_of_each_component_is_the_parity_of_selected_negative_factors():
    factors = torch.full((1, 4, 2, 1), 2.0)
    factors[0, 1, 1, 0] = -2.0  # negative only when x_1 = 1
    factors[0, 3, 0, 0] = -2.0  # negative only when x_3 = 0
    X = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 1.0]])
    assert log_cp_forward(factors, X)[0].tolist() == pytest.approx([-16.0, 16.0, -16.0, 16.0], rel=1e-14)


@pytest.mark.parametrize("per_run", [False, True])
def test_loss_and_gradient_equal_autograd_of_direct_product(per_run):
    factors, X, y = _problem(seed=1, per_run=per_run)
    expected_loss, expected_grad = _autograd(factors, X, y)
    for design in (X, BinaryRows.from_dense(X)):
        loss, grad = log_cp_mse_and_grad(factors, design, y)
        torch.testing.assert_close(loss, expected_loss, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-12)


def test_gradient_matches_central_finite_differences():
    factors, X, y = _problem(seed=2, batch=1)
    y_runs = y.expand(1, -1)
    _, grad = log_cp_mse_and_grad(factors, X, y_runs)
    h = 1e-6
    for p, x, r in [(0, 0, 0), (2, 1, 1), (5, 0, 2), (3, 1, 0)]:
        plus, minus = factors.clone(), factors.clone()
        plus[0, p, x, r] += h
        minus[0, p, x, r] -= h
        numeric = (log_cp_mse_and_grad(plus, X, y)[0] - log_cp_mse_and_grad(minus, X, y)[0]) / (2 * h)
        assert grad[0, p, x, r].item() == pytest.approx(numeric.item(), rel=1e-6, abs=1e-8)


def test_exact_zero_factors_give_finite_exact_gradients():
    """F = 0 is handled exactly: the gradient at a zero is the product of the others (no floor, no NaN)."""
    factors, X, y = _problem(seed=3, batch=3)
    factors[0, 2, 1, 0] = 0.0  # one zero: samples with x_2 = 1 have z = 1 in component 0
    factors[1, 2, 1, 1] = 0.0  # two zeros in one component: samples selecting both have z = 2
    factors[1, 4, 0, 1] = 0.0
    factors[2] = 0.0  # all zeros: every prediction 0, and z ≥ 2 everywhere
    factors[2, 0, 0, 2] = 1.0
    expected_loss, expected_grad = _autograd(factors, X, y)
    assert ((X[:, 2] == 1) & (X[:, 4] == 0)).any()  # the two-zero case is exercised
    for design in (X, BinaryRows.from_dense(X)):
        loss, grad = log_cp_mse_and_grad(factors, design, y)
        assert torch.isfinite(grad).all() and torch.isfinite(loss).all()
        torch.testing.assert_close(loss, expected_loss, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-12)
    # the gradient at the single zero, by hand: Σ over the samples selecting it of g_b · (product of the others)
    residual = direct_product_forward(factors, X)[0] - y
    others = torch.ones(N)
    for q in range(ORDER):
        if q != 2:
            others = others * torch.where(X[:, q].bool(), factors[0, q, 1, 0], factors[0, q, 0, 0])
    by_hand = ((2 / N) * residual * others * X[:, 2]).sum()
    assert by_hand.abs().item() > 1e-6
    assert grad[0, 2, 1, 0].item() == pytest.approx(by_hand.item(), rel=1e-12)
    torch.testing.assert_close(log_cp_forward(factors, X), direct_product_forward(factors, X), rtol=1e-12, atol=1e-14)


def test_exact_zeros_with_positive_factors():
    """Zeros without negative entries (the sign columns are skipped then): still the direct product's gradient."""
    factors, X, y = _problem(seed=10, batch=2)
    factors = factors.abs() + 0.1
    factors[0, 1, 0, 2] = 0.0
    factors[1, 3, 1, 0] = 0.0
    factors[1, 5, 1, 0] = 0.0
    expected_loss, expected_grad = _autograd(factors, X, y)
    for design in (X, BinaryRows.from_dense(X)):
        loss, grad = log_cp_mse_and_grad(factors, design, y)
        torch.testing.assert_close(loss, expected_loss, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-12)


def test_per_run_X_equals_shared_X():
    factors, X, y = _problem(seed=4, batch=3)
    X_runs = X.expand(3, -1, -1).clone()
    y_runs = y.expand(3, -1).clone()
    shared = log_cp_mse_and_grad(factors, X, y)
    deduplicated = BinaryRows.from_dense(X_runs)
    assert deduplicated.owners == (0, 0, 0)
    shared_sparse = log_cp_mse_and_grad(factors, BinaryRows.from_dense(X), y)
    assert all(torch.equal(a, b) for a, b in zip(log_cp_mse_and_grad(factors, deduplicated, y_runs), shared_sparse))
    for design in (X_runs, deduplicated):
        per_run = log_cp_mse_and_grad(factors, design, y_runs)
        torch.testing.assert_close(per_run[0], shared[0], rtol=1e-14, atol=0)
        torch.testing.assert_close(per_run[1], shared[1], rtol=1e-13, atol=1e-15)
        torch.testing.assert_close(log_cp_forward(factors, design), log_cp_forward(factors, X), rtol=1e-14, atol=0)


def test_binary_rows_gather_and_chunked_forward():
    factors, X, _ = _problem(seed=5, n=50)
    rows = BinaryRows.from_dense(X)
    index = torch.tensor([7, 3, 3, 49, 0])
    assert torch.equal(rows.rows(index).to_dense(), X[index])
    torch.testing.assert_close(
        log_cp_forward(factors, rows, chunk_size=7), log_cp_forward(factors, X), rtol=1e-14, atol=0
    )
    with pytest.raises(ValueError, match="0/1"):
        BinaryRows.from_dense(X * 2)


def test_from_dense_stores_equal_runs_once():
    g = torch.Generator().manual_seed(11)
    a, b = (torch.rand(9, ORDER, generator=g) < 0.5 for _ in range(2))
    rows = BinaryRows.from_dense(torch.stack([a, b, a, a, b]))
    assert rows.owners == (0, 1, 0, 0, 1) and len(rows.matrices) == 2
    assert torch.equal(rows.to_dense(), torch.stack([a, b, a, a, b]).double())
    assert torch.equal(rows.rows(torch.tensor([4, 0])).to_dense(), torch.stack([a, b, a, a, b])[:, [4, 0]].double())
    assert distinct_slices(np.stack([a.numpy(), b.numpy(), a.numpy()])) == ([0, 1], [0, 1, 0])


@pytest.mark.parametrize("rank", [1, 3])
def test_runs_sharing_a_matrix_are_bit_identical_to_runs_with_their_own(rank):
    """One scipy product for the runs of a matrix (their operands side by side) computes each run's columns exactly
    as a product of its own: the loss, the gradient and the forward are equal bit for bit."""
    factors, X, y = _problem(seed=12, batch=5, rank=rank, n=40, per_run=True)
    X[2], X[3] = X[0], X[1]
    grouped = BinaryRows.from_dense(X)
    assert len(grouped.matrices) == 3
    separate = BinaryRows(
        grouped.rows(np.arange(40)).matrices + (grouped.matrices[0], grouped.matrices[1]), owners=(0, 1, 3, 4, 2)
    )
    assert torch.equal(separate.to_dense(), grouped.to_dense())
    for one, other in ((grouped, separate), (grouped.rows(np.arange(39, 0, -3)), separate.rows(np.arange(39, 0, -3)))):
        n = one.n_samples
        loss_a, grad_a = log_cp_mse_and_grad(factors, one, y[:n])
        loss_b, grad_b = log_cp_mse_and_grad(factors, other, y[:n])
        assert torch.equal(loss_a, loss_b) and torch.equal(grad_a, grad_b)
        assert torch.equal(log_cp_forward(factors, one), log_cp_forward(factors, other))


def test_binary_rows_rejects_inconsistent_owners():
    matrix = BinaryRows.from_dense(torch.ones(3, ORDER)).matrices[0]
    with pytest.raises(ValueError, match="owners"):
        BinaryRows([matrix, matrix], owners=(0, 0))
    with pytest.raises(ValueError, match="shared"):
        BinaryRows([matrix, matrix])


# ---------------------------------------------------------------------------------------------------------------
# order 784: why the log domain


def test_order_784_products_overflow_float32_but_not_the_log_domain():
    """1.2^784 ≈ 1e62: the direct float32 product is inf (its loss and gradient useless); the log domain is exact."""
    g = torch.Generator().manual_seed(6)
    factors = 1.2 * (1 + 0.01 * torch.randn(1, 784, 2, 2, generator=g))
    X = (torch.rand(30, 784, generator=g) < 0.5).to(torch.float64)
    y = 2.0 * (torch.rand(30, generator=g) < 0.5).to(torch.float64)

    # reference: Σ_p log F[p, x_p, r] summed sample by sample (no matmul), then Σ_r exp(·) as exp(logsumexp)
    selected = torch.where(X.bool()[None, :, :, None], factors[:, None, :, 1, :], factors[:, None, :, 0, :])
    log_terms = selected.log().sum(2)  # (1, n, R)
    reference = torch.logsumexp(log_terms, dim=-1).exp()
    assert reference.min() > 1e55 and torch.isfinite(reference).all()

    forward = log_cp_forward(factors, X)
    assert torch.isfinite(forward).all()
    torch.testing.assert_close(forward, reference, rtol=1e-11, atol=0)
    torch.testing.assert_close(log_cp_forward(factors, BinaryRows.from_dense(X)), reference, rtol=1e-11, atol=0)

    direct32 = direct_product_forward(factors.to(torch.float32), X)
    assert torch.isinf(direct32).all()  # float32 max ≈ 3.4e38
    loss, grad = log_cp_mse_and_grad(factors, X, y)
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all()
    leaf = factors.to(torch.float32).requires_grad_(True)
    loss32 = (direct_product_forward(leaf, X) - y.to(torch.float32)).pow(2).mean()
    loss32.backward()
    assert torch.isinf(loss32) and not torch.isfinite(leaf.grad).all()


def test_order_784_products_underflow_float32_but_not_the_log_domain():
    """0.85^784 ≈ 3e-56: float32 gives exactly 0 (zero gradient, training stalls); the log domain keeps it."""
    factors = torch.full((1, 784, 2, 1), 0.85)
    X = torch.zeros(3, 784)
    X[1, :100] = 1.0
    expected = math.exp(784 * math.log(0.85))
    torch.testing.assert_close(log_cp_forward(factors, X), torch.full((1, 3), expected), rtol=1e-12, atol=0)
    assert (direct_product_forward(factors.to(torch.float32), X) == 0).all()


# ---------------------------------------------------------------------------------------------------------------
# clamped test loss


def test_clamped_squared_error_known_values():
    pred = torch.tensor([[0.0, 2.0, 5.0, -3.0], [0.5, 1.0, 2.0, 2.0]])
    y = torch.tensor([0.0, 0.0, 2.0, 2.0])
    # run 0: errors 0, 4, 9 → 4, 25 → 4;  run 1: 0.25, 1, 0, 0
    assert clamped_squared_error(pred, y).tolist() == [3.0, 1.25 / 4]
    assert clamped_squared_error(pred, y, clamp=1.0).tolist() == [0.75, 1.25 / 4]
    y_runs = torch.stack([y, torch.full((4,), 2.0)])
    assert clamped_squared_error(pred, y_runs).tolist() == [3.0, (2.25 + 1.0) / 4]


# ---------------------------------------------------------------------------------------------------------------
# Adam


def test_adam_matches_torch_optim_adam():
    g = torch.Generator().manual_seed(7)
    start = torch.randn(1, 5, 2, 3, generator=g)
    grads = [torch.randn(1, 5, 2, 3, generator=g) * 10 ** (-k) for k in range(6)]
    ours = start.clone()
    optimizer = Adam(torch.tensor([1e-2]))
    state = optimizer.init_state([ours])
    reference = start[0].clone().requires_grad_(True)
    torch_adam = torch.optim.Adam([reference], lr=1e-2, foreach=False)
    for grad in grads:
        optimizer.step([ours], [grad], state, torch.tensor([True]))
        reference.grad = grad[0].clone()
        torch_adam.step()
        torch.testing.assert_close(ours[0], reference.detach(), rtol=1e-14, atol=1e-16)
    torch_state = torch_adam.state[reference]
    torch.testing.assert_close(state["exp_avg_0"][0], torch_state["exp_avg"], rtol=1e-14, atol=1e-18)
    torch.testing.assert_close(state["exp_avg_sq_0"][0], torch_state["exp_avg_sq"], rtol=1e-14, atol=1e-20)
    assert state["step_count"].tolist() == [len(grads)]


def test_adam_batched_runs_and_frozen_runs():
    """Runs with their own lr stepped together equal runs stepped alone; a frozen run (even with a NaN gradient)
    keeps parameters, moments and step count, and later continues as if the frozen step never happened."""
    g = torch.Generator().manual_seed(8)
    start = [torch.randn(3, 4, generator=g), torch.randn(3, 2, 2, generator=g)]
    grads = [[torch.randn(3, 4, generator=g), torch.randn(3, 2, 2, generator=g)] for _ in range(3)]
    grads[1][0][2] = float("nan")  # run 2 is frozen at step 2: its NaN gradient must not leak
    lr = torch.tensor([1e-2, 3e-3, 1e-1])
    actives = [torch.tensor([True, True, True]), torch.tensor([True, True, False]), torch.tensor([True, True, True])]
    params = [p.clone() for p in start]
    optimizer = Adam(lr)
    state = optimizer.init_state(params)
    for grad, active in zip(grads, actives):
        before = [p[2].clone() for p in params] if not active[2] else None
        optimizer.step(params, grad, state, active)
        if before is not None:
            assert all(torch.equal(p[2], b) for p, b in zip(params, before))
    assert state["step_count"].tolist() == [3, 3, 2]
    for b in range(3):
        alone = [p[b : b + 1].clone() for p in start]
        single = Adam(lr[b : b + 1])
        single_state = single.init_state(alone)
        for grad, active in zip(grads, actives):
            if active[b]:
                single.step(alone, [gr[b : b + 1] for gr in grad], single_state, torch.tensor([True]))
        assert torch.equal(alone[0][0], params[0][b]) and torch.equal(alone[1][0], params[1][b])
        assert torch.isfinite(params[0][b]).all()


# ---------------------------------------------------------------------------------------------------------------
# fit: training, divergence, resume


def _fit_problem(per_run: bool = False):
    g = torch.Generator().manual_seed(9)
    order, n_train, n_test, batch = 12, 30, 10, 2
    shape = (batch, n_train, order) if per_run else (n_train, order)
    X = (torch.rand(shape, generator=g) < 0.4).to(torch.float64)
    y = 2.0 * (torch.rand(batch, n_train, generator=g) < 0.3).to(torch.float64)
    Xt = (torch.rand(n_test, order, generator=g) < 0.4).to(torch.float64)
    yt = 2.0 * (torch.rand(n_test, generator=g) < 0.3).to(torch.float64)
    factors = init_factors(batch, order, 2, 1.0, 1e-3, generators=[torch.Generator().manual_seed(s) for s in (1, 2)])
    return factors, (X, y), (Xt, yt)


SETTINGS = FitSettings(epochs=6, batch_size=8, lr=2e-2, eval_every=2, shuffle_seed=5, checkpoint_every=2)


def test_epoch_permutation_is_a_function_of_seed_and_epoch():
    a = epoch_permutation(50, 1, 3)
    assert torch.equal(a, epoch_permutation(50, 1, 3))
    assert sorted(a.tolist()) == list(range(50))
    assert not torch.equal(a, epoch_permutation(50, 1, 4)) and not torch.equal(a, epoch_permutation(50, 2, 3))


def test_fit_reduces_loss_and_records_tidy_history():
    factors, train, test = _fit_problem()
    initial = log_cp_mse_and_grad(factors, train[0], train[1])[0]
    result = fit(factors, train, test, SETTINGS)
    history = result.history
    assert list(history.columns) == ["epoch", "run", "train_mse", "test_error"]
    assert history["epoch"].tolist() == [2, 2, 4, 4, 6, 6] and history["run"].tolist() == [0, 1] * 3
    assert (result.train_mse < initial).all() and not result.diverged.any()
    final_pred = log_cp_forward(result.factors, train[0])
    torch.testing.assert_close(result.train_mse, (final_pred - train[1]).pow(2).mean(1), rtol=1e-14, atol=0)
    torch.testing.assert_close(
        result.test_error, clamped_squared_error(log_cp_forward(result.factors, test[0]), test[1]), rtol=1e-14, atol=0
    )
    assert history["train_mse"].iloc[-2:].tolist() == result.train_mse.tolist()
    # the input factors are not modified; uint8 X gives the same result; the dense backend agrees to rounding
    assert torch.equal(factors, _fit_problem()[0])
    as_uint8 = fit(factors, (train[0].to(torch.uint8), train[1]), (test[0].to(torch.uint8), test[1]), SETTINGS)
    assert torch.equal(as_uint8.factors, result.factors)
    dense = fit(factors, train, test, SETTINGS, backend="dense")
    torch.testing.assert_close(dense.factors, result.factors, rtol=1e-10, atol=1e-12)


def test_fit_with_per_run_images():
    factors, train, test = _fit_problem(per_run=True)
    result = fit(factors, train, test, SETTINGS)
    for b in range(2):  # each run equals that run trained alone on its own images
        alone = fit(factors[b : b + 1], (train[0][b], train[1][b]), test, SETTINGS)
        torch.testing.assert_close(alone.factors[0], result.factors[b], rtol=1e-13, atol=1e-15)


def test_fit_freezes_diverged_runs():
    """exp ℓ overflows float64 when ∏ > 1.8e308 (factors 2.5: 2.5^784 ≈ 1e312): that run is frozen and flagged,
    the other one is unaffected."""
    factors, train, test = _fit_problem()
    factors = factors.clone()
    factors[1] = 2.5 ** (784 / 12)  # the same overflowing product at order 12
    result = fit(factors, train, test, SETTINGS)
    assert result.diverged.tolist() == [False, True]
    assert torch.equal(result.factors[1], factors[1])
    alone = fit(factors[:1], (train[0], train[1][:1]), test, SETTINGS)
    assert torch.equal(alone.factors[0], result.factors[0])


def test_resume_mid_fit_is_bit_identical(tmp_path, monkeypatch):
    factors, train, test = _fit_problem(per_run=True)
    uninterrupted = fit(factors, train, test, SETTINGS)
    path = tmp_path / "fit.ckpt"

    real_permutation = log_cp.epoch_permutation

    def crash_at_epoch_5(n, seed, epoch, device="cpu"):
        if epoch == 5:
            raise KeyboardInterrupt("killed")
        return real_permutation(n, seed, epoch, device)

    monkeypatch.setattr(log_cp, "epoch_permutation", crash_at_epoch_5)
    with pytest.raises(KeyboardInterrupt):
        fit(factors, train, test, SETTINGS, checkpoint_path=path, fingerprint="abc")
    monkeypatch.setattr(log_cp, "epoch_permutation", real_permutation)
    assert path.exists()
    resumed = fit(factors, train, test, SETTINGS, checkpoint_path=path, fingerprint="abc")
    assert resumed.resumed_from == 4
    assert torch.equal(resumed.factors, uninterrupted.factors)
    pd.testing.assert_frame_equal(resumed.history, uninterrupted.history, check_exact=True)
    # a finished checkpoint: nothing to train, the same result
    again = fit(factors, train, test, SETTINGS, checkpoint_path=path, fingerprint="abc")
    assert again.resumed_from == SETTINGS.epochs and torch.equal(again.factors, uninterrupted.factors)
    # a checkpoint of another configuration is discarded, not resumed
    other = fit(factors, train, test, SETTINGS, checkpoint_path=path, fingerprint="other")
    assert other.resumed_from == 0 and torch.equal(other.factors, uninterrupted.factors)
    with pytest.raises(CheckpointError):
        load_checkpoint(path, "abc")


def test_fit_settings_validation():
    with pytest.raises(ValueError):
        FitSettings(epochs=1, batch_size=0, lr=1e-3, eval_every=1, shuffle_seed=0)
    with pytest.raises(ValueError):
        FitSettings(epochs=1, batch_size=4, lr=0.0, eval_every=1, shuffle_seed=0)
