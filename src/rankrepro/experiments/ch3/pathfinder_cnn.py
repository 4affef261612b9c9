"""§3.2 — Pathfinder with a ResNet-18: long paths need long-range dependencies; the regularizer supplies them.

Images from the seeded Pathfinder generator written here (:mod:`rankrepro.cnn.pathfinder`: paddles, distractors of
length L/3, two markers, label = both markers on one curve), on a ``canvas`` × ``canvas`` grid, for every path length
L of ``lengths``; train and test sets are drawn per (L, seed) from independent seeded streams. I and J are two random
``patch`` × ``patch`` regions (drawn per batch). See :mod:`rankrepro.experiments.ch3.locality_common` for the sweep, the
figure and the claims.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rankrepro.cnn import pathfinder
from rankrepro.cnn.locality import random_patch_pair
from rankrepro.cnn.pathfinder import default_settings, generate
from rankrepro.core.seeding import derived_seed
from rankrepro.experiments.base import Context, load_results
from rankrepro.experiments.ch3.locality_common import (
    LocalityTrainingSettings,
    check_receptive_field,
    plot_sweep,
    run_sweep,
    sweep_claims,
    training_text,
)
from rankrepro.pipeline.claims import ClaimResult
from rankrepro.pipeline.settings import FigureContext

NAME = "pathfinder_cnn"
CHAPTER = "ch3"
SECTION = "3.2"
TITLE = "Pathfinder with a ResNet-18: accuracy vs the path length, per λ"
#: the reference results (the paper's Fig. 3): test accuracies (%) per λ at path lengths 3, 5, 7, 9
PAPER_LENGTHS = (3, 5, 7, 9)
PAPER_ACCURACY = {0.0: [98.5, 96.0, 68.5, 50.5], 3.0: [98.5, 96.8, 89.5, 63.5], 9.0: [98.5, 96.5, 91.5, 85.5]}
REFERENCE = (
    "Razin, Maman & Cohen 2022, Fig. 3 (150 × 150 images, 10,000/10,000 per length): test accuracy % at "
    "L = 3/5/7/9 — λ = 0: 98.5, 96.0, 68.5, 50.5; λ = 3: 98.5, 96.8, 89.5, 63.5; λ = 9: 98.5, 96.5, 91.5, "
    "85.5"
)
#: the image side (px) of the reference results: a tier that runs it at the reference lengths can refute the fall of
#: λ = 0 (``claims`` gets no paper tier to compare with)
REFERENCE_CANVAS = 150
#: what the settings cannot show: whose Pathfinder images these are
GENERATOR_NOTE = "our own generator (binary, touching paddles; geometry scaled from the 300 px original)"


@dataclass(frozen=True)
class PathfinderSettings(LocalityTrainingSettings):
    """The Pathfinder sweep (schema ``$defs/pathfinder_cnn``): the shared network and training, the path
    ``lengths`` (paddles), the image side ``canvas`` (px), the side ``patch`` of the regions I and J, and the
    train/test images generated per length."""

    lengths: tuple[int, ...]
    canvas: int
    patch: int
    train_images: int
    test_images: int


Settings = PathfinderSettings


def run(settings: PathfinderSettings, out: Path, ctx: Context) -> None:
    """Every path length × λ × seed, on images generated per (length, seed)."""
    canvas, patch = settings.canvas, settings.patch
    field = check_receptive_field(settings, 1, canvas, NAME)

    def build_task(length: int, seed_index: int):
        geometry = default_settings(canvas, length)
        streams = [np.random.default_rng(derived_seed(settings.seed, length, seed_index, split)) for split in (0, 1)]
        train_x, train_y = generate(settings.train_images, length, geometry, streams[0])
        test_x, test_y = generate(settings.test_images, length, geometry, streams[1])
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
        "lengths",
        1,
        build_task,
        {"receptive_field": field},
        (pathfinder,),
    )


def plot(results: Path, figure_png: Path, figure: FigureContext) -> list[Path]:
    """Test and train accuracy vs path length per λ (mean ± std over seeds); the caption names our generator and
    every setting that departs from the paper tier's."""
    _, summary = load_results(results)
    settings = PathfinderSettings.from_mapping(summary["settings"])
    details = (
        f"{settings.train_images:,} train / {settings.test_images:,} test images of {settings.canvas} "
        f"× {settings.canvas} px per path length (balanced labels); I, J = random {settings.patch} × "
        f"{settings.patch} patches per batch. "
        + training_text(settings, summary["receptive_field"])
        + " Dotted: the paper's values (only when the tier runs its lengths)."
    )
    return plot_sweep(
        results,
        figure_png,
        figure,
        SECTION,
        TITLE,
        "path length (paddles)",
        PAPER_ACCURACY,
        PAPER_LENGTHS,
        details,
        [GENERATOR_NOTE],
    )


def claims(results: Path, tier: str) -> list[ClaimResult]:
    """The §3.2 claims on the path-length sweep."""
    _, summary = load_results(results)
    settings = PathfinderSettings.from_mapping(summary["settings"])
    paper_geometry = settings.lengths == PAPER_LENGTHS and settings.canvas == REFERENCE_CANVAS
    return sweep_claims(results, NAME, SECTION, REFERENCE, "path length", settings.test_images, paper_geometry)
