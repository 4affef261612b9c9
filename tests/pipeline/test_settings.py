"""Typed settings (rankrepro.pipeline.settings): conversion from a validated mapping, its errors, and the departures
from the paper tier that captions state."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rankrepro.core.errors import ConfigError
from rankrepro.pipeline.config import experiment_section, load_config, load_schema
from rankrepro.pipeline.registry import EXPERIMENTS
from rankrepro.pipeline.settings import (
    FigureContext,
    SettingsRecord,
    bookkeeping_keys,
    departures,
    describe,
    section_properties,
)


@dataclasses.dataclass(frozen=True)
class Inner(SettingsRecord):
    """A nested mapping."""

    depth: int
    lr: float


@dataclasses.dataclass(frozen=True)
class Outer(SettingsRecord):
    """Every kind of field a settings class may have."""

    seed: int
    lr: float
    balanced: bool
    name: str
    method: Literal["auto", "dense"]
    cap: int | None
    scales: tuple[float, ...]
    shape: tuple[int, int]
    runs: tuple[Inner, ...]
    per_model: Mapping[str, float]
    inner: Inner


SECTION = {
    "seed": 3,
    "lr": 1,
    "balanced": True,
    "name": "x",
    "method": "dense",
    "cap": None,
    "scales": [1, 0.5],
    "shape": [2, 3],
    "runs": [{"depth": 2, "lr": 0.1}],
    "per_model": {"gcn": 5e-3},
    "inner": {"depth": 3, "lr": 2},
}


def test_from_mapping_converts_every_kind_of_field_once():
    settings = Outer.from_mapping(SECTION)
    assert settings.lr == 1.0 and isinstance(settings.lr, float)
    assert settings.scales == (1.0, 0.5) and all(isinstance(x, float) for x in settings.scales)
    assert settings.shape == (2, 3)
    assert settings.runs == (Inner(depth=2, lr=0.1),)
    assert settings.inner == Inner(depth=3, lr=2.0)
    assert settings.per_model["gcn"] == 5e-3
    with pytest.raises(TypeError):
        settings.per_model["gat"] = 1.0  # read-only
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.seed = 4


def test_record_is_the_mapping_it_was_built_from_unchanged():
    settings = Outer.from_mapping(SECTION)
    record = settings.record()
    assert record == SECTION and record["lr"] == 1 and isinstance(record["lr"], int)  # not the converted 1.0
    record["seed"] = 99  # a copy
    assert settings.record()["seed"] == 3


def test_an_optional_field_may_be_absent():
    section = {key: value for key, value in SECTION.items() if key != "cap"}
    assert Outer.from_mapping(section).cap is None


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("seed", True, "must be an integer, not a boolean"),
        ("seed", 1.5, "'where.seed' must be int"),
        ("lr", "0.1", "'where.lr' must be float"),
        ("balanced", 1, "'where.balanced' must be bool"),
        ("method", "gather", "'where.method': 'gather' is not one of"),
        ("scales", 1.0, "'where.scales' must be a list"),
        ("shape", [1, 2, 3], "'where.shape' must have 2 items"),
        ("runs", [{"depth": 2}], "'where.runs.0.lr' is missing"),
        ("per_model", [1], "'where.per_model' must be a mapping"),
        ("inner", {"depth": 1, "lr": 1, "extra": 2}, "['extra'] under 'where.inner' have no field"),
    ],
)
def test_a_wrong_value_is_a_config_error_naming_the_key(key, value, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Outer.from_mapping({**SECTION, key: value}, "where")


def test_a_missing_required_key_is_a_config_error():
    section = {key: value for key, value in SECTION.items() if key != "seed"}
    with pytest.raises(ConfigError, match="'settings.seed' is missing"):
        Outer.from_mapping(section)


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False) | st.integers(), max_size=5))
def test_float_tuples_keep_every_value(values):
    settings = Outer.from_mapping({**SECTION, "scales": values})
    assert settings.scales == tuple(float(v) for v in values)
    assert settings.record()["scales"] == values


def test_departures_name_every_differing_key_nested_and_skip_bookkeeping():
    ours = {"n": 500, "lr": 0.01, "log_every": 10, "tf": {"init": 1e-3, "components": 20}, "only_ours": [1, 2]}
    paper = {"n": 2000, "lr": 0.01, "log_every": 100, "tf": {"init": 1e-3, "components": 256}}
    found = departures(ours, paper, frozenset({"log_every"}))
    assert found == ["n 500 (paper: 2,000)", "only_ours [1, 2] (paper: —)", "tf.components 20 (paper: 256)"]
    assert departures(paper, paper, frozenset()) == []
    assert departures({"tf": {"a": 1, "b": 2}}, {"tf": {"a": 2, "b": 3}}, frozenset({"tf.a"})) == ["tf.b 2 (paper: 3)"]


def test_describe():
    assert describe(2000) == "2,000" and describe(1e-3) == "0.001" and describe(False) == "false"
    assert describe([64, 128]) == "[64, 128]" and describe({"a": 1}) == "{a: 1}" and describe(None) == "—"


def test_figure_context_substitutions():
    paper = {"n": 2000, "lr": 0.01}
    context = FigureContext("smoke", paper, frozenset())
    assert (
        context.substitutions({"n": 500, "lr": 0.01}) == "settings departing from the paper tier: n 500 (paper: 2,000)"
    )
    assert context.substitutions(paper) == "none"
    assert context.substitutions(paper, "MNIST instead of CIFAR-10") == "MNIST instead of CIFAR-10"
    assert "not compared" in FigureContext("smoke").substitutions(paper)


def test_section_properties_include_allof_blocks_and_bookkeeping_is_annotated_in_the_schema():
    schema = load_schema()
    properties = section_properties(schema, "dmf_2x2_norms_vs_rank")
    assert {"seed", "loss_threshold", "max_iters", "log_every", "runs", "resources"} <= set(properties)
    for name in EXPERIMENTS:
        assert bookkeeping_keys(schema, name) <= set(section_properties(schema, name)) | {
            key for key in bookkeeping_keys(schema, name) if "." in key
        }


@pytest.mark.parametrize("tier", ["smoke", "paper"])
def test_the_paper_tier_departs_from_itself_nowhere_and_the_smoke_tier_everywhere(tier):
    paper = load_config("config/paper.yaml")
    config = load_config(f"config/{tier}.yaml")
    schema = load_schema()
    for name in config["experiments"]:
        found = departures(
            experiment_section(config, name), experiment_section(paper, name), bookkeeping_keys(schema, name)
        )
        assert (found == []) == (tier == "paper"), (name, found)
