"""The authors' mask-mIoU protocol (``protocol: paper`` of oacl evaluate localization)
against a literal re-implementation of their procedure written with torchvision's
transforms: GT resized to 224 x 224 and > 0.5; prediction to 8 bits through
ToPILImage, 4-connected components of every non-zero pixel, the ones over 0.1 % kept
except the first; per-image IoU with NaN (both empty) -> 1."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from oacl import artifacts
from oacl.evaluate import localization as loc
from oacl.evaluate import protocols
from oacl.io import encode_png

S = 224


def reference_ious(gt_images, pred_masks):
    """Literal procedure: gt_images are PIL 'L' images at their own size, pred_masks a
    float tensor (N, 1, 224, 224) in [0, 1]. Returns the per-image IoU tensor."""
    import torch
    import torchvision.transforms as T

    target = T.Compose([T.Resize((S, S)), T.ToTensor()])
    gts = torch.stack([(target(g) > 0.5).float() for g in gt_images])
    cleaned = []
    for mask in pred_masks:
        arr = np.array(T.ToPILImage()(mask))
        _, comp, stats, _ = cv2.connectedComponentsWithStats(arr, connectivity=4)
        keep = (stats[:, -1] > S * S * 0.001).nonzero()[0][1:]
        out = torch.zeros(comp.shape)
        for k in keep:
            out[torch.from_numpy(comp == k)] = 1
        cleaned.append(out.view(1, S, S))
    preds = torch.stack(cleaned)
    g = (gts > 0.5).float().flatten(start_dim=1)
    p = (preds > 0.5).float().flatten(start_dim=1)
    ious = torch.min(g, p).sum(dim=1) / torch.max(g, p).sum(dim=1)
    ious[ious.isnan()] = 1
    return ious


def _cases():
    """(GT uint8 at the image size, CAM uint8 at 224, CRF 0/255 at 224) per image."""
    rng = np.random.default_rng(0)
    cases = {}
    # soft CUB-like GT (k/5 annotators), CAM with a faint halo (1..3 / 255) and speckles
    gt = np.zeros((90, 130), np.uint8)
    gt[20:70, 30:100] = 255
    gt[15:20, 30:100] = 102  # 2 of 5: background after > 0.5
    gt[70:75, 30:100] = 153  # 3 of 5: object
    cam = np.zeros((S, S), np.uint8)
    cam[50:180, 60:170] = rng.integers(100, 256, (130, 110))
    cam[40:50, 60:170] = 1  # faint halo: object under the paper's > 0 rule
    cam[5:10, 5:10] = 200  # 25 px speckle: dropped (<= 0.1 % = 50.2 px)
    cam[200:208, 200:207] = 90  # 56 px: kept
    crf = ((cam > 120) * 255).astype(np.uint8)
    cases["soft_gt"] = (gt, cam, crf)
    # both empty: counts 1
    cases["empty"] = (
        np.zeros((60, 40), np.uint8),
        np.zeros((S, S), np.uint8),
        np.zeros((S, S), np.uint8),
    )
    # empty GT, non-empty prediction: 0
    cam = np.zeros((S, S), np.uint8)
    cam[100:140, 100:140] = 3
    cases["false_pos"] = (np.zeros((50, 50), np.uint8), cam, cam * 85)
    # the whole image predicted: no background component, so the first kept component
    # (the object) is skipped and the prediction scores as empty
    gt = np.zeros((64, 48), np.uint8)
    gt[8:56, 6:42] = 255
    cases["full"] = (gt, np.full((S, S), 180, np.uint8), np.full((S, S), 255, np.uint8))
    # a 3 x 3 background hole (< 0.1 %): the same quirk
    hole = np.full((S, S), 255, np.uint8)
    hole[100:103, 100:103] = 0
    cases["hole"] = (gt, hole, hole)
    # random blobs with several components on a non-square GT
    blob = (cv2.GaussianBlur(rng.random((S, S)).astype(np.float32), (0, 0), 6) > 0.5).astype(
        np.uint8
    )
    cam = (blob * rng.integers(1, 256, (S, S))).astype(np.uint8)
    g = (cv2.resize(blob, (77, 55), interpolation=cv2.INTER_NEAREST) * 255).astype(np.uint8)
    cases["blobs"] = (g, cam, blob * 255)
    return cases


def _write(tmp_path, cases):
    from PIL import Image

    rows, mrows, brows = [], [], []
    (tmp_path / "gt").mkdir()
    for image_id, (gt, cam, crf) in cases.items():
        Image.fromarray(gt).save(tmp_path / "gt" / f"{image_id}.png")
        H, W = gt.shape
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
                "boxes": [],
                "box_labels": [],
                "mask_path": f"gt/{image_id}.png",
            }
        )
        mrows.append(
            {
                "image_id": image_id,
                "height": S,
                "width": S,
                "orig_height": H,
                "orig_width": W,
                "mask_png": encode_png(cam),
                "params": "{}",
            }
        )
        brows.append(
            {
                "image_id": image_id,
                "boxes": [],
                "n_boxes": 0,
                "height": S,
                "width": S,
                "mask_png": encode_png(crf),
                "bg_rect": [0, 0, 1, 1],
                "empty": False,
                "params": "{}",
            }
        )
    df = pd.DataFrame(rows)
    for c in ("width", "height", "label", "bg_label"):
        df[c] = df[c].astype("int32")
    artifacts.write_manifest(tmp_path / "manifest.parquet", df)
    artifacts.write_rows(tmp_path / "masks.parquet", mrows, artifacts.MASK_SCHEMA)
    artifacts.write_rows(tmp_path / "boxes.parquet", brows, artifacts.BOX_SCHEMA)
    return tmp_path / "manifest.parquet", tmp_path / "masks.parquet", tmp_path / "boxes.parquet"


def test_paper_protocol_matches_the_literal_procedure(tmp_path):
    import torch
    from PIL import Image

    cases = _cases()
    manifest, masks, boxes = _write(tmp_path, cases)
    res = loc.evaluate_localization(
        {"protocol": "paper", "maxbox_cam_step": 0.1, "references": []}, manifest, [masks], [boxes]
    )
    assert res["protocol"] == "paper"
    ids = sorted(cases)  # the evaluator's order
    gts = [Image.fromarray(cases[i][0], mode="L") for i in ids]
    for col, key in ((1, "mask_miou"), (2, "crf_mask_miou")):
        pred = torch.stack(
            [torch.from_numpy(cases[i][col].astype(np.float32) / 255.0)[None] for i in ids]
        )
        ref = reference_ious(gts, pred)
        by_id = dict(zip(ids, ref.tolist()))
        assert by_id["empty"] == 1.0 and by_id["false_pos"] == 0.0
        assert by_id["full"] == 0.0 and by_id["hole"] == 0.0  # the skipped-first-component quirk
        assert 0.3 < by_id["soft_gt"] < 1.0 and 0.0 < by_id["blobs"] < 1.0
        assert res["metrics"]["contracam"][key] == pytest.approx(float(ref.mean()), abs=1e-6), key
    c = res["metrics"]["contracam"]
    assert c["n_mask_images"] == len(cases)
    assert c["n_first_component_dropped"] == 2 and c["n_first_component_dropped_crf"] == 2
    assert "best_threshold_miou" not in c and "best_threshold" not in c
    assert "| mask mIoU (paper protocol) |" in res["table_md"]
    # the default protocol scores the same data differently, and says so
    default = loc.evaluate_localization(
        {"maxbox_cam_step": 0.1, "references": []}, manifest, [masks], [boxes]
    )
    assert default["protocol"] == "oacl" and "| mask mIoU @0.5 |" in default["table_md"]
    assert default["metrics"]["contracam"]["mask_miou"] != pytest.approx(c["mask_miou"], abs=1e-3)


def test_paper_steps():
    # 8-bit truncation: 1/255 survives, anything under it does not
    assert protocols.quantise(np.array([[0.0039, 1 / 255, 0.5, 1.0]], np.float32)).tolist() == [
        [0, 1, 127, 255]
    ]
    # component filter: > 0.1 % of the image, 4-connectivity (diagonal pixels are apart)
    m = np.zeros((100, 100), np.float32)  # 0.1 % = 10 px
    m[0:2, 0:5] = 0.2  # 10 px: dropped
    m[50:52, 50:56] = 0.2  # 12 px: kept
    for k in range(12):
        m[80 + k, 80 + k] = 1.0  # 12 diagonal single pixels: each dropped
    kept, skipped = protocols.paper_clean(m)
    assert kept.sum() == 12 and kept[50:52, 50:56].all() and not skipped
    # a non-square GT is scored at 224 x 224
    gt = np.zeros((30, 90), np.uint8)
    gt[:, :45] = 255
    g = protocols.paper_gt(gt)
    assert g.shape == (S, S) and g[:, :100].all() and not g[:, 124:].any()
    with pytest.raises(ValueError, match="protocol must be one of"):
        loc.evaluate_localization({"protocol": "authors"}, "m.parquet", [])
