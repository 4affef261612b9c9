"""The batched autograd gradient shared by the HTF completion and the generic sensing objectives."""

from __future__ import annotations

import torch

from rankrepro.core.autodiff import autograd_loss_and_grads


def test_each_run_gets_its_own_gradient_even_under_no_grad():
    """ℓ_b = Σ_i a_i x_{b,i}² + y_b³: ∂ℓ_b/∂x_b = 2 a ⊙ x_b, ∂ℓ_b/∂y_b = 3 y_b² (runs independent)."""
    a = torch.tensor([1.0, 2.0, 3.0])
    x, y = torch.tensor([[1.0, -1.0, 2.0], [0.5, 0.0, -2.0]]), torch.tensor([2.0, -1.0])
    with torch.no_grad():
        loss, (gx, gy) = autograd_loss_and_grads(lambda p: (a * p[0] ** 2).sum(-1) + p[1] ** 3, [x, y])
    assert torch.allclose(loss, torch.tensor([1 + 2 + 12 + 8.0, 0.25 + 0 + 12 - 1.0]))
    assert torch.allclose(gx, 2 * a * x) and torch.allclose(gy, 3 * y**2)
    assert not loss.requires_grad and not gx.requires_grad and not x.requires_grad
