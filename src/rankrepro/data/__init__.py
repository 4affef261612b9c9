"""Real datasets: the registry and checksum-verified fetching into the data cache (:mod:`~rankrepro.data.registry`),
the readers of image and graph datasets (:mod:`~rankrepro.data.image_datasets`, :mod:`~rankrepro.data.graph_datasets`;
pickles read without unpickling by :mod:`~rankrepro.data.pickle_free`), what an experiment receives
(:mod:`~rankrepro.data.sources`) and the Is-Same-Class pairs drawn from a labelled set (:mod:`~rankrepro.data.pairs`).
Imports go one way, registry ← readers ← sources, and below only into :mod:`rankrepro.core`. This file imports
nothing: the workflow reads the registry at parse time and must not load torch.
"""
