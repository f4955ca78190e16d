"""Parameters, RNG streams and planning of the procedural scenes (no pixels).

``plan_split`` chooses every scene's classes and background (and, for the variant
splits, the sources of its Background-Challenge variants); ``place_object`` samples an
object's position, scale and rotation. Every draw comes from ``_rng(p, split, index,
stream)``, seeded with (seed, kind, split, scene index, stream).
"""

from __future__ import annotations

import numpy as np

from ...artifacts import BG_CHALLENGE_VARIANTS
from .render import BACKGROUNDS, SHAPES, draw_shape

BC_VARIANTS = list(BG_CHALLENGE_VARIANTS[1:])  # "original" is the scene itself
VARIANTS = [
    "only_fg", "mixed_same", "mixed_rand", "mixed_next", "only_bg_b", "only_bg_t",
    "sketch", "corrupted", "stylized",
]  # fmt: skip
CORRUPTIONS = ["gaussian_noise", "gaussian_blur", "jpeg"]
SPLITS = ["train", "val", "test"]

DEFAULTS = {
    "type": "scenes",
    "kind": "single",  # single | multi
    "seed": 0,
    "image_size": 64,
    "n_train": 2000,
    "n_val": 500,
    "n_test": 500,
    "n_classes": 8,  # object classes (shapes), at most len(SHAPES)
    "n_bg_classes": 8,  # background classes, at most len(BACKGROUNDS)
    "bg_bias": 0.9,  # single: P(background == paired class of the object)
    "pair_bias": 0.9,  # multi: P(second object == partner of the first)
    "objects_per_image": [2, 3],  # multi: inclusive range
    "object_scale": [0.4, 0.7],  # single: object diameter / image side
    "multi_object_scale": [0.25, 0.45],  # multi: object diameter / image side
    "max_overlap": 0.1,  # multi: max IoU between object boxes
    # centred: centres in [0.9r, s - 0.9r] (the object nearly whole, near the middle);
    # free: centres uniform over the frame, truncated objects (>= MIN_VISIBLE shown)
    "placement": "centred",
    "bg_variation": 0.5,  # 0..1: spread of a background's look around its class's (sample_bg_style); 0.5: hues within +-90 degrees
    # ablation switches of the issue-11 probes (docs/architecture.md); the defaults are the scenes
    "object_colours": "background",  # background: the scene's two colours | own: an instance palette
    "object_texture": "instance",  # instance: any pattern | class: one pattern family per class
    "bg_drift": 0.0,  # 0..1: smooth hue/brightness drift of the background across the frame
    "bg_structure_mix": 0.0,  # 0..1: P(a background shows a random class's structure)
    "crop_size": 64,  # multi: object crops are resized to this side
    "crop_margin": 0.2,  # multi: margin around the box, fraction of box side
    "variants": list(VARIANTS),  # single: test-time variants to render
    "variant_splits": ["test"],  # single: splits whose scenes get the variants
    "workers": 2,  # processes; output does not depend on it
}

PLACEMENTS = ("centred", "free")
MIN_VISIBLE = 0.6  # free placement: least fraction of an object's area inside the frame
_KIND_CODE = {"single": 1, "multi": 2}
_SPLIT_CODE = {"train": 1, "val": 2, "test": 3}
# RNG streams of one scene, so that e.g. the background can be re-rendered alone
_PLAN, _BG, _GEOM, _LOOK, _VARIANT = range(5)


# ----------------------------------------------------------------------------- params


def check_params(p: dict) -> dict:
    """Validate merged parameters; raise ValueError naming the bad key."""
    if p["kind"] not in _KIND_CODE:
        raise ValueError(f"scenes: kind must be one of {sorted(_KIND_CODE)}, got {p['kind']!r}")
    if not 2 <= p["n_classes"] <= len(SHAPES):
        raise ValueError(f"scenes: n_classes must be in [2, {len(SHAPES)}], got {p['n_classes']}")
    if not 2 <= p["n_bg_classes"] <= len(BACKGROUNDS):
        raise ValueError(
            f"scenes: n_bg_classes must be in [2, {len(BACKGROUNDS)}], got {p['n_bg_classes']}"
        )
    if p["object_colours"] not in ("background", "own"):
        raise ValueError(
            f"scenes: object_colours must be background or own, got {p['object_colours']!r}"
        )
    check_placement(p, "scenes")
    if p["object_texture"] not in ("instance", "class"):
        raise ValueError(
            f"scenes: object_texture must be instance or class, got {p['object_texture']!r}"
        )
    for key in (
        "bg_bias",
        "pair_bias",
        "max_overlap",
        "crop_margin",
        "bg_variation",
        "bg_drift",
        "bg_structure_mix",
    ):
        if not 0.0 <= float(p[key]) <= 1.0:
            raise ValueError(f"scenes: {key} must be in [0, 1], got {p[key]}")
    lo, hi = p["objects_per_image"]
    if not 1 <= lo <= hi <= 4:
        raise ValueError(
            f"scenes: objects_per_image must satisfy 1 <= lo <= hi <= 4, got {[lo, hi]}"
        )
    for key in ("object_scale", "multi_object_scale"):
        a, b = p[key]
        if not 0.05 <= a <= b <= 0.9:
            raise ValueError(f"scenes: {key} must satisfy 0.05 <= lo <= hi <= 0.9, got {[a, b]}")
    return check_layout(p, "scenes", VARIANTS)


def check_placement(p: dict, kind: str) -> None:
    if p.get("placement", "centred") not in PLACEMENTS:
        raise ValueError(
            f"{kind}: placement must be one of {list(PLACEMENTS)}, got {p['placement']!r}"
        )


def check_layout(p: dict, kind: str, known_variants) -> dict:
    """The checks shared by every scene-planning dataset type (scenes, composite): sizes,
    variant names, variant splits and split counts."""
    if p["image_size"] < 16 or p["crop_size"] < 8:
        raise ValueError(f"{kind}: image_size must be >= 16 and crop_size >= 8")
    bad = [v for v in p["variants"] if v not in known_variants]
    if bad:
        raise ValueError(f"{kind}: unknown variant(s) {bad} (known: {known_variants})")
    bad = [s for s in p["variant_splits"] if s not in SPLITS]
    if bad:
        raise ValueError(f"{kind}: unknown variant_splits {bad} (known: {SPLITS})")
    for s in SPLITS:
        if int(p[f"n_{s}"]) < 0:
            raise ValueError(f"{kind}: n_{s} must be >= 0")
    if sum(int(p[f"n_{s}"]) for s in SPLITS) == 0:
        raise ValueError(f"{kind}: n_train + n_val + n_test must be > 0")
    return p


def paired_bg(label: int, n_bg: int) -> int:
    """The background class that object class ``label`` is biased towards."""
    return label % n_bg


def partner(label: int, n_classes: int) -> int:
    """The class that co-occurs with ``label`` in multi-object scenes (pairs 0-1, 2-3, ...)."""
    other = label ^ 1
    return other if other < n_classes else label


def _rng(p: dict, split: str, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(
        [p["seed"], _KIND_CODE[p["kind"]], _SPLIT_CODE[split], index, stream]
    )


def _scene_id(p: dict, split: str, index: int) -> int:
    # unique across the dataset: train scenes first, then val, then test
    offset = {"train": 0, "val": p["n_train"], "test": p["n_train"] + p["n_val"]}[split]
    return offset + index


# ----------------------------------------------------------------------------- planning


def plan_split(p: dict, split: str) -> list[dict]:
    """Class choices of every scene of a split (cheap; no pixels).

    Variant background sources are chosen here because they need the classes of
    the other scenes of the split.
    """
    n, nc, nb = int(p[f"n_{split}"]), p["n_classes"], p["n_bg_classes"]
    scenes = []
    for i in range(n):
        rng = _rng(p, split, i, _PLAN)
        if p["kind"] == "single":
            label = int(rng.integers(nc))
            bg = paired_bg(label, nb)
            if rng.random() >= p["bg_bias"]:  # a uniformly random *other* background
                bg = int((bg + 1 + rng.integers(nb - 1)) % nb)
            labels = [label]
        else:
            lo, hi = p["objects_per_image"]
            k = int(rng.integers(lo, hi + 1))
            first = int(rng.integers(nc))
            labels = [first]
            if k >= 2:
                mate = partner(first, nc)
                if rng.random() < p["pair_bias"]:
                    labels.append(mate)
                else:
                    others = [c for c in range(nc) if c != mate]
                    labels.append(int(others[rng.integers(len(others))]))
            labels += [int(c) for c in rng.integers(0, nc, k - len(labels))]
            label, bg = labels[0], int(rng.integers(nb))
        scenes.append(
            {
                "split": split,
                "index": i,
                "scene_id": _scene_id(p, split, i),
                "labels": labels,
                "label": label,
                "bg": bg,
            }
        )
    if p["kind"] == "single" and split in p["variant_splits"]:
        _plan_variants(p, scenes)
    return scenes


def _plan_variants(p: dict, scenes: list[dict]) -> None:
    nb, nc = p["n_bg_classes"], p["n_classes"]
    by_bg: dict[int, list[int]] = {b: [] for b in range(nb)}
    for sc in scenes:
        by_bg[sc["bg"]].append(sc["index"])
    for sc in scenes:
        rng = _rng(p, sc["split"], sc["index"], _VARIANT)
        src = {}

        def pick(cands):
            return int(cands[rng.integers(len(cands))]) if cands else -1  # noqa: B023 (used in this iteration)

        # mixed_same: another scene of this split with the same background class
        src["mixed_same"] = pick([j for j in by_bg[sc["bg"]] if j != sc["index"]])
        other_bg = (sc["bg"] + 1 + int(rng.integers(nb - 1))) % nb
        src["mixed_rand"] = pick(by_bg[other_bg])
        src["mixed_next"] = pick(by_bg[(sc["bg"] + 1) % nb])
        # when no scene of the split has the wanted class, render a fresh background
        src["fresh_bg"] = {
            "mixed_same": sc["bg"],
            "mixed_rand": other_bg,
            "mixed_next": (sc["bg"] + 1) % nb,
        }
        src["corruption"] = CORRUPTIONS[int(rng.integers(len(CORRUPTIONS)))]
        src["style_label"] = int((sc["label"] + 1 + rng.integers(nc - 1)) % nc)
        sc["variant_plan"] = src


# ----------------------------------------------------------------------------- placement


def sample_object(rng, label: int, s: int, scale: tuple[float, float]) -> dict:
    r = rng.uniform(*scale) * s / 2
    margin = r * 0.9
    return {
        "label": int(label),
        "r": r,
        "cx": rng.uniform(margin, s - margin),
        "cy": rng.uniform(margin, s - margin),
        "rot": rng.uniform(-0.35, 0.35),  # about +-20 degrees: square stays != diamond
    }


def sample_free_object(rng, label: int, s: int, scale: tuple[float, float]) -> dict:
    """An object whose centre is uniform over the whole frame, resampled (up to 100
    times, then moved to the middle) until at least MIN_VISIBLE of its area lies
    inside; ``mask`` is its in-frame part, ``full_area`` the whole shape's pixels."""
    for _ in range(100):
        r = rng.uniform(*scale) * s / 2
        obj = {"label": int(label), "r": r, "cx": rng.uniform(0, s), "cy": rng.uniform(0, s),
               "rot": rng.uniform(-0.35, 0.35)}  # fmt: skip
        if _frame_part(obj, s) >= MIN_VISIBLE:
            return obj
    obj.update(cx=s / 2, cy=s / 2)  # pragma: no cover (p < 1e-20)
    _frame_part(obj, s)
    return obj


def _frame_part(obj: dict, s: int) -> float:
    """Draw the whole shape on a padded canvas; store its in-frame mask and full area;
    return the in-frame fraction."""
    pad = int(np.ceil(obj["r"])) + 2
    full = draw_shape(SHAPES[obj["label"]], s + 2 * pad, obj["cx"] + pad, obj["cy"] + pad,
                      obj["r"], obj["rot"])  # fmt: skip
    obj["mask"] = full[pad : pad + s, pad : pad + s].copy()
    obj["full_area"] = int(full.sum())
    return float(obj["mask"].sum()) / max(1, obj["full_area"])


def place_object(p, rng, label, s, scale, placed) -> dict:
    """Sample an object position whose box overlaps earlier ones by at most max_overlap IoU
    (boxes clipped to the frame under free placement)."""
    free = p.get("placement", "centred") == "free"
    best = None
    for _ in range(30):
        if free:
            obj = sample_free_object(rng, label, s, scale)
        else:
            obj = sample_object(rng, label, s, scale)
        r = obj["r"]
        box = [obj["cx"] - r, obj["cy"] - r, obj["cx"] + r, obj["cy"] + r]
        if free:
            box = [min(max(v, 0.0), s - 1.0) for v in box]
        worst = max([iou(box, q["approx_box"]) for q in placed], default=0.0)
        obj["approx_box"] = box
        if worst <= p["max_overlap"]:
            return obj
        if best is None or worst < best[0]:
            best = (worst, obj)
    return best[1]


def iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    inter = ix * iy
    area = lambda z: (z[2] - z[0] + 1) * (z[3] - z[1] + 1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)
