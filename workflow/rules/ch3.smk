# Chapter 3 — hierarchical tensor factorization and the locality of CNNs (Razin, Maman & Cohen 2022): §3.1 incremental
# rank learning in MF / TF / HTF (completion and sensing), §3.2 Is-Same-Class and Pathfinder with a ResNet-18 and the
# input-gradient-change regularizer. One run / plot / claims rule for every chapter-3 experiment of the tier; the
# commands are in common.smk, the maths in src/rankrepro/factorization/htf.py, src/rankrepro/cnn/ and
# src/rankrepro/experiments/ch3/. §3.2 run jobs cache every (range, λ, seed) run in results/<tier>/ch3/<experiment>/batches/,
# §3.1 jobs checkpoint their training, so an interrupted job resumes where it stopped.

CH3 = experiments_of("ch3")

# Resources per experiment and tier: (mem_mb, runtime in minutes) of the run job; generous limits (a cluster must
# never kill a job that would finish). Tiers not listed use the `paper` row. The §3.2 paper tier is a GPU job
# (hundreds of CPU-hours otherwise); every chapter-3 job asks for a GPU unless the tier says `device: cpu`.
CH3_RUN_RESOURCES = {
    "incremental_rank_learning": {"smoke": (2000, 15), "default": (3000, 60), "paper": (8000, 6 * 60)},
    "incremental_rank_learning_sensing": {"smoke": (2000, 15), "default": (3000, 60), "paper": (8000, 6 * 60)},
    "is_same_class_cnn": {"smoke": (3000, 15), "default": (6000, 120), "paper": (32000, 4 * 24 * 60)},
    "pathfinder_cnn": {"smoke": (3000, 15), "default": (6000, 120), "paper": (32000, 4 * 24 * 60)},
}


rule ch3_run:
    """Train one chapter-3 experiment: metrics.csv and summary.json. Is-Same-Class waits for its fallback dataset
    (data.smk); CIFAR-10, when configured as preferred, is tried at run time and its absence recorded."""
    input:
        settings=settings_input,
        manifests=lambda wildcards: dataset_manifests(wildcards.experiment),
    output:
        metrics=f"{RESULTS}/ch3/{{experiment}}/metrics.csv",
        summary=f"{RESULTS}/ch3/{{experiment}}/summary.json",
    log:
        f"{LOGS}/ch3/{{experiment}}.run.log",
    benchmark:
        f"{LOGS}/ch3/{{experiment}}.run.benchmark.tsv"
    wildcard_constraints:
        experiment=one_of(CH3),
    threads: THREADS
    priority: run_priority
    resources:
        mem_mb=run_resource(CH3_RUN_RESOURCES, 0),
        runtime=run_resource(CH3_RUN_RESOURCES, 1),
        gpu=gpu_request(True),
    params:
        out=lambda wildcards: results_dir(wildcards.experiment),
        progress=PROGRESS_FLAG,
        code_hash=lambda wildcards: RUN_CODE_HASH[wildcards.experiment],
    shell:
        RUN_COMMAND


rule ch3_plot:
    """Draw one chapter-3 figure (PNG + PDF) from the experiment's results only."""
    input:
        settings=settings_input,
        metrics=f"{RESULTS}/ch3/{{experiment}}/metrics.csv",
        summary=f"{RESULTS}/ch3/{{experiment}}/summary.json",
    output:
        png=report(
            f"{FIGURES}/ch3/{{experiment}}.png",
            caption="../report/figure.rst",
            category="Chapter 3: hierarchical tensor factorization and locality",
            subcategory=lambda wildcards: f"§{EXPERIMENT_INFO[wildcards.experiment]['section']}",
            labels=lambda wildcards: {
                "section": f"§{EXPERIMENT_INFO[wildcards.experiment]['section']}",
                "experiment": wildcards.experiment,
                "tier": TIER,
            },
        ),
        pdf=f"{FIGURES}/ch3/{{experiment}}.pdf",
    log:
        f"{LOGS}/ch3/{{experiment}}.plot.log",
    wildcard_constraints:
        experiment=one_of(CH3),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        results=lambda wildcards: results_dir(wildcards.experiment),
        code_hash=lambda wildcards: OUTPUT_CODE_HASH[wildcards.experiment],
        title=lambda wildcards: EXPERIMENT_INFO[wildcards.experiment]["title"],
        section=lambda wildcards: EXPERIMENT_INFO[wildcards.experiment]["section"],
        substitutions="stated in the figure's caption (dataset, sizes, network widths, epochs, seeds)",
    shell:
        PLOT_COMMAND


rule ch3_claims:
    """Check the chapter's claims on one experiment's results: claims.json (verdict per claim)."""
    input:
        settings=settings_input,
        metrics=f"{RESULTS}/ch3/{{experiment}}/metrics.csv",
        summary=f"{RESULTS}/ch3/{{experiment}}/summary.json",
    output:
        claims=f"{RESULTS}/ch3/{{experiment}}/claims.json",
    log:
        f"{LOGS}/ch3/{{experiment}}.claims.log",
    wildcard_constraints:
        experiment=one_of(CH3),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        results=lambda wildcards: results_dir(wildcards.experiment),
        code_hash=lambda wildcards: OUTPUT_CODE_HASH[wildcards.experiment],
    shell:
        CLAIMS_COMMAND
