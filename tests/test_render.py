"""The torch rasterizer against a naive per-pixel loop, gradcheck, contributions, gsplat parity."""

import pytest
import torch
from helpers import make_camera, random_gaussians

from structgs.render import contributions, rasterize, torch_backend
from structgs.render.reference import rasterize_naive

SCENES = {
    "sparse": dict(n=60, seed=0),
    "saturating": dict(n=150, seed=1, opacity=(0.9, 1.0), scale=(-1.8, -1.2)),  # early stop and clamp active
}


@pytest.mark.parametrize("name", list(SCENES))
@pytest.mark.parametrize("budget", [3000, 1 << 20])
def test_matches_naive_reference(name, budget):
    m, q, s, o, c = random_gaussians(**SCENES[name])
    cam = make_camera(dtype=torch.float64)
    bg = torch.tensor([0.1, 0.7, 0.3], dtype=torch.float64)
    out = rasterize(m, q, s, o, c, cam, backend="torch", background=bg, chunk_budget=budget)
    img, alpha, _ = rasterize_naive(m, q, s, o, c, cam)
    expected = img + (1 - alpha)[..., None] * bg
    assert out.image.shape == (32, 40, 3) and out.alpha.shape == (32, 40, 1) and out.depth.shape == (32, 40, 1)
    assert (out.image - expected).abs().max() < 1e-5
    assert (out.alpha[..., 0] - alpha).abs().max() < 1e-5
    if name == "saturating":
        assert alpha.max() > 0.9998  # the T <= 1e-4 stop was reached somewhere


def test_float32_matches_float64_reference():
    m, q, s, o, c = random_gaussians(**SCENES["saturating"])
    cam = make_camera(dtype=torch.float64)
    img, _, _ = rasterize_naive(m, q, s, o, c, cam)
    out = rasterize(*(t.float() for t in (m, q, s, o, c)), make_camera(), backend="torch")
    assert (out.image.double() - img).abs().max() < 1e-4


def test_many_feature_channels_and_depth():
    m, q, s, o, c = random_gaussians(n=40, seed=2, channels=64)
    cam = make_camera(dtype=torch.float64)
    out = rasterize(m, q, s, o, c, cam, backend="torch")
    img, _, weights = rasterize_naive(m, q, s, o, c, cam)
    assert (out.image - img).abs().max() < 1e-5
    z = (m @ cam.world_to_camera[:3, :3].T + cam.world_to_camera[:3, 3])[:, 2]
    y, x = 15, 20
    assert abs(out.depth[y, x, 0].item() - sum(w * z[i].item() for i, w in weights[(y, x)])) < 1e-6


@pytest.mark.parametrize("kw", [dict(n=8, seed=0, scale=(-1.6, -1.2)),
                                dict(n=8, seed=4, opacity=(0.93, 0.98), scale=(-1.0, -0.8), spread=0.1)])
def test_gradcheck(kw):
    m, q, s, o, c = random_gaussians(**kw)
    cam = make_camera(width=16, height=16, dtype=torch.float64)
    bg = torch.tensor([0.2, 0.5, 0.1], dtype=torch.float64)

    def f(m, q, s, o, c):
        out = rasterize(m, q, s, o, c, cam, backend="torch", background=bg, chunk_budget=256 * 3)
        return out.image, out.alpha, out.depth

    inputs = [t.clone().requires_grad_() for t in (m, q, s, o, c)]
    if kw["seed"] == 4:  # the saturating case must actually saturate
        assert f(*inputs)[1].max() > 0.9999 - 1e-3
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_contributions_match_naive():
    m, q, s, o, c = random_gaussians(**SCENES["saturating"])
    cam = make_camera(dtype=torch.float64)
    _, _, weights = rasterize_naive(m, q, s, o, c, cam)
    pw = torch.rand(32, 40, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    con = contributions(m, q, s, o, cam, pixel_weights=pw, chunk_budget=4000)
    gmax = torch.zeros(len(m), dtype=torch.float64)
    gsum = torch.zeros(len(m), dtype=torch.float64)
    gw = torch.zeros(len(m), 2, dtype=torch.float64)
    for (y, x), lst in weights.items():
        top = max(lst, key=lambda t: t[1])[0] if lst else -1
        assert con.pixel_top_gaussian[y, x].item() == top
        for i, w in lst:
            gmax[i] = max(gmax[i], w)
            gsum[i] += w
            gw[i] += w * pw[y, x]
    assert (con.gaussian_max_weight - gmax).abs().max() < 1e-10
    assert (con.weight_sum - gsum).abs().max() < 1e-10
    assert (con.weighted_sums - gw).abs().max() < 1e-10
    # the reported pixel is where the max occurs
    for i in torch.nonzero(gmax > 0).flatten().tolist()[:30]:
        p = con.gaussian_max_pixel[i].item()
        y, x = divmod(p, 40)
        assert abs(dict(weights[(y, x)])[i] - gmax[i].item()) < 1e-12
    assert (con.gaussian_max_pixel[gmax == 0] == -1).all()


def test_masked_weight_sum_equals_colour_gradient():
    """sum_p M(p) w_i(p) is the gradient of sum(M * image) w.r.t. colour i (voting's identity)."""
    m, q, s, o, c = random_gaussians(n=50, seed=5)
    cam = make_camera(dtype=torch.float64)
    mask = (torch.rand(32, 40, generator=torch.Generator().manual_seed(1)) > 0.5).double()
    col = c.clone().requires_grad_()
    (rasterize(m, q, s, o, col, cam, backend="torch").image[..., 0] * mask).sum().backward()
    con = contributions(m, q, s, o, cam, pixel_weights=mask)
    assert torch.allclose(col.grad[:, 0], con.weighted_sums[:, 0], atol=1e-12)


def test_shape_errors_name_expected_and_actual():
    m, q, s, o, c = random_gaussians(n=10)
    cam = make_camera(dtype=torch.float64)
    with pytest.raises(ValueError, match=r"quats: expected shape \(10, 4\), got \(10, 3\)"):
        rasterize(m, q[:, :3], s, o, c, cam)
    with pytest.raises(ValueError, match="background"):
        rasterize(m, q, s, o, c, cam, background=torch.zeros(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="unknown render backend"):
        rasterize(m, q, s, o, c, cam, backend="vulkan")


def test_gaussians_behind_camera_and_empty_view():
    m, q, s, o, c = random_gaussians(n=20)
    cam = make_camera(dtype=torch.float64, eye=(0.0, -30.0, 0.0))
    far_away = m + torch.tensor([0.0, -100.0, 0.0], dtype=torch.float64)  # all behind the camera
    out = rasterize(far_away, q, s, o, c, cam, backend="torch")
    assert out.alpha.abs().max() == 0 and (out.radii == 0).all()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gsplat_matches_torch_backend():
    pytest.importorskip("gsplat")
    m, q, s, o, c = (t.float().cuda() for t in random_gaussians(**SCENES["saturating"]))
    cam = make_camera()
    ins = [t.clone().requires_grad_() for t in (m, q, s, o, c)]
    ref = rasterize(*ins, cam, backend="torch")
    (ref.image.sum() + ref.alpha.sum()).backward()
    ref_grads = [t.grad.clone() for t in ins]
    ins2 = [t.clone().requires_grad_() for t in (m, q, s, o, c)]
    fast = rasterize(*ins2, cam, backend="gsplat")
    (fast.image.sum() + fast.alpha.sum()).backward()
    assert (fast.image - ref.image).abs().max() < 1e-4
    assert (fast.alpha - ref.alpha).abs().max() < 1e-4
    for a, b in zip(ins2, ref_grads):
        assert torch.allclose(a.grad, b, atol=1e-3, rtol=1e-2)


def _render_with_grads(compile_kernels: bool):
    """A scene where the early stop and the clamp are active, its image/alpha/depth and gradients."""
    m, q, s, o, c = (t.float().requires_grad_() for t in random_gaussians(**SCENES["saturating"]))
    out = rasterize(m, q, s, o, c, make_camera(), backend="torch", chunk_budget=256 * 20,
                    compile_kernels=compile_kernels)
    weights = torch.linspace(0.5, 1.5, 3)
    (out.image * weights).sum().add(out.alpha.sum()).add(out.depth.sum()).backward()
    return [out.image, out.alpha, out.depth] + [t.grad for t in (m, q, s, o, c)]


def test_compile_failure_falls_back_to_the_eager_kernels_with_a_warning(monkeypatch, caplog):
    """torch.compile fails only when a kernel first runs (no C++ compiler, say): the render and its
    gradients are then the eager ones, and a warning says so once."""
    def broken_compile(fn, **kwargs):
        def run(*args):
            raise RuntimeError("InductorError: no C++ compiler found\n(the toolchain's long message)")
        return run

    monkeypatch.setattr(torch_backend, "_COMPILED", {})
    monkeypatch.setattr(torch, "compile", broken_compile)
    with caplog.at_level("WARNING", logger="structgs"):
        fallback = _render_with_grads(compile_kernels=True)
        again = _render_with_grads(compile_kernels=True)
    eager = _render_with_grads(compile_kernels=False)
    for a, b, c in zip(fallback, again, eager):
        assert torch.equal(a, b) and torch.equal(a, c)
    warnings = [r.getMessage() for r in caplog.records if "torch.compile" in r.getMessage()]
    assert len(warnings) == 1 and "no C++ compiler found" in warnings[0] and "using the eager kernels" in warnings[0]


@pytest.mark.slow
def test_compiled_kernels_match_the_eager_ones(monkeypatch):
    """The opt-in compiled kernels (~30 s to compile on a cold cache) give the eager render and
    gradients to float32 rounding."""
    monkeypatch.setattr(torch_backend, "_COMPILED", {})
    compiled = _render_with_grads(compile_kernels=True)
    assert not torch_backend._COMPILED.get("failed"), "torch.compile failed here: the compiled path was not tested"
    eager = _render_with_grads(compile_kernels=False)
    for a, b in zip(compiled, eager):
        assert (a - b).abs().max() <= 1e-5 * (1 + b.abs().max())


def _needles(dtype=torch.float64):
    """Elongated, rotated Gaussians of every opacity (some below 1/255: never drawn)."""
    m, q, s, o, c = random_gaussians(n=120, seed=7, dtype=dtype, scale=(-3.5, -1.0))
    g = torch.Generator().manual_seed(8)
    s = s * torch.where(torch.rand(s.shape, generator=g, dtype=dtype) < 0.3, 0.05, 1.0)  # one axis thin
    o = torch.rand(len(o), generator=g, dtype=dtype) ** 3  # many faint ones
    return m, q, s, o, c


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_work_tiles_and_opacity_culling_leave_the_image_unchanged(dtype):
    """Any work tile size, with or without the opacity-aware culling, gives gsplat's 16x16-tile
    image; the culling drops pairs (and the smaller tiles drop more)."""
    from structgs.render.projection import project
    from structgs.render.tiles import build_plan

    m, q, s, o, c = _needles(dtype)
    cam = make_camera(width=45, height=29, dtype=dtype)  # not multiples of 8 or 16
    p = project(m, q, s, cam.world_to_camera, cam.K, cam.width, cam.height)

    def render(tile_size, cull):
        plan = build_plan(p.means2d, p.depths, p.radii, cam.width, cam.height, p.cov2d if cull else None,
                          o if cull else None, tile_size=tile_size)
        img, T = torch_backend.blend(plan, p.means2d, p.conics, o, c, budget=2000)
        return img, T, plan.sorted_ids.numel() * plan.pixels_per_tile

    ref_img, ref_T, ref_work = render(16, False)
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    work = {}
    for tile_size in (16, 8, 4):
        for cull in (False, True):
            img, T, work[tile_size, cull] = render(tile_size, cull)
            assert (img - ref_img).abs().max() <= tol and (T - ref_T).abs().max() <= tol, (tile_size, cull)
    assert work[16, True] < ref_work and work[8, True] < 0.6 * ref_work and work[4, True] < work[8, True]
    img, alpha, _ = rasterize_naive(m.double(), q.double(), s.double(), o.double(), c.double(),
                                    make_camera(width=45, height=29, dtype=torch.float64))
    assert (ref_img.double() - img).abs().max() < 1e-4


def test_culled_pairs_reach_no_pixel_of_their_tile():
    """Every (work tile, Gaussian) pair the culling drops has alpha < 1/255 on every pixel centre
    of the tile, evaluated in float32 as the kernel does."""
    from structgs.render.projection import TILE_SIZE, project, tile_rects
    from structgs.render.tiles import ALPHA_MIN, work_tile_rects

    m, q, s, o, c = (t.float() for t in _needles())
    cam = make_camera(width=45, height=29)
    p = project(m, q, s, cam.world_to_camera, cam.K, cam.width, cam.height)
    ys, xs = torch.meshgrid(torch.arange(29) + 0.5, torch.arange(45) + 0.5, indexing="ij")
    dx, dy = xs[None] - p.means2d[:, 0, None, None], ys[None] - p.means2d[:, 1, None, None]
    a, b, cc = (t[:, None, None] for t in p.conics.unbind(-1))
    sigma = (dx * (0.5 * a)).addcmul_(dy, b).mul_(dx).addcmul_(dy * (0.5 * cc), dy)
    reaches = (o[:, None, None] * torch.exp(-sigma.clamp(max=20)) >= ALPHA_MIN)  # (N, H, W)
    big = tile_rects(p.means2d, p.radii, 3, 2)  # gsplat: pixels of the 16x16 tiles the radius touches
    in_support = ((xs[None] // TILE_SIZE >= big[:, 0, None, None]) & (xs[None] // TILE_SIZE < big[:, 2, None, None])
                  & (ys[None] // TILE_SIZE >= big[:, 1, None, None]) & (ys[None] // TILE_SIZE < big[:, 3, None, None]))
    drawn = reaches & in_support
    assert drawn.any(1).any(1).sum() > 50  # most Gaussians are drawn somewhere
    for tile_size in (8, 4):
        r = work_tile_rects(p.means2d, p.radii, p.cov2d, o, tile_size, (45 + tile_size - 1) // tile_size,
                            (29 + tile_size - 1) // tile_size)
        tx, ty = xs[None] // tile_size, ys[None] // tile_size
        kept = ((tx >= r[:, 0, None, None]) & (tx < r[:, 2, None, None])
                & (ty >= r[:, 1, None, None]) & (ty < r[:, 3, None, None]))
        assert not (drawn & ~kept).any()
        assert (kept & ~drawn).sum() < 0.5 * (in_support & ~drawn).sum()  # and it does cull
