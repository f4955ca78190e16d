"""One probe of ContraCAM localisation: generate scenes (or take a dataset), pretrain, CAM, score.

    .venv/bin/python benchmarks/localization_probe.py --tag NAME \
        [--scenes JSON | --manifest results/data/<ds>/manifest.parquet] \
        [--pretrain JSON] [--cam JSON] [--kind single] [--out DIR] [--gallery PNG]
        [--device cpu|cuda|auto]

Runs the real stage commands (``oacl data synth`` unless ``--manifest`` names an
existing dataset, e.g. the composite photo benchmark; ``oacl pretrain``; ``oacl cam``)
in ``--out/NAME`` and prints one line of JSON: final loss against chance (ln(K+1)),
kNN accuracy, and, on the test split, ContraCAM mask mIoU @0.5 and pixel AUC beside
the centred Gaussian, the colour-saliency reference (oacl.evaluate.references) and
``cam_mean``, the average of the probe's own maps (its positional prior: a map whose
AUC does not exceed it says nothing about the individual image).
``shuffled_auc`` scores each map against 10 other test images' masks (what placement
alone earns) and ``content_auc`` (AUC minus it, mean with a 95 % bootstrap interval over
images) is the map's per-image content. ``auc_rot180`` is the AUC of the same maps turned by 180 degrees: a map that marks the
visible background away from the object (a background-reliant model) scores higher
turned than upright. ``--gallery`` writes image | GT mask | CAM overlay rows.
Used for the ablation table of docs/architecture.md ("ContraCAM at laptop scale").
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
if str(SRC) not in sys.path:  # runs from a checkout that is not pip-installed (GPU machine)
    sys.path.insert(0, str(SRC))

from oacl import artifacts  # noqa: E402
from oacl.evaluate import references as refs  # noqa: E402
from oacl.geometry import decode_mask, resize  # noqa: E402
from oacl.io import decode_png, read_mask  # noqa: E402

# the stage commands, run as `python -m oacl.cli` with this checkout's src first on the
# path: no installed `oacl` script is needed (and an installed older copy is not used)
OACL = [sys.executable, "-m", "oacl.cli"]


def sh(*cmd):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    subprocess.run([str(c) for c in cmd], check=True, stdout=subprocess.DEVNULL, env=env)


def gallery_row(image: np.ndarray, gt: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """image | GT mask | CAM (jet) over the image, side by side, uint8 RGB."""
    if image.ndim == 2:
        image = np.stack([image] * 3, -1)
    heat = cv2.applyColorMap((np.clip(cam, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    over = (0.5 * image + 0.5 * heat[:, :, ::-1]).astype(np.uint8)
    return np.concatenate([image[:, :, :3], np.stack([gt.astype(np.uint8) * 255] * 3, -1), over], 1)


def per_image(auc: np.ndarray, area: np.ndarray) -> dict:
    """How ContraCAM's per-image AUC is spread: the shares of images it finds (AUC > 0.8)
    and misses (< 0.5), and its mean AUC in each quartile of GT object area."""
    ok = ~np.isnan(auc)
    auc, area = auc[ok], area[ok]
    if not len(auc):  # no test image has object pixels
        return {"share_auc_above_0.8": None, "share_auc_below_0.5": None,
                "auc_by_area_quartile": [None] * 4}  # fmt: skip
    edges = np.quantile(area, [0, 0.25, 0.5, 0.75, 1])
    quartile = np.clip(np.searchsorted(edges, area, side="right") - 1, 0, 3)
    return {
        "share_auc_above_0.8": round(float(np.mean(auc > 0.8)), 3),
        "share_auc_below_0.5": round(float(np.mean(auc < 0.5)), 3),
        "auc_by_area_quartile": [
            round(float(auc[quartile == q].mean()), 3) if (quartile == q).any() else None
            for q in range(4)
        ],
    }


QUICK_SCENES = {"n_train": 48, "n_val": 16, "n_test": 16, "image_size": 32, "crop_size": 16}
QUICK_PRETRAIN = {
    "epochs": 1,
    "batch_size": 16,
    "image_size": 32,
    "moco": {"queue_size": 32},
    "workers": 0,
}


def _suffixed(path: str | None, tag: str) -> str | None:
    if not path:
        return None
    p = Path(path)
    return str(p.with_name(f"{p.stem}_{tag}{p.suffix}"))


def sweep(a) -> int:
    """One probe per smallest crop scale, all on the scenes the first one generates."""
    manifest = a.manifest
    for c in (float(v) for v in a.min_crops.split(",")):
        tag = f"c{c:g}"
        pre = json.loads(a.pretrain)
        pre["augment"] = {**pre.get("augment", {}), "scale": [c, 1.0]}
        argv = ["--tag", f"{a.tag}_{tag}", "--kind", a.kind, "--scenes", a.scenes,
                "--pretrain", json.dumps(pre), "--cam", a.cam, "--out", a.out,
                "--device", a.device, "--split", a.split]  # fmt: skip
        for flag, value in (("--manifest", manifest), ("--json", _suffixed(a.json, tag)),
                            ("--gallery", _suffixed(a.gallery, tag))):  # fmt: skip
            if value:
                argv += [flag, value]
        main(argv)
        manifest = manifest or str(Path(a.out) / f"{a.tag}_{tag}" / "data" / "manifest.parquet")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tag", required=True)
    ap.add_argument("--kind", default="single")
    ap.add_argument("--scenes", default="{}")
    ap.add_argument("--pretrain", default="{}")
    ap.add_argument("--cam", default="{}")
    ap.add_argument("--manifest", default=None, help="an existing dataset instead of --scenes")
    ap.add_argument("--out", default="/tmp/oacl-probe")
    ap.add_argument("--gallery", default=None, help="PNG: the first 8 test images")
    ap.add_argument("--json", default=None, help="also write the result line to this file")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto (pretrain and cam)")
    ap.add_argument(
        "--split",
        default="test",
        choices=["val", "test"],
        help="the split scored: val to choose a recipe, test once for the final numbers",
    )
    ap.add_argument(
        "--min-crops",
        default=None,
        help="comma-separated smallest crop scales: one probe each on the same scenes "
        "(tags, --json and --gallery get the suffix _c<scale>)",
    )
    ap.add_argument(
        "--quick", action="store_true", help="tiny scenes and 1 epoch on the CPU (tests the path)"
    )
    a = ap.parse_args(argv)
    if a.quick:  # the same code paths at a size the test suite affords
        a.device = "cpu"
        a.scenes = json.dumps({**json.loads(a.scenes), **QUICK_SCENES})
        a.pretrain = json.dumps({**json.loads(a.pretrain), **QUICK_PRETRAIN})
    if a.min_crops:
        return sweep(a)
    out = Path(a.out) / a.tag
    out.mkdir(parents=True, exist_ok=True)
    scenes = {
        "kind": a.kind,
        "seed": 1 if a.kind == "single" else 0,
        "n_val": 500 if a.split == "val" else 100,
        "variants": ["only_fg", "only_bg_t"],
        **json.loads(a.scenes),
    }
    t0 = time.perf_counter()
    data = Path(a.manifest).parent if a.manifest else out / "data"
    if not (data / "manifest.parquet").exists():
        if a.manifest:
            raise SystemExit(f"--manifest: {a.manifest} does not exist")
        sh(*OACL, "data", "synth", "--cfg", json.dumps(scenes), "--out", data, "--quiet")
    pre = {
        "arch": "resnet18_small",
        "image_size": 64,
        "epochs": 6,
        "batch_size": 128,
        "base_lr": 0.12,
        "moco": {"queue_size": 1024, "momentum": 0.99},
        "workers": 0,
        "gpus": 0,
        "knn_every": 0,
        **json.loads(a.pretrain),
    }
    model = out / "model.pt"
    t1 = time.perf_counter()
    if not model.exists():
        sh(
            *OACL,
            "pretrain",
            "--cfg",
            json.dumps(pre),
            "--manifest",
            data / "manifest.parquet",
            "--out",
            model,
            "--device",
            a.device,
            "--nproc",
            "1",
        )
    t2 = time.perf_counter()
    cam = {
        "iters": 1 if a.kind == "single" else 10,
        "expand_res": 1 if a.kind == "single" else 2,
        "splits": [a.split],
        "batch_size": 64,
        **json.loads(a.cam),
    }
    masks = out / "masks.parquet"
    sh(
        *OACL,
        "cam",
        "--cfg",
        json.dumps(cam),
        "--checkpoint",
        model,
        "--manifest",
        data / "manifest.parquet",
        "--device",
        a.device,
        "--out",
        masks,
    )
    t3 = time.perf_counter()
    man = artifacts.read_manifest(data / "manifest.parquet").set_index("image_id", drop=False)
    soft = artifacts.read_masks([masks])
    scores = {"contracam": [], "gaussian": [], "colour": [], "cam_mean": []}
    mean_map = refs.mean_soft_map(soft, list(soft))  # the CAM's positional prior
    rows, areas, gts, all_maps = [], [], [], {k: [] for k in scores}
    for image_id, row in soft.items():
        m = man.loc[image_id]
        gt = read_mask(m["mask_abspath"]) > 0
        areas.append(gt.mean())
        image = decode_png(open(m["abspath"], "rb").read())
        H, W = gt.shape
        maps = {
            "contracam": resize(decode_mask(row["mask_png"]), (H, W)),
            "gaussian": refs.centred_gaussian(H, W, 0.25),
            "colour": refs.colour_saliency(image),
            "cam_mean": resize(mean_map, (H, W)),
        }
        gts.append(gt)
        for k, cam_map in maps.items():
            auc_rot = refs.pixel_auc(np.ascontiguousarray(cam_map[::-1, ::-1]), gt)
            auc = refs.pixel_auc(cam_map, gt)
            scores[k].append(
                (
                    refs.mask_iou(cam_map >= 0.5, gt),
                    np.nan if auc is None else auc,
                    np.nan if auc_rot is None else auc_rot,
                )
            )
            all_maps[k].append(cam_map)
        if a.gallery and len(rows) < 8:
            rows.append(gallery_row(image, gt, maps["contracam"]))
    if rows:
        cv2.imwrite(a.gallery, cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))
    metrics = [json.loads(line) for line in open(out / "metrics.jsonl")]
    last = [r for r in metrics if "loss" in r][-1]
    knn = [r["knn_acc"] for r in metrics if r.get("knn_acc") is not None]
    res = {
        "tag": a.tag,
        "split": a.split,
        "loss": round(last["loss"], 3),
        "chance": round(math.log(1 + pre["moco"]["queue_size"]), 3),
        "knn": knn[-1] if knn else None,
        "time_s": {"data": round(t1 - t0), "pretrain": round(t2 - t1), "cam": round(t3 - t2)},
    }
    for k, v in scores.items():
        v = np.array(v, np.float64)
        # content: the map against its own image's mask minus against 10 other images'
        shuf = np.array(
            [refs.shuffled_auc(m, gts, i, k=10) for i, m in enumerate(all_maps[k])], np.float64
        )
        mean, lo, hi = refs.bootstrap_ci(v[:, 1] - shuf)
        res[k] = {
            "miou": round(float(v[:, 0].mean()), 3),
            "auc": round(float(np.nanmean(v[:, 1])), 3),
            "auc_rot180": round(float(np.nanmean(v[:, 2])), 3),
            "shuffled_auc": round(float(np.nanmean(shuf)), 3),
            "content_auc": None if mean is None else round(mean, 3),
            "content_auc_ci95": None if mean is None else [round(lo, 3), round(hi, 3)],
        }
    res["per_image"] = per_image(np.array(scores["contracam"])[:, 1], np.array(areas))
    print(json.dumps(res))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    with open(Path(a.out) / "probes.jsonl", "a") as f:
        f.write(json.dumps(res) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
