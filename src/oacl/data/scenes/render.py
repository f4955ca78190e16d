"""Drawing primitives of the procedural scenes: backgrounds, object textures, shapes.

Every function draws from the generator it is given and from nothing else, so a
picture is a function of its RNG stream (oacl.data.scenes.plan ``_rng``).
"""

from __future__ import annotations

import colorsys
import math

import cv2
import numpy as np

SHAPES = [
    "circle", "square", "triangle", "star", "cross",
    "ring", "ellipse", "diamond", "hexagon", "crescent",
]  # fmt: skip
BACKGROUNDS = ["grass", "water", "sand", "brick", "sky", "snow", "wood", "asphalt"]


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


def object_mask(obj: dict, s: int) -> np.ndarray:
    return draw_shape(SHAPES[obj["label"]], s, obj["cx"], obj["cy"], obj["r"], obj["rot"])
