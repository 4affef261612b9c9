"""Benchmark: one SGD step of the default tier's ResNet-18 on §3.2 inputs, plain and with the input-gradient-change
penalty of chapter 3, the former way and the current way (the spec expects a regularized step to cost ≈ 3–4× a plain
one).

Every step is the library's own ``rankrepro.cnn.locality_training.train_step`` (BCE, or BCE + λ·penalty: the penalty's
forward pass on x shared with the loss, a second one on x' — x with region J of each sample taken from the next
sample — and back-propagation through both input gradients) on a fresh small ResNet-18 (widths 8/16/32/64, 3×3
stride-1 stem), SGD lr 0.05 momentum 0.9, the same initial weights. Two networks, each plain and regularized:

- ``before``: the network's nn.Conv2d / nn.BatchNorm2d modules called directly, as the network's forward pass was
  written before (:class:`ModuleForward`), so autograd uses PyTorch's own backward of every layer, and the penalty's
  input gradient is ``torch.autograd.grad(create_graph=True)`` (double back-propagation);
- ``now``: the ResNet itself — stride-1 convolutions with the fast input gradient (``SameConvolution``), and the
  penalty's input gradient by its explicit backward pass (``logits_and_input_gradient``).

The last two ways are the current ones with weights and inputs laid out channels-last: faster on the CPU, but the
experiments train channel-first (:data:`rankrepro.cnn.locality_training.MEMORY_FORMAT`): in float32 the channels-last
BatchNorm statistics make the penalty's parameter gradient 14–66 % wrong on Pathfinder patches.

``--task isc``: batches of two random 14 px images 64 px apart on the 14 × 92 canvas, I and J the two images;
``--task pathfinder``: 32 × 32 Pathfinder images (L = 9), I and J random 2 × 2 patches. The median CPU time
(``time.process_time``, robust to a shared machine) of ``--repeats`` steps per way after one warm-up step each is
reported, the ways interleaved round-robin.

    python benchmarks/bench_locality_regularizer.py [--task isc|pathfinder] [--repeats 10] [--threads 1]
        [--out f.json]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from _report import machine, write_json
from rankrepro.cnn.locality import Region, canvas_images, random_patch_pair
from rankrepro.cnn.locality_training import MEMORY_FORMAT, train_step
from rankrepro.cnn.pathfinder import default_settings, generate
from rankrepro.cnn.resnet import SMALL_WIDTHS, ResNet18, ResNetConfig
from rankrepro.data.pairs import sample_pairs

BATCH = 64
#: (regularized, before, channels-last) per way; the ratios below index this order
WAYS = {
    "plain, before (PyTorch's layer backward)": (False, True, False),
    "plain, now (SameConvolution)": (False, False, False),
    "regularized, before (autograd double backward)": (True, True, False),
    "regularized, now (explicit input gradient)": (True, False, False),
    "plain, now, channels-last (rejected: inaccurate)": (False, False, True),
    "regularized, now, channels-last (rejected: inaccurate)": (True, False, True),
}


class ModuleForward(nn.Module):
    """The wrapped ResNet as its forward pass was written before: its modules called directly (PyTorch's backward
    and double backward of every layer), and no explicit input gradient, so the penalty uses
    ``torch.autograd.grad(create_graph=True)``."""

    def __init__(self, net: ResNet18) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        hidden = self.net.stem(x)
        for b in self.net.blocks:
            hidden = torch.relu(b.bn2(b.conv2(torch.relu(b.bn1(b.conv1(hidden))))) + b.shortcut(hidden))
        return self.net.head(hidden.mean(dim=(-2, -1)))


def task_batch(task: str, rng: np.random.Generator) -> tuple[Tensor, Tensor, Callable[[], tuple[Region, Region]]]:
    """One batch of inputs in [0, 1], its labels and a region sampler, for ``task``."""
    if task == "isc":
        images = rng.integers(0, 256, size=(200, 14, 14), dtype=np.uint8)
        pairs = sample_pairs(rng.integers(0, 10, size=200), BATCH, rng)
        canvases, first, second = canvas_images(images, pairs, 64, (14, 92))
        return (torch.from_numpy(canvases).float() / 255, torch.from_numpy(pairs[:, 2]), lambda: (first, second))
    images, labels = generate(BATCH, 9, default_settings(32, 9), rng)
    return (
        torch.from_numpy(images[:, None]).float() / 255,
        torch.from_numpy(labels),
        lambda: random_patch_pair((32, 32), 2, rng),
    )


def make_step(
    regularized: bool,
    before: bool,
    channels_last: bool,
    x: Tensor,
    y: Tensor,
    draw: Callable[[], tuple[Region, Region]],
) -> Callable[[], None]:
    """One ``train_step`` of a fresh network (the same initial weights for every way), weights and inputs laid out
    channels-last or as the experiments train (:data:`rankrepro.cnn.locality_training.MEMORY_FORMAT`)."""
    net = ResNet18(ResNetConfig(SMALL_WIDTHS, "small", 1), generator=torch.Generator().manual_seed(0))
    layout = torch.channels_last if channels_last else MEMORY_FORMAT
    model = (ModuleForward(net) if before else net).to(memory_format=layout)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    inputs = x.contiguous(memory_format=layout)
    return lambda: train_step(model, optimizer, inputs.clone(), y, 1.0 if regularized else 0.0, draw())


def median_cpu_seconds(steps: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median CPU seconds per step of each way after one warm-up step each, the ways interleaved round-robin."""
    times: dict[str, list[float]] = {way: [] for way in steps}
    for step in steps.values():
        step()
    for _ in range(repeats):
        for way, step in steps.items():
            started = time.process_time()
            step()
            times[way].append(time.process_time() - started)
    return {way: statistics.median(values) for way, values in times.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=["isc", "pathfinder"], default="isc")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    x, y, draw = task_batch(args.task, np.random.default_rng(0))
    steps = {way: make_step(*spec, x, y, draw) for way, spec in WAYS.items()}
    seconds = median_cpu_seconds(steps, args.repeats)
    names = list(WAYS)
    plain = seconds[names[0]]
    rows = [{"step": way, "cpu_seconds": seconds[way], "ratio_to_plain_before": seconds[way] / plain} for way in names]
    shape = "14 × 92 Is-Same-Class canvases" if args.task == "isc" else "32 × 32 Pathfinder images"
    print(
        f"One SGD step (library train_step), small ResNet-18 (widths {'/'.join(map(str, SMALL_WIDTHS))}), batch "
        f"{BATCH} of {shape}, {args.threads} thread(s), median CPU time of {args.repeats}"
    )
    print()
    print("| step | CPU time | × plain step before |")
    print("|---|---:|---:|")
    for row in rows:
        print(f"| {row['step']} | {1e3 * row['cpu_seconds']:.0f} ms | {row['ratio_to_plain_before']:.2f}× |")
    regularized_speedup = seconds[names[2]] / seconds[names[3]]
    plain_speedup = seconds[names[0]] / seconds[names[1]]
    print()
    print(
        f"regularized step: now {regularized_speedup:.2f}× faster than before, {seconds[names[3]] / seconds[names[1]]:.2f}× "  # noqa: E501
        f"a plain step (before: {seconds[names[2]] / plain:.2f}×); plain step {plain_speedup:.2f}× faster"
    )
    layout_speedup = seconds[names[3]] / seconds[names[5]]
    plain_layout_speedup = seconds[names[1]] / seconds[names[4]]
    print(
        f"channels-last: regularized step {layout_speedup:.2f}×, plain step {plain_layout_speedup:.2f}× faster than "
        f"the experiments' channel-first layout (rejected: its float32 gradients are inaccurate)"
    )
    result = {
        "benchmark": "locality_regularizer",
        "machine": machine(),
        "task": args.task,
        "batch": BATCH,
        "rows": rows,
        "regularized_speedup": regularized_speedup,
        "plain_speedup": plain_speedup,
        "channels_last_speedup": layout_speedup,
    }
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
