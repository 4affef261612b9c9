"""Benchmark: the numerical ranks of H_L, H_O and H_F of one §5.1 point (8×8 inputs, n = 100, K = 10, hidden [w, w]).

  (i)  plain: form H_O = Σ_i J_iᵀ A_i J_i and H_L = H_O + H_F as p × p matrices and call
       ``torch.linalg.matrix_rank`` (an SVD) on each of the three;
  (ii) rankrepro, what the experiment runs: rank of H_O from the singular values of its nK × p factor G (never
       forming H_O), ``eigvalsh`` (values only) of the symmetric H_L and H_F.

Both use the same tolerance rule (σ_max · p · eps, matrix_rank's default) and must give the same ranks (checked). The
Hessian maps themselves (G by reverse mode, H_F by forward-over-reverse) are built once, timed separately and shared.
Prints a markdown table of seconds per point and the speed-up of (ii) over (i); ``--out FILE`` also writes JSON.

    python benchmarks/bench_hessian_rank.py [--widths 16 36] [--threads 2] [--out results.json]
"""

from __future__ import annotations

import argparse

import torch
from _report import machine, timed, write_json

from rankrepro.hessian import MLP, glorot_normal_init, gram_rank, hessian_maps, symmetric_rank


def plain_ranks(maps) -> dict[str, int]:
    """(i): every Hessian formed as a p × p matrix, ranked by ``torch.linalg.matrix_rank``."""
    outer = maps.outer
    return {"loss": int(torch.linalg.matrix_rank(outer + maps.functional)),
            "outer": int(torch.linalg.matrix_rank(outer)),
            "functional": int(torch.linalg.matrix_rank(maps.functional))}


def rankrepro_ranks(maps) -> dict[str, int]:
    """(ii): H_O from its factor's singular values, H_L and H_F by ``eigvalsh``."""
    return {"loss": symmetric_rank(maps.loss).rank, "outer": gram_rank(maps.outer_factor).rank,
            "functional": symmetric_rank(maps.functional).rank}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 36])
    parser.add_argument("--loss", default="ce")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    generator = torch.Generator().manual_seed(0)
    # 100 samples of 8×8 inputs of rank 41 (the authors' MNIST r), one-hot labels over 10 classes
    X = torch.randn(100, 41, generator=generator, dtype=torch.float64) @ torch.randn(41, 64, generator=generator,
                                                                                     dtype=torch.float64)
    Y = torch.eye(10, dtype=torch.float64)[torch.randint(10, (100,), generator=generator)]
    warm = torch.randn(64, 64, generator=generator, dtype=torch.float64)
    torch.linalg.eigvalsh(warm @ warm.T), torch.linalg.svdvals(warm), torch.linalg.matrix_rank(warm)  # LAPACK warm-up
    rows = []
    for width in args.widths:
        mlp = MLP((64, width, width, 10))
        theta = glorot_normal_init(mlp, torch.Generator().manual_seed(width))
        build_s, maps = timed(hessian_maps, mlp, theta, X, Y, args.loss)
        plain_s, plain = timed(plain_ranks, maps)
        ours_s, ours = timed(rankrepro_ranks, maps)
        if plain != ours:
            raise SystemExit(f"width {width}: the ranks differ: matrix_rank {plain}, rankrepro {ours}")
        rows.append({"width": width, "params": mlp.num_params, "build_hessians_s": build_s, "plain_ranks_s": plain_s,
                     "rankrepro_ranks_s": ours_s, "speedup": plain_s / ours_s, "ranks": ours})

    print(f"§5.1 point: 8×8 inputs (r = 41), n = 100, K = 10, {args.loss}, float64, {torch.get_num_threads()} "
          f"thread(s), torch {torch.__version__}")
    print()
    print("| width | p | build G and H_F (s) | matrix_rank ×3 (s) | rankrepro (s) | speed-up | ranks H_L / H_O / H_F |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    for row in rows:
        ranks = row["ranks"]
        print(f"| {row['width']} | {row['params']:,} | {row['build_hessians_s']:.2f} | {row['plain_ranks_s']:.2f} | "
              f"{row['rankrepro_ranks_s']:.2f} | {row['speedup']:.1f}× | {ranks['loss']} / {ranks['outer']} / "
              f"{ranks['functional']} |")
    result = {"benchmark": "hessian_rank", "machine": machine(), "loss": args.loss, "rows": rows}
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
