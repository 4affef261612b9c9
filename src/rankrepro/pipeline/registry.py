"""The experiment registry: which experiments exist, in thesis order (the scorecard's order), and the module of each
under :mod:`rankrepro.experiments` (``<chapter>.<module>``). Pure data plus a lookup: the workflow reads the table at
parse time (without importing any experiment), the CLI loads one module by name. It imports no experiment module
statically (``get_experiment`` imports by name), so it sits on the pipeline floor; no code hash covers it, so
registering an experiment reruns none of the others.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from rankrepro.core.errors import ConfigError

#: experiment name -> module under rankrepro.experiments (``<chapter>.<module>``), in thesis order
EXPERIMENTS: dict[str, str] = {
    "dmf_2x2_norms_vs_rank": "ch1.dmf_2x2_norms_vs_rank",
    "dmf_init_scale_sweep": "ch1.dmf_init_scale_sweep",
    "dmf_perturbed_problem": "ch1.dmf_perturbed_problem",
    "dmf_larger_matrices": "ch1.dmf_larger_matrices",
    "tensor_completion_vs_linear": "ch1.tensor_completion_vs_linear",
    "tf_component_norms": "ch2.tf_component_norms",
    "tf_sensing_component_norms": "ch2.tf_sensing_component_norms",
    "tf_component_norms_appendix": "ch2.tf_component_norms_appendix",
    "tensor_rank_mnist": "ch2.tensor_rank_mnist",
    "incremental_rank_learning": "ch3.incremental_rank_learning",
    "incremental_rank_learning_sensing": "ch3.incremental_rank_learning_sensing",
    "htf_rank_along_tree": "ch3.htf_rank_along_tree",
    "is_same_class_cnn": "ch3.is_same_class_cnn",
    "pathfinder_cnn": "ch3.pathfinder_cnn",
    "is_same_class_gnn": "ch4.is_same_class_gnn",
    "edge_sparsification": "ch4.edge_sparsification",
    "hessian_rank_vs_width": "ch5.hessian_rank_vs_width",
    "hessian_rank_vs_depth": "ch5.hessian_rank_vs_depth",
    "hessian_rank_vs_sample_size": "ch5.hessian_rank_vs_sample_size",
    "hessian_rank_during_training": "ch5.hessian_rank_during_training",
    "hessian_rank_cnn": "ch5.hessian_rank_cnn",
}


def get_experiment(name: str) -> ModuleType:
    """The module of experiment ``name``; a :class:`ConfigError` listing the known names otherwise."""
    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment '{name}'; known experiments: {', '.join(EXPERIMENTS)}")
    return importlib.import_module(f"rankrepro.experiments.{EXPERIMENTS[name]}")
