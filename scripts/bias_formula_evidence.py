"""The evidence for the closed forms of linear networks with biases (docs/chapters/ch5.md, "Networks with biases"):
exact ranks over Q of H_L, H_O and H_F of random linear networks with biases, against
:func:`rankrepro.hessian.maps.predicted_ranks_with_biases`.

    python scripts/bias_formula_evidence.py                 # 740 networks in two families, ≈ 1–2 min on one core
    python scripts/bias_formula_evidence.py --networks 50   # fewer per family

Each network: integer data X (n × d) of exact rank r (a product of two small-integer matrices; with probability 0.3
the first feature constant, so that the all-ones vector lies in the span of X), targets N(0, 1) for MSE or one-hot
labels for cross-entropy, Glorot-normal weights and zero biases (the sweeps' initialisation) or, half of the time,
every parameter perturbed by N(0, 0.3²). Exits 1 on any mismatch and prints it."""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass

import torch

from rankrepro.hessian import exact
from rankrepro.hessian import maps as hs


@dataclass(frozen=True)
class Family:
    """Ranges a random network is drawn from (inclusive)."""

    name: str
    depths: tuple[int, int]  # L, the number of weight matrices
    widths: tuple[int, int]
    inputs: tuple[int, int]
    outputs: tuple[int, int]
    max_samples: int


FAMILIES = (
    Family("small", (2, 6), (1, 9), (2, 9), (2, 7), 30),
    Family("large", (3, 8), (1, 16), (2, 14), (2, 11), 40),
)
#: networks per family by default (440 + 300: the count docs/chapters/ch5.md quotes)
DEFAULT_NETWORKS = {"small": 440, "large": 300}


@dataclass(frozen=True)
class Case:
    """One random network and its data."""

    d: int
    r: int
    k: int
    hidden: tuple[int, ...]
    loss: str
    n: int
    constant: bool
    noisy: bool
    seed: int


def draw_case(family: Family, rng: random.Random, seed: int) -> Case:
    """A network of ``family``: depth, widths, input and output sizes, data rank, loss and bias state, uniformly."""
    depth = rng.randint(*family.depths)
    hidden = tuple(rng.randint(*family.widths) for _ in range(depth - 1))
    d = rng.randint(*family.inputs)
    r = rng.randint(1, d)
    return Case(
        d=d,
        r=r,
        k=rng.randint(*family.outputs),
        hidden=hidden,
        loss=rng.choice(["mse", "mse", "ce"]),
        n=rng.randint(max(r + 2, 6), family.max_samples),
        constant=rng.random() < 0.3,
        noisy=rng.random() < 0.5,
        seed=seed,
    )


def exact_and_predicted(case: Case) -> tuple[dict[str, int], dict[str, int]]:
    """(exact ranks over Q of H_L, H_O, H_F, closed forms with biases at the data's exact r and r̂) of ``case``."""
    g = torch.Generator().manual_seed(case.seed)
    X = torch.randint(-3, 4, (case.n, case.r), generator=g).double()
    X = X @ torch.randint(-3, 4, (case.r, case.d), generator=g).double()
    if case.constant:
        X[:, 0] = 1.0
    if case.loss == "ce":
        Y = torch.nn.functional.one_hot(torch.randint(0, case.k, (case.n,), generator=g), case.k).double()
    else:
        Y = torch.randn(case.n, case.k, generator=g, dtype=torch.float64)
    mlp = hs.MLP((case.d, *case.hidden, case.k), bias=True)
    theta = hs.glorot_normal_init(mlp, g)
    if case.noisy:
        theta = theta + 0.3 * torch.randn(mlp.num_params, generator=g, dtype=torch.float64)
    found = exact.exact_ranks(mlp, theta, X, Y, case.loss, dict.fromkeys(exact.KINDS, mlp.num_params), case.seed)
    r = exact.exact_matrix_rank(X, case.seed)
    r_hat = exact.exact_matrix_rank(hs.with_constant_feature(X), case.seed)
    ranks = {kind: found[kind]["rank"] for kind in exact.KINDS}
    return ranks, hs.predicted_ranks_with_biases(r, r_hat, case.hidden, case.k, case.loss)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=None, help="networks per family (default: 440 and 300)")
    parser.add_argument("--seed", type=int, default=20210630)
    args = parser.parse_args(argv)
    mismatches = 0
    for index, family in enumerate(FAMILIES):
        count = args.networks or DEFAULT_NETWORKS[family.name]
        rng = random.Random(args.seed + index)
        for number in range(count):
            case = draw_case(family, rng, seed=args.seed + 100_000 * index + number)
            ranks, predicted = exact_and_predicted(case)
            if ranks != predicted:
                mismatches += 1
                print(f"MISMATCH {case}: exact {ranks}, closed forms {predicted}")
        print(f"{family.name}: {count} networks checked")
    print(f"{mismatches} mismatches")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
