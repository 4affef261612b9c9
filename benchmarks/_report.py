"""What every benchmark script shares: a description of the machine and the JSON output."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


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
