"""One planned scene of the ``scenes`` type in pixels: the original image and its
test-time variants."""

from __future__ import annotations

import numpy as np

from .image_variants import background_challenge_variant, corrupt, sketch
from .plan import _BG, _GEOM, _LOOK, _VARIANT, BC_VARIANTS, _rng, place_object
from .render import background_palette, object_mask, render_background, render_texture, sample_look


def render_scene(p: dict, sc: dict) -> dict:
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
        obj = place_object(p, geom, label, s, scale, objs)
        if "mask" not in obj:  # free placement drew its in-frame part already
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


def scene_variant(p: dict, sc: dict, scene: dict, name: str, split_scenes) -> tuple:
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
        return sketch(scene["image"], mask), sc["bg"], -1, "", True
    if name == "corrupted":
        kind = vp["corruption"]
        rng = _rng(p, sc["split"], sc["index"], 100 + _VARIANT)
        return corrupt(scene["image"], kind, rng), sc["bg"], -1, kind, True
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
