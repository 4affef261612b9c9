"""Atomic file writes and content hashing.

Every result and checkpoint is written to a temporary file in the destination folder and moved into place with
:func:`os.replace`, which is atomic on POSIX: a reader (or a killed job) sees either the old file or the new one,
never a partial write.

Files that are read back to resume or skip work are also *sealed*: they carry the SHA-256 of their content, checked
when they are read, so a truncated, bit-flipped or earlier-format file is detected (:class:`SealError`) and the work
is redone instead of resumed from wrong numbers. A sealed binary file is its body followed by a trailer (a magic tag,
the hex SHA-256 of the body, a newline: :func:`seal_bytes`); a sealed JSON record holds the SHA-256 of its canonical
content (everything but that key) under :data:`SEAL_KEY` (:func:`atomic_write_sealed_json`).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it onto ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; results are ordinary files
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def to_jsonable(value: Any) -> Any:
    """Convert numpy/torch scalars, arrays and paths into plain JSON types (non-finite floats become strings)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):
        return to_jsonable(value.tolist())
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    return value


#: how :func:`to_jsonable` writes the non-finite floats JSON has no literal for
NON_FINITE = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}


def from_jsonable(value: Any) -> Any:
    """The inverse of :func:`to_jsonable` for non-finite floats: the strings ``"nan"``, ``"inf"`` and ``"-inf"``
    anywhere in nested dicts and lists become floats again (a diverged run's loss is NaN, not a word)."""
    if isinstance(value, dict):
        return {k: from_jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_jsonable(v) for v in value]
    if isinstance(value, str) and value in NON_FINITE:
        return NON_FINITE[value]
    return value


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON atomically (deterministic bytes for equal content)."""
    text = json.dumps(to_jsonable(obj), indent=2, sort_keys=True) + "\n"
    return atomic_write_text(path, text)


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def atomic_write_csv(path: str | os.PathLike, frame: pd.DataFrame) -> Path:
    """Write a tidy data frame as CSV atomically (no index, floats in full precision)."""
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False, float_format="%.17g"))


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(obj: Any) -> str:
    """Short stable hash of a JSON-able object (used to tie checkpoints to the config that made them)."""
    text = json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":"))
    return sha256_bytes(text.encode())[:16]


def module_code_hash(paths: Iterable[str | os.PathLike]) -> str:
    """Hash of the code of the given Python modules, in sorted path order: each module's :func:`code_dump` — so that
    editing prose (docstrings, comments) or layout changes no hash, while any change to what the code does changes
    it. The dump depends on the Python minor version (new node fields), so a new interpreter recomputes:
    conservative."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        digest.update(str(path.name).encode())
        digest.update(code_dump(ast.parse(path.read_bytes(), filename=str(path))).encode())
    return digest.hexdigest()[:16]


def code_dump(node: ast.AST) -> str:
    """The code of a syntax tree (a module or one statement) as text, for code hashes: its ``ast.dump`` without
    positions and without bare string statements (docstrings, attribute docs: no-ops) — comments and layout never
    reach the tree. A statement that is only a string dumps to ``""``. ``node`` is left as it was (its blocks are
    filtered in place for the dump and restored: a deep copy would cost more than the dump)."""
    if _is_bare_string(node):
        return ""
    filtered = []
    for inner in ast.walk(node):
        for field in ("body", "orelse", "finalbody"):
            block = getattr(inner, field, None)
            if isinstance(block, list) and any(_is_bare_string(statement) for statement in block):
                filtered.append((block, block[:]))
                block[:] = [statement for statement in block if not _is_bare_string(statement)]
    try:
        return ast.dump(node, annotate_fields=True, include_attributes=False)
    finally:
        for block, original in filtered:
            block[:] = original


def _is_bare_string(node: ast.AST) -> bool:
    """Whether ``node`` is a statement that is only a string constant (a docstring)."""
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message as one line of at most ``limit`` characters (its type name if it has no message)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


class SealError(ValueError):
    """A sealed file has no valid content hash (earlier format, truncated) or its content does not match it."""


#: the key of a sealed JSON record that holds the SHA-256 of the rest of its content
SEAL_KEY = "sha256"
_SHA256_HEX = 64


def seal_bytes(body: bytes, magic: bytes) -> bytes:
    """``body`` followed by its trailer: ``magic``, the hex SHA-256 of ``body``, a newline."""
    return body + magic + sha256_bytes(body).encode("ascii") + b"\n"


def unseal_bytes(data: bytes, magic: bytes) -> bytes:
    """The body of sealed bytes (:func:`seal_bytes` with the same ``magic``); a :class:`SealError` if the trailer is
    missing or malformed, or the body's SHA-256 differs from the one it records."""
    size = len(magic) + _SHA256_HEX + 1
    body, trailer = data[:-size], data[-size:]
    if len(data) < size or not trailer.startswith(magic) or not trailer.endswith(b"\n"):
        raise SealError("it does not end with a content hash (truncated, or written by an earlier version)")
    recorded = trailer[len(magic) : -1].decode("ascii", errors="replace")
    actual = sha256_bytes(body)
    if recorded != actual:
        raise SealError(f"its content has SHA-256 {actual[:12]}…, not the {recorded[:12]}… it records (corrupted)")
    return body


def content_sha256(record: dict[str, Any]) -> str:
    """SHA-256 of a record's canonical JSON (keys sorted, compact, :func:`to_jsonable`), :data:`SEAL_KEY` left out:
    equal for a record and for what JSON reads back of it."""
    content = {key: value for key, value in to_jsonable(record).items() if key != SEAL_KEY}
    return sha256_bytes(json.dumps(content, sort_keys=True, separators=(",", ":")).encode("utf-8"))


def atomic_write_sealed_json(path: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Write ``record`` as JSON (:func:`atomic_write_json`) with its :func:`content_sha256` under :data:`SEAL_KEY`."""
    return atomic_write_json(path, {**to_jsonable(record), SEAL_KEY: content_sha256(record)})


def read_sealed_json(path: str | os.PathLike) -> dict[str, Any]:
    """The record of a file written by :func:`atomic_write_sealed_json`, without :data:`SEAL_KEY`; a
    :class:`SealError` if it is unreadable, not a JSON object, has no hash or does not match it."""
    try:
        record = read_json(path)
    except (OSError, ValueError, RecursionError) as exc:
        raise SealError(f"it is unreadable ({one_line(exc, 120)})") from None
    if not isinstance(record, dict) or not isinstance(record.get(SEAL_KEY), str):
        raise SealError("it has no content hash (written by an earlier version)")
    actual = content_sha256(record)
    if record[SEAL_KEY] != actual:
        raise SealError(
            f"its content has SHA-256 {actual[:12]}…, not the {record[SEAL_KEY][:12]}… it records (corrupted)"
        )
    return {key: value for key, value in record.items() if key != SEAL_KEY}
