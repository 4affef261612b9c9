"""The SLURM profiles as Snakemake reads them (its own profile parser, with YTE templating).

profiles/slurm requests no GPU and passes no placeholder to sbatch: partition and account come from sbatch's own
environment variables, or are left out. profiles/slurm-gpu is profiles/slurm plus one `set-resources` block that
sends the GPU-capable run jobs (rule run_gpu) to a GPU partition with one GPU each.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from snakemake.profiles import ProfileConfigFileParser

ROOT = Path(__file__).resolve().parents[2]
SLURM = ROOT / "profiles" / "slurm" / "config.yaml"
SLURM_GPU = ROOT / "profiles" / "slurm-gpu" / "config.yaml"
ENV_VARS = ("SBATCH_PARTITION", "SBATCH_ACCOUNT", "RANKREPRO_GPU_PARTITION")


def parsed(path: Path, monkeypatch, **env: str) -> dict:
    """The profile as Snakemake turns it into command-line values, under the environment ``env``."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with open(path, encoding="utf-8") as stream:
        return dict(ProfileConfigFileParser().parse(stream))


@pytest.mark.parametrize("path", [SLURM, SLURM_GPU], ids=["slurm", "slurm-gpu"])
def test_no_placeholder_and_no_partition_or_account_unless_the_environment_names_them(path, monkeypatch):
    profile = parsed(path, monkeypatch)
    assert profile["executor"] == "slurm"
    assert profile["default-resources"] == ["mem_mb=2000", "runtime=60"]
    assert not any("<" in str(value) for value in profile.values())
    profile = parsed(path, monkeypatch, SBATCH_PARTITION="short", SBATCH_ACCOUNT="lab1")
    assert profile["default-resources"] == ["mem_mb=2000", "runtime=60", "slurm_partition=short", "slurm_account=lab1"]


def test_the_cpu_profile_requests_no_gpu(monkeypatch):
    profile = parsed(SLURM, monkeypatch, SBATCH_PARTITION="short")
    assert "set-resources" not in profile
    assert not any("gpu" in str(value) for key, value in profile.items() if key != "default-resources")
    assert not any(item.startswith(("gpu", "gres")) for item in profile["default-resources"])


def test_the_gpu_profile_is_the_cpu_profile_plus_gpus_for_run_gpu(monkeypatch):
    gpu = parsed(SLURM_GPU, monkeypatch)
    assert gpu.pop("set-resources") == ["run_gpu:slurm_partition=gpu", "run_gpu:gpu=1"]
    assert gpu == parsed(SLURM, monkeypatch)
    routed = parsed(SLURM_GPU, monkeypatch, RANKREPRO_GPU_PARTITION="a100")
    assert routed["set-resources"] == ["run_gpu:slurm_partition=a100", "run_gpu:gpu=1"]
