"""Pretraining throughput: is the GPU (or CPU) fed? One run, three measurements.

  (a) ceiling   a full MoCo v2 training step (oacl.train.methods.MoCo: query + key
                encoders, queue, SGD step, EMA) on synthetic views already on the device
  (b) pipeline  the project's path: JPEG folder -> ManifestImages -> build_loader ->
                TwoViewAugment on the device -> the same step. On CUDA it runs twice:
                decode="cpu" (workers decode + resize; what oacl.train.loop uses) and
                decode="device" (workers only read bytes; batched nvJPEG on the GPU)
  (c) plain     the usual torchvision recipe: per-sample PIL decode and two
                RandomResizedCrop + jitter/grayscale/blur views in DataLoader workers
                -> the same step

Prints img/s for each and the ratios (b)/(a), (c)/(a); --json writes them too.
The images are made by the script (N smooth random JPEGs of --src-size px with a GT
box and mask each), or taken from an existing manifest (--manifest).

GPU:  python benchmarks/pretrain_throughput.py --device cuda --arch resnet50
CPU:  python benchmarks/pretrain_throughput.py --device cpu --arch resnet18_small \
          --image-size 64 --batch 32 --steps 5 --workers 1 --src-size 96
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from oacl import ompenv  # noqa: E402

ompenv.apply()  # before torch loads: libgomp reads its wait policy only then

import numpy as np  # noqa: E402
import torch  # noqa: E402

from oacl import geometry  # noqa: E402
from oacl.artifacts import read_manifest, write_manifest  # noqa: E402
from oacl.io import encode_png, write_bytes  # noqa: E402
from oacl.train import augment, data  # noqa: E402
from oacl.train.params import resolve  # noqa: E402

# ------------------------------------------------------------------ synthetic data


def _make_one(args):
    import cv2

    path, size, seed = args
    rng = np.random.default_rng(seed)
    h, w = size, int(size * rng.uniform(1.0, 1.5))
    # smooth colour field + texture noise: compresses like a photo, not like white noise
    low = rng.integers(0, 255, (6, 8, 3)).astype(np.float32)
    img = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    img += rng.normal(0, 12, (h, w, 3)).astype(np.float32)
    cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
    ax, ay = rng.uniform(0.1, 0.3) * w, rng.uniform(0.1, 0.3) * h
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, (int(cx), int(cy)), (int(ax), int(ay)), 0, 0, 360, 255, -1)
    img[mask > 0] = rng.integers(0, 255, 3)
    img = np.clip(img, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    write_bytes(path, buf.tobytes())
    write_bytes(str(path)[:-4] + "_mask.png", encode_png(mask))
    box = [max(0, cx - ax) / w, max(0, cy - ay) / h, min(w, cx + ax) / w, min(h, cy + ay) / h]
    return h, w, box


def make_jpeg_folder(folder: Path, n: int, size: int, procs: int):
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(folder / f"img{i:06d}.jpg", size, i) for i in range(n)]
    with Pool(procs) as pool:
        meta = pool.map(_make_one, jobs, chunksize=64)
    rows = [
        dict(
            image_id=f"img{i:06d}",
            path=f"img{i:06d}.jpg",
            split="train",
            variant="original",
            scene_id=i,
            width=w,
            height=h,
            label=i % 10,
            labels=[i % 10],
            bg_label=-1,
            boxes=[box],
            box_labels=[i % 10],
            mask_path=f"img{i:06d}_mask.png",
        )
        for i, (h, w, box) in enumerate(meta)
    ]
    import pandas as pd

    write_manifest(folder / "manifest.parquet", pd.DataFrame(rows))
    return read_manifest(folder / "manifest.parquet")


# ------------------------------------------------------------------ the step


class _LocalMoCo(torch.nn.Module):
    """Minimal MoCo v2 (used only if oacl.train.methods cannot be imported)."""

    def __init__(self, arch, queue=65536, dim=128):
        super().__init__()
        import copy

        import torchvision

        net = getattr(torchvision.models, "resnet50" if arch == "resnet50" else "resnet18")()
        f = net.fc.in_features
        net.fc = torch.nn.Sequential(
            torch.nn.Linear(f, f), torch.nn.ReLU(), torch.nn.Linear(f, dim)
        )
        self.encoder, self.key = net, copy.deepcopy(net)
        for p in self.key.parameters():
            p.requires_grad_(False)
        self.register_buffer("queue", torch.nn.functional.normalize(torch.randn(queue, dim), dim=1))
        self.ptr = 0

    def forward(self, v1, v2, labels=None):
        F = torch.nn.functional
        q = F.normalize(self.encoder(v1).float(), dim=1)
        with torch.no_grad():
            k = F.normalize(self.key(v2).float(), dim=1)
        logits = torch.cat([(q * k).sum(1, keepdim=True), q @ self.queue.clone().t()], 1) / 0.2
        loss = F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))
        n = len(k)
        self.queue[self.ptr : self.ptr + n] = k.detach()
        self.ptr = (self.ptr + n) % len(self.queue)
        return loss, {"loss": loss.detach()}

    @torch.no_grad()
    def momentum_update(self, progress):
        for t, o in zip(self.key.parameters(), self.encoder.parameters()):
            t.mul_(0.999).add_(o.detach(), alpha=0.001)


def build_step(arch, batch, dev, bf16, channels_last):
    queue = 65536 - 65536 % batch
    try:
        from oacl.train.methods import MoCo

        model, label = MoCo(arch, queue_size=queue), "oacl.train.methods.MoCo"
    except Exception as exc:  # the training module is not there yet: say so
        print(
            f"note: oacl.train.methods unavailable ({type(exc).__name__}: {exc}); "
            "using the LOCAL minimal MoCo step",
            flush=True,
        )
        model, label = _LocalMoCo(arch, queue), "local minimal MoCo"
    model = model.to(dev).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=0.03, momentum=0.9, weight_decay=1e-4
    )

    def step(v1, v2, labels):
        if channels_last:
            v1 = v1.contiguous(memory_format=torch.channels_last)
            v2 = v2.contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            loss, _ = model(v1, v2, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.momentum_update(0.5)
        return loss

    return step, label


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(batches, work, warmup, steps, dev):
    """img/s over ``steps`` calls of ``work(batch)`` after ``warmup`` calls."""
    it = iter(batches)
    for _ in range(warmup):
        work(next(it))
    _sync(dev)
    t0, n = time.perf_counter(), 0
    for _ in range(steps):
        n += work(next(it))
    _sync(dev)
    return n / (time.perf_counter() - t0)


def epochs(make_loader):
    """Batches over as many epochs as asked for (a new loader per epoch, as the loop does)."""
    e = 0
    while True:
        yield from make_loader(e)
        e += 1


def count_syncs(aug, batch, dev):
    """Host-device synchronisations in one TwoViewAugment call (CUDA sync debug mode)."""
    import warnings

    gen = torch.Generator(device=dev).manual_seed(0)
    aug(batch, gen)
    torch.cuda.synchronize(dev)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            aug(batch, gen)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    n = sum("synchroniz" in str(w.message) for w in caught)
    print(f"augment: {n} host-device synchronisation(s) per call", flush=True)
    return n


def profile_augment(batch, variant, S, dev, reps=10):
    """Milliseconds per call of the augmentation and of its parts (synchronised wall time)."""
    B = batch["image"].shape[0]

    def ms(fn):
        fn()
        _sync(dev)
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        _sync(dev)
        return (time.perf_counter() - t0) * 1000 / reps

    out = {}
    for dt in ("float32", "float16"):
        for bm in ("conv", "matmul"):
            p = resolve({"augment": {"compute_dtype": dt, "blur_method": bm}, "variant": variant})
            aug = augment.TwoViewAugment(p["augment"], variant, S)
            gen = torch.Generator(device=dev).manual_seed(0)
            out[f"augment_{dt}_{bm}"] = ms(lambda: aug(batch, gen))
    g = torch.Generator(device=dev).manual_seed(0)
    for dt in (torch.float32, torch.float16):
        name = str(dt).split(".")[-1]
        src = batch["image"].to(dt) / 255
        y = torch.rand(B, 3, S, S, device=dev, generator=g).to(dt)
        boxes = torch.tensor([[0.1, 0.1, 0.9, 0.8]], device=dev).expand(B, 4)
        f = torch.ones(B, 4, device=dev)
        steps = torch.arange(4).repeat(B, 1)
        sig = torch.full((B // 2,), 1.5, device=dev)
        out[f"crop_{name}"] = ms(lambda: augment.crop_resize(src, boxes, S))
        out[f"jitter_all4_{name}"] = ms(lambda: augment.color_jitter(y, f, steps))
        out[f"hue_{name}"] = ms(lambda: augment.adjust_hue(y, f[:, 3]))
        for bm in ("conv", "matmul"):
            out[f"blur_half_batch_{bm}_{name}"] = ms(
                lambda: augment.gaussian_blur(y[: B // 2], sig, 23, bm)
            )
        out[f"normalise_{name}"] = ms(lambda: geometry.normalise(y))
    print(
        f"augment profile (ms per call, batch {B}, {S} px): "
        + ", ".join(f"{k} {v:.2f}" for k, v in out.items()),
        flush=True,
    )
    return {k: round(v, 3) for k, v in out.items()}


# ------------------------------------------------------------------ plain baseline


class PlainTwoView(torch.utils.data.Dataset):
    """The torchvision recipe: PIL decode and two independent views per sample."""

    def __init__(self, paths, labels, image_size):
        import torchvision.transforms as T

        k = augment.blur_kernel_size(image_size)
        s = image_size / 224
        self.paths, self.labels = paths, labels
        self.t = T.Compose(
            [
                T.RandomResizedCrop(image_size, scale=(0.08, 1.0)),
                T.RandomHorizontalFlip(),
                T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
                T.RandomGrayscale(p=0.2),
                T.RandomApply([T.GaussianBlur(k, (0.1 * s, 2.0 * s))], p=0.5),
                T.ToTensor(),
                T.Normalize(geometry.IMAGENET_MEAN, geometry.IMAGENET_STD),
            ]
        )

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        from PIL import Image

        with Image.open(self.paths[i]) as im:
            im = im.convert("RGB")
        return self.t(im), self.t(im), self.labels[i]


# ------------------------------------------------------------------ main


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--device", default="auto")
    ap.add_argument(
        "--arch", default="resnet50", choices=["resnet18", "resnet50", "resnet18_small"]
    )
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--store-size", type=int, default=None, help="default: image_size * 256/224")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=8)
    ap.add_argument("--workers", type=int, default=None, help="default: CPU count - 1 (max 16)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads of the main process")
    ap.add_argument("--n-images", type=int, default=None, help="default: enough for one epoch")
    ap.add_argument("--src-size", type=int, default=256, help="height of the made JPEGs")
    ap.add_argument("--manifest", default=None, help="use this manifest's train rows instead")
    ap.add_argument("--data-dir", default=None, help="where to make the JPEGs (default: temp)")
    ap.add_argument(
        "--variant", default="baseline", choices=["baseline", "oa_crop_gt", "bg_hardmix_gt"]
    )
    ap.add_argument(
        "--decode",
        default=None,
        choices=["cpu", "device", "both"],
        help="(b)'s decode mode; default both on CUDA, cpu otherwise",
    )
    ap.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument("--skip-plain", action="store_true")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)

    dev = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    )
    cuda = dev.type == "cuda"
    bf16 = cuda if a.bf16 is None else a.bf16
    cl = cuda if a.channels_last is None else a.channels_last
    workers = a.workers if a.workers is not None else max(1, min(16, (os.cpu_count() or 2) - 1))
    if a.threads:
        torch.set_num_threads(a.threads)
    if cuda:
        torch.backends.cudnn.benchmark = True
    store = a.store_size or int(round(a.image_size * 256 / 224))
    B, S = a.batch, a.image_size
    decodes = {"both": ["cpu", "device"], None: ["cpu", "device"] if cuda else ["cpu"]}.get(
        a.decode, [a.decode]
    )
    if a.variant != "baseline" and "device" in decodes and a.variant in data.NEEDS_BG:
        decodes = ["cpu"]

    tmp = None
    if a.manifest:
        df = read_manifest(a.manifest)
        df = df[df["split"] == "train"].reset_index(drop=True)
    else:
        folder = (
            Path(a.data_dir) if a.data_dir else Path(tmp := tempfile.mkdtemp(prefix="oacl_bench_"))
        )
        n = a.n_images or max(4 * B, B * (a.warmup + a.steps))
        t0 = time.perf_counter()
        df = make_jpeg_folder(folder, n, a.src_size, max(1, os.cpu_count() or 1))
        print(
            f"made {n} JPEGs of {a.src_size} px in {time.perf_counter() - t0:.1f}s ({folder})",
            flush=True,
        )
    if len(df) < B:
        raise SystemExit(f"only {len(df)} images for batch {B}")

    step, label = build_step(a.arch, B, dev, bf16, cl)
    print(
        f"device {dev} ({torch.cuda.get_device_name(dev) if cuda else 'cpu'}), arch {a.arch}, "
        f"image {S}, store {store}, batch {B}, workers {workers}, bf16 {bf16}, channels_last {cl}, "
        f"step = {label}",
        flush=True,
    )
    res = {}

    # (a) ceiling: synthetic, already-normalised views on the device
    g = torch.Generator(device=dev).manual_seed(0)
    v1 = torch.randn(B, 3, S, S, device=dev, generator=g)
    v2 = torch.randn(B, 3, S, S, device=dev, generator=g)
    lab = torch.zeros(B, dtype=torch.long, device=dev)

    def synth(_):
        step(v1, v2, lab)
        return B

    a_first = timed(iter(int, 1), synth, a.warmup, a.steps, dev)
    print(f"(a) step ceiling           {a_first:9.1f} img/s", flush=True)

    # (b) the project's pipeline
    p = resolve({"variant": a.variant, "method": "moco"})
    aug = augment.TwoViewAugment(p["augment"], a.variant, S, method="moco")
    for mode in decodes:
        ds = data.ManifestImages(df, store, variant=a.variant, decode=mode)
        batches = epochs(lambda e: data.build_loader(ds, B, workers, True, True, seed=0, epoch=e))
        gen = torch.Generator(device=dev).manual_seed(1)

        def pipeline(batch):
            batch = data.to_device(batch, dev)
            if mode == "device":
                batch = data.decode_on_device(batch, store, dev)
            x1, x2 = aug(batch, gen)
            step(x1, x2, batch["label"])
            return len(batch["label"])

        key = f"b_pipeline_{mode}"
        try:
            res[key] = timed(batches, pipeline, a.warmup, a.steps, dev)
            print(f"(b) pipeline decode={mode:6s} {res[key]:9.1f} img/s", flush=True)
        except Exception as exc:  # report and go on: one failed mode must not lose the run
            print(f"(b) pipeline decode={mode}: FAILED {type(exc).__name__}: {exc}", flush=True)
        batches.close()  # stop this loader's workers before the next measurement

    # (c) the plain torchvision baseline
    if not a.skip_plain:
        plain = PlainTwoView(list(df["abspath"]), list(df["label"]), S)

        def plain_loader(e):
            return torch.utils.data.DataLoader(
                plain,
                batch_size=B,
                shuffle=True,
                drop_last=True,
                num_workers=workers,
                pin_memory=cuda,
                prefetch_factor=4 if workers else None,
            )

        def plain_step(batch):
            x1, x2, y = (t.to(dev, non_blocking=True) for t in batch)
            step(x1, x2, y)
            return len(y)

        batches = epochs(plain_loader)
        try:
            res["c_plain"] = timed(batches, plain_step, a.warmup, a.steps, dev)
            print(f"(c) plain torchvision      {res['c_plain']:9.1f} img/s", flush=True)
        except Exception as exc:
            print(f"(c) plain torchvision: FAILED {type(exc).__name__}: {exc}", flush=True)
        batches.close()

    # (a) again at the end: the ratios use the mean, the spread shows machine drift
    a_last = timed(iter(int, 1), synth, a.warmup, a.steps, dev)
    print(f"(a) step ceiling, again    {a_last:9.1f} img/s", flush=True)
    res["a_ceiling"] = (a_first + a_last) / 2
    prof = None
    if cuda:
        one = data.to_device(
            next(
                iter(
                    data.build_loader(
                        data.ManifestImages(df, store, variant=a.variant), B, 0, True, True
                    )
                )
            ),
            dev,
        )
        res["syncs_per_augment"] = count_syncs(aug, one, dev)
        prof = profile_augment(one, a.variant, S, dev)
        res["a_ms_per_step"] = 1000 * B / res["a_ceiling"]
    summary = {k: round(v, 1) for k, v in res.items()}
    if prof:
        summary["augment_ms"] = prof
    summary["a_first_last"] = [round(a_first, 1), round(a_last, 1)]
    for k in list(res):
        if k.startswith(("b_", "c_")):
            summary[f"ratio_{k[0]}_{k.split('_', 2)[-1]}"] = round(res[k] / res["a_ceiling"], 3)
    summary.update(
        device=str(dev),
        gpu=torch.cuda.get_device_name(dev) if cuda else None,
        arch=a.arch,
        image_size=S,
        store_size=store,
        batch=B,
        steps=a.steps,
        workers=workers,
        bf16=bf16,
        channels_last=cl,
        step=label,
        variant=a.variant,
        images=len(df),
    )
    print("SUMMARY " + json.dumps(summary), flush=True)
    if a.json:
        from oacl.io import write_json

        write_json(a.json, summary)
    if tmp:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
