"""Densify/prune policy, kept apart from the trainer (gsplat's Strategy idea).

The trainer calls ``before_backward(render_output)`` and ``after_backward(step, ...)``;
the strategy grows or shrinks the model's per-Gaussian parameters (centroids, latents,
explicit attributes) and the optimizer's state with them.
"""

from __future__ import annotations

import torch

from structgs.model import SceneModel
from structgs.training.config import DensifyConfig
from structgs.utils.log import get_logger

log = get_logger("strategy")


@torch.no_grad()
def reindex_gaussians(model: SceneModel, optimizers: list[torch.optim.Optimizer], index: torch.Tensor,
                      num_kept: int, position_jitter: torch.Tensor | None = None) -> None:
    """Keep/duplicate Gaussians: new_param = old_param[index] (+ jitter on centroids).

    ``index[:num_kept]`` are kept Gaussians, the rest duplicates; Adam moments follow the
    same indexing, zeroed for duplicates so they move freely.
    """
    fresh = torch.arange(index.numel(), device=index.device) >= num_kept
    for name, old in model.per_gaussian().items():  # parameters and direct-edit buffers alike
        value = old.detach()[index].clone()
        if name == "centroids" and position_jitter is not None:
            value = value + position_jitter
        new = model.set_per_gaussian(name, value)
        if not isinstance(old, torch.nn.Parameter):
            continue
        for opt in optimizers:
            for group in opt.param_groups:
                for k, p in enumerate(group["params"]):
                    if p is old:
                        group["params"][k] = new
                        state = opt.state.pop(old, None)
                        if state:
                            for key in ("exp_avg", "exp_avg_sq"):
                                if key in state:
                                    s = state[key][index].clone()
                                    s[fresh] = 0
                                    state[key] = s
                            opt.state[new] = state


class DensifyPrune:
    """3DGS-style adaptive density control on the decoded Gaussians."""

    def __init__(self, config: DensifyConfig, scene_extent: float, generator: torch.Generator | None = None):
        self.config, self.extent = config, scene_extent
        self.generator = generator  # where split Gaussians are placed (the fit's own, never the global RNG)
        self.grad_accum: torch.Tensor | None = None
        self.count: torch.Tensor | None = None

    def state_dict(self) -> dict[str, torch.Tensor | None]:
        """The accumulated screen-space gradients since the last densification (checkpointed,
        so a resumed fit densifies exactly as an uninterrupted one)."""
        return {"grad_accum": self.grad_accum, "count": self.count}

    def load_state_dict(self, state: dict[str, torch.Tensor | None]) -> None:
        self.grad_accum, self.count = state["grad_accum"], state["count"]

    def before_backward(self, render_output) -> None:
        render_output.means2d.retain_grad()

    def after_backward(self, step: int, model: SceneModel, optimizers: list[torch.optim.Optimizer], render_output) -> None:
        cfg = self.config
        if step > cfg.stop:
            return
        n = model.num_gaussians
        if self.grad_accum is None or self.grad_accum.numel() != n:
            self.grad_accum = torch.zeros(n, device=model.device)
            self.count = torch.zeros(n, device=model.device)
        g = render_output.means2d.grad
        if g is not None:
            visible = render_output.radii > 0
            # pixel-space gradients -> NDC-scaled ones, the units of 3DGS's threshold (as gsplat does)
            h, w = render_output.image.shape[:2]
            g = g * g.new_tensor([w / 2.0, h / 2.0])
            self.grad_accum[visible] += g[visible].norm(dim=-1)
            self.count[visible] += 1
        if step >= cfg.start and step % cfg.every == 0:
            self._densify_and_prune(model, optimizers)

    @torch.no_grad()
    def _densify_and_prune(self, model: SceneModel, optimizers) -> None:
        cfg = self.config
        s = model.decode()
        mean_grad = self.grad_accum / self.count.clamp_min(1)
        grow = (mean_grad > cfg.grad_threshold) & (self.count > 0)
        room = max(cfg.max_gaussians - model.num_gaussians, 0)
        if grow.sum() > room:
            top = torch.topk(torch.where(grow, mean_grad, torch.zeros_like(mean_grad)), room).indices
            grow = torch.zeros_like(grow)
            grow[top] = True
        keep = s.opacities > cfg.min_opacity
        keep_idx = torch.nonzero(keep).flatten()
        dup_idx = torch.nonzero(grow & keep).flatten()
        big = s.scales[dup_idx].max(dim=-1).values > cfg.split_scale * self.extent
        # duplicates of large Gaussians are placed by sampling inside them (split); small ones are cloned
        jitter = torch.zeros(keep_idx.numel() + dup_idx.numel(), 3, device=model.device)
        noise = torch.randn(int(big.sum()), 3, generator=self.generator).to(model.device)
        jitter[keep_idx.numel():][big] = noise * s.scales[dup_idx][big]
        reindex_gaussians(model, optimizers, torch.cat([keep_idx, dup_idx]), keep_idx.numel(), jitter)
        log.debug("densify: +%d (split %d), pruned %d -> %d Gaussians", dup_idx.numel(), int(big.sum()),
                  int((~keep).sum()), model.num_gaussians)
        self.grad_accum = None
