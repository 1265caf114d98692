"""Scene data: Gaussians and PLY I/O, cameras, datasets and id masks."""

from structgs.scene.cameras import Camera, look_at
from structgs.scene.dataset import SceneDataset, load_dataset, load_init_points
from structgs.scene.gaussians import Gaussians
from structgs.scene.ply import PlyFormatError, read_ply, write_ply

__all__ = ["Camera", "Gaussians", "PlyFormatError", "SceneDataset", "load_dataset", "load_init_points",
           "look_at", "read_ply", "write_ply"]
