"""Writing scene datasets: image and mask files, manifest rows, the process pool and
``generate``; shared with the composite type (oacl.data.composite)."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from ...artifacts import write_manifest
from ...geometry import crop_window, mask_box
from ...io import encode_png, write_json
from ...progress import progress as progress_bar
from .plan import SPLITS, check_params, paired_bg, partner, plan_split
from .render import BACKGROUNDS, SHAPES
from .scene import render_scene, scene_variant


def _write(path: Path, data: bytes) -> None:
    """Write via a temporary name + rename (no fsync: the manifest, written last and
    fsynced, is what marks the dataset complete)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _row(image_id: str, path: str, variant: str, **fields) -> dict:
    """A manifest row; ``fields`` gives the remaining MANIFEST_SCHEMA columns + extras."""
    row = {"image_id": image_id, "path": path, "variant": variant, "bg_source": -1, "detail": ""}
    row.update(fields)
    row["boxes"] = [[float(v) for v in b] for b in row["boxes"]]
    for key in ("labels", "box_labels"):
        row[key] = [int(c) for c in row[key]]
    return row


def _render_chunk(args) -> list[dict]:
    """Render and write scenes[lo:hi] of one split; returns their manifest rows."""
    p, out, split_scenes, lo, hi = args
    rows = []
    for sc in split_scenes[lo:hi]:
        scene = render_scene(p, sc)
        variant = lambda v: scene_variant(p, sc, scene, v, split_scenes)  # noqa: E731,B023
        rows += write_scene(p, Path(out), sc, scene, variant)
    return rows


def write_scene(p: dict, out: Path, sc: dict, scene: dict, render_variant) -> list[dict]:
    """Write one rendered scene (image, mask, its variants, its object crops); its rows.

    Shared by the datasets that render scenes (scenes, composite): ``scene`` has
    ``image``, ``mask`` (foreground union) and ``objects`` (each with ``label`` and
    ``visible``), optionally ``detail`` for the original row; ``render_variant(name)``
    returns (image, bg_label, bg_source, detail, has_object).
    """
    s = p["image_size"]
    rows = []
    split, name = sc["split"], f"{sc['index']:06d}"
    mask_rel = f"masks/{split}/{name}.png"
    _write(out / mask_rel, encode_png(scene["mask"].astype(np.uint8) * 255))
    boxes, box_labels, areas = [], [], []
    for obj in scene["objects"]:
        b = mask_box(obj["visible"], normalised=True)
        if b is not None:  # fully occluded objects have no box
            boxes.append(b)
            box_labels.append(obj["label"])
            areas.append(int(obj["visible"].sum()))
    # multi: the image-level label is the class of the largest visible object
    label = sc["label"] if p["kind"] == "single" else box_labels[int(np.argmax(areas))]
    base = dict(split=split, scene_id=sc["scene_id"], width=s, height=s, label=label,
                labels=sc["labels"], bg_label=sc["bg"], boxes=boxes, box_labels=box_labels,
                mask_path=mask_rel)  # fmt: skip
    rel = f"images/{split}/original/{name}.png"
    _write(out / rel, encode_png(scene["image"]))
    rows.append(_row(f"{split}/original/{name}", rel, "original", **base,
                     detail=scene.get("detail", "")))  # fmt: skip
    for v in p["variants"] if "variant_plan" in sc else []:
        img, bg_label, source, detail, has_obj = render_variant(v)
        vrel = f"images/{split}/{v}/{name}.png"
        _write(out / vrel, encode_png(img))
        row = {**base, "bg_label": bg_label, "bg_source": source, "detail": detail}
        if not has_obj:  # only_bg_*: no object left in the image
            row.update(boxes=[], box_labels=[], mask_path="masks/empty.png")
        rows.append(_row(f"{split}/{v}/{name}", vrel, v, **row))
    if p["kind"] == "multi":
        rows += _write_crops(p, out, sc, scene)
    return rows


def _write_crops(p: dict, out: Path, sc: dict, scene: dict) -> list[dict]:
    """COCO-Crop analogue: every visible object cropped with a margin, resized to crop_size."""
    s, cs, split = p["image_size"], p["crop_size"], f"objcrop_{sc['split']}"
    rows = []
    for k, obj in enumerate(scene["objects"]):
        b = mask_box(obj["visible"])
        if b is None:
            continue
        x0, y0, x1, y1 = b
        cx0, cy0, cx1, cy1 = crop_window((x0, y0, x1 + 1, y1 + 1), p["crop_margin"], s, s)
        crop = scene["image"][cy0:cy1, cx0:cx1]
        crop = cv2.resize(crop, (cs, cs), interpolation=cv2.INTER_LINEAR)
        m = obj["visible"][cy0:cy1, cx0:cx1].astype(np.uint8) * 255
        m = cv2.resize(m, (cs, cs), interpolation=cv2.INTER_NEAREST)
        name = f"{sc['index']:06d}_{k}"  # k: the object's index in the parent's `labels`
        rel, mrel = f"images/{split}/original/{name}.png", f"masks/{split}/{name}.png"
        _write(out / rel, encode_png(crop))
        _write(out / mrel, encode_png(m))
        cb = mask_box(m > 0, normalised=True)
        boxes = [cb] if cb is not None else []
        c = obj["label"]
        rows.append(
            _row(f"{split}/original/{name}", rel, "original", split=split,
                 scene_id=sc["scene_id"], width=cs, height=cs, label=c, labels=[c],
                 bg_label=sc["bg"], boxes=boxes, box_labels=[c] * len(boxes), mask_path=mrel)
        )  # fmt: skip
    return rows


def recorded_params(p: dict) -> dict:
    """The parameters classes.json records: all but ``workers`` (no effect on the output)
    and a default ``placement`` (so a dataset generated before the key existed keeps its
    bytes)."""
    return {
        k: v for k, v in p.items() if k != "workers" and not (k == "placement" and v == "centred")
    }


def make_folders(p: dict, out: Path, splits: list[str]) -> None:
    """Create the output folders of a scene-rendering dataset and ``masks/empty.png``."""
    folders = {f"masks/{s}" for s in splits} | {f"images/{s}/original" for s in splits}
    if p["kind"] == "single":
        folders |= {
            f"images/{s}/{v}" for s in p["variant_splits"] if s in splits for v in p["variants"]
        }
    else:
        folders |= {
            f"{d}/objcrop_{s}" + ("/original" if d == "images" else "")
            for s in splits
            for d in ("images", "masks")
        }
    for f in sorted(folders):
        (out / f).mkdir(parents=True, exist_ok=True)
    _write(out / "masks/empty.png", encode_png(np.zeros((p["image_size"],) * 2, np.uint8)))


def chunk_jobs(p: dict, out: Path, splits: list[str], step: int = 50) -> list[tuple]:
    """(p, out, split_scenes, lo, hi) render jobs over the planned scenes of ``splits``."""
    jobs = []
    for split in splits:
        scenes = plan_split(p, split)
        jobs += [
            (p, str(out), scenes, lo, min(lo + step, len(scenes)))
            for lo in range(0, len(scenes), step)
        ]
    return jobs


def run_jobs(fn, jobs: list, workers: int, desc: str, progress: bool,
             initializer=None, initargs=()) -> list[dict]:  # fmt: skip
    """Concatenated rows of ``fn(job)`` in job order, in a process pool when workers > 1.

    ``initializer(*initargs)`` runs once in each process (and here when serial): the
    way to hand large read-only inputs to workers without pickling them per job.
    """
    rows: list[dict] = []
    bar = progress_bar(total=len(jobs), desc=desc, unit="chunk", disable=not progress)
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(workers, initializer=initializer, initargs=initargs) as pool:
            for chunk_rows in pool.map(fn, jobs):  # map keeps the job order
                rows += chunk_rows
                bar.update()
    else:
        if initializer is not None:
            initializer(*initargs)
        for job in jobs:
            rows += fn(job)
            bar.update()
    bar.close()
    return rows


def generate(params: dict, out_dir, progress: bool = True) -> Path:
    """Generate the dataset described by merged ``params`` into ``out_dir``.

    Returns the path of the written ``manifest.parquet``.
    """
    p = check_params(dict(params))
    out = Path(out_dir)
    splits = [s for s in SPLITS if p[f"n_{s}"] > 0]
    make_folders(p, out, splits)
    jobs = chunk_jobs(p, out, splits)
    rows = run_jobs(_render_chunk, jobs, p["workers"], f"scenes[{p['kind']}]", progress)

    write_json(
        out / "classes.json",
        {
            "classes": SHAPES[: p["n_classes"]],
            "bg_classes": BACKGROUNDS[: p["n_bg_classes"]],
            "paired_bg": [paired_bg(c, p["n_bg_classes"]) for c in range(p["n_classes"])],
            "partner": [partner(c, p["n_classes"]) for c in range(p["n_classes"])],
            "params": recorded_params(p),
        },
    )
    manifest = out / "manifest.parquet"
    write_manifest(manifest, pd.DataFrame(rows))
    return manifest
