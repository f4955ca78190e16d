"""Do the debiasing mechanisms work at this scale? Ground truth vs baseline over seeds.

    .venv/bin/python benchmarks/debias_probe.py --tag NAME --kind single|multi \
        [--scenes JSON | --manifest M] [--variants baseline bg_hardmix_gt] \
        [--seeds 0 1 2] [--pretrain JSON] [--head JSON] [--split val|test] [--out DIR]

Runs the real stage commands (``oacl data synth`` unless ``--manifest`` names a dataset;
``oacl pretrain`` per variant and seed, with config.yaml's ``pretrain`` section under
``--pretrain``; ``oacl evaluate shift``) in ``--out/NAME`` and prints one line of JSON:
per variant and seed the Background-Challenge accuracies, BG-Gap (paper Table 7) and the
object-crop accuracy (Table 4 analogue), their mean and std over seeds, and each
variant's effect against the baseline with the rule of issue 25: an effect counts when
the mean moves the right way by more than 2 std of the baseline over seeds.

``--split val`` (the default) chooses a recipe without touching the test split: the
linear heads pick their penalty on a 20 % hold-out of the training images and are
scored on the ``val`` images (the single-object scenes render the Background-Challenge
variants for val, ``variant_splits``; multi-object data score ``objcrop_val``).
``--split test`` is for the final numbers. Finished models and evaluations are reused;
the run's folder records its recipe (``recipe.json``: manifest, pretrain, head), and a
re-run of the same tag with another recipe stops before any work (a new tag, or delete
the folder). Used for the mechanism table of
docs/architecture.md ("Do the debiasing mechanisms work at this scale?").
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import yaml
from localization_probe import OACL, REPO, sh

HOLDOUT = "train_holdout"  # a split no manifest has: the head holds out 20 % of train
# metric -> direction of the paper's claimed improvement (+1 up, -1 down)
METRICS = {"objcrop": +1, "bg_gap": -1, "original": +1, "only_fg": +1, "mixed_rand": +1}
STD_FACTOR = 2  # an effect counts beyond this many baseline std (issue 25)


def evaluate_cfg(split: str, head: dict | None = None) -> dict:
    """``oacl evaluate shift`` parameters scoring ``split`` with no test-split image;
    ``head``: linear-head parameters over the defaults (e.g. a shorter penalty grid)."""
    return {
        "linear": {**(head or {}), "val_split": HOLDOUT, "test_split": split},
        "objcrop": {"val_split": HOLDOUT, "test_split": f"objcrop_{split}"},
    }


def check_recipe(path: Path, recipe: dict) -> None:
    """Record the run's recipe, or stop if the folder holds models of another one: reused
    models and evaluations must come from the recipe the table names."""
    if path.exists():
        old = json.loads(path.read_text())
        changed = sorted(k for k in recipe.keys() | old.keys() if recipe.get(k) != old.get(k))
        if changed:
            raise SystemExit(
                f"{path.parent}: made with another {', '.join(changed)} ({path}); "
                "use a new --tag or delete the folder"
            )
    else:
        path.write_text(json.dumps(recipe, indent=1))


def scores(shift: dict) -> dict:
    """The probe's metrics (percent) from one shift.json; absent ones are left out."""
    acc = {k: 100 * v for k, v in shift["accuracy"].items() if v is not None}
    out = {k: acc[k] for k in ("original", "only_fg", "mixed_rand") if k in acc}
    if shift.get("bg_gap") is not None:
        out["bg_gap"] = 100 * shift["bg_gap"]
    if shift.get("objcrop"):
        out["objcrop"] = 100 * shift["objcrop"]["test_acc"]
    return out


def summarise(runs: dict[str, dict[int, dict]]) -> dict:
    """Mean, std and per-seed values per variant and metric; each variant's effect on the
    baseline (difference of means, per-seed differences, and whether it moved the claimed
    way by more than STD_FACTOR baseline std)."""
    summary = {}
    base = runs.get("baseline", {})
    for variant, by_seed in runs.items():
        row = {}
        for m, sign in METRICS.items():
            vals = [s[m] for s in by_seed.values() if m in s]
            if not vals:
                continue
            entry = {
                "per_seed": {str(k): round(s[m], 2) for k, s in by_seed.items() if m in s},
                "mean": round(statistics.fmean(vals), 2),
                "std": round(statistics.stdev(vals), 2) if len(vals) > 1 else None,
            }
            bvals = [s[m] for s in base.values() if m in s]
            if variant != "baseline" and len(bvals) > 1 and len(vals) > 1:
                effect = statistics.fmean(vals) - statistics.fmean(bvals)
                bstd = statistics.stdev(bvals)
                entry["effect"] = round(effect, 2)
                entry["baseline_std"] = round(bstd, 2)
                entry["per_seed_effect"] = {
                    str(k): round(by_seed[k][m] - base[k][m], 2)
                    for k in sorted(set(by_seed) & set(base))
                    if m in by_seed[k] and m in base[k]
                }
                entry["held"] = bool(sign * effect > STD_FACTOR * bstd)
            row[m] = entry
        summary[variant] = row
    return summary


def table_md(summary: dict) -> str:
    """Markdown: one row per variant, mean ± std over seeds (effect on the baseline)."""
    metrics = [m for m in METRICS if any(m in row for row in summary.values())]
    lines = ["| variant | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for variant, row in summary.items():
        cells = []
        for m in metrics:
            e = row.get(m)
            if e is None:
                cells.append("–")
                continue
            cell = f"{e['mean']:.2f}" + (f" ± {e['std']:.2f}" if e["std"] is not None else "")
            if "effect" in e:
                cell += f" ({e['effect']:+.2f}{', held' if e['held'] else ''})"
            cells.append(cell)
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tag", required=True)
    ap.add_argument("--kind", default="single", choices=["single", "multi"])
    ap.add_argument("--scenes", default="{}", help="scene parameters over free placement")
    ap.add_argument("--manifest", default=None, help="an existing dataset instead of --scenes")
    ap.add_argument("--variants", nargs="+", default=["baseline", "bg_hardmix_gt"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--pretrain", default="{}", help="JSON over config.yaml's pretrain")
    ap.add_argument("--head", default="{}", help="JSON over the linear head's parameters")
    ap.add_argument("--split", default="val", choices=["val", "test"])
    ap.add_argument("--out", default="/tmp/oacl-debias")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    if "baseline" not in a.variants:
        a.variants.insert(0, "baseline")
    out = Path(a.out) / a.tag
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    manifest = Path(a.manifest) if a.manifest else out / "data" / "manifest.parquet"
    if not manifest.exists():
        if a.manifest:
            raise SystemExit(f"--manifest: {a.manifest} does not exist")
        scenes = {
            "kind": a.kind,
            "seed": 1,
            "placement": "free",
            "variants": ["only_fg", "mixed_same", "mixed_rand", "only_bg_t"],
            "variant_splits": ["val", "test"],
            **json.loads(a.scenes),
        }
        sh(*OACL, "data", "synth", "--cfg", json.dumps(scenes), "--out", manifest.parent, "--quiet")
    base_pre = yaml.safe_load((REPO / "config.yaml").read_text())["pretrain"]
    recipe = {
        "manifest": str(manifest.resolve()),
        "pretrain": {**base_pre, **json.loads(a.pretrain)},
        "head": json.loads(a.head),
    }
    check_recipe(out / "recipe.json", recipe)
    times = {"pretrain": 0.0, "evaluate": 0.0}
    runs: dict[str, dict[int, dict]] = {}
    for variant in a.variants:
        for seed in a.seeds:
            d = out / f"{variant}-s{seed}"
            d.mkdir(exist_ok=True)
            pre = {**base_pre, **json.loads(a.pretrain), "variant": variant, "seed": seed}
            t = time.perf_counter()
            if not (d / "model.pt").exists():
                sh(*OACL, "pretrain", "--cfg", json.dumps(pre), "--manifest", manifest,
                   "--out", d / "model.pt", "--device", a.device, "--nproc", "1")  # fmt: skip
            t2 = time.perf_counter()
            res = d / f"shift_{a.split}.json"
            if not res.exists():
                sh(*OACL, "evaluate", "shift", "--cfg", json.dumps(evaluate_cfg(a.split, json.loads(a.head))),
                   "--checkpoint", d / "model.pt", "--manifest", manifest,
                   "--cache-dir", d / "features", "--out", res)  # fmt: skip
            times["pretrain"] += t2 - t
            times["evaluate"] += time.perf_counter() - t2
            runs.setdefault(variant, {})[seed] = scores(json.loads(res.read_text()))
    summary = summarise(runs)
    result = {
        "tag": a.tag,
        "split": a.split,
        "manifest": str(manifest),
        "pretrain": json.loads(a.pretrain),
        "summary": summary,
        "table_md": table_md(summary),
        "time_s": {k: round(v) for k, v in times.items()}
        | {"total": round(time.perf_counter() - t0)},
    }
    (out / f"result_{a.split}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
