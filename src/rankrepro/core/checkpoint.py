"""Atomic checkpoints that load safely (``torch.load(weights_only=True)``) and detect corruption.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts, tagged with a format version and the
fingerprint of the run configuration that wrote it. The file is the ``torch.save`` bytes of that record followed by a
trailer holding their SHA-256 (:func:`rankrepro.core.io.seal_bytes`), checked before anything is unpickled: a truncated
file, a flipped bit anywhere, a file of an earlier format (no trailer), one of another format version, or one written
for a different configuration raises :class:`CheckpointError` with a one-line message.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Any

import torch

from rankrepro.core.errors import CheckpointError
from rankrepro.core.io import SealError, atomic_write, one_line, seal_bytes, unseal_bytes

#: the version of the record's layout (format, fingerprint, payload)
CHECKPOINT_FORMAT = 1
#: the tag before the SHA-256 in a checkpoint file's trailer (files written before it existed have none: rejected)
CHECKPOINT_MAGIC = b"\nrankrepro-checkpoint sha256:"

log = logging.getLogger(__name__)


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any], fingerprint: str) -> Path:
    """Write ``payload`` atomically (temp file + rename) with format version, config fingerprint and the SHA-256 of
    the saved bytes."""
    record = {"format": CHECKPOINT_FORMAT, "fingerprint": fingerprint, "payload": payload}
    buffer = io.BytesIO()
    torch.save(record, buffer)
    data = seal_bytes(buffer.getvalue(), CHECKPOINT_MAGIC)
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def load_checkpoint(path: str | os.PathLike, fingerprint: str) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` for the same ``fingerprint``.

    Raises :class:`CheckpointError` (one line) when the file is unreadable, does not match its SHA-256 (or has none),
    is of another format, or is from another config.
    """
    path = Path(path)
    try:
        body = unseal_bytes(path.read_bytes(), CHECKPOINT_MAGIC)
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable ({one_line(exc)})") from None
    except SealError as exc:
        raise CheckpointError(f"checkpoint {path} is corrupted or truncated: {exc}") from None
    try:
        record = torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)
    except Exception as exc:  # bytes that match their hash but do not load: written by something else
        raise CheckpointError(
            f"checkpoint {path} is corrupted or truncated ({type(exc).__name__}: {one_line(exc, 200)})"
        ) from None
    if not isinstance(record, dict) or record.get("format") != CHECKPOINT_FORMAT or "payload" not in record:
        raise CheckpointError(f"checkpoint {path} has an unknown format")
    if record.get("fingerprint") != fingerprint:
        raise CheckpointError(
            f"checkpoint {path} was written for another configuration "
            f"(fingerprint {record.get('fingerprint')} != {fingerprint})"
        )
    return record["payload"]


def resume_payload(path: str | os.PathLike | None, fingerprint: str) -> dict[str, Any] | None:
    """The payload of the checkpoint at ``path`` written for ``fingerprint``, or None when there is none to resume
    from. A corrupted, foreign-format or other-configuration checkpoint is logged (one line), removed, and gives None
    (the caller starts afresh)."""
    if path is None or not Path(path).exists():
        return None
    try:
        return load_checkpoint(path, fingerprint)
    except CheckpointError as exc:
        log.warning("%s; discarding it and starting from scratch", exc)
        Path(path).unlink(missing_ok=True)
        return None
