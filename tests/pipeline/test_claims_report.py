"""Claim verdicts, claims.json files and the scorecard."""

from __future__ import annotations

import json

import pytest

from rankrepro.core.errors import ResultsError
from rankrepro.pipeline.claims import (
    DATA_UNAVAILABLE,
    FAILED,
    NOT_SHOWN,
    PASSED,
    VERDICTS,
    ClaimResult,
    decide,
    read_claims,
    write_claims,
)
from rankrepro.pipeline.report import collect_claims, failed_claims, scorecard_markdown, write_scorecard


def _claim(claim_id: str, verdict: str, experiment: str = "exp_a", section: str = "1.1", **kw) -> ClaimResult:
    return ClaimResult(
        claim_id,
        experiment,
        section,
        kw.pop("statement", f"statement of {claim_id}"),
        verdict,
        kw.pop("measured", {"x": 1.5}),
        kw.pop("reference", "≈ 1.5"),
        **kw,
    )


def test_decide():
    assert decide(True) == PASSED
    assert decide(False) == FAILED
    assert decide(True, shown=False) == NOT_SHOWN
    assert decide(False, shown=False) == NOT_SHOWN  # never a silent pass or a spurious failure
    assert set(VERDICTS) == {PASSED, FAILED, NOT_SHOWN, DATA_UNAVAILABLE}
    assert NOT_SHOWN == "not-shown-at-this-scale"


@pytest.mark.parametrize("verdict", ["pass", "PASSED", "ok", "", None, "not shown"])
def test_claim_result_rejects_unknown_verdicts(verdict):
    with pytest.raises(ValueError, match="unknown verdict"):
        _claim("c", verdict)


@pytest.mark.parametrize("verdict", VERDICTS)
def test_claim_result_accepts_known_verdicts(verdict):
    assert _claim("c", verdict).verdict == verdict


def test_claims_json_round_trip(tmp_path):
    path = tmp_path / "a" / "claims.json"
    results = [_claim("one", PASSED, details="fine", extra={"k": [1, 2]}), _claim("two", FAILED, measured=[0.1, 0.2])]
    write_claims(path, "unit", results)
    data = json.loads(path.read_text())
    assert data["tier"] == "unit"
    records = read_claims(path)
    assert [r["claim_id"] for r in records] == ["one", "two"]
    assert records[0]["extra"] == {"k": [1, 2]} and records[0]["details"] == "fine"
    assert records[1]["measured"] == [0.1, 0.2]
    assert set(records[0]) == {
        "claim_id",
        "experiment",
        "section",
        "statement",
        "verdict",
        "measured",
        "reference",
        "details",
        "extra",
    }


@pytest.fixture
def two_claim_files(tmp_path):
    a = write_claims(
        tmp_path / "a" / "claims.json",
        "unit",
        [
            _claim("grows", PASSED, measured={"w11": 70.1}),
            _claim("rank_one", FAILED, statement="erank | ≤ 1.01", details="σ₂/σ₁ = 0.3\nsecond line"),
        ],
    )
    b = write_claims(
        tmp_path / "b" / "claims.json",
        "unit",
        [
            _claim("tf_beats_linear", NOT_SHOWN, experiment="exp_b", section="1.5"),
            _claim("mnist", DATA_UNAVAILABLE, experiment="exp_b", section="1.5"),
            _claim("monotone", FAILED, experiment="exp_b", section="1.5"),
        ],
    )
    return a, b


def test_collect_claims_keeps_file_order(two_claim_files):
    records = collect_claims(two_claim_files)
    assert [r["claim_id"] for r in records] == ["grows", "rank_one", "tf_beats_linear", "mnist", "monotone"]


def test_scorecard_markdown(two_claim_files):
    md = scorecard_markdown("unit", collect_claims(two_claim_files))
    assert md.startswith("# Scorecard — tier `unit`")
    assert "5 claims: 1 passed, 2 failed, 1 not-shown-at-this-scale, 1 data-unavailable." in md
    assert md.count("## §1.1 `exp_a`") == 1 and md.count("## §1.5 `exp_b`") == 1
    assert md.index("exp_a") < md.index("exp_b")
    assert md.count("| claim | statement | verdict | measured | reference |") == 2
    rows = [line for line in md.splitlines() if line.startswith("| `")]
    assert len(rows) == 5
    assert "✅ passed" in rows[0] and '{"w11": 70.1}' in rows[0]
    assert "❌ failed" in rows[1] and "erank \\| ≤ 1.01" in rows[1]  # pipes escaped: the table stays intact
    assert "➖ not shown at this scale" in rows[2] and "⛔ data unavailable" in rows[3]
    assert "| | *σ₂/σ₁ = 0.3 second line* | | | |" in md  # details on their own line, newline flattened
    for line in md.splitlines():
        if line.startswith("|") and "\\|" not in line:
            assert line.count("|") == 6


def test_write_scorecard_and_failed_claims(tmp_path, two_claim_files):
    md, js = tmp_path / "out" / "scorecard.md", tmp_path / "out" / "scorecard.json"
    records = write_scorecard("unit", two_claim_files, md, js)
    assert len(records) == 5
    data = json.loads(js.read_text())
    assert data["tier"] == "unit"
    assert data["counts"] == {PASSED: 1, FAILED: 2, NOT_SHOWN: 1, DATA_UNAVAILABLE: 1}
    assert md.read_text() == scorecard_markdown("unit", records)
    assert failed_claims(js) == ["exp_a:rank_one", "exp_b:monotone"]


def test_failed_claims_empty_when_all_pass(tmp_path):
    path = write_claims(tmp_path / "c.json", "unit", [_claim("x", PASSED), _claim("y", NOT_SHOWN)])
    js = tmp_path / "s.json"
    write_scorecard("unit", [path], tmp_path / "s.md", js)
    assert failed_claims(js) == []


def test_known_failures_are_listed_with_a_reason_and_must_still_fail(tmp_path):
    from rankrepro.pipeline.report import check_failures, expected_failures

    listed = tmp_path / "expected.yaml"
    listed.write_text("smoke:\n  - claim: 'e:c1'\n    why: a discrepancy, explained\n", encoding="utf-8")
    expected = expected_failures(listed, "smoke")
    assert expected == {"e:c1": "a discrepancy, explained"} and expected_failures(listed, "default") == {}
    assert check_failures(["e:c1"], expected) == ([], [])
    assert check_failures(["e:c1", "e:c2"], expected) == (["e:c2"], [])  # a new failure: a regression
    assert check_failures([], expected) == ([], ["e:c1"])  # listed but passing now: a stale list
    (tmp_path / "bad.yaml").write_text("smoke:\n  - claim: x\n", encoding="utf-8")  # no reason given
    with pytest.raises(ResultsError, match="list of"):
        expected_failures(tmp_path / "bad.yaml", "smoke")
    (tmp_path / "latin1.yaml").write_bytes("smoke:\n  - claim: 'é'\n".encode("latin-1"))  # not UTF-8: one line too
    with pytest.raises(ResultsError, match="list of"):
        expected_failures(tmp_path / "latin1.yaml", "smoke")
