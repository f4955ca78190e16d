"""Background-Challenge variants (only_fg, mixed_*, only_bg_*) and distribution-shift
variants (sketch, corruptions) of a rendered scene."""

from __future__ import annotations

import math

import cv2
import numpy as np

from ...geometry import mask_box
from .plan import _BG, _rng


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
        return tile_box(scene["image"], (x0, y0, x1, y1)), sc["bg"], -1, "", False
    raise ValueError(f"not a Background-Challenge variant: {name}")


def tile_box(image: np.ndarray, box) -> np.ndarray:
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


def sketch(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Black strokes on white: image edges plus the object outline (ImageNet-Sketch analogue)."""
    gray = cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), (3, 3), 0)
    edges = cv2.Canny(gray, 80, 160) > 0
    m = mask.astype(np.uint8)
    outline = cv2.morphologyEx(m, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    out = np.full(mask.shape, 255, np.uint8)
    out[edges] = 90
    out[outline] = 0
    return np.repeat(out[..., None], 3, axis=2)


def corrupt(image: np.ndarray, kind: str, rng) -> np.ndarray:
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
