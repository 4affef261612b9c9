"""Unified GNN Sparsification (UGS; Chen et al. 2021) adapted to edges only, as the chapter-4 baseline.

Round k = 1 … R: rewind the GCN to its initial weights θ₀, give every surviving edge {u, v} a learnable mask value
m_e (initialised to 1, applied to both directions as the GCN edge weight |m_e|), and train weights and mask for a
fixed number of epochs on

    cross-entropy(train vertices) + λ · Σ_e |m_e|;

then remove the ⌈f · (surviving edges)⌉ edges of smallest |m_e| (ties by edge order). The removal order lists the
edges in the order they were pruned; the edges that survive all R rounds follow, by their last |m_e| ascending.
With f = 5 % and R = 20 the rounds prune 1 − 0.95²⁰ ≈ 64 % of the edges.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from rankrepro.core.errors import ConfigError
from rankrepro.core.graphs import check_edges
from rankrepro.gnn.models import SparseOperator, StackedGNN, StackedStructure, WeightedGCNOperator, shared_features


def train_masked(
    model: nn.Module,
    features: Tensor | SparseOperator,
    labels: Tensor,
    train_mask: Tensor,
    edges: np.ndarray,
    *,
    l1: float,
    epochs: int,
    lr: float,
    weight_decay: float,
) -> Tensor:
    """Train a copy of the GCN ``model`` (from its current weights) and a mask over ``edges`` (all ones) for
    ``epochs`` full-batch Adam steps on CE(train) + l1·‖m‖₁ (weight decay on the weights only), the mask as the
    edge weight |m| of both directions (:class:`~rankrepro.gnn.models.WeightedGCNOperator`); return |m| per edge.
    ``model`` itself is left unchanged."""
    stacked = StackedGNN.from_models([model])
    dtype = next(iter(stacked.params.values())).dtype
    mask = nn.Parameter(torch.ones(len(edges), dtype=dtype))
    pattern = WeightedGCNOperator.pattern(edges, len(labels))
    optimizer = torch.optim.Adam(
        [
            {"params": list(stacked.params.values()), "weight_decay": weight_decay},
            {"params": [mask], "weight_decay": 0.0},
        ],
        lr=lr,
    )
    train_index = train_mask.nonzero().squeeze(1)
    for _ in range(epochs):
        structure = StackedStructure(1, len(labels), propagation=pattern.with_weight(mask.abs()))
        logits = stacked.forward(features, structure, training=True)[0]
        loss = F.cross_entropy(logits[train_index], labels[train_index]) + l1 * mask.abs().sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return mask.detach().abs()


def ugs_removal_order(
    make_model: Callable[[], nn.Module],
    features: Tensor,
    labels: Tensor,
    train_mask: Tensor,
    edges: np.ndarray,
    num_nodes: int,
    *,
    rounds: int,
    prune_fraction: float,
    l1: float,
    epochs: int,
    lr: float,
    weight_decay: float,
) -> np.ndarray:
    """The UGS removal order of ``edges`` (a permutation of range(m)); ``make_model()`` builds the (seeded) GCN whose
    initial weights every round rewinds to."""
    edges = check_edges(edges, num_nodes)
    if rounds < 0 or not 0.0 < prune_fraction < 1.0 or l1 < 0 or epochs < 1:
        raise ConfigError(
            f"UGS needs rounds ≥ 0, 0 < prune_fraction < 1, l1 ≥ 0 and epochs ≥ 1 (got rounds "
            f"{rounds}, prune_fraction {prune_fraction}, l1 {l1}, epochs {epochs})"
        )
    initial = make_model()  # never trained: every round starts from these weights
    features = shared_features(features)
    alive = np.arange(len(edges))
    order: list[int] = []
    magnitudes = np.zeros(len(alive))
    for _ in range(max(rounds, 1)):
        if len(alive) == 0:
            break
        magnitudes = train_masked(
            initial, features, labels, train_mask, edges[alive], l1=l1, epochs=epochs, lr=lr, weight_decay=weight_decay
        ).numpy()
        if rounds == 0:
            break
        ranked = np.argsort(magnitudes, kind="stable")
        pruned = ranked[: math.ceil(prune_fraction * len(alive))]
        order.extend(alive[pruned].tolist())
        keep = np.setdiff1d(np.arange(len(alive)), pruned)
        alive, magnitudes = alive[keep], magnitudes[keep]
    order.extend(alive[np.argsort(magnitudes, kind="stable")].tolist())
    return np.asarray(order, dtype=np.int64)
