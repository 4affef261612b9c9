"""Walk index of a vertex partition (Razin, Verbin & Cohen, NeurIPS 2023), the quantity that bounds the separation
rank — the strength of interaction — a message-passing GNN of depth L can model between the two sides.

Graphs are undirected and simple: ``edges`` ``(m, 2)`` int64 with u < v, unique, no self-loops, on ``num_nodes``
vertices; the GNN adds a self-loop to every vertex, so walks run on A + I. For a partition (I, Iᶜ) the **boundary**
C_I is the set of vertices whose closed neighbourhood {v} ∪ N(v) meets both sides: the two endpoints of every edge
that crosses the partition. With W = (A + I)^{L−1}:

- graph prediction: WI_{L−1}(I) = Σ_{c ∈ C_I} Σ_j W[c, j], the number of length-(L−1) walks that start on C_I;
- vertex prediction with target t: WI_{L−1,t}(I) = Σ_{c ∈ C_I} W[c, t], the walks from C_I that end at t.

Walk counts are computed by L − 1 sparse matrix–vector products (exact in int64), never by forming W.
"""

from __future__ import annotations

import numpy as np

from rankrepro.core.errors import ConfigError
from rankrepro.core.graphs import adjacency


def walk_counts(edges: np.ndarray, num_nodes: int, length: int, end: np.ndarray | None = None) -> np.ndarray:
    """(A + I)^length · end: for every start vertex, the number of walks of ``length`` steps on A + I that end on a
    vertex weighted by ``end`` (all ones by default: every walk counts)."""
    if length < 0:
        raise ConfigError(f"walk length must be ≥ 0, got {length}")
    matrix = adjacency(edges, num_nodes)
    counts = np.ones(num_nodes, dtype=np.int64) if end is None else np.asarray(end, dtype=np.int64)
    for _ in range(length):
        counts = matrix @ counts
    return counts


def boundary(edges: np.ndarray, side: np.ndarray) -> np.ndarray:
    """C_I as a boolean mask: the endpoints of every edge with one end in I (``side`` True) and one in Iᶜ."""
    side = np.asarray(side, dtype=bool)
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    crossing = edges[side[edges[:, 0]] != side[edges[:, 1]]]
    mask = np.zeros(len(side), dtype=bool)
    mask[crossing.ravel()] = True
    return mask


def walk_index(edges: np.ndarray, num_nodes: int, side: np.ndarray, depth: int, target: int | None = None) -> int:
    """WI_{L−1}(I) of a depth-L GNN for the partition (I = ``side``, Iᶜ): walks of length L − 1 from C_I, ending
    anywhere (graph prediction, ``target`` None) or at ``target`` (vertex prediction)."""
    if depth < 1:
        raise ConfigError(f"GNN depth must be ≥ 1, got {depth}")
    side = np.asarray(side, dtype=bool)
    if side.shape != (num_nodes,):
        raise ConfigError(f"the partition must mark each of the {num_nodes} vertices, got shape {side.shape}")
    end = None
    if target is not None:
        end = np.zeros(num_nodes, dtype=np.int64)
        end[target] = 1
    counts = walk_counts(edges, num_nodes, depth - 1, end)  # A + I is symmetric: walks from c to t = walks t to c
    return int(counts[boundary(edges, side)].sum())


def vertex_walk_indices(edges: np.ndarray, num_nodes: int, walk_length: int) -> np.ndarray:
    """For every vertex t, the walk index of the singleton partition ({t}, rest) with t as target and walks of
    ``walk_length`` = L − 1 steps: Σ_{c ∈ {t} ∪ N(t)} ((A + I)^{L−1})[c, t], or 0 for an isolated t (empty boundary).
    This is the per-vertex quantity (L−1)-WIS keeps as large as possible. Dense: O(n²) memory, for small graphs and
    as the reference of the fast versions."""
    closed = adjacency(edges, num_nodes).toarray()  # (A + I)[c, t] = 1 iff c ∈ {t} ∪ N(t)
    walks = np.linalg.matrix_power(closed.astype(np.float64), walk_length)  # BLAS; exact while counts < 2^53
    if walks.size and walks.max() >= 2.0**53:
        raise ValueError("walk counts exceed 2^53: too long walks for an exact float64 count")
    values = np.rint((walks * closed).sum(axis=0)).astype(np.int64)
    degree = closed.sum(axis=0) - 1
    return np.where(degree > 0, values, 0).astype(np.int64)
