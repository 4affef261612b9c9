"""A batched CP model fitted under a pointwise loss ρ (ℓ2, ℓ1 or Huber) to linear measurements of a target tensor.

Measurements y_i = ⟨A_i, W*⟩, i = 1 … m, are either entries of the target (completion: A_i one-hot at an observed
multi-index, stored as flat indices) or Gaussian measurements (sensing: A_i the rows of a dense ``(m, ∏d)``
matrix). With residuals e_i = ⟨A_i, W⟩ − y_i of the CP tensor W(F) = Σ_r w_r^1 ⊗ … ⊗ w_r^N:

    L(F) = (1/m) Σ_i ρ(e_i),        ∇_W L = (1/m) Σ_i ρ'(e_i) A_i          (:mod:`rankrepro.core.losses`),

and the factor gradients are the MTTKRP contractions of ∇_W L (matricized) with the Khatri–Rao products of the other
mode group (:func:`rankrepro.factorization.cp.factor_grads_from_tensor_grad`, as for the dense ℓ2 completion objective
of :mod:`.cp`). This is the objective of every CP sensing run (ℓ2 included: the §2.1 and §3.1 sensing experiments)
and of completion under ℓ1 and Huber; ℓ2 completion has its own faster paths in :mod:`.cp`.

The trainer stops on the value that ``loss_and_grads`` returns. As in the paper's code (its stop rule reads the train
mean squared error whatever the training loss), that value is the MSE (1/m) Σ_i e_i², while the gradients are those
of L; L itself is logged as the metric ``train_loss`` when it is not the MSE (ℓ1, Huber).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from rankrepro.core.losses import Loss, mean_loss, mean_loss_derivative
from rankrepro.core.measures import normalized_reconstruction_error
from rankrepro.factorization.cp import factor_grads_from_tensor_grad, matricized_cp


def measure(flat_tensor: Tensor, observations: Tensor) -> Tensor:
    """⟨A_i, W⟩ for every run: ``flat_tensor`` ``(B, ∏d)``; ``observations`` flat indices ``(m,)`` int64
    (completion) or a measurement matrix ``(m, ∏d)`` (sensing). Returns ``(B, m)``."""
    if observations.dim() == 1:
        return flat_tensor.index_select(1, observations)
    return flat_tensor @ observations.T


#: rows of a dense measurement matrix per block of :func:`residual_and_pullback`: 16 rows of 10⁴ float64 (1.3 MB)
#: stay in cache between the block's two products (``benchmarks/bench_tf_sensing.py``: 16–32 fastest at 2,000 × 10⁴)
SENSING_BLOCK_ROWS = 16


def residual_and_pullback(
    flat_tensor: Tensor, observations: Tensor, values: Tensor, weigh: Callable[[Tensor], Tensor]
) -> tuple[Tensor, Tensor]:
    """Residuals e_i = ⟨A_i, W⟩ − y_i ``(B, m)`` and the pull-back Σ_i ω_i A_i ``(B, ∏d)`` of the weights
    ω = ``weigh``(e), an elementwise map (ρ'(e)/m for the mean loss ρ: then the pull-back is ∇_W L).

    Completion (``observations`` flat indices ``(m,)``): a gather and a scatter-add. Sensing (a dense ``(m, ∏d)``
    matrix A): one pass over A in blocks of :data:`SENSING_BLOCK_ROWS` rows, e_blk = W·A_blkᵀ − y_blk and then
    pull-back += ω(e_blk)·A_blk while the block is in cache — A is read from memory once per call instead of twice
    (it is m·∏d floats: 160 MB at the paper's 2,000 × 10⁴). Same numbers as the two whole products up to the order
    of the floating-point sums."""
    if observations.dim() == 1:
        residual = measure(flat_tensor, observations) - values
        pullback = flat_tensor.new_zeros(flat_tensor.shape)
        return residual, pullback.index_add_(1, observations, weigh(residual))
    residual = flat_tensor.new_empty(flat_tensor.shape[0], observations.shape[0])
    pullback = flat_tensor.new_zeros(flat_tensor.shape)
    for start in range(0, observations.shape[0], SENSING_BLOCK_ROWS):
        block = observations[start : start + SENSING_BLOCK_ROWS]
        part = residual[:, start : start + block.shape[0]]
        torch.sub(flat_tensor @ block.T, values[start : start + block.shape[0]], out=part)
        pullback.addmm_(weigh(part), block)
    return residual, pullback


def cp_measured_loss_and_grads(
    factors: list[Tensor], observations: Tensor, values: Tensor, loss: Loss, huber_threshold: float = 1.0
) -> tuple[Tensor, Tensor, list[Tensor]]:
    """Per-run MSE (1/m) Σ e_i² ``(B,)``, training loss L = (1/m) Σ ρ(e_i) ``(B,)`` and ∂L/∂F_n for every factor
    ``(B, d_n, R)`` (see the module docstring); ``values`` y is ``(m,)``."""
    batch = factors[0].shape[0]
    left, right, recon = matricized_cp(factors)  # (B, P, R), (B, Q, R), (B, P, Q)
    count = values.shape[-1]
    residual, pullback = residual_and_pullback(
        recon.reshape(batch, -1), observations, values, lambda e: mean_loss_derivative(e, loss, count, huber_threshold)
    )  # (B, m), ∇_W L (B, ∏d): one pass over the measurements
    tensor_grad = pullback.reshape(recon.shape)
    grads = factor_grads_from_tensor_grad(factors, left, right, tensor_grad)
    return residual.pow(2).mean(-1), mean_loss(residual, loss, huber_threshold), grads


class CPMeasuredLossObjective:
    """The trainer's ``BatchedObjective`` for a CP model under loss ρ: ``loss_and_grads`` returns the MSE (the stop
    criterion) and the gradients of L = (1/m) Σ ρ(e_i); ``metrics`` logs L (``train_loss``, unless ρ = ℓ2: then L is
    the MSE) and the normalized reconstruction error ‖W − W*‖_F / ‖W*‖_F over the full tensor."""

    def __init__(self, target: Tensor, observations: Tensor, loss: Loss, huber_threshold: float = 1.0) -> None:
        if observations.dim() == 2 and observations.shape[1] != target.numel():
            raise ValueError(f"measurements have {observations.shape[1]} columns, the target {target.numel()} entries")
        self.target = target
        self.observations = observations
        self.values = measure(target.reshape(1, -1), observations)[0]
        self.loss = loss
        self.huber_threshold = huber_threshold

    def loss_and_grads(self, params: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """Per-run MSE ``(B,)`` and the gradient of the training loss w.r.t. every factor."""
        mse, _, grads = cp_measured_loss_and_grads(
            params, self.observations, self.values, self.loss, self.huber_threshold
        )
        return mse, grads

    def metrics(self, params: list[Tensor]) -> dict[str, Tensor]:
        """Normalized reconstruction error over the full tensor and (ℓ1, Huber) the training loss L, per run."""
        batch = params[0].shape[0]
        recon = matricized_cp(params)[2].reshape(batch, -1)
        error = normalized_reconstruction_error(recon.reshape(batch, *self.target.shape), self.target)
        if self.loss == "l2":
            return {"reconstruction_error": error}
        residual = measure(recon, self.observations) - self.values
        return {"train_loss": mean_loss(residual, self.loss, self.huber_threshold), "reconstruction_error": error}
