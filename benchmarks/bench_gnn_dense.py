"""Benchmark: one training epoch of the Table 1 GNNs on a batch of Is-Same-Class graphs, edge-list vs dense layers.

Both forms compute the same function with the same parameters (tests/gnn/test_gnn_is_same_class.py); the edge-list
form runs torch_geometric's scatter-based convolutions on ``pairs`` disjoint copies of the 32-vertex graph, the dense
form the dense layers with one (1, 32, 32) adjacency broadcast over the batch. An epoch is forward, BCE, backward and an
Adam step on random features; the median of ``--repeats`` epochs after one warm-up is reported.

    python benchmarks/bench_gnn_dense.py [--pairs 1000] [--repeats 5] [--threads 1] [--out f.json]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from _report import machine, timed, write_json
from rankrepro.gnn import is_same_class_graphs as isc
from rankrepro.gnn.models import GNN


def epoch_seconds(model: GNN, x: torch.Tensor, y: torch.Tensor, structure: tuple, repeats: int) -> float:
    """Median seconds of one full-batch training epoch (after a warm-up epoch)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x, *structure).squeeze(-1), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()
    return statistics.median(timed(step)[0] for _ in range(repeats))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.pairs, isc.NUM_VERTICES, 49)
    y = torch.randint(0, 2, (args.pairs,)).float()
    edge_index, batch = isc.batched_graphs(args.pairs)
    rows = []
    for kind in ("gcn", "gat", "gin"):
        sparse = epoch_seconds(
            GNN(kind, 49, 16, 3, 1, graph_level=True), x.reshape(-1, 49), y, (edge_index, batch), args.repeats
        )
        dense = epoch_seconds(
            GNN(kind, 49, 16, 3, 1, graph_level=True, dense=True), x, y, (isc.shared_adjacency(),), args.repeats
        )
        rows.append({"model": kind, "edge_list_s": sparse, "dense_s": dense, "speedup": sparse / dense})
    print(f"Table 1 GNN epoch ({args.pairs:,} graphs of 32 vertices, depth 3, width 16), {args.threads} thread(s)")
    print()
    print("| model | edge-list layers (scatter) | dense layers, shared adjacency | speed-up |")
    print("|---|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['model']} | {1e3 * row['edge_list_s']:.0f} ms | {1e3 * row['dense_s']:.0f} ms | "
            f"{row['speedup']:.1f}× |"
        )
    result = {"benchmark": "gnn_dense", "machine": machine(), "pairs": args.pairs, "rows": rows}
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
