"""Seeds derived from the config: independent, reproducible random streams per purpose."""

from __future__ import annotations

import numpy as np
import torch


def derived_seed(*parts: int) -> int:
    """A 32-bit seed from a tuple of integers (numpy ``SeedSequence`` hashing): distinct tuples give
    statistically independent streams, equal tuples the same stream on every machine."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def seeded_generator(*parts: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`derived_seed` of ``parts``."""
    return torch.Generator().manual_seed(derived_seed(*parts))
