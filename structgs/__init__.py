"""structgs: structure-aware 3D Gaussian Splatting.

Layout: ``scene`` (data, cameras, PLY I/O), ``render`` (rasterization backends), ``data``
(the built-in scene), ``decoder`` (Scaffold-style attribute decoder), ``shaping``
(InfoNCE information shaping), ``edit`` (segmentation and edits by weight perturbation),
``eval`` (metrics).
"""

__version__ = "0.1.0"
