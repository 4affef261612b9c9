"""Is-Same-Class pairs drawn from a labelled dataset: the examples of the Is-Same-Class tasks of chapter 3 (§3.2, on
CNN canvases) and chapter 4 (Table 1, on graphs), which differ only in how a pair is laid out.
"""

from __future__ import annotations

import numpy as np


def sample_pairs(labels: np.ndarray, count: int, generator: np.random.Generator) -> np.ndarray:
    """``(count, 3)``: image i, image j, same-class label. With probability ½ a class is drawn and two of its images
    (with replacement), else two different classes and one image of each."""
    classes = np.unique(labels)
    by_class = {c: np.flatnonzero(labels == c) for c in classes}
    rows = []
    for _ in range(count):
        if generator.random() < 0.5:
            c = generator.choice(classes)
            i, j = generator.choice(by_class[c], size=2, replace=True)
            rows.append((i, j, 1))
        else:
            a, b = generator.choice(classes, size=2, replace=False)
            rows.append((generator.choice(by_class[a]), generator.choice(by_class[b]), 0))
    return np.array(rows, dtype=np.int64)
