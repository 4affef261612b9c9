"""Benchmark: the 2×2 deep-matrix-factorization runs — per-run PyTorch loop, batched torch engine, compiled kernel.

(a) the style of the original code: one run (depth 3) as ``nn.Parameter`` factors, autograd (``loss.backward()``)
    and a ``torch.optim.SGD`` step per iteration, with the per-iteration stop check (``loss.item() < ε``);
(b) our engine: ``rankrepro.factorization.dmf.MatrixCompletionDMF`` (analytic gradients) +
    ``rankrepro.core.optim.GradientDescent`` + ``rankrepro.core.trainer.train`` on the 16 runs of spec §1.1–1.2 batched
    together — the 12 runs of §1.1 (depths 2/3/4 × 4 settings, padded to depth 4 with frozen identity factors), the 3
    init scales of §1.2 at depth 3 and a det W(0) < 0 control — with a stop threshold that is never reached (every
    iteration runs) and metrics (SVD, norms, effective rank, tracked entries) logged every 1000 iterations;
(c) the compiled kernel: ``rankrepro.factorization.dmf_kernel.train_dmf`` on the same 16 runs (each run's whole loop
    native, unpadded depths, one thread), with the same stop threshold and logging.

All use float64 and one thread, in the same process on the same machine. Reported: seconds per iteration of each
program, seconds per run-iteration, and the per-run speed-ups (c over b, c over a, b over a), in wall-clock time
and in CPU time of the process (the latter is robust to other jobs sharing the cores). The kernel runs
``--kernel-factor`` times more iterations than the others, so that its timing is not dominated by fixed costs.

    python benchmarks/bench_dmf.py                 # 1e5 iterations for (a) and (b), 1e6 for (c)
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

from rankrepro.core.optim import GradientDescent
from rankrepro.core.trainer import StopRule, TrainSettings, train
from rankrepro.factorization.dmf import MatrixCompletionDMF, init_factors, trainable_factor_mask
from rankrepro.factorization.dmf_kernel import train_dmf

SHAPE = (2, 2)
MAX_DEPTH = 4
# (depth, lr, init scale, balanced, det sign): spec §1.1 (12 runs), §1.2 init sweep (3 runs), a det < 0 control
RUNS = [
    (2, 6e-3, 1e-5, False, 1),
    (2, 6e-3, 1e-5, True, 1),
    (2, 3e-3, 1e-6, False, 1),
    (2, 3e-3, 1e-6, True, 1),
    (3, 6e-3, 1e-5, False, 1),
    (3, 6e-3, 1e-5, True, 1),
    (3, 3e-3, 1e-6, False, 1),
    (3, 3e-3, 1e-6, True, 1),
    (4, 3e-3, 1e-3, False, 1),
    (4, 3e-3, 1e-3, True, 1),
    (4, 1.5e-3, 1e-4, False, 1),
    (4, 1.5e-3, 1e-4, True, 1),
    (3, 3e-3, 1e-3, True, 1),
    (3, 3e-3, 1e-4, True, 1),
    (3, 3e-3, 1e-5, True, 1),
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
    return {
        "runs": 1,
        "iterations": done,
        "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu,
    }


def bench_engine(iters: int, warmup: int) -> dict:
    """The 16 runs as one batched tensor program through the trainer loop."""
    target, mask = problem()
    per_run = [
        init_factors(SHAPE, d, MAX_DEPTH, a, bal, sign, torch.Generator().manual_seed(SEED + b))[0]
        for b, (d, _, a, bal, sign) in enumerate(RUNS)
    ]
    batch = len(RUNS)
    params = [torch.stack([f[j] for f in per_run]) for j in range(MAX_DEPTH)]
    trainable = torch.stack([trainable_factor_mask(r[0], MAX_DEPTH) for r in RUNS])
    objective = MatrixCompletionDMF(
        target.expand(batch, 2, 2), mask.expand(batch, 2, 2), trainable, ((0, 0), (0, 1), (1, 0), (1, 1))
    )
    optimizer = GradientDescent(torch.tensor([r[1] for r in RUNS], dtype=torch.float64))

    def settings(n: int) -> TrainSettings:
        # threshold 0: ½SSE < 0 never holds, so every run does every iteration
        return TrainSettings(
            max_iters=n, stop=StopRule(threshold=0.0), log_every=LOG_EVERY, sync_every=max(LOG_EVERY, 10_000)
        )

    train(objective, params, optimizer, settings(warmup))
    start, cpu = time.perf_counter(), time.process_time()
    result = train(objective, params, optimizer, settings(iters))
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    assert int(result.stopped_at.min()) == iters, "a run stopped early: the benchmark must run every iteration"
    assert bool(torch.isfinite(result.final_metrics["loss"]).all())
    return {
        "runs": batch,
        "iterations": iters,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "logged_rows": int(len(result.log_iterations) * batch),
    }


def bench_kernel(iters: int, warmup: int) -> dict:
    """The 16 runs through the compiled kernel (compilation happens in the untimed warm-up)."""
    target, mask = problem()
    per_run = [
        init_factors(SHAPE, d, d, a, bal, sign, torch.Generator().manual_seed(SEED + b))[0]
        for b, (d, _, a, bal, sign) in enumerate(RUNS)
    ]
    batch = len(RUNS)
    lrs = [r[1] for r in RUNS]
    tracked = ((0, 0), (0, 1), (1, 0), (1, 1))

    def settings(n: int) -> TrainSettings:
        return TrainSettings(max_iters=n, stop=StopRule(threshold=0.0), log_every=LOG_EVERY)

    train_dmf(per_run, target.expand(batch, 2, 2), mask.expand(batch, 2, 2), lrs, settings(warmup), tracked)
    start, cpu = time.perf_counter(), time.process_time()
    result = train_dmf(per_run, target.expand(batch, 2, 2), mask.expand(batch, 2, 2), lrs, settings(iters), tracked)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    assert int(result.stopped_at.min()) == iters, "a run stopped early: the benchmark must run every iteration"
    assert bool(torch.isfinite(result.final_metrics["loss"]).all())
    return {
        "runs": batch,
        "iterations": iters,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "logged_rows": int(len(result.log_iterations) * batch),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=float, default=1e5, help="iterations of (a) and (b) (default 1e5)")
    parser.add_argument("--kernel-factor", type=int, default=10, help="(c) runs this many times more (default 10)")
    parser.add_argument("--warmup", type=int, default=200, help="untimed iterations first (default 200)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    iters = int(args.iters)
    torch.set_num_threads(1)

    plain = bench_plain_loop(iters, args.warmup)
    engine = bench_engine(iters, args.warmup)
    kernel = bench_kernel(iters * args.kernel_factor, args.warmup)
    for record in (plain, engine, kernel):
        record["s_per_iteration"] = record["seconds"] / record["iterations"]
        record["s_per_run_iteration"] = record["s_per_iteration"] / record["runs"]
        record["cpu_s_per_run_iteration"] = record["cpu_seconds"] / record["iterations"] / record["runs"]

    def ratio(slow: dict, fast: dict, key: str = "s_per_run_iteration") -> float:
        return slow[key] / fast[key]

    report = {
        "plain_pytorch_loop": plain,
        "batched_engine": engine,
        "compiled_kernel": kernel,
        "speedup_engine_over_plain": ratio(plain, engine),
        "speedup_kernel_over_engine": ratio(engine, kernel),
        "speedup_kernel_over_plain": ratio(plain, kernel),
        "speedup_kernel_over_engine_cpu_time": ratio(engine, kernel, "cpu_s_per_run_iteration"),
        "speedup_kernel_over_plain_cpu_time": ratio(plain, kernel, "cpu_s_per_run_iteration"),
        "targets": {"kernel_over_engine": 100.0, "kernel_over_plain": 1000.0},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }
    us = 1e6
    print(f"2×2 DMF, float64, {torch.get_num_threads()} thread, torch {torch.__version__}")
    print()
    print("| program | runs | iterations | wall s | µs / iteration | µs / run-iteration | CPU µs / run-iteration |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in (
        ("(a) per-run loop: nn.Parameter + autograd + optim.SGD", plain),
        ("(b) batched engine: MatrixCompletionDMF + GradientDescent + train", engine),
        ("(c) compiled kernel: dmf_kernel.train_dmf", kernel),
    ):
        print(
            f"| {name} | {r['runs']} | {r['iterations']:,} | {r['seconds']:.2f} | {r['s_per_iteration'] * us:.3f} | "
            f"{r['s_per_run_iteration'] * us:.4f} | {r['cpu_s_per_run_iteration'] * us:.4f} |"
        )
    print()
    print(
        f"per-run speed-ups (wall / CPU time): kernel over engine {ratio(engine, kernel):.0f}× / "
        f"{report['speedup_kernel_over_engine_cpu_time']:.0f}× (target ≥ 100×); kernel over the per-run loop "
        f"{ratio(plain, kernel):.0f}× / {report['speedup_kernel_over_plain_cpu_time']:.0f}× (target ≥ 1000×); "
        f"engine over the per-run loop {ratio(plain, engine):.1f}×"
    )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
