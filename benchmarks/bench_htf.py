"""Benchmark: one HTF completion training iteration with a one-hot einsum first layer vs the gather-based forward.

Order 4, mode dim 8 (4,096 entries), a hierarchical-rank-5 target (‖·‖_F = 64), widths [512, 512] (``--width``),
2,048 observed entries, init N(0, 1e-2²), float64, in one process on one machine. One iteration = forward, MSE over
the observed entries, autograd backward (per-run gradients) and a GroupRMSprop step:

  (i)   one-hot: leaf rows G_n = einsum(O_n, W_(n)) with one-hot O_n ∈ {0,1}^{|Ω|×d}, then product pooling and the
        inner linear maps on the |Ω| gathered rows (the paper's convolutional arithmetic circuit, one-hot input);
  (ii)  leaf gather: rankrepro.factorization.htf.htf_loss with gather_level = 0 (``index_select`` of the leaf rows, same
        maths);
  (iii) auto gather: rankrepro.factorization.htf.htf_loss with the default gather level (chosen by a cost model; here 2:
        the level-1 node tensors are computed on their 64 rows instead of per observation, the full tensor by one
        matmul at the root, T_{01} diag(a) T_{23}ᵀ, and the observed entries gathered from it) — what
        :class:`rankrepro.factorization.htf.HTFCompletionObjective` uses.

Prints the per-iteration cost and the speed-up of (ii), (iii) over (i) (target ≥ 3× for the library's default)
as a markdown table, and checks that all three give the same loss at the initial point and follow the same
trajectory. ``--out FILE`` also writes the numbers as JSON.

    python benchmarks/bench_htf.py [--iters 20] [--width 512] [--threads 1] [--out results.json]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch import Tensor

from _report import machine, write_json
from rankrepro.core.optim import GroupRMSprop
from rankrepro.factorization.cp import multi_indices
from rankrepro.factorization.htf import (
    auto_gather_level,
    htf_loss,
    init_htf,
    mode_tree,
    node_param_index,
    random_htf_tensor,
)

LossAndGrads = Callable[[list[Tensor]], tuple[Tensor, list[Tensor]]]
Loss = Callable[[list[Tensor]], Tensor]


def onehot_loss(indices: Tensor, values: Tensor, dims: tuple[int, ...]) -> Loss:
    """(i): one-hot encode every index, einsum with the leaf factors, then pool and map up the tree per row."""
    onehots = [torch.nn.functional.one_hot(indices[:, n], dims[n]).to(torch.float64) for n in range(len(dims))]
    order = len(dims)

    def loss(params: list[Tensor]) -> Tensor:
        rows = [torch.einsum("md,bdr->bmr", onehot, factor) for onehot, factor in zip(onehots, params[:order])]
        for nodes in mode_tree(order)[1:]:
            pooled = [rows[2 * j] * rows[2 * j + 1] for j in range(len(nodes))]
            factors = [params[node_param_index(node, order)] for node in nodes]
            rows = [p @ f if f.dim() == 3 else (p * f.unsqueeze(1)).sum(-1) for p, f in zip(pooled, factors)]
        return (rows[0] - values).pow(2).mean(-1)

    return loss


def with_autograd(loss: Loss) -> LossAndGrads:
    """Per-run loss and its gradients by autograd (runs are independent: ∇ of the sum is each run's own)."""

    def loss_and_grads(params: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        leaves = [p.detach().requires_grad_(True) for p in params]
        value = loss(leaves)
        grads = torch.autograd.grad(value.sum(), leaves)
        return value.detach(), [g.detach() for g in grads]

    return loss_and_grads


def timed_run(loss_and_grads: LossAndGrads, init: list[Tensor], iters: int) -> tuple[float, float, float, list[Tensor]]:
    """Seconds for ``iters`` GroupRMSprop iterations, the initial and the final loss, the final parameters."""
    params = [p.clone() for p in init]
    optimizer = GroupRMSprop(torch.full((1,), 1e-2, dtype=torch.float64))
    state = optimizer.init_state(params)
    active = torch.ones(1, dtype=torch.bool)
    initial = float(loss_and_grads(params)[0][0])  # also the warm-up (allocator)
    started = time.perf_counter()
    for _ in range(iters):
        loss, grads = loss_and_grads(params)
        optimizer.step(params, grads, state, active)
    elapsed = time.perf_counter() - started
    return elapsed, initial, float(loss_and_grads(params)[0][0]), params


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--width", type=int, default=512, help="HTF width at every level below the root")
    parser.add_argument("--n-obs", type=int, default=2048)
    parser.add_argument("--init", type=float, default=1e-2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    dims, widths = (8, 8, 8, 8), (args.width, args.width)
    generator = torch.Generator().manual_seed(0)
    target = random_htf_tensor(dims, (5, 5), generator, norm=64.0)
    flat = torch.randperm(target.numel(), generator=generator)[: args.n_obs]
    indices = multi_indices(flat, dims)
    values = target.reshape(-1)[flat]
    init = init_htf(dims, widths, torch.tensor([args.init]), [torch.Generator().manual_seed(1)])
    level = auto_gather_level(dims, widths, args.n_obs)

    methods: dict[str, LossAndGrads] = {
        "one-hot einsum + autograd": with_autograd(onehot_loss(indices, values, dims)),
        "leaf gather (gather_level 0) + autograd": with_autograd(lambda p: htf_loss(p, indices, values, 0)),
        f"auto gather (gather_level {level}, library default) + autograd": with_autograd(
            lambda p: htf_loss(p, indices, values)
        ),
    }
    rows, finals = [], []
    for name, fn in methods.items():
        seconds, initial, final, params = timed_run(fn, init, args.iters)
        finals.append(params)
        rows.append(
            {
                "method": name,
                "seconds": seconds,
                "ms_per_iteration": 1e3 * seconds / args.iters,
                "initial_loss": initial,
                "final_loss": final,
            }
        )
    onehot_ms = rows[0]["ms_per_iteration"]
    for row in rows:
        row["speedup_vs_onehot"] = onehot_ms / row["ms_per_iteration"]

    def close(vals: list[float]) -> bool:
        return max(vals) - min(vals) <= 1e-9 * max(1.0, max(abs(v) for v in vals))

    same_initial = close([r["initial_loss"] for r in rows])
    # the trajectories: final parameters of every method vs the one-hot one (max |Δ| relative to max |p|)
    drift = max(float((p - q).abs().max() / q.abs().max()) for params in finals[1:] for p, q in zip(params, finals[0]))
    same_final = close([r["final_loss"] for r in rows]) and drift <= 1e-9

    print(
        f"order-4 8^4 HTF completion: widths {list(widths)}, {args.n_obs} observations, {args.iters} iterations "
        f"(forward + backward + GroupRMSprop step), float64, {torch.get_num_threads()} thread(s), "
        f"torch {torch.__version__}"
    )
    print()
    print("| method | ms / iteration | speed-up vs one-hot | initial train MSE | final train MSE |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['method']} | {row['ms_per_iteration']:.2f} | {row['speedup_vs_onehot']:.1f}× | "
            f"{row['initial_loss']:.6e} | {row['final_loss']:.6e} |"
        )
    print()
    ratio = rows[2]["speedup_vs_onehot"]
    print(
        f"library default vs one-hot: {ratio:.1f}× ({'meets' if ratio >= 3 else 'MISSES'} the ≥ 3× target); "
        f"leaf gather alone: {rows[1]['speedup_vs_onehot']:.1f}×; initial losses "
        f"{'agree' if same_initial else 'DIFFER'}, trajectories {'agree' if same_final else 'DIFFER'} "
        f"(final parameters differ by ≤ {drift:.1e} relative)"
    )
    result = {
        "settings": {
            "dims": dims,
            "widths": widths,
            "n_obs": args.n_obs,
            "iters": args.iters,
            "init": args.init,
            "gather_level": level,
            "threads": torch.get_num_threads(),
        },
        "machine": machine(),
        "rows": rows,
        "gather_speedup_vs_onehot": ratio,
        "leaf_gather_speedup_vs_onehot": rows[1]["speedup_vs_onehot"],
        "initial_losses_agree": same_initial,
        "trajectories_agree": same_final,
        "final_parameter_relative_difference": drift,
    }
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
