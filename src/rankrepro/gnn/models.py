"""Message-passing GNNs of chapter 4 (Razin, Verbin & Cohen 2023), built on torch_geometric's convolutions.

Every model is ``depth`` blocks of  conv → ReLU → LayerNorm  of width ``width`` on an input projection-free stack
(the first conv maps the input features), then, for graph prediction, mean pooling over each graph's vertices, and a
linear head. Convolutions (self-loops are part of every aggregation, as in the walk-index analysis):

- ``gcn``: GCNConv (symmetric normalisation, self-loops added);
- ``gat``: GATConv with ``heads`` heads of width // heads channels, concatenated (the paper: 4 heads × 4);
- ``gin``: GINConv with ε = 0 (not trained) and a 2-layer MLP with BatchNorm: (1 + ε)·x_v + Σ_{u ∈ N(v)} x_u;
- ``resgcn``: the ResGCN of the paper's appendix, DeeperGCN's pre-activation residual network (Li et al. 2020,
  "res+", the original's ``deeper_gcn``): a linear encoder to ``width`` channels, then h ← conv₀(h) and, for
  k = 1 … depth − 1, h ← h + conv_k(ReLU(BN_{k−1}(h))), then ReLU(BN_{depth−1}(h)) into the head; conv is GENConv
  with max aggregation and a one-layer MLP: conv(h)_v = W (h_v + max_{u ∈ N(v)} (ReLU(h_u) + ε)) + b (the max is 0
  for a vertex without neighbours; ε = 1e-7). No dropout (the protocol's; DeeperGCN's default is 0.5).

``dense=True`` builds the same model from torch_geometric's dense layers (DenseGCNConv, DenseGATConv, DenseGINConv),
which take node features ``(B, N, F)`` and an adjacency ``(B or 1, N, N)`` without self-loops: for a batch of graphs of
one shape (Table 1's 32-vertex graphs) a shared adjacency turns message passing into one matrix product, several
times faster than scatter over an edge list. Both forms compute the same function with the same parameters (tested).
The dense GAT runs :func:`dense_gat_forward` (DenseGATConv's function and parameters, laid out head-major).

:class:`StackedGNN` holds k vertex classifiers of one architecture (the edge-list form, ``graph_level=False``) as
one program: every parameter gains a leading run axis, the runs' graphs become one block-diagonal operator
(:func:`stacked_structure`) and the shared input features enter through one product X·[W_1 … W_k] (sparse when
the features are, as Cora's bag of words). It computes, run by run, the function of :class:`GNN` with the same
parameters (tested against torch_geometric's layers).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from rankrepro.core.errors import ConfigError
from rankrepro.core.graphs import adjacency

MODELS = ("gcn", "gat", "gin", "resgcn")
#: GENConv's message offset ε: a message is ReLU(h_u) + ε (DeeperGCN's and torch_geometric's 1e-7)
GEN_MESSAGE_EPS = 1e-7


class VertexBatchNorm(nn.BatchNorm1d):
    """BatchNorm over every vertex of the batch for features of any shape ``(…, C)`` (BatchNorm1d would read a dense
    ``(B, N, C)`` input as N channels): statistics over all leading dimensions, as for the stacked vertices of
    the sparse form."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)


def _conv(kind: str, in_dim: int, width: int, heads: int, dense: bool) -> nn.Module:
    """One message-passing layer from ``in_dim`` to ``width`` channels (dense or edge-list form)."""
    from torch_geometric.nn import DenseGATConv, DenseGCNConv, DenseGINConv, GATConv, GCNConv, GINConv

    if kind == "gcn":
        return DenseGCNConv(in_dim, width) if dense else GCNConv(in_dim, width)
    if kind == "resgcn":  # one module for both forms: the dense form runs dense_gen_forward with its parameters
        from torch_geometric.nn import GENConv

        return GENConv(in_dim, width, aggr="max", num_layers=1, bias=True, eps=GEN_MESSAGE_EPS)
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

    def __init__(
        self,
        kind: str,
        in_dim: int,
        width: int,
        depth: int,
        out_dim: int,
        *,
        graph_level: bool,
        heads: int = 4,
        dense: bool = False,
    ) -> None:
        super().__init__()
        if kind not in MODELS:
            raise ConfigError(f"unknown GNN '{kind}' (expected one of {MODELS})")
        if depth < 1 or width < 1:
            raise ConfigError(f"a GNN needs depth ≥ 1 and width ≥ 1 (got depth {depth}, width {width})")
        self.kind, self.graph_level, self.dense = kind, graph_level, dense
        residual = kind == "resgcn"
        if residual:
            self.encoder = nn.Linear(in_dim, width)
        self.convs = nn.ModuleList(
            _conv(kind, in_dim if k == 0 and not residual else width, width, heads, dense) for k in range(depth)
        )
        self.norms = nn.ModuleList(VertexBatchNorm(width) if residual else nn.LayerNorm(width) for _ in range(depth))
        self.head = nn.Linear(width, out_dim)

    def embed(self, x: Tensor, structure: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        """Vertex representations after the message-passing blocks; ``structure`` is the edge index (both
        directions), or the adjacency in the dense form. ``edge_weight`` (a per-edge mask, for UGS) scales messages
        where the convolution supports it (GCN, edge-list form)."""
        if edge_weight is not None and (self.dense or self.kind != "gcn"):
            raise ConfigError(
                f"edge weights need the edge-list form of a GCN, not {self.kind}{' (dense)' if self.dense else ''}"
            )
        if self.kind == "resgcn":
            return self._residual_embed(x, structure)
        h = x
        for conv, norm in zip(self.convs, self.norms):
            if edge_weight is not None:
                message = conv(h, structure, edge_weight)
            elif self.dense and self.kind == "gat":
                message = dense_gat_forward(conv, h, structure)
            else:
                message = conv(h, structure)
            h = norm(torch.relu(message))
        return h

    def _residual_embed(self, x: Tensor, structure: Tensor) -> Tensor:
        """ResGCN (DeeperGCN's res+): h = conv₀(encoder(x)); h ← h + conv_k(ReLU(BN_{k−1}(h))) for k ≥ 1; then
        ReLU(BN_last(h))."""

        def conv(k: int, h: Tensor) -> Tensor:
            return dense_gen_forward(self.convs[k], h, structure) if self.dense else self.convs[k](h, structure)

        h = conv(0, self.encoder(x))
        for k in range(1, len(self.convs)):
            h = h + conv(k, torch.relu(self.norms[k - 1](h)))
        return torch.relu(self.norms[-1](h))

    def forward(
        self, x: Tensor, structure: Tensor, batch: Tensor | None = None, edge_weight: Tensor | None = None
    ) -> Tensor:
        """Logits per vertex, or per graph for graph prediction: mean pooling over each graph's vertices (``batch``
        in the edge-list form, the vertex axis of ``(B, N, F)`` in the dense form)."""
        from torch_geometric.nn import global_mean_pool

        h = self.embed(x, structure, edge_weight)
        if self.graph_level:
            h = h.mean(dim=-2) if self.dense else global_mean_pool(h, batch)
        return self.head(h)


# ------------------------------------------------------------------------- dense GAT over a shared adjacency


def dense_gen_forward(conv: nn.Module, h: Tensor, adj: Tensor) -> Tensor:
    """torch_geometric's ``GENConv`` (max aggregation, one-layer MLP, no edge features) on dense graphs:
    out_v = W (h_v + max_{u : adj_vu ≠ 0} (ReLU(h_u) + ε)) + b, the max 0 where v has no neighbour. ``h``:
    ``(B, N, C)``; ``adj``: ``(B or 1, N, N)`` without self-loops. Materialises ``(B, N, N, C)``: small graphs only."""
    messages = (torch.relu(h) + conv.eps)[:, None, :, :]  # (B, 1, N_u, C)
    linked = (adj != 0)[..., None]  # (B or 1, N_v, N_u, 1)
    pooled = messages.masked_fill(~linked, float("-inf")).amax(dim=2)
    pooled = pooled.masked_fill(~linked.any(dim=2), 0.0)
    return conv.mlp(h + pooled)


#: attention entries (graphs × heads × N × N) per chunk of :func:`dense_gat_forward`: 4 MB tensors, which the
#: allocator reuses from epoch to epoch (Table 1's whole batch, 2,000 × 4 × 32 × 32 entries, would be 32 MB tensors
#: that come back as fresh pages at every call; 2^17 to 2^20 cost the same there, 2^22 is 10 % slower)
GAT_CHUNK_ENTRIES = 1 << 20


def _attention_mask(adj: Tensor) -> Tensor:
    """Additive attention mask of a dense adjacency ``(B or 1, N, N)`` with self-loops added: 0 where
    j ∈ N(i) ∪ {i}, −∞ elsewhere, shaped ``(B or 1, 1, N, N)`` to broadcast over heads."""
    n = adj.shape[-1]
    linked = (adj != 0) | torch.eye(n, dtype=torch.bool, device=adj.device)
    return torch.zeros(linked.shape, dtype=adj.dtype, device=adj.device).masked_fill_(~linked, float("-inf"))[:, None]


def dense_gat_forward(conv: nn.Module, x: Tensor, adj: Tensor) -> Tensor:
    """The function of torch_geometric's ``DenseGATConv`` (self-loops added, no dropout, no node mask) with its
    parameters, computed head-major. For graph b, head h, with z_i = (W x_i)_h:

        e_ij = LeakyReLU(⟨a_dst, z_i⟩ + ⟨a_src, z_j⟩)  for j ∈ N(i) ∪ {i},   α_ij = softmax_j e_ij,
        out_i = ‖_h Σ_j α_ij z_j + bias   (heads concatenated; averaged when ``concat`` is false).

    The 2H attention scores of every vertex come from one product with the block-diagonal [a_src | a_dst]; the
    logits are laid out ``(B, H, N, N)``, so the softmax runs over the contiguous last axis with an additive −∞
    mask; graphs go in chunks of at most :data:`GAT_CHUNK_ENTRIES` attention entries. ``x``: ``(B, N, F)``;
    ``adj``: ``(B or 1, N, N)`` 0/1 without self-loops."""
    if conv.training and conv.dropout > 0:
        raise ConfigError("dense_gat_forward computes GAT without attention dropout")
    x = x.unsqueeze(0) if x.dim() == 2 else x
    adj = adj.unsqueeze(0) if adj.dim() == 2 else adj
    batch, n, _ = x.shape
    heads, channels = conv.heads, conv.out_channels
    mask = _attention_mask(adj)
    flat = conv.lin(x)  # (B, N, H·C)
    scores_matrix = torch.cat(
        [
            torch.block_diag(*conv.att_src.view(heads, channels, 1)),
            torch.block_diag(*conv.att_dst.view(heads, channels, 1)),
        ],
        dim=1,
    )  # (H·C, 2H)
    scores = (flat @ scores_matrix).transpose(1, 2).contiguous()  # (B, 2H, N): ⟨a_src, z_j⟩, ⟨a_dst, z_i⟩
    source, target = scores[:, :heads, None, :], scores[:, heads:, :, None]  # (B, H, 1, N), (B, H, N, 1)
    z = flat.view(batch, n, heads, channels).transpose(1, 2).contiguous()  # (B, H, N, C)
    step = max(1, GAT_CHUNK_ENTRIES // (heads * n * n))
    masks = [mask] * len(range(0, batch, step)) if mask.shape[0] == 1 else mask.split(step)
    outs = []  # split, not sliced: one backward step gathers the chunks' gradients
    for t, s, m, part in zip(target.split(step), source.split(step), masks, z.split(step)):
        outs.append(torch.softmax(F.leaky_relu(t + s, conv.negative_slope) + m, dim=-1) @ part)
    out = torch.cat(outs).transpose(1, 2)  # (B, N, H, C)
    out = out.reshape(batch, n, heads * channels) if conv.concat else out.mean(dim=2)
    return out + conv.bias if conv.bias is not None else out


# ------------------------------------------------------------------------ stacked runs (vertex prediction)


class _SparseProduct(torch.autograd.Function):
    """``A @ H`` for a constant sparse ``A`` whose transpose is given: the backward is ``Aᵀ @ G`` without a
    transposition at run time (torch's own backward of a CSR product transposes A at every call)."""

    @staticmethod
    def forward(ctx, matrix: Tensor, transpose: Tensor, dense: Tensor) -> Tensor:
        ctx.transpose = transpose
        return matrix @ dense

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[None, None, Tensor]:
        return None, None, ctx.transpose @ grad


@dataclass(frozen=True, eq=False)
class SparseOperator:
    """A constant sparse matrix (CSR) with its transpose; ``op @ H`` is differentiable in H."""

    matrix: Tensor
    transpose: Tensor

    @classmethod
    def from_scipy(cls, matrix: sp.spmatrix, dtype: torch.dtype, symmetric: bool = False) -> SparseOperator:
        """Both CSR forms of a scipy matrix (the transpose is the matrix itself when ``symmetric``)."""

        def csr(m: sp.spmatrix) -> Tensor:
            m = sp.csr_matrix(m)
            m.sort_indices()
            with warnings.catch_warnings():  # "sparse CSR support is in beta": the product is all we use
                warnings.simplefilter("ignore", UserWarning)
                return torch.sparse_csr_tensor(
                    torch.from_numpy(m.indptr.astype(np.int64)),
                    torch.from_numpy(m.indices.astype(np.int64)),
                    torch.from_numpy(m.data).to(dtype),
                    m.shape,
                    check_invariants=False,
                )

        forward = csr(matrix)
        return cls(forward, forward if symmetric else csr(matrix.T))

    @property
    def shape(self) -> torch.Size:
        return self.matrix.shape

    def __matmul__(self, dense: Tensor) -> Tensor:
        return _SparseProduct.apply(self.matrix, self.transpose, dense)


class _WeightedSymmetricProduct(torch.autograd.Function):
    """``A @ H`` for a symmetric sparse ``A`` with a fixed CSR pattern and differentiable values: ∂/∂H = A G
    (A = Aᵀ) and ∂/∂a_ij = ⟨G_i, H_j⟩ (one sampled product over the pattern)."""

    @staticmethod
    def forward(ctx, values: Tensor, dense: Tensor, crow: Tensor, col: Tensor) -> Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            matrix = torch.sparse_csr_tensor(
                crow, col, values.detach(), (len(crow) - 1, dense.shape[0]), check_invariants=False
            )
        ctx.matrix = matrix
        ctx.save_for_backward(dense)
        return matrix @ dense

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, None, None]:
        (dense,) = ctx.saved_tensors
        grad_values = torch.sparse.sampled_addmm(ctx.matrix, grad, dense.t(), beta=0.0).values()
        return grad_values, ctx.matrix @ grad, None, None


@dataclass(frozen=True, eq=False)
class WeightedGCNOperator:
    """GCN propagation D^-1/2 (A_w + I) D^-1/2 of one graph with learnable edge weights w (torch_geometric's
    ``gcn_norm`` with ``edge_weight``: d_i = 1 + Σ_j w_ij, entry (i, j) = w_ij / sqrt(d_i d_j), self-loop
    1 / d_i): the CSR pattern of A + I is fixed (:meth:`pattern`), the entries are computed once per weight
    (:meth:`with_weight`) and carry the gradient to it."""

    crow: Tensor
    col: Tensor
    row: Tensor
    source: Tensor  # per CSR entry: its undirected edge, or m + v for the self-loop of v
    num_nodes: int
    values: Tensor | None = None

    @classmethod
    def pattern(cls, edges: np.ndarray, num_nodes: int) -> WeightedGCNOperator:
        """The (weightless) pattern of undirected ``edges`` ``(m, 2)``, u < v, with a self-loop per vertex."""
        pairs = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
        m, loops = len(pairs), np.arange(num_nodes)
        rows = np.concatenate([pairs[:, 0], pairs[:, 1], loops])
        cols = np.concatenate([pairs[:, 1], pairs[:, 0], loops])
        source = np.concatenate([np.arange(m), np.arange(m), m + loops])
        order = np.lexsort((cols, rows))
        crow = np.searchsorted(rows[order], np.arange(num_nodes + 1))
        return cls(
            torch.from_numpy(crow),
            torch.from_numpy(cols[order]),
            torch.from_numpy(rows[order]),
            torch.from_numpy(source[order]),
            num_nodes,
        )

    def with_weight(self, weight: Tensor) -> WeightedGCNOperator:
        """The operator for edge weights ``weight`` ``(m,)`` (one per undirected edge, both directions)."""
        raw = torch.cat([weight, weight.new_ones(self.num_nodes)])[self.source]
        scale = torch.zeros(self.num_nodes, dtype=raw.dtype).index_add_(0, self.row, raw).rsqrt()
        return replace(self, values=scale[self.row] * raw * scale[self.col])

    def __matmul__(self, dense: Tensor) -> Tensor:
        if self.values is None:
            raise ValueError("a WeightedGCNOperator needs its edge weights (with_weight) before a product")
        return _WeightedSymmetricProduct.apply(self.values, dense, self.crow, self.col)


#: below this fraction of non-zeros, shared input features enter as a sparse operator
SPARSE_FEATURES_DENSITY = 0.1


def shared_features(features: Tensor) -> Tensor | SparseOperator:
    """The vertex features every run reads: a :class:`SparseOperator` when at most :data:`SPARSE_FEATURES_DENSITY`
    of the entries are non-zero (X·W then costs nnz(X)·width instead of n·f·width), else the dense tensor."""
    if features.count_nonzero() > SPARSE_FEATURES_DENSITY * features.numel():
        return features
    return SparseOperator.from_scipy(sp.csr_matrix(features.numpy()), features.dtype)


@dataclass(frozen=True, eq=False)
class StackedStructure:
    """The graphs of k runs on the same n vertices as one disjoint union on k·n vertices (run r's vertex v is
    r·n + v, the row of the ``(k, n, c)`` features viewed as ``(k·n, c)``): the block-diagonal propagation operator
    of GCN (D_r^-1/2 (A_r + I) D_r^-1/2) or GIN (A_r + I), or, for GAT, the union's message edges (source, target)
    with one self-loop per vertex (for ResGCN's GENConv, without self-loops)."""

    runs: int
    num_nodes: int
    propagation: SparseOperator | WeightedGCNOperator | None = None
    source: Tensor | None = None
    target: Tensor | None = None


def _gcn_normalised(edges: np.ndarray, num_nodes: int) -> sp.csr_matrix:
    """D^-1/2 (A + I) D^-1/2 with D the degrees of A + I (torch_geometric's ``gcn_norm`` with unit weights)."""
    a = adjacency(edges, num_nodes, self_loops=True).astype(np.float64)
    scale = sp.diags(1.0 / np.sqrt(np.asarray(a.sum(axis=1)).ravel()))
    return sp.csr_matrix(scale @ a @ scale)


def stacked_structure(
    kind: str, edge_sets: Sequence[np.ndarray], num_nodes: int, dtype: torch.dtype = torch.float32
) -> StackedStructure:
    """What :class:`StackedGNN` of ``kind`` needs of the runs' undirected edge sets (each ``(m_r, 2)``, u < v)."""
    runs = len(edge_sets)
    if kind in ("gat", "resgcn"):
        sources, targets = [], []
        for r, edges in enumerate(edge_sets):
            pairs = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
            loops = np.arange(num_nodes) if kind == "gat" else np.arange(0)
            sources.append(np.concatenate([pairs[:, 0], pairs[:, 1], loops]) + r * num_nodes)
            targets.append(np.concatenate([pairs[:, 1], pairs[:, 0], loops]) + r * num_nodes)
        return StackedStructure(
            runs,
            num_nodes,
            source=torch.from_numpy(np.concatenate(sources)),
            target=torch.from_numpy(np.concatenate(targets)),
        )
    if kind == "gcn":
        blocks = [_gcn_normalised(edges, num_nodes) for edges in edge_sets]
    elif kind == "gin":
        blocks = [adjacency(edges, num_nodes, self_loops=True).astype(np.float64) for edges in edge_sets]
    else:
        raise ConfigError(f"unknown GNN '{kind}' (expected one of {MODELS})")
    operator = SparseOperator.from_scipy(sp.block_diag(blocks, format="csr"), dtype, symmetric=True)
    return StackedStructure(runs, num_nodes, propagation=operator)


def _linear(h: Tensor | SparseOperator, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Run r's h_r W_rᵀ (+ b_r) for every run: ``h`` ``(k, n, in)``, or features ``(n, in)`` shared by the runs
    (then one product X·[W_1ᵀ … W_kᵀ]); weight ``(k, out, in)``, bias ``(k, out)`` → ``(k, n, out)``."""
    runs, out, f = weight.shape
    if isinstance(h, SparseOperator) or h.dim() == 2:
        product = (h @ weight.permute(2, 0, 1).reshape(f, runs * out)).view(-1, runs, out).transpose(0, 1)
        product = product.contiguous()
        return product + bias[:, None] if bias is not None else product
    if bias is None:
        return torch.bmm(h, weight.transpose(1, 2))
    return torch.baddbmm(bias[:, None], h, weight.transpose(1, 2))


def _propagate(operator: SparseOperator | WeightedGCNOperator, h: Tensor) -> Tensor:
    """The block-diagonal operator applied to every run's features: ``(k, n, c)`` → ``(k, n, c)``."""
    runs, n, c = h.shape
    return (operator @ h.reshape(runs * n, c)).view(runs, n, c)


def _layer_norm(h: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    """``LayerNorm`` over the channels with run r's scale and shift: ``h`` ``(k, n, c)``, one fused call per run
    (its backward gives the gradients of h, scale and shift in one pass; about twice as fast as one call without
    affine parameters followed by a broadcast scale and shift)."""
    return torch.stack(
        [F.layer_norm(x, x.shape[-1:], w, b, eps) for x, w, b in zip(h.unbind(0), weight.unbind(0), bias.unbind(0))]
    )


def _batch_norm(
    h: Tensor,
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    *,
    training: bool,
    momentum: float,
    eps: float,
) -> Tensor:
    """``BatchNorm1d`` over each run's vertices, one fused call per run on ``h[r]`` ``(n, c)``; in training the
    running statistics ``(k, c)`` move in place."""
    return torch.stack(
        [
            F.batch_norm(x, m, v, w, b, training, momentum, eps)
            for x, m, v, w, b in zip(
                h.unbind(0), running_mean.unbind(0), running_var.unbind(0), weight.unbind(0), bias.unbind(0)
            )
        ]
    )


def _gat_propagate(
    structure: StackedStructure, z: Tensor, att_src: Tensor, att_dst: Tensor, heads: int, negative_slope: float
) -> Tensor:
    """GATConv's attention on the union graph: z ``(k, n, H·C)``, att ``(k, 1, H, C)``; for every message edge
    j → i, e = LeakyReLU(⟨a_src, z_j⟩ + ⟨a_dst, z_i⟩) per head, α = softmax over i's incoming edges,
    out_i = Σ_j α_ij z_j (heads concatenated)."""
    from torch_geometric.utils import softmax

    runs, n, width = z.shape
    channels = width // heads
    per_head = z.view(runs, n, heads, channels)
    alpha_src = (per_head * att_src.view(runs, 1, heads, channels)).sum(-1).view(-1, heads)
    alpha_dst = (per_head * att_dst.view(runs, 1, heads, channels)).sum(-1).view(-1, heads)
    logits = F.leaky_relu(alpha_src[structure.source] + alpha_dst[structure.target], negative_slope)
    alpha = softmax(logits, structure.target, num_nodes=runs * n)
    flat = per_head.reshape(runs * n, heads, channels)
    out = torch.zeros_like(flat).index_add_(0, structure.target, flat[structure.source] * alpha[..., None])
    return out.view(runs, n, width)


class _NeighbourMax(torch.autograd.Function):
    """m_v = max_{u → v} x_u per channel (0 where v receives no message) for values ``x`` ``(V, C)`` and message edges
    (source, target); the gradient of m_v reaches the maximising sources, split evenly on a tie (torch's
    ``scatter_reduce`` convention), in a third of the time of torch's own backward of ``scatter_reduce``."""

    @staticmethod
    def forward(ctx, values: Tensor, source: Tensor, target: Tensor) -> Tensor:
        count, channels = values.shape
        messages = values[source]
        index = target[:, None].expand(-1, channels)
        pooled = values.new_zeros(count, channels).scatter_reduce(0, index, messages, "amax", include_self=False)
        ctx.save_for_backward(messages, pooled, source, target)
        return pooled

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        messages, pooled, source, target = ctx.saved_tensors
        count, channels = grad.shape
        winning = (messages == pooled[target]).to(grad.dtype)
        ties = grad.new_zeros(count, channels).index_add_(0, target, winning).clamp_(min=1.0)
        share = (grad / ties)[target] * winning
        return grad.new_zeros(count, channels).index_add_(0, source, share), None, None


def _max_aggregate(structure: StackedStructure, h: Tensor, eps: float) -> Tensor:
    """GENConv's max aggregation on the union graph: h ``(k, n, c)`` → m_v = max over the message edges u → v of
    ReLU(h_u) + ε, 0 where v receives none."""
    runs, n, c = h.shape
    values = (torch.relu(h) + eps).reshape(runs * n, c)
    return _NeighbourMax.apply(values, structure.source, structure.target).view(runs, n, c)


@dataclass(eq=False)
class StackedGNN:
    """k vertex classifiers of one architecture (:class:`GNN`, edge-list form, ``graph_level=False``) as stacked
    tensors: ``params`` and ``buffers`` map :class:`GNN`'s parameter / buffer names to the runs' values stacked
    along a new leading axis (parameters are leaves that require grad). Features are ``(k, n, c)``."""

    kind: str
    depth: int
    heads: int
    params: dict[str, Tensor]
    buffers: dict[str, Tensor]
    momentum: float = 0.1
    eps: float = 1e-5
    layer_norm_eps: float = 1e-5
    negative_slope: float = 0.2
    message_eps: float = GEN_MESSAGE_EPS

    @classmethod
    def from_models(cls, models: Sequence[GNN]) -> StackedGNN:
        """Stack the parameters and buffers of ``models`` (one kind and shape; edge-list vertex classifiers)."""
        first = models[0]
        if first.graph_level or first.dense or any(m.kind != first.kind for m in models):
            raise ConfigError("StackedGNN stacks edge-list vertex classifiers of one kind")
        states = [dict(m.named_parameters()) for m in models]
        params = {name: torch.stack([s[name].detach() for s in states]).requires_grad_() for name in states[0]}
        buffers = {
            name: torch.stack([dict(m.named_buffers())[name] for m in models]).clone()
            for name, _ in first.named_buffers()
            if name.endswith(("running_mean", "running_var"))
        }
        conv, options = first.convs[0], {"layer_norm_eps": first.norms[0].eps}
        if first.kind == "gin":
            if any(float(c.eps) != 0.0 for m in models for c in m.convs):
                raise ConfigError("StackedGNN's GIN aggregates (A + I) h: ε must be 0")
            options.update(momentum=conv.nn[1].momentum, eps=conv.nn[1].eps)
        if first.kind == "resgcn":
            options.update(momentum=first.norms[0].momentum, eps=first.norms[0].eps, message_eps=conv.eps)
        if first.kind == "gat":
            options.update(negative_slope=conv.negative_slope)
        heads = conv.heads if first.kind == "gat" else 1
        return cls(first.kind, len(first.convs), heads, params, buffers, **options)

    @property
    def runs(self) -> int:
        """Number of stacked runs k."""
        return next(iter(self.params.values())).shape[0]

    @property
    def train_equals_eval(self) -> bool:
        """Whether training and evaluation mode compute the same function (no BatchNorm: GCN and GAT)."""
        return self.kind not in ("gin", "resgcn")

    def select(self, index: Tensor) -> StackedGNN:
        """The stacked model of the runs ``index`` (copies; new leaves)."""
        params = {name: p.detach()[index].clone().requires_grad_() for name, p in self.params.items()}
        buffers = {name: b[index].clone() for name, b in self.buffers.items()}
        return StackedGNN(
            self.kind,
            self.depth,
            self.heads,
            params,
            buffers,
            self.momentum,
            self.eps,
            self.layer_norm_eps,
            self.negative_slope,
            self.message_eps,
        )

    def state_dict(self, run: int) -> dict[str, Tensor]:
        """Run ``run``'s parameters and running statistics under :class:`GNN`'s names."""
        return {**{n: p.detach()[run] for n, p in self.params.items()}, **{n: b[run] for n, b in self.buffers.items()}}

    def _conv(self, k: int, h: Tensor | SparseOperator, structure: StackedStructure, training: bool) -> Tensor:
        """Layer k's convolution (before ReLU) for every run."""
        p, name = self.params, f"convs.{k}"
        if self.kind == "gcn":
            z = _propagate(structure.propagation, _linear(h, p[f"{name}.lin.weight"]))
            return z + p[f"{name}.bias"][:, None]
        if self.kind == "gin":  # (A + I)(h W₁ᵀ) + b₁ = ((A + I) h) W₁ᵀ + b₁: the product with W₁ first
            z = _propagate(structure.propagation, _linear(h, p[f"{name}.nn.0.weight"]))
            z = _batch_norm(
                z + p[f"{name}.nn.0.bias"][:, None],
                p[f"{name}.nn.1.weight"],
                p[f"{name}.nn.1.bias"],
                self.buffers[f"{name}.nn.1.running_mean"],
                self.buffers[f"{name}.nn.1.running_var"],
                training=training,
                momentum=self.momentum,
                eps=self.eps,
            )
            return _linear(torch.relu(z), p[f"{name}.nn.3.weight"], p[f"{name}.nn.3.bias"])
        z = _gat_propagate(
            structure,
            _linear(h, p[f"{name}.lin.weight"]),
            p[f"{name}.att_src"],
            p[f"{name}.att_dst"],
            self.heads,
            self.negative_slope,
        )
        return z + p[f"{name}.bias"][:, None]

    def forward(self, features: Tensor | SparseOperator, structure: StackedStructure, *, training: bool) -> Tensor:
        """Logits ``(k, n, out)`` of every run on its own graph: ``depth`` × (conv → ReLU → LayerNorm), or ResGCN's
        pre-activation residual blocks, then the linear head (see :class:`GNN`)."""
        if self.kind == "resgcn":
            h = self._residual_embed(features, structure, training)
            return _linear(h, self.params["head.weight"], self.params["head.bias"])
        h: Tensor | SparseOperator = features
        for k in range(self.depth):
            out = torch.relu(self._conv(k, h, structure, training))
            h = _layer_norm(out, self.params[f"norms.{k}.weight"], self.params[f"norms.{k}.bias"], self.layer_norm_eps)
        return _linear(h, self.params["head.weight"], self.params["head.bias"])

    def _norm(self, k: int, h: Tensor, training: bool) -> Tensor:
        """ResGCN's BatchNorm k over each run's vertices."""
        name = f"norms.{k}"
        return _batch_norm(
            h,
            self.params[f"{name}.weight"],
            self.params[f"{name}.bias"],
            self.buffers[f"{name}.running_mean"],
            self.buffers[f"{name}.running_var"],
            training=training,
            momentum=self.momentum,
            eps=self.eps,
        )

    def _gen_conv(self, k: int, h: Tensor, structure: StackedStructure) -> Tensor:
        """ResGCN's GENConv k: W_k (h_v + max_{u → v} (ReLU(h_u) + ε)) + b_k for every run."""
        name = f"convs.{k}.mlp.0"
        pooled = _max_aggregate(structure, h, self.message_eps)
        return _linear(h + pooled, self.params[f"{name}.weight"], self.params[f"{name}.bias"])

    def _residual_embed(self, features: Tensor | SparseOperator, structure: StackedStructure, training: bool) -> Tensor:
        """ResGCN's vertex representations (see :meth:`GNN._residual_embed`) for every run."""
        h = _linear(features, self.params["encoder.weight"], self.params["encoder.bias"])
        h = self._gen_conv(0, h, structure)
        for k in range(1, self.depth):
            h = h + self._gen_conv(k, torch.relu(self._norm(k - 1, h, training)), structure)
        return torch.relu(self._norm(self.depth - 1, h, training))
