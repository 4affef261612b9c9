#!/usr/bin/env python3
"""Write the measured results into the docs from a tier's scorecard, so that no result is ever typed by hand.

A Markdown file marks each generated region with a pair of HTML comments::

    <!-- results:begin ch1 -->
    … generated, never edited …
    <!-- results:end ch1 -->

and this script replaces what lies between them. Region names:

- ``ch1`` … ``ch5``: every claim of that chapter (section, claim id, statement with the scorecard's note, verdict,
  measured values, the paper's reference values) and the chapter's verdict counts;
- ``summary``: the verdict counts of every chapter and of the whole scorecard.

Usage (from anywhere; paths are relative to the repository root)::

    python scripts/render_results_docs.py            # rewrite docs/index.md and docs/chapters/*.md in place
    python scripts/render_results_docs.py --check    # exit 1 and name the files whose regions are out of date
    python scripts/render_results_docs.py --scorecard results/default/scorecard.json docs/chapters/ch1.md

Only the standard library is used (no rankrepro, no Snakemake import): the script reads ``scorecard.json`` as the
report rule writes it (``{"tier", "counts", "claims": [{section, experiment, claim_id, statement, verdict, measured,
reference, details}, …]}``, plus a ``git_commit``/``commit`` or ``provenance.git_commit`` when the scorecard records
one).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SCORECARD = Path("results/default/scorecard.json")
DEFAULT_FILES = (Path("docs/index.md"), *(Path(f"docs/chapters/ch{n}.md") for n in range(1, 6)))

#: verdicts in scorecard order, with the mark the scorecard uses
VERDICTS = {
    "passed": "✅ passed",
    "failed": "❌ failed",
    "not-shown-at-this-scale": "➖ not shown at this scale",
    "data-unavailable": "⛔ data unavailable",
}
#: a scorecard note longer than this is cut (the full text is in scorecard.md)
MAX_NOTE = 400

REGION = re.compile(
    r"(<!-- results:begin (?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- results:end (?P=name) -->)", re.DOTALL
)
MARKER = re.compile(r"<!-- results:(begin|end) ([\w.-]+) -->")


class RenderError(Exception):
    """A region this script cannot render (unknown name, unpaired marker)."""


def load_scorecard(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def scorecard_commit(scorecard: dict[str, Any]) -> str | None:
    """The git commit the scorecard records, if any."""
    for key in ("git_commit", "commit"):
        if isinstance(scorecard.get(key), str):
            return scorecard[key]
    provenance = scorecard.get("provenance")
    if isinstance(provenance, dict) and isinstance(provenance.get("git_commit"), str):
        return provenance["git_commit"]
    return None


def chapter_of(claim: dict[str, Any]) -> str:
    """``ch1`` for a claim of section ``1.3``."""
    return f"ch{str(claim['section']).split('.')[0]}"


def _number(value: float) -> str:
    return format(value, ".6g")


def value_text(value: Any) -> str:
    """Compact, deterministic text of a measured value: floats to 6 significant digits, no JSON quotes."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {value_text(item)}" for key, item in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(value_text(item) for item in value) + "]"
    return str(value)


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell (no pipe, no newline, no ``<word>`` taken for an HTML tag)."""
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip()
    return re.sub(r"<(?=[A-Za-z/!])", "&lt;", text)


def measured_text(measured: Any) -> str:
    """One line per measured key (joined by ``<br>``), each made safe for a table cell."""
    if isinstance(measured, dict) and measured:
        return "<br>".join(cell(f"{key}: {value_text(item)}") for key, item in measured.items())
    return cell(value_text(measured))


def counts_text(claims: list[dict[str, Any]]) -> str:
    counts = Counter(claim["verdict"] for claim in claims)
    parts = [f"{counts[verdict]} {verdict}" for verdict in VERDICTS if counts.get(verdict)]
    parts += [f"{counts[verdict]} {verdict}" for verdict in sorted(counts) if verdict not in VERDICTS]
    return f"{len(claims)} claims — " + ", ".join(parts)


def provenance_line(scorecard: dict[str, Any], source: str) -> str:
    commit = scorecard_commit(scorecard)
    where = f"git commit `{commit}`" if commit else "the scorecard records no git commit"
    return (
        f"*Generated by `scripts/render_results_docs.py` from `{source}` (tier `{scorecard.get('tier', '?')}`, "
        f"{where}); do not edit by hand: rerun the script after regenerating the scorecard.*"
    )


def render_chapter(scorecard: dict[str, Any], chapter: str, source: str) -> str:
    claims = [claim for claim in scorecard.get("claims", []) if chapter_of(claim) == chapter]
    lines = [provenance_line(scorecard, source), ""]
    if not claims:
        return "\n".join(lines + [f"No claim of chapter {chapter[2:]} in this scorecard.", ""])
    lines += [
        f"**Chapter {chapter[2:]}: {counts_text(claims)}.**",
        "",
        "| § | experiment: claim | statement | verdict | measured | reference |",
        "|---|---|---|---|---|---|",
    ]
    for claim in claims:
        statement = cell(claim.get("statement", ""))
        note = (claim.get("details") or "").strip()
        if note:
            if len(note) > MAX_NOTE:
                note = note[:MAX_NOTE].rstrip() + " … (full note in the scorecard)"
            statement += f"<br>*{cell(note)}*"
        verdict = VERDICTS.get(claim["verdict"], claim["verdict"])
        lines.append(
            f"| {claim['section']} | `{claim['experiment']}`: `{claim['claim_id']}` | {statement} | "
            f"{verdict} | {measured_text(claim.get('measured'))} | "
            f"{cell(value_text(claim.get('reference')))} |"
        )
    return "\n".join(lines + [""])


def render_summary(scorecard: dict[str, Any], source: str) -> str:
    claims = scorecard.get("claims", [])
    chapters = sorted({chapter_of(claim) for claim in claims}, key=lambda name: int(name[2:]))
    lines = [
        provenance_line(scorecard, source),
        "",
        "| chapter | claims | " + " | ".join(VERDICTS) + " |",
        "|---|---:|" + "---:|" * len(VERDICTS),
    ]
    for chapter in [*chapters, "all"]:
        subset = claims if chapter == "all" else [claim for claim in claims if chapter_of(claim) == chapter]
        counts = Counter(claim["verdict"] for claim in subset)
        label = "**all**" if chapter == "all" else f"[{chapter}](chapters/{chapter}.md)"
        lines.append(f"| {label} | {len(subset)} | " + " | ".join(str(counts.get(v, 0)) for v in VERDICTS) + " |")
    return "\n".join(lines + [""])


def render_region(name: str, scorecard: dict[str, Any], source: str) -> str:
    if name == "summary":
        return render_summary(scorecard, source)
    if re.fullmatch(r"ch[1-9]\d*", name):
        return render_chapter(scorecard, name, source)
    raise RenderError(f"unknown results region '{name}' (known: summary, ch1, ch2, …)")


def render_text(text: str, scorecard: dict[str, Any], source: str) -> str:
    """``text`` with every results region rewritten from ``scorecard``."""
    markers = [(match.group(1), match.group(2)) for match in MARKER.finditer(text)]
    regions = [match.group("name") for match in REGION.finditer(text)]
    if len(markers) != 2 * len(regions):
        raise RenderError(f"unpaired results markers: {markers}")
    return REGION.sub(
        lambda match: match.group(1) + render_region(match.group("name"), scorecard, source) + match.group(4), text
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="Markdown files (default: docs/index.md, docs/chapters/)")
    parser.add_argument("--scorecard", type=Path, default=DEFAULT_SCORECARD, help="default: %(default)s")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file is out of date")
    args = parser.parse_args(argv)
    scorecard_path = args.scorecard if args.scorecard.is_absolute() else REPO / args.scorecard
    try:
        source = scorecard_path.relative_to(REPO).as_posix()
    except ValueError:
        source = scorecard_path.as_posix()
    scorecard = load_scorecard(scorecard_path)
    stale = []
    for file in args.files or list(DEFAULT_FILES):
        path = file if file.is_absolute() else REPO / file
        text = path.read_text(encoding="utf-8")
        try:
            new = render_text(text, scorecard, source)
        except RenderError as exc:
            print(f"render_results_docs: {file}: {exc}", file=sys.stderr)
            return 2
        if new != text:
            stale.append(file)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    if args.check and stale:
        print("out of date (run python scripts/render_results_docs.py): " + ", ".join(map(str, stale)), file=sys.stderr)
        return 1
    for file in [] if args.check else stale:
        print(f"rewrote {file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
