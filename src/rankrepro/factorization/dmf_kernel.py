"""Compiled gradient descent for deep matrix factorization: each run's whole loop runs natively (numba).

Chapter 1 trains tiny products (2×2 … 5×10, depth ≤ 4) for up to 10⁸ iterations. One iteration is ≈ 100 flops, so
any per-iteration interpreter or tensor-library dispatch costs 10²–10⁴× the arithmetic. Here each run's loop is
compiled (numba: LLVM, the standard JIT of numerical Python; no C toolchain at install or run time) for its exact
factor shapes and runs without leaving native code between checkpoints; runs are independent and the kernel releases
the GIL, so runs of a batch can share threads. ``benchmarks/bench_dmf.py`` times it against the batched torch engine
(:class:`rankrepro.factorization.dmf.MatrixCompletionDMF`, which remains the engine of large batched factorizations) and
against a per-run autograd loop.

Objective and update are those of :class:`rankrepro.factorization.dmf.MatrixCompletionDMF` with
:class:`rankrepro.core.optim.GradientDescent`, in float64: for W = W_N ⋯ W_1 (W_j of shape d_{j+1} × d_j, d_0 = n,
d_N = m),

    ℓ(W) = ½ Σ_{(i,j)∈Ω} (W_ij − Y_ij)²,   R = P_Ω(W − Y),
    ∂ℓ/∂W_j = (W_N ⋯ W_{j+1})ᵀ R (W_{j−1} ⋯ W_1)ᵀ,   W_j ← W_j − η ∂ℓ/∂W_j  (all j at once).

Stop rule (as :class:`rankrepro.core.trainer.StopRule`): at iterations t ≡ 0 (mod ``check_every``) a run whose loss at
the current point is < ``threshold`` for ``patience`` consecutive checks stops there, before its update. A
non-finite loss stops the run as ``diverged`` at that iteration (its last finite iteration is t − 1; the logged
rows end there). Logging: at each iteration of ``log_iterations`` the loss and the end-to-end matrix W are stored
in preallocated arrays; norms, singular values and the effective rank are computed from them afterwards.

Checkpoints: the loop advances in chunks of ``checkpoint_every`` iterations; the complete state (factors, status,
stop counters, logs) is saved at each chunk boundary, and a resumed job ends bit-identical to an uninterrupted one
because every iteration depends only on that state.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
import torch
from tqdm.auto import tqdm

from rankrepro.core.checkpoint import resume_payload, save_checkpoint
from rankrepro.core.errors import ConfigError
from rankrepro.core.trainer import CONVERGED, DIVERGED, MAX_ITERS, RUNNING, TrainResult, TrainSettings
from rankrepro.factorization.dmf import end_to_end_metrics

log = logging.getLogger(__name__)

#: preallocated log entries (float64) above which a run is refused with a message (≈ 2 GiB)
MAX_LOGGED_VALUES = 2**28
# Columns of a run's integer state vector.
STATUS, STOPPED_AT, BELOW, LOG_POS = 0, 1, 2, 3


@dataclass(frozen=True)
class FactorLayout:
    """Where the factors of one run live in its flat parameter vector, and the shapes of its prefix products.

    ``dims`` = (d_0 = n, d_1, …, d_N = m): factor j (0-based) is d_{j+1} × d_j and occupies
    ``flat[factor_offsets[j]:factor_offsets[j+1]]`` (row-major); prefix product P_j = W_j ⋯ W_1 is d_{j+1} × n and
    occupies ``prefixes[prefix_offsets[j]:prefix_offsets[j+1]]``.
    """

    dims: np.ndarray
    factor_offsets: np.ndarray
    prefix_offsets: np.ndarray

    @classmethod
    def of(cls, shapes: list[tuple[int, int]]) -> FactorLayout:
        """Layout of factors with the given shapes [(d_1, d_0), (d_2, d_1), …] (consecutive shapes must chain)."""
        if not shapes:
            raise ValueError("a factorization needs at least one factor")
        for (rows, _), (_, cols) in zip(shapes[:-1], shapes[1:]):
            if rows != cols:
                raise ValueError(f"factor shapes {shapes} do not chain (W_j is d_(j+1) × d_j)")
        dims = np.array([shapes[0][1]] + [rows for rows, _ in shapes], dtype=np.int64)
        n = int(dims[0])
        factor_offsets = np.concatenate([[0], np.cumsum(dims[1:] * dims[:-1])]).astype(np.int64)
        prefix_offsets = np.concatenate([[0], np.cumsum(dims[1:] * n)]).astype(np.int64)
        return cls(dims, factor_offsets, prefix_offsets)

    @property
    def depth(self) -> int:
        """Number of factors N."""
        return len(self.dims) - 1


@dataclass(frozen=True)
class CompiledDMF:
    """The two compiled functions of one factorization shape (see :func:`compile_dmf`)."""

    loss_and_gradient: Callable
    gd_chunk: Callable


@functools.cache
def compile_dmf(dims: tuple[int, ...]) -> CompiledDMF:
    """Native loss/gradient and GD loop for factors of shapes d_{j+1} × d_j, ``dims`` = (d_0 = n, …, d_N = m).

    The shape is baked into the machine code (closure constants: every loop has a constant trip count, so LLVM
    unrolls the tiny matrix products — 4× faster than the same code with run-time shapes); each shape compiles once
    per process (≈ 0.5 s). Never cached on disk: numba's on-disk index is one file for every closure of this function,
    and processes compiling different shapes at once (two Snakemake jobs, a test run beside them) can leave an index
    entry pointing at another shape's machine code — observed here as silently wrong trajectories.

    ``loss_and_gradient(flat, target, mask, prefixes, back, back_next, grad)`` returns ℓ = ½‖P_Ω(W − Y)‖² at the
    factors in ``flat`` and writes ∂ℓ/∂W_j into ``grad`` (same layout as ``flat``). Forward: P_0 = W_1,
    P_j = W_{j+1} P_{j−1} (into ``prefixes``), R = M ⊙ (P_{N−1} − Y). Backward: B = R; for j = N−1 … 0:
    ∂ℓ/∂W_j = B P_{j−1}ᵀ (B itself for j = 0), then B ← W_jᵀ B (``back``, ``back_next``: scratch).

    ``gd_chunk(flat, target, mask, lr, threshold, patience, check_every, t_start, t_end, state, log_iterations,
    log_loss, log_matrix)`` advances one run from iteration ``t_start`` to ``t_end`` (or until it stops), in place.
    ``state`` = [status, stopped_at, below, log_pos] (int64); ``log_loss[k]`` and ``log_matrix[k]`` (m·n, row-major)
    receive the loss and W at iteration ``log_iterations[k]``. Iteration t: loss and gradient at the current point;
    log if t is a log iteration; at iterations t ≡ 0 (mod ``check_every``) count consecutive losses < ``threshold``
    and stop (status converged, stopped_at = t) after ``patience`` of them; else W_j ← W_j − η ∂ℓ/∂W_j. A non-finite
    loss stops the run with status diverged at t.
    """
    layout = FactorLayout.of([(dims[j + 1], dims[j]) for j in range(len(dims) - 1)])
    depth, n, m = layout.depth, dims[0], dims[-1]
    factor_offsets = tuple(int(x) for x in layout.factor_offsets)
    prefix_offsets = tuple(int(x) for x in layout.prefix_offsets)
    n_params, n_prefix, widest = factor_offsets[-1], prefix_offsets[-1], max(dims) * n
    last = prefix_offsets[depth - 1]

    @numba.njit(nogil=True)
    def loss_and_gradient(flat, target, mask, prefixes, back, back_next, grad):
        for idx in range(dims[1] * n):
            prefixes[idx] = flat[idx]
        for j in range(1, depth):
            rows, inner = dims[j + 1], dims[j]
            fo, po, pin = factor_offsets[j], prefix_offsets[j], prefix_offsets[j - 1]
            for r in range(rows):
                for c in range(n):
                    acc = 0.0
                    for s in range(inner):
                        acc += flat[fo + r * inner + s] * prefixes[pin + s * n + c]
                    prefixes[po + r * n + c] = acc
        loss = 0.0
        for idx in range(m * n):
            res = mask[idx] * (prefixes[last + idx] - target[idx])
            back[idx] = res
            loss += res * res
        loss *= 0.5
        for j in range(depth - 1, -1, -1):
            rows, cols, fo = dims[j + 1], dims[j], factor_offsets[j]
            if j == 0:
                for idx in range(rows * n):
                    grad[fo + idx] = back[idx]
            else:
                pin = prefix_offsets[j - 1]
                for r in range(rows):
                    for c in range(cols):
                        acc = 0.0
                        for s in range(n):
                            acc += back[r * n + s] * prefixes[pin + c * n + s]
                        grad[fo + r * cols + c] = acc
                for r in range(cols):  # B ← W_jᵀ B: (cols × rows) · (rows × n)
                    for c in range(n):
                        acc = 0.0
                        for s in range(rows):
                            acc += flat[fo + s * cols + r] * back[s * n + c]
                        back_next[r * n + c] = acc
                for idx in range(cols * n):
                    back[idx] = back_next[idx]
        return loss

    @numba.njit(nogil=True)
    def gd_chunk(
        flat,
        target,
        mask,
        lr,
        threshold,
        patience,
        check_every,
        t_start,
        t_end,
        state,
        log_iterations,
        log_loss,
        log_matrix,
    ):
        prefixes = np.empty(n_prefix)
        back = np.empty(widest)
        back_next = np.empty(widest)
        grad = np.empty(n_params)
        n_logs = log_iterations.shape[0]
        next_check = -(-t_start // check_every) * check_every  # the first multiple of check_every ≥ t_start
        for t in range(t_start, t_end):
            loss = loss_and_gradient(flat, target, mask, prefixes, back, back_next, grad)
            if not np.isfinite(loss):
                state[STATUS] = DIVERGED
                state[STOPPED_AT] = t
                return
            pos = state[LOG_POS]
            if pos < n_logs and log_iterations[pos] == t:
                log_loss[pos] = loss
                for idx in range(m * n):
                    log_matrix[pos, idx] = prefixes[last + idx]
                state[LOG_POS] = pos + 1
            if t == next_check:
                next_check += check_every
                state[BELOW] = state[BELOW] + 1 if loss < threshold else 0
                if state[BELOW] >= patience:
                    state[STATUS] = CONVERGED
                    state[STOPPED_AT] = t
                    return
            for idx in range(n_params):
                flat[idx] -= lr * grad[idx]

    return CompiledDMF(loss_and_gradient, gd_chunk)


def flatten_factors(factors: list[torch.Tensor | np.ndarray]) -> tuple[np.ndarray, FactorLayout]:
    """One run's factors [W_1, …, W_N] as a flat float64 vector (row-major, W_1 first) and their layout."""
    arrays = [np.ascontiguousarray(np.asarray(f, dtype=np.float64)) for f in factors]
    layout = FactorLayout.of([a.shape for a in arrays])
    return np.concatenate([a.ravel() for a in arrays]), layout


def unflatten_factors(flat: np.ndarray, layout: FactorLayout) -> list[np.ndarray]:
    """Inverse of :func:`flatten_factors`: the factors as d_{j+1} × d_j arrays (copies)."""
    dims, offsets = layout.dims, layout.factor_offsets
    return [flat[offsets[j] : offsets[j + 1]].reshape(dims[j + 1], dims[j]).copy() for j in range(layout.depth)]


def log_schedule(settings: TrainSettings) -> np.ndarray:
    """The iterations t < max_iters at which the loss and W are logged: 0, log_every, 2·log_every, …"""
    return np.arange(0, settings.max_iters, settings.log_every, dtype=np.int64)


@dataclass
class _Batch:
    """The mutable state of every run of a batch (what a checkpoint holds)."""

    t: int
    flats: list[np.ndarray]
    states: np.ndarray  # (B, 4) int64
    log_loss: np.ndarray  # (B, L)
    log_matrix: np.ndarray  # (B, L, m·n)

    def to_payload(self) -> dict:
        return {
            "t": self.t,
            "flats": [torch.from_numpy(f) for f in self.flats],
            "states": torch.from_numpy(self.states),
            "log_loss": torch.from_numpy(self.log_loss),
            "log_matrix": torch.from_numpy(self.log_matrix),
        }

    @classmethod
    def from_payload(cls, payload: dict) -> _Batch:
        return cls(
            int(payload["t"]),
            [f.numpy().copy() for f in payload["flats"]],
            payload["states"].numpy().copy(),
            payload["log_loss"].numpy().copy(),
            payload["log_matrix"].numpy().copy(),
        )


def _fresh_batch(factor_lists: list[list[torch.Tensor]], n_logs: int, entries: int) -> _Batch:
    flats = [flatten_factors(factors)[0] for factors in factor_lists]
    batch = len(flats)
    states = np.zeros((batch, 4), dtype=np.int64)
    states[:, STATUS] = RUNNING
    states[:, STOPPED_AT] = -1
    return _Batch(0, flats, states, np.full((batch, n_logs), np.nan), np.full((batch, n_logs, entries), np.nan))


def train_dmf(
    factor_lists: list[list[torch.Tensor]],
    targets: torch.Tensor,
    masks: torch.Tensor,
    lrs: list[float],
    settings: TrainSettings,
    tracked: tuple[tuple[int, int], ...] = (),
    *,
    threads: int = 1,
    checkpoint_path: str | os.PathLike | None = None,
    fingerprint: str = "",
    progress: str | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> TrainResult:
    """Gradient descent on B independent DMF completion problems, each run's loop compiled; the trainer's result.

    ``factor_lists[b]`` = [W_1, …, W_N] of run b (depths may differ, no padding); ``targets``/``masks`` are
    ``(B, m, n)``; ``lrs[b]`` = η_b. ``settings.max_iters``, ``stop``, ``log_every`` and ``checkpoint_every`` mean
    what they mean for :func:`rankrepro.core.trainer.train` (``sync_every`` is not needed: every iteration checks for a
    non-finite loss). Up to ``threads`` runs advance in parallel (results do not depend on it). The returned
    :class:`TrainResult` holds the logged rows and the final metrics of
    :func:`rankrepro.factorization.dmf.end_to_end_metrics`. ``on_chunk`` (tests) is called with the iteration reached
    after every chunk and its checkpoint.
    """
    batch = len(factor_lists)
    if not (batch == targets.shape[0] == masks.shape[0] == len(lrs)):
        raise ValueError("factor_lists, targets, masks and lrs must have one entry per run")
    shape = tuple(targets.shape[-2:])
    layouts = [flatten_factors(factors)[1] for factors in factor_lists]
    for b, layout in enumerate(layouts):
        if (int(layout.dims[-1]), int(layout.dims[0])) != shape:
            raise ValueError(f"run {b}: the factors' product is {layout.dims[-1]}×{layout.dims[0]}, not {shape}")
    target_flat = [np.ascontiguousarray(targets[b].cpu().numpy(), dtype=np.float64).ravel() for b in range(batch)]
    mask_flat = [np.ascontiguousarray(masks[b].cpu().numpy(), dtype=np.float64).ravel() for b in range(batch)]
    entries = shape[0] * shape[1]
    n_logs = -(-settings.max_iters // settings.log_every)
    if batch * n_logs * (entries + 1) > MAX_LOGGED_VALUES:
        raise ConfigError(
            f"logging {n_logs:,} iterations of {batch} runs of {shape[0]}×{shape[1]} matrices "
            f"needs {batch * n_logs * (entries + 1) * 8 / 2**30:.1f} GiB: raise log_every "
            f"(now {settings.log_every}) or lower max_iters (now {settings.max_iters})"
        )
    schedule = log_schedule(settings)

    path = Path(checkpoint_path) if checkpoint_path is not None else None
    payload = resume_payload(path, fingerprint)
    state = _fresh_batch(factor_lists, len(schedule), entries) if payload is None else _Batch.from_payload(payload)
    resumed_from = state.t
    if payload is not None:
        log.info("resuming from checkpoint %s at iteration %d", path, state.t)
    stop = settings.stop

    kernels = [compile_dmf(tuple(int(d) for d in layout.dims)).gd_chunk for layout in layouts]

    def advance(b: int, t_end: int) -> None:
        kernels[b](
            state.flats[b],
            target_flat[b],
            mask_flat[b],
            float(lrs[b]),
            float(stop.threshold),
            int(stop.patience),
            int(stop.check_every),
            state.t,
            t_end,
            state.states[b],
            schedule,
            state.log_loss[b],
            state.log_matrix[b],
        )

    bar = tqdm(
        total=settings.max_iters,
        initial=state.t,
        desc=progress,
        disable=progress is None,
        mininterval=10.0,
        unit="it",
        dynamic_ncols=True,
    )
    chunk = settings.checkpoint_every or settings.max_iters
    with ThreadPoolExecutor(max_workers=max(1, min(threads, batch))) as pool:
        while state.t < settings.max_iters and bool((state.states[:, STATUS] == RUNNING).any()):
            t_end = min((state.t // chunk + 1) * chunk, settings.max_iters)
            running = [b for b in range(batch) if state.states[b, STATUS] == RUNNING]
            list(pool.map(lambda b: advance(b, t_end), running))
            state.t = t_end
            bar.update(state.t - bar.n)
            if path is not None and settings.checkpoint_every and state.t < settings.max_iters:
                save_checkpoint(path, state.to_payload(), fingerprint)
            if on_chunk is not None:
                on_chunk(state.t)
    bar.close()
    still = state.states[:, STATUS] == RUNNING
    state.states[still, STOPPED_AT] = state.t
    state.states[still, STATUS] = MAX_ITERS
    if path is not None:
        save_checkpoint(path, state.to_payload(), fingerprint)
    return _result(state, layouts, target_flat, mask_flat, schedule, shape, tracked, resumed_from)


def _end_to_end(
    flat: np.ndarray, layout: FactorLayout, target: np.ndarray, mask: np.ndarray
) -> tuple[float, np.ndarray]:
    """(½‖P_Ω(W − Y)‖², W) at the factors in ``flat`` (a diverged run's may overflow to inf: no warning)."""
    factors = unflatten_factors(flat, layout)
    with np.errstate(over="ignore", invalid="ignore"):
        w = factors[0]
        for factor in factors[1:]:
            w = factor @ w
        residual = mask * (w.ravel() - target)
        return 0.5 * float(residual @ residual), w


def _result(
    state: _Batch,
    layouts: list[FactorLayout],
    target_flat: list[np.ndarray],
    mask_flat: list[np.ndarray],
    schedule: np.ndarray,
    shape: tuple[int, int],
    tracked: tuple[tuple[int, int], ...],
    resumed_from: int,
) -> TrainResult:
    """The trainer's :class:`TrainResult` from the kernel's logs and final factors."""
    batch = len(state.flats)
    counts = state.states[:, LOG_POS]
    logged = int(counts.max()) if batch else 0
    active = np.arange(logged)[:, None] < counts[None, :]  # (T, B)
    matrices = np.nan_to_num(state.log_matrix[:, :logged].transpose(1, 0, 2), nan=0.0).reshape(logged, batch, *shape)
    values = {"loss": torch.from_numpy(np.nan_to_num(state.log_loss[:, :logged].T, nan=0.0))}
    values.update(end_to_end_metrics(torch.from_numpy(matrices), tracked))
    finals = [_end_to_end(state.flats[b], layouts[b], target_flat[b], mask_flat[b]) for b in range(batch)]
    finite = torch.tensor([bool(np.isfinite(w).all()) for _, w in finals])
    matrices = torch.from_numpy(np.stack([np.where(np.isfinite(w), w, 0.0) for _, w in finals]))
    final = {
        name: torch.where(finite.reshape((batch,) + (1,) * (v.dim() - 1)), v, torch.full_like(v, float("nan")))
        for name, v in end_to_end_metrics(matrices, tracked).items()
    }  # NaN metrics for a non-finite matrix
    final_loss = torch.tensor([loss for loss, _ in finals], dtype=torch.float64)
    return TrainResult(
        params=[torch.from_numpy(f) for f in state.flats],
        status=torch.from_numpy(state.states[:, STATUS].copy()),
        stopped_at=torch.from_numpy(state.states[:, STOPPED_AT].copy()),
        log_iterations=[int(t) for t in schedule[:logged]],
        log_active=list(torch.from_numpy(active).unbind(0)),
        log_values={name: list(v.unbind(0)) for name, v in values.items()},
        final_metrics={"loss": final_loss, **final},
        resumed_from=resumed_from,
    )
