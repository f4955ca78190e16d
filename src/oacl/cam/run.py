"""The cam stage (command `oacl cam`, cli.py): ContraCAM or classifier CAM soft masks
for one shard of a manifest.

Batching is defined over the whole selected row list, not the shard: rows of the
selected splits (variant ``original``) in manifest order, optionally a deterministic
subset (``max_images``), cut into batches of ``batch_size``; shards get whole batches
(``artifacts.shard_rows`` over batch indices). The other images of a batch are the
negatives, so a mask depends only on its batch, never on ``n_shards``. The last,
smaller batch is padded with the first rows of the list (they serve as negatives and
their masks are discarded); a list shorter than ``batch_size`` is one smaller batch.

The parameters (DEFAULTS, CHOICES and their check) are oacl.cam.params; ``run_cam``
takes them merged and checked, and computes the masks with the method of ``METHODS``
(the engine: oacl.cam.engine; the normalised-cut reference: oacl.cam.ncut).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..artifacts import MASK_SCHEMA, read_manifest, remove_stale_shards, shard_rows, write_rows
from ..device import resolve_device
from ..geometry import IMAGENET_MEAN, IMAGENET_STD, resize
from ..io import ImageError, encode_png, read_rgb
from ..params import params_json

log = logging.getLogger(__name__)


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


# ------------------------------------------------------------------------ the methods
# each: (engine, normalised images x, params, the manifest rows, the row of each image
# of x) -> soft masks (B, 1, H, W) in [0, 1]; the keys are oacl.cam.params.CHOICES["method"]


def _contracam_masks(engine, x, params, rows, row_ids):
    return engine.contracam(
        x,
        params["iters"],
        params["nsr"],
        params["pos_mode"],
        params["mask_color"],
        temperature=params["temperature"],
    )


def _ncut_masks(engine, x, params, rows, row_ids):
    from .ncut import ncut_masks

    return ncut_masks(engine.features(x).detach(), x.shape[-1])


def _classifier_masks(engine, x, params, rows, row_ids):
    import torch

    labels = None
    if params["classifier_labels"] == "manifest":
        labels = torch.as_tensor([int(rows["label"].iloc[i]) for i in row_ids])
        if (labels < 0).any():
            raise ValueError("cam: classifier_labels 'manifest' but some rows have label -1")
    return engine.classifier_cam(x, labels, params["nsr"])


METHODS = {
    "contracam": _contracam_masks,
    "classifier": _classifier_masks,
    "ncut": _ncut_masks,
}


# ------------------------------------------------------------------------ the stage


def _engine(params, checkpoint, dev, amp):
    """The CamEngine of ``checkpoint`` and the input size, mean and std of its images."""
    import torch

    from ..models import load_checkpoint
    from .engine import CamEngine

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
    return engine, size, mean, std


def _loader(rows, size, mean, std, skip_bad):
    """load(i): the normalised image of row i and its (h, w); None for a bad image when
    ``skip_bad``."""

    def load(i):
        path = rows["abspath"].iloc[i]
        try:
            return load_image(path, size, mean, std)
        except (ImageError, FileNotFoundError, OSError) as exc:
            if not skip_bad:
                raise ImageError(
                    f"cam: image {path} (image_id {rows['image_id'].iloc[i]}): {exc}"
                ) from exc
            log.warning("skipping bad image %s: %s", path, exc)
            return None

    return load


def _mask_rows(masks, loaded, keep, idx, n_real, rows, size, record_json) -> list[dict]:
    """The mask shard's rows of one batch (uint8 masks; padding rows dropped)."""
    out = []
    for m, j in zip(masks, keep):
        if j >= n_real:
            continue  # padding row: negatives only
        i = int(idx[j])
        oh, ow = loaded[j][1]
        out.append(
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
    return out


def run_cam(params: dict, checkpoint, manifest, shard: int, n_shards: int, out) -> dict:
    """Compute one mask shard with ``params`` merged and checked (oacl.cam.params.resolve);
    returns a summary dict."""
    import torch

    from ..progress import progress as progress_bar

    dev = resolve_device(params["device"], "cam")
    amp = params["amp"]
    amp = ("bf16" if dev == "cuda" else "none") if amp == "auto" else amp
    rows = select_rows(read_manifest(manifest), params)
    batches = make_batches(len(rows), params["batch_size"])
    mine = [batches[i] for i in shard_rows(len(batches), shard, n_shards)]
    engine, size, mean, std = _engine(params, checkpoint, dev, amp)
    record = dict(params, device=dev, amp=amp, image_size=size, checkpoint=str(checkpoint))
    record_json = params_json(record)
    if dev == "cuda":
        torch.backends.cudnn.benchmark = True
    load = _loader(rows, size, mean, std, params["skip_bad"])
    masks_of = METHODS[params["method"]]

    out_rows, skipped, t0 = [], set(), time.perf_counter()
    with ThreadPoolExecutor(max(1, params["num_workers"])) as pool:
        submit = lambda b: [pool.submit(load, int(i)) for i in b[0]]  # noqa: E731
        pending = submit(mine[0]) if mine else None
        for k, (idx, n_real) in enumerate(
            progress_bar(mine, desc=f"cam shard {shard}/{n_shards}", unit="batch")
        ):
            loaded = [f.result() for f in pending]
            pending = submit(mine[k + 1]) if k + 1 < len(mine) else None
            keep = [j for j, item in enumerate(loaded) if item is not None]
            skipped.update(int(idx[j]) for j in range(n_real) if loaded[j] is None)
            if not any(j < n_real for j in keep):
                continue
            if len(keep) == 1:
                log.warning("batch of one image: ContraCAM has no negatives (see oacl.cam.engine)")
            x = torch.from_numpy(np.stack([loaded[j][0] for j in keep])).to(dev)
            masks = masks_of(engine, x, params, rows, [int(idx[j]) for j in keep])
            masks = (masks[:, 0].float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
            out_rows += _mask_rows(masks, loaded, keep, idx, n_real, rows, size, record_json)
    write_rows(out, out_rows, MASK_SCHEMA)
    remove_stale_shards(out, n_shards)
    summary = {
        "images": len(out_rows),
        "batches": len(mine),
        "skipped": len(skipped),
        "seconds": round(time.perf_counter() - t0, 2),
        "out": str(out),
    }
    log.info("cam shard %d/%d: %s", shard, n_shards, summary)
    return summary
