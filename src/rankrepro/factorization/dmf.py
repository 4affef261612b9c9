"""Deep matrix factorization (DMF), batched over runs, with an analytic gradient.

The end-to-end matrix of depth N is W = W_N ⋯ W_1 with W_1 ∈ ℝ^{k×n}, W_j ∈ ℝ^{k×k}, W_N ∈ ℝ^{m×k} and
hidden width k = min(m, n) (the width never limits the rank). A batch holds B independent runs; runs of depth
D < N_max are embedded in a depth-N_max program by frozen identity factors (W_2 … W_{N_max−D+1}… are I and get
no update), which leaves their product — and therefore their dynamics — exactly unchanged.

Completion loss (spec §1.1): ℓ(W) = ½ Σ_{(i,j)∈Ω} (W_ij − y_ij)². With residual R = P_Ω(W − Y),
∂ℓ/∂W_j = (W_N ⋯ W_{j+1})ᵀ R (W_{j−1} ⋯ W_1)ᵀ.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rankrepro.core.measures import matrix_summary


def trainable_factor_mask(depth: int, max_depth: int) -> Tensor:
    """Which of ``max_depth`` factor slots a depth-``depth`` run trains: the first D−1 slots and the last one.

    Slots in between hold frozen identities. Returns a float ``(max_depth,)`` 0/1 vector.
    """
    if not 1 <= depth <= max_depth:
        raise ValueError(f"depth {depth} must be in [1, {max_depth}]")
    mask = torch.zeros(max_depth, dtype=torch.float64)
    mask[: depth - 1] = 1.0
    mask[max_depth - 1] = 1.0
    return mask


def product(factors: list[Tensor]) -> Tensor:
    """W_N ⋯ W_1 for factors given as [W_1, …, W_N] (batched matmul over leading dimensions)."""
    result = factors[0]
    for factor in factors[1:]:
        result = factor @ result
    return result


def _leading_det(matrix: Tensor) -> Tensor:
    """det of the leading k×k block, k = min(m, n) (the determinant itself for square matrices)."""
    k = min(matrix.shape[-2:])
    return torch.linalg.det(matrix[..., :k, :k])


def init_factors(
    shape: tuple[int, int],
    depth: int,
    max_depth: int,
    scale: float,
    balanced: bool,
    det_sign: int,
    generator: torch.Generator,
    max_tries: int = 10_000,
) -> tuple[list[Tensor], int]:
    """Initial factors of one run (padded to ``max_depth`` with identities) and the number of draws used.

    ``scale`` α is the scale of the end-to-end matrix. Balanced: P ~ N(0, α²)^{m×n}, P = U S Vᵀ,
    W_1 = S^{1/D} Vᵀ, W_j = S^{1/D}, W_D = U S^{1/D} (so the product is P and W_{j+1}ᵀW_{j+1} = W_j W_jᵀ).
    Unbalanced: every factor i.i.d. N(0, s²) with s = α^{1/D}. Draws repeat until sign(det W(0)) = ``det_sign``
    (det of the leading square block for non-square problems; ``det_sign = 0`` accepts any draw).
    """
    if not 2 <= depth <= max_depth:
        raise ValueError(f"depth {depth} must be in [2, {max_depth}]")
    m, n = shape
    k = min(m, n)
    for attempt in range(1, max_tries + 1):
        if balanced:
            p = torch.randn(m, n, generator=generator, dtype=torch.float64) * scale
            u, s, vh = torch.linalg.svd(p, full_matrices=False)
            root = s.pow(1.0 / depth)
            core = [root[:, None] * vh] + [torch.diag(root) for _ in range(depth - 2)] + [u * root[None, :]]
        else:
            std = scale ** (1.0 / depth)
            dims = [n] + [k] * (depth - 1) + [m]
            core = [
                torch.randn(dims[i + 1], dims[i], generator=generator, dtype=torch.float64) * std for i in range(depth)
            ]
        factors = core[:-1] + [torch.eye(k, dtype=torch.float64) for _ in range(max_depth - depth)] + core[-1:]
        if det_sign == 0 or torch.sign(_leading_det(product(factors))) == det_sign:
            return factors, attempt
    raise RuntimeError(f"no initialization with det sign {det_sign} in {max_tries} draws")


@dataclass
class MatrixCompletionDMF:
    """Batched DMF objective for matrix completion: ½ Σ_Ω (W − Y)² per run, analytic gradients.

    ``target`` and ``mask`` are ``(B, m, n)`` (mask 1 on observed entries); ``trainable`` is ``(B, N)`` 0/1.
    ``tracked`` lists (i, j) entries logged individually.
    """

    target: Tensor
    mask: Tensor
    trainable: Tensor
    tracked: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        # Precomputed once: −P_Ω(Y), and per slot either None (trained in every run) or its (B, 1, 1) 0/1 mask.
        self._neg_masked_target = -(self.mask * self.target)
        self._slot_masks = [
            None if bool(self.trainable[:, j].all()) else self.trainable[:, j, None, None].clone()
            for j in range(self.trainable.shape[1])
        ]

    def residual_and_prefixes(self, factors: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """R = P_Ω(W − Y) = M ⊙ W − M ⊙ Y and the prefix products [W_1, W_2W_1, …, W]."""
        prefixes = [factors[0]]
        for factor in factors[1:]:
            prefixes.append(factor @ prefixes[-1])
        return torch.addcmul(self._neg_masked_target, self.mask, prefixes[-1]), prefixes

    def loss_and_grads(self, factors: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """ℓ_b = ½‖R_b‖² and ∂ℓ/∂W_j = (W_N⋯W_{j+1})ᵀ R (W_{j−1}⋯W_1)ᵀ, zeroed on frozen slots."""
        residual, prefixes = self.residual_and_prefixes(factors)
        loss = residual.square().sum((-2, -1)).mul_(0.5)
        grads: list[Tensor] = [residual] * len(factors)
        back = residual
        for j in range(len(factors) - 1, -1, -1):
            grad = back @ prefixes[j - 1].mT if j > 0 else back
            slot = self._slot_masks[j]
            grads[j] = grad if slot is None else grad * slot
            if j > 0:
                back = factors[j].mT @ back
        return loss, grads

    def metrics(self, factors: list[Tensor]) -> dict[str, Tensor]:
        """The logged metrics of the end-to-end matrix (:func:`end_to_end_metrics`)."""
        return end_to_end_metrics(product(factors), self.tracked)


def end_to_end_metrics(w: Tensor, tracked: tuple[tuple[int, int], ...] = ()) -> dict[str, Tensor]:
    """What chapter 1 logs of end-to-end matrices ``(..., m, n)``: singular values, Frobenius/nuclear/spectral norms,
    effective rank (one SVD), the tracked entries ``w{i}{j}`` and det of the leading square block."""
    out = matrix_summary(w)
    for i, j in tracked:
        out[f"w{i}{j}"] = w[..., i, j]
    out["det"] = _leading_det(w)
    return out
