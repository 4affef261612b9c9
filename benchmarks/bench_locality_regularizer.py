"""Benchmark: one SGD step of the small-tier ResNet-18 on Is-Same-Class canvases, with and without the input-gradient
change penalty of chapter 3 §3.2 (the spec expects the regularized step to cost ≈ 3–4× a plain step).

A plain step is forward, BCE, backward and an SGD step (lr 0.05, momentum 0.9). A regularized step adds
λ·penalty: two first-order input gradients kept in the graph (x and x' with the other image taken from the next
sample), a second forward pass on x', and back-propagation through both gradients (double back-propagation). The
penalty either shares the loss's forward pass (``logits=``, as the paper's code does) or runs its own. Inputs are
``--batch`` canvases of two random ``--image``-pixel grey images ``--distance`` px apart on a 16 × 96 canvas, the
network the small ResNet-18 layout (widths 8/16/32/64, 3×3 stride-1 stem, receptive field 109 px). The median of
``--repeats`` steps after one warm-up step is reported, the three modes interleaved.

    python benchmarks/bench_locality_regularizer.py [--batch 64] [--distance 64] [--repeats 10] [--threads 1]
        [--out f.json]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import numpy as np
import torch
from _report import machine, timed, write_json

from rankrepro.locality import canvas_images, input_gradient_change_penalty, sample_pairs
from rankrepro.resnet import SMALL_WIDTHS, ResNet18, ResNetConfig, receptive_field

CANVAS = (16, 96)


def make_step(mode: str, x: torch.Tensor, y: torch.Tensor, regions: tuple, lam: float) -> Callable[[], None]:
    """One SGD step of a fresh small ResNet in ``mode``: ``plain``, ``shared`` (penalty reusing the loss's forward
    pass) or ``separate`` (penalty with its own forward pass)."""
    model = ResNet18(ResNetConfig(SMALL_WIDTHS, "small", 1), generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    def step() -> None:
        inputs = x.clone().requires_grad_(mode == "shared")
        logits = model(inputs)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.squeeze(1), y)
        if mode != "plain":
            shared = logits if mode == "shared" else None
            loss = loss + lam * input_gradient_change_penalty(model, inputs, *regions, logits=shared)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def median_seconds(steps: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median seconds per step of each mode after one warm-up step each, the modes interleaved round-robin so that
    a change of machine load affects them alike."""
    times: dict[str, list[float]] = {mode: [] for mode in steps}
    for step in steps.values():
        step()
    for _ in range(repeats):
        for mode, step in steps.items():
            times[mode].append(timed(step)[0])
    return {mode: statistics.median(values) for mode, values in times.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image", type=int, default=16)
    parser.add_argument("--distance", type=int, default=64)
    parser.add_argument("--lam", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(200, args.image, args.image), dtype=np.uint8)
    pairs = sample_pairs(rng.integers(0, 10, size=200), args.batch, rng)
    canvases, first, second = canvas_images(images, pairs, args.distance, CANVAS)
    x = torch.from_numpy(canvases).float() / 255.0
    y = torch.from_numpy(pairs[:, 2]).float()
    steps = {mode: make_step(mode, x, y, (first, second), args.lam) for mode in ("plain", "shared", "separate")}
    rows = [{"step": mode, "seconds": seconds} for mode, seconds in median_seconds(steps, args.repeats).items()]
    for row in rows:
        row["ratio"] = row["seconds"] / rows[0]["seconds"]
    labels = {"plain": "plain (BCE)", "shared": "BCE + λ·penalty, shared forward pass",
              "separate": "BCE + λ·penalty, own forward pass"}
    config = ResNetConfig(SMALL_WIDTHS, "small", 1)
    print(f"One SGD step, small ResNet-18 (widths {'/'.join(map(str, SMALL_WIDTHS))}, receptive field "
          f"{receptive_field(config)} px), batch {args.batch} of {CANVAS[0]}×{CANVAS[1]} canvases "
          f"(distance {args.distance}), {args.threads} thread(s)")
    print()
    print("| step | time | × plain |")
    print("|---|---:|---:|")
    for row in rows:
        print(f"| {labels[row['step']]} | {1e3 * row['seconds']:.0f} ms | {row['ratio']:.2f}× |")
    result = {"benchmark": "locality_regularizer", "machine": machine(), "batch": args.batch, "canvas": CANVAS,
              "distance": args.distance, "lam": args.lam, "rows": rows}
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
