"""Chapter 4 mechanisms: walk index of partitions and the WIS / random removal orders."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rankrepro.core.errors import ConfigError
from rankrepro.core.graphs import adjacency as graph_adjacency
from rankrepro.core.graphs import undirected_edges
from rankrepro.gnn import walk_index as wi
from rankrepro.gnn import wis


def is_same_class_graph() -> tuple[np.ndarray, int]:
    """Two 16-cliques joined by the edge (0, 16) (the GNN adds the self-loops)."""
    pairs = [(a, b) for a, b in itertools.combinations(range(16), 2)]
    pairs += [(a + 16, b + 16) for a, b in pairs] + [(0, 16)]
    return undirected_edges(np.array(pairs)), 32


def low_and_high_sides() -> tuple[np.ndarray, np.ndarray]:
    """Image-1 vertices: clique 1 (low walk index); even slots of clique 1 and odd slots of clique 2 (high)."""
    low = np.arange(32) < 16
    high = np.array([(v < 16) == (v % 2 == 0) for v in range(32)])
    return low, high


def random_graph(num_nodes: int, probability: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pairs = [(a, b) for a, b in itertools.combinations(range(num_nodes), 2) if rng.random() < probability]
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def brute_force_walks(edges: np.ndarray, num_nodes: int, starts: np.ndarray, length: int, target: int | None) -> int:
    """Count walks on A + I by enumerating every sequence of vertices (tiny graphs only)."""
    allowed = np.eye(num_nodes, dtype=bool)
    allowed[edges[:, 0], edges[:, 1]] = allowed[edges[:, 1], edges[:, 0]] = True
    total = 0
    for start in np.flatnonzero(starts):
        for rest in itertools.product(range(num_nodes), repeat=length):
            path = (start, *rest)
            if all(allowed[a, b] for a, b in zip(path, path[1:])) and (target is None or path[-1] == target):
                total += 1
    return total


# ----------------------------------------------------------------------------------------------------- walk index
@pytest.mark.parametrize("depth,low_value,high_value", [(2, 34, 514), (3, 548, 8258), (4, 8806, 132676)])
def test_walk_index_of_the_is_same_class_graph_matches_the_spec(depth, low_value, high_value):
    edges, n = is_same_class_graph()
    low, high = low_and_high_sides()
    assert wi.walk_index(edges, n, low, depth) == low_value
    assert wi.walk_index(edges, n, high, depth) == high_value


def test_the_boundary_holds_both_ends_of_every_crossing_edge():
    edges, n = is_same_class_graph()
    low, high = low_and_high_sides()
    assert np.flatnonzero(wi.boundary(edges, low)).tolist() == [0, 16]
    assert wi.boundary(edges, high).all()


@given(
    n=st.integers(2, 5),
    p=st.floats(0.2, 0.9),
    length=st.integers(0, 3),
    seed=st.integers(0, 10_000),
    with_target=st.booleans(),
)
def test_walk_index_equals_a_brute_force_walk_count(n, p, length, seed, with_target):
    edges = random_graph(n, p, seed)
    rng = np.random.default_rng(seed)
    side = rng.random(n) < 0.5
    target = int(rng.integers(n)) if with_target else None
    expected = brute_force_walks(edges, n, wi.boundary(edges, side), length, target)
    assert wi.walk_index(edges, n, side, length + 1, target) == expected


def test_vertex_walk_indices_follow_the_two_wis_closed_form():
    edges = random_graph(9, 0.45, 3)
    omega = wi.vertex_walk_indices(edges, 9, 2)
    adjacency = graph_adjacency(edges, 9, self_loops=False).toarray()
    degree = adjacency.sum(0)
    triangles = np.diag(np.linalg.matrix_power(adjacency, 3)) // 2
    assert omega.tolist() == np.where(degree > 0, 2 * triangles + 3 * degree + 1, 0).tolist()
    for t in range(9):  # = the walk index of ({t}, rest) with target t
        side = np.arange(9) == t
        assert omega[t] == wi.walk_index(edges, 9, side, 3, target=t)


def test_bad_graphs_are_errors_naming_the_problem():
    with pytest.raises(ValueError, match="shape"):
        wi.walk_index(np.zeros((3, 3), dtype=np.int64), 4, np.ones(4, bool), 2)
    with pytest.raises(ValueError, match="u < v"):
        wis.one_wis_order(np.array([[2, 1]]), 4)
    with pytest.raises(ValueError, match="outside"):
        wis.two_wis_order(np.array([[0, 9]]), 4)
    with pytest.raises(ValueError, match="more than once"):
        wis.random_order(np.array([[0, 1], [0, 1]]), 4, 0)
    with pytest.raises(ConfigError, match="depth"):
        wi.walk_index(np.array([[0, 1]]), 2, np.array([True, False]), 0)
    assert undirected_edges(np.array([[1, 0], [0, 1], [2, 2], [3, 1]])).tolist() == [[0, 1], [1, 3]]


# ----------------------------------------------------------------------------------------------------- sparsifiers
def _is_permutation(order: np.ndarray, m: int) -> bool:
    return sorted(order.tolist()) == list(range(m))


def test_random_order_is_a_seeded_permutation():
    edges = random_graph(12, 0.4, 1)
    a, b, c = (wis.random_order(edges, 12, s) for s in (5, 5, 6))
    assert _is_permutation(a, len(edges)) and np.array_equal(a, b) and not np.array_equal(a, c)


@given(n=st.integers(3, 9), p=st.floats(0.2, 0.9), seed=st.integers(0, 10_000))
def test_one_wis_heap_equals_the_naive_argmax_and_the_dense_definition(n, p, seed):
    edges = random_graph(n, p, seed)
    heap = wis.one_wis_order(edges, n)
    assert _is_permutation(heap, len(edges))
    assert np.array_equal(heap, wis.one_wis_order_naive(edges, n))
    assert np.array_equal(heap, wis.wis_order_dense(edges, n, walk_length=1))


@given(n=st.integers(3, 8), p=st.floats(0.3, 0.95), seed=st.integers(0, 10_000), chunk=st.integers(1, 4))
def test_fast_two_wis_equals_the_dense_reference_chunks_and_ties_included(n, p, seed, chunk):
    edges = random_graph(n, p, seed)
    fast = wis.two_wis_order(edges, n, chunk_size=chunk)
    assert _is_permutation(fast, len(edges))
    assert np.array_equal(fast, wis.wis_order_dense(edges, n, walk_length=2, chunk_size=chunk))


def test_two_wis_breaks_ties_by_edge_order():
    # a 4-cycle: every edge is equivalent, so the first removal is edge 0
    edges = np.array([[0, 1], [0, 3], [1, 2], [2, 3]])
    assert wis.two_wis_order(edges, 4)[0] == 0 == wis.wis_order_dense(edges, 4, 2)[0]


def test_one_wis_removes_edges_between_high_degree_vertices_first():
    # a star (centre 0) plus a triangle among the leaves 1, 2, 3
    edges = undirected_edges(np.array([[0, k] for k in range(1, 7)] + [[1, 2], [2, 3], [1, 3]]))
    order = wis.one_wis_order(edges, 7)
    # (min 3, max 6) is the largest key; of the three such edges the first in edge order goes first
    assert tuple(edges[order[0]].tolist()) == (0, 1)
    # then deg 0 = 5 and deg 1 = 2: (0, 2) and (0, 3) have (3, 5), above (2, 3)'s (3, 3) and (1, 2)'s (2, 3)
    assert tuple(edges[order[1]].tolist()) == (0, 2)


def test_removal_prefix_and_bad_arguments():
    assert wis.removal_prefix([4, 2, 0, 1, 3], 5, 0.6).tolist() == [4, 2]
    assert wis.removal_prefix([4, 2, 0, 1, 3], 5, 1.0).tolist() == []
    with pytest.raises(ConfigError, match="keep_ratio"):
        wis.removal_prefix([0], 1, 1.5)
    with pytest.raises(ConfigError, match="chunk_size"):
        wis.two_wis_order(np.array([[0, 1]]), 2, chunk_size=0)
