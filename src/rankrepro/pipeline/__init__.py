"""What turns experiments into a reproducible pipeline: tier configurations and per-job settings
(:mod:`~rankrepro.pipeline.config`), claims and their verdicts (:mod:`~rankrepro.pipeline.claims`), the scorecard
(:mod:`~rankrepro.pipeline.report`) and the one figure style (:mod:`~rankrepro.pipeline.plotting`). Imports only
:mod:`rankrepro.core` and :mod:`rankrepro.data`; the experiments and the CLI import the modules themselves. This file
imports nothing: the workflow reads :mod:`~rankrepro.pipeline.config` at parse time, and the run jobs' code hashes
leave plotting and claims out (a figure tweak must not retrain).
"""
