"""The software environments agree, and every rule names one.

pyproject.toml's ``dependencies`` are the one list of packages and version constraints: workflow/envs/rankrepro.yaml
(the rules' conda environment, ``snakemake --sdm conda``) and environment.yml (``conda env create``) list exactly the
same, on the same Python; torch stays pinned exactly. constraints.txt pins every installed package at one exact
version inside those constraints, and every install route the project documents uses it. Every rule with a command
names the conda environment (what ``snakemake --lint`` asks for).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
RULE_ENV = ROOT / "workflow" / "envs" / "rankrepro.yaml"
CONDA_ENV = ROOT / "environment.yml"
LOCK = ROOT / "constraints.txt"
#: environment.yml installs the checkout itself last (editable, with the dev extras), within the lock
CHECKOUT = ["-c constraints.txt", "-e .[dev]"]


def project() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def conda_parts(path: Path) -> tuple[list[str], list[str]]:
    """(conda packages, pip requirements) of a conda environment file."""
    conda: list[str] = []
    pip: list[str] = []
    for entry in yaml.safe_load(path.read_text(encoding="utf-8"))["dependencies"]:
        if isinstance(entry, dict):
            pip.extend(entry["pip"])
        else:
            conda.append(entry)
    return conda, pip


def test_the_rules_environment_lists_exactly_the_project_dependencies():
    conda, pip = conda_parts(RULE_ENV)
    assert pip == project()["dependencies"]
    assert "pip" in conda


def test_environment_yml_lists_the_same_and_installs_the_checkout():
    conda, pip = conda_parts(CONDA_ENV)
    assert pip == [*project()["dependencies"], *CHECKOUT]
    assert conda == conda_parts(RULE_ENV)[0]


@pytest.mark.parametrize("path", [RULE_ENV, CONDA_ENV], ids=lambda path: path.name)
def test_python_and_torch_are_those_of_the_project(path):
    conda, pip = conda_parts(path)
    python = [entry for entry in conda if entry.startswith("python")]
    assert len(python) == 1, python
    minimum = re.fullmatch(r">=(\d+)\.(\d+)", project()["requires-python"])
    version = re.fullmatch(r"python=(\d+)\.(\d+)", python[0])
    assert minimum and version and tuple(map(int, version.groups())) >= tuple(map(int, minimum.groups()))
    assert "torch==2.13.0" in pip


def test_a_changed_pin_is_caught(tmp_path):
    """The comparison can fail: an environment that pins torch differently is not the project's."""
    changed = tmp_path / "env.yaml"
    changed.write_text(RULE_ENV.read_text(encoding="utf-8").replace("torch==2.13.0", "torch==2.12.0"))
    assert conda_parts(changed)[1] != project()["dependencies"]


def lock_pins(text: str) -> dict[str, str]:
    """{normalised name: version} of a constraints file's ``name==version`` lines (comments and blanks skipped)."""
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"not an exact pin: {line!r}"
            pins[canonicalize_name(name)] = version
    return pins


def pyproject_requirements() -> list[Requirement]:
    """Every requirement of pyproject.toml: the dependencies and the extras CI installs (dev, slurm)."""
    extras = project()["optional-dependencies"]
    return [Requirement(r) for r in (*project()["dependencies"], *extras["dev"], *extras["slurm"])]


def test_the_lock_pins_every_installed_dependency_within_pyproject_s_constraints():
    pins = lock_pins(LOCK.read_text(encoding="utf-8"))
    for requirement in pyproject_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (requirement, pins[name])
    assert pins["torch"] == "2.13.0"  # no local label: a CUDA build of 2.13.0 satisfies it too
    assert "rankrepro" not in pins


def test_a_lock_outside_pyproject_s_constraints_is_caught():
    """The check can fail: a lock pinning torch elsewhere than pyproject's exact pin is refused."""
    pins = lock_pins(LOCK.read_text(encoding="utf-8").replace("torch==2.13.0", "torch==2.12.0"))
    torch = next(r for r in pyproject_requirements() if r.name == "torch")
    assert not torch.specifier.contains(pins["torch"])


def test_every_documented_install_uses_the_lock():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert 'pip install -e ".[dev]" -c constraints.txt' in readme
    installs = re.findall(r"pip install --quiet -e [^\n]*", ci)
    assert len(installs) == 2 and all("-c constraints.txt" in line for line in installs)
    assert "-c constraints.txt" in (ROOT / "docs" / "cluster.md").read_text(encoding="utf-8")


RULE = re.compile(r"^(?:use )?rule (\w+)")
COMMAND = re.compile(r"^    (?:shell|script|run|notebook|wrapper):", re.MULTILINE)


def rule_blocks(text: str) -> dict[str, str]:
    """Source of every rule of a Snakefile, by name: its indented lines after the header."""
    blocks: dict[str, str] = {}
    name = None
    for line in text.splitlines():
        header = RULE.match(line)
        if header:
            name = header.group(1)
            blocks[name] = ""
        elif name is not None and (not line.strip() or line.startswith(" ")):
            blocks[name] += line + "\n"
        else:
            name = None
    return blocks


def rules_without_env(text: str) -> list[str]:
    """Rules of a Snakefile that run a command but name no conda environment (``conda: CONDA_ENV``)."""
    return [
        name
        for name, body in rule_blocks(text).items()
        if COMMAND.search(body) and "    conda:\n        CONDA_ENV\n" not in body
    ]


def test_every_rule_with_a_command_names_the_conda_environment():
    files = [ROOT / "workflow" / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]
    text = "\n".join(path.read_text(encoding="utf-8") for path in files)
    assert {"run", "plot", "claims", "scorecard", "data_fetch", "experiment_settings"} <= set(rule_blocks(text))
    assert rules_without_env(text) == []
    planted = (
        "rule a:\n    output:\n        'x'\n    shell:\n        'touch x'\n\n\nrule all:\n    input:\n        'x'\n"
    )
    assert rules_without_env(planted) == ["a"]
    assert 'CONDA_ENV = "../envs/rankrepro.yaml"' in (ROOT / "workflow" / "rules" / "common.smk").read_text()
