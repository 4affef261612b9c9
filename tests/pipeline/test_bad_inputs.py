"""Every bad input of the catalogue (tests/bad_inputs.py) gives exit code 2 and one line naming what is wrong."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bad_inputs import CASES, BadInput, run_case


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


def test_the_catalogue_is_large_and_its_ids_unique():
    assert len(CASES) >= 40
    assert len({c.case_id for c in CASES}) == len(CASES)
