"""One probe of ContraCAM localisation: generate scenes, pretrain, CAM, score.

    .venv/bin/python benchmarks/localization_probe.py --tag NAME \
        [--scenes JSON] [--pretrain JSON] [--cam JSON] [--kind single] [--out DIR]

Runs the real stage commands (``oacl data scenes``, ``oacl pretrain``, ``oacl cam``)
in ``--out/NAME`` and prints one line of JSON: final loss against chance (ln(K+1)),
kNN accuracy, and, on the test split, ContraCAM mask mIoU @0.5 and pixel AUC beside
the centred Gaussian and the colour-saliency reference (oacl.evaluate.references).
Used for the ablation table of docs/architecture.md ("Why ContraCAM finds objects").
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from oacl import artifacts
from oacl.evaluate import references as refs
from oacl.io import decode_png, read_mask


def sh(*cmd):
    subprocess.run([str(c) for c in cmd], check=True, stdout=subprocess.DEVNULL)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tag", required=True)
    ap.add_argument("--kind", default="single")
    ap.add_argument("--scenes", default="{}")
    ap.add_argument("--pretrain", default="{}")
    ap.add_argument("--cam", default="{}")
    ap.add_argument("--out", default="/tmp/oacl-probe")
    a = ap.parse_args(argv)
    out = Path(a.out) / a.tag
    out.mkdir(parents=True, exist_ok=True)
    oacl = Path(sys.executable).parent / "oacl"
    scenes = {"kind": a.kind, "seed": 1 if a.kind == "single" else 0, "n_val": 100,
              "variants": ["only_fg", "only_bg_t"], **json.loads(a.scenes)}
    t0 = time.perf_counter()
    data = out / "data"
    if not (data / "manifest.parquet").exists():
        sh(oacl, "data", "synth", "--cfg", json.dumps(scenes), "--out", data, "--quiet")
    pre = {"arch": "resnet18_small", "image_size": 64, "epochs": 6, "batch_size": 128,
           "base_lr": 0.12, "moco": {"queue_size": 1024, "momentum": 0.99}, "workers": 0,
           "gpus": 0, "knn_every": 0, **json.loads(a.pretrain)}
    model = out / "model.pt"
    t1 = time.perf_counter()
    if not model.exists():
        sh(oacl, "pretrain", "--cfg", json.dumps(pre), "--manifest", data / "manifest.parquet",
           "--out", model, "--device", "cpu", "--nproc", "1")
    t2 = time.perf_counter()
    cam = {"iters": 1 if a.kind == "single" else 10, "expand_res": 1 if a.kind == "single" else 2,
           "splits": ["test"], "batch_size": 64, **json.loads(a.cam)}
    masks = out / "masks.parquet"
    sh(oacl, "cam", "--cfg", json.dumps(cam), "--checkpoint", model, "--manifest",
       data / "manifest.parquet", "--device", "cpu", "--out", masks)
    t3 = time.perf_counter()
    man = artifacts.read_manifest(data / "manifest.parquet").set_index("image_id", drop=False)
    soft = artifacts.read_masks([masks])
    scores = {"contracam": [], "gaussian": [], "colour": []}
    for image_id, row in soft.items():
        m = man.loc[image_id]
        gt = read_mask(m["mask_abspath"]) > 0
        image = decode_png(open(m["abspath"], "rb").read())
        H, W = gt.shape
        maps = {"contracam": refs.resize(decode_png(row["mask_png"]).astype(np.float32) / 255, H, W),
                "gaussian": refs.centred_gaussian(H, W, 0.25),
                "colour": refs.colour_saliency(image)}
        for k, cam_map in maps.items():
            scores[k].append((refs.mask_iou(cam_map >= 0.5, gt), refs.pixel_auc(cam_map, gt)))
    metrics = [json.loads(line) for line in open(out / "metrics.jsonl")]
    last = [r for r in metrics if "loss" in r][-1]
    knn = [r["knn_acc"] for r in metrics if r.get("knn_acc") is not None]
    res = {"tag": a.tag, "loss": round(last["loss"], 3),
           "chance": round(math.log(1 + pre["moco"]["queue_size"]), 3),
           "knn": knn[-1] if knn else None,
           "time_s": {"data": round(t1 - t0), "pretrain": round(t2 - t1), "cam": round(t3 - t2)}}
    for k, v in scores.items():
        v = np.array(v)
        res[k] = {"miou": round(float(v[:, 0].mean()), 3), "auc": round(float(np.nanmean(v[:, 1])), 3)}
    print(json.dumps(res))
    with open(Path(a.out) / "probes.jsonl", "a") as f:
        f.write(json.dumps(res) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
