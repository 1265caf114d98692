"""Decoder: output contract, perturbable layer, Jacobian structure, persistence."""

import json

import pytest
import torch

from structgs.decoder import DecoderConfig
from structgs.model import SceneModel


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


def test_jacobian_matches_finite_differences():
    m = _model(n=3).double()
    W = m.decoder.perturbable_weight("opacity")
    delta, a = m.output_deltas("opacity", channel=0)
    J = torch.einsum("no,ni->noi", delta, a)
    eps = 1e-6
    for (r, c) in [(0, 0), (5, 7), (63, 2)]:
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


def test_export_ply_round_trip(tmp_path):
    from structgs.scene import read_ply, write_ply

    m = _model(n=30)
    g = m.to_gaussians()
    write_ply(g, tmp_path / "e.ply")
    back = read_ply(tmp_path / "e.ply")
    s = m.decode()
    assert torch.allclose(back.means, s.means) and torch.allclose(back.opacities, s.opacities, atol=1e-5)
    assert torch.allclose(back.rgb_dc, m.view_independent_colors(), atol=1e-5)
