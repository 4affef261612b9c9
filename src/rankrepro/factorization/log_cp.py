"""The order-784 CP "tensor-rank classifier" of chapter 2 (§2.2), computed in the log domain in float64.

A binarized image x ∈ {0,1}^P (P = 784 pixels, x_p = round(pixel/255)) is a multi-index into an order-P tensor
with mode dimension 2. A CP model of rank R has factors F ∈ R^{P×2×R} and predicts

    f(x) = Σ_r ∏_p F[p, x_p, r].

Every function is batched over independent runs: factors have shape ``(B, P, 2, R)``.

**Why the log domain.** A product of 784 factors overflows float32 (≈ 3.4e38) as soon as the factors drift ≈ 12 %
above 1 (1.12^784 ≈ 1e38) and underflows to 0 when they drift below; training diverges or stalls. Instead, with
L = log|F| and N = 1[F < 0],

    ℓ_r(x) = log|∏_p F[p, x_p, r]| = Σ_p x_p (L[p,1,r] − L[p,0,r]) + Σ_p L[p,0,r]   = (X·(L₁ − L₀) + 1ᵀL₀)_r,
    c_r(x) = #{p : F[p, x_p, r] < 0}                                               = (X·(N₁ − N₀) + 1ᵀN₀)_r,
    ∏_p F[p, x_p, r] = s_r(x)·exp ℓ_r(x),  s_r = (−1)^{c_r},

i.e. one (n×P)·(P×2R) matmul for n samples (a shared X serves all runs in one product). c is a sum of at most P
integers in {−1, 0, 1}: exact in float64, so the sign is exact. exp ℓ is finite in float64 up to ℓ ≈ 709
(factors ≈ 2.47 on average), far beyond float32.

**Exact zeros.** log 0 = −∞ would make L₁ − L₀ undefined (∞ − ∞). With Z = 1[F = 0] we use L = log|F| on the
non-zero entries and L = 0 where F = 0, and count the selected zeros z_r(x) = (X·(Z₁ − Z₀) + 1ᵀZ₀)_r (exact, as c):

    ∏_p F[p, x_p, r] = [z_r(x) = 0] · Q_r(x),    Q_r(x) = s_r(x)·exp ℓ_r(x) = ∏_{p: F[p,x_p,r] ≠ 0} F[p, x_p, r].

The N columns are only added to the matmul when F has a negative entry (s = 1 otherwise), and the Z columns only
when it has an exact zero: with the paper's positive initialisation the forward is then one (n×P)·(P×R) product.

**Gradient.** For a loss L(f) with per-sample derivative g_b = ∂L/∂f(x_b), the chain rule needs the product of
the *other* factors, ∂f(x)/∂F[p, x_p, r] = ∏_{q≠p} F[q, x_q, r]. When F[p, x_p, r] ≠ 0 it is
[z_r = 0]·Q_r / F[p, x_p, r]; when F[p, x_p, r] = 0 it is [z_r = 1]·Q_r (that zero is the only one, and Q_r is
the product of all the non-zero ones, i.e. of the others). With M_{br} = g_b [z_br = 0] Q_br and
M'_{br} = g_b [z_br = 1] Q_br:

    ∂L/∂F[p,1,r] = (XᵀM)[p,r] / F[p,1,r]                    if F[p,1,r] ≠ 0,   (XᵀM')[p,r]          if F[p,1,r] = 0,
    ∂L/∂F[p,0,r] = ((1−X)ᵀM)[p,r] / F[p,0,r]                if F[p,0,r] ≠ 0,   ((1−X)ᵀM')[p,r]      if F[p,0,r] = 0,

with (1−X)ᵀM = colsum(M) − XᵀM: one more matmul (two when F has zeros). No tiny floor is involved: zeros are
handled exactly. (The subtraction colsum(M) − XᵀM has an absolute rounding error ≈ 1e-16·Σ_b|M_br|, negligible
next to Adam's ε = 1e-8 for the O(1) residuals of this problem.) For the mean squared error over n samples,
g_b = 2(f(x_b) − y_b)/n.

**Two backends for the products X·A and XᵀM.** ``X`` is either a dense tensor (torch matmuls; any device) or a
:class:`BinaryRows` (the ones of X as scipy CSR matrices, CPU). Binarized MNIST images are ≈ 13 % ones, and a dense
float64 X is memory-bound (31 MB per 5,000 images read twice per step, with mini-batch gathers on top), while the
sparse products, row gathers included, touch only the ones: 1.5× (R = 1) to 2.5× (R ≥ 8) faster than the dense
path on a 2-core CPU, and 6× to 90× faster than the direct float32 product (see benchmarks/bench_log_cp.py). Both
compute the same sums (equal to rounding; the sign and zero counts exactly). :func:`fit` uses the sparse backend on
CPU.

:func:`direct_product_forward` is the naive formulation (gather F[p, x_p, r], multiply the P factors, autograd),
kept as the baseline of the benchmark and the reference of the tests.

:func:`fit` trains a batch of runs with mini-batch Adam (:class:`rankrepro.core.optim.Adam`) on the MSE, evaluates the
full-train MSE and the clamped test error (the paper's test loss) periodically, and checkpoints atomically so that a
resumed job ends bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import Tensor
from tqdm.auto import tqdm

from rankrepro.core.checkpoint import resume_payload, save_checkpoint
from rankrepro.core.optim import Adam

log = logging.getLogger(__name__)

#: Samples per chunk when evaluating a whole data set (bounds the memory of the float64 copy of X).
EVAL_CHUNK = 8192

Backend = Literal["auto", "dense", "sparse"]


# ----------------------------------------------------------------------------------------------------------------
# data and initialisation


def binarize_images(images: np.ndarray | Tensor) -> Tensor:
    """x_p = round(pixel/255) = 1[pixel ≥ 128] for uint8 images ``(n, 28, 28)`` or ``(n, 784)``: float64 ``(n, 784)``.

    (pixel/255 = 0.5 would need pixel = 127.5, so the rounding has no ties.) Any trailing shape is flattened.
    """
    tensor = torch.as_tensor(np.asarray(images) if not isinstance(images, Tensor) else images)
    if tensor.dtype != torch.uint8:
        raise ValueError(f"binarize_images expects uint8 pixels in [0, 255], got {tensor.dtype}")
    if tensor.dim() < 2:
        raise ValueError(f"binarize_images expects (n, …) images, got shape {tuple(tensor.shape)}")
    return (tensor.reshape(tensor.shape[0], -1) >= 128).to(torch.float64)


def init_factors(
    batch: int,
    order: int,
    rank: int,
    mean: float = 1.0,
    std: float = 1e-3,
    *,
    generators: Sequence[torch.Generator],
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Factors F[b] = mean + std·Z[b], Z[b] ~ N(0, 1)^{order×2×rank} drawn from ``generators[b]``: ``(B, order, 2, R)``.

    One CPU generator per run, seeded by the caller (the draw of run b does not depend on the other runs).
    """
    if len(generators) != batch:
        raise ValueError(f"init_factors needs one generator per run ({batch}), got {len(generators)}")
    draws = [torch.randn(order, 2, rank, generator=g, dtype=dtype) for g in generators]
    return torch.stack(draws) * std + mean


# ----------------------------------------------------------------------------------------------------------------
# forward and gradient


@dataclass(frozen=True)
class _Tables:
    """Per-run matmul right-hand sides and offsets: columns [ℓ | c | z] (c only if F < 0 somewhere, z if F = 0)."""

    delta: Tensor  # (B, P, kR): [L₁ − L₀ | N₁ − N₀ | Z₁ − Z₀]
    base: Tensor  # (B, kR):    [1ᵀL₀ | 1ᵀN₀ | 1ᵀZ₀]
    rank: int
    has_negatives: bool
    has_zeros: bool


def _tables(factors: Tensor) -> _Tables:
    if factors.dim() != 4 or factors.shape[2] != 2:
        raise ValueError(f"factors must have shape (B, P, 2, R), got {tuple(factors.shape)}")
    zero, neg = factors == 0, factors < 0
    has_zeros, has_negatives = bool(zero.any()), bool(neg.any())
    logs = torch.log(factors.abs().masked_fill(zero, 1.0)) if has_zeros else torch.log(factors.abs())
    parts = [logs]
    if has_negatives:
        parts.append(neg.to(factors.dtype))
    if has_zeros:
        parts.append(zero.to(factors.dtype))
    delta = torch.cat([t[:, :, 1] - t[:, :, 0] for t in parts], dim=-1)
    base = torch.cat([t[:, :, 0].sum(1) for t in parts], dim=-1)
    return _Tables(delta, base, factors.shape[-1], has_negatives, has_zeros)


class BinaryRows:
    """Binary samples x ∈ {0,1}^P stored as the ones of scipy CSR matrices (float64 data), for fast CPU products.

    ``matrices`` holds the distinct ``(n, P)`` sample matrices; ``owners[b]`` is the index of run b's matrix, or
    ``owners`` is None when ``matrices[0]`` is shared by every run. :meth:`from_dense` builds it from a dense
    ``(n, P)`` or ``(B, n, P)`` 0/1 array, storing runs with equal samples once (§2.2's natural and random-label
    runs share their images); :meth:`rows` takes a subset of samples (a mini-batch) of every distinct matrix in C
    (scipy's row gather), touching only the ones.
    """

    def __init__(self, matrices: Sequence[sp.csr_array], owners: Sequence[int] | None = None) -> None:
        shapes = {m.shape for m in matrices}
        if not matrices or len(shapes) != 1:
            raise ValueError("BinaryRows needs at least one matrix, all of the same shape")
        if owners is None and len(matrices) != 1:
            raise ValueError("BinaryRows without owners needs exactly one (shared) matrix")
        if owners is not None and sorted(set(owners)) != list(range(len(matrices))):
            raise ValueError(f"owners {list(owners)} must use every one of the {len(matrices)} matrices, and no other")
        self.matrices = tuple(matrices)
        self.owners = None if owners is None else tuple(int(o) for o in owners)
        self.n_samples, self.order = next(iter(shapes))

    @property
    def per_run(self) -> bool:
        """Whether the runs have samples of their own (else one matrix is shared by every run)."""
        return self.owners is not None

    @classmethod
    def from_dense(cls, X: Tensor | np.ndarray) -> BinaryRows:
        """From a dense 0/1 array ``(n, P)`` (shared) or ``(B, n, P)`` (per run; equal runs stored once); other
        values are rejected."""
        array = X.detach().cpu().numpy() if isinstance(X, Tensor) else np.asarray(X)
        if array.ndim not in (2, 3):
            raise ValueError(f"X must be (n, P) or (B, n, P), got shape {array.shape}")
        if array.dtype != np.bool_ and not np.isin(array, (0, 1)).all():
            raise ValueError("BinaryRows.from_dense expects a 0/1 array")
        if array.ndim == 2:
            return cls([_csr(array)])
        distinct, owners = distinct_slices(array)
        return cls([_csr(array[b]) for b in distinct], owners)

    def run_groups(self, batch: int) -> list[tuple[sp.csr_array, list[int]]]:
        """Each distinct matrix with the runs (of ``batch``) whose samples it holds."""
        if self.owners is None:
            return [(self.matrices[0], list(range(batch)))]
        return [(m, [b for b, o in enumerate(self.owners) if o == i]) for i, m in enumerate(self.matrices)]

    def rows(self, index: Tensor | np.ndarray) -> BinaryRows:
        """The samples ``index`` (in that order) of every run."""
        index = index.cpu().numpy() if isinstance(index, Tensor) else np.asarray(index)
        return BinaryRows([m[index] for m in self.matrices], self.owners)

    def to_dense(self) -> Tensor:
        """The dense float64 ``(n, P)`` or ``(B, n, P)`` tensor (tests)."""
        dense = [torch.from_numpy(m.toarray()) for m in self.matrices]
        return dense[0] if self.owners is None else torch.stack([dense[o] for o in self.owners])

    def __repr__(self) -> str:
        runs = "shared" if self.owners is None else f"{len(self.owners)} ({len(self.matrices)} distinct)"
        return f"BinaryRows(n={self.n_samples}, P={self.order}, runs={runs}, ones={sum(m.nnz for m in self.matrices)})"


def _csr(array: np.ndarray) -> sp.csr_array:
    """The float64 CSR matrix of a 0/1 array, its indices sorted (the same sums in the same order, whatever the
    source)."""
    matrix = sp.csr_array(array.astype(np.float64, copy=False))
    matrix.sort_indices()
    return matrix


def distinct_slices(array: np.ndarray) -> tuple[list[int], list[int]]:
    """The first index of each distinct slice ``array[b]`` (in order of appearance) and, for every b, the position
    of its slice among them: ``array[b] == array[distinct[owners[b]]]``."""
    distinct: list[int] = []
    owners: list[int] = []
    for b in range(array.shape[0]):
        match = next((i for i, d in enumerate(distinct) if np.array_equal(array[b], array[d])), None)
        if match is None:
            distinct.append(b)
            match = len(distinct) - 1
        owners.append(match)
    return distinct, owners


Design = Tensor | BinaryRows


def _num_samples(X: Design) -> int:
    return X.n_samples if isinstance(X, BinaryRows) else X.shape[-2]


def _grouped_product(X: BinaryRows, operand: Tensor, *, transpose: bool) -> Tensor:
    """X_b·operand[b] (``transpose``: X_bᵀ·operand[b]) for every run b: ``(B, n, k)`` or ``(B, P, k)``.

    One scipy product per distinct matrix, its runs' operands side by side as columns. scipy's CSR/CSC products
    accumulate each output column over the same non-zeros in the same order whatever the number of columns, so a
    run's result is bit-identical to a product of its own (tested).
    """
    batch, _, k = operand.shape
    out_rows = X.order if transpose else X.n_samples
    out = torch.empty(batch, out_rows, k, dtype=operand.dtype)
    for matrix, runs in X.run_groups(batch):
        index = torch.tensor(runs)
        columns = operand[index].permute(1, 0, 2).reshape(operand.shape[1], len(runs) * k).numpy()
        product = torch.from_numpy((matrix.T if transpose else matrix) @ columns)
        out[index] = product.to(operand.dtype).reshape(out_rows, len(runs), k).permute(1, 0, 2)
    return out


def _matmul(X: Design, rhs: Tensor) -> Tensor:
    """X·rhs[b] for every run: X ``(n, P)`` shared or ``(B, n, P)`` per run, rhs ``(B, P, k)`` → ``(B, n, k)``."""
    batch, order, k = rhs.shape
    if isinstance(X, BinaryRows):
        return _grouped_product(X, rhs, transpose=False)
    if X.dim() == 2:
        flat = X @ rhs.permute(1, 0, 2).reshape(order, batch * k)  # one GEMM for all runs
        return flat.reshape(X.shape[0], batch, k).permute(1, 0, 2)
    return torch.bmm(X, rhs)


def _matmul_t(X: Design, M: Tensor) -> Tensor:
    """Xᵀ·M[b] for every run: X ``(n, P)`` or ``(B, n, P)``, M ``(B, n, R)`` → ``(B, P, R)``."""
    batch, n, rank = M.shape
    if isinstance(X, BinaryRows):
        return _grouped_product(X, M, transpose=True)
    if X.dim() == 2:
        flat = X.transpose(0, 1) @ M.permute(1, 0, 2).reshape(n, batch * rank)
        return flat.reshape(X.shape[1], batch, rank).permute(1, 0, 2)
    return torch.bmm(X.transpose(1, 2), M)


def _check_X(factors: Tensor, X: Design) -> Design:
    batch, order = factors.shape[0], factors.shape[1]
    if isinstance(X, BinaryRows):
        if X.order != order or (X.per_run and len(X.owners) != batch) or factors.device.type != "cpu":
            raise ValueError(f"{X} does not match factors of shape {tuple(factors.shape)} on {factors.device}")
        return X
    if X.dim() not in (2, 3) or X.shape[-1] != order:
        raise ValueError(f"X must be (n, {order}) or (B, n, {order}), got {tuple(X.shape)}")
    if X.dim() == 3 and X.shape[0] != batch:
        raise ValueError(f"per-run X has {X.shape[0]} runs, factors have {batch}")
    return X.to(factors.dtype)


@dataclass(frozen=True)
class _Components:
    """Per-run, per-sample, per-component Q = s·exp ℓ and the number z of selected zero factors."""

    q: Tensor  # (B, n, R)
    zeros: Tensor | None  # (B, n, R) counts, None when F has no zeros

    def products(self) -> Tensor:
        """∏_p F[p, x_p, r] = [z = 0]·Q."""
        return self.q if self.zeros is None else torch.where(self.zeros == 0, self.q, torch.zeros_like(self.q))


def _components(factors: Tensor, X: Design) -> _Components:
    tables = _tables(factors)
    R = tables.rank
    acc = _matmul(X, tables.delta) + tables.base.unsqueeze(1)  # (B, n, kR)
    q = torch.exp(acc[..., :R])
    if tables.has_negatives:  # times (−1)^c, exact: c is an exactly represented integer
        q = q * (1.0 - 2.0 * torch.remainder(acc[..., R : 2 * R], 2.0))
    zeros = acc[..., -R:] if tables.has_zeros else None
    return _Components(q, zeros)


def _chunk(X: Design, start: int, stop: int) -> Design:
    if isinstance(X, BinaryRows):
        return X.rows(np.arange(start, min(stop, X.n_samples)))
    return X[..., start:stop, :]


def log_cp_forward(factors: Tensor, X: Design, *, chunk_size: int | None = None) -> Tensor:
    """Predictions f_b(x) = Σ_r ∏_p F_b[p, x_p, r] in the log domain: ``(B, n)``.

    ``factors`` ``(B, P, 2, R)``; ``X`` ``(n, P)`` binary, shared by all runs, or ``(B, n, P)`` per run (any dtype;
    converted to the factors' dtype), or a :class:`BinaryRows`. ``chunk_size`` evaluates the samples in chunks to
    bound memory.
    """
    n = _num_samples(X)
    if chunk_size is not None and n > chunk_size:
        parts = [log_cp_forward(factors, _chunk(X, start, start + chunk_size)) for start in range(0, n, chunk_size)]
        return torch.cat(parts, dim=1)
    return _components(factors, _check_X(factors, X)).products().sum(-1)


def _targets(y: Tensor, batch: int, dtype: torch.dtype) -> Tensor:
    y = y.to(dtype)
    return y.expand(batch, -1) if y.dim() == 1 else y


def log_cp_mse_and_grad(factors: Tensor, X: Design, y: Tensor) -> tuple[Tensor, Tensor]:
    """Per-run MSE (1/n) Σ_b (f(x_b) − y_b)² ``(B,)`` and its exact gradient w.r.t. ``factors`` (module docstring).

    ``X`` as in :func:`log_cp_forward`; ``y`` is ``(n,)`` shared or ``(B, n)`` per run.
    """
    X = _check_X(factors, X)
    comps = _components(factors, X)
    prods = comps.products()
    residual = prods.sum(-1) - _targets(y, factors.shape[0], factors.dtype)  # (B, n)
    n = residual.shape[1]
    loss = residual.pow(2).mean(1)
    g = (2.0 / n) * residual
    M = g.unsqueeze(-1) * prods  # (B, n, R): g_b [z = 0] Q
    grad = _split_gradient(X, M, factors, divide=True)
    if comps.zeros is not None:  # F has exact zeros: their gradient is the product of the others, [z = 1]·Q
        M1 = g.unsqueeze(-1) * torch.where(comps.zeros == 1, comps.q, torch.zeros_like(comps.q))
        grad = torch.where(factors == 0, _split_gradient(X, M1, factors, divide=False), grad)
    return loss, grad


def _split_gradient(X: Design, M: Tensor, factors: Tensor, *, divide: bool) -> Tensor:
    """[(1−X)ᵀM, XᵀM] stacked on the mode axis ``(B, P, 2, R)``; with ``divide``, divided by F where F ≠ 0."""
    ones = _matmul_t(X, M)  # Σ_b x_bp M_br
    zeros = M.sum(1, keepdim=True) - ones  # Σ_b (1 − x_bp) M_br
    stacked = torch.stack([zeros, ones], dim=2)
    if not divide:
        return stacked
    safe = torch.where(factors == 0, torch.ones_like(factors), factors)  # F = 0 entries: replaced by the caller
    return stacked / safe


def clamped_squared_error(pred: Tensor, y: Tensor, clamp: float = 4.0) -> Tensor:
    """(1/n) Σ_b min((f_b − y_b)², clamp) per run ``(B,)``: the paper's test loss.

    With targets {0, 2} the clamp 4 is the squared error of predicting the opposite label, so a wildly wrong
    prediction costs no more than a wrong label. Divide by 4 for the 0/1-label scale of the figures.
    """
    err = (pred - _targets(y, pred.shape[0], pred.dtype)).pow(2)
    return torch.clamp(err, max=clamp).mean(-1)


def direct_product_forward(factors_f32: Tensor, X: Tensor) -> Tensor:
    """The naive baseline: gather F[p, x_p, r] and multiply the P factors directly (differentiable by autograd).

    This is what the original float32 implementation did; in float32 the product overflows to inf (underflows to
    0) once the factors drift ≈ 12 % from 1. Memory ∝ B·n·P·R. ``(B, n)``; used by the benchmark and the tests.
    """
    X = X.to(torch.bool)
    if X.dim() == 2:
        X = X.unsqueeze(0)
    selected = torch.where(X.unsqueeze(-1), factors_f32[:, None, :, 1, :], factors_f32[:, None, :, 0, :])  # (B,n,P,R)
    return selected.prod(dim=2).sum(-1)


# ----------------------------------------------------------------------------------------------------------------
# training


@dataclass(frozen=True)
class FitSettings:
    """Mini-batch Adam on the MSE: budget, evaluation cadence and checkpoint cadence (0: none) in epochs."""

    epochs: int
    batch_size: int
    lr: float
    eval_every: int
    shuffle_seed: int
    checkpoint_every: int = 0

    def __post_init__(self) -> None:
        if (
            self.epochs < 0
            or self.batch_size < 1
            or not self.lr > 0
            or self.eval_every < 1
            or self.checkpoint_every < 0
        ):
            raise ValueError(f"invalid FitSettings {self}")


@dataclass
class FitResult:
    """Final factors, per-run final metrics and the tidy history (epoch, run, train_mse, test_error)."""

    factors: Tensor  # (B, P, 2, R)
    train_mse: Tensor  # (B,) full-train MSE at the end
    test_error: Tensor  # (B,) clamped test error at the end
    diverged: Tensor  # (B,) bool: a mini-batch loss became non-finite; the run was frozen there
    history: pd.DataFrame
    resumed_from: int = 0  # epoch the run was resumed from (0: started fresh)
    extras: dict[str, object] = field(default_factory=dict)


def epoch_permutation(n: int, shuffle_seed: int, epoch: int, device: torch.device | str = "cpu") -> Tensor:
    """The sample order of ``epoch``: a function of (shuffle_seed, epoch) only, so a resumed job replays it."""
    seed = int(np.random.SeedSequence([shuffle_seed, epoch]).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(device)


def _rows(X: Design, index: Tensor) -> Design:
    return X.rows(index) if isinstance(X, BinaryRows) else X.index_select(X.dim() - 2, index)


def _design(X: Design, backend: Backend, device: torch.device) -> Design:
    """X in the backend's representation: :class:`BinaryRows` (sparse, CPU) or a dense tensor on ``device``."""
    if backend not in ("auto", "dense", "sparse"):
        raise ValueError(f"unknown backend '{backend}' (expected 'auto', 'dense' or 'sparse')")
    sparse = backend == "sparse" or (backend == "auto" and device.type == "cpu")
    if isinstance(X, BinaryRows):
        return X if sparse else X.to_dense().to(device)
    return BinaryRows.from_dense(X) if sparse else X.to(device)


def _evaluate(factors: Tensor, train: tuple[Design, Tensor], test: tuple[Design, Tensor]) -> tuple[Tensor, Tensor]:
    batch = factors.shape[0]
    pred = log_cp_forward(factors, train[0], chunk_size=EVAL_CHUNK)
    train_mse = (pred - _targets(train[1], batch, factors.dtype)).pow(2).mean(1)
    test_error = clamped_squared_error(log_cp_forward(factors, test[0], chunk_size=EVAL_CHUNK), test[1])
    return train_mse, test_error


def _load_state(path: Path | None, fingerprint: str, device: torch.device) -> dict | None:
    """The saved fit state, or None (no checkpoint, or a corrupted/stale one, which is removed)."""
    state = resume_payload(path, fingerprint)
    if state is None:
        return None
    log.info("resuming from checkpoint %s at epoch %d", path, state["epoch"])
    state["factors"] = state["factors"].to(device)
    state["opt_state"] = {k: v.to(device) for k, v in state["opt_state"].items()}
    state["active"] = state["active"].to(device)
    return state


def fit(
    factors: Tensor,
    train: tuple[Design, Tensor],
    test: tuple[Design, Tensor],
    settings: FitSettings,
    *,
    checkpoint_path: str | os.PathLike | None = None,
    fingerprint: str = "",
    progress: bool = False,
    backend: Backend = "auto",
) -> FitResult:
    """Train a batch of CP classifiers with mini-batch Adam on the MSE (log-domain forward, analytic gradient).

    ``train = (X, y)`` and ``test = (X, y)``: X ``(n, P)`` shared by the runs or ``(B, n, P)`` per run (binary;
    any dtype, e.g. uint8 to save memory: mini-batches are converted to the factors' dtype) or a :class:`BinaryRows`,
    y ``(n,)`` or ``(B, n)``. ``backend``: ``sparse`` (:class:`BinaryRows`, CPU), ``dense`` (torch matmuls), or
    ``auto`` (sparse on CPU, dense elsewhere); keep it fixed across a resume (the backends agree to rounding only).

    Each epoch visits the training samples in the order :func:`epoch_permutation` ``(shuffle_seed, epoch)`` in
    mini-batches of ``batch_size`` (the last one may be smaller), one Adam step each. A run whose mini-batch loss
    becomes non-finite is frozen at the parameters before that step and flagged ``diverged``. After every
    ``eval_every``-th epoch and after the last one, the full-train MSE and the clamped test error of every run are
    recorded. Every ``checkpoint_every`` epochs (and at the end) the state — factors, Adam moments, epoch,
    history — is written atomically to ``checkpoint_path``; a call that finds a checkpoint for ``fingerprint``
    resumes from it and ends bit-identical to an uninterrupted run.
    """
    device = factors.device
    path = Path(checkpoint_path) if checkpoint_path is not None else None
    batch = factors.shape[0]
    optimizer = Adam(torch.full((batch,), settings.lr, dtype=factors.dtype, device=device))
    state = _load_state(path, fingerprint, device)
    resumed_from = 0 if state is None else int(state["epoch"])
    if state is None:
        params = factors.detach().clone()
        state = {
            "epoch": 0,
            "factors": params,
            "opt_state": optimizer.init_state([params]),
            "active": torch.ones(batch, dtype=torch.bool, device=device),
            "history": {"epoch": [], "train_mse": [], "test_error": []},
        }
    X_train, y_train = _design(train[0], backend, device), train[1]
    n = _num_samples(X_train)
    if y_train.shape[-1] != n or _num_samples(test[0]) != test[1].shape[-1]:
        raise ValueError("X and y have different numbers of samples")
    y_train = _targets(y_train.to(device), batch, factors.dtype)
    test = (_design(test[0], backend, device), test[1].to(device))
    history = state["history"]

    def record(epoch: int) -> None:
        train_mse, test_error = _evaluate(state["factors"], (X_train, y_train), test)
        history["epoch"].append(epoch)
        history["train_mse"].append(train_mse)
        history["test_error"].append(test_error)

    bar = tqdm(
        total=settings.epochs,
        initial=state["epoch"],
        disable=not progress,
        unit="epoch",
        mininterval=5.0,
        dynamic_ncols=True,
        desc="log-CP fit",
    )
    with torch.no_grad():
        while state["epoch"] < settings.epochs:
            epoch = state["epoch"] + 1
            order = epoch_permutation(n, settings.shuffle_seed, epoch, device)
            params = state["factors"]
            for start in range(0, n, settings.batch_size):
                index = order[start : start + settings.batch_size]
                loss, grad = log_cp_mse_and_grad(params, _rows(X_train, index), y_train.index_select(1, index))
                state["active"] = state["active"] & torch.isfinite(loss)
                optimizer.step([params], [grad], state["opt_state"], state["active"])
            state["epoch"] = epoch
            if epoch % settings.eval_every == 0 or epoch == settings.epochs:
                record(epoch)
                if progress:
                    bar.set_postfix(
                        train_mse=f"{float(history['train_mse'][-1].mean()):.4g}",
                        test=f"{float(history['test_error'][-1].mean()):.4g}",
                        refresh=False,
                    )
            if (
                path is not None
                and settings.checkpoint_every
                and epoch % settings.checkpoint_every == 0
                and epoch < settings.epochs
            ):
                save_checkpoint(path, state, fingerprint)
            bar.update(1)
        if not history["epoch"] or history["epoch"][-1] != state["epoch"]:
            record(state["epoch"])  # nothing to train (epochs = 0, or resumed from a finished job without a record)
    bar.close()
    if path is not None:
        save_checkpoint(path, state, fingerprint)
    epochs = np.asarray(history["epoch"], dtype=np.int64)
    train_mse = torch.stack(history["train_mse"]).cpu().numpy()  # (T, B)
    test_error = torch.stack(history["test_error"]).cpu().numpy()
    frame = pd.DataFrame(
        {
            "epoch": np.repeat(epochs, batch),
            "run": np.tile(np.arange(batch), len(epochs)),
            "train_mse": train_mse.reshape(-1),
            "test_error": test_error.reshape(-1),
        }
    )
    return FitResult(
        factors=state["factors"],
        train_mse=history["train_mse"][-1],
        test_error=history["test_error"][-1],
        diverged=~state["active"],
        history=frame,
        resumed_from=resumed_from,
    )
