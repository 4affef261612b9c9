"""Wall and CPU times of a tier's jobs, from the files a Snakemake run leaves behind (nothing is re-run).

Reads every ``logs/<tier>/<chapter>/<experiment>.run.benchmark.tsv`` (Snakemake's ``benchmark:`` record of each run
job: wall seconds ``s``, ``cpu_time``, ``max_rss`` in MB) and, when given, the Snakemake log of the whole run
(``.snakemake/log/<timestamp>.snakemake.log``) whose first and last ``[date]`` stamps bound the DAG's wall time.
Prints Markdown tables: one row per run job, one per chapter, and the totals.

    python benchmarks/dag_wall_times.py --tier default
    python benchmarks/dag_wall_times.py --tier smoke \
        --snakemake-log .snakemake/log/2026-12-05T101500.123456.snakemake.log
    python benchmarks/dag_wall_times.py --tier default --latest-log      # the newest log in .snakemake/log
"""

from __future__ import annotations

import argparse
import re
from datetime import datetime
from pathlib import Path

import pandas as pd

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]", re.MULTILINE)


def job_times(logs: Path) -> pd.DataFrame:
    """One row per run job of ``logs`` (``<chapter>/<experiment>.run.benchmark.tsv``): wall s, CPU s, max RSS MB."""
    rows = []
    for path in sorted(logs.glob("*/*.run.benchmark.tsv")):
        record = pd.read_csv(path, sep="\t").iloc[-1]  # a rerun appends: the last line is the last run
        rows.append(
            {
                "chapter": path.parent.name,
                "experiment": path.name.removesuffix(".run.benchmark.tsv"),
                "wall_s": float(record["s"]),
                "cpu_s": float(record["cpu_time"]),
                "max_rss_mb": float(record["max_rss"]),
            }
        )
    return pd.DataFrame(rows, columns=["chapter", "experiment", "wall_s", "cpu_s", "max_rss_mb"])


def dag_seconds(log_text: str) -> float | None:
    """Seconds between the first and the last ``[date]`` stamp of a Snakemake log (None if fewer than two)."""
    stamps = [datetime.strptime(" ".join(s.split()), "%a %b %d %H:%M:%S %Y") for s in STAMP.findall(log_text)]
    return (stamps[-1] - stamps[0]).total_seconds() if len(stamps) >= 2 else None


def markdown(frame: pd.DataFrame, float_format: str = "{:.1f}") -> str:
    """A Markdown table of ``frame`` (numbers with ``float_format``)."""
    header = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * len(frame.columns) + "\n"
    body = "".join(
        "| " + " | ".join(float_format.format(v) if isinstance(v, float) else str(v) for v in row) + " |\n"
        for row in frame.itertuples(index=False)
    )
    return header + body


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tier", default="default", help="tier whose logs/<tier> to read (default: default)")
    parser.add_argument("--logs-root", type=Path, default=Path("logs"), help="the logs folder (default: logs)")
    log = parser.add_mutually_exclusive_group()
    log.add_argument("--snakemake-log", type=Path, help="Snakemake's log of the whole run (for the DAG wall time)")
    log.add_argument("--latest-log", action="store_true", help="use the newest .snakemake/log/*.snakemake.log")
    args = parser.parse_args(argv)

    jobs = job_times(args.logs_root / args.tier)
    if jobs.empty:
        raise SystemExit(f"no run benchmarks under {args.logs_root / args.tier}: run the tier first")
    minutes = jobs.assign(wall_min=jobs["wall_s"] / 60, cpu_min=jobs["cpu_s"] / 60)
    print(f"Run jobs of tier '{args.tier}' (Snakemake benchmark records):\n")
    print(
        markdown(
            minutes[["chapter", "experiment", "wall_min", "cpu_min", "max_rss_mb"]].sort_values(
                ["chapter", "experiment"]
            ),
            "{:.2f}",
        )
    )
    chapters = minutes.groupby("chapter")[["wall_min", "cpu_min"]].sum().reset_index()
    print(markdown(chapters, "{:.1f}"))
    print(
        f"All run jobs: {minutes['wall_min'].sum():.1f} job-minutes of wall time, "
        f"{minutes['cpu_min'].sum():.1f} CPU-minutes."
    )
    path = args.snakemake_log
    if args.latest_log:
        logs = sorted(Path(".snakemake/log").glob("*.snakemake.log"))
        path = logs[-1] if logs else None
    if path is not None:
        seconds = dag_seconds(path.read_text(encoding="utf-8", errors="replace"))
        print(
            f"Whole DAG ({path.name}): {seconds / 60:.1f} min of wall time."
            if seconds is not None
            else f"{path}: no time stamps"
        )


if __name__ == "__main__":
    main()
