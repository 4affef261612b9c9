"""The scorecard: every claim of a tier with its verdict, measured values and reference values."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable
from typing import Any

from rankrepro.core.io import atomic_write_json, atomic_write_text
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
