"""Pointwise regression losses ρ(e) of a residual e = prediction − label, their derivatives and their means.

The training loss over m residuals is L = (1/m) Σ_i ρ(e_i) (PyTorch's ``MSELoss``, ``L1Loss``, ``SmoothL1Loss``
with reduction "mean"), so ∂L/∂e_i = ρ'(e_i)/m:

- ``l2``:    ρ(e) = e²,                                ρ'(e) = 2e;
- ``l1``:    ρ(e) = |e|,                               ρ'(e) = sign(e)  (the subgradient 0 at e = 0);
- ``huber``: ρ(e) = e²/(2β) if |e| < β else |e| − β/2,  ρ'(e) = e/β if |e| < β else sign(e)  (β > 0: the
  threshold; continuous with its derivative at |e| = β; SmoothL1 of PyTorch with ``beta`` = β).
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor

Loss = Literal["l2", "l1", "huber"]
LOSSES: tuple[str, ...] = get_args(Loss)


def check_loss(loss: str, huber_threshold: float = 1.0) -> None:
    """Raise ValueError for an unknown loss or a non-positive Huber threshold."""
    if loss not in LOSSES:
        raise ValueError(f"unknown loss '{loss}' (expected one of {', '.join(LOSSES)})")
    if loss == "huber" and not huber_threshold > 0:
        raise ValueError(f"the Huber threshold must be positive, got {huber_threshold}")


def pointwise_loss(residual: Tensor, loss: Loss, huber_threshold: float = 1.0) -> Tensor:
    """ρ(e) elementwise (see the module docstring)."""
    check_loss(loss, huber_threshold)
    if loss == "l2":
        return residual.pow(2)
    magnitude = residual.abs()
    if loss == "l1":
        return magnitude
    beta = huber_threshold
    return torch.where(magnitude < beta, 0.5 * residual.pow(2) / beta, magnitude - 0.5 * beta)


def pointwise_loss_derivative(residual: Tensor, loss: Loss, huber_threshold: float = 1.0) -> Tensor:
    """ρ'(e) elementwise (sign(0) = 0 for ℓ1; see the module docstring)."""
    check_loss(loss, huber_threshold)
    if loss == "l2":
        return 2.0 * residual
    if loss == "l1":
        return torch.sign(residual)
    beta = huber_threshold
    return torch.where(residual.abs() < beta, residual / beta, torch.sign(residual))


def mean_loss_derivative(residual: Tensor, loss: Loss, count: int, huber_threshold: float = 1.0) -> Tensor:
    """∂L/∂e_i = ρ'(e_i)/m of the mean loss L = (1/m) Σ_i ρ(e_i) over m = ``count`` residuals, elementwise for the
    given ones (``residual`` may be a block of them).

    ℓ2 is evaluated as (2/m)·e_i, the others as ρ'(e_i)/m (equal up to the last bit; the roundings the experiments
    have always used)."""
    check_loss(loss, huber_threshold)
    if loss == "l2":
        return (2.0 / count) * residual
    return pointwise_loss_derivative(residual, loss, huber_threshold) / count


def mean_loss(residual: Tensor, loss: Loss, huber_threshold: float = 1.0) -> Tensor:
    """(1/m) Σ_i ρ(e_i) over the last dimension (per run for residuals ``(B, m)``)."""
    return pointwise_loss(residual, loss, huber_threshold).mean(-1)
