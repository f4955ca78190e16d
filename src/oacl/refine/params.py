"""The refine stage's parameters: ``DEFAULTS`` (the config's ``refine`` section) and
``check_params``. Light: no cv2, torch or pydensecrf, so the config check reads it cheaply.

They are also the localisation evaluation's (its ``refine`` option, oacl.evaluate): it
refines its reference maps and draws the boxes of binarised maps with the same rules
(oacl.refine.refinement), so changing e.g. ``margin`` changes both alike.
"""

from __future__ import annotations

# pydensecrf settings of the authors (oacl.refine.refinement.dense_crf)
CRF_DEFAULTS = {
    "gaussian_sxy": 3,
    "gaussian_compat": 3,
    "bilateral_sxy": 80,
    "bilateral_srgb": 13,
    "bilateral_compat": 10,
    "iterations": 5,
    "eps": 1e-5,  # probabilities are clipped to [eps, 1 - eps] before -log
}

DEFAULTS = {
    "crf": True,  # dense CRF before box extraction (paper: yes)
    "work_size": 224,  # shorter side (px) of the CRF / mask working resolution
    "upsample": False,  # smaller images: False = own size, CRF sxy scaled; True = upscale
    "crf_params": dict(CRF_DEFAULTS),  # pydensecrf defaults as the authors used
    "box_threshold": 0.5,  # on the CRF foreground marginal, or on the soft mask if crf is off
    "min_box_area": 0.01,  # boxes under 1% of the image are dropped
    "margin": 0.2,  # each side grows by 20% of the box width (x) / height (y)
    "largest_only": False,  # keep only the largest box
    "bg_threshold": 0.2,  # soft mask < 0.2 is background for the background patch
    "min_component": 0.001,  # connected components under 0.1% of the image are noise
    "skip_bad": False,  # missing/corrupt image: skip and count instead of failing
}

# keys whose value is a share of the image or a threshold on a [0, 1] map
_UNIT = ("box_threshold", "min_box_area", "bg_threshold", "min_component")


def check_params(p: dict) -> None:
    """The refine parameters (merged over DEFAULTS): ValueError naming the first bad key.
    The same ranges as the config schema's ``refine`` section."""

    def number(x) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool)

    def bad(key, want):
        raise ValueError(f"refine: {key} must be {want}, got {p[key]!r}")

    if not isinstance(p["work_size"], int) or isinstance(p["work_size"], bool):
        bad("work_size", "an integer")
    if p["work_size"] < 8:
        bad("work_size", ">= 8")
    for key in _UNIT:
        if not number(p[key]) or not 0 <= p[key] <= 1:
            bad(key, "a number in [0, 1]")
    if not number(p["margin"]) or p["margin"] < 0:
        bad("margin", "a number >= 0")
    crf = p["crf_params"]
    for key in ("gaussian_sxy", "bilateral_sxy", "bilateral_srgb"):
        if not number(crf[key]) or not crf[key] > 0:
            raise ValueError(f"refine: crf_params.{key} must be a number > 0, got {crf[key]!r}")
    for key in ("gaussian_compat", "bilateral_compat"):
        if not number(crf[key]) or crf[key] < 0:
            raise ValueError(f"refine: crf_params.{key} must be a number >= 0, got {crf[key]!r}")
    if not isinstance(crf["iterations"], int) or crf["iterations"] < 1:
        raise ValueError(
            f"refine: crf_params.iterations must be an integer >= 1, got {crf['iterations']!r}"
        )
    if not number(crf["eps"]) or not 0 < crf["eps"] <= 0.5:
        raise ValueError(f"refine: crf_params.eps must be in (0, 0.5], got {crf['eps']!r}")
