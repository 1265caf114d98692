"""Per-scene fitting (the algorithm; ``structgs.pipeline.fit`` is the job around it): stage 1
regresses decoded attributes on the input PLY (no rendering), stage 2 fine-tunes
photometrically on the training views. Both stages run on the shared training skeleton
(``structgs.training.loop``), so a killed fit resumes bit-exactly (RNG, optimizer and
densification state included)."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch

from structgs.model import SceneInfo, SceneModel
from structgs.render.sh import eval_sh
from structgs.scene.dataset import SceneDataset
from structgs.scene.gaussians import Gaussians
from structgs.training.config import FitConfig
from structgs.training.loop import Checkpointer, TrainerState, adam, run_stage
from structgs.training.losses import attribute_l1, photometric_loss
from structgs.training.strategy import DensifyPrune
from structgs.utils.log import get_logger
from structgs.utils.metrics import psnr

log = get_logger("fit")
STAGES = ("stage1", "stage2", "done")


def target_colors(targets: Gaussians, idx: torch.Tensor, dirs: torch.Tensor | None) -> torch.Tensor:
    """Colours stage 1 regresses: the input's SH evaluated along ``dirs`` (DC when None)."""
    if targets.sh_degree == 0 or dirs is None:
        return targets.rgb_dc[idx].clamp(0, 1)
    return eval_sh(targets.sh[idx], dirs).clamp(0, 1)


def gaussians_from_points(points: torch.Tensor, colors: torch.Tensor | None) -> Gaussians:
    """Heuristic 3DGS targets for a point cloud: isotropic scales from the 3-NN distance, opacity 0.1."""
    from structgs.utils.knn import knn_indices

    n = points.shape[0]
    nn_idx = knn_indices(points, 4)[:, 1:]
    dist = (points[nn_idx] - points[:, None]).norm(dim=-1).mean(-1).clamp_min(1e-6)
    rgb = colors if colors is not None else torch.full((n, 3), 0.5)
    return Gaussians(points.clone(), torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1), torch.log(dist)[:, None].repeat(1, 3),
                     torch.full((n,), math.log(0.1 / 0.9)), ((rgb - 0.5) / 0.28209479177387814)[:, None, :])


def random_box_points(n: int, lo: torch.Tensor, hi: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, 3, generator=generator)


class Fitter:
    """Fits a :class:`SceneModel` to ``dataset``'s training views, starting from ``targets``
    (a pre-trained 3DGS, or heuristic Gaussians on points when ``from_points``: stage 2 then
    densifies and prunes). ``generator`` draws everything random (also the targets' points)."""

    def __init__(self, dataset: SceneDataset, targets: Gaussians, config: FitConfig, *, from_points: bool,
                 generator: torch.Generator, checkpointer: Checkpointer | None = None,
                 device: torch.device = torch.device("cpu"), progress: bool = True):
        self.cfg, self.ds, self.targets = config, dataset, targets
        self.from_points, self.gen, self.checkpointer = from_points, generator, checkpointer
        self.device, self.progress = device, progress
        self.train_cams = dataset.split("train")
        self.bg = torch.tensor(config.background, dtype=torch.float32, device=device)
        _, self.extent = dataset.scene_extent()
        self.stage, self.step = STAGES[0], 0
        self.model: SceneModel | None = None
        self.strategy: DensifyPrune | None = None
        self.optimizers: dict[str, torch.optim.Optimizer] = {}

    # --- set-up -----------------------------------------------------------------------
    def initialise(self, scene: SceneInfo, meta: dict[str, Any]) -> SceneModel:
        """A fresh model (seeded decoder; the caller's global RNG is left alone) and optimizers;
        ``scene`` and ``meta`` (provenance) are stored with it."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.seed)
            self.model = self._new_model(scene, meta)
        self._make_optimizers()
        return self.model

    def _new_model(self, scene: SceneInfo, meta: dict[str, Any]) -> SceneModel:
        g = self.targets
        ls = g.log_scales
        lo = float(torch.quantile(ls.flatten()[:1_000_000], 0.001)) - 1.0
        hi = float(ls.max()) + 0.5
        if self.from_points:  # training from points: allow growth
            lo, hi = min(lo, math.log(self.extent) - 9.0), max(hi, math.log(self.extent) - 1.0)
        lo_p, hi_p = g.means.min(0).values, g.means.max(0).values
        centre = (lo_p + hi_p) / 2
        half = float((hi_p - lo_p).max()) / 2 if len(g) > 1 else 1.0
        dec = replace(self.cfg.decoder, scale_log_range=(lo, hi), position_center=tuple(centre.tolist()),
                      position_scale=max(half, 1e-6))
        model = SceneModel(dec, len(g), meta, scene)
        with torch.no_grad():
            model.centroids.copy_(g.means)
            model.latents.normal_(0.0, 0.1, generator=self.gen)
            for k in model.explicit:  # absent branches start at the PLY's values
                src = {"color": torch.logit(g.rgb_dc.clamp(1e-3, 1 - 1e-3)), "opacity": g.opacity_logits,
                       "scale": g.log_scales, "rotation": g.quats}[k]
                model.explicit[k].copy_(src)
            if scene.normals == "stored":  # the input's normals, kept for export
                model.normals.copy_(g.normals)
        return model.to(self.device)

    def _make_optimizers(self) -> None:
        m, cfg = self.model, self.cfg
        decoder_params = [p for n, p in m.decoder.named_parameters() if not n.startswith("branches.motion.")]
        s1 = [{"params": [m.latents], "lr": cfg.lr_latents}, {"params": decoder_params, "lr": cfg.lr_decoder}]
        s2 = [{"params": [m.centroids], "lr": cfg.lr_centroids * self.extent},
              {"params": [m.latents], "lr": cfg.lr_latents * 0.1},
              {"params": decoder_params, "lr": cfg.lr_decoder / 3}]
        if len(m.explicit):
            s1.append({"params": list(m.explicit.values()), "lr": 1e-2})
            s2.append({"params": list(m.explicit.values()), "lr": 2.5e-3})
        for group in s1 + s2:
            group["initial_lr"] = group["lr"]  # saved with the optimizer state: the schedule's base
        self.optimizers = {"stage1": adam(s1), "stage2": adam(s2, eps=1e-15)}

    # --- checkpoints --------------------------------------------------------------------
    def checkpoint(self) -> None:
        if self.checkpointer is None:
            return
        extra = {"strategy": None if self.strategy is None else self.strategy.state_dict()}
        self.checkpointer.save(self.model, TrainerState(self.stage, self.step, self.gen.get_state(),
                                                        {k: o.state_dict() for k, o in self.optimizers.items()},
                                                        extra))

    def restore(self) -> SceneModel:
        """Continue from the checkpointer's checkpoint (model, optimizers, RNG, densification)."""
        self.model = self.checkpointer.load_model(self.device)
        self._make_optimizers()
        state = self.checkpointer.load_state()
        for k, o in self.optimizers.items():
            o.load_state_dict(state.optimizers[k])
        self.stage, self.step = state.stage, state.step
        self.gen.set_state(state.generator)
        if state.extra.get("strategy") is not None:
            self.strategy = DensifyPrune(self.cfg.densify, self.extent, self.gen)
            self.strategy.load_state_dict(state.extra["strategy"])
        log.info("resuming at %s step %d (%d Gaussians)", self.stage, self.step, self.model.num_gaussians)
        return self.model

    def _checkpoint_at(self, step: int) -> None:
        self.step = step
        self.checkpoint()

    # --- stages -------------------------------------------------------------------------
    def train(self, stop_after: str | None = None) -> SceneModel:
        """Run the remaining stages, checkpointing at each stage's end; ``stop_after="stage1"``
        stops after attribute regression (a later call continues with stage 2)."""
        for stage, total, desc, step_fn in (
                ("stage1", self.cfg.stage1_iters, "fit stage 1 (attributes)", self._stage1_step),
                ("stage2", self.cfg.stage2_iters, "fit stage 2 (photometric)", self._stage2_step)):
            if self.stage != stage:
                continue
            if stage == "stage2":
                self._images = {c.name: self.ds.image(c).to(self.device) for c in self.train_cams}
                if self.from_points and self.strategy is None:
                    self.strategy = DensifyPrune(self.cfg.densify, self.extent, self.gen)
            run_stage(step_fn, start=self.step, total=total, optimizers=[self.optimizers[stage]], desc=desc,
                      progress=self.progress, checkpoint=self._checkpoint_at, checkpoint_every=self.cfg.checkpoint_every)
            self.stage, self.step = STAGES[STAGES.index(stage) + 1], 0
            self.checkpoint()
            if stage == stop_after:
                break
        return self.model

    def _random_camera(self):
        return self.train_cams[int(torch.randint(len(self.train_cams), (1,), generator=self.gen))]

    def _stage1_step(self, step: int) -> dict[str, Any]:
        m, tg, opt = self.model, self.targets, self.optimizers["stage1"]
        n = m.num_gaussians
        idx = torch.randint(n, (min(self.cfg.stage1_batch, n),), generator=self.gen).to(self.device)
        cam = self._random_camera()
        view = m.view_inputs(cam, idx)
        dirs = None if view is None else view[:, :3]
        if dirs is None and tg.sh_degree > 0:
            dirs = cam.to(self.device).view_directions(tg.means[idx])
        s = m.decode(index=idx, view=view)
        loss = attribute_l1(s.colors, s.opacities, s.scales.log(), s.quats, target_colors(tg, idx, dirs),
                            tg.opacities[idx], tg.log_scales[idx], tg.quats[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.detach()}

    def _stage2_step(self, step: int) -> dict[str, Any]:
        m, opt = self.model, self.optimizers["stage2"]
        cam = self._random_camera()
        out = m.render(cam, background=self.bg, backend=self.cfg.backend, compile_kernels=self.cfg.compile_rasterizer)
        target = self._images[cam.name]
        loss = photometric_loss(out.image, target, self.cfg.ssim_weight)
        if self.strategy is not None:
            self.strategy.before_backward(out)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if self.strategy is not None:
            self.strategy.after_backward(step + 1, m, [opt], out)
        image = out.image.detach()
        return {"loss": loss.detach(), "psnr": lambda: psnr(image, target), "n": m.num_gaussians}

    @torch.no_grad()
    def evaluate(self, split: str = "test", reference: Gaussians | None = None) -> dict:
        """Mean PSNR of the fitted model on ``split`` (and of ``reference``, e.g. the input PLY)."""
        from structgs.render.api import render_gaussians

        cams = self.ds.split(split) if split in self.ds.cameras else self.train_cams
        fitted = [psnr(out.image, self.ds.image(c).to(self.device))
                  for c, out in self.model.render_views(cams, background=self.bg, backend=self.cfg.backend)]
        report = {"split": split, "views": len(cams), "num_gaussians": self.model.num_gaussians,
                  "psnr_fitted": sum(fitted) / len(fitted)}
        if reference is not None:
            g = reference.to(self.device)
            ref = [psnr(render_gaussians(g, c, background=self.bg, backend=self.cfg.backend).image,
                        self.ds.image(c).to(self.device)) for c in cams]
            report["psnr_input_ply"] = sum(ref) / len(ref)
        return report
