"""The pretrain stage's parameters: ``DEFAULTS`` (the config's ``pretrain`` section, with
``method``, ``variant`` and ``seed`` set by the rule), ``CHOICES`` (the values a key may
take) and ``check_params``, the one check of them; ``resolve`` merges a configuration
over DEFAULTS (``augment`` included, key by key) and checks it.

Light: no torch or cv2, so the config check (oacl.configcheck, which generates the
schema's ``pretrain`` section from DEFAULTS and CHOICES) reads it cheaply. ``oacl
pretrain`` resolves its ``--cfg`` here; training (oacl.train.loop.pretrain) and the
augmentation (oacl.train.augment.TwoViewAugment) take the resolved values and neither
merge nor check them again.
"""

from __future__ import annotations

from .. import variants
from ..imagenet import IMAGENET_MEAN, IMAGENET_STD
from ..params import merge_params

# the batched two-view augmentation (oacl.train.augment)
AUGMENT_DEFAULTS = {
    "scale": [0.08, 1.0],  # RandomResizedCrop area range (paper: 0.08 instead of 0.2)
    "ratio": [3 / 4, 4 / 3],  # aspect-ratio range, in original pixels
    "flip_p": 0.5,
    "jitter": [0.4, 0.4, 0.4, 0.1],  # brightness, contrast, saturation, hue
    "jitter_p": 0.8,
    "grayscale_p": 0.2,
    "blur_p": 0.5,
    "blur_sigma": [0.1, 2.0],  # pixels at 224 px
    "blur_kernel_224": 23,
    "blur_scale_with_size": True,  # scale kernel and sigma by image_size / 224
    "p_mix": {"moco": 0.4, "byol": 0.3},  # per-sample probability of mixing one view
    "mix_view": "random",  # which view is mixed: random | first | second
    "mask_threshold": 0.2,  # binarisation threshold (BG-HardMix)
    "compute_dtype": "float32",  # colour ops: float32 | float16 | bfloat16 | auto (float16 on CUDA)
    "blur_method": "auto",  # auto | conv | matmul (auto: matmul on CUDA)
    "mean": list(IMAGENET_MEAN),
    "std": list(IMAGENET_STD),
}

DEFAULTS = {
    "method": "moco",  # moco | byol | supervised
    "variant": "baseline",  # see oacl.variants
    "seed": 0,
    "arch": "resnet18_small",  # resnet18 | resnet50 | resnet18_small[_reflect|_circular]
    "image_size": 64,  # training crop side (224 for the paper's presets)
    "store_size": 64,  # side images are decoded/resized to before cropping (256 at 224 px)
    "epochs": 6,
    "batch_size": 64,  # global; each of N processes takes batch_size / N
    "base_lr": 0.03,  # x batch/256
    # sgd (the paper's, every method) | adam: from-scratch supervised training on a few
    # thousand small scenes stays at chance loss with SGD and learns with Adam
    # (docs/architecture.md, "Why the supervised control fails")
    "optimizer": "sgd",
    "momentum": 0.9,  # sgd only
    "weight_decay": 1e-4,
    "min_lr": 1e-3,  # cosine floor at batch 256, scaled like base_lr
    "workers": None,  # data loader workers per process; None: SLURM_CPUS_PER_TASK / CPUs
    "ckpt_every_steps": 50,
    "knn_every": 2,  # epochs; 0 disables the monitor (the last epoch is always measured)
    "knn_k": 20,
    "knn_max": 10000,  # at most this many train (and val) images in the monitor
    "log_every": 20,  # steps between plain log lines when stderr is not a terminal
    # torch CPU threads per process; None: torch's default (CPUs / processes under DDP);
    # "auto": re-chosen under contention (oacl.train.threads; not bitwise reproducible)
    "threads": None,
    "gpus": 1,  # processes (one per GPU) for DDP; >1 re-launches under torchrun
    # share of the training images whose side information (boxes, mask, background
    # rectangle) may be empty (in the shards, but the CAM / GT yields nothing) before the
    # job fails; an image absent from every shard is always an error (oacl.train.sideinfo)
    "side_info_max_empty": 0.05,
    "moco": {
        "dim": 128,
        "hidden": None,  # None: the encoder's feature dim
        "queue_size": 4096,  # 65536 in the paper presets; 4096 suits ~2k images
        "momentum": 0.999,
        "temperature": 0.2,
        "symmetric": False,  # False: the original asymmetric MoCo v2 loss
        "bn_splits": 4,  # split-BN chunks per process (shuffle-BN emulation), 1: off
        "shuffle_bn": True,  # permute keys before their chunked BN pass
    },
    "byol": {
        "dim": 256,
        "hidden": None,  # None: 4096 (512 for resnet18_small)
        "base_momentum": 0.99,  # target EMA, cosine-increased to 1
    },
    "augment": AUGMENT_DEFAULTS,
}

# the values a key may take (nested like DEFAULTS), defined once: check_params and the
# config schema's enums (oacl.configcheck) both read it
CHOICES = {
    "method": ("moco", "byol", "supervised"),
    "variant": variants.NAMES,
    "optimizer": ("sgd", "adam"),
    "augment": {
        "mix_view": ("random", "first", "second"),
        "compute_dtype": ("float32", "float16", "bfloat16", "auto"),
        "blur_method": ("auto", "conv", "matmul"),
    },
}


def _integer(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def check_params(p: dict) -> None:
    """The pretrain parameters (merged over DEFAULTS): ValueError naming the first bad key.

    The choices, a job that would train at all (its untrained model.pt would otherwise
    be written and then evaluated as if it were a result), and what the method and
    variant need of the other keys. What depends on the data (batch_size above the train
    split) or the processes (batch_size divisible by them) is checked where the
    manifest is read (oacl.train.setup)."""
    for key, values in CHOICES.items():
        if key != "augment" and p[key] not in values:
            raise ValueError(f"pretrain: {key} must be one of {', '.join(values)}, got {p[key]!r}")
    for key, values in CHOICES["augment"].items():
        if p["augment"][key] not in values:
            raise ValueError(
                f"pretrain: augment.{key} must be one of {', '.join(values)}, "
                f"got {p['augment'][key]!r}"
            )
    epochs, batch = p["epochs"], p["batch_size"]
    if not _integer(epochs) or epochs < 1:
        raise ValueError(
            f"pretrain: epochs must be an integer >= 1 (got {epochs!r}): "
            "with it the job would train nothing"
        )
    if not _integer(batch) or batch < 2:
        raise ValueError(f"pretrain: batch_size must be an integer >= 2 (got {batch!r})")
    if variants.get(p["variant"]).mix is not None and p["method"] not in p["augment"]["p_mix"]:
        raise ValueError(f"pretrain: augment.p_mix has no entry for method {p['method']!r}")
    if p["method"] == "moco":
        keys = batch * (2 if p["moco"]["symmetric"] else 1)
        if p["moco"]["queue_size"] % keys:
            raise ValueError(
                f"moco.queue_size {p['moco']['queue_size']} must be a multiple of the "
                f"keys enqueued per step ({keys}: batch_size{' x2, symmetric' if keys > batch else ''})"
            )


def resolve(cfg) -> dict:
    """``cfg`` (a dict or JSON) merged over DEFAULTS and checked: the parameters training
    runs with."""
    params = merge_params(DEFAULTS, cfg, where="pretrain")
    check_params(params)
    return params
