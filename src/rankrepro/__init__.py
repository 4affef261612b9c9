"""rankrepro: reproduce the experiments of *Understanding Deep Learning via Notions of Rank* (Razin, 2024).

The library holds the mechanisms in topic packages — :mod:`rankrepro.core` (trainer, optimizers, checkpoints,
measures, io), :mod:`rankrepro.data` (datasets), :mod:`rankrepro.factorization`, :mod:`rankrepro.gnn`,
:mod:`rankrepro.cnn`, :mod:`rankrepro.hessian` and :mod:`rankrepro.pipeline` (config, claims, scorecard, figure
style) — and one module per figure under :mod:`rankrepro.experiments` (``ch1`` … ``ch5``). It never imports
Snakemake: the workflow calls :mod:`rankrepro.cli`.
"""

__version__ = "0.1.0"
