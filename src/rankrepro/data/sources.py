"""Where an experiment's real datasets come from (:class:`DataSource`: the data cache and the offline mirror), and
the loop over its required and optional datasets (:func:`available_datasets`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rankrepro.core.errors import DataError
from rankrepro.data.image_datasets import ImageDataset, load_image_classification

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataSource:
    """Where an experiment's real datasets come from: the project's data cache and the optional offline mirror
    (already resolved: see :func:`rankrepro.data.registry.resolve_mirror`). Experiments that declare ``DATASETS``
    receive one."""

    cache_root: Path
    mirror: Path | None = None

    def image_classification(self, name: str) -> ImageDataset:
        """The verified train/test images and labels of ``name`` (fetched into the cache first if needed)."""
        return load_image_classification(name, self.cache_root, self.mirror)

    def graph(self, name: str):
        """The verified graph ``name`` (:class:`rankrepro.data.graph_datasets.GraphDataset`)."""
        from rankrepro.data.graph_datasets import load_graph

        return load_graph(name, self.cache_root, self.mirror)


def available_datasets(
    required: Sequence[str], optional: Sequence[str], load: Callable[[str], Any], unavailable: dict[str, str]
) -> Iterator[tuple[str, Any]]:
    """Yield ``(name, load(name))`` for the ``required`` datasets, then for the ``optional`` ones not among them, one
    at a time. A required dataset that cannot be obtained raises its :class:`DataError`; an optional one is skipped
    with a warning and its reason stored in ``unavailable`` (the claims turn it into a data-unavailable record)."""
    required = list(required)
    optional = [name for name in optional if name not in required]
    for name in [*required, *optional]:
        try:
            loaded = load(name)
        except DataError as exc:
            if name not in optional:
                raise
            log.warning("optional dataset %s is unavailable, skipped: %s", name, exc)
            unavailable[name] = str(exc)
            continue
        yield name, loaded
