"""Checkpoint files: atomic, versioned, tied to a config fingerprint, loaded with weights_only=True."""

from __future__ import annotations

import pytest
import torch

from rankrepro.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from rankrepro.errors import CheckpointError, RankreproError


def _payload() -> dict:
    return {
        "t": 17,
        "params": [torch.arange(6, dtype=torch.float64).reshape(2, 3), torch.ones(2, 2, 2)],
        "opt_state": {"second_moment": torch.tensor([0.5, 1e-300]), "step_count": torch.tensor([3, 4])},
        "active": torch.tensor([True, False]),
        "log_iterations": [0, 10],
        "log_values": {"loss": [torch.tensor([1.0, 2.0]), torch.tensor([0.5, float("nan")])]},
        "name": "batch",
    }


def _assert_same(a, b):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a, b) or (a.isnan() == b.isnan()).all() and torch.equal(a.nan_to_num(), b.nan_to_num())
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    else:
        assert a == b


def test_round_trip_is_exact(tmp_path):
    path = tmp_path / "sub" / "ckpt.pt"
    assert save_checkpoint(path, _payload(), "abc") == path
    _assert_same(load_checkpoint(path, "abc"), _payload())
    assert sorted(p.name for p in path.parent.iterdir()) == ["ckpt.pt"]


def test_saved_file_is_a_plain_weights_only_record(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, _payload(), "abc")
    record = torch.load(path, weights_only=True)
    assert record["format"] == CHECKPOINT_FORMAT and record["fingerprint"] == "abc"


def test_wrong_fingerprint_is_rejected(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, _payload(), "abc")
    with pytest.raises(CheckpointError, match="another configuration"):
        load_checkpoint(path, "abd")


def test_unknown_format_is_rejected(tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save({"format": CHECKPOINT_FORMAT + 1, "fingerprint": "abc", "payload": {}}, path)
    with pytest.raises(CheckpointError, match="unknown format"):
        load_checkpoint(path, "abc")
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="unknown format"):
        load_checkpoint(path, "abc")


@pytest.mark.parametrize("keep", [0, 1, 64, 0.5, 0.9])
def test_truncated_file_is_detected(tmp_path, keep):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, _payload(), "abc")
    data = path.read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else keep
    path.write_bytes(data[:cut])
    with pytest.raises(CheckpointError, match="corrupted or truncated") as info:
        load_checkpoint(path, "abc")
    assert isinstance(info.value, RankreproError)


def test_missing_file_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "absent.pt", "abc")


def test_failed_save_keeps_previous_checkpoint_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, _payload(), "abc")
    before = path.read_bytes()

    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        save_checkpoint(path, {"bad": Unsaveable()}, "abc")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]
