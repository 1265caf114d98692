"""Blender and COLMAP loaders, view names, masks convention, and errors."""

import json
import math
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from structgs.scene import load_dataset
from structgs.scene.images import save_id_mask


def test_blender_chair(shared_data):
    ds = load_dataset(shared_data / "chair_200", background=(1, 1, 1))
    assert ds.format == "blender" and len(ds.split("train")) == 24 and len(ds.split("test")) == 8
    cam = ds.camera("train/r_0")
    assert (cam.width, cam.height) == (200, 200)
    assert math.isclose(cam.K[0, 0].item(), 100 / math.tan(0.6911112070083618 / 2), rel_tol=1e-6)
    # the Blender chair cameras look at the origin: it projects near the image centre, in front
    p = cam.world_to_camera[:3, :3] @ torch.zeros(3) + cam.world_to_camera[:3, 3]
    assert p[2] > 0
    uv = (cam.K @ p)[:2] / p[2]
    assert (uv - 100).abs().max() < 20
    img = ds.image(cam)
    assert img.shape == (200, 200, 3) and img[0, 0].tolist() == [1.0, 1.0, 1.0]  # composited on white
    half = load_dataset(shared_data / "chair_200", format="blender", downscale=2)
    c2 = half.camera("train/r_0")
    assert (c2.width, c2.height) == (100, 100) and math.isclose(c2.K[0, 0].item(), cam.K[0, 0].item() / 2, rel_tol=1e-6)
    assert half.image(c2).shape == (100, 100, 3)


def test_errors(shared_data, tmp_path):
    ds = load_dataset(shared_data / "chair_200")
    with pytest.raises(ValueError, match="unknown split 'val'"):
        ds.split("val")
    with pytest.raises(ValueError, match="unknown view 'train/r_1'"):
        ds.camera("train/r_1")
    with pytest.raises(FileNotFoundError, match="neither a Blender"):
        load_dataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="masks directory does not exist"):
        load_dataset(shared_data / "chair_200", masks_dir=tmp_path / "nomasks")


def test_masks_convention_and_errors(shared_data, tmp_path):
    masks = tmp_path / "masks"
    (masks / "train").mkdir(parents=True)
    ds = load_dataset(shared_data / "chair_200", masks_dir=masks)
    cam = ds.camera("train/r_0")
    with pytest.raises(FileNotFoundError, match=r"masks/train/r_0\.png: mask file missing"):
        ds.mask(cam)
    ids = np.zeros((200, 200), np.int64)
    ids[50:150, 60:140] = 300  # needs 16 bits
    save_id_mask(ids, masks / "train" / "r_0.png")
    assert torch.equal(ds.mask(cam), torch.from_numpy(ids))
    save_id_mask(ids[:100], masks / "train" / "r_4.png")
    with pytest.raises(ValueError, match=r"r_4\.png: mask is 200x100 but the image is 200x200"):
        ds.mask(ds.camera("train/r_4"))
    Image.new("RGB", (200, 200)).save(masks / "train" / "r_8.png")
    with pytest.raises(ValueError, match="single-channel"):
        ds.mask(ds.camera("train/r_8"))


def test_an_image_of_another_size_is_refused(shared_data, tmp_path):
    """One camera model per split: an image of another size would get wrong intrinsics."""
    import shutil

    root = tmp_path / "chair"
    shutil.copytree(shared_data / "chair_200", root)
    Image.open(root / "train" / "r_4.png").resize((100, 100)).save(root / "train" / "r_4.png")
    with pytest.raises(ValueError, match=r"r_4\.png: image is 100x100 but train/r_0's is 200x200"):
        load_dataset(root)
    # sizes given in the transforms file are checked against the images
    meta = json.loads((root / "transforms_train.json").read_text())
    meta["w"], meta["h"] = 200, 200
    (root / "transforms_train.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"r_4\.png: image is 100x100 but transforms_train\.json's w/h says 200x200"):
        load_dataset(root)


def _write_colmap_binary(root, w2c_list, fx, cx, cy, size):
    sparse = root / "sparse" / "0"
    sparse.mkdir(parents=True)
    (root / "images").mkdir()
    with open(sparse / "cameras.bin", "wb") as f:
        f.write(struct.pack("<Q", 1))
        f.write(struct.pack("<iiQQ", 1, 1, size[0], size[1]))  # PINHOLE
        f.write(struct.pack("<dddd", fx, fx, cx, cy))
    with open(sparse / "images.bin", "wb") as f:
        f.write(struct.pack("<Q", len(w2c_list)))
        for i, (q, t) in enumerate(w2c_list):
            f.write(struct.pack("<idddddddi", i + 1, *q, *t, 1))
            f.write(f"IMG_{i}.jpg".encode() + b"\x00")
            f.write(struct.pack("<Q", 0))
            Image.new("RGB", size, (10 * i, 0, 0)).save(root / "images" / f"IMG_{i}.jpg")


def test_colmap_binary_and_text(tmp_path):
    from structgs.scene.colmap import read_model

    poses = [((1.0, 0.0, 0.0, 0.0), (0.1 * i, 0.0, 2.0)) for i in range(9)]
    _write_colmap_binary(tmp_path, poses, 50.0, 32.0, 24.0, (64, 48))
    ds = load_dataset(tmp_path, downscale=2)
    assert ds.format == "colmap"
    names = [c.name for c in ds.all_cameras]
    assert "IMG_3" in names and len(ds.split("test")) == 2 and len(ds.split("train")) == 7
    cam = ds.camera("IMG_3")
    assert (cam.width, cam.height) == (32, 24) and math.isclose(cam.K[0, 0].item(), 25.0)
    assert torch.allclose(cam.world_to_camera[:3, 3], torch.tensor([0.3, 0.0, 2.0]))
    assert ds.image(cam).shape == (24, 32, 3)
    # the same model as text
    cams, imgs = read_model(tmp_path / "sparse" / "0")
    txt = tmp_path / "txt"
    (txt / "sparse" / "0").mkdir(parents=True)
    (txt / "images").symlink_to(tmp_path / "images")
    (txt / "sparse" / "0" / "cameras.txt").write_text("# c\n1 PINHOLE 64 48 50 50 32 24\n")
    lines = ["# images"]
    for im in imgs.values():
        lines += [f"{im.id} {' '.join(map(str, im.qvec))} {' '.join(map(str, im.tvec))} 1 {im.name}", ""]
    (txt / "sparse" / "0" / "images.txt").write_text("\n".join(lines) + "\n")
    ds2 = load_dataset(txt, format="colmap", downscale=2)
    assert torch.allclose(ds2.camera("IMG_3").world_to_camera, cam.world_to_camera)
    Image.new("RGB", (60, 48)).save(tmp_path / "images" / "IMG_5.jpg")
    with pytest.raises(ValueError, match=r"IMG_5\.jpg: image is 60x48 but camera 1 in .*sparse/0 says 64x48"):
        load_dataset(tmp_path)


def test_colmap_distortion_is_refused(tmp_path):
    from structgs.scene.colmap import ColmapCamera

    cam = ColmapCamera(1, "OPENCV", 10, 10, np.array([5, 5, 5, 5, 0.1, 0, 0, 0]))
    with pytest.raises(ValueError, match="image_undistorter"):
        cam.pinhole(tmp_path)
