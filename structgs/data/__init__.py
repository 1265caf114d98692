"""The built-in procedural scene with ground-truth labels (no download needed)."""

from structgs.data.synthetic import SceneSpec, SyntheticScene, ensure_builtin_scene, generate_scene, write_scene

__all__ = ["SceneSpec", "SyntheticScene", "ensure_builtin_scene", "generate_scene", "write_scene"]
