import argparse
import json
import re

import numpy as np
import pandas as pd
import pytest

from oacl import artifacts
from oacl.evaluate import loc_metrics as lm
from oacl.evaluate import localization as loc
from oacl.evaluate import references as refs
from oacl.evaluate.cli import register
from oacl.io import encode_png


def test_mask_iou_cases():
    gt = np.zeros((10, 10), bool)
    gt[:, :4] = True
    assert refs.mask_iou(gt, gt) == 1.0
    assert refs.mask_iou(np.zeros_like(gt), np.zeros_like(gt)) == 1.0  # empty vs empty
    assert refs.mask_iou(np.zeros_like(gt), gt) == 0.0
    half = np.zeros_like(gt)
    half[:, :2] = True  # half of the GT
    assert refs.mask_iou(half, gt) == pytest.approx(0.5)
    shifted = np.zeros_like(gt)
    shifted[:, 2:6] = True  # half overlap, same size: 2 / 6
    assert refs.mask_iou(shifted, gt) == pytest.approx(1 / 3)


def test_box_metrics_cases():
    gt = [[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]]
    assert lm.box_miou(gt, gt) == pytest.approx(1.0)
    assert lm.box_miou(gt, []) == 0.0
    assert lm.box_miou([], gt) is None
    # one GT found exactly, the other with a half-width box
    assert lm.box_miou(gt, [[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 0.75, 1.0]]) == pytest.approx(0.75)
    assert lm.box_union_iou(gt, [[0.0, 0.0, 0.5, 0.5]], 20, 20) == pytest.approx(0.5)
    assert lm.box_iou_matrix([[0, 0, 2, 1]], [[1, 0, 3, 1]])[0, 0] == pytest.approx(1 / 3)


def test_maxboxacc_v2_known_values():
    h = w = 40
    thr = np.arange(0, 1, 0.01)
    cam = np.zeros((h, w), np.float32)
    cam[10:30, 10:30] = 1.0
    perfect = lm.maxbox_best_ious(cam, [[0.25, 0.25, 0.75, 0.75]], thr)
    assert perfect.max() == pytest.approx(1.0)
    # the CAM box covers 0.4 IoU of the GT box: passes 30 %, fails 50 % and 70 %
    gt = [[0.25, 0.25, 0.75, 1.0]]  # 20 x 30 px, CAM box 20 x 20 inside it -> 400/600
    ious = lm.maxbox_best_ious(cam, gt, thr)
    assert ious.max() == pytest.approx(2 / 3)
    res = lm.maxboxacc(np.stack([perfect, ious]), thr, [30, 50, 70])
    assert res["maxboxacc"] == {"30": 1.0, "50": 1.0, "70": 0.5}
    assert res["maxboxacc_v2"] == pytest.approx(2.5 / 3)


def test_centred_gaussian():
    g = refs.centred_gaussian(31, 41, 0.25)
    assert g.shape == (31, 41) and g.max() == pytest.approx(1.0, abs=1e-3)
    assert np.unravel_index(g.argmax(), g.shape) == (15, 20)


def _dataset(tmp_path, cases=None):
    """Three 40x60 images: perfect CAM, empty GT + empty CAM, half-overlap CAM
    (or ``cases``: image_id -> (GT mask uint8, CAM float, GT boxes))."""
    from PIL import Image

    H, W = 40, 60
    rows, mrows, brows = [], [], []
    if cases is None:
        cases = {}
        gt = np.zeros((H, W), np.uint8)
        gt[10:30, 20:40] = 255
        cases["perfect"] = (gt, gt.astype(np.float32) / 255, [[20 / W, 10 / H, 40 / W, 30 / H]])
        cases["empty"] = (np.zeros((H, W), np.uint8), np.zeros((H, W), np.float32), [])
        half = np.zeros((H, W), np.float32)
        half[10:30, 30:50] = 1.0  # shifted by half the width: IoU 1/3
        cases["half"] = (gt, half, [[20 / W, 10 / H, 40 / W, 30 / H]])
    (tmp_path / "m").mkdir()
    for image_id, (g, cam, boxes) in cases.items():
        Image.fromarray(g).save(tmp_path / "m" / f"{image_id}.png")
        # the photo: a red object (where the GT is) on a grey frame
        rgb = np.full((H, W, 3), 128, np.uint8)
        rgb[g > 0] = (220, 30, 30)
        Image.fromarray(rgb).save(tmp_path / f"{image_id}.jpg", quality=95)
        rows.append(
            {
                "image_id": image_id,
                "path": f"{image_id}.jpg",
                "split": "test",
                "variant": "original",
                "scene_id": -1,
                "width": W,
                "height": H,
                "label": 0,
                "labels": [0],
                "bg_label": -1,
                "boxes": boxes,
                "box_labels": [0] * len(boxes),
                "mask_path": f"m/{image_id}.png",
            }
        )
        # CAM stored at half resolution as the ContraCAM shards do
        small = cam[::2, ::2]
        mrows.append(
            {
                "image_id": image_id,
                "height": H // 2,
                "width": W // 2,
                "orig_height": H,
                "orig_width": W,
                "mask_png": encode_png((small * 255).astype(np.uint8)),
                "params": "{}",
            }
        )
        brows.append(
            {
                "image_id": image_id,
                "boxes": boxes,
                "n_boxes": len(boxes),
                "height": H,
                "width": W,
                "mask_png": encode_png((cam > 0.5).astype(np.uint8) * 255),
                "bg_rect": [0, 0, 1, 1],
                "empty": False,
                "params": "{}",
            }
        )
    df = pd.DataFrame(rows)
    for c in ("width", "height", "label", "bg_label"):
        df[c] = df[c].astype("int32")
    artifacts.write_manifest(tmp_path / "manifest.parquet", df)
    artifacts.write_rows(tmp_path / "masks_0.parquet", mrows, artifacts.MASK_SCHEMA)
    artifacts.write_rows(tmp_path / "boxes_0.parquet", brows, artifacts.BOX_SCHEMA)
    return tmp_path / "manifest.parquet", tmp_path / "masks_0.parquet", tmp_path / "boxes_0.parquet"


def test_evaluate_end_to_end_known_values(tmp_path):
    manifest, masks, boxes = _dataset(tmp_path)
    res = loc.evaluate_localization({"maxbox_cam_step": 0.05}, manifest, [masks], [boxes])
    c = res["metrics"]["contracam"]
    assert res["n_images"] == 3
    assert c["mask_miou"] == pytest.approx((1 + 1 + 1 / 3) / 3, abs=0.02)
    assert c["crf_mask_miou"] == pytest.approx((1 + 1 + 1 / 3) / 3, abs=0.02)
    assert c["box_miou"] == pytest.approx(1.0)  # box shards carry the exact GT boxes
    assert c["n_box_images"] == 2  # "empty" has no GT box
    assert c["best_threshold_miou"] >= c["mask_miou"] - 1e-9
    # MaxBoxAcc: perfect image passes every delta, half image has IoU 1/3 -> passes 30 only
    assert c["maxboxacc"]["30"] == pytest.approx(1.0)
    assert c["maxboxacc"]["50"] == pytest.approx(0.5)
    assert "gaussian" in res["metrics"] and "mask_miou" in res["metrics"]["gaussian"]
    assert "| mask mIoU @0.5 |" in res["table_md"]
    # map-level scores: perfect map AUC 1; the shifted map scores half the object (200
    # of 400 px) and 200 of 2000 background px: AUC = .5*.9 + .5*.5*.1 + .5*.5*.9 = 0.7;
    # the empty image has no AUC
    assert c["pixel_auc"] == pytest.approx((1 + 0.7) / 2, abs=0.02)
    assert c["pointing"] == pytest.approx(1.0)  # both maxima (first max pixel) fall inside
    assert c["gt_area"] == pytest.approx((400 / 2400 * 2) / 3)
    # the colour reference finds the red object exactly, also after the CRF, and
    # ContraCAM (one image off by half) is reported below it
    col = res["metrics"]["colour"]
    assert col["mask_miou"] == pytest.approx(1.0) and col["crf_mask_miou"] > 0.9
    assert res["trivial_best"]["mask_miou"]["reference"] == "colour"
    assert "mask_miou" in res["below_trivial"] and "crf_mask_miou" in res["below_trivial"]


def test_boxes_of_binarised_maps_follow_the_refine_parameters(tmp_path):
    """box_miou_nocrf draws boxes by the refine stage's rules and parameters (the
    workflow passes its `refine` section), so changing refine.margin changes it too."""
    manifest, masks, boxes = _dataset(tmp_path)
    cfg = {"maxbox_cam_step": 0.1, "references": []}
    tight = loc.evaluate_localization(
        {**cfg, "refine": {"margin": 0.0}}, manifest, [masks], [boxes]
    )
    # perfect CAM: its box is the GT box; half CAM: a box of IoU 1/3 with the GT box
    assert tight["metrics"]["contracam"]["box_miou_nocrf"] == pytest.approx((1 + 1 / 3) / 2)
    default = loc.evaluate_localization(cfg, manifest, [masks], [boxes])["metrics"]["contracam"]
    assert default["box_miou_nocrf"] < tight["metrics"]["contracam"]["box_miou_nocrf"]
    assert default["box_miou"] == tight["metrics"]["contracam"]["box_miou"]  # box shards: as stored
    with pytest.raises(ValueError, match="margin"):  # no second copy of the box rules
        loc.evaluate_localization({"margin": 0.0}, manifest, [masks], [boxes])


@pytest.mark.parametrize("tracks", [True, False])
def test_cam_mean_reference_exposes_a_positional_map(tmp_path, tracks):
    """A CAM that is the same blob whatever the image ties with its own mean map (and is
    reported below it); a CAM that follows the object beats it."""
    H, W = 40, 60
    blob = np.zeros((H, W), np.float32)
    blob[12:28, 18:42] = 1.0
    cases = {}
    for k, (y, x) in enumerate([(2, 2), (2, 38), (18, 2), (18, 38)]):  # one object per corner
        gt = np.zeros((H, W), np.uint8)
        gt[y : y + 20, x : x + 20] = 255
        cam = gt.astype(np.float32) / 255 if tracks else blob
        cases[f"img{k}"] = (gt, cam, [[x / W, y / H, (x + 20) / W, (y + 20) / H]])
    manifest, masks, boxes = _dataset(tmp_path, cases)
    cfg = {"maxbox_cam_step": 0.1, "references": ["cam_mean"]}
    res = loc.evaluate_localization(cfg, manifest, [masks], [boxes])
    c, mean = res["metrics"]["contracam"], res["metrics"]["cam_mean"]
    if tracks:
        assert c["pixel_auc"] == pytest.approx(1.0) and mean["pixel_auc"] < 0.9
        assert "pixel_auc" not in res["below_trivial"]
    else:  # equal up to the resampling of the stored half-resolution maps
        assert c["pixel_auc"] == pytest.approx(mean["pixel_auc"], abs=0.02)
        assert c["mask_miou"] == pytest.approx(mean["mask_miou"], abs=0.02)


def test_mean_soft_map_is_normalised():
    a, b = np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8)
    a[:4], b[:2] = 100, 200
    masks = {"a": {"mask_png": encode_png(a)}, "b": {"mask_png": encode_png(b)}}
    m = refs.mean_soft_map(masks, ["a", "b"])
    assert m.shape == (refs.MEAN_GRID, refs.MEAN_GRID)
    assert m.max() == pytest.approx(1.0) and m.min() == pytest.approx(0.0)
    assert m[0, 0] > m[refs.MEAN_GRID * 3 // 8 - 1, 0] > m[-1, 0]  # rows 0-1 in both, 2-3 in a


def test_register_cli(tmp_path, capsys):
    manifest, masks, boxes = _dataset(tmp_path)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="cmd"))  # `oacl evaluate ...`
    out = tmp_path / "loc.json"
    args = parser.parse_args(
        [
            "evaluate",
            "localization",
            "--cfg",
            '{"maxbox_cam_step": 0.1}',
            "--manifest",
            str(manifest),
            "--masks",
            str(masks),
            "--boxes",
            str(boxes),
            "--out",
            str(out),
        ]
    )
    assert args.func(args) == 0
    res = json.loads(out.read_text())
    assert res["params"]["maxbox_cam_step"] == 0.1 and res["n_images"] == 3
    for name in ("contracam", "gaussian", "colour", "cam_mean"):  # every map, in the JSON
        for key in ("pixel_auc", "auc_rot180", "shuffled_auc", "content_auc", "maxboxacc_v2"):
            assert key in res["metrics"][name], (name, key)
        assert len(res["metrics"][name]["content_auc_ci95"]) == 2
    printed = capsys.readouterr().out
    assert "MaxBoxAccV2" in printed and "content AUC [95 % CI]" in printed
    bad = parser.parse_args(
        [
            "evaluate",
            "localization",
            "--cfg",
            '{"nope": 1}',
            "--manifest",
            str(manifest),
            "--masks",
            str(masks),
            "--out",
            str(out),
        ]
    )
    with pytest.raises(ValueError, match="nope"):
        bad.func(bad)


def _corner_cases(cam_of):
    """Six 40x60 images, one 12x12 object each at a different, non-overlapping place;
    ``cam_of(gt)`` gives each image's map."""
    H, W = 40, 60
    cases = {}
    for k, (y, x) in enumerate([(2, 2), (2, 24), (2, 46), (26, 2), (26, 24), (26, 46)]):
        gt = np.zeros((H, W), np.uint8)
        gt[y : y + 12, x : x + 12] = 255
        cases[f"img{k}"] = (gt, cam_of(gt), [[x / W, y / H, (x + 12) / W, (y + 12) / H]])
    return cases


def test_content_auc_separates_per_image_maps_from_image_blind_ones(tmp_path):
    """A map equal to its own image's GT mask carries ~0.5 AUC of per-image content; the
    centred Gaussian and a constant map (ignoring the image) carry none."""
    flat = np.full((40, 60), 0.3, np.float32)
    manifest, masks, boxes = _dataset(tmp_path, _corner_cases(lambda gt: gt / 255.0))
    cfg = {"maxbox_cam_step": 0.1, "references": ["gaussian", "cam_mean"]}
    res = loc.evaluate_localization(cfg, manifest, [masks], [boxes])
    for name, m in res["metrics"].items():  # every map scored gets the new keys
        for key in ("auc_rot180", "shuffled_auc", "content_auc", "content_auc_ci95"):
            assert key in m, (name, key)
        lo, hi = m["content_auc_ci95"]
        assert lo <= m["content_auc"] <= hi
        assert m["content_auc"] == pytest.approx(m["pixel_auc"] - m["shuffled_auc"], abs=1e-9)
    c, g = res["metrics"]["contracam"], res["metrics"]["gaussian"]
    assert c["pixel_auc"] == pytest.approx(1.0)
    assert c["content_auc"] == pytest.approx(0.5, abs=0.06) and c["content_auc_ci95"][0] > 0.4
    assert c["auc_rot180"] < 0.6  # turned, the map points at another place
    assert abs(g["content_auc"]) < 0.05  # the same map on every image: no content
    assert g["content_auc_ci95"][0] <= 0 <= g["content_auc_ci95"][1]
    assert g["auc_rot180"] == pytest.approx(g["pixel_auc"])  # symmetric map
    assert "| content AUC [95 % CI] |" in res["table_md"]
    assert re.search(
        r"\| content AUC \[95 % CI\] \| 0\.\d{3} \[0\.\d{3}, 0\.\d{3}\] \|", res["table_md"]
    )
    # a constant map: AUC 0.5 on its own image and on every other one
    const = tmp_path / "const"
    const.mkdir()
    manifest, masks, boxes = _dataset(const, _corner_cases(lambda gt: flat))
    m = loc.evaluate_localization({**cfg, "references": []}, manifest, [masks], [boxes])
    k = m["metrics"]["contracam"]
    assert k["content_auc"] == pytest.approx(0.0) and k["content_auc_ci95"] == [0.0, 0.0]


def test_content_scores_leave_the_other_metrics_unchanged(tmp_path):
    """The content keys are added beside the existing metrics, which keep their values."""
    manifest, masks, boxes = _dataset(tmp_path)
    res = loc.evaluate_localization({"maxbox_cam_step": 0.05}, manifest, [masks], [boxes])
    c = res["metrics"]["contracam"]
    assert c["pixel_auc"] == pytest.approx((1 + 0.7) / 2, abs=0.02)
    # the "perfect" and "half" images share one GT: each map's shuffled AUC is its own AUC
    assert c["content_auc"] == pytest.approx(0.0, abs=1e-9)
