"""Decoder: output contract, perturbable layer, Jacobian structure, persistence."""

import dataclasses
import json

import pytest
import torch

from structgs.decoder import DecoderConfig
from structgs.model import SceneInfo, SceneModel
from structgs.utils.errors import InputError


def _model(n=50, seed=0, **cfg):
    torch.manual_seed(seed)
    m = SceneModel(DecoderConfig(**cfg), n)
    with torch.no_grad():
        m.centroids.normal_()
        m.latents.normal_()
    return m


def test_output_contract():
    m = _model()
    s = m.decode()
    assert s.colors.shape == (50, 3) and ((s.colors >= 0) & (s.colors <= 1)).all()
    assert s.opacities.shape == (50,) and ((s.opacities > 0) & (s.opacities < 1)).all()
    lo, hi = m.config.scale_log_range
    assert s.scales.shape == (50, 3) and (s.scales.log() >= lo - 1e-5).all() and (s.scales.log() <= hi + 1e-5).all()
    assert torch.allclose(s.quats.norm(dim=-1), torch.ones(50))
    assert torch.equal(s.offsets, torch.zeros(50, 3)) and torch.equal(s.means, m.centroids)  # fresh motion moves nothing


def test_missing_branches_fall_back_to_explicit_parameters():
    m = _model(branches=("color", "opacity"))
    assert set(m.explicit.keys()) == {"scale", "rotation"}
    s = m.decode()
    assert torch.equal(s.scales, torch.ones(50, 3))  # exp(0)
    with pytest.raises(ValueError, match="no 'scale' branch"):
        m.decoder.perturbable_weight("scale")


@pytest.mark.parametrize("branch", ["color", "opacity", "scale", "rotation", "motion"])
def test_jacobian_is_outer_product_of_delta_and_activation(branch):
    """dy_i/dW = delta_i a_i^T, checked against autograd on the weight itself."""
    m = _model(n=6).double()
    if branch == "motion":  # give the zero-initialised output layer something to propagate
        torch.nn.init.normal_(m.decoder.branches["motion"].layers[-1].weight)
    W = m.decoder.perturbable_weight(branch)
    view = torch.nn.functional.normalize(torch.randn(6, 3, dtype=torch.float64), dim=-1)
    delta, a = m.output_deltas(branch, channel=0, view=view)
    for i in range(6):
        out = getattr(m.decoder(m.latents[i:i + 1], view[i:i + 1], centroids=m.centroids[i:i + 1]), branch)
        y = out.reshape(-1)[0]
        (g,) = torch.autograd.grad(y, W)
        assert torch.allclose(g, torch.outer(delta[i], a[i]), atol=1e-10)


@pytest.mark.parametrize("layer,entries", [(-2, [(0, 0), (5, 7), (63, 2)]), (-1, [(0, 0), (0, 7), (0, 100)])])
def test_jacobian_matches_finite_differences(layer, entries):
    m = _model(n=3, perturb_layer=layer).double()
    W = m.decoder.perturbable_weight("opacity")
    delta, a = m.output_deltas("opacity", channel=0)
    J = torch.einsum("no,ni->noi", delta, a)
    eps = 1e-6
    for (r, c) in entries:
        with torch.no_grad():
            W[r, c] += eps
            up = m.decode().opacities
            W[r, c] -= 2 * eps
            down = m.decode().opacities
            W[r, c] += eps
        fd = (up - down) / (2 * eps)
        assert torch.allclose(fd, J[:, r, c], atol=1e-7)


def test_activation_does_not_depend_on_the_perturbed_weight():
    m = _model()
    a0 = m.activations("color")
    with torch.no_grad():
        m.decoder.perturbable_weight("color").add_(0.5)
    assert torch.equal(m.activations("color"), a0)


def test_config_validation():
    with pytest.raises(ValueError, match="unknown decoder branches"):
        DecoderConfig(branches=("colour",))
    with pytest.raises(ValueError, match="perturb_layer must index"):
        DecoderConfig(perturb_layer=0)
    with pytest.raises(ValueError, match="hidden_layers must be >= 2"):
        DecoderConfig(hidden_layers=1)


def test_save_load_identical(tmp_path):
    from helpers import make_camera

    m = _model(n=200)
    m.meta["note"] = "x"
    m.save_pretrained(tmp_path / "run")
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["decoder"]["latent_dim"] == 32 and cfg["num_gaussians"] == 200
    m2 = SceneModel.from_pretrained(tmp_path / "run")
    cam = make_camera()
    with torch.no_grad():
        assert torch.equal(m.render(cam, backend="torch").image, m2.render(cam, backend="torch").image)


def test_side_channel_keeps_outputs_and_extends_the_jacobian(tmp_path):
    from helpers import make_camera

    m = _model(n=300, position_frequencies=2)
    cam = make_camera()
    with torch.no_grad():
        before = m.decode(cam)
    old_config = m.config
    added = m.decoder.add_side_channels(["opacity", "motion"], 8)
    assert added == ["opacity", "motion"] and m.config.side_branches == ("opacity", "motion")
    assert old_config.side_branches == () and old_config.side_width == 0  # configs are frozen: a new one
    with torch.no_grad():
        after = m.decode(cam)
    for f in ("colors", "opacities", "scales", "quats", "means"):
        assert (getattr(before, f) - getattr(after, f)).abs().max() <= 1e-6, f
    a = m.activations("opacity", camera=cam)
    assert a.shape == (300, 128 + 8) and m.decoder.perturbable_weight("opacity").shape == (1, 136)
    side = a[:, 128:]
    assert (side > 0).float().mean() > 0.3 and (side < 0).any()  # leaky ReLU: mostly positive, never dead
    assert side.clamp_max(0).abs().max() < 0.1 * side.max()  # negative outputs are small (slope 0.01)
    # the side channel is part of the perturbable layer's input: J = delta a^T still holds
    W = m.decoder.perturbable_weight("opacity")
    y = m.decode(cam).opacities[:3].sum()
    (g,) = torch.autograd.grad(y, W)
    delta, act = m.output_deltas("opacity", 0, index=torch.arange(3), camera=cam)
    assert torch.allclose(g, delta.T @ act, atol=1e-6)
    # persisted in the config, reloaded with the same shapes and outputs
    m.save_pretrained(tmp_path / "run")
    m2 = SceneModel.from_pretrained(tmp_path / "run")
    assert m2.config.side_width == 8 and m2.config.side_branches == ("opacity", "motion")
    assert torch.equal(m2.activations("opacity", camera=cam), m.activations("opacity", camera=cam))
    assert m.decoder.add_side_channels(["opacity"], 8) == []  # already there: kept
    with pytest.raises(ValueError, match="already has side channels of width 8"):
        m.decoder.add_side_channels(["color"], 16)
    with pytest.raises(ValueError, match="side_branches"):
        DecoderConfig(side_width=4, side_branches=("colour",))


def test_side_channel_with_fixed_length_survives_save_load(tmp_path):
    """side_norm: every Gaussian's g has that length, before and after a save/load round trip."""
    from helpers import make_camera

    m = _model(n=200, position_frequencies=2)
    cam = make_camera()
    m.decoder.add_side_channels(["motion"], 8, norm=3.0)
    g = m.activations("motion", camera=cam)[:, 128:]
    assert torch.allclose(g.norm(dim=1), torch.full((200,), 3.0), atol=1e-5)
    m.save_pretrained(tmp_path / "run")
    m2 = SceneModel.from_pretrained(tmp_path / "run")
    assert m2.config.side_norm == 3.0
    assert torch.equal(m2.activations("motion", camera=cam), m.activations("motion", camera=cam))
    with pytest.raises(ValueError, match="norm"):
        m.decoder.add_side_channels(["opacity"], 8, norm=1.0)


def test_load_reports_mismatches(tmp_path):
    m = _model(n=20)
    m.save_pretrained(tmp_path / "run")
    cfg_path = tmp_path / "run" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["decoder"]["latent_dim"] = 16
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"latents: config says \(20, 16\), file has \(20, 32\)"):
        SceneModel.from_pretrained(tmp_path / "run")
    cfg["decoder"]["latent_dim"] = 32
    cfg["format_version"] = 99
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="newer structgs"):
        SceneModel.from_pretrained(tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="not a structgs run"):
        SceneModel.from_pretrained(tmp_path)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["decoder"].__setitem__("hidden_width", "128"), r"config\.json: decoder\.hidden_width must be an integer, got '128'"),
    (lambda c: c["decoder"].__setitem__("branches", "color"), r"decoder\.branches must be a list of strings, got 'color'"),
    (lambda c: c["decoder"].__setitem__("position_scale", True), r"decoder\.position_scale must be a number, got True"),
    (lambda c: c["decoder"].__setitem__("view_inputs", "eyes"), r"config\.json: decoder: view_inputs must be none, dir"),
    (lambda c: c.__setitem__("num_gaussians", "20"), r"config\.json: field 'num_gaussians' must be an integer"),
    (lambda c: c.__setitem__("meta", []), r"config\.json: field 'meta' must be an object"),
    (lambda c: c.pop("decoder"), r"config\.json: field 'decoder' is missing"),
    (lambda c: c["scene"].__setitem__("data", 3), r"config\.json: scene\.data must be a string or null, got 3"),
    (lambda c: c["scene"].__setitem__("background", [1, 1]), r"config\.json: scene: scene\.background must have 3"),
    (lambda c: c["scene"].__setitem__("downscale", "2"), r"config\.json: scene\.downscale must be a number, got '2'"),
    (lambda c: c["scene"].__setitem__("mean_camera_distance", 0), r"mean_camera_distance must be > 0, got 0"),
])
def test_a_wrong_field_in_config_json_names_the_file_and_field(tmp_path, edit, message):
    _model(n=20).save_pretrained(tmp_path / "run")
    cfg_path = tmp_path / "run" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    edit(cfg)
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=message):
        SceneModel.from_pretrained(tmp_path / "run")


def test_scene_info_is_typed_persisted_and_read_from_older_runs(tmp_path):
    """The fitted scene's statistics round-trip through config.json; runs written before the
    ``scene`` field (statistics in ``meta``) load with the same values."""
    from structgs.model import SceneInfo

    info = SceneInfo(data="/data/scene", background=(0.0, 0.5, 1.0), downscale=2.0, scene_extent=3.5,
                     mean_camera_distance=4.25, source_ply="/data/scene/gaussians.ply")
    m = SceneModel(_model(n=20).config, 20, {"fit": {"seed": 0}}, info)
    m.save_pretrained(tmp_path / "run")
    assert SceneModel.from_pretrained(tmp_path / "run").scene == info
    cfg_path = tmp_path / "run" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["meta"].update(cfg.pop("scene"))  # the layout of older runs
    cfg_path.write_text(json.dumps(cfg))
    old = SceneModel.from_pretrained(tmp_path / "run")
    assert old.scene == info and old.meta["fit"] == {"seed": 0}
    with pytest.raises(dataclasses.FrozenInstanceError):
        old.scene.downscale = 1.0


def test_save_is_all_or_nothing(tmp_path, monkeypatch):
    """A kill after the new weights are written but before config.json names them leaves the
    previous save readable and bit-exact (not new weights under an old config); a finished
    save leaves one weights file; old runs with model.safetensors still load."""
    import structgs.model.scene_model as sm

    old, new = _model(n=20, seed=0), _model(n=20, seed=1)
    old.save_pretrained(tmp_path / "run")

    def killed(path, obj):
        raise KeyboardInterrupt

    monkeypatch.setattr(sm, "write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        new.save_pretrained(tmp_path / "run")
    monkeypatch.undo()
    back = SceneModel.from_pretrained(tmp_path / "run")
    assert all(torch.equal(v, old.state_dict()[k]) for k, v in back.state_dict().items())
    new.save_pretrained(tmp_path / "run")
    back = SceneModel.from_pretrained(tmp_path / "run")
    assert all(torch.equal(v, new.state_dict()[k]) for k, v in back.state_dict().items())
    assert [p.name for p in (tmp_path / "run").glob("*.safetensors")] == [json.loads(
        (tmp_path / "run" / "config.json").read_text())["weights"]]
    assert not list((tmp_path / "run").glob(".*"))  # no temporary left behind
    # a run written before content-named weights
    cfg_path = tmp_path / "run" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    (tmp_path / "run" / cfg.pop("weights")).rename(tmp_path / "run" / "model.safetensors")
    cfg_path.write_text(json.dumps(cfg))
    assert torch.equal(SceneModel.from_pretrained(tmp_path / "run").latents, new.latents)
    cfg["weights"] = "../x.safetensors"
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="field 'weights' must name a .safetensors file"):
        SceneModel.from_pretrained(tmp_path / "run")


def test_export_ply_round_trip(tmp_path):
    from structgs.scene import read_ply, write_ply

    m = _model(n=30)
    g = m.to_gaussians()
    write_ply(g, tmp_path / "e.ply")
    back = read_ply(tmp_path / "e.ply")
    s = m.decode()
    assert torch.allclose(back.means, s.means) and torch.allclose(back.opacities, s.opacities, atol=1e-5)
    assert torch.allclose(back.rgb_dc, m.view_independent_colors(), atol=1e-5)


class _FakeTcnnNetwork(torch.nn.Module):
    """Stands in for tinycudann.Network on CPU: one flat parameter vector, bias-free ReLU layers,
    half-precision output (what tinycudann's FullyFusedMLP computes; its memory layout aside)."""

    def __init__(self, n_input_dims, n_output_dims, config):
        super().__init__()
        w = config["n_neurons"]
        self.dims = [n_input_dims] + [w] * config["n_hidden_layers"] + [n_output_dims]
        sizes = [self.dims[i] * self.dims[i + 1] for i in range(len(self.dims) - 1)]
        self.params = torch.nn.Parameter(torch.randn(sum(sizes)) * 0.3)
        self.sizes = sizes

    def forward(self, x):
        off = 0
        for i, size in enumerate(self.sizes):
            W = self.params[off:off + size].view(self.dims[i + 1], self.dims[i])
            x = torch.relu(x.half().float() @ W.half().float().T)  # relu after every layer (output ReLU too)
            off += size
        return x.half()


@pytest.fixture
def fake_tcnn(monkeypatch):
    import sys
    import types

    monkeypatch.setitem(sys.modules, "tinycudann", types.SimpleNamespace(Network=_FakeTcnnNetwork))


def test_tcnn_backend_wiring(fake_tcnn, tmp_path):
    """The tcnn trunk replaces the layers before the perturbable layer; everything from the
    perturbable layer on is the torch code, so activations, deltas and persistence behave alike."""
    m = _model(n=8, backend="tcnn", hidden_width=64)
    mlp = m.decoder.branches["color"]
    assert mlp.trunk is not None and isinstance(mlp.perturbable, torch.nn.Linear)
    s = m.decode()
    assert s.colors.shape == (8, 3) and s.colors.dtype == torch.float32 and torch.isfinite(s.colors).all()
    x = m.decoder.branch_input("color", m.latents, m.view_inputs(None, None), m.centroids)
    acts = mlp.forward_with_activations(x)
    assert torch.equal(mlp.from_activation(acts.activation), acts.output) and torch.equal(mlp(x), acts.output)
    # delta_i a_i^T is still the Jacobian w.r.t. the (torch) perturbable weight
    W = m.decoder.perturbable_weight("opacity")
    delta, a = m.output_deltas("opacity", channel=0)
    (g,) = torch.autograd.grad(m.decode().opacities[2], W)
    assert torch.allclose(g, torch.outer(delta[2], a[2]), atol=1e-6)
    # gradients reach the fused trunk's parameters (fitting trains them)
    m.decode().colors.sum().backward()
    assert mlp.trunk.net.params.grad is not None and mlp.trunk.net.params.grad.abs().sum() > 0
    m.save_pretrained(tmp_path / "run")
    m2 = SceneModel.from_pretrained(tmp_path / "run")
    assert torch.equal(m2.decode().colors, m.decode().colors)


def test_tcnn_backend_errors(fake_tcnn, monkeypatch):
    with pytest.raises(ValueError, match="hidden_width in"):
        _model(backend="tcnn", hidden_width=48)
    import sys

    monkeypatch.setitem(sys.modules, "tinycudann", None)  # as if not installed
    with pytest.raises(ImportError, match="tiny-cuda-nn"):
        _model(backend="tcnn", hidden_width=64)


@pytest.mark.cuda
def test_tcnn_backend_on_cuda():
    pytest.importorskip("tinycudann")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    m = SceneModel(DecoderConfig(backend="tcnn", hidden_width=64), 4096).to("cuda")
    with torch.no_grad():
        m.centroids.normal_()
        m.latents.normal_()
    s = m.decode()
    assert s.colors.shape == (4096, 3) and torch.isfinite(s.colors).all()
    delta, a = m.output_deltas("opacity", channel=0)
    assert delta.shape[0] == a.shape[0] == 4096
    s.colors.sum().backward()
    assert all(p.grad is not None for p in m.decoder.parameters() if p.requires_grad)


def test_per_gaussian_state_is_walked_by_densify_prune_and_load(tmp_path):
    """Every per-Gaussian tensor (parameters, explicit attributes, direct-edit overrides) is in
    ``per_gaussian()``; densification's reindexing, pruning and loading all follow it, and the
    optimizer's moments follow the parameters."""
    from structgs.edit.voting import keep_gaussians
    from structgs.training.strategy import reindex_gaussians

    m = SceneModel(DecoderConfig(branches=("color", "opacity", "rotation"), position_frequencies=0), 10,
                   scene=SceneInfo(normals="stored"))
    with torch.no_grad():
        for t in m.per_gaussian().values():
            ids = torch.arange(10) % 2 if t.dtype == torch.bool else torch.arange(10)
            t.copy_(ids.to(t.dtype).reshape(10, *[1] * (t.ndim - 1)).expand_as(t))
    names = set(m.per_gaussian())
    assert names == {"centroids", "latents", "explicit.scale", "overrides.opacity", "overrides.color",
                     "overrides.color_mask", "overrides.offset", "removed", "normals"}
    assert names == {k for k in m.state_dict() if not k.startswith("decoder.")}
    opt = torch.optim.Adam([m.centroids, m.latents, m.explicit["scale"]])
    m.decode().opacities.sum().backward()
    (m.centroids.sum() + m.explicit["scale"].sum()).backward()
    opt.step()
    before = {k: v.detach().clone() for k, v in m.per_gaussian().items()}
    index = torch.tensor([3, 1, 1, 7])  # keep 3 and 1, duplicate 1 and 7
    reindex_gaussians(m, [opt], index, num_kept=2)
    assert m.num_gaussians == 4
    for name, t in m.per_gaussian().items():
        assert torch.equal(t, before[name][index]), name
    assert opt.param_groups[0]["params"][0] is m.centroids and isinstance(m.explicit["scale"], torch.nn.Parameter)
    moments = opt.state[m.centroids]["exp_avg"]
    assert moments.shape == (4, 3) and moments[2:].abs().sum() == 0 and moments[:2].abs().sum() > 0
    kept = keep_gaussians(m, torch.tensor([True, False, True, True]))
    for name, t in kept.per_gaussian().items():
        assert torch.equal(t, before[name][torch.tensor([3, 1, 7])]), name
    kept.save_pretrained(tmp_path / "run")
    loaded = SceneModel.from_pretrained(tmp_path / "run")
    assert all(torch.equal(loaded.per_gaussian()[k], v) for k, v in kept.per_gaussian().items())


def test_runs_saved_with_the_old_override_names_load_their_direct_edits(tmp_path):
    from safetensors.torch import load_file, save_file

    m = _model(n=30)
    with torch.no_grad():
        m.overrides.opacity[:5] = 0.0
        m.overrides.offset[3] = torch.tensor([0.1, 0.2, 0.3])
    m.save_pretrained(tmp_path / "run")
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    weights = tmp_path / "run" / cfg["weights"]
    state = load_file(str(weights))
    state = {(k.replace("overrides.", "override_") if k.startswith("overrides.") else k): v for k, v in state.items()}
    save_file(state, str(weights))  # the layout of runs saved before the overrides were grouped
    loaded = SceneModel.from_pretrained(tmp_path / "run")
    assert all(torch.equal(v, m.per_gaussian()[k]) for k, v in loaded.per_gaussian().items())
    with torch.no_grad():
        assert torch.equal(loaded.decode().opacities, m.decode().opacities)


def test_an_edited_branch_from_its_activations_is_what_decode_gives():
    """What an edit's solve evaluates in each step (the kept activations through the layers
    after the perturbable one, then the overrides) equals :meth:`decode` bit for bit, with a
    side channel, a perturbed weight, view inputs and direct edits in place."""
    m = _model(n=40, seed=3)
    m.decoder.add_side_channels(["color", "opacity", "motion"], 8)
    idx = torch.tensor([0, 3, 4, 9, 17, 39])
    view = torch.nn.functional.normalize(torch.randn(6, 3), dim=-1)
    if m.config.view_inputs == "dir+dist":
        view = torch.cat([view, torch.rand(6, 1) + 1], -1)
    with torch.no_grad():
        for branch in ("color", "opacity", "motion"):
            m.decoder.perturbable_weight(branch).add_(0.3 * torch.randn_like(m.decoder.perturbable_weight(branch)))
        m.overrides.opacity[3] = 0.25
        m.overrides.offset[9] = torch.tensor([0.1, -0.2, 0.3])
        m.overrides.color[17] = torch.tensor([0.9, 0.1, 0.1])
        m.overrides.color_mask[17] = 1.0
        s = m.decode(index=idx, view=view)
        for branch, decoded in (("color", s.colors), ("opacity", s.opacities[:, None]), ("motion", s.offsets)):
            kept = m.activations(branch, idx, view)
            assert torch.equal(m.edited_branch_output(branch, kept, idx), decoded), branch
        assert s.opacities[1] < 0.26 and torch.allclose(s.colors[4], torch.tensor([0.9, 0.1, 0.1]))
    with pytest.raises(InputError, match="not 'scale'"):
        m.edited_branch_output("scale", m.activations("scale", idx, view), idx)


@pytest.mark.parametrize("cfg", [dict(), dict(branches=("color", "opacity", "motion")),
                                 dict(view_dependent_branches=("color", "opacity"), view_inputs="dir+dist")],
                         ids=["default", "explicit-scale-rotation", "view-dependent-opacity"])
def test_decode_geometry_is_decode_without_colours(cfg):
    """What lifting and voting rasterize (decoded once for all views when geometry ignores the
    view) is exactly :meth:`decode`'s geometry, direct edits included; so are decode_colors'
    colours, decode_opacities' and decode_means' values and render_views' images those of decode and render."""
    from structgs.data import SceneSpec
    from structgs.data.synthetic import make_cameras

    m = _model(n=60, seed=4, **cfg)
    with torch.no_grad():
        for b in m.config.branches:
            m.decoder.perturbable_weight(b).add_(0.3 * torch.randn_like(m.decoder.perturbable_weight(b)))
        m.overrides.opacity[5] = 0.25
        m.overrides.offset[7] = torch.tensor([0.1, -0.2, 0.3])
        m.overrides.color[9], m.overrides.color_mask[9] = torch.tensor([0.9, 0.1, 0.1]), 1.0
    cams = make_cameras(SceneSpec(image_size=32, num_train=2, num_test=1))["train"]
    assert m.geometry_varies_with_view == ("opacity" in m.config.view_dependent_branches)
    with torch.no_grad():
        for cam in cams:
            s, g = m.decode(cam), m.decode_geometry(cam)
            for name in ("means", "quats", "scales", "opacities"):
                assert torch.equal(getattr(g, name), getattr(s, name)), name
            assert torch.equal(m.decode_colors(cam), s.colors)
        if not m.geometry_varies_with_view:
            assert torch.equal(m.decode_geometry().opacities, m.decode(cams[0]).opacities)
        canonical = m.decode()  # no camera: what edits compare removals against
        assert torch.equal(m.decode_opacities(), canonical.opacities.reshape(-1))
        assert torch.equal(m.decode_means(), canonical.means)
        bg = torch.tensor([0.2, 0.3, 0.4])
        for cam, out in m.render_views(cams, background=bg):  # geometry decoded once, colours per view
            ref = m.render(cam, background=bg)
            assert torch.equal(out.image, ref.image) and torch.equal(out.alpha, ref.alpha)


def test_decoding_without_gradients_runs_in_row_blocks_with_the_same_outputs(monkeypatch):
    """Without autograd the decoder runs ROW_BLOCK rows at a time (cache-sized intermediates);
    every entry point gives what the one-piece pass with autograd gives."""
    from structgs.decoder import decoder as decoder_module

    m = _model(n=203, seed=3, view_dependent_branches=("color", "opacity"), view_inputs="dir+dist")
    from structgs.data import SceneSpec
    from structgs.data.synthetic import make_cameras

    cam = make_cameras(SceneSpec(image_size=32, num_train=1, num_test=1))["train"][0]
    view = m.view_inputs(cam)
    whole = m.decode(cam)
    whole_act = m.activations("opacity", view=view)
    whole_color = m.colors(torch.tensor([0.0, 0.6, 0.8]))
    calls = []
    original = decoder_module.BranchMLP.forward
    monkeypatch.setattr(decoder_module, "ROW_BLOCK", 64)
    monkeypatch.setattr(decoder_module.BranchMLP, "forward", lambda self, x: calls.append(len(x)) or original(self, x))
    with torch.no_grad():
        blocks = m.decode(cam)
        act = m.activations("opacity", view=view)
        color = m.colors(torch.tensor([0.0, 0.6, 0.8]))
    assert max(calls) == 64 and sum(calls) == 203 * (len(m.decoder.branches) + 1)  # in blocks, every row once
    for name in ("means", "quats", "scales", "opacities", "colors"):
        assert torch.allclose(getattr(blocks, name), getattr(whole, name), rtol=1e-6, atol=1e-7), name
    assert torch.allclose(act, whole_act, rtol=1e-6, atol=1e-7)
    assert torch.allclose(color, whole_color, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="view inputs: expected 203 rows"):
        with torch.no_grad():
            m.decoder.branch_outputs(("color",), m.latents, view[:100], m.centroids)
