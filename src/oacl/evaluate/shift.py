"""Generalisation under background and distribution shift (paper Tables 4, 6, 7, 8).

One linear head (linear.py protocol) is trained on the ``original`` variant of the
training split and evaluated, unchanged, on every test variant the manifest has:

* Background Challenge (Table 7): original, only_fg, mixed_same, mixed_rand,
  mixed_next, only_bg_b, only_bg_t, and BG-Gap = acc(mixed_same) - acc(mixed_rand)
  (lower is better: the classifier relies less on the background);
* distribution shifts (Tables 6, 8): sketch, corrupted, stylized.

For multi-object data a second head is trained and tested on the object-crop splits
(objcrop_train / objcrop_val / objcrop_test), the COCO-Crop analogue of Table 4.
Variants or splits absent from the manifest are skipped and listed in the output.
The head is deterministic (full-batch L-BFGS), so spread over seeds comes from the
pretraining seeds; the report aggregates mean +- std over model seeds.

Parameters: oacl.evaluate.params ``DEFAULTS["shift"]`` (its ``linear``: the head's).
"""

from __future__ import annotations

import time

from . import linear


def bg_gap(acc: dict) -> float | None:
    """BG-Gap of Table 7: acc(mixed_same) - acc(mixed_rand); None if either is missing."""
    if acc.get("mixed_same") is None or acc.get("mixed_rand") is None:
        return None
    return acc["mixed_same"] - acc["mixed_rand"]


def run_shift(
    params: dict, checkpoint, manifest, cache_dir, linear_result: dict | None = None
) -> dict:
    """The `oacl evaluate shift` computation: result dict for shift.json.

    ``linear_result`` (the linear.json of the same checkpoint) lets the original head
    reuse its lam when it was selected with the same parameters.
    """
    from .features import FeatureCache

    t0 = time.perf_counter()
    lp = params["linear"]
    cache = FeatureCache(
        checkpoint,
        manifest,
        cache_dir,
        lp["batch_size"],
        lp["device"],
        lp["label_column"],
        lp["crop_ratio"],
    )
    df = cache.df
    test_split = lp["test_split"]
    present = set(df.loc[df["split"] == test_split, "variant"])

    selected = (
        linear.reusable_selection(linear_result, lp, checkpoint, manifest)
        if linear_result
        else None
    )
    head, info = linear.fit_with_selection(
        cache, lp, lp["train_split"], lp["val_split"], "original", selected=selected
    )
    acc, n, skipped = {}, {}, []
    for variant in params["bg_variants"] + params["shift_variants"]:
        if variant not in present:
            skipped.append(variant)
            continue
        X, y = linear._xy(cache.get(test_split, variant))
        if len(y) == 0:
            skipped.append(variant)
            continue
        acc[variant] = head.accuracy(X, y)
        n[variant] = int(len(y))

    objcrop = _objcrop(cache, params) if params["objcrop"]["enabled"] else None
    if objcrop is None:
        skipped.append("objcrop")
    return {
        "accuracy": acc,
        "bg_gap": bg_gap(acc),
        "n": n,
        "skipped": skipped,
        "head": {k: v for k, v in info.items() if k != "path"},
        "path": info["path"],
        "objcrop": objcrop,
        "timing": {"total_s": time.perf_counter() - t0, **info["timing"]},
        "cache": {"hits": cache.hits, "misses": cache.misses},
        "checkpoint": str(checkpoint),
        "manifest": str(manifest),
        "params": params,
    }


def _objcrop(cache, params: dict) -> dict | None:
    """Object-crop classification (Table 4 COCO-Crop analogue), or None if absent."""
    oc = params["objcrop"]
    splits = set(cache.df["split"])
    if oc["train_split"] not in splits or oc["test_split"] not in splits:
        return None
    lp = params["linear"]
    head, info = linear.fit_with_selection(
        cache, lp, oc["train_split"], oc["val_split"], "original"
    )
    X, y = linear._xy(cache.get(oc["test_split"], "original"))
    info.pop("path")
    info["n"]["test"] = int(len(y))
    return {"test_acc": head.accuracy(X, y), **info}
