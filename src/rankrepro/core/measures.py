"""Rank measures and norms of (batched) matrices, and reconstruction errors.

All functions accept a single matrix ``(m, n)`` or a batch ``(..., m, n)`` and reduce the last two dimensions.
"""

from __future__ import annotations

import torch
from torch import Tensor


def singular_values(matrix: Tensor) -> Tensor:
    """Singular values σ_1 ≥ … ≥ σ_k of each matrix in the batch, k = min(m, n)."""
    return torch.linalg.svdvals(matrix)


def effective_rank(matrix: Tensor, zero_tol: float = 0.0) -> Tensor:
    """Effective rank of Roy & Vetterli (2007): erank(W) = exp(H(p)), p_i = σ_i / Σ_j σ_j.

    H(p) = −Σ_i p_i log p_i is the Shannon entropy, with 0·log 0 = 0 (zero singular values do not count).
    erank ∈ [1, min(m, n)]; it equals r for a matrix with r equal non-zero singular values.
    Singular values ≤ ``zero_tol``·σ_1 are treated as zero. The zero matrix gets erank 0 by convention.
    """
    sigma = singular_values(matrix)
    return effective_rank_from_singular_values(sigma, zero_tol)


def effective_rank_from_singular_values(sigma: Tensor, zero_tol: float = 0.0) -> Tensor:
    """Effective rank exp(−Σ p log p) from singular values along the last dimension (see :func:`effective_rank`)."""
    top = sigma.amax(dim=-1, keepdim=True)
    sigma = torch.where(sigma > zero_tol * top, sigma, torch.zeros_like(sigma))
    total = sigma.sum(dim=-1, keepdim=True)
    p = sigma / torch.where(total > 0, total, torch.ones_like(total))
    entropy = -torch.where(p > 0, p * torch.log(torch.where(p > 0, p, torch.ones_like(p))), torch.zeros_like(p)).sum(-1)
    return torch.where(total.squeeze(-1) > 0, torch.exp(entropy), torch.zeros_like(entropy))


def frobenius_norm(matrix: Tensor) -> Tensor:
    """‖W‖_F = sqrt(Σ_ij W_ij²) = sqrt(Σ σ_i²)."""
    return torch.linalg.matrix_norm(matrix, ord="fro")


def nuclear_norm(matrix: Tensor) -> Tensor:
    """‖W‖_* = Σ_i σ_i."""
    return singular_values(matrix).sum(-1)


def spectral_norm(matrix: Tensor) -> Tensor:
    """‖W‖_2 = σ_1."""
    return singular_values(matrix)[..., 0]


def matrix_summary(matrix: Tensor) -> dict[str, Tensor]:
    """Singular values, Frobenius/nuclear/spectral norms and effective rank from a single SVD of each matrix."""
    sigma = singular_values(matrix)
    return {
        "singular_values": sigma,
        "fro_norm": sigma.pow(2).sum(-1).sqrt(),
        "nuclear_norm": sigma.sum(-1),
        "spectral_norm": sigma[..., 0],
        "effective_rank": effective_rank_from_singular_values(sigma),
    }


def normalized_reconstruction_error(estimate: Tensor, target: Tensor, dims: int | None = None) -> Tensor:
    """‖W − W*‖_F / ‖W*‖_F over all entries of the last ``dims`` dimensions (all of ``target``'s if None).

    ``estimate`` may carry leading batch dimensions; ``target`` broadcasts against it.
    """
    dims = target.dim() if dims is None else dims
    reduce = tuple(range(-dims, 0))
    diff = (estimate - target).pow(2).sum(reduce).sqrt()
    return diff / target.pow(2).sum(reduce).sqrt()
