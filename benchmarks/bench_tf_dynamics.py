"""Benchmark: one §2.1 iteration at paper scale (order 4, dim 10, R = 1000, 2,000 observed entries), float64.

  (i)  plain numpy, one run (the spec's baseline, ≈16–20 ms/iteration): per observation the rows F_n[i_n, :] are
       gathered, their product P (|Ω|×R) gives the prediction Σ_r P; the gradient of mode n is the residual-weighted
       product of the other modes' rows (prefix × suffix products, no division), summed per index by a (d × |Ω|)
       one-hot matmul (much faster than ``np.add.at``); then a GroupRMSprop step;
  (ii) rankrepro, what the experiment runs: ``CPCompletionObjective`` (``method: auto``) + ``GroupRMSprop``,
       one run, and the three init scales batched in one program (reported per run).

Both follow the same trajectory from the same init (checked). Prints ms/iteration and the speed-up over (i) as a
markdown table; ``--out FILE`` also writes JSON.

    python benchmarks/bench_tf_dynamics.py [--iters 200] [--threads 2] [--out results.json]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from _report import group_rmsprop_run, machine, write_json
from rankrepro.factorization.cp import CPCompletionObjective, init_factors, multi_indices, random_cp_tensor


def numpy_loss_and_grads(
    factors: list[np.ndarray], indices: np.ndarray, values: np.ndarray, onehots: list[np.ndarray]
) -> tuple[float, list[np.ndarray]]:
    """(i): MSE over Ω and its gradient: gathered rows, one-hot (d_n × |Ω|) matmul scatters (one run, float64)."""
    rows = [f[indices[:, n]] for n, f in enumerate(factors)]  # (|Ω|, R) each
    prefix = [np.ones_like(rows[0])]  # prefix[n] = ∏_{m<n} rows[m]
    for r in rows[:-1]:
        prefix.append(prefix[-1] * r)
    suffix = [np.ones_like(rows[0])]  # suffix[k] = ∏ of the last k rows
    for r in rows[:0:-1]:
        suffix.append(suffix[-1] * r)
    product = prefix[-1] * rows[-1]
    residual = product.sum(1) - values
    weight = (2.0 / len(values)) * residual[:, None]
    grads = [onehots[n] @ (weight * prefix[n] * suffix[len(rows) - 1 - n]) for n in range(len(rows))]
    return float(np.mean(residual**2)), grads


def numpy_run(
    init: list[np.ndarray],
    indices: np.ndarray,
    values: np.ndarray,
    iters: int,
    lr: float = 1e-2,
    beta: float = 0.99,
    eps: float = 1e-6,
) -> tuple[float, float]:
    """Seconds for ``iters`` numpy GroupRMSprop iterations, and the final loss."""
    params = [p.copy() for p in init]
    onehots = [
        (np.arange(p.shape[0])[:, None] == indices[:, n][None, :]).astype(np.float64) for n, p in enumerate(params)
    ]
    second_moment = 0.0
    started = time.perf_counter()
    for t in range(1, iters + 1):
        _, grads = numpy_loss_and_grads(params, indices, values, onehots)
        second_moment = beta * second_moment + (1 - beta) * sum(float((g**2).sum()) for g in grads)
        eta = lr / (np.sqrt(second_moment / (1 - beta**t)) + eps)
        for p, g in zip(params, grads):
            p -= eta * g
    elapsed = time.perf_counter() - started
    return elapsed, numpy_loss_and_grads(params, indices, values, onehots)[0]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--components", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    dims = (10, 10, 10, 10)
    generator = torch.Generator().manual_seed(0)
    target = random_cp_tensor(dims, 5, generator)
    flat = torch.randperm(target.numel(), generator=generator)[:2000]
    indices = multi_indices(flat, dims)
    values = target.reshape(-1)[flat]
    inits = torch.tensor([5e-2, 1e-2, 5e-3])
    batched = init_factors(dims, args.components, inits, [torch.Generator().manual_seed(1) for _ in inits])
    single = [f[-1:].clone() for f in batched]
    objective = CPCompletionObjective(target, indices, "auto")

    numpy_s, numpy_loss = numpy_run([f[0].numpy() for f in single], indices.numpy(), values.numpy(), args.iters)
    single_s, single_loss = group_rmsprop_run(objective.loss_and_grads, single, args.iters)
    batched_s, batched_loss = group_rmsprop_run(objective.loss_and_grads, batched, args.iters)
    rows = [
        {"method": "plain numpy, one run", "ms_per_iteration_per_run": 1e3 * numpy_s / args.iters},
        {"method": f"rankrepro ({objective.method}), one run", "ms_per_iteration_per_run": 1e3 * single_s / args.iters},
        {
            "method": f"rankrepro ({objective.method}), 3 inits batched",
            "ms_per_iteration_per_run": 1e3 * batched_s / args.iters / len(inits),
        },
    ]
    baseline = rows[0]["ms_per_iteration_per_run"]
    for row in rows:
        row["speedup_vs_numpy"] = baseline / row["ms_per_iteration_per_run"]
    agree = abs(numpy_loss - single_loss[0]) <= 1e-8 * max(1.0, abs(numpy_loss)) and abs(
        batched_loss[-1] - single_loss[0]
    ) <= 1e-8 * max(1.0, abs(single_loss[0]))

    print(
        f"§2.1 paper scale: order 4, dim 10, R = {args.components}, 2,000 observations, {args.iters} GroupRMSprop "
        f"iterations, float64, {torch.get_num_threads()} thread(s), torch {torch.__version__}, numpy {np.__version__}"
    )
    print()
    print("| implementation | ms / iteration / run | speed-up vs numpy |")
    print("|---|---:|---:|")
    for row in rows:
        print(f"| {row['method']} | {row['ms_per_iteration_per_run']:.2f} | {row['speedup_vs_numpy']:.1f}× |")
    print()
    print(
        f"trajectories {'agree' if agree else 'DIFFER'} (final losses numpy {numpy_loss:.6e}, torch "
        f"{single_loss[0]:.6e}, batched {batched_loss[-1]:.6e})"
    )
    result = {
        "settings": {
            "dims": dims,
            "components": args.components,
            "n_obs": 2000,
            "iters": args.iters,
            "threads": torch.get_num_threads(),
        },
        "machine": machine(),
        "numpy": np.__version__,
        "rows": rows,
        "trajectories_agree": agree,
    }
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
