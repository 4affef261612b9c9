"""CP model under ℓ2 / ℓ1 / Huber losses of linear measurements: gradients against autograd and against the ℓ2
objectives of cp and cp_sensing; the MSE as stop criterion."""

from __future__ import annotations

import math

import pytest
import torch

from rankrepro.core.losses import mean_loss
from rankrepro.factorization.cp import CPCompletionObjective, cp_reconstruct, multi_indices
from rankrepro.factorization.cp_losses import (
    SENSING_BLOCK_ROWS,
    CPMeasuredLossObjective,
    cp_measured_loss_and_grads,
    measure,
    residual_and_pullback,
)
from rankrepro.factorization.cp_sensing import cp_sensing_loss, gaussian_measurements

DIMS = (3, 4, 2, 3)


def _problem(kind: str, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    target = torch.randn(DIMS, generator=generator, dtype=torch.float64)
    if kind == "completion":
        observations = torch.randperm(math.prod(DIMS), generator=generator)[:30]
    else:
        observations = gaussian_measurements(25, DIMS, generator)
    factors = [torch.randn(2, d, 5, generator=generator, dtype=torch.float64) for d in DIMS]
    return target, observations, factors


def test_measure_of_one_hot_rows_is_gathering():
    generator = torch.Generator().manual_seed(1)
    flat = torch.randn(2, 24, generator=generator, dtype=torch.float64)
    indices = torch.tensor([5, 0, 23])
    assert torch.equal(measure(flat, indices), measure(flat, torch.eye(24, dtype=torch.float64)[indices]))


@pytest.mark.parametrize("rows", [1, SENSING_BLOCK_ROWS, 2 * SENSING_BLOCK_ROWS + 5])
def test_blocked_pullback_equals_the_two_whole_products(rows):
    """One pass over A in row blocks (the last one partial) = e = W·Aᵀ − y and Σ_i ω(e)_i A_i as two products;
    for flat indices it is the gather and the scatter-add of the same one-hot rows."""
    generator = torch.Generator().manual_seed(rows)
    flat = torch.randn(3, 24, generator=generator, dtype=torch.float64)
    values = torch.randn(rows, generator=generator, dtype=torch.float64)
    matrix = torch.randn(rows, 24, generator=generator, dtype=torch.float64)
    weigh = torch.sign
    residual, pullback = residual_and_pullback(flat, matrix, values, weigh)
    assert torch.allclose(residual, flat @ matrix.T - values, rtol=1e-13, atol=1e-14)
    assert torch.allclose(pullback, weigh(flat @ matrix.T - values) @ matrix, rtol=1e-13, atol=1e-14)
    indices = torch.randint(0, 24, (rows,), generator=generator)
    one_hot = torch.eye(24, dtype=torch.float64)[indices]
    gathered, scattered = residual_and_pullback(flat, indices, values, lambda e: 2.0 * e)
    assert torch.equal(gathered, flat[:, indices] - values)
    assert torch.allclose(scattered, (2.0 * gathered) @ one_hot, rtol=1e-14, atol=0)


@pytest.mark.parametrize("kind", ["completion", "sensing"])
@pytest.mark.parametrize("loss", ["l2", "l1", "huber"])
def test_gradients_match_autograd(kind, loss):
    target, observations, factors = _problem(kind)
    values = measure(target.reshape(1, -1), observations)[0]
    mse, train_loss, grads = cp_measured_loss_and_grads(factors, observations, values, loss, huber_threshold=0.8)
    leaves = [f.clone().requires_grad_(True) for f in factors]
    residual = measure(cp_reconstruct(leaves).reshape(2, -1), observations) - values
    reference = mean_loss(residual, loss, 0.8)
    reference.sum().backward()
    assert torch.allclose(train_loss, reference.detach(), rtol=1e-12)
    assert torch.allclose(mse, residual.detach().pow(2).mean(-1), rtol=1e-12)
    for grad, leaf in zip(grads, leaves):
        assert torch.allclose(grad, leaf.grad, rtol=1e-10, atol=1e-12)


def test_l2_completion_matches_the_completion_objective():
    target, flat, factors = _problem("completion")
    (a, ga), (b, gb) = (
        CPMeasuredLossObjective(target, flat, "l2").loss_and_grads(factors),
        CPCompletionObjective(target, multi_indices(flat, DIMS), "dense").loss_and_grads(factors),
    )
    assert torch.allclose(a, b, rtol=1e-12)
    assert all(torch.allclose(x, y, rtol=1e-10, atol=1e-13) for x, y in zip(ga, gb))


def test_l2_sensing_is_the_sensing_loss_and_logs_no_second_copy_of_it():
    """The §2.1/§3.3 sensing objective: the stop value is (1/m) Σ (⟨A_i, W⟩ − y_i)² (the autograd reference, summed
    over more rows than one block of the single pass), its gradient that loss's, and L = MSE is not logged twice."""
    target, _, factors = _problem("sensing")
    matrix = gaussian_measurements(2 * SENSING_BLOCK_ROWS + 3, DIMS, torch.Generator().manual_seed(5))
    objective = CPMeasuredLossObjective(target, matrix, "l2")
    loss, grads = objective.loss_and_grads(factors)
    leaves = [f.clone().requires_grad_(True) for f in factors]
    reference = cp_sensing_loss(leaves, matrix, objective.values)
    expected = torch.autograd.grad(reference.sum(), leaves)
    assert torch.allclose(loss, reference.detach(), rtol=1e-12)
    assert all(torch.allclose(x, y, rtol=1e-10, atol=1e-13) for x, y in zip(grads, expected))
    assert set(objective.metrics(factors)) == {"reconstruction_error"}
    assert set(CPMeasuredLossObjective(target, matrix, "huber").metrics(factors)) == {
        "train_loss",
        "reconstruction_error",
    }


def test_stop_criterion_is_the_mse_and_the_training_loss_is_logged():
    target, flat, factors = _problem("completion", seed=3)
    objective = CPMeasuredLossObjective(target, flat, "l1")
    stop_value, _ = objective.loss_and_grads(factors)
    residual = cp_reconstruct(factors).reshape(2, -1)[:, flat] - target.reshape(-1)[flat]
    assert torch.allclose(stop_value, residual.pow(2).mean(-1), rtol=1e-12)
    metrics = objective.metrics(factors)
    assert torch.allclose(metrics["train_loss"], residual.abs().mean(-1), rtol=1e-12)
    expected_error = (cp_reconstruct(factors) - target).flatten(1).norm(dim=1) / target.norm()
    assert torch.allclose(metrics["reconstruction_error"], expected_error, rtol=1e-12)


def test_exact_fit_has_zero_loss_and_gradient_for_every_loss():
    generator = torch.Generator().manual_seed(4)
    factors = [torch.randn(1, d, 2, generator=generator, dtype=torch.float64) for d in DIMS]
    target = cp_reconstruct(factors)[0]
    for loss in ("l2", "l1", "huber"):
        objective = CPMeasuredLossObjective(target, torch.arange(10), loss)
        stop_value, grads = objective.loss_and_grads(factors)
        assert float(stop_value) < 1e-28 and all(float(g.abs().max()) < 1e-12 for g in grads)


def test_measurement_shape_is_checked():
    with pytest.raises(ValueError, match="columns"):
        CPMeasuredLossObjective(torch.zeros(DIMS, dtype=torch.float64), torch.zeros(3, 5, dtype=torch.float64), "l1")
