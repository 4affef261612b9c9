"""scripts/check_report.py: a tier's HTML report must hold every figure with a caption naming the tier and the
substitutions, and the scorecard."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("check_report", ROOT / "scripts" / "check_report.py")
check = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(check)

FIGURE = "figures/smoke/ch1/a.png"
SCORECARD = "results/smoke/scorecard.md"
GOOD = (
    '<p>§1.1 — A</p>\n<p>Tier <tt class="docutils literal">smoke</tt>, experiment a.</p>\n<p>Substitutions: none.</p>'
)


def html(items: dict) -> str:
    """A page laid out like Snakemake's report: a decoy `var results` first, then the items' script."""
    return (
        "<script>var results = new Array(3);</script>\n"
        f'<script id="results">\n    var results = {json.dumps(items)};\n</script>'
    )


def test_a_complete_report_passes():
    items = check.report_items(html({FIGURE: {"caption": GOOD}, SCORECARD: {"caption": ""}}))
    assert check.report_problems(items, "smoke", [FIGURE], SCORECARD) == []


def test_missing_figures_captions_and_scorecard_are_reported():
    items = check.report_items(html({FIGURE: {"caption": GOOD.replace("Substitutions", "Subs")}}))
    assert check.report_problems(items, "smoke", [FIGURE, "figures/smoke/ch1/b.png"], SCORECARD) == [
        "figures/smoke/ch1/b.png: not in the report",
        f"{FIGURE}: its caption does not state the substitutions",
        f"{SCORECARD}: not in the report",
    ]
    assert (
        check.report_problems(items, "paper", [FIGURE], SCORECARD)[0]
        == f"{FIGURE}: its caption does not name tier paper"
    )
