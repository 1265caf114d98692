"""Image and id-mask file reading with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from structgs.utils.errors import InputError, MissingFileError
from structgs.utils.io import atomic_write

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")


def find_image(stem: Path) -> Path:
    """``stem`` with whichever image extension exists (or ``stem`` itself if it has one)."""
    if stem.suffix in IMAGE_EXTS and stem.is_file():
        return stem
    for ext in IMAGE_EXTS:
        p = stem.with_name(stem.name + ext)
        if p.is_file():
            return p
    raise MissingFileError(f"{stem}: no image file with extension {IMAGE_EXTS}")


def load_rgb(path: Path, background: tuple[float, float, float] | None, size: tuple[int, int] | None = None) -> torch.Tensor:
    """(H, W, 3) float32 in [0, 1]; RGBA is composited on ``background`` (required then).

    ``size``: (width, height) to resize to (area filter), or None.
    """
    try:
        img = Image.open(path)
        img.load()
    except Exception as e:
        raise InputError(f"{path}: cannot read image ({e})") from e
    if size is not None and img.size != size:
        img = img.resize(size, Image.Resampling.BOX)
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        arr = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        if background is None:
            raise InputError(f"{path}: image has an alpha channel; choose a background colour")
        rgb = arr[..., :3] * arr[..., 3:] + np.asarray(background, np.float32) * (1.0 - arr[..., 3:])
    else:
        rgb = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(rgb))


def load_id_mask(path: Path, expected_size: tuple[int, int] | None = None) -> torch.Tensor:
    """(H, W) int64 ids from an 8- or 16-bit single-channel PNG.

    ``expected_size``: (width, height) the mask must have.
    """
    if not path.is_file():
        raise MissingFileError(f"{path}: mask file missing")
    try:
        img = Image.open(path)
        img.load()
    except Exception as e:
        raise InputError(f"{path}: cannot read mask ({e})") from e
    if img.mode not in ("L", "I", "I;16", "I;16B", "I;16L", "P", "1"):
        raise InputError(f"{path}: id masks must be single-channel 8/16-bit PNGs, got mode {img.mode}")
    if expected_size is not None and img.size != tuple(expected_size):
        raise InputError(f"{path}: mask is {img.size[0]}x{img.size[1]} but the image is "
                         f"{expected_size[0]}x{expected_size[1]}")
    arr = np.asarray(img).astype(np.int64)
    return torch.from_numpy(arr)


def save_id_mask(mask: torch.Tensor | np.ndarray, path: Path) -> None:
    """Write ids as an 8-bit PNG if they fit, else 16-bit."""
    arr = np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask).astype(np.int64)
    if arr.min() < 0 or arr.max() > 65535:
        raise InputError(f"{path}: mask ids must be in [0, 65535], got [{arr.min()}, {arr.max()}]")
    img = Image.fromarray(arr.astype(np.uint8), mode="L") if arr.max() < 256 else Image.fromarray(arr.astype(np.uint16))
    atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def save_rgb(image: torch.Tensor, path: Path, alpha: torch.Tensor | None = None) -> None:
    """Write an (H, W, 3) float image in [0, 1] (optionally with (H, W[,1]) alpha) as PNG."""
    img = image.detach().clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()
    if alpha is not None:
        a = alpha.detach().reshape(img.shape[0], img.shape[1], 1).clamp(0, 1).mul(255).round()
        img = np.concatenate([img, a.to(torch.uint8).cpu().numpy()], axis=-1)
    pil = Image.fromarray(img, mode="RGBA" if alpha is not None else "RGB")
    fmt = Image.registered_extensions().get(Path(path).suffix.lower(), "PNG")
    atomic_write(Path(path), lambda tmp: pil.save(tmp, format=fmt))
