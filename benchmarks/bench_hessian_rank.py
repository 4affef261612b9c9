"""Benchmark: the numerical ranks of H_L, H_O and H_F of one chapter-5 point, the old way and the new way.

Points: §5.1 (8×8 inputs of rank 41, n = 100, K = 10, hidden [w, w]; ``--widths``) and §5.2 (4×4 inputs of rank 9,
n = 50, D hidden layers of width 25; ``--depths``), on random data with the authors' data rank.

Building the maps (G with H_O = GᵀG, and H_F):
  (a)  autodiff, what the experiments ran before: J by reverse mode (``jacrev``), H_F by forward-over-reverse
       (``torch.func.hessian``: p Hessian-vector products);
  (b)  structural, what they run now: one forward pass keeping activations and layer-to-layer Jacobians
       (:func:`rankrepro.hessian.network_derivatives`), J and H_F assembled from their closed-form blocks.
  The two must agree to rounding (checked), and so must the ranks they give.

Ranking the maps:
  (i)  plain: H_O = Σ_i J_iᵀ A_i J_i and H_L formed as p × p matrices, ``torch.linalg.matrix_rank`` (an SVD) on each;
  (ii) rankrepro: rank of H_O from the singular values of its nK × p factor G (never forming H_O), ``eigvalsh``
       (values only) of the symmetric H_L and H_F: one decomposition serves the three tolerances τ/100, τ, 100τ.

Both rankings use the same tolerance rule (σ_max · p · eps, matrix_rank's default) and must give the same ranks
(checked). Prints a markdown table of seconds (process CPU time, so that other jobs on the machine do not count) per
point and the speed-ups: build (a)/(b), and a whole point, old (a)+(ii) over new (b)+(ii); ``--out FILE`` also
writes JSON.

    python benchmarks/bench_hessian_rank.py [--widths 16 36] [--depths 9] [--threads 1] [--out results.json]
"""

from __future__ import annotations

import argparse
import time

import torch
from _report import machine, write_json

from rankrepro.hessian import (MLP, HessianMaps, functional_hessian, glorot_normal_init, gram_rank, hessian_maps,
                               output_hessian_root, output_jacobian, forward, symmetric_rank)


def cpu_timed(function, *args, **kwargs):
    """Process CPU seconds of one call and its result."""
    started = time.process_time()
    result = function(*args, **kwargs)
    return time.process_time() - started, result


def autodiff_maps(mlp: MLP, theta: torch.Tensor, X: torch.Tensor, Y: torch.Tensor, loss: str) -> HessianMaps:
    """(a): G from the reverse-mode Jacobian, H_F by forward-over-reverse autodiff (the previous mechanism)."""
    jac = output_jacobian(mlp, theta, X)
    root = output_hessian_root(loss, forward(mlp, theta, X).detach(), Y)
    return HessianMaps(outer_factor=(root @ jac).reshape(-1, jac.shape[-1]),
                       functional=functional_hessian(mlp, theta, X, Y, loss))


def plain_ranks(maps: HessianMaps) -> dict[str, int]:
    """(i): every Hessian formed as a p × p matrix, ranked by ``torch.linalg.matrix_rank``."""
    outer = maps.outer
    return {"loss": int(torch.linalg.matrix_rank(outer + maps.functional)),
            "outer": int(torch.linalg.matrix_rank(outer)),
            "functional": int(torch.linalg.matrix_rank(maps.functional))}


def rankrepro_ranks(maps: HessianMaps) -> dict[str, int]:
    """(ii): H_O from its factor's singular values, H_L and H_F by ``eigvalsh``."""
    return {"loss": symmetric_rank(maps.loss).rank, "outer": gram_rank(maps.outer_factor).rank,
            "functional": symmetric_rank(maps.functional).rank}


def data(n: int, d: int, rank: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n samples of d inputs of the given rank, one-hot labels over 10 classes."""
    X = (torch.randn(n, rank, generator=generator, dtype=torch.float64)
         @ torch.randn(rank, d, generator=generator, dtype=torch.float64))
    return X, torch.eye(10, dtype=torch.float64)[torch.randint(10, (n,), generator=generator)]


def measure(label: str, mlp: MLP, X: torch.Tensor, Y: torch.Tensor, loss: str, plain: bool) -> dict:
    """Time (a), (b), (ii) and optionally (i) on one point; check that builds and ranks agree."""
    theta = glorot_normal_init(mlp, torch.Generator().manual_seed(mlp.num_params))
    old_build_s, old = cpu_timed(autodiff_maps, mlp, theta, X, Y, loss)
    new_build_s, new = cpu_timed(hessian_maps, mlp, theta, X, Y, loss)
    for name in ("outer_factor", "functional"):
        reference, value = getattr(old, name), getattr(new, name)
        if not torch.allclose(reference, value, rtol=0, atol=1e-12 * float(reference.abs().max())):
            raise SystemExit(f"{label}: the structural {name} differs from autodiff")
    ours_s, ours = cpu_timed(rankrepro_ranks, new)
    _, from_old = cpu_timed(rankrepro_ranks, old)
    if from_old != ours:
        raise SystemExit(f"{label}: the ranks differ: autodiff maps {from_old}, structural maps {ours}")
    row = {"point": label, "params": mlp.num_params, "autodiff_build_s": old_build_s,
           "structural_build_s": new_build_s, "build_speedup": old_build_s / new_build_s,
           "rankrepro_ranks_s": ours_s, "point_speedup": (old_build_s + ours_s) / (new_build_s + ours_s),
           "ranks": ours}
    if plain:
        plain_s, by_matrix_rank = cpu_timed(plain_ranks, new)
        if by_matrix_rank != ours:
            raise SystemExit(f"{label}: the ranks differ: matrix_rank {by_matrix_rank}, rankrepro {ours}")
        row.update(plain_ranks_s=plain_s, rank_speedup=plain_s / ours_s)
    return row


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", type=int, nargs="*", default=[16, 36])
    parser.add_argument("--depths", type=int, nargs="*", default=[9])
    parser.add_argument("--loss", default="ce")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-plain", action="store_true", help="skip the matrix_rank baseline (i)")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    generator = torch.Generator().manual_seed(0)
    warm = torch.randn(64, 64, generator=generator, dtype=torch.float64)
    torch.linalg.eigvalsh(warm @ warm.T), torch.linalg.svdvals(warm), torch.linalg.matrix_rank(warm)  # LAPACK warm-up
    X8, Y8 = data(100, 64, 41, generator)  # §5.1: the authors' MNIST r = 41
    X4, Y4 = data(50, 16, 9, generator)  # §5.2: r = 9 (MNIST 4×4)
    rows = [measure(f"width {w}", MLP((64, w, w, 10)), X8, Y8, args.loss, not args.no_plain) for w in args.widths]
    rows += [measure(f"depth {D}", MLP((16, *[25] * D, 10)), X4, Y4, args.loss, not args.no_plain)
             for D in args.depths]

    print(f"chapter-5 points ({args.loss}, float64, {torch.get_num_threads()} thread(s), torch {torch.__version__}); "
          f"CPU seconds")
    print()
    print("| point | p | build: autodiff (s) | build: structural (s) | build speed-up | ranks (ii) (s) | "
          "point speed-up | matrix_rank ×3 (s) | (ii) over (i) | ranks H_L / H_O / H_F |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for row in rows:
        ranks = row["ranks"]
        plain = (f"{row['plain_ranks_s']:.2f} | {row['rank_speedup']:.1f}×" if "plain_ranks_s" in row else "– | –")
        print(f"| {row['point']} | {row['params']:,} | {row['autodiff_build_s']:.2f} | {row['structural_build_s']:.2f} | "
              f"{row['build_speedup']:.0f}× | {row['rankrepro_ranks_s']:.2f} | {row['point_speedup']:.1f}× | {plain} | "
              f"{ranks['loss']} / {ranks['outer']} / {ranks['functional']} |")
    result = {"benchmark": "hessian_rank", "machine": machine(), "loss": args.loss, "rows": rows}
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
