"""Benchmark: one tensor-completion run with a one-hot einsum CP model vs the gather-based one (and the dense one).

An order-4 8×8×8×8 rank-1 target, a CP model with 512 components, 2,000 observed entries, 1,000 GroupRMSprop
iterations from the same initialization, float64, in one process on one machine:

  (i)   one-hot: G_n = einsum(O_n, F_n) with one-hot O_n ∈ {0,1}^{|Ω|×d_n}, prediction Σ_r ∏_n G_n, autograd backward;
  (ii)  gather: rankrepro.factorization.cp.cp_loss_and_grads_gather (index_select rows, analytic gradient by
        index_add_);
  (iii) dense: rankrepro.factorization.cp.cp_loss_and_grads_dense (masked full reconstruction, MTTKRP matmuls) — for
        information: it is what ``method: auto`` picks for these small tensors.

Prints the per-iteration cost, the speed-up of (ii) over (i) (target ≥ 3×) as a markdown table, and checks that
all three follow the same trajectory. ``--out FILE`` also writes the numbers as JSON.

    python benchmarks/bench_tensor_completion.py [--iters 1000] [--threads 1] [--out results.json]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch import Tensor

from _report import machine, write_json
from rankrepro.core.optim import GroupRMSprop
from rankrepro.factorization.cp import (
    CPCompletionObjective,
    cp_loss_and_grads_gather,
    init_factors,
    max_cp_rank,
    multi_indices,
    random_cp_tensor,
)

LossAndGrads = Callable[[list[Tensor]], tuple[Tensor, list[Tensor]]]


def onehot_loss_and_grads(indices: Tensor, values: Tensor, dims: tuple[int, ...]) -> LossAndGrads:
    """(i): one-hot sensing matrices, einsum forward, autograd backward."""
    onehots = [torch.nn.functional.one_hot(indices[:, n], dims[n]).to(torch.float64) for n in range(len(dims))]

    def loss_and_grads(params: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        leaves = [p.detach().requires_grad_(True) for p in params]
        prod = None
        for onehot, factor in zip(onehots, leaves):
            rows = torch.einsum("kd,bdr->bkr", onehot, factor)
            prod = rows if prod is None else prod * rows
        loss = (prod.sum(-1) - values).pow(2).mean(-1)
        grads = torch.autograd.grad(loss.sum(), leaves)
        return loss.detach(), [g.detach() for g in grads]

    return loss_and_grads


def timed_run(loss_and_grads: LossAndGrads, init: list[Tensor], iters: int) -> tuple[float, float]:
    """Seconds for ``iters`` GroupRMSprop iterations, and the final loss."""
    params = [p.clone() for p in init]
    optimizer = GroupRMSprop(torch.full((1,), 1e-2, dtype=torch.float64))
    state = optimizer.init_state(params)
    active = torch.ones(1, dtype=torch.bool)
    loss_and_grads(params)  # warm-up (allocator, einsum path)
    started = time.perf_counter()
    for _ in range(iters):
        loss, grads = loss_and_grads(params)
        optimizer.step(params, grads, state, active)
    elapsed = time.perf_counter() - started
    return elapsed, float(loss_and_grads(params)[0][0])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=int, default=1000)
    parser.add_argument("--n-obs", type=int, default=2000)
    parser.add_argument("--init", type=float, default=1e-2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    dims = (8, 8, 8, 8)
    components = max_cp_rank(dims)
    generator = torch.Generator().manual_seed(0)
    target = random_cp_tensor(dims, 1, generator)
    flat = torch.randperm(target.numel(), generator=generator)[: args.n_obs]
    indices = multi_indices(flat, dims)
    values = target.reshape(-1)[flat]
    init = init_factors(dims, components, torch.tensor([args.init]), [torch.Generator().manual_seed(1)])

    dense = CPCompletionObjective(target, indices, "dense")
    methods: dict[str, LossAndGrads] = {
        "one-hot einsum + autograd": onehot_loss_and_grads(indices, values, dims),
        "gather + analytic gradient": lambda p: cp_loss_and_grads_gather(p, indices, values),
        "dense masked + MTTKRP (auto's choice here)": dense.loss_and_grads,
    }
    rows = []
    for name, fn in methods.items():
        seconds, final_loss = timed_run(fn, init, args.iters)
        rows.append(
            {
                "method": name,
                "seconds": seconds,
                "ms_per_iteration": 1e3 * seconds / args.iters,
                "final_loss": final_loss,
            }
        )
    onehot_ms = rows[0]["ms_per_iteration"]
    for row in rows:
        row["speedup_vs_onehot"] = onehot_ms / row["ms_per_iteration"]
    losses = [r["final_loss"] for r in rows]
    agree = max(losses) - min(losses) <= 1e-8 * max(1.0, max(abs(v) for v in losses))

    print(
        f"order-4 8^4 tensor completion: R = {components} components, {args.n_obs} observations, "
        f"{args.iters} GroupRMSprop iterations, float64, {torch.get_num_threads()} thread(s), torch {torch.__version__}"
    )
    print()
    print("| method | ms / iteration | speed-up vs one-hot | final train MSE |")
    print("|---|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['method']} | {row['ms_per_iteration']:.2f} | {row['speedup_vs_onehot']:.1f}× | "
            f"{row['final_loss']:.3e} |"
        )
    print()
    ratio = rows[0]["ms_per_iteration"] / rows[1]["ms_per_iteration"]
    print(
        f"gather vs one-hot: {ratio:.1f}× ({'meets' if ratio >= 3 else 'MISSES'} the ≥ 3× target); "
        f"trajectories {'agree' if agree else 'DIFFER'} (final losses {', '.join(f'{v:.6e}' for v in losses)})"
    )
    result = {
        "settings": {
            "dims": dims,
            "components": components,
            "n_obs": args.n_obs,
            "iters": args.iters,
            "init": args.init,
            "threads": torch.get_num_threads(),
        },
        "machine": machine(),
        "rows": rows,
        "gather_speedup_vs_onehot": ratio,
        "trajectories_agree": agree,
    }
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
