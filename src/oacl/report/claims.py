"""The report's first screen: does each of the paper's claims hold at this scale?

One row per claim and dataset (and pretraining method) where it was measured:

* ContraCAM beats the references, and negative-signal removal (NSR) helps: the fair
  test of fair_test.py (its checks and thresholds; this module only summarises them);
* OA-Crop (CAM / GT) raises object-crop accuracy (paper Table 4, COCO-Crop);
* BG-Mixup (CAM), BG-HardMix (GT) and any other background mix lower BG-Gap (Table 7);
* +Mixup / +CutMix, the non-object mixes, on BG-Gap as references (no claim).

Which claim a variant makes follows from its entry in oacl.variants (claim_of), so a
variant added there gets its row.

A debiasing claim's effect is the variant minus the baseline of the same method and
dataset, each the mean over its seeds; its interval is the mean ± std (ddof 1) of the
per-seed differences over the seeds both ran. Verdict (thresholds below, in one place):
``held`` when both have at least MIN_SEEDS seeds and the effect goes the paper's way by
more than HELD_STD_FACTOR standard deviations (ddof 1) of the baseline over its seeds;
``not held`` otherwise; ``one seed`` (no verdict) with fewer seeds; ``not measured``
without the numbers. Below the table, the report's warnings (models near chance or
relying on the background, maps below a trivial reference, side information not
recorded) grouped by kind, each with its details and a link to its section.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..variants import VARIANTS, parse_model
from . import fair_test, paper_tables
from .html import esc, gallery_anchor, table
from .readers import VARIANT_NAMES, cam_source, group, mean_std, side_info_of
from .sections_eval import below_references, objcrop_acc
from .sections_loc import fair_groups, placement_of
from .sections_train import HEALTH_CHANCE_RATIO, health_alerts

HELD_STD_FACTOR = 2.0  # held: effect beyond this many baseline stds (over seeds) ...
MIN_SEEDS = 2  # ... with at least this many seeds of the baseline and of the variant


@dataclass(frozen=True)
class Claim:
    variant: str
    metric: str  # "objcrop" (object-crop accuracy) | "bg_gap"
    better: str | None  # "↑" | "↓" the paper's direction; None: a reference, no claim
    paper: str  # the paper's figure, as cited


def _t4(oa: str) -> float | None:
    """Table 4, MoCo v2 ResNet-18, COCO-Crop accuracy with OA-Crop ``oa`` (-, CAM, GT)."""
    t = paper_tables.TABLE4
    col = t["columns"].index("COCO-Crop")
    return next((r[col] for r in t["rows"] if r[:3] == ["MoCov2", "ResNet-18", oa]), None)


def _t7(column: str) -> float | None:
    """Table 7, ImageNet-9 BG-Gap (mean over 3 runs) of column ``column``, or None."""
    t = paper_tables.TABLE7
    if column not in t["columns"]:
        return None
    row = next(r for r in t["rows"] if r[0].startswith("BG-Gap"))
    return row[t["columns"].index(column)][0]


def _cite(table_id: str, what: str, base: float, new: float) -> str:
    return f"{table_id}, MoCo v2 R18 {what} {base:.2f} → {new:.2f} ({new - base:+.2f})"


def claim_of(name: str) -> Claim | None:
    """The claim the paper makes for variant ``name``, from its registry entry
    (oacl.variants): an object-aware crop raises object-crop accuracy (Table 4, its
    source's row); a background mix lowers BG-Gap (Table 7, the column of its display
    name); Mixup / CutMix are references; the baseline has none."""
    v = VARIANTS[name]
    if v.crop:
        base, new = _t4("-"), _t4((v.source or "").upper())
        paper = "not in Table 4" if new is None else _cite("Table 4", "COCO-Crop", base, new)
        return Claim(name, "objcrop", "↑", paper)
    if v.needs_mask:
        base = _t7("MoCov2 Baseline")
        new = _t7(f"MoCov2 {v.display}")
        if new is None:  # e.g. BG-Mixup from GT masks: cite the paper's own rows
            rows = [c for c in paper_tables.TABLE7["columns"] if c.startswith("MoCov2 BG-")]
            paper = (
                "not in the paper (Table 7, MoCo v2 R18 IN-9 BG-Gap: "
                + ", ".join(f"{c[len('MoCov2 ') :]} {base:.2f} → {_t7(c):.2f}" for c in rows)
                + ")"
            )
        else:
            paper = _cite("Table 7", "IN-9 BG-Gap", base, new)
        return Claim(name, "bg_gap", "↓", paper)
    if v.mix is not None:
        return Claim(name, "bg_gap", None, "no BG-Gap in the paper (Table 8: shift accuracy only)")
    return None


CLAIMS = [c for c in map(claim_of, VARIANTS) if c is not None]  # in the registry's order
METRIC_NAMES = {"objcrop": "object-crop accuracy", "bg_gap": "BG-Gap"}
VERB = {"↑": "raises", "↓": "lowers", None: "changes"}

# the fair test's claims: (name, what the paper reports)
_M = paper_tables.PAPER_MARGINS["rows"]
CAM_PAPER = "MaxBoxAccV2 over a centre baseline: " + ", ".join(
    f"{name} {p - c:+.1f} points" for name, c, p in _M
)
_T1 = {r[0]: r[1:] for r in paper_tables.TABLE1["rows"]}
_T1_COLS = paper_tables.TABLE1["columns"][1:]
NSR_PAPER = "Table 1, mask mIoU without → with NSR: " + ", ".join(
    f"{ds} {a:.3f} → {b:.3f}"
    for ds, a, b in zip(
        _T1_COLS,
        _T1["ContraCAM w/o negative signal removal"],
        _T1["ContraCAM (ours)"],
        strict=True,
    )
    if ds in ("COCO", "ImageNet-9")
)


# ------------------------------------------------------------------ numbers and verdicts


def _finite(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def effect(base: dict, var: dict) -> dict:
    """The effect of a variant over its baseline from {seed: value} of each: mean(var) −
    mean(base) over all their seeds, the baseline's std over seeds, and the mean ± std of
    the per-seed differences over the seeds both have."""
    base = {s: float(v) for s, v in base.items() if _finite(v)}
    var = {s: float(v) for s, v in var.items() if _finite(v)}
    b, v = mean_std(base.values()), mean_std(var.values())
    diffs = mean_std(var[s] - base[s] for s in sorted(set(base) & set(var)))
    return {
        "effect": v[0] - b[0] if b[2] and v[2] else None,
        "base_std": b[1],
        "n_base": b[2],
        "n_var": v[2],
        "diff_mean": diffs[0],
        "diff_std": diffs[1],
        "n_pairs": diffs[2],
    }


def verdict(e: dict, better: str | None) -> str:
    """held / not held / one seed / not measured (/ reference for a claimless row)."""
    if e["effect"] is None:
        return "not measured"
    if min(e["n_base"], e["n_var"]) < MIN_SEEDS:
        return "one seed"
    if better is None:
        return "reference"
    signed = e["effect"] if better == "↑" else -e["effect"]
    return "held" if signed > HELD_STD_FACTOR * e["base_std"] else "not held"


def _pts(x: float, scale: float) -> str:
    return f"{x * scale:+.2f}" if scale != 1.0 else f"{x:+.3f}"


def _interval(e: dict, scale: float) -> str:
    """``+2.50 ± 0.71 (n=3 paired)``, or the seed counts when seeds do not pair."""
    if e["n_pairs"] >= 2:
        sd = f"{e['diff_std'] * scale:.2f}" if scale != 1.0 else f"{e['diff_std']:.3f}"
        return f"{_pts(e['diff_mean'], scale)} ± {sd} (n={e['n_pairs']} paired)"
    paired = f"{e['n_pairs']} paired" if e["n_pairs"] else "none paired"
    return f"n = {e['n_var']} variant, {e['n_base']} baseline seed(s), {paired}"


def _bar(e: dict, scale: float) -> str:
    if min(e["n_base"], e["n_var"]) < MIN_SEEDS:
        return ""
    bar = HELD_STD_FACTOR * e["base_std"]
    return f"bar {bar * scale:.2f}" if scale != 1.0 else f"bar {bar:.3f}"


# ------------------------------------------------------------------ the rows


def _by_seed(recs: list, value) -> dict:
    return {r.get("seed", 0): value(r) for r in recs}


def _metric_value(metric: str):
    if metric == "objcrop":
        return objcrop_acc
    return lambda r: r["data"].get("bg_gap")


def debias_rows(evals: dict, cfg: dict | None, metrics: dict) -> list[dict]:
    """One row per claim and (dataset, method) whose variant ran; a claim that ran
    nowhere gets one ``not measured`` row (mixup / cutmix: only when they ran)."""
    sh = group(evals["shift"])
    rows = []
    for claim in CLAIMS:
        found = False
        for dataset in sorted(sh):
            for method in sorted(sh[dataset]):
                per = sh[dataset][method]
                if claim.variant not in per:
                    continue
                found = True
                value = _metric_value(claim.metric)
                e = effect(
                    _by_seed(per.get("baseline", []), value),
                    _by_seed(per[claim.variant], value),
                )
                models = [r["model"] for r in per[claim.variant] + per.get("baseline", [])]
                rows.append(
                    {
                        "claim": claim,
                        "dataset": dataset,
                        "method": method,
                        "effect": e,
                        "verdict": verdict(e, claim.better),
                        "models": models,
                        "side_info": _side_info_cell(
                            cfg, metrics, dataset, method, claim.variant, per[claim.variant]
                        ),
                    }
                )
        if not found and claim.better is not None:  # a claim that ran nowhere: one row
            rows.append({"claim": claim, "dataset": None, "verdict": "not measured"})
    return rows


def _side_info_cell(cfg, metrics, dataset, method, variant, recs) -> str:
    """For a *_cam variant: each seed's side-information coverage and a link to the
    masks and boxes it trained on (the gallery) and to the side-information table."""
    spec = VARIANTS.get(variant)
    if spec is None or spec.source != "cam":
        return ""
    lines = []
    for r in sorted(recs, key=lambda r: r.get("seed", 0)):
        cov = side_info_of((metrics.get(dataset) or {}).get(r["model"]) or [])
        if cov is None:
            lines.append(f's{r.get("seed")}: <span class="neg">not recorded</span>')
            continue
        n = cov.get("images", 0)
        covered = ", ".join(f"{k} {cov['covered'].get(k, 0)}/{n}" for k in cov.get("needs", []))
        share = 100 * cov.get("empty_fraction", 0.0)
        lines.append(f"s{r.get('seed')}: {esc(covered)} · empty {share:.1f}%")
    src = cam_source(cfg, dataset, method, variant)
    links = '<a href="#side_info">coverage</a>'
    if src is not None:
        links += (
            f' · <a href="#{gallery_anchor(dataset, *src)}">masks and boxes of '
            f"{esc(src[0])} · {esc(src[1])}</a>"
        )
    return "<br>".join(lines) + f"<br>{links}"


def cam_rows(evals: dict, cfg: dict | None) -> list[dict]:
    """Per dataset and pretraining method of ContraCAM FAIR_CAM on the baseline: does it
    beat the references (fair-test checks a-c) and does NSR help (check d)?"""
    recs = evals["localization"]
    rows = []
    for dataset in sorted({r["dataset"] for r in recs}):
        mine = [r for r in recs if r["dataset"] == dataset]
        free = placement_of(cfg, dataset) == "free"
        for key, iter1, nonsr in fair_groups(mine, cfg):
            if key[2] != "baseline":  # a debiased model's maps are in the localisation section
                continue
            checks = fair_test.fair_checks(iter1, nonsr)
            n = len(iter1)
            gauss = _by_seed(iter1, lambda r: fair_test.metric(r, "gaussian", "maxboxacc_v2"))
            box = _by_seed(iter1, lambda r: fair_test.metric(r, "contracam", "maxboxacc_v2"))
            beat = effect(gauss, box)
            held_abc = [c["held"] for c in checks[:3]]
            without = _by_seed(nonsr, lambda r: fair_test.metric(r, "contracam", "content_auc"))
            with_ = _by_seed(iter1, lambda r: fair_test.metric(r, "contracam", "content_auc"))
            with_ = {s: v for s, v in with_.items() if s in without}  # as check (d) pairs them
            nsr = effect(without, with_)
            for name, cams, e, held, paper, scale, what in (
                (
                    "ContraCAM beats the references",
                    (key[3],),
                    beat,
                    None if None in held_abc else all(held_abc),
                    CAM_PAPER,
                    100.0,
                    "MaxBoxAccV2 − centred Gaussian (points); checks (a)-(c): "
                    + ", ".join(_word(h) for h in held_abc),
                ),
                (
                    "NSR helps",
                    (key[3], fair_test.NONSR_CAM),
                    nsr,
                    checks[3]["held"],
                    NSR_PAPER,
                    1.0,
                    "content AUC with − without NSR; check (d)",
                ),
            ):
                if n < MIN_SEEDS and e["effect"] is not None:
                    v = "one seed"
                elif e["effect"] is None or held is None:
                    v = "not measured"
                elif not free:
                    v = "no verdict (not free placement)"
                else:
                    v = "held" if held else "not held"
                rows.append(
                    {
                        "name": name,
                        "dataset": dataset,
                        "method": key[1],
                        "effect": e,
                        "scale": scale,
                        "what": what,
                        "paper": paper,
                        "verdict": v,
                        "models": [r["model"] for r in iter1],
                        "cam": key[3],
                        "cams": cams,
                    }
                )
    if not rows:
        for name, paper in (
            ("ContraCAM beats the references", CAM_PAPER),
            ("NSR helps", NSR_PAPER),
        ):
            rows.append({"name": name, "dataset": None, "paper": paper, "verdict": "not measured"})
    return rows


def _word(held) -> str:
    return "–" if held is None else ("held" if held else "not held")


# ------------------------------------------------------------------ warnings


def report_warnings(evals: dict, metrics: dict) -> list[dict]:
    """The report's red lines as {kind, dataset, model, text (, cam)}: models near chance
    or relying on the background, maps below the best trivial reference, *_cam / *_gt
    models whose side information was not recorded (kinds: WARNING_KINDS)."""
    out = health_alerts(metrics)
    for r in evals["localization"]:
        m = r["data"].get("metrics", {})
        for text in below_references(r, m, m.get("contracam", {})):
            out.append(
                {
                    "kind": "below_reference",
                    "dataset": r["dataset"],
                    "model": r["model"],
                    "cam": r["cam"],
                    "text": text,
                }
            )
    for dataset, models in sorted(metrics.items()):
        for model, recs in sorted(models.items()):
            spec = VARIANTS.get((parse_model(model) or {}).get("variant"))
            if spec is not None and spec.source is not None and side_info_of(recs) is None:
                out.append(
                    {
                        "kind": "side_info",
                        "dataset": dataset,
                        "model": model,
                        "text": f"{dataset} · {model}: side information not recorded",
                    }
                )
    return out


WARNING_KINDS = {
    "chance": f"model(s) within {100 * (1 - HEALTH_CHANCE_RATIO):.0f}% of their chance loss",
    "background": "model(s) that rely on the background",
    "below_reference": "map(s) that do not beat the best trivial reference",
    "side_info": "debiased model(s) whose side information was not recorded",
}


def _row_warnings(warns: list, dataset: str, models: list, cams=()) -> str:
    """The warnings on a row's models, counted by kind; maps below a reference only for
    the row's cam configurations ``cams``."""
    mine = [
        w
        for w in warns
        if w["dataset"] == dataset
        and w["model"] in set(models)
        and (w["kind"] != "below_reference" or w.get("cam") in cams)
    ]
    counts: dict = {}
    for w in mine:
        counts[w["kind"]] = counts.get(w["kind"], 0) + 1
    return "<br>".join(
        f'<a class="neg" href="#{w_section(kind)}">{c} {esc(_short(kind))}</a>'
        for kind, c in counts.items()
    )


def w_section(kind: str) -> str:
    return {"below_reference": "localization", "side_info": "side_info"}.get(kind, "health")


def _short(kind: str) -> str:
    return {
        "chance": "near chance",
        "background": "relies on background",
        "below_reference": "below a trivial reference",
        "side_info": "side info not recorded",
    }[kind]


# ------------------------------------------------------------------ the section


VERDICT_CLASS = {"held": "pos", "not held": "neg"}
TALLY_ORDER = ["held", "not held", "one seed", "not measured"]


def _rank(v: str) -> int:
    return TALLY_ORDER.index(v) if v in TALLY_ORDER else len(TALLY_ORDER)


def _verdict_html(v: str) -> str:
    """held in green, not held in red (bold); the rest muted."""
    cls = VERDICT_CLASS.get(v)
    if cls:
        return f'<span class="{cls}"><b>{esc(v)}</b></span>'
    return f'<span class="{"notrun" if v == "not measured" else "muted"}">{esc(v)}</span>'


def section_claims(evals: dict, cfg: dict | None, metrics: dict) -> str:
    """The claims table, a one-line tally, the verdict rule and the grouped warnings."""
    warns = report_warnings(evals, metrics)
    rows, verdicts = [], []
    for r in cam_rows(evals, cfg):
        verdicts.append(r["verdict"])
        if r["dataset"] is None:
            rows.append(
                [esc(r["name"]), "–", "–", "–", esc(r["paper"]), _verdict_html(r["verdict"]), ""]
            )
            continue
        e, scale = r["effect"], r["scale"]
        rows.append(
            [
                esc(r["name"]) + f' <span class="muted">({esc(r["cam"])})</span>',
                f'<a href="#loc-{esc(r["dataset"])}">{esc(r["dataset"])}</a> · {esc(r["method"])}',
                ("–" if e["effect"] is None else _pts(e["effect"], scale))
                + (" points" if scale != 1.0 else "")
                + f'<br><span class="muted">{esc(r["what"])}</span>',
                _interval(e, scale) if e["effect"] is not None else "–",
                esc(r["paper"]),
                _verdict_html(r["verdict"]),
                _row_warnings(warns, r["dataset"], r["models"], r["cams"]),
            ]
        )
    for r in debias_rows(evals, cfg, metrics):
        c = r["claim"]
        name = (
            f"{VARIANT_NAMES.get(c.variant, c.variant)} {VERB[c.better]} "
            f"{METRIC_NAMES[c.metric]}" + ("" if c.better is not None else " (reference)")
        )
        verdicts.append(r["verdict"])
        if r["dataset"] is None:
            rows.append([esc(name), "–", "–", "–", esc(c.paper), _verdict_html(r["verdict"]), ""])
            continue
        e = r["effect"]
        anchor = "linear" if c.metric == "objcrop" else "shift"
        bar = _bar(e, 100.0)
        rows.append(
            [
                esc(name),
                f'<a href="#{anchor}">{esc(r["dataset"])}</a> · {esc(r["method"])}',
                ("–" if e["effect"] is None else _pts(e["effect"], 100.0) + " points")
                + (f'<br><span class="muted">{esc(bar)}</span>' if bar else ""),
                _interval(e, 100.0) if e["effect"] is not None else "–",
                esc(c.paper),
                _verdict_html(r["verdict"]),
                "<br>".join(
                    x
                    for x in (_row_warnings(warns, r["dataset"], r["models"]), r["side_info"])
                    if x
                ),
            ]
        )
    tally = ", ".join(
        f"{verdicts.count(v)} {v}" for v in dict.fromkeys(sorted(verdicts, key=_rank))
    )
    body = (
        f"<p><b>{esc(tally)}</b></p>"
        + table(
            [
                "claim",
                "dataset · method",
                "measured effect",
                "per-seed differences (mean ± std)",
                "paper",
                "verdict",
                "warnings · side information",
            ],
            rows,
            raw=True,
        )
        + f'<p class="muted">Effect: the variant minus the baseline of the same method and '
        f"dataset, each averaged over its seeds (accuracy and BG-Gap in points). Held: at least "
        f"{MIN_SEEDS} seeds of each, and the effect in the paper's direction by more than "
        f"{HELD_STD_FACTOR:g} standard deviations of the baseline over its seeds (the bar); "
        f"fewer seeds: no verdict. ContraCAM's rows are the fair test's checks (thresholds in "
        f"oacl/report/fair_test.py), with verdicts on free placement only. {esc(paper_tables.CAVEAT)}."
        "</p>" + _warnings_block(warns)
    )
    return f'<section id="claims"><h2>What held: the paper\'s claims at this scale</h2>{body}</section>'


def _warnings_block(warns: list) -> str:
    if not warns:
        return '<p class="pos">No warnings: every model left chance, every map beats the trivial references.</p>'
    parts = ["<h3>Warnings</h3>"]
    for kind, title in WARNING_KINDS.items():
        mine = [w for w in warns if w["kind"] == kind]
        if not mine:
            continue
        parts.append(
            f'<details><summary class="neg">{len(mine)} {esc(title)} '
            f'(<a href="#{w_section(kind)}">section</a>)</summary>'
            + "<br>".join(esc(w["text"]) for w in mine)
            + "</details>"
        )
    return "".join(parts)
