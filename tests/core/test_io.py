"""Atomic writes, JSON of numpy/torch values, hashing, sealed files."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rankrepro.core.io import (
    SEAL_KEY,
    SealError,
    atomic_write,
    atomic_write_csv,
    atomic_write_json,
    atomic_write_sealed_json,
    atomic_write_text,
    code_dump,
    content_sha256,
    fingerprint,
    from_jsonable,
    module_code_hash,
    one_line,
    read_json,
    read_sealed_json,
    seal_bytes,
    sha256_bytes,
    sha256_file,
    to_jsonable,
    unseal_bytes,
)


def test_atomic_write_success_leaves_only_the_target(tmp_path):
    path = tmp_path / "deep" / "dir" / "out.txt"
    assert atomic_write_text(path, "hello ✓") == path
    assert path.read_text(encoding="utf-8") == "hello ✓"
    assert [p.name for p in path.parent.iterdir()] == ["out.txt"]


def test_atomic_write_exception_keeps_old_file_and_removes_temp(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    seen: list[Path] = []

    def failing(tmp: Path) -> None:
        seen.append(tmp)
        assert tmp.parent == path.parent and tmp != path  # written beside the target, not onto it
        tmp.write_text("partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, failing)
    assert path.read_text() == "old"
    assert not seen[0].exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_write_keyboard_interrupt_also_cleans_up(tmp_path):
    def interrupted(tmp: Path) -> None:
        tmp.write_text("partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "new.txt", interrupted)
    assert list(tmp_path.iterdir()) == []


def test_to_jsonable_numpy_and_torch_values():
    value = {
        "np_int": np.int64(3),
        "np_float": np.float32(0.5),
        "np_bool": np.bool_(True),
        "np_array": np.arange(3),
        "torch_scalar": torch.tensor(2.5, dtype=torch.float64),
        "torch_matrix": torch.eye(2, dtype=torch.float64),
        "torch_int": torch.tensor([1, 2]),
        "nan": float("nan"),
        "np_nan": np.float64("nan"),
        "inf": float("inf"),
        "ninf": -np.inf,
        "tensor_nan": torch.tensor([1.0, float("nan")]),
        "path": Path("a/b"),
        "tuple": (1, np.int32(2)),
        3: "int key",
    }
    out = to_jsonable(value)
    assert out == {
        "np_int": 3,
        "np_float": 0.5,
        "np_bool": True,
        "np_array": [0, 1, 2],
        "torch_scalar": 2.5,
        "torch_matrix": [[1.0, 0.0], [0.0, 1.0]],
        "torch_int": [1, 2],
        "nan": "nan",
        "np_nan": "nan",
        "inf": "inf",
        "ninf": "-inf",
        "tensor_nan": [1.0, "nan"],
        "path": "a/b",
        "tuple": [1, 2],
        "3": "int key",
    }
    assert type(out["np_int"]) is int and type(out["np_bool"]) is bool and type(out["torch_scalar"]) is float
    json.dumps(out, allow_nan=False)  # strictly valid JSON


def test_from_jsonable_restores_the_non_finite_floats_to_jsonable_writes():
    written = to_jsonable({"loss": float("nan"), "runs": [{"w": float("inf")}, {"w": float("-inf"), "s": "ok"}]})
    assert written == {"loss": "nan", "runs": [{"w": "inf"}, {"w": "-inf", "s": "ok"}]}
    back = from_jsonable(json.loads(json.dumps(written)))
    assert math.isnan(back["loss"]) and back["runs"][0]["w"] == math.inf
    assert back["runs"][1] == {"w": -math.inf, "s": "ok"}
    assert from_jsonable({"status": "diverged", "name": "nanometre"}) == {"status": "diverged", "name": "nanometre"}


def test_atomic_write_json_is_deterministic_and_round_trips(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    atomic_write_json(a, {"z": np.float64(1 / 3), "a": [torch.tensor(1.5)], "m": {"y": 1, "x": 2}})
    atomic_write_json(b, {"a": [torch.tensor(1.5)], "m": {"x": 2, "y": 1}, "z": 1 / 3})
    assert a.read_bytes() == b.read_bytes()
    assert read_json(a) == {"a": [1.5], "m": {"x": 2, "y": 1}, "z": 1 / 3}
    assert a.read_text().endswith("\n")


def test_atomic_write_csv_keeps_full_precision(tmp_path):
    frame = pd.DataFrame({"run": [0, 1], "x": [1 / 3, math.pi * 1e-300], "ok": [True, False]})
    path = atomic_write_csv(tmp_path / "m.csv", frame)
    back = pd.read_csv(path)
    assert back["x"].tolist() == frame["x"].tolist()
    assert back["run"].tolist() == [0, 1]
    assert "Unnamed" not in "".join(back.columns)


def test_hashes(tmp_path):
    assert sha256_bytes(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc" * 1000)
    assert sha256_file(path, chunk=7) == sha256_bytes(b"abc" * 1000)


def test_fingerprint_is_stable_and_order_independent():
    a = fingerprint({"lr": 0.1, "runs": [1, 2], "t": torch.tensor([1.0])})
    assert a == fingerprint({"t": [1.0], "runs": [1, 2], "lr": 0.1})
    assert a != fingerprint({"lr": 0.1, "runs": [2, 1], "t": [1.0]})
    assert len(a) == 16


def test_code_hash_depends_on_what_the_code_does_not_on_its_prose_or_order(tmp_path):
    x, y = tmp_path / "x.py", tmp_path / "y.py"
    x.write_text("a = 1\n")
    y.write_text('def f(v):\n    """Doubles."""\n    return 2 * v  # twice\n')
    h = module_code_hash([x, y])
    assert h == module_code_hash([y, x]) and len(h) == 16
    y.write_text('def f(v):\n    """Twice v: the docstring changed."""\n\n    # another comment\n    return 2*v\n')
    assert module_code_hash([x, y]) == h  # docstring, comment and layout are not code
    y.write_text('def f(v):\n    """Doubles."""\n    "an attribute doc, a no-op"\n    return 2 * v\n')
    assert module_code_hash([x, y]) == h
    y.write_text('def f(v):\n    """Doubles."""\n    return 3 * v\n')
    assert module_code_hash([x, y]) != h  # what it computes
    y.write_text('def f(v):\n    """Doubles."""\n    return "2" * v\n')
    assert module_code_hash([x, y]) != h  # a string that is a value, not a statement, is code


def test_code_dump_leaves_out_docstrings_and_leaves_the_tree_as_it_was():
    source = 'class C:\n    """Doc."""\n    def f(self):\n        "doc"\n        if self:\n            "no-op"\n'
    tree = ast.parse(source + "            return 1\n")
    before = ast.dump(tree, include_attributes=True)
    dumped = code_dump(tree)
    assert "Doc." not in dumped and "no-op" not in dumped and "Constant(value=1)" in dumped
    assert ast.dump(tree, include_attributes=True) == before  # restored, positions included
    assert code_dump(tree.body[0].body[0]) == ""  # a docstring statement alone


# ---------------------------------------------------------------------------------------------------------------------
# Sealed files


def test_sealed_bytes_round_trip_and_reject_every_damage():
    body = bytes(range(256)) * 3
    data = seal_bytes(body, b"\nmagic:")
    assert data == body + b"\nmagic:" + sha256_bytes(body).encode() + b"\n"
    assert unseal_bytes(data, b"\nmagic:") == body
    assert unseal_bytes(seal_bytes(b"", b"M"), b"M") == b""
    with pytest.raises(SealError, match="does not end with a content hash"):
        unseal_bytes(body, b"\nmagic:")  # unsealed (earlier format)
    with pytest.raises(SealError, match="does not end with a content hash"):
        unseal_bytes(data, b"\nother:")  # another kind of file
    for cut in (0, 1, len(body), len(data) - 1):
        with pytest.raises(SealError):
            unseal_bytes(data[:cut], b"\nmagic:")
    for position in range(0, len(data), 5):
        corrupt = bytearray(data)
        corrupt[position] ^= 0x04
        with pytest.raises(SealError):
            unseal_bytes(bytes(corrupt), b"\nmagic:")


RECORD = {
    "fingerprint": "fp",
    "loss": [0.1, 1e-300, float("nan"), float("inf")],
    "n": np.int64(3),
    "w": np.array([[1.5, -2.0]]),
    "t": torch.tensor(2.5),
    "nested": {"b": (1, 2), "a": "é ✓"},
}


def test_sealed_json_round_trip_keeps_the_content_and_its_hash(tmp_path):
    path = tmp_path / "batch.json"
    atomic_write_sealed_json(path, RECORD)
    on_disk = read_json(path)
    assert on_disk[SEAL_KEY] == content_sha256(RECORD) == content_sha256(on_disk)
    assert read_sealed_json(path) == to_jsonable(RECORD)  # without the hash
    path.write_text(json.dumps(on_disk, indent=None, sort_keys=False), encoding="utf-8")  # other layout, same content
    assert read_sealed_json(path) == to_jsonable(RECORD)


def test_sealed_json_rejects_earlier_format_truncation_and_flipped_bytes(tmp_path):
    path = tmp_path / "batch.json"
    atomic_write_json(path, RECORD)  # an earlier-format batch file: no hash
    with pytest.raises(SealError, match="no content hash"):
        read_sealed_json(path)
    atomic_write_sealed_json(path, RECORD)
    text = path.read_bytes()
    path.write_bytes(text[: len(text) // 2])
    with pytest.raises(SealError, match="unreadable"):
        read_sealed_json(path)
    path.write_bytes(text.replace(b"1.5", b"1.4"))  # one byte of a value
    with pytest.raises(SealError, match="corrupted"):
        read_sealed_json(path)
    path.write_bytes(b"[1, 2]")
    with pytest.raises(SealError, match="no content hash"):
        read_sealed_json(path)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(SealError, match="unreadable"):
        read_sealed_json(path)


def test_one_line():
    assert one_line(ValueError("a\n  b\tc")) == "a b c"
    assert one_line(KeyError()) == "KeyError"
    assert one_line(ValueError("x" * 500), 50) == "x" * 47 + "..."
