"""Every registered experiment module satisfies the experiment contract (rankrepro.experiments.base.Experiment or,
where it declares DATASETS, DataExperiment): literal-string constants naming it as the registry and its package do,
and run / plot / claims taking the parameters the CLI passes."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import sys
from types import ModuleType

import pytest

from rankrepro.experiments.base import (
    CONTRACT_CONSTANTS,
    DataExperiment,
    Experiment,
    contract_of,
    contract_violations,
    parameter_names,
)
from rankrepro.pipeline.registry import EXPERIMENTS, get_experiment


def literal_constants(module: ModuleType) -> dict[str, object]:
    """The module-level ``NAME = <literal>`` assignments of a module's source (non-literals as ``None``)."""
    found: dict[str, object] = {}
    for node in ast.parse(inspect.getsource(module)).body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    try:
                        found[target.id] = ast.literal_eval(node.value)
                    except ValueError:
                        found[target.id] = None
    return found


def registry_violations(name: str, module: ModuleType) -> list[str]:
    """Contract violations plus the registry's: constants written as string literals, NAME the registered name,
    CHAPTER the package the module is registered under."""
    problems = contract_violations(module)
    literals = literal_constants(module)
    problems += [
        f"{constant} is not a string literal"
        for constant in CONTRACT_CONSTANTS
        if not isinstance(literals.get(constant), str)
    ]
    if getattr(module, "NAME", None) != name:
        problems.append(f"NAME {getattr(module, 'NAME', None)!r} is not the registered name {name!r}")
    if getattr(module, "CHAPTER", None) != EXPERIMENTS[name].split(".")[0]:
        problems.append(f"CHAPTER {getattr(module, 'CHAPTER', None)!r} is not its package")
    return problems


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_every_registered_experiment_satisfies_the_contract(name):
    module = get_experiment(name)
    assert registry_violations(name, module) == []


def test_the_contract_is_the_signatures_the_cli_calls():
    assert parameter_names(Experiment.run) == ["settings", "out", "ctx"]
    assert parameter_names(DataExperiment.run) == ["settings", "out", "ctx", "data"]
    for contract in (Experiment, DataExperiment):
        assert parameter_names(contract.plot) == ["results", "figure_png", "figure"]
        assert parameter_names(contract.claims) == ["results", "tier"]
    for contract in (Experiment, DataExperiment):
        declared = {key for cls in contract.__mro__ for key in getattr(cls, "__annotations__", {})}
        assert set(CONTRACT_CONSTANTS) <= declared
    assert contract_of(get_experiment("hessian_rank_vs_width")) is DataExperiment
    assert contract_of(get_experiment("dmf_2x2_norms_vs_rank")) is Experiment


@pytest.mark.parametrize(
    ("name", "attribute", "value", "expected"),
    [
        ("dmf_2x2_norms_vs_rank", "NAME", "dmf_2x2", "is not the registered name"),
        ("dmf_2x2_norms_vs_rank", "CHAPTER", "ch2", "is not its package"),
        ("dmf_2x2_norms_vs_rank", "TITLE", 3, "TITLE is missing or not a string"),
        ("dmf_2x2_norms_vs_rank", "plot", lambda results, out, tier: [], "plot('results', 'out', 'tier') should take"),
        ("dmf_2x2_norms_vs_rank", "claims", None, "claims is missing or not a function"),
        ("hessian_rank_vs_width", "run", lambda settings, out, ctx: None, "run('settings', 'out', 'ctx') should take"),
        ("hessian_rank_vs_width", "DATASETS", ["mnist"], "DATASETS is not a tuple"),
        ("tensor_rank_mnist", "DATASETS", (), "run('settings', 'out', 'ctx', 'data') should take"),
    ],
)
def test_a_planted_violation_is_found(monkeypatch, name, attribute, value, expected):
    module = get_experiment(name)
    monkeypatch.setattr(module, attribute, value)
    problems = registry_violations(name, module)
    assert any(expected in problem for problem in problems), problems


def test_a_constant_that_is_not_a_literal_is_found(tmp_path, monkeypatch):
    source = inspect.getsource(get_experiment("dmf_2x2_norms_vs_rank"))
    planted = source.replace('SECTION = "1.1"', 'SECTION = ".".join(["1", "1"])')
    assert planted != source
    path = tmp_path / "planted_experiment.py"
    path.write_text(planted, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("planted_experiment", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # as an import does: dataclasses resolve annotations there
    spec.loader.exec_module(module)
    assert module.SECTION == "1.1" and contract_violations(module) == []
    assert registry_violations("dmf_2x2_norms_vs_rank", module) == ["SECTION is not a string literal"]
