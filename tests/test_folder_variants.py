"""type: folder with a `variants:` mapping: Background-Challenge folders without symlinks."""

import json

import numpy as np
import pytest
from PIL import Image

from oacl.artifacts import read_manifest
from oacl.data.prepare import prepare


def _img(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((16, 16, 3), value, np.uint8)).save(path)


@pytest.fixture()
def bench(tmp_path):
    root = tmp_path / "mine"
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            for i in range(3):
                _img(root / split / cls / f"{i}.png", 10 * i)
    bc = tmp_path / "bc"  # my own Background-Challenge folders, not in the IN-9 layout
    for variant in ("original", "only_fg", "mixed_rand"):
        for cls in ("cat", "dog"):
            for i in range(2):
                _img(bc / variant / cls / f"x{i}.jpg", 50 + i)
    for cls in ("cat", "dog"):
        for i in range(2):
            m = np.zeros((16, 16), np.uint8)
            m[4:12, 4:12] = 255
            (bc / "masks" / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(m).save(bc / "masks" / cls / f"x{i}.png")
    return root, bc


def test_variants_mapping_gives_test_variants(bench, tmp_path):
    root, bc = bench
    cfg = {
        "type": "folder",
        "root": str(root),
        "workers": 1,
        "variants": {
            "original": {"images": str(bc / "original"), "masks": str(bc / "masks")},
            "only_fg": {"images": str(bc / "only_fg"), "masks": str(bc / "masks")},
            "mixed_rand": "../bc/mixed_rand",
        },
    }  # fmt: skip  (relative: under root)
    df = read_manifest(prepare(cfg, tmp_path / "out", progress=False))
    test = df[df["split"] == "test"]
    assert sorted(test["variant"].unique()) == ["mixed_rand", "only_fg", "original"]
    assert len(test) == 12 and len(df[df["split"] == "train"]) == 6
    assert set(df.loc[df["split"] == "train", "variant"]) == {"original"}
    # one scene per (class, stem) across variants; labels from the shared class list
    assert test.groupby("scene_id")["variant"].nunique().eq(3).all()
    assert test.groupby("scene_id")["label"].nunique().eq(1).all()
    assert "test/mixed_rand/dog/x1.jpg" in set(test["image_id"])
    assert (test.loc[test["variant"] != "mixed_rand", "mask_path"] != "").all()
    assert (test.loc[test["variant"] == "mixed_rand", "mask_path"] == "").all()


def test_variant_split_clash_is_an_error(bench, tmp_path):
    root, bc = bench
    cfg = {
        "type": "folder",
        "root": str(root),
        "variant_split": "val",
        "variants": {"only_fg": str(bc / "only_fg")},
    }
    with pytest.raises(ValueError, match="split folder 'val' and variants"):
        prepare(cfg, tmp_path / "out", progress=False)
    with pytest.raises(FileNotFoundError, match="variants.nope"):
        prepare(
            {**cfg, "variant_split": "test", "variants": {"nope": str(bc / "nope")}},
            tmp_path / "out",
            progress=False,
        )


def test_missing_variant_mask_is_an_error_or_a_counted_skip(bench, tmp_path):
    """Issue 28: an image of a mapping with masks but no mask is never a row with mask ''."""
    root, bc = bench
    (bc / "masks" / "dog" / "x1.png").unlink()
    cfg = {
        "type": "folder",
        "root": str(root),
        "workers": 1,
        "variants": {"original": {"images": str(bc / "original"), "masks": str(bc / "masks")}},
    }
    with pytest.raises(
        ValueError, match=r"(?s)1 bad image.*original/dog/x1\.jpg: no mask .*x1\.png"
    ):
        prepare(cfg, tmp_path / "out", progress=False)
    df = read_manifest(prepare({**cfg, "skip_bad": True}, tmp_path / "out", progress=False))
    test = df[df["split"] == "test"]
    assert len(test) == 3 and (test["mask_path"] != "").all()
    skipped = json.loads((tmp_path / "out" / "skipped.json").read_text())
    assert skipped["counts"] == {"missing_mask": 1}


def test_variant_folders_under_root_are_not_splits(tmp_path):
    """Issue 28: relative variant folders (and their mask folder) under root, no `splits:`:
    only train/ is a split; nested one level deeper, the same."""
    for nest in ("", "bench/"):
        root = tmp_path / f"r{len(nest)}"
        for cls in ("cat", "dog"):
            for i in range(2):
                _img(root / "train" / cls / f"{i}.png", 10 * i)
                for v in ("original", "only_fg"):
                    _img(root / nest / v / cls / f"x{i}.png", 50 + i)
                _img(root / nest / "fg_masks" / cls / f"x{i}.png", 255)
        spec = {"images": f"{nest}original", "masks": f"{nest}fg_masks"}
        cfg = {
            "type": "folder",
            "root": str(root),
            "workers": 1,
            "variants": {"original": spec, "only_fg": {**spec, "images": f"{nest}only_fg"}},
        }
        df = read_manifest(prepare(cfg, tmp_path / f"out{len(nest)}", progress=False))
        assert sorted(df["split"].unique()) == ["test", "train"], df["split"].value_counts()
        assert len(df) == 12 and (df.loc[df["split"] == "test", "mask_path"] != "").all()
    with pytest.raises(ValueError, match=r"split folder\(s\) \['bench'\] hold images or masks"):
        prepare({**cfg, "splits": ["train", "bench"]}, tmp_path / "out", progress=False)
