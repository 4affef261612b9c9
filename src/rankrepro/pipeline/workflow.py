"""What the Snakemake workflow computes when it is parsed, as plain functions (workflow/rules/*.smk call them).

Snakemake parses the workflow on every invocation and again in every cluster job, so nothing here imports torch —
experiment modules are read with :mod:`ast`, never imported — and nothing writes a file. Nothing here knows Snakemake
either: the rule files turn these values into inputs, params, resources and priorities.

- Layout: where an experiment's results, figure and logs go (:func:`results_dir`, :func:`figure_path`,
  :func:`log_stem`); the command line and the experiments use the same functions and file names.
- Experiments: what each experiment of a tier is — chapter, section, title, datasets, the files its plot job writes
  beside the figure — read from its module's source (:func:`experiment_info`); what each chapter is in the report
  (:data:`CHAPTERS`).
- Inputs: the settings file each experiment's jobs read (:func:`rankrepro.pipeline.config.job_settings`) and the dataset
  manifests its run job waits for (:func:`dataset_manifests`).
- Code hashes: a job reruns when the code it runs changed, and only then. :func:`code_slice` follows the names that an
  experiment's ``run`` (or ``plot``, or ``claims``) refers to, through the modules of the library, down to the
  top-level statements they need; :func:`slice_hash` hashes their source.
- Scheduling: memory, runtime and priority of an experiment's run job, from the ``resources`` block of its section of
  the tier config (:func:`run_resources`), and which run jobs can use a GPU (:func:`gpu_capable`): rule ``run_gpu``
  runs those, so that a cluster profile can route them, and only them, to a GPU partition.

:func:`plan_tier` puts it all together for one tier config.
"""

from __future__ import annotations

import ast
import hashlib
import re
import shlex
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rankrepro
from rankrepro.core.errors import ConfigError
from rankrepro.core.io import code_dump, fingerprint
from rankrepro.data.registry import DATASETS, MANIFEST, DatasetSpec, resolve_mirror
from rankrepro.pipeline.config import (
    RESOURCES_KEY,
    SETTINGS_DIR,
    experiment_section,
    job_settings,
    load_config,
    load_schema,
    settings_path,
    validate_config,
)
from rankrepro.pipeline.registry import EXPERIMENTS
from rankrepro.pipeline.settings import figure_context

# ---------------------------------------------------------------------------------------------------------- layout
#: files of an experiment's results folder
METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
CLAIMS_FILE = "claims.json"
#: the files every plot job writes: the figure as PNG (the path the command line is given) and as PDF beside it
FIGURE_SUFFIXES = (".png", ".pdf")
#: the only ``FIGURE_EXTRAS`` an experiment module may declare: a table (markdown + CSV) beside its figure
TABLE_SUFFIXES = (".md", ".csv")
#: folder of the jobs' logs and benchmark records (``logs/<tier>/…``, relative to the working directory)
LOGS_ROOT = "logs"
#: the paper tier's config, relative to the working directory: every tier's figures name how they depart from it
PAPER_CONFIG = "config/paper.yaml"


def tier_results(config: Mapping[str, Any]) -> Path:
    """``<results_root>/<tier>``: a tier's results (one folder per chapter, the settings files, the scorecard)."""
    return Path(config.get("results_root", "results")) / config["tier"]


def tier_figures(config: Mapping[str, Any]) -> Path:
    """``<figures_root>/<tier>``: a tier's figures (one folder per chapter)."""
    return Path(config.get("figures_root", "figures")) / config["tier"]


def tier_logs(config: Mapping[str, Any]) -> Path:
    """``logs/<tier>``: a tier's job logs (one folder per chapter, ``data/`` for the datasets, the scorecard's)."""
    return Path(LOGS_ROOT) / config["tier"]


def results_dir(config: Mapping[str, Any], chapter: str, name: str) -> Path:
    """``<results_root>/<tier>/<chapter>/<name>``: where an experiment writes its files for this tier."""
    return tier_results(config) / chapter / name


def figure_path(config: Mapping[str, Any], chapter: str, name: str) -> Path:
    """``<figures_root>/<tier>/<chapter>/<name>.png`` (the PDF, and a table's files, lie beside it)."""
    return tier_figures(config) / chapter / f"{name}{FIGURE_SUFFIXES[0]}"


def log_stem(config: Mapping[str, Any], chapter: str, name: str) -> Path:
    """``logs/<tier>/<chapter>/<name>``: an experiment's logs are this + ``.run.log``, ``.run.benchmark.tsv`` (which
    benchmarks/dag_wall_times.py reads), ``.plot.log`` and ``.claims.log``."""
    return tier_logs(config) / chapter / name


def outputs_came_with_the_checkout(config: Mapping[str, Any]) -> bool:
    """Whether the tier's scorecard exists but no settings file does: outputs that came with the checkout (the
    default tier's figures and scorecard are committed), not built in this working directory. Every build writes the
    settings files of its experiments (rule experiment_settings, before any run job), and they are not in the
    repository. Snakemake keeps its records of how a file was made in ``.snakemake/``, also not in the repository, so
    for such outputs only file times can trigger a rerun: a changed config or library is not seen."""
    results = tier_results(config)
    return (results / "scorecard.json").exists() and not any((results / SETTINGS_DIR).glob("*.yaml"))


def checkout_outputs_notice(config: Mapping[str, Any], example: tuple[str, str]) -> str:
    """What Snakemake cannot see when :func:`outputs_came_with_the_checkout`, and the commands that rebuild: the whole
    tier (the scorecard reads every experiment's results, which are not in the repository) or one figure, shown for
    ``example`` = (chapter, experiment)."""
    chapter, name = example
    summary = results_dir(config, chapter, name) / SUMMARY_FILE
    figure = figure_path(config, chapter, name)
    return (
        f"Note: {tier_results(config)}/scorecard.* and {tier_figures(config)}/ came with the checkout. Snakemake has "
        "no record of how they were made (.snakemake/ is not in the repository), so it does not see a change of the "
        "config or the code since: 'Nothing to be done' then means only that the files exist. After such a change, "
        "rebuild the tier with --forceall (the scorecard needs every experiment's results, which are not in the "
        f"repository), or one figure with: snakemake --cores all {figure} --forcerun {summary}. After one build here, "
        "reruns follow exactly what changed."
    )


# -------------------------------------------------------------------------------------------------------- chapters
@dataclass(frozen=True)
class Chapter:
    """How a chapter's experiments appear in the HTML report and what their run jobs can use."""

    category: str  #: report category of its figures (``snakemake --report``)
    gpu: bool  #: its run jobs benefit from a GPU


#: the chapters of the thesis, by the ``CHAPTER`` their experiment modules declare
CHAPTERS: dict[str, Chapter] = {
    "ch1": Chapter("Chapter 1: deep matrix factorization", gpu=False),
    "ch2": Chapter("Chapter 2: tensor factorization", gpu=False),
    "ch3": Chapter("Chapter 3: hierarchical tensor factorization and locality", gpu=True),
    "ch4": Chapter("Chapter 4: GNN interactions", gpu=False),
    "ch5": Chapter("Chapter 5: Hessian rank", gpu=True),
}


# ----------------------------------------------------------------------------------------------------- experiments
#: the folder holding the ``rankrepro`` package (``src/``): module sources are read from here, never imported
SOURCE_ROOT = Path(rankrepro.__file__).parent.parent
#: package of the experiment modules (:data:`rankrepro.pipeline.registry.EXPERIMENTS` names one module of it per
#: experiment)
EXPERIMENTS_PACKAGE = "rankrepro.experiments"


def module_path(module: str, root: Path = SOURCE_ROOT) -> Path | None:
    """Source file of ``module`` under ``root`` (``a.b`` → ``root/a/b.py``, else ``root/a/b/__init__.py``); None when
    ``root`` has none (a module from elsewhere, like ``torch``, or a name that is no module)."""
    parts = module.split(".")
    if not all(part.isidentifier() for part in parts):
        return None
    base = root.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


class _NotLiteral:
    """Type of :data:`NOT_LITERAL`."""

    def __repr__(self) -> str:
        return "NOT_LITERAL"


#: what :func:`module_constants` gives a name assigned something that is not a literal
NOT_LITERAL = _NotLiteral()


def module_constants(path: Path) -> dict[str, Any]:
    """Top-level ``NAME = value`` assignments of a module's source, evaluated with :func:`ast.literal_eval`; a name
    assigned something that is not a literal (a call, another name, an f-string) maps to :data:`NOT_LITERAL`."""
    constants: dict[str, Any] = {}
    for node in ast.parse(path.read_text(encoding="utf-8"), filename=str(path)).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                constants[node.targets[0].id] = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError):
                constants[node.targets[0].id] = NOT_LITERAL
    return constants


@dataclass(frozen=True)
class ExperimentInfo:
    """What the workflow knows of one experiment, read from its module's source."""

    name: str
    module: str  #: e.g. ``rankrepro.experiments.ch1.dmf_perturbed_problem``
    chapter: str  #: a key of :data:`CHAPTERS`
    section: str  #: the thesis section, e.g. ``"1.3"``
    title: str
    datasets: tuple[str, ...] = ()  #: registry datasets its run job reads (the module's ``DATASETS``)
    figure_extras: tuple[str, ...] = ()  #: files its plot job writes beside the figure: () or :data:`TABLE_SUFFIXES`


def _names(value: Any) -> tuple[str, ...] | None:
    """A literal name or tuple/list of names as a tuple of names; None for anything else."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (tuple, list)) and all(isinstance(item, str) for item in value):
        return tuple(value)
    return None


def experiment_info(
    name: str, module: str, *, root: Path = SOURCE_ROOT, known_datasets: Collection[str] = DATASETS
) -> ExperimentInfo:
    """The :class:`ExperimentInfo` of experiment ``name`` from the source of its ``module`` under ``root``: its
    literal ``CHAPTER``, ``SECTION``, ``TITLE`` and the optional ``DATASETS`` (names of ``known_datasets``) and
    ``FIGURE_EXTRAS``. Anything the workflow cannot use is a :class:`ConfigError` naming the module and the fix."""
    path = module_path(module, root)
    if path is None:
        raise ConfigError(
            f"experiment '{name}' has a section in the tier config but its module {module} does not "
            "exist; remove the section from the config or add the module"
        )
    constants = module_constants(path)
    where = f"experiment '{name}' ({module})"
    not_text = [key for key in ("CHAPTER", "SECTION", "TITLE") if not isinstance(constants.get(key), str)]
    if not_text:
        raise ConfigError(
            f"{where}: {', '.join(not_text)} must be literal strings (the workflow reads them from the "
            "module's source without importing it)"
        )
    if constants["CHAPTER"] not in CHAPTERS:
        raise ConfigError(
            f"{where}: CHAPTER '{constants['CHAPTER']}' is none of {', '.join(CHAPTERS)} "
            "(rankrepro.pipeline.workflow.CHAPTERS)"
        )
    datasets = _names(constants.get("DATASETS", ()))
    if datasets is None:
        raise ConfigError(f'{where}: DATASETS must be a literal tuple of dataset names, e.g. DATASETS = ("mnist",)')
    unknown = [dataset for dataset in datasets if dataset not in known_datasets]
    if unknown:
        raise ConfigError(
            f"{where} needs dataset(s) {unknown} that rankrepro.data.registry.DATASETS does not know; known "
            f"datasets: {', '.join(known_datasets)}"
        )
    extras = _names(constants.get("FIGURE_EXTRAS", ()))
    if extras not in ((), TABLE_SUFFIXES):
        raise ConfigError(
            f"{where}: FIGURE_EXTRAS must be the literal tuple {TABLE_SUFFIXES} (a table beside the "
            "figure) or be left out"
        )
    return ExperimentInfo(
        name, module, constants["CHAPTER"], constants["SECTION"], constants["TITLE"], datasets, extras
    )


def tier_experiments(
    config: Mapping[str, Any],
    *,
    registry: Mapping[str, str] = EXPERIMENTS,
    root: Path = SOURCE_ROOT,
    known_datasets: Collection[str] = DATASETS,
) -> dict[str, ExperimentInfo]:
    """The experiments a tier config has a section for, in the registry's order (the thesis's)."""
    return {
        name: experiment_info(name, f"{EXPERIMENTS_PACKAGE}.{module}", root=root, known_datasets=known_datasets)
        for name, module in registry.items()
        if name in config["experiments"]
    }


def one_of(names: Iterable[str]) -> str:
    """Wildcard regex matching exactly the given names (nothing, if there are none)."""
    alternatives = [re.escape(name) for name in names]
    return "|".join(alternatives) if alternatives else "(?!)"


def chapter_pattern(experiments: Mapping[str, ExperimentInfo]) -> str:
    """Wildcard regex of ``{chapter}`` in paths ``…/{chapter}/{experiment}/…`` and ``…/{chapter}/{experiment}.…``:
    a chapter matches only where one of its own experiments follows (a lookahead), so that a path pairing a chapter
    with another chapter's experiment matches no rule."""
    by_chapter: dict[str, list[str]] = {}
    for info in experiments.values():
        by_chapter.setdefault(info.chapter, []).append(info.name)
    alternatives = [f"{re.escape(chapter)}(?=/(?:{one_of(names)})[/.])" for chapter, names in by_chapter.items()]
    return "|".join(alternatives) if alternatives else "(?!)"


# -------------------------------------------------------------------------------------------------------- datasets
def manifest_path(data_cache: str, folder: str) -> str:
    """``<data_cache>/<folder>/MANIFEST.json``: written last by the ``data_fetch`` job of the dataset in ``folder``."""
    return f"{data_cache.rstrip('/')}/{folder}/{MANIFEST}"


def dataset_manifests(
    info: ExperimentInfo, section: Mapping[str, Any], data_cache: str, registry: Mapping[str, DatasetSpec] = DATASETS
) -> list[str]:
    """Manifests of the datasets an experiment's run job waits for: those its module lists in ``DATASETS``, restricted
    to those its config ``section`` names under ``datasets`` when it has that key (none for synthetic problems)."""
    wanted = section.get("datasets")
    return [
        manifest_path(data_cache, registry[dataset].folder)
        for dataset in info.datasets
        if wanted is None or dataset in wanted
    ]


def dataset_hash(spec: DatasetSpec) -> str:
    """Hash of a dataset's registry entry (its files and checksums): its ``data_fetch`` job reruns when that changes,
    not on unrelated edits of the library."""
    return fingerprint([[remote.name, remote.md5, remote.mirror_name, remote.gzipped] for remote in spec.files])


def check_dataset_folders(registry: Mapping[str, DatasetSpec] = DATASETS) -> None:
    """Raise :class:`ConfigError` unless every dataset's cache folder is its name (rule ``data_fetch`` writes the
    folder its ``{dataset}`` wildcard names)."""
    for name, spec in registry.items():
        if spec.folder != name:
            raise ConfigError(f"dataset '{name}' has cache folder '{spec.folder}'; rule data_fetch needs them equal")


def mirror_option(configured: str | None) -> str:
    """The ``--mirror`` option of ``rankrepro data fetch``: the mirror resolved as the command line would
    ($RANKREPRO_DATA_MIRROR, else the config's ``data_mirror``), or nothing when there is none."""
    mirror = resolve_mirror(configured)
    return "" if mirror is None else f"--mirror {shlex.quote(str(mirror))}"


# ------------------------------------------------------------------------------------------------ source slicing
@dataclass(frozen=True)
class Binding:
    """How top-level statement number ``statement`` of a module binds a name: ``kind`` is ``local`` (the statement
    defines it), ``module`` (module ``target`` of the source tree), ``member`` (name ``member`` of module ``target``
    of the tree) or ``external`` (imported from outside the tree)."""

    statement: int
    kind: str
    target: str = ""
    member: str = ""


@dataclass(frozen=True)
class ModuleSource:
    """One parsed module of a source tree."""

    name: str
    package: str  #: the package its relative imports start from
    lines: tuple[str, ...]
    statements: tuple[ast.stmt, ...]  #: its top-level statements
    bindings: Mapping[str, tuple[Binding, ...]]  #: every name its top-level statements bind
    effects: tuple[int, ...]  #: statements that do more than bind names when it is imported
    loads: frozenset[str]  #: modules of the tree its import-time statements import

    def text(self, index: int) -> str:
        """Source of top-level statement ``index``, decorators included (comments between statements are not)."""
        node = self.statements[index]
        first = min([node.lineno] + [decorator.lineno for decorator in getattr(node, "decorator_list", [])])
        return "\n".join(self.lines[first - 1 : node.end_lineno])


def absolute_module(node: ast.ImportFrom, package: str) -> str:
    """The module a ``from … import`` statement imports from, with a relative one resolved against ``package``."""
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    parts = parts[: len(parts) - node.level + 1]
    return ".".join(parts + ([node.module] if node.module else []))


def import_bindings(
    node: ast.Import | ast.ImportFrom, statement: int, package: str, in_tree: Callable[[str], bool]
) -> list[tuple[str, Binding]]:
    """The (name, :class:`Binding`) pairs of an import statement (a star import binds nothing known)."""
    pairs = []
    if isinstance(node, ast.Import):
        for alias in node.names:
            target = alias.name if alias.asname else alias.name.split(".")[0]
            kind = "module" if in_tree(target) else "external"
            pairs.append((alias.asname or target, Binding(statement, kind, target)))
        return pairs
    base = absolute_module(node, package)
    for alias in node.names:
        if alias.name == "*":
            continue
        if in_tree(f"{base}.{alias.name}"):
            binding = Binding(statement, "module", f"{base}.{alias.name}")
        elif in_tree(base):
            binding = Binding(statement, "member", base, alias.name)
        else:
            binding = Binding(statement, "external", base)
        pairs.append((alias.asname or alias.name, binding))
    return pairs


def imported_modules(node: ast.Import | ast.ImportFrom, package: str, in_tree: Callable[[str], bool]) -> set[str]:
    """Modules of the tree an import statement imports, with the packages above them (importing ``a.b`` runs
    ``a/__init__.py`` too)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = absolute_module(node, package)
        names = [base] + [f"{base}.{alias.name}" for alias in node.names if alias.name != "*"]
    found = set()
    for name in names:
        parts = name.split(".")
        found.update(prefix for prefix in (".".join(parts[:i]) for i in range(1, len(parts) + 1)) if in_tree(prefix))
    return found


def _shallow_nodes(node: ast.AST) -> Iterator[ast.AST]:
    """``node`` and the nodes inside it, except inside the functions, lambdas and classes it is or defines (what they
    bind is not a module's name; the imports in a function do not run when the module is imported)."""
    todo = [node]
    while todo:
        current = todo.pop()
        yield current
        if not isinstance(current, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            todo.extend(ast.iter_child_nodes(current))


def _is_main_guard(node: ast.stmt) -> bool:
    """``if __name__ == "__main__":`` (runs only as a script, never on import)."""
    test = node.test if isinstance(node, ast.If) else None
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and len(test.comparators) == 1
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value == "__main__"
    )


def _binds_only(node: ast.stmt) -> bool:
    """Whether a top-level statement does nothing but bind names when its module is imported: a definition, an
    import that is not a star import, an assignment to names (a call in the value is taken to have no effect beyond
    it), an ``if __name__ == "__main__":`` block."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import)):
        return True
    if isinstance(node, ast.ImportFrom):
        return all(alias.name != "*" for alias in node.names)
    if isinstance(node, ast.Assign):
        targets = [target for top in node.targets for target in _shallow_nodes(top)]
        return all(
            isinstance(target, (ast.Name, ast.Tuple, ast.List, ast.Starred, ast.Load, ast.Store)) for target in targets
        )
    if isinstance(node, ast.AnnAssign):
        return isinstance(node.target, ast.Name)
    return _is_main_guard(node)


def statement_bindings(
    node: ast.stmt, statement: int, package: str, in_tree: Callable[[str], bool]
) -> list[tuple[str, Binding]]:
    """Every (name, :class:`Binding`) a top-level statement makes: a definition's name, an import's names, assigned
    names, and whatever the branches of a compound statement (``if``, ``try``, ``with``, …) bind."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [(node.name, Binding(statement, "local"))]
    pairs = []
    for inner in _shallow_nodes(node):
        if isinstance(inner, (ast.Import, ast.ImportFrom)):
            pairs.extend(import_bindings(inner, statement, package, in_tree))
        elif isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            pairs.append((inner.name, Binding(statement, "local")))
        elif isinstance(inner, ast.Name) and isinstance(inner.ctx, ast.Store):
            pairs.append((inner.id, Binding(statement, "local")))
    return pairs


def parse_module(name: str, path: Path, in_tree: Callable[[str], bool]) -> ModuleSource:
    """Parse module ``name`` of a source tree (``in_tree`` says which modules the tree has)."""
    source = path.read_text(encoding="utf-8")
    statements = tuple(ast.parse(source, filename=str(path)).body)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    bindings: dict[str, list[Binding]] = {}
    effects, loads = [], set()
    for index, node in enumerate(statements):
        for bound, binding in statement_bindings(node, index, package, in_tree):
            bindings.setdefault(bound, []).append(binding)
        if _is_main_guard(node):
            continue
        for inner in _shallow_nodes(node):
            if isinstance(inner, (ast.Import, ast.ImportFrom)):
                loads |= imported_modules(inner, package, in_tree)
        docstring = index == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        if not docstring and not _binds_only(node):
            effects.append(index)
    return ModuleSource(
        name,
        package,
        tuple(source.splitlines()),
        statements,
        {bound: tuple(found) for bound, found in bindings.items()},
        tuple(effects),
        frozenset(loads),
    )


def name_uses(node: ast.AST, local: frozenset[str] = frozenset()) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(name, attribute chain) of every module-level name a piece of code refers to: ``a.b.c`` gives
    ``("a", ("b", "c"))``, ``x`` gives ``("x", ())``; what an expression's value is (``f().y``) is not followed.

    A name bound inside a function (a parameter, an assignment or loop target anywhere in its body, unless declared
    ``global``) or a comprehension is that scope's own — Python's rule — and so is not a use of the module's name
    (a method's local ``run`` is not the module's ``run``); ``local`` holds the names the enclosing scopes bind."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        outer = [*getattr(node, "decorator_list", []), *node.args.defaults, *node.args.kw_defaults]
        outer += [arg.annotation for arg in _parameters(node.args) if arg.annotation is not None]
        outer += [node.returns] if getattr(node, "returns", None) is not None else []
        for part in outer:
            if part is not None:
                yield from name_uses(part, local)
        body = node.body if isinstance(node.body, list) else [node.body]
        inner = local | _scope_bindings(body) | {arg.arg for arg in _parameters(node.args)}
        for statement in body:
            yield from name_uses(statement, inner)
    elif isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
        targets = {n.id for g in node.generators for n in ast.walk(g.target) if isinstance(n, ast.Name)}
        for child in ast.iter_child_nodes(node):
            yield from name_uses(child, local | targets)
    elif isinstance(node, ast.Attribute):
        attrs = []
        current: ast.AST = node
        while isinstance(current, ast.Attribute):
            attrs.append(current.attr)
            current = current.value
        if isinstance(current, ast.Name):
            if current.id not in local:
                yield current.id, tuple(reversed(attrs))
        else:
            yield from name_uses(current, local)
    elif isinstance(node, ast.Name):
        if node.id not in local:
            yield node.id, ()
    else:
        for child in ast.iter_child_nodes(node):
            yield from name_uses(child, local)


def _parameters(args: ast.arguments) -> list[ast.arg]:
    """Every parameter of a function signature."""
    extra = [a for a in (args.vararg, args.kwarg) if a is not None]
    return [*args.posonlyargs, *args.args, *args.kwonlyargs, *extra]


def _scope_bindings(body: list[ast.AST]) -> frozenset[str]:
    """Names a function body binds in its own scope (stores, ``del``, imports, nested def/class names), without
    looking into nested functions, classes or comprehensions, minus those it declares ``global`` or ``nonlocal``."""
    bound: set[str] = set()
    declared: set[str] = set()
    todo = list(body)
    while todo:
        current = todo.pop()
        if isinstance(current, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(current.name)
            continue
        if isinstance(current, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            continue
        if isinstance(current, (ast.Global, ast.Nonlocal)):
            declared.update(current.names)
        elif isinstance(current, ast.Name) and isinstance(current.ctx, (ast.Store, ast.Del)):
            bound.add(current.id)
        elif isinstance(current, (ast.Import, ast.ImportFrom)):
            bound.update((alias.asname or alias.name).split(".")[0] for alias in current.names)
        elif isinstance(current, ast.ExceptHandler) and current.name:
            bound.add(current.name)
        todo.extend(ast.iter_child_nodes(current))
    return frozenset(bound - declared)


#: what the code of one statement needs: ``("refer", name, attrs)`` — a name it uses, as seen from its module (with
#: the attributes it reads of it); ``("whole", module)``; ``("member", module, name)`` — what an import inside a
#: function or block takes
Need = tuple


def statement_needs(module: ModuleSource, index: int, in_tree: Callable[[str], bool]) -> tuple[Need, ...]:
    """What the code of top-level statement ``index`` of ``module`` needs (:data:`Need`), each once. A top-level import
    needs nothing by itself (what it binds is followed when used), except a star import: its module, whole."""
    node = module.statements[index]
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        star = isinstance(node, ast.ImportFrom) and any(alias.name == "*" for alias in node.names)
        return (("whole", absolute_module(node, module.package)),) if star else ()
    needs: dict[Need, None] = {("refer", symbol, attrs): None for symbol, attrs in name_uses(node)}
    for inner in ast.walk(node):  # imports inside functions and blocks: what they import, whole or by name
        if isinstance(inner, ast.Import):
            needs.update(
                {("whole", imported): None for imported in sorted(imported_modules(inner, module.package, in_tree))}
            )
        elif isinstance(inner, ast.ImportFrom):
            for _, binding in import_bindings(inner, index, module.package, in_tree):
                if binding.kind == "module":
                    needs[("whole", binding.target)] = None
                elif binding.kind == "member":
                    needs[("member", binding.target, binding.member)] = None
    return tuple(needs)


class SourceTree:
    """The modules of one source folder (``root`` holds the top-level packages, like ``src/``), each parsed once."""

    def __init__(self, root: Path = SOURCE_ROOT) -> None:
        self.root = root
        self._modules: dict[str, ModuleSource | None] = {}
        self._has: dict[str, bool] = {}
        self._needs: dict[tuple[str, int], tuple[Need, ...]] = {}
        self._codes: dict[tuple[str, int], bytes] = {}

    def module(self, name: str) -> ModuleSource | None:
        """Module ``name`` parsed, or None when the tree has no such module."""
        if name not in self._modules:
            path = module_path(name, self.root)
            self._modules[name] = None if path is None else parse_module(name, path, self.has)
        return self._modules[name]

    def has(self, name: str) -> bool:
        """Whether the tree has a module ``name`` (without parsing it)."""
        if name not in self._has:
            self._has[name] = module_path(name, self.root) is not None
        return self._has[name]

    def needs(self, name: str, index: int) -> tuple[Need, ...]:
        """:func:`statement_needs` of statement ``index`` of module ``name`` (worked out once)."""
        if (name, index) not in self._needs:
            self._needs[name, index] = statement_needs(self.module(name), index, self.has)
        return self._needs[name, index]

    def code(self, name: str, index: int) -> bytes:
        """:func:`~rankrepro.core.io.code_dump` of statement ``index`` of module ``name``, encoded (worked out once:
        the jobs' slices share most statements)."""
        if (name, index) not in self._codes:
            self._codes[name, index] = code_dump(self.module(name).statements[index]).encode()
        return self._codes[name, index]


def code_slice(roots: Iterable[tuple[str, str]], tree: SourceTree, stop: Collection[str] = ()) -> dict[str, set[int]]:
    """The top-level statements, per module of ``tree``, that the code named by ``roots`` (pairs of module and name)
    can run: the statements binding each root, then, transitively, those binding every name their code uses —
    a module-level constant, a helper, a class, an import and what it imports — and, of every module this imports,
    the statements that run for their effect on import (``matplotlib.use(…)``). Conservative where it cannot tell:
    a module used as a value (passed, returned, ``getattr`` on it), imported inside a function (``import a as b``),
    star-imported, or asked for a name it does not bind, is taken whole. Modules in ``stop`` are never entered.
    """
    chosen: dict[str, set[int]] = {}
    loaded: set[str] = set()
    pending: list[tuple[str, int]] = []

    def choose(name: str, index: int) -> None:
        if index not in chosen.setdefault(name, set()):
            chosen[name].add(index)
            pending.append((name, index))

    def load(name: str) -> ModuleSource | None:
        """Import ``name``: its packages' and its own import-time effects count."""
        module = None if name in stop else tree.module(name)
        if module is not None and name not in loaded:
            loaded.add(name)
            parts = name.split(".")
            for i in range(1, len(parts)):
                load(".".join(parts[:i]))
            for index in module.effects:
                choose(name, index)
            for other in sorted(module.loads):
                load(other)
        return module

    def whole(name: str) -> None:
        module = load(name)
        for index in range(len(module.statements) if module is not None else 0):
            choose(name, index)

    def descend(name: str, attrs: tuple[str, ...]) -> None:
        """Module ``name`` used as ``name.attrs[0].attrs[1]…``."""
        load(name)
        for attr in attrs:
            if not tree.has(f"{name}.{attr}"):
                member(name, attr)
                return
            name = f"{name}.{attr}"
            load(name)
        whole(name)  # the module itself is used as a value

    def member(name: str, symbol: str) -> None:
        """Name ``symbol`` of module ``name``, asked for from outside it (``from name import symbol``)."""
        module = load(name)
        if module is None:
            return
        if symbol in module.bindings:
            refer(name, symbol, ())
        elif tree.has(f"{name}.{symbol}"):
            whole(f"{name}.{symbol}")
        else:  # made at run time or by a star import: all of it
            whole(name)

    def refer(name: str, symbol: str, attrs: tuple[str, ...]) -> None:
        """``symbol`` (then ``attrs``) used by code of module ``name``; a name it does not bind (a builtin, a local
        variable) is not followed."""
        module = tree.module(name)
        for binding in module.bindings.get(symbol, ()) if module is not None else ():
            choose(name, binding.statement)
            if binding.kind == "module":
                descend(binding.target, attrs)
            elif binding.kind == "member":
                member(binding.target, binding.member)

    for name, symbol in roots:
        member(name, symbol)
    while pending:
        name, index = pending.pop()
        for need in tree.needs(name, index):
            if need[0] == "refer":
                refer(name, need[1], need[2])
            elif need[0] == "whole":
                whole(need[1])
            else:
                member(need[1], need[2])
    return chosen


def slice_hash(chosen: Mapping[str, Collection[int]], tree: SourceTree) -> str:
    """Hash (16 hex digits) of the code of the chosen statements, module by module in name order: each statement's
    :func:`~rankrepro.core.io.code_dump`, so docstrings, comments and layout rerun no job."""
    digest = hashlib.sha256()
    for name in sorted(chosen):
        digest.update(f"{name}\0".encode())
        for index in sorted(chosen[name]):
            code = tree.code(name, index)
            digest.update(f"{len(code)}\0".encode() + code)
    return digest.hexdigest()[:16]


#: the command line's module, and its function that runs each kind of job (its code is part of every such job)
CLI_MODULE = "rankrepro.cli"
JOB_COMMANDS = {
    "run": "_command_run",
    "plot": "_command_plot",
    "claims": "_command_claims",
    "scorecard": "_command_scorecard",
}
#: the typed settings class an experiment module declares; the CLI builds its run's settings with it
SETTINGS_CLASS = "Settings"
#: the kinds of an experiment's jobs: each gets the hash of its own code
EXPERIMENT_JOBS = ("run", "plot", "claims")
#: modules no code hash covers: the experiment registry (a name → module table that importing any experiment module
#: runs), so that registering a new experiment reruns none of the others
REGISTRY_MODULES = frozenset({"rankrepro.pipeline.registry"})


def code_hash(tree: SourceTree, job: str, module: str | None = None) -> str:
    """Hash of the code a job runs: for an experiment job (``run``, ``plot``, ``claims``) the slice of the tree
    reachable from the function of that name in the experiment's ``module`` and from the command line's code for
    that job; for ``scorecard`` the command line's scorecard code. Snakemake gets it as a ``params`` value and reruns
    the job when it changes: fixing a figure's caption re-draws the figure, it does not retrain."""
    if module is not None and tree.module(module) is None:
        raise ConfigError(f"no module {module} under {tree.root}: its {job} job's code cannot be hashed")
    roots = [(CLI_MODULE, JOB_COMMANDS[job])] + ([(module, job)] if module is not None else [])
    if module is not None and job == "run":
        roots.append((module, SETTINGS_CLASS))  # the CLI builds the run's settings with module.Settings
    return slice_hash(code_slice(roots, tree, REGISTRY_MODULES), tree)


# ------------------------------------------------------------------------------------------------------ scheduling
def run_resources(section: Mapping[str, Any]) -> dict[str, int]:
    """``mem_mb``, ``runtime`` (minutes) and ``priority`` of an experiment's run job: the ``resources`` block of its
    validated config section (the schema fills in what a tier leaves out)."""
    return {key: int(value) for key, value in section[RESOURCES_KEY].items()}


def gpu_capable(chapter: Chapter, device: str) -> bool:
    """Whether an experiment's run job can use a GPU: its chapter benefits from one and the tier does not say
    ``device: cpu``. Such jobs run under rule ``run_gpu`` (the others under ``run``). Neither rule requests a GPU: a
    GPU is asked for only where a profile routes ``run_gpu`` to a GPU partition (profiles/slurm-gpu), so a cluster's
    CPU partition is never asked for one."""
    return chapter.gpu and device != "cpu"


def keep_failed_log(log_word: str, command: str) -> str:
    """Shell commands running ``command`` so that its log survives if it fails or is killed (``scancel``, a node
    failure): Snakemake deletes a job's log before each attempt, so the log gets a second name first, a hard link
    ``<log>.1`` (``.2``, … when taken) to the same file, removed again when ``command`` succeeds. ``log_word`` is one
    shell word naming the log, inserted as it is (the rule passes Snakemake's ``{log:q}``); ``command`` must append
    to the log, not replace the file."""
    return (
        f"n=1; while [ -e {log_word}.$n ]; do n=$((n + 1)); done; "
        f"touch {log_word} && ln -f {log_word} {log_word}.$n && {command} && rm -f {log_word}.$n"
    )


def cli_command(python: str, source: Path | None = None) -> str:
    """Shell words running the ``rankrepro`` command line. Without ``source``: the environment of interpreter ``python``
    (the one running Snakemake), its console script beside it, else ``python -m rankrepro.cli`` (no activated
    environment needed, and cluster nodes sharing the file system use the same one). With ``source`` (the checkout's
    ``src/`` folder), for jobs that run in their own conda environment (``snakemake --sdm conda``): the ``python`` of
    the job's activated environment, importing the library from ``source``."""
    if source is not None:
        return f"env PYTHONPATH={shlex.quote(str(source))} python -m rankrepro.cli"
    script = Path(python).parent / "rankrepro"
    return shlex.quote(str(script)) if script.is_file() else f"{shlex.quote(python)} -m rankrepro.cli"


# ------------------------------------------------------------------------------------------------------------ plan
@dataclass(frozen=True)
class TierPlan:
    """What the workflow needs of one tier, computed once when it is parsed."""

    config: dict[str, Any]  #: the validated tier config, schema defaults filled in
    experiments: dict[str, ExperimentInfo]  #: the tier's experiments, in thesis order
    settings: dict[
        str, dict[str, Any]
    ]  #: experiment → what its jobs read (:func:`rankrepro.pipeline.config.job_settings`)
    settings_file: dict[str, str]  #: experiment → ``<results>/settings/<experiment>.<hash>.yaml``
    manifests: dict[str, list[str]]  #: experiment → manifests of the datasets its run job waits for
    code_hash: dict[str, dict[str, str]]  #: experiment → job kind (run, plot, claims) → hash of that job's code
    scorecard_hash: str  #: hash of the scorecard job's code
    resources: dict[str, dict[str, int]]  #: experiment → mem_mb, runtime, priority of its run job
    gpu: dict[str, bool]  #: experiment → whether its run job can use a GPU (rule ``run_gpu``, else ``run``)
    substitutions: dict[str, str]  #: experiment → how its settings depart from the paper tier's (report captions)

    @property
    def tier(self) -> str:
        """The tier's name."""
        return self.config["tier"]

    def results_dir(self, name: str) -> str:
        """Results folder of experiment ``name``."""
        return str(results_dir(self.config, self.experiments[name].chapter, name))

    def figure_png(self, name: str) -> str:
        """Figure (PNG) of experiment ``name``."""
        return str(figure_path(self.config, self.experiments[name].chapter, name))

    def all_figures(self) -> list[str]:
        """PNG and PDF of every experiment of the tier, and the files its plot job writes beside them."""
        return [
            self.figure_png(name)[: -len(FIGURE_SUFFIXES[0])] + suffix
            for name, info in self.experiments.items()
            for suffix in FIGURE_SUFFIXES + info.figure_extras
        ]

    def all_claims(self) -> list[str]:
        """claims.json of every experiment of the tier, in thesis order (the scorecard's)."""
        return [f"{self.results_dir(name)}/{CLAIMS_FILE}" for name in self.experiments]


def plan_tier(
    config: Mapping[str, Any],
    *,
    tree: SourceTree | None = None,
    registry: Mapping[str, str] = EXPERIMENTS,
    datasets: Mapping[str, DatasetSpec] = DATASETS,
    paper: Mapping[str, Any] | None = None,
) -> TierPlan:
    """The :class:`TierPlan` of a tier config (validated here; a :class:`ConfigError` names what is wrong), its
    settings compared with those of the ``paper`` tier config (validated here too; None: not compared)."""
    config = validate_config(dict(config))
    paper = validate_config(dict(paper)) if paper is not None else None
    schema = load_schema()
    check_dataset_folders(datasets)
    tree = tree if tree is not None else SourceTree()
    experiments = tier_experiments(config, registry=registry, root=tree.root, known_datasets=datasets)
    settings = {name: job_settings(config, name, reads_data=bool(info.datasets)) for name, info in experiments.items()}
    results = str(tier_results(config))
    sections = config["experiments"]
    return TierPlan(
        config=config,
        experiments=experiments,
        settings=settings,
        settings_file={name: settings_path(results, name, value) for name, value in settings.items()},
        manifests={
            name: dataset_manifests(info, sections[name], config["data_cache"], datasets)
            for name, info in experiments.items()
        },
        code_hash={
            name: {job: code_hash(tree, job, info.module) for job in EXPERIMENT_JOBS}
            for name, info in experiments.items()
        },
        scorecard_hash=code_hash(tree, "scorecard"),
        resources={name: run_resources(sections[name]) for name in experiments},
        gpu={name: gpu_capable(CHAPTERS[info.chapter], config["device"]) for name, info in experiments.items()},
        substitutions={
            name: figure_context(config["tier"], name, paper, schema).substitutions(experiment_section(config, name))
            for name in experiments
        },
    )


def load_paper_config(path: str | Path = PAPER_CONFIG) -> dict[str, Any] | None:
    """The paper tier's config (``config/paper.yaml`` relative to the working directory), validated; None if absent."""
    return load_config(path) if Path(path).is_file() else None
