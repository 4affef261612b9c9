# The experiments' jobs: one rule set — run, plot (plot_table for an experiment that also writes a table beside its
# figure) and claims — for every experiment of every chapter, over the wildcards {chapter} and {experiment}. A chapter
# matches only its own experiments (wf.chapter_pattern), so every path below names exactly one experiment's job.
# The rules are thin: each calls the library's command line (src/rankrepro/cli.py); the maths lives in
# src/rankrepro/experiments/<experiment>.py. Paths, settings files, code hashes and resources come from the plan
# (common.smk). Each job's `code_hash` param covers the code that job runs and nothing else (wf.code_hash): a changed
# caption re-draws the figure without retraining; a changed training helper reruns the run jobs that use it.

CHAPTER = wf.chapter_pattern(PLAN.experiments)
WITH_TABLE = [name for name, info in PLAN.experiments.items() if info.figure_extras]
WITHOUT_TABLE = [name for name in PLAN.experiments if name not in WITH_TABLE]
# Run jobs that can use a GPU (wf.gpu_capable: chapters 3 and 5, unless the tier says device: cpu) run under rule
# run_gpu, the others under run: the same job, two rule names, so that a cluster profile can route run_gpu, and only
# it, to a GPU partition (profiles/slurm-gpu). Neither rule requests a GPU itself.
GPU_RUNS = [name for name, capable in PLAN.gpu.items() if capable]
CPU_RUNS = [name for name in PLAN.experiments if name not in GPU_RUNS]
# A run job's memory and runtime come from its experiment's `resources` block. A GPU-capable job also counts one
# `gpu_jobs`, a resource of this workflow's own (no executor reads it): `--resources gpu_jobs=1` runs one GPU job at a
# time on a one-GPU workstation; without it the count is unbounded.
RUN_RESOURCES = dict(
    mem_mb=lambda wildcards: PLAN.resources[wildcards.experiment]["mem_mb"],
    runtime=lambda wildcards: PLAN.resources[wildcards.experiment]["runtime"],
)
# Path patterns: results/<tier>/{chapter}/{experiment}, figures/<tier>/{chapter}/{experiment}, logs/<tier>/{chapter}/…
RESULT = str(wf.results_dir(TIER_CONFIG, "{chapter}", "{experiment}"))
FIGURE = str(wf.figure_path(TIER_CONFIG, "{chapter}", "{experiment}")).removesuffix(wf.FIGURE_SUFFIXES[0])
LOG = str(wf.log_stem(TIER_CONFIG, "{chapter}", "{experiment}"))
RESULT_FILES = dict(metrics=f"{RESULT}/{wf.METRICS_FILE}", summary=f"{RESULT}/{wf.SUMMARY_FILE}")


rule run:
    """Train/compute one experiment: metrics.csv (one row per run × logged step) and summary.json. Experiments on
    real data wait for their datasets (data.smk): fetched and checksummed once, shared by all. A killed job resumes
    from its checkpoints and cached batches, which the library ties to the settings and to the source of the modules
    their numbers depend on. The log of a failed or killed attempt is kept as <log>.1 (.2, …; wf.keep_failed_log)"""
    input:
        settings=settings_input,
        manifests=lambda wildcards: PLAN.manifests[wildcards.experiment],
    output:
        **RESULT_FILES,
    log:
        f"{LOG}.run.log",
    benchmark:
        f"{LOG}.run.benchmark.tsv"
    wildcard_constraints:
        chapter=CHAPTER,
        experiment=wf.one_of(CPU_RUNS),
    priority: run_priority
    conda:
        CONDA_ENV
    threads: THREADS
    resources:
        **RUN_RESOURCES,
    params:
        out=lambda wildcards: PLAN.results_dir(wildcards.experiment),
        progress=PROGRESS_FLAG,
        code_hash=lambda wildcards: PLAN.code_hash[wildcards.experiment]["run"],
    shell:
        wf.keep_failed_log(
            "{log:q}",
            f"{RANKREPRO} run {{wildcards.experiment}} --config {{input.settings}} --out {{params.out}} "
            "--threads {threads} {params.progress} --log {log:q}",
        )


use rule run as run_gpu with:
    wildcard_constraints:
        chapter=CHAPTER,
        experiment=wf.one_of(GPU_RUNS),
    resources:
        **RUN_RESOURCES,
        gpu_jobs=1,


# What the two plot rules share: the figure as an item of the HTML report (`snakemake --report`), in its chapter's
# category, with the caption workflow/report/figure.rst, which reads the params.
FIGURE_REPORT = dict(
    caption="../report/figure.rst",
    category=lambda wildcards: wf.CHAPTERS[wildcards.chapter].category,
    subcategory=lambda wildcards: f"§{PLAN.experiments[wildcards.experiment].section}",
    labels=lambda wildcards: {
        "section": f"§{PLAN.experiments[wildcards.experiment].section}",
        "experiment": wildcards.experiment,
        "tier": TIER,
    },
)
PLOT_PARAMS = dict(
    results=lambda wildcards: PLAN.results_dir(wildcards.experiment),
    code_hash=lambda wildcards: PLAN.code_hash[wildcards.experiment]["plot"],
    title=lambda wildcards: PLAN.experiments[wildcards.experiment].title,
    section=lambda wildcards: PLAN.experiments[wildcards.experiment].section,
    substitutions=lambda wildcards: PLAN.substitutions[wildcards.experiment],
)
PLOT_COMMAND = (
    f"{RANKREPRO} plot {{wildcards.experiment}} --config {{input.settings}} --results {{params.results}} "
    f"{PAPER_OPTION} --out {{output.png}} > {{log}} 2>&1"
)


rule plot:
    """Draw one experiment's figure (PNG + PDF) from its results only."""
    input:
        **RESULT_FILES,
        **PAPER_INPUT,
        settings=settings_input,
    output:
        png=report(f"{FIGURE}.png", **FIGURE_REPORT),
        pdf=f"{FIGURE}.pdf",
    log:
        f"{LOG}.plot.log",
    wildcard_constraints:
        chapter=CHAPTER,
        experiment=wf.one_of(WITHOUT_TABLE),
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        **PLOT_PARAMS,
    shell:
        PLOT_COMMAND


rule plot_table:
    """Draw the figure (PNG + PDF) of an experiment whose module declares FIGURE_EXTRAS (Table 1) and write its table
    beside it (markdown + CSV), from its results only."""
    input:
        **RESULT_FILES,
        **PAPER_INPUT,
        settings=settings_input,
    output:
        png=report(f"{FIGURE}.png", **FIGURE_REPORT),
        pdf=f"{FIGURE}.pdf",
        table_md=f"{FIGURE}{wf.TABLE_SUFFIXES[0]}",
        table_csv=f"{FIGURE}{wf.TABLE_SUFFIXES[1]}",
    log:
        f"{LOG}.plot.log",
    wildcard_constraints:
        chapter=CHAPTER,
        experiment=wf.one_of(WITH_TABLE),
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        **PLOT_PARAMS,
    shell:
        PLOT_COMMAND


rule claims:
    """Check the thesis's claims on one experiment's results: claims.json (verdict per claim)."""
    input:
        **RESULT_FILES,
        settings=settings_input,
    output:
        claims=f"{RESULT}/{wf.CLAIMS_FILE}",
    log:
        f"{LOG}.claims.log",
    wildcard_constraints:
        chapter=CHAPTER,
        experiment=wf.one_of(PLAN.experiments),
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        results=lambda wildcards: PLAN.results_dir(wildcards.experiment),
        code_hash=lambda wildcards: PLAN.code_hash[wildcards.experiment]["claims"],
    shell:
        f"{RANKREPRO} claims {{wildcards.experiment}} --config {{input.settings}} --results {{params.results}} "
        "--out {output.claims} > {log} 2>&1"
