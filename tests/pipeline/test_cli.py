"""The command line's error paths: a user mistake gives one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rankrepro.pipeline.config import job_settings, load_config, settings_path, settings_text

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO / "config" / "config.yaml"


def rankrepro(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh interpreter (as the Snakemake rules do)."""
    return subprocess.run(
        [sys.executable, "-m", "rankrepro.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("rankrepro: error:")
    for fragment in fragments:
        assert fragment in lines[0]


def test_unknown_experiment():
    result = rankrepro("run", "no_such_experiment", "--config", str(DEFAULT_CONFIG))
    assert_user_error(result, "no_such_experiment", "dmf_2x2_norms_vs_rank")


def test_missing_config_file(tmp_path):
    result = rankrepro("run", "dmf_2x2_norms_vs_rank", "--config", str(tmp_path / "absent.yaml"))
    assert_user_error(result, "absent.yaml")


def test_bad_config_value_names_the_key(tmp_path):
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    config["experiments"]["dmf_perturbed_problem"]["lr"] = -0.1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    result = rankrepro("run", "dmf_perturbed_problem", "--config", str(bad), "--out", str(tmp_path / "out"))
    assert_user_error(result, "experiments.dmf_perturbed_problem.lr")
    assert not (tmp_path / "out").exists()


def test_unknown_config_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEFAULT_CONFIG.read_text() + "\nlearning_rate: 0.1\n")
    assert_user_error(rankrepro("plot", "dmf_2x2_norms_vs_rank", "--config", str(bad)), "learning_rate")


def test_invalid_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tier: [unclosed\n")
    assert_user_error(rankrepro("claims", "dmf_2x2_norms_vs_rank", "--config", str(bad)), "not valid YAML")


@pytest.mark.parametrize("command", ["plot", "claims"])
def test_missing_results(tmp_path, command):
    result = rankrepro(
        command,
        "dmf_2x2_norms_vs_rank",
        "--config",
        str(DEFAULT_CONFIG),
        "--results",
        str(tmp_path / "nothing"),
        "--out",
        str(tmp_path / "x.png"),
    )
    assert_user_error(result, "run the experiment first")


def test_missing_scorecard(tmp_path):
    assert_user_error(rankrepro("check-scorecard", str(tmp_path / "scorecard.json")), "scorecard.json")


def test_usage_error_exits_2_without_traceback():
    assert_user_error(rankrepro("run"), "required", "rankrepro run --help")


def test_list_names_every_configured_experiment():
    result = rankrepro("list")
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines()}
    configured = set(yaml.safe_load(DEFAULT_CONFIG.read_text())["experiments"])
    assert configured <= listed


def test_scorecard_takes_the_tier_name_or_a_config(tmp_path):
    claims = tmp_path / "claims.json"
    claims.write_text(json.dumps({"tier": "unit", "claims": []}))
    out_md, out_json = tmp_path / "card.md", tmp_path / "card.json"
    result = rankrepro("scorecard", "--tier", "unit", "--out-md", str(out_md), "--out-json", str(out_json), str(claims))
    assert result.returncode == 0, result.stderr
    assert json.loads(out_json.read_text())["tier"] == "unit"
    result = rankrepro(
        "scorecard", "--config", str(DEFAULT_CONFIG), "--out-md", str(out_md), "--out-json", str(out_json), str(claims)
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(out_json.read_text())["tier"] == "default"
    result = rankrepro("scorecard", "--out-md", str(out_md), "--out-json", str(out_json), str(claims))
    assert result.returncode == 2 and "--tier" in result.stderr and "Traceback" not in result.stderr


def test_an_edited_settings_file_is_refused(tmp_path):
    """A job's settings file is named by the hash of its content; one edited afterwards stops the job."""
    config = load_config(DEFAULT_CONFIG)
    settings = job_settings(config, "dmf_2x2_norms_vs_rank", reads_data=False)
    path = Path(settings_path(str(tmp_path), "dmf_2x2_norms_vs_rank", settings))
    path.parent.mkdir()
    path.write_text(settings_text(path.name, settings).replace("seed: ", "seed: 1"))
    result = rankrepro("run", "dmf_2x2_norms_vs_rank", "--config", str(path), "--out", str(tmp_path / "out"))
    assert_user_error(result, str(path), "delete it")
    assert not (tmp_path / "out").exists()
