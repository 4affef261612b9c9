"""Tensor sensing: Gaussian linear measurements instead of observed entries.

Measurement tensors A_1, …, A_m ∈ R^{d_1×…×d_N} are the rows of A ∈ R^{m×∏d} with i.i.d. N(0, 1/∏d) entries, and
y_i = ⟨A_i, W*⟩. The loss of a CP model W(F) = Σ_r w_r^1 ⊗ … ⊗ w_r^N,

    L(F) = (1/m) Σ_i (⟨A_i, W⟩ − y_i)²,        ∇_W L = (2/m) Σ_i (⟨A_i, W⟩ − y_i) A_i,

and its factor gradients (MTTKRP contractions of ∇_W L) are those of
:class:`rankrepro.factorization.cp_losses.CPMeasuredLossObjective` with ρ = ℓ2 (which also takes ℓ1 and Huber);
:func:`cp_sensing_loss` is its autograd reference. Measurements are dense (m × ∏d floats: 2,000 × 10⁴ in float64 is
160 MB); they are stored once and shared by every run of a batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from rankrepro.factorization.cp import cp_reconstruct


def gaussian_measurements(
    n_measurements: int, dims: Sequence[int], generator: torch.Generator, dtype: torch.dtype = torch.float64
) -> Tensor:
    """Measurement matrix A ``(m, ∏d)`` with i.i.d. N(0, 1/∏d) entries (so E‖A_i‖_F² = 1)."""
    numel = math.prod(dims)
    return torch.randn(n_measurements, numel, generator=generator, dtype=dtype) / math.sqrt(numel)


def cp_sensing_loss(factors: Sequence[Tensor], measurements: Tensor, values: Tensor) -> Tensor:
    """Per-run loss (1/m) Σ_i (⟨A_i, W⟩ − y_i)², differentiable (autograd reference for tests)."""
    recon = cp_reconstruct(factors).reshape(factors[0].shape[0], -1)
    return (recon @ measurements.T - values).pow(2).mean(-1)
