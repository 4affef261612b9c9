"""Process-level settings: which device a run job computes on, and float32 meaning IEEE float32 there."""

from __future__ import annotations

import pytest
import torch

from rankrepro.core.runtime import configure_float32_precision, select_device
from rankrepro.pipeline.workflow import CHAPTERS


@pytest.fixture
def gpu_present(monkeypatch):
    """A machine where torch reports a GPU (nothing is computed on it in these tests)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def test_auto_and_cuda_choose_the_gpu_for_a_gpu_capable_job(gpu_present):
    assert select_device("auto") == torch.device("cuda")
    assert select_device("cuda", gpu_capable=True) == torch.device("cuda")
    assert select_device("cpu", gpu_capable=True) == torch.device("cpu")


def test_a_job_that_is_not_gpu_capable_stays_on_the_cpu_whatever_the_tier_says(gpu_present):
    for preference in ("auto", "cuda", "cpu"):
        assert select_device(preference, gpu_capable=False) == torch.device("cpu")


def test_without_a_gpu_every_preference_is_the_cpu(monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto") == torch.device("cpu")
    assert select_device("cuda") == torch.device("cpu")
    assert "no GPU is present" in caplog.text


def test_the_gpu_chapters_are_those_the_workflow_routes_to_rule_run_gpu():
    assert [name for name, chapter in CHAPTERS.items() if chapter.gpu] == ["ch3", "ch5"]


def test_float32_is_ieee_on_cuda_after_configuration():
    saved = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.get_float32_matmul_precision(),
    )
    try:
        torch.backends.cudnn.allow_tf32 = True  # PyTorch's default for cuDNN convolutions
        configure_float32_precision()
        assert torch.backends.cudnn.allow_tf32 is False
        assert torch.backends.cuda.matmul.allow_tf32 is False
        assert torch.get_float32_matmul_precision() == "highest"
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[:2]
        torch.set_float32_matmul_precision(saved[2])
