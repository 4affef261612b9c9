"""§3.2 — Pathfinder with a ResNet-18: long paths need long-range dependencies; the regularizer supplies them.

Images from the seeded Pathfinder generator written here (:mod:`rankrepro.cnn.pathfinder`: paddles, distractors of
length L/3, two markers, label = both markers on one curve), on a ``canvas`` × ``canvas`` grid, for every path length
L of ``lengths``; train and test sets are drawn per (L, seed) from independent seeded streams. I and J are two random
``patch`` × ``patch`` regions (drawn per batch). See :mod:`rankrepro.experiments.ch3.locality_common` for the sweep, the
figure and the claims.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rankrepro.cnn import pathfinder
from rankrepro.cnn.locality import random_patch_pair
from rankrepro.cnn.pathfinder import default_settings, generate
from rankrepro.core.seeding import derived_seed
from rankrepro.experiments.base import Context, load_results
from rankrepro.experiments.ch3.locality_common import (
    check_receptive_field,
    plot_sweep,
    run_sweep,
    scale_substitutions,
    sweep_claims,
    training_text,
)
from rankrepro.pipeline.claims import ClaimResult

NAME = "pathfinder_cnn"
CHAPTER = "ch3"
SECTION = "3.2"
TITLE = "Pathfinder with a ResNet-18: accuracy vs the path length, per λ"
#: the paper's test accuracies (%) per λ at path lengths 3, 5, 7, 9
PAPER_LENGTHS = [3, 5, 7, 9]
PAPER_ACCURACY = {0.0: [98.5, 96.0, 68.5, 50.5], 3.0: [98.5, 96.8, 89.5, 63.5], 9.0: [98.5, 96.5, 91.5, 85.5]}
REFERENCE = (
    "Razin, Maman & Cohen 2022, Fig. 3 (150 × 150 images, 10,000/10,000 per length): test accuracy % at "
    "L = 3/5/7/9 — λ = 0: 98.5, 96.0, 68.5, 50.5; λ = 3: 98.5, 96.8, 89.5, 63.5; λ = 9: 98.5, 96.5, 91.5, "
    "85.5"
)


def run(settings: dict, out: Path, ctx: Context) -> None:
    """Every path length × λ × seed, on images generated per (length, seed)."""
    canvas, patch = int(settings["canvas"]), int(settings["patch"])
    field = check_receptive_field(settings, 1, canvas, NAME)

    def build_task(length: int, seed_index: int):
        geometry = default_settings(canvas, length)
        streams = [
            np.random.default_rng(derived_seed(int(settings["seed"]), length, seed_index, split)) for split in (0, 1)
        ]
        train_x, train_y = generate(int(settings["train_images"]), length, geometry, streams[0])
        test_x, test_y = generate(int(settings["test_images"]), length, geometry, streams[1])
        return (
            (torch.from_numpy(train_x[:, None]), torch.from_numpy(train_y)),
            (torch.from_numpy(test_x[:, None]), torch.from_numpy(test_y)),
            lambda generator: random_patch_pair((canvas, canvas), patch, generator),
        )

    run_sweep(
        settings,
        out,
        ctx,
        NAME,
        [int(n) for n in settings["lengths"]],
        1,
        build_task,
        {"receptive_field": field},
        (pathfinder,),
    )


def substitutions(settings: dict) -> str:
    """How the tier departs from the paper's protocol."""
    parts = scale_substitutions(settings, {"canvas": 150, "train_images": 10000, "test_images": 10000})
    parts.append("our own generator (binary, touching paddles; geometry scaled from the 300 px original)")
    return "; ".join(parts)


def plot(results: Path, figure_png: Path, tier: str) -> list[Path]:
    """Test and train accuracy vs path length per λ (mean ± std over seeds)."""
    _, summary = load_results(results)
    settings = summary["settings"]
    details = (
        f"{settings['train_images']:,} train / {settings['test_images']:,} test images of {settings['canvas']} "
        f"× {settings['canvas']} px per path length (balanced labels); I, J = random {settings['patch']} × "
        f"{settings['patch']} patches per batch. "
        + training_text(settings, summary)
        + " Dotted: the paper's values (only when the tier runs its lengths)."
    )
    return plot_sweep(
        results,
        figure_png,
        tier,
        SECTION,
        TITLE,
        "path length (paddles)",
        PAPER_ACCURACY,
        PAPER_LENGTHS,
        details,
        substitutions(settings),
    )


def claims(results: Path, tier: str) -> list[ClaimResult]:
    """The §3.2 claims on the path-length sweep."""
    _, summary = load_results(results)
    settings = summary["settings"]
    paper_geometry = list(settings["lengths"]) == PAPER_LENGTHS and settings["canvas"] == 150
    return sweep_claims(results, NAME, SECTION, REFERENCE, "path length", int(settings["test_images"]), paper_geometry)
