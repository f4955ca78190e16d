import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from oacl import artifacts
from oacl.cli import main
from oacl.io import encode_png
from oacl.refine.params import DEFAULTS
from oacl.refine.shard import refine_shard

H, W = 48, 80  # non-square originals


def _mask_row(image_id, soft, oh=H, ow=W):
    return {
        "image_id": image_id,
        "height": soft.shape[0],
        "width": soft.shape[1],
        "orig_height": oh,
        "orig_width": ow,
        "mask_png": encode_png((np.clip(soft, 0, 1) * 255).round().astype(np.uint8)),
        "params": "{}",
    }


def make_data(tmp_path: Path, bad: str | None = None):
    """Manifest of 4 images + mask shard: one object, two objects, empty, full."""
    from PIL import Image

    rng = np.random.default_rng(0)
    rows, mrows = [], []
    specs = {
        "one": [(10, 30, 20, 50)],
        "two": [(5, 20, 5, 25), (25, 45, 50, 75)],
        "empty": [],
        "full": [(0, H, 0, W)],
    }
    for image_id, objs in specs.items():
        img = np.full((H, W, 3), (40, 120, 40), np.uint8)
        img = np.clip(img + rng.normal(0, 5, img.shape), 0, 255).astype(np.uint8)
        soft = np.zeros((H // 2, W // 2), np.float32)  # CAM at half resolution
        for y1, y2, x1, x2 in objs:
            img[y1:y2, x1:x2] = (210, 50, 50)
            soft[y1 // 2 : y2 // 2, x1 // 2 : x2 // 2] = 0.9
        path = tmp_path / "img" / f"{image_id}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(path)
        rows.append(
            {
                "image_id": image_id,
                "path": f"img/{image_id}.png",
                "split": "train",
                "width": W,
                "height": H,
            }
        )
        mrows.append(_mask_row(image_id, soft))
    if bad == "missing":
        rows.append(
            {"image_id": "gone", "path": "img/gone.png", "split": "train", "width": W, "height": H}
        )
        mrows.append(_mask_row("gone", np.zeros((4, 4), np.float32)))
    if bad == "corrupt":
        (tmp_path / "img" / "broken.png").write_bytes(b"\x89PNG not really")
        rows.append(
            {
                "image_id": "broken",
                "path": "img/broken.png",
                "split": "train",
                "width": W,
                "height": H,
            }
        )
        mrows.append(_mask_row("broken", np.zeros((4, 4), np.float32)))
    df = pd.DataFrame(rows)
    df = df.reindex(columns=artifacts.MANIFEST_SCHEMA.names)
    df["variant"], df["scene_id"], df["label"], df["bg_label"] = "original", -1, -1, -1
    df["labels"] = df["box_labels"] = [[] for _ in range(len(df))]
    df["boxes"] = [[] for _ in range(len(df))]
    df["mask_path"] = ""
    df["width"], df["height"] = df["width"].astype("int32"), df["height"].astype("int32")
    for c in ("label", "bg_label"):
        df[c] = df[c].astype("int32")
    df["scene_id"] = df["scene_id"].astype("int64")
    artifacts.write_manifest(tmp_path / "manifest.parquet", df)
    artifacts.write_rows(tmp_path / "masks_0.parquet", mrows, artifacts.MASK_SCHEMA)
    return tmp_path / "manifest.parquet", tmp_path / "masks_0.parquet"


def _run(manifest, masks, out, cfg):
    return main(
        [
            "refine",
            "--cfg",
            json.dumps(cfg),
            "--manifest",
            str(manifest),
            "--masks",
            str(masks),
            "--out",
            str(out),
        ]
    )


@pytest.mark.parametrize("crf", [False, True])
def test_refine_cli_writes_box_shard(tmp_path, crf):
    manifest, masks = make_data(tmp_path)
    out = tmp_path / "boxes_0.parquet"
    assert (
        _run(manifest, masks, out, {"crf": crf, "work_size": 64, "margin": 0.0, "upsample": True})
        == 0
    )
    df = pd.read_parquet(out)  # plain pandas can read it
    assert list(df.columns) == artifacts.BOX_SCHEMA.names
    rows = {r["image_id"]: r for r in artifacts.read_boxes(out).values()}
    assert rows["one"]["n_boxes"] == 1
    assert rows["one"]["boxes"][0] == pytest.approx([20 / W, 10 / H, 50 / W, 30 / H], abs=0.03)
    assert rows["two"]["n_boxes"] == 2
    assert rows["empty"]["empty"] and rows["empty"]["n_boxes"] == 0
    assert rows["empty"]["bg_rect"] == [0.0, 0.0, 1.0, 1.0]
    assert rows["full"]["bg_rect"] == [0.0, 0.0, 0.0, 0.0] and not rows["full"]["empty"]
    # the background rectangle of "one" avoids the object
    x1, y1, x2, y2 = rows["one"]["bg_rect"]
    ox1, oy1, ox2, oy2 = 20 / W, 10 / H, 50 / W, 30 / H
    assert x2 <= ox1 + 1e-6 or x1 >= ox2 - 1e-6 or y2 <= oy1 + 1e-6 or y1 >= oy2 - 1e-6
    # stored mask is at the working resolution (shorter side upscaled to 64), params recorded
    assert (rows["one"]["height"], rows["one"]["width"]) == (64, 107)
    rec = json.loads(rows["one"]["params"])
    assert rec["crf"] is crf and rec["work_size"] == 64 and set(rec) == set(DEFAULTS)


def test_refine_is_deterministic(tmp_path):
    manifest, masks = make_data(tmp_path)
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    refine_shard({"work_size": 48}, manifest, masks, a)
    refine_shard({"work_size": 48}, manifest, masks, b)
    assert a.read_bytes() == b.read_bytes()


def test_small_images_stay_at_their_size_unless_upsampled(tmp_path):
    manifest, masks = make_data(tmp_path)  # 48 x 80 images
    sizes = {}
    for up in (False, True):
        out = tmp_path / f"{up}.parquet"
        refine_shard(
            {"work_size": 224, "upsample": up, "margin": 0.0}, manifest, masks, out, progress=False
        )
        one = next(r for r in artifacts.read_boxes(out).values() if r["image_id"] == "one")
        sizes[up] = (one["height"], one["width"])
        assert one["boxes"][0] == pytest.approx([20 / W, 10 / H, 50 / W, 30 / H], abs=0.03)
    assert sizes == {False: (48, 80), True: (224, 373)}


@pytest.mark.parametrize("bad", ["missing", "corrupt"])
def test_bad_image_fails_clearly_and_leaves_no_output(tmp_path, bad, capsys):
    manifest, masks = make_data(tmp_path, bad=bad)
    out = tmp_path / "out" / "boxes_0.parquet"
    assert _run(manifest, masks, out, {"crf": False}) == 2
    err = capsys.readouterr().err
    assert ("gone.png" in err) if bad == "missing" else ("broken.png" in err)
    assert not out.exists()
    assert not list(out.parent.glob("*")) if out.parent.exists() else True
    # skip_bad counts and skips instead
    counts = refine_shard({"crf": False, "skip_bad": True}, manifest, masks, out)
    assert counts["skipped"] == 1 and counts["images"] == 4 and out.exists()


def test_unknown_key_and_unknown_image(tmp_path, capsys):
    manifest, masks = make_data(tmp_path)
    assert _run(manifest, masks, tmp_path / "o.parquet", {"crf_typo": 1}) == 2
    assert "crf_typo" in capsys.readouterr().err
    artifacts.write_rows(
        tmp_path / "m.parquet", [_mask_row("nope", np.zeros((4, 4)))], artifacts.MASK_SCHEMA
    )
    assert _run(manifest, tmp_path / "m.parquet", tmp_path / "o.parquet", {}) == 2
    assert "nope" in capsys.readouterr().err


@pytest.mark.parametrize(
    "cfg, key",
    [
        ({"margin": -0.1}, "margin"),
        ({"min_box_area": 2}, "min_box_area"),
        ({"work_size": 4}, "work_size"),
        ({"crf_params": {"iterations": 0}}, "crf_params.iterations"),
    ],
)
def test_out_of_range_parameters_are_named(tmp_path, capsys, cfg, key):
    manifest, masks = make_data(tmp_path)
    assert _run(manifest, masks, tmp_path / "o.parquet", cfg) == 2
    assert f"refine: {key} must be" in capsys.readouterr().err
    assert not (tmp_path / "o.parquet").exists()
