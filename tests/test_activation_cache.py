"""The activation cache: shaped scores from one pass over cached unit activations equal the
exact Jacobian cosines, for every cacheable branch; stale caches are never read."""

import pytest
import torch

from structgs.decoder import DecoderConfig
from structgs.edit.jacobian import jacobian_cosine
from structgs.model import SceneModel
from structgs.model.activation_cache import ActivationCache, activation_fingerprint, cacheable


def _model(n=400):
    torch.manual_seed(0)
    m = SceneModel(DecoderConfig(position_frequencies=2, hidden_width=32), n)
    with torch.no_grad():
        m.centroids.normal_()
        m.latents.normal_()
        for mlp in m.decoder.branches.values():  # the motion branch starts at zero: give it a function
            torch.nn.init.normal_(mlp.layers[-1].weight, std=0.3)
    m.decoder.add_side_channels(["motion", "opacity"], 8, norm=2.0)
    with torch.no_grad():
        for b in ("motion", "opacity"):
            w = m.decoder.perturbable_weight(b)
            w[:, -8:] = torch.randn_like(w[:, -8:])
    return m


def test_cached_scores_equal_the_exact_jacobian_cosines():
    m = _model()
    sel = torch.zeros(m.num_gaussians, dtype=torch.bool)
    sel[:30] = True
    for branch, channels in (("motion", [0, 2]), ("opacity", [0]), ("color", [1]), ("scale", [0])):
        assert cacheable(m, branch)
        for c in channels:
            m.activation_caches.clear()
            exact = _cache_free_scores(m, sel, branch, c)
            assert branch not in m.activation_caches
            cached = jacobian_cosine(m, sel, branch, c)  # the default cache: float16
            assert m.activation_caches[branch].unit.dtype == torch.float16
            assert exact.std() > 0.05  # the scores differ between Gaussians (0.09-0.3 here)
            assert (cached - exact).abs().max() < 1e-3, (branch, c)
            m.activation_caches[branch] = ActivationCache.build(m, branch, dtype=torch.float32)
            assert (jacobian_cosine(m, sel, branch, c) - exact).abs().max() < 1e-5, (branch, c)
    assert not cacheable(m, "rotation")  # the quaternion normalisation couples its channels
    jacobian_cosine(m, sel, "rotation")
    assert "rotation" not in m.activation_caches


def _cache_free_scores(m, sel, branch, channel):
    return jacobian_cosine(m, sel, branch, channel, use_cache=False)


def test_edits_keep_the_cache_and_any_change_before_the_perturbable_layer_rebuilds_it(tmp_path):
    m = _model()
    sel = torch.zeros(m.num_gaussians, dtype=torch.bool)
    sel[50:90] = True
    jacobian_cosine(m, sel, "motion")
    cache = m.activation_caches["motion"]
    with torch.no_grad():  # an edit: the perturbable layer changes, the activations do not
        m.decoder.perturbable_weight("motion").add_(0.1)
    assert cache.matches(m)
    jacobian_cosine(m, sel, "motion")
    assert m.activation_caches["motion"] is cache
    with torch.no_grad():  # the latents (or any layer before the perturbable one) change: stale
        m.latents[0].add_(1.0)
    assert not cache.matches(m)
    scores = jacobian_cosine(m, sel, "motion")
    assert m.activation_caches["motion"] is not cache
    assert (scores - _cache_free_scores(m, sel, "motion", 0)).abs().max() < 1e-3  # float16 cache
    # persisted: a reload matches the same model and is refused by another
    path = m.activation_caches["motion"].save(tmp_path / "activations-motion.safetensors")
    loaded = ActivationCache.load(path)
    assert loaded.fingerprint == activation_fingerprint(m, "motion") and loaded.matches(m)
    assert torch.equal(loaded.unit, m.activation_caches["motion"].unit)
    assert torch.equal(loaded.norms, m.activation_caches["motion"].norms)
    other = _model()
    with torch.no_grad():
        other.centroids.add_(0.01)
    assert not loaded.matches(other)
    with pytest.raises(ValueError, match="not an activation cache|cannot read"):
        (tmp_path / "bad.safetensors").write_bytes(b"not a file")
        ActivationCache.load(tmp_path / "bad.safetensors")


def test_channel_slopes_are_the_only_nonzero_deltas_and_rotation_has_none():
    m = _model()
    idx = torch.arange(0, 400, 7)
    for branch, channels in (("motion", [0, 2]), ("opacity", [0]), ("color", [0, 2]), ("scale", [1])):
        a = m.activations(branch, idx)
        for c in channels:
            delta, _ = m.output_deltas(branch, c, index=idx)
            slopes = m.decoder.channel_slopes(branch, a, c)
            assert torch.allclose(slopes, delta[:, c], rtol=1e-5, atol=1e-7), (branch, c)
            others = torch.ones(delta.shape[1], dtype=torch.bool)
            others[c] = False
            assert torch.count_nonzero(delta[:, others]) == 0
        if branch != "motion":  # a saturating activation: the slope differs between Gaussians
            assert slopes.std() > 1e-3 * slopes.abs().mean()
    with pytest.raises(ValueError, match="not per-channel slopes"):
        m.decoder.channel_slopes("rotation", m.activations("rotation", idx), 0)


def test_cache_norms_give_the_selection_activations_and_an_older_cache_without_norms_is_rebuilt(tmp_path, caplog):
    from safetensors.torch import save_file

    from structgs.pipeline.runs import load_activation_caches

    m = _model()
    idx = torch.tensor([3, 77, 250])
    exact = m.activations("motion", idx)
    assert torch.allclose(ActivationCache.build(m, "motion", dtype=torch.float32).activations(idx), exact,
                          rtol=1e-5, atol=1e-6)
    cache = ActivationCache.build(m, "motion")  # float16 unit rows, float32 norms
    assert ((cache.activations(idx) - exact).norm(dim=-1) < 1e-3 * exact.norm(dim=-1)).all()
    old = tmp_path / "activations-motion.safetensors"  # the format before norms were stored
    save_file({"unit": cache.unit}, str(old), metadata={"branch": "motion", "fingerprint": cache.fingerprint})
    loaded = ActivationCache.load(old)
    assert loaded.norms is None and not loaded.matches(m)
    with pytest.raises(ValueError, match="no norms"):
        loaded.activations(idx)
    load_activation_caches(tmp_path, m)
    assert "motion" not in m.activation_caches and "older structgs" in caplog.text
    sel = torch.zeros(m.num_gaussians, dtype=torch.bool)
    sel[idx] = True
    scores = jacobian_cosine(m, sel, "motion")
    assert m.activation_caches["motion"].norms is not None
    assert (scores - _cache_free_scores(m, sel, "motion", 0)).abs().max() < 1e-3


@pytest.mark.cuda
def test_cached_scores_on_cuda_equal_the_exact_ones():
    """On CUDA the float16 cache's products run in float32 (cuBLAS may reduce float16 in float16)."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    m = _model(n=5000)
    sel = torch.zeros(m.num_gaussians, dtype=torch.bool)
    sel[:200] = True
    exact = _cache_free_scores(m, sel, "motion", 0)
    m = m.to("cuda")
    cached = jacobian_cosine(m, sel.cuda(), "motion", 0)
    assert m.activation_caches["motion"].unit.dtype == torch.float16
    assert (cached.cpu() - exact).abs().max() < 1e-3
