"""Benchmark: CPU time per epoch of UGS's mask training (§4.2's UGS baseline: a GCN and a learnable per-edge mask,
CE + λ‖m‖₁) with torch_geometric's GCN and ``edge_weight`` (the former code) against the stacked GCN on a
``WeightedGCNOperator`` with sparse features (``ugs.train_masked``).

Same Cora-shaped synthetic graph as ``bench_gnn_sparsification.py``; depth 3, width 64, Adam as in the default tier;
CPU seconds (``time.process_time``) of ``--epochs`` epochs, the best of ``--repeats``, old and new alternately.

    python benchmarks/bench_gnn_ugs.py [--epochs 20] [--repeats 3] [--threads 1] [--out f.json]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.nn import functional as F

from _report import machine, write_json
from bench_gnn_sparsification import CLASSES, DEPTH, FEATURES, WIDTH, cora_shaped
from rankrepro.core.graphs import directed_edge_index
from rankrepro.gnn import models as gnn
from rankrepro.gnn import ugs

OPTIONS = {"l1": 1e-2, "lr": 5e-4, "weight_decay": 1e-3}


def torch_geometric_epochs(model: gnn.GNN, features, labels, train_mask, edges, epochs: int) -> float:
    """CPU seconds of the former mask training: torch_geometric's GCN with the mask as ``edge_weight``."""
    started = time.process_time()
    mask = torch.nn.Parameter(torch.ones(len(edges)))
    edge_index = torch.from_numpy(directed_edge_index(edges))
    optimizer = torch.optim.Adam(
        [
            {"params": model.parameters(), "weight_decay": OPTIONS["weight_decay"]},
            {"params": [mask], "weight_decay": 0.0},
        ],
        lr=OPTIONS["lr"],
    )
    for _ in range(epochs):
        logits = model(features, edge_index, edge_weight=mask.abs().repeat(2))
        loss = F.cross_entropy(logits[train_mask], labels[train_mask]) + OPTIONS["l1"] * mask.abs().sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.process_time() - started


def stacked_epochs(model: gnn.GNN, features, labels, train_mask, edges, epochs: int) -> float:
    """CPU seconds of ``ugs.train_masked`` (sparse features converted outside the timing, as UGS does once)."""
    started = time.process_time()
    ugs.train_masked(model, features, labels, train_mask, edges, epochs=epochs, **OPTIONS)
    return time.process_time() - started


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    features, labels, edges, masks = cora_shaped()
    sparse = gnn.shared_features(features)
    old = new = float("inf")
    for _ in range(args.repeats):
        torch.manual_seed(0)
        model = gnn.GNN("gcn", FEATURES, WIDTH, DEPTH, CLASSES, graph_level=False)
        old = min(old, torch_geometric_epochs(model, features, labels, masks["train"], edges, args.epochs))
        torch.manual_seed(0)
        model = gnn.GNN("gcn", FEATURES, WIDTH, DEPTH, CLASSES, graph_level=False)
        new = min(new, stacked_epochs(model, sparse, labels, masks["train"], edges, args.epochs))
    old_ms, new_ms = 1e3 * old / args.epochs, 1e3 * new / args.epochs
    print(
        f"UGS mask training, CPU ms per epoch (Cora-shaped graph, GCN depth {DEPTH}, width {WIDTH}, best of "
        f"{args.repeats}), {args.threads} thread(s)"
    )
    print()
    print("| torch_geometric GCN + edge_weight | stacked GCN + WeightedGCNOperator | speed-up |")
    print("|---:|---:|---:|")
    print(f"| {old_ms:.1f} ms | {new_ms:.1f} ms | {old / new:.1f}× |")
    result = {
        "benchmark": "gnn_ugs",
        "machine": machine(),
        "epochs": args.epochs,
        "torch_geometric_ms": old_ms,
        "stacked_ms": new_ms,
        "speedup": old / new,
    }
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
