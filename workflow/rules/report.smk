# The scorecard: every claims.json of the tier gathered into results/<tier>/scorecard.{md,json}.
# `snakemake --report results/<tier>/report.html` adds the figures (registered with report() in experiments.smk)
# and the scorecard to a self-contained HTML report.


rule scorecard:
    """Gather every claim of the tier, with its verdict, measured and reference values, into the scorecard."""
    input:
        claims=PLAN.all_claims(),
    output:
        md=report(
            SCORECARD_MD,
            caption="../report/scorecard.rst",
            category="Scorecard",
            labels={"file": "scorecard.md", "tier": TIER},
        ),
        json=SCORECARD_JSON,
    log:
        f"{LOGS}/scorecard.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        tier=TIER,
        code_hash=PLAN.scorecard_hash,
    shell:
        RANKREPRO + " scorecard --tier {params.tier} --out-md {output.md} --out-json {output.json} "
        "{input.claims} > {log} 2>&1"
