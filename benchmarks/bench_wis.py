"""Benchmark: Walk Index Sparsification removal orders on Cora and CiteSeer (read through the data layer).

  1-WIS (Algorithm 2): the lazy max-heap (``one_wis_order``) vs a straightforward argmax over all remaining edges at
      every removal (the original algorithm's cost), written two ways: a plain Python loop over the edges, and
      numpy-vectorised (``one_wis_order_naive``); all three full orders are checked equal.
  2-WIS (Algorithm 1, L = 3): the exact closed-form version (``two_wis_order``) vs the dense reference, which
      recomputes every vertex's walk index with dense matrix powers for every candidate edge. The dense full order is
      far out of reach (hours to days), so its time is extrapolated: one candidate evaluation is timed on a sample
      of candidate edges and multiplied by the number of candidate evaluations of a full order,
      Σ_rounds (edges remaining) with rounds of ``chunk`` removals.

Prints a markdown table; ``--out FILE`` also writes JSON. Needs the datasets (set RANKREPRO_DATA_MIRROR offline).

    python benchmarks/bench_wis.py [--datasets cora citeseer] [--chunk 100] [--sample 2] [--threads 2] [--out f.json]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from _report import machine, timed, write_json
from rankrepro.data.registry import resolve_mirror
from rankrepro.data.sources import DataSource
from rankrepro.gnn.walk_index import vertex_walk_indices
from rankrepro.gnn.wis import one_wis_order, one_wis_order_naive, two_wis_order


def one_wis_order_python(edges: np.ndarray, num_nodes: int) -> list[int]:
    """1-WIS by a plain Python scan of every remaining edge per removal (first maximum of (min deg, max deg))."""
    pairs = edges.tolist()
    degree = np.bincount(edges.ravel(), minlength=num_nodes).tolist()
    alive = list(range(len(pairs)))
    order = []
    while alive:
        best, best_key = 0, (-1, -1)
        for position, e in enumerate(alive):
            a, b = degree[pairs[e][0]], degree[pairs[e][1]]
            key = (a, b) if a <= b else (b, a)
            if key > best_key:
                best, best_key = position, key
        e = alive.pop(best)
        order.append(e)
        degree[pairs[e][0]] -= 1
        degree[pairs[e][1]] -= 1
    return order


def dense_candidate_seconds(edges: np.ndarray, num_nodes: int, sample: int, seed: int) -> float:
    """Mean seconds to score one candidate removal densely (all vertex walk indices of the graph without it)."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(edges), size=sample, replace=False)
    started = time.perf_counter()
    for e in picks:
        np.sort(vertex_walk_indices(np.delete(edges, e, axis=0), num_nodes, 2))
    return (time.perf_counter() - started) / sample


def candidate_evaluations(num_edges: int, chunk: int) -> int:
    """Σ over the rounds of a full order of the edges still remaining (each is scored once per round)."""
    return sum(range(num_edges, 0, -chunk))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["cora", "citeseer"])
    parser.add_argument("--chunk", type=int, default=100, help="removals per ranking round (the original's 100)")
    parser.add_argument("--sample", type=int, default=2, help="candidate edges timed for the dense extrapolation")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", default="resources/datasets")
    parser.add_argument("--skip-chunk1", action="store_true", help="do not time the exact greedy 2-WIS (minutes)")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = DataSource(Path(args.cache), resolve_mirror(None))

    rows = []
    for name in args.datasets:
        graph = data.graph(name)
        edges, n = graph.edges, graph.num_nodes
        heap_s, heap = timed(one_wis_order, edges, n)
        naive_s, naive = timed(one_wis_order_naive, edges, n)
        python_s, python = timed(one_wis_order_python, edges, n)
        if not (np.array_equal(heap, naive) and np.array_equal(heap, python)):
            raise SystemExit(f"{name}: the heap and the naive 1-WIS orders differ")
        fast_s, _ = timed(two_wis_order, edges, n, chunk_size=args.chunk)
        exact_s = float("nan") if args.skip_chunk1 else timed(two_wis_order, edges, n, chunk_size=1)[0]
        candidate_s = dense_candidate_seconds(edges, n, args.sample, seed=0)
        dense_s = candidate_s * candidate_evaluations(len(edges), args.chunk)
        rows.append(
            {
                "dataset": name,
                "nodes": n,
                "edges": len(edges),
                "one_wis_heap_s": heap_s,
                "one_wis_naive_s": naive_s,
                "one_wis_speedup": naive_s / heap_s,
                "one_wis_python_s": python_s,
                "one_wis_python_speedup": python_s / heap_s,
                "two_wis_fast_s": fast_s,
                "two_wis_fast_chunk1_s": exact_s,
                "dense_candidate_s": candidate_s,
                "two_wis_dense_extrapolated_s": dense_s,
                "two_wis_speedup": dense_s / fast_s,
            }
        )

    print(f"WIS removal orders, chunk {args.chunk} for 2-WIS, {torch.get_num_threads()} thread(s)")
    print()
    print(
        "| graph | n / m | 1-WIS heap | argmax, Python loop | speed-up | argmax, numpy | speed-up | 2-WIS fast "
        "(chunk 1) | 2-WIS dense, extrapolated | speed-up |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['dataset']} | {row['nodes']:,} / {row['edges']:,} | {1e3 * row['one_wis_heap_s']:.0f} ms | "
            f"{row['one_wis_python_s']:.1f} s | {row['one_wis_python_speedup']:.0f}× | "
            f"{row['one_wis_naive_s']:.2f} s | {row['one_wis_speedup']:.0f}× | {row['two_wis_fast_s']:.1f} s "
            f"({row['two_wis_fast_chunk1_s']:.0f} s) | {row['two_wis_dense_extrapolated_s'] / 3600:.1f} h "
            f"({row['dense_candidate_s']:.2f} s per candidate) | {row['two_wis_speedup']:,.0f}× |"
        )
    result = {"benchmark": "wis", "machine": machine(), "chunk": args.chunk, "rows": rows}
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
