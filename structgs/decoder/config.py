"""Decoder configuration, saved as plain JSON next to the weights."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from structgs.utils.fields import check_fields
from structgs.utils.errors import InputError

BRANCHES = ("color", "opacity", "scale", "rotation", "motion")
OUTPUT_DIMS = {"color": 3, "opacity": 1, "scale": 3, "rotation": 4, "motion": 3}


@dataclass(frozen=True)
class DecoderConfig:
    """Scaffold-style attribute decoder: one small ReLU MLP per branch on (latent, view)."""

    latent_dim: int = 32
    """Size of each Gaussian's latent feature f_i."""
    hidden_width: int = 128
    """Width of every hidden layer."""
    hidden_layers: int = 2
    """Hidden (Linear + ReLU) layers per branch; at least 2 so the default perturbable layer
    (the last hidden linear layer) has a shaped input activation."""
    branches: tuple[str, ...] = BRANCHES
    """Which attributes are decoded. Attributes without a branch are kept as explicit
    per-Gaussian parameters (motion without a branch is zero)."""
    view_inputs: str = "dir"
    """View inputs of view-dependent branches: ``none``, ``dir`` (unit view direction) or
    ``dir+dist`` (plus the camera distance)."""
    view_dependent_branches: tuple[str, ...] = ("color",)
    """Branches that see the view inputs (Scaffold-GS also feeds them to opacity and scale;
    structgs keeps geometry view-independent by default so edits look the same from all views)."""
    position_frequencies: int = 6
    """Octaves of a sin/cos encoding of the (normalised) centroid fed to every branch; 0 turns
    it off (the paper's pure (latent, view) input). Latents fitted to reproduce appearance
    do not tell apart two objects that look alike, and no decoder of (latent, view) can then
    separate them; Scaffold-GS gets spatial grouping from anchors shared by neighbouring
    Gaussians, structgs from this encoding. It uses the centroid, not the moved mean, so
    edits never change the shaped activations."""
    position_center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Centre used to normalise centroids for the encoding (set per scene when fitting)."""
    position_scale: float = 1.0
    """Half-size used to normalise centroids to about [-1, 1] (set per scene when fitting)."""
    perturb_layer: int = -1
    """Index of each branch's perturbable layer in its list of linear layers (hidden layers,
    then the output layer): -1 = the output layer (structgs's default), -2 = the last hidden
    linear layer (the shaping paper's default, docs/method.md §2). Its input is the shaped activation. Behind a hidden
    layer sits a ReLU, and an edit along delta_i a_i^T only moves the units that are active:
    on the test scene no active unit of an object had a negative opacity weight, so removal
    stalled at sigmoid(bias) = 0.49. Perturbing the output layer makes every edit linear in
    the pre-activation output (any target is reachable) and cos(J_i, J_j) = cos(a_i, a_j)."""
    motion_perturb_layer: int = -1
    """The same for the motion branch. Its output layer is zero-initialised (a fresh decoder
    moves nothing), which makes the Jacobian of any earlier layer exactly zero, so the
    motion branch perturbs its output layer whatever ``perturb_layer`` says."""
    scale_log_range: tuple[float, float] = (-7.0, 0.0)
    """Bounds of log(scale): scale = exp(lo + (hi - lo) * sigmoid(out)). Set per scene from
    the input PLY when fitting."""
    side_width: int = 0
    """Width of the object side channel appended to the shaped activation of each branch in
    ``side_branches`` (see BranchMLP.add_side_channel); shaping adds it (ShapeConfig.side_width)."""
    side_branches: tuple[str, ...] = ()
    """Branches that carry a side channel."""
    side_norm: float = 0.0
    """> 0: each Gaussian's side-channel output is rescaled to this length (ShapeConfig.side_norm);
    0: free lengths (runs shaped before this option)."""
    backend: str = "torch"
    """MLP implementation: ``torch`` (reference) or ``tcnn`` (tinycudann, CUDA only)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes stored with the config."""

    def __post_init__(self) -> None:
        normalised = {"branches": tuple(self.branches), "view_dependent_branches": tuple(self.view_dependent_branches),
                      "side_branches": tuple(self.side_branches),
                      "scale_log_range": tuple(float(x) for x in self.scale_log_range),
                      "position_center": tuple(float(x) for x in self.position_center)}
        for name, value in normalised.items():  # frozen: normalised once, at construction
            object.__setattr__(self, name, value)
        if self.position_frequencies < 0 or self.position_scale <= 0:
            raise InputError("position_frequencies must be >= 0 and position_scale > 0")
        unknown = [b for b in self.branches if b not in BRANCHES]
        if unknown:
            raise InputError(f"unknown decoder branches {unknown}; choose from {BRANCHES}")
        if self.view_inputs not in ("none", "dir", "dir+dist"):
            raise InputError(f"view_inputs must be none, dir or dir+dist, got {self.view_inputs!r}")
        if self.hidden_layers < 2:
            raise InputError(f"hidden_layers must be >= 2 (got {self.hidden_layers}): the perturbable layer needs an input activation")
        n = self.hidden_layers + 1
        for name in ("perturb_layer", "motion_perturb_layer"):
            k = getattr(self, name)
            if not -n <= k < n or k % n == 0:
                raise InputError(f"{name} must index a linear layer after the first (1..{n - 1} or -1..-{n - 1}), got {k}")
        if self.side_width < 0 or (self.side_branches and self.side_width == 0):
            raise InputError(f"side_width must be > 0 when side_branches are given, got {self.side_width}")
        if self.side_norm < 0:
            raise InputError(f"side_norm must be >= 0, got {self.side_norm}")
        stray = [b for b in self.side_branches if b not in self.branches]
        if stray:
            raise InputError(f"side_branches {stray} are not decoder branches {list(self.branches)}")
        if self.backend not in ("torch", "tcnn"):
            raise InputError(f"decoder backend must be torch or tcnn, got {self.backend!r}")

    @property
    def view_dim(self) -> int:
        return {"none": 0, "dir": 3, "dir+dist": 4}[self.view_inputs]

    def perturb_index(self, branch: str) -> int:
        return self.motion_perturb_layer if branch == "motion" else self.perturb_layer

    @property
    def position_dim(self) -> int:
        return 3 + 6 * self.position_frequencies if self.position_frequencies > 0 else 0

    def takes_view(self, branch: str) -> bool:
        """Whether ``branch``'s input holds the view (its output then changes with the camera)."""
        return branch in self.view_dependent_branches and self.view_dim > 0

    def input_dim(self, branch: str) -> int:
        return self.latent_dim + self.position_dim + (self.view_dim if self.takes_view(branch) else 0)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("branches", "view_dependent_branches", "side_branches", "scale_log_range", "position_center"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "decoder config") -> DecoderConfig:
        """The config from its JSON form; unknown fields, wrong types and invalid values raise a
        ValueError that starts with ``where`` (e.g. "RUN/config.json: decoder")."""
        check_fields(cls, d, where)
        try:
            return cls(**d)
        except ValueError as e:
            raise InputError(f"{where}: {e}") from None
