"""CP rank estimation: seeded, batched CP-ALS and a search for the smallest rank that fits.

CP-ALS (alternating least squares) fits W ≈ Σ_r λ_r a_r^1 ⊗ … ⊗ a_r^N with unit-norm columns a_r^n. Updating mode n
with the others fixed is a linear least-squares problem with the closed form

    F_n ← X_(n) · KR(F_{m≠n}) · (V + ρ I)^{-1},      V = ⊛_{m≠n} F_mᵀ F_m   (Hadamard product of Gram matrices),

where X_(n) is the mode-n unfolding and KR the Khatri–Rao product of the other factors (the MTTKRP). The ridge ρ
(small; the Grams have unit diagonal because columns are normalised after every update) keeps the solve stable when
components are nearly collinear. Everything runs in float64, batched over tensors × restarts.

Estimated CP rank (as in the thesis): the smallest r whose best-of-``restarts`` ALS fit reaches
MSE = (1/∏d) ‖X − X̂‖_F² < ``tol`` over **all** entries; 0 when the zero tensor already does (mean X² < tol).
The search gallops (r = 1, 2, 4, …) to the first r that fits, then bisects below it. It assumes that fitting is
monotone in r — exact for the true minimum (a rank-r fit is a rank-(r+1) fit with a zero component) and a heuristic
for ALS, which can miss a fit (swamps, degeneracy); restarts make that unlikely. Galloping keeps the common case
(low rank) cheap: it never fits ranks far above the answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from rankrepro.factorization.cp import _khatri_rao, cp_reconstruct, max_cp_rank


@dataclass(frozen=True)
class ALSSettings:
    """CP-ALS budget: MSE tolerance over all entries, iterations, restarts, ridge, check cadence, seed."""

    tol: float = 1e-6
    max_iters: int = 1000
    restarts: int = 3
    ridge: float = 1e-10
    check_every: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.tol <= 0 or self.max_iters < 1 or self.restarts < 1 or self.ridge < 0 or self.check_every < 1:
            raise ValueError(f"invalid ALSSettings {self}")


def mean_squared_error(estimate: Tensor, target: Tensor) -> Tensor:
    """(1/∏d) Σ (X̂ − X)² over all entries of each tensor in the batch ``(B, d_1, …, d_N)``: ``(B,)``."""
    return (estimate - target).pow(2).flatten(1).mean(1)


def _mttkrp(tensors: Tensor, factors: list[Tensor], mode: int) -> Tensor:
    """X_(n) · KR(F_{m≠n}): ``(B, d_n, R)`` (unfolding with the other modes in their original, C order)."""
    batch = tensors.shape[0]
    unfolded = tensors.movedim(mode + 1, 1).reshape(batch, tensors.shape[mode + 1], -1)
    others = [f for m, f in enumerate(factors) if m != mode]
    return torch.bmm(unfolded, _khatri_rao(others))


def _normalize(factor: Tensor) -> tuple[Tensor, Tensor]:
    """Unit-norm columns and their norms (zero columns stay zero)."""
    norms = factor.norm(dim=1)
    safe = torch.where(norms > 0, norms, torch.ones_like(norms))
    return factor / safe.unsqueeze(1), norms


def cp_als(
    tensors: Tensor, rank: int, settings: ALSSettings = ALSSettings(), generator: torch.Generator | None = None
) -> tuple[list[Tensor], Tensor]:
    """Best-of-restarts CP-ALS fit of rank ``rank`` to each tensor of ``tensors`` ``(B, d_1, …, d_N)``.

    Returns the factors of the best restart (weights folded into the first mode, so that
    :func:`rankrepro.factorization.cp.cp_reconstruct` gives the fit) and its MSE over all entries ``(B,)``. A tensor
    stops early once one of its restarts reaches ``settings.tol``. The initial factors of restart k are i.i.d. N(0, 1)
    from ``generator`` (default: seeded with ``settings.seed``) and shared by every tensor of the batch, so a
    tensor's fit does not depend on which other tensors it is batched with.
    """
    if rank < 1:
        raise ValueError("cp_als needs rank >= 1")
    generator = generator if generator is not None else torch.Generator().manual_seed(settings.seed)
    tensors = tensors.to(torch.float64)
    batch, dims = tensors.shape[0], tuple(tensors.shape[1:])
    runs = batch * settings.restarts
    target = tensors.repeat_interleave(settings.restarts, dim=0)  # run j fits tensor j // restarts
    starts = [torch.randn(settings.restarts, d, rank, generator=generator, dtype=torch.float64) for d in dims]
    factors = [_normalize(s.repeat(batch, 1, 1))[0] for s in starts]
    weights = torch.ones(runs, rank, dtype=torch.float64)
    ridge = settings.ridge * torch.eye(rank, dtype=torch.float64)
    alive = torch.arange(runs)  # runs still iterating
    best_mse = torch.full((batch,), float("inf"), dtype=torch.float64)
    best = [torch.zeros(batch, d, rank, dtype=torch.float64) for d in dims]
    grams = [f.transpose(1, 2) @ f for f in factors]

    def fitted(run_factors: list[Tensor], run_weights: Tensor) -> list[Tensor]:
        return [run_factors[0] * run_weights.unsqueeze(1)] + run_factors[1:]

    def record(iteration: int) -> None:
        nonlocal alive, factors, weights, target, grams
        current = fitted(factors, weights)
        mse = mean_squared_error(cp_reconstruct(current), target)
        owner = alive // settings.restarts
        for j in range(len(alive)):  # small loops: at most B·restarts entries
            t = int(owner[j])
            if float(mse[j]) < float(best_mse[t]):
                best_mse[t] = mse[j]
                for n in range(len(dims)):
                    best[n][t] = current[n][j]
        done = best_mse[owner] < settings.tol
        if iteration == settings.max_iters or bool(done.all()):
            alive = alive[:0]
            return
        if bool(done.any()):
            keep = ~done
            alive, target, weights = alive[keep], target[keep], weights[keep]
            factors = [f[keep] for f in factors]
            grams = [g[keep] for g in grams]

    for iteration in range(1, settings.max_iters + 1):
        for n in range(len(dims)):
            gram = torch.ones_like(grams[0])
            for m, g in enumerate(grams):
                if m != n:
                    gram = gram * g
            rhs = _mttkrp(target, factors, n)  # (b, d_n, R)
            update = torch.linalg.solve(gram + ridge, rhs.transpose(1, 2)).transpose(1, 2)
            factors[n], weights = _normalize(update)
            grams[n] = factors[n].transpose(1, 2) @ factors[n]
        if iteration % settings.check_every == 0 or iteration == settings.max_iters:
            record(iteration)
            if len(alive) == 0:
                break
    return best, best_mse


@dataclass(frozen=True)
class RankEstimate:
    """Estimated CP ranks ``(B,)`` and whether the search found a fitting rank ≤ r_max (else rank = r_max)."""

    ranks: Tensor
    found: Tensor
    fits: dict[int, list[tuple[int, bool]]]


def estimate_cp_rank(tensors: Tensor, settings: ALSSettings = ALSSettings(), r_max: int | None = None) -> RankEstimate:
    """Smallest r ∈ [0, r_max] whose best-of-restarts ALS fit has MSE < ``settings.tol`` (module docstring).

    ``tensors`` is ``(B, d_1, …, d_N)``; ``r_max`` defaults to ∏d / max d (an upper bound on any CP rank). All
    tensors search in lockstep; tensors testing the same r in a round share one batched ALS call whose restarts
    start from draws seeded by (``settings.seed``, r), so a tensor's estimate does not depend on its batch.
    ``fits`` records, per tensor, the ranks tried and whether each fit (for diagnostics).
    """
    tensors = tensors.to(torch.float64)
    batch, dims = tensors.shape[0], tuple(tensors.shape[1:])
    r_max = max_cp_rank(dims) if r_max is None else int(r_max)
    zero_fit = mean_squared_error(torch.zeros_like(tensors), tensors) < settings.tol
    lo = np.zeros(batch, dtype=np.int64)  # largest rank known not to fit (0: the zero tensor does not fit)
    hi = np.full(batch, -1, dtype=np.int64)  # smallest rank known to fit (-1: none yet)
    tried: dict[int, list[tuple[int, bool]]] = {b: [] for b in range(batch)}
    done = zero_fit.numpy().copy()
    ranks = np.zeros(batch, dtype=np.int64)
    found = np.ones(batch, dtype=bool)
    while not done.all():
        candidates = {}
        for b in np.flatnonzero(~done):
            if hi[b] < 0:  # galloping: 1, 2, 4, … capped at r_max
                candidates[b] = min(r_max, max(1, 2 * lo[b]))
            else:
                candidates[b] = (lo[b] + hi[b]) // 2 if hi[b] - lo[b] > 1 else hi[b]
        for r in sorted(set(candidates.values())):
            members = [b for b, c in candidates.items() if c == r]
            generator = torch.Generator().manual_seed(
                int(np.random.SeedSequence([settings.seed, r]).generate_state(1)[0])
            )
            _, mse = cp_als(tensors[members], int(r), settings, generator)
            for b, value in zip(members, mse.tolist()):
                fits = value < settings.tol
                tried[b].append((int(r), bool(fits)))
                if fits:
                    hi[b] = r
                else:
                    lo[b] = r
        for b in np.flatnonzero(~done):
            if hi[b] >= 0 and hi[b] - lo[b] <= 1:
                done[b], ranks[b] = True, hi[b]
            elif hi[b] < 0 and lo[b] >= r_max:
                done[b], ranks[b], found[b] = True, r_max, False
    return RankEstimate(torch.as_tensor(ranks), torch.as_tensor(found), tried)
