"""One static HTML page summarising a results folder (opens from disk, no network).

Sections, each shown as "not run" when its inputs are missing:

1. configuration (the whole config the rule passes as --cfg);
2. per-stage timings from Snakemake ``benchmark:`` files (results/benchmarks/**/*.tsv);
3. localisation (results/eval/{dataset}/{model}/localization_{cam}.json) beside Table 1;
4. linear evaluation (linear.json, plus the object-crop head of shift.json) beside Table 4;
5. background / distribution shift (shift.json) beside Tables 6, 7 and 8, with a bar chart;
6. training health and, beside every debiased model, the side information it trained
   with (metrics.jsonl ``side_info``: training images covered per source shard, empty);
   training curves (results/models/{dataset}/{model}/metrics.jsonl: loss, kNN accuracy);
7. a gallery of ContraCAM masks and boxes (oacl.overlay.render_overlay).

Models are named {method}-{variant}-s{seed}; accuracies are aggregated as mean +- std
over seeds, and each debiased variant is compared with the ``baseline`` of the same
method and dataset. CSS and PNG plots (matplotlib Agg, base64) are inline.

Snakemake's own report: the ``report`` rule declares its output as
``report("results/report.html", caption=..., category="Report")``; after the run,
``snakemake --report results/snakemake_report.zip`` (or ``.html``) bundles this page
with the workflow's provenance, runtimes and rule graph. This page also stands alone.
"""

from __future__ import annotations

import base64
import datetime as dt
import glob
import html
import io
import json
import logging
import math
import re
from pathlib import Path

import numpy as np

from ..artifacts import BG_CHALLENGE_VARIANTS
from ..io import write_text
from ..params import merge_params
from ..variants import VARIANTS, parse_model  # parse_model: of model folder names
from . import paper_tables

log = logging.getLogger(__name__)

DEFAULTS = {
    "title": "oacl: object-aware contrastive learning - results",
    "gallery": {"n_images": 4, "size": 160, "max_sets": 6},  # per (dataset, model, cam) set
}

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
VARIANT_NAMES = {name: v.display for name, v in VARIANTS.items()}  # in the report's order

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
header{background:#20303f;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#b9c6d3;font-size:13px}
nav{padding:8px 28px;background:#e8ecf0;font-size:13px}nav a{margin-right:14px;color:#20303f}
main{padding:8px 28px 40px}section{background:#fff;border:1px solid #dde2e7;border-radius:6px;padding:12px 18px;margin:14px 0}
h2{font-size:18px;margin:4px 0 10px}h3{font-size:15px;margin:14px 0 6px}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0}th,td{border:1px solid #d5dbe1;padding:3px 7px;text-align:right}
th{background:#eef1f4}th:first-child{text-align:left}
.row{display:flex;gap:22px;flex-wrap:wrap;align-items:flex-start}
.paper{background:#fbf7ec;border:1px dashed #c9b98a;padding:6px 10px;border-radius:4px;font-size:12px}
.paper table{font-size:11.5px}.caveat{color:#8a6d1a;font-weight:600;font-size:11.5px}
.notrun{color:#8a939c;font-style:italic}.pos{color:#1b7a34}.neg{color:#b3261e}.muted{color:#7b858f;font-size:12px}
pre{background:#f1f3f5;padding:8px;font-size:12px;max-height:420px;overflow:auto}
img{max-width:100%}.grid{display:flex;flex-wrap:wrap;gap:8px}.grid img{border:1px solid #ccc}
td.t{text-align:left}
"""


# --------------------------------------------------------------------------- helpers


def mean_std(values) -> tuple[float, float, int]:
    v = [float(x) for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not v:
        return float("nan"), float("nan"), 0
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v)


def fmt_ms(mean: float, std: float, n: int, scale: float = 100.0, digits: int = 2) -> str:
    if n == 0 or math.isnan(mean):
        return "–"
    s = f"{mean * scale:.{digits}f}"
    return s + (f" ± {std * scale:.{digits}f}" if n > 1 else "")


def fmt_delta(d: float, better: str = "↑", scale: float = 100.0) -> str:
    if d is None or math.isnan(d):
        return ""
    good = (d > 0) if better == "↑" else (d < 0)
    cls = "pos" if good else ("neg" if d != 0 else "")
    return f' <span class="{cls}">({d * scale:+.2f})</span>'


def esc(x) -> str:
    return html.escape(str(x))


def table(header: list, rows: list[list], raw: bool = False) -> str:
    """HTML table; cells are escaped unless ``raw`` (already-safe HTML)."""
    cell = (lambda c: str(c)) if raw else esc
    out = ["<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"]
    for r in rows:  # numbers right-aligned, words left-aligned
        out.append(
            "<tr>"
            + "".join(f"<td{'' if _numeric(c) else ' class=t'}>{cell(c)}</td>" for c in r)
            + "</tr>"
        )
    return "".join(out) + "</table>"


def _numeric(c) -> bool:
    return isinstance(c, (int, float)) or bool(re.match(r"^\s*[-+–]?\s*[\d.]", str(c)))


def not_run(what: str) -> str:
    return f'<p class="notrun">not run: {esc(what)}</p>'


def png_img(fig, alt: str) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def array_img(a: np.ndarray, alt: str) -> str:
    from ..io import encode_png

    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(encode_png(a)).decode()}">'


def paper_box(table_id: str) -> str:
    t = paper_tables.TABLES[table_id]
    rows = [
        [c if not isinstance(c, (tuple, float)) else _paper_cell(c) for c in r] for r in t["rows"]
    ]
    return (
        f'<div class="paper"><b>{esc(t["id"])}</b> {esc(t["title"])}<br>'
        f'<span class="caveat">{esc(paper_tables.CAVEAT)}</span>{table(t["columns"], rows)}</div>'
    )


def _paper_cell(c) -> str:
    if isinstance(c, tuple):
        return f"{c[0]:.2f} ± {c[1]:.2f}"
    return f"{c:.3f}" if c < 1 else f"{c:.2f}"


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("report: skipping unreadable %s (%s)", path, exc)
        return None


# --------------------------------------------------------------------------- collection


def eval_files(results: Path, inputs: list[Path] | None) -> list[Path]:
    """The eval JSONs to report: exactly those of ``inputs`` (the report rule's inputs, i.e.
    what the current config asks for) or, without inputs, every one under results/eval/.
    A stale file of a seed or variant no longer configured is then not averaged in."""
    if inputs is None:
        return sorted((results / "eval").glob("*/*/*.json"))
    return sorted(
        p for p in inputs if p.suffix == ".json" and len(p.parts) >= 4 and p.parts[-4] == "eval"
    )


def collect_evals(results: Path, inputs: list[Path] | None = None) -> dict:
    """{'linear': [...], 'shift': [...], 'localization': [...]} records with dataset/model info."""
    out = {"linear": [], "shift": [], "localization": []}
    for path in eval_files(results, inputs):
        dataset, model = path.parent.parent.name, path.parent.name
        kind = path.stem
        cam = None
        if kind.startswith("localization_"):
            kind, cam = "localization", kind[len("localization_") :]
        if kind not in out:
            continue
        data = _read_json(path)
        if data is None:
            continue
        rec = {
            "dataset": dataset,
            "model": model,
            "cam": cam,
            "data": data,
            **(parse_model(model) or {"method": model, "variant": model, "seed": 0}),
        }
        out[kind].append(rec)
    return out


def group(records: list[dict]) -> dict:
    """{dataset: {method: {variant: [records over seeds]}}}."""
    g: dict = {}
    for r in records:
        g.setdefault(r["dataset"], {}).setdefault(r["method"], {}).setdefault(
            r["variant"], []
        ).append(r)
    return g


def variant_order(variants) -> list[str]:
    known = list(VARIANT_NAMES)
    return sorted(variants, key=lambda v: (known.index(v) if v in known else len(known), v))


# --------------------------------------------------------------------------- sections


def section_config(cfg: dict) -> str:
    body = (
        f"<pre>{esc(json.dumps(cfg, indent=2, sort_keys=True))}</pre>"
        if cfg
        else not_run("no config given")
    )
    return f'<section id="config"><h2>Configuration</h2><details><summary>the whole pipeline config (as passed to the report rule)</summary>{body}</details></section>'


def read_benchmarks(results: Path) -> list[dict]:
    import pandas as pd

    rows = []
    root = results / "benchmarks"
    for path in sorted(glob.glob(str(root / "**" / "*.tsv"), recursive=True)):
        rel = Path(path).relative_to(root)
        try:
            df = pd.read_csv(path, sep="\t", na_values=["-", "NA"])
        except Exception as exc:
            log.warning("report: unreadable benchmark %s (%s)", path, exc)
            continue
        if "s" not in df or df.empty:
            continue
        rows.append(
            {
                "rule": rel.parts[0],
                "job": str(Path(*rel.parts[1:]).with_suffix("")) if len(rel.parts) > 1 else "",
                "s": float(df["s"].mean()),
                "max_rss": float(df["max_rss"].mean()) if "max_rss" in df else float("nan"),
                "cpu_time": float(df["cpu_time"].mean()) if "cpu_time" in df else float("nan"),
            }
        )
    return rows


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
            _mb(max((r["max_rss"] for r in rs), default=float("nan"))),
        ]
        for rule, rs in per_rule.items()
    ]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(per_rule)
    totals = [sum(r["s"] for r in per_rule[n]) for n in names]
    fig, ax = plt.subplots(figsize=(6.5, 0.35 * len(names) + 0.9))
    ax.barh(names, totals, color="#4a78a8")
    ax.set_xlabel("total wall time (s)")
    ax.invert_yaxis()
    detail = table(
        ["rule", "job (wildcards)", "wall s", "max RSS MB", "CPU s"],
        [
            [r["rule"], r["job"], f"{r['s']:.1f}", _mb(r["max_rss"]), _num(r["cpu_time"])]
            for r in rows
        ],
    )
    return (
        f'<section id="timings"><h2>Stage timings</h2><div class="row"><div>'
        f"{table(['rule', 'jobs', 'total s', 'max s', 'max RSS MB'], summary)}</div><div>{png_img(fig, 'timings')}</div></div>"
        f"<details><summary>every job ({len(rows)})</summary>{detail}</details>"
        f'<p class="muted">From Snakemake benchmark: files (mean over repeats).</p></section>'
    )


def _mb(x: float) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.0f}"


def _num(x: float) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.1f}"


LOC_METRICS = [
    ("mask_miou", "mask mIoU @0.5"),
    ("best_threshold_miou", "mIoU @best thr"),
    ("pixel_auc", "pixel AUC"),
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


def section_localization(evals: dict) -> str:
    recs = sorted(evals["localization"], key=lambda r: (r["dataset"], r["model"], r["cam"]))
    if not recs:
        body = not_run("no localization_*.json under results/eval/")
    else:
        rows, alerts, refs_done = [], [], set()

        def row(r, model, label, metrics):  # one map's line of the table
            return (
                [r["dataset"], model, label]
                + [_loc(metrics.get(k)) for k, _ in LOC_METRICS]
                + [
                    _loc(metrics.get("gt_area")),
                    r["data"].get("n_images", ""),
                    r["data"].get("protocol", "oacl"),
                ]
            )

        for r in recs:
            m = r["data"].get("metrics", {})
            cc = m.get("contracam", {})
            method = r["data"].get("cam_method", "contracam")
            rows.append(row(r, r["model"], f"{r['cam']} ({method})", cc))
            if "cam_mean" in m:  # this configuration's own average map: its positional prior
                rows.append(row(r, r["model"], f"{r['cam']} mean map (reference)", m["cam_mean"]))
            if r["dataset"] not in refs_done:  # same test images for every configuration
                refs_done.add(r["dataset"])
                rows += [
                    row(r, "–", label, m[ref]) for ref, label in REFERENCE_NAMES.items() if ref in m
                ]
            for key, label in LOC_CHECKED:
                best = [
                    (m[ref][key], ref)
                    for ref in [*REFERENCE_NAMES, "cam_mean"]
                    if key in m.get(ref, {})
                ]
                if key in cc and best and cc[key] <= max(best)[0]:
                    value, ref = max(best)
                    alerts.append(
                        f"{esc(r['dataset'])} · {esc(r['model'])} · {esc(r['cam'])}: {label} "
                        f"{cc[key]:.3f} ≤ {esc(ref)} {value:.3f}"
                    )
        body = table(
            ["dataset", "model", "map"]
            + [n for _, n in LOC_METRICS]
            + ["GT area", "images", "mask protocol"],
            rows,
        )
        if alerts:
            body = (
                '<p class="neg"><b>Below the best trivial reference (a map that knows nothing about '
                "objects):</b><br>" + "<br>".join(alerts) + "</p>" + body
            )
        else:
            body = (
                '<p class="pos">Every configuration beats the trivial references on raw mIoU, CRF mIoU and AUC.</p>'
                + body
            )
        body += (
            '<p class="muted">References are scored on the same images by the same code; "CRF mask mIoU" of a '
            "reference is its map refined by the same dense CRF as the CAM masks. *_nonsr configurations "
            'switch negative-signal removal off (the "w/o" row of Table 1); method ncut is the normalised-cut '
            "localiser on the same backbone (oacl/cam/ncut.py), classifier the Grad-CAM of a supervised model "
            "(Table 2). A configuration's mean map is the average of its own maps over the same images: "
            "the positional prior it carries (e.g. a centre blob from zero padding); a CAM that does not "
            "beat it says nothing about the individual image.</p>"
        )
        body += (
            '<p class="muted">Mask protocol: "paper" = the authors\' scoring (per image at 224x224, '
            "every predicted pixel above zero after dropping components under 0.1 %; comparable with "
            'Table 1), "oacl" = masks at the original size binarised at 0.5 (docs/datasets.md).</p>'
        )
    return (
        f'<section id="localization"><h2>Object localisation (ContraCAM)</h2>'
        f'<div class="row"><div>{body}</div>{paper_box("Table 1")}</div></section>'
    )


HEALTH_CHANCE_RATIO = 0.95  # final loss above this share of chance: "has not left chance"


def section_health(metrics: dict) -> str:
    """Has each model left chance, and does it rely on the object (oacl.train.health)?"""
    rows, alerts = [], []
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
                    _loc(loss),
                    _loc(chance),
                    _loc(ratio),
                    _loc(knn),
                    _loc(rel.get("cos_only_fg")),
                    _loc(rel.get("cos_only_bg_t")),
                ]
            )
            if ratio is not None and ratio > HEALTH_CHANCE_RATIO:
                alerts.append(
                    f"{esc(dataset)} · {esc(model)}: loss {loss:.3f} is within "
                    f"{100 * (1 - HEALTH_CHANCE_RATIO):.0f}% of chance ({chance:.3f})"
                )
            if rel and rel["cos_only_bg_t"] >= rel["cos_only_fg"]:
                alerts.append(
                    f"{esc(dataset)} · {esc(model)}: relies on the background "
                    f"(cos to only_bg_t {rel['cos_only_bg_t']:.3f} ≥ to only_fg {rel['cos_only_fg']:.3f})"
                )
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
    if alerts:
        body = (
            '<p class="neg"><b>Warnings</b> (a model that feeds ContraCAM must have left chance and look at the '
            "object):<br>" + "<br>".join(alerts) + "</p>" + body
        )
    body += (
        '<p class="muted">Chance loss: ln(1 + queue) for MoCo, ln(classes) for supervised. The cosines compare the '
        "encoder's features of a test image with its object removed (only_bg_t) and its background removed "
        "(only_fg).</p>"
    )
    return f'<section id="health"><h2>Training health</h2>{body}</section>'


def _loc(x) -> str:
    return "–" if x is None else f"{float(x):.3f}"


def side_info_of(recs: list) -> dict | None:
    """The ``side_info`` of a model's metrics.jsonl (on its first line), or None."""
    return next((r["side_info"] for r in recs if isinstance(r.get("side_info"), dict)), None)


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
                    rows.append([esc(dataset), esc(model), esc(spec.display)] + ["–"] * 5)
                    rows[-1][-1] = '<span class="neg">not recorded</span>'
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
                base_oc = mean_std(_objcrop(r) for r in sv.get("baseline", []))
                for variant in variant_order(set(lv) | set(sv)):
                    a = mean_std(r["data"].get("test_acc") for r in lv.get(variant, []))
                    o = mean_std(_objcrop(r) for r in sv.get(variant, []))
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


def _objcrop(r):
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
            charts.append(
                _shift_chart(dataset, method, [s for s in order if s != "bg_gap"], variants, cells)
            )
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


def _shift_chart(dataset, method, sets, variants, cells) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(sets) + 1.5), 3.0))
    width = 0.8 / max(1, len(variants))
    x = np.arange(len(sets))
    for i, v in enumerate(variants):
        means = [cells[(s, v)][0] * 100 for s in sets]
        stds = [cells[(s, v)][1] * 100 for s in sets]
        ax.bar(
            x + (i - (len(variants) - 1) / 2) * width,
            means,
            width,
            yerr=stds,
            capsize=2,
            label=VARIANT_NAMES.get(v, v),
        )
    ax.set_xticks(x, sets, rotation=25, ha="right")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{dataset} · {method}: accuracy per test variant", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return png_img(fig, f"accuracy per variant {dataset} {method}")


def metrics_files(results: Path, inputs: list[Path] | None) -> list[Path]:
    """metrics.jsonl beside each model.pt of ``inputs`` (or every one under results/models/)."""
    if inputs is None:
        return sorted((results / "models").glob("*/*/metrics.jsonl"))
    return sorted(p.with_name("metrics.jsonl") for p in inputs if p.name == "model.pt")


def read_metrics(results: Path, inputs: list[Path] | None = None) -> dict:
    """{dataset: {model: [records]}} from results/models/*/*/metrics.jsonl."""
    out: dict = {}
    for path in metrics_files(results, inputs):
        if not path.exists():
            continue
        recs = []
        for line in path.read_text().splitlines():
            try:
                recs.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line being written when we read
        if recs:
            out.setdefault(path.parent.parent.name, {})[path.parent.name] = recs
    return out


def section_curves(results: Path, inputs: list[Path] | None = None) -> str:
    metrics = read_metrics(results, inputs)
    if not metrics:
        return f'<section id="curves"><h2>Training curves</h2>{not_run("no metrics.jsonl under results/models/")}</section>'
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    imgs = []
    for dataset, models in metrics.items():
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.2))
        for model, recs in sorted(models.items()):
            xs = [r.get("epoch", i + 1) for i, r in enumerate(recs)]
            a1.plot(
                xs,
                [r.get("loss") if r.get("loss") is not None else np.nan for r in recs],
                marker=".",
                label=model,
            )
            knn = [(x, r["knn_acc"]) for x, r in zip(xs, recs) if r.get("knn_acc") is not None]
            if knn:
                a2.plot(*zip(*knn), marker="o", label=model)
        a1.set(title=f"{dataset}: training loss", xlabel="epoch", ylabel="loss")
        a2.set(title=f"{dataset}: kNN accuracy (val)", xlabel="epoch", ylabel="accuracy")
        for a in (a1, a2):
            a.grid(alpha=0.3)
            if a.lines:
                a.legend(fontsize=7)
        imgs.append(png_img(fig, f"training curves {dataset}"))
    return f'<section id="curves"><h2>Training curves</h2>{"".join(imgs)}</section>'


def section_gallery(results: Path, opts: dict, inputs: list[Path] | None = None) -> str:
    if inputs is None:
        sets = [Path(d) for d in sorted(glob.glob(str(results / "cam" / "*" / "*" / "*")))]
    else:  # the CAM folders whose mask shards are among the inputs
        sets = sorted(
            {p.parent for p in inputs if p.name.startswith("masks_") and p.suffix == ".parquet"}
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
        try:
            parts.append(
                f"<h3>{esc(dataset)} · {esc(model)} · {esc(cam)}</h3>"
                + _gallery_set(results, dataset, model, cam, shards[0], opts)
            )
        except Exception as exc:  # a gallery problem must not lose the rest of the report
            log.warning("report: gallery for %s failed: %s", d, exc)
            parts.append(
                f"<h3>{esc(d.name)}</h3><p class='notrun'>could not render: {esc(exc)}</p>"
            )
    body = "".join(parts) if parts else not_run("no ContraCAM mask shards under results/cam/")
    return (
        f'<section id="gallery"><h2>Masks and boxes</h2>{body}'
        '<p class="muted">Panels: predicted boxes (green) and GT boxes (yellow) | ContraCAM soft mask | '
        "CRF mask with the background-mixup rectangle (cyan).</p></section>"
    )


def _gallery_set(results, dataset, model, cam, mask_shard: Path, opts) -> str:
    from .. import artifacts
    from ..io import decode_png, read_rgb

    masks = artifacts.read_masks([mask_shard])
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
    try:
        from ..overlay import gallery_ids, render_overlay
    except ImportError:
        gallery_ids, render_overlay = None, None
    ids = sorted(masks)
    ids = gallery_ids(ids, opts["n_images"]) if gallery_ids else ids[: opts["n_images"]]
    out = []
    for image_id in ids:
        soft = decode_png(masks[image_id]["mask_png"]).astype(np.float32) / 255.0
        if manifest is not None and image_id in manifest.index and render_overlay is not None:
            m = manifest.loc[image_id]
            gt = [list(b) for b in m["boxes"]] if m["boxes"] is not None else []
            panel = render_overlay(
                read_rgb(m["abspath"]), soft, boxes.get(image_id), gt, image_id, opts["size"]
            )
        else:  # no image to draw over: the soft mask alone, as grey levels
            panel = (np.clip(soft, 0, 1) * 255).astype(np.uint8)
        out.append(array_img(panel, image_id))
    return '<div class="grid">' + "".join(out) + "</div>"


# --------------------------------------------------------------------------- page


def render_report(cfg: dict, results, inputs=None) -> str:
    """The whole page as a string. ``inputs``: the files to report on (the report rule's
    inputs: eval JSONs, model.pt, mask/box shards); None: everything under ``results``."""
    results = Path(results)
    inputs = None if inputs is None else [Path(p) for p in inputs]
    opts = merge_params(DEFAULTS, (cfg or {}).get("report", {}), where="report cfg")
    evals = collect_evals(results, inputs)
    sections = [
        ("config", "Configuration", lambda: section_config(cfg)),
        ("timings", "Timings", lambda: section_timings(results)),
        ("localization", "Localisation", lambda: section_localization(evals)),
        ("linear", "Linear", lambda: section_linear(evals)),
        ("shift", "Shift", lambda: section_shift(evals)),
        ("health", "Training health", lambda: section_health(read_metrics(results, inputs))),
        (
            "side_info",
            "Side information",
            lambda: section_side_info(read_metrics(results, inputs)),
        ),
        ("curves", "Training curves", lambda: section_curves(results, inputs)),
        ("gallery", "Gallery", lambda: section_gallery(results, opts["gallery"], inputs)),
    ]
    body = []
    for sid, title, make in sections:
        try:
            body.append(make())
        except Exception as exc:  # one broken input must not cost the whole report
            log.exception("report: section %s failed", sid)
            body.append(
                f'<section id="{sid}"><h2>{esc(title)}</h2><p class="notrun">failed: {esc(exc)}</p></section>'
            )
    nav = "".join(f'<a href="#{sid}">{esc(t)}</a>' for sid, t, _ in sections)
    stamp = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(opts["title"])}</title>'
        f"<style>{CSS}</style></head><body><header><h1>{esc(opts['title'])}</h1>"
        f"<p>results: {esc(results.resolve())} · generated {stamp}</p></header><nav>{nav}</nav>"
        f"<main>{''.join(body)}</main></body></html>\n"
    )


def write_report(cfg: dict, results, out, inputs=None) -> None:
    write_text(out, render_report(cfg, results, inputs))
