"""Benchmark: one trainer iteration of §2.1 at the paper's scale (order 4, dim 10, R = 1000, 2,000 observed entries,
three init scales batched, float64) once only some runs are still running.

  (i)  baseline: the whole batch evaluated every iteration (what the trainer did before: frozen runs are computed
       and their update masked), ``computed = None``;
  (ii) rankrepro, what the trainer now does for an objective whose runs are independent: only the runs active at the
       last sync point evaluated (``trainer._loss_and_grads`` on their indices, losses and gradients scattered back).

For 3, 2 and 1 runs still active. Both give the active runs the same losses and gradients, bit for bit (checked).
Prints ms/iteration and the speed-up of (ii) over (i) as a markdown table; ``--out FILE`` also writes JSON.

    python benchmarks/bench_trainer_compaction.py [--iters 100] [--threads 1] [--out results.json]
"""

from __future__ import annotations

import argparse

import torch

from _report import machine, timed, write_json
from rankrepro.core.trainer import _loss_and_grads
from rankrepro.factorization.cp import CPCompletionObjective, init_factors, multi_indices, random_cp_tensor


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_default_dtype(torch.float64)

    dims = (10, 10, 10, 10)
    generator = torch.Generator().manual_seed(0)
    target = random_cp_tensor(dims, 5, generator)
    flat = torch.randperm(target.numel(), generator=generator)[:2000]
    objective = CPCompletionObjective(target, multi_indices(flat, dims))
    inits = torch.tensor([5e-2, 1e-2, 5e-3])
    params = init_factors(dims, 1000, inits, [torch.Generator().manual_seed(1) for _ in inits])

    def iterations(computed: torch.Tensor | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        for _ in range(args.iters):
            result = _loss_and_grads(objective, params, computed)
        return result

    rows = []
    for active in ([0, 1, 2], [1, 2], [2]):
        computed = None if len(active) == 3 else torch.tensor(active)
        iterations(None)  # warm-up
        whole_s, (whole_loss, whole_grads) = timed(iterations, None)
        compact_s, (loss, grads) = timed(iterations, computed)
        index = torch.tensor(active)
        same = torch.equal(loss[index], whole_loss[index]) and all(
            torch.equal(g[index], w[index]) for g, w in zip(grads, whole_grads, strict=True)
        )
        rows.append(
            {
                "active_runs": len(active),
                "whole_batch_ms": 1e3 * whole_s / args.iters,
                "active_only_ms": 1e3 * compact_s / args.iters,
                "speedup": whole_s / compact_s,
                "bit_identical": same,
            }
        )
    print(f"{objective.method} gradients, {args.iters} iterations, {args.threads} thread(s)\n")
    print("| runs active (of 3) | whole batch, ms/it (baseline) | active runs only, ms/it | speed-up | identical |")
    print("|---:|---:|---:|---:|---|")
    for row in rows:
        print(
            f"| {row['active_runs']} | {row['whole_batch_ms']:.2f} | {row['active_only_ms']:.2f} | "
            f"{row['speedup']:.2f}× | {row['bit_identical']} |"
        )
    result = {"machine": machine(), "iters": args.iters, "method": objective.method, "rows": rows}
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
