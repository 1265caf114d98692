"""The built-in scene: a procedural multi-object 3DGS scene with ground-truth labels.

A textured ground disk and 3-6 objects (sphere, box, cylinder, torus, cone) resting on it,
each touching its neighbour; two objects share a base colour, so colour alone cannot
segment the scene. Every Gaussian has an object label (ground = 1, objects = 2..K+1; 0 is
reserved for "nothing" in masks). ``write_scene`` renders ground-truth RGB and id masks and
writes the Blender layout, so the scene loads through the same code path as user data.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from structgs.data import shapes
from structgs.data.mask_noise import MaskNoise, corrupt_masks
from structgs.render.api import rasterize, render_gaussians
from structgs.scene.cameras import Camera, intrinsics, look_at, opencv_to_opengl_c2w
from structgs.scene.gaussians import Gaussians, rgb_to_sh_dc
from structgs.scene.images import save_id_mask, save_rgb
from structgs.scene.ply import write_ply
from structgs.utils.io import save_npy, write_json
from structgs.utils.log import get_logger
from structgs.utils.errors import InputError, MissingFileError

log = get_logger("data")

SHAPES = ("sphere", "box", "cylinder", "torus", "cone", "sphere")
# base colours; index 0 and 3 are nearly identical on purpose
PALETTE = [(0.80, 0.25, 0.20), (0.20, 0.45, 0.80), (0.85, 0.70, 0.20), (0.78, 0.27, 0.22),
           (0.30, 0.70, 0.35), (0.60, 0.35, 0.70)]


@dataclass(frozen=True)
class SceneSpec:
    """Parameters of the procedural scene (all have defaults that make the demo scene)."""

    seed: int = 0
    """Random seed: the same seed gives the same scene, bit for bit."""
    num_objects: int = 4
    """Objects on the ground (3-6)."""
    num_gaussians: int = 20000
    """Total Gaussians (2000 to 5M; the demo uses 20k), split by surface area."""
    image_size: int = 128
    """Width and height of the rendered views."""
    num_train: int = 24
    """Training views (ring around the scene)."""
    num_test: int = 8
    """Test views (between the training azimuths)."""
    fov_deg: float = 50.0
    """Horizontal field of view."""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Background colour the RGBA images are meant to be composited on."""
    pretrained_noise: float = 1.0
    """How far ``gaussians.ply`` (the "pre-trained 3DGS") is from the ground truth that the
    images were rendered from: colour/position/scale noise of std 0.05/0.004/0.15 times this
    (about 33 dB PSNR at 1.0, like a well-trained 3DGS; 0 gives the exact scene)."""


PART_NAMES = {1: "ground", 2: "top", 3: "side"}
"""Parts of the built-in scene (affordance transfer's ground truth): the ground, the objects'
upward-facing surfaces (the box's lid, the cylinder's top, the sphere's cap: normal within
45 degrees of up) and the rest of each object. 0 = nothing."""


@dataclass
class SyntheticScene:
    gaussians: Gaussians
    labels: torch.Tensor  # (N,) int64, ground 1, objects 2..
    objects: list[dict]
    cameras: dict[str, list[Camera]]
    spec: SceneSpec = field(default_factory=SceneSpec)
    parts: torch.Tensor | None = None  # (N,) int64 part per Gaussian: PART_NAMES

    @property
    def num_labels(self) -> int:
        return int(self.labels.max()) + 1


def _texture(points: torch.Tensor, base: tuple[float, float, float], kind: int, g: torch.Generator) -> torch.Tensor:
    """Base colour modulated by a positional pattern (stripes, checker or blotches)."""
    base_t = torch.tensor(base)
    x, y, z = points.unbind(-1)
    if kind == 0:
        pat = torch.sin(18 * z + 6 * x)
    elif kind == 1:
        pat = torch.sign(torch.sin(14 * x) * torch.sin(14 * y) * torch.sin(14 * z))
    else:
        pat = torch.sin(9 * x + 2) * torch.cos(11 * y) + torch.sin(13 * z)
    rgb = base_t + 0.13 * pat[:, None] * torch.tensor([1.0, 0.8, 0.6])
    rgb = rgb + 0.03 * torch.randn(points.shape[0], 3, generator=g)
    return rgb.clamp(0.03, 0.97)


def _sample_object(shape: str, size: float, n: int, g: torch.Generator):
    """Points/normals centred at the origin with the base at z = -half_height; returns half height."""
    if shape == "sphere":
        p, nrm = shapes.sample_sphere(n, size, g)
        return p, nrm, size, size
    if shape == "box":
        half = (size * 0.9, size * 0.7, size * 0.8)
        p, nrm = shapes.sample_box(n, half, g)
        return p, nrm, half[2], math.hypot(half[0], half[1])
    if shape == "cylinder":
        p, nrm = shapes.sample_cylinder(n, size * 0.7, size * 1.1, g)
        return p, nrm, size * 1.1, size * 0.7
    if shape == "torus":
        p, nrm = shapes.sample_torus(n, size * 0.8, size * 0.3, g)
        return p, nrm, size * 0.3, size * 1.1
    if shape == "cone":
        p, nrm = shapes.sample_cone(n, size * 0.8, size * 2.0, g)
        return p, nrm, size * 1.0, size * 0.8
    raise InputError(f"unknown shape {shape}")


def _surface_area(shape: str, s: float) -> float:
    return {"sphere": 4 * math.pi * s * s, "box": 8 * (0.63 + 0.72 + 0.56) * s * s,
            "cylinder": 2 * math.pi * 0.7 * s * 2.2 * s + 2 * math.pi * (0.7 * s) ** 2,
            "torus": 4 * math.pi**2 * 0.8 * 0.3 * s * s,
            "cone": math.pi * 0.8 * s * math.hypot(0.8 * s, 2 * s) + math.pi * (0.8 * s) ** 2}[shape]


def make_cameras(spec: SceneSpec, target=(0.0, 0.0, 0.25), radius: float = 3.4) -> dict[str, list[Camera]]:
    size = spec.image_size
    f = 0.5 * size / math.tan(math.radians(spec.fov_deg) / 2)
    K = intrinsics(f, f, size / 2, size / 2)
    up = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    tgt = torch.tensor(target, dtype=torch.float64)
    out: dict[str, list[Camera]] = {}
    for split, n, offset in (("train", spec.num_train, 0.0), ("test", spec.num_test, 0.5)):
        cams = []
        for i in range(n):
            az = 2 * math.pi * (i + offset) / n
            el = math.radians(28 + 14 * ((i * 7) % 3) / 2) if split == "train" else math.radians(35)
            eye = tgt + radius * torch.tensor([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)],
                                              dtype=torch.float64)
            cams.append(Camera(f"{split}/r_{i}", look_at(eye, tgt, up).float(), K.clone(), size, size))
        out[split] = cams
    return out


def generate_scene(spec: SceneSpec | None = None) -> SyntheticScene:
    """Build the scene's Gaussians, labels and cameras from ``spec`` (deterministic per seed)."""
    spec = spec or SceneSpec()
    if not 3 <= spec.num_objects <= 6:
        raise InputError(f"num_objects must be 3..6, got {spec.num_objects}")
    if not 2000 <= spec.num_gaussians <= 5_000_000:
        raise InputError(f"num_gaussians must be 2000..5000000, got {spec.num_gaussians}")
    g = torch.Generator().manual_seed(spec.seed)
    sizes = [0.32 + 0.12 * float(torch.rand(1, generator=g)) for _ in range(spec.num_objects)]
    shapes_ = [SHAPES[(i + spec.seed) % len(SHAPES)] for i in range(spec.num_objects)]
    ground_radius = 1.9
    areas = [_surface_area(s, r) for s, r in zip(shapes_, sizes)] + [math.pi * ground_radius**2 * 0.35]
    counts = [max(300, int(spec.num_gaussians * a / sum(areas))) for a in areas]
    counts[-1] = spec.num_gaussians - sum(counts[:-1])

    # place objects on a ring, each touching the previous one (centre distance = sum of radii)
    objects, parts, labels = [], [], []
    angle = float(torch.rand(1, generator=g)) * 2 * math.pi
    ring = 0.75
    prev_r = None
    for k, (shape, size, n) in enumerate(zip(shapes_, sizes, counts)):
        pts, nrm, half_h, r_xy = _sample_object(shape, size, n, g)
        if prev_r is not None:
            # advance along the ring so that the bounding circles touch (chord = r_prev + r_xy)
            chord = 0.98 * (prev_r + r_xy)
            angle += 2 * math.asin(min(1.0, chord / (2 * ring)))
        centre = torch.tensor([ring * math.cos(angle), ring * math.sin(angle), half_h])
        prev_r = r_xy
        base = PALETTE[k % len(PALETTE)]
        rgb = _texture(pts, base, k % 3, g)
        parts.append((pts + centre, nrm, rgb, math.sqrt(_surface_area(shape, size) / n)))
        labels.append(torch.full((n,), k + 2, dtype=torch.int64))
        objects.append({"id": k + 2, "name": f"{shape}_{k}", "shape": shape, "base_color": list(base),
                        "center": [round(float(c), 4) for c in centre]})
    pts, nrm = shapes.sample_disk(counts[-1], ground_radius, g)
    checker = torch.sign(torch.sin(6 * pts[:, 0]) * torch.sin(6 * pts[:, 1]))
    rgb = (torch.tensor([0.55, 0.55, 0.5]) + 0.12 * checker[:, None] + 0.03 * torch.randn(counts[-1], 3, generator=g))
    parts.append((pts, nrm, rgb.clamp(0, 1), math.sqrt(math.pi * ground_radius**2 / counts[-1])))
    labels.append(torch.full((counts[-1],), 1, dtype=torch.int64))
    objects.insert(0, {"id": 1, "name": "ground", "shape": "disk", "base_color": [0.55, 0.55, 0.5], "center": [0, 0, 0]})

    means = torch.cat([p[0] for p in parts])
    normals = torch.cat([p[1] for p in parts])
    rgb = torch.cat([p[2] for p in parts])
    spacing = torch.cat([torch.full((p[0].shape[0],), p[3]) for p in parts])
    tangential = 0.75 * spacing
    log_scales = torch.log(torch.stack([tangential, tangential, 0.12 * tangential], -1))
    log_scales = log_scales + 0.1 * torch.randn(log_scales.shape, generator=g)
    quats = shapes.quat_from_z_to(normals)
    opacity_logits = torch.full((means.shape[0],), math.log(0.97 / 0.03))
    gaussians = Gaussians(means.float(), quats.float(), log_scales.float(), opacity_logits.float(),
                          rgb_to_sh_dc(rgb.float())[:, None, :].contiguous())
    labels_all = torch.cat(labels)
    parts_all = torch.where(labels_all == 1, 1, torch.where(normals[:, 2] > math.sqrt(0.5), 2, 3))
    return SyntheticScene(gaussians, labels_all, objects, make_cameras(spec), spec, parts_all.long())


@torch.no_grad()
def render_labels(gaussians, labels: torch.Tensor, camera: Camera, num_labels: int,
                  alpha_threshold: float = 0.5) -> torch.Tensor:
    """(H, W) id mask: the label with the largest blended weight; 0 where alpha < threshold.
    ``gaussians``: anything with means, quats, scales and opacities (a decoded model's splats too)."""
    onehot = torch.nn.functional.one_hot(labels, num_labels).to(gaussians.means.dtype)
    out = rasterize(gaussians.means, gaussians.quats, gaussians.scales, gaussians.opacities, onehot, camera,
                    backend="torch")
    ids = out.image.argmax(-1)
    return torch.where(out.alpha[..., 0] >= alpha_threshold, ids, torch.zeros_like(ids))


def write_scene(scene: SyntheticScene, out_dir: str | Path, progress: bool = True) -> Path:
    """Render ground truth and write the Blender layout.

    Also writes ``gaussians.ply`` (the pre-trained 3DGS a user would bring; see
    ``SceneSpec.pretrained_noise``), ``gaussians_gt.ply`` (what the images were rendered from),
    ``labels.npy`` (object id per Gaussian, same order in both PLYs), ``parts.npy`` and
    ``parts/`` (part per Gaussian and per pixel: :data:`PART_NAMES`), ``points3d.ply`` (a sparse
    SfM-like point cloud for ``--init``), ``sam_masks/`` (the ground-truth ``masks/`` made
    SAM-like per view: merges, splits, 1-2 px boundary jitter, ids permuted; see
    ``mask_noise``) and ``scene.json``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    g = scene.gaussians
    f = scene.cameras["train"][0].K[0, 0].item()
    w = scene.cameras["train"][0].width
    for split, cams in scene.cameras.items():
        frames = []
        for cam in tqdm(cams, desc=f"rendering {split} ground truth", disable=not progress, leave=False):
            r = render_gaussians(g, cam, background=None, backend="torch")
            a = r.alpha[..., 0]
            # straight (un-premultiplied) colour + alpha: compositing on any background is exact
            rgb = r.image / a.clamp_min(1e-6)[..., None]
            save_rgb(rgb, out / f"{cam.name}.png", alpha=a)
            save_id_mask(render_labels(g, scene.labels, cam, scene.num_labels), out / "masks" / f"{cam.name}.png")
            if scene.parts is not None:
                save_id_mask(render_labels(g, scene.parts, cam, len(PART_NAMES) + 1), out / "parts" / f"{cam.name}.png")
            c2w = opencv_to_opengl_c2w(torch.linalg.inv(cam.world_to_camera.double()))
            frames.append({"file_path": f"./{cam.name}", "transform_matrix": c2w.tolist()})
        write_json(out / f"transforms_{split}.json", {"camera_angle_x": 2 * math.atan(0.5 * w / f), "frames": frames})
    write_ply(g, out / "gaussians_gt.ply")
    write_ply(degrade(g, scene.spec.pretrained_noise, scene.spec.seed), out / "gaussians.ply")
    save_npy(out / "labels.npy", scene.labels.numpy())
    if scene.parts is not None:
        save_npy(out / "parts.npy", scene.parts.numpy())
    _write_point_cloud(g, out / "points3d.ply", scene.spec.seed)
    corrupt_masks(out / "masks", out / "sam_masks", MaskNoise(), seed=scene.spec.seed)
    write_json(out / "scene.json", {"generator": "structgs.data.synthetic", "spec": scene.spec.__dict__,
                                    "num_gaussians": len(g), "objects": scene.objects,
                                    "label_convention": "0 = nothing, 1 = ground, 2.. = objects",
                                    "parts": {str(k): v for k, v in PART_NAMES.items()},
                                    "sam_masks": {"noise": asdict(MaskNoise()), "seed": scene.spec.seed}})
    log.info("wrote the built-in scene (%d Gaussians, %d objects) to %s", len(g), len(scene.objects) - 1, out)
    return out


def degrade(g: Gaussians, amount: float, seed: int) -> Gaussians:
    """The ground truth with noise: a stand-in for an imperfectly trained 3DGS (same order, same labels)."""
    if amount == 0:
        return g
    gen = torch.Generator().manual_seed(seed + 2)
    n = len(g)
    rgb = (g.rgb_dc + 0.05 * amount * torch.randn(n, 3, generator=gen)).clamp(0.0, 1.0)
    return Gaussians(g.means + 0.004 * amount * torch.randn(n, 3, generator=gen), g.quats,
                     g.log_scales + 0.15 * amount * torch.randn(n, 3, generator=gen), g.opacity_logits,
                     rgb_to_sh_dc(rgb)[:, None, :].contiguous())


def _write_point_cloud(g: Gaussians, path: Path, seed: int, n: int = 4000) -> None:
    """An SfM-like sparse, noisy point cloud (x y z red green blue) for ``--init``."""
    from plyfile import PlyData, PlyElement

    gen = torch.Generator().manual_seed(seed + 1)
    idx = torch.randperm(len(g), generator=gen)[:n]
    xyz = g.means[idx] + 0.01 * torch.randn(idx.numel(), 3, generator=gen)
    rgb = (g.rgb_dc[idx].clamp(0, 1) * 255).round().to(torch.uint8)
    arr = np.empty(idx.numel(), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    for i, k in enumerate("xyz"):
        arr[k] = xyz[:, i].numpy()
    for i, k in enumerate(("red", "green", "blue")):
        arr[k] = rgb[:, i].numpy()
    PlyData([PlyElement.describe(arr, "vertex")]).write(str(path))


def ensure_builtin_scene(out_dir: str | Path, spec: SceneSpec | None = None, progress: bool = True) -> Path:
    """Generate the scene into ``out_dir`` unless a complete one with the same spec is there."""
    out = Path(out_dir)
    spec = spec or SceneSpec()
    meta = out / "scene.json"
    if meta.is_file():
        try:
            written = json.loads(meta.read_text())
            if written.get("spec") == json.loads(json.dumps(spec.__dict__)) and "parts" in written:
                return out
        except json.JSONDecodeError:
            pass
    return write_scene(generate_scene(spec), out, progress)


def shuffle_mask_ids(masks_dir: str | Path, out_dir: str | Path, seed: int = 0, id_range: int = 200) -> Path:
    """Copy id masks with ids permuted independently in every view (like raw per-view SAM output).

    Id 0 ("nothing") is kept; other ids map to random distinct values in [1, id_range).
    """
    from structgs.scene.images import load_id_mask

    masks_dir, out_dir = Path(masks_dir), Path(out_dir)
    if out_dir.resolve() == masks_dir.resolve():
        raise InputError("shuffle_mask_ids would overwrite its input masks")
    gen = torch.Generator().manual_seed(seed)
    files = sorted(masks_dir.rglob("*.png"))
    if not files:
        raise MissingFileError(f"{masks_dir}: no mask PNGs")
    for f in files:
        m = load_id_mask(f)
        ids = [int(i) for i in m.unique() if i != 0]
        new = (torch.randperm(id_range - 1, generator=gen)[: len(ids)] + 1).tolist()
        out = torch.zeros_like(m)
        for old, nid in zip(ids, new):
            out[m == old] = nid
        save_id_mask(out, out_dir / f.relative_to(masks_dir))
    return out_dir
