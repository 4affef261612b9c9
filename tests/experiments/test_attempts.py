"""A run job's wall time counts every attempt: a cancelled job resubmitted by the scheduler resumes from its
checkpoints, and its summary.json records the time of the earlier attempts too (rankrepro.experiments.base)."""

from __future__ import annotations

import os

import pandas as pd
import pytest
import torch

from rankrepro.experiments.base import (
    ATTEMPTS_FILE,
    CHECKPOINT_DIR,
    Context,
    attempt_starts,
    attempts_record,
    load_results,
    record_attempt,
    write_results,
)


def touch(path, mtime):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x", encoding="utf-8")
    os.utime(path, (mtime, mtime))


def test_one_attempt_is_its_own_time(tmp_path):
    record_attempt(tmp_path, 1000.0)
    assert attempts_record(tmp_path, 1000.0, now=1030.0) == {"wall_time_s": 30.0, "attempts": 1}


def test_earlier_attempts_count_up_to_their_last_sign_of_life(tmp_path):
    for start in (1000.0, 1200.0, 1500.0):
        record_attempt(tmp_path, start)
    touch(tmp_path / CHECKPOINT_DIR / "a.pt", 1050.0)  # first attempt: alive until 1050 (then cancelled)
    touch(tmp_path / CHECKPOINT_DIR / "b.pt", 1190.0)  # … its last checkpoint at 1190
    touch(tmp_path / "batches" / "c.json", 1260.0)  # second attempt: last batch at 1260
    touch(tmp_path / "late.txt", 1600.0)  # written during the last attempt: not an earlier one's
    record = attempts_record(tmp_path, 1500.0, now=1520.0)
    assert record == {"wall_time_s": pytest.approx(190.0 + 60.0 + 20.0), "attempts": 3}


def test_an_earlier_attempt_that_wrote_nothing_counts_zero(tmp_path):
    record_attempt(tmp_path, 1000.0)
    record_attempt(tmp_path, 1100.0)
    assert attempts_record(tmp_path, 1100.0, now=1110.0) == {"wall_time_s": 10.0, "attempts": 2}


def test_an_unreadable_attempts_file_counts_as_none(tmp_path):
    (tmp_path / CHECKPOINT_DIR).mkdir()
    (tmp_path / CHECKPOINT_DIR / ATTEMPTS_FILE).write_text("{not json", encoding="utf-8")
    assert attempt_starts(tmp_path) == []


def test_write_results_records_the_attempts_and_clears_them(tmp_path):
    ctx = Context("test", torch.device("cpu"), threads=1, progress=False)
    record_attempt(tmp_path, 1000.0)
    touch(tmp_path / CHECKPOINT_DIR / "train.pt", 1100.0)
    started = 2000.0
    record_attempt(tmp_path, started)
    write_results(tmp_path, pd.DataFrame({"x": [1]}), {"a": 1}, ctx, started, {})
    _, summary = load_results(tmp_path)
    assert summary["attempts"] == 2 and summary["wall_time_s"] >= 100.0
    assert not (tmp_path / CHECKPOINT_DIR / ATTEMPTS_FILE).exists()


def test_the_clis_start_and_the_experiments_later_clock_are_one_attempt(tmp_path):
    """The CLI records the attempt's start, then the experiment's run takes its own clock a moment later: one attempt,
    timed from the recorded start (before: counted as two)."""
    record_attempt(tmp_path, 1000.0)
    assert attempts_record(tmp_path, 1002.5, now=1030.0) == {"wall_time_s": 30.0, "attempts": 1}
    record_attempt(tmp_path, 1100.0)  # a resubmitted attempt, again a moment before its run's clock
    assert attempts_record(tmp_path, 1101.0, now=1110.0) == {"wall_time_s": 10.0, "attempts": 2}
