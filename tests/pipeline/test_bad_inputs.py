"""Every bad input of the catalogue (tests/bad_inputs.py) gives exit code 2 and one line naming what is wrong, and
docs/bad-inputs.md shows what each case says today (regenerate it with ``python tests/bad_inputs.py``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bad_inputs import CASES, DOC, BadInput, page_header, run_case, table_row


def _precondition(case: BadInput) -> None:
    """The unwritable-folder case needs a folder this process really cannot create (root may write almost anywhere)."""
    if case.case_id == "output-unwritable" and os.geteuid() == 0:
        probe = Path("/sys/rankrepro-unwritable")
        try:
            probe.mkdir()
        except OSError:
            return
        probe.rmdir()
        pytest.skip("this machine lets root create folders under /sys: no unwritable folder to try")


@pytest.mark.parametrize("case", CASES, ids=[c.case_id for c in CASES])
def test_bad_input_gives_one_line_and_exit_2(case: BadInput, tmp_path: Path):
    _precondition(case)
    outcome = run_case(case, tmp_path)
    assert outcome.exit_code == 2, outcome
    assert len(outcome.stderr_lines) == 1, outcome.stderr_lines
    line = outcome.stderr_lines[0]
    assert line.startswith("rankrepro: error:") and "Traceback" not in line, line
    for fragment in case.expect:
        assert fragment in line, (fragment, line)
    row = table_row(case, outcome, tmp_path)
    assert row in DOC.read_text(encoding="utf-8").splitlines(), (
        f"docs/bad-inputs.md does not show this case as it behaves now ({row}): "
        "regenerate it with `python tests/bad_inputs.py > docs/bad-inputs.md`"
    )


def test_the_catalogue_is_large_and_its_ids_unique():
    assert len(CASES) >= 40
    assert len({c.case_id for c in CASES}) == len(CASES)


def test_the_page_lists_exactly_the_catalogue_in_its_order():
    text = DOC.read_text(encoding="utf-8")
    assert text.startswith(page_header())
    listed = [line.split("`")[1] for line in text.splitlines() if line.startswith("| `")]
    assert listed == [c.case_id for c in CASES]
