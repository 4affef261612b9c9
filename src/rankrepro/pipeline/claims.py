"""Claims: a statement of the thesis, a check over an experiment's saved results, and a verdict.

Verdicts:
- ``passed`` / ``failed``: the check ran on numbers this tier produced;
- ``not-shown-at-this-scale``: the tier is too small for the claim to show (never a silent pass);
- ``data-unavailable``: the experiment needs a dataset this machine could not obtain.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import pandas as pd

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
    """Claim records of one ``claims.json`` or ``scorecard.json`` (its ``claims`` list of records, each with every
    required field of :class:`ClaimResult` and a verdict of :data:`VERDICTS`); a one-line :class:`ResultsError` for
    anything else — a misspelt verdict ("Failed") would otherwise be counted as no verdict at all."""
    required = {f.name for f in fields(ClaimResult) if f.default is MISSING and f.default_factory is MISSING}
    try:
        claims = read_json(path)["claims"]
        for record in claims:
            if not isinstance(record, dict):
                raise ValueError("a claim record is not an object")
            if not required <= set(record):
                raise ValueError(f"a claim record lacks {', '.join(sorted(required - set(record)))}")
            if record["verdict"] not in VERDICTS:
                raise ValueError(f"claim {record['claim_id']!r} has the unknown verdict {record['verdict']!r}")
    except FileNotFoundError:
        raise ResultsError(f"{path} does not exist: make it first (snakemake, or rankrepro claims …)") from None
    except (OSError, ValueError, TypeError, KeyError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ResultsError(f"{path} is not a claims or scorecard file ({one_line(exc, 120)}); regenerate it") from None
    return list(claims)


# ------------------------------------------------------------------------------------------- one gate per experiment
@dataclass(frozen=True)
class Gate:
    """The precondition every claim of one experiment stands on (its runs converged, its networks fit their training
    set, …): stated once per experiment and applied to all its claims alike by :func:`apply_gate`."""

    statement: str  #: what must hold, e.g. "every regularized net reaches 100 % train accuracy"
    holds: bool
    measured: str  #: the numbers it was decided on

    def describe(self) -> str:
        """One line for a claim's details."""
        return f"gate: {self.statement} — {'met' if self.holds else 'NOT met'} ({self.measured})"


def apply_gate(gate: Gate, results: Iterable[ClaimResult]) -> list[ClaimResult]:
    """Every claim of an experiment under its one gate: when the gate holds, the verdicts stand (the gate is noted in
    the details); when it does not, a passed or failed verdict becomes ``not-shown-at-this-scale`` — the run cannot
    decide the claim either way — and ``data-unavailable`` stays."""
    gated = []
    for result in results:
        verdict = result.verdict
        if not gate.holds and verdict in (PASSED, FAILED):
            verdict = NOT_SHOWN
        details = f"{result.details} [{gate.describe()}]".strip()
        gated.append(replace(result, verdict=verdict, details=details))
    return gated


# ------------------------------------------------------------------------------------------------ paired intervals
#: confidence level of every paired interval a claim states
CONFIDENCE = 0.95


@dataclass(frozen=True)
class PairedInterval:
    """Two-sided confidence interval of the mean of paired differences d_i = a_i − b_i (Student t, n − 1 degrees of
    freedom): mean ± t_{(1+level)/2, n−1} · s/√n, with s the sample standard deviation of the d_i."""

    mean: float
    low: float
    high: float
    n: int
    level: float = CONFIDENCE

    def text(self, digits: int = 3) -> str:
        """E.g. ``mean 0.12, 95 % CI [0.05, 0.19] over 5 pairs``."""
        fmt = f"{{:.{digits}g}}"
        return (
            f"mean {fmt.format(self.mean)}, {self.level:.0%} CI [{fmt.format(self.low)}, {fmt.format(self.high)}] "
            f"over {self.n} pairs"
        )


def seed_means(frame: pd.DataFrame, columns: Sequence[str], seed: str = "seed") -> pd.DataFrame:
    """Per seed, the mean of ``columns`` over the frame's other rows (levels, variants, …) that share it: one paired
    observation per seed. Rows of one seed share its initial weights and data, so they are not independent draws; a
    paired interval counts seeds. ``seed`` names a column or an index level."""
    return frame.groupby(seed, sort=True)[list(columns)].mean()


def paired_interval(a: Iterable[float], b: Iterable[float], level: float = CONFIDENCE) -> PairedInterval:
    """The :class:`PairedInterval` of a − b over paired samples (same seed, same data: a paired design removes the
    seed-to-seed variance both share). Needs at least two pairs; equal lengths."""
    from scipy import stats  # noqa: PLC0415 - only the claims that compare noisy quantities need scipy

    a, b = [float(x) for x in a], [float(x) for x in b]
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"a paired interval needs two equally long samples of ≥ 2 values, got {len(a)} and {len(b)}")
    d = [x - y for x, y in zip(a, b)]
    n = len(d)
    mean = sum(d) / n
    sd = (sum((x - mean) ** 2 for x in d) / (n - 1)) ** 0.5
    half = float(stats.t.ppf((1 + level) / 2, n - 1)) * sd / n**0.5
    return PairedInterval(mean, mean - half, mean + half, n, level)


def verdict_greater(interval: PairedInterval) -> str:
    """``passed`` when the interval of a − b lies above 0 (a > b shown at the interval's level), else ``failed``: an
    interval that reaches 0 does not show the claim, however the means compare."""
    return PASSED if interval.low > 0 else FAILED


def verdict_equivalent(interval: PairedInterval, margin: float) -> str:
    """``passed`` when the interval of a − b lies inside (−margin, margin) (a ≈ b shown: equivalence by two one-sided
    tests, each at level (1 − level)/2), else ``failed``."""
    return PASSED if -margin < interval.low and interval.high < margin else FAILED


def verdict_not_worse(interval: PairedInterval, margin: float) -> str:
    """``passed`` when the interval of a − b lies above −``margin`` (a is not worse than b by ``margin`` or more:
    non-inferiority, one-sided at level (1 − level)/2), else ``failed``."""
    return PASSED if interval.low > -margin else FAILED
