"""A batched trainer loop: many independent runs advance together as one tensor program.

Each run ``b`` has its own parameters (the leading dimension of every parameter tensor), learning rate, stop
time and status. The loop never synchronises with the host inside an iteration except every ``sync_every``
iterations (NaN detection, the all-stopped test, progress bar), so per-iteration cost is a fixed number of
tensor operations, whatever the number of runs.

Stopping is exact per run: the loss is evaluated at the current parameters before the update; a run whose loss
stayed below ``threshold`` for ``patience`` consecutive checks is frozen at those parameters (its optimizer
state stops too), so batching does not change any run's result. A run whose loss is not finite is frozen at that
iteration too (on the device, without a host synchronisation) and reported as ``diverged`` with ``stopped_at`` =
its first non-finite iteration (its last finite one is ``stopped_at − 1``); metrics are never computed from its
non-finite parameters (they are NaN in the final row).

Checkpoints (atomic) are written every ``checkpoint_every`` iterations at the top of an iteration; a restarted
job resumes from the last one and ends with bit-identical results to an uninterrupted run.

An objective whose runs share their data and never mix (``runs_independent = True``: each run's loss, gradients and
metrics depend on its own parameters alone, whatever the batch) is evaluated, from each sync point on, on the runs
still active there only: a batch whose runs stop at very different times costs what its running runs cost. The
others are frozen either way, so no run's numbers change (tested bit for bit).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from rankrepro.core.checkpoint import resume_payload, save_checkpoint

log = logging.getLogger(__name__)

RUNNING, CONVERGED, MAX_ITERS, DIVERGED = 0, 1, 2, 3
STATUS_NAMES = {RUNNING: "running", CONVERGED: "converged", MAX_ITERS: "max_iters", DIVERGED: "diverged"}


class BatchedObjective(Protocol):
    """What the trainer needs from a model + data: per-run losses, gradients and logged metrics. An objective may
    also declare ``runs_independent = True`` (see the module docstring)."""

    def loss_and_grads(self, params: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """Per-run loss ``(B,)`` at ``params`` and the gradient of each run's loss w.r.t. each parameter."""
        ...

    def metrics(self, params: list[Tensor]) -> dict[str, Tensor]:
        """Per-run metrics to log: each value ``(B,)`` or ``(B, k)`` (expanded to columns ``name_0 … name_{k-1}``)."""
        ...


class Optimizer(Protocol):
    """A batched optimizer (see :mod:`rankrepro.core.optim`)."""

    def init_state(self, params: list[Tensor]) -> dict[str, Tensor]: ...

    def step(self, params: list[Tensor], grads: list[Tensor], state: dict[str, Tensor], active: Tensor) -> None: ...


@dataclass(frozen=True)
class StopRule:
    """Stop a run once its loss < ``threshold`` at ``patience`` consecutive checks (every ``check_every`` its)."""

    threshold: float
    patience: int = 1
    check_every: int = 1

    def __post_init__(self) -> None:
        if self.patience < 1 or self.check_every < 1:
            raise ValueError("StopRule needs patience >= 1 and check_every >= 1")


@dataclass(frozen=True)
class TrainSettings:
    """Budget and cadence of a training loop (all in iterations; 0 disables checkpoints)."""

    max_iters: int
    stop: StopRule
    log_every: int
    sync_every: int = 1000
    checkpoint_every: int = 0

    def __post_init__(self) -> None:
        if self.max_iters < 0 or self.log_every < 1 or self.sync_every < 1 or self.checkpoint_every < 0:
            raise ValueError(f"invalid TrainSettings {self}")


@dataclass
class TrainResult:
    """Final parameters, per-run outcome and the log of metrics (one entry per logged iteration)."""

    params: list[Tensor]
    status: Tensor  # (B,) int
    stopped_at: Tensor  # (B,) int: iteration of the final parameters
    log_iterations: list[int]
    log_active: list[Tensor]
    log_values: dict[str, list[Tensor]]
    final_metrics: dict[str, Tensor]
    resumed_from: int = 0
    extras: dict[str, object] = field(default_factory=dict)

    def status_names(self) -> list[str]:
        """Status of each run as a word (converged, max_iters, diverged)."""
        return [STATUS_NAMES[int(s)] for s in self.status]

    def metrics_frame(self) -> pd.DataFrame:
        """Tidy frame: one row per (run, logged iteration while running) plus one final row per run."""
        frames = []
        if self.log_iterations:
            iters = np.asarray(self.log_iterations)
            active = torch.stack(self.log_active).cpu().numpy()  # (T, B)
            columns = {name: torch.stack(vals).cpu().numpy() for name, vals in self.log_values.items()}
            frames.append(_tidy(iters, active, columns, final=False))
        final_columns = {name: v.cpu().numpy()[None] for name, v in self.final_metrics.items()}
        stopped = self.stopped_at.cpu().numpy()
        final = _tidy(np.zeros(1, dtype=np.int64), np.ones((1, len(stopped)), bool), final_columns, final=True)
        final["iteration"] = stopped
        frames.append(final)
        frame = pd.concat(frames, ignore_index=True)
        frame = frame.sort_values(["run", "iteration", "final"], kind="stable").reset_index(drop=True)
        return frame


def _tidy(iters: np.ndarray, active: np.ndarray, columns: dict[str, np.ndarray], final: bool) -> pd.DataFrame:
    """Flatten ``(T, B[, k])`` arrays into rows (t, b) where ``active[t, b]``."""
    t_idx, b_idx = np.nonzero(active)
    data: dict[str, np.ndarray] = {"run": b_idx, "iteration": iters[t_idx]}
    for name, arr in columns.items():
        if arr.ndim == 2:
            data[name] = arr[t_idx, b_idx]
        else:
            flat = arr.reshape(arr.shape[0], arr.shape[1], -1)
            for k in range(flat.shape[2]):
                data[f"{name}_{k}"] = flat[t_idx, b_idx, k]
    frame = pd.DataFrame(data)
    frame["final"] = final
    return frame


def _fresh_state(params: list[Tensor], optimizer: Optimizer) -> dict:
    batch = params[0].shape[0]
    device = params[0].device
    return {
        "t": 0,
        "params": params,
        "opt_state": optimizer.init_state(params),
        "active": torch.ones(batch, dtype=torch.bool, device=device),
        "below": torch.zeros(batch, dtype=torch.int64, device=device),
        "stopped_at": torch.full((batch,), -1, dtype=torch.int64, device=device),
        "diverged": torch.zeros(batch, dtype=torch.bool, device=device),
        "status": torch.full((batch,), RUNNING, dtype=torch.int64, device=device),
        "log_iterations": [],
        "log_active": [],
        "log_values": {},
    }


def _to_device(obj, device: torch.device):
    if isinstance(obj, Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_device(v, device) for v in obj]
    return obj


def _resume_state(path: Path | None, fingerprint: str, device: torch.device) -> dict | None:
    """The saved loop state, or None (no checkpoint, or a corrupted/stale one, which is removed)."""
    state = resume_payload(path, fingerprint)
    if state is None:
        return None
    log.info("resuming from checkpoint %s at iteration %d", path, state["t"])
    state.setdefault("diverged", torch.zeros_like(state["active"]))  # checkpoints written before divergence tracking
    return _to_device(state, device)


def _log_divergence(state: dict) -> None:
    """One warning line per newly diverged run (status still running, non-finite loss seen)."""
    newly = state["diverged"] & (state["status"] == RUNNING)
    for run in newly.nonzero().flatten().tolist():
        log.warning(
            "run %d diverged: non-finite loss at iteration %d (last finite iteration %d)",
            run,
            int(state["stopped_at"][run]),
            int(state["stopped_at"][run]) - 1,
        )


def _record(state: dict, metrics: dict[str, Tensor], loss: Tensor) -> None:
    state["log_iterations"].append(state["t"])
    state["log_active"].append(state["active"].clone())
    values = state["log_values"]
    for name, value in {"loss": loss, **metrics}.items():
        values.setdefault(name, []).append(value.detach().clone())


def _computed_runs(active: Tensor) -> Tensor | None:
    """The indices of the active runs, or None when every run is active (the whole batch is computed)."""
    return None if bool(active.all()) else torch.nonzero(active).squeeze(1)


def _loss_and_grads(
    objective: BatchedObjective, params: list[Tensor], computed: Tensor | None
) -> tuple[Tensor, list[Tensor]]:
    """The objective's per-run loss and gradients, evaluated on the ``computed`` runs only (all when None): the
    others' loss is NaN and their gradients zero — never read, as those runs are frozen."""
    if computed is None:
        return objective.loss_and_grads(params)
    loss, grads = objective.loss_and_grads([p.index_select(0, computed) for p in params])
    batch = params[0].shape[0]
    return _in_batch(loss, computed, batch, float("nan")), [_in_batch(g, computed, batch, 0) for g in grads]


def _metrics(objective: BatchedObjective, params: list[Tensor], computed: Tensor | None) -> dict[str, Tensor]:
    """The objective's logged metrics, evaluated on the ``computed`` runs only (all when None); the others' values
    are NaN (0 for integer metrics) — never written, as rows of inactive runs are not logged."""
    if computed is None:
        return objective.metrics(params)
    values = objective.metrics([p.index_select(0, computed) for p in params])
    batch = params[0].shape[0]
    return {
        name: _in_batch(value, computed, batch, float("nan") if value.is_floating_point() else 0)
        for name, value in values.items()
    }


def _in_batch(rows: Tensor, computed: Tensor, batch: int, fill: float) -> Tensor:
    """``rows`` (one per computed run) placed at the ``computed`` indices of a ``batch``-row tensor filled with
    ``fill`` elsewhere."""
    full = torch.full((batch, *rows.shape[1:]), fill, dtype=rows.dtype, device=rows.device)
    return full.index_copy(0, computed, rows)


def _mark_stopped(state: dict) -> None:
    """Status of frozen runs (stopped_at ≥ 0) still marked running: diverged if their loss was not finite, else
    converged."""
    frozen = (state["stopped_at"] >= 0) & (state["status"] == RUNNING)
    outcome = torch.where(state["diverged"], DIVERGED, CONVERGED)
    state["status"] = torch.where(frozen, outcome, state["status"])


def _finite_params(params: list[Tensor], diverged: Tensor) -> list[Tensor]:
    """The parameters with every diverged run's replaced by zeros (metrics of a batch never see NaN or inf)."""
    return [torch.where(diverged.reshape((-1,) + (1,) * (p.dim() - 1)), torch.zeros_like(p), p) for p in params]


def _nan_for(values: dict[str, Tensor], diverged: Tensor) -> dict[str, Tensor]:
    """Metric values with every diverged run's set to NaN."""
    return {
        name: torch.where(diverged.reshape((-1,) + (1,) * (v.dim() - 1)), torch.full_like(v, float("nan")), v)
        if v.is_floating_point()
        else v
        for name, v in values.items()
    }


def train(
    objective: BatchedObjective,
    params: list[Tensor],
    optimizer: Optimizer,
    settings: TrainSettings,
    *,
    checkpoint_path: str | os.PathLike | None = None,
    fingerprint: str = "",
    progress: str | None = None,
    on_sync: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Run the batched loop until every run stopped or ``max_iters`` iterations, with checkpoints and resume.

    ``params`` are used as the initial point unless a valid checkpoint for ``fingerprint`` exists at
    ``checkpoint_path``. ``on_sync`` (tests) is called with the loop state at every sync point.
    """
    device = params[0].device
    path = Path(checkpoint_path) if checkpoint_path is not None else None
    state = _resume_state(path, fingerprint, device)
    resumed_from = 0 if state is None else int(state["t"])
    if state is None:
        state = _fresh_state([p.detach().clone() for p in params], optimizer)
    stop = settings.stop
    threshold = torch.as_tensor(stop.threshold, dtype=state["params"][0].dtype, device=device)
    zero_count = torch.zeros_like(state["below"])
    bar = tqdm(
        total=settings.max_iters,
        initial=state["t"],
        desc=progress,
        disable=progress is None,
        mininterval=10.0,
        unit="it",
        dynamic_ncols=True,
    )
    finished_before = not bool(state["active"].any())
    independent = bool(getattr(objective, "runs_independent", False))
    computed = _computed_runs(state["active"]) if independent else None
    with torch.no_grad():
        while state["t"] < settings.max_iters and not finished_before:
            t = state["t"]
            if (
                path is not None
                and settings.checkpoint_every
                and t > resumed_from
                and t % settings.checkpoint_every == 0
            ):
                save_checkpoint(path, state, fingerprint)
            loss, grads = _loss_and_grads(objective, state["params"], computed)
            newly_diverged = state["active"] & ~torch.isfinite(loss)
            state["diverged"] = state["diverged"] | newly_diverged
            state["stopped_at"] = torch.where(newly_diverged, t, state["stopped_at"])
            active = state["active"] = state["active"] & ~newly_diverged
            if t % settings.log_every == 0:
                _record(state, _metrics(objective, _finite_params(state["params"], state["diverged"]), computed), loss)
            if t % stop.check_every == 0:
                below_now = loss < threshold
                if stop.patience > 1:
                    state["below"] = torch.where(below_now, state["below"] + 1, zero_count)
                    below_now = state["below"] >= stop.patience
                newly = active & below_now
                state["stopped_at"] = torch.where(newly, t, state["stopped_at"])
                active = state["active"] = active & ~newly
            if t % settings.sync_every == 0:
                _log_divergence(state)
                _mark_stopped(state)
                if on_sync is not None:
                    on_sync(state)
                bar.update(t - bar.n)
                if not bool(active.any()):
                    break
                if independent:
                    computed = _computed_runs(active)
            optimizer.step(state["params"], grads, state["opt_state"], active)
            state["t"] = t + 1
        _log_divergence(state)
        _mark_stopped(state)
        still = state["active"]
        state["stopped_at"] = torch.where(still, state["t"], state["stopped_at"])
        state["status"] = torch.where(still, MAX_ITERS, state["status"])
        state["active"] = torch.zeros_like(still)
        final_loss, _ = objective.loss_and_grads(state["params"])
        final_metrics = {
            "loss": final_loss,
            **_nan_for(objective.metrics(_finite_params(state["params"], state["diverged"])), state["diverged"]),
        }
    bar.update(state["t"] - bar.n)
    bar.close()
    if path is not None:
        save_checkpoint(path, state, fingerprint)
    return TrainResult(
        params=state["params"],
        status=state["status"],
        stopped_at=state["stopped_at"],
        log_iterations=state["log_iterations"],
        log_active=state["log_active"],
        log_values=state["log_values"],
        final_metrics=final_metrics,
        resumed_from=resumed_from,
    )
