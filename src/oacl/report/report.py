"""One static HTML page summarising a results folder (opens from disk, no network).

Sections, each shown as "not run" when its inputs are missing:

0. what held (claims.py), the first screen: one row per paper claim (ContraCAM beats the
   references, NSR helps, OA-Crop raises object-crop accuracy, BG-Mixup / BG-HardMix
   lower BG-Gap) and dataset, with the effect over the baseline, its interval over seeds,
   the paper's figure and held / not held / one seed / not measured; each *_cam model's
   side-information coverage with a link to the masks and boxes it trained on; below,
   the warnings of the sections further down, grouped by kind;
1. configuration (the whole config the rule passes as --cfg);
2. per-stage timings from Snakemake ``benchmark:`` files (results/benchmarks/**/*.tsv);
3. localisation (results/eval/{dataset}/{model}/localization_{cam}.json) beside Table 1
   and the paper-scale margins: per dataset a table of every CAM configuration (mean +-
   std over seeds) with the references and controls, the fair-test checks, each model's
   loss against chance and a gallery of 8 fixed test images; then the full table;
4. linear evaluation (linear.json, plus the object-crop head of shift.json) beside Table 4;
5. background / distribution shift (shift.json) beside Tables 6, 7 and 8, with a bar chart;
6. training health and, beside every debiased model, the side information it trained
   with (metrics.jsonl ``side_info``: training images covered per source shard, empty);
   training curves (results/models/{dataset}/{model}/metrics.jsonl: loss, kNN accuracy);
7. a gallery of the CAM masks and boxes (oacl.overlay.render_overlay), each map named by
   its cam configuration's method (ContraCAM, normalised cut, supervised Grad-CAM); the
   runs a *_cam variant trained on first, then the others, up to ``gallery.max_sets``.

Models are named {method}-{variant}-s{seed}; accuracies are aggregated as mean +- std
over seeds, and each debiased variant is compared with the ``baseline`` of the same
method and dataset. CSS and PNG plots (matplotlib Agg, base64) are inline.

Modules: html.py (the page kit), readers.py (what is read from results/), figures.py
(matplotlib), claims.py (0), sections_run.py (1, 2, 7), sections_eval.py (3-5; 3's per-dataset view in
sections_loc.py, its checks and thresholds in fair_test.py, its gallery in gallery_loc.py),
sections_train.py (6),
params.py (``DEFAULTS``); this module puts the page together.

Snakemake's own report: the ``report`` rule declares its output as
``report("results/report.html", caption=..., category="Report")``; after the run,
``snakemake --report results/snakemake_report.zip`` (or ``.html``) bundles this page
with the workflow's provenance, runtimes and rule graph. This page also stands alone.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from ..io import write_text
from ..params import merge_params
from .claims import section_claims
from .gallery_loc import dataset_gallery
from .html import CSS, esc
from .params import DEFAULTS, check_params
from .readers import collect_evals, read_metrics
from .sections_eval import section_linear, section_localization, section_shift
from .sections_run import section_config, section_gallery, section_timings
from .sections_train import section_curves, section_health, section_side_info

log = logging.getLogger(__name__)


def render_report(cfg: dict, results, inputs=None) -> str:
    """The whole page as a string. ``inputs``: the files to report on (the report rule's
    inputs: eval JSONs, model.pt, mask/box shards); None: everything under ``results``."""
    results = Path(results)
    inputs = None if inputs is None else [Path(p) for p in inputs]
    opts = merge_params(DEFAULTS, (cfg or {}).get("report", {}), where="report cfg")
    check_params(opts)
    evals = collect_evals(results, inputs)
    sections = [
        (
            "claims",
            "What held",
            lambda: section_claims(evals, cfg, read_metrics(results, inputs)),
        ),
        ("config", "Configuration", lambda: section_config(cfg)),
        ("timings", "Timings", lambda: section_timings(results)),
        (
            "localization",
            "Localisation",
            lambda: section_localization(
                evals,
                cfg,
                read_metrics(results, inputs),
                lambda ds: dataset_gallery(results, ds, cfg, inputs),
            ),
        ),
        ("linear", "Linear", lambda: section_linear(evals)),
        ("shift", "Shift", lambda: section_shift(evals)),
        ("health", "Training health", lambda: section_health(read_metrics(results, inputs))),
        (
            "side_info",
            "Side information",
            lambda: section_side_info(read_metrics(results, inputs)),
        ),
        ("curves", "Training curves", lambda: section_curves(read_metrics(results, inputs))),
        ("gallery", "Gallery", lambda: section_gallery(results, opts["gallery"], inputs, cfg)),
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
