"""What the report reads from a results folder: eval JSONs, Snakemake benchmark files and
training metrics (metrics.jsonl), grouped by dataset, method and variant; models are
named {method}-{variant}-s{seed} (oacl.variants)."""

from __future__ import annotations

import glob
import json
import logging
import math
from pathlib import Path

import numpy as np

from ..variants import VARIANTS, parse_model, uses_cam

log = logging.getLogger(__name__)

VARIANT_NAMES = {name: v.display for name, v in VARIANTS.items()}  # in the report's order

# what a cam configuration's ``method`` (oacl.cam.params CHOICES) draws, as the report names it
METHOD_NAMES = {
    "contracam": "ContraCAM",
    "ncut": "normalised cut",
    "classifier": "supervised Grad-CAM",
}


def cam_method(cfg: dict | None, cam: str, recorded: str | None = None) -> str:
    """The method of cam configuration ``cam``: the config's (``cam.configs.<cam>.method``,
    whose default is contracam), else the one recorded with the maps, else contracam."""
    configs = ((cfg or {}).get("cam") or {}).get("configs") or {}
    if isinstance(configs.get(cam), dict):
        return configs[cam].get("method", "contracam")
    return recorded or "contracam"


def method_name(method: str) -> str:
    return METHOD_NAMES.get(method, method)


def mean_std(values) -> tuple[float, float, int]:
    v = [float(x) for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not v:
        return float("nan"), float("nan"), 0
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("report: skipping unreadable %s (%s)", path, exc)
        return None


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


def side_info_of(recs: list) -> dict | None:
    """The ``side_info`` of a model's metrics.jsonl (on its first line), or None."""
    return next((r["side_info"] for r in recs if isinstance(r.get("side_info"), dict)), None)


def cam_trained_sets(cfg: dict | None) -> dict:
    """{(dataset, cam_model, cam): [(method, variant), ...]}: the CAM runs whose masks and
    boxes a *_cam variant trains on (``experiments.<name>.cam_model`` / ``.cam``), in the
    config's order of experiments."""
    out: dict = {}
    for exp in ((cfg or {}).get("experiments") or {}).values():
        if not isinstance(exp, dict) or not exp.get("cam_model") or not exp.get("cam"):
            continue
        for variant in exp.get("variants") or []:
            if variant in VARIANTS and uses_cam(variant):
                key = (exp.get("dataset"), exp["cam_model"], exp["cam"])
                for method in exp.get("methods") or []:
                    if (method, variant) not in out.setdefault(key, []):
                        out[key].append((method, variant))
    return out


def cam_source(cfg: dict | None, dataset: str, method: str, variant: str) -> tuple | None:
    """(cam_model, cam) whose masks and boxes ``method``-``variant`` on ``dataset`` trains
    on, or None (not a *_cam variant, or not in the config)."""
    for (ds, cam_model, cam), users in cam_trained_sets(cfg).items():
        if ds == dataset and (method, variant) in users:
            return cam_model, cam
    return None
