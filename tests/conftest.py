"""Shared fixtures of the unit tests: one torch thread, float64 by default, a fixed hypothesis profile."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

# Small tensor programs: one thread is fastest and makes results independent of the machine's core count.
torch.set_num_threads(1)

settings.register_profile(
    "rankrepro",
    max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "40")),
    deadline=None,
    derandomize=True,  # the same examples on every run: a failing test is reproducible
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "rankrepro"))


@pytest.fixture(autouse=True)
def _float64_default():
    """Every test runs with float64 as torch's default dtype (the maths of chapter 1 needs it)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture(autouse=True)
def _downloads_allowed(monkeypatch):
    """Tests mock the network at the opener; a user's ``RANKREPRO_OFFLINE`` must not turn those downloads off."""
    monkeypatch.delenv("RANKREPRO_OFFLINE", raising=False)


@pytest.fixture
def meta_device(monkeypatch) -> torch.device:
    """PyTorch's "meta" device standing in for a GPU: its tensors have shapes and a device but no data, and an op
    mixing them with CPU tensors raises, as mixing CUDA and CPU tensors does — a test on it finds the CPU tensors a GPU
    run would trip on, without a GPU. Data-dependent Python branches and scalars of meta tensors take fixed values
    (``bool`` → False, ``float`` → 1.0, ``int`` → 0): such a test checks where tensors live, not what they hold."""
    as_bool, as_float, as_int = torch.Tensor.__bool__, torch.Tensor.__float__, torch.Tensor.__int__
    monkeypatch.setattr(torch.Tensor, "__bool__", lambda t: False if t.device.type == "meta" else as_bool(t))
    monkeypatch.setattr(torch.Tensor, "__float__", lambda t: 1.0 if t.device.type == "meta" else as_float(t))
    monkeypatch.setattr(torch.Tensor, "__int__", lambda t: 0 if t.device.type == "meta" else as_int(t))
    return torch.device("meta")


@pytest.fixture
def generator() -> torch.Generator:
    """A seeded CPU generator."""
    return torch.Generator().manual_seed(1234)


#: summary keys that measure the machine, not the experiment: a figure must not depend on them
RUN_DEPENDENT_KEYS = ("ms_per_iteration", "ms_per_iteration_per_run", "train_time_s", "time_s", "threads")


def _changed(item):
    """Another value of a timing or thread count (numbers only; None stays None)."""
    return item * 3 + 7 if isinstance(item, (int, float)) and not isinstance(item, bool) else item


def _retimed(value):
    """``value`` with every :data:`RUN_DEPENDENT_KEYS` entry of every nested mapping changed."""
    if isinstance(value, dict):
        return {key: _changed(item) if key in RUN_DEPENDENT_KEYS else _retimed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_retimed(item) for item in value]
    return value


@pytest.fixture
def retimed_copy(tmp_path):
    """Copy a results folder with its timings and thread count changed (metrics unchanged, summary resealed): what a
    rerun on another machine writes. Returns a function of the source folder."""
    import shutil

    from rankrepro.experiments.base import load_results, store_results

    def copy(results):
        target = tmp_path / f"retimed_{results.name}"
        shutil.copytree(results, target)
        metrics, summary = load_results(target)
        store_results(target, metrics, _retimed(summary))
        return target

    return copy
