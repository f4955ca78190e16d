"""Every real-dataset reader, run through `oacl.data.prepare.prepare` on a tiny fixture in
the dataset's true on-disk layout (tests/fixtures_real.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import fixtures_real as fx
import numpy as np
import pytest

from oacl.artifacts import read_boxes, read_manifest
from oacl.data.prepare import prepare
from oacl.io import read_mask, read_rgb


def run(tmp_path, cfg, name="out"):
    manifest = prepare(cfg, tmp_path / name, progress=False)
    return read_manifest(manifest), manifest.parent


# --------------------------------------------------------------------------- COCO


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    return root, fx.make_coco(root)


def test_coco_rows_labels_boxes(tmp_path, coco):
    root, facts = coco
    df, out = run(tmp_path, {"type": "coco", "root": str(root), "val_fraction": 0.0})
    assert sorted(df["image_id"]) == sorted(str(i) for i in facts["sizes"])
    rows = df.set_index("image_id")
    for iid, (w, h, src) in facts["sizes"].items():
        r = rows.loc[str(iid)]
        assert (r.width, r.height) == (w, h)
        assert r.split == ("train" if src == "train2017" else "test")
        assert Path(r.abspath) == (root / src / f"{iid:012d}.jpg").resolve()  # referenced in place
    cats = json.loads((out / "coco_categories.json").read_text())
    assert [c["coco_id"] for c in cats] == facts["cat_order"]
    index = {c["coco_id"]: c["index"] for c in cats}
    # image 1: car polygon + tiny person; the crowd annotation gives no box and no label
    r = rows.loc["1"]
    non_crowd = [a for a in facts["anns"].values() if a["image_id"] == 1 and not a["iscrowd"]]
    assert list(r.box_labels) == [index[a["category_id"]] for a in non_crowd]
    assert list(r.labels) == sorted({index[a["category_id"]] for a in non_crowd})
    x, y, w, h = non_crowd[0]["bbox"]
    np.testing.assert_allclose(r.boxes[0], [x / 40, y / 30, (x + w) / 40, (y + h) / 30], rtol=1e-6)
    # OA-Crop (GT): the 0.5%-area box is dropped, the other grown by 20% per side
    assert len(r.gt_crop_boxes) == 1
    gx1, gy1, gx2, gy2 = r.gt_crop_boxes[0]
    assert gx1 < x / 40 and gx2 > (x + w) / 40 and gy1 < y / 30 and gy2 > (y + h) / 30
    np.testing.assert_allclose(gx2 - gx1, 1.4 * w / 40, rtol=1e-5)
    # image 4 has no annotation: kept, no labels
    assert len(rows.loc["4"].boxes) == 0 and rows.loc["4"].label == -1
    # the same GT crop boxes as a box shard for pretraining
    shard = read_boxes(out / "gt_boxes.parquet")
    assert set(shard) == set(df["image_id"])
    np.testing.assert_allclose(shard["1"]["boxes"], [list(b) for b in r.gt_crop_boxes], rtol=1e-6)
    assert shard["4"]["empty"] and shard["1"]["bg_rect"] == [0, 0, 1, 1]


def test_coco_masks_polygon_rle_crowd(tmp_path, coco):
    root, facts = coco
    df, out = run(tmp_path, {"type": "coco", "root": str(root), "masks": True, "val_fraction": 0.0})
    rows = df.set_index("image_id")
    m1 = read_mask(rows.loc["1"].mask_abspath) > 0
    assert m1.shape == (30, 40)
    assert m1[6:18, 6:22].all()  # inside the car polygon
    assert (m1 & (facts["crowd_mask"] > 0)).sum() == facts[
        "crowd_mask"
    ].sum()  # crowd RLE is foreground
    assert not m1[0:2, 0:30].any()
    m2 = read_mask(rows.loc["2"].mask_abspath) > 0  # compressed RLE
    assert m2[5:35, 10:40].all() and m2.sum() == 30 * 30
    assert Path(rows.loc["2"].mask_abspath).is_relative_to(out)


def test_coco_holdout_is_seeded(tmp_path, coco):
    root, _ = coco
    cfg = {"type": "coco", "root": str(root), "val_fraction": 0.34, "gt_box_shard": False}
    a, _ = run(tmp_path, cfg, "a")
    b, _ = run(tmp_path, cfg, "b")
    val = a.loc[a.split == "val", "image_id"].tolist()
    assert len(val) == 1 and val == b.loc[b.split == "val", "image_id"].tolist()
    assert set(a.loc[a.split == "test", "image_id"]) == {"3"}  # val2017 untouched


def test_coco_crop(tmp_path, coco):
    root, facts = coco
    df, out = run(tmp_path, {"type": "coco", "root": str(root), "crops": True, "crop_min_size": 8})
    crops = df[df.split.str.startswith("objcrop")].set_index("image_id")
    kept = {a["id"] for a in facts["anns"].values() if not a["iscrowd"] and min(a["bbox"][2:]) >= 8}
    assert set(crops.index) == {f"crop{i}" for i in kept}
    assert (
        crops.loc["crop31"].split == "objcrop_val" and crops.loc["crop11"].split == "objcrop_train"
    )
    for cid, r in crops.iterrows():
        ann = facts["anns"][int(cid[4:])]
        assert r.scene_id == ann["image_id"]
        img = read_rgb(r.abspath)  # materialised under out_dir
        assert Path(r.abspath).is_relative_to(out) and img.shape[:2] == (r.height, r.width)
        x, y, w, h = ann["bbox"]
        assert w <= r.width <= 1.4 * w + 2 and h <= r.height <= 1.4 * h + 2
        bx1, by1, bx2, by2 = r.boxes[0]  # the object inside the crop
        np.testing.assert_allclose((bx2 - bx1) * r.width, w, atol=1e-4)
        assert r.labels[0] == r.label


def test_coco_paper_protocol_gt_boxes_and_crops(tmp_path, coco):
    """GT crop boxes and COCO-Crop as the authors build them: mask area >= 1% of the image,
    crowds kept, 20% margin, crops resized to a shorter side of 256."""
    from PIL import Image

    root, facts = coco
    cfg = {
        "type": "coco",
        "root": str(root),
        "protocol": "paper",
        "crops": True,
        "val_fraction": 0.0,
    }
    df, out = run(tmp_path, cfg)
    sizes = facts["sizes"]

    def paper_kept(a):  # the literal rule: skip when area < 1% of the image
        w, h, _ = sizes[a["image_id"]]
        return not a["area"] < w * h * 0.01

    kept = {i for i, a in facts["anns"].items() if paper_kept(a)}
    assert kept == {11, 13, 21, 31}  # the crowd (13) is in, the tiny person and thin strip are out
    rows = df[~df.split.str.startswith("objcrop")].set_index("image_id")
    for iid, (w, h, _) in sizes.items():
        expected = []
        for a in (facts["anns"][i] for i in sorted(kept) if facts["anns"][i]["image_id"] == iid):
            x, y, bw, bh = a["bbox"]
            expected.append(
                [
                    max(0, x - 0.2 * bw) / w,
                    max(0, y - 0.2 * bh) / h,
                    min(w, x + 1.2 * bw) / w,
                    min(h, y + 1.2 * bh) / h,
                ]
            )
        got = [list(b) for b in rows.loc[str(iid)].gt_crop_boxes]
        np.testing.assert_allclose(
            np.array(got).reshape(-1, 4), np.array(expected).reshape(-1, 4), atol=1e-6
        )
    # the raw GT boxes for localisation are unchanged (non-crowd)
    assert len(rows.loc["1"].boxes) == 2 and len(rows.loc["3"].boxes) == 2
    # COCO-Crop: one crop per kept annotation, the crop box rounded, shorter side 256
    crops = df[df.split.str.startswith("objcrop")].set_index("image_id")
    assert set(crops.index) == {f"crop{i}" for i in kept}
    for cid, r in crops.iterrows():
        a = facts["anns"][int(cid[4:])]
        w, h, _ = sizes[a["image_id"]]
        x, y, bw, bh = a["bbox"]
        left, top = max(0, x - bw * 0.2), max(0, y - bh * 0.2)
        right, bottom = min(w, x + bw + bw * 0.2), min(h, y + bh + bh * 0.2)
        cw, ch = round(right) - round(left), round(bottom) - round(top)
        short, long = sorted((cw, ch))
        want = (256, int(256 * long / short)) if cw <= ch else (int(256 * long / short), 256)
        assert (r.width, r.height) == want and min(r.width, r.height) == 256
        with Image.open(r.abspath) as im:
            assert im.size == want
        assert r.label == index_of(out, a["category_id"]) and r.scene_id == a["image_id"]
    assert crops.loc["crop13"].split == "objcrop_train"
    # the oacl rule differs on both: box-area filter keeps the strip, crowds are dropped
    base = run(tmp_path, {"type": "coco", "root": str(root), "val_fraction": 0.0}, "oacl")[
        0
    ].set_index("image_id")
    assert len(base.loc["3"].gt_crop_boxes) == 2 and len(base.loc["1"].gt_crop_boxes) == 1
    with pytest.raises(ValueError, match="protocol must be one of"):
        prepare({"type": "coco", "root": str(root), "protocol": "authors"}, tmp_path / "o")


def index_of(out, coco_id):
    cats = json.loads((out / "coco_categories.json").read_text())
    return {c["coco_id"]: c["index"] for c in cats}[coco_id]


def test_coco_errors(tmp_path, coco):
    root, _ = coco
    with pytest.raises(FileNotFoundError, match="COCO root .* folder not found"):
        prepare({"type": "coco", "root": str(tmp_path / "nope")}, tmp_path / "o")
    bad = tmp_path / "bad"
    shutil.copytree(root, bad)
    (bad / "annotations/instances_train2017.json").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"expected file annotations/instances_train2017.json"
    ):
        prepare({"type": "coco", "root": str(bad)}, tmp_path / "o")
    shutil.copy(root / "annotations/instances_train2017.json", bad / "annotations")
    (bad / "train2017/000000000002.jpg").unlink()
    with pytest.raises(
        FileNotFoundError,
        match=r"1 image\(s\) listed .* missing from train2017/ \(e.g. 000000000002.jpg\)",
    ):
        prepare({"type": "coco", "root": str(bad)}, tmp_path / "o")
    (bad / "annotations/instances_val2017.json").write_text('{"images": []}')
    with pytest.raises(ValueError, match=r"lacks key\(s\) \['annotations', 'categories'\]"):
        prepare({"type": "coco", "root": str(bad), "splits": {"train2017": None}}, tmp_path / "o")
    with pytest.raises(ValueError, match="unknown key 'mask'"):
        prepare({"type": "coco", "root": str(root), "mask": True}, tmp_path / "o")


# --------------------------------------------------------------------------- ImageNet-9


def test_in9_variants_scenes_masks(tmp_path):
    root = tmp_path / "in9"
    facts = fx.make_in9(root)
    cfg = {"type": "in9", "root": str(root), "val_fraction": 0.0, **facts["cfg"]}
    df, out = run(tmp_path, cfg)
    train = df[df.split == "train"]
    assert len(train) == sum(len(v) for v in facts["train"].values())
    assert (train.variant == "original").all()
    assert sorted(train.label.unique()) == [0, 1]
    test = df[df.split == "test"]
    assert sorted(test.variant.unique()) == sorted(facts["variants"])
    assert len(test) == len(facts["variants"]) * sum(len(v) for v in facts["val"].values())
    # the test set comes from test_root, never from the training archive's uncleaned val
    assert test.abspath.map(lambda p: Path(p).is_relative_to(facts["test_root"].resolve())).all()
    assert not df.abspath.str.endswith("n02085620_99.JPEG").any()
    # one scene = one source image in every variant, mixed files (fg_<stem>_bg_...) included
    assert test.scene_id.nunique() == sum(len(v) for v in facts["val"].values())
    for _, group in test.groupby("scene_id"):
        assert sorted(group.variant) == sorted(facts["variants"]) and group.label.nunique() == 1
    scene_of = dict(zip(test.image_id, test.scene_id))
    dog = test[test.scene_id == scene_of["original/val/00_dog/n02085620_10.JPEG"]].set_index(
        "variant"
    )
    assert dog.loc["mixed_rand"].image_id.endswith("fg_n02085620_10_bg_n01530575_20.JPEG")
    assert dog.loc["original"].mask_path == dog.loc["mixed_rand"].mask_path != ""
    assert dog.loc["mixed_next"].mask_path == dog.loc["original"].mask_path
    assert dog.loc["only_bg_t"].mask_path == ""  # no foreground in background-only images
    np.testing.assert_array_equal(read_mask(dog.loc["original"].mask_abspath) > 0, facts["mask"])
    bird = test[test.scene_id == scene_of["original/val/01_bird/n01530575_20.JPEG"]]
    assert len(bird) == len(facts["variants"]) and (bird.mask_path == "").all()  # no fg_mask file


def test_in9_scene_stem():
    from oacl.data.readers.in9 import scene_stem

    assert scene_stem("fg_n02085620_10_bg_n01530575_20.JPEG") == "n02085620_10"
    assert scene_stem("n02085620_10.JPEG") == "n02085620_10"
    assert scene_stem("fg_mask.JPEG") == "fg_mask"  # not the release pattern: kept whole


def test_in9_test_root_and_count_warnings(tmp_path, caplog):
    root = tmp_path / "in9"
    facts = fx.make_in9(root)
    # without test_root the variants are read from root (here only the uncleaned original/val): warned
    with caplog.at_level("WARNING"):
        df, _ = run(tmp_path, {"type": "in9", "root": str(root)}, "legacy")
    assert "test_root not set" in caplog.text
    assert set(df.loc[df.split == "test", "variant"]) == {"original"}
    # a variant missing images of a class is named with the counts
    (facts["test_root"] / "mixed_rand/val/01_bird/fg_n01530575_20_bg_n02085620_10.JPEG").unlink()
    caplog.clear()
    with caplog.at_level("WARNING"):
        run(tmp_path, {"type": "in9", "root": str(root), **facts["cfg"]}, "short")
    assert "variant mixed_rand: per-class image counts differ" in caplog.text
    assert "'01_bird': (1, 0)" in caplog.text and "variant mixed_next" not in caplog.text


def test_in9_errors(tmp_path):
    root = tmp_path / "bg"
    facts = fx.make_in9(root)
    with pytest.raises(
        FileNotFoundError, match="ImageNet-9 test root .*: expected folder only_fg/val"
    ):
        prepare(
            {"type": "in9", "root": str(root), "variants": ["original", "only_fg"], **facts["cfg"]},
            tmp_path / "o",
        )
    with pytest.raises(FileNotFoundError, match="ImageNet-9 test root .* folder not found"):
        prepare(
            {"type": "in9", "root": str(root), "test_root": str(tmp_path / "nope")}, tmp_path / "o"
        )
    (root / "original/train/dogs").mkdir()
    with pytest.raises(ValueError, match="class folder 'dogs' is not named NN_class"):
        prepare({"type": "in9", "root": str(root)}, tmp_path / "o")
    shutil.rmtree(root / "original/train")
    with pytest.raises(FileNotFoundError, match="expected folder original/train"):
        prepare({"type": "in9", "root": str(root)}, tmp_path / "o")


def test_in9_with_shift_sets(tmp_path):
    root = tmp_path / "bg"
    facts = fx.make_in9(root)
    sk = fx.make_imagenet_shift(tmp_path / "sketch", "sketch")
    cfg = {
        "type": "in9",
        "root": str(root),
        **facts["cfg"],
        "shift": [
            {"root": str(tmp_path / "sketch"), "variant": "sketch", "mapping": str(sk["mapping"])}
        ],
    }
    df, _ = run(tmp_path, cfg)
    sketch = df[df.variant == "sketch"]
    assert len(sketch) == 4 and (sketch.split == "test").all()
    assert (df.loc[df.variant != "sketch", "subset"] == "").all()
    with pytest.raises(ValueError, match=r"in9.shift\[0\]: unknown key 'mappin'"):
        prepare({"type": "in9", "root": str(root), "shift": [{"mappin": "x"}]}, tmp_path / "o")


# --------------------------------------------------------------------------- ImageNet shifts


def test_imagenet_shift_sketch(tmp_path):
    facts = fx.make_imagenet_shift(tmp_path / "imagenet-sketch", "sketch")
    df, _ = run(
        tmp_path,
        {
            "type": "imagenet_shift",
            "root": str(tmp_path / "imagenet-sketch"),
            "mapping": str(facts["mapping"]),
        },
    )
    assert (df.variant == "sketch").all() and (df.split == "test").all()
    wn = df.abspath.map(lambda p: Path(p).parent.name)
    assert set(wn) == {w for w, c in facts["wnids"].items() if c}  # unmapped class skipped
    assert (df.label[wn == "n02085620"] == 0).all() and (df.label[wn == "n01530575"] == 1).all()
    assert (df.subset == "sketch").all() and (df.width == 16).all()


def test_imagenet_c_subsets_and_index_mapping(tmp_path):
    facts = fx.make_imagenet_shift(tmp_path / "imagenet-c", "corrupted")
    root = str(tmp_path / "imagenet-c")
    df, _ = run(
        tmp_path,
        {
            "type": "imagenet_shift",
            "root": root,
            "variant": "corrupted",
            "mapping": str(facts["mapping"]),
            "subsets": ["gaussian_noise/3"],
        },
    )
    assert set(df.subset) == {"gaussian_noise/3"} and len(df) == 4
    # an index-keyed JSON mapping (Background Challenge style) with an index -> wnid list
    (tmp_path / "order.txt").write_text(
        "n01530575 brambling\nn02085620 Chihuahua\nn03000134 chainlink\n"
    )
    (tmp_path / "in_to_in9.json").write_text(json.dumps({"0": 1, "1": 0, "2": -1}))
    cfg = {
        "type": "imagenet_shift",
        "root": root,
        "variant": "corrupted",
        "mapping": str(tmp_path / "in_to_in9.json"),
        "wnid_list": str(tmp_path / "order.txt"),
    }
    df2, _ = run(tmp_path, cfg, "o2")
    assert len(df2) == 3 * 4
    wn = df2.abspath.map(lambda p: Path(p).parent.name)
    assert (df2.label[wn == "n02085620"] == 0).all() and (df2.label[wn == "n01530575"] == 1).all()
    del cfg["wnid_list"]
    with pytest.raises(ValueError, match="keyed by ImageNet class index; set 'wnid_list'"):
        prepare(cfg, tmp_path / "o3")
    with pytest.raises(ValueError, match="'mapping' is required"):
        prepare({"type": "imagenet_shift", "root": root}, tmp_path / "o3")
    (tmp_path / "bad.tsv").write_text("n02085620\tgiraffe\n")
    with pytest.raises(ValueError, match="bad.tsv line 1: 'giraffe' is not an IN-9 class"):
        prepare(
            {"type": "imagenet_shift", "root": root, "mapping": str(tmp_path / "bad.tsv")},
            tmp_path / "o3",
        )


# --------------------------------------------------------------------------- CUB, Flowers


def test_cub(tmp_path):
    root = tmp_path / "CUB_200_2011"
    facts = fx.make_cub(root)
    df, _ = run(tmp_path, {"type": "cub", "root": str(root), "val_fraction": 0.0})
    rows = df.set_index("image_id")
    for iid, rel, cls, tr, (x, y, w, h), (W, H) in facts["items"]:
        r = rows.loc[str(iid)]
        assert r.label == cls - 1 and r.split == ("train" if tr else "test")
        assert (r.width, r.height) == (W, H)
        np.testing.assert_allclose(r.boxes[0], [x / W, y / H, (x + w) / W, (y + h) / H], rtol=1e-6)
        assert Path(r.mask_abspath) == (root / "segmentations" / rel).with_suffix(".png").resolve()
    # binarised masks: the soft one-annotator pixel goes away at t = 0.5
    df2, out = run(tmp_path, {"type": "cub", "root": str(root), "mask_threshold": 0.5}, "o2")
    m = read_mask(df2.set_index("image_id").loc["1"].mask_abspath)
    assert m[0, 0] == 0 and m[3:11, 2:12].min() == 255 and set(np.unique(m)) == {0, 255}


def test_cub_paper_protocol_redo_split(tmp_path):
    """The paper's localisation data: ReDO's split file and masks binarised at > 0.5."""
    root = tmp_path / "CUB_200_2011"
    facts = fx.make_cub(root)
    cfg = {
        "type": "cub",
        "root": str(root),
        "split_file": str(facts["split_file"]),
        "protocol": "paper",
    }
    df, out = run(tmp_path, cfg)
    rows = df.set_index("image_id")
    names = {0: "train", 1: "val", 2: "test"}
    assert {i: rows.loc[str(i)].split for i in facts["redo"]} == {
        i: names[v] for i, v in facts["redo"].items()
    }
    m = read_mask(rows.loc["1"].mask_abspath)
    assert Path(rows.loc["1"].mask_abspath).is_relative_to(out)
    # 1 or 2 of 5 annotators: background; 3 of 5: foreground (the soft PNG has all three > 0)
    assert (m[0, 0], m[0, 1], m[0, 2]) == (0, 0, 255) and m[3:11, 2:12].min() == 255
    # a relative split_file is read from root; a bad value is named
    (root / "redo.txt").write_text(facts["split_file"].read_text().replace("4 1", "4 3"))
    with pytest.raises(ValueError, match=r"redo.txt has split value\(s\) \['3'\]"):
        prepare({**cfg, "split_file": "redo.txt"}, tmp_path / "o2")
    (root / "redo.txt").write_text("1 0\n2 0\n3 1\n")
    with pytest.raises(ValueError, match="redo.txt has no entry for image id 4"):
        prepare({**cfg, "split_file": "redo.txt"}, tmp_path / "o3")
    with pytest.raises(ValueError, match="mask_threshold applies to protocol 'oacl'"):
        prepare({**cfg, "mask_threshold": 0.4}, tmp_path / "o4")


def test_cub_errors(tmp_path):
    root = tmp_path / "CUB"
    fx.make_cub(root)
    (root / "bounding_boxes.txt").write_text("1 2 3 10 8\n")
    with pytest.raises(ValueError, match="bounding_boxes.txt has no entry for image id 2"):
        prepare({"type": "cub", "root": str(root)}, tmp_path / "o")
    (root / "train_test_split.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"CUB root .*: expected file train_test_split.txt"):
        prepare({"type": "cub", "root": str(root)}, tmp_path / "o")


def test_flowers(tmp_path):
    facts = fx.make_flowers(tmp_path / "flowers")
    df, out = run(tmp_path, {"type": "flowers", "root": str(tmp_path / "flowers")})
    rows = df.set_index("image_id")
    for n, lab in enumerate(facts["labels"], 1):
        r = rows.loc[f"image_{n:05d}"]
        assert r.label == lab - 1 and r.split == facts["split"][n]
        m = read_mask(r.mask_abspath) > 0
        x0, y0, x1, y1 = facts["fg_boxes"][n]
        # the flower is foreground, the blue (JPEG-noisy) background is not
        assert m[y0 + 1 : y1 - 1, x0 + 1 : x1 - 1].all()
        outside = np.ones_like(m)
        outside[max(y0 - 2, 0) : y1 + 2, max(x0 - 2, 0) : x1 + 2] = False
        assert not m[outside].any()
        np.testing.assert_allclose(
            r.boxes[0], [x0 / 32, y0 / 24, x1 / 32, y1 / 24], atol=2.01 / 24
        )  # JPEG chroma bleed: +-2 px


def test_flowers_paper_protocol(tmp_path):
    """ReDO's split (train = tstid, test = trnid) and its exact background rule."""
    from PIL import Image

    root = tmp_path / "flowers"
    facts = fx.make_flowers(root)
    df, _ = run(tmp_path, {"type": "flowers", "root": str(root), "protocol": "paper"})
    rows = df.set_index("image_id")
    swap = {"train": "test", "test": "train", "val": "val"}
    changed = 0
    for n in range(1, len(facts["labels"]) + 1):
        r = rows.loc[f"image_{n:05d}"]
        assert r.split == swap[facts["split"][n]]
        seg = np.asarray(Image.open(root / "segmim" / f"segmim_{n:05d}.jpg"))
        # the literal rule: 1 - ((R == 0) + (G == 0) + (B == 254)) on the decoded file
        expected = 1 - ((seg[:, :, 0] == 0) + (seg[:, :, 1] == 0) + (seg[:, :, 2] == 254))
        m = read_mask(r.mask_abspath) > 0
        np.testing.assert_array_equal(m, expected.astype(bool))
        x0, y0, x1, y1 = facts["fg_boxes"][n]
        changed += int(m[y0:y1, x0:x1].sum() < (y1 - y0) * (x1 - x0))  # the R == 0 petal part
    assert (
        changed >= 1
    )  # the paper's rule differs from the tolerance rule (JPEG keeps R == 0 in some)
    with pytest.raises(ValueError, match="protocol must be one of"):
        prepare({"type": "flowers", "root": str(root), "protocol": "redo"}, tmp_path / "o")


def test_flowers_errors(tmp_path):
    import scipy.io

    root = tmp_path / "flowers"
    fx.make_flowers(root)
    scipy.io.savemat(root / "setid.mat", {"trnid": np.array([[1, 99]])})
    with pytest.raises(ValueError, match="has no variable 'valid'"):
        prepare({"type": "flowers", "root": str(root)}, tmp_path / "o")
    scipy.io.savemat(
        root / "setid.mat",
        {"trnid": np.array([[1, 99]]), "valid": np.array([[2]]), "tstid": np.array([[3]])},
    )
    with pytest.raises(ValueError, match="refers to image 99"):
        prepare({"type": "flowers", "root": str(root)}, tmp_path / "o")
    (root / "imagelabels.mat").unlink()
    with pytest.raises(FileNotFoundError, match="expected file imagelabels.mat"):
        prepare({"type": "flowers", "root": str(root)}, tmp_path / "o")


# --------------------------------------------------------------------------- transfer sets


@pytest.mark.parametrize("which", ["cifar10", "cifar100"])
def test_cifar(tmp_path, which):
    facts = fx.make_cifar(tmp_path / "data", which)
    df, out = run(
        tmp_path,
        {"type": "cifar", "root": str(tmp_path / "data"), "which": which, "val_fraction": 0.2},
    )
    n_train, n_test = len(facts["images"]["train"]), len(facts["images"]["test"])
    assert (df.split != "test").sum() == n_train and (df.split == "test").sum() == n_test
    assert (df.split == "val").sum() == round(0.2 * n_train)
    for part in ("train", "test"):
        rows = df[df.split == "test"] if part == "test" else df[df.split != "test"]
        rows = rows.sort_values("image_id")
        for (img, label), (_, r) in zip(facts["images"][part], rows.iterrows()):
            assert r.label == label and Path(r.abspath).is_relative_to(out)
            np.testing.assert_array_equal(read_rgb(r.abspath), img)  # lossless PNG
    names = json.loads((out / f"{which}_classes.json").read_text())
    assert len(names) == (10 if which == "cifar10" else 100)


def test_cifar_errors(tmp_path):
    fx.make_cifar(tmp_path / "data", "cifar10")
    (tmp_path / "data/cifar-10-batches-py/data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="expected file data_batch_3"):
        prepare({"type": "cifar", "root": str(tmp_path / "data")}, tmp_path / "o")
    with pytest.raises(ValueError, match="'which' must be one of"):
        prepare(
            {"type": "cifar", "root": str(tmp_path / "data"), "which": "cifar1000"}, tmp_path / "o"
        )


def test_food101(tmp_path):
    root = tmp_path / "food-101"
    facts = fx.make_food101(root)
    df, _ = run(tmp_path, {"type": "food101", "root": str(root), "val_fraction": 0.0})
    rows = df.set_index("image_id")
    assert sorted(rows.index) == sorted(facts["train"] + facts["test"])
    for e in facts["test"]:
        assert rows.loc[e].split == "test" and rows.loc[e].label == facts["classes"].index(
            e.split("/")[0]
        )
    (root / "meta/test.txt").write_text("pizza/1\n")
    with pytest.raises(ValueError, match="class 'pizza' not in meta/classes.txt"):
        prepare({"type": "food101", "root": str(root)}, tmp_path / "o")


def test_pets(tmp_path):
    root = tmp_path / "oxford-iiit-pet"
    facts = fx.make_pets(root)
    df, _ = run(tmp_path, {"type": "pets", "root": str(root), "val_fraction": 0.0})
    rows = df.set_index("image_id")
    for name, (cls, _, _, part) in facts["entries"].items():
        r = rows.loc[name]
        assert r.label == cls - 1 and r.split == ("train" if part == "trainval" else "test")
        m = read_mask(r.mask_abspath) > 0
        assert m.sum() == 12 * 15  # pet + boundary band
        np.testing.assert_allclose(r.boxes[0], [5 / 30, 4 / 24, 20 / 30, 16 / 24], rtol=1e-6)
    df2, _ = run(tmp_path, {"type": "pets", "root": str(root), "boundary_is_fg": False}, "o2")
    assert (read_mask(df2.mask_abspath.iloc[0]) > 0).sum() == 8 * 11
    (root / "annotations/test.txt").write_text("Abyssinian_101 x\n")
    with pytest.raises(ValueError, match=r"test.txt line 1: expected"):
        prepare({"type": "pets", "root": str(root)}, tmp_path / "o")


def test_unset_root_is_named(tmp_path):
    for kind in ("coco", "in9", "cub", "flowers", "cifar", "food101", "pets", "imagenet_shift"):
        with pytest.raises(ValueError, match="config key 'root' is not set"):
            prepare({"type": kind}, tmp_path / "o")
