"""The embedded default dataset: seeded procedural scenes with the paper's biases.

Two kinds, both with pixel masks and boxes for every object:

``single`` (ImageNet-9 / Background Challenge analogue)
    one object per image; the background class is the object class's paired
    background with probability ``bg_bias`` (else a uniformly random *other*
    background class), so P(bg == paired(label)) = bg_bias exactly in expectation.
    Every scene of ``variant_splits`` also gets Background-Challenge variants built
    from the same underlying scene (same ``scene_id``): only_fg, mixed_same,
    mixed_rand, mixed_next, only_bg_b, only_bg_t, and distribution-shift variants
    sketch, corrupted, stylized (see ``_render_variant``).
``multi`` (COCO analogue)
    2-3 objects per image; the second object is the first one's partner class
    (classes pair up 0-1, 2-3, ...) with probability ``pair_bias``, else a random
    non-partner class; any third object is uniform. Backgrounds are uniformly random
    (no background bias, so only the contextual bias is present). Every object is
    also cropped with a 20% margin into the objcrop_* splits (COCO-Crop analogue).

Objects are saturated, instance-specific (random hue around a class hue, random
stripes/dots/checker/gradient texture, scale, position, rotation); backgrounds are
low-contrast class-typical textures with little instance variation, so, as in
natural scenes, objects are more instance-distinctive than backgrounds.

Determinism: every random choice comes from a generator seeded with
(seed, kind, split, scene index, stream), so a scene renders identically in any
process and in any order; generation runs in a process pool and gives byte-identical
files for the same parameters.

Layout under the output folder::

    images/<split>/<variant>/<index>.png     image_id = "<split>/<variant>/<index>"
    masks/<split>/<index>.png                binary (0/255) foreground union of the scene
    masks/empty.png                          all-zero mask used by only_bg_b / only_bg_t
    images/objcrop_<split>/original/<index>_<k>.png, masks/objcrop_<split>/<index>_<k>.png
    manifest.parquet, classes.json

Boxes are normalised xyxy of the object's visible pixels: [x0/W, y0/H, (x1+1)/W,
(y1+1)/H] for the inclusive pixel bounds x0..x1, y0..y1. Variant rows keep the
scene's ``label``/``labels``; ``bg_label`` is the background class actually shown;
only_bg_* rows have no boxes and point to the all-zero mask. Extra manifest
columns: ``bg_source`` (scene_id whose background a mixed_* row shows, else -1)
and ``detail`` (e.g. the corruption type, the stylisation texture class).
"""

from __future__ import annotations

import colorsys
import math
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from ..artifacts import BG_CHALLENGE_VARIANTS, write_manifest
from ..geometry import crop_window
from ..io import encode_png, write_json

SHAPES = [
    "circle", "square", "triangle", "star", "cross",
    "ring", "ellipse", "diamond", "hexagon", "crescent",
]  # fmt: skip
BACKGROUNDS = ["grass", "water", "sand", "brick", "sky", "snow", "wood", "asphalt"]
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


# ----------------------------------------------------------------------------- drawing


def _grid(s: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:s, 0:s].astype(np.float32)
    return x, y


def _smooth_noise(rng, s: int, cells: tuple[int, int]) -> np.ndarray:
    """Value noise in [0, 1]: a coarse random grid upsampled bicubically (cells = rows, cols)."""
    coarse = rng.random(cells).astype(np.float32)
    return np.clip(cv2.resize(coarse, (s, s), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


# Appearance. As in natural photographs, the object is the instance-distinctive part
# of a scene: each object instance gets its own full-contrast texture (pattern x
# smooth blotches), which survives colour jitter and grayscale, and its class is its
# shape. A background class is a texture structure; each instance varies its two
# colours, contrast, scale and orientation around the class's look (``bg_variation``),
# and objects are drawn in their background's own two colours, so an object is not
# "the pixels whose colour differs from the frame" (the colour-saliency reference of
# the localisation table stays below the centred prior, tests/test_scenes.py).
BG_SCALE = (0.6, 1.6)  # texture scale factor per background instance
BG_CONTRAST = (0.7, 1.0)  # share of the two-colour range the class structure spans
BG_SHARPNESS = (
    1.0,
    4.0,
)  # gain of the structure before clipping: > 1 pushes pixels to the two colours


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), np.float32)


def sample_bg_style(rng, bg: int = 0, variation: float = 1.0) -> dict:
    """Per-instance look of a background: two colours, contrast, scale, orientation.

    ``variation`` (0..1) scales every draw's spread around the class's typical look
    (hue bg/len(BACKGROUNDS), mid saturation and brightness, scale 1, upright): 1 gives
    hues over the whole wheel, 0 one look per class. The same numbers are drawn either way.
    """
    d = variation
    h = bg / len(BACKGROUNDS) + d * (rng.uniform(0, 1) - 0.5)
    h2 = h + rng.choice([-1, 1]) * rng.uniform(0.08, 0.35)
    s1, s2 = 0.425 + d * (rng.uniform(0.2, 0.65, 2) - 0.425)
    v1 = 0.6 + d * (rng.uniform(0.35, 0.85) - 0.6)
    v2 = np.clip(v1 + rng.choice([-1, 1]) * rng.uniform(0.15, 0.35), 0.1, 0.95)
    return {
        "c1": _hsv(h, s1, v1),
        "c2": _hsv(h2, s2, v2),
        "contrast": rng.uniform(*BG_CONTRAST),
        "sharpness": rng.uniform(*BG_SHARPNESS),
        "scale": float(np.exp(d * np.log(rng.uniform(*BG_SCALE)))),
        "angle": d * rng.uniform(-np.pi / 4, np.pi / 4),
    }


def _bg_structure(name: str, rng, s: int, u, v) -> np.ndarray:
    """Class-typical structure in [0, 1] on rotated/scaled coordinates u, v (pixels)."""
    if name == "grass":  # vertical blades
        t = _sample_grid(rng.random((4, 24)).astype(np.float32), u / s * 24, v / s * 4)
        return np.clip(0.75 * t + 0.25 * _smooth_noise(rng, s, (3, 3)), 0, 1)
    if name == "water":  # horizontal waves
        f, ph = rng.uniform(5.0, 6.5) / s, rng.uniform(0, 2 * np.pi, 2)
        return 0.5 + 0.5 * np.sin(
            2 * np.pi * f * v + 1.2 * np.sin(2 * np.pi * u / s * 1.5 + ph[0]) + ph[1]
        )
    if name == "sand":  # fine grain
        return np.clip(
            0.6 * rng.random((s, s), dtype=np.float32) + 0.4 * _smooth_noise(rng, s, (5, 5)), 0, 1
        )
    if name == "brick":  # staggered bricks, mortar lines
        bh = max(4.0, s / 8)
        bw = 2 * bh
        row = np.floor(v / bh)
        uu = u + rng.uniform(0, bw) + (row % 2) * (bw / 2)
        tone = rng.uniform(0.2, 0.6, (64, 64)).astype(np.float32)
        t = tone[row.astype(np.int64) % 64, np.floor(uu / bw).astype(np.int64) % 64]
        return np.where(((v % bh) < 1) | ((uu % bw) < 1), 1.0, t)
    if name == "sky":  # gradient with soft clouds
        return np.clip(v / s * 0.6 + np.clip(_smooth_noise(rng, s, (4, 6)) - 0.4, 0, 1), 0, 1)
    if name == "snow":  # smooth drifts, sparse sparkles
        return np.clip(0.6 * _smooth_noise(rng, s, (5, 5)) + (rng.random((s, s)) > 0.96), 0, 1)
    if name == "wood":  # distorted rings
        period = s / rng.uniform(5.0, 6.5)
        return 0.5 + 0.5 * np.sin(2 * np.pi * (u / period + 3.0 * _smooth_noise(rng, s, (3, 3))))
    if name == "asphalt":  # coarse grain with cracks
        t = 0.7 * rng.random((s, s), dtype=np.float32)
        return np.where(
            np.abs(np.sin(u / s * 9 + 3 * _smooth_noise(rng, s, (3, 3)))) < 0.04, 1.0, t
        )
    raise ValueError(f"unknown background {name}")  # pragma: no cover


def _sample_grid(grid: np.ndarray, gx, gy) -> np.ndarray:
    """Bilinear lookup of a periodic coarse grid at fractional cell coordinates."""
    rows, cols = grid.shape
    x0, y0 = np.floor(gx), np.floor(gy)
    fx, fy = gx - x0, gy - y0
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    g = lambda yy, xx: grid[yy % rows, xx % cols]  # noqa: E731
    top = g(y0, x0) * (1 - fx) + g(y0, x0 + 1) * fx
    bot = g(y0 + 1, x0) * (1 - fx) + g(y0 + 1, x0 + 1) * fx
    return (top * (1 - fy) + bot * fy).astype(np.float32)


def render_background(
    bg: int, rng, s: int, variation: float = 1.0, drift: float = 0.0, mix: float = 0.0
) -> np.ndarray:
    """Background class ``bg`` as uint8 RGB (s, s, 3): class structure, instance look."""
    st = sample_bg_style(rng, bg, variation)
    if drift > 0:  # a smooth colour field: the look changes across the frame
        field = _smooth_noise(rng, s, (3, 3)) - 0.5
        field_v = _smooth_noise(rng, s, (3, 3)) - 0.5
        st["c1"], st["c2"] = (_drift(c, field, field_v, drift) for c in (st["c1"], st["c2"]))
    x, y = _grid(s)
    c, sn = math.cos(st["angle"]), math.sin(st["angle"])
    u = ((x - s / 2) * c + (y - s / 2) * sn) / st["scale"] + s / 2
    v = (-(x - s / 2) * sn + (y - s / 2) * c) / st["scale"] + s / 2
    structure = bg
    if mix > 0 and rng.random() < mix:  # texture type varies within the class
        structure = int(rng.integers(len(BACKGROUNDS)))
    t = np.asarray(_bg_structure(BACKGROUNDS[structure], rng, s, u, v), np.float32)
    t = 0.5 + st["contrast"] * np.clip(st["sharpness"] * (t - 0.5), -0.5, 0.5)
    # c1, c2: one RGB colour (3,) or, with drift, one per pixel (s, s, 3); both broadcast
    return _to_uint8(st["c1"] * (1 - t[..., None]) + st["c2"] * t[..., None])


def _drift(c: np.ndarray, dh: np.ndarray, dv: np.ndarray, amount: float) -> np.ndarray:
    """Per-pixel colour (s, s, 3): ``c`` with hue turned by up to +-90*amount degrees and
    brightness moved by up to +-0.25*amount, following the fields dh, dv in [-0.5, 0.5]."""
    hsv = cv2.cvtColor(np.asarray(c, np.float32)[None, None], cv2.COLOR_RGB2HSV)[0, 0]
    s = dh.shape[0]
    h = (hsv[0] + 360.0 * 0.5 * amount * dh) % 360.0
    v = np.clip(hsv[2] + 0.5 * amount * dv, 0.05, 1.0)
    out = np.stack([h, np.full((s, s), hsv[1], np.float32), v], -1).astype(np.float32)
    return cv2.cvtColor(out, cv2.COLOR_HSV2RGB)


def background_palette(bg: int, rng, variation: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The two colours render_background(bg, rng, s, variation) uses (same stream, first draws)."""
    st = sample_bg_style(rng, bg, variation)
    return st["c1"], st["c2"]


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


PATTERNS = ["stripes", "dots", "checker", "waves", "blotches", "rings", "zigzag", "grid"]


def sample_look(label: int, n_classes: int, rng, palette=None, by_class: bool = False) -> dict:
    """Instance appearance of an object: its own texture, in the scene's own colours.

    The class is the shape alone. The texture (pattern, period, angle, blotches) is
    drawn per instance, in full contrast between two colours taken from the
    background's ``palette`` (slightly perturbed), so neither a colour nor a
    brightness marks the object: its structure does. Without a palette (a stylized
    variant's texture, or ``object_colours: own``) the two colours are drawn like a
    background's. ``by_class`` (``object_texture: class``) makes the pattern family
    follow the class, as fur or feathers do; period, angle and colours stay per instance.
    """
    if palette is None:
        st = sample_bg_style(rng)
        palette = (st["c1"], st["c2"])
    c1, c2 = (np.clip(np.asarray(c, np.float32) + rng.normal(0, 0.04, 3), 0, 1) for c in palette)
    if rng.random() < 0.5:
        c1, c2 = c2, c1
    return {
        "pattern": PATTERNS[label % len(PATTERNS)] if by_class else PATTERNS[rng.integers(5)],
        "c1": c1.astype(np.float32),
        "c2": c2.astype(np.float32),
        "angle": rng.uniform(0, np.pi),
        "period": rng.uniform(0.08, 0.2),  # fraction of the image side
        "phase": rng.uniform(0, 1, 2),
        "blotch": rng.random((4, 4)).astype(np.float32),
        "blotch_amount": rng.uniform(0.2, 0.5),
    }


def render_texture(look: dict, s: int) -> np.ndarray:
    """Fill the whole canvas with an object texture; the mask selects where it shows."""
    x, y = _grid(s)
    per = look["period"] * s
    u = (x * math.cos(look["angle"]) + y * math.sin(look["angle"])) / per + look["phase"][0]
    v = (-x * math.sin(look["angle"]) + y * math.cos(look["angle"])) / per + look["phase"][1]
    pat = look["pattern"]
    if pat == "stripes":
        t = ((u % 1.0) < 0.45).astype(np.float32)
    elif pat == "dots":
        t = (((u % 1.0) - 0.5) ** 2 + ((v % 1.0) - 0.5) ** 2 < 0.09).astype(np.float32)
    elif pat == "checker":
        t = ((np.floor(u) + np.floor(v)) % 2).astype(np.float32)
    elif pat == "rings":
        t = ((np.sqrt((u - u.mean()) ** 2 + (v - v.mean()) ** 2) % 1.0) < 0.5).astype(np.float32)
    elif pat == "zigzag":
        t = (((u + 2 * np.abs((v % 1.0) - 0.5)) % 1.0) < 0.5).astype(np.float32)
    elif pat == "grid":
        t = (((u % 1.0) < 0.3) | ((v % 1.0) < 0.3)).astype(np.float32)
    elif pat == "waves":
        t = (0.5 + 0.5 * np.sin(2 * np.pi * (u + 0.3 * np.sin(2 * np.pi * v)))).astype(np.float32)
    else:  # blotches: thresholded smooth noise at the texture period
        t = (_sample_grid(look["blotch"], u * 0.7, v * 0.7) > 0.5).astype(np.float32)
    blotch = cv2.resize(look["blotch"], (s, s), interpolation=cv2.INTER_CUBIC)
    t = np.clip(t * (1 - look["blotch_amount"]) + look["blotch_amount"] * (blotch > 0.5), 0, 1)
    t = t[..., None]
    return _to_uint8(look["c1"] * (1 - t) + look["c2"] * t)


def _polygon(name: str) -> list[np.ndarray]:
    """Unit-radius outline(s) of a polygonal shape, centred at the origin."""

    def ngon(n, r=1.0, rot=-np.pi / 2):
        a = rot + 2 * np.pi * np.arange(n) / n
        return np.stack([r * np.cos(a), r * np.sin(a)], 1)

    if name == "square":
        return [np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64) * 0.8]
    if name == "triangle":
        return [ngon(3) + [0, 0.2]]
    if name == "star":
        outer, inner = ngon(5), ngon(5, 0.42, -np.pi / 2 + np.pi / 5)
        return [np.stack([outer, inner], 1).reshape(-1, 2)]
    if name == "cross":
        a, b = 1.0, 0.33
        return [np.array([[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b],
                          [b, a], [-b, a], [-b, b], [-a, b], [-a, -b], [-b, -b]])]  # fmt: skip
    if name == "diamond":
        return [np.array([[0, -1], [0.55, 0], [0, 1], [-0.55, 0]], np.float64)]
    if name == "hexagon":
        return [ngon(6, rot=0.0)]
    raise ValueError(name)


def draw_shape(name: str, s: int, cx: float, cy: float, r: float, rot: float) -> np.ndarray:
    """Binary mask (s, s) bool of a shape of radius ``r`` px centred at (cx, cy)."""
    m = np.zeros((s, s), np.uint8)
    sh = 4  # sub-pixel precision of cv2 drawing
    f = float(1 << sh)

    def ellipse(ax, ay, dx=0.0, value=1):
        c, sn = math.cos(rot), math.sin(rot)
        centre = (round((cx + dx * r * c) * f), round((cy + dx * r * sn) * f))
        axes = (max(1, round(ax * r * f)), max(1, round(ay * r * f)))
        cv2.ellipse(m, centre, axes, math.degrees(rot), 0, 360, value, -1, cv2.LINE_8, sh)

    if name == "circle":
        ellipse(1.0, 1.0)
    elif name == "ellipse":
        ellipse(1.0, 0.5)
    elif name == "ring":
        ellipse(1.0, 1.0)
        ellipse(0.55, 0.55, value=0)
    elif name == "crescent":
        ellipse(1.0, 1.0)
        ellipse(0.85, 0.85, dx=0.45, value=0)
    else:
        c, sn = math.cos(rot), math.sin(rot)
        for poly in _polygon(name):
            pts = poly @ np.array([[c, sn], [-sn, c]]) * r + [cx, cy]
            cv2.fillPoly(m, [np.round(pts * f).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=sh)
    return m.astype(bool)


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


def object_mask(obj: dict, s: int) -> np.ndarray:
    return draw_shape(SHAPES[obj["label"]], s, obj["cx"], obj["cy"], obj["r"], obj["rot"])


def mask_box(mask: np.ndarray) -> list[int] | None:
    """Inclusive pixel bounds [x0, y0, x1, y1] of a boolean mask (None if empty)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]


def norm_box(box: list[int], w: int, h: int) -> list[float]:
    x0, y0, x1, y1 = box
    return [x0 / w, y0 / h, (x1 + 1) / w, (y1 + 1) / h]


def _iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    inter = ix * iy
    area = lambda z: (z[2] - z[0] + 1) * (z[3] - z[1] + 1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


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


# ----------------------------------------------------------------------------- rendering


def _render_scene(p: dict, sc: dict) -> dict:
    """Pixels of one scene: background, object layers, composite and masks."""
    s = p["image_size"]
    bg = render_background(
        sc["bg"],
        _rng(p, sc["split"], sc["index"], _BG),
        s,
        p["bg_variation"],
        p["bg_drift"],
        p["bg_structure_mix"],
    )
    geom = _rng(p, sc["split"], sc["index"], _GEOM)
    look_rng = _rng(p, sc["split"], sc["index"], _LOOK)
    palette = (
        background_palette(sc["bg"], _rng(p, sc["split"], sc["index"], _BG), p["bg_variation"])
        if p["object_colours"] == "background"
        else None
    )
    scale = p["object_scale"] if p["kind"] == "single" else p["multi_object_scale"]
    image = bg.copy()
    union = np.zeros((s, s), bool)
    objs = []
    for label in sc["labels"]:
        obj = _place(p, geom, label, s, scale, objs)
        obj["mask"] = object_mask(obj, s)
        obj["look"] = sample_look(
            label, p["n_classes"], look_rng, palette, p["object_texture"] == "class"
        )
        tex = render_texture(obj["look"], s)
        image[obj["mask"]] = tex[obj["mask"]]
        for prev in objs:  # later objects occlude earlier ones
            prev["visible"] &= ~obj["mask"]
        obj["visible"] = obj["mask"].copy()
        obj["texture"] = tex
        union |= obj["mask"]
        objs.append(obj)
    return {"bg": bg, "image": image, "mask": union, "objects": objs}


def _place(p, rng, label, s, scale, placed) -> dict:
    """Sample an object position whose box overlaps earlier ones by at most max_overlap IoU."""
    best = None
    for _ in range(30):
        obj = sample_object(rng, label, s, scale)
        r = obj["r"]
        box = [obj["cx"] - r, obj["cy"] - r, obj["cx"] + r, obj["cy"] + r]
        worst = max([_iou(box, q["approx_box"]) for q in placed], default=0.0)
        obj["approx_box"] = box
        if worst <= p["max_overlap"]:
            return obj
        if best is None or worst < best[0]:
            best = (worst, obj)
    return best[1]


def _render_variant(p: dict, sc: dict, scene: dict, name: str, split_scenes) -> tuple:
    """One Background-Challenge or shift variant of a rendered single-object scene.

    Returns (image, bg_label, bg_source, detail, has_object).
    """
    s = p["image_size"]
    vp = sc["variant_plan"]
    mask = scene["mask"]
    obj = scene["objects"][0]
    if name in BC_VARIANTS:
        draw = lambda label, rng: render_background(  # noqa: E731
            label, rng, s, p["bg_variation"], p["bg_drift"], p["bg_structure_mix"]
        )
        return background_challenge_variant(p, sc, scene, name, split_scenes, draw)
    if name == "sketch":
        return _sketch(scene["image"], mask), sc["bg"], -1, "", True
    if name == "corrupted":
        kind = vp["corruption"]
        rng = _rng(p, sc["split"], sc["index"], 100 + _VARIANT)
        return _corrupt(scene["image"], kind, rng), sc["bg"], -1, kind, True
    if name == "stylized":
        c = vp["style_label"]
        look = sample_look(
            c,
            p["n_classes"],
            _rng(p, sc["split"], sc["index"], 100 + _LOOK),
            by_class=p["object_texture"] == "class",
        )
        tex = render_texture(look, s)
        img = np.where(obj["mask"][..., None], tex, scene["image"])
        return img, sc["bg"], -1, f"texture_from={c}", True
    raise ValueError(f"unknown variant {name}")


def background_challenge_variant(p, sc, scene, name, split_scenes, draw_bg) -> tuple:
    """only_fg / mixed_* / only_bg_b / only_bg_t of a rendered single-object scene.

    Shared by every dataset that renders a scene's background from the RNG stream
    ``_rng(p, split, index, _BG)`` alone: ``draw_bg(bg_label, rng)`` re-renders the
    background of the mixed_* source scene (or a fresh one when the split has none of
    the wanted class). mixed_* keep the scene's foreground pixels (``scene["mask"]``)
    exactly. Returns (image, bg_label, bg_source, detail, has_object).
    """
    vp = sc["variant_plan"]
    mask = scene["mask"]
    if name == "only_fg":
        return np.where(mask[..., None], scene["image"], 0).astype(np.uint8), -1, -1, "", True
    if name.startswith("mixed_"):
        j = vp[name]
        if j >= 0:
            other = split_scenes[j]
            bg = draw_bg(other["bg"], _rng(p, other["split"], j, _BG))
            bg_label, source, detail = other["bg"], other["scene_id"], ""
        else:
            bg_label = vp["fresh_bg"][name]
            bg = draw_bg(bg_label, _rng(p, sc["split"], sc["index"], 100 + _BG))
            source, detail = -1, "fresh_background"
        return np.where(mask[..., None], scene["image"], bg), bg_label, source, detail, True
    x0, y0, x1, y1 = mask_box(mask)
    if name == "only_bg_b":
        img = scene["image"].copy()
        img[y0 : y1 + 1, x0 : x1 + 1] = 0
        return img, sc["bg"], -1, "", False
    if name == "only_bg_t":
        return _tile_box(scene["image"], (x0, y0, x1, y1)), sc["bg"], -1, "", False
    raise ValueError(f"not a Background-Challenge variant: {name}")


def _tile_box(image: np.ndarray, box) -> np.ndarray:
    """Fill the box with tiles of the largest background strip outside it (Only-BG-T)."""
    x0, y0, x1, y1 = box
    h, w = image.shape[:2]
    strips = [
        image[:y0, :],
        image[y1 + 1 :, :],
        image[:, :x0],
        image[:, x1 + 1 :],
    ]
    src = max(strips, key=lambda a: a.shape[0] * a.shape[1])
    out = image.copy()
    bh, bw = y1 - y0 + 1, x1 - x0 + 1
    if src.size == 0:  # the box covers the whole image: nothing to tile from
        out[y0 : y1 + 1, x0 : x1 + 1] = 0
        return out
    reps = (math.ceil(bh / src.shape[0]), math.ceil(bw / src.shape[1]), 1)
    out[y0 : y1 + 1, x0 : x1 + 1] = np.tile(src, reps)[:bh, :bw]
    return out


def _sketch(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Black strokes on white: image edges plus the object outline (ImageNet-Sketch analogue)."""
    gray = cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), (3, 3), 0)
    edges = cv2.Canny(gray, 80, 160) > 0
    m = mask.astype(np.uint8)
    outline = cv2.morphologyEx(m, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    out = np.full(mask.shape, 255, np.uint8)
    out[edges] = 90
    out[outline] = 0
    return np.repeat(out[..., None], 3, axis=2)


def _corrupt(image: np.ndarray, kind: str, rng) -> np.ndarray:
    """ImageNet-C style corruption at a fixed, clearly visible severity."""
    if kind == "gaussian_noise":
        noisy = image.astype(np.float32) + rng.normal(0, 0.12 * 255, image.shape)
        return np.clip(noisy + 0.5, 0, 255).astype(np.uint8)
    if kind == "gaussian_blur":
        return cv2.GaussianBlur(image, (0, 0), sigmaX=1.5)
    if kind == "jpeg":
        ok, buf = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 8])
        return cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1].copy()
    raise ValueError(f"unknown corruption {kind}")


# ----------------------------------------------------------------------------- output


def _write(path: Path, data: bytes) -> None:
    """Write via a temporary name + rename (no fsync: the manifest, written last and
    fsynced, is what marks the dataset complete)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _row(image_id: str, path: str, variant: str, **fields) -> dict:
    """A manifest row; ``fields`` gives the remaining MANIFEST_SCHEMA columns + extras."""
    row = {"image_id": image_id, "path": path, "variant": variant, "bg_source": -1, "detail": ""}
    row.update(fields)
    row["boxes"] = [[float(v) for v in b] for b in row["boxes"]]
    for key in ("labels", "box_labels"):
        row[key] = [int(c) for c in row[key]]
    return row


def _render_chunk(args) -> list[dict]:
    """Render and write scenes[lo:hi] of one split; returns their manifest rows."""
    p, out, split_scenes, lo, hi = args
    rows = []
    for sc in split_scenes[lo:hi]:
        scene = _render_scene(p, sc)
        variant = lambda v: _render_variant(p, sc, scene, v, split_scenes)  # noqa: E731,B023
        rows += write_scene(p, Path(out), sc, scene, variant)
    return rows


def write_scene(p: dict, out: Path, sc: dict, scene: dict, render_variant) -> list[dict]:
    """Write one rendered scene (image, mask, its variants, its object crops); its rows.

    Shared by the datasets that render scenes (scenes, composite): ``scene`` has
    ``image``, ``mask`` (foreground union) and ``objects`` (each with ``label`` and
    ``visible``), optionally ``detail`` for the original row; ``render_variant(name)``
    returns (image, bg_label, bg_source, detail, has_object).
    """
    s = p["image_size"]
    rows = []
    split, name = sc["split"], f"{sc['index']:06d}"
    mask_rel = f"masks/{split}/{name}.png"
    _write(out / mask_rel, encode_png(scene["mask"].astype(np.uint8) * 255))
    boxes, box_labels, areas = [], [], []
    for obj in scene["objects"]:
        b = mask_box(obj["visible"])
        if b is not None:  # fully occluded objects have no box
            boxes.append(norm_box(b, s, s))
            box_labels.append(obj["label"])
            areas.append(int(obj["visible"].sum()))
    # multi: the image-level label is the class of the largest visible object
    label = sc["label"] if p["kind"] == "single" else box_labels[int(np.argmax(areas))]
    base = dict(split=split, scene_id=sc["scene_id"], width=s, height=s, label=label,
                labels=sc["labels"], bg_label=sc["bg"], boxes=boxes, box_labels=box_labels,
                mask_path=mask_rel)  # fmt: skip
    rel = f"images/{split}/original/{name}.png"
    _write(out / rel, encode_png(scene["image"]))
    rows.append(_row(f"{split}/original/{name}", rel, "original", **base,
                     detail=scene.get("detail", "")))  # fmt: skip
    for v in p["variants"] if "variant_plan" in sc else []:
        img, bg_label, source, detail, has_obj = render_variant(v)
        vrel = f"images/{split}/{v}/{name}.png"
        _write(out / vrel, encode_png(img))
        row = {**base, "bg_label": bg_label, "bg_source": source, "detail": detail}
        if not has_obj:  # only_bg_*: no object left in the image
            row.update(boxes=[], box_labels=[], mask_path="masks/empty.png")
        rows.append(_row(f"{split}/{v}/{name}", vrel, v, **row))
    if p["kind"] == "multi":
        rows += _write_crops(p, out, sc, scene)
    return rows


def _write_crops(p: dict, out: Path, sc: dict, scene: dict) -> list[dict]:
    """COCO-Crop analogue: every visible object cropped with a margin, resized to crop_size."""
    s, cs, split = p["image_size"], p["crop_size"], f"objcrop_{sc['split']}"
    rows = []
    for k, obj in enumerate(scene["objects"]):
        b = mask_box(obj["visible"])
        if b is None:
            continue
        x0, y0, x1, y1 = b
        cx0, cy0, cx1, cy1 = crop_window((x0, y0, x1 + 1, y1 + 1), p["crop_margin"], s, s)
        crop = scene["image"][cy0:cy1, cx0:cx1]
        crop = cv2.resize(crop, (cs, cs), interpolation=cv2.INTER_LINEAR)
        m = obj["visible"][cy0:cy1, cx0:cx1].astype(np.uint8) * 255
        m = cv2.resize(m, (cs, cs), interpolation=cv2.INTER_NEAREST)
        name = f"{sc['index']:06d}_{k}"  # k: the object's index in the parent's `labels`
        rel, mrel = f"images/{split}/original/{name}.png", f"masks/{split}/{name}.png"
        _write(out / rel, encode_png(crop))
        _write(out / mrel, encode_png(m))
        cb = mask_box(m > 0)
        boxes = [norm_box(cb, cs, cs)] if cb is not None else []
        c = obj["label"]
        rows.append(
            _row(f"{split}/original/{name}", rel, "original", split=split,
                 scene_id=sc["scene_id"], width=cs, height=cs, label=c, labels=[c],
                 bg_label=sc["bg"], boxes=boxes, box_labels=[c] * len(boxes), mask_path=mrel)
        )  # fmt: skip
    return rows


def make_folders(p: dict, out: Path, splits: list[str]) -> None:
    """Create the output folders of a scene-rendering dataset and ``masks/empty.png``."""
    folders = {f"masks/{s}" for s in splits} | {f"images/{s}/original" for s in splits}
    if p["kind"] == "single":
        folders |= {
            f"images/{s}/{v}" for s in p["variant_splits"] if s in splits for v in p["variants"]
        }
    else:
        folders |= {
            f"{d}/objcrop_{s}" + ("/original" if d == "images" else "")
            for s in splits
            for d in ("images", "masks")
        }
    for f in sorted(folders):
        (out / f).mkdir(parents=True, exist_ok=True)
    _write(out / "masks/empty.png", encode_png(np.zeros((p["image_size"],) * 2, np.uint8)))


def chunk_jobs(p: dict, out: Path, splits: list[str], step: int = 50) -> list[tuple]:
    """(p, out, split_scenes, lo, hi) render jobs over the planned scenes of ``splits``."""
    jobs = []
    for split in splits:
        scenes = plan_split(p, split)
        jobs += [
            (p, str(out), scenes, lo, min(lo + step, len(scenes)))
            for lo in range(0, len(scenes), step)
        ]
    return jobs


def run_jobs(fn, jobs: list, workers: int, desc: str, progress: bool,
             initializer=None, initargs=()) -> list[dict]:  # fmt: skip
    """Concatenated rows of ``fn(job)`` in job order, in a process pool when workers > 1.

    ``initializer(*initargs)`` runs once in each process (and here when serial): the
    way to hand large read-only inputs to workers without pickling them per job.
    """
    rows: list[dict] = []
    bar = tqdm(total=len(jobs), desc=desc, unit="chunk", disable=not progress)
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(workers, initializer=initializer, initargs=initargs) as pool:
            for chunk_rows in pool.map(fn, jobs):  # map keeps the job order
                rows += chunk_rows
                bar.update()
    else:
        if initializer is not None:
            initializer(*initargs)
        for job in jobs:
            rows += fn(job)
            bar.update()
    bar.close()
    return rows


def generate(params: dict, out_dir, progress: bool = True) -> Path:
    """Generate the dataset described by merged ``params`` into ``out_dir``.

    Returns the path of the written ``manifest.parquet``.
    """
    p = check_params(dict(params))
    out = Path(out_dir)
    splits = [s for s in SPLITS if p[f"n_{s}"] > 0]
    make_folders(p, out, splits)
    jobs = chunk_jobs(p, out, splits)
    rows = run_jobs(_render_chunk, jobs, p["workers"], f"scenes[{p['kind']}]", progress)

    write_json(
        out / "classes.json",
        {
            "classes": SHAPES[: p["n_classes"]],
            "bg_classes": BACKGROUNDS[: p["n_bg_classes"]],
            "paired_bg": [paired_bg(c, p["n_bg_classes"]) for c in range(p["n_classes"])],
            "partner": [partner(c, p["n_classes"]) for c in range(p["n_classes"])],
            "params": {k: v for k, v in p.items() if k != "workers"},
        },
    )
    manifest = out / "manifest.parquet"
    write_manifest(manifest, pd.DataFrame(rows))
    return manifest
