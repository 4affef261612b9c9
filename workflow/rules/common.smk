# Shared by every chapter's rules: the tier, its output roots, the experiments of each chapter, the settings file each
# experiment's jobs read (and the rule that writes it), and the hashes that make Snakemake rerun a job when its
# settings or its library code change.
#
# Parsing the workflow writes nothing (`snakemake -n`, `--lint`, an invocation refused by the lock, every cluster job's
# re-parse): files are written only by jobs.

import ast
import shlex
import sys
from pathlib import Path

import rankrepro
from rankrepro.core.io import source_hash
from rankrepro.data.registry import DATASETS as DATASET_REGISTRY
from rankrepro.experiments import EXPERIMENTS
from rankrepro.pipeline.config import SETTINGS_DIR, job_settings, settings_path, settings_text, validate_config

# ---------------------------------------------------------------------------------------------------------------------
# The tier: validated config with every default filled in (the same function the CLI uses, so the workflow and the
# jobs see identical settings), and its output roots. The Snakefile has validated `config` already.
TIER_CONFIG = validate_config(config)

TIER = TIER_CONFIG["tier"]
RESULTS = f"{TIER_CONFIG['results_root']}/{TIER}"
FIGURES = f"{TIER_CONFIG['figures_root']}/{TIER}"
LOGS = f"logs/{TIER}"
THREADS = TIER_CONFIG["threads"]
SCORECARD_MD = f"{RESULTS}/scorecard.md"
SCORECARD_JSON = f"{RESULTS}/scorecard.json"
# The data cache (shared by every tier): <DATA_CACHE>/<dataset>/MANIFEST.json is the output of rule data_fetch.
DATA_CACHE = TIER_CONFIG["data_cache"].rstrip("/")

# Progress bars when a person watches a terminal; plain log lines in CI and on clusters.
PROGRESS_FLAG = "" if sys.stderr.isatty() else "--no-progress"

# ---------------------------------------------------------------------------------------------------------------------
# Experiments: the registry (rankrepro.experiments.EXPERIMENTS) says which exist, the tier config which to run. A
# module's NAME/CHAPTER/SECTION/TITLE (and the optional DATASETS = ("mnist", ...) it needs) are read from its source
# with `ast`, so that parsing the workflow never imports torch (every cluster job re-parses the Snakefile).
PACKAGE_DIR = Path(rankrepro.__file__).parent


def _module_path(modname: str) -> Path | None:
    """File of a rankrepro module (``rankrepro.a.b`` -> src/rankrepro/a/b.py or …/b/__init__.py), None if none."""
    base = PACKAGE_DIR.joinpath(*modname.split(".")[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


_NOT_LITERAL = object()  # value of a top-level name assigned something ast.literal_eval cannot read


def _module_constants(path: Path) -> dict:
    """Top-level literal assignments of a module's source (a non-literal one maps to ``_NOT_LITERAL``)."""
    constants = {}
    for node in ast.parse(path.read_text(encoding="utf-8"), filename=str(path)).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                constants[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                constants[node.targets[0].id] = _NOT_LITERAL
    return constants


def _experiment_info(name: str) -> dict:
    modname = f"rankrepro.experiments.{EXPERIMENTS[name]}"
    path = _module_path(modname)
    if path is None:
        raise WorkflowError(
            f"experiment '{name}' has a section in the tier config but its module {modname} does not exist; "
            "remove the section from the config or add the module"
        )
    info = _module_constants(path)
    missing = [key for key in ("CHAPTER", "SECTION", "TITLE") if not isinstance(info.get(key), str)]
    if info.get("DATASETS") is _NOT_LITERAL:
        missing.append("DATASETS")
    if missing:  # not literal: import the module (slow, but correct)
        import importlib

        loaded = importlib.import_module(modname)
        info.update({key: getattr(loaded, key) for key in missing})
    datasets = info.get("DATASETS", ())
    datasets = (datasets,) if isinstance(datasets, str) else tuple(datasets)
    unknown = [dataset for dataset in datasets if dataset not in DATASET_REGISTRY]
    if unknown:
        raise WorkflowError(
            f"experiment '{name}' needs dataset(s) {unknown} that rankrepro.data.registry.DATASETS does not know; "
            f"known datasets: {', '.join(DATASET_REGISTRY)}"
        )
    extras = info.get("FIGURE_EXTRAS", ())
    if extras is _NOT_LITERAL:
        raise WorkflowError(f"experiment '{name}': FIGURE_EXTRAS must be a literal tuple of file suffixes")
    return {"modname": modname, "chapter": info["CHAPTER"], "section": info["SECTION"], "title": info["TITLE"],
            "datasets": datasets, "figure_extras": tuple(extras)}


#: experiment -> {modname, chapter, section, title, datasets, figure_extras}, for the experiments of this tier, in
#: thesis order
EXPERIMENT_INFO = {name: _experiment_info(name) for name in EXPERIMENTS if name in TIER_CONFIG["experiments"]}


def experiments_of(chapter: str) -> list[str]:
    """The experiments of ``chapter`` that this tier runs."""
    return [name for name, info in EXPERIMENT_INFO.items() if info["chapter"] == chapter]


def one_of(names: list[str]) -> str:
    """Wildcard regex matching exactly the given names (nothing, if there are none)."""
    return "|".join(names) if names else "(?!)"


def results_dir(experiment: str) -> str:
    return f"{RESULTS}/{EXPERIMENT_INFO[experiment]['chapter']}/{experiment}"


def figure_png(experiment: str) -> str:
    return f"{FIGURES}/{EXPERIMENT_INFO[experiment]['chapter']}/{experiment}.png"


def dataset_manifest(dataset: str) -> str:
    """MANIFEST.json of a dataset in the data cache: the output of rule data_fetch (workflow/rules/data.smk)."""
    return f"{DATA_CACHE}/{DATASET_REGISTRY[dataset].folder}/MANIFEST.json"


def dataset_manifests(experiment: str) -> list[str]:
    """Manifests of the datasets an experiment's module lists in ``DATASETS`` (none if it lists none), restricted to
    those its config section names under ``datasets`` when it has that key.

    A run rule depends on them with ``input: manifests=lambda wildcards: dataset_manifests(wildcards.experiment)``,
    so Snakemake fetches (and verifies) the data before the experiment runs.
    """
    wanted = TIER_CONFIG["experiments"][experiment].get("datasets")
    return [dataset_manifest(dataset) for dataset in EXPERIMENT_INFO[experiment]["datasets"]
            if wanted is None or dataset in wanted]


def all_figures() -> list[str]:
    """PNG and PDF of every experiment of the tier, and the files its plot job writes beside them (``FIGURE_EXTRAS``
    of the module, e.g. Table 1's markdown and CSV)."""
    return [figure_png(name)[: -len(".png")] + suffix for name, info in EXPERIMENT_INFO.items()
            for suffix in (".png", ".pdf", *info["figure_extras"])]


def all_claims() -> list[str]:
    """claims.json of every experiment of the tier, in thesis order (the scorecard's order)."""
    return [f"{results_dir(name)}/claims.json" for name in EXPERIMENT_INFO]


# ---------------------------------------------------------------------------------------------------------------------
# Settings files. The run, plot and claims jobs of an experiment read its settings file,
# results/<tier>/settings/<experiment>.<hash>.yaml: the part of the resolved tier config (tier file + --config
# overrides + schema defaults) that they read, and nothing else (rankrepro.pipeline.config.job_settings: the
# experiment's section, tier, device, output roots, and for experiments on real data the data cache and mirror; not
# `threads`, which Snakemake gives each job), named by the hash of that content. Rule experiment_settings writes it
# when a job needs it — at job time, never at parse time. So:
#   - an invocation with another config (even a dry run, beside a running one) names other files and never changes
#     what a running job reads; results always match the settings file their job was given;
#   - changing a value an experiment's jobs read changes the name of its settings file, which reruns exactly that
#     experiment (Snakemake's `input` rerun trigger: the set of input files changed); spelling out a default, or
#     changing `threads` or another experiment's section, names the same file and reruns nothing;
#   - the file is an ancient() input: its name is its content, so its modification time means nothing (a settings
#     job run again while its file exists reruns no job). The files belong to the results: a deleted one is written
#     again and, like any deleted intermediate file, reruns its experiment.
JOB_SETTINGS = {
    name: job_settings(TIER_CONFIG, name, reads_data=bool(info["datasets"])) for name, info in EXPERIMENT_INFO.items()
}
SETTINGS_FILE = {name: settings_path(RESULTS, name, settings) for name, settings in JOB_SETTINGS.items()}


def settings_input(wildcards):
    """Input function of the run, plot and claims rules: the experiment's settings file (ancient, see above)."""
    return ancient(SETTINGS_FILE[wildcards.experiment])


# A local job that writes a few lines (a shell command: a `run:` job would re-parse the workflow in a subprocess).
localrules:
    experiment_settings,


rule experiment_settings:
    """Write the settings file of one experiment of this invocation's config (rankrepro.pipeline.config.settings_text
    refuses a file name whose hash is not that of the settings: such a target stops the DAG at once)."""
    output:
        settings=f"{RESULTS}/{SETTINGS_DIR}/{{experiment}}.{{hash}}.yaml",
    wildcard_constraints:
        experiment=one_of(list(EXPERIMENT_INFO)),
        hash="[0-9a-f]{16}",
    priority: lambda wildcards: run_priority(wildcards)  # the run job it gates starts as early as its priority says
    params:
        text=lambda wildcards, output: settings_text(Path(output.settings).name, JOB_SETTINGS[wildcards.experiment]),
    shell:
        "printf '%s' {params.text:q} > {output.settings}"


# ---------------------------------------------------------------------------------------------------------------------
# Code hashes. Snakemake (>= 9, rerun-triggers include `params`) reruns a job whose params differ from those recorded
# when its outputs were made. Each job gets the param
#   code_hash:     hash of the library sources the job depends on: the transitive closure of the experiment
#                  module's `rankrepro` imports (found with `ast`). Training ignores the presentation modules
#                  (plotting, claims, report, cli), so a figure tweak re-draws figures without retraining.
#                  The experiment registry (rankrepro/experiments/__init__.py, a name -> module table that every
#                  experiment module's package import runs) is left out too: registering a new experiment must not
#                  retrain the existing ones.
PRESENTATION_MODULES = {"rankrepro.pipeline.plotting", "rankrepro.pipeline.claims", "rankrepro.pipeline.report",
                        "rankrepro.cli", "rankrepro.experiments"}


def _imported_modules(path: Path, modname: str) -> set[str]:
    """Names that ``import``/``from … import`` statements of a module may refer to (absolute and relative)."""
    package = modname if path.name == "__init__.py" else modname.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def source_closure(roots, stop=frozenset()) -> list[Path]:
    """Source files of ``roots`` and of every rankrepro module they import, transitively (not entering ``stop``)."""
    seen: dict[str, Path] = {}
    todo = list(roots)
    while todo:
        modname = todo.pop()
        if modname in seen or modname in stop or not (modname == "rankrepro" or modname.startswith("rankrepro.")):
            continue
        path = _module_path(modname)
        if path is None:  # an attribute (from rankrepro.core.io import fingerprint), not a module
            continue
        seen[modname] = path
        parts = modname.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # importing a.b runs a/__init__.py
        todo.extend(_imported_modules(path, modname))
    return sorted(seen.values())


RUN_CODE_HASH = {
    name: source_hash(source_closure([info["modname"]], PRESENTATION_MODULES)) for name, info in EXPERIMENT_INFO.items()
}
OUTPUT_CODE_HASH = {
    name: source_hash(source_closure([info["modname"], "rankrepro.pipeline.plotting", "rankrepro.pipeline.claims"]))
    for name, info in EXPERIMENT_INFO.items()
}
SCORECARD_CODE_HASH = source_hash(source_closure(["rankrepro.pipeline.report", "rankrepro.pipeline.claims"]))


def run_resource(table: dict, index: int):
    """Resource lookup for a run rule: ``table[experiment][tier][index]`` (tiers not listed use the paper row)."""

    def lookup(wildcards) -> int:
        rows = table.get(wildcards.experiment, {})
        return rows.get(TIER, rows.get("paper", (4000, 240)))[index]

    return lookup


# Scheduling: on a few cores the DAG's wall time is about max(longest job, total / cores) only when the longest jobs
# start first. A run job's priority is its measured job time in minutes on the default tier (1 thread, from
# logs/default/*/*.run.benchmark.tsv via benchmarks/dag_wall_times.py); tiers differ in scale, not in which jobs are
# long. Experiments not listed get 0.
RUN_PRIORITY_MINUTES = {
    "is_same_class_cnn": 20,
    "pathfinder_cnn": 20,
    "tensor_completion_vs_linear": 9,
    "tensor_rank_mnist": 8,
    "is_same_class_gnn": 6,
    "edge_sparsification": 6,
    "tf_component_norms": 4,
    "incremental_rank_learning_sensing": 3,
    "hessian_rank_vs_depth": 2,
    "tf_sensing_component_norms": 2,
    "hessian_rank_vs_sample_size": 2,
    "hessian_rank_vs_width": 1,
}


def run_priority(wildcards) -> int:
    """Snakemake priority of an experiment's run job: longer jobs first (:data:`RUN_PRIORITY_MINUTES`)."""
    return RUN_PRIORITY_MINUTES.get(wildcards.experiment, 0)


def gpu_request(benefits: bool) -> int:
    """GPUs a job asks the scheduler for: 1 for rules that benefit from one unless the tier says `device: cpu`.

    Locally an unconstrained resource; on a cluster (profiles/slurm) it becomes a GPU request. Chapter-1 jobs run
    tiny 2×2–5×10 factorizations and ask for none; `--set-resources RULE:gpu=N` overrides per rule.
    """
    return int(benefits and TIER_CONFIG["device"] != "cpu")


# ---------------------------------------------------------------------------------------------------------------------
# The commands the rules run (identical for every chapter; each chapter file declares its own rules and resources).
# The CLI is the one of the environment running Snakemake: no activated venv needed, and cluster nodes sharing the
# file system use the same one.
_cli = Path(sys.executable).parent / "rankrepro"
RANKREPRO = shlex.quote(str(_cli)) if _cli.is_file() else f"{shlex.quote(sys.executable)} -m rankrepro.cli"

# A killed run job resumes from its checkpoints; the library ties each checkpoint to the settings and to the source
# of the modules its numbers depend on, so after a code change the job retrains instead of resuming a stale state.
RUN_COMMAND = (
    RANKREPRO
    + " run {wildcards.experiment} --config {input.settings} --out {params.out} --threads {threads} "
    "{params.progress} --log {log}"
)
PLOT_COMMAND = (
    RANKREPRO + " plot {wildcards.experiment} --config {input.settings} --results {params.results} "
    "--out {output.png} > {log} 2>&1"
)
CLAIMS_COMMAND = (
    RANKREPRO + " claims {wildcards.experiment} --config {input.settings} --results {params.results} "
    "--out {output.claims} > {log} 2>&1"
)
