"""The training data path: manifest rows -> fixed-size uint8 tensors -> batches.

Workers only decode and resize; all random augmentation happens batched on the
device (``augment.TwoViewAugment``), so the loader stays cheap.

Geometry. Every image is *squashed* (resized without keeping the aspect ratio) to
``store_size`` x ``store_size``. Normalised coordinates (boxes, bg_rect, masks that
cover the whole image) are therefore unchanged; the original (H, W) travels with
each item as ``orig_hw`` so the crop sampler can use torchvision's area and
aspect-ratio rules in original pixels.

Side information. A *_cam variant's image with no row in the given boxes / masks is an
error (ValueError naming the counts), never a fallback: the training loop checks the
coverage per source shard before the first step (``oacl.train.sideinfo``, which also
counts the empty rows against ``pretrain.side_info_max_empty``). A row that is there but
yields nothing keeps a per-image fallback:
  boxes   (OA-Crop: an empty box list; GT: no box after the 1% filter) -> the whole image
  mask    (None given for an image) -> all-ones mask: mixing leaves the image unchanged;
          GT variants: an image without a GT mask likewise
  bg_rect (None or zero area for the background partner) -> its whole image is the bg

Order. ``build_loader`` walks *global* batches of a permutation fixed by (seed,
epoch); ``start_batch`` skips whole global batches (exact resume) and DDP rank r
takes the r-th contiguous slice of each, so the union over ranks is the batch a
single process would see. For the bg variants the sampler also draws, per sample,
the other sample whose background is tiled, so items stay deterministic.
"""

from __future__ import annotations

import logging
import math
from collections import Counter

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..geometry import decode_mask, largest_rectangle, oa_crop_boxes, resize
from ..io import read_mask, read_rgb
from .objaware import NEEDS_BG, NEEDS_MASK, VARIANTS, box_source

log = logging.getLogger(__name__)

BG_RECT_RES = 64  # resolution at which a GT mask's largest background rectangle is found


# -------------------------------------------------------------------- helpers


def largest_zero_rect(binary):
    """Largest axis-aligned rectangle of zeros in a 2-D bool array, normalised xyxy.

    The exact search of the refine stage (geometry.largest_rectangle); all-foreground -> None.
    """
    H, W = binary.shape
    x1, y1, x2, y2 = largest_rectangle(~np.asarray(binary, dtype=bool))
    if x2 <= x1 or y2 <= y1:
        return None
    return [x1 / W, y1 / H, x2 / W, y2 / H]


def tile_rect(image, rect, size):
    """Fill a size x size canvas by tiling the normalised ``rect`` of a HxWx3 image."""
    H, W = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in rect)
    c1, c2 = int(np.floor(x1 * W)), int(np.ceil(x2 * W))
    r1, r2 = int(np.floor(y1 * H)), int(np.ceil(y2 * H))
    c1, r1 = min(max(c1, 0), W - 1), min(max(r1, 0), H - 1)
    c2, r2 = min(max(c2, c1 + 1), W), min(max(r2, r1 + 1), H)
    patch = image[r1:r2, c1:c2]
    reps = (math.ceil(size / patch.shape[0]), math.ceil(size / patch.shape[1]), 1)
    return np.ascontiguousarray(np.tile(patch, reps)[:size, :size])


def _boxes_of(value):
    """Box list from a read_boxes row dict or a plain list."""
    if isinstance(value, dict):
        value = value.get("boxes")
    return [] if value is None else [list(b) for b in value]


def gt_crop_boxes(df) -> list:
    """Per row, the ground-truth boxes OA-Crop (GT) crops in: a reader's already filtered
    and expanded ``gt_crop_boxes``, else the manifest's boxes with the 1% filter and 20%
    margin of the CAM boxes (paper B.2)."""
    if "gt_crop_boxes" in df:
        return [_boxes_of(b) for b in df["gt_crop_boxes"]]
    return [oa_crop_boxes(_boxes_of(b)) for b in df["boxes"]]


# -------------------------------------------------------------------- dataset


class ManifestImages(Dataset):
    """Manifest rows as training items (see the module docstring for the geometry).

    df: manifest DataFrame (``oacl.artifacts.read_manifest``, already filtered).
    boxes: {image_id: box list or box-shard row} (``read_boxes``), for *_cam variants.
    masks: {image_id: mask-shard row (``read_masks``) or PNG bytes or HxW array}.
    bg_rects: {image_id: normalised xyxy}; default: the ``bg_rect`` of box-shard rows.
    decode: "cpu" (items hold ``image`` uint8 (3,S,S)) or "device" (items hold the
    encoded file as ``image_bytes``; ``decode_on_device`` fills ``image`` batched,
    using nvJPEG on CUDA). "device" is not offered for the bg variants.

    Item: image uint8 (3,S,S), label int64, index int64, orig_hw float (2,), boxes
    float (K,4) normalised xyxy, and for bg variants mask float (1,S,S) in [0,1] and
    bg uint8 (3,S,S). ``dataset[(i, j)]`` uses sample j as the background partner.
    """

    def __init__(
        self,
        df,
        store_size,
        boxes=None,
        masks=None,
        bg_rects=None,
        variant="baseline",
        *,
        decode="cpu",
    ):
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; known: {VARIANTS}")
        if decode not in ("cpu", "device"):
            raise ValueError(f"decode must be 'cpu' or 'device', got {decode!r}")
        if decode == "device" and variant in NEEDS_BG:
            raise ValueError(f"decode='device' is not supported for variant {variant!r}")
        self.df = df.reset_index(drop=True)
        self.size = int(store_size)
        self.variant = variant
        self.decode = decode
        self.needs_mask = variant in NEEDS_MASK
        self.needs_bg = variant in NEEDS_BG
        src = box_source(variant)
        if src == "cam":
            if boxes is None:
                raise ValueError(f"variant {variant!r} needs box shards (boxes=read_boxes(...))")
            if variant in NEEDS_MASK and masks is None:
                raise ValueError(f"variant {variant!r} needs mask shards (masks=read_masks(...))")
        ids = list(self.df["image_id"])
        self.paths = list(self.df["abspath"])
        self.labels = [int(v) for v in self.df["label"]] if "label" in self.df else [-1] * len(ids)
        self.orig_hw = [(int(h), int(w)) for h, w in zip(self.df["height"], self.df["width"])]
        self.missing = Counter()  # side information absent for an image: an error below
        absent = {}  # image_id -> None, in manifest order (for the error message)
        # boxes: box shards where given (and not a GT variant), else the manifest's GT
        if boxes is not None and src != "gt":
            self.boxes = []
            for i in ids:
                if src == "cam" and i not in boxes:
                    self.missing["boxes"] += 1
                    absent[i] = None
                self.boxes.append(_boxes_of(boxes.get(i)))
        else:
            self.boxes = gt_crop_boxes(self.df)
        # masks and background rectangles
        self.masks = [None] * len(ids)
        self.bg_rects = [None] * len(ids)
        self.gt_mask_paths = (
            list(self.df["mask_abspath"]) if "mask_abspath" in self.df else [""] * len(ids)
        )
        if self.needs_mask and src == "cam":
            for k, i in enumerate(ids):
                if i not in masks:
                    self.missing["mask"] += 1
                    absent[i] = None
                self.masks[k] = masks.get(i)
        if self.needs_bg and src == "cam":
            rects = bg_rects
            if rects is None:
                rects = {k: v.get("bg_rect") for k, v in boxes.items() if isinstance(v, dict)}
            for k, i in enumerate(ids):
                if i not in rects:
                    self.missing["bg_rect"] += 1
                    absent[i] = None
                self.bg_rects[k] = rects.get(i)
        if self.missing:
            raise ValueError(
                f"ManifestImages({variant}): side information missing for {len(absent)} of "
                f"{len(ids)} images {dict(self.missing)} (e.g. {list(absent)[:3]}): every "
                "image needs its row of the box / mask shards (pass every shard)"
            )

    def __len__(self):
        return len(self.paths)

    # ---------------------------------------------------------------- reading

    def load_image(self, k):
        """uint8 (S, S, 3) squashed image and the original (H, W)."""
        a = read_rgb(self.paths[k])
        return resize(a, (self.size, self.size), "shrink_any"), a.shape[:2]

    def load_mask(self, k):
        """float32 (S, S) in [0, 1]: CAM soft mask or GT mask; all ones when missing."""
        if box_source(self.variant) == "gt":
            p = self.gt_mask_paths[k]
            if not p:
                return np.ones((self.size, self.size), np.float32)
            m = resize(read_mask(p), (self.size, self.size), "nearest")
            return (m > 0).astype(np.float32)
        m = self.masks[k]
        if m is None:
            return np.ones((self.size, self.size), np.float32)
        if isinstance(m, dict):
            m = m["mask_png"]
        if isinstance(m, (bytes, bytearray, memoryview)):
            try:
                m = decode_mask(bytes(m))
            except ValueError as exc:
                raise ValueError(f"mask of image {self.df['image_id'][k]!r}: {exc}") from exc
        m = np.asarray(m)
        m = m.astype(np.float32) / 255.0 if m.dtype == np.uint8 else m.astype(np.float32)
        if m.ndim == 3:
            m = m[..., 0]
        return resize(m, (self.size, self.size), "shrink_any").clip(0, 1)

    def background(self, j):
        """uint8 (S, S, 3): the tiled background rectangle of sample j."""
        img, _ = self.load_image(j)
        rect = self.bg_rects[j]
        if box_source(self.variant) == "gt" and rect is None:
            p = self.gt_mask_paths[j]
            if p:
                small = resize(read_mask(p), (BG_RECT_RES, BG_RECT_RES), "nearest") > 0
                rect = largest_zero_rect(small)
        if rect is None or len(rect) != 4 or rect[2] <= rect[0] or rect[3] <= rect[1]:
            # no background patch (missing, or a CAM covering the whole image, which
            # refine records as a zero-area rect): documented fallback, the whole partner
            return img
        return tile_rect(img, rect, self.size)

    def __getitem__(self, key):
        k, j = key if isinstance(key, tuple) else (key, None)
        item = {
            "label": torch.tensor(self.labels[k], dtype=torch.int64),
            "index": torch.tensor(k, dtype=torch.int64),
        }
        boxes = self.boxes[k]
        item["boxes"] = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        if self.decode == "device":
            # plain bytes (pickled through the worker queue): one small shared-memory
            # tensor per sample would cost a file descriptor each
            with open(self.paths[k], "rb") as fh:
                item["image_bytes"] = fh.read()
            item["orig_hw"] = torch.tensor(self.orig_hw[k], dtype=torch.float32)
        else:
            img, hw = self.load_image(k)
            item["image"] = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
            item["orig_hw"] = torch.tensor(hw, dtype=torch.float32)
        if self.needs_mask:
            item["mask"] = torch.from_numpy(self.load_mask(k))[None]
        if self.needs_bg:
            if j is None:  # used outside build_loader: a fixed partner, the next sample
                j = (k + 1) % len(self)
            item["bg"] = torch.from_numpy(self.background(j).transpose(2, 0, 1).copy())
        return item


def collate(items):
    """Stack items; boxes are zero-padded to (B, Kmax, 4) with ``n_boxes`` (B,)."""
    out = {}
    for key in ("image", "label", "index", "orig_hw", "mask", "bg"):
        if key in items[0]:
            out[key] = torch.stack([it[key] for it in items])
    if "image_bytes" in items[0]:  # one flat uint8 tensor + offsets per batch
        blobs = [it["image_bytes"] for it in items]
        out["image_bytes"] = torch.frombuffer(bytearray(b"".join(blobs)), dtype=torch.uint8)
        out["image_offsets"] = torch.tensor(
            np.cumsum([0] + [len(b) for b in blobs]), dtype=torch.int64
        )
    n = torch.tensor([it["boxes"].shape[0] for it in items], dtype=torch.int64)
    boxes = torch.zeros(len(items), int(n.max()) if len(items) else 0, 4)
    for b, it in enumerate(items):
        boxes[b, : n[b]] = it["boxes"]
    out["boxes"], out["n_boxes"] = boxes, n
    return out


HOST_KEYS = ("image_bytes", "image_offsets")  # stay on the host until decode_on_device


def to_device(batch, device, non_blocking=True):
    """Move every tensor of a batch to ``device`` (encoded image bytes stay on the host)."""
    return {
        k: v.to(device, non_blocking=non_blocking)
        if torch.is_tensor(v) and k not in HOST_KEYS
        else v
        for k, v in batch.items()
    }


def decode_on_device(batch, store_size, device):
    """Decode ``image_bytes`` to ``image`` uint8 (B, 3, S, S) on ``device``.

    JPEGs are decoded in one batched nvJPEG call on CUDA; other formats (PNG) and all
    images on CPU use torchvision's CPU decoder. Then a squash resize to S (antialiased).
    """
    import warnings

    import torch.nn.functional as F

    flat, off = batch["image_bytes"].cpu(), batch["image_offsets"].tolist()
    data = [flat[off[i] : off[i + 1]] for i in range(len(off) - 1)]
    device = torch.device(device)
    with warnings.catch_warnings():  # torchvision >= 0.29 flags its decoders as deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import ImageReadMode, decode_image, decode_jpeg

        is_jpeg = [bool(d.numel() > 2 and d[0] == 0xFF and d[1] == 0xD8) for d in data]
        imgs: list = [None] * len(data)
        jpeg_idx = [i for i, j in enumerate(is_jpeg) if j]
        if device.type == "cuda" and jpeg_idx:
            dec = decode_jpeg([data[i] for i in jpeg_idx], mode=ImageReadMode.RGB, device=device)
            for i, im in zip(jpeg_idx, dec):
                imgs[i] = im
        for i in range(len(data)):
            if imgs[i] is None:
                imgs[i] = decode_image(data[i], mode=ImageReadMode.RGB).to(
                    device, non_blocking=True
                )
    hw = torch.tensor([list(im.shape[-2:]) for im in imgs], dtype=torch.float32).to(
        device, non_blocking=True
    )
    out = []
    same = len({tuple(im.shape) for im in imgs}) == 1
    groups = [imgs] if same else [[im] for im in imgs]
    for grp in groups:
        x = torch.stack(grp).float()
        if x.shape[-2:] != (store_size, store_size):
            x = F.interpolate(
                x,
                size=(store_size, store_size),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
        out.append(x.round_().clamp_(0, 255).to(torch.uint8))
    batch = dict(batch)
    batch["image"] = torch.cat(out)
    batch["orig_hw"] = hw
    del batch["image_bytes"], batch["image_offsets"]
    return batch


# -------------------------------------------------------------------- loader


class GlobalBatchSampler(Sampler):
    """Deterministic global batches for (seed, epoch); resumable; sharded over ranks.

    Yields this rank's index lists (or (index, partner) tuples when ``partners``).
    ``batch_size`` is the GLOBAL batch; each of ``world`` ranks gets batch_size/world.
    """

    def __init__(
        self,
        n,
        batch_size,
        shuffle,
        drop_last,
        seed=0,
        epoch=0,
        start_batch=0,
        rank=0,
        world=1,
        partners=False,
    ):
        if batch_size % world:
            raise ValueError(f"global batch {batch_size} is not divisible by world size {world}")
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} out of range for world size {world}")
        self.n, self.batch_size, self.shuffle, self.drop_last = n, batch_size, shuffle, drop_last
        self.seed, self.epoch, self.start_batch = seed, epoch, start_batch
        self.rank, self.world, self.partners = rank, world, partners

    def global_batches(self):
        rng = np.random.default_rng([int(self.seed), int(self.epoch), 0x0AC1])
        order = rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        if self.partners:  # another sample for each position (itself only if n == 1)
            shift = rng.integers(1, self.n, size=self.n) if self.n > 1 else np.zeros(1, int)
            partner = (order + shift) % self.n
        stop = self.n - self.n % self.batch_size if self.drop_last else self.n
        batches = []
        for s in range(0, stop, self.batch_size):
            idx = order[s : s + self.batch_size].tolist()
            if self.partners:
                idx = list(zip(idx, partner[s : s + self.batch_size].tolist()))
            batches.append(idx)
        return batches

    def _shard(self, batch):
        if self.world == 1:
            return batch
        # a short last batch is split as evenly as possible; below one per rank it is dropped
        bounds = np.linspace(0, len(batch), self.world + 1).round().astype(int)
        return batch[bounds[self.rank] : bounds[self.rank + 1]]

    def __iter__(self):
        for b, batch in enumerate(self.global_batches()):
            if b < self.start_batch or (self.world > 1 and len(batch) < self.world):
                continue
            yield self._shard(batch)

    def __len__(self):
        full, rest = divmod(self.n, self.batch_size)
        total = full + (
            1 if rest and not self.drop_last and (self.world == 1 or rest >= self.world) else 0
        )
        return max(0, total - self.start_batch)


def set_position(loader, epoch, start_batch=0) -> None:
    """Point a loader of ``build_loader`` at (epoch, start_batch): its next iteration walks
    that epoch's global batches. Items depend only on their indices, so persistent workers
    give the same batches as a new loader would."""
    loader.batch_sampler.epoch, loader.batch_sampler.start_batch = int(epoch), int(start_batch)


def _worker_init(_):
    import cv2

    cv2.setNumThreads(1)  # one decode thread per worker; the workers are the parallelism
    torch.set_num_threads(1)


def build_loader(
    dataset,
    batch_size,
    workers,
    shuffle,
    drop_last,
    *,
    pin_memory=None,
    prefetch_factor=4,
    start_method="forkserver",
    persistent=False,
    **order,
):
    """DataLoader over ``dataset`` in deterministic global batches (see GlobalBatchSampler).

    ``order``: the sampler's seed, epoch, start_batch, rank and world (keywords;
    ``start_batch`` counts global batches already done). ``persistent``: the workers live
    across epochs, and ``set_position`` moves the loader to the next epoch (a forkserver
    worker imports torch when it starts: seconds an epoch, benchmarks/loader_startup.py);
    else build a new loader per epoch. ``start_method`` of the worker processes:
    "forkserver" (default, see below) or "fork".
    """
    sampler = GlobalBatchSampler(
        len(dataset),
        batch_size,
        shuffle,
        drop_last,
        partners=getattr(dataset, "needs_bg", False),
        **order,
    )
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        worker_init_fn=_worker_init if workers > 0 else None,
        prefetch_factor=prefetch_factor if workers > 0 else None,
        persistent_workers=persistent and workers > 0,
        # workers forked from a process whose OpenMP pool has run can deadlock (seen in
        # the test suite); forkserver forks them from a clean server process instead
        multiprocessing_context=start_method if workers > 0 else None,
    )
