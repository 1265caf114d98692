"""``structgs export``: SH projection of view-dependent colours, the input PLY's SH degree and
normals kept, selections (and their complement), removed Gaussians left out, bad input refused
before any work, and the exported PLY rendering like the run."""

import numpy as np
import pytest
import torch

from structgs.data.synthetic import SceneSpec, generate_scene, write_scene
from structgs.decoder import DecoderConfig
from structgs.model import SceneInfo, SceneModel
from structgs.model.plain import sh_coefficients
from structgs.render.sh import eval_sh
from structgs.scene.gaussians import Gaussians
from structgs.scene.ply import read_ply, write_ply

from helpers import run_cli


def _directions(n: int, seed: int) -> torch.Tensor:
    d = torch.randn(n, 3, generator=torch.Generator().manual_seed(seed))
    return d / d.norm(dim=1, keepdim=True)


class _SHColours:
    """A stand-in model whose colours are exactly SH of degree 3: the projection must give the
    coefficients back."""

    view_dependent_colors = True
    device = torch.device("cpu")

    def __init__(self, sh: torch.Tensor):
        self.sh, self.num_gaussians = sh, sh.shape[0]

    def colors(self, direction, index):
        return eval_sh(self.sh[index], direction.expand(index.numel(), 3))


def test_sh_projection_recovers_exact_sh_colours_chunk_by_chunk():
    g = torch.Generator().manual_seed(0)
    sh = 0.08 * torch.randn(50, 16, 3, generator=g)
    sh[:, 0] = 1.5 + 0.1 * torch.randn(50, 3, generator=g)  # colours stay > 0: no clamping
    got = sh_coefficients(_SHColours(sh), 3, chunk=16)
    assert torch.allclose(got, sh, atol=1e-4), float((got - sh).abs().max())


def _view_dependent_model(n=200, seed=0) -> SceneModel:
    torch.manual_seed(seed)
    m = SceneModel(DecoderConfig(hidden_width=32, latent_dim=16), n, scene=SceneInfo(sh_degree=3, normals="stored"))
    with torch.no_grad():
        m.centroids.normal_()
        m.latents.normal_()
        m.normals.copy_(torch.nn.functional.normalize(torch.randn(n, 3), dim=1))
        m.decoder.branches["color"].layers[0].weight[:, -3:] *= 6  # view inputs come last: make them matter
    return m


def test_exported_sh_follows_the_decoders_view_dependent_colour():
    """The degree-3 export evaluated along unseen directions is close to the decoder's own
    colour there, and far closer than one colour per Gaussian (degree 0) is."""
    m = _view_dependent_model()
    dirs = _directions(40, 1)
    truth = torch.stack([m.colors(d) for d in dirs]).detach()  # (D, N, 3)
    spread = float((truth - truth.mean(0)).abs().mean())
    errs = {}
    for degree in (0, 3):
        g = m.to_gaussians(sh_degree=degree)
        assert g.sh.shape == (m.num_gaussians, (degree + 1) ** 2, 3)
        approx = torch.stack([eval_sh(g.sh, d.expand(m.num_gaussians, 3)) for d in dirs])
        errs[degree] = float((approx - truth).abs().mean())
    assert spread > 0.01, spread  # the colour really depends on the view
    assert errs[3] < 0.25 * errs[0] and errs[3] < 0.01, (errs, spread)




def test_export_cli_keeps_degree_and_normals_and_leaves_out_removed(tmp_path, capsys):
    m = _view_dependent_model(n=120)
    with torch.no_grad():
        m.removed[:10] = True
    m.save_pretrained(tmp_path / "run")
    out = tmp_path / "scene.ply"
    assert run_cli("export", tmp_path / "run", "--out", out) == 0
    captured = capsys.readouterr()
    assert "110 of 120 Gaussians (SH degree 3; 10 removed ones left out)" in captured.out
    assert "colours -> SH degree 3" in captured.err  # the SH projection shows its progress
    g = read_ply(out)
    assert g.sh_degree == 3 and len(g) == 110
    assert torch.equal(g.normals, m.normals[10:])  # stored normals exported bit for bit
    assert torch.allclose(g.means, m.decode().means[10:].detach())

    ids = np.array([5, 20, 21, 99])
    np.save(tmp_path / "sel.npy", ids)
    assert run_cli("export", tmp_path / "run", "--selection", tmp_path / "sel.npy", "--out", tmp_path / "obj.ply") == 0
    obj = read_ply(tmp_path / "obj.ply")  # id 5 was removed: left out
    assert torch.allclose(obj.means, m.decode().means[[20, 21, 99]].detach())
    assert run_cli("export", tmp_path / "run", "--selection", tmp_path / "sel.npy", "--invert", "--keep-removed",
                "--sh-degree", "1", "--out", tmp_path / "rest.ply") == 0
    rest = read_ply(tmp_path / "rest.ply")
    assert len(rest) == 116 and rest.sh_degree == 1


@pytest.mark.parametrize("args, message", [
    (["--out", "{tmp}/x.txt"], "ending in .ply"),
    (["--out", "{tmp}/run/x.ply"], "inside the run"),
    (["--out", "{tmp}/x.ply", "--sh-degree", "4"], "--sh-degree must be 0..3"),
    (["--out", "{tmp}/x.ply", "--invert"], "--invert needs --selection"),
    (["--out", "{tmp}/x.ply", "--selection", "{tmp}/bad.npy"], "bad.npy"),
    (["--out", "{tmp}/sel.ply", "--selection", "{tmp}/sel.ply"], "also an input"),
])
def test_export_refuses_bad_input_in_one_line(tmp_path, capsys, args, message):
    m = _view_dependent_model(n=20)
    m.save_pretrained(tmp_path / "run")
    np.save(tmp_path / "bad.npy", np.zeros(7, dtype=bool))
    (tmp_path / "sel.ply").write_bytes(b"keep me")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert run_cli("export", tmp_path / "run", *[a.format(tmp=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before and (tmp_path / "sel.ply").read_bytes() == b"keep me"


@pytest.mark.slow
def test_fit_records_the_input_ply_degree_and_normals_and_export_keeps_them(tmp_path):
    """A degree-3 PLY with normals in, fitted (stage 1 only), exported: the same SH degree and
    the same normals come out, and along every camera's view directions the exported SH gives
    the input's view-dependent colour as well as the fitted decoder does (better than its DC)."""
    from structgs.scene.dataset import load_dataset

    scene = generate_scene(SceneSpec(seed=1, num_objects=3, num_gaussians=2000, image_size=16, num_train=8,
                                     num_test=4))
    data = write_scene(scene, tmp_path / "scene", progress=False)
    g0 = scene.gaussians
    gen = torch.Generator().manual_seed(0)
    rest = 0.05 * torch.randn(len(g0), 15, 3, generator=gen)
    normals = torch.nn.functional.normalize(torch.randn(len(g0), 3, generator=gen), dim=1)
    ply = write_ply(Gaussians(g0.means, g0.quats, g0.log_scales, g0.opacity_logits, torch.cat([g0.sh, rest], 1),
                              normals=normals), tmp_path / "sh3.ply")
    assert run_cli("fit", data, "--ply", ply, "--out", tmp_path / "run", "--stage1-iters", "800", "--stage2-iters", "0") == 0
    run = SceneModel.from_pretrained(tmp_path / "run")
    assert run.scene.sh_degree == 3 and run.scene.normals == "stored"
    assert run_cli("export", tmp_path / "run", "--out", tmp_path / "out.ply") == 0
    out, inp = read_ply(tmp_path / "out.ply"), read_ply(ply)
    assert out.sh_degree == 3 and torch.equal(out.normals, normals)
    errors = {"decoder": [], "export": [], "export_dc": []}
    ds = load_dataset(data)
    for cam in ds.split("train") + ds.split("test"):
        d = torch.nn.functional.normalize(inp.means - cam.center, dim=-1)
        want = eval_sh(inp.sh, d).clamp(0, 1)
        with torch.no_grad():
            errors["decoder"].append(float((run.decode(cam).colors - want).abs().mean()))
        errors["export"].append(float((eval_sh(out.sh, d).clamp(0, 1) - want).abs().mean()))
        errors["export_dc"].append(float((eval_sh(out.sh[:, :1], d).clamp(0, 1) - want).abs().mean()))
    err = {k: sum(v) / len(v) for k, v in errors.items()}
    assert err["export"] <= 1.05 * err["decoder"] + 0.002, err  # the export loses nothing the fit learned
    assert err["export"] < err["export_dc"] - 0.001, err  # and keeps the view dependence


def test_exported_object_renders_like_the_run_renders_it(tracked, small_scene_dir, tmp_path):
    """``structgs segment`` an object, ``structgs export --selection`` it, ``structgs render
    --ply`` the file: each test view matches the run's own render of the same Gaussians (PSNR
    >= 35 dB; the export's colours are the run's averaged over view directions). ``--invert``
    gives the rest of the scene, and the two files hold every Gaussian once."""
    from structgs.pipeline.edit_ops import pick_target_pixel
    from structgs.pipeline.runs import Run
    from structgs.render.api import rasterize
    from structgs.scene.images import load_rgb

    run = tracked[0]
    opened = Run.open(run)
    model, ds = opened.model, opened.dataset
    view, (x, y) = pick_target_pixel(ds, small_scene_dir / "masks", 2)
    assert run_cli("segment", run, "--view", view, "--pixel", x, y, "--out", tmp_path / "obj.npy") == 0
    sel = torch.from_numpy(np.load(tmp_path / "obj.npy"))
    assert run_cli("export", run, "--selection", tmp_path / "obj.npy", "--out", tmp_path / "obj.ply") == 0
    assert run_cli("export", run, "--selection", tmp_path / "obj.npy", "--invert", "--out", tmp_path / "rest.ply") == 0
    assert len(read_ply(tmp_path / "obj.ply")) == int(sel.sum())
    assert len(read_ply(tmp_path / "obj.ply")) + len(read_ply(tmp_path / "rest.ply")) == model.num_gaussians
    assert run_cli("render", "--data", small_scene_dir, "--ply", tmp_path / "obj.ply", "--out", tmp_path / "renders") == 0
    bg = torch.ones(3)
    psnrs = []
    for cam in ds.split("test"):
        with torch.no_grad():
            s = model.decode(cam)
            want = rasterize(s.means[sel], s.quats[sel], s.scales[sel], s.opacities[sel], s.colors[sel], cam,
                             background=bg).image
        got = load_rgb(tmp_path / "renders" / f"{cam.name}.png", None)
        mse = float(((got - want) ** 2).mean())
        psnrs.append(10 * np.log10(1 / max(mse, 1e-12)))
    assert min(psnrs) >= 35, psnrs
