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


@pytest.fixture
def generator() -> torch.Generator:
    """A seeded CPU generator."""
    return torch.Generator().manual_seed(1234)
