"""Side information per training image: absent is an error naming the shards, empty is
counted against pretrain.side_info_max_empty (oacl.train.sideinfo), and shards that
overlap are an error (oacl.artifacts.read_shards)."""

from __future__ import annotations

import numpy as np
import pytest

from oacl.artifacts import BOX_SCHEMA, MASK_SCHEMA, ArtifactError, read_shards, write_rows
from oacl.io import encode_png
from oacl.train import sideinfo

IDS = [f"im{i}" for i in range(20)]


def box_row(image_id, boxes=((0.1, 0.1, 0.5, 0.5),), bg_rect=(0.5, 0.5, 1.0, 1.0)):
    return dict(
        image_id=image_id,
        boxes=[list(b) for b in boxes],
        n_boxes=len(boxes),
        height=8,
        width=8,
        mask_png=b"",
        bg_rect=None if bg_rect is None else list(bg_rect),
        empty=not boxes,
        params="{}",
    )


def mask_row(image_id, value=200):
    m = np.zeros((8, 8), np.uint8)
    m[:4, :4] = value
    return dict(
        image_id=image_id,
        height=8,
        width=8,
        orig_height=8,
        orig_width=8,
        mask_png=encode_png(m),
        params="{}",
    )


def shards(rows_by_shard):
    return {name: {r["image_id"]: r for r in rows} for name, rows in rows_by_shard.items()}


HALVES = {"boxes_0.parquet": IDS[:10], "boxes_1.parquet": IDS[10:]}


def test_two_shards_cover_every_image_and_are_counted_per_shard():
    extra = [box_row("test/0")]  # a row of another split: read, not a training image
    box = shards(
        {
            k: [box_row(i) for i in v] + (extra if k.endswith("1.parquet") else [])
            for k, v in HALVES.items()
        }
    )
    cov = sideinfo.check("oa_crop_cam", IDS, box_shards=box)
    assert cov["needs"] == ["boxes"] and cov["images"] == 20
    assert cov["covered"] == {"boxes": 20} and cov["missing"] == {"boxes": 0}
    assert [(r["shard"], r["train_images"], r["rows"]) for r in cov["shards"]] == [
        ("boxes_0.parquet", 10, 10),
        ("boxes_1.parquet", 10, 11),
    ]
    assert cov["empty_images"] == 0


def test_an_image_in_no_shard_is_an_error_naming_the_shards_read():
    box = shards({"boxes_1.parquet": [box_row(i) for i in IDS[10:]]})
    with pytest.raises(sideinfo.SideInfoError) as exc:
        sideinfo.check("oa_crop_cam", IDS, box_shards=box)
    msg = str(exc.value)
    assert "10 of 20 training images have no boxes in any box shard" in msg
    assert "'im0'" in msg and "boxes_1.parquet (boxes): 10 of the 20 training images" in msg


def test_empty_side_information_is_counted_up_to_the_tolerance():
    rows = [box_row(i, boxes=() if i in ("im3", "im4") else ((0.1, 0.1, 0.5, 0.5),)) for i in IDS]
    box = shards({"boxes_0.parquet": rows})
    cov = sideinfo.check("oa_crop_cam", IDS, box_shards=box, max_empty=0.1)
    assert cov["empty"] == {"boxes": 2} and cov["empty_fraction"] == 0.1
    assert cov["shards"][0]["empty"] == {"boxes": 2, "bg_rect": 0}
    with pytest.raises(
        sideinfo.SideInfoError,
        match=r"2 of 20 training images \(10.0%\).*"
        r"side_info_max_empty = 0.05",
    ):
        sideinfo.check("oa_crop_cam", IDS, box_shards=box, max_empty=0.05)


def test_bg_mixup_needs_masks_and_background_rectangles():
    box_rows = [box_row(i, bg_rect=[0, 0, 0, 0] if i == "im1" else (0.5, 0.5, 1, 1)) for i in IDS]
    mask_rows = [mask_row(i, value=0 if i == "im2" else 200) for i in IDS]
    box = shards({"b0": box_rows[:10], "b1": box_rows[10:]})
    masks = shards({"m0": mask_rows[:10], "m1": mask_rows[10:]})
    cov = sideinfo.check("bg_mixup_cam", IDS, box_shards=box, mask_shards=masks, max_empty=0.2)
    assert cov["needs"] == ["mask", "bg_rect"]
    assert cov["empty"] == {"mask": 1, "bg_rect": 1} and cov["empty_images"] == 2
    assert [r["kind"] for r in cov["shards"]] == ["boxes", "boxes", "masks", "masks"]
    # a mask shard left out: its images have no mask
    with pytest.raises(sideinfo.SideInfoError, match=r"10 of 20 training images have no mask"):
        sideinfo.check(
            "bg_mixup_cam", IDS, box_shards=box, mask_shards={"m1": masks["m1"]}, max_empty=0.2
        )


def test_gt_variants_count_images_without_ground_truth():
    gt = {"source": "manifest.parquet", "boxes": [[[0, 0, 1, 1]]] * 20, "has_mask": [True] * 20}
    cov = sideinfo.check("oa_crop_gt", IDS, gt=gt)
    assert cov["source"] == "gt" and cov["shards"][0]["kind"] == "manifest"
    assert cov["covered"] == {"boxes": 20} and cov["empty"] == {"boxes": 0}
    no_masks = dict(gt, has_mask=[i % 2 == 0 for i in range(20)])
    with pytest.raises(sideinfo.SideInfoError, match=r"10 of 20 training images \(50.0%\)"):
        sideinfo.check("bg_hardmix_gt", IDS, gt=no_masks)
    assert sideinfo.check("bg_hardmix_gt", IDS, gt=no_masks, max_empty=0.5)["empty"] == {
        "mask": 10,
        "bg_rect": 10,
    }


@pytest.mark.parametrize("variant", ["baseline", "mixup", "cutmix"])
def test_variants_without_side_information(variant):
    assert sideinfo.needs(variant) == () and sideinfo.check(variant, IDS) is None


def test_overlapping_shards_are_an_error(tmp_path):
    a, b = tmp_path / "boxes_0.parquet", tmp_path / "boxes_1.parquet"
    write_rows(a, [box_row(i) for i in IDS[:12]], BOX_SCHEMA)
    write_rows(b, [box_row(i) for i in IDS[10:]], BOX_SCHEMA)
    with pytest.raises(
        ArtifactError, match=r"'im10' is in two box shards: .*boxes_0.* and .*boxes_1"
    ):
        read_shards([a, b], "boxes")
    with pytest.raises(ArtifactError, match="given twice"):
        read_shards([a, a], "boxes")
    m = tmp_path / "masks_0.parquet"
    write_rows(m, [mask_row("x"), mask_row("x")], MASK_SCHEMA)
    with pytest.raises(ArtifactError, match="duplicate image_id 'x'"):
        read_shards([m], "masks")
    write_rows(b, [box_row(i) for i in IDS[12:]], BOX_SCHEMA)
    got = read_shards([str(a), str(b)], "boxes")
    assert list(got) == [str(a), str(b)] and sorted(got[str(a)]) == sorted(IDS[:12])
