"""Benchmark: Pathfinder image generation (``rankrepro.cnn.pathfinder.generate``), images per second on one core.

For each canvas side (default settings scaled to it) and path length, ``--count`` images are generated ``--repeats``
times from a fixed seed; the best wall time counts. The reference is the original Python generator's cost quoted in
the spec, ≈ 0.15 s per 300 × 300 image (≈ 6.7 images/s).

Prints a markdown table; ``--out FILE`` also writes JSON.

    python benchmarks/bench_pathfinder.py [--canvases 64 150 300] [--lengths 9] [--count 500] [--out f.json]
"""

from __future__ import annotations

import argparse

import numpy as np

from _report import machine, timed, write_json
from rankrepro.cnn.pathfinder import default_settings, generate

#: seconds per 300 × 300 image of the original generator (spec, chapter 3)
ORIGINAL_SECONDS_PER_IMAGE = 0.15


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--canvases", nargs="+", type=int, default=[64, 150, 300])
    parser.add_argument("--lengths", nargs="+", type=int, default=[9])
    parser.add_argument("--count", type=int, default=500, help="images per timed call")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per case (the fastest counts)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)

    rows = []
    for canvas in args.canvases:
        for length in args.lengths:
            settings = default_settings(canvas, length)
            best = float("inf")
            for _ in range(args.repeats):
                seconds, (images, labels) = timed(
                    generate, args.count, length, settings, np.random.default_rng(args.seed)
                )
                best = min(best, seconds)
            rows.append(
                {
                    "canvas": canvas,
                    "length": length,
                    "distractors": settings.num_distractors,
                    "images": args.count,
                    "seconds": best,
                    "images_per_s": args.count / best,
                    "ms_per_image": 1e3 * best / args.count,
                    "ink_fraction": float((images > 0).mean()),
                    "positives": int(labels.sum()),
                    "speedup_vs_original": ORIGINAL_SECONDS_PER_IMAGE / (best / args.count),
                }
            )

    print(f"Pathfinder generation, {args.count} images per call, best of {args.repeats}, one process")
    print()
    print("| canvas | length | distractors | images/s | ms/image | ink | vs original 0.15 s/image (300×300) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['canvas']}×{row['canvas']} | {row['length']} | {row['distractors']} | "
            f"{row['images_per_s']:,.0f} | {row['ms_per_image']:.2f} | {100 * row['ink_fraction']:.1f} % | "
            f"{row['speedup_vs_original']:.0f}× |"
        )
    result = {
        "benchmark": "pathfinder",
        "machine": machine(),
        "count": args.count,
        "repeats": args.repeats,
        "original_seconds_per_image": ORIGINAL_SECONDS_PER_IMAGE,
        "rows": rows,
    }
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
