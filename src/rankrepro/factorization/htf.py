"""Batched hierarchical tensor factorization (HTF) for tensor completion (chapter 3, Razin, Maman & Cohen 2022).

**Mode tree.** An order-N tensor W ∈ R^{d_0×…×d_{N−1}} with N = 2^k is factorized over the perfect binary tree of
its modes: level 0 holds the leaves (0,), (1,), …, (N−1,); level l holds the 2^{k−l} nodes of 2^l consecutive
modes, ((0, 1), (2, 3), … at level 1); level k is the root (0, …, N−1). Every node at level l ≥ 1 has the two
children at level l − 1 that split its modes in halves.

**Parameters** (per-level widths r_0, …, r_{k−1}), every one batched over B independent runs (leading dim B):

- a leaf factor W_(n) ∈ R^{d_n×r_0} for every mode n,                                     shape ``(B, d_n, r_0)``;
- for every node ν at an interior level l = 1 … k−1 a factor W_ν ∈ R^{r_{l−1}×r_l},    shape ``(B, r_{l−1}, r_l)``;
- the root's output vector a ∈ R^{r_{k−1}},                                               shape ``(B, r_{k−1})``.

They are passed as one flat list (the trainer's parameter list), level by level, nodes left to right: the N leaf
factors, then the N/2 factors of level 1, …, the 2 factors of level k−1, then a: 2N − 1 tensors in all
(:func:`param_shapes`, :func:`node_param_index`).

**Forward pass** at a multi-index i = (i_0, …, i_{N−1}) (a deep convolutional arithmetic circuit: per-node linear
maps, product pooling of sibling pairs). Every node ν gets a vector v_ν(i):

    v_(n)    = W_(n)[i_n, :]                       ∈ R^{r_0}       (leaf: a row of its factor = one-hot · W_(n)),
    v_ν      = (v_{c₁} ⊙ v_{c₂}) · W_ν             ∈ R^{r_l}       (node ν at level 1 ≤ l ≤ k−1, children c₁, c₂),
    W[i]     = ⟨v_{c₁} ⊙ v_{c₂}, a⟩                ∈ R             (root, children c₁, c₂),

i.e. a node's linear map acts *after* the product pooling of its children: v_ν = (v_{c₁} ⊙ v_{c₂}) @ W_ν.
Equivalently, with T_ν[i_ν, :] = v_ν(i) the node's tensor (its modes' multi-index i_ν, row-major, first child's
modes slowest), T_ν = (T_{c₁} ⊙_rows T_{c₂}) W_ν where ⊙_rows is the row-wise Kronecker (Khatri–Rao) product,
and the full tensor is the root's T.

**Gathering.** A row of a node's tensor depends only on that node's modes, so the rows of the observed entries can
be gathered at any level g: compute the node tensors (all ∏_{n∈ν} d_n rows) up to level g, gather the rows of
the observed multi-indices there (``index_select``: the one-hot first layer of the paper's model, as a gather),
and run the levels above on the gathered rows only. g = 0 gathers leaf rows; g = k computes the full tensor (at
the root by one matmul, T = T_{c₁} diag(a) T_{c₂}ᵀ) and gathers its entries. Every g gives the same values
(tests); :func:`auto_gather_level` picks the cheapest by a cost model (:func:`gather_level_cost`). For order 4,
dim 8, widths 512 and 2,048 observations it picks g = 2: the level-1 maps then act on 64 rows instead of 2,048.

**Local components.** At an interior node ν (level l ≥ 1) with children c₁, c₂, component r ∈ [r_{l−1}] is
(column r of W_{c₁}, column r of W_{c₂}, row r of W_ν — or entry r of a at the root): K = 3 weight vectors, and
its norm is the product of their three Euclidean norms (:func:`local_component_norms`).

**Hierarchical tensor rank.** The tuple of ranks of the matricizations W_(ν; ν^c) of the full tensor w.r.t. every
non-root tree node ν (:func:`hierarchical_rank`); it is at most (r_0 for leaves, r_l for level-l nodes). A mode set
that is not a tree node can have a much larger rank (at order 4, W_({0,2}; {1,3}) has rank up to r_0², not r_0).

A CP decomposition of rank R is an HTF of width R at every level (leaves = CP factors, inner factors = identity,
root vector = ones): :func:`embed_cp`.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor

from rankrepro.core.autodiff import autograd_loss_and_grads
from rankrepro.core.errors import ConfigError
from rankrepro.core.measures import (
    effective_rank_from_singular_values,
    normalized_reconstruction_error,
    singular_values,
)

Node = tuple[int, ...]


# ----------------------------------------------------------------------------------------------------- the mode tree
def tree_depth(order: int) -> int:
    """k with N = 2^k for a valid HTF order N ≥ 2 (a perfect binary mode tree); ConfigError otherwise."""
    if isinstance(order, bool) or not isinstance(order, int) or order < 2 or order & (order - 1):
        raise ConfigError(f"HTF order must be a power of 2 that is at least 2, got {order!r}")
    return order.bit_length() - 1


@functools.cache
def mode_tree(order: int) -> tuple[tuple[Node, ...], ...]:
    """Nodes of the perfect binary mode tree, level by level: level l holds the tuples of 2^l consecutive modes.

    mode_tree(4) = (((0,), (1,), (2,), (3,)), ((0, 1), (2, 3)), ((0, 1, 2, 3),)); the last level is the root.
    """
    depth = tree_depth(order)
    return tuple(
        tuple(tuple(range(start, start + 2**level)) for start in range(0, order, 2**level))
        for level in range(depth + 1)
    )


def tree_nodes(order: int) -> list[Node]:
    """Every node of the mode tree except the root, leaves first (the nodes of the hierarchical rank)."""
    return [node for level in mode_tree(order)[:-1] for node in level]


def interior_nodes(order: int) -> list[Node]:
    """Every node with children (levels 1 … k, root last): the nodes that own local components."""
    return [node for level in mode_tree(order)[1:] for node in level]


def node_level(node: Node) -> int:
    """Level l of a tree node: a node of 2^l modes sits at level l."""
    return len(node).bit_length() - 1


def children(node: Node) -> tuple[Node, Node]:
    """The two children of an interior node: the halves of its modes."""
    half = len(node) // 2
    return node[:half], node[half:]


def node_param_index(node: Node, order: int) -> int:
    """Position of the node's factor (leaf factor, inner factor or root vector) in the flat parameter list."""
    levels = mode_tree(order)
    level = node_level(node)
    if level >= len(levels) or node not in levels[level]:
        raise ConfigError(f"{node} is not a node of the order-{order} mode tree")
    return sum(len(nodes) for nodes in levels[:level]) + levels[level].index(node)


# ------------------------------------------------------------------------------------------------- shapes and checks
def param_shapes(dims: Sequence[int], widths: Sequence[int]) -> list[tuple[int, ...]]:
    """Per-run shapes of the 2N − 1 parameters: (d_n, r_0) per leaf, (r_{l−1}, r_l) per level-l node, (r_{k−1},).

    ConfigError unless N = len(dims) is a power of 2 (≥ 2), len(widths) = k = log2 N and every size is positive.
    """
    dims, widths = [int(d) for d in dims], [int(r) for r in widths]
    depth = tree_depth(len(dims))
    if len(widths) != depth:
        raise ConfigError(
            f"an order-{len(dims)} HTF needs {depth} widths (one per level below the root), got {len(widths)}: {widths}"
        )
    if min(dims) < 1 or min(widths) < 1:
        raise ConfigError(f"HTF mode dimensions and widths must be positive, got dims {dims}, widths {widths}")
    shapes: list[tuple[int, ...]] = [(d, widths[0]) for d in dims]
    for level, nodes in enumerate(mode_tree(len(dims))[1:-1], start=1):
        shapes += [(widths[level - 1], widths[level])] * len(nodes)
    return shapes + [(widths[-1],)]


def htf_structure(params: Sequence[Tensor]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Mode dims and widths of batched HTF parameters, checking every shape (ConfigError on a mismatch)."""
    count = len(params)
    order = (count + 1) // 2
    if count < 3 or count % 2 == 0:
        raise ConfigError(f"an HTF has 2N − 1 parameter tensors for N = 2^k ≥ 2 modes, got {count}")
    depth = tree_depth(order)
    if any(p.dim() < 2 for p in params):
        raise ConfigError("every HTF parameter needs a leading run dimension")
    dims = tuple(int(p.shape[1]) for p in params[:order])
    widths = tuple(int(params[node_param_index(level[0], order)].shape[-1]) for level in mode_tree(order)[:-1])
    expected = [(int(params[0].shape[0]), *shape) for shape in param_shapes(dims, widths)]
    actual = [tuple(p.shape) for p in params]
    if actual != expected:
        raise ConfigError(
            f"HTF parameter shapes {actual} do not fit the mode tree of depth {depth}: expected "
            f"{expected} (dims {dims}, widths {widths}, leading run dimension)"
        )
    return dims, widths


# ----------------------------------------------------------------------------------------------------- forward pass
def _pool_rows(left: Tensor, right: Tensor) -> Tensor:
    """Row-wise Kronecker product of node tensors ``(B, P₁, r)``, ``(B, P₂, r)``: ``(B, P₁·P₂, r)``, left slowest.

    out[b, (p, q), r] = left[b, p, r]·right[b, q, r] (product pooling of every pair of children rows).
    """
    return (left.unsqueeze(2) * right.unsqueeze(1)).reshape(left.shape[0], -1, left.shape[-1])


def _apply_node(pooled: Tensor, factor: Tensor) -> Tensor:
    """The node's linear map after pooling: pooled @ W_ν ``(B, ·, r_l)``, or ⟨pooled, a⟩ ``(B, ·)`` at the root."""
    if factor.dim() == 2:
        return torch.bmm(pooled, factor.unsqueeze(-1)).squeeze(-1)
    return torch.bmm(pooled, factor)


def node_tensors(params: Sequence[Tensor], level: int) -> list[Tensor]:
    """Tensors T_ν ``(B, ∏_{n∈ν} d_n, r_l)`` of every node at ``level`` (all rows; the root's is ``(B, ∏d)``).

    T_(n) = W_(n); T_ν = (T_{c₁} ⊙_rows T_{c₂}) W_ν, rows indexed by the node's multi-index in row-major order.
    """
    order = (len(params) + 1) // 2
    levels = mode_tree(order)
    tensors = list(params[:order])
    for nodes in levels[1 : level + 1]:
        if len(nodes) == 1:  # the root: T = T_{c₁} diag(a) T_{c₂}ᵀ, flattened (no Khatri–Rao product)
            first, second = tensors
            return [torch.bmm(first * params[-1].unsqueeze(1), second.transpose(1, 2)).flatten(1)]
        tensors = [
            _apply_node(_pool_rows(tensors[2 * j], tensors[2 * j + 1]), params[node_param_index(node, order)])
            for j, node in enumerate(nodes)
        ]
    return tensors


def htf_reconstruct(params: Sequence[Tensor]) -> Tensor:
    """The full tensor W[b] of every run: ``(B, d_0, …, d_{N−1})`` (the root's node tensor, reshaped)."""
    dims, widths = htf_structure(params)
    return node_tensors(params, len(widths))[0].reshape(params[0].shape[0], *dims)


def _node_flat_index(indices: Tensor, node: Node, dims: Sequence[int]) -> Tensor:
    """Row-major position of the node's sub-multi-index (i_n)_{n∈ν} among ∏_{n∈ν} d_n: shape ``indices[..., 0]``."""
    flat = indices[..., node[0]]
    for n in node[1:]:
        flat = flat * dims[n] + indices[..., n]
    return flat


def _gather_rows(table: Tensor, flat: Tensor) -> Tensor:
    """Rows ``table[b, flat[k]]`` (``(B, M, r)``; ``(B, M)`` for the root's ``(B, P)``) at shared positions ``flat``
    ``(M,)`` or per-run ones ``(B, M)``."""
    if flat.dim() == 1:
        return table.index_select(1, flat)
    if table.dim() == 2:
        return torch.gather(table, 1, flat)
    return torch.gather(table, 1, flat.unsqueeze(-1).expand(-1, -1, table.shape[-1]))


#: cost of touching one element in an unfused elementwise / gather pass, in units of one BLAS multiply–add.
#: Measured (float64, one CPU thread, forward + backward, orders 4 and 8, dims 2–16, widths 16–512, 100–20,000
#: observations): with 10 the chosen level was the fastest or within 10 % of it in every case tried.
ELEMENTWISE_COST = 10.0


def gather_level_cost(dims: Sequence[int], widths: Sequence[int], n_obs: int, level: int) -> float:
    """Estimated cost of one forward pass that gathers the observed rows at ``level`` (see :func:`htf_predict`).

    With P_ν = ∏_{n∈ν} d_n, M = ``n_obs``, c = :data:`ELEMENTWISE_COST` and r_k = 1 (the root's output):
    full node tensors up to ``level`` cost Σ_ν (P_ν·r_{l−1}·r_l + c·P_ν·r_{l−1}) (matmul + Khatri–Rao product; the
    root's P·r_{k−1} is one matmul), the gather c·M·r_level per node, and every level above Σ_ν (M·r_{l−1}·r_l +
    c·M·r_{l−1}) (pooling + linear map per observation; c·M·r_{k−1} at the root).
    """
    levels = mode_tree(len(dims))
    depth = len(levels) - 1
    sizes = list(widths) + [1]
    c, cost = ELEMENTWISE_COST, 0.0
    for at in range(1, depth + 1):
        for node in levels[at]:
            rows = math.prod(dims[n] for n in node) if at <= level else n_obs
            matmul = rows * sizes[at - 1] * sizes[at]
            cost += matmul if (at == depth and at <= level) else matmul + c * rows * sizes[at - 1]
    return cost + c * n_obs * len(levels[level]) * sizes[level]


def auto_gather_level(dims: Sequence[int], widths: Sequence[int], n_obs: int) -> int:
    """The gather level g ∈ [0, k] of least :func:`gather_level_cost` (the lower one on a tie)."""
    return _auto_gather_level(tuple(int(d) for d in dims), tuple(int(r) for r in widths), int(n_obs))


@functools.lru_cache(maxsize=256)
def _auto_gather_level(dims: tuple[int, ...], widths: tuple[int, ...], n_obs: int) -> int:
    costs = [gather_level_cost(dims, widths, n_obs, level) for level in range(len(widths) + 1)]
    return min(range(len(costs)), key=costs.__getitem__)


def htf_predict(params: Sequence[Tensor], indices: Tensor, gather_level: int | None = None) -> Tensor:
    """W[b, ω_m] at multi-indices ``indices`` ``(M, N)`` (shared by the runs) or ``(B, M, N)``: ``(B, M)``.

    Node tensors are computed in full up to ``gather_level`` g (0: the leaf factors themselves; None:
    :func:`auto_gather_level`), the rows of the observed multi-indices are gathered there, and the levels above
    pool and map the gathered rows only: v_ν = (v_{c₁} ⊙ v_{c₂}) @ W_ν, W[ω] = ⟨v_{c₁} ⊙ v_{c₂}, a⟩.
    """
    dims, widths = htf_structure(params)
    order = len(dims)
    level = auto_gather_level(dims, widths, indices.shape[-2]) if gather_level is None else gather_level
    if not 0 <= level <= len(widths):
        raise ConfigError(f"gather_level must lie in [0, {len(widths)}], got {gather_level}")
    levels = mode_tree(order)
    rows = [
        _gather_rows(table, _node_flat_index(indices, node, dims))
        for table, node in zip(node_tensors(params, level), levels[level])
    ]
    for nodes in levels[level + 1 :]:
        rows = [
            _apply_node(rows[2 * j] * rows[2 * j + 1], params[node_param_index(node, order)])
            for j, node in enumerate(nodes)
        ]
    return rows[0]


def htf_loss(params: Sequence[Tensor], indices: Tensor, values: Tensor, gather_level: int | None = None) -> Tensor:
    """Per-run MSE (1/|Ω|) Σ_m (W[ω_m] − y_m)² ``(B,)``; ``values`` ``(M,)`` or ``(B, M)`` (differentiable)."""
    return (htf_predict(params, indices, gather_level) - values).pow(2).mean(-1)


# ------------------------------------------------------------------------------------------------ local components
def local_component_norms(params: Sequence[Tensor]) -> dict[Node, Tensor]:
    """Norms of the local components of every interior node ν (levels 1 … k, root last): ``(B, r_{l−1})`` each.

    Component r of ν with children c₁, c₂: ‖W_{c₁}[:, r]‖ · ‖W_{c₂}[:, r]‖ · ‖W_ν[r, :]‖ (‖·‖ = |a_r| at the root).
    """
    dims, _ = htf_structure(params)
    order = len(dims)
    norms = {}
    for node in interior_nodes(order):
        first, second = (params[node_param_index(child, order)] for child in children(node))
        own = params[node_param_index(node, order)]
        own_norms = own.abs() if own.dim() == 2 else own.norm(dim=2)
        norms[node] = first.norm(dim=1) * second.norm(dim=1) * own_norms
    return norms


# ----------------------------------------------------------------------------------------------- matricizations
def matricize(tensor: Tensor, modes: Sequence[int], order: int | None = None) -> Tensor:
    """Matricization W_(S; S^c) ``(…, ∏_{n∈S} d_n, ∏_{n∉S} d_n)`` of the last ``order`` dims (default: all but one).

    Rows are the row-major multi-indices of the modes in S (sorted), columns those of the other modes (sorted);
    any leading dimensions are batch dimensions. S must be a non-empty proper subset of the modes.
    """
    order = tensor.dim() - 1 if order is None else order
    if order < 2 or order > tensor.dim():
        raise ConfigError(f"cannot matricize the last {order} dims of a {tensor.dim()}-dim tensor")
    subset = sorted(int(n) for n in modes)
    if len(set(subset)) != len(subset) or not subset or len(subset) >= order or subset[0] < 0 or subset[-1] >= order:
        raise ConfigError(f"matricization modes must be a non-empty proper subset of 0 … {order - 1}, got {modes}")
    lead = tensor.dim() - order
    rest = [n for n in range(order) if n not in subset]
    permuted = tensor.permute(*range(lead), *(lead + n for n in subset), *(lead + n for n in rest))
    shape = tensor.shape[lead:]
    return permuted.reshape(
        *tensor.shape[:lead], math.prod(shape[n] for n in subset), math.prod(shape[n] for n in rest)
    )


def matricization_singular_values(tensor: Tensor, modes: Sequence[int], order: int | None = None) -> Tensor:
    """Singular values σ_1 ≥ … of W_(S; S^c) (see :func:`matricize`): ``(…, min(rows, cols))``."""
    return singular_values(matricize(tensor, modes, order))


def numerical_rank(sigma: Tensor, tol: float = 1e-6, scale: Tensor | float | None = None) -> Tensor:
    """#{i: σ_i > tol·s} along the last dimension (int64), s = ``scale`` (a reference size, e.g. the target's σ_1;
    broadcast against the leading dimensions) or by default the matrix's own σ_1; 0 for a zero matrix."""
    if not tol >= 0:
        raise ConfigError(f"rank tolerance must be non-negative, got {tol}")
    if scale is None:
        top = sigma.amax(dim=-1, keepdim=True)
    else:
        top = torch.as_tensor(scale, dtype=sigma.dtype, device=sigma.device).unsqueeze(-1)
    return ((sigma > tol * top) & (sigma > 0)).sum(-1)


def non_node_subsets(order: int) -> list[Node]:
    """Mode subsets that are not tree nodes, one per matricization: every S of the size 2^l of an interior non-root
    node (1 ≤ l < k) that holds mode 0 (W_(S) and W_(S^c) are transposes: one rank) and such that neither S nor S^c
    is a tree node — in lexicographic order. Order 4: (0, 2) and (0, 3) ({1,3} interleaved, {1,4} crossing); with
    the tree nodes this lists every matricization of an order-4 tensor up to transposition."""
    nodes = set(tree_nodes(order))
    subsets = []
    for level in range(1, tree_depth(order)):
        for rest in itertools.combinations(range(1, order), 2**level - 1):
            subset = (0, *rest)
            complement = tuple(n for n in range(order) if n not in subset)
            if subset not in nodes and complement not in nodes:
                subsets.append(subset)
    return subsets


def hierarchical_rank(tensor: Tensor, tol: float = 1e-6, order: int | None = None) -> dict[Node, Tensor]:
    """Hierarchical tensor rank: the numerical rank (:func:`numerical_rank`, relative ``tol``) of W_(ν; ν^c) for
    every non-root tree node ν, leaves first: ``{node: (…,) int64}`` over the leading batch dimensions."""
    order = tensor.dim() - 1 if order is None else order
    return {node: numerical_rank(matricization_singular_values(tensor, node, order), tol) for node in tree_nodes(order)}


def hierarchical_effective_rank(tensor: Tensor, order: int | None = None) -> dict[Node, Tensor]:
    """Effective rank exp(H(σ/Σσ)) (:mod:`rankrepro.core.measures`) of W_(ν; ν^c) for every non-root tree node ν."""
    order = tensor.dim() - 1 if order is None else order
    return {
        node: effective_rank_from_singular_values(matricization_singular_values(tensor, node, order))
        for node in tree_nodes(order)
    }


# ------------------------------------------------------------------------------------- initialization and targets
def init_htf(
    dims: Sequence[int],
    widths: Sequence[int],
    scales: Tensor,
    generators: Sequence[torch.Generator],
    dtype: torch.dtype = torch.float64,
) -> list[Tensor]:
    """Parameters P[b] = scales[b]·Z[b], Z[b] ~ N(0, 1) entrywise, drawn from ``generators[b]`` (CPU).

    Every factor of run b is N(0, scales[b]²); runs sharing a generator seed share the direction Z.
    """
    shapes = param_shapes(dims, widths)
    scales = torch.as_tensor(scales, dtype=dtype).reshape(-1)
    if scales.shape[0] != len(generators):
        raise ConfigError(f"init_htf needs one scale per generator, got {scales.shape[0]} and {len(generators)}")
    per_run = [[torch.randn(shape, generator=g, dtype=dtype) for shape in shapes] for g in generators]
    return [
        torch.stack([run[i] for run in per_run]) * scales.reshape(-1, *[1] * len(shape))
        for i, shape in enumerate(shapes)
    ]


def random_htf_tensor(
    dims: Sequence[int],
    widths: Sequence[int],
    generator: torch.Generator,
    norm: float = 1.0,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """A random low-hierarchical-rank tensor ``(d_0, …, d_{N−1})``: an HTF with factors i.i.d. N(0, 1) and the given
    (small) widths, rescaled to Frobenius norm ``norm``. Its node-ν matricization has rank ≤ r_{level(ν)}."""
    if not norm > 0:
        raise ConfigError(f"target norm must be positive, got {norm}")
    params = [torch.randn(1, *shape, generator=generator, dtype=dtype) for shape in param_shapes(dims, widths)]
    tensor = htf_reconstruct(params)[0]
    return tensor * (norm / tensor.norm())


def embed_cp(factors: Sequence[Tensor]) -> list[Tensor]:
    """HTF parameters of width R at every level that reproduce the CP tensor Σ_r ⊗_n F_n[:, r] exactly.

    Leaves W_(n) = F_n ``(B, d_n, R)``, inner factors W_ν = I_R, root vector a = 1: then every node vector is
    v_ν = ⊙_{n∈ν} F_n[i_n, :] and W[i] = Σ_r ∏_n F_n[i_n, r] (CP rank R ⇒ hierarchical rank ≤ (R, …, R)).
    """
    order = len(factors)
    tree_depth(order)
    batch, rank = factors[0].shape[0], factors[0].shape[-1]
    if any(f.dim() != 3 or f.shape[0] != batch or f.shape[-1] != rank for f in factors):
        raise ConfigError("CP factors must all have shape (B, d_n, R) with the same B and R")
    like = factors[0]
    eye = torch.eye(rank, dtype=like.dtype, device=like.device).expand(batch, rank, rank)
    inner = [eye.clone() for _ in range(order - 2)]
    params = [f.clone() for f in factors] + inner + [like.new_ones(batch, rank)]
    htf_structure(params)
    return params


# -------------------------------------------------------------------------------------------- completion objective
class HTFCompletionObjective:
    """Tensor completion with a batched HTF model, satisfying the trainer's ``BatchedObjective`` protocol.

    Loss of run b: MSE over the observed multi-indices Ω ``indices`` ``(M, N)`` (shared by the runs), with
    observed values ``values`` ``(M,)`` or ``(B, M)`` — by default ``target`` at Ω. Gradients by autograd through
    :func:`htf_loss` on all runs at once (the runs' losses are independent, so ∇ of their sum is each run's own).

    ``metrics``: ``train_loss`` ``(B,)``; when a ``target`` ``(d_0, …, d_{N−1})`` is given, ``reconstruction_error``
    ‖W − W*‖_F/‖W*‖_F over all entries and ``heldout_error`` over the unobserved ones (NaN if none);
    ``root_norms`` — the root's local-component norms sorted in decreasing order (the ``top_k`` largest, all if
    None) — and likewise ``norms_<modes>`` for every node in ``track_nodes`` (e.g. (0, 1)); ``sv_<modes>``: the
    ``top_k`` leading singular values of the matricization of the reconstruction w.r.t. every mode set in
    ``track_matricizations`` (e.g. (0, 1), a tree node, and (0, 2), not one).
    """

    def __init__(
        self,
        target: Tensor | None,
        indices: Tensor,
        values: Tensor | None = None,
        *,
        dims: Sequence[int] | None = None,
        gather_level: int | None = None,
        top_k: int | None = None,
        track_nodes: Sequence[Node] = (),
        track_matricizations: Sequence[Sequence[int]] = (),
    ) -> None:
        if target is None and (values is None or dims is None):
            raise ConfigError("HTFCompletionObjective needs a target, or observed values and the mode dims")
        self.dims = tuple(int(d) for d in (target.shape if target is not None else dims))
        tree_depth(len(self.dims))
        if indices.dim() != 2 or indices.shape[1] != len(self.dims) or indices.shape[0] < 1:
            raise ConfigError(f"indices must have shape (M ≥ 1, {len(self.dims)}), got {tuple(indices.shape)}")
        bounds = torch.tensor(self.dims, device=indices.device)
        if bool((indices < 0).any()) or bool((indices >= bounds).any()):
            raise ConfigError(f"observed multi-indices outside the {self.dims} tensor")
        if top_k is not None and top_k < 1:
            raise ConfigError(f"top_k must be positive, got {top_k}")
        self.target, self.indices, self.top_k = target, indices, top_k
        self.n_obs = int(indices.shape[0])
        flat = _node_flat_index(indices, tuple(range(len(self.dims))), self.dims)
        self.values = target.reshape(-1)[flat] if values is None else values
        self.gather_level = gather_level
        self.track_nodes = [tuple(node) for node in track_nodes]
        for node in self.track_nodes:
            if node not in interior_nodes(len(self.dims)):
                raise ConfigError(f"track_nodes: {node} is not an interior node of the order-{len(self.dims)} tree")
        self.track_matricizations = [tuple(sorted(m)) for m in track_matricizations]
        self.heldout = None
        if target is not None:
            self.heldout = torch.ones_like(target)
            self.heldout.view(-1)[flat] = 0.0

    def loss(self, params: list[Tensor]) -> Tensor:
        """Per-run MSE over Ω ``(B,)`` (differentiable)."""
        return htf_loss(params, self.indices, self.values, self.gather_level)

    def loss_and_grads(self, params: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """Per-run MSE over Ω ``(B,)`` and its gradient w.r.t. every parameter (autograd, all runs at once)."""
        return autograd_loss_and_grads(self.loss, params)

    def _top(self, values: Tensor) -> Tensor:
        sorted_values = values.sort(dim=-1, descending=True).values
        return sorted_values if self.top_k is None else sorted_values[..., : self.top_k]

    def metrics(self, params: list[Tensor]) -> dict[str, Tensor]:
        """Train loss, reconstruction and held-out errors (with a target), sorted local-component norms, and the
        tracked matricizations' leading singular values, per run (see the class docstring)."""
        with torch.no_grad():
            out = {"train_loss": self.loss(params)}
            needs_full = self.target is not None or self.track_matricizations
            full = htf_reconstruct(params) if needs_full else None
            if self.target is not None:
                out["reconstruction_error"] = normalized_reconstruction_error(full, self.target)
                held = self.heldout
                denominator = (self.target * held).norm()
                out["heldout_error"] = ((full - self.target) * held).flatten(1).norm(dim=1) / denominator
            norms = local_component_norms(params)
            out["root_norms"] = self._top(norms[tuple(range(len(self.dims)))])
            for node in self.track_nodes:
                out["norms_" + "_".join(map(str, node))] = self._top(norms[node])
            for modes in self.track_matricizations:
                out["sv_" + "_".join(map(str, modes))] = self._top(matricization_singular_values(full, modes))
        return out
