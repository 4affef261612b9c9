"""Tests of the Spielman–Srivastava sparsifier: resistances on known graphs, Foster's theorem, the JL estimate,
and the removal order (permutation, determinism, bridges last)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rankrepro.gnn.spectral_sparsify import (
    approximate_effective_resistances,
    check_edges,
    effective_resistances,
    exact_effective_resistances,
    laplacian,
    spectral_removal_order,
)


def _edges(pairs) -> np.ndarray:
    """(m, 2) int64 array of sorted unique pairs u < v."""
    pairs = sorted({(min(u, v), max(u, v)) for u, v in pairs if u != v})
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def _path(n: int) -> np.ndarray:
    return _edges((i, i + 1) for i in range(n - 1))


def _cycle(n: int) -> np.ndarray:
    return _edges((i, (i + 1) % n) for i in range(n))


def _complete(n: int, offset: int = 0) -> np.ndarray:
    return _edges((offset + i, offset + j) for i, j in itertools.combinations(range(n), 2))


def _random_graph(num_nodes: int, num_edges: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pairs: set[tuple[int, int]] = set()
    while len(pairs) < num_edges:
        u, v = (int(x) for x in rng.integers(0, num_nodes, size=2))
        if u != v:
            pairs.add((min(u, v), max(u, v)))
    return _edges(pairs)


def _num_components(edges: np.ndarray, num_nodes: int) -> int:
    """Union–find count of connected components (independent of scipy's csgraph)."""
    parent = list(range(num_nodes))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for u, v in edges:
        parent[find(int(u))] = find(int(v))
    return len({find(x) for x in range(num_nodes)})


# ----------------------------------------------------------------------------------------------- Laplacian


def test_laplacian_is_degree_minus_adjacency():
    edges = _edges([(0, 1), (1, 2), (0, 2), (2, 3)])
    expected = np.array([[2, -1, -1, 0, 0], [-1, 2, -1, 0, 0], [-1, -1, 3, -1, 0], [0, 0, -1, 1, 0], [0] * 5])
    lap = laplacian(edges, 5)
    assert lap.dtype == np.float64 and lap.shape == (5, 5)
    np.testing.assert_array_equal(lap.toarray(), expected)


# ------------------------------------------------------------------------------------- exact resistances


def test_exact_path_edges_have_unit_resistance():
    np.testing.assert_allclose(exact_effective_resistances(_path(4), 4), np.ones(3), rtol=1e-12)


@pytest.mark.parametrize("n", [3, 4, 7, 12])
def test_exact_cycle(n):
    np.testing.assert_allclose(exact_effective_resistances(_cycle(n), n), np.full(n, (n - 1) / n), rtol=1e-12)


@pytest.mark.parametrize("n", [2, 3, 5, 10])
def test_exact_complete_graph(n):
    r = exact_effective_resistances(_complete(n), n)
    np.testing.assert_allclose(r, np.full(n * (n - 1) // 2, 2 / n), rtol=1e-12)


def test_exact_tree_edges_have_unit_resistance():
    # a random recursive tree on 30 vertices plus 5 isolated vertices
    rng = np.random.default_rng(3)
    edges = _edges((int(rng.integers(0, i)), i) for i in range(1, 30))
    np.testing.assert_allclose(exact_effective_resistances(edges, 35), np.ones(29), rtol=1e-10)


def test_exact_two_disjoint_triangles():
    edges = np.concatenate([_complete(3), _complete(3, offset=3)])
    np.testing.assert_allclose(exact_effective_resistances(edges, 7), np.full(6, 2 / 3), rtol=1e-12)


def test_exact_matches_dense_pseudo_inverse_on_disconnected_graph():
    edges = np.concatenate([_random_graph(15, 30, 0), _complete(4, offset=15), _cycle(5) + 19])
    num_nodes = 26  # vertex 24 and 25 isolated
    pinv = np.linalg.pinv(laplacian(edges, num_nodes).toarray())
    u, v = edges[:, 0], edges[:, 1]
    expected = pinv[u, u] + pinv[v, v] - 2 * pinv[u, v]
    np.testing.assert_allclose(exact_effective_resistances(edges, num_nodes), expected, rtol=1e-9)


@st.composite
def graphs(draw):
    """A random simple graph on 1–14 vertices, often disconnected and with isolated vertices."""
    num_nodes = draw(st.integers(1, 14))
    all_pairs = list(itertools.combinations(range(num_nodes), 2))
    chosen = draw(st.lists(st.sampled_from(all_pairs), unique=True, max_size=len(all_pairs))) if all_pairs else []
    return _edges(chosen), num_nodes


@given(graphs())
def test_foster_theorem(graph):
    edges, num_nodes = graph
    r = exact_effective_resistances(edges, num_nodes)
    assert r.shape == (edges.shape[0],)
    assert np.all(r > 0) and np.all(r <= 1 + 1e-9)  # unit weights: 0 < R_e ≤ 1, equality iff e is a bridge
    np.testing.assert_allclose(r.sum(), num_nodes - _num_components(edges, num_nodes), atol=1e-9)


def test_exact_size_guard_points_to_approximate():
    with pytest.raises(ValueError, match="approximate_effective_resistances"):
        exact_effective_resistances(_path(3), 5001)


def test_empty_graph():
    empty = np.zeros((0, 2), dtype=np.int64)
    assert exact_effective_resistances(empty, 4).shape == (0,)
    assert approximate_effective_resistances(empty, 4, num_projections=10, seed=0).shape == (0,)
    order = spectral_removal_order(empty, 4, seed=0)
    assert order.shape == (0,) and order.dtype == np.int64


# ------------------------------------------------------------------------------- approximate resistances


def test_approximate_close_to_exact():
    edges = _random_graph(200, 600, seed=1)
    exact = exact_effective_resistances(edges, 200)
    approx = approximate_effective_resistances(edges, 200, num_projections=400, seed=0)
    rel = np.abs(approx - exact) / exact
    assert rel.max() < 0.35  # JL: ε ~ sqrt(log m / k); observed max ≈ 0.2 for these seeds
    assert rel.mean() < 0.1  # each estimate has relative standard deviation ≈ sqrt(2 / k) ≈ 0.07
    np.testing.assert_allclose(approx.sum(), exact.sum(), rtol=0.03)  # Foster, on average


def test_approximate_deterministic_per_seed():
    edges = _random_graph(60, 150, seed=2)
    a = approximate_effective_resistances(edges, 60, num_projections=50, seed=7)
    b = approximate_effective_resistances(edges, 60, num_projections=50, seed=7)
    c = approximate_effective_resistances(edges, 60, num_projections=50, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_approximate_handles_disconnected_graph_and_isolated_vertices():
    edges = np.concatenate([_random_graph(40, 100, 4), _complete(6, offset=40), _path(4) + 46])
    num_nodes = 55  # 50..54 isolated; vertices of the random part that drew no edge are isolated too
    exact = exact_effective_resistances(edges, num_nodes)
    approx = approximate_effective_resistances(edges, num_nodes, num_projections=2000, seed=3)
    np.testing.assert_allclose(approx, exact, rtol=0.3)
    np.testing.assert_allclose(approx.mean() / exact.mean(), 1.0, atol=0.03)


def test_effective_resistances_dispatch():
    edges = _random_graph(30, 60, seed=5)
    np.testing.assert_array_equal(effective_resistances(edges, 30), exact_effective_resistances(edges, 30))
    np.testing.assert_array_equal(
        effective_resistances(edges, 30, method="approximate", num_projections=20, seed=1),
        approximate_effective_resistances(edges, 30, num_projections=20, seed=1),
    )
    big = 2001  # auto switches to the approximate estimate above 2000 vertices
    np.testing.assert_array_equal(
        effective_resistances(edges, big, num_projections=20, seed=1),
        approximate_effective_resistances(edges, big, num_projections=20, seed=1),
    )
    with pytest.raises(ValueError, match="unknown method"):
        effective_resistances(edges, 30, method="magic")
    with pytest.raises(ValueError, match="num_projections"):
        approximate_effective_resistances(edges, 30, num_projections=0, seed=0)


# -------------------------------------------------------------------------------------------- removal order


def test_removal_order_is_a_deterministic_permutation():
    edges = _random_graph(50, 120, seed=6)
    order = spectral_removal_order(edges, 50, seed=0)
    assert order.dtype == np.int64 and order.shape == (120,)
    np.testing.assert_array_equal(np.sort(order), np.arange(120))
    np.testing.assert_array_equal(order, spectral_removal_order(edges, 50, seed=0))
    assert not np.array_equal(order, spectral_removal_order(edges, 50, seed=1))


@pytest.mark.parametrize("method", ["exact", "approximate"])
def test_removal_order_with_precomputed_resistances(method):
    edges = _random_graph(40, 90, seed=7)
    r = effective_resistances(edges, 40, method=method, num_projections=30, seed=3)
    np.testing.assert_array_equal(
        spectral_removal_order(edges, 40, seed=3, resistances=r),
        spectral_removal_order(edges, 40, seed=3, method=method, num_projections=30),
    )


def test_bridges_are_removed_last():
    # K_12 (66 edges, R = 2/12) with a 10-edge path hanging off vertex 11 (bridges, R = 1)
    clique, path = _complete(12), _path(11) + 11
    edges = np.concatenate([clique, path])
    num_nodes, m = 22, edges.shape[0]
    is_bridge = np.zeros(m, dtype=bool)
    is_bridge[clique.shape[0] :] = True
    r = exact_effective_resistances(edges, num_nodes)
    np.testing.assert_allclose(r[is_bridge], 1.0, rtol=1e-10)
    np.testing.assert_allclose(r[~is_bridge], 1 / 6, rtol=1e-10)
    positions = []
    for seed in range(20):
        order = spectral_removal_order(edges, num_nodes, seed=seed, resistances=r)
        rank = np.empty(m, dtype=np.int64)
        rank[order] = np.arange(m)
        positions.append(rank[is_bridge].mean() / (m - 1))  # 0 = removed first, 1 = removed last
    # A uniformly random order gives 0.5 on average; sampling ∝ R draws bridges first, so they are removed last
    # (expected ≈ 0.81, per-seed standard deviation ≈ 0.04, minimum over 2000 seeds ≈ 0.63).
    assert np.mean(positions) > 0.72
    assert min(positions) > 0.5


def test_removal_order_floors_tiny_resistances():
    edges = _path(5)
    r = np.array([1.0, 0.0, 1e-300, 1.0])
    order = spectral_removal_order(edges, 5, seed=0, resistances=r)
    np.testing.assert_array_equal(np.sort(order), np.arange(4))
    with pytest.raises(ValueError, match="shape"):
        spectral_removal_order(edges, 5, seed=0, resistances=np.ones(3))
    with pytest.raises(ValueError, match="non-negative"):
        spectral_removal_order(edges, 5, seed=0, resistances=np.array([1.0, -1.0, 1.0, 1.0]))


# ------------------------------------------------------------------------------------------ edge validation


@pytest.mark.parametrize(
    ("edges", "num_nodes", "message"),
    [
        (np.array([0, 1, 2]), 3, r"shape \(m, 2\)"),
        (np.zeros((2, 3), dtype=np.int64), 3, r"shape \(m, 2\)"),
        (np.array([[0.0, 1.0]]), 3, "integer"),
        (np.array([[1, 0]]), 3, "u < v"),
        (np.array([[1, 1]]), 3, "self-loop"),
        (np.array([[0, 3]]), 3, "outside"),
        (np.array([[-1, 2]]), 3, "outside"),
        (np.array([[0, 1], [0, 1]]), 3, "more than once"),
        (np.array([[0, 1]]), -1, "non-negative"),
        (np.array([[0, 1]]), 2.0, "integer"),
    ],
)
def test_check_edges_rejects_bad_graphs(edges, num_nodes, message):
    with pytest.raises(ValueError, match=message):
        check_edges(edges, num_nodes)


@pytest.mark.parametrize(
    "function",
    [
        laplacian,
        exact_effective_resistances,
        lambda e, n: approximate_effective_resistances(e, n, num_projections=5, seed=0),
        lambda e, n: spectral_removal_order(e, n, seed=0),
    ],
)
def test_public_functions_validate_edges(function):
    with pytest.raises(ValueError, match="u < v"):
        function(np.array([[2, 1]]), 3)


def test_check_edges_returns_int64():
    out = check_edges(np.array([[0, 1], [1, 2]], dtype=np.int32), 3)
    assert out.dtype == np.int64 and out.shape == (2, 2)
