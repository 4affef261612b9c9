"""Real datasets: the registry and checksum-verified fetching into the data cache (:mod:`~rankrepro.data.registry`),
the readers of image and graph datasets (:mod:`~rankrepro.data.image_datasets`, :mod:`~rankrepro.data.graph_datasets`;
pickles read without unpickling by :mod:`~rankrepro.data.pickle_free`), and what an experiment receives
(:mod:`~rankrepro.data.sources`). Imports go one way, registry ← readers ← sources, and only into
:mod:`rankrepro.core`. This file imports nothing: the workflow reads the registry at parse time and must not load
torch.
"""
