"""The training skeleton shared by fitting (stages 1 and 2), shaping and its repair pass.

A trainer is a sequence of named stages; each stage is a step function run by
:func:`run_stage`, which decays the learning rates, shows progress and checkpoints every
``checkpoint_every`` steps. :class:`Checkpointer` writes the model and the trainer's state
(stage, step, its own ``torch.Generator``, optimizer states, whatever else the trainer needs)
as one directory swapped in atomically, so a killed job resumes bit-exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm import tqdm

from structgs.model import SceneModel
from structgs.utils.errors import InputError
from structgs.utils.io import finish_dir_replacement, replace_dir_atomically

CHECKPOINT_DIR = "checkpoint"
STATE_NAME = "trainer.pt"
JOB_NAME = "job.json"  # what wrote the checkpoint and where it stood, readable without loading the state


def adam(params, **kwargs) -> torch.optim.Adam:
    """Adam, with PyTorch's fused kernel where it has one (CPU and CUDA floats): one pass over
    each parameter instead of a dozen elementwise ops over all of it. Fitting 1M Gaussians
    steps Adam over 1M x 32 latents every step: 0.14 s a step, 0.022 s fused (2 cores). The
    update is Adam's, to float rounding; its state dict is the same either way."""
    groups = list(params)
    tensors = [p for g in groups for p in (g["params"] if isinstance(g, dict) else [g])]
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in tensors)
    return torch.optim.Adam(groups, fused=fused, **kwargs)


def decay_lr(optimizer: torch.optim.Optimizer, step: int, total: int) -> None:
    """Exponential decay from each group's ``initial_lr`` to a tenth of it over ``total`` steps."""
    factor = 0.1 ** (step / max(total, 1))
    for group in optimizer.param_groups:
        group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor


@dataclass
class TrainerState:
    """Where a trainer stands: what a checkpoint restores besides the model's weights."""

    stage: str
    """Name of the stage to run next (or ``done``)."""
    step: int
    """Next step of that stage."""
    generator: torch.Tensor
    """State of the trainer's ``torch.Generator`` (all its sampling draws from it)."""
    optimizers: dict[str, dict[str, Any]] = field(default_factory=dict)
    """``state_dict()`` of each optimizer, by name."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything else the trainer needs to continue (labels, sampling pools, densification state)."""


class Checkpointer:
    """``<run>/checkpoint``: the model (``save_pretrained``) plus ``trainer.pt``, written as one
    directory and swapped in atomically; ``kind`` names the job in messages and is checked on load."""

    def __init__(self, run_dir: str | Path, kind: str):
        self.run_dir, self.kind = Path(run_dir), kind
        self.path = self.run_dir / CHECKPOINT_DIR

    def recover(self) -> None:
        """Complete or undo a swap that a kill interrupted (see ``replace_dir_atomically``)."""
        if self.run_dir.is_dir():
            finish_dir_replacement(self.path)

    def exists(self) -> bool:
        return (self.path / STATE_NAME).is_file()

    def guard(self, resume: bool, option: str = "--out") -> None:
        """Before any work: refuse to write over a run unless resuming, and refuse to resume
        without a checkpoint of this job (never a silent restart from step 0)."""
        self.recover()
        has_run = (self.run_dir / "config.json").is_file() or self.path.is_dir()
        if has_run and not resume:
            raise InputError(f"{option} {self.run_dir} already holds a run; pass --resume to continue it or "
                             f"choose another {option}")
        if resume and not self.exists():
            raise InputError(f"--resume: {self.run_dir} holds no {self.kind} checkpoint to resume from")
        kind = self.job().get("kind") if resume else self.kind
        if kind != self.kind:
            raise InputError(f"--resume: the checkpoint in {self.run_dir} is not a {self.kind} checkpoint "
                             f"(it is {kind!r})")

    def job(self) -> dict:
        """``{"kind", "stage", "step"}`` of the checkpoint (from the state itself for checkpoints
        written before job.json)."""
        path = self.path / JOB_NAME
        if path.is_file():
            try:
                job = json.loads(path.read_text())
            except json.JSONDecodeError as e:
                raise InputError(f"{path}: invalid JSON ({e})") from None
            if not isinstance(job, dict):
                raise InputError(f"{path}: expected an object, got {type(job).__name__}")
            return job
        state = self.load_state()
        return {"kind": state.extra.get("kind"), "stage": state.stage, "step": state.step}

    def save(self, model: SceneModel, state: TrainerState) -> None:
        payload = {"stage": state.stage, "step": state.step, "generator": state.generator,
                   "optimizers": state.optimizers, "extra": {**state.extra, "kind": self.kind}}

        def write(tmp: Path) -> None:
            model.save_pretrained(tmp)
            torch.save(payload, tmp / STATE_NAME)
            (tmp / JOB_NAME).write_text(json.dumps({"kind": self.kind, "stage": state.stage, "step": state.step}))

        replace_dir_atomically(self.path, write)

    def load_state(self, map_location: torch.device | str = "cpu") -> TrainerState:
        d = torch.load(self.path / STATE_NAME, map_location=map_location, weights_only=False)
        return TrainerState(d["stage"], d["step"], d["generator"].cpu(), d["optimizers"], d["extra"])

    def load_model(self, device: torch.device | str = "cpu") -> SceneModel:
        return SceneModel.from_pretrained(self.path, device)


def run_stage(step_fn: Callable[[int], dict[str, Any]], *, start: int, total: int,
              optimizers: list[torch.optim.Optimizer], desc: str, progress: bool = True,
              checkpoint: Callable[[int], None] | None = None, checkpoint_every: int = 0,
              postfix_every: int = 10) -> None:
    """Run ``step_fn(step)`` for ``step`` in ``[start, total)``. Before each step the learning
    rates decay (``decay_lr``); ``step_fn`` computes and applies its update and returns figures
    for the progress bar (a value may be a zero-argument callable, evaluated only when shown);
    after every ``checkpoint_every``-th step short of the last, ``checkpoint(next_step)`` is
    called (the caller checkpoints the stage's end itself)."""
    bar = tqdm(range(start, total), desc=desc, disable=not progress, initial=start, total=total)
    for step in bar:
        for opt in optimizers:
            decay_lr(opt, step, total)
        figures = step_fn(step)
        if progress and figures and step % postfix_every == 0:
            shown = {k: (v() if callable(v) else v) for k, v in figures.items()}  # costly figures: only when shown
            bar.set_postfix({k: (f"{float(v):.4f}" if isinstance(v, (float, torch.Tensor)) else v)
                             for k, v in shown.items()})
        if checkpoint is not None and checkpoint_every and (step + 1) % checkpoint_every == 0 and step + 1 < total:
            checkpoint(step + 1)
