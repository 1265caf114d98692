"""The training skeleton's stage runner: learning-rate decay, checkpoints, lazy progress figures."""

import torch

from structgs.training.loop import run_stage


def test_run_stage_decays_checkpoints_and_evaluates_costly_figures_only_when_shown():
    p = torch.nn.Parameter(torch.zeros(()))
    opt = torch.optim.SGD([p], lr=1.0)
    lrs, checkpoints, evaluated = [], [], []

    def step_fn(step):
        lrs.append(opt.param_groups[0]["lr"])
        return {"costly": lambda: evaluated.append(step) or 1.0}

    run_stage(step_fn, start=3, total=25, optimizers=[opt], desc="t", progress=True, checkpoint=checkpoints.append,
              checkpoint_every=10, postfix_every=10)
    assert len(lrs) == 22 and abs(lrs[0] - 0.1 ** (3 / 25)) < 1e-12 and abs(lrs[-1] - 0.1 ** (24 / 25)) < 1e-12
    assert checkpoints == [10, 20]  # never at the stage's end: the caller does that
    assert evaluated == [10, 20]  # displayed steps only
    evaluated.clear()
    run_stage(step_fn, start=0, total=5, optimizers=[opt], desc="t", progress=False)
    assert evaluated == []


def test_adam_uses_the_fused_kernel_with_adams_update():
    """structgs' Adam is torch's fused one on CPU floats, and steps as the plain one does (to
    float rounding), learning-rate groups and decay included."""
    from structgs.training.loop import adam, decay_lr

    g = torch.Generator().manual_seed(0)
    start = [torch.randn(1000, 8, generator=g), torch.randn(16, generator=g)]
    runs = []
    for make in (lambda groups: adam(groups, eps=1e-15), lambda groups: torch.optim.Adam(groups, eps=1e-15)):
        params = [t.clone().requires_grad_() for t in start]
        opt = make([{"params": [params[0]], "lr": 1e-2}, {"params": [params[1]], "lr": 3e-3}])
        for step in range(6):
            decay_lr(opt, step, 6)
            loss = (params[0] ** 2).sum() + (params[1].sin() * torch.arange(16.0)).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        runs.append((opt, [p.detach() for p in params]))
    (fused, a), (plain, b) = runs
    assert fused.defaults["fused"] and not plain.defaults.get("fused")
    for x, y, s in zip(a, b, start):
        assert (x - s).abs().max() > 1e-3  # it moved
        assert torch.allclose(x, y, rtol=1e-5, atol=1e-6)
