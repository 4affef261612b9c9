"""Exact ranks of the Hessian maps of linear networks: rank over the rationals, computed modulo primes.

Why. On data with directions of tiny variance (the 8 × 8 Fashion-MNIST images: σ_min/σ_max ≈ 5e-5) the eigenvalues of
H_L, H_O, H_F that belong to those directions lie next to the float64 tolerance, and the numerical rank changes
between τ/100 and 100τ (:func:`rankrepro.hessian.maps.rank_report`): it is not defined. The closed forms speak of
exact ranks, and those are defined: every float64 number is a dyadic rational m·2^e, so the network's weights, the
data and the loss's output derivatives define the maps as matrices over Q, exactly, and their rank over Q is a fact
of the float64 problem that needs no tolerance.

How. x = m·2^e ↦ m·(2^e mod P) is a ring homomorphism from the dyadic rationals to Z_P (P an odd prime), and every
entry of the maps is a sum of products of weights, data and output derivatives, so the maps reduced mod P are the
maps computed in Z_P from the reduced inputs. Then

- rank_P(H mod P) ≤ rank_Q(H), with equality unless P divides every nonzero minor of order rank_Q(H);
- rank_P(Ωᵀ H Ω) ≤ rank_P(H) for any Ω (p × k); writing the symmetric H = Uᵀ D U (U of full row rank r, D
  invertible diagonal: characteristic ≠ 2), Ωᵀ H Ω = (UΩ)ᵀ D (UΩ) has rank r as soon as UΩ — uniform r × k for a
  uniform Ω — has full row rank, which fails with probability below P^−(k−r);
- the k × k sketch is ranked by an LU factorisation without pivoting (:func:`sketch_rank`): for a random Ω its
  leading minors of order ≤ rank are nonzero unless the draw is unlucky, which shows as a nonzero Schur complement
  after the first zero pivot and is then redrawn.

So a measured rank is never above the exact one. With k ≥ rank + 32 the sketch loses rank with probability below
P^−32, and a prime P ≈ 2^20 (so that products of residues stay exact in float64 BLAS: :func:`mod_matmul`) divides
every nonzero minor of the rank's order only by a coincidence of order 1/P. :func:`exact_ranks` therefore uses one
prime, and a second one wherever the first count is below the largest float64 count (where a lowered count would
show), keeping the larger. A sketch that comes out of full rank k < p is redrawn with 2k columns.

The maps are those of :mod:`rankrepro.hessian.maps` in its notation, for networks without activation (with or
without biases), assembled in sketched form without ever forming a p × p matrix:

- J Ω with J[(i, c), (l, a, b)] = C_l[c, a] ã_l[i, b] (C_l = W^L ⋯ W^{l+1}, ã_l the layer's input with a 1 appended
  for its bias), and Ωᵀ H_O Ω = Σ_i (J_i Ω)ᵀ A_i (J_i Ω);
- Ωᵀ H_F Ω = Σ_{l>k} (S_lk + S_lkᵀ), S_lk = Ω_lᵀ T_lk Ω_k with T_lk[(a, b), (c, e)] = N_lk[a, e] P̃_lk[b, c],
  N_lk = C_lᵀ gᵀ ã_k and P̃_lk = W^{l-1} ⋯ W^{k+1} (I for l − 1 = k) with a zero row for the bias of layer l's
  input (:func:`rankrepro.hessian.maps.structural_functional_hessian` for σ = identity);
- Ωᵀ H_L Ω = Ωᵀ H_O Ω + Ωᵀ H_F Ω.

Output derivatives g_i = ∂ℓ/∂F and curvatures A_i = ∇²_F ℓ: MSE: g = F − y from the outputs computed mod P, A = I;
cross-entropy: s = softmax of the float64 outputs with s_K replaced by 1 − Σ_{c<K} s_c (so that, as in exact
arithmetic, diag(s) − ssᵀ has the null vector 1 and s − y sums to 0), g = s − y; log-cosh: g = tanh(F − y) and
A = diag(1 − tanh²(F − y)) at their float64 values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from rankrepro.hessian.maps import MLP, forward, unflatten

#: the three maps, as :func:`rankrepro.hessian.maps.hessian_ranks` names them
KINDS = ("loss", "outer", "functional")
#: primes just below 2^20: a product of two residues is < 2^40, and a sum of MAX_INNER of them stays below 2^53
MODULI = (1_048_573, 1_048_571)
#: longest inner dimension of one exact float64 matrix product mod P (MAX_INNER·(P − 1)² + P < 2^53)
MAX_INNER = 4096
#: columns per panel of the blocked LU of :func:`sketch_rank`
PANEL = 32
#: extra sketch columns over the rank the float64 count suggests
SKETCH_MARGIN = 32
#: redraws of an unlucky sketch before giving up
MAX_DRAWS = 4


# ----------------------------------------------------------------------------------------------------- arithmetic
def as_float64_array(values: np.ndarray | Tensor) -> np.ndarray:
    """``values`` (a tensor on any device, or an array) as a float64 NumPy array, the same numbers."""
    return np.asarray(values.detach().cpu().numpy() if isinstance(values, Tensor) else values, dtype=np.float64)


def residues(values: np.ndarray | Tensor, modulus: int) -> np.ndarray:
    """The float64 numbers x = m·2^e (exact dyadic rationals) as residues mod P, float64 in [0, P).

    With frexp, x = f·2^e, f ∈ [0.5, 1): m = f·2^53 is an integer (53-bit significand, exact also for subnormals)
    and x = m·2^(e − 53); 2^E mod P for negative E is the inverse power (P odd)."""
    x = as_float64_array(values)
    fraction, exponent = np.frexp(x)
    mantissa = np.ldexp(fraction, 53).astype(np.int64)
    shift = exponent.astype(np.int64) - 53
    powers, index = np.unique(shift, return_inverse=True)
    table = np.array([pow(2, int(e), modulus) for e in powers], dtype=np.float64)
    return reduce(np.mod(mantissa, modulus).astype(np.float64) * table[index.reshape(x.shape)], modulus)


def reduce(values: np.ndarray, modulus: int) -> np.ndarray:
    """x mod P in [0, P) for integers 0 ≤ |x| < 2^53 held in float64: q = ⌊x/P⌋ from one multiplication (off by at
    most one, corrected), x − qP exact (q·P < 2^53) — several times faster than ``np.fmod``."""
    out = np.floor(values * (1.0 / modulus))
    np.multiply(out, modulus, out=out)
    np.subtract(values, out, out=out)
    np.add(out, modulus, out=out, where=out < 0)
    np.subtract(out, modulus, out=out, where=out >= modulus)
    return out


def mod_matmul(left: np.ndarray, right: np.ndarray, modulus: int) -> np.ndarray:
    """(left @ right) mod P, exact: residue products summed in float64 BLAS over chunks of :data:`MAX_INNER` of the
    inner dimension (each partial sum < 2^53), reduced after every chunk. Works on stacks of matrices too."""
    inner = left.shape[-1]
    out = None
    for start in range(0, max(inner, 1), MAX_INNER):
        part = left[..., start : start + MAX_INNER] @ right[..., start : start + MAX_INNER, :]
        out = reduce(part if out is None else out + part, modulus)
    return out


def mod_product(left: np.ndarray, right: np.ndarray, modulus: int) -> np.ndarray:
    """Elementwise (left · right) mod P (broadcasting); residues < 2^20, so the product is exact."""
    return reduce(left * right, modulus)


def mod_subtract(left: np.ndarray, right: np.ndarray, modulus: int) -> np.ndarray:
    """(left − right) mod P in [0, P) for residues."""
    out = np.subtract(left, right)
    np.add(out, modulus, out=out, where=out < 0)
    return out


def sketch_rank(matrix: np.ndarray, modulus: int) -> int | None:
    """Rank of a square matrix over Z_P by a blocked LU without pivoting (panels of :data:`PANEL` columns, the
    trailing Schur complements by :func:`mod_matmul`), or None when a zero pivot appears while the Schur complement
    is not zero (then the leading minors are not all nonzero up to the rank: an unlucky sketch, to be redrawn).

    Step t scales row t by the inverse pivot and eliminates column t; rows inside the panel are updated over their
    whole width at once, rows below it only in the panel's columns, the rest of them by one product per panel. At
    the first zero pivot t the pending updates are applied and the rank is t if A[t:, t:] is then zero."""
    a = np.array(matrix, dtype=np.float64, copy=True)
    size = a.shape[0]
    for start in range(0, size, PANEL):
        stop = min(start + PANEL, size)
        for t in range(start, stop):
            if a[t, t] == 0:
                if t > start and stop < size:
                    update = mod_matmul(a[stop:, start:t], a[start:t, stop:], modulus)
                    a[stop:, stop:] = mod_subtract(a[stop:, stop:], update, modulus)
                return t if not a[t:, t:].any() else None
            a[t, t + 1 :] = mod_product(a[t, t + 1 :], float(pow(int(a[t, t]), modulus - 2, modulus)), modulus)
            if t + 1 < stop:
                rows = a[t + 1 : stop, t : t + 1]
                a[t + 1 : stop, t + 1 :] = mod_subtract(
                    a[t + 1 : stop, t + 1 :], mod_product(rows, a[t, t + 1 :], modulus), modulus
                )
                if stop < size:
                    below = a[stop:, t : t + 1]
                    a[stop:, t + 1 : stop] = mod_subtract(
                        a[stop:, t + 1 : stop], mod_product(below, a[t, t + 1 : stop], modulus), modulus
                    )
        if stop < size:
            update = mod_matmul(a[stop:, start:stop], a[start:stop, stop:], modulus)
            a[stop:, stop:] = mod_subtract(a[stop:, stop:], update, modulus)
    return size


# ----------------------------------------------------------------------------------------------------- the maps
@dataclass(frozen=True)
class ModularNetwork:
    """A linear network at θ on (X, Y), reduced mod P: per layer l (0-based) its input ã_l ``(n, B_l)`` (with a
    column of ones for the bias), its weight W^l ``(M_{l+1}, M_l)`` (no bias column), C_l = W^{L-1} ⋯ W^{l+1}
    ``(K, M_{l+1})``; the output derivatives g ``(n, K)`` and curvatures A ``(n, K, K)`` (None: the identity)."""

    modulus: int
    inputs: list[np.ndarray]
    weights: list[np.ndarray]
    to_output: list[np.ndarray]
    residual: np.ndarray
    curvature: np.ndarray | None


def output_derivatives(
    loss: str, exact_outputs: np.ndarray, float_outputs: Tensor, targets: Tensor, modulus: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """g and A of the module docstring, mod P: MSE from the exact outputs; CE with the softmax completed to sum 1
    exactly; log-cosh at the float64 values."""
    if loss == "mse":
        return mod_subtract(exact_outputs, residues(targets, modulus), modulus), None
    if loss == "ce":
        soft = residues(torch.softmax(float_outputs, dim=-1), modulus)
        soft[:, -1] = reduce(1.0 + modulus * soft.shape[1] - soft[:, :-1].sum(axis=1), modulus)
        curvature = np.stack([np.diag(row) for row in soft])
        curvature = mod_subtract(curvature, mod_product(soft[:, :, None], soft[:, None, :], modulus), modulus)
        return mod_subtract(soft, residues(targets, modulus), modulus), curvature
    if loss == "logcosh":
        slope = torch.tanh(float_outputs - targets)
        curvature = np.stack([np.diag(row) for row in residues(1.0 - slope**2, modulus)])
        return residues(slope, modulus), curvature
    raise ValueError(f"unknown loss '{loss}'")


def modular_network(mlp: MLP, theta: Tensor, X: Tensor, Y: Tensor, loss: str, modulus: int) -> ModularNetwork:
    """The factors of the maps of a linear ``mlp`` at θ on (X, Y), mod P (see :class:`ModularNetwork`)."""
    if mlp.activation != "linear":
        raise ValueError("exact ranks are for networks without activation (σ = identity)")
    layers = unflatten(mlp, theta.detach().to(torch.float64))
    weights = [residues(weight, modulus) for weight, _ in layers]
    biases = [None if bias is None else residues(bias, modulus) for _, bias in layers]
    hidden = residues(X, modulus)
    inputs = []
    for weight, bias in zip(weights, biases):
        augmented = hidden if bias is None else np.concatenate([hidden, np.ones((hidden.shape[0], 1))], axis=1)
        inputs.append(augmented)
        full = weight if bias is None else np.concatenate([weight, bias[:, None]], axis=1)
        hidden = mod_matmul(augmented, full.T, modulus)
    to_output = [np.eye(weights[-1].shape[0])]
    for weight in weights[:0:-1]:
        to_output.insert(0, mod_matmul(to_output[0], weight, modulus))
    float_outputs = forward(mlp, theta.detach().to(torch.float64), X.to(torch.float64))
    residual, curvature = output_derivatives(loss, hidden, float_outputs, Y.to(torch.float64), modulus)
    return ModularNetwork(modulus, inputs, weights, to_output, residual, curvature)


def sketch_columns(net: ModularNetwork, columns: int, generator: np.random.Generator) -> list[np.ndarray]:
    """Ω_l ``(M_{l+1}, B_l, k)`` per layer: uniform residues."""
    return [
        generator.integers(0, net.modulus, size=(net.weights[l].shape[0], net.inputs[l].shape[1], columns)).astype(
            np.float64
        )
        for l in range(len(net.weights))
    ]


def sketched_outer(net: ModularNetwork, omega: list[np.ndarray]) -> np.ndarray:
    """Ωᵀ H_O Ω ``(k, k)``: J Ω per sample (layer l: C_l (ã_l Ω_l)), then Σ_i (J_i Ω)ᵀ A_i (J_i Ω)."""
    P = net.modulus
    n, k = net.inputs[0].shape[0], omega[0].shape[-1]
    outputs = net.to_output[0].shape[0]
    jac = np.zeros((n, outputs, k))
    for x, chain, om in zip(net.inputs, net.to_output, omega):
        rows, width = om.shape[0], om.shape[1]
        inner = mod_matmul(x, om.transpose(1, 0, 2).reshape(width, rows * k), P)  # (n, M·k): ã_l Ω_l[a]
        inner = inner.reshape(n, rows, k).transpose(1, 0, 2).reshape(rows, n * k)
        jac = reduce(jac + mod_matmul(chain, inner, P).reshape(outputs, n, k).transpose(1, 0, 2), P)
    weighted = jac if net.curvature is None else mod_matmul(net.curvature, jac, P)
    return mod_matmul(jac.reshape(n * outputs, k).T, weighted.reshape(n * outputs, k), P)


def sketched_functional(net: ModularNetwork, omega: list[np.ndarray]) -> np.ndarray:
    """Ωᵀ H_F Ω ``(k, k)`` (zero without hidden layer): first H_F Ω layer by layer from the blocks T_lk = N_lk ⊗ P̃_lk
    of the module docstring — rows of layer l get Σ_{k<l} T_lk Ω_k + Σ_{m>l} T_mlᵀ Ω_m, each a pair of small
    products — then one product Ωᵀ (H_F Ω) over all p rows."""
    P, depth, k = net.modulus, len(net.weights), omega[0].shape[-1]
    product = [np.zeros(om.shape) for om in omega]  # (H_F Ω) in layer l's coordinates (M_{l+1}, B_l, k)
    for l in range(1, depth):
        delta = mod_matmul(net.residual, net.to_output[l], P)  # (n, M_{l+1}) = g C_l
        propagate = np.eye(net.weights[l - 1].shape[0])  # ∂a_l/∂z_{l-1} = I
        for kk in range(l - 1, -1, -1):  # P_{l,kk} = W^{l-1} ⋯ W^{kk+1}
            if kk < l - 1:
                propagate = mod_matmul(propagate, net.weights[kk + 1], P)
            padded = propagate
            if net.inputs[l].shape[1] > propagate.shape[0]:  # the bias coordinate of layer l's input: zero row
                padded = np.concatenate([propagate, np.zeros((1, propagate.shape[1]))], axis=0)
            coupling = mod_matmul(delta.T, net.inputs[kk], P)  # N (M_{l+1}, B_kk)
            rows_l, width_l = omega[l].shape[:2]
            rows_k, width_k = omega[kk].shape[:2]
            # T Ω_kk: U[b, e, j] = Σ_c P̃[b, c] Ω_kk[c, e, j], then Σ_e N[a, e] U[b, e, j]
            u = mod_matmul(padded, omega[kk].reshape(rows_k, width_k * k), P).reshape(width_l, width_k, k)
            v = mod_matmul(coupling, u.transpose(1, 0, 2).reshape(width_k, width_l * k), P)
            product[l] = reduce(product[l] + v.reshape(rows_l, width_l, k), P)
            # Tᵀ Ω_l: W[e, b, j] = Σ_a N[a, e] Ω_l[a, b, j], then Σ_b P̃[b, c] W[e, b, j]
            w = mod_matmul(coupling.T, omega[l].reshape(rows_l, width_l * k), P).reshape(width_k, width_l, k)
            x = mod_matmul(padded.T, w.transpose(1, 0, 2).reshape(width_l, width_k * k), P)
            product[kk] = reduce(product[kk] + x.reshape(rows_k, width_k, k), P)
    flat_omega = np.concatenate([om.reshape(-1, k) for om in omega])
    flat_product = np.concatenate([part.reshape(-1, k) for part in product])
    return mod_matmul(flat_omega.T, flat_product, P)


def sketched_maps(
    net: ModularNetwork, omega: list[np.ndarray], kinds: tuple[str, ...] = KINDS
) -> dict[str, np.ndarray]:
    """Ωᵀ H Ω for H = H_L, H_O, H_F (keys ``loss``, ``outer``, ``functional``), those of ``kinds`` only (H_L needs
    both parts)."""
    outer = sketched_outer(net, omega) if {"outer", "loss"} & set(kinds) else None
    functional = sketched_functional(net, omega) if {"functional", "loss"} & set(kinds) else None
    out = {"outer": outer, "functional": functional}
    if "loss" in kinds:
        out["loss"] = reduce(outer + functional, net.modulus)
    return {kind: out[kind] for kind in kinds}


# ----------------------------------------------------------------------------------------------------- ranks
def exact_ranks(
    mlp: MLP, theta: Tensor, X: Tensor, Y: Tensor, loss: str, expected: dict[str, int], seed: int
) -> dict[str, dict]:
    """Exact ranks over Q of a linear network's maps (see the module docstring) — of each kind that ``expected``
    names (``loss``: H_L, ``outer``: H_O, ``functional``: H_F) — per kind:
    ``{"rank": max over the moduli, "per_modulus": [...], "columns": the final sketch size}``.

    ``expected`` gives, per kind, a rank the sketch should exceed (the largest float64 count, at τ/100, which counts
    rounding noise above the tolerance too). The first prime of :data:`MODULI` serves every kind, the second only the
    kinds whose count came out below that (an unlucky prime can only lower a count, so that is where it would show).
    A kind's sketch is the leading k × k block of one ΩᵀHΩ (the first k columns of a uniform Ω are uniform),
    k = that + :data:`SKETCH_MARGIN` (≤ p), doubled while it comes out of full rank. The sketches are drawn from
    ``seed`` (the config's), the modulus, the attempt and the size."""
    p = mlp.num_params
    kinds = tuple(kind for kind in KINDS if kind in expected)
    found: dict[str, list[int]] = {kind: [] for kind in kinds}
    columns: dict[str, int] = {}
    for index, modulus in enumerate(MODULI):
        if index:  # another prime only where this one's count is below float64's largest: where a drop would show
            kinds = tuple(kind for kind in kinds if max(found[kind]) < expected[kind])
            if not kinds:
                break
        net = modular_network(mlp, theta, X, Y, loss, modulus)
        pending = {kind: min(p, expected[kind] + SKETCH_MARGIN) for kind in kinds}
        for attempt in range(MAX_DRAWS * 8):
            if not pending:
                break
            size = max(pending.values())
            generator = np.random.default_rng([seed, modulus, attempt, size])
            sketches = sketched_maps(net, sketch_columns(net, size, generator), tuple(pending))
            for kind in list(pending):
                wanted = pending[kind]  # Ω's first columns are a sketch of their own: the leading principal block
                rank = sketch_rank(sketches[kind][:wanted, :wanted], modulus)
                if rank is None or (rank == wanted and wanted < p):
                    pending[kind] = min(p, 2 * wanted) if rank == wanted else wanted
                    continue
                found[kind].append(rank)
                columns[kind] = max(columns.get(kind, 0), wanted)
                del pending[kind]
        if pending:
            raise RuntimeError(f"exact rank: no usable sketch for {sorted(pending)} after {MAX_DRAWS * 8} draws")
    return {kind: {"rank": max(found[kind]), "per_modulus": found[kind], "columns": columns[kind]} for kind in found}


def exact_matrix_rank(matrix: Tensor | np.ndarray, seed: int) -> int:
    """Rank over Q of a float64 matrix M ``(n, d)`` (its numbers as exact dyadic rationals): per modulus the rank of
    the m × m sketch Ω₁ M Ω₂ (m = min(n, d), Ω uniform over Z_P, redrawn after an unlucky pivot) by
    :func:`sketch_rank`; the larger count over :data:`MODULI` (never above the rank over Q)."""
    values = as_float64_array(matrix)
    n, d = values.shape
    size = min(n, d)
    counts = []
    for modulus in MODULI:
        reduced = residues(values, modulus)
        for attempt in range(MAX_DRAWS):
            generator = np.random.default_rng([seed, modulus, attempt, n, d])
            left = generator.integers(0, modulus, size=(size, n)).astype(np.float64)
            right = generator.integers(0, modulus, size=(d, size)).astype(np.float64)
            rank = sketch_rank(mod_matmul(mod_matmul(left, reduced, modulus), right, modulus), modulus)
            if rank is not None:
                counts.append(rank)
                break
        else:
            raise RuntimeError(f"exact rank: no usable sketch of a {n} × {d} matrix after {MAX_DRAWS} draws")
    return max(counts)
