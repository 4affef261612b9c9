"""Benchmark: one training epoch of Table 1's GAT (dense layers, one 32 × 32 adjacency shared by the batch) with
torch_geometric's ``DenseGATConv`` forward against ``dense_gat_forward`` (the same function and parameters, logits
laid out head-major so the softmax runs over the contiguous axis, in chunks the allocator reuses).

An epoch is forward, BCE, backward and an Adam step on random features of ``--pairs`` graphs; CPU seconds
(``time.process_time``), the best of ``--repeats`` epochs after a warm-up, the two forms measured alternately.

    python benchmarks/bench_gnn_gat.py [--pairs 2000] [--repeats 5] [--threads 1] [--out f.json]
"""

from __future__ import annotations

import argparse
import time
from unittest import mock

import torch

from _report import machine, write_json
from rankrepro.gnn import is_same_class_graphs as isc
from rankrepro.gnn import models as gnn


def epoch(model: gnn.GNN, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    """CPU seconds of one full-batch training epoch."""
    started = time.process_time()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x, isc.shared_adjacency()).squeeze(-1), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return time.process_time() - started


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.pairs, isc.NUM_VERTICES, 49)
    y = torch.randint(0, 2, (args.pairs,)).float()
    model = gnn.GNN("gat", 49, 16, 3, 1, graph_level=True, dense=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    torch_geometric = mock.patch.object(gnn, "dense_gat_forward", lambda conv, h, adj: conv(h, adj))
    with torch_geometric:
        epoch(model, optimizer, x, y)
    epoch(model, optimizer, x, y)
    old = new = float("inf")
    for _ in range(args.repeats):
        with torch_geometric:
            old = min(old, epoch(model, optimizer, x, y))
        new = min(new, epoch(model, optimizer, x, y))
    print(
        f"Table 1 GAT epoch ({args.pairs:,} graphs of 32 vertices, depth 3, width 16, 4 heads), {args.threads} "
        f"thread(s), CPU time, best of {args.repeats}"
    )
    print()
    print("| DenseGATConv | dense_gat_forward | speed-up |")
    print("|---:|---:|---:|")
    print(f"| {1e3 * old:.0f} ms | {1e3 * new:.0f} ms | {old / new:.1f}× |")
    result = {
        "benchmark": "gnn_gat",
        "machine": machine(),
        "pairs": args.pairs,
        "dense_gat_conv_s": old,
        "dense_gat_forward_s": new,
        "speedup": old / new,
    }
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
