"""Process-level settings: BLAS threads, device choice, logging, provenance of a run."""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

from rankrepro import __version__


def configure_threads(threads: int) -> None:
    """Limit torch's intra-op and BLAS threads to ``threads`` (a rule's ``threads``)."""
    threads = max(1, int(threads))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    torch.set_num_threads(threads)


def select_device(preference: str = "auto", *, gpu_capable: bool = True) -> torch.device:
    """``cuda`` when asked for or (``auto``) when present, else ``cpu``; always ``cpu`` for a job that is not
    ``gpu_capable`` (the run jobs of chapters 1, 2 and 4: numba kernels, scipy sparse products, heaps — the workflow
    schedules them as CPU jobs, rule ``run``, and they have only ever been run and tested on the CPU)."""
    if not gpu_capable:
        return torch.device("cpu")
    if preference == "cuda" and not torch.cuda.is_available():
        logging.getLogger(__name__).warning("device 'cuda' requested but no GPU is present; using the CPU")
        return torch.device("cpu")
    if preference in ("cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def configure_float32_precision() -> None:
    """float32 means IEEE float32 on every device: CUDA matrix products and cuDNN convolutions may not round their
    inputs to TensorFloat-32's 10-bit mantissa (PyTorch's default for cuDNN convolutions on Ampere and later GPUs).
    §3.2's locality penalty differentiates an input gradient, a small difference of large terms, whose float32
    parameter gradient already has relative errors up to 4e-3 on the CPU (``locality_training``); TF32 would give
    the GPU runs another function to train. No effect on the CPU."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")


def setup_logging(log_file: str | os.PathLike | None = None, level: int = logging.INFO) -> None:
    """Log to stderr and, if given, to ``log_file``."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="a", encoding="utf-8"))
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True
    )


def git_commit(cwd: str | os.PathLike | None = None) -> str:
    """The current git commit of the working tree (``unknown`` outside a repository)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd or Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance() -> dict[str, str]:
    """Versions and commit recorded in every ``summary.json``."""
    import numpy
    import pandas

    return {
        "rankrepro": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
        "platform": platform.platform(),
        "git_commit": git_commit(),
    }
