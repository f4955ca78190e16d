"""ImageNet-9 / Background Challenge release -> manifest.

Two roots, because the release has two kinds of archive:

* ``root``: the training archive ``original.tar.gz`` unpacked, ``original/train/00_dog/...``.
  (Its ``original/val`` -- like every per-variant training archive's ``val`` -- is an
  uncleaned validation set and is never read as the test set when ``test_root`` is set.)
* ``test_root``: the test-data archive of the release unpacked, i.e. its ``bg_challenge/``
  folder: ``<variant>/val/<NN_class>/*.JPEG`` for original, only_fg, mixed_same,
  mixed_rand, mixed_next, only_bg_b, only_bg_t, no_fg, and ``fg_mask/val/<NN_class>/
  <stem>.npy`` (foreground masks of the test images). Unset: ``root`` is used (warned).

Training uses ``original/train`` (a seeded ``val_fraction`` of it becomes ``val``);
every variant's ``val`` folder under ``test_root`` becomes split ``test`` with the
``variant`` column set. The label is the ``NN`` prefix of the class folder.

Scenes: original, only_fg, only_bg_b, only_bg_t and no_fg name a file ``<wnid>_<num>``
after its source image; the released mixed_* files are named
``fg_<wnid>_<num>_bg_<bgwnid>_<bgnum>``, where the ``fg_`` part is the image whose
foreground is pasted. The scene key is the class folder plus that source stem, so the
rows of one image across variants share ``scene_id`` and its mask. The ``_bg_`` part
is ignored: in the release mixed_rand and mixed_next carry identical names (the
``_bg_`` ids are mixed_next's), so it does not identify mixed_rand's background.
Foreground masks are attached to the variants whose foreground pixels come from the
scene's image (original, only_fg, mixed_*); ``.npy`` masks are written as PNGs under
``masks/``. A variant whose per-class image counts differ from ``original``'s is warned
about (a partly unpacked archive would otherwise bias the variant's accuracy).

``shift`` appends ImageNet-Sketch/-R/-C/Stylized-ImageNet restricted to the 9 classes:
a list of ``imagenet_shift`` configs (see imagenet_shift.py), so one manifest carries
the training data and every shifted test set.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np

from ...artifacts import BG_CHALLENGE_VARIANTS
from ...io import write_json
from ...params import merge_params
from . import (
    ManifestRows,
    holdout,
    image_size,
    imagenet_shift,
    progress,
    require,
    require_root,
    write_png,
)
from ._in9_classes import IMAGE_EXTS, IN9_CLASSES

log = logging.getLogger(__name__)

TEST_VARIANTS = [*BG_CHALLENGE_VARIANTS, "no_fg"]
FG_VARIANTS = {
    "original",
    "only_fg",
    "mixed_same",
    "mixed_rand",
    "mixed_next",
}  # keep the image's foreground
_CLASS_DIR = re.compile(r"^(\d+)_(.+)$")
_MIXED_NAME = re.compile(r"^fg_(n\d{8}_\d+)_bg_")  # released mixed_* names: fg_<wnid>_<num>_bg_...


def scene_stem(name: str) -> str:
    """The source image's stem of an IN-9 test file: ``fg_<wnid>_<num>_bg_...`` ->
    ``<wnid>_<num>`` (mixed variants), otherwise the file's stem."""
    stem = Path(name).stem
    m = _MIXED_NAME.match(stem)
    return m.group(1) if m else stem


DEFAULTS = {
    "type": "in9",
    "root": "",
    "test_root": "",  # the release's test archive unpacked (bg_challenge/); "" = root (warned)
    "variants": None,  # test variants to read; null = every one present (original required)
    "eval_split": "val",  # the release folder evaluated as split "test"
    "val_fraction": 0.05,  # of original/train, held out as "val"
    "seed": 0,
    "masks": True,  # attach fg_mask/ masks where present
    "shift": [],  # imagenet_shift configs appended as extra test variants
}


def build(params: dict, out_dir: Path):
    root = require_root(params["root"], "ImageNet-9")
    out_dir = Path(out_dir)
    ev = params["eval_split"]
    require(root, "original/train", "ImageNet-9", kind="folder")
    test_root = _test_root(params, root)
    variants = _test_variants(params, test_root, ev)

    rows = ManifestRows()
    classes = {}
    _add_train(rows, root, classes, params)
    counts = _add_test(rows, test_root, variants, ev, classes, params, out_dir)
    _check_counts(counts)
    write_json(
        out_dir / "in9_classes.json",
        [{"index": i, "folder": classes.get(i, ""), "name": n} for i, n in enumerate(IN9_CLASSES)],
    )
    df = rows.frame()
    if params["shift"]:
        df = _append_shift(df, params["shift"], out_dir)
    return df


def _test_root(params: dict, root: Path) -> Path:
    """``test_root``, or ``root`` (warned) when it is not set."""
    if params["test_root"]:
        return require_root(params["test_root"], "ImageNet-9 test")
    log.warning(
        "ImageNet-9: test_root not set, reading the test variants from root %s; the per-variant "
        "training archives' val folders are not the cleaned test set (set test_root to the "
        "unpacked bg_challenge/ of the release's test archive)",
        root,
    )
    return root


def _test_variants(params: dict, test_root: Path, ev: str) -> list[str]:
    """The test variants to read (null: every one present, the absent ones warned); each
    must have its ``<variant>/<eval_split>`` folder."""
    variants = params["variants"]
    if variants is None:
        variants = [v for v in TEST_VARIANTS if (test_root / v / ev).is_dir()]
        absent = [v for v in TEST_VARIANTS if v not in variants]
        if absent:
            log.warning(
                "ImageNet-9 test root %s: variant folder(s) %s absent, skipped", test_root, absent
            )
    unknown = [v for v in variants if v not in TEST_VARIANTS]
    if unknown:
        raise ValueError(f"ImageNet-9: unknown variant(s) {unknown}; known: {TEST_VARIANTS}")
    for v in variants:
        require(test_root, f"{v}/{ev}", "ImageNet-9 test", kind="folder")
    return variants


def _add_train(rows: ManifestRows, root: Path, classes: dict, params: dict) -> None:
    """Rows of original/train: split train, a seeded ``val_fraction`` of it val."""
    train = _list(root / "original/train", classes)
    held = holdout([f"{c}/{n}" for c, n, _ in train], params["val_fraction"], params["seed"])
    for cdir, name, label in progress(train, "IN-9 original/train"):
        rel = f"original/train/{cdir}/{name}"
        w, h = image_size(root / rel)
        split = "val" if f"{cdir}/{name}" in held else "train"
        rows.add(rel, str(root / rel), split, w, h, label=label, labels=[label])


def _add_test(rows, test_root, variants, ev, classes, params, out_dir) -> dict:
    """Rows of split test, one scene per source image across the variants; returns the
    per-variant, per-class image counts."""
    scenes: dict[tuple[str, str], int] = {}
    written: set[str] = set()  # masks written in this run (each scene appears in 5 variants)
    counts: dict[str, dict[str, int]] = {}
    for v in variants:
        listing = _list(test_root / v / ev, classes)
        counts[v] = {}
        for cdir, _, _ in listing:
            counts[v][cdir] = counts[v].get(cdir, 0) + 1
        for cdir, name, label in progress(listing, f"IN-9 {v}/{ev}"):
            rel = f"{v}/{ev}/{cdir}/{name}"
            w, h = image_size(test_root / rel)
            key = (cdir, scene_stem(name))
            scene = scenes.setdefault(key, len(scenes))
            mask = (
                _fg_mask(test_root, ev, cdir, key[1], out_dir, written)
                if params["masks"] and v in FG_VARIANTS
                else ""
            )
            rows.add(
                rel,
                str(test_root / rel),
                "test",
                w,
                h,
                variant=v,
                scene_id=scene,
                label=label,
                labels=[label],
                mask_path=mask,
            )
    return counts


def _append_shift(df, shift: list, out_dir: Path):
    """``df`` with the rows of every ``imagenet_shift`` config of ``shift`` appended."""
    import pandas as pd

    parts = [df]
    for i, cfg in enumerate(shift):
        sp = merge_params(imagenet_shift.DEFAULTS, cfg, where=f"in9.shift[{i}]")
        parts.append(imagenet_shift.build(sp, out_dir))
    df = pd.concat(parts, ignore_index=True)
    if "subset" in df:  # imagenet_shift's extra column: "" for the IN-9 rows
        df["subset"] = df["subset"].fillna("")
    return df


def _list(folder: Path, classes: dict) -> list[tuple[str, str, int]]:
    """(class folder, file name, label) of every image under ``folder/<NN_class>/``, sorted."""
    out = []
    cdirs = sorted(e.name for e in os.scandir(folder) if e.is_dir())
    if not cdirs:
        raise ValueError(f"ImageNet-9 folder {folder}: no class folders (expected e.g. 00_dog/)")
    for cdir in cdirs:
        m = _CLASS_DIR.match(cdir)
        if not m:
            raise ValueError(
                f"ImageNet-9 folder {folder}: class folder {cdir!r} is not named NN_class (e.g. 00_dog)"
            )
        label = int(m.group(1))
        if not 0 <= label < len(IN9_CLASSES):
            raise ValueError(f"ImageNet-9 folder {folder}/{cdir}: class index {label} outside 0..8")
        classes.setdefault(label, cdir)
        names = sorted(
            e.name for e in os.scandir(folder / cdir) if Path(e.name).suffix.lower() in IMAGE_EXTS
        )
        out.extend((cdir, n, label) for n in names)
    return out


def _check_counts(counts: dict[str, dict[str, int]]) -> None:
    """Warn for every variant whose per-class image counts differ from original's."""
    ref = counts.get("original")
    if ref is None:
        return
    for v, c in counts.items():
        diff = {
            k: (ref.get(k, 0), c.get(k, 0))
            for k in sorted(set(ref) | set(c))
            if ref.get(k, 0) != c.get(k, 0)
        }
        if diff:
            log.warning(
                "ImageNet-9 variant %s: per-class image counts differ from original's "
                "(class: original, %s) %s -- a partly unpacked or wrong archive?",
                v,
                v,
                diff,
            )


def _fg_mask(root: Path, split: str, cdir: str, stem: str, out_dir: Path, written: set) -> str:
    """The scene's foreground mask path ('' if the release has none for it)."""
    base = root / "fg_mask" / split / cdir / stem
    if base.with_suffix(".png").is_file():
        return str(base.with_suffix(".png"))
    npy = base.with_suffix(".npy")
    if not npy.is_file():
        return ""
    rel = f"masks/in9/{cdir}/{stem}.png"
    if rel not in written:
        written.add(rel)
        mask = np.load(npy, allow_pickle=False)  # an object array would unpickle
        if mask.ndim == 3:  # HxWxC masks: any channel
            mask = mask.any(axis=2)
        write_png(out_dir / rel, (mask > 0).astype(np.uint8) * 255)
    return rel
