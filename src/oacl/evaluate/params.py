"""The evaluate stage's parameters. Light: no cv2 or torch, so the config check reads it
cheaply.

``DEFAULTS`` is the config's ``evaluate`` section: one entry per sub-command of
``oacl evaluate`` (``linear``, ``shift``, ``localization``); ``CHOICES`` the values a
key may take, per sub-command; ``check_localization`` checks the localisation's.
The localisation refines its reference maps and draws the boxes of binarised maps as
the refine stage does, with the refine stage's parameters: its ``refine`` entry
(merged over oacl.refine.params DEFAULTS; the workflow passes its own ``refine``).
"""

from __future__ import annotations

import copy

from ..artifacts import BG_CHALLENGE_VARIANTS

# mask-mIoU protocols of the localisation (oacl.evaluate.protocols)
PROTOCOLS = ("oacl", "paper")
# trivial reference maps scored beside every CAM; ``cam_mean`` is the CAM configuration's
# own average map over the evaluated images: its positional prior (e.g. a centre blob from
# zero padding), which a map with no per-image content ties with
REFERENCES = ("gaussian", "colour", "cam_mean")
SHIFT_VARIANTS = ["sketch", "corrupted", "stylized"]

DEFAULTS = {
    "linear": {
        # regularisation values lam (penalty weight; not sklearn's C), log-spaced
        "c_grid": {"min": 1e-6, "max": 1e5, "n": 45},
        "max_iter": 300,  # L-BFGS iterations per fit (warm starts make later fits short)
        "tol": 1e-7,  # L-BFGS gradient tolerance
        "standardize": True,
        "refit_on_train_val": True,
        "train_split": "train",
        "val_split": "val",
        "val_fraction": 0.2,  # hold-out of train when the manifest has no val split
        "test_split": "test",
        "variant": "original",
        "label_column": "label",
        "seed": 0,
        "batch_size": 256,  # feature extraction
        "crop_ratio": 0.875,  # centre crop: shorter side to image_size / crop_ratio, crop image_size
        "device": "auto",  # auto = cuda if available
    },
    "shift": {
        "linear": None,  # the linear head's parameters: those of `linear` (set below)
        "bg_variants": list(BG_CHALLENGE_VARIANTS),
        "shift_variants": list(SHIFT_VARIANTS),
        "objcrop": {
            "enabled": True,
            "train_split": "objcrop_train",
            "val_split": "objcrop_val",
            "test_split": "objcrop_test",
        },
    },
    "localization": {
        "threshold": 0.5,  # mask binarisation for mask_miou
        "threshold_grid": [round(0.05 * i, 2) for i in range(1, 20)],  # for best_threshold_miou
        "maxbox_cam_step": 0.01,  # CAM threshold step for MaxBoxAccV2 (wsolevaluation default)
        "maxbox_iou_thresholds": [30, 50, 70],  # delta in percent
        "gaussian_sigma": 0.25,  # baseline: std of the centred Gaussian, fraction of width/height
        "splits": [],  # evaluate only these manifest splits ([] = every image in the shards)
        "variants": [],  # ... and only these variants, e.g. ["original"] ([] = all)
        "references": list(REFERENCES),  # reference maps to score beside the CAM
        # refine-stage parameters: the references' CRF masks and the box rules of
        # box_miou_nocrf (min_component, min_box_area, margin, largest_only); the
        # workflow passes its own `refine` section
        "refine": {},
        "protocol": "oacl",  # mask mIoU protocol: "oacl" (above) or "paper" (protocols.py)
    },
}
DEFAULTS["shift"]["linear"] = copy.deepcopy(DEFAULTS["linear"])

CHOICES = {"localization": {"protocol": PROTOCOLS}}


def check_localization(p: dict) -> None:
    """The localisation parameters (merged over DEFAULTS["localization"]): ValueError
    naming the bad key."""
    if p["protocol"] not in PROTOCOLS:
        raise ValueError(
            f"localization cfg: protocol must be one of {PROTOCOLS}, got {p['protocol']!r}"
        )
    bad = [r for r in p["references"] if r not in REFERENCES]
    if bad:
        raise ValueError(f"localization cfg: unknown references {bad} (known: {list(REFERENCES)})")
