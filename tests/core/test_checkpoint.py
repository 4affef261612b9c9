"""Checkpoint files: atomic, versioned, tied to a config fingerprint, sealed with the SHA-256 of their bytes, loaded
with weights_only=True."""

from __future__ import annotations

import builtins
import io
import logging

import pytest
import torch

from rankrepro.core.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_MAGIC,
    load_checkpoint,
    resume_payload,
    save_checkpoint,
)
from rankrepro.core.errors import CheckpointError, RankreproError
from rankrepro.core.io import seal_bytes, sha256_bytes


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


def _trailer_size() -> int:
    return len(CHECKPOINT_MAGIC) + 64 + 1


def test_saved_file_is_a_plain_weights_only_record_followed_by_its_sha256(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, _payload(), "abc")
    data = path.read_bytes()
    body, trailer = data[: -_trailer_size()], data[-_trailer_size() :]
    assert trailer == CHECKPOINT_MAGIC + sha256_bytes(body).encode() + b"\n"
    record = torch.load(io.BytesIO(body), weights_only=True)
    assert record["format"] == CHECKPOINT_FORMAT and record["fingerprint"] == "abc"


def _sealed(obj) -> bytes:
    """``obj`` saved with torch.save and sealed as a checkpoint (a valid hash around any content)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return seal_bytes(buffer.getvalue(), CHECKPOINT_MAGIC)


def test_wrong_fingerprint_is_rejected(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, _payload(), "abc")
    with pytest.raises(CheckpointError, match="another configuration"):
        load_checkpoint(path, "abd")


def test_unknown_format_is_rejected(tmp_path):
    path = tmp_path / "ckpt.pt"
    path.write_bytes(_sealed({"format": CHECKPOINT_FORMAT + 1, "fingerprint": "abc", "payload": {}}))
    with pytest.raises(CheckpointError, match="unknown format"):
        load_checkpoint(path, "abc")
    path.write_bytes(_sealed([1, 2, 3]))
    with pytest.raises(CheckpointError, match="unknown format"):
        load_checkpoint(path, "abc")


def test_an_earlier_format_checkpoint_without_a_hash_is_discarded_in_one_line(tmp_path, caplog):
    """A checkpoint written before the seal (plain torch.save, no trailer) that loads fine is not trusted: discarded,
    logged."""
    path = tmp_path / "ckpt.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "fingerprint": "abc", "payload": _payload()}, path)
    assert torch.load(path, weights_only=True)["payload"]["t"] == 17  # loadable, but unverifiable
    with pytest.raises(CheckpointError, match="does not end with a content hash"):
        load_checkpoint(path, "abc")
    with caplog.at_level(logging.WARNING, logger="rankrepro"):
        assert resume_payload(path, "abc") is None
    (record,) = [record for record in caplog.records if record.name == "rankrepro.core.checkpoint"]
    assert str(path) in record.getMessage() and "\n" not in record.getMessage() and not path.exists()


def test_a_flipped_byte_in_the_middle_of_a_tensor_is_detected(tmp_path, caplog):
    path = tmp_path / "ckpt.pt"
    weights = torch.linspace(-1, 1, 1000, dtype=torch.float64)
    save_checkpoint(path, {"weights": weights, "t": 5}, "abc")
    data = bytearray(path.read_bytes())
    start = bytes(data).find(weights.numpy().tobytes())
    assert start > 0
    data[start + 4000 + 3] ^= 0x01  # one bit of weights[500]
    path.write_bytes(bytes(data))
    # without the hash the damage would go unnoticed: the tensor loads, with another value
    loaded = torch.load(io.BytesIO(bytes(data[: -_trailer_size()])), weights_only=True)["payload"]["weights"]
    assert not torch.equal(loaded, weights) and (loaded != weights).sum() == 1
    with pytest.raises(CheckpointError, match="corrupted or truncated: its content has SHA-256"):
        load_checkpoint(path, "abc")
    with caplog.at_level(logging.WARNING, logger="rankrepro"):
        assert resume_payload(path, "abc") is None  # the run recomputes
    assert not path.exists()
    assert any("discarding it" in record.getMessage() and "\n" not in record.getMessage() for record in caplog.records)


def test_every_flipped_byte_is_detected(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"w": torch.arange(8.0), "t": 1}, "abc")
    data = path.read_bytes()
    for position in sorted({*range(0, len(data), 7), *range(len(data) - _trailer_size() - 8, len(data))}):
        for flip in (0x01, 0x80):
            corrupt = bytearray(data)
            corrupt[position] ^= flip
            path.write_bytes(bytes(corrupt))
            with pytest.raises(CheckpointError, match="corrupted or truncated"):
                load_checkpoint(path, "abc")


class _Payload:
    """Unpickling this would create a file: weights_only loading must refuse it even inside a valid seal."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_a_sealed_payload_is_refused_by_weights_only_in_one_line(tmp_path, caplog):
    path, marker = tmp_path / "ckpt.pt", tmp_path / "marker"
    path.write_bytes(_sealed({"format": CHECKPOINT_FORMAT, "fingerprint": "abc", "payload": _Payload(marker)}))
    with pytest.raises(CheckpointError, match="corrupted or truncated \\(UnpicklingError") as info:
        load_checkpoint(path, "abc")
    assert "\n" not in str(info.value) and not marker.exists()
    path.write_bytes(seal_bytes(b"not a torch file", CHECKPOINT_MAGIC))
    with caplog.at_level(logging.WARNING, logger="rankrepro"):
        assert resume_payload(path, "abc") is None
    assert all("\n" not in record.getMessage() for record in caplog.records) and caplog.records


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
