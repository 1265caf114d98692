"""INRIA PLY: bit-exact round trips, foreign files, and clear errors on bad input."""

import hashlib

import numpy as np
import pytest
import torch

from structgs.scene import Gaussians, PlyFormatError, read_ply, write_ply


def _random(n=100, degree=3, normals=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = (degree + 1) ** 2
    return Gaussians(torch.randn(n, 3, generator=g), torch.randn(n, 4, generator=g), torch.randn(n, 3, generator=g),
                     torch.randn(n, generator=g), torch.randn(n, k, 3, generator=g),
                     torch.randn(n, 3, generator=g) if normals else None)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
@pytest.mark.parametrize("normals", [True, False])
def test_round_trip_bit_exact(tmp_path, degree, normals):
    g = _random(degree=degree, normals=normals)
    p1, p2 = tmp_path / "a.ply", tmp_path / "b.ply"
    write_ply(g, p1)
    back = read_ply(p1)
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        assert torch.equal(getattr(back, name), getattr(g, name)), name
    assert (back.normals is None) == (not normals)
    write_ply(back, p2)
    assert p1.read_bytes() == p2.read_bytes()


def test_inria_f_rest_layout_is_channel_major(tmp_path):
    g = _random(n=3, degree=1, normals=False)
    write_ply(g, tmp_path / "g.ply")
    from plyfile import PlyData

    v = PlyData.read(str(tmp_path / "g.ply"))["vertex"].data
    # f_rest_{c*(K-1)+k} = sh[:, 1+k, c]
    assert np.float32(v["f_rest_4"][1]) == g.sh[1, 2, 1].item()  # c=1, k=1
    assert list(v.dtype.names[:6]) == ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2"]


def test_foreign_ply_loads(shared_data):
    path = shared_data / "ply" / "donut_sh0_inria.ply"
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    g = read_ply(path)
    assert len(g) == 45624 and g.sh_degree == 0 and g.normals is None
    assert torch.isfinite(g.means).all()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_not_a_ply(tmp_path):
    p = tmp_path / "x.ply"
    p.write_text("hello world\n")
    with pytest.raises(PlyFormatError, match=r"x\.ply: not a PLY file"):
        read_ply(p)


def test_truncated(tmp_path):
    write_ply(_random(), tmp_path / "full.ply")
    data = (tmp_path / "full.ply").read_bytes()
    (tmp_path / "cut.ply").write_bytes(data[: len(data) // 2])
    with pytest.raises(PlyFormatError, match=r"cut\.ply: .*truncated"):
        read_ply(tmp_path / "cut.ply")


def test_missing_fields(tmp_path):
    from plyfile import PlyData, PlyElement

    arr = np.zeros(4, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("opacity", "f4")])
    PlyData([PlyElement.describe(arr, "vertex")]).write(str(tmp_path / "pts.ply"))
    with pytest.raises(PlyFormatError, match=r"pts\.ply: missing 3DGS fields \['f_dc_0'"):
        read_ply(tmp_path / "pts.ply")


def test_nan_values(tmp_path):
    g = _random(n=10)
    from structgs.scene.ply import gaussians_to_ply_array
    from plyfile import PlyData, PlyElement

    arr = gaussians_to_ply_array(g)
    arr["scale_1"][7] = np.nan
    PlyData([PlyElement.describe(arr, "vertex")]).write(str(tmp_path / "nan.ply"))
    with pytest.raises(ValueError, match=r"nan\.ply: field 'log_scales' has 1 non-finite .* index 7"):
        read_ply(tmp_path / "nan.ply")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such PLY"):
        read_ply(tmp_path / "nope.ply")
