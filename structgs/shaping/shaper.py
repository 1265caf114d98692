"""Information shaping: fine-tune a fitted decoder so that Gaussians of one object get aligned
activations (hence aligned Jacobians) and different objects orthogonal ones (docs/method.md §2-3).

Only the decoder is trained; centroids and latents stay as fitted. Each step touches a batch
drawn from a fixed pool of ``touch_fraction * N`` Gaussians.

Two ways to shape (ShapeConfig.side_width):
* side channel (default): each shaped branch's perturbable layer gets an extra input g(x) with
  zero weights (BranchMLP.add_side_channel), and only g is trained. The decoded scene cannot
  change, so L_recon is identically satisfied and is not computed.
* fine-tune (side_width 0, the paper's way): the whole decoder is trained on InfoNCE +
  smoothness + L_recon, then the layers after the activation are repaired on L_recon alone.
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path

import torch
import torch.nn.functional as F

from structgs.model import SceneModel
from structgs.render.api import rasterize
from structgs.scene.dataset import SceneDataset
from structgs.shaping.config import ShapeConfig
from structgs.utils.knn import knn_indices
from structgs.masks.consensus import consensus_labels, noise_report
from structgs.masks.fill import fill_labels
from structgs.shaping.lifting import UNLABELLED, lift_masks, lift_per_view, matched_accuracy, needs_rest_label
from structgs.shaping.losses import (ContrastivePairs, NeighbourTargets, infonce, jacobian_features, pair_consensus,
                                     same_object_neighbours, smoothness)
from structgs.shaping.sampling import sample_pool
from structgs.training.loop import Checkpointer, TrainerState, adam, run_stage
from structgs.training.losses import attribute_l1, photometric_loss
from structgs.utils.log import get_logger
from structgs.utils.errors import InputError

log = get_logger("shaping")


def attribute_distillation(student, teacher) -> torch.Tensor:
    """L1 on decoded attributes vs the frozen fitted decoder (L_recon without rendering)."""
    return attribute_l1(student.colors, student.opacities, student.scales.log(), student.quats, teacher.colors,
                        teacher.opacities, teacher.scales.log(), teacher.quats, student.offsets, teacher.offsets)


class Shaper:
    def __init__(self, model: SceneModel, dataset: SceneDataset, masks_dir: Path, config: ShapeConfig | None = None,
                 checkpointer: Checkpointer | None = None, progress: bool = True):
        self.cfg = config or ShapeConfig()
        self.model, self.ds, self.masks_dir, self.checkpointer = model, dataset, Path(masks_dir), checkpointer
        self.progress = progress
        self.device = model.device
        self.branches = list(self.cfg.branches) or list(model.decoder.branches.keys())
        missing = [b for b in self.branches if b not in model.decoder.branches]
        if missing:
            raise InputError(f"shape: the decoder has no branches {missing} (it has {list(model.decoder.branches)})")
        self.cams = dataset.split("train")
        self.bg = torch.tensor(dataset.background, dtype=torch.float32, device=self.device)
        self.teacher = copy.deepcopy(model).eval().requires_grad_(False)
        self.gen = torch.Generator().manual_seed(self.cfg.seed)
        self.stage, self.step = "shape", 0
        self.repair_opt: torch.optim.Optimizer | None = None
        self._repair_state: dict | None = None
        self._frozen: list[torch.nn.Parameter] = []
        self.labels: torch.Tensor | None = None
        self.pool: torch.Tensor | None = None
        self.touched = torch.zeros(model.num_gaussians, dtype=torch.bool, device=self.device)
        self.lift_info: dict = {}
        self.confidence: torch.Tensor | None = None
        self._masks: dict[str, torch.Tensor] = {}  # full-resolution masks read by prepare, until used
        self._pixel_ids: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._fixed: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # see _pool_activations
        for p in (model.centroids, model.latents, *model.explicit.values()):
            p.requires_grad_(False)
        self.side = self.cfg.side_width > 0
        if self.side:
            with torch.no_grad():  # h_scale = mean |h|: the side channel soon dominates the cosines
                probe = torch.randperm(model.num_gaussians, generator=self.gen)[:4096].to(self.device)
                scales = {b: float(model.activations(b, probe).norm(dim=1).mean().clamp_min(1e-6))
                          for b in self.branches if b not in model.config.side_branches}
            with torch.random.fork_rng(devices=[]):  # seeded init; the caller's global RNG is left alone
                torch.manual_seed(self.cfg.seed)
                model.decoder.add_side_channels(self.branches, self.cfg.side_width, scales, self.cfg.side_norm)
            params = [p for b in self.branches for p in model.decoder.branches[b].side.parameters()]
        else:
            params = list(model.decoder.parameters())
        self.opt = adam(params, lr=self.cfg.learning_rate)

    # --- set-up -----------------------------------------------------------------------
    def prepare(self, gt_labels: torch.Tensor | None = None) -> None:
        cfg = self.cfg
        if cfg.association != "none":
            lift = lift_masks(self.model, self.ds, self.masks_dir, cfg.association, cfg.ignore_id, cfg.min_weight,
                              cfg.band, cfg.rest_label, progress=self.progress)
            labels = lift.labels
            self.lift_info = {"coverage": lift.coverage, "num_ids": int(labels[labels >= 0].unique().numel()),
                              "noise": lift.noise, **lift.association}
            if gt_labels is not None:
                self.lift_info["accuracy"] = matched_accuracy(labels.cpu(), gt_labels.cpu())
            if cfg.fill_knn > 0:
                with torch.no_grad():
                    colors = self.model.view_independent_colors()
                labels = fill_labels(labels, lift.confidence.to(labels.device), lift.views.to(labels.device),
                                     self.model.centroids.detach(), colors, cfg.fill)
                self.lift_info["coverage_filled"] = float((labels >= 0).float().mean())
                if gt_labels is not None:
                    self.lift_info["accuracy_filled"] = matched_accuracy(labels.cpu(), gt_labels.cpu())
            self.labels = labels.to(self.device)
            self.confidence = lift.confidence.to(self.device)
        elif cfg.view_gaussians:
            masks = [self.ds.mask(c, self.masks_dir).to(self.device) for c in self.cams]
            if cfg.pixels > 0 and cfg.pixel_weight > 0:  # the pixel term reuses them once per view
                self._masks.update({c.name: mk for c, mk in zip(self.cams, masks)})
            view_labels, votes = lift_per_view(self.model, self.cams, masks, cfg.ignore_id, cfg.min_weight,
                                               cfg.fill_knn, cfg.fill_color_weight, cfg.band, cfg.rest_label,
                                               cfg.min_confidence, cfg.per_view_min_views,
                                               cfg.min_support, progress=self.progress)
            view_labels = view_labels.to(self.device)
            labelled = view_labels != UNLABELLED
            # the consensus of the views, for the report only: this mode never compares ids across views
            consensus, conf, _ = consensus_labels(votes)
            self.lift_info = {"coverage": float(labelled.any(0).float().mean()),
                              "views_per_gaussian": float(labelled.sum(0).float().mean()),
                              "rest_label": needs_rest_label(masks, cfg.ignore_id) if cfg.rest_label is None
                              else cfg.rest_label,
                              "noise": noise_report(votes.labels, consensus.to(votes.labels.device),
                                                    conf.to(votes.labels.device), [c.name for c in self.cams])}
            self.confidence = conf.to(self.device)
            if gt_labels is not None:  # per view, after optimal id matching (ids mean nothing across views)
                gt = gt_labels.to(view_labels.device)
                acc = [matched_accuracy(v, gt) * int((v >= 0).sum()) for v in view_labels]
                self.lift_info["accuracy_per_view"] = sum(acc) / max(int(labelled.sum()), 1)
        if self.lift_info.get("coverage", 1.0) == 0:
            raise InputError(f"{self.masks_dir}: the masks label no Gaussian (every mask pixel has the ignore id "
                             f"{cfg.ignore_id}, or lies where no Gaussian contributes)")
        self.pool = sample_pool(self.model.centroids.detach(), cfg.touch_fraction, cfg.sampling, self.gen).to(self.device)
        if cfg.association == "none" and cfg.view_gaussians:
            self._set_view_labels(view_labels)
        k = min(cfg.knn + 1, self.pool.numel())
        self.pool_knn = knn_indices(self.model.centroids.detach()[self.pool], k)[:, 1:]  # positions within the pool

    def _set_view_labels(self, view_labels: torch.Tensor) -> None:
        """(V, N) per-view ids of the tracker-free mode, and how many views label each pool Gaussian."""
        self.view_labels = view_labels.to(self.device)
        self.view_index = {c.name: v for v, c in enumerate(self.cams)}
        self.pool_view_counts = (self.view_labels[:, self.pool] != UNLABELLED).sum(0)

    # --- one step -----------------------------------------------------------------------
    def _step_lifted(self, cam) -> dict[str, torch.Tensor]:
        cfg, m = self.cfg, self.model
        bsz = cfg.jacobian_batch if cfg.objective == "jacobian" else cfg.batch
        pos = self._batch_positions(bsz)
        idx = self.pool[pos]
        self.touched[idx] = True
        view = m.view_inputs(cam, idx)
        lab = self.labels[idx]
        has = lab != UNLABELLED
        nbr = self.pool[self.pool_knn[pos]]  # (B, k), within the pool
        keep = same_object_neighbours(lab, self.labels[nbr], UNLABELLED) if cfg.smooth_within_labels else None
        targets = self._neighbour_targets(cam, pos, keep) if cfg.lambda_reg > 0 else None
        pairs = ContrastivePairs.from_labels(lab[has]) if has.sum() > 1 else None  # shared by the branches
        mi = reg = torch.zeros((), device=self.device)
        for b in self.branches:
            if cfg.objective == "jacobian":
                feats = jacobian_features(m.decoder, b, m.latents[idx].detach(), view, m.centroids[idx].detach())
            else:
                feats = self._pool_activations(b, cam, pos)
            if pairs is not None:
                mi = mi + infonce(feats[has], pairs, cfg.temperature)
            if targets is not None:
                a = feats if cfg.objective == "activation" else m.activations(b, idx, view)
                reg = reg + smoothness(a, targets[b])
        if self.side:  # the decoded attributes cannot change: nothing to reconstruct
            rec = torch.zeros((), device=self.device)
        elif cfg.recon_batch > 0 and cfg.recon == "attributes":
            ridx = self.pool[torch.randperm(self.pool.numel(), generator=self.gen)[: cfg.recon_batch].to(self.device)]
            rec = self._recon(cam, ridx, m.view_inputs(cam, ridx))
        else:
            rec = self._recon(cam, idx, view)
        return {"mi": mi / len(self.branches), "reg": reg / len(self.branches), "recon": rec}

    @torch.no_grad()
    def _neighbour_targets(self, cam, pos: torch.Tensor, keep: torch.Tensor | None) -> dict[str, NeighbourTargets]:
        """Per branch, Eq. 10's targets for the batch at pool positions ``pos``, seen from ``cam``:
        the mean unit activation of each one's kept pool neighbours (no gradient). The B * k
        neighbours repeat (k = 16: 16k rows for a 1024 batch); when the whole pool is smaller,
        decoding the pool once is the same values for fewer rows (4.5k at 30k Gaussians)."""
        near = self.pool_knn[pos]  # (B, k) positions within the pool
        if self.pool.numel() < near.numel():
            return {b: NeighbourTargets.gather(F.normalize(self._pool_activations(b, cam, None), dim=-1), near, keep)
                    for b in self.branches}
        flat = torch.arange(near.numel(), device=near.device).reshape(near.shape)
        return {b: NeighbourTargets.gather(F.normalize(self._pool_activations(b, cam, near.reshape(-1)), dim=-1),
                                           flat, keep) for b in self.branches}

    def _pool_activations(self, branch: str, cam, pos: torch.Tensor | None) -> torch.Tensor:
        """(B, D) activations of the pool Gaussians at positions ``pos`` (None: the whole pool), seen
        from ``cam``. With the side channel, a branch that does not take the view has fixed inputs
        and a fixed trunk output (only the channel trains): both are computed once for the pool and
        only the channel runs per step (input + trunk width floats per pool Gaussian and branch: about
        0.5 GB for four branches at 1M Gaussians, whose pool is 150k)."""
        m = self.model
        if not self.side or m.decoder.config.takes_view(branch):
            idx = self.pool if pos is None else self.pool[pos]
            return m.activations(branch, idx, m.view_inputs(cam, idx))
        mlp = m.decoder.branches[branch]
        if branch not in self._fixed:
            with torch.no_grad():
                x = m.decoder.branch_input(branch, m.latents[self.pool], None, m.centroids[self.pool])
                self._fixed[branch] = (x, mlp.trunk_output(x))
        x, h = self._fixed[branch]
        return mlp.activation(x, trunk=h) if pos is None else mlp.activation(x[pos], trunk=h[pos])

    def _batch_positions(self, bsz: int) -> torch.Tensor:
        """Positions within the pool: uniform, or (``balanced``) the same number per lifted label."""
        if not self.cfg.balanced:
            return torch.randperm(self.pool.numel(), generator=self.gen)[:bsz].to(self.device)
        lab = self.labels[self.pool].cpu()
        groups = [torch.nonzero(lab == k).flatten() for k in lab.unique().tolist()]
        per = max(1, bsz // len(groups))
        picks = [g[torch.randperm(len(g), generator=self.gen)[:per]] for g in groups]
        return torch.cat(picks).to(self.device)

    def _step_tracker_free(self, cam) -> dict[str, torch.Tensor]:
        """Tracker-free step: every id is compared only with ids of the same view.

        * Eq. 12 (``pixels`` > 0): InfoNCE on pixels of A(p) = sum_i w_i(p) a_i, rendered from every
          Gaussian's activations (so it touches every Gaussian the view shows);
        * per-view Gaussians (``view_gaussians``): InfoNCE on a batch of the pool labelled by this
          view alone (Eq. 9 within the view, unseen Gaussians filled within it);
        * Eq. 10 on the batch.
        """
        cfg, m = self.cfg, self.model
        pos = self._view_batch_positions(cam, cfg.batch)
        zero = torch.zeros((), device=self.device)
        if pos.numel() == 0 and not (cfg.pixels > 0 and cfg.pixel_weight > 0):  # the view labels none of the pool
            return {"mi": zero, "reg": zero, "recon": zero}
        idx, nbr = self.pool[pos], self.pool[self.pool_knn[pos]]
        keep = None
        if cfg.smooth_within_labels and cfg.view_gaussians:  # this view's ids, compared within the view
            here = self.view_labels[self.view_index[cam.name]]
            keep = same_object_neighbours(here[idx], here[nbr], UNLABELLED)
        smooth = cfg.lambda_reg > 0 and idx.numel() > 0  # a view may label none of the pool
        mi = torch.zeros((), device=self.device)
        if cfg.pixels > 0 and cfg.pixel_weight > 0:
            view = m.view_inputs(cam)
            feats = torch.cat([m.activations(b, None, view) for b in self.branches], dim=1)
            width = feats.shape[1] // len(self.branches)
            per_branch = [feats[:, k * width:(k + 1) * width] for k in range(len(self.branches))]
            mi = mi + cfg.pixel_weight * self._pixel_infonce(cam, feats, len(self.branches))
            batch = [a[idx] for a in per_branch]
            targets = [NeighbourTargets.gather(F.normalize(a.detach(), dim=-1), nbr, keep) for a in per_branch] \
                if smooth else []
        else:  # only the batch and its neighbours: touches the pool alone
            batch = [self._pool_activations(b, cam, pos) for b in self.branches]
            by_branch = self._neighbour_targets(cam, pos, keep) if smooth else {}
            targets = [by_branch[b] for b in self.branches] if smooth else []
        self.touched[idx] = True
        if cfg.view_gaussians:
            v = self.view_index[cam.name]
            lab = self.view_labels[v, idx]
            has = lab != UNLABELLED
            if has.sum() > 1:
                trusted = pair_consensus(self.view_labels[:, idx[has]], v) if cfg.consensus_pairs else None
                pairs = ContrastivePairs.from_labels(lab[has], trusted)
                for a in batch:
                    mi = mi + infonce(a[has], pairs, cfg.temperature)
        reg = torch.zeros((), device=self.device)
        for a, t in zip(batch, targets):
            reg = reg + smoothness(a, t)
        rec = torch.zeros((), device=self.device)
        if not self.side and idx.numel() > 0:
            rec = self._recon(cam, idx, m.view_inputs(cam, idx))
        return {"mi": mi / len(self.branches), "reg": reg / len(self.branches), "recon": rec}

    def _feature_ids(self, cam, small) -> tuple[torch.Tensor, torch.Tensor]:
        """This view's mask ids sampled at the feature image's pixel centres, and the flat indices
        of the pixels Eq. 12 may use (not the ignore id, ``pixel_margin`` from another id)."""
        cfg = self.cfg
        mask = self._masks.pop(cam.name, None)
        if mask is None:
            mask = self.ds.mask(cam, self.masks_dir).to(self.device)
        ys = (torch.arange(small.height, device=self.device) + 0.5) * cam.height / small.height
        xs = (torch.arange(small.width, device=self.device) + 0.5) * cam.width / small.width
        ids = mask[ys.long().clamp(max=cam.height - 1)][:, xs.long().clamp(max=cam.width - 1)]
        keep = ids != cfg.ignore_id
        if cfg.pixel_margin > 0:  # boundary pixels blend two objects: leave them out
            r = cfg.pixel_margin
            f = ids[None, None].float()
            hi = F.max_pool2d(f, 2 * r + 1, stride=1, padding=r)[0, 0]
            lo = -F.max_pool2d(-f, 2 * r + 1, stride=1, padding=r)[0, 0]
            keep &= hi == lo
        return ids, torch.nonzero(keep.reshape(-1)).flatten()

    def _view_batch_positions(self, cam, bsz: int) -> torch.Tensor:
        """Positions within the pool for a tracker-free step: drawn among the Gaussians this view
        labels, each with probability 1 / (number of views labelling it), so that a Gaussian few
        views show is supervised as often as one every view shows (uniform draws left those at
        cos 0.86-0.92 to their object's mean vs 0.96-0.99)."""
        if not self.cfg.view_gaussians:
            return torch.randperm(self.pool.numel(), generator=self.gen)[:bsz].to(self.device)
        lab = self.view_labels[self.view_index[cam.name], self.pool]
        cand = torch.nonzero(lab != UNLABELLED).flatten()
        if cand.numel() <= bsz:
            return cand
        w = 1.0 / self.pool_view_counts[cand].clamp_min(1).float()
        return cand[torch.multinomial(w.cpu(), bsz, replacement=False, generator=self.gen).to(self.device)]

    def _pixel_infonce(self, cam, feats: torch.Tensor, groups: int) -> torch.Tensor:
        """Eq. 12 on ``pixels`` pixels of this view's mask (ids != ignore_id, at least
        ``pixel_margin`` pixels from another id), summed over the ``groups`` channel groups."""
        cfg, m = self.cfg, self.model
        small = cam.scaled(cfg.feature_downscale)
        if cam.name not in self._pixel_ids:  # each view's ids at feature resolution, made once
            self._pixel_ids[cam.name] = self._feature_ids(cam, small)
        ids, valid = self._pixel_ids[cam.name]
        with torch.no_grad():
            s = m.decode(cam)
        out = rasterize(s.means, s.quats, s.scales, s.opacities, feats, small)
        self.touched |= out.radii > 0
        if valid.numel() < 2:
            return torch.zeros((), device=self.device)
        pick = valid[torch.randperm(valid.numel(), generator=self.gen)[: cfg.pixels].to(self.device)]
        A = out.image.reshape(-1, feats.shape[1])[pick]
        lab = ids.reshape(-1)[pick]
        width, pairs = feats.shape[1] // groups, ContrastivePairs.from_labels(lab)
        return sum(infonce(A[:, k * width:(k + 1) * width], pairs, cfg.temperature) for k in range(groups))

    def _recon(self, cam, idx, view) -> torch.Tensor:
        if self.cfg.recon == "photometric":
            out = self.model.render(cam, background=self.bg)
            self.touched |= out.radii > 0
            return photometric_loss(out.image, self.ds.image(cam).to(self.device))
        with torch.no_grad():
            target = self.teacher.decode(index=idx, view=view)
        return attribute_distillation(self.model.decode(index=idx, view=view), target)

    # --- loop (structgs.training.loop) ---------------------------------------------------
    def train(self) -> None:
        """Run the remaining stages: shaping, then (fine-tune mode) the repair pass."""
        cfg = self.cfg
        if self.stage == "shape":
            with self._gradients_only_for(self.opt):
                run_stage(self._shape_step, start=self.step, total=cfg.iters, optimizers=[self.opt],
                          desc=f"shaping ({cfg.association}, {cfg.objective})", progress=self.progress,
                          checkpoint=self._checkpoint_at, checkpoint_every=cfg.checkpoint_every)
            self.stage, self.step = "repair", 0
            if self._repairs:
                self.checkpoint()
        if self.stage == "repair":
            if self._repairs:
                self._start_repair()
                run_stage(self._repair_step, start=self.step, total=cfg.repair_iters, optimizers=[self.repair_opt],
                          desc="shaping (repair)", progress=self.progress, checkpoint=self._checkpoint_at,
                          checkpoint_every=cfg.checkpoint_every, postfix_every=20)
                for p in self._frozen:
                    p.requires_grad_(True)
            self.stage, self.step = "done", 0

    @contextlib.contextmanager
    def _gradients_only_for(self, optimizer: torch.optim.Optimizer):
        """Decoder parameters outside ``optimizer`` get no gradient while inside (the side channel
        trains alone: the backward pass then stops at it instead of filling the fitted layers'
        unused .grad, a third of a step); their requires_grad flags are restored on exit."""
        trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
        others = [p for p in self.model.decoder.parameters() if id(p) not in trained and p.requires_grad]
        for p in others:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p in others:
                p.requires_grad_(True)

    def _random_camera(self):
        return self.cams[int(torch.randint(len(self.cams), (1,), generator=self.gen))]

    def _shape_step(self, step: int) -> dict:
        cfg = self.cfg
        cam = self._random_camera()
        parts = self._step_tracker_free(cam) if cfg.association == "none" else self._step_lifted(cam)
        loss = cfg.lambda_recon * parts["recon"] + cfg.lambda_mi * parts["mi"] + cfg.lambda_reg * parts["reg"]
        if loss.requires_grad:  # else nothing to learn from this view (its masks label no Gaussian)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        return {**{k: v.detach() for k, v in parts.items()}, "touched": lambda: f"{self.touched_fraction:.1%}"}

    def _post_activation_parameters(self) -> list[torch.nn.Parameter]:
        params = []
        for b in self.branches:
            mlp = self.model.decoder.branches[b]
            for layer in mlp.layers[mlp.perturb_index:]:
                params += list(layer.parameters())
        for b, mlp in self.model.decoder.branches.items():  # unshaped branches may adapt freely
            if b not in self.branches:
                params += list(mlp.parameters())
        return params

    @property
    def _repairs(self) -> bool:
        """The fine-tune mode repairs the attributes; the side channel cannot change them."""
        return self.cfg.repair_iters > 0 and not self.side

    def _start_repair(self) -> None:
        """Restore attributes with the shaped activations frozen (see ShapeConfig.repair_iters):
        only the layers after the perturbable one (and unshaped branches) train."""
        params = self._post_activation_parameters()
        self._frozen = [p for p in self.model.decoder.parameters() if all(p is not q for q in params)]
        for p in self._frozen:
            p.requires_grad_(False)
        self.repair_opt = adam(params, lr=self.cfg.learning_rate)
        if self._repair_state is not None:  # resumed inside the repair pass
            self.repair_opt.load_state_dict(self._repair_state)
            self._repair_state = None

    def _repair_step(self, step: int) -> dict:
        cam = self._random_camera()
        pos = torch.randperm(self.pool.numel(), generator=self.gen)[: self.cfg.batch * 4].to(self.device)
        idx = self.pool[pos]
        loss = self._recon(cam, idx, self.model.view_inputs(cam, idx))
        self.repair_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.repair_opt.step()
        return {"recon": loss.detach()}

    @property
    def touched_fraction(self) -> float:
        return float(self.touched.float().mean())

    # --- checkpoints (structgs.training.loop.Checkpointer) -------------------------------------
    def _checkpoint_at(self, step: int) -> None:
        self.step = step
        self.checkpoint()

    def checkpoint(self) -> None:
        if self.checkpointer is None:
            return
        optimizers = {"shape": self.opt.state_dict()}
        if self.repair_opt is not None:
            optimizers["repair"] = self.repair_opt.state_dict()
        extra = {"labels": self.labels, "pool": self.pool, "pool_knn": self.pool_knn, "touched": self.touched,
                 "lift_info": self.lift_info, "teacher": self.teacher.state_dict(),
                 "view_labels": getattr(self, "view_labels", None), "confidence": self.confidence}
        self.checkpointer.save(self.model, TrainerState(self.stage, self.step, self.gen.get_state(), optimizers, extra))

    def restore(self) -> None:
        """Continue from the checkpointer's checkpoint (weights, optimizers, RNG, labels, pool)."""
        ck = self.checkpointer
        self.model.load_state_dict(ck.load_model(self.device).state_dict())
        state = ck.load_state(self.device)
        st = state.extra
        self.teacher.load_state_dict(st["teacher"])
        self.opt.load_state_dict(state.optimizers["shape"])
        self._repair_state = state.optimizers.get("repair")
        self.stage, self.step = state.stage, state.step
        self.labels, self.pool, self.pool_knn = st["labels"], st["pool"], st["pool_knn"]
        self._fixed = {}
        self.touched, self.lift_info, self.confidence = st["touched"], st["lift_info"], st["confidence"]
        if st.get("view_labels") is not None:
            self._set_view_labels(st["view_labels"])
        self.gen.set_state(state.generator)
        log.info("resuming shaping at %s step %d", self.stage, self.step)
