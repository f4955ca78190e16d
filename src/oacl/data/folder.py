"""Index a folder of images, ``root/<split>/<class>/<image>``, into a manifest.

Optional ground truth:
- masks:  ``root/masks/<split>/<class>/<image stem>.png`` (any non-zero pixel = foreground);
- boxes:  ``root/boxes.parquet`` with a ``boxes`` column (list of [x1, y1, x2, y2]) keyed by
  ``image_id`` (``<split>/<class>/<file name>``) or ``path`` (relative to root), optionally
  ``box_labels``; or a per-image JSON ``<file name>.json`` / ``<stem>.json`` beside the
  image with ``{"boxes": [...], "box_labels": [...]}``. Boxes are taken as normalised
  when every coordinate of the image's boxes is <= 1, else as pixels (then normalised).

Background-Challenge variants (``variants:``): a mapping variant -> folder of
``<class>/<image>``, or variant -> ``{images: folder, masks: folder}`` with masks
``<masks>/<class>/<image stem>.png``; relative folders are taken under ``root``, and a
folder ``variants`` names (or one holding it) is never a training split. An image of a
variant with ``masks`` but no mask is a bad input (kind ``missing_mask``). Their
images become rows of split ``variant_split`` (default ``test``) with ``variant`` set
(``original`` for the unaltered test images), ``image_id`` ``<split>/<variant>/<class>/<file>``,
and one ``scene_id`` per (class, file stem) shared across variants, so no symlinks into
the ImageNet-9 layout are needed. ``root`` then holds the training splits only.
Images stay where they are: ``path`` is absolute (or relative to the manifest folder with
``relative_paths: true``). Every image is decoded once with ``oacl.io.read_rgb`` so that
grayscale / RGBA / CMYK / 16-bit files are accepted (conversion happens again at read
time) while undecodable, truncated and tiny (< ``min_size`` px) files are found now.
Links that cannot be followed (dangling or looping, for split/class folders and image
files) and class folders without an image file are bad inputs too. Bad inputs make the
command fail with a list of them, unless ``skip_bad: true``; the skips are then
recorded (with a ``kind`` and counted per kind) in ``<out>/skipped.json``. Class labels are integers in sorted
class-name order; ``<out>/classes.json`` holds ``{"classes": [names...]}``.
"""

from __future__ import annotations

import errno
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from ..artifacts import write_manifest
from ..io import ImageError, read_mask, read_rgb, write_json
from ..progress import progress as progress_bar

IMAGE_EXTENSIONS = [
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
]

DEFAULTS = {
    "type": "folder",
    "root": "",  # folder holding <split>/<class>/<image>
    "min_size": 8,  # images with a side below this many pixels are bad
    "skip_bad": False,  # skip (and record) bad images instead of failing
    "relative_paths": False,  # store paths relative to the manifest folder
    "splits": [],  # only these split folders (empty: every folder except masks/)
    "extensions": IMAGE_EXTENSIONS,
    "workers": 2,  # processes used to decode images
    "variants": {},  # variant -> folder | {images, masks}: test-time variants (see above)
    "variant_split": "test",  # split of the variant rows
}


def _broken_link(p: Path) -> tuple[str, str]:
    """(reason, kind) when ``p`` is a symlink that cannot be followed, else ("", "")."""
    if not p.is_symlink():
        return "", ""
    try:
        os.stat(p)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"symlink loop (links to {os.readlink(p)})", "symlink_loop"
        return f"broken link: target {os.readlink(p)} does not exist", "broken_link"
    return "", ""


def _variant_items(
    root: Path, params: dict, bad_entries: list
) -> list[tuple[str, str, Path, str, str]]:
    """(split, class, path, variant, mask path or "") of every image of ``variants``;
    unreadable entries are appended to ``bad_entries``."""
    found = []
    for variant, spec in sorted(params["variants"].items()):
        spec = spec if isinstance(spec, dict) else {"images": spec}
        unknown = set(spec) - {"images", "masks"}
        if unknown or "images" not in spec:
            raise ValueError(
                f"folder variants.{variant}: give a folder or {{images, masks}}, got {spec}"
            )
        folder = (root / Path(spec["images"]).expanduser()).resolve()
        masks = (root / Path(spec["masks"]).expanduser()).resolve() if spec.get("masks") else None
        if not folder.is_dir():
            raise FileNotFoundError(f"folder variants.{variant}: {folder} is not a directory")
        images, bad = _list_images(folder.parent, [folder.name], params["extensions"])
        bad_entries.extend(bad)
        for _, cls, f in images:
            m = masks / cls / (f.stem + ".png") if masks else None
            if m is not None and not m.is_file():  # a mapping with masks has one per image
                reason = f"no mask {m} (variants.{variant}.masks)"
                bad_entries.append({"path": str(f), "reason": reason, "kind": "missing_mask"})
                continue
            found.append((params["variant_split"], cls, f, variant, str(m) if m else ""))
    return found


def _variant_folders(root: Path, params: dict) -> set[Path]:
    """The image and mask folders ``variants`` names (resolved): never training splits."""
    out = set()
    for spec in params["variants"].values():
        spec = spec if isinstance(spec, dict) else {"images": spec}
        for key in ("images", "masks"):
            if isinstance(spec.get(key), str) and spec[key]:
                out.add((root / Path(spec[key]).expanduser()).resolve())
    return out


def _list_images(
    root: Path, splits: list[str], extensions: list[str], exclude: set[Path] = frozenset()
) -> tuple[list[tuple[str, str, Path]], list[dict]]:
    """(split, class, path) of every image file in sorted order, and the bad entries.
    Split folders that are, or hold, a folder of ``exclude`` are not listed.

    Bad entries (``{"path", "reason", "kind"}``) are links that cannot be followed (split
    or class folders, or files with an image extension) and class folders holding no
    image file: silently dropping them would shrink the dataset or shift the labels.
    """
    exts = {e.lower() for e in extensions}
    problems: list[dict] = []

    def bad(path: Path, reason: str, kind: str) -> None:
        problems.append({"path": str(path), "reason": reason, "kind": kind})

    def dirs(parent: Path, skip=()) -> list[Path]:
        out = []
        for d in sorted(parent.iterdir()):
            why, kind = _broken_link(d)
            if why:
                bad(d, why, kind)
            elif d.is_dir() and d.name not in skip:
                out.append(d)
        return out

    def excluded(d: Path) -> bool:
        d = d.resolve()
        return any(d == e or d in e.parents for e in exclude)

    if splits:
        missing = [s for s in splits if not (root / s).is_dir()]
        if missing:
            raise FileNotFoundError(f"folder dataset {root}: split folder(s) {missing} not found")
        used = [s for s in splits if excluded(root / s)]
        if used:
            raise ValueError(
                f"folder dataset {root}: split folder(s) {used} hold images or masks of "
                "`variants:`; a variant folder is never a training split"
            )
        split_dirs = [root / s for s in splits]
    else:
        split_dirs = [d for d in dirs(root, skip=("masks",)) if not excluded(d)]
    found = []
    for sd in split_dirs:
        for cd in dirs(sd):
            n = len(found)
            for f in sorted(cd.iterdir()):
                if f.suffix.lower() not in exts or f.name.startswith("."):
                    continue
                why, kind = _broken_link(f)
                if why:
                    bad(f, why, kind)
                elif f.is_file():
                    found.append((sd.name, cd.name, f))
            if len(found) == n and not any(
                p["path"].startswith(str(cd) + os.sep) for p in problems
            ):
                bad(
                    cd,
                    f"empty class folder: no image file ({', '.join(sorted(exts))})",
                    "empty_class",
                )
    return found, problems


def _check_image(args) -> tuple[int, int, str]:
    """(width, height, problem) of one image; problem is "" for a usable image."""
    path, mask_path, min_size = args
    try:
        a = read_rgb(path)
    except ImageError as exc:
        return 0, 0, f"undecodable: {str(exc).split(': ', 1)[-1]}"
    h, w = a.shape[:2]
    if min(h, w) < min_size:
        return w, h, f"too small: {w}x{h} < {min_size} px"
    if mask_path:
        try:
            m = read_mask(mask_path)
        except ImageError as exc:
            return w, h, f"bad mask {mask_path}: {str(exc).split(': ', 1)[-1]}"
        if m.shape != (h, w):
            return w, h, f"mask {mask_path} is {m.shape[1]}x{m.shape[0]}, image is {w}x{h}"
    return w, h, ""


def _load_box_table(root: Path) -> dict[str, dict]:
    """boxes.parquet as {key: {"boxes", "box_labels"?}}, keyed by image_id and/or path."""
    f = root / "boxes.parquet"
    if not f.exists():
        return {}
    df = pd.read_parquet(f)
    key = "image_id" if "image_id" in df else "path" if "path" in df else None
    if key is None or "boxes" not in df:
        raise ValueError(
            f"{f}: needs columns 'boxes' and 'image_id' or 'path'; has {list(df.columns)}"
        )
    out = {}
    for _, r in df.iterrows():
        entry = {"boxes": r["boxes"]}
        if "box_labels" in df and r["box_labels"] is not None:
            entry["box_labels"] = r["box_labels"]
        out[str(r[key]).replace(os.sep, "/")] = entry
    return out


def _image_boxes(path: Path, image_id: str, rel: str, table: dict) -> dict | None:
    if image_id in table:
        return table[image_id]
    if rel in table:
        return table[rel]
    for js in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
        if js.exists():
            try:
                data = json.loads(js.read_text())
            except json.JSONDecodeError as exc:
                raise ValueError(f"{js}: not valid JSON: {exc}") from exc
            if "boxes" not in data:
                raise ValueError(f"{js}: lacks key 'boxes'")
            return data
    return None


def normalise_boxes(boxes, w: int, h: int, where: str) -> list[list[float]]:
    """Boxes as normalised xyxy; pixel boxes (any value > 1) are divided by the image size."""
    arr = np.asarray([list(map(float, b)) for b in boxes], np.float64).reshape(-1, 4)
    if ((arr[:, 2] < arr[:, 0]) | (arr[:, 3] < arr[:, 1])).any():
        raise ValueError(f"{where}: boxes must be [x1, y1, x2, y2] with x2 >= x1, y2 >= y1")
    if arr.size and arr.max() > 1.0:
        arr = arr / [w, h, w, h]
    return np.clip(arr, 0.0, 1.0).tolist()


def index_folder(params: dict, out_dir, progress: bool = True) -> Path:
    """Write ``<out_dir>/manifest.parquet`` (+ classes.json, skipped.json); return its path."""
    root = Path(params["root"]).expanduser()
    if not params["root"] or not root.is_dir():
        raise FileNotFoundError(f"folder dataset: root {params['root']!r} is not a directory")
    root = root.resolve()
    out = Path(out_dir).resolve()
    items, masks, variant_of, vitems, bad_entries = _gather(root, params)
    jobs = [(str(f), m, int(params["min_size"])) for (_, _, f), m in zip(items, masks)]
    checks = _check_images(jobs, int(params["workers"]), f"index {root.name}", progress)
    rows, problems, classes = _rows(root, out, params, items, masks, checks, variant_of, vitems)
    skipped = list(bad_entries) + problems

    if skipped and not params["skip_bad"]:
        listing = "\n".join(f"  {s['path']}: {s['reason']}" for s in skipped[:20])
        more = f"\n  ... and {len(skipped) - 20} more" if len(skipped) > 20 else ""
        raise ValueError(
            f"folder dataset {root}: {len(skipped)} bad image(s), link(s) or class folder(s) "
            f"beside {len(items)} image files "
            f"(set skip_bad: true / --skip-bad to skip them):\n{listing}{more}"
        )
    if not rows:
        raise ValueError(f"folder dataset {root}: every image is bad ({len(skipped)} skipped)")
    counts: dict[str, int] = {}
    for s in skipped:
        counts[s["kind"]] = counts.get(s["kind"], 0) + 1
    if params["skip_bad"]:
        write_json(
            out / "skipped.json",
            {
                "n_images": len(items),
                "n_indexed": len(rows),
                "n_skipped": len(skipped),
                "counts": counts,
                "skipped": skipped,
            },
        )
    write_json(out / "classes.json", {"classes": classes})
    manifest = out / "manifest.parquet"
    write_manifest(manifest, pd.DataFrame(rows))
    return manifest


def _gather(root: Path, params: dict) -> tuple:
    """(items, masks, variant_of, vitems, bad_entries): every (split, class, path) to
    index, the split folders' first, then the ``variants`` images; its mask path or "";
    its variant; the variant items as listed by _variant_items; the bad entries found."""
    items, bad_entries = _list_images(
        root, params["splits"], params["extensions"], _variant_folders(root, params)
    )
    vitems = _variant_items(root, params, bad_entries) if params["variants"] else []
    if vitems and params["variant_split"] in {s_ for s_, _, _ in items}:
        raise ValueError(
            f"folder dataset {root}: split folder {params['variant_split']!r} and variants both "
            "give that split; drop the folder (see `splits`) or set variant_split"
        )
    if not items:
        listing = "".join(f"\n  {b['path']}: {b['reason']}" for b in bad_entries[:20])
        raise ValueError(
            f"folder dataset {root}: no images found under <split>/<class>/ folders{listing}"
        )
    masks = []
    for split, cls, f in items:
        m = root / "masks" / split / cls / (f.stem + ".png")
        masks.append(str(m) if m.exists() else "")
    variant_of = ["original"] * len(items) + [v for *_, v, _ in vitems]
    items += [(s_, c, f) for s_, c, f, _, _ in vitems]
    masks += [m for *_, m in vitems]
    return items, masks, variant_of, vitems, bad_entries


def _check_images(jobs: list[tuple], workers: int, desc: str, progress: bool) -> list[tuple]:
    """_check_image of every job, in a process pool when there are enough of them."""
    bar = dict(total=len(jobs), desc=desc, unit="img", disable=not progress)
    if workers > 1 and len(jobs) > 64:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            return list(progress_bar(pool.map(_check_image, jobs, chunksize=64), **bar))
    return [_check_image(j) for j in progress_bar(jobs, **bar)]


def _rows(root, out, params, items, masks, checks, variant_of, vitems) -> tuple:
    """(manifest rows of the usable images, skip records of the others, class names)."""
    classes = sorted({c for _, c, _ in items})
    label_of = {c: i for i, c in enumerate(classes)}
    scene_of = {k: i for i, k in enumerate(sorted({(c, f.stem) for _, c, f, _, _ in vitems}))}
    table = _load_box_table(root)
    vset = {(s_, c, f) for s_, c, f, _, _ in vitems}
    rows, skipped = [], []
    for (split, cls, f), mask, (w, h, problem), variant in zip(items, masks, checks, variant_of):
        if problem:
            skipped.append({"path": str(f), "reason": problem, "kind": _kind(problem)})
            continue
        rel = Path(os.path.relpath(f, root)).as_posix()
        scene = -1
        image_id = f"{split}/{cls}/{f.name}"
        if (split, cls, f) in vset:
            image_id, scene = f"{split}/{variant}/{cls}/{f.name}", scene_of[(cls, f.stem)]
        gt = _image_boxes(f, image_id, rel, table)
        boxes = normalise_boxes(gt["boxes"], w, h, str(f)) if gt else []
        box_labels = list(gt.get("box_labels") or [label_of[cls]] * len(boxes)) if gt else []
        if len(box_labels) != len(boxes):
            raise ValueError(f"{f}: {len(boxes)} boxes but {len(box_labels)} box_labels")
        rows.append(
            {
                "image_id": image_id,
                "path": _ref(f, out, params["relative_paths"]),
                "split": split,
                "variant": variant,
                "scene_id": scene,
                "width": w,
                "height": h,
                "label": label_of[cls],
                "labels": [label_of[cls]],
                "bg_label": -1,
                "boxes": boxes,
                "box_labels": [int(b) for b in box_labels],
                "mask_path": _ref(Path(mask), out, params["relative_paths"]) if mask else "",
            }
        )
    return rows, skipped, classes


def _kind(reason: str) -> str:
    """undecodable | too_small | bad_mask | mask_size, from a _check_image problem."""
    kind = reason.split(":")[0].split(" ")[0]
    return {"too": "too_small", "bad": "bad_mask", "mask": "mask_size"}.get(kind, kind)


def _ref(path: Path, out: Path, relative: bool) -> str:
    return os.path.relpath(path, out) if relative else str(path)
