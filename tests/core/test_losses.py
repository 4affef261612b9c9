"""Pointwise losses ℓ2, ℓ1, Huber: exact values, derivatives against autograd, and PyTorch's reference losses."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rankrepro.core.losses import LOSSES, mean_loss, mean_loss_derivative, pointwise_loss, pointwise_loss_derivative

RESIDUALS = torch.tensor([-3.0, -1.0, -0.5, 0.0, 0.25, 1.0, 2.0], dtype=torch.float64)


def test_exact_values_at_threshold_one():
    assert pointwise_loss(RESIDUALS, "l2").tolist() == [9.0, 1.0, 0.25, 0.0, 0.0625, 1.0, 4.0]
    assert pointwise_loss(RESIDUALS, "l1").tolist() == [3.0, 1.0, 0.5, 0.0, 0.25, 1.0, 2.0]
    assert pointwise_loss(RESIDUALS, "huber").tolist() == [2.5, 0.5, 0.125, 0.0, 0.03125, 0.5, 1.5]


def test_exact_derivatives_at_threshold_one():
    assert pointwise_loss_derivative(RESIDUALS, "l2").tolist() == [-6.0, -2.0, -1.0, 0.0, 0.5, 2.0, 4.0]
    assert pointwise_loss_derivative(RESIDUALS, "l1").tolist() == [-1.0, -1.0, -1.0, 0.0, 1.0, 1.0, 1.0]
    assert pointwise_loss_derivative(RESIDUALS, "huber").tolist() == [-1.0, -1.0, -0.5, 0.0, 0.25, 1.0, 1.0]


def test_huber_with_another_threshold():
    e = torch.tensor([0.1, -0.3, 0.5], dtype=torch.float64)
    # β = 0.2: 0.1²/0.4 = 0.025; |−0.3| − 0.1 = 0.2; 0.5 − 0.1 = 0.4
    assert torch.allclose(pointwise_loss(e, "huber", 0.2), torch.tensor([0.025, 0.2, 0.4], dtype=torch.float64))
    assert torch.allclose(
        pointwise_loss_derivative(e, "huber", 0.2), torch.tensor([0.5, -1.0, 1.0], dtype=torch.float64)
    )


@pytest.mark.parametrize(
    ("loss", "reference"),
    [
        ("l2", torch.nn.MSELoss()),
        ("l1", torch.nn.L1Loss()),
        ("huber", torch.nn.SmoothL1Loss(beta=1.0)),
    ],
)
def test_mean_loss_matches_pytorch_losses(loss, reference):
    generator = torch.Generator().manual_seed(0)
    e = 3 * torch.randn(4, 50, generator=generator, dtype=torch.float64)
    expected = torch.stack([reference(row, torch.zeros_like(row)) for row in e])
    assert torch.allclose(mean_loss(e, loss), expected, rtol=1e-14, atol=0)


@settings(max_examples=30, deadline=None)
@given(
    loss=st.sampled_from(LOSSES),
    threshold=st.floats(0.1, 3.0),
    values=st.lists(st.floats(-5, 5).filter(lambda v: abs(v) > 1e-6), min_size=1, max_size=20),
)
def test_derivative_matches_autograd(loss, threshold, values):
    e = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    pointwise_loss(e, loss, threshold).sum().backward()
    assert torch.allclose(pointwise_loss_derivative(e.detach(), loss, threshold), e.grad, rtol=1e-12, atol=1e-12)


def test_huber_is_continuous_with_its_derivative_at_the_threshold():
    beta = 0.7
    e = torch.tensor([beta - 1e-12, beta + 1e-12], dtype=torch.float64)
    values, slopes = pointwise_loss(e, "huber", beta), pointwise_loss_derivative(e, "huber", beta)
    assert abs(values[1] - values[0]) < 1e-11 and abs(slopes[1] - slopes[0]) < 1e-11


def test_bad_loss_and_threshold_raise():
    with pytest.raises(ValueError, match="unknown loss"):
        pointwise_loss(RESIDUALS, "l3")
    with pytest.raises(ValueError, match="Huber threshold"):
        pointwise_loss_derivative(RESIDUALS, "huber", 0.0)


@pytest.mark.parametrize("loss", LOSSES)
def test_mean_loss_derivative_is_the_gradient_of_the_mean_loss_block_by_block(loss):
    """∂/∂e_i of (1/m) Σ ρ(e_i), whether the residuals come whole or in blocks (m given, not read off the block)."""
    residual = torch.linspace(-2.5, 2.5, 14, dtype=torch.float64).reshape(2, 7)
    leaf = residual.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(mean_loss(leaf, loss, 0.7).sum(), leaf)
    whole = mean_loss_derivative(residual, loss, 7, 0.7)
    assert torch.allclose(whole, expected, rtol=1e-14, atol=0)
    blocks = torch.cat(
        [mean_loss_derivative(residual[:, :3], loss, 7, 0.7), mean_loss_derivative(residual[:, 3:], loss, 7, 0.7)], -1
    )
    assert torch.equal(blocks, whole)


def test_mean_l2_derivative_is_two_over_m_times_the_residual_exactly():
    residual = torch.randn(3, 11, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(mean_loss_derivative(residual, "l2", 11), (2.0 / 11) * residual)
    with pytest.raises(ValueError, match="unknown loss"):
        mean_loss_derivative(residual, "l3", 11)  # type: ignore[arg-type]
