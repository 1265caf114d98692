"""``structgs view``: a browser editor over a shaped run (viser; WebGL in the browser, so the
server needs no GPU).

Click an object to segment it (shift-click adds one), drag the threshold slider, then remove,
recolour or move it (transform gizmo, applied on release), undo / redo / reset, compare with
voting, export the selection or the edited scene as an INRIA PLY, or save the edited scene as a
new run. Every action goes through :class:`structgs.edit.session.EditSession`, the same API a
notebook uses; the viewer adds only the server, the panel and the files it writes.
"""

from __future__ import annotations

import signal
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from structgs.edit.selection import EmptySelectionError
from structgs.edit.session import EditSession
from structgs.pipeline.runs import Run, commit_run, refuse_new_run_over
from structgs.scene.ply import write_ply
from structgs.utils.errors import InputError, StructGSError
from structgs.utils.io import ensure_writable_dir, save_npy
from structgs.utils.log import get_logger
from structgs.viewer.splats import SplatArrays, ViewPose, scene_up, splat_arrays, view_pose

log = get_logger("view")


@dataclass(frozen=True)
class ViewerConfig:
    host: str = "127.0.0.1"
    """Interface to serve on (0.0.0.0: every interface, e.g. a remote server reached by an SSH tunnel)."""
    port: int = 8080
    """Port to serve on (the next free one if taken; 0: any free port). The URL is printed."""
    exports: Path = Path("structgs-exports")
    """Folder for exported PLYs and selections (created on the first export; files never overwritten)."""
    masks: Path | None = None
    """Id masks of the training views with ids consistent across views: enables "compare" (voting)."""
    view: str | None = None
    """Dataset view the browser starts at (default: the first training view)."""
    threshold: float = 0.5
    """Initial segmentation threshold (cosine)."""


class Viewer:
    """The server, its scene and its panel, over one :class:`EditSession`."""

    def __init__(self, run: Run, config: ViewerConfig):
        import viser

        self.run, self.config = run, config
        self.session = EditSession(run.model, config.threshold)
        self.cameras = run.dataset.split("train")
        if not self.cameras:
            raise InputError(f"{run.path}: the dataset has no training views")
        self.start_pose = view_pose(run.dataset.camera(config.view or self.cameras[0].name))
        self.masks = self._load_masks(config.masks)
        self.lock = threading.Lock()
        self.voting: np.ndarray | None = None  # compare's selection, shown until the selection changes
        self.server = viser.ViserServer(host=config.host, port=config.port, verbose=False)
        self.server.scene.set_up_direction(tuple(scene_up(self.cameras)))
        self._splats: SplatArrays | None = None
        self._gizmo_anchor = np.zeros(3)
        self._build_scene()
        self._build_panel()
        self.server.on_client_connect(self._on_connect)
        self.server.scene.on_click()(lambda e: self._click(e, add=False))
        self.server.scene.on_click(modifier="shift")(lambda e: self._click(e, add=True))

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.server.get_port()}"

    def _load_masks(self, masks: Path | None):
        if masks is None:
            return None
        ds = self.run.dataset
        cams = [c for c in self.cameras if ds.mask_path(c, masks).is_file()]
        if not cams:
            raise InputError(f"--masks {masks}: no mask for any training view")
        return cams, [ds.mask(c, masks) for c in cams]

    # --- scene ------------------------------------------------------------------------------
    def _build_scene(self) -> None:
        extent = float(self.run.model.scene.scene_extent)
        for i, cam in enumerate(self.cameras):
            pose = view_pose(cam)
            frustum = self.server.scene.add_camera_frustum(
                f"/cameras/{i}", fov=pose.fov, aspect=pose.aspect, scale=0.05 * extent, wxyz=pose.wxyz,
                position=pose.position, color=(120, 120, 120))
            frustum.on_click(lambda e, pose=pose: self._go_to(e.client, pose))
        self.gizmo = self.server.scene.add_transform_controls("/move", scale=0.2 * extent, disable_rotations=True,
                                                              visible=False)
        self.gizmo.on_update(lambda e: self._moved() if e.phase == "end" else None)  # applied on release
        self._redraw(decode=True)

    def _redraw(self, decode: bool = False, colours: bool = True) -> None:
        """Upload the splats: re-decoded after an edit (``colours``: the edit may have changed
        colours), re-tinted after a selection change."""
        if decode or self._splats is None:
            keep = None if colours or self._splats is None else self._splats.rgbs
            self._splats = splat_arrays(self.session.model, self.session.geometry(), keep)
        sel = self.session.selection.numpy()
        a = self._splats.tinted(sel if sel.any() else None, self.voting)
        self.server.scene.add_gaussian_splats("/scene", centers=a.centers, covariances=a.covariances, rgbs=a.rgbs,
                                              opacities=a.opacities)
        if sel.any():  # the gizmo sits at the selection's centre
            self.gizmo.position = tuple(float(v) for v in self._splats.centers[sel].mean(0))
            self._gizmo_anchor = np.array(self.gizmo.position, dtype=np.float64)  # a copy: viser updates its array
        self.gizmo.visible = bool(sel.any())

    def _go_to(self, client, pose: ViewPose) -> None:
        with client.atomic():
            client.camera.fov = pose.fov
            client.camera.position = pose.position
            client.camera.wxyz = pose.wxyz

    def _on_connect(self, client) -> None:
        self._go_to(client, self.start_pose)

    # --- panel ------------------------------------------------------------------------------
    def _build_panel(self) -> None:
        gui = self.server.gui
        self.status = gui.add_markdown("Click an object to select it; shift-click adds one.")
        self.threshold = gui.add_slider("Threshold", min=0.05, max=0.95, step=0.01,
                                        initial_value=self.session.threshold,
                                        hint="Keep Gaussians whose Jacobian cosine with a click exceeds this")
        self.threshold.on_update(lambda _: self._act("threshold", self._rethreshold))
        gui.add_button("Clear selection").on_click(lambda _: self._act("clear", self._clear))
        with gui.add_folder("Edit"):
            gui.add_button("Remove").on_click(lambda _: self._act("remove", self._edit, "remove"))
            self.colour = gui.add_rgb("Colour", (230, 40, 40))
            gui.add_button("Recolor").on_click(lambda _: self._act("recolor", self._edit, "recolor"))
            gui.add_markdown("Move: drag the gizmo's arrows (applied on release), or type a step:")
            self.step = gui.add_vector3("Move by", (0.0, 0.0, 0.0), step=0.01, hint="Translation DX DY DZ (world units)")
            gui.add_button("Move").on_click(lambda _: self._act("move", self._move, np.asarray(self.step.value)))
            gui.add_button("Undo").on_click(lambda _: self._act("undo", self._history, "undo"))
            gui.add_button("Redo").on_click(lambda _: self._act("redo", self._history, "redo"))
            gui.add_button("Reset").on_click(lambda _: self._act("reset", self._history, "reset"))
        with gui.add_folder("Compare"):
            self.compare_button = gui.add_button(
                "Compare with voting", disabled=self.masks is None,
                hint=None if self.masks is not None else "Start the viewer with --masks DIR to compare")
            self.compare_button.on_click(lambda _: self._act("compare", self._compare))
        with gui.add_folder("Save"):
            gui.add_button("Export selection (PLY)").on_click(lambda _: self._act("export", self._export, True))
            gui.add_button("Export scene (PLY)").on_click(lambda _: self._act("export", self._export, False))
            self.new_run = gui.add_text("New run", str(self.run.path) + "-edited")
            gui.add_button("Save as run").on_click(lambda _: self._act("save", self._save_run))

    def _say(self, text: str) -> None:
        self.status.content = text

    def _act(self, what: str, fn, *args) -> None:
        """Run a panel action under the lock; bad input or an empty selection is reported in the
        panel and changes nothing."""
        with self.lock:
            try:
                fn(*args)
            except (StructGSError, EmptySelectionError) as e:
                self._say(f"**{what}:** {e}")
            except Exception as e:  # a bug: keep serving, show it, log the traceback
                log.error("%s failed:\n%s", what, traceback.format_exc())
                self._say(f"**{what} failed:** {type(e).__name__}: {e}")

    # --- actions ----------------------------------------------------------------------------
    def _click(self, event, add: bool) -> None:
        def pick() -> None:
            cam = event.client.camera
            focal = 0.5 * cam.image_height / np.tan(0.5 * cam.fov) if cam.image_height else None
            p = self.session.pick_ray(event.ray_origin, event.ray_direction, **({"focal": focal} if focal else {}))
            if p is None:
                self._say("Nothing under the cursor (background): the selection is unchanged.")
                return
            summary = self.session.select(p.gaussian, add=add)
            self.voting = None
            self._redraw()
            self._say(f"Selected {summary.describe()}.")

        self._act("click", pick)

    def _rethreshold(self) -> None:
        summary = self.session.set_threshold(self.threshold.value)
        self.voting = None
        self._redraw()
        self._say(f"Selected {summary.describe()}.")

    def _clear(self) -> None:
        self.session.clear()
        self.voting = None
        self._redraw()
        self._say("Selection cleared.")

    def _edit(self, op: str) -> None:
        self._say(f"{op.capitalize()}: solving the weight edit...")
        t0 = time.perf_counter()
        rec = self.session.remove() if op == "remove" else self.session.recolor(
            [c / 255.0 for c in self.colour.value])
        self._redraw(decode=True, colours=op == "recolor")
        self._say(f"{'Removed' if op == 'remove' else 'Recoloured'} {int(self.session.selection.sum()):,} Gaussians in "
                  f"{time.perf_counter() - t0:.1f} s ({_achieved(rec)}). Undo reverts it.")

    def _moved(self) -> None:
        """The gizmo was released: move the selection by how far it was dragged."""
        delta = np.asarray(self.gizmo.position, dtype=np.float64) - self._gizmo_anchor
        self._act("move", self._move, delta)

    def _move(self, delta: np.ndarray) -> None:
        if not np.isfinite(delta).all() or float(np.linalg.norm(delta)) == 0.0:
            self._say("Move: the step is zero; nothing moved.")
            return
        self._say("Move: solving the weight edit...")
        rec = self.session.move(delta.tolist())
        self._redraw(decode=True, colours=False)
        self._say(f"Moved {int(self.session.selection.sum()):,} Gaussians by "
                  f"({', '.join(f'{v:+.3f}' for v in delta)}) ({_achieved(rec)}). Undo reverts it.")

    def _history(self, op: str) -> None:
        if op == "reset":
            self.session.reset()
        else:
            getattr(self.session, op)()
        self._redraw(decode=True)
        self._say({"undo": "Undid the last edit.", "redo": "Redid the edit.", "reset": "Back to the run as loaded."}[op])

    def _compare(self) -> None:
        cams, masks = self.masks
        self._say(f"Voting over {len(cams)} views...")
        cmp = self.session.compare(cams, masks, on_view=lambda d, n: self._say(f"Voting: view {d} of {n}..."))
        self.voting = cmp.voting.numpy()
        self._redraw()
        self._say(f"Voting (mask id {cmp.target}, cyan where it differs): {cmp.voting_count:,} Gaussians; "
                  f"shaped (yellow): {cmp.shaped_count:,}; 3D IoU between them {100 * cmp.iou:.1f} %.")

    def _export(self, selection_only: bool) -> None:
        folder = ensure_writable_dir(self.config.exports, "--exports")
        stem = "selection" if selection_only else "scene"
        path = _free_path(folder, stem, ".ply")
        g = self.session.selected_gaussians() if selection_only else self.session.scene_gaussians()
        write_ply(g, path)
        if selection_only:
            save_npy(path.with_suffix(".npy"), self.session.selection.numpy())
        log.info("exported %d Gaussians -> %s", len(g), path)
        self._say(f"Exported {len(g):,} Gaussians to `{path}`" +
                  (f" (ids: `{path.with_suffix('.npy').name}`)." if selection_only else "."))

    def _save_run(self) -> None:
        out = Path(self.new_run.value).expanduser()
        refuse_new_run_over(out, self.run.path, "New run")
        model = self.session.model
        history = list(model.meta.get("edits", []))
        model.meta["edits"] = history + [{"op": r.kind, "viewer": True, "info": {k: v for k, v in r.info.items()
                                                                               if k in ("achieved", "targets")}}
                                         for r in self.session.editor.history.done]
        marks = model.removed.clone()
        model.removed.copy_(self.session.removed())  # what this session removed stays removed in the run
        try:
            commit_run(out, model)
        finally:
            model.meta["edits"] = history
            model.removed.copy_(marks)
        self._say(f"Saved the edited scene as the run `{out}`.")

    # --- serving ----------------------------------------------------------------------------
    def serve_forever(self) -> None:
        """Serve until Ctrl-C or SIGTERM, then stop the server cleanly."""
        wait_for_stop(self.server.stop)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def wait_for_stop(stop: Callable[[], None]) -> None:
    """Block until Ctrl-C (SIGINT) or SIGTERM, then call ``stop``.

    SIGTERM (``kill PID``, ``docker stop``, service managers) gets the same clean stop as
    Ctrl-C, from the main thread; elsewhere only Ctrl-C can reach it. A SIGINT that the parent
    ignores (a job started with ``&`` from a script) stays ignored, as the shell asked: stop
    such a viewer with ``kill PID``.
    """
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if main else None
    try:
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        if previous is not None:  # None: a handler not set from Python, which cannot be restored
            signal.signal(signal.SIGTERM, previous)
        stop()


def _achieved(rec) -> str:
    """The edit's largest distance from its target (selection means, per channel)."""
    achieved, targets = rec.info.get("achieved"), rec.info.get("targets")
    if achieved is None or targets is None:
        return "done"
    err = np.abs(np.asarray(achieved, dtype=float) - np.asarray(targets, dtype=float)).max()
    return f"largest distance from the target {err:.3f}"


def _free_path(folder: Path, stem: str, suffix: str) -> Path:
    """``folder/stem-NNN.suffix`` with the first number not taken (exports never overwrite)."""
    for i in range(1, 100000):
        p = folder / f"{stem}-{i:03d}{suffix}"
        if not p.exists() and not p.with_suffix(".npy").exists():
            return p
    raise InputError(f"{folder}: no free export name left")


def open_viewer(run: Path, data: Path | None, config: ViewerConfig, device: str = "cpu") -> Viewer:
    """Open a shaped run and start its server (checks everything before serving)."""
    if config.masks is not None and not Path(config.masks).is_dir():
        raise InputError(f"--masks {config.masks}: not a directory")
    ensure_writable_dir(config.exports, "--exports")  # a file or a read-only place; creates nothing
    return Viewer(Run.open(run, data, device, needs_shaping=True), config)
