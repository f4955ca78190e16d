"""channels_last vs contiguous (NCHW) on CPU, in one process: MoCo v2 train step and
frozen-encoder inference of the default 64 px ResNet.

Each layout runs ``--repeats`` times, alternating, so machine noise hits both alike;
prints the median seconds of each, their ratio, and the largest loss difference.

    .venv/bin/python benchmarks/channels_last_cpu.py [--arch resnet18_small --batch 128]
"""

from __future__ import annotations

import argparse
import statistics
import time

from oacl import ompenv

ompenv.apply()  # before torch loads: libgomp reads its wait policy only then

import torch  # noqa: E402

from oacl.params import merge_params  # noqa: E402
from oacl.train.methods import build_method  # noqa: E402
from oacl.train.params import DEFAULTS  # noqa: E402


def timed_steps(channels_last: bool, params: dict, steps: int) -> tuple[float, float]:
    torch.manual_seed(0)
    method = build_method(params, 10)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    method = method.to(memory_format=fmt)
    opt = torch.optim.SGD(method.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    S, B = params["image_size"], params["batch_size"]
    v1 = torch.randn(B, 3, S, S, generator=g).contiguous(memory_format=fmt)
    v2 = torch.randn(B, 3, S, S, generator=g).contiguous(memory_format=fmt)
    times = []
    for i in range(steps + 1):  # the first step warms up
        t = time.perf_counter()
        loss, _ = method(v1, v2, None)
        opt.zero_grad()
        loss.backward()
        opt.step()
        method.momentum_update(0.1)
        if i:
            times.append(time.perf_counter() - t)
    return statistics.median(times), float(loss.detach())


def timed_inference(channels_last: bool, params: dict, steps: int) -> float:
    torch.manual_seed(0)
    enc = build_method(params, 10).encoder.eval()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    enc = enc.to(memory_format=fmt)
    x = torch.randn(256, 3, params["image_size"], params["image_size"]).contiguous(
        memory_format=fmt
    )
    times = []
    with torch.no_grad():
        for i in range(steps + 1):
            t = time.perf_counter()
            enc(x)
            if i:
                times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet18_small")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    params = merge_params(
        DEFAULTS,
        {
            "arch": a.arch,
            "image_size": a.image_size,
            "batch_size": a.batch,
            "moco": {"queue_size": 1024, "momentum": 0.99},
        },
        "bench",
    )
    train = {False: [], True: []}
    infer = {False: [], True: []}
    losses = {}
    for _ in range(a.repeats):
        for cl in (False, True):
            t, losses[cl] = timed_steps(cl, params, a.steps)
            train[cl].append(t)
            infer[cl].append(timed_inference(cl, params, a.steps))
    for name, d in (("train step", train), ("inference (256 images)", infer)):
        base, cl = statistics.median(d[False]), statistics.median(d[True])
        print(
            f"{name:24s} contiguous {base:.3f} s  channels_last {cl:.3f} s  speed-up {base / cl:.2f}x"
        )
    print(
        f"loss after the last step: contiguous {losses[False]:.7f}  channels_last {losses[True]:.7f}  "
        f"|diff| {abs(losses[False] - losses[True]):.1e}"
    )


if __name__ == "__main__":
    main()
