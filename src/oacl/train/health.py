"""Training health: has the model left chance, and does it look at the object?

ContraCAM can only localise what the encoder relies on, so the pretrain stage records
two facts beside the loss (docs/architecture.md, "Localisation"):

chance_loss      the loss of a model that has learnt nothing: ln(1 + K) for MoCo's
                 InfoNCE with K queue negatives (uniform logits over K + 1 keys),
                 ln(C) for the supervised cross-entropy over C classes; None for
                 BYOL (its regression loss has no chance level).
object_reliance  on test scenes that have Background-Challenge variants (same
                 scene_id), the mean cosine of the encoder's pooled features of the
                 original image with its only_bg_t version (object removed) and with
                 its only_fg version (background removed). A model that relies on the
                 object has cos(only_fg) > cos(only_bg_t).
"""

from __future__ import annotations

import math

import torch

from . import data, knn

RELIANCE_VARIANTS = ("only_bg_t", "only_fg")


def chance_loss(params: dict, num_classes: int) -> float | None:
    if params["method"] == "moco":
        return math.log(1 + int(params["moco"]["queue_size"]))
    if params["method"] == "supervised" and num_classes > 1:
        return math.log(num_classes)
    return None


def reliance_rows(df, max_scenes: int = 256):
    """Aligned frames (original, only_bg_t, only_fg) of up to ``max_scenes`` test scenes, or None."""
    test = df[df["split"] == "test"]
    frames = {
        v: test[test["variant"] == v].set_index("scene_id")
        for v in ("original", *RELIANCE_VARIANTS)
    }
    common = frames["original"].index
    for v in RELIANCE_VARIANTS:
        common = common.intersection(frames[v].index)
    if len(common) == 0:
        return None
    common = sorted(common)[:max_scenes]
    return {v: f.loc[common].reset_index() for v, f in frames.items()}


@torch.no_grad()
def object_reliance(encoder, df, params: dict, device, workers: int = 0) -> dict | None:
    """Mean cosine of original vs only_bg_t / only_fg features (see module doc), or None."""
    rows = reliance_rows(df)
    if rows is None:
        return None
    feats = {}
    for v, frame in rows.items():
        loader = data.build_loader(
            data.ManifestImages(frame, params["store_size"]),
            128,
            workers,
            shuffle=False,
            drop_last=False,
            seed=0,
        )
        feats[v], _ = knn.extract(encoder, loader, params["image_size"], device, channels_last=True)
    out = {
        f"cos_{v}": float((feats["original"] * feats[v]).sum(1).mean()) for v in RELIANCE_VARIANTS
    }
    out["n_scenes"] = len(rows["original"])
    return out
