#!/usr/bin/env python3
"""Check where every run job of a finished tier computed: the GPU-capable jobs (chapters 3 and 5) on the expected
device, every other run job on the CPU.

On a machine with a GPU, rehearse the paper tier there and check that its GPU jobs really ran on the GPU::

    snakemake --cores all --configfile config/paper.yaml config/paper-rehearsal.yaml
    python scripts/check_devices.py --tier paper-rehearsal --expect cuda

(``--expect cpu`` is what a machine without a GPU gives: CI checks its rehearsal with it. The default, ``auto``,
expects ``cuda`` where the torch running this check sees a GPU and ``cpu`` elsewhere — a convenience that can mislead:
a CPU-only torch build passes a rehearsal that never touched the GPU, and a GPU-less login node fails jobs that ran on
GPU nodes. Name the device you meant.) Each run job logs ``running <experiment> (tier <tier>)
into <folder> on <device> …`` (``rankrepro run``); the last such line of ``logs/<tier>/<chapter>/<experiment>.run.log``
is the device of its last attempt. Exit status 0 when every job ran
where it should, 1 otherwise (one line per job that did not), 2 when the tier has no run logs.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from rankrepro.pipeline.workflow import CHAPTERS

#: the line ``rankrepro run`` logs when a run job starts
RUNNING = re.compile(r"running \S+ \(tier [^)]+\) into \S+ on (?P<device>[\w:]+) with")


def logged_device(log_text: str) -> str | None:
    """The device named by the last start line of a run log (``cuda:0`` counts as ``cuda``), or None if it has
    none."""
    found = RUNNING.findall(log_text)  # the device group of every start line
    return found[-1].split(":")[0] if found else None


def expected_device(chapter: str, expect: str) -> str:
    """``expect`` for the run jobs of a GPU-capable chapter, ``cpu`` for the others."""
    return expect if CHAPTERS[chapter].gpu else "cpu"


def misplaced_jobs(logs: Path, expect: str) -> tuple[int, list[str]]:
    """(number of run logs read, one line per run job whose device is not the expected one) under ``logs``, a tier's
    log folder ``logs/<tier>``."""
    lines, count = [], 0
    for log in sorted(logs.glob("*/*.run.log")):
        chapter, experiment = log.parent.name, log.name.removesuffix(".run.log")
        if chapter not in CHAPTERS:
            continue
        count += 1
        device = logged_device(log.read_text(encoding="utf-8", errors="replace"))
        wanted = expected_device(chapter, expect)
        if device != wanted:
            lines.append(f"{chapter}/{experiment}: ran on {device or 'an unlogged device'}, expected {wanted} ({log})")
    return count, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tier", required=True, help="the tier whose logs/<tier>/ to read, e.g. paper-rehearsal")
    parser.add_argument(
        "--expect", choices=("auto", "cpu", "cuda"), default="auto", help="device of the GPU-capable jobs"
    )
    parser.add_argument("--logs", default="logs", help="the logs folder (default: logs)")
    args = parser.parse_args(argv)
    if args.expect == "auto":
        import torch

        args.expect = "cuda" if torch.cuda.is_available() else "cpu"
    count, lines = misplaced_jobs(Path(args.logs) / args.tier, args.expect)
    if count == 0:
        print(f"check_devices: no run logs under {Path(args.logs) / args.tier}: run the tier first", file=sys.stderr)
        return 2
    for line in lines:
        print(f"check_devices: {line}", file=sys.stderr)
    if not lines:
        print(f"check_devices: {count} run jobs, each on its expected device (GPU-capable jobs: {args.expect})")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
