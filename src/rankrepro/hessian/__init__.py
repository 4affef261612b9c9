"""The rank of neural-network Hessian maps (chapter 5; Singh, Bachmann & Hofmann, 2021): exact Hessian maps of fully
connected networks, their numerical ranks and the closed-form predictions (:mod:`~rankrepro.hessian.maps`). Imports
only :mod:`rankrepro.core` and :mod:`rankrepro.data`; the experiments import the module itself (this file imports
nothing).
"""
