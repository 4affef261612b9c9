"""Registry of experiments: one module per figure/table of the thesis, in one package per chapter (``ch1`` … ``ch5``,
each with the helpers its experiments share in ``common`` or ``*_common`` modules; :mod:`.base` is shared by all).

Every experiment module defines ``NAME``, ``CHAPTER``, ``SECTION``, ``TITLE`` and three functions:

- ``run(settings, out, ctx)``: train/compute and write ``out/metrics.csv`` and ``out/summary.json``; a module on
  real data also declares ``DATASETS = ("mnist", …)`` (the workflow fetches them first) and gets a fourth argument,
  a :class:`rankrepro.data.sources.DataSource`;
- ``plot(results, figure_png, tier)``: draw the figure (PNG + PDF) from those files only;
- ``claims(results, tier)``: check the chapter's claims on those files, returning :class:`ClaimResult` records.

The registry (name → module, in thesis order) is :mod:`rankrepro.pipeline.registry`. This file imports nothing.
"""
