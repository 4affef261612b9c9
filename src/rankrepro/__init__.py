"""rankrepro: reproduce the experiments of *Understanding Deep Learning via Notions of Rank* (Razin, 2024).

The library holds the mechanisms (factorizations, optimizers, rank measures, trainer, claims) and one module per
figure under :mod:`rankrepro.experiments`. It never imports Snakemake: the workflow calls :mod:`rankrepro.cli`.
"""

__version__ = "0.1.0"
