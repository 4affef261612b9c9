"""Benchmark: the 2×2 deep-matrix-factorization runs, per-run PyTorch loop vs the batched engine.

(a) the style of the original code: one run (depth 3) as ``nn.Parameter`` factors, autograd (``loss.backward()``)
    and a ``torch.optim.SGD`` step per iteration, with the per-iteration stop check (``loss.item() < ε``);
(b) our engine: ``rankrepro.dmf.MatrixCompletionDMF`` (analytic gradients) + ``rankrepro.optim.GradientDescent`` +
    ``rankrepro.trainer.train`` on the 16 runs of spec §1.1–1.2 batched together — the 12 runs of §1.1 (depths
    2/3/4 × 4 settings, padded to depth 4 with frozen identity factors), the 3 init scales of §1.2 at depth 3 and a
    det W(0) < 0 control — with a stop threshold that is never reached (every iteration runs) and metrics
    (SVD, norms, effective rank, tracked entries) logged every 1000 iterations.

Both use float64 and one torch thread, in the same process on the same machine. Reported: seconds per
iteration of each program, seconds per run-iteration, and the per-run speed-up (b over a), in wall-clock time and
in CPU time of the process (the latter is robust to other jobs sharing the cores).

    python benchmarks/bench_dmf.py                 # 1e5 iterations each (the default)
    python benchmarks/bench_dmf.py --iters 20000 --json bench.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from torch import nn

from rankrepro.dmf import MatrixCompletionDMF, init_factors, trainable_factor_mask
from rankrepro.optim import GradientDescent
from rankrepro.trainer import StopRule, TrainSettings, train

SHAPE = (2, 2)
MAX_DEPTH = 4
# (depth, lr, init scale, balanced, det sign): spec §1.1 (12 runs), §1.2 init sweep (3 runs), a det < 0 control
RUNS = [
    (2, 6e-3, 1e-5, False, 1), (2, 6e-3, 1e-5, True, 1), (2, 3e-3, 1e-6, False, 1), (2, 3e-3, 1e-6, True, 1),
    (3, 6e-3, 1e-5, False, 1), (3, 6e-3, 1e-5, True, 1), (3, 3e-3, 1e-6, False, 1), (3, 3e-3, 1e-6, True, 1),
    (4, 3e-3, 1e-3, False, 1), (4, 3e-3, 1e-3, True, 1), (4, 1.5e-3, 1e-4, False, 1), (4, 1.5e-3, 1e-4, True, 1),
    (3, 3e-3, 1e-3, True, 1), (3, 3e-3, 1e-4, True, 1), (3, 3e-3, 1e-5, True, 1),
    (3, 6e-3, 1e-5, True, -1),
]
LOG_EVERY = 1000
SEED = 20200513


def problem() -> tuple[torch.Tensor, torch.Tensor]:
    """Y and the observation mask of the 2×2 problem: w12 = w21 = 1, w22 = 0 observed, w11 not."""
    target = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    return target, mask


def bench_plain_loop(iters: int, warmup: int) -> dict:
    """One depth-3 run (lr 6e-3, init 1e-5, balanced): nn.Parameters + autograd + torch.optim.SGD."""
    target, mask = problem()
    factors, _ = init_factors(SHAPE, 3, 3, 1e-5, True, 1, torch.Generator().manual_seed(SEED))
    weights = [nn.Parameter(f.clone()) for f in factors]
    optimizer = torch.optim.SGD(weights, lr=6e-3)
    threshold = 1e-4

    def step() -> bool:
        optimizer.zero_grad(set_to_none=True)
        end_to_end = weights[2] @ weights[1] @ weights[0]
        loss = 0.5 * ((end_to_end - target) * mask).pow(2).sum()
        loss.backward()
        optimizer.step()
        return loss.item() < threshold  # the per-iteration stop check of the original code

    for _ in range(warmup):
        step()
    start, cpu = time.perf_counter(), time.process_time()
    done = iters
    for t in range(iters):
        if step():
            done = t + 1
            break
    return {"runs": 1, "iterations": done, "seconds": time.perf_counter() - start,
            "cpu_seconds": time.process_time() - cpu}


def bench_engine(iters: int, warmup: int) -> dict:
    """The 16 runs as one batched tensor program through the trainer loop."""
    target, mask = problem()
    per_run = [init_factors(SHAPE, d, MAX_DEPTH, a, bal, sign, torch.Generator().manual_seed(SEED + b))[0]
               for b, (d, _, a, bal, sign) in enumerate(RUNS)]
    batch = len(RUNS)
    params = [torch.stack([f[j] for f in per_run]) for j in range(MAX_DEPTH)]
    trainable = torch.stack([trainable_factor_mask(r[0], MAX_DEPTH) for r in RUNS])
    objective = MatrixCompletionDMF(target.expand(batch, 2, 2), mask.expand(batch, 2, 2), trainable,
                                    ((0, 0), (0, 1), (1, 0), (1, 1)))
    optimizer = GradientDescent(torch.tensor([r[1] for r in RUNS], dtype=torch.float64))

    def settings(n: int) -> TrainSettings:
        # threshold 0: ½SSE < 0 never holds, so every run does every iteration
        return TrainSettings(max_iters=n, stop=StopRule(threshold=0.0), log_every=LOG_EVERY,
                             sync_every=max(LOG_EVERY, 10_000))

    train(objective, params, optimizer, settings(warmup))
    start, cpu = time.perf_counter(), time.process_time()
    result = train(objective, params, optimizer, settings(iters))
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    assert int(result.stopped_at.min()) == iters, "a run stopped early: the benchmark must run every iteration"
    assert bool(torch.isfinite(result.final_metrics["loss"]).all())
    return {"runs": batch, "iterations": iters, "seconds": seconds, "cpu_seconds": cpu_seconds,
            "logged_rows": int(len(result.log_iterations) * batch)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=float, default=1e5, help="iterations of each program (default 1e5)")
    parser.add_argument("--warmup", type=int, default=200, help="untimed iterations first (default 200)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    iters = int(args.iters)
    torch.set_num_threads(1)

    plain = bench_plain_loop(iters, args.warmup)
    engine = bench_engine(iters, args.warmup)
    for record in (plain, engine):
        record["s_per_iteration"] = record["seconds"] / record["iterations"]
        record["s_per_run_iteration"] = record["s_per_iteration"] / record["runs"]
        record["cpu_s_per_run_iteration"] = record["cpu_seconds"] / record["iterations"] / record["runs"]
    speedup = plain["s_per_run_iteration"] / engine["s_per_run_iteration"]
    cpu_speedup = plain["cpu_s_per_run_iteration"] / engine["cpu_s_per_run_iteration"]
    report = {
        "plain_pytorch_loop": plain,
        "batched_engine": engine,
        "speedup_per_run": speedup,
        "speedup_per_run_cpu_time": cpu_speedup,
        "target_speedup": 20.0,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }
    us = 1e6
    print(f"2×2 DMF, {iters:,} iterations each, float64, {torch.get_num_threads()} torch thread, "
          f"torch {torch.__version__}")
    print()
    print("| program | runs | wall s | µs / iteration | µs / run-iteration | CPU µs / run-iteration "
          "| 16 runs × 1e5 its |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in (("(a) per-run loop: nn.Parameter + autograd + optim.SGD", plain),
                    ("(b) batched engine: MatrixCompletionDMF + GradientDescent + train", engine)):
        print(f"| {name} | {r['runs']} | {r['seconds']:.2f} | {r['s_per_iteration'] * us:.1f} | "
              f"{r['s_per_run_iteration'] * us:.2f} | {r['cpu_s_per_run_iteration'] * us:.2f} | "
              f"{r['s_per_run_iteration'] * 16 * 1e5:.1f} s |")
    print()
    print(f"per-run speed-up (b over a): {speedup:.1f}× wall-clock, {cpu_speedup:.1f}× CPU time  (target ≥ 20×)")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
