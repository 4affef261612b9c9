"""Benchmark: CPU time per run and epoch of the edge-sparsification trainings (§4.2), one run at a time with
torch_geometric's layers (the former trainer) against k runs stacked in one program (``StackedGNN`` trained by
``train_vertex_classifiers``).

The graph is Cora-shaped and synthetic (seeded): 2,708 vertices, 5,278 undirected edges, 1,433 bag-of-words
features at Cora's 1.27 % density, 7 classes, an 80/10/10 split; every run keeps its own random half of the edges
(as the removal levels do). An epoch is what both trainers do per epoch: an Adam step (weight decay) on the
training vertices' cross-entropy, then the accuracy of the new parameters in evaluation mode. Early stopping is off
(patience = epochs), so both sides run the same number of epochs; CPU seconds (``time.process_time``), the best of
``--repeats``, old and new measured alternately in one process.

    python benchmarks/bench_gnn_sparsification.py [--runs 32] [--epochs 10] [--repeats 3] [--threads 1]
                                                  [--models gcn gin] [--out f.json]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.nn import functional as F

from _report import machine, write_json
from rankrepro.core.graphs import directed_edge_index, undirected_edges
from rankrepro.gnn import models as gnn
from rankrepro.gnn import training as gnn_training

NODES, EDGES, FEATURES, CLASSES, DENSITY, WIDTH, DEPTH = 2708, 5278, 1433, 7, 0.0127, 64, 3


def cora_shaped(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, dict[str, torch.Tensor]]:
    """Binary bag-of-words features, labels, undirected edges and split masks of Cora's sizes."""
    rng = np.random.default_rng(seed)
    features = torch.from_numpy((rng.random((NODES, FEATURES)) < DENSITY).astype(np.float32))
    labels = torch.from_numpy(rng.integers(0, CLASSES, NODES))
    pairs = undirected_edges(rng.integers(0, NODES, (2 * EDGES, 2)))
    edges = pairs[np.sort(rng.permutation(len(pairs))[:EDGES])]
    return features, labels, edges, gnn_training.random_split(NODES, (0.8, 0.1, 0.1), seed)


def one_at_a_time(
    models: list[gnn.GNN],
    features: torch.Tensor,
    labels: torch.Tensor,
    edge_sets: list[np.ndarray],
    masks: dict[str, torch.Tensor],
    epochs: int,
) -> float:
    """CPU seconds of ``epochs`` epochs of every run, one run after the other (the former trainer's epoch)."""
    started = time.process_time()
    for model, edges in zip(models, edge_sets):
        edge_index = torch.from_numpy(directed_edge_index(edges))
        optimizer = torch.optim.Adam(model.parameters(), lr=5e-4, weight_decay=1e-3)
        for _ in range(epochs):
            model.train()
            loss = F.cross_entropy(model(features, edge_index)[masks["train"]], labels[masks["train"]])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            model.eval()
            with torch.no_grad():
                logits = model(features, edge_index)
            [float((logits[m].argmax(-1) == labels[m]).float().mean()) for m in masks.values()]
    return time.process_time() - started


def stacked(
    models: list[gnn.GNN],
    features: torch.Tensor,
    labels: torch.Tensor,
    edge_sets: list[np.ndarray],
    masks: dict[str, torch.Tensor],
    epochs: int,
) -> float:
    """CPU seconds of ``epochs`` epochs of all runs as one stacked program (the current trainer)."""
    started = time.process_time()
    gnn_training.train_vertex_classifiers(
        gnn.StackedGNN.from_models(models),
        gnn.shared_features(features),
        labels,
        edge_sets,
        masks,
        lr=5e-4,
        weight_decay=1e-3,
        max_epochs=epochs,
        patience=epochs,
    )
    return time.process_time() - started


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", nargs="+", default=["gcn", "gin"])
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    features, labels, edges, masks = cora_shaped()
    rng = np.random.default_rng(1)
    edge_sets = [edges[np.sort(rng.permutation(len(edges))[: len(edges) // 2])] for _ in range(args.runs)]
    rows = []
    for kind in args.models:

        def fresh() -> list[gnn.GNN]:
            torch.manual_seed(0)
            return [gnn.GNN(kind, FEATURES, WIDTH, DEPTH, CLASSES, graph_level=False) for _ in range(args.runs)]

        old, new = float("inf"), float("inf")
        for _ in range(args.repeats):
            old = min(old, one_at_a_time(fresh(), features, labels, edge_sets, masks, args.epochs))
            new = min(new, stacked(fresh(), features, labels, edge_sets, masks, args.epochs))
        per_run_epoch = args.runs * args.epochs
        rows.append(
            {
                "model": kind,
                "one_at_a_time_ms": 1e3 * old / per_run_epoch,
                "stacked_ms": 1e3 * new / per_run_epoch,
                "speedup": old / new,
            }
        )
    print(
        f"Edge-sparsification training, CPU ms per run and epoch ({args.runs} runs of a Cora-shaped graph, depth "
        f"{DEPTH}, width {WIDTH}, {args.epochs} epochs, best of {args.repeats}), {args.threads} thread(s)"
    )
    print()
    print("| model | one run at a time (torch_geometric) | stacked runs | speed-up |")
    print("|---|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['model']} | {row['one_at_a_time_ms']:.1f} ms | {row['stacked_ms']:.1f} ms | "
            f"{row['speedup']:.1f}× |"
        )
    result = {
        "benchmark": "gnn_sparsification",
        "machine": machine(),
        "runs": args.runs,
        "epochs": args.epochs,
        "rows": rows,
    }
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
