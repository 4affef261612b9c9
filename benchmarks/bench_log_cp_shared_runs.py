"""Benchmark: §2.2's batched mini-batch step when runs share their images.

One (dataset, R) batch of §2.2's default tier: 6 runs — 2 seeds × {natural, random labels, random images} — on
60,000 binarized 28×28 images (MNIST's training images; random binary images of MNIST's ink density ≈ 0.13 when
the data is unavailable), mini-batches of 500, factors N(1, 1e-3), Adam lr 5e-4. The natural and random-label runs
(4 of 6) see the same images; each random-image run has its own (density 0.5).

  (i)  baseline: every run's images stored and used as a CSR matrix of its own (what ``BinaryRows`` did before): per
       step, six row gathers and six scipy products each way;
  (ii) rankrepro: ``BinaryRows.from_dense`` stores equal runs once; per step one gather and one product (the runs'
       operands side by side) per distinct matrix — three here.

Both give every run the same losses and gradients, bit for bit (checked). Prints ms/step and the speed-up of (ii)
over (i) for R = 1 and 2 as a markdown table; ``--out FILE`` also writes JSON.

    python benchmarks/bench_log_cp_shared_runs.py [--steps 200] [--threads 1] [--out results.json]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from _report import machine, write_json
from bench_log_cp import add_image_arguments, images_from_arguments
from rankrepro.core.optim import Adam
from rankrepro.factorization.log_cp import BinaryRows, epoch_permutation, init_factors, log_cp_mse_and_grad

BATCH, LR, SEEDS = 500, 5e-4, 2


def batch_images(X: torch.Tensor) -> torch.Tensor:
    """The six runs' images ``(6, n, 784)`` bool: per seed natural, random labels (the same images), random images."""
    runs = []
    for seed in range(SEEDS):
        generator = torch.Generator().manual_seed(seed)
        runs += [X, X, torch.rand(X.shape, generator=generator, dtype=torch.float64) < 0.5]
    return torch.stack(runs)


def separate_matrices(rows: BinaryRows) -> BinaryRows:
    """The baseline layout: one CSR matrix per run (copies of the shared ones)."""
    copies = [rows.matrices[owner].copy() for owner in rows.owners]
    return BinaryRows(copies, owners=range(len(copies)))


def steps(X: BinaryRows, y: torch.Tensor, rank: int, count: int) -> tuple[float, list[torch.Tensor]]:
    """Median ms of one Adam step over ``count`` steps (after 5 warm-up steps) and the last step's losses and
    gradient."""
    batch = len(X.owners)
    factors = init_factors(batch, 784, rank, generators=[torch.Generator().manual_seed(b) for b in range(batch)])
    optimizer = Adam(torch.full((batch,), LR, dtype=torch.float64))
    state, active = optimizer.init_state([factors]), torch.ones(batch, dtype=torch.bool)
    order = epoch_permutation(X.n_samples, 1, 1)
    times, last = [], []
    for step in range(count + 5):
        index = order[(step * BATCH) % X.n_samples :][:BATCH]
        started = time.perf_counter()
        loss, grad = log_cp_mse_and_grad(factors, X.rows(index), y.index_select(1, index))
        optimizer.step([factors], [grad], state, active)
        if step >= 5:
            times.append(time.perf_counter() - started)
        last = [loss, grad]
    return 1e3 * statistics.median(times), last


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    add_image_arguments(parser)
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    X, y, source = images_from_arguments(args, n_images=60_000)
    grouped = BinaryRows.from_dense(batch_images(X.to(torch.bool)))
    separate = separate_matrices(grouped)
    targets = y.expand(len(grouped.owners), -1).contiguous()
    rows = []
    for rank in (1, 2):
        baseline_ms, baseline_last = steps(separate, targets, rank, args.steps)
        grouped_ms, grouped_last = steps(grouped, targets, rank, args.steps)
        identical = all(torch.equal(a, b) for a, b in zip(baseline_last, grouped_last))
        rows.append(
            {
                "rank": rank,
                "separate_ms_per_step": baseline_ms,
                "grouped_ms_per_step": grouped_ms,
                "speedup": baseline_ms / grouped_ms,
                "bit_identical": identical,
            }
        )
    print(
        f"§2.2 batch: 6 runs ({len(grouped.matrices)} distinct image sets), mini-batches of {BATCH}, "
        f"{torch.get_num_threads()} thread(s); images: {source}"
    )
    print()
    print("| R | (i) one matrix per run, ms/step | (ii) equal runs stored once, ms/step | speed-up | bit-identical |")
    print("|---:|---:|---:|---:|---|")
    for row in rows:
        print(
            f"| {row['rank']} | {row['separate_ms_per_step']:.2f} | {row['grouped_ms_per_step']:.2f} "
            f"| {row['speedup']:.2f}× | {'yes' if row['bit_identical'] else 'NO'} |"
        )
    result = {"machine": machine(), "images": source, "steps": args.steps, "rows": rows}
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
