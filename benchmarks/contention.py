"""Pretraining img/s alone and beside a process holding one core, per OpenMP wait policy.

Each condition (policy x load x DataLoader workers) runs in a fresh interpreter, since
libgomp reads its wait policy once, when torch is imported. The rounds interleave all
conditions, so drift on a shared machine hits each alike; every img/s is divided by the
default-policy-alone run of the same round and the same workers, and the median of
those ratios over the rounds is printed. The hog is a Python busy loop (one core).

The step is the project's: JPEG folder -> ManifestImages -> build_loader -> TwoViewAugment
-> the MoCo v2 step of oacl.train.methods with the default parameters, channels_last.

A policy is "default" (libgomp's own: GOMP_SPINCOUNT=300000, as with no variables set),
"oacl" (what oacl.ompenv.apply sets for every command) or KEY=VALUE[,KEY=VALUE]
environment settings, e.g. OMP_WAIT_POLICY=PASSIVE or OMP_NUM_THREADS=1; a policy ending
in "+tuner" (e.g. "oacl+tuner", what pretraining with ``threads: auto`` runs) adds the
thread tuner of oacl.train.threads, deciding every --tune-period seconds.

    python benchmarks/contention.py --rounds 3 --workers 0 1 \
        --policies default oacl OMP_WAIT_POLICY=PASSIVE GOMP_SPINCOUNT=10000
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from oacl import ompenv  # noqa: E402  (no torch: the parent stays free of OpenMP)


def tuned(policy: str) -> bool:
    return policy.endswith("+tuner")


def policy_env(policy: str) -> dict[str, str]:
    """The child environment for ``policy``: every OpenMP wait variable cleared first."""
    policy = policy.removesuffix("+tuner")
    env = {k: v for k, v in os.environ.items() if k not in ompenv.USER_KEYS}
    if policy == "default":  # libgomp's built-in spin count, which oacl would override
        env["GOMP_SPINCOUNT"] = ompenv.LIBGOMP_DEFAULT
    elif policy == "oacl":  # what every oacl command runs with
        ompenv.apply(env)
    else:
        for kv in policy.split(","):
            k, _, v = kv.partition("=")
            env[k.strip()] = v.strip()
    return env


# ------------------------------------------------------------------ child: one measurement


def measure(a) -> dict:
    import torch

    from oacl.artifacts import read_manifest
    from oacl.params import merge_params
    from oacl.train import augment, data
    from oacl.train.methods import build_method
    from oacl.train.params import DEFAULTS

    p = merge_params(
        DEFAULTS,
        {"image_size": a.image_size, "store_size": a.image_size, "batch_size": a.batch},
        "bench",
    )
    torch.manual_seed(0)
    method = build_method(p, 10).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(method.parameters(), lr=0.03, momentum=0.9, weight_decay=1e-4)
    aug = augment.TwoViewAugment(p["augment"], "baseline", a.image_size, method="moco")
    df = read_manifest(a.manifest)
    ds = data.ManifestImages(df, a.image_size, variant="baseline")
    gen = torch.Generator().manual_seed(1)
    tuner = None
    if a.tune_period:
        from oacl.train import threads

        tuner = threads.ThreadTuner(torch.get_num_threads(), period=a.tune_period)

    def batches():
        e = 0
        while True:  # a new loader per epoch, as the training loop does
            yield from data.build_loader(ds, a.batch, a.workers, True, True, seed=0, epoch=e)
            e += 1

    it = batches()

    def step(k):
        batch = next(it)
        x1, x2 = aug(batch, gen)
        loss, _ = method(x1, x2, batch["label"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        method.momentum_update(0.5)
        if tuner is not None:
            tuner.update()
        return len(batch["label"])

    for k in range(a.warmup):
        step(k)
    t0, n, steps = time.perf_counter(), 0, 0
    while steps < a.steps and (steps == 0 or time.perf_counter() - t0 < a.seconds):
        n += step(a.warmup + steps)
        steps += 1
    dt = time.perf_counter() - t0
    it.close()
    sw = tuner.switches if tuner is not None else 0
    return {"img_s": n / dt, "steps": steps, "threads": torch.get_num_threads(), "switches": sw}


# ------------------------------------------------------------------ parent: the rounds


def _busy_s() -> float:
    """CPU seconds spent so far by every process of the machine (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def _ours_s() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)  # the child, its workers, the hog
    return r.ru_utime + r.ru_stime


def run_one(a, policy: str, hog: bool, workers: int) -> dict:
    cmd = [sys.executable, __file__, "--child", "--manifest", str(a.manifest)]
    cmd += ["--workers", str(workers), "--batch", str(a.batch), "--image-size", str(a.image_size)]
    cmd += ["--steps", str(a.steps), "--seconds", str(a.seconds), "--warmup", str(a.warmup)]
    cmd += ["--tune-period", str(a.tune_period if tuned(policy) else 0)]
    busy0, ours0, t0 = _busy_s(), _ours_s(), time.perf_counter()
    # a session of its own, as another program has: with autogroup scheduling (Linux
    # default) a hog in our session would only share our own slice of the CPUs
    hog_cmd = [sys.executable, "-c", "while True: pass"]
    hog_proc = subprocess.Popen(hog_cmd, start_new_session=True) if hog else None
    try:
        out = subprocess.run(
            cmd, env=policy_env(policy), capture_output=True, text=True, timeout=a.timeout
        )
    finally:
        if hog_proc is not None:
            hog_proc.kill()
            hog_proc.wait()
    # other users' load on the machine meanwhile, in cores (this run is not alone if > 0)
    foreign = max(0.0, (_busy_s() - busy0) - (_ours_s() - ours0)) / (time.perf_counter() - t0)
    if out.returncode != 0:
        raise SystemExit(f"child {policy} hog={hog} workers={workers} failed:\n{out.stderr}")
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "foreign": foreign}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--policies", nargs="+", default=["default", "oacl", "OMP_WAIT_POLICY=PASSIVE"])
    ap.add_argument("--workers", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20, help="at most this many timed steps")
    ap.add_argument("--seconds", type=float, default=6.0, help="stop timing after this long")
    ap.add_argument(
        "--tune-period",
        type=float,
        default=5.0,
        help="tuned policies: seconds between the thread tuner's decisions (training: 5)",
    )
    ap.add_argument("--timeout", type=float, default=600.0, help="per condition")
    ap.add_argument(
        "--quiet", type=float, default=0.2, help="rounds with more load of others are left out"
    )
    ap.add_argument(
        "--minutes", type=float, default=None, help="start no new round after this long"
    )
    ap.add_argument("--json", default=None)
    ap.add_argument("--manifest", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        a.workers = a.workers[0]
        print(json.dumps(measure(a)), flush=True)
        return 0
    # a killed run must not leave its hog or child spinning: SystemExit runs the finally blocks
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if "default" not in a.policies:
        a.policies.insert(0, "default")

    tmp = tempfile.TemporaryDirectory(prefix="oacl_contention_")
    a.manifest = Path(tmp.name) / "manifest.parquet"
    # made in a child too: torch in this process would start OpenMP threads, which can
    # take the SIGTERM that should stop the run
    make = "from pretrain_throughput import make_jpeg_folder as m; import sys, pathlib; "
    make += f"m(pathlib.Path(sys.argv[1]), {a.images}, {a.image_size + a.image_size // 4}, 2)"
    subprocess.run([sys.executable, "-c", make, tmp.name], check=True, cwd=HERE)
    print(
        f"{a.images} images, {a.image_size} px, batch {a.batch}, CPUs {os.cpu_count()}, "
        f"{a.rounds} rounds; oacl policy {ompenv.POLICY}",
        flush=True,
    )
    rows = []  # (round, workers, policy, load, img/s, foreign load)
    start = time.monotonic()
    for r in range(a.rounds):
        if r and a.minutes and time.monotonic() - start > 60 * a.minutes:
            print(f"time budget spent: {r} rounds", flush=True)
            break
        for w in a.workers:
            for pol in a.policies:
                for load in ("alone", "hog"):
                    res = run_one(a, pol, load == "hog", w)
                    rows.append((r, w, pol, load, res["img_s"], res["foreign"]))
                    print(
                        f"round {r} workers {w} {pol:26s} {load:5s} {res['img_s']:7.1f} img/s "
                        f"({res['steps']} steps, {res['threads']} threads, {res['switches']} switches, "
                        f"others' load {res['foreign']:.2f} cores)",
                        flush=True,
                    )
    tmp.cleanup()
    # a round counts when other users kept the machine nearly free through all of it
    quiet = sorted({r for r, *_ in rows} - {r for r, *_, f in rows if f > a.quiet})
    use = quiet or sorted({r for r, *_ in rows})
    print(
        f"\nrounds with others' load <= {a.quiet} cores: {quiet or 'none (all rounds used)'}"
        "\nimg/s / default-alone of the same round and workers: median over those rounds [each]"
    )
    base = {(r, w): v for r, w, pol, load, v, _ in rows if pol == "default" and load == "alone"}
    summary = []
    for w in a.workers:
        for pol in a.policies:
            line = {"workers": w, "policy": pol, "rounds": use}
            for load in ("alone", "hog"):
                sel = [(r, v) for r, ww, p, ld, v, _ in rows if (ww, p, ld) == (w, pol, load)]
                sel = [(r, v) for r, v in sel if r in use]
                ratios = [v / base[r, w] for r, v in sel]
                line[f"{load}_ratio"] = round(statistics.median(ratios), 3)
                line[f"{load}_img_s"] = round(statistics.median(v for _, v in sel), 1)
                line[f"{load}_ratios"] = [round(x, 2) for x in ratios]
            # the criterion: contended speed against this policy's own uncontended speed
            line["hog_over_alone"] = round(line["hog_img_s"] / line["alone_img_s"], 3)
            summary.append(line)
            print(
                f"workers {w} {pol:26s} alone {line['alone_ratio']:.3f} {line['alone_ratios']}"
                f"  hog {line['hog_ratio']:.3f} {line['hog_ratios']}"
                f"  hog/alone {line['hog_over_alone']:.3f}",
                flush=True,
            )
    print("SUMMARY " + json.dumps(summary), flush=True)
    if a.json:
        from oacl.io import write_json

        write_json(a.json, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
