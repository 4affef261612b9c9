"""Undirected simple graphs as edge arrays: validation and normalisation shared by the walk index and every
sparsifier.

A graph is ``edges`` ``(m, 2)`` int64, one row (u, v) with u < v per undirected edge, no self-loops, no repeats, on
``num_nodes`` vertices (isolated vertices allowed).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def check_edges(edges: np.ndarray, num_nodes: int) -> np.ndarray:
    """Validate an undirected simple graph and return its edges as a C-contiguous int64 array of shape (m, 2).

    Requirements: ``num_nodes`` a non-negative integer; ``edges`` an integer array of shape (m, 2) (m may be 0)
    whose rows (u, v) satisfy 0 ≤ u < v < num_nodes (no self-loops, each undirected edge stored once, with the
    smaller id first) and are pairwise distinct. Raises ValueError naming the first violation.
    """
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, (int, np.integer)):
        raise ValueError(f"num_nodes must be an integer, got {type(num_nodes).__name__}")
    if num_nodes < 0:
        raise ValueError(f"num_nodes must be non-negative, got {num_nodes}")
    edges = np.asarray(edges)
    if edges.ndim != 2 or edges.shape[1] != 2:
        raise ValueError(f"edges must have shape (m, 2), got {edges.shape}")
    if edges.shape[0] == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if not np.issubdtype(edges.dtype, np.integer):
        raise ValueError(f"edges must be an integer array, got dtype {edges.dtype}")
    edges = np.ascontiguousarray(edges, dtype=np.int64)
    u, v = edges[:, 0], edges[:, 1]
    bad = np.flatnonzero((u < 0) | (v < 0) | (u >= num_nodes) | (v >= num_nodes))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"edge {i} = ({u[i]}, {v[i]}) has a vertex id outside [0, {num_nodes}) ({bad.size} such edges)"
        )
    bad = np.flatnonzero(u >= v)
    if bad.size:
        i = int(bad[0])
        kind = "a self-loop" if u[i] == v[i] else "not ordered u < v"
        raise ValueError(f"edge {i} = ({u[i]}, {v[i]}) is {kind}; edges must satisfy u < v ({bad.size} such edges)")
    keys = u * num_nodes + v
    unique, counts = np.unique(keys, return_counts=True)
    if unique.size != keys.size:
        dup = int(unique[np.flatnonzero(counts > 1)[0]])
        raise ValueError(f"edge ({dup // num_nodes}, {dup % num_nodes}) appears more than once; edges must be unique")
    return edges


def undirected_edges(pairs: np.ndarray) -> np.ndarray:
    """Unique undirected pairs (u < v, sorted) of any list of directed pairs, self-loops dropped."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    pairs = np.sort(pairs, axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return np.unique(pairs, axis=0)


def degrees(edges: np.ndarray, num_nodes: int) -> np.ndarray:
    """deg(v) for every vertex (int64)."""
    edges = check_edges(edges, num_nodes)
    return np.bincount(edges.ravel(), minlength=num_nodes).astype(np.int64)


def adjacency(edges: np.ndarray, num_nodes: int, self_loops: bool = True) -> sp.csr_matrix:
    """Symmetric 0/1 adjacency A (+ I with ``self_loops``) as an int64 CSR matrix."""
    edges = check_edges(edges, num_nodes)
    rows = np.concatenate([edges[:, 0], edges[:, 1]])
    cols = np.concatenate([edges[:, 1], edges[:, 0]])
    matrix = sp.csr_matrix((np.ones(len(rows), dtype=np.int64), (rows, cols)), shape=(num_nodes, num_nodes))
    if self_loops:
        matrix = matrix + sp.identity(num_nodes, dtype=np.int64, format="csr")
    return matrix


def directed_edge_index(edges: np.ndarray) -> np.ndarray:
    """``(2, 2m)`` int64 message-passing edge index of undirected ``edges``: the m edges u→v, then the m edges v→u
    (undirected edge e is columns e and m + e)."""
    pairs = np.ascontiguousarray(edges, dtype=np.int64).reshape(-1, 2)
    return np.concatenate([pairs, pairs[:, ::-1]]).T.copy()
