"""Atomic checkpoints that load safely (``torch.load(weights_only=True)``) and detect corruption.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts, tagged with a format version and the
fingerprint of the run configuration that wrote it. Loading a truncated or corrupted file, a file from another
format version, or one written for a different configuration raises :class:`CheckpointError`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from rankrepro.errors import CheckpointError
from rankrepro.io import atomic_write

CHECKPOINT_FORMAT = 1

log = logging.getLogger(__name__)


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any], fingerprint: str) -> Path:
    """Write ``payload`` atomically (temp file + rename) with format version and config fingerprint."""
    record = {"format": CHECKPOINT_FORMAT, "fingerprint": fingerprint, "payload": payload}
    return atomic_write(path, lambda tmp: torch.save(record, tmp))


def load_checkpoint(path: str | os.PathLike, fingerprint: str) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` for the same ``fingerprint``.

    Raises :class:`CheckpointError` when the file is unreadable, of another format, or from another config.
    """
    path = Path(path)
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, bad pickle, wrong magic: all mean "corrupted"
        raise CheckpointError(f"checkpoint {path} is corrupted or truncated ({type(exc).__name__}: {exc})") from None
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
    from. A corrupted, foreign-format or other-configuration checkpoint is logged, removed, and gives None (the
    caller starts afresh)."""
    if path is None or not Path(path).exists():
        return None
    try:
        return load_checkpoint(path, fingerprint)
    except CheckpointError as exc:
        log.warning("%s; discarding it and starting from scratch", exc)
        Path(path).unlink(missing_ok=True)
        return None
