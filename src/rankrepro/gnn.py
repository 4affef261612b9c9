"""Message-passing GNNs of chapter 4 (Razin, Verbin & Cohen 2023), built on torch_geometric's convolutions.

Every model is ``depth`` blocks of  conv → ReLU → LayerNorm  of width ``width`` on an input projection-free stack
(the first conv maps the input features), then, for graph prediction, mean pooling over each graph's vertices, and a
linear head. Convolutions (self-loops are part of every aggregation, as in the walk-index analysis):

- ``gcn``: GCNConv (symmetric normalisation, self-loops added);
- ``gat``: GATConv with ``heads`` heads of width // heads channels, concatenated (the paper: 4 heads × 4);
- ``gin``: GINConv with ε = 0 (not trained) and a 2-layer MLP with BatchNorm: (1 + ε)·x_v + Σ_{u ∈ N(v)} x_u;
- ``resgcn``: GCNConv blocks with a residual connection h ← h + block(h) after the first.

``dense=True`` builds the same model from torch_geometric's dense layers (DenseGCNConv, DenseGATConv, DenseGINConv),
which take node features ``(B, N, F)`` and an adjacency ``(B or 1, N, N)`` without self-loops: for a batch of graphs of
one shape (Table 1's 32-vertex graphs) a shared adjacency turns message passing into one matrix product, several
times faster than scatter over an edge list. Both forms compute the same function with the same parameters (tested).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rankrepro.errors import ConfigError

MODELS = ("gcn", "gat", "gin", "resgcn")


class VertexBatchNorm(nn.BatchNorm1d):
    """BatchNorm over every vertex of the batch for features of any shape ``(…, C)`` (BatchNorm1d would read a dense
    ``(B, N, C)`` input as N channels): statistics over all leading dimensions, as for the stacked vertices of
    the sparse form."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)


def _conv(kind: str, in_dim: int, width: int, heads: int, dense: bool) -> nn.Module:
    """One message-passing layer from ``in_dim`` to ``width`` channels (dense or edge-list form)."""
    from torch_geometric.nn import DenseGATConv, DenseGCNConv, DenseGINConv, GATConv, GCNConv, GINConv

    if kind in ("gcn", "resgcn"):
        return DenseGCNConv(in_dim, width) if dense else GCNConv(in_dim, width)
    if kind == "gat":
        if width % heads:
            raise ConfigError(f"GAT width {width} must be a multiple of its {heads} heads")
        if dense:
            return DenseGATConv(in_dim, width // heads, heads=heads, concat=True)
        return GATConv(in_dim, width // heads, heads=heads, concat=True)
    mlp = nn.Sequential(nn.Linear(in_dim, width), VertexBatchNorm(width), nn.ReLU(), nn.Linear(width, width))
    return DenseGINConv(mlp, eps=0.0, train_eps=False) if dense else GINConv(mlp, eps=0.0, train_eps=False)


class GNN(nn.Module):
    """``depth`` × (conv → ReLU → LayerNorm), optional mean pooling per graph, linear head to ``out_dim``; in the
    ``dense`` form the graph structure is an adjacency ``(B or 1, N, N)`` instead of an edge index."""

    def __init__(self, kind: str, in_dim: int, width: int, depth: int, out_dim: int, *, graph_level: bool,
                 heads: int = 4, dense: bool = False) -> None:
        super().__init__()
        if kind not in MODELS:
            raise ConfigError(f"unknown GNN '{kind}' (expected one of {MODELS})")
        if depth < 1 or width < 1:
            raise ConfigError(f"a GNN needs depth ≥ 1 and width ≥ 1 (got depth {depth}, width {width})")
        self.kind, self.graph_level, self.dense = kind, graph_level, dense
        self.convs = nn.ModuleList(_conv(kind, in_dim if k == 0 else width, width, heads, dense)
                                   for k in range(depth))
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(depth))
        self.head = nn.Linear(width, out_dim)

    def embed(self, x: Tensor, structure: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        """Vertex representations after the message-passing blocks; ``structure`` is the edge index (both
        directions), or the adjacency in the dense form. ``edge_weight`` (a per-edge mask, for UGS) scales messages
        where the convolution supports it (GCN, edge-list form)."""
        if edge_weight is not None and (self.dense or self.kind not in ("gcn", "resgcn")):
            raise ConfigError(f"edge weights need the edge-list form of a GCN-based model, not {self.kind}"
                              f"{' (dense)' if self.dense else ''}")
        h = x
        for k, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            message = conv(h, structure, edge_weight) if edge_weight is not None else conv(h, structure)
            out = norm(torch.relu(message))
            h = h + out if self.kind == "resgcn" and k > 0 else out
        return h

    def forward(self, x: Tensor, structure: Tensor, batch: Tensor | None = None,
                edge_weight: Tensor | None = None) -> Tensor:
        """Logits per vertex, or per graph for graph prediction: mean pooling over each graph's vertices (``batch``
        in the edge-list form, the vertex axis of ``(B, N, F)`` in the dense form)."""
        from torch_geometric.nn import global_mean_pool

        h = self.embed(x, structure, edge_weight)
        if self.graph_level:
            h = h.mean(dim=-2) if self.dense else global_mean_pool(h, batch)
        return self.head(h)
