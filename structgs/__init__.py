"""structgs: structure-aware 3D Gaussian Splatting.

Layers, lowest first (no module imports one above its own; tests/test_layers.py checks):
``utils`` (atomic I/O, metrics, kNN) -> ``scene`` (datasets, cameras, PLY I/O) -> ``render``
(rasterization backends) -> ``decoder`` (Scaffold-style attribute decoder) and ``data`` (the
built-in scene) -> ``model`` (the per-scene model) -> ``training`` (fitting) and ``masks``
(mask sources, association) -> ``shaping`` (lifting, InfoNCE shaping) -> ``edit`` (segmentation
and edits by weight perturbation, voting) -> ``eval`` (edit leakage) -> ``pipeline`` (the jobs:
shape, segment, edit, masks, demo) -> ``cli``.
"""

__version__ = "0.1.0"
