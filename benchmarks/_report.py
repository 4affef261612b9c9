"""What every benchmark script shares: a description of the machine, the JSON output and the timed GroupRMSprop
loop of the tensor-factorization benchmarks."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from rankrepro.core.optim import GroupRMSprop


def machine() -> dict[str, Any]:
    """Platform, processor, torch version and thread count of this run."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def write_json(path: str | os.PathLike | None, result: dict[str, Any]) -> None:
    """Write ``result`` as indented JSON to ``path`` (parents created); nothing when ``path`` is None."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


def timed(function: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """Seconds of one call (``time.perf_counter``) and its result."""
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, result


def group_rmsprop_run(
    loss_and_grads: Callable[[list[torch.Tensor]], tuple[torch.Tensor, list[torch.Tensor]]],
    init: list[torch.Tensor],
    iters: int,
    lr: float = 1e-2,
) -> tuple[float, list[float]]:
    """Seconds for ``iters`` batched GroupRMSprop iterations of ``loss_and_grads`` (params → (per-run losses,
    grads)) from a copy of ``init`` (after one warm-up call), and the final loss per run."""
    params = [p.clone() for p in init]
    batch = params[0].shape[0]
    optimizer = GroupRMSprop(torch.full((batch,), lr, dtype=torch.float64))
    state = optimizer.init_state(params)
    active = torch.ones(batch, dtype=torch.bool)
    loss_and_grads(params)  # warm-up
    started = time.perf_counter()
    for _ in range(iters):
        _, grads = loss_and_grads(params)
        optimizer.step(params, grads, state, active)
    elapsed = time.perf_counter() - started
    return elapsed, [float(v) for v in loss_and_grads(params)[0]]
