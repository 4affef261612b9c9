# Real datasets: one job per dataset fetches its files into the data cache (tier config `data_cache`), from the
# offline mirror (`data_mirror` / $RANKREPRO_DATA_MIRROR) or else the canonical URLs, verifying every MD5
# (src/rankrepro/data/registry.py). Its output, <data_cache>/<dataset>/MANIFEST.json, is written last; a run rule
# depends on it with `input: manifests=lambda wildcards: dataset_manifests(wildcards.experiment)` (common.smk).

import re

from rankrepro.core.io import fingerprint
from rankrepro.data.registry import resolve_mirror

for _name, _spec in DATASET_REGISTRY.items():
    if _spec.folder != _name:
        raise WorkflowError(f"dataset '{_name}' has cache folder '{_spec.folder}'; rule data_fetch needs them equal")

# Refetch when a dataset's registry entry changes (files, checksums), not on unrelated edits of the library.
DATASET_HASH = {
    name: fingerprint([[f.name, f.md5, f.mirror_name, f.gzipped] for f in spec.files])
    for name, spec in DATASET_REGISTRY.items()
}


# The mirror the job fetches from: $RANKREPRO_DATA_MIRROR, else the config key data_mirror (resolved here as the CLI
# would; none: the canonical URLs only). It is not a `params:` value on purpose: it says where verified data comes from,
# not what the data is (every file is MD5-checked), so moving the mirror must not refetch and rerun every experiment
# on real data. The shell command reads this global when the job is formatted, in the invocation that runs it.
_mirror = resolve_mirror(TIER_CONFIG["data_mirror"])
DATA_MIRROR_OPTION = "" if _mirror is None else f"--mirror {shlex.quote(str(_mirror))}"


# I/O bound (a few MB to a few hundred MB): run on the submitting host, which is the one with network access on most
# clusters.
localrules:
    data_fetch,


rule data_fetch:
    """Fetch one dataset into the data cache (mirror first, then its URLs), checksum-verified; MANIFEST.json last."""
    output:
        manifest=f"{DATA_CACHE}/{{dataset}}/MANIFEST.json",
    log:
        f"{LOGS}/data/{{dataset}}.log",
    wildcard_constraints:
        dataset=one_of([re.escape(name) for name in DATASET_REGISTRY]),
    threads: 1
    priority: 100  # quick, and it gates most of the long jobs
    resources:
        mem_mb=500,
        runtime=60,
    params:
        cache=DATA_CACHE,
        files_hash=lambda wildcards: DATASET_HASH[wildcards.dataset],
    shell:
        RANKREPRO + " data fetch {wildcards.dataset} --cache {params.cache} {DATA_MIRROR_OPTION} > {log} 2>&1"
