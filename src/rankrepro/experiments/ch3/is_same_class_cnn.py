"""§3.2 — Is-Same-Class with a ResNet-18: the locality bias of CNNs, and the input-gradient-change regularizer.

Two images side by side, ``distance`` zero columns apart, centred on a zero canvas; the label says whether they show
the same class (balanced by construction). The paper uses CIFAR-10 (32 × 32 on a 224 × 224 canvas); the run takes
``preferred_dataset`` (CIFAR-10) when it can be obtained, else the first of ``datasets`` (which the workflow fetches
first: offline, the named substitute Fashion-MNIST),
resized to ``image_side`` (area interpolation), and says which in the summary, the caption and the scorecard.
I and J are the two image regions (I picked uniformly per batch). Train pairs come from the train split, test pairs
from the test split; within a seed every distance uses the same pairs. See
:mod:`rankrepro.experiments.ch3.locality_common` for the sweep, the figure and the claims.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from rankrepro.cnn.locality import canvas_images, choose_pair, resize_images
from rankrepro.core.errors import ConfigError, DataError
from rankrepro.core.seeding import derived_seed
from rankrepro.data.image_datasets import ImageDataset
from rankrepro.data.pairs import sample_pairs
from rankrepro.data.sources import DataSource
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

NAME = "is_same_class_cnn"
CHAPTER = "ch3"
SECTION = "3.2"
TITLE = "Is-Same-Class with a ResNet-18: accuracy vs the distance between the images, per λ"
DATASETS = ("cifar-10", "fashion-mnist")
#: the reference results (the paper's Fig. 3): CIFAR-10 test accuracies (%) per λ at distances 0, 40, 80, 120, 160 px
PAPER_DISTANCES = (0, 40, 80, 120, 160)
PAPER_ACCURACY = {
    0.0: [61.2, 60.0, 55.8, 50.0, 50.5],
    0.1: [61.3, 60.4, 58.3, 52.5, 49.8],
    1.0: [61.3, 61.3, 60.5, 58.8, 58.4],
}
REFERENCE = (
    "Razin, Maman & Cohen 2022, Fig. 3 (CIFAR-10, 224 × 224 canvas, 5,000/10,000 pairs): test accuracy % "
    "at d = 0/40/80/120/160 — λ = 0: 61.2, 60.0, 55.8, 50.0, 50.5; λ = 0.1: 61.3, 60.4, 58.3, 52.5, 49.8; "
    "λ = 1: 61.3, 61.3, 60.5, 58.8, 58.4"
)
#: the dataset and geometry (image side, canvas) of the reference results: a tier that runs them at the reference
#: distances can refute the fall of λ = 0 (``claims`` gets no paper tier to compare with)
REFERENCE_DATASET, REFERENCE_IMAGE_SIDE, REFERENCE_CANVAS = "cifar-10", 32, (224, 224)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IsSameClassSettings(LocalityTrainingSettings):
    """The Is-Same-Class sweep (schema ``$defs/is_same_class_cnn``): the shared network and training, the datasets
    (``preferred_dataset`` tried first, then ``datasets`` in order), the distances (px) between the two images of
    side ``image_side`` on a ``canvas`` (height, width), and the train/test pairs drawn."""

    preferred_dataset: Literal["cifar-10"] | None
    datasets: tuple[Literal["fashion-mnist", "mnist", "cifar-10"], ...]
    distances: tuple[int, ...]
    image_side: int
    canvas: tuple[int, int]
    train_pairs: int
    test_pairs: int


Settings = IsSameClassSettings


def first_available(data: DataSource, names: list[str]) -> tuple[ImageDataset, dict[str, str]]:
    """The first of ``names`` that can be obtained, and why each earlier one could not (a DataError naming every
    reason when none can)."""
    reasons: dict[str, str] = {}
    for name in names:
        try:
            return data.image_classification(name), reasons
        except DataError as exc:
            log.warning("%s is unavailable, trying the next dataset: %s", name, exc)
            reasons[name] = str(exc)
    raise DataError(f"{NAME}: none of the datasets {names} can be obtained: {reasons}")


def run(settings: IsSameClassSettings, out: Path, ctx: Context, data: DataSource) -> None:
    """Every distance × λ × seed; the images of the first obtainable dataset, resized."""
    side, (height, width), distances = settings.image_side, settings.canvas, settings.distances
    if side > height or 2 * side + max(distances) > width:
        raise ConfigError(
            f"{NAME}: two {side} px images {max(distances)} px apart do not fit the {height} × {width} canvas"
        )
    preferred = [settings.preferred_dataset] if settings.preferred_dataset else []
    images, unavailable = first_available(data, list(dict.fromkeys([*preferred, *settings.datasets])))
    train_images, test_images = resize_images(images.train_images, side), resize_images(images.test_images, side)
    channels = 1 if train_images.ndim == 3 else 3
    field = check_receptive_field(settings, channels, 2 * side + max(distances), NAME)
    pairs: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def build_task(distance: int, seed_index: int):
        if seed_index not in pairs:
            rng = np.random.default_rng(derived_seed(settings.seed, seed_index, 2))
            pairs[seed_index] = (
                sample_pairs(images.train_labels, settings.train_pairs, rng),
                sample_pairs(images.test_labels, settings.test_pairs, rng),
            )
        train_pairs, test_pairs = pairs[seed_index]
        train_x, first, second = canvas_images(train_images, train_pairs, distance, (height, width))
        test_x, _, _ = canvas_images(test_images, test_pairs, distance, (height, width))
        return (
            (torch.from_numpy(train_x), torch.from_numpy(train_pairs[:, 2])),
            (torch.from_numpy(test_x), torch.from_numpy(test_pairs[:, 2])),
            lambda generator: choose_pair([first, second], generator),
        )

    run_sweep(
        settings,
        out,
        ctx,
        NAME,
        "distances",
        channels,
        build_task,
        {
            "dataset": images.name,
            "unavailable_datasets": unavailable,
            "receptive_field": field,
            "source_image_shape": list(images.train_images.shape[1:]),
        },
        (),
    )


def dataset_note(used: str, preferred: str | None) -> list[str]:
    """What the settings cannot show: the dataset ``used`` at run time when it is not the ``preferred`` one."""
    return [f"{used} instead of {preferred} ({preferred} not obtainable here)"] if preferred not in (None, used) else []


def plot(results: Path, figure_png: Path, figure: FigureContext) -> list[Path]:
    """Test and train accuracy vs distance per λ (mean ± std over seeds); the caption names a substitute dataset and
    every setting that departs from the paper tier's."""
    _, summary = load_results(results)
    settings = IsSameClassSettings.from_mapping(summary["settings"])
    height, width = settings.canvas
    details = (
        f"{settings.train_pairs:,} train / {settings.test_pairs:,} test pairs of {summary['dataset']} "
        f"images resized to {settings.image_side} px, on a {height} × {width} "
        f"zero canvas; I, J = the two images. "
        + training_text(settings, summary["receptive_field"])
        + " Dotted: the paper's CIFAR-10 values (only when the tier runs its distances)."
    )
    return plot_sweep(
        results,
        figure_png,
        figure,
        SECTION,
        TITLE,
        "distance between the images (px)",
        PAPER_ACCURACY,
        PAPER_DISTANCES,
        details,
        dataset_note(summary["dataset"], settings.preferred_dataset),
    )


def claims(results: Path, tier: str) -> list[ClaimResult]:
    """The §3.2 claims on the distance sweep; the dataset used is named in every claim's details."""
    _, summary = load_results(results)
    settings = IsSameClassSettings.from_mapping(summary["settings"])
    paper_geometry = (
        settings.distances == PAPER_DISTANCES
        and settings.image_side == REFERENCE_IMAGE_SIDE
        and settings.canvas == REFERENCE_CANVAS
    )
    found = sweep_claims(results, NAME, SECTION, REFERENCE, "distance", settings.test_pairs, paper_geometry)
    substitute = "" if summary["dataset"] == REFERENCE_DATASET else f" ({REFERENCE_DATASET.upper()} substitute)"
    used = f"dataset: {summary['dataset']}{substitute}"
    return [ClaimResult(**{**vars(c), "details": "; ".join(filter(None, [used, c.details]))}) for c in found]
