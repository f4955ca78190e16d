"""Report sections on the trained models (results/models/*/*/metrics.jsonl): training
health (has each model left chance, does it rely on the object: oacl.train.health),
the side information of each debiased model (oacl.train.sideinfo) and training curves."""

from __future__ import annotations

from pathlib import Path

from ..variants import VARIANTS, parse_model
from . import figures
from .html import esc, fmt3, gallery_anchor, not_run, png_img, table
from .readers import VARIANT_NAMES, side_info_of

HEALTH_CHANCE_RATIO = 0.95  # final loss above this share of chance: "has not left chance"


def health_alerts(metrics: dict) -> list[dict]:
    """Every model that has not left chance or relies on the background (oacl.train.health):
    {dataset, model, kind ("chance" | "background"), text} (plain text)."""
    alerts = []
    for dataset, models in sorted(metrics.items()):
        for model, recs in sorted(models.items()):
            last = recs[-1]
            loss, chance = last.get("loss"), last.get("chance_loss")
            rel = last.get("object_reliance") or {}
            ratio = loss / chance if loss is not None and chance else None
            where = {"dataset": dataset, "model": model}
            if ratio is not None and ratio > HEALTH_CHANCE_RATIO:
                alerts.append(
                    dict(
                        where,
                        kind="chance",
                        text=f"{dataset} · {model}: loss {loss:.3f} is within "
                        f"{100 * (1 - HEALTH_CHANCE_RATIO):.0f}% of chance ({chance:.3f})",
                    )
                )
            if rel and rel["cos_only_bg_t"] >= rel["cos_only_fg"]:
                alerts.append(
                    dict(
                        where,
                        kind="background",
                        text=f"{dataset} · {model}: relies on the background (cos to only_bg_t "
                        f"{rel['cos_only_bg_t']:.3f} ≥ to only_fg {rel['cos_only_fg']:.3f})",
                    )
                )
    return alerts


def section_health(metrics: dict) -> str:
    """Has each model left chance, and does it rely on the object (oacl.train.health)?"""
    rows = []
    for dataset, models in sorted(metrics.items()):
        for model, recs in sorted(models.items()):
            last = recs[-1]
            loss, chance = last.get("loss"), last.get("chance_loss")
            rel = last.get("object_reliance") or {}
            knn = next((r["knn_acc"] for r in reversed(recs) if r.get("knn_acc") is not None), None)
            ratio = loss / chance if loss is not None and chance else None
            rows.append(
                [
                    dataset,
                    model,
                    fmt3(loss),
                    fmt3(chance),
                    fmt3(ratio),
                    fmt3(knn),
                    fmt3(rel.get("cos_only_fg")),
                    fmt3(rel.get("cos_only_bg_t")),
                ]
            )
    alerts = [esc(a["text"]) for a in health_alerts(metrics)]
    if not rows:
        return f'<section id="health"><h2>Training health</h2>{not_run("no metrics.jsonl under results/models/")}</section>'
    body = table(
        [
            "dataset",
            "model",
            "final loss",
            "chance loss",
            "loss / chance",
            "kNN acc",
            "cos(orig, only_fg)",
            "cos(orig, only_bg_t)",
        ],
        rows,
    )
    if alerts:  # counted on the first screen ("What held"); the lines, collapsed, here
        body = (
            f'<details><summary class="neg"><b>{len(alerts)} warning(s)</b> (a model that feeds '
            "ContraCAM must have left chance and look at the object)</summary>"
            + "<br>".join(alerts)
            + "</details>"
            + body
        )
    body += (
        '<p class="muted">Chance loss: ln(1 + queue) for MoCo, ln(classes) for supervised. The cosines compare the '
        "encoder's features of a test image with its object removed (only_bg_t) and its background removed "
        "(only_fg).</p>"
    )
    return f'<section id="health"><h2>Training health</h2>{body}</section>'


def section_side_info(metrics: dict) -> str:
    """Beside each debiased model: its training images' boxes / masks / background
    rectangles, covered per source shard and empty (oacl.train.sideinfo)."""
    rows = []
    for dataset, models in sorted(metrics.items()):
        for model, recs in sorted(models.items()):
            parsed = parse_model(model)
            spec = VARIANTS.get(parsed["variant"]) if parsed else None
            cov = side_info_of(recs)
            if cov is None:
                if spec is not None and spec.source is not None:
                    rows.append([esc(dataset), esc(model), esc(spec.display)] + ["–"] * 6)
                    rows[-1][-2] = '<span class="neg">not recorded</span>'
                continue
            n = cov.get("images", 0)
            needs = cov.get("needs", [])
            covered = "<br>".join(f"{esc(k)} {cov['covered'].get(k, 0)}/{n}" for k in needs)
            empty = "<br>".join(f"{esc(k)} {cov['empty'].get(k, 0)}" for k in needs)
            share = cov.get("empty_fraction", 0.0)
            share_cell = f"{100 * share:.1f}% (≤ {100 * cov.get('max_empty', 0):.0f}%)"
            lines = []
            for r in cov.get("shards", []):
                # the empty rows of the kinds the variant reads (a box shard also has
                # boxes that BG-Mixup, reading only its bg_rect, does not use)
                empties = [(k, c) for k, c in r.get("empty", {}).items() if c and k in needs]
                lines.append(
                    f"{esc(Path(r['shard']).name)} ({esc(r['kind'])}): {r['train_images']}"
                    + (
                        " · empty " + ", ".join(f"{esc(k)} {c}" for k, c in empties)
                        if empties
                        else ""
                    )
                )
            shards = "<br>".join(lines)
            name = VARIANT_NAMES.get(cov.get("variant"), cov.get("variant"))
            rows.append(
                [esc(dataset), esc(model), esc(name), n, covered, empty, share_cell, shards]
                + [_gallery_links(cov)]
            )
    if not rows:
        body = not_run("no debiased model with side information under results/models/")
    else:
        body = table(
            [
                "dataset",
                "model",
                "variant",
                "train images",
                "covered",
                "empty",
                "empty share (tolerance)",
                "training images per source shard",
                "masks and boxes",
            ],
            rows,
            raw=True,
        )
        body += (
            '<p class="muted">Every training image of a *_cam / *_gt variant must have the boxes '
            "(OA-Crop) or mask and background rectangle (BG-Mixup, BG-HardMix) it needs: an "
            "image in no shard stops the job before training. Empty: the image is in a shard "
            "but its CAM (or ground truth) yields nothing (no box, an all-zero mask, a "
            "zero-area background rectangle); it falls back to the whole image, and more than "
            "pretrain.side_info_max_empty of them stop the job too.</p>"
        )
    return (
        f'<section id="side_info"><h2>Side information of the debiased models</h2>{body}</section>'
    )


def _gallery_links(cov: dict) -> str:
    """Links to the gallery of each CAM run (results/{cam,refine}/<ds>/<model>/<cam>/) whose
    shards the model read; "" for ground truth."""
    runs = []
    for r in cov.get("shards", []):
        parts = Path(r["shard"]).parts
        if r.get("kind") in ("boxes", "masks") and len(parts) >= 4:
            run = tuple(parts[-4:-1])
            if run not in runs:
                runs.append(run)
    return "<br>".join(
        f'<a href="#{gallery_anchor(*run)}">{esc(run[1])} · {esc(run[2])}</a>' for run in runs
    )


def section_curves(metrics: dict) -> str:
    """Training loss and kNN accuracy per dataset ({dataset: {model: records}})."""
    if not metrics:
        return f'<section id="curves"><h2>Training curves</h2>{not_run("no metrics.jsonl under results/models/")}</section>'
    imgs = [
        png_img(figures.curves_chart(dataset, models), f"training curves {dataset}")
        for dataset, models in metrics.items()
    ]
    return f'<section id="curves"><h2>Training curves</h2>{"".join(imgs)}</section>'
