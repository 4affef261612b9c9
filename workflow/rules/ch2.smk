# Chapter 2 — implicit regularization in tensor factorization (§2.1 component-norm dynamics, §2.2 tensor rank of MNIST/Fashion-MNIST).
# One run / plot / claims rule for every chapter-2 experiment of the tier (the {experiment} wildcard is limited to
# them); the commands are in common.smk, the maths in src/rankrepro/experiments/ch2/.

CH2 = experiments_of("ch2")

# Resources per experiment and tier: (mem_mb, runtime in minutes) of the run job. The default-tier
# budget is ≈ 1 h for the whole DAG on 2 cores; limits are generous so that a cluster never kills a job that would
# finish. Tiers not listed use the `paper` row. Override on a cluster with --set-resources ch2_run:runtime=….
CH2_RUN_RESOURCES = {
    "tf_component_norms": {"smoke": (2000, 30), "default": (3000, 120), "paper": (3000, 240)},
    "tf_sensing_component_norms": {"smoke": (2000, 30), "default": (4000, 120), "paper": (4000, 240)},
    "tensor_rank_mnist": {"smoke": (4000, 30), "default": (8000, 120), "paper": (16000, 2880)},
}


rule ch2_run:
    """Train/compute one chapter-2 experiment: metrics.csv (one row per run × logged step) and summary.json.
    Experiments on real data wait for their datasets (data.smk): fetched and checksummed once, shared by all."""
    input:
        settings=settings_input,
        manifests=lambda wildcards: dataset_manifests(wildcards.experiment),
    output:
        metrics=f"{RESULTS}/ch2/{{experiment}}/metrics.csv",
        summary=f"{RESULTS}/ch2/{{experiment}}/summary.json",
    log:
        f"{LOGS}/ch2/{{experiment}}.run.log",
    benchmark:
        f"{LOGS}/ch2/{{experiment}}.run.benchmark.tsv"
    wildcard_constraints:
        experiment=one_of(CH2),
    threads: THREADS
    priority: run_priority
    resources:
        mem_mb=run_resource(CH2_RUN_RESOURCES, 0),
        runtime=run_resource(CH2_RUN_RESOURCES, 1),
        gpu=gpu_request(False),
    params:
        out=lambda wildcards: results_dir(wildcards.experiment),
        progress=PROGRESS_FLAG,
        code_hash=lambda wildcards: RUN_CODE_HASH[wildcards.experiment],
    shell:
        RUN_COMMAND


rule ch2_plot:
    """Draw one chapter-2 figure (PNG + PDF) from the experiment's results only."""
    input:
        settings=settings_input,
        metrics=f"{RESULTS}/ch2/{{experiment}}/metrics.csv",
        summary=f"{RESULTS}/ch2/{{experiment}}/summary.json",
    output:
        png=report(
            f"{FIGURES}/ch2/{{experiment}}.png",
            caption="../report/figure.rst",
            category="Chapter 2: tensor factorization",
            subcategory=lambda wildcards: f"§{EXPERIMENT_INFO[wildcards.experiment]['section']}",
            labels=lambda wildcards: {
                "section": f"§{EXPERIMENT_INFO[wildcards.experiment]['section']}",
                "experiment": wildcards.experiment,
                "tier": TIER,
            },
        ),
        pdf=f"{FIGURES}/ch2/{{experiment}}.pdf",
    log:
        f"{LOGS}/ch2/{{experiment}}.plot.log",
    wildcard_constraints:
        experiment=one_of(CH2),
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


rule ch2_claims:
    """Check the chapter's claims on one experiment's results: claims.json (verdict per claim)."""
    input:
        settings=settings_input,
        metrics=f"{RESULTS}/ch2/{{experiment}}/metrics.csv",
        summary=f"{RESULTS}/ch2/{{experiment}}/summary.json",
    output:
        claims=f"{RESULTS}/ch2/{{experiment}}/claims.json",
    log:
        f"{LOGS}/ch2/{{experiment}}.claims.log",
    wildcard_constraints:
        experiment=one_of(CH2),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        results=lambda wildcards: results_dir(wildcards.experiment),
        code_hash=lambda wildcards: OUTPUT_CODE_HASH[wildcards.experiment],
    shell:
        CLAIMS_COMMAND
