"""Background-Challenge datasets composited from real cut-outs and photographs.

The Background Challenge (ImageNet-9) was built by pasting foreground cut-outs onto
backgrounds; this type does the same with any cut-outs and photos, so that a
background-bias benchmark (and the whole pipeline) runs on real pixels:

``foregrounds``
    ``<root>/<class>/**/<file>.png``: cut-outs with transparency (RGBA, LA, or a
    palette / colour key with a transparent index). Alpha is the ground truth: the
    cut-out is composited with its (soft) alpha and its mask is alpha > 0.5. ``classes``
    lists the class folders (relative paths, e.g. ``food/desserts``); empty: every
    top-level folder, sorted. Files without usable alpha (fully opaque, fully
    transparent, alpha box under ``min_object_size`` px, alpha filling its box or almost
    none of it, see ``fill_range``) or that cannot be decoded
    (broken, or over ``max_pixels``: openclipart has two 168-megapixel PNGs) are
    skipped and listed in ``<out>/skipped.json``; a class with fewer than
    ``min_per_class`` usable cut-outs is an error naming it.
``backgrounds``
    photographs. Each entry of ``bg_classes`` (relative to the root) is one background
    class: a photo file (instances are crops at a random position and scale) or a
    folder of photos (a random photo of the folder, then a random crop). Empty: every
    top-level file and folder of the root, sorted.

Object class k is paired with background class k mod n_bg (``classes.json`` holds the
map), in the order of the config's lists, or sorted when they are derived.

Instance split: each class's usable cut-outs are split (seeded, ``train_fraction``)
between the train split and the val/test splits, so that no test object is a drawing
seen in training.

Scenes are planned exactly as the procedural ``scenes`` type (oacl.data.scenes:
``single`` with ``bg_bias`` and every Background-Challenge variant of the
``variant_splits`` scenes; ``multi`` with 2-3 objects, ``pair_bias`` co-occurrence and
the objcrop_* splits) and written with its helpers, so the layout, the manifest schema
and the variant definitions are the same: mixed_* keep the composited foreground
pixels (mask = alpha > 0.5) of the original image exactly. Every random choice comes
from a generator seeded with (seed, kind, split, scene index, stream): the output is
byte-identical for the same inputs and parameters, whatever ``workers``.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from ..artifacts import write_manifest
from ..geometry import mask_box
from ..io import write_json
from .scenes.image_variants import background_challenge_variant
from .scenes.plan import (
    _BG,
    _GEOM,
    _KIND_CODE,
    _LOOK,
    BC_VARIANTS,
    MIN_VISIBLE,
    SPLITS,
    _rng,
    check_layout,
    check_placement,
    iou,
    paired_bg,
    partner,
)
from .scenes.write import chunk_jobs, make_folders, recorded_params, run_jobs, write_scene

PHOTO_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm"}

DEFAULTS = {
    "type": "composite",
    "kind": "single",  # single | multi
    "seed": 0,
    # the roots `oacl data fetch openclipart|wallpapers` fills (the workflow fetches them)
    "foregrounds": "results/sources/openclipart",
    "backgrounds": "results/sources/wallpapers",
    "classes": [],  # class folders under foregrounds (empty: every top-level folder)
    "bg_classes": [],  # photos or photo folders under backgrounds (empty: every entry)
    "image_size": 64,
    "n_train": 2000,
    "n_val": 500,
    "n_test": 500,
    "bg_bias": 0.9,  # single: P(background == paired class of the object)
    "pair_bias": 0.9,  # multi: P(second object == partner of the first)
    "objects_per_image": [2, 3],  # multi: inclusive range
    "object_scale": [0.5, 0.8],  # single: longer side of the object / image side
    "multi_object_scale": [0.3, 0.5],  # multi: the same
    "max_overlap": 0.1,  # multi: max IoU between object boxes
    # centred: every cut-out wholly inside the image; free: its centre uniform over the
    # frame, truncated (>= 60 % of its alpha > 0.5 pixels shown), as oacl.data.scenes
    "placement": "centred",
    "crop_size": 64,  # multi: object crops are resized to this side
    "crop_margin": 0.2,  # multi: margin around the box, fraction of box side
    "bg_crop_scale": [0.3, 0.7],  # background crop side / shorter side of the photo
    "train_fraction": 0.6,  # of each class's cut-outs for train; the rest for val/test
    "min_object_size": 16,  # px: cut-outs whose alpha > 0.5 box is smaller are skipped
    # usable alpha > 0.5 fraction of the object's box: below, line art; above, a picture
    # on an opaque rectangle (neither has an object outline to learn or to localise)
    "fill_range": [0.1, 0.98],
    "min_per_class": 4,  # fewer usable cut-outs in a class is an error
    "max_pixels": 40_000_000,  # larger files are skipped, not decoded (0: no limit)
    "variants": list(BC_VARIANTS),  # single: Background-Challenge variants to render
    "variant_splits": ["test"],  # single: splits whose scenes get the variants
    "workers": 2,  # processes; output does not depend on it
}

_SPLIT_STREAM = 7  # RNG stream of the instance split (distinct from the scene streams)


def check_params(p: dict) -> dict:
    """Validate merged parameters; raise ValueError naming the bad key."""
    if p["kind"] not in _KIND_CODE:
        raise ValueError(f"composite: kind must be one of {sorted(_KIND_CODE)}, got {p['kind']!r}")
    for key in ("foregrounds", "backgrounds"):
        if not p[key] or not Path(p[key]).expanduser().is_dir():
            raise FileNotFoundError(
                f"composite: {key} {p[key]!r} is not a directory: `oacl data fetch "
                f"openclipart|wallpapers DEST` gets the preset's sources, or see 'Bring your "
                f"own folders' in docs/datasets.md"
            )
    for key in ("bg_bias", "pair_bias", "max_overlap", "crop_margin"):
        if not 0.0 <= float(p[key]) <= 1.0:
            raise ValueError(f"composite: {key} must be in [0, 1], got {p[key]}")
    check_placement(p, "composite")
    if not 0.0 < float(p["train_fraction"]) < 1.0:
        raise ValueError(f"composite: train_fraction must be in (0, 1), got {p['train_fraction']}")
    lo, hi = p["objects_per_image"]
    if not 1 <= lo <= hi <= 4:
        raise ValueError(
            f"composite: objects_per_image must satisfy 1 <= lo <= hi <= 4, got {[lo, hi]}"
        )
    for key in ("object_scale", "multi_object_scale", "bg_crop_scale"):
        a, b = p[key]
        if not 0.05 <= a <= b <= 1.0:
            raise ValueError(f"composite: {key} must satisfy 0.05 <= lo <= hi <= 1, got {[a, b]}")
    if int(p["min_per_class"]) < 2:
        raise ValueError(
            "composite: min_per_class must be >= 2 (the instance split needs both sides)"
        )
    return check_layout(p, "composite", BC_VARIANTS)


# ----------------------------------------------------------------------------- inputs


def read_cutout(path, min_size: int, max_pixels: int = 0, fill_range=(0.0, 1.0)) -> tuple:
    """(RGBA uint8 cropped to the alpha > 0 box, "") or (None, why it is not usable)."""
    from PIL import Image

    try:
        with warnings.catch_warnings(), Image.open(path) as im:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # max_pixels decides
            w, h = im.size
            if max_pixels and w * h > max_pixels:  # checked on the header, before decoding
                return None, f"too large: {w}x{h} > max_pixels={max_pixels}"
            im.load()
            has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
            if not has_alpha:
                return None, f"opaque: no alpha channel (mode {im.mode})"
            a = np.asarray(im.convert("RGBA"), dtype=np.uint8)
    except Exception as exc:  # PIL raises many types for broken files
        return None, f"undecodable: {type(exc).__name__}: {exc}"
    alpha = a[..., 3]
    if (alpha == 255).all():
        return None, "opaque: alpha is 255 everywhere"
    solid = alpha >= 128  # alpha > 0.5
    if not solid.any():
        return None, "transparent: no pixel with alpha > 0.5"
    x0, y0, x1, y1 = mask_box(solid)
    if min(x1 - x0 + 1, y1 - y0 + 1) < min_size:
        return None, f"too small: alpha box {x1 - x0 + 1}x{y1 - y0 + 1} < {min_size} px"
    fill = float(solid[y0 : y1 + 1, x0 : x1 + 1].mean())
    if fill > fill_range[1]:  # a picture on an opaque rectangle: no object outline
        return None, f"opaque: alpha > 0.5 fills {fill:.0%} of its box"
    if fill < fill_range[0]:  # line art: an outline with a transparent inside
        return None, f"sparse: alpha > 0.5 fills {fill:.0%} of its box"
    x0, y0, x1, y1 = mask_box(alpha > 0)  # keep the soft edge
    return a[y0 : y1 + 1, x0 : x1 + 1], ""


def _premultiplied(rgba: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """(premultiplied RGB, alpha) in [0, 1] float32, longer side at most ``side`` px.

    Resampling premultiplied colour keeps the colour of fully transparent pixels
    (often black or white in clip art) out of the soft edge.
    """
    a = rgba[..., 3:].astype(np.float32) / 255.0
    rgb = rgba[..., :3].astype(np.float32) / 255.0 * a
    h, w = a.shape[:2]
    f = min(1.0, side / max(h, w))
    if f < 1.0:
        size = (max(1, round(w * f)), max(1, round(h * f)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        a = cv2.resize(a, size, interpolation=cv2.INTER_AREA)[..., None]
    return np.ascontiguousarray(rgb), np.ascontiguousarray(a[..., 0])


def _class_files(root: Path, classes: list[str]) -> dict[str, list[Path]]:
    if not classes:
        classes = sorted(
            d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
        )
    missing = [c for c in classes if not (root / c).is_dir()]
    if missing:
        raise FileNotFoundError(f"composite: class folder(s) {missing} not found under {root}")
    if len(classes) < 2:
        raise ValueError(f"composite: needs >= 2 object classes, found {classes} under {root}")
    return {
        c: sorted(f for f in (root / c).rglob("*") if f.is_file() and f.suffix.lower() == ".png")
        for c in classes
    }


def load_cutouts(p: dict, out: Path) -> tuple[list[str], list[list[dict]]]:
    """(class names, usable cut-outs per class); writes ``<out>/skipped.json``."""
    root = Path(p["foregrounds"]).expanduser().resolve()
    files = _class_files(root, list(p["classes"]))
    names = list(files)
    side = int(p["image_size"])  # objects are at most the image side: never upsampled
    cutouts, skipped, too_few = [], [], []
    for c in names:
        usable = []
        for f in files[c]:
            rgba, problem = read_cutout(f, int(p["min_object_size"]), int(p["max_pixels"]),
                                        p["fill_range"])  # fmt: skip
            rel = f.relative_to(root).as_posix()
            if problem:
                skipped.append({"path": str(f), "class": c, "reason": problem})
                continue
            rgb, alpha = _premultiplied(rgba, side)
            usable.append({"rgb": rgb, "alpha": alpha, "path": rel})
        if len(usable) < int(p["min_per_class"]):
            too_few.append(f"{c} ({len(usable)} usable of {len(files[c])} files)")
        cutouts.append(usable)
    counts: dict[str, int] = {}
    for s in skipped:
        kind = s["reason"].split(":")[0].replace(" ", "_")
        counts[kind] = counts.get(kind, 0) + 1
    n_files = sum(len(v) for v in files.values())
    write_json(out / "skipped.json", {"n_files": n_files, "n_usable": n_files - len(skipped),
                                      "n_skipped": len(skipped), "counts": counts,
                                      "skipped": skipped})  # fmt: skip
    if too_few:
        raise ValueError(
            f"composite: class(es) with fewer than min_per_class={p['min_per_class']} usable "
            f"cut-outs: {', '.join(too_few)} (skipped files: {out / 'skipped.json'})"
        )
    return names, cutouts


def _photo_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(
        f for f in path.rglob("*")
        if f.is_file() and f.suffix.lower() in PHOTO_EXTENSIONS and not f.name.startswith(".")
    )  # fmt: skip


def load_backgrounds(p: dict) -> tuple[list[str], list[str], list[list[np.ndarray]]]:
    """(class names, entries, photos per class as RGB uint8 with the shorter side at the
    size the largest crop needs, so crops are only ever downsampled)."""
    from ..io import read_rgb

    root = Path(p["backgrounds"]).expanduser().resolve()
    entries = list(p["bg_classes"]) or sorted(
        e.name for e in root.iterdir()
        if not e.name.startswith(".") and (e.is_dir() or e.suffix.lower() in PHOTO_EXTENSIONS)
    )  # fmt: skip
    if len(entries) < 2:
        raise ValueError(f"composite: needs >= 2 background classes, found {entries} in {root}")
    short = math.ceil(p["image_size"] / p["bg_crop_scale"][0])
    photos = []
    for e in entries:
        fs = _photo_files(root / e) if (root / e).exists() else []
        if not fs:
            raise FileNotFoundError(f"composite: background {e!r}: no photo at/under {root / e}")
        group = []
        for f in fs:
            img = read_rgb(f)
            h, w = img.shape[:2]
            f_ = short / min(h, w)
            if f_ < 1.0:
                img = cv2.resize(img, (max(1, round(w * f_)), max(1, round(h * f_))),
                                 interpolation=cv2.INTER_AREA)  # fmt: skip
            group.append(img)
        photos.append(group)
    names = [Path(e).parts[0] for e in entries]
    names = [Path(n).stem if (root / n).is_file() else n for n in names]
    if len(set(names)) < len(names):
        names = list(entries)
    return names, entries, photos


def instance_split(p: dict, n_per_class: list[int]) -> list[dict[str, list[int]]]:
    """Per class {"train": [...], "eval": [...]} cut-out indices: disjoint, seeded."""
    out = []
    for c, n in enumerate(n_per_class):
        perm = np.random.default_rng([p["seed"], _SPLIT_STREAM, c]).permutation(n)
        k = min(n - 1, max(1, round(p["train_fraction"] * n)))
        out.append(
            {"train": sorted(int(i) for i in perm[:k]), "eval": sorted(int(i) for i in perm[k:])}
        )
    return out


# ----------------------------------------------------------------------------- rendering

_ASSETS: dict = {}


def _init_assets(assets: dict) -> None:
    """Process-pool initializer: the decoded cut-outs and photos, once per process."""
    _ASSETS.clear()
    _ASSETS.update(assets)


def draw_background(bg: int, rng, s: int) -> np.ndarray:
    """A background instance of class ``bg``: a random crop (position, scale, mirror)."""
    group = _ASSETS["photos"][bg]
    photo = group[int(rng.integers(len(group)))]
    h, w = photo.shape[:2]
    lo, hi = _ASSETS["bg_crop_scale"]
    side = max(1, min(h, w, round(rng.uniform(lo, hi) * min(h, w))))
    y0, x0 = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
    crop = cv2.resize(photo[y0 : y0 + side, x0 : x0 + side], (s, s), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(crop[:, ::-1]) if rng.random() < 0.5 else crop


def _place(p, rng, cut: dict, s: int, scale, placed: list) -> dict:
    """Scale, mirror and position of a cut-out whose box (clipped to the image) overlaps
    earlier ones by at most max_overlap IoU (the best of 30 tries otherwise). ``origin``
    is the top-left pixel of the scaled cut-out: inside the image under ``centred``
    placement, anywhere with >= MIN_VISIBLE of its alpha > 0.5 pixels inside under ``free``."""
    free = p.get("placement", "centred") == "free"
    best = None
    for _ in range(30):
        obj = _free_pose(rng, cut, s, scale) if free else _centred_pose(rng, cut, s, scale)
        worst = max([iou(obj["box"], q["box"]) for q in placed], default=0.0)
        if worst <= p["max_overlap"]:
            return obj
        if best is None or worst < best[0]:
            best = (worst, obj)
    return best[1]


def _size(rng, cut: dict, s: int, scale) -> tuple[int, int]:
    h0, w0 = cut["alpha"].shape
    f = rng.uniform(*scale) * s / max(h0, w0)
    return min(s, max(1, round(w0 * f))), min(s, max(1, round(h0 * f)))


def _centred_pose(rng, cut: dict, s: int, scale) -> dict:
    w, h = _size(rng, cut, s, scale)
    x, y = int(rng.integers(s - w + 1)), int(rng.integers(s - h + 1))
    return {"box": [x, y, x + w - 1, y + h - 1], "origin": (x, y), "size": (w, h),
            "flip": bool(rng.random() < 0.5)}  # fmt: skip


def _free_pose(rng, cut: dict, s: int, scale) -> dict:
    for _ in range(100):
        w, h = _size(rng, cut, s, scale)
        cx, cy = rng.uniform(0, s), rng.uniform(0, s)
        flip = bool(rng.random() < 0.5)
        x, y = int(math.floor(cx - w / 2)), int(math.floor(cy - h / 2))
        solid = _solid(cv2.resize(cut["alpha"], (w, h), interpolation=cv2.INTER_AREA))
        if flip:
            solid = solid[:, ::-1]
        inside = solid[max(0, -y) : s - y, max(0, -x) : s - x]
        if inside.sum() >= MIN_VISIBLE * solid.sum():
            break
    else:  # pragma: no cover (never seen: a centred cut-out is wholly inside)
        x, y = (s - w) // 2, (s - h) // 2
    box = [max(0, x), max(0, y), min(s - 1, x + w - 1), min(s - 1, y + h - 1)]
    return {"box": box, "origin": (x, y), "size": (w, h), "flip": flip}


def _solid(a: np.ndarray) -> np.ndarray:
    """The mask of a scaled alpha: alpha > 0.5, or, for a thin drawing shrunk below half
    opacity, its most opaque pixels."""
    solid = a > 0.5
    return solid if solid.any() else a >= a.max()


def _render_scene(p: dict, sc: dict) -> dict:
    """Composite one scene: background crop, then each cut-out over it with its alpha
    (the part of it inside the image)."""
    s = p["image_size"]
    bg = draw_background(sc["bg"], _rng(p, sc["split"], sc["index"], _BG), s)
    geom = _rng(p, sc["split"], sc["index"], _GEOM)
    pick = _rng(p, sc["split"], sc["index"], _LOOK)
    pool = "train" if sc["split"] == "train" else "eval"
    scale = p["object_scale"] if p["kind"] == "single" else p["multi_object_scale"]
    canvas = bg.astype(np.float32) / 255.0
    union = np.zeros((s, s), bool)
    objs, paths = [], []
    for label in sc["labels"]:
        choices = _ASSETS["pools"][label][pool]
        cut = _ASSETS["cutouts"][label][choices[int(pick.integers(len(choices)))]]
        obj = _place(p, geom, cut, s, scale, objs)
        rgb = cv2.resize(cut["rgb"], obj["size"], interpolation=cv2.INTER_AREA)
        a = cv2.resize(cut["alpha"], obj["size"], interpolation=cv2.INTER_AREA)
        if obj["flip"]:
            rgb, a = rgb[:, ::-1], a[:, ::-1]
        solid = _solid(a)
        x0, y0, x1, y1 = obj["box"]  # the in-image part; cut-out pixel = image pixel - origin
        ox, oy = obj["origin"]
        inner = (slice(y0 - oy, y1 - oy + 1), slice(x0 - ox, x1 - ox + 1))
        rgb, a = rgb[inner], a[inner]
        region = canvas[y0 : y1 + 1, x0 : x1 + 1]
        canvas[y0 : y1 + 1, x0 : x1 + 1] = rgb + region * (1.0 - a[..., None])
        mask = np.zeros((s, s), bool)
        mask[y0 : y1 + 1, x0 : x1 + 1] = solid[inner]
        for prev in objs:  # later objects occlude earlier ones
            prev["visible"] &= ~mask
        obj.update(label=int(label), mask=mask, visible=mask.copy(), full_area=int(solid.sum()))
        union |= mask
        objs.append(obj)
        paths.append(cut["path"])
    image = (np.clip(canvas, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return {"bg": bg, "image": image, "mask": union, "objects": objs, "detail": ";".join(paths)}


def _render_chunk(args) -> list[dict]:
    """Render and write scenes[lo:hi] of one split; returns their manifest rows."""
    p, out, split_scenes, lo, hi = args
    s = p["image_size"]
    rows = []
    for sc in split_scenes[lo:hi]:
        scene = _render_scene(p, sc)
        draw = lambda label, rng: draw_background(label, rng, s)  # noqa: E731

        def variant(name, sc=sc, scene=scene):
            # called within this iteration (write_scene), so the current `draw` is meant
            return background_challenge_variant(p, sc, scene, name, split_scenes, draw)  # noqa: B023

        rows += write_scene(p, Path(out), sc, scene, variant)
    return rows


def generate(params: dict, out_dir, progress: bool = True) -> Path:
    """Build the dataset described by merged ``params`` into ``out_dir``; the manifest path."""
    p = check_params(dict(params))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    classes, cutouts = load_cutouts(p, out)
    bg_names, bg_entries, photos = load_backgrounds(p)
    p["n_classes"], p["n_bg_classes"] = len(classes), len(bg_names)
    pools = instance_split(p, [len(c) for c in cutouts])
    assets = {"cutouts": cutouts, "pools": pools, "photos": photos,
              "bg_crop_scale": tuple(p["bg_crop_scale"])}  # fmt: skip

    splits = [s for s in SPLITS if p[f"n_{s}"] > 0]
    make_folders(p, out, splits)
    jobs = chunk_jobs(p, out, splits)
    rows = run_jobs(_render_chunk, jobs, int(p["workers"]), f"composite[{p['kind']}]",
                           progress, _init_assets, (assets,))  # fmt: skip
    nb = len(bg_names)
    write_json(
        out / "classes.json",
        {
            "classes": classes,
            "bg_classes": bg_names,
            "bg_entries": bg_entries,
            "paired_bg": [paired_bg(c, nb) for c in range(len(classes))],
            "class_map": {c: bg_names[paired_bg(k, nb)] for k, c in enumerate(classes)},
            "partner": [partner(c, len(classes)) for c in range(len(classes))],
            "instances": {
                c: {
                    part: [cutouts[k][i]["path"] for i in pools[k][part]]
                    for part in ("train", "eval")
                }
                for k, c in enumerate(classes)
            },
            "params": recorded_params(p),
        },
    )
    manifest = out / "manifest.parquet"
    write_manifest(manifest, pd.DataFrame(rows))
    return manifest
