"""Message-passing GNNs of chapter 4 (Razin, Verbin & Cohen 2023), built on torch_geometric's convolutions.

Every model is ``depth`` blocks of  conv → ReLU → LayerNorm  of width ``width`` on an input projection-free stack
(the first conv maps the input features), then, for graph prediction, mean pooling over each graph's vertices, and a
linear head. Convolutions (self-loops are part of every aggregation, as in the walk-index analysis):

- ``gcn``: GCNConv (symmetric normalisation, self-loops added);
- ``gat``: GATConv with ``heads`` heads of width // heads channels, concatenated (the paper: 4 heads × 4);
- ``gin``: GINConv with ε = 0 (not trained) and a 2-layer MLP with BatchNorm: (1 + ε)·x_v + Σ_{u ∈ N(v)} x_u;
- ``resgcn``: GCNConv blocks with a residual connection h ← h + block(h) after the first.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rankrepro.errors import ConfigError

MODELS = ("gcn", "gat", "gin", "resgcn")


def _conv(kind: str, in_dim: int, width: int, heads: int) -> nn.Module:
    """One message-passing layer from ``in_dim`` to ``width`` channels."""
    from torch_geometric.nn import GATConv, GCNConv, GINConv

    if kind in ("gcn", "resgcn"):
        return GCNConv(in_dim, width)
    if kind == "gat":
        if width % heads:
            raise ConfigError(f"GAT width {width} must be a multiple of its {heads} heads")
        return GATConv(in_dim, width // heads, heads=heads, concat=True)
    mlp = nn.Sequential(nn.Linear(in_dim, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, width))
    return GINConv(mlp, eps=0.0, train_eps=False)


class GNN(nn.Module):
    """``depth`` × (conv → ReLU → LayerNorm), optional mean pooling per graph, linear head to ``out_dim``."""

    def __init__(self, kind: str, in_dim: int, width: int, depth: int, out_dim: int, *, graph_level: bool,
                 heads: int = 4) -> None:
        super().__init__()
        if kind not in MODELS:
            raise ConfigError(f"unknown GNN '{kind}' (expected one of {MODELS})")
        if depth < 1 or width < 1:
            raise ConfigError(f"a GNN needs depth ≥ 1 and width ≥ 1 (got depth {depth}, width {width})")
        self.kind, self.graph_level = kind, graph_level
        self.convs = nn.ModuleList(_conv(kind, in_dim if k == 0 else width, width, heads) for k in range(depth))
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(depth))
        self.head = nn.Linear(width, out_dim)

    def embed(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        """Vertex representations after the message-passing blocks. ``edge_weight`` (a per-edge mask, for UGS)
        scales messages where the convolution supports it (GCN)."""
        h = x
        for k, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            message = conv(h, edge_index, edge_weight) if self.kind in ("gcn", "resgcn") else conv(h, edge_index)
            out = norm(torch.relu(message))
            h = h + out if self.kind == "resgcn" and k > 0 else out
        return h

    def forward(self, x: Tensor, edge_index: Tensor, batch: Tensor | None = None,
                edge_weight: Tensor | None = None) -> Tensor:
        """Logits per vertex, or per graph (mean pooling over ``batch``) for graph prediction."""
        from torch_geometric.nn import global_mean_pool

        h = self.embed(x, edge_index, edge_weight)
        if self.graph_level:
            h = global_mean_pool(h, batch)
        return self.head(h)
