# Chapter 4 — GNN interactions and the walk index (Razin, Verbin & Cohen 2023): Table 1 (Is-Same-Class on graphs,
# low vs high walk index) and edge sparsification (WIS against random, spectral and UGS removal).
# One run / plot / claims rule for every chapter-4 experiment of the tier; Table 1's plot job also writes the table
# (markdown + CSV) beside the figure. The commands are in common.smk, the maths in src/rankrepro/gnn/ and
# src/rankrepro/experiments/ch4/. A run job caches
# every training run (results/<tier>/ch4/<experiment>/batches/) and every removal order (…/orders/), so an
# interrupted job resumes run by run.

CH4 = experiments_of("ch4")
CH4_TABLES = [name for name in CH4 if EXPERIMENT_INFO[name]["figure_extras"]]

# Resources per experiment and tier: (mem_mb, runtime in minutes) of the run job; generous limits (a cluster must
# never kill a job that would finish). Tiers not listed use the `paper` row.
CH4_RUN_RESOURCES = {
    "is_same_class_gnn": {"smoke": (2000, 15), "default": (6000, 120), "paper": (24000, 4 * 24 * 60)},
    "edge_sparsification": {"smoke": (2000, 15), "default": (4000, 120), "paper": (16000, 4 * 24 * 60)},
}


rule ch4_run:
    """Train every model / arrangement / method / removal level / seed of one chapter-4 experiment: metrics.csv and
    summary.json. Datasets come from the data layer (data.smk), fetched and checksummed once; optional datasets
    that cannot be obtained are recorded as data-unavailable."""
    input:
        settings=settings_input,
        manifests=lambda wildcards: dataset_manifests(wildcards.experiment),
    output:
        metrics=f"{RESULTS}/ch4/{{experiment}}/metrics.csv",
        summary=f"{RESULTS}/ch4/{{experiment}}/summary.json",
    log:
        f"{LOGS}/ch4/{{experiment}}.run.log",
    benchmark:
        f"{LOGS}/ch4/{{experiment}}.run.benchmark.tsv"
    wildcard_constraints:
        experiment=one_of(CH4),
    threads: THREADS
    priority: run_priority
    resources:
        mem_mb=run_resource(CH4_RUN_RESOURCES, 0),
        runtime=run_resource(CH4_RUN_RESOURCES, 1),
        gpu=gpu_request(False),
    params:
        out=lambda wildcards: results_dir(wildcards.experiment),
        progress=PROGRESS_FLAG,
        code_hash=lambda wildcards: RUN_CODE_HASH[wildcards.experiment],
    shell:
        RUN_COMMAND


def ch4_plot_params():
    """Params shared by the two chapter-4 plot rules."""
    return dict(
        results=lambda wildcards: results_dir(wildcards.experiment),
        code_hash=lambda wildcards: OUTPUT_CODE_HASH[wildcards.experiment],
        title=lambda wildcards: EXPERIMENT_INFO[wildcards.experiment]["title"],
        section=lambda wildcards: EXPERIMENT_INFO[wildcards.experiment]["section"],
        substitutions="stated in the figure's caption (reduced epochs, seeds and levels in the smaller tiers)",
    )


def ch4_report(wildcards_path: str):
    """The figure as a report item of chapter 4."""
    return report(
        wildcards_path,
        caption="../report/figure.rst",
        category="Chapter 4: GNN interactions",
        subcategory=lambda wildcards: f"§{EXPERIMENT_INFO[wildcards.experiment]['section']}",
        labels=lambda wildcards: {
            "section": f"§{EXPERIMENT_INFO[wildcards.experiment]['section']}",
            "experiment": wildcards.experiment,
            "tier": TIER,
        },
    )


rule ch4_plot:
    """Draw one chapter-4 figure (PNG + PDF) from the experiment's results only."""
    input:
        settings=settings_input,
        metrics=f"{RESULTS}/ch4/{{experiment}}/metrics.csv",
        summary=f"{RESULTS}/ch4/{{experiment}}/summary.json",
    output:
        png=ch4_report(f"{FIGURES}/ch4/{{experiment}}.png"),
        pdf=f"{FIGURES}/ch4/{{experiment}}.pdf",
    log:
        f"{LOGS}/ch4/{{experiment}}.plot.log",
    wildcard_constraints:
        experiment=one_of([name for name in CH4 if name not in CH4_TABLES]),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        **ch4_plot_params(),
    shell:
        PLOT_COMMAND


rule ch4_plot_table:
    """Draw Table 1's bar figure (PNG + PDF) and write the table beside it (markdown + CSV), from the results only."""
    input:
        settings=settings_input,
        metrics=f"{RESULTS}/ch4/{{experiment}}/metrics.csv",
        summary=f"{RESULTS}/ch4/{{experiment}}/summary.json",
    output:
        png=ch4_report(f"{FIGURES}/ch4/{{experiment}}.png"),
        pdf=f"{FIGURES}/ch4/{{experiment}}.pdf",
        table_md=f"{FIGURES}/ch4/{{experiment}}.md",
        table_csv=f"{FIGURES}/ch4/{{experiment}}.csv",
    log:
        f"{LOGS}/ch4/{{experiment}}.plot.log",
    wildcard_constraints:
        experiment=one_of(CH4_TABLES),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        **ch4_plot_params(),
    shell:
        PLOT_COMMAND


rule ch4_claims:
    """Check the chapter's claims on one experiment's results: claims.json (verdict per claim)."""
    input:
        settings=settings_input,
        metrics=f"{RESULTS}/ch4/{{experiment}}/metrics.csv",
        summary=f"{RESULTS}/ch4/{{experiment}}/summary.json",
    output:
        claims=f"{RESULTS}/ch4/{{experiment}}/claims.json",
    log:
        f"{LOGS}/ch4/{{experiment}}.claims.log",
    wildcard_constraints:
        experiment=one_of(CH4),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        results=lambda wildcards: results_dir(wildcards.experiment),
        code_hash=lambda wildcards: OUTPUT_CODE_HASH[wildcards.experiment],
    shell:
        CLAIMS_COMMAND
