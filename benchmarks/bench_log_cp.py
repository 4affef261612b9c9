"""Benchmark: one training epoch of the order-784 CP classifier, log-domain float64 vs the direct float32 product.

10,000 binarized 28×28 images (MNIST's first 10,000 training images when ``rankrepro.data.image_datasets`` is available,
otherwise random binary images with MNIST's ink density ≈ 0.13 — the output says which), one-vs-all targets
{0, 2}, mini-batches of 5,000 (2 steps per epoch), factors N(1, 1e-3), Adam lr 5e-4, one run, same machine and
process, for R = 1, 8, 15:

  (i)  direct: gather F[p, x_p, r] and multiply the 784 factors in float32, MSE, autograd backward,
       ``torch.optim.Adam`` — what the original implementation did (and it overflows once factors drift ≈ 12 %);
  (ii) log-domain, sparse: rankrepro.factorization.log_cp.log_cp_mse_and_grad on a BinaryRows (scipy CSR products of the
       ones of X, float64, analytic gradient; mini-batches gathered with BinaryRows.rows, as
       rankrepro.factorization.log_cp.fit does on CPU) and the batched rankrepro.core.optim.Adam;
  (iii) log-domain, dense: the same on a dense float64 X with torch matmuls (the GPU path) — for information.

Mini-batches are contiguous slices for (i) and (iii) (no gather cost), gathered for (ii). Prints ms/epoch and the
speed-ups over (i) (target ≥ 5× for (ii)) as a markdown table, and checks that the three agree at the initial point
(float32 rounding). ``--out FILE`` also writes the numbers as JSON.

    python benchmarks/bench_log_cp.py [--epochs 3] [--ranks 1 8 15] [--threads 2] [--out results.json]
"""

from __future__ import annotations

import os

# OpenMP threads that spin while idle make every small torch op pay for a descheduled spinner when the machine is
# shared (measured: 4× slower epochs on a loaded 2-core machine); passive waiting costs nothing when it is not.
# It must be set before torch starts OpenMP; an explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from _report import machine, write_json  # noqa: E402
from rankrepro.core.optim import Adam  # noqa: E402
from rankrepro.factorization.log_cp import (  # noqa: E402
    BinaryRows,
    binarize_images,
    direct_product_forward,
    init_factors,
    log_cp_forward,
    log_cp_mse_and_grad,
)

REPO = Path(__file__).resolve().parents[1]
N_IMAGES, BATCH, LR, TARGET_CLASS, INK_DENSITY = 10_000, 5_000, 5e-4, 6, 0.13


def load_images(cache_root: Path, mirror: Path | None, n_images: int = N_IMAGES) -> tuple[Tensor, Tensor, str]:
    """(X (n, 784) float64 binary, y (n,) targets {0, 2}, description of the source): the first ``n_images``."""
    try:
        from rankrepro.data.image_datasets import load_image_classification
    except ImportError as exc:
        generator = torch.Generator().manual_seed(0)
        X = (torch.rand(n_images, 784, generator=generator, dtype=torch.float64) < INK_DENSITY).to(torch.float64)
        y = 2.0 * (torch.rand(n_images, generator=generator, dtype=torch.float64) < 0.1).to(torch.float64)
        return (
            X,
            y,
            (
                f"random binary images, ink density {INK_DENSITY} (rankrepro.data.image_datasets unavailable: {exc}); "
                "timings do not depend on the pixel values"
            ),
        )
    data = load_image_classification("mnist", cache_root=cache_root, mirror=mirror)
    X = binarize_images(np.asarray(data.train_images[:n_images]))
    y = 2.0 * torch.as_tensor(np.asarray(data.train_labels[:n_images]) == TARGET_CLASS, dtype=torch.float64)
    return X, y, f"MNIST, first {n_images:,} training images (class 6 vs all)"


def add_image_arguments(parser: argparse.ArgumentParser) -> None:
    """The options naming where the MNIST images come from: ``--cache-root`` and ``--mirror``."""
    parser.add_argument("--cache-root", type=Path, default=REPO / "resources" / "datasets")
    parser.add_argument("--mirror", type=Path, default=REPO.parent / "shared" / "datasets")


def images_from_arguments(args: argparse.Namespace, n_images: int = N_IMAGES) -> tuple[Tensor, Tensor, str]:
    """:func:`load_images` from the options of :func:`add_image_arguments` (a mirror that does not exist is unused)."""
    mirror = args.mirror if args.mirror is not None and args.mirror.exists() else None
    return load_images(args.cache_root, mirror, n_images)


def direct_epoch_runner(init: Tensor, X: Tensor, y: Tensor) -> Callable[[], float]:
    """(i): float32 factors, gathered product, autograd, torch.optim.Adam; returns the last mini-batch loss."""
    factors = init.to(torch.float32).clone().requires_grad_(True)
    optimizer = torch.optim.Adam([factors], lr=LR)
    X32, y32 = X.to(torch.bool), y.to(torch.float32)

    def epoch() -> float:
        for start in range(0, X.shape[0], BATCH):
            optimizer.zero_grad(set_to_none=True)
            pred = direct_product_forward(factors, X32[start : start + BATCH])
            loss = (pred - y32[start : start + BATCH]).pow(2).mean()
            loss.backward()
            optimizer.step()
        return float(loss.detach())

    return epoch


def log_epoch_runner(init: Tensor, X: Tensor | BinaryRows, y: Tensor) -> Callable[[], float]:
    """(ii)/(iii): float64 log-domain forward, analytic gradient, batched Adam; returns the last mini-batch loss."""
    factors = init.clone()
    optimizer = Adam(torch.full((1,), LR, dtype=torch.float64))
    state = optimizer.init_state([factors])
    active = torch.ones(1, dtype=torch.bool)
    n = y.shape[0]

    def epoch() -> float:
        for start in range(0, n, BATCH):
            if isinstance(X, BinaryRows):
                batch = X.rows(torch.arange(start, min(start + BATCH, n)))
            else:
                batch = X[start : start + BATCH]
            loss, grad = log_cp_mse_and_grad(factors, batch, y[start : start + BATCH])
            optimizer.step([factors], [grad], state, active)
        return float(loss[0])

    return epoch


def time_epochs(epoch: Callable[[], float], repeats: int) -> tuple[float, float]:
    """Median seconds per epoch over ``repeats`` epochs after one warm-up epoch, and the last loss."""
    epoch()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        loss = epoch()
        times.append(time.perf_counter() - started)
    return statistics.median(times), loss


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per method and rank (median reported)")
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 8, 15])
    parser.add_argument("--threads", type=int, default=2)
    add_image_arguments(parser)
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    X, y, source = images_from_arguments(args)
    rows_X = BinaryRows.from_dense(X)
    rows = []
    for rank in args.ranks:
        init = init_factors(1, 784, rank, 1.0, 1e-3, generators=[torch.Generator().manual_seed(rank)])
        probe = slice(0, 1000)
        reference = log_cp_forward(init, X[probe])
        direct0 = direct_product_forward(init.to(torch.float32), X[probe]).to(torch.float64)
        sparse0 = log_cp_forward(init, rows_X.rows(torch.arange(1000)))
        agreement = float(((direct0 - reference).abs() / reference.abs()).max())
        sparse_agreement = float(((sparse0 - reference).abs() / reference.abs()).max())
        direct_s, direct_loss = time_epochs(direct_epoch_runner(init, X, y), args.epochs)
        sparse_s, sparse_loss = time_epochs(log_epoch_runner(init, rows_X, y), args.epochs)
        dense_s, dense_loss = time_epochs(log_epoch_runner(init, X, y), args.epochs)
        rows.append(
            {
                "rank": rank,
                "direct_float32_ms_per_epoch": 1e3 * direct_s,
                "log_sparse_float64_ms_per_epoch": 1e3 * sparse_s,
                "log_dense_float64_ms_per_epoch": 1e3 * dense_s,
                "speedup_sparse": direct_s / sparse_s,
                "speedup_dense": direct_s / dense_s,
                "initial_direct_max_relative_difference": agreement,
                "initial_sparse_max_relative_difference": sparse_agreement,
                "last_batch_loss": {"direct": direct_loss, "sparse": sparse_loss, "dense": dense_loss},
            }
        )

    print(
        f"order-784 CP classifier, one epoch = {N_IMAGES // BATCH} Adam steps on mini-batches of {BATCH} "
        f"({N_IMAGES} images), {torch.get_num_threads()} torch thread(s), OMP_WAIT_POLICY="
        f"{os.environ.get('OMP_WAIT_POLICY')}, torch {torch.__version__}"
    )
    print(f"images: {source}")
    print()
    print(
        "| R | (i) direct float32 + autograd, ms/epoch | (ii) log-domain sparse float64, ms/epoch | speed-up (ii) | "
        "(iii) log-domain dense float64, ms/epoch | speed-up (iii) | initial max rel. diff (i) vs (iii) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['rank']} | {row['direct_float32_ms_per_epoch']:.1f} "
            f"| {row['log_sparse_float64_ms_per_epoch']:.1f} | {row['speedup_sparse']:.1f}× "
            f"| {row['log_dense_float64_ms_per_epoch']:.1f} | {row['speedup_dense']:.1f}× "
            f"| {row['initial_direct_max_relative_difference']:.1e} |"
        )
    print()
    worst = min(row["speedup_sparse"] for row in rows)
    agree = all(
        row["initial_sparse_max_relative_difference"] <= 1e-12 and row["initial_direct_max_relative_difference"] <= 1e-4
        for row in rows
    )
    print(
        f"smallest speed-up of (ii) {worst:.1f}× ({'meets' if worst >= 5 else 'MISSES'} the ≥ 5× target); "
        f"initial predictions {'agree' if agree else 'DIFFER'} (sparse vs dense ≤ 1e-12, float32 vs float64 ≤ 1e-4)"
    )
    result = {
        "settings": {
            "n_images": N_IMAGES,
            "batch_size": BATCH,
            "lr": LR,
            "ranks": args.ranks,
            "timed_epochs": args.epochs,
            "threads": torch.get_num_threads(),
            "images": source,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        },
        "machine": machine(),
        "rows": rows,
        "min_speedup": worst,
        "meets_target": worst >= 5,
        "initial_predictions_agree": agree,
    }
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
