# Chapter 5 — rank of neural-network Hessian maps (Singh, Bachmann & Hofmann 2021): ranks of H_L, H_O, H_F at
# initialisation vs width (§5.1), depth (§5.2) and sample size (§5.3), against the closed forms.
# One run / plot / claims rule for every chapter-5 experiment of the tier (the {experiment} wildcard is limited to
# them); the commands are in common.smk, the maths in src/rankrepro/hessian/maps.py and
# src/rankrepro/experiments/ch5/. A run job caches every sweep point (results/<tier>/ch5/<experiment>/
# batches/), so an interrupted job resumes point by point.

CH5 = experiments_of("ch5")

# Resources per experiment and tier: (mem_mb, runtime in minutes) of the run job. The default-tier
# budget is ≈ 1 h for the whole DAG on 2 cores; limits are generous so that a cluster never kills a job that would
# finish. Tiers not listed use the `paper` row. Override on a cluster with --set-resources ch5_run:runtime=….
# Measured on 1 thread (default tier, maps restricted to their range): width 81 s / 1.1 GB, depth 144 s / 1.4 GB,
# sample size 100 s / 0.6 GB (CPU time / peak RSS).
CH5_RUN_RESOURCES = {
    "hessian_rank_vs_width": {"smoke": (2000, 15), "default": (2500, 30), "paper": (6000, 180)},
    "hessian_rank_vs_depth": {"smoke": (2000, 15), "default": (3000, 45), "paper": (8000, 360)},
    "hessian_rank_vs_sample_size": {"smoke": (2000, 15), "default": (2000, 30), "paper": (4000, 180)},
}


rule ch5_run:
    """Compute one chapter-5 sweep: metrics.csv (one row per point × Hessian) and summary.json; the eigen- and
    singular-value decompositions of the maps (restricted to a subspace that holds their range) run on a GPU when the
    tier's device allows one (`gpu` resource), else on the CPU threads.
    Experiments on real data wait for their datasets (data.smk): fetched and checksummed once, shared by all."""
    input:
        settings=settings_input,
        manifests=lambda wildcards: dataset_manifests(wildcards.experiment),
    output:
        metrics=f"{RESULTS}/ch5/{{experiment}}/metrics.csv",
        summary=f"{RESULTS}/ch5/{{experiment}}/summary.json",
    log:
        f"{LOGS}/ch5/{{experiment}}.run.log",
    benchmark:
        f"{LOGS}/ch5/{{experiment}}.run.benchmark.tsv"
    wildcard_constraints:
        experiment=one_of(CH5),
    threads: THREADS
    priority: run_priority
    resources:
        mem_mb=run_resource(CH5_RUN_RESOURCES, 0),
        runtime=run_resource(CH5_RUN_RESOURCES, 1),
        gpu=gpu_request(True),
    params:
        out=lambda wildcards: results_dir(wildcards.experiment),
        progress=PROGRESS_FLAG,
        code_hash=lambda wildcards: RUN_CODE_HASH[wildcards.experiment],
    shell:
        RUN_COMMAND


rule ch5_plot:
    """Draw one chapter-5 figure (PNG + PDF) from the experiment's results only."""
    input:
        settings=settings_input,
        metrics=f"{RESULTS}/ch5/{{experiment}}/metrics.csv",
        summary=f"{RESULTS}/ch5/{{experiment}}/summary.json",
    output:
        png=report(
            f"{FIGURES}/ch5/{{experiment}}.png",
            caption="../report/figure.rst",
            category="Chapter 5: Hessian rank",
            subcategory=lambda wildcards: f"§{EXPERIMENT_INFO[wildcards.experiment]['section']}",
            labels=lambda wildcards: {
                "section": f"§{EXPERIMENT_INFO[wildcards.experiment]['section']}",
                "experiment": wildcards.experiment,
                "tier": TIER,
            },
        ),
        pdf=f"{FIGURES}/ch5/{{experiment}}.pdf",
    log:
        f"{LOGS}/ch5/{{experiment}}.plot.log",
    wildcard_constraints:
        experiment=one_of(CH5),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        results=lambda wildcards: results_dir(wildcards.experiment),
        code_hash=lambda wildcards: OUTPUT_CODE_HASH[wildcards.experiment],
        title=lambda wildcards: EXPERIMENT_INFO[wildcards.experiment]["title"],
        section=lambda wildcards: EXPERIMENT_INFO[wildcards.experiment]["section"],
    shell:
        PLOT_COMMAND


rule ch5_claims:
    """Check the chapter's claims on one experiment's results: claims.json (verdict per claim)."""
    input:
        settings=settings_input,
        metrics=f"{RESULTS}/ch5/{{experiment}}/metrics.csv",
        summary=f"{RESULTS}/ch5/{{experiment}}/summary.json",
    output:
        claims=f"{RESULTS}/ch5/{{experiment}}/claims.json",
    log:
        f"{LOGS}/ch5/{{experiment}}.claims.log",
    wildcard_constraints:
        experiment=one_of(CH5),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        results=lambda wildcards: results_dir(wildcards.experiment),
        code_hash=lambda wildcards: OUTPUT_CODE_HASH[wildcards.experiment],
    shell:
        CLAIMS_COMMAND
