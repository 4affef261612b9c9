"""The paper-tier rehearsal (config/paper-rehearsal.yaml, given after config/paper.yaml) changes budgets only.

Its promise is that it runs every code path of the paper tier: the same experiments, datasets, models, methods,
losses, activations, optimizers, stems and canvases, at toy iteration counts, sample counts and widths. Merged the way
Snakemake merges two ``--configfile`` files, the result must validate, and every setting that differs from the paper
tier's must be a budget key of the list below.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from snakemake.utils import update_config

from rankrepro.pipeline.config import validate_config

ROOT = Path(__file__).resolve().parents[2]

#: the settings a rehearsal may shrink: how long, on how many samples, seeds and grid points, at what width — never
#: which data, model, loss or method
BUDGET_KEYS = frozenset(
    {
        "tier",
        "threads",
        "num_seeds",
        "seeds",
        "max_iters",
        "checkpoint_every",
        "n_observed",
        "restarts",
        "n_train",
        "n_test",
        "epochs",
        "batch_size",
        "eval_every",
        "train_pairs",
        "test_pairs",
        "train_images",
        "test_images",
        "widths",
        "max_epochs",
        "stop_after_fit",
        "patience",
        "removed_percents",
        "rounds",
        "num_samples",
        "width",
        "depths",
        "hidden",
        "sample_sizes",
        "checkpoints",
        "channels",
    }
)


def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "config" / name).read_text(encoding="utf-8"))


def rehearsal_config() -> dict[str, Any]:
    """config/paper.yaml with config/paper-rehearsal.yaml merged in as `snakemake --configfile A B` does."""
    config = _load("paper.yaml")
    update_config(config, _load("paper-rehearsal.yaml"))
    return config


def differing_settings(left: Any, right: Any, path: str = "") -> Iterator[str]:
    """Dotted paths of the leaves where two configs differ; lists of mappings are compared item by item (``[i]``),
    other lists and scalars as leaves."""
    if isinstance(left, dict) and isinstance(right, dict):
        for key in sorted(set(left) | set(right), key=str):
            yield from differing_settings(left.get(key), right.get(key), f"{path}.{key}" if path else str(key))
    elif (
        isinstance(left, list)
        and isinstance(right, list)
        and len(left) == len(right)
        and all(isinstance(item, dict) for item in left + right)
    ):
        for index, (a, b) in enumerate(zip(left, right, strict=True)):
            yield from differing_settings(a, b, f"{path}[{index}]")
    elif left != right:
        yield path


def _leaf_key(path: str) -> str:
    return path.rsplit(".", 1)[-1].split("[", 1)[0]


def _is_budget(path: str) -> bool:
    """A budget key, or what a run job asks the scheduler for (``resources``: it changes no number)."""
    return _leaf_key(path) in BUDGET_KEYS or ".resources." in path


def test_differing_settings_names_the_leaves_that_differ():
    left = {"a": 1, "b": {"c": [1, 2], "d": [{"e": 1, "f": 2}]}}
    right = copy.deepcopy(left)
    assert list(differing_settings(left, right)) == []
    right["b"]["d"][0]["f"] = 3
    right["b"]["c"] = [1]
    right["g"] = 0
    assert list(differing_settings(left, right)) == ["b.c", "b.d[0].f", "g"]


def test_the_rehearsal_validates_and_keeps_every_paper_experiment():
    paper = validate_config(_load("paper.yaml"))
    rehearsal = validate_config(rehearsal_config())
    assert rehearsal["tier"] == "paper-rehearsal"
    assert set(rehearsal["experiments"]) == set(paper["experiments"])


def test_the_rehearsal_changes_budgets_only():
    paper = validate_config(_load("paper.yaml"))
    rehearsal = validate_config(rehearsal_config())
    changed = list(differing_settings(paper, rehearsal))
    assert changed, "the rehearsal changes nothing: it would cost what the paper tier costs"
    not_budget = [path for path in changed if not _is_budget(path)]
    assert not not_budget, f"the rehearsal changes settings that select code paths: {not_budget}"


@pytest.mark.parametrize("key", ["datasets", "models", "losses", "activations", "stem", "canvas", "methods"])
def test_a_changed_code_path_key_would_be_caught(key):
    """The budget rule can fail: overriding a key that selects data, model or method is reported."""
    paper = validate_config(_load("paper.yaml"))
    tampered = rehearsal_config()
    section = next(name for name, body in paper["experiments"].items() if key in body)
    tampered["experiments"][section][key] = "tampered"
    changed = list(differing_settings(paper, tampered))
    assert any(_leaf_key(path) == key for path in changed)
    assert any(not _is_budget(path) for path in changed)
