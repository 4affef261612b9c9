#!/usr/bin/env python3
"""Check a tier's HTML report (``snakemake --report``): every figure of the tier is in it with its caption.

Usage, from the repository root, after the tier has run and its report was built (CI's ``report`` phase)::

    python scripts/check_report.py results/smoke/report.html --tier smoke

A figure's caption (workflow/report/figure.rst) names the tier and the substitutions; the scorecard is in the report
too. Only the standard library is used.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

#: what every figure's caption must say (docutils renders ``tier`` as <tt class="docutils literal">tier</tt>)
TIER_LINE = 'Tier <tt class="docutils literal">{tier}</tt>'
SUBSTITUTIONS_LINE = "Substitutions:"


def report_items(html: str) -> dict[str, dict]:
    """The items of a Snakemake HTML report: output path → its record (name, labels, caption, …). The report embeds
    them as one object literal, ``var results = {…}``, in its ``<script id="results">``."""
    start = html.index("var results = {", html.index('<script id="results">')) + len("var results = ")
    items, _ = json.JSONDecoder().raw_decode(html[start:])
    return items


def report_problems(items: dict[str, dict], tier: str, figures: list[str], scorecard: str) -> list[str]:
    """What is wrong with a tier's report items: a figure (a path of ``figures``) missing, or its caption not naming
    the tier and the substitutions; the scorecard missing."""
    problems = [f"{figure}: not in the report" for figure in figures if figure not in items]
    for figure in figures:
        caption = items.get(figure, {}).get("caption", "")
        if figure in items and TIER_LINE.format(tier=tier) not in caption:
            problems.append(f"{figure}: its caption does not name tier {tier}")
        if figure in items and SUBSTITUTIONS_LINE not in caption:
            problems.append(f"{figure}: its caption does not state the substitutions")
    if scorecard not in items:
        problems.append(f"{scorecard}: not in the report")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--tier", required=True)
    args = parser.parse_args(argv)
    figures = sorted(path.as_posix() for path in Path("figures", args.tier).rglob("*.png"))
    if not figures:
        print(f"check_report: no figures under figures/{args.tier}", file=sys.stderr)
        return 1
    items = report_items(args.report.read_text(encoding="utf-8"))
    problems = report_problems(items, args.tier, figures, f"results/{args.tier}/scorecard.md")
    for problem in problems:
        print(f"check_report: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"{args.report}: all {len(figures)} figures, with captions naming tier {args.tier}, and the scorecard")
    return 0


if __name__ == "__main__":
    sys.exit(main())
