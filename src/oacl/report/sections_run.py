"""Report sections about the run itself: its configuration, the stage timings
(Snakemake benchmark files) and a gallery of ContraCAM masks and boxes."""

from __future__ import annotations

import glob
import json
import logging
from pathlib import Path

import numpy as np

from ..variants import display_name
from . import figures
from .html import array_img, esc, fmt1, fmt_mb, gallery_anchor, not_run, png_img, table
from .readers import cam_method, cam_trained_sets, method_name, read_benchmarks

log = logging.getLogger(__name__)


def section_config(cfg: dict) -> str:
    body = (
        f"<pre>{esc(json.dumps(cfg, indent=2, sort_keys=True))}</pre>"
        if cfg
        else not_run("no config given")
    )
    return f'<section id="config"><h2>Configuration</h2><details><summary>the whole pipeline config (as passed to the report rule)</summary>{body}</details></section>'


def section_timings(results: Path) -> str:
    rows = read_benchmarks(results)
    if not rows:
        return f'<section id="timings"><h2>Stage timings</h2>{not_run("no benchmark files under results/benchmarks/")}</section>'
    per_rule: dict = {}
    for r in rows:
        per_rule.setdefault(r["rule"], []).append(r)
    summary = [
        [
            rule,
            len(rs),
            f"{sum(r['s'] for r in rs):.1f}",
            f"{max(r['s'] for r in rs):.1f}",
            fmt_mb(max((r["max_rss"] for r in rs), default=float("nan"))),
        ]
        for rule, rs in per_rule.items()
    ]
    names = list(per_rule)
    fig = figures.timings_chart(names, [sum(r["s"] for r in per_rule[n]) for n in names])
    detail = table(
        ["rule", "job (wildcards)", "wall s", "max RSS MB", "CPU s"],
        [
            [r["rule"], r["job"], f"{r['s']:.1f}", fmt_mb(r["max_rss"]), fmt1(r["cpu_time"])]
            for r in rows
        ],
    )
    return (
        f'<section id="timings"><h2>Stage timings</h2><div class="row"><div>'
        f"{table(['rule', 'jobs', 'total s', 'max s', 'max RSS MB'], summary)}</div><div>{png_img(fig, 'timings')}</div></div>"
        f"<details><summary>every job ({len(rows)})</summary>{detail}</details>"
        f'<p class="muted">From Snakemake benchmark: files (mean over repeats).</p></section>'
    )


def section_gallery(
    results: Path, opts: dict, inputs: list[Path] | None = None, cfg: dict | None = None
) -> str:
    if inputs is None:
        sets = [Path(d) for d in sorted(glob.glob(str(results / "cam" / "*" / "*" / "*")))]
    else:  # the CAM folders whose mask shards are among the inputs
        sets = sorted(
            {p.parent for p in inputs if p.name.startswith("masks_") and p.suffix == ".parquet"}
        )
    # the runs a *_cam variant trained on first (in the config's order), then the rest:
    # the cap must not hide the masks and boxes a debiased model learnt from
    trained = cam_trained_sets(cfg)
    order = list(trained)
    sets = sorted(
        sets,
        key=lambda d: (order.index(_set_key(d)) if _set_key(d) in order else len(order), str(d)),
    )
    parts = []
    for d in sets[: opts["max_sets"]]:
        shards = (
            sorted(d.glob("masks_*.parquet"))
            if inputs is None
            else sorted(p for p in inputs if p.parent == d and p.name.startswith("masks_"))
        )
        if not shards:
            continue
        dataset, model, cam = d.parts[-3], d.parts[-2], d.parts[-1]
        users = trained.get(_set_key(d), [])
        try:
            parts.append(_gallery_set(results, dataset, model, cam, shards[0], opts, cfg, users))
        except Exception as exc:  # a gallery problem must not lose the rest of the report
            log.warning("report: gallery for %s failed: %s", d, exc)
            parts.append(
                f'<h3 id="{gallery_anchor(dataset, model, cam)}">{esc(dataset)} · {esc(model)} · '
                f"{esc(cam)}</h3><p class='notrun'>could not render: {esc(exc)}</p>"
            )
    body = "".join(parts) if parts else not_run("no ContraCAM mask shards under results/cam/")
    if len(sets) > opts["max_sets"]:
        body += (
            f'<p class="muted">{len(sets) - opts["max_sets"]} more CAM run(s) not shown '
            f"(report.gallery.max_sets = {opts['max_sets']}).</p>"
        )
    return (
        f'<section id="gallery"><h2>Masks and boxes</h2>{body}'
        '<p class="muted">Panels: predicted boxes (green) and GT boxes (yellow) | soft map of '
        "the method in the heading | CRF mask with the background-mixup rectangle (cyan).</p></section>"
    )


def _set_key(d: Path) -> tuple:
    """(dataset, model, cam) of a CAM output folder results/cam/<dataset>/<model>/<cam>."""
    return d.parts[-3], d.parts[-2], d.parts[-1]


def _gallery_set(results, dataset, model, cam, mask_shard: Path, opts, cfg=None, users=()) -> str:
    """One CAM run's panels; ``users``: the (method, variant) pairs that trained on it."""
    from .. import artifacts
    from ..io import decode_png, read_rgb
    from ..overlay import gallery_ids, render_overlay

    masks = artifacts.read_masks([mask_shard])
    try:  # the method the maps were made with, when the config does not name it
        recorded = json.loads(next(iter(masks.values())).get("params") or "{}").get("method")
    except (StopIteration, json.JSONDecodeError, AttributeError):
        recorded = None
    name = method_name(cam_method(cfg, cam, recorded))
    box_shard = (
        results / "refine" / dataset / model / cam / mask_shard.name.replace("masks_", "boxes_")
    )
    boxes = artifacts.read_boxes([box_shard]) if box_shard.exists() else {}
    manifest_path = results / "data" / dataset / "manifest.parquet"
    manifest = (
        artifacts.read_manifest(manifest_path).set_index("image_id", drop=False)
        if manifest_path.exists()
        else None
    )
    out = []
    for image_id in gallery_ids(sorted(masks), opts["n_images"]):
        soft = decode_png(masks[image_id]["mask_png"]).astype(np.float32) / 255.0
        if manifest is not None and image_id in manifest.index:
            m = manifest.loc[image_id]
            gt = [list(b) for b in m["boxes"]] if m["boxes"] is not None else []
            panel = render_overlay(
                read_rgb(m["abspath"]),
                soft,
                boxes.get(image_id),
                gt,
                image_id,
                opts["size"],
                heat_label=name,
            )
        else:  # no image to draw over: the soft mask alone, as grey levels
            panel = (np.clip(soft, 0, 1) * 255).astype(np.uint8)
        out.append(array_img(panel, image_id))
    trained = ""
    if users:
        trained = (
            '<p class="muted">trained on by '
            + ", ".join(f"{esc(m)}-{esc(v)} ({esc(display_name(v))})" for m, v in users)
            + ' · their coverage: <a href="#side_info">side information</a></p>'
        )
    return (
        f'<h3 id="{gallery_anchor(dataset, model, cam)}">{esc(dataset)} · {esc(model)} · '
        f"{esc(cam)} ({esc(name)})</h3>" + trained + '<div class="grid">' + "".join(out) + "</div>"
    )
