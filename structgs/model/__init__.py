"""The per-scene model (centroids, latents, decoder) and its persistence."""

from structgs.model.scene_info import SceneInfo
from structgs.model.scene_model import SceneModel, Splats

__all__ = ["SceneInfo", "SceneModel", "Splats"]
