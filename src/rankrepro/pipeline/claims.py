"""Claims: a statement of the thesis, a check over an experiment's saved results, and a verdict.

Verdicts:
- ``passed`` / ``failed``: the check ran on numbers this tier produced;
- ``not-shown-at-this-scale``: the tier is too small for the claim to show (never a silent pass);
- ``data-unavailable``: the experiment needs a dataset this machine could not obtain.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rankrepro.core.errors import ResultsError
from rankrepro.core.io import atomic_write_json, one_line, read_json

PASSED, FAILED, NOT_SHOWN, DATA_UNAVAILABLE = "passed", "failed", "not-shown-at-this-scale", "data-unavailable"
VERDICTS = (PASSED, FAILED, NOT_SHOWN, DATA_UNAVAILABLE)


@dataclass(frozen=True)
class ClaimResult:
    """The outcome of checking one claim on one tier's results."""

    claim_id: str
    experiment: str
    section: str
    statement: str
    verdict: str
    measured: Any
    reference: str
    details: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}; expected one of {VERDICTS}")


def decide(holds: bool, shown: bool = True) -> str:
    """``passed``/``failed`` from a boolean check, or ``not-shown-at-this-scale`` when the tier cannot show it."""
    if not shown:
        return NOT_SHOWN
    return PASSED if holds else FAILED


def write_claims(path: str | os.PathLike, tier: str, results: Iterable[ClaimResult]) -> Path:
    """Write ``claims.json``: the tier and the list of claim results."""
    records = [asdict(r) for r in results]
    return atomic_write_json(path, {"tier": tier, "claims": records})


def read_claims(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Claim records of one ``claims.json`` or ``scorecard.json`` (its ``claims`` list of records, each with at least
    ``experiment``, ``claim_id`` and ``verdict``); a one-line :class:`ResultsError` for anything else."""
    try:
        claims = read_json(path)["claims"]
        if not all(isinstance(c, dict) and {"experiment", "claim_id", "verdict"} <= set(c) for c in claims):
            raise ValueError("a claim record lacks experiment, claim_id or verdict")
    except FileNotFoundError:
        raise ResultsError(f"{path} does not exist: make it first (snakemake, or rankrepro claims …)") from None
    except (OSError, ValueError, TypeError, KeyError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ResultsError(f"{path} is not a claims or scorecard file ({one_line(exc, 120)}); regenerate it") from None
    return list(claims)
