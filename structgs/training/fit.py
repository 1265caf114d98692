"""Per-scene fitting: stage 1 regresses decoded attributes on the input PLY (no rendering),
stage 2 fine-tunes photometrically on the training views. Checkpoints are atomic and a
killed fit resumes where it stopped (RNG and optimizer state included)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from structgs.utils.metrics import psnr
from structgs.model import SceneModel
from structgs.render.api import render_gaussians
from structgs.render.sh import eval_sh
from structgs.scene.dataset import SceneDataset, load_dataset, load_init_points
from structgs.scene.gaussians import Gaussians
from structgs.scene.ply import read_ply
from structgs.training.config import FitConfig
from structgs.training.losses import photometric_loss, quaternion_distance
from structgs.training.strategy import DensifyPrune
from structgs.utils.device import resolve_device
from structgs.utils.io import ensure_writable_dir, finish_dir_replacement, replace_dir_atomically, write_json
from structgs.utils.log import get_logger
from structgs.utils.errors import InputError

log = get_logger("fit")
CHECKPOINT_DIR = "checkpoint"


@dataclass
class Targets:
    """What stage 1 regresses: the input 3DGS's attributes (or heuristic ones from a point cloud)."""

    gaussians: Gaussians  # activated via properties; SH for view-dependent colour

    def colors(self, idx: torch.Tensor, dirs: torch.Tensor | None) -> torch.Tensor:
        g = self.gaussians
        if g.sh_degree == 0 or dirs is None:
            return g.rgb_dc[idx].clamp(0, 1)
        return eval_sh(g.sh[idx], dirs).clamp(0, 1)


def _targets_from_points(points: torch.Tensor, colors: torch.Tensor | None) -> Gaussians:
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
    """Fits a :class:`SceneModel` to a dataset, from a pre-trained PLY or a point cloud."""

    def __init__(self, data: str | Path, out: str | Path, ply: str | Path | None = None,
                 init: str | Path | None = None, config: FitConfig | None = None, device: str = "auto",
                 progress: bool = True):
        if (ply is None) == (init is None):
            raise InputError("give exactly one of --ply (a pre-trained 3DGS) or --init (points.ply, a COLMAP "
                             "sparse dir, or 'random')")
        self.cfg = config or FitConfig()
        self.out, self.data = Path(out), Path(data)
        self.ply = Path(ply) if ply is not None else None
        self.init = init
        self.device = resolve_device(device)
        self.progress = progress
        if self.ply is not None and self.out.resolve() == self.ply.resolve():
            raise InputError(f"--out {self.out} is the input PLY; choose a run directory")
        if self.out.resolve() == self.data.resolve():
            raise InputError(f"--out {self.out} is the dataset directory; choose another run directory")
        self.ds: SceneDataset = load_dataset(self.data, background=self.cfg.background, downscale=self.cfg.downscale)
        self.train_cams = self.ds.split("train")
        self.bg = torch.tensor(self.cfg.background, dtype=torch.float32, device=self.device)
        centre, self.extent = self.ds.scene_extent()
        self.mean_cam_dist = float(torch.stack([c.center for c in self.ds.all_cameras]).sub(centre).norm(dim=1).mean())
        self.gen = torch.Generator().manual_seed(self.cfg.seed)
        self.stage, self.step = "stage1", 0
        self.model: SceneModel | None = None
        self.targets: Targets | None = None
        self.strategy: DensifyPrune | None = None
        self.optimizers: dict[str, torch.optim.Optimizer] = {}

    # --- set-up -----------------------------------------------------------------------
    def _load_targets(self) -> Gaussians:
        if self.ply is not None:
            return read_ply(self.ply)
        if str(self.init) == "random":
            centre, _ = self.ds.scene_extent()
            half = 0.4 * self.mean_cam_dist
            pts = random_box_points(self.cfg.init_points, centre - half, centre + half, self.gen)
            log.info("initialising from %d random points in the box %s +- %.2f", len(pts), centre.tolist(), half)
            return _targets_from_points(pts, None)
        pts, rgb = load_init_points(self.init)
        if len(pts) < 4:
            raise InputError(f"{self.init}: needs at least 4 points, got {len(pts)}")
        return _targets_from_points(pts, rgb)

    def _build_model(self, g: Gaussians) -> SceneModel:
        with torch.random.fork_rng(devices=[]):  # seeded decoder init; the caller's global RNG is left alone
            torch.manual_seed(self.cfg.seed)
            return self._new_model(g)

    def _new_model(self, g: Gaussians) -> SceneModel:
        dec = self.cfg.decoder
        ls = g.log_scales
        lo = float(torch.quantile(ls.flatten()[:1_000_000], 0.001)) - 1.0
        hi = float(ls.max()) + 0.5
        if self.init is not None:  # training from points: allow growth
            lo, hi = min(lo, math.log(self.extent) - 9.0), max(hi, math.log(self.extent) - 1.0)
        from dataclasses import replace

        lo_p, hi_p = g.means.min(0).values, g.means.max(0).values
        centre = (lo_p + hi_p) / 2
        half = float((hi_p - lo_p).max()) / 2 if len(g) > 1 else 1.0
        dec = replace(dec, scale_log_range=(lo, hi), position_center=tuple(centre.tolist()), position_scale=max(half, 1e-6))
        meta = {"data": str(self.data.resolve()), "background": list(self.cfg.background),
                "downscale": self.cfg.downscale, "source_ply": str(self.ply.resolve()) if self.ply else None,
                "init": None if self.init is None else str(self.init), "scene_extent": self.extent,
                "mean_camera_distance": self.mean_cam_dist, "fit": self.cfg.to_dict()}
        model = SceneModel(dec, len(g), meta)
        with torch.no_grad():
            model.centroids.copy_(g.means)
            model.latents.normal_(0.0, 0.1, generator=self.gen)
            for k in model.explicit:  # absent branches start at the PLY's values
                src = {"color": torch.logit(g.rgb_dc.clamp(1e-3, 1 - 1e-3)), "opacity": g.opacity_logits,
                       "scale": g.log_scales, "rotation": g.quats}[k]
                model.explicit[k].copy_(src)
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
        self.optimizers = {"stage1": torch.optim.Adam(s1), "stage2": torch.optim.Adam(s2, eps=1e-15)}

    # --- checkpoints --------------------------------------------------------------------
    def _checkpoint(self) -> None:
        state = {"stage": self.stage, "step": self.step, "gen": self.gen.get_state(),
                 "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                 "strategy": None if self.strategy is None else self.strategy.state_dict()}

        def write(tmp: Path) -> None:
            self.model.save_pretrained(tmp)
            torch.save(state, tmp / "trainer.pt")

        replace_dir_atomically(self.out / CHECKPOINT_DIR, write)

    def _restore(self) -> bool:
        ck = self.out / CHECKPOINT_DIR
        if not (ck / "trainer.pt").is_file():
            return False
        self.model = SceneModel.from_pretrained(ck, self.device)
        self._make_optimizers()
        state = torch.load(ck / "trainer.pt", map_location="cpu", weights_only=False)
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        self.stage, self.step = state["stage"], state["step"]
        self.gen.set_state(state["gen"])
        if state.get("strategy") is not None:
            self.strategy = DensifyPrune(self.cfg.densify, self.extent, self.gen)
            self.strategy.load_state_dict(state["strategy"])
        log.info("resuming %s at %s step %d (%d Gaussians)", self.out, self.stage, self.step, self.model.num_gaussians)
        return True

    # --- stages -------------------------------------------------------------------------
    def _lr_factor(self, step: int, total: int) -> float:
        return 0.1 ** (step / max(total, 1))  # exponential decay to a tenth

    def _stage1(self) -> None:
        m, cfg, tg = self.model, self.cfg, self.targets.gaussians.to(self.device)
        opt = self.optimizers["stage1"]
        n = m.num_gaussians
        bar = tqdm(range(self.step, cfg.stage1_iters), desc="fit stage 1 (attributes)", disable=not self.progress,
                   initial=self.step, total=cfg.stage1_iters)
        for self.step in bar:
            for g in opt.param_groups:
                g["lr"] = g["initial_lr"] * self._lr_factor(self.step, cfg.stage1_iters)
            idx = torch.randint(n, (min(cfg.stage1_batch, n),), generator=self.gen).to(self.device)
            cam = self.train_cams[int(torch.randint(len(self.train_cams), (1,), generator=self.gen))]
            view = m.view_inputs(cam, idx)
            dirs = None if view is None else view[:, :3]
            if dirs is None and tg.sh_degree > 0:
                dirs = cam.to(self.device).view_directions(tg.means[idx])
            s = m.decode(index=idx, view=view)
            loss = (s.colors - Targets(tg).colors(idx, dirs)).abs().mean()
            loss = loss + (s.opacities - tg.opacities[idx]).abs().mean()
            loss = loss + 0.5 * (torch.log(s.scales) - tg.log_scales[idx]).abs().mean()
            loss = loss + quaternion_distance(s.quats, tg.quats[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if self.step % 50 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}")
            if cfg.checkpoint_every and (self.step + 1) % cfg.checkpoint_every == 0:
                self.step += 1
                self._checkpoint()
                self.step -= 1
        self.stage, self.step = "stage2", 0

    def _stage2(self) -> None:
        m, cfg = self.model, self.cfg
        opt = self.optimizers["stage2"]
        images = {c.name: self.ds.image(c).to(self.device) for c in self.train_cams}
        if self.init is not None and self.strategy is None:
            self.strategy = DensifyPrune(cfg.densify, self.extent, self.gen)
        bar = tqdm(range(self.step, cfg.stage2_iters), desc="fit stage 2 (photometric)", disable=not self.progress,
                   initial=self.step, total=cfg.stage2_iters)
        for self.step in bar:
            for g in opt.param_groups:
                g["lr"] = g["initial_lr"] * self._lr_factor(self.step, cfg.stage2_iters)
            cam = self.train_cams[int(torch.randint(len(self.train_cams), (1,), generator=self.gen))]
            out = m.render(cam, background=self.bg, backend=cfg.backend)
            loss = photometric_loss(out.image, images[cam.name], cfg.ssim_weight)
            if self.strategy is not None:
                self.strategy.before_backward(out)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if self.strategy is not None:
                self.strategy.after_backward(self.step + 1, m, [opt], out)
            if self.step % 10 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}", psnr=f"{psnr(out.image.detach(), images[cam.name]):.2f}",
                                n=m.num_gaussians)
            if cfg.checkpoint_every and (self.step + 1) % cfg.checkpoint_every == 0:
                self.step += 1
                self._checkpoint()
                self.step -= 1
        self.stage, self.step = "done", 0

    # --- entry point --------------------------------------------------------------------
    def run(self, resume: bool = False) -> dict:
        if self.out.is_dir():  # a kill inside a checkpoint swap: complete or undo it first
            finish_dir_replacement(self.out / CHECKPOINT_DIR)
        has_run = (self.out / "config.json").is_file() or (self.out / CHECKPOINT_DIR).is_dir()
        if has_run and not resume:
            raise InputError(f"{self.out} already holds a run; pass --resume to continue it or choose another --out")
        ensure_writable_dir(self.out)
        self.targets = Targets(self._load_targets())
        if resume and not (self.out / CHECKPOINT_DIR / "trainer.pt").is_file():
            raise InputError(f"--resume: {self.out} holds no fit checkpoint to resume from")
        if not (resume and self._restore()):
            self.model = self._build_model(self.targets.gaussians)
            self._make_optimizers()
        if self.stage == "stage1":
            self._stage1()
            self._checkpoint()
        if self.stage == "stage2":
            self._stage2()
            self._checkpoint()
        self.model.save_pretrained(self.out)
        report = self.evaluate()
        write_json(self.out / "fit_report.json", report)
        return report

    @torch.no_grad()
    def evaluate(self, split: str = "test") -> dict:
        cams = self.ds.split(split) if split in self.ds.cameras else self.train_cams
        fitted = [psnr(self.model.render(c, background=self.bg, backend=self.cfg.backend).image,
                       self.ds.image(c).to(self.device)) for c in cams]
        report = {"split": split, "views": len(cams), "num_gaussians": self.model.num_gaussians,
                  "psnr_fitted": sum(fitted) / len(fitted)}
        if self.ply is not None:
            g = self.targets.gaussians.to(self.device)
            ref = [psnr(render_gaussians(g, c, background=self.bg, backend=self.cfg.backend).image,
                        self.ds.image(c).to(self.device)) for c in cams]
            report["psnr_input_ply"] = sum(ref) / len(ref)
        log.info("fit: %s PSNR fitted %.2f dB%s", split, report["psnr_fitted"],
                 f", input PLY {report['psnr_input_ply']:.2f} dB" if "psnr_input_ply" in report else "")
        return report
