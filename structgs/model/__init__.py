"""The per-scene model (centroids, latents, decoder) and its persistence."""

from structgs.model.scene_model import SceneModel, Splats

__all__ = ["SceneModel", "Splats"]
