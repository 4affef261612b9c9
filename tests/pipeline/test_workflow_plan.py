"""The workflow's parse-time helpers (rankrepro.pipeline.workflow): layout, experiment info read from source, dataset
manifests, the source slicer behind every job's code hash, resources, and the tier plan — without importing torch."""

from __future__ import annotations

import ast
import copy
import dataclasses
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from rankrepro.core.errors import ConfigError
from rankrepro.data.registry import DATASETS
from rankrepro.pipeline import workflow as wf
from rankrepro.pipeline.config import job_settings, settings_hash, settings_path, validate_config
from rankrepro.pipeline.registry import EXPERIMENTS

ROOT = Path(__file__).resolve().parents[2]
TIERS = ["smoke.yaml", "config.yaml", "paper.yaml"]


def tier_config(name: str) -> dict:
    return yaml.safe_load((ROOT / "config" / name).read_text(encoding="utf-8"))


def write_tree(root: Path, files: dict[str, str]) -> Path:
    """Write a package tree (``{"pkg/a.py": source}``) under ``root``; return ``root``."""
    for relative, source in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source).lstrip("\n"), encoding="utf-8")
    return root


# ---------------------------------------------------------------------------------------------------------- layout
def test_layout_paths():
    config = {"tier": "smoke", "results_root": "out", "figures_root": "figs"}
    assert wf.tier_results(config) == Path("out/smoke")
    assert wf.tier_figures(config) == Path("figs/smoke")
    assert wf.tier_logs(config) == Path("logs/smoke")
    assert wf.results_dir(config, "ch1", "x") == Path("out/smoke/ch1/x")
    assert wf.figure_path(config, "ch1", "x") == Path("figs/smoke/ch1/x.png")
    assert wf.log_stem(config, "ch1", "x") == Path("logs/smoke/ch1/x")
    assert wf.results_dir({"tier": "t"}, "ch2", "y") == Path("results/t/ch2/y")  # the schema's defaults
    assert wf.figure_path({"tier": "t"}, "ch2", "y") == Path("figures/t/ch2/y.png")


def test_layout_paths_as_wildcard_patterns():
    """The rules build their patterns with the same functions, wildcards in place of names."""
    config = {"tier": "smoke", "results_root": "results", "figures_root": "figures"}
    assert str(wf.results_dir(config, "{chapter}", "{experiment}")) == "results/smoke/{chapter}/{experiment}"
    assert str(wf.figure_path(config, "{chapter}", "{experiment}")) == "figures/smoke/{chapter}/{experiment}.png"


def test_the_command_line_and_the_experiments_use_the_layout():
    from rankrepro import cli
    from rankrepro.experiments import base

    assert cli.results_dir is wf.results_dir and cli.figure_path is wf.figure_path
    assert (base.METRICS_FILE, base.SUMMARY_FILE) == (wf.METRICS_FILE, wf.SUMMARY_FILE)
    assert not hasattr(base, "results_dir") and not hasattr(base, "figure_path")


# ----------------------------------------------------------------------------------------------------- experiments
def test_module_path(tmp_path):
    write_tree(tmp_path, {"pkg/__init__.py": "", "pkg/a.py": "", "pkg/sub/__init__.py": "", "pkg/sub/b.py": ""})
    assert wf.module_path("pkg", tmp_path) == tmp_path / "pkg" / "__init__.py"
    assert wf.module_path("pkg.a", tmp_path) == tmp_path / "pkg" / "a.py"
    assert wf.module_path("pkg.sub", tmp_path) == tmp_path / "pkg" / "sub" / "__init__.py"
    assert wf.module_path("pkg.sub.b", tmp_path) == tmp_path / "pkg" / "sub" / "b.py"
    for missing in ("pkg.missing", "numpy", "pkg.a.b", "", "pkg..a", "pkg.1a"):
        assert wf.module_path(missing, tmp_path) is None, missing


def test_module_constants(tmp_path):
    path = (
        write_tree(
            tmp_path,
            {
                "m.py": """
        '''doc'''
        A = 1
        B = ("x", "y")
        C = f"{A}"
        D = compute()
        E: int = 5
        F, G = 1, 2
        def H(): pass
    """
            },
        )
        / "m.py"
    )
    assert wf.module_constants(path) == {"A": 1, "B": ("x", "y"), "C": wf.NOT_LITERAL, "D": wf.NOT_LITERAL}


EXPERIMENT_SOURCE = """
    CHAPTER = "ch2"
    SECTION = "2.2"
    TITLE = "A title"
    {extra}
    def run(settings, out, ctx): ...
"""


def experiment_tree(tmp_path: Path, extra: str = "") -> Path:
    return write_tree(tmp_path, {"exps/__init__.py": "", "exps/e.py": EXPERIMENT_SOURCE.format(extra=extra)})


def test_experiment_info(tmp_path):
    root = experiment_tree(tmp_path, 'DATASETS = ("mnist", "fashion-mnist")\n    FIGURE_EXTRAS = (".md", ".csv")')
    info = wf.experiment_info("e", "exps.e", root=root)
    assert info == wf.ExperimentInfo(
        "e", "exps.e", "ch2", "2.2", "A title", ("mnist", "fashion-mnist"), (".md", ".csv")
    )


def test_experiment_info_defaults_and_a_single_dataset_name(tmp_path):
    assert wf.experiment_info("e", "exps.e", root=experiment_tree(tmp_path / "a")).datasets == ()
    assert wf.experiment_info("e", "exps.e", root=experiment_tree(tmp_path / "b", 'DATASETS = "mnist"')).datasets == (
        "mnist",
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("DATASETS = tuple(NAMES)", "DATASETS must be a literal tuple"),
        ("DATASETS = (1, 2)", "DATASETS must be a literal tuple"),
        (
            'DATASETS = ("mnist", "imagenet")',
            r"needs dataset\(s\) \['imagenet'\] that rankrepro.data.registry.DATASETS",
        ),
        ('FIGURE_EXTRAS = (".csv",)', "FIGURE_EXTRAS must be the literal tuple"),
        ("FIGURE_EXTRAS = EXTRAS", "FIGURE_EXTRAS must be the literal tuple"),
        ('TITLE = f"{SECTION}"', "TITLE must be literal strings"),
        ('CHAPTER = "ch9"', "CHAPTER 'ch9' is none of ch1, ch2"),
    ],
)
def test_experiment_info_refuses_what_the_workflow_cannot_use(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message):
        wf.experiment_info("e", "exps.e", root=experiment_tree(tmp_path, extra))


def test_experiment_info_of_a_missing_module(tmp_path):
    with pytest.raises(
        ConfigError, match="experiment 'gone' has a section in the tier config but its module exps.gone does not exist"
    ):
        wf.experiment_info("gone", "exps.gone", root=experiment_tree(tmp_path))


def test_every_registered_experiment_is_readable_from_its_source():
    infos = [wf.experiment_info(name, f"{wf.EXPERIMENTS_PACKAGE}.{module}") for name, module in EXPERIMENTS.items()]
    assert [info.name for info in infos] == list(EXPERIMENTS)
    assert {info.chapter for info in infos} == set(wf.CHAPTERS)
    assert [info.name for info in infos if info.figure_extras] == ["is_same_class_gnn"]
    assert {info.name for info in infos if "mnist" in info.datasets} >= {"tensor_rank_mnist", "hessian_rank_vs_width"}


def test_tier_experiments_follow_the_registry_order(tmp_path):
    root = write_tree(
        tmp_path,
        {
            "rankrepro/experiments/__init__.py": "",
            "rankrepro/experiments/b.py": EXPERIMENT_SOURCE.format(extra=""),
            "rankrepro/experiments/a.py": EXPERIMENT_SOURCE.format(extra=""),
        },
    )
    found = wf.tier_experiments({"experiments": {"a": {}, "b": {}}}, registry={"b": "b", "a": "a", "c": "c"}, root=root)
    assert list(found) == ["b", "a"] and found["a"].module == "rankrepro.experiments.a"


def test_one_of():
    assert re.fullmatch(wf.one_of(["a_b", "fashion-mnist"]), "fashion-mnist")
    assert not re.fullmatch(wf.one_of(["a_b"]), "a_bc")
    assert not re.fullmatch(wf.one_of([]), "")
    assert not re.search(wf.one_of([]), "anything")


def test_chapter_pattern_pairs_each_chapter_with_its_own_experiments():
    infos = {
        name: wf.ExperimentInfo(name, f"m.{name}", chapter, "1", "t")
        for name, chapter in [("rank", "ch1"), ("rank_sensing", "ch2"), ("other", "ch1")]
    }
    names = wf.one_of(infos)
    results = re.compile(f"results/t/(?P<chapter>{wf.chapter_pattern(infos)})/(?P<experiment>{names})/metrics\\.csv")
    figures = re.compile(f"figures/t/(?P<chapter>{wf.chapter_pattern(infos)})/(?P<experiment>{names})\\.png")
    assert results.fullmatch("results/t/ch1/rank/metrics.csv")["experiment"] == "rank"
    assert results.fullmatch("results/t/ch2/rank_sensing/metrics.csv")["chapter"] == "ch2"
    assert figures.fullmatch("figures/t/ch1/other.png")
    for wrong in ("results/t/ch2/rank/metrics.csv", "results/t/ch1/rank_sensing/metrics.csv"):
        assert not results.fullmatch(wrong), wrong
    assert not figures.fullmatch("figures/t/ch2/other.png")
    assert wf.chapter_pattern({}) == "(?!)"


# -------------------------------------------------------------------------------------------------------- datasets
def test_dataset_manifests():
    info = wf.ExperimentInfo("e", "m", "ch2", "2.2", "t", ("mnist", "fashion-mnist"))
    assert wf.dataset_manifests(info, {}, "cache/") == [
        "cache/mnist/MANIFEST.json",
        "cache/fashion-mnist/MANIFEST.json",
    ]
    assert wf.dataset_manifests(info, {"datasets": ["fashion-mnist"]}, "/abs/cache") == [
        "/abs/cache/fashion-mnist/MANIFEST.json"
    ]
    assert wf.dataset_manifests(dataclasses.replace(info, datasets=()), {}, "cache") == []
    assert wf.manifest_path("cache", "{dataset}") == "cache/{dataset}/MANIFEST.json"


def test_dataset_hash_follows_the_registry_entry_only():
    spec = DATASETS["mnist"]
    assert wf.dataset_hash(spec) == wf.dataset_hash(dataclasses.replace(spec, title="another title"))
    changed = dataclasses.replace(spec, files=(dataclasses.replace(spec.files[0], md5="0" * 32),) + spec.files[1:])
    assert wf.dataset_hash(changed) != wf.dataset_hash(spec)


def test_check_dataset_folders():
    wf.check_dataset_folders()  # the shipped registry
    renamed = {"mnist": dataclasses.replace(DATASETS["mnist"], folder="MNIST")}
    with pytest.raises(ConfigError, match="dataset 'mnist' has cache folder 'MNIST'"):
        wf.check_dataset_folders(renamed)


def test_mirror_option(monkeypatch, tmp_path):
    monkeypatch.delenv("RANKREPRO_DATA_MIRROR", raising=False)
    assert wf.mirror_option(None) == ""
    spaced = tmp_path / "a mirror"
    assert wf.mirror_option(str(spaced)) == f"--mirror '{spaced}'"
    monkeypatch.setenv("RANKREPRO_DATA_MIRROR", "/from/env")
    assert wf.mirror_option(str(spaced)) == "--mirror /from/env"


# ------------------------------------------------------------------------------------------------- source slicing
PACKAGE = {
    "pkg/__init__.py": '''
        """A package."""
        from pkg.helpers import train_step
        VERSION = "1"
    ''',
    "pkg/helpers.py": """
        import math

        SCALE = 2
        OFFSET = 3


        def train_step(x):
            return x * SCALE


        def caption():
            return "a caption"


        def unused():
            return math.pi + OFFSET
    """,
    "pkg/exp.py": """
        from pkg import helpers
        from pkg.helpers import caption

        LR = 0.1
        TITLE = "t"


        def _fit(x):
            return helpers.train_step(x) * LR


        def _draw():
            return caption() + TITLE  # a comment


        def run():
            return _fit(1)


        def plot():
            return _draw()


        def claims():
            return TITLE
    """,
}


def sliced(root: Path, *roots: tuple[str, str], stop=()) -> dict[str, set[str]]:
    """The slice of ``roots`` as {module: first line of each chosen statement}."""
    tree = wf.SourceTree(root)
    return {
        name: {tree.module(name).text(index).splitlines()[0] for index in indices}
        for name, indices in wf.code_slice(roots, tree, stop).items()
        if indices
    }


def hashes(root: Path, module: str = "pkg.exp") -> dict[str, str]:
    tree = wf.SourceTree(root)
    return {job: wf.slice_hash(wf.code_slice([(module, job)], tree), tree) for job in ("run", "plot", "claims")}


def edit(root: Path, relative: str, old: str, new: str) -> None:
    path = root / relative
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_slice_of_run_holds_exactly_what_run_needs(tmp_path):
    root = write_tree(tmp_path, PACKAGE)
    assert sliced(root, ("pkg.exp", "run")) == {
        "pkg.exp": {"from pkg import helpers", "LR = 0.1", "def _fit(x):", "def run():"},
        "pkg.helpers": {"SCALE = 2", "def train_step(x):"},
    }
    assert sliced(root, ("pkg.exp", "plot")) == {
        "pkg.exp": {"from pkg.helpers import caption", 'TITLE = "t"', "def _draw():", "def plot():"},
        "pkg.helpers": {"def caption():"},
    }


def test_editing_plot_code_changes_the_plot_hash_only(tmp_path):
    root = write_tree(tmp_path, PACKAGE)
    before = hashes(root)
    edit(root, "pkg/helpers.py", 'return "a caption"', 'return "a better caption"')
    after = hashes(root)
    assert after["run"] == before["run"] and after["claims"] == before["claims"]
    assert after["plot"] != before["plot"]


def test_editing_a_helper_of_run_changes_the_run_hash_only(tmp_path):
    root = write_tree(tmp_path, PACKAGE)
    before = hashes(root)
    edit(root, "pkg/helpers.py", "return x * SCALE", "return x * SCALE * 1")
    after = hashes(root)
    assert after["run"] != before["run"] and after["plot"] == before["plot"]


def test_editing_a_constant_changes_the_hashes_of_the_code_using_it(tmp_path):
    root = write_tree(tmp_path, PACKAGE)
    before = hashes(root)
    edit(root, "pkg/helpers.py", "SCALE = 2", "SCALE = 4")
    assert hashes(root)["run"] != before["run"] and hashes(root)["plot"] == before["plot"]
    before = hashes(root)
    edit(root, "pkg/exp.py", "LR = 0.1", "LR = 0.2")
    assert hashes(root)["run"] != before["run"] and hashes(root)["plot"] == before["plot"]
    before = hashes(root)
    edit(root, "pkg/exp.py", 'TITLE = "t"', 'TITLE = "u"')
    after = hashes(root)
    assert after["run"] == before["run"] and after["plot"] != before["plot"] and after["claims"] != before["claims"]


def test_comments_blank_lines_and_unused_code_change_no_hash(tmp_path):
    root = write_tree(tmp_path, PACKAGE)
    before = hashes(root)
    edit(root, "pkg/exp.py", "\n\ndef run():", "\n# a comment between statements\n\n\ndef run():")
    edit(root, "pkg/helpers.py", "return math.pi + OFFSET", "return math.e + OFFSET")
    edit(root, "pkg/helpers.py", "OFFSET = 3", "OFFSET = 4")
    with open(root / "pkg" / "helpers.py", "a", encoding="utf-8") as handle:
        handle.write("\n\ndef another_unused():\n    return 1\n")
    assert hashes(root) == before


def test_a_module_used_as_a_value_is_taken_whole(tmp_path):
    root = write_tree(tmp_path, PACKAGE)
    edit(root, "pkg/exp.py", "return _fit(1)", "return _fit(1), fingerprint(helpers)")
    chosen = sliced(root, ("pkg.exp", "run"))
    assert "def unused():" in chosen["pkg.helpers"] and "import math" in chosen["pkg.helpers"]


def test_an_attribute_chain_through_packages_is_followed_to_the_name(tmp_path):
    root = write_tree(tmp_path, PACKAGE)
    edit(root, "pkg/exp.py", "from pkg import helpers\n", "import pkg.helpers\n")
    edit(root, "pkg/exp.py", "return helpers.train_step(x) * LR", "return pkg.helpers.train_step(x) * LR")
    chosen = sliced(root, ("pkg.exp", "run"))
    assert chosen["pkg.helpers"] == {"SCALE = 2", "def train_step(x):"}
    assert chosen["pkg.exp"] >= {"import pkg.helpers", "def _fit(x):"}


def test_relative_imports_and_reexports_are_followed(tmp_path):
    root = write_tree(tmp_path, PACKAGE)
    edit(root, "pkg/exp.py", "from pkg import helpers\n", "from . import helpers\nfrom pkg import train_step\n")
    edit(root, "pkg/exp.py", "return _fit(1)", "return _fit(1) + train_step(2)")
    chosen = sliced(root, ("pkg.exp", "run"))
    assert chosen["pkg"] == {"from pkg.helpers import train_step"}  # the package's re-export ...
    assert chosen["pkg.helpers"] == {"SCALE = 2", "def train_step(x):"}  # ... followed to the definition
    assert "from . import helpers" in chosen["pkg.exp"]


def test_imports_inside_functions_are_followed(tmp_path):
    root = write_tree(tmp_path, PACKAGE)
    edit(root, "pkg/exp.py", "return _draw()", "from pkg.helpers import unused\n    return _draw(), unused()")
    assert "def unused():" in sliced(root, ("pkg.exp", "plot"))["pkg.helpers"]
    edit(root, "pkg/exp.py", "return TITLE", "import pkg.helpers as h\n    return TITLE, h")
    chosen = sliced(root, ("pkg.exp", "claims"))
    assert "def unused():" in chosen["pkg.helpers"] and "def caption():" in chosen["pkg.helpers"]


def test_import_time_effects_of_loaded_modules_are_part_of_every_slice(tmp_path):
    files = dict(
        PACKAGE,
        **{
            "pkg/style.py": """
        import matplotlib
        STYLE = {}
        matplotlib.use("Agg")
        STYLE["font"] = "serif"

        if __name__ == "__main__":
            print(STYLE)
    """
        },
    )
    root = write_tree(tmp_path, files)
    edit(root, "pkg/helpers.py", "import math\n", "import math\nimport pkg.style\n")
    chosen = sliced(root, ("pkg.exp", "claims"))
    assert chosen["pkg.style"] == {
        'matplotlib.use("Agg")',
        'STYLE["font"] = "serif"',
        "import matplotlib",
        "STYLE = {}",
    }


def test_star_imports_and_unknown_names_take_the_module_whole(tmp_path):
    root = write_tree(tmp_path, PACKAGE)
    edit(root, "pkg/exp.py", "from pkg import helpers\n", "from pkg import helpers\nfrom pkg.helpers import *\n")
    assert "def unused():" in sliced(root, ("pkg.exp", "claims"))["pkg.helpers"]
    root = write_tree(tmp_path / "b", PACKAGE)
    assert "def unused():" in sliced(root, ("pkg.helpers", "made_at_run_time"))["pkg.helpers"]


def test_imports_of_missing_and_outside_modules(tmp_path):
    root = write_tree(tmp_path, PACKAGE)
    edit(
        root,
        "pkg/exp.py",
        "from pkg import helpers\n",
        "from pkg import helpers\nfrom pkg import nothing\nimport numpy as np\nfrom torch import nn\n",
    )
    edit(root, "pkg/exp.py", "return _fit(1)", "return _fit(1), nothing, np.pi, nn")
    chosen = sliced(root, ("pkg.exp", "run"))
    assert {"from pkg import nothing", "import numpy as np", "from torch import nn"} <= chosen["pkg.exp"]
    assert 'VERSION = "1"' in chosen["pkg"]  # `nothing` is no name of pkg: all of pkg
    assert set(chosen) == {"pkg", "pkg.exp", "pkg.helpers"}


def test_stop_modules_are_never_entered(tmp_path):
    root = write_tree(tmp_path, PACKAGE)
    assert "pkg.helpers" not in sliced(root, ("pkg.exp", "run"), stop={"pkg.helpers"})


def test_import_cycles_end(tmp_path):
    root = write_tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg import b\ndef f():\n    return b.g()\n",
            "pkg/b.py": "from pkg import a\ndef g():\n    return a.f()\n",
        },
    )
    assert sliced(root, ("pkg.a", "f")) == {
        "pkg.a": {"from pkg import b", "def f():"},
        "pkg.b": {"from pkg import a", "def g():"},
    }


def test_decorators_and_class_bodies_are_part_of_a_definition(tmp_path):
    root = write_tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/m.py": """
        import functools

        LIMIT = 3


        @functools.lru_cache(maxsize=LIMIT)
        def cached(x):
            return Box(x).value


        class Box:
            def __init__(self, value):
                self.value = value
    """,
        },
    )
    tree = wf.SourceTree(root)
    chosen = wf.code_slice([("pkg.m", "cached")], tree)
    texts = {tree.module("pkg.m").text(index) for index in chosen["pkg.m"]}
    assert "@functools.lru_cache(maxsize=LIMIT)\ndef cached(x):\n    return Box(x).value" in texts
    assert {"import functools", "LIMIT = 3"} <= texts and any(text.startswith("class Box:") for text in texts)


def test_slice_hash_covers_module_names_and_text(tmp_path):
    root = write_tree(tmp_path, PACKAGE)
    tree = wf.SourceTree(root)
    chosen = wf.code_slice([("pkg.exp", "run")], tree)
    assert re.fullmatch("[0-9a-f]{16}", wf.slice_hash(chosen, tree))
    assert wf.slice_hash(chosen, tree) == wf.slice_hash({k: set(v) for k, v in chosen.items()}, tree)
    assert wf.slice_hash({"pkg.exp": chosen["pkg.exp"]}, tree) != wf.slice_hash(chosen, tree)


# ----------------------------------------------------------------------------------------- code hashes of the library
@pytest.fixture()
def library(tmp_path) -> Path:
    """A copy of src/rankrepro to edit."""
    shutil.copytree(wf.SOURCE_ROOT / "rankrepro", tmp_path / "rankrepro", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def library_hashes(root: Path, names: list[str]) -> dict[str, dict[str, str]]:
    tree = wf.SourceTree(root)
    return {
        name: {
            job: wf.code_hash(tree, job, f"{wf.EXPERIMENTS_PACKAGE}.{EXPERIMENTS[name]}") for job in wf.EXPERIMENT_JOBS
        }
        for name in names
    }


def test_the_code_of_a_missing_module_cannot_be_hashed():
    with pytest.raises(ConfigError, match="no module rankrepro.experiments.not_there"):
        wf.code_hash(wf.SourceTree(), "run", "rankrepro.experiments.not_there")


def test_a_figure_fix_reruns_only_the_plot_job(library):
    names = ["dmf_perturbed_problem", "dmf_larger_matrices"]
    before = library_hashes(library, names)
    edit(
        library,
        "rankrepro/experiments/ch1/dmf_perturbed_problem.py",
        'table["label"] = [f"ε = {e:g}" for e in table["epsilon"]]',
        'table["label"] = [f"epsilon = {e:g}" for e in table["epsilon"]]',
    )
    after = library_hashes(library, names)
    assert after["dmf_larger_matrices"] == before["dmf_larger_matrices"]
    assert after["dmf_perturbed_problem"]["run"] == before["dmf_perturbed_problem"]["run"]
    assert after["dmf_perturbed_problem"]["claims"] == before["dmf_perturbed_problem"]["claims"]
    assert after["dmf_perturbed_problem"]["plot"] != before["dmf_perturbed_problem"]["plot"]


def test_docstrings_and_inline_comments_of_the_library_rerun_no_job(library):
    """A job's hash covers its code, not its prose: a docstring rewritten (the plot function's, a helper's) or an
    inline comment added changes no hash of any job (each such edit used to rerun jobs)."""
    names = ["dmf_perturbed_problem", "dmf_larger_matrices", "tensor_completion_vs_linear"]
    before = library_hashes(library, names)
    edit(
        library,
        "rankrepro/experiments/ch1/dmf_perturbed_problem.py",
        '"""|w11| vs loss, one curve per ε (colour = iteration)."""',
        '"""|w11| against the loss, one curve per ε (colour = iteration)."""',
    )
    edit(library, "rankrepro/experiments/ch1/common.py", "def train_runs(", "def train_runs(  # a comment\n")
    edit(library, "rankrepro/cli.py", "def _command_list() -> int:", "def _command_list() -> int:  # a comment\n")
    assert library_hashes(library, names) == before


def test_a_training_helper_reruns_the_run_jobs_that_use_it(library):
    names = ["dmf_perturbed_problem", "dmf_larger_matrices", "tensor_completion_vs_linear"]
    before = library_hashes(library, names)
    edit(library, "rankrepro/experiments/ch1/common.py", "    seed_offset: int = 0,\n", "    seed_offset: int = 1,\n")
    after = library_hashes(library, names)
    for name in names[:2]:
        assert after[name]["run"] != before[name]["run"] and after[name]["plot"] == before[name]["plot"], name
    assert after["tensor_completion_vs_linear"] == before["tensor_completion_vs_linear"]


def test_the_registry_and_the_command_lines_other_commands_rerun_nothing(library):
    before = library_hashes(library, ["dmf_perturbed_problem"])
    scorecard = wf.code_hash(wf.SourceTree(library), "scorecard")
    edit(
        library,
        "rankrepro/pipeline/registry.py",
        '    "dmf_2x2_norms_vs_rank": "ch1.dmf_2x2_norms_vs_rank",\n',
        '    "dmf_2x2_norms_vs_rank": "ch1.dmf_2x2_norms_vs_rank",\n    "new_experiment": "ch1.new_experiment",\n',
    )
    edit(library, "rankrepro/cli.py", "    for name in EXPERIMENTS:\n", "    print()\n    for name in EXPERIMENTS:\n")
    assert library_hashes(library, ["dmf_perturbed_problem"]) == before
    assert wf.code_hash(wf.SourceTree(library), "scorecard") == scorecard


def test_the_command_lines_job_code_is_part_of_its_jobs(library):
    before = library_hashes(library, ["dmf_perturbed_problem"])["dmf_perturbed_problem"]
    edit(
        library,
        "rankrepro/cli.py",
        "def _command_claims(args: argparse.Namespace) -> int:\n",
        "def _command_claims(args: argparse.Namespace) -> int:\n    print()\n",
    )
    after = library_hashes(library, ["dmf_perturbed_problem"])["dmf_perturbed_problem"]
    assert after["claims"] != before["claims"] and after["run"] == before["run"] and after["plot"] == before["plot"]


def test_run_code_never_reaches_the_presentation_code_it_does_not_use():
    tree = wf.SourceTree()
    for name, module in EXPERIMENTS.items():
        modname = f"{wf.EXPERIMENTS_PACKAGE}.{module}"
        chosen = wf.code_slice([(modname, "run"), (wf.CLI_MODULE, "_command_run")], tree, wf.REGISTRY_MODULES)
        assert "rankrepro.experiments" not in chosen, name
        assert not {binding.statement for binding in tree.module(modname).bindings["plot"]} & chosen[modname], name
        assert not chosen.get("rankrepro.pipeline.claims") and not chosen.get("rankrepro.pipeline.report"), name


# ------------------------------------------------------------------------------------------------------ scheduling
def test_run_resources_come_from_the_section_with_the_schemas_defaults():
    config = validate_config(tier_config("smoke.yaml"))
    assert wf.run_resources(config["experiments"]["pathfinder_cnn"]) == {"mem_mb": 3000, "runtime": 15, "priority": 20}
    raw = tier_config("smoke.yaml")
    del raw["experiments"]["pathfinder_cnn"]["resources"]
    assert wf.run_resources(validate_config(raw)["experiments"]["pathfinder_cnn"]) == {
        "mem_mb": 4000,
        "runtime": 240,
        "priority": 0,
    }
    raw["experiments"]["pathfinder_cnn"]["resources"] = {"runtime": 5}
    assert wf.run_resources(validate_config(raw)["experiments"]["pathfinder_cnn"]) == {
        "mem_mb": 4000,
        "runtime": 5,
        "priority": 0,
    }


def test_gpu_capable():
    assert wf.gpu_capable(wf.CHAPTERS["ch3"], "auto") and wf.gpu_capable(wf.CHAPTERS["ch5"], "cuda")
    assert not wf.gpu_capable(wf.CHAPTERS["ch3"], "cpu") and not wf.gpu_capable(wf.CHAPTERS["ch1"], "auto")


def run_kept(tmp_path, command: str, attempts: int) -> tuple[list[int], list[str]]:
    """Run ``command`` through :func:`wf.keep_failed_log` ``attempts`` times, each after deleting the log as Snakemake
    does before every attempt: the exit codes, and the files left beside the log."""
    log = tmp_path / "logs" / "x.run.log"
    log.parent.mkdir(exist_ok=True)
    codes = []
    for attempt in range(attempts):
        log.unlink(missing_ok=True)
        script = wf.keep_failed_log(shlex.quote(str(log)), command.format(log=shlex.quote(str(log)), n=attempt))
        codes.append(subprocess.run(["bash", "-euo", "pipefail", "-c", script]).returncode)
    return codes, sorted(path.name for path in log.parent.iterdir())


def test_the_log_of_a_failed_attempt_is_kept(tmp_path):
    codes, files = run_kept(tmp_path, "echo attempt {n} >> {log} && exit 3", 2)
    assert codes == [3, 3] and files == ["x.run.log", "x.run.log.1", "x.run.log.2"]
    assert (tmp_path / "logs" / "x.run.log.1").read_text() == "attempt 0\n"
    assert (tmp_path / "logs" / "x.run.log.2").read_text() == "attempt 1\n"


def test_a_successful_attempt_leaves_only_its_log(tmp_path):
    codes, files = run_kept(tmp_path, "echo attempt {n} >> {log}", 1)
    assert codes == [0] and files == ["x.run.log"]
    assert (tmp_path / "logs" / "x.run.log").read_text() == "attempt 0\n"


def test_cli_command_in_a_conda_environment(tmp_path):
    assert (
        wf.cli_command("/x/bin/python", tmp_path / "my src")
        == f"env PYTHONPATH='{tmp_path}/my src' python -m rankrepro.cli"
    )


def test_cli_command(tmp_path):
    python = tmp_path / "env dir" / "bin" / "python"
    python.parent.mkdir(parents=True)
    assert wf.cli_command(str(python)) == f"'{python}' -m rankrepro.cli"
    (python.parent / "rankrepro").write_text("#!/bin/sh\n", encoding="utf-8")
    assert wf.cli_command(str(python)) == f"'{python.parent / 'rankrepro'}'"


# ------------------------------------------------------------------------------------------------------------ plan
@pytest.mark.parametrize("tier", TIERS)
def test_plan_of_a_shipped_tier(tier):
    raw = tier_config(tier)
    plan = wf.plan_tier(raw)
    config = validate_config(raw)
    assert plan.config == config and plan.tier == config["tier"]
    assert list(plan.experiments) == [name for name in EXPERIMENTS if name in raw["experiments"]]
    results = f"results/{plan.tier}"
    for name, info in plan.experiments.items():
        settings = job_settings(config, name, reads_data=bool(info.datasets))
        assert plan.settings[name] == settings
        assert plan.settings_file[name] == settings_path(results, name, settings)
        assert plan.resources[name] == raw["experiments"][name]["resources"]
        assert plan.gpu[name] is (wf.CHAPTERS[info.chapter].gpu and config["device"] != "cpu")
        assert plan.results_dir(name) == f"{results}/{info.chapter}/{name}"
        assert set(plan.code_hash[name]) == set(wf.EXPERIMENT_JOBS)
        assert all(re.fullmatch("[0-9a-f]{16}", value) for value in plan.code_hash[name].values())
        assert len(set(plan.code_hash[name].values())) == 3
    assert plan.all_claims() == [f"{plan.results_dir(name)}/claims.json" for name in plan.experiments]
    figures = plan.all_figures()
    assert len(figures) == 2 * len(plan.experiments) + 2 * ("is_same_class_gnn" in plan.experiments)
    assert f"figures/{plan.tier}/ch1/dmf_perturbed_problem.pdf" in figures


def test_plan_states_how_each_experiment_departs_from_the_paper_tier():
    paper = tier_config("paper.yaml")
    smoke = wf.plan_tier(tier_config("smoke.yaml"), paper=paper)
    for name, text in smoke.substitutions.items():
        assert text.startswith("settings departing from the paper tier: "), (name, text)
    assert smoke.substitutions["dmf_perturbed_problem"].count("(paper: ") >= 1
    assert set(wf.plan_tier(paper, paper=paper).substitutions.values()) == {"none"}
    unknown = wf.plan_tier(tier_config("smoke.yaml")).substitutions
    assert all("not compared" in text for text in unknown.values())


def test_the_run_hash_covers_the_settings_class():
    """The CLI builds a run's settings with the module's ``Settings``: a change of that class reruns the run job."""
    tree = wf.SourceTree()
    module = EXPERIMENTS["dmf_perturbed_problem"]
    name = f"{wf.EXPERIMENTS_PACKAGE}.{module}"
    chosen = wf.code_slice([(name, "Settings")], tree, wf.REGISTRY_MODULES)
    roots = [(wf.CLI_MODULE, wf.JOB_COMMANDS["run"]), (name, "run"), (name, "Settings")]
    run_slice = wf.code_slice(roots, tree, wf.REGISTRY_MODULES)
    assert chosen and all(set(lines) <= set(run_slice.get(mod, ())) for mod, lines in chosen.items())
    assert wf.code_hash(tree, "run", name) == wf.slice_hash(run_slice, tree)


@pytest.mark.parametrize("tier", TIERS)
def test_resources_never_reach_the_settings_files(tier):
    """A run job's resources are the workflow's business: its settings file (hence its results, and whether it
    reruns) is the same whatever they are."""
    raw = tier_config(tier)
    plan = wf.plan_tier(raw)
    changed = copy.deepcopy(raw)
    for section in changed["experiments"].values():
        section["resources"] = {"mem_mb": 1, "runtime": 1, "priority": 99}
    other = wf.plan_tier(changed)
    assert other.settings_file == plan.settings_file and other.settings == plan.settings
    assert all("resources" not in settings["experiments"][name] for name, settings in plan.settings.items())
    assert {value["priority"] for value in other.resources.values()} == {99}


def test_plan_names_a_bad_config():
    raw = tier_config("smoke.yaml")
    raw["experiments"]["dmf_perturbed_problem"]["resources"] = {"mem_mb": 0}
    with pytest.raises(ConfigError, match="experiments.dmf_perturbed_problem.resources.mem_mb"):
        wf.plan_tier(raw)
    raw["experiments"]["dmf_perturbed_problem"]["resources"] = {"memory": 100}
    with pytest.raises(ConfigError, match="memory"):
        wf.plan_tier(raw)


def test_plan_with_a_registry_module_missing(tmp_path):
    raw = tier_config("smoke.yaml")
    with pytest.raises(ConfigError, match="module rankrepro.experiments.not_there does not exist"):
        wf.plan_tier(raw, registry=dict(EXPERIMENTS, dmf_perturbed_problem="not_there"))


def test_the_settings_hashes_are_those_of_the_experiments_sections():
    plan = wf.plan_tier(tier_config("config.yaml"))
    for name, path in plan.settings_file.items():
        assert path.endswith(f"/{name}.{settings_hash(plan.settings[name])}.yaml")


def test_planning_a_tier_imports_no_torch_and_writes_nothing(tmp_path):
    """What every parse of the workflow does (every cluster job re-parses it), in a fresh interpreter."""
    script = textwrap.dedent(f"""
        import sys, yaml
        from rankrepro.pipeline.workflow import plan_tier
        for tier in {TIERS!r}:
            plan = plan_tier(yaml.safe_load(open({str(ROOT / "config")!r} + "/" + tier)))
            assert plan.code_hash and plan.settings_file
        heavy = sorted(name for name in ("torch", "matplotlib", "seaborn", "snakemake") if name in sys.modules)
        assert not heavy, heavy
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_name_uses_follow_python_scopes():
    """A function's own names (parameters, assignments, loop targets, imports) and a comprehension's targets are not
    uses of the module's names; ``global`` ones are; decorators, defaults and annotations are the enclosing scope's."""
    source = """
@deco
def f(a, b=default, *args, c: Hint = None, **kw) -> Ret:
    run = a + b
    for item in things:
        pass
    global shared
    shared = 1
    import os
    squares = [x * x for x in xs]
    return run, item, args, kw, c, os.path, helper(y).z, module.attr.chain, shared, squares
"""
    uses = sorted(set(wf.name_uses(ast.parse(source).body[0])))
    assert uses == [
        ("Hint", ()),
        ("Ret", ()),
        ("deco", ()),
        ("default", ()),
        ("helper", ()),
        ("module", ("attr", "chain")),
        ("shared", ()),
        ("things", ()),
        ("xs", ()),
        ("y", ()),
    ]
    method = ast.parse("class S:\n    def m(self):\n        run = 1\n        return [run]\n").body[0]
    assert ("run", ()) not in set(wf.name_uses(method))
    assert ("run", ()) in set(wf.name_uses(ast.parse("def g():\n    return run()\n").body[0]))


def test_outputs_that_came_with_the_checkout_are_told_apart_from_outputs_built_here(tmp_path):
    """A scorecard without any settings file came with the checkout (a build writes the settings files first): the
    notice names the tier's outputs and the two commands that rebuild them."""
    config = {"tier": "default", "results_root": str(tmp_path / "results"), "figures_root": str(tmp_path / "figs")}
    results = tmp_path / "results" / "default"
    assert not wf.outputs_came_with_the_checkout(config)  # nothing at all: a first build, nothing to warn about
    results.mkdir(parents=True)
    (results / "scorecard.json").write_text("{}")
    assert wf.outputs_came_with_the_checkout(config)
    notice = wf.checkout_outputs_notice(config, ("ch1", "dmf_2x2_norms_vs_rank"))
    assert "--forceall" in notice and f"{tmp_path}/figs/default/ch1/dmf_2x2_norms_vs_rank.png --forcerun" in notice
    assert notice.endswith("summary.json. After one build here, reruns follow exactly what changed.")
    (results / "settings").mkdir()
    (results / "settings" / "dmf_2x2_norms_vs_rank.0123456789abcdef.yaml").write_text("")
    assert not wf.outputs_came_with_the_checkout(config)
