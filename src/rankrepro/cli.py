"""Command line: what the Snakemake rules call.

    rankrepro list
    rankrepro run EXPERIMENT --config FILE [--out DIR] [--threads N] [--no-progress] [--log FILE]
    rankrepro plot EXPERIMENT --config FILE [--results DIR] [--out PNG]
    rankrepro claims EXPERIMENT --config FILE [--results DIR] [--out JSON]
    rankrepro scorecard (--tier NAME | --config FILE) --out-md MD --out-json JSON CLAIMS.json ...
    rankrepro check-scorecard SCORECARD.json
    rankrepro data list [--config FILE] [--cache DIR]
    rankrepro data fetch NAME [--config FILE] [--cache DIR] [--mirror DIR] [--log FILE]

The workflow passes each experiment's settings file (results/<tier>/settings/<experiment>.<hash>.yaml, a tier config
holding that one experiment) as ``--config``; by hand, any tier config works (config/smoke.yaml, …).

`data fetch` takes the data cache and mirror from the config (`data_cache`, `data_mirror`); the
RANKREPRO_DATA_MIRROR environment variable overrides `data_mirror`, and the flags override both.

User errors (bad config, unknown experiment, missing results or data, corrupted files) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import NoReturn

from rankrepro.core.errors import RankreproError
from rankrepro.core.io import one_line, read_json
from rankrepro.core.runtime import configure_float32_precision, configure_threads, select_device, setup_logging
from rankrepro.data.registry import DATASETS, MANIFEST, cached_files, fetch_dataset, resolve_mirror
from rankrepro.data.sources import DataSource
from rankrepro.experiments.base import Context, record_attempt
from rankrepro.pipeline.claims import write_claims
from rankrepro.pipeline.config import experiment_section, load_config, load_schema
from rankrepro.pipeline.registry import EXPERIMENTS, get_experiment
from rankrepro.pipeline.report import check_failures, expected_failures, failed_claims, write_scorecard
from rankrepro.pipeline.settings import FigureContext
from rankrepro.pipeline.settings import figure_context as settings_figure_context
from rankrepro.pipeline.workflow import CHAPTERS, CLAIMS_FILE, figure_path, results_dir

log = logging.getLogger("rankrepro")


#: the most torch/BLAS threads a run may ask for (torch's setter takes a C int; no machine has more cores) — the
#: config schema's ``threads`` has the same maximum
MAX_THREADS = 4096


def _positive_int(text: str) -> int:
    """An integer from 1 to :data:`MAX_THREADS` (argparse type): anything else is a usage error naming the value."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 1 <= value <= MAX_THREADS:
        raise argparse.ArgumentTypeError(f"{value} is not between 1 and {MAX_THREADS}")
    return value


def _png_path(text: str) -> str:
    """A figure path ending in .png (argparse type): the PDF is written beside it, so another suffix would have the
    PDF overwrite the PNG."""
    if Path(text).suffix.lower() != ".png":
        raise argparse.ArgumentTypeError(f"{text!r} does not end in .png (the PDF is written beside it)")
    return text


class _OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (and exit code 2), like every other user error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"rankrepro: error: {message} (see `{self.prog} --help`)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="rankrepro", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the experiments")

    def experiment_command(name: str, help_text: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("experiment", help="experiment name (see `rankrepro list`)")
        cmd.add_argument(
            "--config",
            required=True,
            help="tier config YAML (config/{smoke,config,paper}.yaml, or an "
            "experiment's settings file written by the workflow)",
        )
        return cmd

    run = experiment_command("run", "train/compute an experiment and write its metrics and summary")
    run.add_argument("--out", help="results folder (default results/<tier>/<chapter>/<experiment>)")
    run.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help=f"torch/BLAS threads, 1 … {MAX_THREADS} (default: config 'threads')",
    )
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    run.add_argument("--log", help="also log to this file")

    plot = experiment_command("plot", "draw an experiment's figure from its results")
    plot.add_argument(
        "--paper-config",
        help="the paper tier's config (config/paper.yaml): the caption names every setting that departs from it",
    )
    plot.add_argument("--results", help="results folder (default results/<tier>/<chapter>/<experiment>)")
    plot.add_argument(
        "--out",
        type=_png_path,
        help="figure PNG path (PDF beside it); default figures/<tier>/<chapter>/<experiment>.png",
    )

    claims = experiment_command("claims", "check an experiment's claims and write claims.json")
    claims.add_argument("--results", help="results folder (default results/<tier>/<chapter>/<experiment>)")
    claims.add_argument("--out", help="claims JSON path (default <results>/claims.json)")

    card = sub.add_parser("scorecard", help="gather claims.json files into scorecard.md and scorecard.json")
    tier = card.add_mutually_exclusive_group(required=True)
    tier.add_argument("--tier", help="tier name written into the scorecard")
    tier.add_argument("--config", help="tier config YAML supplying the tier name")
    card.add_argument("--out-md", required=True)
    card.add_argument("--out-json", required=True)
    card.add_argument("claim_files", nargs="+")

    check = sub.add_parser("check-scorecard", help="exit 1 if a scorecard has a failed claim not known to fail")
    check.add_argument("scorecard")
    check.add_argument(
        "--expected-failures",
        help="YAML mapping tier → list of {claim: <experiment>:<claim_id>, why: …}: the tier's known failures "
        "(each explained); a listed claim that no longer fails is an error too",
    )

    data = sub.add_parser("data", help="list or fetch the real datasets (checksum-verified, into the data cache)")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    listing = data_sub.add_parser("list", help="list the datasets, their files and the cached sizes")
    fetch = data_sub.add_parser("fetch", help="fetch a dataset into the data cache (mirror first, then its URLs)")
    fetch.add_argument("dataset", help="dataset name (see `rankrepro data list`)")
    fetch.add_argument(
        "--mirror",
        help="offline mirror folder laid out like shared/datasets (overrides the config "
        "key data_mirror and RANKREPRO_DATA_MIRROR)",
    )
    fetch.add_argument("--log", help="also log to this file")
    for cmd in (listing, fetch):
        cmd.add_argument("--config", help="tier config YAML supplying data_cache and data_mirror")
        cmd.add_argument("--cache", help="data cache folder (overrides the config key data_cache)")
    return parser


def _command_list() -> int:
    for name in EXPERIMENTS:
        module = get_experiment(name)
        print(f"{name:32s} §{module.SECTION:5s} {module.CHAPTER}  {module.TITLE}")
    return 0


def _command_run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    module = get_experiment(args.experiment)
    section = experiment_section(config, args.experiment)
    settings = module.Settings.from_mapping(section, f"experiments.{args.experiment}")
    out = Path(args.out) if args.out else results_dir(config, module.CHAPTER, module.NAME)
    out.mkdir(parents=True, exist_ok=True)  # an unwritable output folder stops the job here, before any work
    setup_logging(args.log)
    threads = args.threads if args.threads is not None else config["threads"]
    configure_threads(threads)
    configure_float32_precision()
    device = select_device(config["device"], gpu_capable=CHAPTERS[module.CHAPTER].gpu)
    ctx = Context(tier=config["tier"], device=device, threads=threads, progress=not args.no_progress)
    started = time.time()
    record_attempt(out, started)  # a resumed attempt's summary counts the wall time of the earlier ones too
    log.info("running %s (tier %s) into %s on %s with %d thread(s)", module.NAME, ctx.tier, out, ctx.device, threads)
    if getattr(module, "DATASETS", ()):  # experiments on real data get the data cache and the mirror
        data = DataSource(Path(config["data_cache"]), resolve_mirror(config["data_mirror"]))
        module.run(settings, out, ctx, data)
    else:
        module.run(settings, out, ctx)
    log.info("%s finished in %.1f s", module.NAME, time.time() - started)
    return 0


def _command_plot(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    module = get_experiment(args.experiment)
    results = Path(args.results) if args.results else results_dir(config, module.CHAPTER, module.NAME)
    out = Path(args.out) if args.out else figure_path(config, module.CHAPTER, module.NAME)
    figure = figure_context(config["tier"], args.experiment, args.paper_config)
    for path in module.plot(results, out, figure):
        print(path)
    return 0


def figure_context(tier: str, experiment: str, paper_config: str | None) -> FigureContext:
    """What ``plot`` gets besides the results: the tier, and how ``experiment`` is set in the paper tier's config
    file ``paper_config`` (None when not given; :func:`rankrepro.pipeline.settings.figure_context`)."""
    return settings_figure_context(tier, experiment, load_config(paper_config) if paper_config is not None else None)


def _command_claims(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    module = get_experiment(args.experiment)
    results = Path(args.results) if args.results else results_dir(config, module.CHAPTER, module.NAME)
    out = Path(args.out) if args.out else results / CLAIMS_FILE
    records = module.claims(results, config["tier"])
    write_claims(out, config["tier"], records)
    for record in records:
        print(f"{record.verdict:24s} {record.claim_id}: {record.measured}")
    return 0


def _command_scorecard(args: argparse.Namespace) -> int:
    tier = args.tier if args.tier is not None else load_config(args.config)["tier"]
    records = write_scorecard(tier, args.claim_files, args.out_md, args.out_json)
    print(f"{len(records)} claims -> {args.out_md}")
    return 0


def _command_check(args: argparse.Namespace) -> int:
    failed = failed_claims(args.scorecard)
    tier = str(read_json(args.scorecard).get("tier", ""))
    expected = expected_failures(args.expected_failures, tier) if args.expected_failures else {}
    unexpected, stale = check_failures(failed, expected)
    for claim in failed:
        if claim in expected:
            print(f"known failure {claim}: {expected[claim]}")
    if unexpected:
        print(f"failed claims: {', '.join(unexpected)}", file=sys.stderr)
    if stale:
        print(f"listed as known failures but not failed (update the list): {', '.join(stale)}", file=sys.stderr)
    if unexpected or stale:
        return 1
    print("no failed claims" if not failed else f"no unexpected failed claims ({len(failed)} known)")
    return 0


def _data_cache(args: argparse.Namespace) -> tuple[Path, str | None]:
    """(data cache, configured mirror) from ``--cache``/``--config``, else the schema's defaults."""
    if args.config:
        config = load_config(args.config)
        cache, configured = config["data_cache"], config["data_mirror"]
    else:
        cache, configured = load_schema()["properties"]["data_cache"]["default"], None
    return Path(args.cache or cache), configured


def _command_data_list(args: argparse.Namespace) -> int:
    cache, _ = _data_cache(args)
    for name, spec in DATASETS.items():
        sizes = cached_files(name, cache)
        present = sum(size is not None for size in sizes.values())
        fetched = (cache / spec.folder / MANIFEST).is_file() and present == len(sizes)
        state = "fetched" if fetched else f"{present}/{len(sizes)} files cached" if present else "not cached"
        print(f"{name:16s} {spec.title}  [{state} in {cache / spec.folder}]")
        for remote in spec.files:
            size = sizes[remote.name]
            print(f"  {remote.name:36s} md5 {remote.md5}  {'-' if size is None else f'{size} bytes'}")
    return 0


def _command_data_fetch(args: argparse.Namespace) -> int:
    cache, configured = _data_cache(args)
    mirror = Path(args.mirror).absolute() if args.mirror else resolve_mirror(configured)
    setup_logging(args.log)
    print(fetch_dataset(args.dataset, cache, mirror))
    return 0


DATA_COMMANDS = {"list": _command_data_list, "fetch": _command_data_fetch}


COMMANDS = {
    "list": lambda a: _command_list(),
    "run": _command_run,
    "plot": _command_plot,
    "claims": _command_claims,
    "scorecard": _command_scorecard,
    "check-scorecard": _command_check,
    "data": lambda a: DATA_COMMANDS[a.data_command](a),
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rankrepro`` command; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except RankreproError as exc:
        print(f"rankrepro: error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"rankrepro: error: file not found: {exc.filename}", file=sys.stderr)
        return 2
    except OSError as exc:  # a read-only folder, a full disk, …: the file and the system's reason, in one line
        where = f" {exc.filename}" if exc.filename else ""
        print(f"rankrepro: error: cannot access{where}: {exc.strerror or one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
