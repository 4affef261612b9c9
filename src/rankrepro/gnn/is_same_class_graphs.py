"""Is-Same-Class on graphs (chapter 4, Table 1): two images, each cut into 16 chunks that become vertex features of
a graph of two 16-cliques joined by one edge; the label says whether the images show the same class.

The placement of the chunks decides the walk index of the image-1 / image-2 partition, and with it how strongly a
GNN can model the interaction between the two images:

- ``low``: image-1 chunks on clique 1, image-2 chunks on clique 2 — only the bridge crosses the partition
  (walk index 548 for a depth-3 GNN);
- ``high``: clique 1 holds image-1 chunks 0–7 at its even slots and image-2 chunks 0–7 at its odd slots, clique 2
  image-2 chunks 8–15 at even and image-1 chunks 8–15 at odd slots — every vertex sits on the boundary (8,258).

Images are flattened row-major and cut into 16 contiguous chunks (49 values each for 28 × 28 images).
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import Tensor

from rankrepro.core.errors import ConfigError
from rankrepro.core.graphs import adjacency, directed_edge_index, undirected_edges

CLIQUE = 16
NUM_VERTICES = 2 * CLIQUE
ARRANGEMENTS = ("low", "high")


def two_clique_edges() -> np.ndarray:
    """Undirected edges of two 16-cliques (vertices 0–15 and 16–31) joined by the edge (0, 16)."""
    clique = list(itertools.combinations(range(CLIQUE), 2))
    pairs = clique + [(a + CLIQUE, b + CLIQUE) for a, b in clique] + [(0, CLIQUE)]
    return undirected_edges(np.array(pairs))


def arrangement(kind: str) -> np.ndarray:
    """``(32, 2)`` int: for each vertex, (which image 0/1, which chunk 0–15) it holds."""
    if kind == "low":
        return np.array([(v // CLIQUE, v % CLIQUE) for v in range(NUM_VERTICES)])
    if kind == "high":
        slots = []
        for v in range(NUM_VERTICES):
            clique, slot = divmod(v, CLIQUE)
            image = slot % 2 if clique == 0 else 1 - slot % 2
            slots.append((image, 8 * clique + slot // 2))
        return np.array(slots)
    raise ConfigError(f"unknown arrangement '{kind}' (expected one of {ARRANGEMENTS})")


def image_one_side(kind: str) -> np.ndarray:
    """The partition of the walk-index analysis: True for the vertices that hold image-1 chunks."""
    return arrangement(kind)[:, 0] == 0


def pair_features(images: np.ndarray, pairs: np.ndarray, kind: str, mean: float, std: float) -> Tensor:
    """``(count, 32, chunk)`` float32 vertex features: (pixels / 255 − mean) / std of the chunk each vertex holds
    (``.reshape(-1, chunk)`` stacks them for the edge-list form)."""
    flat = images.reshape(len(images), -1).astype(np.float32) / 255.0
    if flat.shape[1] % CLIQUE:
        raise ConfigError(f"images of {flat.shape[1]} pixels cannot be cut into {CLIQUE} equal chunks")
    chunks = flat.reshape(len(images), CLIQUE, -1)
    layout = arrangement(kind)
    sources = np.where(layout[None, :, 0] == 0, pairs[:, :1], pairs[:, 1:2])  # (count, 32) image index per vertex
    features = chunks[sources, layout[None, :, 1]]  # (count, 32, chunk)
    return torch.from_numpy((features - mean) / std)


def shared_adjacency() -> Tensor:
    """``(1, 32, 32)`` float32 0/1 adjacency of the two-clique graph without self-loops (the dense GNN layers add
    them), broadcast over a batch of graphs."""
    return torch.from_numpy(adjacency(two_clique_edges(), NUM_VERTICES, self_loops=False).toarray()).float()[None]


def batched_graphs(count: int) -> tuple[Tensor, Tensor]:
    """Edge index (both directions) and batch vector of ``count`` disjoint copies of the two-clique graph."""
    both = torch.from_numpy(directed_edge_index(two_clique_edges()))  # (2, 2E)
    offsets = torch.arange(count).repeat_interleave(both.shape[1]) * NUM_VERTICES
    edge_index = both.repeat(1, count) + offsets
    batch = torch.arange(count).repeat_interleave(NUM_VERTICES)
    return edge_index, batch
