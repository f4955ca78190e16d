"""Side information of the object-aware variants, checked before the first training step.

A variant that needs side information (``oacl.variants``: OA-Crop needs object boxes;
BG-Mixup and BG-HardMix a foreground mask and a background rectangle) takes it, per
training image, from the CAM shards of ``*_cam`` variants (box shards: boxes and
``bg_rect``; mask shards: the soft mask) or from the manifest's ground truth for
``*_gt`` variants. ``check`` counts, per source shard, how many of the training
images it covered and what it gave them, and raises ``SideInfoError`` when

* a training image has no row in any shard of a kind the variant needs (*missing*).
  Always an error: the message names every shard read and how many training images
  each covered (a shard left out of ``--boxes`` / ``--masks`` shows as the gap);
* more than ``max_empty`` (``pretrain.side_info_max_empty``, a fraction of the
  training images) of the training images have *empty* side information: their row
  is there but the CAM (or the ground truth) yields nothing. Empty means

      boxes    an empty box list (the CAM had no foreground, or every box fell under
               the 1% filter; GT: no box left after that filter)
      mask     a soft mask with no pixel above 0, or no mask bytes (GT: no mask_path)
      bg_rect  none, or zero area (refine's ``[0,0,0,0]``: no background pixel;
               GT: no mask_path, the rectangle is found in the GT mask)

  Up to ``max_empty`` they are allowed and counted; each keeps its per-image
  fallback in ``oacl.train.data`` (whole-image crop; whole partner image as the
  background).

The result (``coverage``) is logged and written to the first line of metrics.jsonl
(key ``side_info``); the report shows it beside each debiased model.
"""

from __future__ import annotations

import logging

from .. import variants
from ..geometry import decode_mask

log = logging.getLogger(__name__)

# which shard files give each kind of side information (*_cam variants)
SHARD_KIND = {"boxes": "boxes", "bg_rect": "boxes", "mask": "masks"}


class SideInfoError(ValueError):
    """Training images without (or with too much empty) side information."""


def needs(variant: str) -> tuple[str, ...]:
    """The kinds of side information ``variant`` reads per image (() for none)."""
    spec = variants.get(variant)
    if spec.source is None:
        return ()
    out = []
    if spec.crop:
        out.append("boxes")
    if spec.needs_mask:
        out.append("mask")
    if spec.needs_bg:
        out.append("bg_rect")
    return tuple(out)


# ------------------------------------------------------------------ emptiness


def empty_boxes(boxes) -> bool:
    return boxes is None or len(boxes) == 0


def empty_rect(rect) -> bool:
    if rect is None or len(rect) != 4:
        return True
    x1, y1, x2, y2 = (float(v) for v in rect)
    return x2 <= x1 or y2 <= y1


def empty_mask(png) -> bool:
    """No mask bytes, or a soft mask with no pixel above 0 (decoded: this reads the PNG)."""
    if not png:
        return True
    return not (decode_mask(bytes(png)) > 0).any()


def _box_row_counts(row) -> dict:
    return {
        "boxes": not empty_boxes(row.get("boxes")),
        "bg_rect": not empty_rect(row.get("bg_rect")),
    }


# ------------------------------------------------------------------ the check


def check(
    variant: str,
    image_ids,
    *,
    box_shards: dict | None = None,
    mask_shards: dict | None = None,
    gt: dict | None = None,
    max_empty: float = 0.05,
) -> dict | None:
    """Coverage of the training images ``image_ids`` by the side information ``variant``
    needs; raises SideInfoError (see the module docstring). None for a variant that
    needs none.

    box_shards / mask_shards: ``oacl.artifacts.read_shards`` results ({shard: {image_id:
    row}}), for ``*_cam`` variants. gt: for ``*_gt`` variants, {"source": manifest path,
    "boxes": per-image box lists (after the OA-Crop filter), "has_mask": per-image bools},
    both in the order of ``image_ids``.
    """
    kinds = needs(variant)
    if not kinds:
        return None
    ids = list(image_ids)
    n = len(ids)
    source = variants.get(variant).source
    if source == "cam":
        shards, per_image = _cam_counts(ids, kinds, box_shards or {}, mask_shards or {})
    else:
        shards, per_image = _gt_counts(ids, kinds, gt or {})
    covered = {k: sum(1 for v in per_image[k].values() if v is not None) for k in kinds}
    empty = {k: sum(1 for v in per_image[k].values() if v is False) for k in kinds}
    empty_ids = {i for k in kinds for i, v in per_image[k].items() if v is False}
    cov = {
        "variant": variant,
        "source": source,
        "images": n,
        "needs": list(kinds),
        "shards": shards,
        "covered": covered,
        "missing": {k: n - covered[k] for k in kinds},
        "empty": empty,
        "empty_images": len(empty_ids),
        "empty_fraction": len(empty_ids) / n if n else 0.0,
        "max_empty": float(max_empty),
    }
    missing = {k: [i for i in ids if per_image[k].get(i) is None] for k in kinds}
    if any(missing.values()):
        raise SideInfoError(_missing_message(cov, missing))
    if cov["empty_fraction"] > max_empty:
        raise SideInfoError(_empty_message(cov))
    return cov


def _cam_counts(ids, kinds, box_shards, mask_shards):
    """Per-shard records and, per kind, {image_id: True (usable) | False (empty)} for
    the training images some shard covers (the others are missing)."""
    wanted = set(ids)
    per_image = {k: {} for k in kinds}
    records = []
    for file_kind, shards in (("boxes", box_shards), ("masks", mask_shards)):
        mine = [k for k in kinds if SHARD_KIND[k] == file_kind]
        if not mine:
            continue
        for shard, rows in shards.items():
            rec = {"shard": str(shard), "kind": file_kind, "rows": len(rows), "train_images": 0}
            gives = ("boxes", "bg_rect") if file_kind == "boxes" else ("mask",)
            rec.update({k: 0 for k in gives})
            rec["empty"] = {k: 0 for k in gives}
            for image_id, row in rows.items():
                if image_id not in wanted:
                    continue
                rec["train_images"] += 1
                if file_kind == "boxes":
                    ok = _box_row_counts(row)
                else:
                    ok = {"mask": not empty_mask(row.get("mask_png"))}
                for k, good in ok.items():
                    rec[k] += good
                    rec["empty"][k] += not good
                    if k in per_image:
                        per_image[k][image_id] = good
            records.append(rec)
    return records, per_image


def _gt_counts(ids, kinds, gt):
    boxes = gt.get("boxes") or [[] for _ in ids]
    has_mask = gt.get("has_mask") or [False for _ in ids]
    ok = {
        "boxes": [not empty_boxes(b) for b in boxes],
        "mask": [bool(m) for m in has_mask],
        "bg_rect": [bool(m) for m in has_mask],  # found in the GT mask when it is loaded
    }
    rec = {"shard": str(gt.get("source", "manifest")), "kind": "manifest", "rows": len(ids)}
    rec["train_images"] = len(ids)
    rec.update({k: sum(ok[k]) for k in kinds})
    rec["empty"] = {k: len(ids) - sum(ok[k]) for k in kinds}
    per_image = {k: dict(zip(ids, ok[k])) for k in kinds}
    return [rec], per_image


def _shard_lines(cov) -> str:
    out = []
    for r in cov["shards"]:
        out.append(
            f"  {r['shard']} ({r['kind']}): {r['train_images']} of the {cov['images']} training "
            f"images (of {r['rows']} rows)"
        )
    return "\n".join(out) if out else "  (no shard)"


def _missing_message(cov, missing) -> str:
    v, n = cov["variant"], cov["images"]
    parts = []
    for k, ids in missing.items():
        if ids:
            shard = {"boxes": "box", "masks": "mask"}[SHARD_KIND[k]]
            parts.append(
                f"{len(ids)} of {n} training images have no {k} in any {shard} shard "
                f"(e.g. {', '.join(repr(i) for i in ids[:3])})"
            )
    read = {fk: sum(1 for r in cov["shards"] if r["kind"] == fk) for fk in ("boxes", "masks")}
    return (
        f"pretrain {v}: side information missing: {'; '.join(parts)}. "
        f"Shards read ({read['boxes']} box, {read['masks']} mask) and the training images "
        f"each covered:\n{_shard_lines(cov)}\n"
        "Every shard of the CAM run must be passed (--boxes SHARD [SHARD ...], --masks SHARD "
        "[SHARD ...]); an image absent from every shard is an error, not a fallback."
    )


def _empty_message(cov) -> str:
    v, n = cov["variant"], cov["images"]
    what = ", ".join(f"{k}: {c}" for k, c in cov["empty"].items())
    return (
        f"pretrain {v}: {cov['empty_images']} of {n} training images "
        f"({100 * cov['empty_fraction']:.1f}%) have empty side information ({what}), above "
        f"pretrain.side_info_max_empty = {cov['max_empty']:g}. Per source:\n"
        + "\n".join(
            f"  {r['shard']} ({r['kind']}): {r['train_images']} training images, empty "
            + ", ".join(f"{k} {c}" for k, c in r["empty"].items() if k in cov["needs"])
            for r in cov["shards"]
        )
        + "\nThe CAM (or the ground truth) yields nothing for them; raise "
        "pretrain.side_info_max_empty if that is expected."
    )


def log_coverage(cov: dict | None, logger=None) -> None:
    """The coverage as log lines: one summary, one per source shard."""
    if cov is None:
        return
    lg = logger or log
    lg.info(
        "side information (%s, %s): %d training images; covered %s; empty %s "
        "(%d images, %.1f%%, tolerance %.1f%%)",
        cov["variant"],
        cov["source"],
        cov["images"],
        cov["covered"],
        cov["empty"],
        cov["empty_images"],
        100 * cov["empty_fraction"],
        100 * cov["max_empty"],
    )
    for r in cov["shards"]:
        lg.info(
            "  %s (%s): %d training images of %d rows; usable %s; empty %s",
            r["shard"],
            r["kind"],
            r["train_images"],
            r["rows"],
            {k: r[k] for k in r["empty"]},
            r["empty"],
        )
