"""Graph neural networks of chapter 4 and the graph mechanisms around them: the models
(:mod:`~rankrepro.gnn.models`) and their training (:mod:`~rankrepro.gnn.training`), the walk index
(:mod:`~rankrepro.gnn.walk_index`), edge-removal orders — random and WIS (:mod:`~rankrepro.gnn.wis`), spectral
(:mod:`~rankrepro.gnn.spectral_sparsify`), UGS (:mod:`~rankrepro.gnn.ugs`) — and the Is-Same-Class graphs
(:mod:`~rankrepro.gnn.is_same_class_graphs`). Imports only :mod:`rankrepro.core` and :mod:`rankrepro.data`; the
experiments import the modules themselves (this file imports nothing).
"""
