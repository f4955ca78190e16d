"""Indexing an image folder: odd-but-valid images accepted, broken ones reported or skipped."""

from __future__ import annotations

import io
import json

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from oacl.artifacts import read_manifest
from oacl.cli import main
from oacl.data.folder import DEFAULTS, index_folder
from oacl.io import read_rgb
from oacl.params import merge_params

GOOD = [
    "train/cat/rgb.jpg",
    "train/cat/gray.png",
    "train/dog/rgba.png",
    "train/dog/cmyk.jpg",
    "val/dog/deep16.png",
    "val/ant/plain.png",
]
BAD = {
    "train/cat/truncated.jpg": "undecodable",
    "train/dog/garbage.jpg": "undecodable",
    "val/ant/tiny.png": "too_small",
}


def _jpeg(arr, mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).convert(mode).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture()
def root(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    r = tmp_path / "data"
    for rel in GOOD + list(BAD):
        (r / rel).parent.mkdir(parents=True, exist_ok=True)
    (r / "train/cat/rgb.jpg").write_bytes(_jpeg(rgb))
    Image.fromarray(rgb[..., 0]).save(r / "train/cat/gray.png")
    Image.fromarray(np.dstack([rgb, rgb[..., :1]])).save(r / "train/dog/rgba.png")
    (r / "train/dog/cmyk.jpg").write_bytes(_jpeg(rgb, "CMYK"))
    cv2.imwrite(str(r / "val/dog/deep16.png"), (rgb[..., 0].astype(np.uint16) * 257))
    Image.fromarray(rgb).save(r / "val/ant/plain.png")
    full = _jpeg(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    (r / "train/cat/truncated.jpg").write_bytes(full[: len(full) // 2])
    (r / "train/dog/garbage.jpg").write_bytes(rng.bytes(500))
    Image.fromarray(rgb[:2, :2]).save(r / "val/ant/tiny.png")
    (r / "train/cat/notes.txt").write_text("not an image")  # ignored: not an image extension
    # ground truth: a mask for one image, pixel boxes from a JSON, normalised ones from parquet
    (r / "masks/train/cat").mkdir(parents=True)
    mask = np.zeros((40, 30), np.uint8)
    mask[5:20, 3:12] = 255
    Image.fromarray(mask).save(r / "masks/train/cat/rgb.png")
    (r / "train/dog/rgba.png.json").write_text(json.dumps({"boxes": [[3, 5, 12, 20]]}))
    pd.DataFrame(
        {"image_id": ["val/ant/plain.png"], "boxes": [[[0.1, 0.2, 0.5, 0.6]]], "box_labels": [[0]]}
    ).to_parquet(r / "boxes.parquet")
    return r


def _params(root, **over):
    return merge_params(DEFAULTS, {"root": str(root), "workers": 1, **over})


def test_bad_images_fail_with_a_list(root, tmp_path):
    with pytest.raises(ValueError) as err:
        index_folder(_params(root), tmp_path / "out", progress=False)
    msg = str(err.value)
    assert "3 bad image(s)" in msg and "--skip-bad" in msg
    for rel in BAD:
        assert str(root / rel) in msg
    for rel in GOOD:
        assert str(root / rel) not in msg
    assert "too small: 2x2 < 8 px" in msg and "truncated" in msg
    assert not (tmp_path / "out/manifest.parquet").exists()


def test_skip_bad_indexes_valid_images_and_records_skips(root, tmp_path):
    out = tmp_path / "out"
    df = read_manifest(index_folder(_params(root, skip_bad=True), out, progress=False))
    assert sorted(df["image_id"]) == sorted(GOOD)
    skipped = json.loads((out / "skipped.json").read_text())
    assert skipped["n_skipped"] == 3 and skipped["n_indexed"] == len(GOOD)
    assert skipped["counts"] == {"undecodable": 2, "too_small": 1}
    assert {s["path"] for s in skipped["skipped"]} == {str(root / b) for b in BAD}
    assert json.loads((out / "classes.json").read_text()) == {"classes": ["ant", "cat", "dog"]}
    by_id = df.set_index("image_id")
    assert list(by_id.loc[GOOD, "label"]) == [1, 1, 2, 2, 2, 0]
    assert set(df["split"]) == {"train", "val"}
    for r in df.itertuples():  # every accepted image reads as RGB of the recorded size
        assert read_rgb(r.abspath).shape == (r.height, r.width, 3) == (40, 30, 3)
    # ground truth
    assert by_id.loc["train/cat/rgb.jpg", "mask_abspath"] == str(root / "masks/train/cat/rgb.png")
    assert by_id.loc["train/cat/gray.png", "mask_path"] == ""
    np.testing.assert_allclose(
        by_id.loc["train/dog/rgba.png", "boxes"][0], [3 / 30, 5 / 40, 12 / 30, 20 / 40]
    )
    assert list(by_id.loc["train/dog/rgba.png", "box_labels"]) == [2]
    np.testing.assert_allclose(
        by_id.loc["val/ant/plain.png", "boxes"][0], [0.1, 0.2, 0.5, 0.6], rtol=1e-6
    )
    assert len(by_id.loc["val/dog/deep16.png", "boxes"]) == 0


def test_min_size_and_relative_paths(root, tmp_path):
    out = tmp_path / "out"
    params = _params(root, skip_bad=True, min_size=2, relative_paths=True)
    df = read_manifest(index_folder(params, out, progress=False))
    assert "val/ant/tiny.png" in set(df["image_id"])  # 2x2 is accepted at min_size 2
    assert json.loads((out / "skipped.json").read_text())["counts"] == {"undecodable": 2}
    assert not df["path"].str.startswith("/").any()
    assert all(read_rgb(p).ndim == 3 for p in df["abspath"])  # relative to the manifest folder
    with pytest.raises(ValueError, match="every image is bad"):
        index_folder(_params(root, skip_bad=True, min_size=1000), tmp_path / "o2", progress=False)


def test_mask_size_mismatch_is_reported(root, tmp_path):
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "masks/train/cat/rgb.png")
    (root / "train/cat/truncated.jpg").unlink()
    (root / "train/dog/garbage.jpg").unlink()
    (root / "val/ant/tiny.png").unlink()
    with pytest.raises(ValueError, match=r"mask .*rgb.png is 10x10, image is 30x40"):
        index_folder(_params(root), tmp_path / "out", progress=False)


def test_cli_index(root, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["data", "index", "--root", str(root), "--out", str(out), "--quiet"]) == 2
    assert "bad image(s)" in capsys.readouterr().err
    assert (
        main(["data", "index", "--root", str(root), "--out", str(out), "--skip-bad", "--quiet"])
        == 0
    )
    line = capsys.readouterr().out
    assert "6 rows" in line and "skipped 3" in line
    assert main(["data", "index", "--root", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_links_and_empty_class_folders_are_reported(root, tmp_path):
    for rel in BAD:  # only the new kinds of bad input remain
        (root / rel).unlink()
    (root / "train/cat/dangling.png").symlink_to(root / "nowhere.png")
    (root / "train/dog/loop.png").symlink_to(root / "train/dog/loop.png")
    (root / "train/ghost").symlink_to(root / "no_such_class")
    (root / "val/empty").mkdir()
    (root / "val/empty/readme.txt").write_text("no images here")
    expected = {
        "train/cat/dangling.png": "broken_link",
        "train/dog/loop.png": "symlink_loop",
        "train/ghost": "broken_link",
        "val/empty": "empty_class",
    }
    with pytest.raises(ValueError) as err:
        index_folder(_params(root), tmp_path / "out", progress=False)
    msg = str(err.value)
    assert "4 bad image(s), link(s) or class folder(s)" in msg
    for rel in expected:
        assert str(root / rel) in msg
    assert "symlink loop" in msg and "empty class folder" in msg and "does not exist" in msg

    out = tmp_path / "skip"
    df = read_manifest(index_folder(_params(root, skip_bad=True), out, progress=False))
    assert sorted(df["image_id"]) == sorted(GOOD)
    skipped = json.loads((out / "skipped.json").read_text())
    assert {s["path"]: s["kind"] for s in skipped["skipped"]} == {
        str(root / r): k for r, k in expected.items()
    }
    assert skipped["counts"] == {"broken_link": 2, "symlink_loop": 1, "empty_class": 1}
    assert skipped["n_skipped"] == 4


def test_16bit_images_scale_by_bit_depth_not_content(tmp_path):
    dark = np.full((12, 10), 199, np.uint16)  # 199 of 65535: nearly black
    cv2.imwrite(str(tmp_path / "dark16.png"), dark)
    Image.fromarray(dark).save(tmp_path / "dark16.tif")
    bright = np.full((12, 10), 50000, np.uint16)
    cv2.imwrite(str(tmp_path / "bright16.png"), bright)
    for name in ("dark16.png", "dark16.tif"):
        assert read_rgb(tmp_path / name).max() <= 1, name  # 199 / 65535 * 255 = 0.77
    assert (read_rgb(tmp_path / "bright16.png") == round(50000 / 65535 * 255)).all()
