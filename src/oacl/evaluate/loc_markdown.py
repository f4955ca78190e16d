"""The localisation result as a markdown table (``table_md``, printed by the command)."""

from __future__ import annotations

METRIC_ROWS = [
    ("mask_miou", "mask mIoU @0.5"),
    ("pixel_auc", "pixel AUC"),
    ("auc_rot180", "pixel AUC, map turned 180°"),
    ("shuffled_auc", "shuffled AUC (other images' GT)"),
    ("content_auc", "content AUC [95 % CI]"),
    ("pointing", "pointing game"),
    ("mass_inside", "map mass inside GT"),
    ("pred_area", "area above 0.5"),
    ("gt_area", "GT area"),
    ("best_threshold_miou", "mask mIoU @best threshold"),
    ("best_threshold", "best threshold"),
    ("crf_mask_miou", "CRF mask mIoU"),
    ("box_miou", "box mIoU (CRF boxes)"),
    ("box_miou_nocrf", "box mIoU (no CRF)"),
    ("box_union_iou", "box-union IoU (CRF boxes)"),
    ("box_union_iou_nocrf", "box-union IoU (no CRF)"),
    ("maxboxacc_v2", "MaxBoxAccV2"),
]

# a row left out when it repeats another for every map (the JSON keeps both)
SAME_AS = {"box_union_iou": "box_miou", "box_union_iou_nocrf": "box_miou_nocrf"}


def markdown_table(metrics: dict, protocol: str = "oacl") -> str:
    """One row per metric, one column per map; the mask rows name a non-default
    ``protocol`` (oacl.evaluate.protocols)."""
    names = list(metrics)
    lines = ["| metric | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    for key, label in METRIC_ROWS:
        if not any(key in metrics[n] for n in names):
            continue
        same = SAME_AS.get(key)
        if same and all(cell(metrics[n], key) == cell(metrics[n], same) for n in names):
            continue  # one object per image: the union is the box itself, a repeated row
        cells = [cell(metrics[n], key) for n in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    if protocol == "oacl":
        return table
    return table.replace("| mask mIoU @0.5 |", f"| mask mIoU ({protocol} protocol) |").replace(
        "| CRF mask mIoU |", f"| CRF mask mIoU ({protocol} protocol) |"
    )


def cell(m: dict, key: str) -> str:
    """One map's value of ``key``; content_auc with its bootstrap interval, 3 decimals."""
    if key not in m or m[key] is None:
        return "–"
    if key == "content_auc":
        lo, hi = m.get("content_auc_ci95") or (None, None)
        return f"{m[key]:.3f}" if lo is None else f"{m[key]:.3f} [{lo:.3f}, {hi:.3f}]"
    return f"{m[key]:.4f}"
