"""The per-scene model: centroids + latents + decoder, rendered through the render backends.

Saved like diffusers pipelines: ``save_pretrained(dir)`` writes the weights
(``model-<content hash>.safetensors``) and then ``config.json`` (plain JSON) naming them, so a
kill at any point leaves the previous save or the new one, never new weights under an old
config; ``from_pretrained(dir)`` checks format, version and shapes.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from safetensors.torch import load_file, save_file
from torch import nn

import structgs
from structgs.decoder import AttributeDecoder, DecoderConfig
from structgs.decoder.config import BRANCHES
from structgs.model.activation_cache import ActivationCache
from structgs.model.scene_info import SceneInfo
from structgs.render.api import RenderOutput, rasterize
from structgs.scene.cameras import Camera
from structgs.scene.gaussians import Gaussians
from structgs.utils.io import atomic_write, write_json
from structgs.utils.errors import InputError, MissingFileError
from structgs.utils.indexing import select_rows

FORMAT = "structgs-scene-model"
FORMAT_VERSION = 1
CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class Splats:
    """Activated Gaussians ready to rasterize (all (N, ...))."""

    means: torch.Tensor
    quats: torch.Tensor
    scales: torch.Tensor
    opacities: torch.Tensor
    colors: torch.Tensor
    offsets: torch.Tensor  # motion-branch offsets already included in ``means``


@dataclass(frozen=True)
class Geometry:
    """Activated Gaussians without their colours (all (N, ...)): what visibility, blending
    weights and lifting need."""

    means: torch.Tensor
    quats: torch.Tensor
    scales: torch.Tensor
    opacities: torch.Tensor


def fibonacci_directions(n: int = 16) -> torch.Tensor:
    i = torch.arange(n, dtype=torch.float64) + 0.5
    phi = torch.acos(1 - 2 * i / n)
    theta = math.pi * (1 + 5**0.5) * i
    return torch.stack([torch.cos(theta) * torch.sin(phi), torch.sin(theta) * torch.sin(phi), torch.cos(phi)], -1).float()


GEOMETRY_BRANCHES = ("opacity", "scale", "rotation", "motion")
"""The branches that place and shape the Gaussians (colour is the other one)."""
EXPLICIT_ACTIVATION = {"color": torch.sigmoid, "opacity": torch.sigmoid, "scale": torch.exp, "rotation": lambda q: q}
"""How a branch the decoder lacks is activated from its stored (explicit) values."""


class DirectOverrides(nn.Module):
    """Per-Gaussian direct edits (the voting baseline's, structgs.edit.direct): a factor on the
    decoded opacity, a colour that replaces the decoded one where ``color_mask`` is 1, and an
    offset added to the mean. Identity by default."""

    def __init__(self, num_gaussians: int):
        super().__init__()
        n = num_gaussians
        self.register_buffer("opacity", torch.ones(n))
        self.register_buffer("color", torch.zeros(n, 3))
        self.register_buffer("color_mask", torch.zeros(n))
        self.register_buffer("offset", torch.zeros(n, 3))

    def apply(self, opacity: torch.Tensor, color: torch.Tensor, offsets: torch.Tensor,
              index: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (self.apply_to("opacity", opacity, index), self.apply_to("color", color, index),
                self.apply_to("motion", offsets, index))

    def apply_to(self, branch: str, decoded: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        """The direct edits of one decoded attribute: opacity (B,), color (B, 3) or motion offsets (B, 3)."""
        if branch == "opacity":
            return decoded * select_rows(self.opacity, index)
        if branch == "color":
            return self.blend_color(decoded, index)
        if branch == "motion":
            return decoded + select_rows(self.offset, index)
        raise InputError(f"direct edits change color, opacity or motion, not '{branch}'")

    def blend_color(self, color: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        """``color`` where no direct colour edit applies, the edit's colour where one does."""
        cm = select_rows(self.color_mask, index)[:, None]
        return color * (1 - cm) + select_rows(self.color, index) * cm


LEGACY_KEYS = {f"override_{k}": f"overrides.{k}" for k in ("opacity", "color", "color_mask", "offset")}
"""State-dict names of the overrides in runs saved before they were grouped."""


class SceneModel(nn.Module):
    """N Gaussians: centroids mu_i and latents f_i (optimised directly) decoded by F_theta."""

    def __init__(self, config: DecoderConfig, num_gaussians: int, meta: dict[str, Any] | None = None,
                 scene: SceneInfo | None = None):
        super().__init__()
        self.scene = scene or SceneInfo()  # typed statistics of the fitted scene
        self.meta: dict[str, Any] = dict(meta or {})  # provenance only: never read when decoding
        n = num_gaussians
        self.centroids = nn.Parameter(torch.zeros(n, 3))
        self.latents = nn.Parameter(torch.zeros(n, config.latent_dim))
        self.decoder = AttributeDecoder(config)
        # attributes without a decoder branch are explicit per-Gaussian parameters (raw values)
        shapes = {"color": (n, 3), "opacity": (n,), "scale": (n, 3), "rotation": (n, 4)}
        self.explicit = nn.ParameterDict({k: nn.Parameter(torch.zeros(v)) for k, v in shapes.items()
                                          if k not in config.branches})
        self.overrides = DirectOverrides(n)  # direct per-Gaussian edits (edits on voted selections)
        # Gaussians a removal made transparent: never read when decoding; exports leave them out
        self.register_buffer("removed", torch.zeros(n, dtype=torch.bool))
        if self.scene.normals == "stored":  # the input PLY's non-zero normals, exported as read
            self.register_buffer("normals", torch.zeros(n, 3))
        # unit activations per branch for fast shaped segmentation; each checks it still matches
        # this model before use (structgs.model.activation_cache), so a stale one is never read
        self.activation_caches: dict[str, ActivationCache] = {}

    @property
    def config(self) -> DecoderConfig:
        """The decoder's (frozen) config; adding side channels gives the decoder a new one."""
        return self.decoder.config

    @property
    def num_gaussians(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def device(self) -> torch.device:
        return self.centroids.device

    # --- per-Gaussian state ---------------------------------------------------------------
    def per_gaussian(self) -> dict[str, torch.Tensor]:
        """Every per-Gaussian tensor (first dimension N) by state-dict name: centroids, latents,
        explicit attributes and direct-edit overrides. Densification, pruning and loading walk
        this one dict."""
        tensors = {"centroids": self.centroids, "latents": self.latents}
        tensors.update({f"explicit.{k}": v for k, v in self.explicit.items()})
        tensors.update({f"overrides.{k}": v for k, v in self.overrides.named_buffers()})
        tensors.update({k: v for k, v in self._buffers.items() if k in ("removed", "normals")})
        return tensors

    def set_per_gaussian(self, name: str, value: torch.Tensor) -> torch.Tensor:
        """Replace the per-Gaussian tensor ``name`` (any N): a new Parameter for parameters, a
        buffer for buffers. Returns what is now stored."""
        owner_name, _, attr = name.rpartition(".")
        owner = self.get_submodule(owner_name) if owner_name else self
        if isinstance(getattr(owner, attr), nn.Parameter):
            new = nn.Parameter(value)
            if isinstance(owner, nn.ParameterDict):
                owner[attr] = new
            else:
                setattr(owner, attr, new)
            return new
        owner._buffers[attr] = value
        return value

    # --- decoding -----------------------------------------------------------------------
    def view_inputs(self, camera: Camera | None, index: torch.Tensor | None = None) -> torch.Tensor | None:
        """(N, view_dim) view inputs for ``camera`` (None: the canonical, zero view)."""
        if camera is None or self.config.view_dim == 0:
            return None
        mu = select_rows(self.centroids, index)
        d = mu.detach() - camera.center.to(mu)
        dist = d.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        v = d / dist
        return torch.cat([v, dist], -1) if self.config.view_inputs == "dir+dist" else v

    def decode(self, camera: Camera | None = None, index: torch.Tensor | None = None,
               view: torch.Tensor | None = None) -> Splats:
        """Decode all Gaussians (or ``index``) as seen from ``camera`` (or explicit ``view`` inputs)."""
        if view is None:
            view = self.view_inputs(camera, index)
        a = self._attributes(BRANCHES, index, view)
        opacity, color, offsets = self.overrides.apply(a["opacity"], a["color"], a["motion"], index)
        return Splats(select_rows(self.centroids, index) + offsets, a["rotation"], a["scale"], opacity, color,
                      offsets)

    def _attributes(self, branches, index: torch.Tensor | None, view: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The activated ``branches`` of Gaussians ``index``: decoded where the decoder has the
        branch, else the stored (explicit) values activated alike; no motion branch: no offset."""
        mu = select_rows(self.centroids, index)
        out = self.decoder.branch_outputs(branches, select_rows(self.latents, index), view, centroids=mu)
        for b in (b for b in branches if b not in out):
            out[b] = torch.zeros_like(mu) if b == "motion" else EXPLICIT_ACTIVATION[b](select_rows(self.explicit[b], index))
        return out

    def activations(self, branch: str, index: torch.Tensor | None = None, view: torch.Tensor | None = None,
                    camera: Camera | None = None) -> torch.Tensor:
        """(B, hidden) activations entering ``branch``'s perturbable layer for Gaussians ``index``
        (all if None), with explicit ``view`` inputs or those of ``camera`` (canonical if neither)."""
        if view is None and camera is not None:
            view = self.view_inputs(camera, index)
        lat = select_rows(self.latents, index)
        mu = select_rows(self.centroids, index)
        return self.decoder.activations(branch, lat.detach(), view, centroids=mu.detach())

    def output_deltas(self, branch: str, channel: int, index: torch.Tensor | None = None,
                      view: torch.Tensor | None = None, camera: Camera | None = None,
                      activations: torch.Tensor | None = None):
        """(delta, a) with J_i = delta_i a_i^T for output ``channel`` of ``branch`` (see the decoder);
        ``activations``: :meth:`activations` of the same Gaussians and view, if already known."""
        if view is None and camera is not None:
            view = self.view_inputs(camera, index)
        lat = select_rows(self.latents, index)
        mu = select_rows(self.centroids, index)
        return self.decoder.output_deltas(branch, lat, channel, view, centroids=mu.detach(), activations=activations)

    def edited_branch_output(self, branch: str, activations: torch.Tensor,
                             index: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C) what :meth:`decode` gives for an edited branch -- color (C=3), opacity (C=1) or
        motion (the offsets, C=3) -- overrides included, from the Gaussians' activations
        entering its perturbable layer (:meth:`activations`), which edits never change."""
        if branch not in ("color", "opacity", "motion"):
            raise InputError(f"edits change color, opacity or motion, not '{branch}'")
        y = self.overrides.apply_to(branch, self.decoder.branch_output_from_activations(branch, activations), index)
        return y[:, None] if branch == "opacity" else y

    def render(self, camera: Camera, background: torch.Tensor | None = None, backend: str = "auto",
               **kwargs) -> RenderOutput:
        s = self.decode(camera)
        return rasterize(s.means, s.quats, s.scales, s.opacities, s.colors, camera, background=background,
                         backend=backend, **kwargs)

    def render_views(self, cameras, background: torch.Tensor | None = None, backend: str = "auto",
                     **kwargs) -> Iterator[tuple[Camera, RenderOutput]]:
        """(camera, render) for each camera in turn, as :meth:`render` gives them bit for bit, with
        the geometry decoded once when it ignores the view (then each view runs the colour branch
        alone: at 1M Gaussians 0.5 s a view instead of 2.4 s for all five branches)."""
        geometry = self.geometry_by_view()
        for cam in cameras:
            g = geometry(cam)
            yield cam, rasterize(g.means, g.quats, g.scales, g.opacities, self.decode_colors(cam), cam,
                                 background=background, backend=backend, **kwargs)

    def geometry_by_view(self) -> Callable[[Camera], Geometry]:
        """``camera -> geometry`` (:meth:`decode_geometry`), decoded once up front when it ignores
        the view: what a loop over views calls."""
        if self.geometry_varies_with_view:
            return self.decode_geometry
        fixed = self.decode_geometry()
        return lambda camera: fixed

    def decode_colors(self, camera: Camera | None = None) -> torch.Tensor:
        """(N, 3) every Gaussian's colour as :meth:`decode` gives it for ``camera``, bit for bit."""
        color = self._attributes(("color",), None, self.view_inputs(camera))["color"]
        return self.overrides.apply_to("color", color, None)

    def decode_means(self) -> torch.Tensor:
        """(N, 3) every Gaussian's centre as :meth:`decode` gives it without a camera, bit for bit."""
        offsets = self._attributes(("motion",), None, None)["motion"]
        return self.centroids + self.overrides.apply_to("motion", offsets, None)

    def decode_opacities(self) -> torch.Tensor:
        """(N,) every Gaussian's opacity as :meth:`decode` gives it without a camera, bit for bit."""
        opacity = self._attributes(("opacity",), None, None)["opacity"]
        return self.overrides.apply_to("opacity", opacity, None).reshape(-1)

    @property
    def geometry_varies_with_view(self) -> bool:
        """Whether a geometry branch (opacity, scale, rotation, motion) sees the view inputs (by
        default only colour does: then :meth:`decode_geometry` is the same for every camera)."""
        cfg = self.config
        return cfg.view_dim > 0 and bool(set(cfg.view_dependent_branches) & set(GEOMETRY_BRANCHES))

    def decode_geometry(self, camera: Camera | None = None) -> Geometry:
        """Every Gaussian's geometry as :meth:`decode` gives it, bit for bit, without running the
        colour branch (the largest share of a decode when colours are view-dependent)."""
        view = self.view_inputs(camera) if self.geometry_varies_with_view else None
        out = self._attributes(GEOMETRY_BRANCHES, None, view)
        opacity = self.overrides.apply_to("opacity", out["opacity"], None)
        offsets = self.overrides.apply_to("motion", out["motion"], None)
        return Geometry(self.centroids + offsets, out["rotation"], out["scale"], opacity)

    @property
    def view_dependent_colors(self) -> bool:
        """Whether decoded colours depend on the view direction."""
        cfg = self.config
        return "color" in cfg.branches and "color" in cfg.view_dependent_branches and cfg.view_dim > 0

    def colors(self, direction: torch.Tensor | None = None, index: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3) colours of Gaussians ``index`` (all if None) seen along one unit ``direction``
        (3,) (canonical if None; the camera distance is the scene's mean): the colour branch
        alone, with direct colour edits applied, as :meth:`decode` colours them."""
        n = self.num_gaussians if index is None else int(index.numel())
        if not self.view_dependent_colors or direction is None:
            view = None
        else:
            view = direction.to(self.centroids).expand(n, 3)
            if self.config.view_inputs == "dir+dist":
                view = torch.cat([view, torch.full_like(view[:, :1], self.scene.mean_camera_distance)], -1)
        if "color" in self.config.branches:
            lat = select_rows(self.latents, index)
            mu = select_rows(self.centroids, index)
            color = self.decoder.branch_output("color", lat, view, centroids=mu)
        else:
            color = EXPLICIT_ACTIVATION["color"](select_rows(self.explicit["color"], index))
        return self.overrides.blend_color(color, index)

    @torch.no_grad()
    def view_independent_colors(self, directions: torch.Tensor | None = None) -> torch.Tensor:
        """Colours averaged over view directions (default: 16 directions on the sphere)."""
        if not self.view_dependent_colors:
            return self.colors()
        dirs = (directions if directions is not None else fibonacci_directions()).to(self.device)
        return sum(self.colors(d) for d in dirs) / len(dirs)

    def to_gaussians(self, camera: Camera | None = None, sh_degree: int = 0, progress: bool = False) -> Gaussians:
        """The decoded scene as a plain 3DGS: colours for ``camera``'s view, or view-dependent
        colours projected onto SH of ``sh_degree`` (structgs.model.plain)."""
        from structgs.model.plain import decoded_gaussians

        return decoded_gaussians(self, camera, sh_degree, progress)

    # --- persistence ----------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "structgs_version": structgs.__version__,
                "num_gaussians": self.num_gaussians, "decoder": self.config.to_dict(), "scene": self.scene.to_dict(),
                "explicit": sorted(self.explicit.keys()), "meta": self.meta}

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write the weights under a name of their content's hash, then ``config.json`` naming
        them (the commit point), then delete weights no config names any more. Each file is
        written atomically; other files in the directory (reports, checkpoints) are left alone.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        written = atomic_write(directory / WEIGHTS_NAME, lambda tmp: save_file(state, str(tmp), metadata={"format": FORMAT}),
                               final_name=lambda tmp: f"model-{_sha256(tmp)[:16]}.safetensors")
        name = written.name
        cfg = self.config_dict()
        cfg["weights"] = name
        write_json(directory / CONFIG_NAME, cfg)
        for old in directory.glob("model*.safetensors"):
            if old.name != name:
                old.unlink()
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: torch.device | str = "cpu") -> SceneModel:
        directory = Path(directory)
        cfg_path = directory / CONFIG_NAME
        if not cfg_path.is_file():
            raise MissingFileError(f"{directory}: not a structgs run (no {CONFIG_NAME})")
        try:
            cfg = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as e:
            raise InputError(f"{cfg_path}: invalid JSON ({e})") from e
        if cfg.get("format") != FORMAT:
            raise InputError(f"{cfg_path}: format is {cfg.get('format')!r}, expected {FORMAT!r}")
        if int(cfg.get("format_version", -1)) > FORMAT_VERSION:
            raise InputError(f"{cfg_path}: format version {cfg['format_version']} was written by a newer structgs "
                             f"({cfg.get('structgs_version')}); this is {structgs.__version__} (format {FORMAT_VERSION})")
        weights = cfg.get("weights", WEIGHTS_NAME)  # runs saved before content-named weights: model.safetensors
        if not isinstance(weights, str) or Path(weights).name != weights or not weights.endswith(".safetensors"):
            raise InputError(f"{cfg_path}: field 'weights' must name a .safetensors file in {directory}, got {weights!r}")
        w_path = directory / weights
        for name, kind in (("num_gaussians", int), ("decoder", dict), ("meta", dict), ("scene", dict)):
            if name not in cfg and name not in ("meta", "scene"):
                raise InputError(f"{cfg_path}: field '{name}' is missing")
            if name in cfg and (not isinstance(cfg[name], kind) or isinstance(cfg[name], bool)):
                raise InputError(f"{cfg_path}: field '{name}' must be {'an integer' if kind is int else 'an object'}, "
                                 f"got {cfg[name]!r}")
        decoder = DecoderConfig.from_dict(cfg["decoder"], f"{cfg_path}: decoder")
        meta = cfg.get("meta") or {}
        scene = (SceneInfo.from_dict(cfg["scene"], f"{cfg_path}: scene") if "scene" in cfg
                 else SceneInfo.from_legacy_meta(meta, f"{cfg_path}: meta"))  # runs from before "scene"
        model = cls(decoder, cfg["num_gaussians"], meta, scene)
        if not w_path.is_file():
            raise MissingFileError(f"{directory}: weights file {weights} (named by {CONFIG_NAME}) is missing")
        try:
            state = load_file(str(w_path))
        except Exception as e:
            raise InputError(f"{w_path}: cannot read weights ({e})") from e
        for old, new in LEGACY_KEYS.items():
            if old in state:
                state[new] = state.pop(old)
        defaults = model.state_dict()
        for k in [k for k in defaults if (k.startswith("overrides.") or k == "removed") and k not in state]:
            state[k] = defaults[k]  # runs saved before direct edits (or removal marks) existed: identity
        expected = {k: tuple(v.shape) for k, v in defaults.items()}
        got = {k: tuple(v.shape) for k, v in state.items()}
        problems = [f"missing {k} {s}" for k, s in expected.items() if k not in got]
        problems += [f"unexpected {k} {s}" for k, s in got.items() if k not in expected]
        problems += [f"{k}: config says {expected[k]}, file has {got[k]}" for k in expected if k in got and got[k] != expected[k]]
        if problems:
            raise InputError(f"{w_path} does not match {cfg_path}: " + "; ".join(problems))
        model.load_state_dict(state)
        return model.to(device)
