"""Edge sparsification as a removal order: random, and Walk Index Sparsification (WIS; Razin, Verbin & Cohen 2023).

Every sparsifier maps an undirected simple graph (``edges`` ``(m, 2)``, u < v, unique; ``num_nodes``) to a removal
order: a permutation of ``range(m)`` whose first entries are removed first. Keeping a fraction ρ of the edges means
removing the first m − int(m·ρ) of the order.

(L−1)-WIS (Algorithm 1) keeps the per-vertex walk indices ω_t = WI_{L−1,t}({t}) (:func:`vertex_walk_indices`) as large
as possible: it removes the edge whose removal leaves the lexicographically largest **sorted** tuple of ω (maximise the
smallest, then the second smallest, …), ties broken by edge order. Like the original, it ranks every remaining edge
once and then removes the best ``chunk_size`` before ranking again (chunk 1 is the exact greedy).

- :func:`wis_order_dense`: any L, by recomputing ω with dense matrix powers for every candidate — the reference;
- :func:`two_wis_order`: L = 3 exactly and fast, from the closed form ω_t = 2·T(t) + 3·deg(t) + 1 (T = triangles
  through t; 0 for an isolated vertex): removing {u, v} changes only u, v and their common neighbours;
- :func:`one_wis_order` (Algorithm 2): L = 2, ω_t = deg(t) + 1, where the rule reduces to removing the edge with the
  largest (min(deg u, deg v), max(deg u, deg v)), degrees updated after each removal; a lazy max-heap makes it
  O(m log m) (degrees only fall, so a stored key is an upper bound of the current one);
- :func:`one_wis_order_naive`: the same rule by an argmax over all remaining edges per removal (O(m²)), the
  baseline of the benchmark.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from functools import cmp_to_key

import numpy as np

from rankrepro.core.errors import ConfigError
from rankrepro.core.graphs import check_edges, degrees
from rankrepro.gnn.walk_index import vertex_walk_indices


# ----------------------------------------------------------------------------------------------------- random
def random_order(edges: np.ndarray, num_nodes: int, seed: int) -> np.ndarray:
    """A uniformly random removal order (numpy ``default_rng(seed)``)."""
    edges = check_edges(edges, num_nodes)
    return np.random.default_rng(seed).permutation(len(edges)).astype(np.int64)


# ----------------------------------------------------------------------------------------------------- dense reference
def _check_chunk(chunk_size: int) -> None:
    """Chunks hold at least one edge."""
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be ≥ 1, got {chunk_size}")


def _ranked(candidates: list[int], better) -> list[int]:
    """Candidates (in edge order) best first; ``better(a, b)`` < 0 when a is better. Stable: ties keep edge order."""
    return sorted(candidates, key=cmp_to_key(better))


def wis_order_dense(edges: np.ndarray, num_nodes: int, walk_length: int, chunk_size: int = 1) -> np.ndarray:
    """(L−1)-WIS with ``walk_length`` = L − 1 by brute force: each candidate removal's sorted ω recomputed densely.
    O(m² n³ / chunk) — for small graphs and as the reference of the fast versions."""
    edges = check_edges(edges, num_nodes)
    _check_chunk(chunk_size)
    remaining = list(range(len(edges)))
    order: list[int] = []
    while remaining:
        keys = {}
        for e in remaining:
            kept = edges[[f for f in remaining if f != e]]
            keys[e] = tuple(np.sort(vertex_walk_indices(kept, num_nodes, walk_length)).tolist())
        ranking = sorted(remaining, key=lambda e: keys[e], reverse=True)  # stable: ties keep edge order
        removed = set(ranking[:chunk_size])
        order.extend(ranking[:chunk_size])
        remaining = [e for e in remaining if e not in removed]
    return np.asarray(order, dtype=np.int64)


# ----------------------------------------------------------------------------------------------------- fast 2-WIS
def _compare_changes(first: dict[int, int], second: dict[int, int]) -> int:
    """Which removal leaves the lexicographically larger sorted ω: each removal is its change to the multiset of ω
    values (value → +copies added − copies removed). At the smallest value where the changes differ, the removal
    that adds fewer copies of it leaves the larger tuple. Returns < 0 when ``first`` is better, > 0 when worse."""
    for value in sorted(set(first) | set(second)):
        diff = first.get(value, 0) - second.get(value, 0)
        if diff:
            return -1 if diff < 0 else 1
    return 0


def _omega(degree: int, triangles: int) -> int:
    """ω_t of 2-WIS: 2·T(t) + 3·deg(t) + 1, and 0 for an isolated vertex."""
    return 2 * triangles + 3 * degree + 1 if degree > 0 else 0


class _TriangleGraph:
    """Neighbour sets, degrees and per-vertex triangle counts of a simple graph, updated edge by edge."""

    def __init__(self, edges: np.ndarray, num_nodes: int) -> None:
        self.neighbours: list[set[int]] = [set() for _ in range(num_nodes)]
        for u, v in edges.tolist():
            self.neighbours[u].add(v)
            self.neighbours[v].add(u)
        self.triangles = [0] * num_nodes
        for u, v in edges.tolist():  # a triangle {u, v, w} reaches w once: from its edge {u, v} opposite w
            for w in self.neighbours[u] & self.neighbours[v]:
                self.triangles[w] += 1

    def omega(self, t: int) -> int:
        """ω_t of the current graph."""
        return _omega(len(self.neighbours[t]), self.triangles[t])

    def removal_change(self, u: int, v: int) -> dict[int, int]:
        """The change of the ω multiset if {u, v} were removed."""
        common = self.neighbours[u] & self.neighbours[v]
        change: dict[int, int] = {}

        def move(old: int, new: int) -> None:
            if old != new:
                change[old] = change.get(old, 0) - 1
                change[new] = change.get(new, 0) + 1

        for x in (u, v):
            move(self.omega(x), _omega(len(self.neighbours[x]) - 1, self.triangles[x] - len(common)))
        for w in common:
            move(self.omega(w), _omega(len(self.neighbours[w]), self.triangles[w] - 1))
        return {value: count for value, count in change.items() if count}

    def remove(self, u: int, v: int) -> None:
        """Delete {u, v}: T drops by one for u, v and every common neighbour per triangle lost."""
        common = self.neighbours[u] & self.neighbours[v]
        for w in common:
            self.triangles[w] -= 1
        self.triangles[u] -= len(common)
        self.triangles[v] -= len(common)
        self.neighbours[u].discard(v)
        self.neighbours[v].discard(u)


def two_wis_order(edges: np.ndarray, num_nodes: int, chunk_size: int = 1) -> np.ndarray:
    """Exact 2-WIS (depth-3 GNNs) from the closed form of ω: each round ranks every remaining edge by the change its
    removal makes to the ω multiset (only u, v and their common neighbours move), then removes the best
    ``chunk_size``. Equal to :func:`wis_order_dense` with walk length 2, ties included (tested)."""
    edges = check_edges(edges, num_nodes)
    _check_chunk(chunk_size)
    graph = _TriangleGraph(edges, num_nodes)
    remaining = list(range(len(edges)))
    order: list[int] = []
    while remaining:
        changes = {e: graph.removal_change(*edges[e].tolist()) for e in remaining}
        ranking = _ranked(remaining, lambda a, b: _compare_changes(changes[a], changes[b]))
        chosen = ranking[:chunk_size]
        for e in chosen:
            graph.remove(*edges[e].tolist())
        order.extend(chosen)
        removed = set(chosen)
        remaining = [e for e in remaining if e not in removed]
    return np.asarray(order, dtype=np.int64)


# ----------------------------------------------------------------------------------------------------- 1-WIS
def one_wis_order(edges: np.ndarray, num_nodes: int) -> np.ndarray:
    """1-WIS (Algorithm 2) with a lazy max-heap: pop the edge with the largest stored (min deg, max deg), smallest
    index first; if the key is stale (a degree fell since it was pushed) push it back with its current key, else
    remove the edge. A key is the single integer −(min·(Δ+1) + max)·m + e (Δ the largest degree), so the heap
    compares ints, and the loop runs on Python lists (numpy scalar indexing would cost more than the heap)."""
    edges = check_edges(edges, num_nodes)
    degree = degrees(edges, num_nodes).tolist()
    pairs, m = edges.tolist(), len(edges)
    base = max(degree, default=0) + 1

    def key(e: int) -> int:
        a, b = degree[pairs[e][0]], degree[pairs[e][1]]
        return -((a * base + b) if a <= b else (b * base + a)) * m + e

    heap = [key(e) for e in range(m)]
    heapq.heapify(heap)
    order: list[int] = []
    pop, push = heapq.heappop, heapq.heappush
    while heap:
        stored = pop(heap)
        e = stored % m
        u, v = pairs[e]
        a, b = degree[u], degree[v]
        current = -((a * base + b) if a <= b else (b * base + a)) * m + e  # key(e), inlined: the hot loop
        if current != stored:
            push(heap, current)
            continue
        order.append(e)
        degree[u] = a - 1
        degree[v] = b - 1
    return np.asarray(order, dtype=np.int64)


def one_wis_order_naive(edges: np.ndarray, num_nodes: int) -> np.ndarray:
    """1-WIS by a full argmax over the remaining edges at every removal (the original algorithm's cost, O(m²))."""
    edges = check_edges(edges, num_nodes)
    degree = degrees(edges, num_nodes)
    alive = np.ones(len(edges), dtype=bool)
    order: list[int] = []
    for _ in range(len(edges)):
        du, dv = degree[edges[:, 0]], degree[edges[:, 1]]
        low, high = np.minimum(du, dv), np.maximum(du, dv)
        score = np.where(alive, low * (2 * num_nodes + 2) + high, -1)  # lexicographic (low, high) as one integer
        e = int(np.argmax(score))  # first maximum: ties broken by edge order
        order.append(e)
        alive[e] = False
        degree[edges[e]] -= 1
    return np.asarray(order, dtype=np.int64)


def removal_prefix(order: Iterable[int], num_edges: int, keep_ratio: float) -> np.ndarray:
    """The edges removed to keep ``int(num_edges · keep_ratio)`` of them: the first entries of the order."""
    if not 0.0 <= keep_ratio <= 1.0:
        raise ConfigError(f"keep_ratio must lie in [0, 1], got {keep_ratio}")
    order = np.asarray(list(order), dtype=np.int64)
    return order[: num_edges - int(num_edges * keep_ratio)]
