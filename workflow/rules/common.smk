# Shared by the rules: the tier's plan and the rule that writes each experiment's settings file.
#
# The plan (rankrepro.pipeline.workflow.plan_tier, unit-tested in tests/test_pipeline_workflow.py) is everything the
# rules need of the tier: its experiments (read from their modules' source, so that parsing never imports torch: every
# cluster job re-parses the Snakefile), output roots, settings files, dataset manifests, the code hash of every job
# and the resources of every run job. What is left here is Snakemake's side: ancient(), WorkflowError, the rules.
#
# Parsing the workflow writes nothing (`snakemake -n`, `--lint`, an invocation refused by the lock, every cluster job's
# re-parse): files are written only by jobs.

import sys
from pathlib import Path

from snakemake.settings.types import DeploymentMethod

from rankrepro.pipeline.config import SETTINGS_DIR, settings_text
from rankrepro.core.errors import ConfigError
from rankrepro.pipeline import workflow as wf

# Every figure's caption names how its tier departs from the paper tier (config/paper.yaml): its plot job reads that
# file too, so editing it re-draws the figures (and retrains nothing).
try:
    PAPER_CONFIG = wf.load_paper_config()
    PLAN = wf.plan_tier(config, paper=PAPER_CONFIG)
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None
PAPER_INPUT = dict(paper=wf.PAPER_CONFIG) if PAPER_CONFIG is not None else {}
PAPER_OPTION = "--paper-config {input.paper}" if PAPER_CONFIG is not None else ""

TIER_CONFIG = PLAN.config
TIER = PLAN.tier
RESULTS = str(wf.tier_results(TIER_CONFIG))
FIGURES = str(wf.tier_figures(TIER_CONFIG))
LOGS = str(wf.tier_logs(TIER_CONFIG))
THREADS = TIER_CONFIG["threads"]
SCORECARD_MD = f"{RESULTS}/scorecard.md"
SCORECARD_JSON = f"{RESULTS}/scorecard.json"
# The data cache (shared by every tier): <DATA_CACHE>/<dataset>/MANIFEST.json is the output of rule data_fetch.
DATA_CACHE = TIER_CONFIG["data_cache"].rstrip("/")

# A fresh clone holds the default tier's figures and scorecard but no record of how they were made: say what that
# means for reruns (printed while parsing; nothing is written).
if PLAN.experiments and wf.outputs_came_with_the_checkout(TIER_CONFIG):
    _name, _info = next(iter(PLAN.experiments.items()))
    print(wf.checkout_outputs_notice(TIER_CONFIG, (_info.chapter, _name)), file=sys.stderr)

# Progress bars when a person watches a terminal; plain log lines in CI and on clusters.
PROGRESS_FLAG = "" if sys.stderr.isatty() else "--no-progress"

# The software environment of every rule (`conda:`): used only with `snakemake --sdm conda`, which builds it and runs
# each job in it; its packages are pyproject.toml's dependencies (tests/test_environments.py).
CONDA_ENV = "../envs/rankrepro.yaml"
# The command line of the environment running Snakemake (no activated venv needed, and cluster nodes sharing the file
# system use the same one); with --sdm conda, the job's conda environment's python with this checkout's src/.
IN_CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
RANKREPRO = wf.cli_command(sys.executable, source=Path(workflow.basedir).parent / "src" if IN_CONDA else None)


# ---------------------------------------------------------------------------------------------------------------------
# Settings files. The run, plot and claims jobs of an experiment read its settings file,
# results/<tier>/settings/<experiment>.<hash>.yaml: the part of the resolved tier config (tier file + --config
# overrides + schema defaults) that they read, and nothing else (rankrepro.pipeline.config.job_settings: the experiment's
# section without its `resources`, tier, device, output roots, and for experiments on real data the data cache and
# mirror; not `threads`, which Snakemake gives each job), named by the hash of that content. Rule experiment_settings
# writes it when a job needs it — at job time, never at parse time. So:
#   - an invocation with another config (even a dry run, beside a running one) names other files and never changes
#     what a running job reads; results always match the settings file their job was given;
#   - changing a value an experiment's jobs read changes the name of its settings file, which reruns exactly that
#     experiment (Snakemake's `input` rerun trigger: the set of input files changed); spelling out a default, or
#     changing `threads`, a run job's `resources` or another experiment's section, names the same file and reruns
#     nothing;
#   - the file is an ancient() input: its name is its content, so its modification time means nothing (a settings
#     job run again while its file exists reruns no job). The files belong to the results: a deleted one is written
#     again and, like any deleted intermediate file, reruns its experiment.
def settings_input(wildcards):
    """Input function of the run, plot and claims rules: the experiment's settings file (ancient, see above)."""
    return ancient(PLAN.settings_file[wildcards.experiment])


def run_priority(wildcards) -> int:
    """Snakemake priority of an experiment's run job (and of its settings job): its config's resources.priority."""
    return PLAN.resources[wildcards.experiment]["priority"]


# A local job that writes a few lines (a shell command: a `run:` job would re-parse the workflow in a subprocess).
localrules:
    experiment_settings,


rule experiment_settings:
    """Write the settings file of one experiment of this invocation's config (rankrepro.pipeline.config.settings_text refuses
    a file name whose hash is not that of the settings: such a target stops the DAG at once)."""
    output:
        settings=f"{RESULTS}/{SETTINGS_DIR}/{{experiment}}.{{hash}}.yaml",
    wildcard_constraints:
        experiment=wf.one_of(PLAN.experiments),
        hash="[0-9a-f]{16}",
    priority: run_priority  # the run job it gates starts as early as its priority says
    conda:
        CONDA_ENV
    params:
        text=lambda wildcards, output: settings_text(Path(output.settings).name, PLAN.settings[wildcards.experiment]),
    shell:
        "printf '%s' {params.text:q} > {output.settings}"
