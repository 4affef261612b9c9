"""Benchmark: the numerical ranks of H_L, H_O and H_F of one chapter-5 point, the previous way and the current way.

Points (``--points``): §5.1 ``width W`` (8×8 inputs, n = 100, hidden [W, W]) and §5.2 ``depth D`` (4×4 inputs, n = 50,
D hidden layers of width 25), K = 10, linear and ReLU (``--activations``), on random data shaped like the MNIST inputs
of the default tier: the border pixels are zero in every sample (23 of 64, 7 of 16) and the data rank is that of the
active inputs (41, 9).

  (a) previous: G by reverse-mode autodiff (``jacrev``), H_F by forward-over-reverse (``torch.func.hessian``),
      ``eigvalsh`` of the whole p × p H_L and H_F, ``svdvals`` of the whole nK × p factor G of H_O;
  (b) current (:func:`rankrepro.hessian.maps.map_ranks`): J and H_F assembled from the layer structure, the maps
      restricted to a subspace that holds their range (linear networks: rotated coordinates; any network: without the
      inert parameters), H_O from the singular values of the restricted G (transposed when wide).
Both must give the same ranks at τ/100, τ and 100τ (checked). ``--plain`` adds (i): H_O and H_L formed as p × p
matrices and ``torch.linalg.matrix_rank`` (an SVD) on each of the three maps, built the current way.

Prints a markdown table of process CPU seconds (so that other jobs on a shared machine do not count) and the
speed-up of (b) over (a); ``--out FILE`` also writes JSON.

    python benchmarks/bench_hessian_rank.py [--points "width 36" "depth 9"] [--threads 1] [--out results.json]
"""

from __future__ import annotations

import argparse
import time

import torch

from _report import machine, write_json
from rankrepro.hessian.maps import (
    MLP,
    HessianMaps,
    forward,
    functional_hessian,
    glorot_normal_init,
    hessian_maps,
    map_ranks,
    output_hessian_root,
    output_jacobian,
    rank_report,
    symmetric_rank,
)


def cpu_timed(function, *args, **kwargs):
    """Process CPU seconds of one call and its result."""
    started = time.process_time()
    result = function(*args, **kwargs)
    return time.process_time() - started, result


def previous_ranks(mlp: MLP, theta: torch.Tensor, X: torch.Tensor, Y: torch.Tensor, loss: str) -> dict:
    """(a): autodiff maps, whole decompositions (the mechanism of the experiments before this benchmark's change)."""
    jac = output_jacobian(mlp, theta, X)
    root = output_hessian_root(loss, forward(mlp, theta, X).detach(), Y)
    factor = (root @ jac).reshape(-1, jac.shape[-1])
    functional = functional_hessian(mlp, theta, X, Y, loss)
    loss_matrix = factor.T @ factor + functional
    size = mlp.num_params
    return {
        "loss": symmetric_rank(loss_matrix),
        "outer": rank_report(torch.linalg.svdvals(factor) ** 2, size),
        "functional": symmetric_rank(functional),
    }


def plain_ranks(maps: HessianMaps) -> dict[str, int]:
    """(i): every Hessian formed as a p × p matrix, ranked by ``torch.linalg.matrix_rank``."""
    outer = maps.outer
    return {
        "loss": int(torch.linalg.matrix_rank(outer + maps.functional)),
        "outer": int(torch.linalg.matrix_rank(outer)),
        "functional": int(torch.linalg.matrix_rank(maps.functional)),
    }


def data(n: int, side: int, zero: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n samples of side² inputs whose first ``zero`` are zero in every sample, generic otherwise (rank
    min(n, side² − zero)); one-hot labels over 10 classes."""
    X = torch.rand(n, side * side, generator=generator, dtype=torch.float64)
    X[:, :zero] = 0.0
    return X, torch.eye(10, dtype=torch.float64)[torch.randint(10, (n,), generator=generator)]


def network(point: str, activation: str) -> MLP:
    """The MLP of ``width W`` or ``depth D``."""
    kind, value = point.split()
    if kind == "width":
        return MLP((64, int(value), int(value), 10), activation=activation)
    return MLP((16, *[25] * int(value), 10), activation=activation)


def measure(point: str, activation: str, loss: str, plain: bool, generator: torch.Generator) -> dict:
    """Time (a), (b) and optionally (i) on one point; check that they give the same ranks."""
    mlp = network(point, activation)
    X, Y = data(100, 8, 23, generator) if point.startswith("width") else data(50, 4, 7, generator)
    theta = glorot_normal_init(mlp, torch.Generator().manual_seed(mlp.num_params))
    old_s, old = cpu_timed(previous_ranks, mlp, theta, X, Y, loss)
    new_s, new = cpu_timed(map_ranks, mlp, theta, X, Y, loss)
    for kind in old:
        if (old[kind].rank, old[kind].ranks_at) != (new[kind].rank, new[kind].ranks_at):
            raise SystemExit(f"{point} {activation}: {kind} differs: previous {old[kind]}, current {new[kind]}")
    row = {
        "point": point,
        "activation": activation,
        "params": mlp.num_params,
        "previous_s": old_s,
        "current_s": new_s,
        "speedup": old_s / new_s,
        "ranks": {kind: r.rank for kind, r in new.items()},
    }
    if plain:
        plain_s, by_matrix_rank = cpu_timed(lambda: plain_ranks(hessian_maps(mlp, theta, X, Y, loss)))
        if by_matrix_rank != row["ranks"]:
            raise SystemExit(f"{point} {activation}: matrix_rank {by_matrix_rank}, rankrepro {row['ranks']}")
        row["plain_s"] = plain_s
    return row


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", nargs="+", default=["width 36", "depth 9"])
    parser.add_argument("--activations", nargs="+", default=["linear", "relu"])
    parser.add_argument("--loss", default="ce")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--plain", action="store_true", help="also time (i), matrix_rank of the p × p maps")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    generator = torch.Generator().manual_seed(0)
    warm = torch.randn(64, 64, generator=generator, dtype=torch.float64)
    torch.linalg.eigvalsh(warm @ warm.T), torch.linalg.svdvals(warm), torch.linalg.matrix_rank(warm)  # LAPACK warm-up
    rows = [
        measure(point, activation, args.loss, args.plain, generator)
        for point in args.points
        for activation in args.activations
    ]

    print(
        f"chapter-5 points ({args.loss}, float64, {torch.get_num_threads()} thread(s), torch {torch.__version__}); "
        f"process CPU seconds per point"
    )
    print()
    print(
        "| point | activation | p | (a) previous (s) | (b) current (s) | speed-up | matrix_rank ×3 (s) | "
        "ranks H_L / H_O / H_F |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for row in rows:
        ranks = row["ranks"]
        plain = f"{row['plain_s']:.2f}" if "plain_s" in row else "–"
        print(
            f"| {row['point']} | {row['activation']} | {row['params']:,} | {row['previous_s']:.2f} | "
            f"{row['current_s']:.2f} | {row['speedup']:.1f}× | {plain} | "
            f"{ranks['loss']} / {ranks['outer']} / {ranks['functional']} |"
        )
    result = {"benchmark": "hessian_rank", "machine": machine(), "loss": args.loss, "rows": rows}
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
