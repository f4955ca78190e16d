"""The localisation section's per-dataset view, for a reader to grasp at a glance: per
dataset (with its placement), one table of every CAM configuration (mean ± std over
seeds, each seed below) beside the references and controls; the fair-test checks
(fair_test.py); each model's final training loss against its chance loss; and a box with
the paper-scale margins over a centred prior. sections_eval.section_localization puts
these together with the full table of every metric and the gallery (gallery_loc.py)."""

from __future__ import annotations

import math

from ..variants import parse_model
from . import fair_test, paper_tables
from .html import esc, fmt3, fmt_ms, table
from .readers import VARIANT_NAMES, cam_method, mean_std, method_name, variant_order

# (key in a map's metrics, column header) of the per-dataset tables
KEY_METRICS = [
    ("pixel_auc", "pixel AUC"),
    ("shuffled_auc", "shuffled AUC"),
    ("content_auc", "content AUC [95% CI] · mean ± std over seeds"),
    ("mask_miou", "mask mIoU"),
    ("maxboxacc_v2", "MaxBoxAccV2"),
]

# the references the evaluation scores on every image, in the order shown
IMAGE_BLIND = [("gaussian", "centred Gaussian"), ("colour", "colour map (distance to border)")]


def fmt_content(metrics: dict) -> str:
    """content_auc with its 95 % bootstrap interval over images: ``0.069 [0.049, 0.089]``."""
    value = metrics.get("content_auc")
    if value is None:
        return "–"
    lo, hi = metrics.get("content_auc_ci95") or (None, None)
    return fmt3(value) + ("" if lo is None else f" [{lo:.3f}, {hi:.3f}]")


def placement_of(cfg: dict | None, dataset: str) -> str | None:
    """The dataset's placement (``datasets.<ds>.placement``, default centred), or None
    when the config does not describe the dataset (a report run without its config)."""
    entry = ((cfg or {}).get("datasets") or {}).get(dataset)
    return entry.get("placement", "centred") if isinstance(entry, dict) else None


def config_groups(recs: list, cfg: dict | None) -> dict:
    """{(cam method, model method, variant, cam): [records sorted by seed]}."""
    groups: dict = {}
    for r in recs:
        key = (
            cam_method(cfg, r["cam"], r["data"].get("cam_method")),
            r["method"],
            r["variant"],
            r["cam"],
        )
        groups.setdefault(key, []).append(r)
    return {k: sorted(v, key=lambda r: r.get("seed", 0)) for k, v in groups.items()}


def _ordered(groups: dict, cam_method_: str, cams: list) -> list:
    """The keys of one cam method: by variant (baseline first), method, configured cam order."""
    keys = [k for k in groups if k[0] == cam_method_]
    variants = variant_order({k[2] for k in keys})
    return sorted(
        keys,
        key=lambda k: (
            variants.index(k[2]),
            k[1],
            cams.index(k[3]) if k[3] in cams else len(cams),
            k[3],
        ),
    )


def _model_desc(recs: list) -> str:
    if len(recs) == 1:
        return recs[0]["model"]
    r = recs[0]
    return f"{r['method']}-{r['variant']} · seeds " + ", ".join(str(x.get("seed")) for x in recs)


def _variant(variant: str) -> str:
    """`` · BG-HardMix (GT)`` for a debiased model's row, nothing for the baseline."""
    return "" if variant == "baseline" else f" · {VARIANT_NAMES.get(variant, variant)}"


def _cell(m: dict, key: str) -> str:
    return fmt_content(m) if key == "content_auc" else fmt3(m.get(key))


def map_rows(label: str, recs: list, name: str, model: str | None = None) -> list[list]:
    """The rows of map ``name`` (contracam, cam_mean, gaussian, ...) of ``recs`` (one per
    seed): one row; over several seeds, mean ± std (ddof 1) and one muted row per seed.
    ``model``: the model column's text (default: the records' models)."""
    ms = [(r, r["data"].get("metrics", {}).get(name)) for r in recs]
    ms = [(r, m) for r, m in ms if m]
    if not ms:
        return []
    if len(ms) == 1:
        r, m = ms[0]
        desc = _model_desc(recs) if model is None else model
        return [[esc(label), esc(desc), *[esc(_cell(m, k)) for k, _ in KEY_METRICS]]]
    rows = [
        [
            f"<b>{esc(label)}</b>",
            esc(_model_desc([r for r, _ in ms])),
            *[fmt_ms(*mean_std(m.get(k) for _, m in ms), 1.0, 3) for k, _ in KEY_METRICS],
        ]
    ]
    for r, m in ms:
        rows.append(
            [f'<span class="muted">└ seed {esc(r.get("seed"))}</span>', esc(r["model"])]
            + [f'<span class="muted">{esc(_cell(m, k))}</span>' for k, _ in KEY_METRICS]
        )
    return rows


def dataset_table(recs: list, cfg: dict | None, cams: list) -> str:
    """One dataset's table: its CAM configurations, then the references and controls."""
    groups = config_groups(recs, cfg)
    control = all(k[0] == "classifier" for k in groups)
    rows = []
    cams_cc = _ordered(groups, "contracam", cams)
    for k in cams_cc:
        rows += map_rows(f"{method_name(k[0])} {k[3]}{_variant(k[2])}", groups[k], "contracam")
    # the image-blind maps are the same for every configuration on the same test images
    first = groups[cams_cc[0]][0] if cams_cc else recs[0]
    for name, label in IMAGE_BLIND:
        rows += map_rows(f"{label} (reference)", [first], name, "– (no model)")
    for k in cams_cc:
        label = f"{k[3]}{_variant(k[2])} mean map (its own prior; reference)"
        rows += map_rows(label, groups[k], "cam_mean")
    for k in _ordered(groups, "ncut", cams):
        rows += map_rows(f"{method_name(k[0])} {k[3]} (reference)", groups[k], "contracam")
    for k in _ordered(groups, "classifier", cams):
        role = "positive control" if control else "reference"
        rows += map_rows(f"{method_name(k[0])} {k[3]} ({role})", groups[k], "contracam")
    return table(["map", "model"] + [h for _, h in KEY_METRICS], rows, raw=True)


def _verdict(held, verdicts: bool) -> str:
    if not verdicts:
        return '<span class="muted">no verdict (not free placement)</span>'
    if held is None:
        return '<span class="notrun">not measured</span>'
    return '<span class="pos">held</span>' if held else '<span class="neg">not held</span>'


def checks_block(title: str, checks: list, verdicts: bool) -> str:
    rows = [
        [esc(c["name"]), esc(c["measured"]), esc(c["threshold"]), _verdict(c["held"], verdicts)]
        for c in checks
    ]
    held = sum(c["held"] is True for c in checks)
    summary = f" · {held} of {len(checks)} held" if verdicts else " · numbers only"
    return f"<h4>{esc(title)}{esc(summary)}</h4>" + table(
        ["check", "measured", "threshold", "verdict"], rows, raw=True
    )


def fair_groups(recs: list, cfg: dict | None) -> list[tuple]:
    """(key, iter1 records, iter1_nonsr records) of every ContraCAM FAIR_CAM configuration
    of one dataset's records (any number of seeds): what the fair test and the claims
    table (claims.py) both read."""
    groups = config_groups(recs, cfg)
    return [
        (k, groups[k], groups.get((k[0], k[1], k[2], fair_test.NONSR_CAM), []))
        for k in _ordered(groups, "contracam", [])
        if k[3] == fair_test.FAIR_CAM
    ]


def dataset_checks(recs: list, cfg: dict | None, placement: str | None) -> str:
    """The fair test of every ContraCAM iter1 configuration run over >= 2 seeds and the
    positive control of a table whose only CAMs are supervised Grad-CAM; verdicts on
    free placement only."""
    groups = config_groups(recs, cfg)
    verdicts = placement == "free"
    if groups and all(k[0] == "classifier" for k in groups):
        control = [r for v in groups.values() for r in v]
        return checks_block("Positive control", fair_test.control_checks(control), verdicts)
    parts = []
    for k, iter1, nonsr in fair_groups(recs, cfg):
        if len(iter1) < 2:
            continue
        title = f"Fair test: {k[1]}-{k[2]} {method_name(k[0])} {k[3]} over {len(iter1)} seeds"
        parts.append(checks_block(title, fair_test.fair_checks(iter1, nonsr), verdicts))
    if not parts and verdicts:
        return (
            '<p class="notrun">fair test not run: it needs ContraCAM '
            f"{esc(fair_test.FAIR_CAM)} over at least 2 seeds</p>"
        )
    return "".join(parts)


def _chance_formula(method: str | None, chance: float | None) -> str:
    if chance is None:
        return "not recorded"
    if method == "supervised":
        return f"ln(C), C = {round(math.exp(chance))} classes"
    return f"ln(K+1), K = {round(math.exp(chance)) - 1} negatives"


def loss_table(models: dict) -> str:
    """Each model's final training loss against its chance loss (metrics.jsonl)."""
    rows = []
    for model, recs in sorted(models.items()):
        loss = next((r["loss"] for r in reversed(recs) if r.get("loss") is not None), None)
        chance = next(
            (r["chance_loss"] for r in reversed(recs) if r.get("chance_loss") is not None), None
        )
        method = (parse_model(model) or {}).get("method")
        rows.append(
            [
                model,
                recs[-1].get("epoch", len(recs)),
                fmt3(loss),
                fmt3(chance),
                _chance_formula(method, chance),
                "–" if loss is None or chance is None else f"{loss - chance:+.3f}",
            ]
        )
    return table(["model", "epochs", "final loss", "chance loss", "chance", "loss − chance"], rows)


def dataset_block(
    dataset: str, recs: list, cfg: dict | None, models: dict | None, gallery: str = ""
) -> str:
    """Everything about one dataset: table, checks, losses, gallery."""
    placement = placement_of(cfg, dataset)
    groups = config_groups(recs, cfg)
    control = bool(groups) and all(k[0] == "classifier" for k in groups)
    loc = ((cfg or {}).get("localization_tables") or {}).get(dataset) or {}
    head = f"{dataset} · placement: {placement or 'unknown (not in the config)'}"
    head += " · positive control" if control else ""
    parts = [
        f'<h3 id="loc-{esc(dataset)}">{esc(head)}</h3>',
        dataset_table(recs, cfg, list(loc.get("cams") or [])),
    ]
    parts.append(dataset_checks(recs, cfg, placement))
    if models:
        parts.append("<h4>Final training loss against chance</h4>" + loss_table(models))
    return "".join(parts) + gallery


def margins_box() -> str:
    """The paper-scale margins of ContraCAM over a centred prior, and what the fair test asks."""
    t = paper_tables.PAPER_MARGINS
    rows = [[name, f"{c:.1f}", f"{p:.2f}", f"{p - c:+.1f}"] for name, c, p in t["rows"]]
    return (
        f'<div class="paper"><b>Paper-scale margins</b> {esc(t["title"])}<br>'
        + table(t["columns"] + ["margin (points)"], rows)
        + f'<p class="muted">{esc(t["note"])} The fair test here asks ContraCAM iter1 for '
        f"+{100 * fair_test.MAXBOX_MARGIN:.0f} MaxBoxAccV2 points over the centred Gaussian "
        f"and +{fair_test.AUC_MARGIN:.2f} pixel AUC over the best map that ignores the image, "
        "on data where such a map earns little (free placement).</p></div>"
    )
