"""Chapter 4 — GNNs model interactions along walks: Is-Same-Class on graphs with low and high walk index (§4.1,
Table 1) and edge sparsification by WIS against random, spectral and UGS removal (§4.2).
"""
