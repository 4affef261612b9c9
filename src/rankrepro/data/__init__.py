"""Real datasets: the registry, checksum-verified fetching into the data cache and the readers of image and graph
datasets (:mod:`~rankrepro.data.datasets`, :mod:`~rankrepro.data.graph_datasets`), pickles read without unpickling
(:mod:`~rankrepro.data.pickle_free`). Imports only :mod:`rankrepro.core`. This file imports nothing: the workflow
reads the registry at parse time and must not load numpy's heavier users or torch.
"""
