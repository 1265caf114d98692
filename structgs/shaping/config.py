"""Shaping configuration."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from structgs.masks.fill import FillConfig
from structgs.shaping.losses import MIN_TAU
from structgs.utils.errors import InputError


@dataclass(frozen=True)
class ShapeConfig:
    """How ``structgs shape`` fine-tunes a fitted decoder (docs/method.md §3)."""

    association: str = "tracked"
    """Mask ids across views: ``tracked`` (consistent), ``overlap`` (per-view ids, associated
    by the consensus of Gaussian co-membership), ``none`` (tracker-free: ids compared only
    within a view; see view_gaussians, consensus_pairs and pixels)."""
    objective: str = "activation"
    """``activation`` (InfoNCE on cos(a_i, a_j), survives edits) or ``jacobian`` (JacobiGS
    baseline: InfoNCE on cos(J_i, J_j) of explicit Jacobians)."""
    branches: tuple[str, ...] = ()
    """Branches to shape (empty: every branch of the decoder)."""
    side_width: int = 64
    """Shape through an object side channel of this many (leaky ReLU) units appended to each shaped
    branch's perturbable-layer input, with zero weights there (BranchMLP.add_side_channel);
    only the channel is trained, so the decoded scene and its PSNR are unchanged by
    construction. 0: fine-tune the decoder itself with L_recon (the paper's way), which costs
    PSNR (README, "Shaping")."""
    side_norm: float = 8.0
    """Length every Gaussian's side-channel output is rescaled to (0: free lengths). With a
    fixed length, an edit along an object's mean activation acts alike on all its Gaussians,
    so a move is rigid; 8 (the rest of the activation has mean length 1) keeps the fitted
    activation's share of the cosines to about 1/64."""
    iters: int = 300
    """Fine-tuning steps. Measured on the built-in scene at 30k Gaussians (benchmarks/shape.py), 300
    steps reach what 800 do (worst within-object / between-object cosine: tracked 0.986 / 0.004
    at 250 vs 0.990 / 0.003; overlap on SAM-like masks 0.987 / 0.003 vs 0.989 / 0.000), and the
    tracker-free mode on SAM-like masks is better at 300 (0.955 / 0.086) than at 800 (0.961 /
    0.125: touching objects drift together)."""
    repair_iters: int = 200
    """Final steps that train only the layers from the perturbable layer on, with L_recon
    alone. They cannot change the activations entering the perturbable layer (computed
    before it), so the shaping is kept exactly while the attributes are restored."""
    batch: int = 1024
    """Gaussians per step (activation objective)."""
    jacobian_batch: int = 128
    """Gaussians per step for the jacobian objective (explicit Jacobians are large)."""
    lambda_mi: float = 1.0
    """Weight of the InfoNCE term."""
    lambda_reg: float = 1.0
    """Weight of the kNN smoothness term (Eq. 10)."""
    balanced: bool = False
    """Draw each InfoNCE batch with the same number of Gaussians per lifted label (unlabelled
    counts as one label) instead of uniformly from the pool."""
    lambda_recon: float = 1.0
    """Weight of L_recon."""
    recon_batch: int = 0
    """Gaussians per step for L_recon (``attributes`` only), drawn from the touched pool
    separately from the InfoNCE batch; 0 = the InfoNCE batch itself."""
    tau: float | None = None
    """InfoNCE temperature; None: 0.1 with lifted labels (tracked, overlap), 0.3 in the
    tracker-free mode. Per-view positives only pull together the part of an object one view
    shows; at 0.1 the pull fades at cos ~0.9 and the object drifts from side to side (worst
    within-object 0.80 on the test scene), at 0.3 it keeps pulling (0.97). With lifted labels
    0.3 was slightly worse (0.88 vs 0.93)."""
    knn: int = 16
    """Neighbours for the smoothness term (faiss, by centroid distance, within the touched pool)."""
    smooth_within_labels: bool = True
    """The smoothness term averages only the neighbours not labelled as another object (the
    lifted labels; in the tracker-free mode, the step view's ids). With every neighbour, a
    Gaussian at a contact is pulled towards the touching object: on the built-in scene (SAM-like
    masks, overlap) 74 ground Gaussians under the torus kept cos > 0.2 with it (4 with this on)
    and moving the torus moved the rest by 1.22 % of the request (0.24 %). False: Eq. 10 as
    written."""
    touch_fraction: float = 0.15
    """Fraction of all Gaussians the fine-tune may touch (the paper touches 7-15 %)."""
    sampling: str = "uniform"
    """How the touched pool is drawn: ``uniform`` or ``fps`` (farthest-point, by centroid)."""
    recon: str = "attributes"
    """L_recon: ``attributes`` (keep the fitted decoder's attributes on the batch: touches
    only the batch) or ``photometric`` (L1 + D-SSIM on a rendered view: touches every visible
    Gaussian, so the fraction touched is no longer bounded)."""
    lr: float | None = None
    """Adam learning rate (decayed 10x over the run); None: 1e-2 for the freshly initialised
    side channel, 2e-3 when fine-tuning the fitted decoder (side_width 0)."""
    pixels: int = 0
    """Tracker-free mode: pixels per step of Eq. 12's term, InfoNCE on the rendered activation
    image A(p) = sum_i w_i(p) a_i (0: off). Off by default: it renders every Gaussian's
    activations (all are touched, 4-5x slower) and, measured on the test scene, it lowers the
    worst within-object cosine (0.97 -> 0.88-0.95): a pixel is a blend, so aligning pixels
    does not align the Gaussians behind them."""
    pixel_weight: float = 1.0
    """Tracker-free mode: weight of Eq. 12's pixel term next to the per-view Gaussian term."""
    pixel_margin: int = 0
    """Tracker-free mode: leave out pixels within this many (feature-image) pixels of another id."""
    feature_downscale: float = 2.0
    """Tracker-free mode: resolution divisor of the rendered activation image."""
    view_gaussians: bool = True
    """Tracker-free mode: InfoNCE on a batch of Gaussians labelled by the step's view alone
    (Eq. 9 within that view, Gaussians no view shows filled within it; ids are compared only
    within the view, so no association is needed). Eq. 12's pixels alone did not separate
    the objects per Gaussian (within-object cosine 0.3-0.6)."""
    ignore_id: int = 0
    """Mask id that means "no object" (never a label)."""
    min_weight: float = 0.05
    """Lifting: a Gaussian whose best blending weight is below this stays unlabelled."""
    fill_knn: int = 16
    """Lifting: Gaussians never seen in a training view (occluded, inside objects), or labelled
    with low confidence, take the majority label of their k nearest confidently labelled
    Gaussians, a background majority leaving them unlabelled (lifting.fill_unseen); 0 leaves
    them as they are (the paper)."""
    fill_color_weight: float = 0.6
    """Weight of the decoded colour next to the centroid (normalised by the scene's extent)
    in the neighbour search of ``fill_knn``; 0 = by position only."""
    band: int = 2
    """Lifting: mask pixels within this many pixels of an id change do not vote (boundary
    jitter makes their id unreliable); 0: every pixel votes."""
    rest_label: bool | None = None
    """Everything the views show outside the masks becomes one more class (REST, 0), the
    negative class of masks with one object (``structgs masks --pixel``). None: on exactly
    when no training view holds two ids (then InfoNCE would have no negatives)."""
    min_confidence: float = 0.6
    """Lifting: a Gaussian whose label won less than this share of its votes is labelled like
    an unseen one, by its confident neighbours (``fill_knn``); in the tracker-free mode such a
    view's label is dropped. On the built-in scene with SAM-like masks (overlap), this raised
    the labels' accuracy from 93.2 % to 98.6 %; on clean masks confidence is ~1."""
    min_views: int = 4
    """Lifting (tracked, overlap): a Gaussian labelled by fewer training views than this is
    labelled like an unseen one, by its trusted neighbours: the few views that see a Gaussian at
    an object's contact can all be covered by the touching object's dilated mask (a wrong label
    with confidence 1). An object the views rarely see is held to fewer views, so that it keeps
    half of its confident Gaussians (lifting.trusted_voters). Labels wrong after the fill, SAM-like
    masks: built-in scene 102 -> 6 of 20k (2 -> 4), 12-view test scene 53 -> 3 of 6k (one noise
    seed; 0-3 on two others). 1 trusts single views."""
    per_view_min_views: int = 2
    """Tracker-free mode: the per-view labels of a Gaussian that fewer views label are dropped,
    and refilled from neighbours (fill_unseen_per_view). No object-level guard is possible
    without ids across views: at 3 the 12-view test scene loses an object seen by few views."""
    min_support: float = 0.5
    """Tracker-free mode: a view's label of a Gaussian is dropped when, in the other views, the
    Gaussian shares an id with its mask-mates of that view less often than this
    (consensus.membership_support; a touching object's dilated or merged mask); 0 keeps all."""
    consensus_pairs: bool = True
    """Tracker-free mode: a pair's relation in the step's view is used only when the other views
    agree (losses.pair_consensus): a merged mask's cross-object pairs are not positives, a
    split mask's halves are not negatives."""
    checkpoint_every: int = 100
    """Steps between atomic checkpoints."""
    seed: int = 0
    """Random seed."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "branches", tuple(self.branches))  # frozen: normalise once, at construction
        checks = {"association": ("tracked", "overlap", "none"), "objective": ("activation", "jacobian"),
                  "sampling": ("uniform", "fps"), "recon": ("attributes", "photometric")}
        for name, allowed in checks.items():
            if getattr(self, name) not in allowed:
                raise InputError(f"shape: {name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.side_norm < 0:
            raise InputError(f"shape: side_norm must be >= 0, got {self.side_norm}")
        if self.side_width < 0:
            raise InputError(f"shape: side_width must be >= 0, got {self.side_width}")
        if not 0 < self.touch_fraction <= 1:
            raise InputError(f"shape: touch_fraction must be in (0, 1], got {self.touch_fraction}")
        if self.tau is not None and self.tau < MIN_TAU:
            raise InputError(f"shape: tau must be >= {MIN_TAU}, got {self.tau}")
        for name in ("pixels", "pixel_margin", "pixel_weight"):
            if getattr(self, name) < 0:
                raise InputError(f"shape: {name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.min_support <= 1:
            raise InputError(f"shape: min_support must be in [0, 1], got {self.min_support}")
        for name in ("min_views", "per_view_min_views"):
            if getattr(self, name) < 1:
                raise InputError(f"shape: {name} must be >= 1, got {getattr(self, name)}")
        if self.association == "none" and not self.view_gaussians and not (self.pixels > 0 and self.pixel_weight > 0):
            raise InputError("shape: the tracker-free mode needs view_gaussians or a pixel term (pixels > 0 and "
                             "pixel_weight > 0); with neither there is no InfoNCE term")
        if self.association == "none" and self.objective == "jacobian":
            raise InputError("shape: the tracker-free mode (association none) shapes activations only; the "
                             "JacobiGS baseline (objective jacobian) needs association tracked or overlap")

    @property
    def fill(self) -> FillConfig:
        """The lifted labels' trust and fill rule, from this config's fields."""
        return FillConfig(min_confidence=self.min_confidence, min_views=self.min_views, knn=self.fill_knn,
                          color_weight=self.fill_color_weight)

    @property
    def temperature(self) -> float:
        if self.tau is not None:
            return self.tau
        return 0.3 if self.association == "none" else 0.1

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return 1e-2 if self.side_width > 0 else 2e-3

    def to_dict(self) -> dict:
        d = asdict(self)
        d["branches"] = list(self.branches)
        return d
