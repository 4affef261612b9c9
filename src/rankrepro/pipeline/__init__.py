"""What turns experiments into a reproducible pipeline: tier configurations and per-job settings
(:mod:`~rankrepro.pipeline.config`), claims and their verdicts (:mod:`~rankrepro.pipeline.claims`), the scorecard
(:mod:`~rankrepro.pipeline.report`), the one figure style (:mod:`~rankrepro.pipeline.plotting`) and the helpers the
Snakemake workflow calls (:mod:`~rankrepro.pipeline.workflow`: layout, tier plan, settings files, code hashes). Imports
only :mod:`rankrepro.core` and :mod:`rankrepro.data`; the experiments and the CLI import the modules themselves. This
file imports nothing: the workflow reads :mod:`~rankrepro.pipeline.workflow` at parse time without torch.
"""
