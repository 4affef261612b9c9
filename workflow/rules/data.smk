# Real datasets: one job per dataset fetches its files into the data cache (tier config `data_cache`), from the
# offline mirror (`data_mirror` / $RANKREPRO_DATA_MIRROR) or else the canonical URLs, verifying every MD5
# (src/rankrepro/datasets.py). Its output, <data_cache>/<dataset>/MANIFEST.json, is written last; a run job waits for
# the manifests of the datasets its experiment reads (PLAN.manifests, rankrepro.pipeline.workflow.dataset_manifests).

from rankrepro.data.registry import DATASETS as DATASET_REGISTRY

# The mirror the job fetches from: $RANKREPRO_DATA_MIRROR, else the config key data_mirror (resolved here as the CLI
# would; none: the canonical URLs only). It is not a `params:` value on purpose: it says where verified data comes from,
# not what the data is (every file is MD5-checked), so moving the mirror must not refetch and rerun every experiment
# on real data. The shell command reads this global when the job is formatted, in the invocation that runs it.
DATA_MIRROR_OPTION = wf.mirror_option(TIER_CONFIG["data_mirror"])


# I/O bound (a few MB to a few hundred MB): run on the submitting host, which is the one with network access on most
# clusters.
localrules:
    data_fetch,


rule data_fetch:
    """Fetch one dataset into the data cache (mirror first, then its URLs), checksum-verified; MANIFEST.json last."""
    output:
        manifest=wf.manifest_path(DATA_CACHE, "{dataset}"),
    log:
        f"{LOGS}/data/{{dataset}}.log",
    wildcard_constraints:
        dataset=wf.one_of(DATASET_REGISTRY),
    priority: 100  # quick, and it gates most of the long jobs
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=500,
        runtime=60,
    params:
        cache=DATA_CACHE,
        # refetch when the dataset's registry entry (files, checksums) changes, not on unrelated edits of the library
        files_hash=lambda wildcards: wf.dataset_hash(DATASET_REGISTRY[wildcards.dataset]),
    shell:
        RANKREPRO + " data fetch {wildcards.dataset} --cache {params.cache} {DATA_MIRROR_OPTION} > {log} 2>&1"
