"""Report sections on the evaluation results (results/eval/): localisation beside
Table 1, linear evaluation beside Table 4, background and distribution shift beside
Tables 6, 7 and 8. Accuracies are mean +- std over seeds; each debiased variant is
compared with the ``baseline`` of the same method and dataset."""

from __future__ import annotations

import logging

from ..artifacts import BG_CHALLENGE_VARIANTS
from . import figures, paper_tables, sections_loc
from .html import esc, fmt3, fmt_delta, fmt_ms, not_run, paper_box, png_img, table
from .readers import VARIANT_NAMES, group, mean_std, variant_order
from .sections_loc import fmt_content

log = logging.getLogger(__name__)

LOC_METRICS = [
    ("mask_miou", "mask mIoU @0.5"),
    ("best_threshold_miou", "mIoU @best thr"),
    ("pixel_auc", "pixel AUC"),
    ("auc_rot180", "AUC turned 180°"),
    ("shuffled_auc", "shuffled AUC"),
    ("content_auc", "content AUC [95% CI]"),
    ("pointing", "pointing"),
    ("mass_inside", "mass in GT"),
    ("pred_area", "area >0.5"),
    ("maxboxacc_v2", "MaxBoxAccV2"),
    ("crf_mask_miou", "CRF mask mIoU"),
    ("box_miou", "box mIoU"),
]


# compared with the best trivial reference in the summary (raw, after the same CRF, ranking)
LOC_CHECKED = [
    ("mask_miou", "raw mask mIoU"),
    ("crf_mask_miou", "CRF mask mIoU"),
    ("pixel_auc", "pixel AUC"),
]


REFERENCE_NAMES = {
    "gaussian": "centred Gaussian (reference)",
    "colour": "colour distance to border (reference)",
}

LOC_NOTES = (
    '<p class="muted">References are scored on the same images by the same code; "CRF mask mIoU" of a '
    "reference is its map refined by the same dense CRF as the CAM masks. *_nonsr configurations "
    'switch negative-signal removal off (the "w/o" row of Table 1); method ncut is the normalised-cut '
    "localiser on the same backbone (oacl/cam/ncut.py), classifier the Grad-CAM of a supervised model "
    "(Table 2). A configuration's mean map is the average of its own maps over the same images: "
    "the positional prior it carries (e.g. a centre blob from zero padding); a CAM that does not "
    "beat it says nothing about the individual image.</p>"
    '<p class="muted">Content AUC: per image, the pixel AUC minus the shuffled AUC (the same map '
    "scored against the GT masks of 10 other test images: what its placement alone earns, the "
    "centre-bias correction of saliency evaluation, Borji et al. 2013), mean over images with a "
    "95 % bootstrap interval over images; ~0 for a map that ignores the image. AUC turned 180°: "
    "the map rotated by 180 degrees; higher than upright when the map marks the background away "
    "from the object.</p>"
    '<p class="muted">Mask protocol: "paper" = the authors\' scoring (per image at 224x224, '
    "every predicted pixel above zero after dropping components under 0.1 %; comparable with "
    'Table 1), "oacl" = masks at the original size binarised at 0.5 (docs/datasets.md).</p>'
)


def section_localization(
    evals: dict, cfg: dict | None = None, metrics: dict | None = None, gallery=None
) -> str:
    """Per dataset (sections_loc): its table, fair-test checks, losses against chance and
    ``gallery(dataset)`` (HTML, gallery_loc); then the full table of every metric of every
    map, the over-seeds content table and the notes. ``metrics``: read_metrics' records."""
    recs = sorted(evals["localization"], key=lambda r: (r["dataset"], r["model"], r["cam"]))
    if not recs:
        body = not_run("no localization_*.json under results/eval/")
    else:
        blocks = []
        for dataset in sorted({r["dataset"] for r in recs}):
            mine = [r for r in recs if r["dataset"] == dataset]
            models = (metrics or {}).get(dataset)
            blocks.append(
                sections_loc.dataset_block(dataset, mine, cfg, models, _gallery(gallery, dataset))
            )
        body = (
            "".join(blocks)
            + "<details><summary>every metric of every map (full table, content AUC over "
            "seeds)</summary>"
            + full_table(recs)
            + content_over_seeds(recs)
            + "</details>"
            + LOC_NOTES
        )
    return (
        f'<section id="localization"><h2>Object localisation (ContraCAM)</h2>'
        f'<div class="row"><div>{body}</div><div>{sections_loc.margins_box()}'
        f"{paper_box('Table 1')}</div></div></section>"
    )


def _gallery(gallery, dataset: str) -> str:
    """``gallery(dataset)``, or a line saying why not: a broken shard must not cost the tables."""
    if gallery is None:
        return ""
    try:
        return gallery(dataset)
    except Exception as exc:
        log.warning("report: localisation gallery of %s failed: %s", dataset, exc)
        return f'<p class="notrun">gallery: could not render: {esc(exc)}</p>'


def full_table(recs: list) -> str:
    """Every metric of every map, one row per (dataset, model, cam), with the
    configurations that do not beat the best trivial reference listed in red above."""
    rows, alerts, refs_done = [], [], set()
    for r in recs:
        m = r["data"].get("metrics", {})
        cc = m.get("contracam", {})
        method = r["data"].get("cam_method", "contracam")
        rows.append(_loc_row(r, r["model"], f"{r['cam']} ({method})", cc))
        if "cam_mean" in m:  # this configuration's own average map: its positional prior
            rows.append(_loc_row(r, r["model"], f"{r['cam']} mean map (reference)", m["cam_mean"]))
        if r["dataset"] not in refs_done:  # same test images for every configuration
            refs_done.add(r["dataset"])
            rows += [
                _loc_row(r, "–", label, m[ref])
                for ref, label in REFERENCE_NAMES.items()
                if ref in m
            ]
        alerts += [esc(a) for a in below_references(r, m, cc)]
    body = table(
        ["dataset", "model", "map"]
        + [n for _, n in LOC_METRICS]
        + ["GT area", "images", "mask protocol"],
        rows,
    )
    if alerts:
        return (
            '<p class="neg"><b>Below the best trivial reference (a map that knows nothing about '
            "objects):</b><br>" + "<br>".join(alerts) + "</p>" + body
        )
    return (
        '<p class="pos">Every configuration beats the trivial references on raw mIoU, CRF mIoU '
        "and AUC.</p>" + body
    )


def _loc_row(r, model, label, metrics) -> list:
    """One map's line of the localisation table."""
    return (
        [r["dataset"], model, label]
        + [
            fmt_content(metrics) if k == "content_auc" else fmt3(metrics.get(k))
            for k, _ in LOC_METRICS
        ]
        + [
            fmt3(metrics.get("gt_area")),
            r["data"].get("n_images", ""),
            r["data"].get("protocol", "oacl"),
        ]
    )


def content_over_seeds(recs: list) -> str:
    """Per configuration run over several seeds (models differing only in ``-s<N>``): each
    seed's content AUC [95 % CI over images] and mean ± std over seeds, for the CAM and its
    mean map; "" when no configuration has two seeds."""
    by_config: dict = {}
    for r in recs:
        key = (r["dataset"], r.get("method"), r.get("variant"), r["cam"])
        by_config.setdefault(key, []).append(r)
    rows = []
    for (dataset, method, variant, cam), rs in sorted(by_config.items(), key=str):
        if len(rs) < 2:
            continue
        rs = sorted(rs, key=lambda r: r.get("seed", 0))
        for name, label in (("contracam", cam), ("cam_mean", f"{cam} mean map")):
            ms = [r["data"].get("metrics", {}).get(name, {}) for r in rs]
            if not any("content_auc" in m for m in ms):
                continue
            mean, std, n = mean_std(m.get("content_auc") for m in ms)
            per_seed = "; ".join(
                f"s{r.get('seed', '?')}: {fmt_content(m)}" for r, m in zip(rs, ms, strict=True)
            )
            rows.append(
                [dataset, method, variant, label, per_seed, fmt_ms(mean, std, n, 1.0, 3), n]
            )
    if not rows:
        return ""
    return "<h3>Content AUC over seeds</h3>" + table(
        [
            "dataset",
            "method",
            "variant",
            "map",
            "per seed [95% CI over images]",
            "mean ± std over seeds",
            "seeds",
        ],
        rows,
    )


def below_references(r, m: dict, cc: dict) -> list[str]:
    """The LOC_CHECKED metrics where ContraCAM (``cc``) does not beat the best reference
    (plain text, one line each)."""
    alerts = []
    for key, label in LOC_CHECKED:
        best = [
            (m[ref][key], ref) for ref in [*REFERENCE_NAMES, "cam_mean"] if key in m.get(ref, {})
        ]
        if key in cc and best and cc[key] <= max(best)[0]:
            value, ref = max(best)
            alerts.append(
                f"{r['dataset']} · {r['model']} · {r['cam']}: {label} "
                f"{cc[key]:.3f} ≤ {ref} {value:.3f}"
            )
    return alerts


BG_ORDER = list(BG_CHALLENGE_VARIANTS)


SHIFT_ORDER = ["sketch", "corrupted", "stylized"]


BETTER = {
    "original": "↑",
    "only_fg": "↑",
    "mixed_same": "↑",
    "mixed_rand": "↑",
    "mixed_next": "↑",
    "only_bg_b": "↓",
    "only_bg_t": "↓",
    "bg_gap": "↓",
    "sketch": "↑",
    "corrupted": "↑",
    "stylized": "↑",
}


def section_linear(evals: dict) -> str:
    lin, sh = group(evals["linear"]), group(evals["shift"])
    if not lin and not sh:
        body = not_run("no linear.json / shift.json under results/eval/")
    else:
        rows = []
        for dataset in sorted(set(lin) | set(sh)):
            for method in sorted(set(lin.get(dataset, {})) | set(sh.get(dataset, {}))):
                lv, sv = lin.get(dataset, {}).get(method, {}), sh.get(dataset, {}).get(method, {})
                base_lin = mean_std(r["data"].get("test_acc") for r in lv.get("baseline", []))
                base_oc = mean_std(objcrop_acc(r) for r in sv.get("baseline", []))
                for variant in variant_order(set(lv) | set(sv)):
                    a = mean_std(r["data"].get("test_acc") for r in lv.get(variant, []))
                    o = mean_std(objcrop_acc(r) for r in sv.get(variant, []))
                    lam = [r["data"].get("lambda") for r in lv.get(variant, [])]
                    rows.append(
                        [
                            esc(dataset),
                            esc(method),
                            esc(VARIANT_NAMES.get(variant, variant)),
                            _cell(a, base_lin, variant),
                            _cell(o, base_oc, variant),
                            max(a[2], o[2]),
                            esc(", ".join(f"{x:.0e}" for x in lam if x is not None)),
                        ]
                    )
        body = table(
            [
                "dataset",
                "method",
                "variant",
                "linear test acc %",
                "object-crop acc %",
                "seeds",
                "λ chosen",
            ],
            rows,
            raw=True,
        )
        body += (
            '<p class="muted">mean ± std over pretraining seeds; (Δ) versus the baseline of the same method. '
            "Object-crop accuracy: head trained/tested on objcrop_* splits (COCO-Crop analogue).</p>"
        )
    return (
        f'<section id="linear"><h2>Linear evaluation</h2><div class="row"><div>{body}</div>'
        f"{paper_box('Table 4')}</div></section>"
    )


def objcrop_acc(r):
    oc = r["data"].get("objcrop")
    return None if not oc else oc.get("test_acc")


def _cell(ms, base, variant, better="↑") -> str:
    s = fmt_ms(*ms)
    if variant != "baseline" and ms[2] and base[2]:
        s += fmt_delta(ms[0] - base[0], better)
    return s


def shift_rows(records_by_variant: dict) -> tuple[list[str], list[str], dict]:
    """(eval sets present, model variants, {(eval set, variant): (mean, std, n)})."""
    variants = variant_order(records_by_variant)
    sets_present = set()
    cells = {}
    for v, recs in records_by_variant.items():
        for r in recs:
            sets_present |= set(r["data"].get("accuracy", {}))
        for s in BG_ORDER + SHIFT_ORDER:
            cells[(s, v)] = mean_std(r["data"].get("accuracy", {}).get(s) for r in recs)
        cells[("bg_gap", v)] = mean_std(r["data"].get("bg_gap") for r in recs)
    order = [s for s in BG_ORDER if s in sets_present]
    if "mixed_same" in sets_present and "mixed_rand" in sets_present:
        order.append("bg_gap")
    order += [s for s in SHIFT_ORDER if s in sets_present]
    return order, variants, cells


def section_shift(evals: dict) -> str:
    sh = group(evals["shift"])
    parts, charts = [], []
    for dataset in sorted(sh):
        for method in sorted(sh[dataset]):
            order, variants, cells = shift_rows(sh[dataset][method])
            if not order:
                continue
            rows = []
            for s in order:
                better = BETTER.get(s, "↑")
                base = cells.get((s, "baseline"), (float("nan"), 0, 0))
                rows.append(
                    [f"{esc(s)} {better}"]
                    + [_cell(cells[(s, v)], base, v, better) for v in variants]
                )
            n = max(len(r) for r in sh[dataset][method].values())
            skipped = sorted(
                {
                    x
                    for rs in sh[dataset][method].values()
                    for r in rs
                    for x in r["data"].get("skipped", [])
                }
            )
            parts.append(
                f"<h3>{esc(dataset)} · {esc(method)} <span class='muted'>(up to {n} seed(s))</span></h3>"
                + table(["test set"] + [VARIANT_NAMES.get(v, v) for v in variants], rows, raw=True)
                + (
                    f'<p class="muted">absent from the manifest: {esc(", ".join(skipped))}</p>'
                    if skipped
                    else ""
                )
            )
            charts.append(_shift_chart(dataset, method, order, variants, cells))
    if not parts:
        body = not_run("no shift.json under results/eval/")
    else:
        body = "".join(parts) + "".join(charts)
        body += (
            '<p class="muted">Head trained on the original training split, tested unchanged on every variant. '
            "BG-Gap = acc(mixed_same) − acc(mixed_rand). Synthetic stand-ins: "
            + esc(", ".join(f"{k} ≈ {v}" for k, v in paper_tables.SHIFT_ANALOGUES.items()))
            + ".</p>"
        )
    papers = paper_box("Table 7") + paper_box("Table 8") + paper_box("Table 6")
    return (
        f'<section id="shift"><h2>Background and distribution shift</h2><div class="row"><div>{body}</div>'
        f"<div>{papers}</div></div></section>"
    )


def _shift_chart(dataset, method, order, variants, cells) -> str:
    """Accuracy (%) per test set (BG-Gap left out), one bar per model variant."""
    sets = [s for s in order if s != "bg_gap"]
    series = [
        (
            VARIANT_NAMES.get(v, v),
            [cells[(s, v)][0] * 100 for s in sets],
            [cells[(s, v)][1] * 100 for s in sets],
        )
        for v in variants
    ]
    fig = figures.bar_chart(f"{dataset} · {method}: accuracy per test variant", sets, series)
    return png_img(fig, f"accuracy per variant {dataset} {method}")
