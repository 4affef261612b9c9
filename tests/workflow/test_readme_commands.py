"""Every shell command the README shows works as written.

The commands are parsed from README.md's fenced ``bash``/``sh`` blocks (a ``\\`` continues a line, ``&&`` joins
commands, ``#`` starts a comment) and each runs as :func:`how_to_run` says: read-only checks as written; ``snakemake``
as a dry run (``--dry-run`` appended: Snakemake parses the command line and builds the DAG of exactly the targets it
names, so a target swallowed by ``--configfile`` fails here); ``rankrepro`` commands for real in a scratch folder
that sees the repository's config/ (results go there, never into the checkout); installs as pip's dry run. A command
no rule covers fails the test: a new README command needs a rule here. Commands that cannot run here (no conda, the
SLURM plugin not installed, CI itself) are skipped with the reason.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

#: each README command runs a tool (a dry run at most for the expensive ones): `pytest -m slow` runs them
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
FENCE = re.compile(r"^```(\w*)\s*$")
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}


def shell_blocks(markdown: str) -> Iterator[list[str]]:
    """The lines of every fenced code block in a shell language (```bash, ```sh, …), block by block."""
    block: list[str] | None = None
    for line in markdown.splitlines():
        fence = FENCE.match(line.strip())
        if fence and block is None:
            block = [] if fence.group(1) in SHELL_LANGUAGES else None
            if block is None:  # a block in another language: skip to its closing fence
                block = ["\0skip"]
        elif line.strip() == "```" and block is not None:
            if block[:1] != ["\0skip"]:
                yield block
            block = None
        elif block is not None:
            block.append(line)


def commands(lines: list[str]) -> list[list[str]]:
    """The commands of one shell block as argument lists: ``\\`` continuations joined, comments dropped, ``&&``-joined
    commands split."""
    joined: list[str] = []
    pending = ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    result: list[list[str]] = []
    for line in joined:
        words = shlex.split(line, comments=True)
        command: list[str] = []
        for word in words:
            if word == "&&":
                result.append(command)
                command = []
            else:
                command.append(word)
        if command:
            result.append(command)
    return result


def readme_commands(path: Path = README) -> list[list[str]]:
    """Every command of every shell block of ``path``, in order."""
    return [command for block in shell_blocks(path.read_text(encoding="utf-8")) for command in commands(block)]


@dataclass(frozen=True)
class Plan:
    """How the test runs one README command: ``argv`` in ``where`` (``repo`` or ``scratch``), or skipped."""

    argv: list[str]
    where: str = "repo"
    skip: str | None = None


def has_module(name: str) -> bool:
    """Whether ``name`` imports in the interpreter running the tests."""
    done = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True)
    return done.returncode == 0


def how_to_run(argv: list[str]) -> Plan | None:
    """The :class:`Plan` of one README command; None when no rule covers it (the test then fails)."""
    tool, args = argv[0], argv[1:]
    if tool == "snakemake":
        if "--workflow-profile" in args:
            profile = args[args.index("--workflow-profile") + 1]
            if profile.startswith("profiles/slurm") and not has_module("snakemake_executor_plugin_slurm"):
                return Plan(argv, skip="the SLURM executor plugin is not installed (pip install -e '.[slurm]')")
        if "--report" in args:  # builds the report from the outputs of a finished run: tests/workflow checks it
            return Plan(argv, skip="--report needs a finished run of its tier: .ci/run builds the smoke tier's")
        return Plan([sys.executable, "-m", "snakemake", *args, "--dry-run"])
    if tool == "rankrepro":
        return Plan([sys.executable, "-m", "rankrepro.cli", *args], where="scratch")
    if tool == "pytest":
        return Plan([sys.executable, "-m", "pytest", *args, "--collect-only", "-q", "-p", "no:cacheprovider"])
    if tool in ("ruff", "snakefmt"):  # the linters of the environment running the tests
        return Plan([str(Path(sys.executable).parent / tool), *args])
    if tool == "python" and args[:1] == ["scripts/check_snakemake_lint.py"]:
        return Plan([sys.executable, *args])
    if tool == "python" and args[:1] in (["scripts/render_results_docs.py"], ["scripts/render_config_docs.py"]):
        return Plan([sys.executable, *args, "--check"])  # they rewrite docs: check that they are up to date
    if tool == "pip" and args[:1] == ["install"]:
        return Plan([sys.executable, "-m", "pip", *args, "--dry-run", "--quiet"])
    if tool == "conda":
        if shutil.which("conda") is None:
            return Plan(argv, skip="conda is not installed")
        return Plan([*argv, "--dry-run"])
    if tool == "bash" and args == [".ci/run"]:
        return Plan(argv, skip="CI itself (it runs this test)")
    return None


COMMANDS = readme_commands()


def test_the_readme_shows_commands():
    assert len(COMMANDS) >= 10, COMMANDS
    assert any(command[0] == "snakemake" for command in COMMANDS)


def test_parsing_keeps_targets_and_drops_comments():
    block = [
        "snakemake --cores all --configfile=config/smoke.yaml figures/x.png   # a comment",
        "ruff check src tests \\",
        "    scripts && ruff format --check src",
    ]
    assert commands(block) == [
        ["snakemake", "--cores", "all", "--configfile=config/smoke.yaml", "figures/x.png"],
        ["ruff", "check", "src", "tests", "scripts"],
        ["ruff", "format", "--check", "src"],
    ]
    assert list(shell_blocks("text\n```python\nx = 1\n```\n```bash\nls  # l\n```\n")) == [["ls  # l"]]


def test_a_swallowed_target_fails_the_dry_run(tmp_path):
    """The planted mistake of issue 17: a target after ``--configfile FILE`` is read as a second config file."""
    plan = how_to_run(shlex.split("snakemake --cores 1 --configfile config/smoke.yaml figures/smoke/ch1/x.png"))
    done = subprocess.run(plan.argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "figures/smoke/ch1/x.png" in done.stdout + done.stderr


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """A folder where the README's `rankrepro` commands run: config/ of the repository, nothing else."""
    folder = tmp_path_factory.mktemp("readme")
    (folder / "config").symlink_to(REPO / "config")
    return folder


@pytest.mark.parametrize("argv", COMMANDS, ids=[shlex.join(command)[:80] for command in COMMANDS])
def test_readme_command_works(argv, scratch):
    plan = how_to_run(argv)
    assert plan is not None, f"no rule in {Path(__file__).name} says how to test the README command {shlex.join(argv)}"
    if plan.skip:
        pytest.skip(plan.skip)
    cwd = REPO if plan.where == "repo" else scratch
    path = [str(REPO / "src"), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": os.pathsep.join(path)}
    done = subprocess.run(plan.argv, cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, (
        f"{shlex.join(argv)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
