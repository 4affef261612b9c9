"""Convolutional networks of chapter 3 (§3.2) and their locality bias: the ResNet-18 layout
(:mod:`~rankrepro.cnn.resnet`), the input-gradient-change regularizer and the Is-Same-Class canvases
(:mod:`~rankrepro.cnn.locality`), training with the regularizer (:mod:`~rankrepro.cnn.locality_training`) and the
Pathfinder generator (:mod:`~rankrepro.cnn.pathfinder`). Imports only :mod:`rankrepro.core` and :mod:`rankrepro.data`;
the experiments import the modules themselves (this file imports nothing).
"""
