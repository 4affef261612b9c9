"""Finished batches (experiments/base.py): sealed JSON, resumed only when their content matches its SHA-256."""

from __future__ import annotations

import json
import logging

import pytest

from rankrepro.core.io import SEAL_KEY, atomic_write_json, read_json
from rankrepro.experiments.base import cached_batch, load_batch


def _record() -> dict:
    return {
        "fingerprint": "fp",
        "final_loss": [0.123456789012345, 2.5e-7, float("nan")],
        "steps": 1000,
        "ranks": {"4": [1, 2, 3]},
    }


class Compute:
    """A batch computation that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> dict:
        self.calls += 1
        return _record()


def test_a_finished_batch_is_written_sealed_and_resumed(tmp_path):
    path, compute = tmp_path / "batches" / "b.json", Compute()
    record, hit = cached_batch(path, "fp", compute)
    assert not hit and compute.calls == 1 and SEAL_KEY not in record and record["steps"] == 1000
    assert isinstance(read_json(path)[SEAL_KEY], str)
    again, hit = cached_batch(path, "fp", compute)
    assert hit and compute.calls == 1 and SEAL_KEY not in again
    assert again["final_loss"][:2] == record["final_loss"][:2] and again["ranks"] == record["ranks"]
    assert load_batch(path, "other") is None  # other settings or code


def _flip_digit(path) -> None:
    """Change one digit in the middle of a stored number (the silent corruption of the issue)."""
    text = path.read_text(encoding="utf-8")
    position = text.index("0.123456789012345") + 8
    path.write_text(text[:position] + ("5" if text[position] != "5" else "6") + text[position + 1 :], encoding="utf-8")


def test_a_flipped_digit_is_detected_logged_in_one_line_and_recomputed(tmp_path, caplog):
    path, compute = tmp_path / "b.json", Compute()
    cached_batch(path, "fp", compute)
    _flip_digit(path)
    assert json.loads(path.read_text())["final_loss"][0] != 0.123456789012345  # still valid JSON, another number
    with caplog.at_level(logging.WARNING, logger="rankrepro"):
        record, hit = cached_batch(path, "fp", compute)
    assert not hit and compute.calls == 2 and record["final_loss"][0] == 0.123456789012345
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert str(path) in warning.getMessage() and "corrupted" in warning.getMessage()
    assert "\n" not in warning.getMessage()
    assert load_batch(path, "fp")["final_loss"][0] == 0.123456789012345  # rewritten, valid again


@pytest.mark.parametrize("damage", ["earlier format", "truncated", "empty", "hash removed"])
def test_a_batch_without_a_valid_hash_is_recomputed(tmp_path, caplog, damage):
    path, compute = tmp_path / "b.json", Compute()
    cached_batch(path, "fp", compute)
    text = path.read_bytes()
    if damage == "earlier format":
        atomic_write_json(path, _record())
    elif damage == "truncated":
        path.write_bytes(text[: len(text) - 20])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        record = read_json(path)
        del record[SEAL_KEY]
        path.write_text(json.dumps(record))
    with caplog.at_level(logging.WARNING, logger="rankrepro"):
        assert load_batch(path, "fp") is None
        _, hit = cached_batch(path, "fp", compute)
    assert not hit and compute.calls == 2
    assert all("\n" not in r.getMessage() for r in caplog.records) and caplog.records


def test_every_flipped_byte_gives_the_same_record_or_none(tmp_path):
    path = tmp_path / "b.json"
    cached_batch(path, "fp", Compute())
    reference = load_batch(path, "fp")
    data = path.read_bytes()
    accepted = 0
    for position in range(len(data)):
        corrupt = bytearray(data)
        corrupt[position] ^= 0x01
        path.write_bytes(bytes(corrupt))
        record = load_batch(path, "fp")
        if record is not None:  # only a change that leaves the content as it was (e.g. the layout) is accepted
            accepted += 1
            assert json.dumps(record, sort_keys=True) == json.dumps(reference, sort_keys=True)
    assert accepted < len(data) // 10
