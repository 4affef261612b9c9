"""Gradients of batched objectives given only by a differentiable per-run loss.

For an objective whose loss ℓ(θ) ∈ R^B (one entry per run of a batch) is a differentiable function of parameters
whose leading dimension is the run, the runs' losses are independent, so the gradient of Σ_b ℓ_b w.r.t. each
parameter is, slice by slice, each run's own gradient ∇_{θ_b} ℓ_b: one backward pass serves the whole batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor


def autograd_loss_and_grads(
    loss: Callable[[list[Tensor]], Tensor], params: Sequence[Tensor]
) -> tuple[Tensor, list[Tensor]]:
    """Per-run loss ``loss(θ)`` ``(B,)`` and ∂(Σ_b ℓ_b)/∂θ for every parameter (= each run's own gradient), both
    detached; gradients are enabled for the evaluation even inside ``torch.no_grad``."""
    with torch.enable_grad():
        leaves = [p.detach().requires_grad_(True) for p in params]
        values = loss(leaves)
        grads = torch.autograd.grad(values.sum(), leaves)
    return values.detach(), [g.detach() for g in grads]
