"""Load foundation-model weights from a local directory only (nothing downloads at run time)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from structgs.utils.errors import InputError, MissingDependencyError, MissingFileError

# where to get each checkpoint (a Hugging Face repo with transformers-format weights)
CHECKPOINTS = {
    "sam2": "facebook/sam2.1-hiera-large (or -base-plus / -small / -tiny)",
    "sam2_video": "facebook/sam2.1-hiera-large (the same checkpoint serves images and video)",
    "grounding_dino": "IDEA-Research/grounding-dino-tiny (or -base)",
    "dinov2": "facebook/dinov2-small (or -base / -large)",
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def require_transformers():
    try:
        import transformers
    except ImportError as e:  # pragma: no cover - transformers is a core dependency
        raise MissingDependencyError("structgs masks needs `transformers>=5` (pip install 'transformers>=5,<6')") from e
    return transformers


def load_local(model_cls, weights: str | Path, kind: str, device: torch.device | str = "cpu"):
    """``model_cls.from_pretrained(weights)`` with a clear error when the directory is not a checkpoint."""
    require_transformers()
    path = Path(weights).expanduser()
    repo = CHECKPOINTS[kind]
    if not path.is_dir() or not (path / "config.json").is_file():
        raise MissingFileError(
            f"{path}: no {kind} checkpoint (config.json missing). Download {repo} once, e.g. "
            f"`huggingface-cli download {repo.split()[0]} --local-dir {path}`, and pass that directory; "
            "structgs never downloads weights itself.")
    try:
        model, info = model_cls.from_pretrained(str(path), local_files_only=True, output_loading_info=True)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: could not load a {kind} checkpoint ({e}); expected {repo}") from e
    missing = sorted(info.get("missing_keys", []))
    if missing:  # never run silently with randomly initialised parts
        raise InputError(f"{path}: the checkpoint lacks {len(missing)} weights of {model_cls.__name__} "
                         f"(e.g. {missing[0]}); expected {repo}")
    return model.to(device).eval()


def to_pixel_values(image: torch.Tensor, size: tuple[int, int], device: torch.device | str = "cpu") -> torch.Tensor:
    """(H, W, 3) float [0, 1] -> (1, 3, size) ImageNet-normalised model input."""
    if image.ndim != 3 or image.shape[-1] != 3:
        raise InputError(f"image: expected shape (H, W, 3), got {tuple(image.shape)}")
    x = image.permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((x - mean) / std).to(device)
