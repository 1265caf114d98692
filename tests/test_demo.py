"""``structgs demo`` after its fit and shaping (reused from the session's test scene, as a
re-run reuses finished stages): it segments and edits every object, writes its picture and
summary, and says where they are."""

import json
import shutil

from structgs.cli import main
from structgs.data import SceneSpec


def test_demo_segments_edits_and_writes_its_picture(small_scene_dir, fitted_small_run, tracked, tmp_path, capsys):
    out = tmp_path / "demo"
    shutil.copytree(small_scene_dir, out / "scene")
    shutil.copytree(fitted_small_run, out / "fitted")
    shutil.copytree(tracked[0], out / "shaped")
    from structgs.pipeline.demo import run_demo

    spec = SceneSpec(seed=3, num_objects=3, num_gaussians=6000, image_size=64, num_train=12, num_test=4)
    summary = run_demo(out, spec=spec, device="cpu")
    names = set(o["name"].rsplit("_", 1)[0] for o in json.loads((out / "scene" / "scene.json").read_text())["objects"])
    assert set(summary["names"].values()) == names and "ground" in names
    for k, seg in summary["segmentation"].items():  # structgs eval's figures, the ground (1) included
        assert seg["shaped"]["miou"] > 90 and seg["shaped"]["iou_3d"] > 90, (k, seg)
        assert seg["voting"]["miou"] > 80, (k, seg)
    assert sorted(summary["segmentation"]) == [1, 2, 3, 4] and (out / "report" / "report.png").is_file()
    for k, chained in summary["chained"].items():
        assert chained["left_behind"] <= 0.005 and chained["tinted"][1] <= 0.01, (k, chained)
    text = (out / "summary.md").read_text()
    assert all(f"| {n} |" in text for n in names) and "ground tinted" in text
    from PIL import Image

    picture = Image.open(out / "edits.png")
    assert picture.size[0] == 5 * 128 + 16 and picture.size[1] == 18 + 3 * 128 + 8  # 3 views, 2x size
    assert summary["files"]["picture"] == str(out / "edits.png")
    capsys.readouterr()
    # another seed in the same folder: refused before any work, the runs untouched
    before = (out / "shaped" / "config.json").read_bytes()
    try:
        main(["demo", "--out", str(out), "--seed", "4"])
    except SystemExit as e:
        assert e.code == 2
    err = capsys.readouterr().err
    assert "holds the runs of another built-in scene" in err and "seed 3" in err, err
    assert (out / "shaped" / "config.json").read_bytes() == before
