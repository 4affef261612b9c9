"""Catalogue of bad inputs a user can give rankrepro, and what each must produce: exit code 2 and ONE line on stderr
(``rankrepro: error: …``) naming what is wrong — never a traceback, never a silent wrong result. (Log records a
job wrote before it stopped, e.g. ``… INFO rankrepro: running …``, may precede that line.)

``tests/pipeline/test_bad_inputs.py`` runs every case; this file, run as a script, runs them too and prints the
Markdown table of inputs and messages that ``docs/bad-inputs.md`` holds (so the table is generated, never typed):

    python tests/bad_inputs.py > docs/bad-inputs.md

Each case prepares its files in a fresh folder and returns the command line; it runs in-process through
:func:`rankrepro.cli.main` (the same code path as the ``rankrepro`` command).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "config" / "smoke.yaml"
EXPERIMENT = "dmf_perturbed_problem"  # the experiment most cases use (chapter 1: no data needed)


@dataclass(frozen=True)
class BadInput:
    """One bad input: an id, what is bad in words, how to prepare it (files in a folder → argv), and fragments the
    one-line message must contain."""

    case_id: str
    what: str
    prepare: Callable[[Path], list[str]]
    expect: tuple[str, ...] = ()


#: a log record (progress lines a job writes to stderr before it stops): not part of the error message
LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING) ")


@dataclass(frozen=True)
class Outcome:
    """What the command did: exit code and the lines it wrote to stderr that are not log records."""

    exit_code: int
    stderr_lines: tuple[str, ...]


def run_case(case: BadInput, folder: Path) -> Outcome:
    """Prepare ``case`` in ``folder`` and run its command in-process; the exit code and stderr lines."""
    from rankrepro import cli

    argv = case.prepare(folder)
    err = io.StringIO()
    root = logging.getLogger()
    handlers = list(root.handlers)
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # argparse's usage errors
            code = int(exc.code or 0)
        finally:
            for handler in root.handlers[len(handlers) :]:
                handler.close()
            root.handlers[:] = handlers
    lines = (line for line in err.getvalue().splitlines() if line.strip() and not LOG_RECORD.match(line))
    return Outcome(code, tuple(lines))


# ----------------------------------------------------------------------------------------------------- helpers
def smoke_config() -> dict[str, Any]:
    """The smoke tier's config as a dict (a fresh copy)."""
    return yaml.safe_load(SMOKE.read_text(encoding="utf-8"))


def write_config(folder: Path, config: Any, name: str = "bad.yaml") -> Path:
    """``config`` dumped as YAML into ``folder/name``."""
    path = folder / name
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


def run_argv(config_path: Path, folder: Path, experiment: str = EXPERIMENT, *extra: str) -> list[str]:
    """``rankrepro run EXPERIMENT --config CONFIG --out folder/out --no-progress``."""
    return ["run", experiment, "--config", str(config_path), "--out", str(folder / "out"), "--no-progress", *extra]


def with_value(keys: tuple[Any, ...], value: Any, experiment: str = EXPERIMENT) -> Callable[[Path], list[str]]:
    """A case whose smoke config has ``value`` at ``experiments.<experiment>.<keys…>`` (or at the top level when
    ``keys`` starts with ``None``)."""

    def prepare(folder: Path) -> list[str]:
        config = smoke_config()
        node = config if keys[0] is None else config["experiments"][experiment]
        path = keys[1:] if keys[0] is None else keys
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return run_argv(write_config(folder, config), folder, experiment)

    return prepare


def without(key: str, experiment: str = EXPERIMENT) -> Callable[[Path], list[str]]:
    """A case whose smoke config lacks ``experiments.<experiment>.<key>``."""

    def prepare(folder: Path) -> list[str]:
        config = smoke_config()
        del config["experiments"][experiment][key]
        return run_argv(write_config(folder, config), folder, experiment)

    return prepare


def config_text(text: str | bytes) -> Callable[[Path], list[str]]:
    """A case whose config file holds exactly ``text``."""

    def prepare(folder: Path) -> list[str]:
        path = folder / "bad.yaml"
        path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
        return run_argv(path, folder)

    return prepare


def cli(*args: str) -> Callable[[Path], list[str]]:
    """A case that is just a command line (``{smoke}`` is replaced by the smoke config's path)."""
    return lambda folder: [a.replace("{smoke}", str(SMOKE)) for a in args]


def valid_results(folder: Path) -> Path:
    """A complete, verified result pair of :data:`EXPERIMENT` in ``folder/results`` (written as a run writes it)."""
    from rankrepro.experiments.base import store_results

    results = folder / "results"
    results.mkdir()
    metrics = pd.DataFrame(
        {"run": [0, 0, 1], "iteration": [0, 500, 0], "loss": [1.0, 0.5, 1.0], "final": [False, True, True]}
    )
    store_results(results, metrics, {"tier": "smoke", "settings": {}, "runs": []})
    return results


def damaged_results(damage: Callable[[Path], None], command: str = "claims") -> Callable[[Path], list[str]]:
    """A case whose results folder is :func:`valid_results` damaged by ``damage(results)``, read by ``command``."""

    def prepare(folder: Path) -> list[str]:
        results = valid_results(folder)
        damage(results)
        target = ["--out", str(folder / "fig.png")] if command == "plot" else []
        return [command, EXPERIMENT, "--config", str(SMOKE), "--results", str(results), *target]

    return prepare


def flip_first_digit(path: Path) -> None:
    """Replace the first digit 5 of a file by 6 (a one-character change of a number)."""
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("5", "6", 1), encoding="utf-8")


def unwritable_output(folder: Path) -> list[str]:
    """``run`` into a folder that cannot be created: read-only for a normal user; under /sys for root (which may
    write anywhere else)."""
    if os.geteuid() != 0:
        locked = folder / "read-only"
        locked.mkdir(mode=0o555)
        out = locked / "out"
    else:
        out = Path("/sys/rankrepro-unwritable/out")
    return ["run", EXPERIMENT, "--config", str(SMOKE), "--out", str(out), "--no-progress"]


def output_under_a_file(folder: Path) -> list[str]:
    """``run`` into a folder whose parent is a regular file."""
    (folder / "a-file").write_text("not a folder\n")
    return ["run", EXPERIMENT, "--config", str(SMOKE), "--out", str(folder / "a-file" / "out"), "--no-progress"]


def edited_settings_file(folder: Path) -> list[str]:
    """A workflow settings file edited after the workflow wrote it."""
    from rankrepro.pipeline.config import job_settings, load_config, settings_path, settings_text

    settings = job_settings(load_config(SMOKE), EXPERIMENT, reads_data=False)
    path = Path(settings_path(str(folder), EXPERIMENT, settings))
    path.parent.mkdir()
    path.write_text(settings_text(path.name, settings).replace("seed: ", "seed: 1"), encoding="utf-8")
    return run_argv(path, folder)


def scorecard_of(text: str) -> Callable[[Path], list[str]]:
    """``check-scorecard`` of a file holding ``text``."""

    def prepare(folder: Path) -> list[str]:
        (folder / "scorecard.json").write_text(text, encoding="utf-8")
        return ["check-scorecard", str(folder / "scorecard.json")]

    return prepare


def scorecard_from_claims(text: str) -> Callable[[Path], list[str]]:
    """``scorecard`` gathering one claims file holding ``text``."""

    def prepare(folder: Path) -> list[str]:
        (folder / "claims.json").write_text(text, encoding="utf-8")
        return [
            "scorecard",
            "--tier",
            "smoke",
            "--out-md",
            str(folder / "card.md"),
            "--out-json",
            str(folder / "card.json"),
            str(folder / "claims.json"),
        ]

    return prepare


def missing_section(folder: Path) -> list[str]:
    """A tier config without the experiment's section."""
    config = smoke_config()
    del config["experiments"][EXPERIMENT]
    return run_argv(write_config(folder, config), folder)


LR = "experiments.dmf_perturbed_problem.lr"
CASES: tuple[BadInput, ...] = (
    # --- values in a config file
    BadInput("lr-negative", "a negative learning rate", with_value(("lr",), -0.1), (LR,)),
    BadInput("lr-zero", "a zero learning rate", with_value(("lr",), 0.0), (LR,)),
    BadInput("lr-nan", "a learning rate of `.nan`", with_value(("lr",), float("nan")), (LR, "finite")),
    BadInput("lr-inf", "a learning rate of `.inf`", with_value(("lr",), float("inf")), (LR, "finite")),
    BadInput("lr-minus-inf", "a learning rate of `-.inf`", with_value(("lr",), float("-inf")), (LR, "finite")),
    BadInput("lr-string", "a learning rate given as text", with_value(("lr",), "fast"), (LR,)),
    BadInput("threshold-zero", "a stop threshold of 0", with_value(("loss_threshold",), 0.0), ("loss_threshold",)),
    BadInput(
        "epsilons-repeated",
        "the same ε twice (the same run twice)",
        with_value(("epsilons",), [0.05, 0.05]),
        ("epsilons", "non-unique"),
    ),
    BadInput(
        "threshold-nan",
        "a stop threshold of `.nan`",
        with_value(("loss_threshold",), float("nan")),
        ("loss_threshold", "finite"),
    ),
    BadInput("max-iters-zero", "an iteration budget of 0", with_value(("max_iters",), 0), ("max_iters",)),
    BadInput("max-iters-float", "an iteration budget of 1.5", with_value(("max_iters",), 1.5), ("max_iters",)),
    BadInput("max-iters-text", "an iteration budget given as text", with_value(("max_iters",), "100"), ("max_iters",)),
    BadInput("log-every-zero", "logging every 0 iterations", with_value(("log_every",), 0), ("log_every",)),
    BadInput(
        "checkpoint-negative",
        "a negative checkpoint interval",
        with_value(("checkpoint_every",), -1),
        ("checkpoint_every",),
    ),
    BadInput("seed-negative", "a negative seed", with_value(("seed",), -1), ("seed",)),
    BadInput("depth-one", "a depth-1 factorization", with_value(("depth",), 1), ("depth",)),
    BadInput("depth-nine", "a depth beyond the supported 8", with_value(("depth",), 9), ("depth",)),
    BadInput("init-zero", "an initialization scale of 0", with_value(("init_scale",), 0.0), ("init_scale",)),
    BadInput("epsilons-empty", "an empty list of ε", with_value(("epsilons",), []), ("epsilons",)),
    BadInput("epsilon-negative", "a negative ε", with_value(("epsilons",), [-0.1]), ("epsilons",)),
    BadInput(
        "balanced-text", "`balanced: yes` written as a quoted string", with_value(("balanced",), "yes"), ("balanced",)
    ),
    BadInput(
        "unknown-key",
        "a misspelt key in an experiment's section",
        with_value(("learning_rate",), 0.1),
        ("learning_rate",),
    ),
    BadInput("missing-key", "a required key left out", without("lr"), ("lr",)),
    BadInput(
        "run-det-sign",
        "a §1.1 run with det_sign 0",
        with_value(("runs", 0, "det_sign"), 0, "dmf_2x2_norms_vs_rank"),
        ("det_sign",),
    ),
    BadInput(
        "run-unknown-key",
        "a misspelt key inside a §1.1 run",
        with_value(("runs", 0, "detsign"), -1, "dmf_2x2_norms_vs_rank"),
        ("detsign",),
    ),
    BadInput(
        "shape-too-small",
        "a §1.4 matrix shape with a side of 1",
        with_value(("shapes",), [[1, 5]], "dmf_larger_matrices"),
        ("shapes",),
    ),
    BadInput(
        "n-observed-too-large",
        "more observed entries than an order-3 tensor has",
        with_value(("orders", 0, "n_observed"), [600], "tensor_completion_vs_linear"),
        ("n_observed", "512"),
    ),
    BadInput(
        "unknown-dataset",
        "a dataset the project does not know",
        with_value(("datasets",), ["imagenet"], "tensor_rank_mnist"),
        ("datasets",),
    ),
    BadInput(
        "unknown-loss",
        "a loss chapter 5 does not know",
        with_value(("losses",), ["hinge"], "hessian_rank_vs_width"),
        ("losses",),
    ),
    BadInput(
        "first-hidden-width-zero",
        "a chapter-5 linear variant whose first hidden layer has width 0",
        with_value(("linear_variants", 2, "first_hidden_width"), 0, "hessian_rank_vs_width"),
        ("first_hidden_width",),
    ),
    BadInput("top-level-unknown", "a misspelt top-level key", with_value((None, "thread"), 2), ("thread",)),
    BadInput("threads-zero", "`threads: 0`", with_value((None, "threads"), 0), ("threads",)),
    BadInput(
        "threads-huge", "`threads: 2**40` (torch takes a C int)", with_value((None, "threads"), 2**40), ("threads",)
    ),
    BadInput("seed-huge", "a seed of 2**64 (seeds are 0 … 2³²−1)", with_value(("seed",), 2**64), ("seed",)),
    BadInput("device-unknown", "`device: tpu`", with_value((None, "device"), "tpu"), ("device",)),
    BadInput("tier-pattern", "a tier name with spaces and capitals", with_value((None, "tier"), "My Tier"), ("tier",)),
    BadInput(
        "experiments-list", "`experiments` given as a list", with_value((None, "experiments"), ["x"]), ("experiments",)
    ),
    BadInput(
        "unknown-experiment-section",
        "a section for an experiment that does not exist",
        with_value((None, "experiments", "no_such_experiment"), {"seed": 1}),
        ("no_such_experiment",),
    ),
    BadInput(
        "section-missing", "a tier config without the experiment's section", missing_section, (EXPERIMENT, "no section")
    ),
    # --- the config file itself
    BadInput(
        "yaml-invalid", "a config file that is not valid YAML", config_text("tier: [unclosed\n"), ("not valid YAML",)
    ),
    BadInput(
        "yaml-repeated-key",
        "a config file naming a key twice (plain YAML keeps the last value silently)",
        config_text("tier: smoke\nthreads: 1\nthreads: 2\n"),
        ("key 'threads' appears twice", "line 3"),
    ),
    BadInput("yaml-list", "a config file holding a list", config_text("- tier\n- smoke\n"), ("mapping",)),
    BadInput("yaml-empty", "an empty config file", config_text(""), ("tier",)),
    BadInput(
        "yaml-binary",
        "a config file that is not text (binary bytes)",
        config_text(b"\xff\xfe\x00tier\x80"),
        ("bad.yaml",),
    ),
    BadInput(
        "config-missing",
        "a config file that does not exist",
        cli("run", EXPERIMENT, "--config", "/nonexistent/config.yaml"),
        ("/nonexistent/config.yaml",),
    ),
    BadInput(
        "settings-edited",
        "a workflow settings file edited after it was written",
        edited_settings_file,
        ("changed after the workflow wrote it",),
    ),
    # --- the command line
    BadInput(
        "experiment-unknown",
        "an experiment name that does not exist",
        cli("run", "no_such_experiment", "--config", "{smoke}"),
        ("no_such_experiment",),
    ),
    BadInput(
        "threads-arg-zero",
        "`--threads 0`",
        cli("run", EXPERIMENT, "--config", "{smoke}", "--threads", "0"),
        ("--threads", "between 1 and 4096"),
    ),
    BadInput(
        "threads-arg-negative",
        "`--threads -2`",
        cli("run", EXPERIMENT, "--config", "{smoke}", "--threads", "-2"),
        ("--threads",),
    ),
    BadInput(
        "threads-arg-huge",
        "`--threads 99999999999999999999`",
        cli("run", EXPERIMENT, "--config", "{smoke}", "--threads", "99999999999999999999"),
        ("--threads", "between 1 and 4096"),
    ),
    BadInput(
        "plot-out-pdf",
        "`plot --out fig.pdf` (the PDF is written beside the PNG: it would overwrite it)",
        cli("plot", EXPERIMENT, "--config", "{smoke}", "--out", "/tmp/fig.pdf"),
        ("--out", ".png"),
    ),
    BadInput(
        "threads-arg-text",
        "`--threads two`",
        cli("run", EXPERIMENT, "--config", "{smoke}", "--threads", "two"),
        ("--threads", "two"),
    ),
    BadInput("config-arg-missing", "`rankrepro run` without `--config`", cli("run", EXPERIMENT), ("--config",)),
    BadInput("command-unknown", "an unknown subcommand", cli("train", EXPERIMENT), ("train",)),
    # --- results read by plot and claims
    BadInput(
        "results-missing",
        "`claims` before the experiment ran",
        cli("claims", EXPERIMENT, "--config", "{smoke}", "--results", "/nonexistent"),
        ("run the experiment first",),
    ),
    BadInput(
        "results-missing-plot",
        "`plot` before the experiment ran",
        cli("plot", EXPERIMENT, "--config", "{smoke}", "--results", "/nonexistent", "--out", "/tmp/x.png"),
        ("run the experiment first",),
    ),
    BadInput(
        "summary-garbage",
        "a `summary.json` that is not JSON",
        damaged_results(lambda r: (r / "summary.json").write_text("{not json")),
        ("summary.json", "rerun"),
    ),
    BadInput(
        "summary-digit",
        "a `summary.json` with one digit changed",
        damaged_results(lambda r: flip_first_digit(r / "summary.json")),
        ("summary.json", "rerun"),
    ),
    BadInput(
        "summary-old-format",
        "a `summary.json` without its content hash (an earlier version's)",
        damaged_results(lambda r: (r / "summary.json").write_text('{"tier": "smoke"}')),
        ("summary.json", "content hash"),
    ),
    BadInput(
        "metrics-empty",
        "an empty `metrics.csv`",
        damaged_results(lambda r: (r / "metrics.csv").write_text("")),
        ("metrics.csv", "rerun"),
    ),
    BadInput(
        "metrics-truncated",
        "a truncated `metrics.csv` (its last rows lost)",
        damaged_results(
            lambda r: (r / "metrics.csv").write_text(
                "\n".join((r / "metrics.csv").read_text().splitlines()[:2]) + "\n"
            ),
            "plot",
        ),
        ("metrics.csv",),
    ),
    BadInput(
        "metrics-digit",
        "a `metrics.csv` with one digit changed",
        damaged_results(lambda r: flip_first_digit(r / "metrics.csv")),
        ("metrics.csv", "rerun"),
    ),
    # --- output folders
    BadInput("output-unwritable", "an output folder that cannot be written", unwritable_output, ("cannot access",)),
    BadInput("output-under-file", "an output folder inside a regular file", output_under_a_file, ("a-file",)),
    # --- scorecards and claims
    BadInput(
        "scorecard-missing",
        "`check-scorecard` of a missing file",
        cli("check-scorecard", "/nonexistent.json"),
        ("/nonexistent.json",),
    ),
    BadInput(
        "scorecard-garbage", "`check-scorecard` of a file that is not JSON", scorecard_of("{oops"), ("scorecard.json",)
    ),
    BadInput(
        "scorecard-shape", "`check-scorecard` of JSON without claims", scorecard_of("[1, 2, 3]"), ("scorecard.json",)
    ),
    BadInput(
        "claims-garbage",
        "`scorecard` gathering a claims file that is not JSON",
        scorecard_from_claims("{"),
        ("claims.json",),
    ),
    BadInput(
        "scorecard-unknown-verdict",
        "`check-scorecard` of a scorecard whose verdict is misspelt (`Failed`): not counted as no failure",
        scorecard_of(
            '{"tier": "smoke", "claims": [{"claim_id": "c", "experiment": "x", "section": "1.1", "statement": "s", '
            '"verdict": "Failed", "measured": null, "reference": "", "details": "", "extra": {}}]}'
        ),
        ("scorecard.json", "unknown verdict 'Failed'"),
    ),
    # --- data
    BadInput(
        "dataset-unknown",
        "`data fetch` of a dataset the project does not know",
        cli("data", "fetch", "imagenet", "--config", "{smoke}"),
        ("imagenet",),
    ),
)


#: the generated page (``python tests/bad_inputs.py > docs/bad-inputs.md``); the tests check it row by row
DOC = REPO / "docs" / "bad-inputs.md"


def table_row(case: BadInput, outcome: Outcome, folder: Path) -> str:
    """The case's row of the Markdown table: id, the bad input, exit code, its one-line message (``folder``: ``…``)."""
    message = " ⏎ ".join(outcome.stderr_lines).replace(str(folder), "…").replace("|", "\\|")
    return f"| `{case.case_id}` | {case.what} | {outcome.exit_code} | {message} |"


def page_header() -> str:
    """The page's title and the sentence above the table (it states the number of cases)."""
    return (
        "# Bad inputs and what rankrepro says\n\nGenerated by `python tests/bad_inputs.py` from the "
        f"{len(CASES)} cases that `tests/pipeline/test_bad_inputs.py` checks: every one exits with code 2 "
        "and writes exactly one line to stderr (temporary folders shown as `…`).\n\n"
    )


def markdown_table(folder_root: Path | None = None) -> str:
    """Run every case and return the Markdown table: case, the bad input, exit code, the one-line message."""
    rows = ["| case | bad input | exit | message (stderr, one line) |", "|---|---|---:|---|"]
    with tempfile.TemporaryDirectory(dir=folder_root) as root:
        for case in CASES:
            folder = Path(root) / case.case_id
            folder.mkdir()
            rows.append(table_row(case, run_case(case, folder), folder))
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.stdout.write(page_header())
    sys.stdout.write(markdown_table())
