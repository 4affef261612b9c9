"""Benchmark: one §2.1 tensor-sensing iteration at the paper's scale (order 4, dim 10, R = 1000, 2,000 Gaussian
measurements: A is 2,000 × 10⁴ float64, 160 MB), the three init scales batched, float64.

  (i)  baseline: the residuals e = W·Aᵀ − y and the pull-back ∇_W L = (2/m)·e·A as two whole matrix products (A read
       from memory twice per iteration), then the MTTKRP factor gradients and a GroupRMSprop step;
  (ii) rankrepro, what the experiment runs: ``CPMeasuredLossObjective`` (ℓ2) — the same quantities from one pass
       over A in row blocks (``cp_losses.residual_and_pullback``), at each block size in ``--blocks``.

Both follow the same trajectory from the same init (checked: same losses to 1e-9 relative). Prints ms/iteration and
the speed-up of (ii) over (i) as a markdown table; ``--out FILE`` also writes JSON.

    python benchmarks/bench_tf_sensing.py [--iters 50] [--threads 1] [--out results.json]
"""

from __future__ import annotations

import argparse

import torch
from torch import Tensor

from _report import group_rmsprop_run, machine, write_json
from rankrepro.factorization import cp_losses
from rankrepro.factorization.cp import (
    factor_grads_from_tensor_grad,
    init_factors,
    matricized_cp,
    random_cp_tensor,
)
from rankrepro.factorization.cp_losses import CPMeasuredLossObjective
from rankrepro.factorization.cp_sensing import gaussian_measurements


def two_products_loss_and_grads(factors: list[Tensor], measurements: Tensor, values: Tensor):
    """(i): the per-run MSE and factor gradients with e and ∇_W L as two whole products over A."""
    batch = factors[0].shape[0]
    left, right, recon = matricized_cp(factors)
    residual = recon.reshape(batch, -1) @ measurements.T - values
    m = measurements.shape[0]
    tensor_grad = ((2.0 / m) * residual @ measurements).reshape(recon.shape)
    return residual.pow(2).sum(-1) / m, factor_grads_from_tensor_grad(factors, left, right, tensor_grad)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--blocks", type=int, nargs="+", default=[8, 16, 32, 128])
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    dims = (10, 10, 10, 10)
    generator = torch.Generator().manual_seed(0)
    target = random_cp_tensor(dims, 5, generator)
    objective = CPMeasuredLossObjective(target, gaussian_measurements(2000, dims, generator), "l2")
    inits = torch.tensor([5e-2, 1e-2, 5e-3])
    init = init_factors(dims, 1000, inits, [torch.Generator().manual_seed(1) for _ in inits])

    base_s, base_loss = group_rmsprop_run(
        lambda p: two_products_loss_and_grads(p, objective.measurements, objective.values), init, args.iters
    )
    rows = [{"method": "two whole products (baseline)", "ms_per_iteration": 1e3 * base_s / args.iters}]
    agree = True
    default_block = cp_losses.SENSING_BLOCK_ROWS
    try:
        for block in args.blocks:
            cp_losses.SENSING_BLOCK_ROWS = block
            seconds, losses = group_rmsprop_run(objective.loss_and_grads, init, args.iters)
            rows.append({"method": f"one pass, blocks of {block} rows", "ms_per_iteration": 1e3 * seconds / args.iters})
            agree &= all(abs(a - b) <= 1e-9 * abs(b) for a, b in zip(losses, base_loss))
    finally:
        cp_losses.SENSING_BLOCK_ROWS = default_block
    for row in rows:
        row["speedup_vs_baseline"] = rows[0]["ms_per_iteration"] / row["ms_per_iteration"]

    print(
        f"§2.1 sensing, paper scale: order 4, dim 10, R = 1000, m = 2,000 (A: 160 MB), 3 inits batched, "
        f"{args.iters} GroupRMSprop iterations, float64, {torch.get_num_threads()} thread(s), torch {torch.__version__}"
    )
    print()
    print("| implementation | ms / iteration (3 runs) | speed-up vs baseline |")
    print("|---|---:|---:|")
    for row in rows:
        print(f"| {row['method']} | {row['ms_per_iteration']:.1f} | {row['speedup_vs_baseline']:.2f}× |")
    print()
    print(f"trajectories {'agree' if agree else 'DIFFER'} (final losses of the baseline {base_loss})")
    result = {
        "settings": {"dims": dims, "components": 1000, "measurements": 2000, "iters": args.iters},
        "machine": machine(),
        "default_block_rows": default_block,
        "rows": rows,
        "trajectories_agree": agree,
    }
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
