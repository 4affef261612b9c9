"""Batched CP (tensor) factorization for tensor completion: predictions, MSE loss and analytic gradients.

A CP factorization of an order-N tensor W ∈ R^{d_1×…×d_N} with R components has one factor per mode,
F_n ∈ R^{d_n×R}, and

    W[i_1, …, i_N] = Σ_r ∏_n F_n[i_n, r]          (W = Σ_r w_r^1 ⊗ … ⊗ w_r^N,  w_r^n = F_n[:, r]).

Every function here is batched over independent runs: factor n has shape ``(B, d_n, R)``.

Completion loss over observed multi-indices Ω = {ω_k = (i_1^k, …, i_N^k)}, k = 1 … |Ω|:

    L(F) = (1/|Ω|) Σ_k (W[ω_k] − y_k)²,
    ∂L/∂F_n[i, r] = (2/|Ω|) Σ_{k: i_n^k = i} (W[ω_k] − y_k) ∏_{m≠n} F_m[i_m^k, r].

Two exact implementations of (L, ∇L):

- :func:`cp_loss_and_grads_gather` (the mechanism): split the modes into two groups, W[ω] = Σ_r L[p(ω), r]·Q[q(ω), r]
  with L, Q the Khatri–Rao products of each group's factors; gather the rows of the observed entries
  (``index_select``), and scatter the residual-weighted rows back (``index_add_``); the chain rule through the
  Khatri–Rao products gives the factor gradients. Cost ∝ (|Ω| + ∏d_left + ∏d_right)·R; never builds one-hot
  sensing tensors. (The group products must fit in memory: fine up to order ≈ 8 with small dims; very high-order
  tensors such as chapter 2's 784-mode images need a log-domain formulation instead.)
- :func:`cp_loss_and_grads_dense`: reconstruct the whole tensor with two Khatri–Rao products and one matmul,
  mask the residual to Ω, and get every gradient by MTTKRP matmuls. Cost ∝ ∏d·R, independent of |Ω|; for small
  tensors (8^4 = 4,096 entries) it is the faster one (see the benchmark).

:func:`choose_method` picks between them from measured costs; both agree to rounding error (tests).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from rankrepro.core.measures import normalized_reconstruction_error

Method = Literal["gather", "dense", "auto"]


def max_cp_rank(dims: Sequence[int]) -> int:
    """∏_n d_n / max_n d_n: an upper bound on the CP rank of any d_1×…×d_N tensor (slices along the largest mode)."""
    return math.prod(dims) // max(dims)


def _khatri_rao(factors: Sequence[Tensor]) -> Tensor:
    """Row-wise Khatri–Rao product of ``(B, d_n, R)`` factors: ``(B, ∏ d_n, R)``, first mode slowest (C order).

    KR[b, (i_1 … i_k), r] = ∏_n F_n[b, i_n, r].
    """
    out = factors[0]
    for factor in factors[1:]:
        out = (out.unsqueeze(2) * factor.unsqueeze(1)).reshape(out.shape[0], -1, out.shape[-1])
    return out


def _split(order: int) -> int:
    """Number of modes in the left group of the matricization W_(left modes; right modes) (balanced)."""
    return max(1, order // 2)


def group_khatri_rao(factors: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """The Khatri–Rao products of the two mode groups, L = KR(F_1…F_k) ``(B, ∏_{n≤k} d_n, R)`` and
    Q = KR(F_{k+1}…F_N) ``(B, ∏_{n>k} d_n, R)``, k = ⌊N/2⌋ (at least 1): W_(1…k; k+1…N) = L·Qᵀ."""
    k = _split(len(factors))
    return _khatri_rao(factors[:k]), _khatri_rao(factors[k:])


def matricized_cp(factors: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """(L, Q, L·Qᵀ): the group products of :func:`group_khatri_rao` and the balanced matricization
    W_(1…k; k+1…N) = L·Qᵀ ``(B, ∏_{n≤k} d_n, ∏_{n>k} d_n)`` of the CP tensor (one batched matmul)."""
    left, right = group_khatri_rao(factors)
    return left, right, torch.bmm(left, right.transpose(1, 2))


def cp_reconstruct(factors: Sequence[Tensor]) -> Tensor:
    """Full tensor W[b] = Σ_r w_r^1 ⊗ … ⊗ w_r^N from factors ``(B, d_n, R)``: shape ``(B, d_1, …, d_N)``.

    Computed as the matricization W_(1…k; k+1…N) = KR(F_1…F_k) · KR(F_{k+1}…F_N)ᵀ (:func:`matricized_cp`).
    """
    dims = [f.shape[1] for f in factors]
    return matricized_cp(factors)[2].reshape(factors[0].shape[0], *dims)


def cp_predict(factors: Sequence[Tensor], indices: Tensor) -> Tensor:
    """W[b, ω_k] = Σ_r ∏_n F_n[b, i_n^k, r] at observed multi-indices ``indices`` ``(n_obs, N)``: ``(B, n_obs)``."""
    prod = factors[0].index_select(1, indices[:, 0])
    for n in range(1, len(factors)):
        prod = prod * factors[n].index_select(1, indices[:, n])
    return prod.sum(-1)


def component_norms(factors: Sequence[Tensor]) -> Tensor:
    """‖w_r^1 ⊗ … ⊗ w_r^N‖ = ∏_n ‖F_n[:, r]‖ for every component: ``(B, R)``."""
    norms = factors[0].norm(dim=1)
    for factor in factors[1:]:
        norms = norms * factor.norm(dim=1)
    return norms


def _as_batched(values: Tensor, batch: int) -> Tensor:
    """Observed values ``(n_obs,)`` or ``(B, n_obs)`` as ``(B, n_obs)`` (a broadcast view, no copy)."""
    return values.expand(batch, values.shape[-1]) if values.dim() == 1 else values


def cp_loss_and_grads_gather(
    factors: Sequence[Tensor], indices: Tensor, values: Tensor, chunk_elements: int = 1 << 16
) -> tuple[Tensor, list[Tensor]]:
    """Per-run MSE over Ω and its exact gradient by gather/scatter (see the module docstring).

    ``indices`` ``(n_obs, N)`` int64, ``values`` ``(n_obs,)`` or ``(B, n_obs)``. The modes are split into a left
    and a right group, W[ω] = Σ_r L[p(ω), r]·Q[q(ω), r] with L = KR(F_1…F_k) and Q = KR(F_{k+1}…F_N) (small: one
    row per multi-index of the group). Per observation the rows L[p], Q[q] are gathered (``index_select``); the
    residual e = W[ω] − y gives ∂L/∂L[p] = (2/|Ω|) Σ_{ω: p(ω)=p} e_ω Q[q(ω)] (``index_add_``), likewise for Q,
    and the chain rule through the Khatri–Rao products gives the factor gradients. Ω is processed in chunks of at
    most ``chunk_elements`` gathered elements (B·chunk·R), so temporaries stay in cache.
    Returns loss ``(B,)`` and gradients shaped like the factors.
    """
    order = len(factors)
    batch, rank, n_obs = factors[0].shape[0], factors[0].shape[-1], indices.shape[0]
    dims = [f.shape[1] for f in factors]
    k = _split(order)
    left, right = group_khatri_rao(factors)  # (B, P, R), (B, Q, R)
    p_idx, q_idx = _flat_indices(indices[:, :k], dims[:k]), _flat_indices(indices[:, k:], dims[k:])
    values = _as_batched(values, batch)
    grad_left, grad_right = torch.zeros_like(left), torch.zeros_like(right)
    sse = left.new_zeros(batch)
    step = max(1, chunk_elements // max(1, batch * rank))
    for start in range(0, n_obs, step):
        p, q = p_idx[start : start + step], q_idx[start : start + step]
        rows_left, rows_right = left.index_select(1, p), right.index_select(1, q)  # (B, c, R)
        residual = torch.einsum("bcr,bcr->bc", rows_left, rows_right) - values[:, start : start + step]
        sse += residual.pow(2).sum(-1)
        weight = (residual * (2.0 / n_obs)).unsqueeze(-1)
        grad_left.index_add_(1, p, weight * rows_right)
        grad_right.index_add_(1, q, weight * rows_left)
    grad_left = grad_left.reshape(batch, *dims[:k], rank)
    grad_right = grad_right.reshape(batch, *dims[k:], rank)
    grads = [_contract_except(grad_left, factors[:k], n) for n in range(k)]
    grads += [_contract_except(grad_right, factors[k:], n) for n in range(order - k)]
    return sse / n_obs, grads


def _contract_except(cross: Tensor, group: Sequence[Tensor], keep: int) -> Tensor:
    """Σ over every mode of ``cross`` ``(B, d_a, …, d_z, R)`` but ``keep``, weighted by that mode's factor column.

    out[b, i, r] = Σ_{j: j_keep = i} cross[b, j, r] ∏_{m ≠ keep} group[m][b, j_m, r]
    (broadcast products and sums: faster than ``einsum`` for these small shapes).
    """
    size = len(group)
    out = cross
    for m in range(size):
        if m != keep:
            shape = [group[m].shape[0]] + [1] * size + [group[m].shape[-1]]
            shape[m + 1] = group[m].shape[1]
            out = out * group[m].reshape(shape)
    others = tuple(m + 1 for m in range(size) if m != keep)
    return out.sum(others) if others else out


def cp_loss_and_grads_dense(
    factors: Sequence[Tensor], mask: Tensor, target: Tensor, n_obs: int
) -> tuple[Tensor, list[Tensor]]:
    """Per-run MSE over Ω and its exact gradient from the dense masked residual (see the module docstring).

    ``mask`` (0/1) and ``target`` (zeros off Ω allowed) are ``(d_1, …, d_N)`` or ``(B, d_1, …, d_N)``.
    With the matricization E_(left; right) of E = mask ⊙ (W − Y): the gradient of a left mode is obtained from
    E·KR(right) ``(B, ∏d_left, R)`` (an MTTKRP) contracted with the other left factors; right modes likewise
    from Eᵀ·KR(left).
    """
    left, right, recon = matricized_cp(factors)  # (B, P, R), (B, Q, R), (B, P, Q)
    shape = recon.shape
    residual = (recon - target.reshape(-1, shape[1], shape[2])) * mask.reshape(-1, shape[1], shape[2])
    loss = residual.pow(2).sum((1, 2)) / n_obs
    return loss, factor_grads_from_tensor_grad(factors, left, right, residual * (2.0 / n_obs))


def factor_grads_from_tensor_grad(
    factors: Sequence[Tensor], left: Tensor, right: Tensor, tensor_grad: Tensor
) -> list[Tensor]:
    """∂L/∂F_n for every factor, from G = ∂L/∂W matricized as ``(B, ∏d_left, ∏d_right)`` (chain rule through W).

    With W_(left; right) = L·Qᵀ (L = KR(left factors) ``left``, Q = KR(right factors) ``right``): ∂L/∂L = G·Q and
    ∂L/∂Q = Gᵀ·L (two MTTKRP matmuls); a left mode's gradient is ∂L/∂L contracted with the other left factors,
    ∂L/∂F_n[i, r] = Σ_{j: j_n = i} (G·Q)[j, r] ∏_{m≠n} F_m[j_m, r]; right modes likewise.
    """
    order, k = len(factors), _split(len(factors))
    batch, rank = factors[0].shape[0], factors[0].shape[-1]
    dims = [f.shape[1] for f in factors]
    cross_left = torch.bmm(tensor_grad, right).reshape(batch, *dims[:k], rank)
    cross_right = torch.bmm(tensor_grad.transpose(1, 2), left).reshape(batch, *dims[k:], rank)
    grads = [_contract_except(cross_left, factors[:k], n) for n in range(k)]
    grads += [_contract_except(cross_right, factors[k:], n) for n in range(order - k)]
    return grads


def cp_loss(factors: Sequence[Tensor], indices: Tensor, values: Tensor) -> Tensor:
    """Per-run MSE (1/|Ω|) Σ_k (W[ω_k] − y_k)² (differentiable; used for autograd checks)."""
    residual = cp_predict(factors, indices) - _as_batched(values, factors[0].shape[0])
    return residual.pow(2).mean(-1)


def choose_method(dims: Sequence[int], n_obs: int) -> Literal["gather", "dense"]:
    """The faster exact implementation for |Ω| = ``n_obs`` observations of a d_1×…×d_N tensor.

    Measured on a CPU (float64, one thread, ``benchmarks/bench_tensor_completion.py`` and the §1.5 pilots): for
    the 8×8×8 and 8^4 tensors of §1.5 the dense path (three BLAS matmuls over all ∏d entries) beats the gather path
    (memory-bound passes over |Ω|·R gathered rows) at every n tried, down to |Ω|/∏d ≈ 2.5 %, by 1.5–12×. The
    gather path wins when the tensor is much larger than Ω: it is chosen when |Ω| < ∏d / 50.
    """
    return "gather" if 50 * n_obs < math.prod(dims) else "dense"


def init_factors(
    dims: Sequence[int],
    rank: int,
    scales: Tensor,
    generators: Sequence[torch.Generator],
    dtype: torch.dtype = torch.float64,
) -> list[Tensor]:
    """Factors F_n[b] = scales[b]·Z_n[b] with Z_n[b] ~ N(0, 1)^{d_n×R} drawn from ``generators[b]`` (CPU).

    Runs that share a generator seed share the direction Z and differ only by scale.
    """
    per_run = []
    for generator in generators:
        per_run.append([torch.randn(d, rank, generator=generator, dtype=dtype) for d in dims])
    scales = scales.to(dtype).reshape(-1, 1, 1)
    return [torch.stack([run[n] for run in per_run]) * scales for n in range(len(dims))]


def random_cp_tensor(
    dims: Sequence[int], rank: int, generator: torch.Generator, dtype: torch.dtype = torch.float64
) -> Tensor:
    """A random CP-rank-``rank`` tensor: factors i.i.d. N(0, 1), rescaled to unit Frobenius norm."""
    factors = [torch.randn(1, d, rank, generator=generator, dtype=dtype) for d in dims]
    tensor = cp_reconstruct(factors)[0]
    return tensor / tensor.norm()


def linear_completion(target: Tensor, indices: Tensor) -> Tensor:
    """What gradient descent on an un-factorized linear model from zero converges to: y on Ω, zeros elsewhere.

    For ‖W*‖_F = 1 its normalized error is exactly sqrt(1 − Σ_{ω∈Ω} W*[ω]²).
    """
    out = torch.zeros_like(target)
    flat = _flat_indices(indices, target.shape)
    out.view(-1)[flat] = target.reshape(-1)[flat]
    return out


def _flat_indices(indices: Tensor, dims: Sequence[int]) -> Tensor:
    """Row-major flat positions of multi-indices ``(n_obs, N)``."""
    strides = torch.tensor(
        [math.prod(dims[n + 1 :]) for n in range(len(dims))], dtype=torch.int64, device=indices.device
    )
    return (indices * strides).sum(-1)


def multi_indices(flat: Tensor, dims: Sequence[int]) -> Tensor:
    """Multi-indices ``(n, N)`` of row-major flat positions ``flat`` ``(n,)`` in a d_1×…×d_N tensor."""
    out = []
    rest = flat.clone()
    for n in range(len(dims) - 1, -1, -1):
        out.append(rest % dims[n])
        rest = rest // dims[n]
    return torch.stack(out[::-1], dim=-1)


class CPCompletionObjective:
    """Tensor completion with a batched CP model, satisfying the trainer's ``BatchedObjective`` protocol.

    Parameters are the N factors ``(B, d_n, R)``. All runs share the observed multi-indices Ω (``(n_obs, N)``);
    the ground truth ``target`` ``(d_1, …, d_N)`` supplies the observed values and the logged metric
    ``reconstruction_error`` = ‖W − W*‖_F / ‖W*‖_F over **all** entries. ``method`` selects the gradient
    implementation (``auto``: :func:`choose_method`).

    Runs share Ω and never mix; the dense method gives each run the same numbers in any batch (tested), so with it
    the trainer may evaluate only the runs still active (``runs_independent``). The gather method's scatter-adds,
    and the sensing objectives' products, round a smaller batch differently in the last digit: they do not declare
    it.
    """

    def __init__(self, target: Tensor, indices: Tensor, method: Method = "auto") -> None:
        self.target = target
        self.dims = tuple(target.shape)
        self.indices = indices
        self.n_obs = int(indices.shape[0])
        self.values = target.reshape(-1)[_flat_indices(indices, self.dims)]
        self.method = choose_method(self.dims, self.n_obs) if method == "auto" else method
        if self.method not in ("gather", "dense"):
            raise ValueError(f"unknown CP gradient method '{method}' (expected gather, dense or auto)")
        if self.method == "dense":
            self.mask = torch.zeros_like(target)
            self.mask.view(-1)[_flat_indices(indices, self.dims)] = 1.0
            self.masked_target = target * self.mask
        self.runs_independent = self.method == "dense"

    def loss_and_grads(self, params: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """Per-run MSE over Ω ``(B,)`` and its gradient w.r.t. every factor."""
        if self.method == "gather":
            return cp_loss_and_grads_gather(params, self.indices, self.values)
        return cp_loss_and_grads_dense(params, self.mask, self.masked_target, self.n_obs)

    def metrics(self, params: list[Tensor]) -> dict[str, Tensor]:
        """Normalized reconstruction error over all entries, per run."""
        return {"reconstruction_error": normalized_reconstruction_error(cp_reconstruct(params), self.target)}
