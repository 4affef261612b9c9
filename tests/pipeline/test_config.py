"""Config validation: every error names the offending key; defaults are filled; the shipped tiers validate."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from rankrepro.core.errors import ConfigError, RankreproError
from rankrepro.pipeline.config import (
    DATA_KEYS,
    JOB_KEYS,
    SETTINGS_NAME,
    WORKFLOW_KEYS,
    experiment_section,
    job_settings,
    load_config,
    load_schema,
    settings_hash,
    settings_path,
    settings_text,
    validate_config,
)

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config" / "config.yaml"
SECTION = "dmf_2x2_norms_vs_rank"


def _minimal() -> dict:
    return {
        "tier": "unit",
        "experiments": {
            SECTION: {
                "seed": 1,
                "loss_threshold": 1e-4,
                "max_iters": 100,
                "log_every": 10,
                "runs": [
                    {"depth": 3, "lr": 1e-3, "init_scale": 1e-3, "balanced": True},
                    {"depth": 2, "lr": 1e-3, "init_scale": 1e-3, "balanced": False, "det_sign": -1},
                ],
            }
        },
    }


def _error(config: dict) -> str:
    with pytest.raises(ConfigError) as info:
        validate_config(config)
    assert isinstance(info.value, RankreproError)
    return str(info.value)


def test_shipped_default_config_validates():
    config = load_config(CONFIG)
    assert config["tier"] == "default"
    section = experiment_section(config, SECTION)
    assert all(run["det_sign"] in (-1, 1) for run in section["runs"])
    assert any(run["det_sign"] == -1 for run in section["runs"])


@pytest.mark.parametrize("name", ["smoke.yaml", "config.yaml", "paper.yaml"])
def test_every_shipped_tier_validates(name):
    path = ROOT / "config" / name
    if not path.exists():
        pytest.skip(f"{name} not written yet")
    config = load_config(path)
    assert config["experiments"]


def test_defaults_are_filled():
    config = validate_config(_minimal())
    assert config["threads"] == load_schema()["properties"]["threads"]["default"]
    assert config["device"] == "auto"
    assert config["data_mirror"] is None
    assert config["results_root"] == "results" and config["figures_root"] == "figures"
    section = config["experiments"][SECTION]
    assert section["checkpoint_every"] == 0
    assert [run["det_sign"] for run in section["runs"]] == [1, -1]  # default 1 inside the runs list, explicit kept


def test_validation_does_not_mutate_the_input():
    raw = _minimal()
    before = copy.deepcopy(raw)
    validate_config(raw)
    assert raw == before


def test_given_values_are_kept():
    raw = _minimal()
    raw["threads"] = 7
    raw["experiments"][SECTION]["checkpoint_every"] = 5
    config = validate_config(raw)
    assert config["threads"] == 7 and config["experiments"][SECTION]["checkpoint_every"] == 5


def test_unknown_top_level_key():
    raw = _minimal()
    raw["thread"] = 2
    message = _error(raw)
    assert "'thread'" in message and "<root>" in message and "threads" in message  # names it and lists allowed


def test_unknown_key_inside_experiment_section():
    raw = _minimal()
    raw["experiments"][SECTION]["learning_rate"] = 0.1
    message = _error(raw)
    assert "learning_rate" in message and f"experiments.{SECTION}" in message


def test_unknown_key_inside_a_run():
    raw = _minimal()
    raw["experiments"][SECTION]["runs"][1]["balance"] = True
    message = _error(raw)
    assert "balance" in message and f"experiments.{SECTION}.runs.1" in message


def test_unknown_experiment():
    raw = _minimal()
    raw["experiments"]["dmf_2x2_typo"] = {}
    assert "dmf_2x2_typo" in _error(raw)


@pytest.mark.parametrize(
    ("key", "value"), [("max_iters", "100"), ("max_iters", 1.5), ("seed", "1"), ("log_every", None)]
)
def test_wrong_type_names_the_key(key, value):
    raw = _minimal()
    raw["experiments"][SECTION][key] = value
    message = _error(raw)
    assert f"experiments.{SECTION}.{key}" in message and "integer" in message


def test_string_for_top_level_int():
    raw = _minimal()
    raw["threads"] = "2"
    assert "'threads'" in _error(raw)


def test_yaml_float_without_dot_is_a_string_and_is_reported(tmp_path):
    """PyYAML reads ``1e-4`` (no dot) as a string: the validator must say which key, not crash later."""
    raw = _minimal()
    text = yaml.safe_dump(raw).replace("loss_threshold: 0.0001", "loss_threshold: 1e-4")
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="loss_threshold"):
        load_config(path)


@pytest.mark.parametrize("lr", [-1e-3, 0, 0.0])
def test_non_positive_learning_rate_in_a_run(lr):
    raw = _minimal()
    raw["experiments"][SECTION]["runs"][1]["lr"] = lr
    message = _error(raw)
    assert f"experiments.{SECTION}.runs.1.lr" in message


@pytest.mark.parametrize("det_sign", [0, 2])
def test_det_sign_must_be_plus_or_minus_one(det_sign):
    raw = _minimal()
    raw["experiments"][SECTION]["runs"][0]["det_sign"] = det_sign
    assert "runs.0.det_sign" in _error(raw)


@pytest.mark.parametrize("key", ["seed", "loss_threshold", "max_iters", "log_every", "runs"])
def test_missing_required_key_in_section(key):
    raw = _minimal()
    del raw["experiments"][SECTION][key]
    message = _error(raw)
    assert f"'{key}'" in message and f"experiments.{SECTION}" in message


def test_missing_required_key_in_run_and_top_level():
    raw = _minimal()
    del raw["experiments"][SECTION]["runs"][0]["balanced"]
    assert "'balanced'" in _error(raw) and "runs.0" in _error(raw)
    raw = _minimal()
    del raw["tier"]
    assert "'tier'" in _error(raw)


def test_bad_enum_and_pattern():
    raw = _minimal()
    raw["device"] = "tpu"
    assert "'device'" in _error(raw)
    raw = _minimal()
    raw["tier"] = "Bad Tier"
    assert "'tier'" in _error(raw)


def test_non_mapping_and_missing_files(tmp_path):
    with pytest.raises(ConfigError, match="mapping"):
        validate_config([1, 2])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("tier: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_overrides_are_validated(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_minimal()))
    assert load_config(path, {"threads": 3})["threads"] == 3
    with pytest.raises(ConfigError, match="threads"):
        load_config(path, {"threads": 0})


def test_experiment_section_missing_names_experiment_and_tier():
    config = validate_config(_minimal())
    with pytest.raises(ConfigError, match="dmf_larger_matrices.*unit"):
        experiment_section(config, "dmf_larger_matrices")


def test_workflow_schema_is_the_packaged_schema():
    workflow_schema = ROOT / "workflow" / "schemas" / "config.schema.yaml"
    if not workflow_schema.exists():
        pytest.skip("workflow schema not present")
    assert yaml.safe_load(workflow_schema.read_text()) == load_schema()


# ---------------------------------------------------------------------------------------------------------------------
# Settings files: one experiment's part of the resolved config, named by the hash of its content.

OTHER = "dmf_larger_matrices"


def _two_experiments() -> dict:
    raw = _minimal()
    shipped = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    raw["experiments"][OTHER] = shipped["experiments"][OTHER]
    raw["data_mirror"] = "/mirror"
    return validate_config(raw)


def test_job_settings_hold_what_the_jobs_read_and_nothing_else():
    config = _two_experiments()
    settings = job_settings(config, SECTION, reads_data=False)
    assert set(settings) == set(JOB_KEYS) | {"experiments"}
    assert settings["experiments"] == {SECTION: experiment_section(config, SECTION)}
    assert all(settings[key] == config[key] for key in JOB_KEYS)
    with_data = job_settings(config, SECTION, reads_data=True)
    assert set(with_data) == set(JOB_KEYS) | set(DATA_KEYS) | {"experiments"} and with_data["data_mirror"] == "/mirror"
    assert "threads" not in with_data  # Snakemake gives each job its thread count
    with pytest.raises(ConfigError, match="tensor_rank_mnist"):
        job_settings(config, "tensor_rank_mnist", reads_data=True)


def test_an_experiments_settings_leave_out_what_only_the_workflow_reads():
    """A section's `resources` (what its run job asks the scheduler for) are filled in by the schema, never handed to
    the experiment: not in its settings, its settings file or its summary."""
    config = _two_experiments()
    assert config["experiments"][SECTION]["resources"] == {"mem_mb": 4000, "runtime": 240, "priority": 0}
    section = experiment_section(config, SECTION)
    assert set(section) == set(config["experiments"][SECTION]) - set(WORKFLOW_KEYS) and "seed" in section
    assert "resources" not in job_settings(config, SECTION, reads_data=True)["experiments"][SECTION]


@pytest.mark.parametrize(
    ("resources", "key"),
    [
        ({"mem_mb": 0}, "resources.mem_mb"),
        ({"runtime": 1.5}, "resources.runtime"),
        ({"priority": -1}, "resources.priority"),
        ({"gpus": 1}, "gpus"),
    ],
)
def test_bad_resources_name_the_key(resources, key):
    raw = _minimal()
    raw["experiments"][SECTION]["resources"] = resources
    assert key in _error(raw)


def test_job_settings_are_a_copy():
    config = _two_experiments()
    settings = job_settings(config, SECTION, reads_data=False)
    settings["experiments"][SECTION]["runs"][0]["lr"] = 1.0
    assert config["experiments"][SECTION]["runs"][0]["lr"] == 1e-3


def _hash(config: dict, name: str = SECTION, reads_data: bool = False) -> str:
    return settings_hash(job_settings(validate_config(config), name, reads_data=reads_data))


def test_the_hash_changes_exactly_when_a_value_the_jobs_read_changes():
    raw = _two_experiments()
    base = _hash(raw)
    assert _hash(copy.deepcopy(raw)) == base

    spelled = copy.deepcopy(raw)
    spelled["experiments"][SECTION]["runs"][0]["det_sign"] = 1  # the schema's default, spelled out
    spelled["threads"] = 7  # not read from the file: Snakemake passes it
    spelled["experiments"][OTHER]["seed"] += 1  # another experiment's section
    spelled["data_mirror"] = "/elsewhere"  # only experiments on real data read it
    assert _hash(spelled) == base
    assert _hash(spelled, reads_data=True) != _hash(raw, reads_data=True)

    spelled["experiments"][SECTION]["resources"] = {"mem_mb": 99, "runtime": 9, "priority": 5}  # the workflow's
    assert _hash(spelled) == base

    for edit in (
        lambda c: c["experiments"][SECTION].update(seed=2),
        lambda c: c["experiments"][SECTION]["runs"][1].update(lr=2e-3),
        lambda c: c.update(device="cpu"),
        lambda c: c.update(tier="other"),
    ):
        changed = copy.deepcopy(raw)
        edit(changed)
        assert _hash(changed) != base


def test_settings_path_names_experiment_and_hash():
    settings = job_settings(_two_experiments(), SECTION, reads_data=False)
    path = settings_path("results/unit", SECTION, settings)
    assert path == f"results/unit/settings/{SECTION}.{settings_hash(settings)}.yaml"
    match = SETTINGS_NAME.match(Path(path).name)
    assert match and match["experiment"] == SECTION and match["hash"] == settings_hash(settings)


def write_settings(path: str, settings: dict) -> Path:
    """Write a settings file as the workflow's rule experiment_settings does."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(settings_text(target.name, settings), encoding="utf-8")
    return target


@pytest.mark.parametrize("tier", ["smoke.yaml", "config.yaml", "paper.yaml"])
def test_a_settings_file_is_a_tier_config_holding_exactly_its_settings(tmp_path, tier):
    """For every experiment of every shipped tier: the file loads as a tier config (the CLI's --config) with the same
    settings, and its content still hashes to its name (YAML round trip of every value)."""
    config = load_config(ROOT / "config" / tier)
    for name in config["experiments"]:
        settings = job_settings(config, name, reads_data=True)
        path = write_settings(settings_path(str(tmp_path), name, settings), settings)
        loaded = load_config(path)
        assert (
            {name: experiment_section(loaded, name)}
            == settings["experiments"]
            == {name: experiment_section(config, name)}
        )
        assert all(loaded[key] == config[key] for key in JOB_KEYS + DATA_KEYS)
        assert settings_hash(yaml.safe_load(path.read_text(encoding="utf-8"))) == settings_hash(settings)


def test_settings_text_refuses_a_name_that_is_not_the_contents():
    settings = job_settings(_two_experiments(), SECTION, reads_data=False)
    good = Path(settings_path("results/unit", SECTION, settings)).name
    assert settings_text(good, settings).startswith(f"# Settings of experiment {SECTION}")
    for bad in (f"{SECTION}.{'0' * 16}.yaml", good.replace(SECTION, OTHER), "settings.yaml", good + ".tmp"):
        with pytest.raises(ConfigError, match="not the settings file"):
            settings_text(bad, settings)


def test_an_edited_settings_file_is_refused(tmp_path):
    settings = job_settings(_two_experiments(), SECTION, reads_data=False)
    path = write_settings(settings_path(str(tmp_path), SECTION, settings), settings)
    assert load_config(path)["experiments"][SECTION]["seed"] == 1
    path.write_text(path.read_text(encoding="utf-8").replace("seed: 1\n", "seed: 2\n"), encoding="utf-8")
    with pytest.raises(ConfigError, match="changed after the workflow wrote it"):
        load_config(path)
    # the same name outside a settings folder is an ordinary tier config
    plain = tmp_path / path.name
    plain.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    assert load_config(plain)["experiments"][SECTION]["seed"] == 2


def test_a_default_written_beside_a_ref_is_filled(monkeypatch):
    """JSON schema allows `{$ref: …, default: …}`; the default next to the reference must be filled in (it was
    ignored: chapter 4's `models` and Table 1's `std` went missing)."""
    from rankrepro.pipeline import config as config_module

    schema = {
        "$defs": {
            "positive": {"type": "number", "exclusiveMinimum": 0},
            "inner": {"type": "object", "properties": {"depth": {"type": "integer", "default": 3}}},
        },
        "type": "object",
        "properties": {
            "std": {"$ref": "#/$defs/positive", "default": 0.5},
            "block": {"$ref": "#/$defs/inner", "default": {}},
            "given": {"$ref": "#/$defs/positive", "default": 0.5},
        },
    }
    filled = {"given": 2.0}
    config_module._fill_defaults(filled, schema)
    assert filled == {"std": 0.5, "block": {"depth": 3}, "given": 2.0}
