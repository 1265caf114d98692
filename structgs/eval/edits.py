"""How well an edit stays on its selection: the leakage figures of the editing API.

``measure_edits`` runs, on one selection, a removal, a recolour and three consecutive moves
(each undone before the next), then checks that undo / redo / reset restore every weight bit
for bit. Each figure compares what the edit did to the selected Gaussians with what it did to
all the others, on the decoded attributes (not on renders):

- removal: mean |opacity change| on the others / on the selection (target <= 0.02);
- recolour: largest channel error of the selection's mean colour (<= 0.05) and the others'
  mean |colour change|;
- move: after each move, |mean offset of the selection - requested total| / |requested total|
  (<= 0.05) and the others' mean offset norm / |requested total| (< 0.01); the worst of the
  three moves is reported; ``spread`` is the selection's mean distance from its own mean
  offset after the last move, of the request (0: a rigid move).

``measure_chain`` chains edits as the CLI does (each on the previous result, fresh history):
a move, then a recolour of the moved object, and counts Gaussians rather than means: the
object's Gaussians left behind by the move (< half the request), the others that moved
(> 10 % of it), and per other label the share visibly tinted (a channel changed > 0.05).
"""

from __future__ import annotations

import torch

RECOLOR_TARGET = (0.1, 0.8, 0.2)
MOVE_STEP = (0.0, 0.0, 0.15)


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(model, state: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def measure_edits(editor, selection: torch.Tensor, rgb=RECOLOR_TARGET, step=MOVE_STEP, moves: int = 3) -> dict:
    """Leakage of remove / recolor / ``moves`` x move on ``selection`` ((N,) bool); leaves the
    editor's model as it found it (and says whether undo restored it bit-exactly)."""
    model = editor.model
    if selection.dtype != torch.bool or selection.shape != (model.num_gaussians,):
        raise ValueError(f"selection must be a ({model.num_gaussians},) bool tensor, got {tuple(selection.shape)} "
                         f"{selection.dtype}")
    if not selection.any() or selection.all():
        raise ValueError("selection must hold some but not all Gaussians")
    if editor.history.done or editor.history.undone:
        raise ValueError("measure_edits needs an editor with no edit history (call editor.reset() first)")
    start = _state(model)
    sel = selection.to(model.device)
    with torch.no_grad():
        base = model.decode()
    out: dict = {"selected": int(selection.sum())}

    editor.remove(selection)
    with torch.no_grad():
        op = model.decode().opacities.reshape(-1)
    d = (op - base.opacities.reshape(-1)).abs()
    out["remove"] = {"change_selected": float(d[sel].mean()), "change_others": float(d[~sel].mean()),
                     "ratio": float(d[~sel].mean() / d[sel].mean().clamp_min(1e-12)),
                     "selected_below_0.05": float((op[sel] < 0.05).float().mean())}
    editor.undo()

    editor.recolor(selection, list(rgb))
    with torch.no_grad():
        col = model.decode().colors
    target = torch.tensor(rgb, dtype=col.dtype, device=col.device)
    out["recolor"] = {"target": list(rgb), "mean_selected": col[sel].mean(0).tolist(),
                      "error": float((col[sel].mean(0) - target).abs().max()),
                      "change_others": float((col - base.colors)[~sel].abs().mean())}
    editor.undo()

    step_t = torch.tensor(step, dtype=torch.float32, device=model.device)
    errors, leaks = [], []
    for i in range(1, moves + 1):
        editor.move(selection, list(step))
        with torch.no_grad():
            off = model.decode().offsets - base.offsets
        want = i * step_t
        errors.append(float((off[sel].mean(0) - want).norm() / want.norm()))
        leaks.append(float(off[~sel].norm(dim=1).mean() / want.norm()))
    # rigidity: how far the selection's Gaussians are from its mean offset, of the request
    spread = float((off[sel] - off[sel].mean(0)).norm(dim=1).mean() / (moves * step_t).norm())
    out["move"] = {"step": list(step), "moves": moves, "requested_total": (moves * step_t).tolist(),
                   "mean_selected": off[sel].mean(0).tolist(), "error": max(errors), "others": max(leaks),
                   "spread": spread,
                   "error_per_move": errors, "others_per_move": leaks}
    after_moves = _state(model)
    for _ in range(moves):
        editor.undo()
    undo_exact = _same(model, start)
    for _ in range(moves):
        editor.redo()
    redo_exact = _same(model, after_moves)
    editor.reset()
    out["restore"] = {"undo_exact": undo_exact, "redo_exact": redo_exact, "reset_exact": _same(model, start)}
    if not out["restore"]["reset_exact"]:  # never leave a caller with edited weights
        model.load_state_dict(start)
    return out


TINT = 0.05
"""A colour change (largest channel) above this counts as a visible tint."""


def measure_chain(make_editor, selection: torch.Tensor, labels: torch.Tensor, rgb=RECOLOR_TARGET,
                  step=MOVE_STEP) -> dict:
    """Move ``selection`` by ``step``, then recolour it to ``rgb`` with a new editor (as
    ``structgs edit`` chains runs); ``make_editor()`` gives an editor with a fresh history on
    the model. Leaves the model as it found it. ``labels``: (N,) object id per Gaussian."""
    first = make_editor()
    model = first.model
    start = _state(model)
    sel = selection.to(model.device)
    step_t = torch.tensor(step, dtype=torch.float32, device=model.device)
    try:
        with torch.no_grad():
            base = model.decode().offsets
        first.move(selection, list(step))
        with torch.no_grad():
            moved = (model.decode().offsets - base).norm(dim=1) / step_t.norm()
            before = model.view_independent_colors()
        make_editor().recolor(selection, list(rgb))
        with torch.no_grad():
            after = model.view_independent_colors()
    finally:
        model.load_state_dict(start)
    tinted = ((after - before).abs().max(-1).values > TINT).cpu()
    labels = labels.cpu()
    own = labels[selection.cpu()].mode().values.item()
    target = torch.tensor(rgb, dtype=after.dtype, device=after.device)
    return {"left_behind": float((moved[sel] < 0.5).float().mean()),
            "others_moved": float((moved[~sel] > 0.1).float().mean()),
            "recolor_error": float((after[sel].mean(0) - target).abs().max()),
            "tinted": {int(j): float(tinted[(labels == j) & ~selection.cpu()].float().mean())
                       for j in labels.unique().tolist() if j not in (0, own)}}


def meets_targets(m: dict) -> dict[str, bool]:
    """The editing issue's thresholds applied to one ``measure_edits`` result."""
    return {"remove": m["remove"]["ratio"] <= 0.02, "recolor": m["recolor"]["error"] <= 0.05,
            "move": m["move"]["error"] <= 0.05 and m["move"]["others"] < 0.01,
            "restore": all(m["restore"].values())}
