# Chapter 1 — implicit regularization in deep matrix factorization is not a norm minimization (§1.1–§1.5).
# One run / plot / claims rule for every chapter-1 experiment of the tier (the {experiment} wildcard is limited to
# them); the commands are in common.smk, the maths in src/rankrepro/experiments/ch1/.

CH1 = experiments_of("ch1")

# Resources per experiment and tier: (mem_mb, runtime in minutes) of the run job. The default-tier
# budget is ≈ 1 h for the whole DAG on 2 cores; limits are generous so that a cluster never kills a job that would
# finish. Tiers not listed use the `paper` row. Override on a cluster with --set-resources ch1_run:runtime=….
CH1_RUN_RESOURCES = {
    "dmf_2x2_norms_vs_rank": {"smoke": (2000, 30), "default": (2000, 240), "paper": (2000, 240)},
    "dmf_init_scale_sweep": {"smoke": (2000, 30), "default": (2000, 240), "paper": (2000, 240)},
    "dmf_perturbed_problem": {"smoke": (2000, 30), "default": (2000, 240), "paper": (2000, 240)},
    "dmf_larger_matrices": {"smoke": (2000, 30), "default": (2000, 240), "paper": (2000, 240)},
    "tensor_completion_vs_linear": {"smoke": (4000, 30), "default": (4000, 240), "paper": (8000, 480)},
}


rule ch1_run:
    """Train/compute one chapter-1 experiment: metrics.csv (one row per run × logged step) and summary.json."""
    input:
        settings=settings_input,
    output:
        metrics=f"{RESULTS}/ch1/{{experiment}}/metrics.csv",
        summary=f"{RESULTS}/ch1/{{experiment}}/summary.json",
    log:
        f"{LOGS}/ch1/{{experiment}}.run.log",
    benchmark:
        f"{LOGS}/ch1/{{experiment}}.run.benchmark.tsv"
    wildcard_constraints:
        experiment=one_of(CH1),
    threads: THREADS
    priority: run_priority
    resources:
        mem_mb=run_resource(CH1_RUN_RESOURCES, 0),
        runtime=run_resource(CH1_RUN_RESOURCES, 1),
        gpu=gpu_request(False),
    params:
        out=lambda wildcards: results_dir(wildcards.experiment),
        progress=PROGRESS_FLAG,
        code_hash=lambda wildcards: RUN_CODE_HASH[wildcards.experiment],
    shell:
        RUN_COMMAND


rule ch1_plot:
    """Draw one chapter-1 figure (PNG + PDF) from the experiment's results only."""
    input:
        settings=settings_input,
        metrics=f"{RESULTS}/ch1/{{experiment}}/metrics.csv",
        summary=f"{RESULTS}/ch1/{{experiment}}/summary.json",
    output:
        png=report(
            f"{FIGURES}/ch1/{{experiment}}.png",
            caption="../report/figure.rst",
            category="Chapter 1: deep matrix factorization",
            subcategory=lambda wildcards: f"§{EXPERIMENT_INFO[wildcards.experiment]['section']}",
            labels=lambda wildcards: {
                "section": f"§{EXPERIMENT_INFO[wildcards.experiment]['section']}",
                "experiment": wildcards.experiment,
                "tier": TIER,
            },
        ),
        pdf=f"{FIGURES}/ch1/{{experiment}}.pdf",
    log:
        f"{LOGS}/ch1/{{experiment}}.plot.log",
    wildcard_constraints:
        experiment=one_of(CH1),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        results=lambda wildcards: results_dir(wildcards.experiment),
        code_hash=lambda wildcards: OUTPUT_CODE_HASH[wildcards.experiment],
        title=lambda wildcards: EXPERIMENT_INFO[wildcards.experiment]["title"],
        section=lambda wildcards: EXPERIMENT_INFO[wildcards.experiment]["section"],
        substitutions="none (chapter 1 uses synthetic problems only)",
    shell:
        PLOT_COMMAND


rule ch1_claims:
    """Check the chapter's claims on one experiment's results: claims.json (verdict per claim)."""
    input:
        settings=settings_input,
        metrics=f"{RESULTS}/ch1/{{experiment}}/metrics.csv",
        summary=f"{RESULTS}/ch1/{{experiment}}/summary.json",
    output:
        claims=f"{RESULTS}/ch1/{{experiment}}/claims.json",
    log:
        f"{LOGS}/ch1/{{experiment}}.claims.log",
    wildcard_constraints:
        experiment=one_of(CH1),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        results=lambda wildcards: results_dir(wildcards.experiment),
        code_hash=lambda wildcards: OUTPUT_CODE_HASH[wildcards.experiment],
    shell:
        CLAIMS_COMMAND
