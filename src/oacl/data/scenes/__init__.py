"""The embedded default dataset: seeded procedural scenes with the paper's biases.

Two kinds, both with pixel masks and boxes for every object:

``single`` (ImageNet-9 / Background Challenge analogue)
    one object per image; the background class is the object class's paired
    background with probability ``bg_bias`` (else a uniformly random *other*
    background class), so P(bg == paired(label)) = bg_bias exactly in expectation.
    Every scene of ``variant_splits`` also gets Background-Challenge variants built
    from the same underlying scene (same ``scene_id``): only_fg, mixed_same,
    mixed_rand, mixed_next, only_bg_b, only_bg_t, and distribution-shift variants
    sketch, corrupted, stylized (see ``scene.scene_variant``).
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

Placement (``placement``): ``centred`` (default) keeps each object whole, its centre
in [0.9 r, side - 0.9 r], where a centred prior finds it; ``free`` draws the centre
uniformly over the whole frame and resamples until at least 60 % of the object's area
is inside (masks and boxes are the visible part), so a centred Gaussian localises no
better than chance (tests/test_scenes.py). The composite type has the same switch.

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

Modules: ``plan`` (parameters, RNG streams, class and background choices, object
placement; no pixels), ``render`` (drawing primitives: backgrounds, textures, shapes),
``scene`` (one planned scene and its variants in pixels), ``image_variants``
(Background-Challenge and shift variants of a rendered scene), ``write`` (files,
manifest rows, the process pool and ``generate``). The names below are the package's
interface; the composite type (oacl.data.composite) reuses planning and writing.
"""

from .image_variants import background_challenge_variant
from .plan import (
    BC_VARIANTS,
    CORRUPTIONS,
    DEFAULTS,
    SPLITS,
    VARIANTS,
    check_layout,
    check_params,
    paired_bg,
    partner,
    plan_split,
)
from .render import (
    BACKGROUNDS,
    PATTERNS,
    SHAPES,
    background_palette,
    render_background,
    render_texture,
    sample_bg_style,
    sample_look,
)
from .scene import render_scene, scene_variant
from .write import chunk_jobs, generate, make_folders, run_jobs, write_scene

__all__ = [
    "BACKGROUNDS",
    "BC_VARIANTS",
    "CORRUPTIONS",
    "DEFAULTS",
    "PATTERNS",
    "SHAPES",
    "SPLITS",
    "VARIANTS",
    "background_challenge_variant",
    "background_palette",
    "check_layout",
    "check_params",
    "chunk_jobs",
    "generate",
    "make_folders",
    "paired_bg",
    "partner",
    "plan_split",
    "render_background",
    "render_scene",
    "render_texture",
    "run_jobs",
    "sample_bg_style",
    "sample_look",
    "scene_variant",
    "write_scene",
]
