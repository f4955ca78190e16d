"""ContraCAM speed: oacl.cam.engine (CamEngine) vs the literal pseudo-code (oacl.cam.reference).

Same weights, same images, same process. Prints images/s of each, the ratio, and the
agreement of the masks (mean IoU of the 0.5-binarised masks, max and mean |delta|).

  python benchmarks/contracam_speed.py --arch resnet18 --image-size 224 --iters 10 \\
      --expand 2 --batch 8 --batches 1 --threads 2            # CPU
  python benchmarks/contracam_speed.py --device cuda --batch 64 --batches 8 --repeats 3 --bf16

--json FILE also writes the figures (benchmarks/gpu_check.py reads them).

Weights are random (torchvision ResNet-18 + a 2-layer L2-normalised projector, BN
statistics randomised so that BN folding is not a no-op) unless --checkpoint names an
oacl model. Random networks give ill-conditioned CAM weights, so max |delta| of the
fast path grows with iterations; the IoU is the meaningful agreement figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from oacl import ompenv  # noqa: E402

ompenv.apply()  # before torch loads: libgomp reads its wait policy only then

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402
from torch import nn  # noqa: E402

from oacl.cam.engine import CamEngine  # noqa: E402
from oacl.cam.reference import reference_contracam  # noqa: E402


class _L2(nn.Module):
    def forward(self, x):
        return F.normalize(x, dim=1)


def build_model(arch: str) -> nn.Module:
    torch.manual_seed(0)
    enc = torchvision.models.resnet18()
    enc.fc = nn.Identity()
    if arch == "resnet18_small":  # 3x3 stem, no max-pool (small images)
        enc.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        enc.maxpool = nn.Identity()
    model = nn.Module()
    model.encoder = enc
    model.projector = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 128), _L2())
    with torch.no_grad():
        for m in enc.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
    return model.eval()


def make_images(n: int, size: int, seed: int) -> torch.Tensor:
    """Smooth random images with a bright blob each (roughly normalised)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.randn(n, 3, 8, 8, generator=g)
    x = F.interpolate(low, size=size, mode="bicubic", align_corners=False) * 0.5
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    for i in range(n):
        cy, cx, r = (torch.rand(3, generator=g) * torch.tensor([0.6, 0.6, 0.15]) + 0.2).tolist()
        blob = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r).float()
        x[i] += blob * torch.randn(3, 1, 1, generator=g) * 1.5
    return x


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=["resnet18", "resnet18_small"], default="resnet18")
    ap.add_argument("--checkpoint", help="an oacl model.pt instead of random weights")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--expand", type=int, default=2, choices=[1, 2, 4])
    ap.add_argument("--pos-mode", default="batch_sum", choices=["batch_sum", "per_sample"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--batches", type=int, default=1)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast for our trunk")
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--fuse-bn", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--repeats", type=int, default=1, help="alternate runs, keep each best")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    dev = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    device = torch.device("cpu" if dev == "auto" else dev)
    torch.backends.cudnn.benchmark = True  # both implementations
    if args.checkpoint:
        from oacl.models import load_checkpoint

        model = load_checkpoint(args.checkpoint)
    else:
        model = build_model(args.arch)
    model = model.to(device)
    batches = [
        make_images(args.batch, args.image_size, seed=i).to(device) for i in range(args.batches)
    ]
    amp = torch.bfloat16 if args.bf16 else None
    kw = dict(iters=args.iters, pos_mode=args.pos_mode)

    # warm-up (allocator, cuDNN autotuning, oneDNN primitives) for both, one iteration
    warm = CamEngine(model, args.expand, args.fuse_bn, args.channels_last, amp)
    warm.contracam(batches[0], iters=1)
    reference_contracam(model, batches[0], 1, args.expand)
    sync(device)

    t_ref = t_ours = float("inf")
    for _ in range(args.repeats):  # alternating, best of each: robust to a busy machine
        t0 = time.perf_counter()
        ref = [
            reference_contracam(model, x, args.iters, args.expand, pos_mode=args.pos_mode)
            for x in batches
        ]
        sync(device)
        t_ref = min(t_ref, time.perf_counter() - t0)

        t0 = time.perf_counter()
        engine = CamEngine(model, args.expand, args.fuse_bn, args.channels_last, amp)
        sync(device)
        t_setup = time.perf_counter() - t0  # once per shard in `oacl cam`: reported apart
        t0 = time.perf_counter()
        ours, trunk_images = [], 0
        for x in batches:
            ours.append(engine.contracam(x, **kw))
            trunk_images += engine.trunk_images
        sync(device)
        t_ours = min(t_ours, time.perf_counter() - t0)

    ref, ours = torch.cat(ref).float(), torch.cat(ours).float()
    a, b = ref > 0.5, ours > 0.5
    iou = ((a & b).sum((1, 2, 3)) / (a | b).sum((1, 2, 3)).clamp_min(1)).float()
    iou = torch.where((a | b).sum((1, 2, 3)) > 0, iou, torch.ones_like(iou)).mean().item()
    delta = (ref - ours).abs()
    n = args.batch * args.batches
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu x{torch.get_num_threads()}"
    )
    print(
        f"contracam_speed device={name} arch={args.arch} size={args.image_size} "
        f"iters={args.iters} expand={args.expand} batch={args.batch}x{args.batches} "
        f"bf16={args.bf16} channels_last={args.channels_last} fuse_bn={args.fuse_bn} "
        f"repeats={args.repeats}"
    )
    print(f"  reference (pseudo-code): {n / t_ref:8.2f} img/s  ({t_ref:.2f} s)")
    print(
        f"  oacl.cam.engine        : {n / t_ours:8.2f} img/s  ({t_ours:.2f} s; engine setup "
        f"{t_setup:.2f} s once, not counted; trunk passes skipped "
        f"{1 - trunk_images / (n * args.iters):.1%})"
    )
    print(
        f"  speed-up: {t_ref / t_ours:.2f}x   agreement: mIoU@0.5 {iou:.4f}  "
        f"max|d| {delta.max().item():.2e}  mean|d| {delta.mean().item():.2e}"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "device": name,
                    "arch": args.arch,
                    "checkpoint": args.checkpoint,
                    "image_size": args.image_size,
                    "iters": args.iters,
                    "expand": args.expand,
                    "images": n,
                    "bf16": args.bf16,
                    "channels_last": args.channels_last,
                    "fuse_bn": args.fuse_bn,
                    "repeats": args.repeats,
                    "ref_img_s": n / t_ref,
                    "ours_img_s": n / t_ours,
                    "speedup": t_ref / t_ours,
                    "engine_setup_s": t_setup,
                    "trunk_skipped": 1 - trunk_images / (n * args.iters),
                    "miou": iou,
                    "max_abs_diff": delta.max().item(),
                    "mean_abs_diff": delta.mean().item(),
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
