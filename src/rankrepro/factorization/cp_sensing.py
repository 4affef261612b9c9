"""Tensor sensing with a batched CP factorization: Gaussian linear measurements instead of observed entries.

With measurement tensors A_1, …, A_m ∈ R^{d_1×…×d_N} (rows of A ∈ R^{m×∏d}, entries i.i.d. N(0, 1/∏d)) and
measurements y_i = ⟨A_i, W*⟩, the loss of a CP model W(F) = Σ_r w_r^1 ⊗ … ⊗ w_r^N is

    L(F) = (1/m) Σ_i (⟨A_i, W⟩ − y_i)²,        ∇_W L = (2/m) Σ_i (⟨A_i, W⟩ − y_i) A_i,

and the factor gradients follow from ∇_W L by the chain rule through W_(left; right) = KR(left)·KR(right)ᵀ:
∂L/∂F_n = MTTKRP of ∇_W L with the other factors — the same contraction as the dense completion gradient
(:func:`rankrepro.factorization.cp.factor_grads_from_tensor_grad`) (completion is the special case A_i = one-hot of an
observed entry). Measurements are dense (m × ∏d floats: 2,000 × 10⁴ in float64 is 160 MB); they are stored once and
shared by every run of a batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from rankrepro.core.measures import normalized_reconstruction_error
from rankrepro.factorization.cp import cp_reconstruct, factor_grads_from_tensor_grad, matricized_cp
from rankrepro.factorization.cp_losses import residual_and_pullback


def gaussian_measurements(
    n_measurements: int, dims: Sequence[int], generator: torch.Generator, dtype: torch.dtype = torch.float64
) -> Tensor:
    """Measurement matrix A ``(m, ∏d)`` with i.i.d. N(0, 1/∏d) entries (so E‖A_i‖_F² = 1)."""
    numel = math.prod(dims)
    return torch.randn(n_measurements, numel, generator=generator, dtype=dtype) / math.sqrt(numel)


def cp_sensing_loss_and_grads(
    factors: Sequence[Tensor], measurements: Tensor, values: Tensor
) -> tuple[Tensor, list[Tensor]]:
    """Per-run loss (1/m) Σ_i (⟨A_i, W⟩ − y_i)² ``(B,)`` and its exact gradient w.r.t. every factor ``(B, d_n, R)``.

    ``measurements`` A is ``(m, ∏d)`` (row-major flattening of the tensor), ``values`` y is ``(m,)``.
    ⟨A_i, W⟩ for all runs and ∇_W L = (2/m)·e·A come from one pass over A
    (:func:`~rankrepro.factorization.cp_losses.residual_and_pullback`); the factor gradients are the MTTKRP
    contractions of ∇_W L (matricized) with the Khatri–Rao products of the other mode group.
    """
    batch = factors[0].shape[0]
    left, right, recon = matricized_cp(factors)  # (B, P, R), (B, Q, R), (B, P, Q)
    n_measurements = measurements.shape[0]
    residual, pullback = residual_and_pullback(
        recon.reshape(batch, -1), measurements, values, lambda e: (2.0 / n_measurements) * e
    )  # (B, m), ∇_W L (B, ∏d): one pass over A
    loss = residual.pow(2).sum(-1) / n_measurements
    tensor_grad = pullback.reshape(recon.shape)
    return loss, factor_grads_from_tensor_grad(factors, left, right, tensor_grad)


def cp_sensing_loss(factors: Sequence[Tensor], measurements: Tensor, values: Tensor) -> Tensor:
    """Per-run loss (1/m) Σ_i (⟨A_i, W⟩ − y_i)², differentiable (autograd reference for tests)."""
    recon = cp_reconstruct(factors).reshape(factors[0].shape[0], -1)
    return (recon @ measurements.T - values).pow(2).mean(-1)


class CPSensingObjective:
    """Tensor sensing with a batched CP model (the trainer's ``BatchedObjective`` protocol).

    Every run sees the same measurements A ``(m, ∏d)`` of the ground truth ``target``; the logged metric is the
    normalized reconstruction error ‖W − W*‖_F / ‖W*‖_F.
    """

    def __init__(self, target: Tensor, measurements: Tensor) -> None:
        if measurements.shape[1] != target.numel():
            raise ValueError(f"measurements have {measurements.shape[1]} columns, the target {target.numel()} entries")
        self.target = target
        self.measurements = measurements
        self.values = measurements @ target.reshape(-1)

    def loss_and_grads(self, params: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """Per-run loss ``(B,)`` and the gradient w.r.t. every factor."""
        return cp_sensing_loss_and_grads(params, self.measurements, self.values)

    def metrics(self, params: list[Tensor]) -> dict[str, Tensor]:
        """Normalized reconstruction error of the full tensor, per run."""
        return {"reconstruction_error": normalized_reconstruction_error(cp_reconstruct(params), self.target)}
