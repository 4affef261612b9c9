#!/usr/bin/env python3
"""Run ``snakemake --lint`` and fail on any lint that is not accepted below, with its reason.

``snakemake --lint`` exits 1 on any finding and has no way to silence one (its ``--lint json`` is not wired to the
command line in Snakemake 9), so CI runs it through this script: a new lint, or a known one in a new place, fails
the phase; the accepted ones are listed with why they stay.

Usage, from the repository root (CI's ``smk-lint`` phase)::

    python scripts/check_snakemake_lint.py [--snakemake PATH] [-- extra snakemake arguments]

Only the standard library is used; Snakemake runs as a subprocess.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: (lint title, subject regex) -> why it is accepted. The subject is ``rule NAME`` or ``snakefile PATH`` (relative to
#: the repository); a lint matches when its title is equal and its subject matches the regex in full.
ACCEPTED: dict[tuple[str, str], str] = {
    ("Mixed rules and functions in same snakefile.", r"snakefile workflow/rules/(common|ch4)\.smk"): (
        "the workflow's helper functions (settings files, code hashes, resources) live beside the rules that use them"
    ),
    ("No log directive defined", r"rule experiment_settings"): (
        "a local printf of the settings into their file: nothing to log"
    ),
    ("Shell command directly uses variable DATA_MIRROR_OPTION from outside of the rule", r"rule data_fetch"): (
        "deliberately not a params value (workflow/rules/data.smk): moving the mirror must not refetch the data and "
        "rerun every experiment on real data (every file is checksum-verified)"
    ),
    ("Param cache is a prefix of input or output file but hardcoded", r"rule data_fetch"): (
        "data_fetch is a local rule: it runs on the submitting host, where the data cache is"
    ),
}

SUBJECT = re.compile(r"^Lints for (?P<kind>rule|snakefile) (?P<name>\S+)(?: \(line \d+, [^)]*\))?:$")
TITLE = re.compile(r"^\s+\* (?P<title>.+):$")


def parse(text: str, root: Path = REPO) -> list[tuple[str, str]]:
    """(title, subject) of every lint in ``snakemake --lint``'s text output."""
    lints = []
    subject = None
    for line in text.splitlines():
        match = SUBJECT.match(line)
        if match:
            name = match.group("name")
            if match.group("kind") == "snakefile":
                try:
                    name = Path(name).resolve().relative_to(root.resolve()).as_posix()
                except ValueError:
                    pass
            subject = f"{match.group('kind')} {name}"
            continue
        match = TITLE.match(line)
        if match and subject is not None:
            lints.append((match.group("title"), subject))
    return lints


def reason(title: str, subject: str) -> str | None:
    """Why a lint is accepted, or None."""
    for (accepted_title, pattern), why in ACCEPTED.items():
        if title == accepted_title and re.fullmatch(pattern, subject):
            return why
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snakemake", default=shutil.which("snakemake") or "snakemake", help="default: %(default)s")
    parser.add_argument("extra", nargs="*", help="further snakemake arguments (after --)")
    args = parser.parse_args(argv)
    done = subprocess.run([args.snakemake, "--lint", *args.extra], cwd=REPO, capture_output=True, text=True)
    output = done.stdout + done.stderr
    lints = parse(output)
    if done.returncode != 0 and not lints:  # not a lint finding: the workflow did not parse
        sys.stderr.write(output)
        print(f"check_snakemake_lint: snakemake --lint exited {done.returncode} without lints", file=sys.stderr)
        return done.returncode
    unexpected = [(title, subject) for title, subject in lints if reason(title, subject) is None]
    accepted: dict[str, list[str]] = {}
    for title, subject in lints:
        why = reason(title, subject)
        if why is not None:
            accepted.setdefault(f"{title} ({why})", []).append(subject)
    for text, subjects in accepted.items():
        print(f"accepted: {text}: {len(subjects)} × {', '.join(subjects)}")
    for title, subject in unexpected:
        print(f"LINT: {subject}: {title}", file=sys.stderr)
    if unexpected:
        print(
            f"{len(unexpected)} lint(s) not accepted: see `snakemake --lint`; fix them or, with a reason, add them "
            f"to ACCEPTED in {Path(__file__).name}",
            file=sys.stderr,
        )
        return 1
    print(f"snakemake --lint: {len(lints)} lint(s), all accepted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
