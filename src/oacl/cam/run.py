"""The cam stage (command `oacl cam`, cli.py): ContraCAM or classifier CAM soft masks
for one shard of a manifest.

Batching is defined over the whole selected row list, not the shard: rows of the
selected splits (variant ``original``) in manifest order, optionally a deterministic
subset (``max_images``), cut into batches of ``batch_size``; shards get whole batches
(``artifacts.shard_rows`` over batch indices). The other images of a batch are the
negatives, so a mask depends only on its batch, never on ``n_shards``. The last,
smaller batch is padded with the first rows of the list (they serve as negatives and
their masks are discarded); a list shorter than ``batch_size`` is one smaller batch.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..artifacts import MASK_SCHEMA, read_manifest, shard_rows, write_rows
from ..geometry import IMAGENET_MEAN, IMAGENET_STD, resize
from ..io import ImageError, encode_png, read_rgb
from ..params import merge_params, params_json

log = logging.getLogger(__name__)

DEFAULTS = {
    "method": "contracam",  # contracam | classifier (Grad-CAM of a supervised model) | ncut (reference, cam/ncut.py)
    "iters": 1,  # Iterative ContraCAM iterations (paper: 10 multi-object, 1 single)
    "expand_res": 1,  # 1 | 2 (layer4 stride 1) | 4 (also layer3), inference only
    "nsr": True,  # negative-signal removal (ReLU on the CAM weights)
    "pos_mode": "batch_sum",  # batch_sum (released code) | per_sample (Eq. 1)
    "temperature": 1.0,  # score logits / temperature: 1 = Algorithm 2 (none); Eq. 1 has the model's (0.2)
    "mask_color": "batch_mean",  # or per-channel values in normalised units
    "classifier_labels": "predicted",  # classifier CAM: predicted | manifest (label col.)
    "batch_size": 64,  # the rest of the batch are the negatives
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


# the values a key may take, defined once: check_params, the engine (contracam.py,
# expand.py through check_choice) and the config schema (configcheck) all use it
CHOICES = {
    "method": ("contracam", "classifier", "ncut"),
    "expand_res": (1, 2, 4),
    "pos_mode": ("batch_sum", "per_sample"),
    "classifier_labels": ("predicted", "manifest"),
    "device": ("auto", "cpu", "cuda"),
    "amp": ("auto", "bf16", "none"),
}


def check_choice(key: str, value, where: str = "cam") -> None:
    """ValueError unless ``value`` is one of ``CHOICES[key]``."""
    if value not in CHOICES[key]:
        want = ", ".join(map(repr, CHOICES[key]))
        raise ValueError(f"{where}: {key} must be one of {want}, got {value!r}")


def check_params(p: dict) -> None:
    """The cam parameters (merged over DEFAULTS): ValueError naming the first bad key."""

    def bad(key, want):
        raise ValueError(f"cam: {key} must be {want}, got {p[key]!r}")

    check_choice("method", p["method"])
    if not isinstance(p["iters"], int) or p["iters"] < 1:
        bad("iters", "an integer >= 1")
    for key in ("expand_res", "pos_mode", "classifier_labels"):
        check_choice(key, p[key])
    if not isinstance(p["batch_size"], int) or p["batch_size"] < 1:
        bad("batch_size", "an integer >= 1")
    t = p["temperature"]
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0:
        bad("temperature", "a number > 0")
    if not isinstance(p["splits"], list) or not all(isinstance(s, str) for s in p["splits"]):
        bad("splits", "a list of split names")
    if p["max_images"] is not None and (
        not isinstance(p["max_images"], int) or p["max_images"] < 1
    ):
        bad("max_images", "null or an integer >= 1")
    if p["image_size"] is not None and (
        not isinstance(p["image_size"], int) or p["image_size"] < 8
    ):
        bad("image_size", "null or an integer >= 8")
    check_choice("device", p["device"])
    check_choice("amp", p["amp"])


def select_rows(df, params: dict):
    """The deterministic, ordered row list that batches are cut from."""
    sel = df[df["split"].isin(params["splits"]) & (df["variant"] == "original")]
    if len(df) and not len(sel):
        raise ValueError(
            f"cam: no rows with split in {params['splits']} and variant 'original' "
            f"(manifest splits: {sorted(df['split'].unique())})"
        )
    k = params["max_images"]
    if k is not None and k < len(sel):
        keep = np.sort(np.random.default_rng(0).choice(len(sel), size=k, replace=False))
        sel = sel.iloc[keep]
    return sel.reset_index(drop=True)


def make_batches(n_rows: int, batch_size: int) -> list[tuple[np.ndarray, int]]:
    """[(row indices, number of real rows)]: the last batch padded from the list start."""
    out = []
    for start in range(0, n_rows, batch_size):
        idx = np.arange(start, min(start + batch_size, n_rows))
        n_real = len(idx)
        pad = min(batch_size - n_real, start)  # rows of earlier batches only
        out.append((np.concatenate([idx, np.arange(pad)]), n_real))
    return out


def load_image(path: str, size: int, mean, std):
    """uint8 RGB -> squashed to size x size -> normalised CHW float32; plus (h, w)."""
    rgb = read_rgb(path)
    h, w = rgb.shape[:2]
    x = resize(rgb, (size, size), "shrink_any").astype(np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)), (h, w)


def run_cam(cfg, checkpoint, manifest, shard: int, n_shards: int, out, device=None) -> dict:
    """Compute one mask shard; returns a summary dict."""
    import torch
    from tqdm import tqdm

    from ..models import load_checkpoint
    from .contracam import CamEngine
    from .ncut import ncut_masks

    params = merge_params(DEFAULTS, cfg, "cam")
    if device is not None:
        params["device"] = device
    check_params(params)
    dev = params["device"]
    if dev == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev == "cuda" and not torch.cuda.is_available():
        raise ValueError("cam: device 'cuda' requested but CUDA is not available")
    amp = params["amp"]
    amp = ("bf16" if dev == "cuda" else "none") if amp == "auto" else amp

    rows = select_rows(read_manifest(manifest), params)
    batches = make_batches(len(rows), params["batch_size"])
    mine = [batches[i] for i in shard_rows(len(batches), shard, n_shards)]

    model = load_checkpoint(checkpoint, device=dev)
    meta = model.meta
    size = params["image_size"] or int(meta["image_size"])
    mean, std = meta.get("mean", IMAGENET_MEAN), meta.get("std", IMAGENET_STD)
    if params["method"] == "classifier" and getattr(model, "classifier", None) is None:
        raise ValueError(
            f"cam: method 'classifier' needs a supervised checkpoint; {checkpoint} "
            f"is {meta.get('method')!r}"
        )
    engine = CamEngine(
        model,
        params["expand_res"],
        params["fuse_bn"],
        params["channels_last"],
        torch.bfloat16 if amp == "bf16" else None,
    )
    record = dict(params, device=dev, amp=amp, image_size=size, checkpoint=str(checkpoint))
    record_json = params_json(record)
    if dev == "cuda":
        torch.backends.cudnn.benchmark = True

    def load(i):
        path = rows["abspath"].iloc[i]
        try:
            return load_image(path, size, mean, std)
        except (ImageError, FileNotFoundError, OSError) as exc:
            if not params["skip_bad"]:
                raise ImageError(
                    f"cam: image {path} (image_id {rows['image_id'].iloc[i]}): {exc}"
                ) from exc
            log.warning("skipping bad image %s: %s", path, exc)
            return None

    out_rows, skipped, t0 = [], set(), time.perf_counter()
    with ThreadPoolExecutor(max(1, params["num_workers"])) as pool:
        submit = lambda b: [pool.submit(load, int(i)) for i in b[0]]  # noqa: E731
        pending = submit(mine[0]) if mine else None
        for k, (idx, n_real) in enumerate(
            tqdm(mine, desc=f"cam shard {shard}/{n_shards}", unit="batch")
        ):
            loaded = [f.result() for f in pending]
            pending = submit(mine[k + 1]) if k + 1 < len(mine) else None
            keep = [j for j, item in enumerate(loaded) if item is not None]
            skipped.update(int(idx[j]) for j in range(n_real) if loaded[j] is None)
            if not any(j < n_real for j in keep):
                continue
            if len(keep) == 1:
                log.warning(
                    "batch of one image: ContraCAM has no negatives (see oacl.cam.contracam)"
                )
            x = torch.from_numpy(np.stack([loaded[j][0] for j in keep])).to(dev)
            if params["method"] == "contracam":
                masks = engine.contracam(
                    x,
                    params["iters"],
                    params["nsr"],
                    params["pos_mode"],
                    params["mask_color"],
                    temperature=params["temperature"],
                )
            elif params["method"] == "ncut":
                masks = ncut_masks(engine.features(x).detach(), x.shape[-1])
            else:
                labels = None
                if params["classifier_labels"] == "manifest":
                    labels = torch.as_tensor([int(rows["label"].iloc[int(idx[j])]) for j in keep])
                    if (labels < 0).any():
                        raise ValueError(
                            "cam: classifier_labels 'manifest' but some rows have label -1"
                        )
                masks = engine.classifier_cam(x, labels, params["nsr"])
            masks = (masks[:, 0].float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
            for m, j in zip(masks, keep):
                if j >= n_real:
                    continue  # padding row: negatives only
                i = int(idx[j])
                oh, ow = loaded[j][1]
                out_rows.append(
                    {
                        "image_id": str(rows["image_id"].iloc[i]),
                        "height": size,
                        "width": size,
                        "orig_height": int(oh),
                        "orig_width": int(ow),
                        "mask_png": encode_png(m),
                        "params": record_json,
                    }
                )
    write_rows(out, out_rows, MASK_SCHEMA)
    summary = {
        "images": len(out_rows),
        "batches": len(mine),
        "skipped": len(skipped),
        "seconds": round(time.perf_counter() - t0, 2),
        "out": str(out),
    }
    log.info("cam shard %d/%d: %s", shard, n_shards, summary)
    return summary
