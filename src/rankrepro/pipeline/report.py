"""The scorecard: every claim of a tier with its verdict, measured values and reference values."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from rankrepro.core.errors import ResultsError
from rankrepro.core.io import atomic_write_json, atomic_write_text, one_line
from rankrepro.pipeline.claims import FAILED, VERDICTS, read_claims

VERDICT_MARK = {
    "passed": "✅ passed",
    "failed": "❌ failed",
    "not-shown-at-this-scale": "➖ not shown at this scale",
    "data-unavailable": "⛔ data unavailable",
}


def collect_claims(paths: Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    """All claim records of the given ``claims.json`` files, in the given order."""
    records: list[dict[str, Any]] = []
    for path in paths:
        records.extend(read_claims(path))
    return records


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text.replace("|", "\\|").replace("\n", " ")


def scorecard_markdown(tier: str, records: list[dict[str, Any]]) -> str:
    """Markdown table of claims grouped by experiment, with a verdict count on top."""
    counts = Counter(r["verdict"] for r in records)
    summary = ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS)
    lines = [f"# Scorecard — tier `{tier}`", "", f"{len(records)} claims: {summary}.", ""]
    experiment = None
    for record in records:
        if record["experiment"] != experiment:
            experiment = record["experiment"]
            lines += [
                "",
                f"## §{record['section']} `{experiment}`",
                "",
                "| claim | statement | verdict | measured | reference |",
                "|---|---|---|---|---|",
            ]
        lines.append(
            f"| `{record['claim_id']}` | {_cell(record['statement'])} | {VERDICT_MARK[record['verdict']]} | "
            f"{_cell(record['measured'])} | {_cell(record['reference'])} |"
        )
        if record.get("details"):
            lines.append(f"| | *{_cell(record['details'])}* | | | |")
    return "\n".join(lines) + "\n"


def write_scorecard(
    tier: str, claim_files: Iterable[str | os.PathLike], md_path: str | os.PathLike, json_path: str | os.PathLike
) -> list[dict[str, Any]]:
    """Write ``scorecard.md`` and ``scorecard.json`` from the tier's ``claims.json`` files."""
    records = collect_claims(claim_files)
    counts = Counter(r["verdict"] for r in records)
    atomic_write_json(json_path, {"tier": tier, "counts": {v: counts.get(v, 0) for v in VERDICTS}, "claims": records})
    atomic_write_text(md_path, scorecard_markdown(tier, records))
    return records


def failed_claims(scorecard_json: str | os.PathLike) -> list[str]:
    """Ids of claims with verdict ``failed`` in a ``scorecard.json``."""
    return [f"{r['experiment']}:{r['claim_id']}" for r in read_claims(scorecard_json) if r["verdict"] == FAILED]


def expected_failures(path: str | os.PathLike, tier: str) -> dict[str, str]:
    """``<experiment>:<claim_id>`` → why, for the claims a tier is known to fail (a YAML mapping of tier → list of
    ``{claim, why}``; a tier it does not list expects none). A known failure is a result — a discrepancy with the
    thesis, explained — not a regression: CI lists it once, with its reason, instead of turning red on it."""
    try:
        listed = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        entries = listed.get(tier) or []
        return {str(entry["claim"]): str(entry["why"]) for entry in entries}
    except FileNotFoundError:
        raise ResultsError(f"expected-failures file {path} does not exist") from None
    except (yaml.YAMLError, AttributeError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path} is not a mapping of tier → list of {{claim, why}} ({one_line(exc, 100)})") from None


def check_failures(failed: list[str], expected: dict[str, str]) -> tuple[list[str], list[str]]:
    """(failed claims not expected to fail, expected failures that did not fail): both must be empty — a new failure
    is a regression to look at, a listed one that now passes makes the list stale."""
    return [claim for claim in failed if claim not in expected], [claim for claim in expected if claim not in failed]
