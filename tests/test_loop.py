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
