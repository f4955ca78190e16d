"""The cam stage's parameters: ``DEFAULTS`` (one entry of the config's ``cam.configs``),
``CHOICES`` (the values a key may take) and ``check_params``, the one check of them.

Light: no torch or cv2, so the config check (oacl.configcheck, which generates the
schema's ``cam_config`` section from DEFAULTS and CHOICES) reads it cheaply. ``oacl cam``
merges its ``--cfg`` over DEFAULTS and checks the result here (``resolve``); the engine
(oacl.cam.run, oacl.cam.engine) takes those checked values and does not check again.
"""

from __future__ import annotations

from ..params import merge_params

DEFAULTS = {
    "method": "contracam",  # contracam | classifier (Grad-CAM of a supervised model) | ncut (reference, cam/ncut.py)
    "iters": 1,  # Iterative ContraCAM iterations (paper: 10 multi-object, 1 single)
    "expand_res": 1,  # 1 | 2 (layer4 stride 1) | 4 (also layer3), inference only
    "nsr": True,  # negative-signal removal (ReLU on the CAM weights)
    "pos_mode": "batch_sum",  # batch_sum (released code) | per_sample (Eq. 1)
    "temperature": 1.0,  # score logits / temperature: 1 = Algorithm 2 (none); Eq. 1 has the model's (0.2)
    "mask_color": "batch_mean",  # or per-channel values in normalised units
    "classifier_labels": "predicted",  # classifier CAM: predicted | manifest (label col.)
    "batch_size": 64,  # the rest of the batch are the negatives (>= 2)
    "splits": ["train", "test"],  # manifest splits to mask (variant 'original' only)
    "max_images": None,  # optional cap: deterministic subset (seeded), manifest order
    "image_size": None,  # CAM input and stored mask size; None: the model's meta
    "device": "auto",  # auto | cpu | cuda (--device overrides)
    "amp": "auto",  # auto (bf16 on CUDA) | bf16 | none: trunk precision
    "channels_last": True,
    "fuse_bn": True,  # fold BatchNorm into convs on the inference copy
    "skip_bad": False,  # corrupt/missing image: False -> error naming it; True -> skip
    "num_workers": 4,  # image-decoding threads (prefetch of the next batch)
}


# the values a key may take, defined once: check_params and the config schema's enums
# (oacl.configcheck) both read it
CHOICES = {
    "method": ("contracam", "classifier", "ncut"),
    "expand_res": (1, 2, 4),
    "pos_mode": ("batch_sum", "per_sample"),
    "classifier_labels": ("predicted", "manifest"),
    "device": ("auto", "cpu", "cuda"),
    "amp": ("auto", "bf16", "none"),
}


def check_params(p: dict, where: str = "cam") -> None:
    """The cam parameters (merged over DEFAULTS): ValueError naming the first bad key.
    The same rules as the config schema's ``cam_config`` section."""

    def bad(key, want):
        raise ValueError(f"{where}: {key} must be {want}, got {p[key]!r}")

    def integer(x) -> bool:
        return isinstance(x, int) and not isinstance(x, bool)

    for key, values in CHOICES.items():
        if p[key] not in values:
            bad(key, "one of " + ", ".join(map(repr, values)))
    if not integer(p["iters"]) or p["iters"] < 1:
        bad("iters", "an integer >= 1")
    # the rest of the batch are a sample's negatives: a batch of one has none
    if not integer(p["batch_size"]) or p["batch_size"] < 2:
        bad("batch_size", "an integer >= 2")
    t = p["temperature"]
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0:
        bad("temperature", "a number > 0")
    if not isinstance(p["splits"], list) or not all(isinstance(s, str) for s in p["splits"]):
        bad("splits", "a list of split names")
    if p["max_images"] is not None and (not integer(p["max_images"]) or p["max_images"] < 1):
        bad("max_images", "null or an integer >= 1")
    if p["image_size"] is not None and (not integer(p["image_size"]) or p["image_size"] < 8):
        bad("image_size", "null or an integer >= 8")


def resolve(cfg, device: str | None = None, where: str = "cam") -> dict:
    """``cfg`` (a dict or JSON) merged over DEFAULTS, ``device`` (when given) over that,
    checked: the parameters the cam engine runs with."""
    params = merge_params(DEFAULTS, cfg, where)
    if device is not None:
        params["device"] = device
    check_params(params, where)
    return params
