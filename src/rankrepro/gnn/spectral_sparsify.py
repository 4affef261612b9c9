"""Spectral sparsification (Spielman & Srivastava, 2011) as an edge-removal order.

Spielman & Srivastava, "Graph sparsification by effective resistances", SIAM J. Comput. 40(6), 2011, sample the
edges of a graph G = (V, E) with probability p_e ∝ w_e R_e, where R_e is the effective resistance of edge e = {u, v}:

    R_e = (χ_u − χ_v)ᵀ L⁺ (χ_u − χ_v),

L = D − A the graph Laplacian, L⁺ its Moore–Penrose pseudo-inverse and χ_u the indicator vector of vertex u.
Edges of high resistance (bridges have R_e = 1, the maximum for unit weights) are the ones the spectrum of L
depends on most; edges inside dense clusters have small R_e (2/n in the complete graph K_n) and are redundant.

Here the weights are all one (w_e = 1) and the sampling is turned into an ordering of all edges, which is the form
the edge-sparsification experiments of Razin, Verbin & Cohen (NeurIPS 2023) use for their baselines: the edges are
drawn WITHOUT replacement with probabilities ∝ R_e (Efraimidis & Spirakis, 2006: key_e = u_e^(1/p_e), u_e ~ U(0, 1),
draw in descending key order); edges drawn first are the most important, so the removal order is the reverse of the
drawing order (edges drawn last are removed first).

Effective resistances are computed exactly (dense, small graphs) or approximately by the Johnson–Lindenstrauss
projection of Spielman & Srivastava: R_e = ‖W^{1/2} B L⁺ (χ_u − χ_v)‖², and a random k × m matrix Q of ±1/√k
entries preserves these m squared norms within a factor 1 ± ε, ε = O(sqrt(log m / k)), with high probability.

Conventions shared with the other sparsifiers of the project: a graph is ``edges`` (m, 2) int64 with unique pairs
u < v, no self-loops, and ``num_nodes`` (isolated vertices and several connected components are allowed); a
sparsifier returns a removal order, a permutation of range(m) whose first entries are removed first. To keep a
fraction ``ratio`` of the edges, callers remove the first ``m − int(m·ratio)`` entries of the order.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.csgraph
import scipy.sparse.linalg

from rankrepro.core.graphs import adjacency, check_edges, degrees

#: Largest ``num_nodes`` for which :func:`exact_effective_resistances` builds dense n × n matrices.
EXACT_MAX_NODES = 5000
#: ``method="auto"`` of :func:`effective_resistances` is exact up to this many vertices, approximate above.
AUTO_EXACT_MAX_NODES = 2000
#: Resistances below this fraction of the largest one are raised to it in :func:`spectral_removal_order`.
RESISTANCE_FLOOR = 1e-12

_METHODS = ("auto", "exact", "approximate")


def _incidence(edges: np.ndarray, num_nodes: int) -> scipy.sparse.csr_matrix:
    """Signed m × n incidence matrix B: row e = {u, v} is χ_uᵀ − χ_vᵀ (so L = Bᵀ B)."""
    m = edges.shape[0]
    rows = np.repeat(np.arange(m, dtype=np.int64), 2)
    data = np.tile(np.array([1.0, -1.0]), m)
    return scipy.sparse.csr_matrix((data, (rows, edges.reshape(-1))), shape=(m, num_nodes), dtype=np.float64)


def laplacian(edges: np.ndarray, num_nodes: int) -> scipy.sparse.csr_matrix:
    """Graph Laplacian L = D − A (n × n, float64, CSR) of the unit-weight undirected graph; L = Bᵀ B.

    L_uu = deg(u), L_uv = −1 for every edge {u, v}, 0 elsewhere; L is symmetric positive semi-definite and its
    kernel is spanned by the indicator vectors of the connected components.
    """
    degree = scipy.sparse.diags(degrees(edges, num_nodes).astype(np.float64))
    return (degree - adjacency(edges, num_nodes, self_loops=False).astype(np.float64)).tocsr()


def _resistances_from_potentials(potentials: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Σ_rows (P[:, u] − P[:, v])² for every edge, P a (k, n) array of vertex potentials."""
    diff = potentials[:, edges[:, 0]] - potentials[:, edges[:, 1]]
    return np.einsum("ij,ij->j", diff, diff)


def exact_effective_resistances(edges: np.ndarray, num_nodes: int) -> np.ndarray:
    """Exact effective resistances R_e = (χ_u − χ_v)ᵀ L⁺ (χ_u − χ_v), shape (m,), float64.

    Computed per connected component C (an edge always lies inside one): with L_C the component's Laplacian and
    J = 1 1ᵀ / |C|, L_C + J is positive definite and L_C⁺ = (L_C + J)⁻¹ − J, so R_e is read off the dense inverse of
    L_C + J (the J terms cancel in R_e = L⁺_uu + L⁺_vv − 2 L⁺_uv). Resistances of different components never mix,
    isolated vertices play no role, and Foster's theorem Σ_e R_e = n − (number of components) holds.

    Dense O(|C|³) work and O(|C|²) memory: raises ValueError when num_nodes > EXACT_MAX_NODES (5000); use
    :func:`approximate_effective_resistances` for larger graphs.
    """
    edges = check_edges(edges, num_nodes)
    if num_nodes > EXACT_MAX_NODES:
        raise ValueError(
            f"exact_effective_resistances builds dense matrices and is limited to {EXACT_MAX_NODES} vertices "
            f"(got {num_nodes}); use approximate_effective_resistances (or method='approximate') instead"
        )
    m = edges.shape[0]
    resistances = np.zeros(m, dtype=np.float64)
    if m == 0:
        return resistances
    lap = laplacian(edges, num_nodes)
    num_components, labels = scipy.sparse.csgraph.connected_components(lap, directed=False)
    edge_labels = labels[edges[:, 0]]
    sizes = np.bincount(labels, minlength=num_components)
    for c in np.unique(edge_labels):
        nodes = np.flatnonzero(labels == c)
        local = np.full(num_nodes, -1, dtype=np.int64)
        local[nodes] = np.arange(nodes.size)
        in_c = np.flatnonzero(edge_labels == c)
        lap_c = lap[nodes][:, nodes].toarray() + 1.0 / sizes[c]
        inverse = scipy.linalg.inv(lap_c, check_finite=False)
        a, b = local[edges[in_c, 0]], local[edges[in_c, 1]]
        resistances[in_c] = inverse[a, a] + inverse[b, b] - 2.0 * inverse[a, b]
    return resistances


def approximate_effective_resistances(
    edges: np.ndarray, num_nodes: int, *, num_projections: int, seed: int, tol: float = 1e-10
) -> np.ndarray:
    """Johnson–Lindenstrauss estimates of the effective resistances (Spielman & Srivastava, 2011), shape (m,).

    R_e = (χ_u − χ_v)ᵀ L⁺ (χ_u − χ_v) = ‖B L⁺ (χ_u − χ_v)‖² since L⁺ L L⁺ = L⁺ and L = Bᵀ W B with W = I. With
    Q a k × m matrix of independent ±1/√k entries (k = ``num_projections``, drawn from
    ``numpy.random.default_rng(seed)``) and Z = Q W B L⁺ (k × n),

        R̃_e = ‖Z (χ_u − χ_v)‖²  satisfies  (1 − ε) R_e ≤ R̃_e ≤ (1 + ε) R_e  for all edges w.h.p.,

    with relative error ε ~ sqrt(log m / k) (k ≥ 24 log m / ε² suffices for the JL lemma). Each row z of Z solves
    L zᵀ = Bᵀ qᵀ. The right-hand side sums to zero on every connected component, so it lies in range(L); grounding
    one vertex per component (setting its potential to 0; isolated vertices are grounded entirely) leaves a
    non-singular Laplacian block, factorised once with a sparse LU (``scipy.sparse.linalg.splu``) and applied to
    all k right-hand sides at once. The grounded solution differs from L⁺ bᵀ by a constant per component, which
    cancels in z_u − z_v. The LU solve is refined iteratively until every relative residual ‖L z − b‖ / ‖b‖ is at
    most ``tol`` (a RuntimeWarning is issued if three refinement steps do not reach it).
    """
    edges = check_edges(edges, num_nodes)
    if isinstance(num_projections, bool) or not isinstance(num_projections, (int, np.integer)) or num_projections < 1:
        raise ValueError(f"num_projections must be a positive integer, got {num_projections!r}")
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol!r}")
    m, k = edges.shape[0], int(num_projections)
    if m == 0:
        return np.zeros(0, dtype=np.float64)
    rng = np.random.default_rng(seed)
    signs = rng.integers(0, 2, size=(k, m), dtype=np.int8).astype(np.float64)
    q = (2.0 * signs - 1.0) / np.sqrt(k)
    incidence = _incidence(edges, num_nodes)
    rhs = np.asarray(incidence.T @ q.T)  # (n, k): columns Bᵀ qᵀ
    lap = laplacian(edges, num_nodes)
    num_components, labels = scipy.sparse.csgraph.connected_components(lap, directed=False)
    _, first = np.unique(labels, return_index=True)  # one grounded vertex per component
    free = np.setdiff1d(np.arange(num_nodes), first, assume_unique=True)
    lap_free = lap[free][:, free].tocsc()
    rhs_free = rhs[free]
    solver = scipy.sparse.linalg.splu(lap_free, permc_spec="MMD_AT_PLUS_A")
    solution = solver.solve(rhs_free)
    rhs_norm = np.linalg.norm(rhs_free, axis=0)
    rhs_norm[rhs_norm == 0] = 1.0
    for _ in range(3):
        residual = rhs_free - lap_free @ solution
        if np.max(np.linalg.norm(residual, axis=0) / rhs_norm) <= tol:
            break
        solution += solver.solve(residual)
    else:
        residual = rhs_free - lap_free @ solution
        worst = float(np.max(np.linalg.norm(residual, axis=0) / rhs_norm))
        if worst > tol:
            warnings.warn(
                f"Laplacian solves reached a relative residual of {worst:.3g} > tol={tol:.3g}",
                RuntimeWarning,
                stacklevel=2,
            )
    potentials = np.zeros((k, num_nodes), dtype=np.float64)
    potentials[:, free] = solution.T
    return _resistances_from_potentials(potentials, edges)


def effective_resistances(
    edges: np.ndarray, num_nodes: int, *, method: str = "auto", num_projections: int = 200, seed: int = 0
) -> np.ndarray:
    """Effective resistances R_e = (χ_u − χ_v)ᵀ L⁺ (χ_u − χ_v) of all edges, shape (m,), float64.

    ``method``: "exact" (:func:`exact_effective_resistances`, dense, ≤ 5000 vertices), "approximate"
    (:func:`approximate_effective_resistances` with ``num_projections`` and ``seed``, relative error
    ~ sqrt(log m / num_projections)), or "auto": exact when num_nodes ≤ 2000, approximate otherwise.
    """
    if method not in _METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {_METHODS}")
    if method == "auto":
        method = "exact" if num_nodes <= AUTO_EXACT_MAX_NODES else "approximate"
    if method == "exact":
        return exact_effective_resistances(edges, num_nodes)
    return approximate_effective_resistances(edges, num_nodes, num_projections=num_projections, seed=seed)


def _check_resistances(resistances: np.ndarray, m: int) -> np.ndarray:
    """Precomputed resistances as a float64 array of shape (m,), finite and non-negative, or ValueError."""
    resistances = np.asarray(resistances, dtype=np.float64)
    if resistances.shape != (m,):
        raise ValueError(f"resistances must have shape ({m},) (one per edge), got {resistances.shape}")
    if not np.all(np.isfinite(resistances)) or np.any(resistances < 0):
        raise ValueError("resistances must be finite and non-negative")
    return resistances


def spectral_removal_order(
    edges: np.ndarray,
    num_nodes: int,
    *,
    seed: int,
    resistances: np.ndarray | None = None,
    method: str = "auto",
    num_projections: int = 200,
) -> np.ndarray:
    """Spielman–Srivastava edge-removal order: a permutation of range(m), int64, order[0] removed first.

    Edges are drawn without replacement with probabilities p_e = R_e / Σ_f R_f (unit weights), by the
    Efraimidis–Spirakis method: key_e = u_e^(1/p_e), u_e ~ U(0, 1] from ``numpy.random.default_rng(seed)``, drawing
    order = descending key; keys are compared as log(u_e) / p_e (same order, no underflow). The drawing order ranks
    edges from most to least important, so the removal order is its reverse: edges drawn last are removed first.

    ``resistances``: precomputed R_e (shape (m,)); pass them to reuse one resistance computation per graph across
    seeds, the randomness of the order then comes from ``seed`` alone. When None they are computed with
    :func:`effective_resistances` (``method``, ``num_projections``, and ``seed`` for the projections). Resistances
    below RESISTANCE_FLOOR (1e-12) times the largest are raised to that floor so that every key is finite (a real
    edge always has R_e ≥ 2/n > 0; only round-off or an approximation can bring it near 0).
    """
    edges = check_edges(edges, num_nodes)
    m = edges.shape[0]
    if resistances is None:
        resistances = effective_resistances(edges, num_nodes, method=method, num_projections=num_projections, seed=seed)
    resistances = _check_resistances(resistances, m)
    if m == 0:
        return np.zeros(0, dtype=np.int64)
    top = float(resistances.max())
    floor = RESISTANCE_FLOOR * top if top > 0 else 1.0
    weights = np.maximum(resistances, floor)
    probabilities = weights / weights.sum()
    rng = np.random.default_rng(seed)
    uniforms = 1.0 - rng.random(m)  # in (0, 1]: log is finite
    keys = np.log(uniforms) / probabilities
    drawing_order = np.argsort(-keys, kind="stable")
    return np.ascontiguousarray(drawing_order[::-1], dtype=np.int64)
