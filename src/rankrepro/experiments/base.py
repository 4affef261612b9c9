"""What every experiment shares: its module contract (:class:`Experiment`, :class:`DataExperiment`), run context,
results files (named by :mod:`rankrepro.pipeline.workflow`, which owns the output layout) and summary record."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import time
import typing  # the contract's Protocol: a statement of its own, so no job's code slice changes with it
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import torch

from rankrepro.core.errors import ResultsError
from rankrepro.core.io import (
    SealError,
    atomic_write_csv,
    atomic_write_json,
    atomic_write_sealed_json,
    fingerprint,
    from_jsonable,
    module_code_hash,
    one_line,
    read_json,
    read_sealed_json,
    sha256_file,
)
from rankrepro.core.runtime import provenance
from rankrepro.core.trainer import StopRule, TrainSettings
from rankrepro.data.sources import DataSource
from rankrepro.pipeline.claims import ClaimResult
from rankrepro.pipeline.config import WORKFLOW_KEYS, load_schema
from rankrepro.pipeline.settings import FigureContext, SettingsRecord, section_properties
from rankrepro.pipeline.workflow import METRICS_FILE, SUMMARY_FILE

CHECKPOINT_DIR = "checkpoints"
BATCH_DIR = "batches"
#: key of summary.json recording the SHA-256 and row count of metrics.csv
METRICS_RECORD = "metrics_file"

log = logging.getLogger(__name__)


#: fewest iterations between two host syncs of the trainer (divergence log, early exit), if check_every is fewer
MIN_SYNC_EVERY = 1000


@dataclass(frozen=True)
class PatientStopSettings(SettingsRecord):
    """The keys of a section trained with a patient stop rule (§1.5, §2.1, §3.1): stop once the loss is below
    ``loss_threshold`` at ``stop_patience`` consecutive checks every ``check_every`` iterations; log every
    ``log_every`` iterations, checkpoint every ``checkpoint_every``."""

    loss_threshold: float
    stop_patience: int
    check_every: int
    log_every: int
    checkpoint_every: int

    def loop_settings(self, max_iters: int) -> TrainSettings:
        """The trainer's budget for a cap of ``max_iters`` iterations: the stop rule, logging, checkpoints, and host
        syncs every max(``check_every``, :data:`MIN_SYNC_EVERY`) iterations."""
        return TrainSettings(
            max_iters=max_iters,
            stop=StopRule(self.loss_threshold, self.stop_patience, self.check_every),
            log_every=self.log_every,
            sync_every=max(self.check_every, MIN_SYNC_EVERY),
            checkpoint_every=self.checkpoint_every,
        )


@dataclass(frozen=True)
class Context:
    """How an experiment runs: tier name, torch device, thread budget, whether to show progress bars."""

    tier: str
    device: torch.device
    threads: int = 1
    progress: bool = True


class _Presented(typing.Protocol):
    """What every experiment module has, whatever its data: the constants the CLI, the workflow and the scorecard
    read (literal strings: ``NAME`` its name in :mod:`rankrepro.pipeline.registry`, ``CHAPTER`` its package ``chN``,
    ``SECTION`` the thesis section, ``TITLE`` one line), its figure and its claims."""

    NAME: str
    CHAPTER: str
    SECTION: str
    TITLE: str
    #: its settings: a frozen dataclass with one field per key of its config section (built by the CLI)
    Settings: type[SettingsRecord]

    def plot(self, results: Path, figure_png: Path, figure: FigureContext) -> list[Path]:
        """Draw the figure from the results directory to ``figure_png`` (and siblings); the files written. The
        caption states the tier and, through ``figure.substitutions``, how the settings depart from the paper's."""
        ...

    def claims(self, results: Path, tier: str) -> list[ClaimResult]:
        """Check the experiment's claims on its results."""
        ...


class Experiment(_Presented, typing.Protocol):
    """An experiment module on synthetic data (no ``DATASETS``): ``rankrepro run`` calls ``run(settings, out, ctx)``.
    A module satisfies it structurally (PEP 544: module functions stand for the methods, without ``self``)."""

    def run(self, settings: SettingsRecord, out: Path, ctx: Context) -> None:
        """Compute the experiment from its tier settings into ``out`` (metrics.csv, summary.json)."""
        ...


class DataExperiment(_Presented, typing.Protocol):
    """An experiment module on real data: it declares ``DATASETS`` (the names in :mod:`rankrepro.data.registry` it
    may read) and ``rankrepro run`` calls ``run(settings, out, ctx, data)`` with the data cache and mirror."""

    DATASETS: tuple[str, ...]

    def run(self, settings: SettingsRecord, out: Path, ctx: Context, data: DataSource) -> None:
        """Compute the experiment from its tier settings and the data source into ``out``."""
        ...


#: the constants of the contract, read by the CLI, the workflow and the scorecard
CONTRACT_CONSTANTS = ("NAME", "CHAPTER", "SECTION", "TITLE")


def contract_of(module: ModuleType) -> type[Experiment] | type[DataExperiment]:
    """The protocol an experiment module must satisfy: :class:`DataExperiment` where it declares ``DATASETS`` (as the
    CLI decides whether ``run`` gets a data source), :class:`Experiment` otherwise."""
    return DataExperiment if getattr(module, "DATASETS", ()) else Experiment


def parameter_names(function: Callable[..., Any]) -> list[str]:
    """The names of a function's parameters, ``self`` left out (a protocol method's stand for a module function's)."""
    return [name for name in inspect.signature(function).parameters if name != "self"]


def contract_violations(module: ModuleType) -> list[str]:
    """How ``module`` breaks its contract (:func:`contract_of`): a constant missing or not a string, ``DATASETS`` not a
    tuple of names, a function missing or not taking the protocol's parameters (by name, in order); [] if none."""
    contract = contract_of(module)
    problems = [
        f"{constant} is missing or not a string"
        for constant in CONTRACT_CONSTANTS
        if not isinstance(getattr(module, constant, None), str)
    ]
    if contract is DataExperiment and not (
        isinstance(module.DATASETS, tuple) and all(isinstance(name, str) for name in module.DATASETS)
    ):
        problems.append("DATASETS is not a tuple of dataset names")
    problems += settings_violations(module)
    for function in ("run", "plot", "claims"):
        expected = parameter_names(getattr(contract, function))
        found = getattr(module, function, None)
        if not inspect.isfunction(found):
            problems.append(f"{function} is missing or not a function")
        elif parameter_names(found) != expected:
            problems.append(f"{function}{tuple(parameter_names(found))} should take {tuple(expected)}")
    return problems


def settings_violations(module: ModuleType) -> list[str]:
    """How ``module.Settings`` fails to be its config section typed: not a :class:`SettingsRecord` dataclass, a key of
    the section's schema (``resources`` aside) without a field or a field without a key, or a field with a default
    (the schema is the one source of defaults); [] if none."""
    cls = getattr(module, "Settings", None)
    if not (isinstance(cls, type) and issubclass(cls, SettingsRecord) and dataclasses.is_dataclass(cls)):
        return ["Settings is missing or not a SettingsRecord dataclass"]
    try:
        keys = set(section_properties(load_schema(), module.NAME)) - set(WORKFLOW_KEYS)
    except KeyError:
        return [f"the config schema has no section {getattr(module, 'NAME', None)!r}"]
    fields = dataclasses.fields(cls)
    names = {field.name for field in fields}
    problems = [f"Settings has no field for config key(s) {sorted(keys - names)}"] if keys - names else []
    problems += [f"Settings field(s) {sorted(names - keys)} are not config keys"] if names - keys else []
    problems += [
        f"Settings field {field.name} has a default (the schema is the one source of defaults)"
        for field in fields
        if field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
    ]
    return problems


def checkpoint_path(out: Path, key: str) -> Path:
    """Checkpoint file for one batch (``key``) of an experiment."""
    return out / CHECKPOINT_DIR / f"{key}.pt"


def run_fingerprint(settings: dict[str, Any], *parts: Any) -> str:
    """Fingerprint tying a checkpoint to the settings (and batch parts) that produced it."""
    return fingerprint({"settings": settings, "parts": list(parts)})


def mechanism_hash(*modules: ModuleType) -> str:
    """Hash of the code of the library modules a result depends on (:func:`rankrepro.core.io.module_code_hash`:
    docstrings, comments and layout left out): a checkpoint or cached batch made by other code is not reused (the
    trainer discards a checkpoint whose fingerprint differs and starts afresh), while editing a module's prose keeps
    them."""
    return module_code_hash([module.__file__ for module in modules])


def write_results(
    out: Path, metrics: pd.DataFrame, settings: dict[str, Any], ctx: Context, started: float, extra: dict[str, Any]
) -> None:
    """Write the tidy ``metrics.csv`` and then ``summary.json`` (settings, tier, provenance, wall time, extras, and the
    SHA-256 and row count of ``metrics.csv``), sealed with its own content hash: :func:`load_results` reads only a
    complete, unmodified pair."""
    store_results(
        out,
        metrics,
        {
            "tier": ctx.tier,
            "settings": settings,
            "provenance": provenance(),
            "device": str(ctx.device),
            "threads": ctx.threads,
            **attempts_record(out, started),
            **extra,
        },
    )
    (out / CHECKPOINT_DIR / ATTEMPTS_FILE).unlink(missing_ok=True)  # a later rerun starts counting afresh


# -------------------------------------------------------------------------------------------------------- attempts
#: file under ``<out>/checkpoints/`` listing the start times of a run job's attempts (a cancelled or failed job is
#: resubmitted and resumes from its checkpoints: its wall time is that of every attempt, not only the last)
ATTEMPTS_FILE = "attempts.json"


def record_attempt(out: Path, started: float) -> None:
    """Add an attempt starting at ``started`` (seconds since the epoch) to ``<out>/checkpoints/attempts.json``."""
    path = out / CHECKPOINT_DIR / ATTEMPTS_FILE
    atomic_write_json(path, {"starts": [*attempt_starts(out), started]})


def attempt_starts(out: Path) -> list[float]:
    """Start times of the attempts recorded for ``out`` (none when the file is missing or unreadable)."""
    try:
        return [float(t) for t in read_json(out / CHECKPOINT_DIR / ATTEMPTS_FILE)["starts"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def attempts_record(out: Path, started: float, now: float | None = None) -> dict[str, Any]:
    """``wall_time_s`` and ``attempts`` of a run that finishes now and whose last attempt started at ``started``.

    The last attempt began at the latest recorded start at or before ``started`` (the CLI records it before the
    experiment's ``run`` takes its own, later clock; ``started`` itself if none is recorded). The wall time is that of
    the last attempt, now − its start, plus that of each earlier recorded attempt: from its start to its last sign of
    life — the newest modification time of a file under ``out`` (a checkpoint, a cached batch) before the next attempt
    started (its start if none). Time between attempts (queueing) is not counted."""
    now = time.time() if now is None else now
    recorded = sorted(t for t in attempt_starts(out) if t <= started)
    started = recorded[-1] if recorded else started
    earlier = recorded[:-1] if recorded else []
    bounds = [*earlier, started]
    mtimes = [path.stat().st_mtime for path in out.rglob("*") if path.is_file()]
    total = now - started
    for begin, end in zip(bounds, bounds[1:]):
        total += max([t for t in mtimes if begin <= t < end], default=begin) - begin
    return {"wall_time_s": round(total, 3), "attempts": len(earlier) + 1}


def store_results(out: Path, metrics: pd.DataFrame, summary: dict[str, Any]) -> None:
    """Write ``metrics.csv``, then ``summary`` + the SHA-256 and row count of that file as sealed ``summary.json``."""
    atomic_write_csv(out / METRICS_FILE, metrics)
    record = {key: value for key, value in summary.items() if key != METRICS_RECORD}
    record[METRICS_RECORD] = {"sha256": sha256_file(out / METRICS_FILE), "rows": len(metrics)}
    atomic_write_sealed_json(out / SUMMARY_FILE, record)


def load_results(results: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``metrics.csv`` and ``summary.json`` of an experiment, verified: the summary against its content hash, the
    metrics file against the SHA-256 and row count the summary records. A missing, truncated, modified or
    earlier-format pair is a one-line :class:`ResultsError` that says how to regenerate it."""
    metrics_file, summary_file = results / METRICS_FILE, results / SUMMARY_FILE
    rerun = "rerun the experiment (rankrepro run …, or snakemake --forcerun on its run rule)"
    if not metrics_file.is_file() or not summary_file.is_file():
        raise ResultsError(f"no results in {results}: run the experiment first (rankrepro run …)")
    try:
        summary = from_jsonable(read_sealed_json(summary_file))  # a diverged run's NaN loss is a float again
    except SealError as exc:
        raise ResultsError(f"{summary_file} cannot be used: {exc}; {rerun}") from None
    recorded = summary.get(METRICS_RECORD, {})
    if sha256_file(metrics_file) != recorded.get("sha256"):
        raise ResultsError(
            f"{metrics_file} is not the file its summary.json describes (truncated or modified); {rerun}"
        )
    try:
        metrics = pd.read_csv(metrics_file)
    except (ValueError, UnicodeDecodeError) as exc:  # pandas' parser and empty-data errors are ValueErrors
        raise ResultsError(f"{metrics_file} is unreadable ({one_line(exc, 120)}); {rerun}") from None
    if len(metrics) != recorded.get("rows"):
        raise ResultsError(
            f"{metrics_file} has {len(metrics)} rows, its summary records {recorded.get('rows')}; {rerun}"
        )
    return metrics, summary


def load_batch(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """A finished batch record (sealed JSON with a ``fingerprint``: :func:`rankrepro.core.io.read_sealed_json`, returned
    without its hash), or None when absent, unreadable, without a matching content hash (corrupted, truncated, earlier
    format: logged in one line) or from other settings/code."""
    if not path.is_file():
        return None
    try:
        record = read_sealed_json(path)
    except SealError as exc:
        log.warning("batch file %s is discarded: %s; recomputing it", path, exc)
        return None
    if record.get("fingerprint") != fingerprint:
        log.info("batch file %s is from other settings or code; recomputing it", path)
        return None
    return record


def cached_batch(path: Path, fingerprint: str, compute: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    """The batch record at ``path`` if valid, else ``compute()`` (which must store ``fingerprint`` in the record)
    written atomically with its content hash; and whether it was cached. Finished batches of an interrupted job are
    never recomputed."""
    record = load_batch(path, fingerprint)
    if record is not None:
        return record, True
    record = compute()
    save_batch(path, record)
    return record, False


def save_batch(path: Path, record: dict[str, Any]) -> None:
    """Write a finished batch record atomically with its content hash (what :func:`load_batch` verifies)."""
    atomic_write_sealed_json(path, record)
