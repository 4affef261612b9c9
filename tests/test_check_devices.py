"""scripts/check_devices.py: every run job of a tier computed where it should — the GPU-capable chapters' jobs on the
expected device, the others on the CPU — read from the run logs' start lines."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("check_devices", ROOT / "scripts" / "check_devices.py")
check = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(check)


def write_log(logs: Path, chapter: str, experiment: str, *devices: str) -> None:
    """A run log with one start line per attempt, as ``rankrepro run`` writes it."""
    path = logs / chapter / f"{experiment}.run.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(
            f"2026-12-06 20:18:50,010 INFO rankrepro: running {experiment} (tier t) into results/t/{chapter}/"
            f"{experiment} on {device} with 2 thread(s)\nsome training output\n"
            for device in devices
        ),
        encoding="utf-8",
    )


def test_the_start_line_is_what_the_cli_logs():
    """The pattern reads the very line ``rankrepro run`` logs: its format string, taken from the CLI's source and
    filled as the CLI fills it."""
    import inspect

    from rankrepro import cli

    (fmt,) = re.findall(r'log\.info\(\s*"(running [^"]+)"', inspect.getsource(cli._command_run))
    line = fmt % ("pathfinder_cnn", "paper-rehearsal", "results/paper-rehearsal/ch3/pathfinder_cnn", "cuda", 16)
    assert check.logged_device(line) == "cuda"
    assert check.logged_device(line.replace(" on cuda ", " on cuda:1 ")) == "cuda"
    assert check.logged_device("no start line here") is None


def test_gpu_chapters_on_the_gpu_and_the_rest_on_the_cpu_pass(tmp_path, capsys):
    logs = tmp_path / "logs" / "t"
    write_log(logs, "ch1", "dmf_2x2_norms_vs_rank", "cpu")
    write_log(logs, "ch3", "pathfinder_cnn", "cpu", "cuda")  # the last attempt counts
    write_log(logs, "ch5", "hessian_rank_cnn", "cuda")
    assert check.main(["--tier", "t", "--expect", "cuda", "--logs", str(tmp_path / "logs")]) == 0
    assert "3 run jobs" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("chapter", "experiment", "device", "expect"),
    [
        ("ch3", "pathfinder_cnn", "cpu", "cuda"),  # a GPU job that fell back to the CPU
        ("ch4", "edge_sparsification", "cuda", "cuda"),  # a CPU job that took the GPU
        ("ch5", "hessian_rank_cnn", "cuda", "cpu"),  # a GPU where none was expected
    ],
)
def test_a_job_on_the_wrong_device_fails_naming_it(tmp_path, capsys, chapter, experiment, device, expect):
    logs = tmp_path / "logs" / "t"
    write_log(logs, "ch1", "dmf_2x2_norms_vs_rank", "cpu")
    write_log(logs, chapter, experiment, device)
    assert check.main(["--tier", "t", "--expect", expect, "--logs", str(tmp_path / "logs")]) == 1
    err = capsys.readouterr().err
    assert f"{chapter}/{experiment}: ran on {device}" in err and "dmf_2x2" not in err


def test_a_log_without_a_start_line_fails_and_no_logs_is_an_error(tmp_path, capsys):
    logs = tmp_path / "logs" / "t"
    (logs / "ch2").mkdir(parents=True)
    (logs / "ch2" / "tensor_rank_mnist.run.log").write_text("killed before it started\n", encoding="utf-8")
    assert check.main(["--tier", "t", "--logs", str(tmp_path / "logs")]) == 1
    assert "an unlogged device" in capsys.readouterr().err
    assert check.main(["--tier", "other", "--logs", str(tmp_path / "logs")]) == 2


def test_auto_expects_the_gpu_exactly_where_torch_sees_one(tmp_path, monkeypatch):
    import torch

    logs = tmp_path / "logs" / "t"
    write_log(logs, "ch5", "hessian_rank_cnn", "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert check.main(["--tier", "t", "--logs", str(tmp_path / "logs")]) == 0
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert check.main(["--tier", "t", "--logs", str(tmp_path / "logs")]) == 1
