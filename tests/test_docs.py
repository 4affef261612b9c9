"""The documentation is generated where it states results or configuration keys, and stays in step with its sources.

- docs/index.md and docs/chapters/ch*.md: the regions between ``<!-- results:begin NAME -->`` and
  ``<!-- results:end NAME -->`` are what ``scripts/render_results_docs.py`` renders from the committed
  ``results/default/scorecard.json`` (regenerate both together: run the script after the scorecard changes);
- config/README.md is what ``scripts/render_config_docs.py`` renders from the config schema (a schema change without
  regenerating the doc fails here);
- every relative link of README.md, config/README.md and docs/ points to a file of the checkout.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and typing look the module up by name
    spec.loader.exec_module(module)
    return module


results_docs = _load("render_results_docs")
config_docs = _load("render_config_docs")

SCORECARD = ROOT / "results" / "default" / "scorecard.json"
RESULT_DOCS = [ROOT / path for path in results_docs.DEFAULT_FILES]


# ---------------------------------------------------------------------------------------------------------------------
# Results in the docs


@pytest.mark.parametrize("doc", RESULT_DOCS, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_generated_results_regions_match_the_committed_scorecard(doc):
    scorecard = results_docs.load_scorecard(SCORECARD)
    text = doc.read_text(encoding="utf-8")
    assert results_docs.REGION.search(text), f"{doc.name} has no results region"
    assert results_docs.render_text(text, scorecard, "results/default/scorecard.json") == text, (
        f"{doc.relative_to(ROOT)} is out of date with results/default/scorecard.json: "
        "run python scripts/render_results_docs.py"
    )


def test_every_chapter_of_the_scorecard_has_a_results_region():
    scorecard = results_docs.load_scorecard(SCORECARD)
    chapters = {results_docs.chapter_of(claim) for claim in scorecard["claims"]}
    for chapter in chapters:
        text = (ROOT / "docs" / "chapters" / f"{chapter}.md").read_text(encoding="utf-8")
        assert f"<!-- results:begin {chapter} -->" in text


def test_every_claim_of_the_scorecard_is_in_the_chapter_docs():
    scorecard = results_docs.load_scorecard(SCORECARD)
    docs = {path.stem: path.read_text(encoding="utf-8") for path in (ROOT / "docs" / "chapters").glob("ch*.md")}
    for claim in scorecard["claims"]:
        assert f"`{claim['experiment']}`: `{claim['claim_id']}`" in docs[results_docs.chapter_of(claim)]


def _tiny_scorecard(**extra):
    claim = {
        "section": "1.1",
        "experiment": "exp",
        "claim_id": "grows",
        "statement": "|w| grows to <tier> scale",
        "verdict": "failed",
        "measured": {"w": 0.123456789, "runs": [1, 2], "ok": True, "none": None},
        "reference": "≈ 0.12",
        "details": "a note",
    }
    other = {**claim, "section": "2.1", "claim_id": "other", "verdict": "passed", "details": ""}
    return {"tier": "default", "counts": {}, "claims": [claim, other], **extra}


def test_render_replaces_only_the_regions_and_is_idempotent():
    text = (
        "# Chapter 1\n\nprose 1.0\n\n<!-- results:begin ch1 -->\nstale 99 %\n<!-- results:end ch1 -->\n\n"
        "more prose\n<!-- results:begin summary -->\n<!-- results:end summary -->\n"
    )
    out = results_docs.render_text(text, _tiny_scorecard(), "results/default/scorecard.json")
    assert out.startswith("# Chapter 1\n\nprose 1.0\n\n<!-- results:begin ch1 -->\n")
    assert "stale 99 %" not in out and out.count("more prose") == 1
    assert "`exp`: `grows`" in out and "`exp`: `other`" not in out.split("<!-- results:end ch1 -->")[0]
    assert "\\|w\\| grows to &lt;tier> scale<br>*a note*" in out  # table-safe: pipes and tag-like text escaped
    assert "w: 0.123457<br>runs: [1, 2]<br>ok: true<br>none: —" in out
    assert "**Chapter 1: 1 claims — 1 failed.**" in out
    assert "the scorecard records no git commit" in out
    assert "| **all** | 2 | 1 | 1 | 0 | 0 |" in out
    assert results_docs.render_text(out, _tiny_scorecard(), "results/default/scorecard.json") == out


def test_render_states_the_scorecard_commit_when_it_records_one():
    out = results_docs.render_text(
        "<!-- results:begin ch2 -->\n<!-- results:end ch2 -->\n", _tiny_scorecard(git_commit="abc1234"), "s.json"
    )
    assert "tier `default`, git commit `abc1234`" in out


@pytest.mark.parametrize(
    "text",
    [
        "<!-- results:begin ch1 -->\nno end\n",
        "<!-- results:begin ch1 -->\n<!-- results:end ch2 -->\n",
        "<!-- results:begin bogus -->\n<!-- results:end bogus -->\n",
    ],
)
def test_bad_regions_are_refused(text):
    with pytest.raises(results_docs.RenderError):
        results_docs.render_text(text, _tiny_scorecard(), "s.json")


def test_check_mode_reports_a_stale_file(tmp_path, capsys):
    scorecard = tmp_path / "scorecard.json"
    scorecard.write_text(json.dumps(_tiny_scorecard()), encoding="utf-8")
    doc = tmp_path / "ch1.md"
    doc.write_text("<!-- results:begin ch1 -->\n<!-- results:end ch1 -->\n", encoding="utf-8")
    assert results_docs.main(["--check", "--scorecard", str(scorecard), str(doc)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert results_docs.main(["--scorecard", str(scorecard), str(doc)]) == 0
    assert results_docs.main(["--check", "--scorecard", str(scorecard), str(doc)]) == 0


@pytest.mark.parametrize("script", ["render_results_docs.py", "render_config_docs.py"])
def test_the_doc_scripts_import_neither_snakemake_nor_rankrepro(script):
    tree = ast.parse((SCRIPTS / script).read_text(encoding="utf-8"))
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not imported & {"snakemake", "rankrepro", "torch"}


# ---------------------------------------------------------------------------------------------------------------------
# Configuration keys


def test_config_readme_is_up_to_date_with_the_schema():
    expected = config_docs.render(ROOT / config_docs.SCHEMA)
    assert (ROOT / config_docs.OUTPUT).read_text(encoding="utf-8") == expected, (
        "config/README.md is out of date with the config schema: run python scripts/render_config_docs.py"
    )


def test_every_config_key_has_a_description():
    assert config_docs.undocumented(ROOT / config_docs.SCHEMA) == []


def test_config_readme_lists_every_key_of_every_tier_file():
    import yaml

    text = (ROOT / config_docs.OUTPUT).read_text(encoding="utf-8")

    def paths(value, prefix):
        if isinstance(value, dict):
            for key, item in value.items():
                yield f"{prefix}{key}"
                yield from paths(item, f"{prefix}{key}.")
        elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            for item in value:
                yield from paths(item, f"{prefix[:-1]}[].")

    maps = (
        "experiments.is_same_class_gnn.lr.",
        "experiments.is_same_class_gnn.per_model.",
        "experiments.edge_sparsification.optimizer.",
        "experiments.edge_sparsification.per_dataset.",
        "experiments.edge_sparsification.per_model.",
        "experiments.hessian_rank_vs_depth.activation_max_params.",
    )
    for tier in ("smoke", "config", "paper"):
        config = yaml.safe_load((ROOT / "config" / f"{tier}.yaml").read_text(encoding="utf-8"))
        for path in paths(config, ""):
            for prefix in maps:  # map entries are documented once, as <name>
                if path.startswith(prefix):
                    head, _, rest = path[len(prefix) :].partition(".")
                    path = f"{prefix}<name>" + (f".{rest}" if rest else "")
            if path == "experiments" or (path.startswith("experiments.") and path.count(".") == 1):
                assert f"## `{path.split('.')[-1]}`" in text or path == "experiments"
            elif not path.endswith(".<name>"):
                assert f"`{path}`" in text, f"{tier}.yaml key {path} is not in config/README.md"


def test_schema_features_are_resolved():
    schema = {
        "$defs": {
            "base": {"description": "shared", "properties": {"a": {"type": "integer", "minimum": 1}}},
            "pos": {"type": "number", "exclusiveMinimum": 0},
        },
        "type": "object",
        "required": ["x"],
        "properties": {
            "x": {"allOf": [{"$ref": "#/$defs/base"}], "properties": {"a": {"default": 2}}, "description": "section"},
            "y": {"$ref": "#/$defs/pos", "description": "a rate", "default": 1.0e-6},
            "z": {"type": "array", "items": {"type": "object", "properties": {"k": {"type": ["string", "null"]}}}},
            "m": {
                "type": "object",
                "additionalProperties": {"type": "object", "properties": {"lr": {"$ref": "#/$defs/pos"}}},
            },
        },
    }
    root = config_docs.resolve(schema, schema)
    assert root["properties"]["x"]["description"] == "section"  # an allOf part lends keys, not its description
    assert root["properties"]["x"]["properties"]["a"] == {"type": "integer", "minimum": 1, "default": 2}
    keyed = {key.strip("`"): (kind, default, limits) for key, kind, default, limits, _ in config_docs.rows(root, "")}
    assert keyed["x"][1] == "**required**" and keyed["x.a"] == ("int", "`2`", "≥ 1")
    assert keyed["y"] == ("number", "`1.0e-06`", "> 0")
    assert keyed["z[].k"][0] == "str \\| null"
    assert keyed["m"][0] == "map[str → object]" and keyed["m.<name>.lr"] == ("number", "optional", "> 0")


# ---------------------------------------------------------------------------------------------------------------------
# Links


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _documents():
    return [ROOT / "README.md", ROOT / "config" / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


@pytest.mark.parametrize("doc", _documents(), ids=lambda path: path.relative_to(ROOT).as_posix())
def test_relative_links_point_to_files_of_the_checkout(doc):
    text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.DOTALL)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (doc.parent / target.split("#")[0]).resolve()
        if not path.exists():
            broken.append(target)
    assert not broken, f"{doc.relative_to(ROOT)}: broken links {broken}"
