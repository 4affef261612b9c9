"""Registry of experiments: one module per figure/table of the thesis.

Every experiment module defines ``NAME``, ``CHAPTER``, ``SECTION``, ``TITLE`` and three functions:

- ``run(settings, out, ctx)``: train/compute and write ``out/metrics.csv`` and ``out/summary.json``; a module on
  real data also declares ``DATASETS = ("mnist", …)`` (the workflow fetches them first) and gets a fourth argument,
  a :class:`rankrepro.datasets.DataSource`;
- ``plot(results, figure_png, tier)``: draw the figure (PNG + PDF) from those files only;
- ``claims(results, tier)``: check the chapter's claims on those files, returning :class:`ClaimResult` records.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from rankrepro.errors import ConfigError

#: experiment name -> module under rankrepro.experiments, in thesis order
EXPERIMENTS: dict[str, str] = {
    "dmf_2x2_norms_vs_rank": "dmf_2x2_norms_vs_rank",
    "dmf_init_scale_sweep": "dmf_init_scale_sweep",
    "dmf_perturbed_problem": "dmf_perturbed_problem",
    "dmf_larger_matrices": "dmf_larger_matrices",
    "tensor_completion_vs_linear": "tensor_completion_vs_linear",
    "tf_component_norms": "tf_component_norms",
    "tf_sensing_component_norms": "tf_sensing_component_norms",
    "tensor_rank_mnist": "tensor_rank_mnist",
    "incremental_rank_learning": "incremental_rank_learning",
    "incremental_rank_learning_sensing": "incremental_rank_learning_sensing",
    "is_same_class_cnn": "is_same_class_cnn",
    "pathfinder_cnn": "pathfinder_cnn",
    "is_same_class_gnn": "is_same_class_gnn",
    "edge_sparsification": "edge_sparsification",
    "hessian_rank_vs_width": "hessian_rank_vs_width",
    "hessian_rank_vs_depth": "hessian_rank_vs_depth",
    "hessian_rank_vs_sample_size": "hessian_rank_vs_sample_size",
}


def get_experiment(name: str) -> ModuleType:
    """The module of experiment ``name``; a :class:`ConfigError` listing the known names otherwise."""
    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment '{name}'; known experiments: {', '.join(EXPERIMENTS)}")
    return importlib.import_module(f"rankrepro.experiments.{EXPERIMENTS[name]}")
