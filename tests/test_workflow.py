"""End-to-end test of the Snakemake DAG on a tiny tier (tests/data/tiny.yaml, about a minute on 2 cores).

Every Snakemake call runs from the repository root (so profiles/default applies, as for a user) with
``--directory <tmp>``: results, figures, logs and .snakemake/ go to the temporary folder, never into the repository.
Checked: every figure (PNG + PDF) and the scorecard are made; a second run has nothing to do; a changed config value
reruns exactly the affected experiment; changed library code reruns exactly the affected jobs; an invalid config
stops Snakemake at once naming the key; a tier config may leave experiments out; the HTML report builds.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"
TINY = REPO / "tests" / "data" / "tiny.yaml"
JOB_HEADER = re.compile(r"^(?:local)?rule (\w+):$")
WILDCARD = re.compile(r"^\s+wildcards: experiment=(\w+)")


def snakemake(workdir: Path, configfile: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``snakemake -s workflow/Snakefile --directory WORKDIR --configfile CONFIG --cores 2 ARGS`` from the repo root."""
    command = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir),
               "--configfile", str(configfile), "--cores", "2", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900,
                          env={**os.environ, **(env or {})})


def output(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


def planned_jobs(result: subprocess.CompletedProcess) -> set[tuple[str, str | None]]:
    """(rule, experiment wildcard) of every job a dry-run (-n) would run."""
    jobs: set[tuple[str, str | None]] = set()
    rule = None
    for line in output(result).splitlines():
        header = JOB_HEADER.match(line)
        if header:
            rule = header.group(1)
            jobs.add((rule, None))
            continue
        wildcard = WILDCARD.match(line)
        if wildcard and rule is not None:
            jobs.discard((rule, None))
            jobs.add((rule, wildcard.group(1)))
            rule = None
    return jobs


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


#: experiments of the tiny tier that read real datasets (left out when there is no mirror)
REAL_DATA_EXPERIMENTS = ("tensor_rank_mnist", "is_same_class_cnn", "is_same_class_gnn", "edge_sparsification",
                         "hessian_rank_vs_width", "hessian_rank_vs_depth", "hessian_rank_vs_sample_size")

#: the offline dataset mirror beside the checkout (CI and development); experiments on real data read it
MIRROR = REPO.parent / "shared" / "datasets"


@pytest.fixture(scope="module")
def tiny() -> dict:
    """The tiny tier, reading real datasets from the mirror (experiments on real data are left out without it)."""
    config = yaml.safe_load(TINY.read_text(encoding="utf-8"))
    if MIRROR.is_dir():
        config["data_mirror"] = str(MIRROR)
    else:
        for name in REAL_DATA_EXPERIMENTS:
            config["experiments"].pop(name, None)
    return config


def test_tiny_tier_covers_every_smoke_experiment(tiny):
    """A new experiment needs a (shrunk) section in tests/data/tiny.yaml so that this DAG test runs it too."""
    smoke = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text(encoding="utf-8"))
    assert set(smoke["experiments"]) <= set(tiny["experiments"])


@pytest.fixture(scope="module")
def dag(tmp_path_factory, tiny):
    """The tiny tier's DAG run once to completion in a temporary working directory."""
    workdir = tmp_path_factory.mktemp("dag")
    configfile = write_config(workdir / "tiny.yaml", tiny)
    result = snakemake(workdir, configfile)
    assert result.returncode == 0, output(result)[-6000:]
    return workdir, configfile


def test_every_figure_and_the_scorecard_are_made(dag, tiny):
    workdir, _ = dag
    tier = tiny["tier"]
    for name in tiny["experiments"]:
        figures = list((workdir / "figures" / tier).glob(f"*/{name}.png"))
        assert len(figures) == 1, f"no figure for {name}"
        assert figures[0].stat().st_size > 0
        assert figures[0].with_suffix(".pdf").stat().st_size > 0
        assert list((workdir / "logs" / tier).glob(f"*/{name}.run.log"))
    scorecard = yaml.safe_load((workdir / "results" / tier / "scorecard.json").read_text())  # JSON is YAML
    assert scorecard["tier"] == tier
    assert {claim["experiment"] for claim in scorecard["claims"]} == set(tiny["experiments"])
    assert (workdir / "results" / tier / "scorecard.md").read_text().startswith(f"# Scorecard — tier `{tier}`")
    resolved = yaml.safe_load((workdir / "results" / tier / "config.yaml").read_text())
    assert resolved["experiments"].keys() == tiny["experiments"].keys()
    assert not (REPO / "results" / tier).exists() and not (REPO / "figures" / tier).exists()


def test_second_run_has_nothing_to_do(dag):
    workdir, configfile = dag
    result = snakemake(workdir, configfile, "-n")
    assert result.returncode == 0, output(result)
    assert "Nothing to be done" in output(result), output(result)


def test_changed_config_value_reruns_only_that_experiment(dag, tiny, tmp_path):
    workdir, _ = dag
    changed = yaml.safe_load(yaml.safe_dump(tiny))
    changed["experiments"]["dmf_perturbed_problem"]["lr"] = 5.0e-3
    result = snakemake(workdir, write_config(tmp_path / "changed.yaml", changed), "-n")
    assert result.returncode == 0, output(result)
    jobs = planned_jobs(result)
    assert {job for job in jobs if job[0].endswith("_run")} == {("ch1_run", "dmf_perturbed_problem")}, jobs
    assert ("ch1_plot", "dmf_perturbed_problem") in jobs and ("scorecard", None) in jobs
    assert "Params have changed since last execution" in output(result)


def test_spelling_out_a_default_reruns_nothing(dag, tiny, tmp_path):
    workdir, _ = dag
    same = yaml.safe_load(yaml.safe_dump(tiny))
    same["experiments"]["dmf_2x2_norms_vs_rank"]["runs"][0]["det_sign"] = 1  # the schema's default
    same["threads"] = 1
    result = snakemake(workdir, write_config(tmp_path / "same.yaml", same), "-n")
    assert result.returncode == 0, output(result)
    assert "Nothing to be done" in output(result), output(result)


def test_changed_library_code_reruns_only_dependent_jobs(dag, tmp_path):
    """A copy of src/rankrepro put first on PYTHONPATH stands in for an edited checkout."""
    workdir, configfile = dag
    src = tmp_path / "src"
    shutil.copytree(REPO / "src" / "rankrepro", src / "rankrepro", ignore=shutil.ignore_patterns("__pycache__"))
    env = {"PYTHONPATH": str(src)}
    assert "Nothing to be done" in output(snakemake(workdir, configfile, "-n", env=env))

    with open(src / "rankrepro" / "plotting.py", "a", encoding="utf-8") as handle:
        handle.write("\n# an edit to the figure code\n")
    jobs = planned_jobs(snakemake(workdir, configfile, "-n", env=env))
    rules = {rule for rule, _ in jobs}
    assert "ch1_plot" in rules and "ch1_run" not in rules, jobs  # figures re-drawn, nothing retrained

    with open(src / "rankrepro" / "dmf.py", "a", encoding="utf-8") as handle:
        handle.write("\n# an edit to the DMF engine\n")
    jobs = planned_jobs(snakemake(workdir, configfile, "-n", env=env))
    retrained = {experiment for rule, experiment in jobs if rule == "ch1_run"}
    assert {"dmf_2x2_norms_vs_rank", "dmf_larger_matrices"} <= retrained, jobs
    assert "tensor_completion_vs_linear" not in retrained  # does not use the DMF engine


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda c: c["experiments"]["dmf_init_scale_sweep"].update(lr=-0.01), "experiments.dmf_init_scale_sweep.lr"),
        (lambda c: c["experiments"]["dmf_larger_matrices"].update(learning_rate=0.1), "learning_rate"),
        (lambda c: c.update(threads=0), "threads"),
    ],
    ids=["negative-lr", "unknown-key", "zero-threads"],
)
def test_invalid_config_stops_at_once_naming_the_key(tiny, tmp_path, edit, key):
    bad = yaml.safe_load(yaml.safe_dump(tiny))
    edit(bad)
    result = snakemake(tmp_path / "work", write_config(tmp_path / "bad.yaml", bad), "-n")
    assert result.returncode != 0
    assert "invalid configuration" in output(result) and key in output(result), output(result)
    assert "Traceback" not in output(result)
    assert not (tmp_path / "work" / "results").exists()


def test_a_tier_may_leave_experiments_out(tiny, tmp_path):
    """A --configfile replaces config/config.yaml instead of being merged into it."""
    only = yaml.safe_load(yaml.safe_dump(tiny))
    only["experiments"] = {"dmf_larger_matrices": only["experiments"]["dmf_larger_matrices"]}
    result = snakemake(tmp_path / "work", write_config(tmp_path / "only.yaml", only), "-n")
    assert result.returncode == 0, output(result)
    experiments = {experiment for _, experiment in planned_jobs(result) if experiment}
    assert experiments == {"dmf_larger_matrices"}


def test_html_report(dag, tiny):
    workdir, configfile = dag
    report = workdir / "results" / tiny["tier"] / "report.html"
    result = snakemake(workdir, configfile, "--report", str(report))
    assert result.returncode == 0, output(result)
    assert report.stat().st_size > 10_000
