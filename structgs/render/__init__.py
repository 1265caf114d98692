"""Rasterization backends behind one functional API (``rasterize``, ``contributions``)."""

from structgs.render.api import RenderOutput, contributions, rasterize, render_gaussians, resolve_backend
from structgs.render.torch_backend import Contributions

__all__ = ["Contributions", "RenderOutput", "contributions", "rasterize", "render_gaussians", "resolve_backend"]
