"""End-to-end test of the Snakemake DAG on a tiny tier (tests/tiny.yaml, about a minute on 2 cores).

Every Snakemake call runs from the repository root (so profiles/default applies, as for a user) with
``--directory <tmp>``: results, figures, logs and .snakemake/ go to the temporary folder, never into the repository.
Checked: every figure (PNG + PDF) and the scorecard are made, each experiment from its own settings file; a second run
has nothing to do; a changed config value reruns exactly the affected experiment, a changed run-job resource nothing;
changed library code reruns exactly the affected jobs (a plot function: its plot job only); an invalid config stops
Snakemake at once naming the key; a tier config may leave experiments out; parsing the workflow writes nothing and
imports no torch, and a dry run with another config beside a running workflow changes nothing of it; the HTML report
builds and every caption is clean reStructuredText.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rankrepro.core.io import SEAL_KEY
from rankrepro.pipeline.config import settings_hash

#: every test here runs Snakemake (minutes in all): `pytest -m slow` runs them; plain `pytest` leaves them out
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
_SPEC = importlib.util.spec_from_file_location("check_report", REPO / "scripts" / "check_report.py")
CHECK_REPORT = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(CHECK_REPORT)
SNAKEFILE = REPO / "workflow" / "Snakefile"
TINY = REPO / "tests" / "tiny.yaml"
JOB_HEADER = re.compile(r"^(?:local)?rule (\w+):$")
WILDCARD = re.compile(r"^\s+wildcards: (?:chapter=\w+, )?experiment=(\w+)")
#: the rules of run jobs: run_gpu for those that can use a GPU (chapters 3 and 5 unless device: cpu), run for the rest
RUN_RULES = ("run", "run_gpu")


def snakemake(workdir: Path, configfile: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``snakemake -s workflow/Snakefile --directory WORKDIR --configfile CONFIG --cores 2 ARGS`` from the repo root."""
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(SNAKEFILE),
        "--directory",
        str(workdir),
        "--configfile",
        str(configfile),
        "--cores",
        "2",
        *args,
    ]
    return subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=900, env={**os.environ, **(env or {})}
    )


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
REAL_DATA_EXPERIMENTS = (
    "tensor_rank_mnist",
    "is_same_class_cnn",
    "is_same_class_gnn",
    "edge_sparsification",
    "hessian_rank_vs_width",
    "hessian_rank_vs_depth",
    "hessian_rank_vs_sample_size",
    "hessian_rank_during_training",
    "hessian_rank_cnn",
)

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
    """A new experiment needs a (shrunk) section in tests/tiny.yaml so that this DAG test runs it too."""
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
    assert not (REPO / "results" / tier).exists() and not (REPO / "figures" / tier).exists()


def test_each_experiment_ran_with_its_own_settings_file(dag, tiny):
    """One settings file per experiment, named by the hash of its content, holding exactly what summary.json says the
    job ran with; no shared config file."""
    workdir, _ = dag
    tier = tiny["tier"]
    files = sorted((workdir / "results" / tier / "settings").iterdir())
    assert [path.name.split(".")[0] for path in files] == sorted(tiny["experiments"])
    for path in files:
        name = path.name.split(".")[0]
        settings = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert path.name == f"{name}.{settings_hash(settings)}.yaml"
        assert list(settings["experiments"]) == [name] and settings["tier"] == tier
        summary = json.loads(next((workdir / "results" / tier).glob(f"*/{name}/summary.json")).read_text())
        assert summary["settings"] == settings["experiments"][name] and summary["tier"] == tier, name
    assert not (workdir / "results" / tier / "config.yaml").exists()


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
    assert {job for job in jobs if job[0] == "run"} == {("run", "dmf_perturbed_problem")}, jobs
    assert {job for job in jobs if job[0] == "experiment_settings"} == {
        ("experiment_settings", "dmf_perturbed_problem")
    }
    assert ("plot", "dmf_perturbed_problem") in jobs and ("scorecard", None) in jobs
    assert "Set of input files has changed since last execution" in output(result)  # another settings file


def test_spelling_out_a_default_reruns_nothing(dag, tiny, tmp_path):
    workdir, _ = dag
    same = yaml.safe_load(yaml.safe_dump(tiny))
    same["experiments"]["dmf_2x2_norms_vs_rank"]["runs"][0]["det_sign"] = 1  # the schema's default
    same["threads"] = 1
    result = snakemake(workdir, write_config(tmp_path / "same.yaml", same), "-n")
    assert result.returncode == 0, output(result)
    assert "Nothing to be done" in output(result), output(result)


def test_global_settings_rerun_exactly_the_experiments_that_read_them(dag, tiny, tmp_path):
    """`threads` is no rerun trigger (Snakemake gives each job its thread count); `device` is read by every run job;
    the data mirror only by experiments on real data (and it does not refetch the data: files are MD5-verified)."""
    workdir, _ = dag
    changed = yaml.safe_load(yaml.safe_dump(tiny))
    changed["threads"] = 2
    result = snakemake(workdir, write_config(tmp_path / "threads.yaml", changed), "-n")
    assert "Nothing to be done" in output(result), output(result)

    changed["device"] = "auto"
    result = snakemake(workdir, write_config(tmp_path / "device.yaml", changed), "-n")
    rerun = {experiment for rule, experiment in planned_jobs(result) if rule in RUN_RULES}
    assert rerun == set(tiny["experiments"]), output(result)

    if tiny.get("data_mirror"):
        moved = yaml.safe_load(yaml.safe_dump(tiny))
        moved["data_mirror"] = str(tmp_path / "elsewhere")
        result = snakemake(workdir, write_config(tmp_path / "mirror.yaml", moved), "-n")
        jobs = planned_jobs(result)
        rerun = {experiment for rule, experiment in jobs if rule in RUN_RULES}
        assert rerun == set(REAL_DATA_EXPERIMENTS) & set(tiny["experiments"]), output(result)
        assert "data_fetch" not in {rule for rule, _ in jobs}


def edit_source(path: Path, old: str, new: str) -> None:
    """Replace the one occurrence of ``old`` in a source file by ``new``."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new), encoding="utf-8")


@pytest.fixture()
def edited_source(tmp_path) -> tuple[Path, dict]:
    """A copy of src/rankrepro, put first on PYTHONPATH, stands in for an edited checkout: (its package, env)."""
    src = tmp_path / "src"
    shutil.copytree(REPO / "src" / "rankrepro", src / "rankrepro", ignore=shutil.ignore_patterns("__pycache__"))
    return src / "rankrepro", {"PYTHONPATH": str(src)}


def test_changed_library_code_reruns_only_dependent_jobs(dag, edited_source):
    workdir, configfile = dag
    package, env = edited_source
    assert "Nothing to be done" in output(snakemake(workdir, configfile, "-n", env=env))
    with open(package / "pipeline" / "plotting.py", "a", encoding="utf-8") as handle:  # a comment: no code changed
        handle.write("\n# a comment\n")
    edit_source(  # prose, not code: a docstring rewritten and an inline comment
        package / "pipeline" / "plotting.py",
        '"""Save ``fig`` as ``<stem>.png`` and ``<stem>.pdf``',
        '"""Write ``fig`` to ``<stem>.png`` and ``<stem>.pdf``',
    )
    edit_source(package / "factorization" / "dmf.py", "def init_factors(", "def init_factors(  # a comment\n")
    assert "Nothing to be done" in output(snakemake(workdir, configfile, "-n", env=env))

    edit_source(  # an edit to the figure code
        package / "pipeline" / "plotting.py", "    png_path = Path(png_path)\n", "    png_path = Path(str(png_path))\n"
    )
    jobs = planned_jobs(snakemake(workdir, configfile, "-n", env=env))
    assert "plot" in {rule for rule, _ in jobs}, jobs  # figures re-drawn ...
    assert not set(RUN_RULES) & {rule for rule, _ in jobs}, jobs  # ... nothing retrained

    edit_source(  # an edit to the DMF engine
        package / "factorization" / "dmf.py", "    max_tries: int = 10_000,\n", "    max_tries: int = 10_001,\n"
    )
    jobs = planned_jobs(snakemake(workdir, configfile, "-n", env=env))
    retrained = {experiment for rule, experiment in jobs if rule in RUN_RULES}
    assert {"dmf_2x2_norms_vs_rank", "dmf_larger_matrices"} <= retrained, jobs
    assert "tensor_completion_vs_linear" not in retrained  # does not use the DMF engine


def test_a_changed_plot_function_reruns_only_its_plot_job(dag, edited_source):
    """Fixing one figure's caption re-draws that figure: its experiment is not retrained, its claims not re-checked."""
    workdir, configfile = dag
    package, env = edited_source
    edit_source(
        package / "experiments" / "ch1" / "dmf_perturbed_problem.py",
        'table["label"] = [f"ε = {e:g}" for e in table["epsilon"]]',
        'table["label"] = [f"epsilon = {e:g}" for e in table["epsilon"]]',
    )
    result = snakemake(workdir, configfile, "-n", env=env)
    assert planned_jobs(result) == {("plot", "dmf_perturbed_problem"), ("all", None)}, output(result)


def test_changed_resources_rerun_nothing(dag, tiny, tmp_path):
    """A run job's memory, runtime and priority are the scheduler's business: the job asks for the new values, its
    settings file (hence its results) stays the same."""
    workdir, _ = dag
    changed = yaml.safe_load(yaml.safe_dump(tiny))
    changed["experiments"]["dmf_perturbed_problem"]["resources"] = {"mem_mb": 1234, "runtime": 7, "priority": 42}
    configfile = write_config(tmp_path / "resources.yaml", changed)
    result = snakemake(workdir, configfile, "-n")
    assert "Nothing to be done" in output(result), output(result)
    result = snakemake(tmp_path / "fresh", configfile, "-n", "results/test/ch1/dmf_perturbed_problem/summary.json")
    job = output(result).split("rule run:")[1].split("\n\n")[0]
    assert "priority: 42" in job and re.search(r"mem_mb=1234\b", job) and re.search(r"runtime=7\b", job), job


def test_gpu_capable_run_jobs_and_only_they_count_one_gpu_job(tiny, tmp_path):
    """`--resources gpu_jobs=1` runs one GPU job at a time: every run_gpu job counts one, keeps its experiment's
    memory and runtime; a CPU run job counts none."""
    auto = {**tiny, "device": "auto"}  # the tiny tier says cpu: none of its run jobs would be GPU-capable
    result = snakemake(
        tmp_path / "fresh", write_config(tmp_path / "auto.yaml", auto), "-n", "--resources", "gpu_jobs=1"
    )
    assert result.returncode == 0, output(result)
    jobs = {rule: [] for rule in ("run", "run_gpu")}
    for block in re.split(r"\n(?=\[[^\]]+\]\nrule )", output(result)):
        header = re.search(r"^rule (run|run_gpu):$", block, re.MULTILINE)
        if header:
            jobs[header.group(1)].append(block)
    assert jobs["run"] and jobs["run_gpu"]
    for block in jobs["run_gpu"]:
        experiment = re.search(r"experiment=(\w+)", block).group(1)
        wanted = tiny["experiments"][experiment].get("resources", {})
        assert re.search(r"gpu_jobs=1\b", block), block
        assert "mem_mb" not in wanted or re.search(rf"mem_mb={wanted['mem_mb']}\b", block), block
    assert not any("gpu_jobs" in block for block in jobs["run"])


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
    html = report.read_text(encoding="utf-8")
    # docutils reports a caption's RST problem inside the caption itself ("System Message: WARNING/2 …")
    assert "System Message" not in html and "system-message" not in html, re.findall(r"System Message.{0,300}", html)
    # every figure, with a caption naming the tier and the substitutions, and the scorecard (scripts/check_report.py,
    # which CI runs on the smoke tier's report)
    figures = sorted(path.relative_to(workdir).as_posix() for path in (workdir / "figures").rglob("*.png"))
    scorecard = f"results/{tiny['tier']}/scorecard.md"
    assert len(figures) == len(tiny["experiments"])
    assert CHECK_REPORT.report_problems(CHECK_REPORT.report_items(html), tiny["tier"], figures, scorecard) == []


# ---------------------------------------------------------------------------------------------------------------------
# Parsing the workflow writes nothing; a second invocation never changes what a running workflow's jobs read.


def tree_state(workdir: Path) -> dict[str, tuple[bool, int, int]]:
    """(is a folder, size, mtime in ns) of everything under the workdir's results/, figures/ and logs/."""
    state = {}
    for top in ("results", "figures", "logs"):
        for path in sorted((workdir / top).rglob("*")):
            info = path.stat()
            state[str(path.relative_to(workdir))] = (path.is_dir(), info.st_size, info.st_mtime_ns)
    return state


def test_parsing_the_workflow_writes_nothing(dag, tiny, tmp_path):
    """`snakemake -n`, `snakemake --lint` and an invocation refused by the lock (as after `kill -9` of a run), all
    with another config over finished results, leave results/, figures/ and logs/ untouched."""
    workdir, _ = dag
    other = yaml.safe_load(yaml.safe_dump(tiny))
    other["experiments"]["dmf_perturbed_problem"]["seed"] = 99
    other_file = write_config(tmp_path / "other.yaml", other)
    before = tree_state(workdir)
    assert before

    result = snakemake(workdir, other_file, "-n")
    assert result.returncode == 0, output(result)
    assert ("run", "dmf_perturbed_problem") in planned_jobs(result)

    result = snakemake(workdir, other_file, "--lint")
    assert "Lints for rule experiment_settings " in output(result), output(result)  # the workflow was parsed

    lock = workdir / ".snakemake" / "locks" / "0.output.lock"  # what a killed Snakemake leaves behind
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(f"results/{tiny['tier']}/scorecard.md\n", encoding="utf-8")
    try:
        result = snakemake(workdir, other_file)
    finally:
        lock.unlink()
    assert result.returncode != 0 and "cannot be locked" in output(result), output(result)

    assert tree_state(workdir) == before


def test_parsing_the_workflow_imports_no_torch(tiny, tmp_path):
    """Every cluster job re-parses the Snakefile: experiment modules are read with ast, never imported."""
    command = [
        sys.executable,
        "-X",
        "importtime",
        "-m",
        "snakemake",
        "-s",
        str(SNAKEFILE),
        "--directory",
        str(tmp_path / "work"),
        "--configfile",
        str(write_config(tmp_path / "tiny.yaml", tiny)),
        "-n",
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    imported = {
        line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")
    }
    assert "rankrepro.pipeline.workflow" in imported
    assert not {name for name in imported if name.split(".")[0] in ("torch", "matplotlib")}


def test_a_dry_run_of_another_tier_creates_nothing(tiny, tmp_path):
    """`snakemake -n --config tier=mytier` creates no results/mytier (nor anything else)."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = snakemake(workdir, write_config(tmp_path / "tiny.yaml", tiny), "-n", "--config", "tier=mytier")
    assert result.returncode == 0, output(result)
    assert "results/mytier/" in output(result)  # the plan is for that tier
    assert sorted(path.name for path in workdir.iterdir()) in ([], [".snakemake"]), list(workdir.iterdir())


def slow_tier(tiny: dict, seed_offset: int = 0, log_every: int = 400_000) -> dict:
    """Two chapter-1 experiments whose run jobs take a few seconds each (40M gradient steps per run)."""
    config = {key: value for key, value in tiny.items() if key != "experiments"}
    config["tier"] = "race"
    config["experiments"] = {
        name: dict(
            tiny["experiments"][name],
            seed=tiny["experiments"][name]["seed"] + seed_offset,
            loss_threshold=1.0e-200,
            max_iters=40_000_000,
            log_every=log_every,
            checkpoint_every=0,
        )
        for name in ("dmf_2x2_norms_vs_rank", "dmf_perturbed_problem")
    }
    return config


def comparable(summary: dict) -> dict:
    """A summary without what differs between two identical runs: wall time, provenance and the seal over them."""
    return {key: value for key, value in summary.items() if key not in ("wall_time_s", "provenance", SEAL_KEY)}


def test_a_concurrent_dry_run_with_another_config_does_not_change_a_running_workflow(tiny, tmp_path):
    """While a real run works through its jobs one by one, `snakemake -n` with another config (other seeds, another
    logging cadence) runs beside it. Every job of the real run must still run with the real run's settings: its
    results equal those of an undisturbed run, a later dry run with the first config has nothing to do and one with
    the other config has."""
    first = write_config(tmp_path / "first.yaml", slow_tier(tiny))
    other = write_config(tmp_path / "other.yaml", slow_tier(tiny, seed_offset=100, log_every=200_000))
    experiments = list(yaml.safe_load(first.read_text())["experiments"])
    targets = [f"results/race/ch1/{name}/summary.json" for name in experiments]

    undisturbed = tmp_path / "undisturbed"
    result = snakemake(undisturbed, first, "--cores", "1", *targets)
    assert result.returncode == 0, output(result)[-6000:]

    workdir = tmp_path / "disturbed"
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(SNAKEFILE),
        "--directory",
        str(workdir),
        "--configfile",
        str(first),
        "--cores",
        "1",
        *targets,
    ]
    with open(tmp_path / "run.log", "w", encoding="utf-8") as log:
        run = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 600
            while not list(workdir.glob("logs/race/ch1/*.run.log")):  # the first run job has started
                assert run.poll() is None, (tmp_path / "run.log").read_text()
                assert time.monotonic() < deadline, "the background run did not start a job"
                time.sleep(0.2)
            dry = snakemake(workdir, other, "-n", *targets)
            assert run.poll() is None, "the background run ended before the dry run did: make its jobs longer"
            assert run.wait(timeout=900) == 0, (tmp_path / "run.log").read_text()[-6000:]
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
    assert dry.returncode == 0, output(dry)

    for name in experiments:
        got, want = (root / "results" / "race" / "ch1" / name for root in (workdir, undisturbed))
        assert (got / "metrics.csv").read_bytes() == (want / "metrics.csv").read_bytes(), name
        summary = json.loads((got / "summary.json").read_text())
        assert comparable(summary) == comparable(json.loads((want / "summary.json").read_text())), name
        settings_file = next((workdir / "results" / "race" / "settings").glob(f"{name}.*.yaml"))
        assert summary["settings"] == yaml.safe_load(settings_file.read_text())["experiments"][name]
    assert len(list((workdir / "results" / "race" / "settings").iterdir())) == len(experiments)  # none of `other`

    assert "Nothing to be done" in output(snakemake(workdir, first, "-n", *targets))
    rerun = {
        experiment for rule, experiment in planned_jobs(snakemake(workdir, other, "-n", *targets)) if rule in RUN_RULES
    }
    assert rerun == set(experiments)


# ---------------------------------------------------------------------------------------------------------------------
# Report captions: every caption renders as clean reStructuredText (any docutils warning fails).

REPORT = REPO / "workflow" / "report"


def render_rst(template: str, snakemake_object) -> str:
    """Render a caption as `snakemake --report` does (Jinja with trim_blocks and lstrip_blocks, then docutils to
    HTML), except that docutils stops at the first warning instead of printing it into the caption."""
    import io

    from docutils.core import publish_parts
    from jinja2 import Environment

    text = Environment(trim_blocks=True, lstrip_blocks=True).from_string(template).render(snakemake=snakemake_object)
    settings = {"halt_level": 2, "report_level": 1, "warning_stream": io.StringIO()}
    return publish_parts(text, writer="html", settings_overrides=settings)["body"]


def plan_substitutions(tier: str) -> dict[str, str]:
    """The `substitutions` params of the plot rules: each experiment's departures from the paper tier."""
    from rankrepro.pipeline.config import load_config
    from rankrepro.pipeline.workflow import plan_tier

    return plan_tier(
        load_config(REPO / "config" / tier), paper=load_config(REPO / "config" / "paper.yaml")
    ).substitutions


@pytest.mark.parametrize("tier", ["smoke.yaml", "config.yaml", "paper.yaml"])
def test_every_report_caption_is_clean_rst(tier):
    from types import SimpleNamespace

    from rankrepro.pipeline.config import load_config
    from rankrepro.pipeline.registry import get_experiment

    config = load_config(REPO / "config" / tier)
    figure = (REPORT / "figure.rst").read_text(encoding="utf-8")
    substitutions = plan_substitutions(tier)
    for name, section in config["experiments"].items():
        module = get_experiment(name)
        for params in [SimpleNamespace(section=module.SECTION, title=module.TITLE, substitutions=substitutions[name])]:
            caption = SimpleNamespace(
                wildcards=SimpleNamespace(experiment=name),
                config=config,
                params=params,
                input=SimpleNamespace(settings=f"results/x/settings/{name}.0123abcd.yaml"),
            )
            html = render_rst(figure, caption)
            assert "Substitutions:" in html and f'<tt class="docutils literal">{name}</tt>' in html
            settings = html.split('<pre class="literal-block">')[1].split("</pre>")[0].splitlines()
            assert [line for line in settings if line and not line.startswith(" ")] == [
                f"{key}:"
                + (
                    ""
                    if isinstance(value, dict) or (isinstance(value, list) and value and isinstance(value[0], dict))
                    else f" {value}"
                )
                for key, value in section.items()
                if key != "resources"
            ]  # one setting per line, not the run job's resources (no setting of the experiment)
    for page in ("workflow.rst", "scorecard.rst"):
        assert render_rst((REPORT / page).read_text(encoding="utf-8"), SimpleNamespace(config=config))


def test_captions_keep_rst_markup_characters_as_text():
    """A title with |, *, _ or ` (e.g. §1.3's "|w11|") is text, not a substitution, emphasis or reference."""
    from types import SimpleNamespace

    title = "Perturbed problem: |w11| grows *fast*, as_in `x` and \\ here"
    caption = SimpleNamespace(
        wildcards=SimpleNamespace(experiment="dmf_perturbed_problem"),
        config={"tier": "t", "experiments": {"dmf_perturbed_problem": {"seed": 1, "epsilons": [0.0, 0.5]}}},
        params=SimpleNamespace(section="1.3", title=title, substitutions="none_ (a|b)"),
        input=SimpleNamespace(settings="results/t/settings/dmf_perturbed_problem.0123456789abcdef.yaml"),
    )
    html = render_rst((REPORT / "figure.rst").read_text(encoding="utf-8"), caption)
    assert f"§1.3 — {title}" in html and "Substitutions: none_ (a|b) (any other" in html
    assert "seed: 1\nepsilons: [0.0, 0.5]\n</pre>" in html
