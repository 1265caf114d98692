"""``structgs eval``: every object of the ground-truth masks scored by shaped segmentation and
voting from one prompt each (mIoU, mBIoU, 3D IoU, query time, edit leakage, PSNR), with its
report files; bad input refused before any work."""

import json

import numpy as np

from helpers import run_cli




def test_eval_scores_every_object_with_both_methods(tracked, small_scene_dir, tmp_path, capsys):
    out = tmp_path / "report"
    assert run_cli("eval", tracked[0], "--masks", small_scene_dir / "masks", "--out", out) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "eval: objects" in captured.err and "voting votes" in captured.err  # progress per object and view
    report = json.loads((out / "report.json").read_text())
    labels = np.load(small_scene_dir / "labels.npy")
    assert sorted(report["objects"]) == ["1", "2", "3", "4"]  # the ground is an object of the masks too
    assert report["psnr"] > 25
    for k, entry in report["objects"].items():
        view = entry["prompt"]["view"]
        assert view.startswith("train/")
        for method in ("shaped", "voting"):
            r = entry["methods"][method]
            assert {"miou", "mbiou", "iou_3d", "query_s", "selected"} <= set(r)
            sel = np.load(out / "selections" / f"{k}-{method}.npy")
            assert int(sel.sum()) == r["selected"]
            truth = labels == int(k)
            assert abs(100 * (sel & truth).sum() / (sel | truth).sum() - r["iou_3d"]) < 1e-6
        assert entry["methods"]["shaped"]["miou"] > 85 and entry["methods"]["shaped"]["iou_3d"] > 90, (k, entry)
        assert entry["methods"]["voting"]["miou"] > 80, (k, entry)
        assert all(entry["methods"]["shaped"]["edits"]["targets_met"].values()) or k == "1", (k, entry)
    assert "| 2 |" in (out / "report.md").read_text() and "shaped mIoU / mBIoU / 3D IoU" in printed
    from PIL import Image

    w, h = Image.open(out / "report.png").size
    assert w == 3 * 128 + 8 and h == 18 + 4 * 128 + 12  # click, shaped, voting x 4 objects, at 2x


def test_eval_takes_prompts_and_methods_and_refuses_bad_input(tracked, small_scene_dir, tmp_path, capsys):
    masks = small_scene_dir / "masks"
    m = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(masks / "train" / "r_0.png"))
    ys, xs = np.nonzero(m == 2)
    (tmp_path / "p.json").write_text(json.dumps({"2": {"view": "train/r_0", "pixel": [int(xs[0]), int(ys[0])]}}))
    out = tmp_path / "r"
    assert run_cli("eval", tracked[0], "--masks", masks, "--out", out, "--prompts", tmp_path / "p.json",
                "--method", "shaped", "--method", "projection", "--no-edits") == 0
    report = json.loads((out / "report.json").read_text())
    assert report["objects"]["2"]["prompt"] == {"view": "train/r_0", "pixel": [int(xs[0]), int(ys[0])]}
    assert set(report["objects"]["3"]["methods"]) == {"shaped", "projection"}
    assert "edits" not in report["objects"]["3"]["methods"]["shaped"]
    capsys.readouterr()
    bad = {"exists": ([], "reports are never overwritten"),
           "prompts": (["--prompts", tmp_path / "bad.json"], "must be {\"view\": NAME"),
           "view": (["--prompts", tmp_path / "view.json"], "unknown view 'train/r_99'"),
           "labels": (["--labels", tmp_path / "l.npy"], "expected (6000,) labels"),
           "inside": ([], "lies inside the run")}
    (tmp_path / "bad.json").write_text(json.dumps({"2": {"view": "train/r_0", "pixel": [1]}}))
    (tmp_path / "view.json").write_text(json.dumps({"2": {"view": "train/r_99", "pixel": [1, 1]}}))
    np.save(tmp_path / "l.npy", np.zeros(5, dtype=np.int64))
    for name, (args, message) in bad.items():
        target = {"exists": out, "inside": tracked[0] / "report"}.get(name, tmp_path / f"never-{name}")
        assert run_cli("eval", tracked[0], "--masks", masks, "--out", target, *args) == 2, name
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, (name, err)
        assert name == "exists" or not target.exists()
