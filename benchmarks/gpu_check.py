"""One prepared GPU check: everything CUDA-specific, verified by one command.

    python3 benchmarks/gpu_check.py --out "$OUT/gpu_check.json" --workdir DIR   # one CUDA GPU
    python3 benchmarks/gpu_check.py --quick    # the same code paths on CPU, tiny sizes

Writes one JSON (default results/gpu_check/gpu_check.json; docs/gpu.md's run 1 puts it
under $OUT), and beside it the printed log (gpu_check.log) and a tarball of every
section's logs (gpu_check_logs.tar.gz), all rewritten after every section so that a run
cut short still leaves what it measured; at the end it prints a table.
Sections, in order of importance, each in its own process with its own time budget
(a crash or a hang loses that section only):

  env               versions, GPU, CPUs, which carried wheels were installed
  data              synthetic JPEG folder (benchmarks/pretrain_throughput.make_jpeg_folder)
  pytest_gpu        `pytest -m gpu` over the test files that have GPU tests
  train             MoCo and BYOL through oacl.train.loop.pretrain (bf16 autocast on
                    CUDA, channels_last): 200 steps at 224 px R18; loss finite, decreasing
  resume            SIGKILL mid-run, re-run: the state vs an uninterrupted run, next to
                    the gap between two uninterrupted runs (CUDA kernels are not
                    bit-deterministic: pass = identical, or within 10x that noise floor)
  contracam         oacl.cam.engine.CamEngine on the device (bf16 as `oacl cam` runs it, and
                    fp32) vs the float64 CPU reference (oacl.cam.reference), same
                    checkpoint and images: max |delta| and mask IoU@0.5
  ddp               torchrun (NCCL on CUDA, gloo on CPU) with the GPUs present vs one
                    process (as tests/test_ddp.py), plus an all-reduce probe
  speed_pretrain    benchmarks/pretrain_throughput.py: pipeline / step ceiling, R18 and
                    R50 at 224 (goal >= 0.8)
  speed_contracam   benchmarks/contracam_speed.py: ours / literal Algorithm 1, 1 iteration
                    and 10 iterations + expand 2 (goal >= 2x)
  speed_refine      oacl.refine.refine_shard, one shard per CPU core, wall img/s
  pipeline_smoke    snakemake --cores all, workflow/configs/smoke.yaml, device: cuda
  pipeline_default  the same with config.yaml; only when named in --only (~20 min)

A section whose dependency is missing is recorded as "skipped: <reason>". Status
values: ok | fail (ran, a check did not hold) | error: ... | timeout after N s |
skipped: .... Exit code 1 if any section failed or errored, else 0.

Wheels the GPU image may lack (snakemake, pydensecrf2, ...) are taken from .whl/
(made by benchmarks/gpu_wheels.sh): only the distributions that are not installed (or
too old: typing_extensions without Sentinel) are installed, with pip --no-index, into
<workdir>/site-<python tag>, outside the repository. See docs/gpu.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC, BENCH, TESTS = REPO / "src", REPO / "benchmarks", REPO / "tests"

# name, budget on the GPU (s), budget with --quick (s), modules it needs, needs the data section
SECTIONS = [
    ("env", 60, 40, [], False),
    ("data", 60, 40, ["cv2", "pyarrow"], False),
    ("pytest_gpu", 90, 60, ["pytest"], False),
    ("train", 120, 60, [], True),
    ("resume", 120, 60, [], True),
    ("contracam", 90, 40, [], True),
    ("ddp", 90, 60, [], True),
    ("speed_pretrain", 150, 60, [], True),
    ("speed_contracam", 80, 40, [], True),
    ("speed_refine", 40, 40, ["pydensecrf"], False),
    ("pipeline_smoke", 150, 60, ["snakemake"], False),
    ("pipeline_default", 10_000, 60, ["snakemake"], False),
]
NAMES = [s[0] for s in SECTIONS]
# run only when named in --only: the default pipeline needs ~20 min, more than a GPU
# session has, and would only spend device time (docs/gpu.md)
OPT_IN = {"pipeline_default"}
BASE_NEEDS = ["torch", "torchvision", "numpy", "pandas", "pyarrow"]
GPU_BUDGET, QUICK_BUDGET = 400, 240  # total wall seconds (run 1 of docs/gpu.md ends within 8 min)

# sizes: the GPU figures docs/gpu.md reports, and tiny CPU ones running the same code
SIZES = {
    "gpu": dict(
        n_images=9728,
        src=256,
        train_n=1280,
        arch="resnet18",
        image=224,
        store=256,
        batch=64,
        epochs=10,
        queue=1024,
        workers=6,  # 10 epochs of 20 steps: 15 workers would mostly measure their start-up
        log_every=20,
        resume_n=160,
        resume_batch=32,
        resume_workers=4,
        cam_images=16,
        cam_iters=10,  # the float64 CPU reference: ~1 s per image-iteration per core
        tp_args=[],
        tp_archs=["resnet18", "resnet50"],
        cs_args=["--batch", "64", "--batches", "4", "--repeats", "2", "--bf16"],
        refine_per_core=32,
    ),
    "quick": dict(
        n_images=64,
        src=40,
        train_n=48,
        arch="resnet18_small",
        image=32,
        store=32,
        batch=16,
        epochs=4,
        queue=48,
        workers=0,
        log_every=1,
        resume_n=48,
        resume_batch=16,
        resume_workers=0,
        cam_images=6,
        cam_iters=2,
        tp_args=[
            "--image-size",
            "32",
            "--store-size",
            "36",
            "--batch",
            "8",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--workers",
            "0",
        ],
        tp_archs=["resnet18_small", "resnet50"],
        cs_args=["--batch", "4", "--batches", "1", "--image-size", "32", "--threads", "1"],
        refine_per_core=2,
    ),
}

PASS_IOU = {"fp32": 0.95, "bf16": 0.85}  # ContraCAM on the device vs the float64 reference
RESUME_NOISE_FACTOR = 10.0  # resumed-vs-uninterrupted gap allowed, in units of the run-to-run gap
DDP_REL_GAP = 1e-2  # as tests/test_ddp.py: gap <= 1% of what training moved the weights


# ============================================================================ parent


def python_tag() -> str:
    return f"cp{sys.version_info.major}{sys.version_info.minor}"


def _dist_installed(name: str) -> bool:
    from importlib import metadata

    try:
        metadata.distribution(name)
        return True
    except metadata.PackageNotFoundError:
        return False


def sentinel_ok() -> bool:
    """snakemake's pydantic-core imports ``typing_extensions.Sentinel`` (4.15 on); an older
    typing_extensions (4.12.2 on some CUDA images) makes ``import snakemake`` fail."""
    try:
        import typing_extensions
    except ImportError:
        return False
    return hasattr(typing_extensions, "Sentinel")


# distributions the machine may have in a version too old for the carried snakemake:
# installed from the carry even though present (into the carry's site, which comes first)
OUTDATED = {"typing-extensions": sentinel_ok}


def install_wheels(whl_dir: Path, site: Path) -> dict:
    """pip-install (no index, no deps) the distributions in ``whl_dir`` that are missing
    (or too old, ``OUTDATED``).

    Into ``site`` (a folder outside the repository: nothing of the machine's Python is
    replaced and the working tree does not grow), which is put first on sys.path and on
    the children's PYTHONPATH.
    """
    rec = {"dir": str(whl_dir), "installed": [], "failed": [], "present": 0}
    wheels = sorted(whl_dir.glob("*.whl")) if whl_dir.is_dir() else []
    rec["typing_extensions_sentinel"] = sentinel_ok()
    if not wheels:
        rec["note"] = "no wheels carried"
        return rec
    site = Path(site)
    if site.is_dir():
        sys.path.insert(0, str(site))  # earlier installs count as present
    names = sorted({w.name.split("-")[0].lower().replace("_", "-") for w in wheels})
    missing = [n for n in names if not _dist_installed(n) or not OUTDATED.get(n, lambda: True)()]
    rec["present"] = len(names) - len(missing)
    pip = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-index",
        "--no-deps",
        "--no-compile",
        "--disable-pip-version-check",
        "--find-links",
        str(whl_dir),
        "--target",
        str(site),
        "--upgrade",
    ]
    if missing:
        proc = subprocess.run(pip + missing, capture_output=True, text=True)
        if proc.returncode == 0:
            rec["installed"] = missing
        else:  # one wheel for another Python must not stop the others
            for n in missing:
                one = subprocess.run(pip + [n], capture_output=True, text=True)
                (rec["installed"] if one.returncode == 0 else rec["failed"]).append(n)
    if site.is_dir() and str(site) not in sys.path:
        sys.path.insert(0, str(site))
    import importlib

    importlib.invalidate_caches()
    rec["site"] = str(site) if site.is_dir() else None
    if "typing_extensions" in sys.modules:  # an old copy imported before the install
        importlib.reload(sys.modules["typing_extensions"])
    rec["typing_extensions_sentinel"] = sentinel_ok()
    return rec


def have_module(name: str, assume_missing: set[str]) -> bool:
    import importlib.util

    if name in assume_missing:
        return False
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def make_shim(bindir: Path) -> None:
    """An `oacl` command for Snakemake's rules (the repo is not pip-installed there)."""
    bindir.mkdir(parents=True, exist_ok=True)
    shim = bindir / "oacl"
    shim.write_text(
        f"#!{sys.executable}\nimport sys\nfrom oacl.cli import main\nsys.exit(main())\n"
    )
    shim.chmod(0o755)


def child_env(site: str | None, bindir: Path) -> dict:
    env = dict(os.environ)
    env[MARK] = f"{os.getpid()}-{time.time_ns()}"
    paths = [p for p in (site, str(SRC), str(BENCH)) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PATH"] = str(bindir) + os.pathsep + env.get("PATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (read from /proc; [] where there is none)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def kill_tree(proc: subprocess.Popen) -> None:
    """End a process we started and everything below it. Its process group is not enough:
    torchrun starts its workers in a process group of their own, and a worker left
    running would hold the GPU until the machine is given back."""
    pids = descendants(proc.pid)  # before the parent dies and they are re-parented
    for pid in [proc.pid, *pids]:
        try:
            os.killpg(pid, signal.SIGKILL)  # the groups they lead (a section, torchrun's workers)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    proc.wait()


MARK = "OACL_GPU_CHECK_RUN"  # set in every section's environment, inherited by all below it


def kill_marked(token: str) -> list[int]:
    """SIGKILL every process whose environment carries ``MARK=token``: what a section left
    behind after its parent exited (orphans are re-parented, so no tree reaches them)."""
    want, killed = f"{MARK}={token}".encode(), []
    for d in Path("/proc").glob("[0-9]*"):
        pid = int(d.name)
        if pid == os.getpid():
            continue
        try:
            if want in (d / "environ").read_bytes().split(b"\0"):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        except (OSError, ProcessLookupError):
            continue
    return killed


def _children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_section(
    name: str, ctx_path: Path, res_path: Path, timeout: float, env: dict, log: Path
) -> dict:
    t0, cpu0 = time.perf_counter(), _children_cpu()
    res_path.unlink(missing_ok=True)
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--child",
                name,
                "--ctx",
                str(ctx_path),
            ],
            cwd=REPO,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            rc = proc.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            rc, timed_out = None, True
        kill_tree(proc)  # also after a normal exit: nothing of a section outlives it
    left = kill_marked(env[MARK]) if MARK in env else []
    res = {}
    if res_path.exists():  # a child writes its figures as it goes: keep them after a timeout
        try:
            res = json.loads(res_path.read_text())
        except ValueError:
            res = {}
    if left:
        res["killed_leftover_processes"] = len(left)
    if timed_out:
        res["status"] = f"timeout after {timeout:.0f} s"
    elif "status" not in res:
        res["status"] = f"error: section process exited with {rc} and no result"
    if not res["status"].startswith("ok"):
        res.setdefault("log_tail", log.read_text(errors="replace")[-3000:])
    res["time_s"] = round(time.perf_counter() - t0, 1)
    res["cpu_s"] = round(
        _children_cpu() - cpu0, 1
    )  # CPU time of the section's processes (waited for)
    return res


def table_lines(report: dict) -> list[str]:
    rows = [("section", "status", "time_s", "figures")]
    for name, r in report["sections"].items():
        rows.append(
            (name, r.get("status", "")[:40], f"{r.get('time_s', 0):.1f}", r.get("headline", ""))
        )
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:>{w[2]}}  {r[3]}" for r in rows]
    lines.append(f"wall {report['meta']['wall_s']:.1f} s of budget {report['meta']['budget_s']} s")
    return lines


def pack_logs(work: Path, tar_path: Path) -> None:
    """Every *.log of the work folder (sections, their commands, Snakemake) into one
    tarball beside the JSON (the work folder may be a temporary one, removed at the end)."""
    import tarfile

    tmp = tar_path.with_name(tar_path.name + ".tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for f in sorted(work.rglob("*.log")):
            if f.is_file() and "site-" not in f.parts[len(work.parts)]:
                tar.add(f, arcname=str(f.relative_to(work)))
    os.replace(tmp, tar_path)


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)


def parent(a) -> int:
    t_start = time.perf_counter()
    budget = (a.budget or (QUICK_BUDGET if a.quick else GPU_BUDGET)) * a.budget_scale
    out = Path(a.out).resolve()
    work = (
        Path(a.workdir).resolve() if a.workdir else Path(tempfile.mkdtemp(prefix="oacl_gpu_check_"))
    )
    work.mkdir(parents=True, exist_ok=True)
    (work / "results").mkdir(exist_ok=True)
    (work / "logs").mkdir(exist_ok=True)
    assume_missing = set(a.assume_missing or [])
    log_path = out.parent / (out.stem + ".log")
    tar_path = out.parent / (out.stem + "_logs.tar.gz")
    out.parent.mkdir(parents=True, exist_ok=True)
    log_fh = open(log_path, "w")

    def say(msg: str = "") -> None:  # the console and gpu_check.log beside the JSON
        print(msg, flush=True)
        log_fh.write(msg + "\n")
        log_fh.flush()

    wheels = install_wheels(Path(a.wheels).resolve(), work / f"site-{python_tag()}")
    bindir = work / "bin"
    make_shim(bindir)
    env = child_env(wheels.get("site"), bindir)
    only = set(a.only.split(",")) if a.only else set(NAMES) - OPT_IN
    skip = set(a.skip.split(",")) if a.skip else set()
    unknown = (only | skip) - set(NAMES)
    if unknown:
        raise SystemExit(f"unknown section(s) {sorted(unknown)}; sections: {', '.join(NAMES)}")
    budgets = dict(kv.split("=") for kv in (a.section_budget or []))
    ctx = {
        "quick": a.quick,
        "work": str(work),
        "sizes": SIZES["quick" if a.quick else "gpu"],
        "device": "cpu" if a.quick else "cuda",
        "assume_missing": sorted(assume_missing),
    }
    ctx_path = work / "ctx.json"
    ctx_path.write_text(json.dumps(ctx))

    report = {
        "meta": {
            "argv": sys.argv[1:],
            "quick": a.quick,
            "budget_s": budget,
            "workdir": str(work),
            "python": platform.python_version(),
            "wheels": wheels,
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "wall_s": 0.0,
        },
        "sections": {},
    }
    missing_base = [m for m in BASE_NEEDS if not have_module(m, assume_missing)]
    say(
        f"gpu_check: {'quick (CPU)' if a.quick else 'GPU'} run, budget {budget} s, work {work}, "
        f"json {out}"
    )
    say(f"wheels: {json.dumps(wheels)}")
    for name, b_gpu, b_quick, needs, needs_data in SECTIONS:
        left = budget - (time.perf_counter() - t_start)
        if name not in only or name in skip:
            continue
        reason = None
        missing = [m for m in needs if not have_module(m, assume_missing)]
        if missing_base:
            reason = f"missing module(s) {', '.join(missing_base)}"
        elif missing:
            reason = f"missing module(s) {', '.join(missing)}"
        elif (
            needs_data
            and report["sections"].get("data", {}).get("status") != "ok"
            and not (work / "data" / "manifest.parquet").exists()
        ):
            reason = "no data (the data section did not run or failed)"
        elif left < 15:
            reason = f"not enough time left ({left:.0f} s of the {budget} s budget)"
        if reason:
            res = {"status": f"skipped: {reason}", "time_s": 0.0}
        else:
            timeout = min(
                float(budgets.get(name, (b_quick if a.quick else b_gpu) * a.budget_scale)), left
            )
            res = run_section(
                name,
                ctx_path,
                work / "results" / f"{name}.json",
                timeout,
                env,
                work / "logs" / f"{name}.log",
            )
        report["sections"][name] = res
        report["meta"]["wall_s"] = round(time.perf_counter() - t_start, 1)
        write_json(out, report)
        pack_logs(work, tar_path)  # after every section: a run cut short keeps its logs
        say(
            f"[{report['meta']['wall_s']:6.1f} s] {name}: {res['status']} ({res['time_s']} s) "
            f"{res.get('headline', '')}"
        )
    counts: dict[str, int] = {}
    for r in report["sections"].values():
        key = r["status"].split(":")[0].split(" ")[0]
        counts[key] = counts.get(key, 0) + 1
    report["summary"] = counts
    report["meta"]["wall_s"] = round(time.perf_counter() - t_start, 1)
    write_json(out, report)
    pack_logs(work, tar_path)
    say()
    for line in table_lines(report):
        say(line)
    say(f"json: {out}; log: {log_path}; section logs: {tar_path}")
    log_fh.close()
    if not a.keep and not a.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if counts.get("fail") or counts.get("error") else 0


# ============================================================================ children


class Ctx:
    def __init__(self, path: Path, name: str):
        d = json.loads(path.read_text())
        self.quick, self.work, self.S = d["quick"], Path(d["work"]), d["sizes"]
        self.name = name
        self.res_path = self.work / "results" / f"{name}.json"
        self.res: dict = {}
        self.dir = self.work / name
        if self.dir.exists():  # a reused --workdir: no stale run to resume from
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        self.assume_missing = set(d.get("assume_missing", []))
        self.device = d[
            "device"
        ]  # the parent checked CUDA (sections that only launch need no torch)
        self.cuda = self.device == "cuda"

    def save(self, **kv) -> None:
        """Record figures now (they survive a later timeout of this section)."""
        self.res.update(kv)
        write_json(self.res_path, self.res)

    @property
    def manifest(self) -> Path:
        return self.work / "data" / "manifest.parquet"

    def subset(self, n: int) -> Path:
        return self.work / "data" / f"first{n}.parquet"

    @property
    def moco_ckpt(self) -> Path:
        return self.work / "train" / "moco" / "model.pt"


def run_cmd(cmd, log: Path, timeout: float, env=None, cwd=None) -> int:
    """Run ``cmd`` (in this section's process group), output to ``log``; its exit code."""
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=cwd or REPO)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tree(proc)
            raise


def tail(path: Path, n: int = 2500) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else ""


# ---------------------------------------------------------------------------- env


def sec_env(c: Ctx) -> None:
    from importlib import metadata

    import torch

    versions = {}
    for dist in (
        "torch",
        "torchvision",
        "numpy",
        "pandas",
        "pyarrow",
        "opencv-python-headless",
        "opencv-python",
        "scikit-learn",
        "scipy",
        "pillow",
        "pytest",
        "snakemake",
        "pydensecrf2",
        "pycocotools",
        "jsonschema",
        "pyyaml",
    ):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    try:  # the compiled extension, not only its metadata
        import pydensecrf.densecrf  # noqa: F401

        versions["pydensecrf_import"] = "ok"
    except Exception as exc:  # noqa: BLE001 - recorded
        versions["pydensecrf_import"] = f"{type(exc).__name__}: {exc}"
    gpu = None
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        gpu = {
            "name": p.name,
            "count": torch.cuda.device_count(),
            "memory_gib": round(p.total_memory / 2**30, 1),
            "capability": f"{p.major}.{p.minor}",
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "bf16": torch.cuda.is_bf16_supported(),
        }
    smi = shutil.which("nvidia-smi")
    if smi:
        q = subprocess.run(
            [smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
        )
        gpu = dict(gpu or {}, nvidia_smi=q.stdout.strip())
    c.save(
        status="ok",
        python=sys.version.split()[0],
        executable=sys.executable,
        platform=platform.platform(),
        cpus=os.cpu_count(),
        versions=versions,
        cuda_available=torch.cuda.is_available(),
        gpu=gpu,
        device=c.device,
        headline=f"python {sys.version.split()[0]}, torch {torch.__version__}, "
        f"{gpu['name'] + ' x' + str(gpu['count']) if gpu else 'no CUDA'}, {os.cpu_count()} CPUs",
    )


# ---------------------------------------------------------------------------- data


def sec_data(c: Ctx) -> None:
    from pretrain_throughput import make_jpeg_folder

    from oacl.artifacts import read_manifest, write_manifest

    S = c.S
    folder = c.work / "data"
    t0 = time.perf_counter()
    df = make_jpeg_folder(folder, S["n_images"], S["src"], max(1, os.cpu_count() or 1))
    for n in {S["train_n"], S["resume_n"]}:
        write_manifest(c.subset(n), df.iloc[:n].reset_index(drop=True))
    dt = time.perf_counter() - t0
    c.save(
        status="ok",
        images=len(df),
        src_px=S["src"],
        seconds=round(dt, 1),
        headline=f"{len(df)} JPEGs of {S['src']} px in {dt:.1f} s",
    )
    assert len(read_manifest(c.subset(S["train_n"]))) == S["train_n"]


# ---------------------------------------------------------------------------- pytest -m gpu


def sec_pytest_gpu(c: Ctx) -> None:
    files = sorted(
        str(p.relative_to(REPO))
        for p in TESTS.glob("test_*.py")
        if "mark.gpu" in p.read_text(errors="replace")
    )
    log = c.dir / "pytest.log"
    rc = run_cmd(
        [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", *files],
        log,
        timeout=3600,
    )
    lines = [ln for ln in tail(log, 100_000).splitlines() if ln.strip()]
    summary = lines[-1] if lines else ""  # "2 passed, 1 skipped, 11 deselected in 3.1s"
    counts = {
        k: int(v)
        for v, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", summary)
    }
    failed = counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0)
    ok = rc in (0, 5) and not failed
    c.save(
        status="ok" if ok else "fail",
        rc=rc,
        files=files,
        **counts,
        headline=", ".join(f"{v} {k}" for k, v in counts.items()) or f"rc {rc}",
        **({} if ok else {"tail": tail(log)}),
    )


# ---------------------------------------------------------------------------- train


def _losses(metrics: Path) -> list[dict]:
    return [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]


def train_cfg(S: dict, method: str) -> dict:
    cfg = dict(
        arch=S["arch"],
        image_size=S["image"],
        store_size=S["store"],
        batch_size=S["batch"],
        epochs=S["epochs"],
        base_lr=0.12,
        knn_every=0,
        log_every=S["log_every"],
        workers=S["workers"],
        method=method,
    )
    if (
        method == "moco"
    ):  # queue = 16 batches (fills in the first epoch), key momentum for 200 steps
        cfg["moco"] = {"queue_size": S["queue"], "momentum": 0.99}
    if S["arch"] == "resnet18_small":
        cfg["byol"] = {"hidden": 64}
    return cfg


def sec_train(c: Ctx) -> None:
    import torch

    from oacl.train.loop import pretrain
    from oacl.train.params import resolve

    S = c.S
    manifest = c.subset(S["train_n"])
    ok, heads = True, []
    for method in ("moco", "byol"):
        out = c.work / "train" / method / "model.pt"
        if out.parent.exists():
            shutil.rmtree(out.parent)
        t0 = time.perf_counter()
        pretrain(resolve(train_cfg(S, method)), manifest, out, device=c.device)
        dt = time.perf_counter() - t0
        hist = _losses(out.parent / "metrics.jsonl")
        losses = [h["loss"] for h in hist]
        finite = all(math.isfinite(v) for v in losses)
        # MoCo: compare with epoch 2 (the queue is full of real keys from there on); BYOL: epoch 1
        ref = 1 if method == "moco" and len(losses) > 2 else 0
        decreased = finite and losses[-1] < losses[ref]
        # steady rate: loader start-up (workers importing torch, first batch) left out
        rates = [h["img_per_s_steady"] for h in hist[1:]] or [hist[0]["img_per_s_steady"]]
        r = {
            "steps": hist[-1]["step"],
            "loss_by_epoch": [round(v, 4) for v in losses],
            "finite": finite,
            # MoCo at chance (positive no closer than the queued keys): ln(queue + 1)
            **({"chance_loss": round(math.log(S["queue"] + 1), 4)} if method == "moco" else {}),
            "decreased": decreased,
            "compared_epochs": [ref + 1, len(losses)],
            "min_after_ref": round(min(losses[ref + 1 :], default=losses[-1]), 4),
            "seconds": round(dt, 1),
            "img_per_s": round(sum(rates) / len(rates), 1),
            "loader_start_s": [round(h["loader_start_s"], 2) for h in hist],
            "workers": S["workers"],
            "arch": S["arch"],
            "image_size": S["image"],
            "batch": S["batch"],
            "bf16_autocast": c.cuda,
            "channels_last": True,
        }
        # a tiny CPU run is too short to promise a decrease; the GPU run must show it
        r["pass"] = finite and (decreased or c.quick)
        ok &= r["pass"]
        heads.append(
            f"{method} {losses[ref]:.3f}->{losses[-1]:.3f} ({r['steps']} steps, {r['img_per_s']:.0f} img/s)"
        )
        c.save(**{method: r})
    c.save(
        status="ok" if ok else "fail",
        device=c.device,
        torch=torch.__version__,
        headline="; ".join(heads),
    )


# ---------------------------------------------------------------------------- resume


def load_run(model_pt: Path) -> tuple[dict, dict]:
    """(weights of model.pt, train_state.pt beside it), both loaded as tensors and plain
    containers only (weights_only=True): a tampered file runs no code."""
    from oacl.io import torch_load
    from oacl.train.state import read_state

    weights = torch_load(model_pt, "oacl checkpoint")["state_dict"]
    return weights, read_state(model_pt.parent / "train_state.pt")


def sec_resume(c: Ctx) -> None:
    sys.path.insert(0, str(TESTS))
    # as tests/test_resume.py runs, kills and compares
    from pretrain_checks import kill_mid_run, max_gap, pretrain_cmd

    from oacl.train.state import read_state

    S = c.S
    manifest = c.subset(S["resume_n"])
    steps_per_epoch = S["resume_n"] // S["resume_batch"]
    cfg = dict(
        arch=S["arch"],
        image_size=S["image"],
        store_size=S["store"],
        batch_size=S["resume_batch"],
        epochs=3,
        base_lr=0.12,
        knn_every=0,
        ckpt_every_steps=1,
        log_every=1,
        workers=S["resume_workers"],
        method="moco",
        moco={"queue_size": 2 * S["resume_batch"], "momentum": 0.99},
    )
    total = steps_per_epoch * cfg["epochs"]
    kill_step = total // 2 + 1  # mid-epoch 2
    runs = {}
    # two uninterrupted runs, each a process of its own as the resumed run is: the noise
    # floor then includes what differs between processes (cuDNN's autotuned algorithms)
    for name in ("a", "b"):
        out = c.dir / name / "model.pt"
        t0 = time.perf_counter()
        rc = run_cmd(pretrain_cmd(cfg, manifest, out, c.device), c.dir / f"{name}.log", 600)
        if rc:
            raise RuntimeError(f"run {name} failed (rc {rc}): {tail(c.dir / f'{name}.log')}")
        runs[name] = out
        c.save(**{f"run_{name}_s": round(time.perf_counter() - t0, 1)})
    out = c.dir / "c" / "model.pt"
    cmd = pretrain_cmd(cfg, manifest, out, c.device)
    # killed once it logs step kill_step (so step kill_step - 1 is saved)
    seen = kill_mid_run(cmd, c.dir / "c_killed.log", at_step=kill_step, timeout=600)
    st = read_state(out.parent / "train_state.pt")
    killed_at = st["step"]
    if out.exists() or killed_at >= total:
        raise RuntimeError(f"the run finished before it was killed (step {killed_at}/{total})")
    rc = run_cmd(cmd, c.dir / "c_resumed.log", 600)
    if rc:
        raise RuntimeError(f"resumed run failed (rc {rc}): {tail(c.dir / 'c_resumed.log')}")
    runs["c"] = out

    (wa, sa), (wb, sb), (wc, sc) = (load_run(runs[k]) for k in "abc")
    noise_w, _ = max_gap(wa, wb)
    noise_s, _ = max_gap(sa["method"], sb["method"])
    gap_w, differ_w = max_gap(wa, wc)
    gap_s, differ_s = max_gap(sa["method"], sc["method"])
    identical = not differ_w and not differ_s and sa["step"] == sc["step"] == total
    noise = max(noise_w, noise_s)
    within = noise > 0 and max(gap_w, gap_s) <= RESUME_NOISE_FACTOR * noise
    c.save(
        status="ok" if (identical or within) else "fail",
        device=c.device,
        total_steps=total,
        killed_at_step=killed_at,
        last_step_logged=seen,
        identical=identical,
        tensors_differing=len(differ_w) + len(differ_s),
        max_abs_diff_weights=gap_w,
        max_abs_diff_state=gap_s,
        noise_floor_weights=noise_w,
        noise_floor_state=noise_s,
        tolerance_factor=RESUME_NOISE_FACTOR,
        within_noise=within,
        arch=S["arch"],
        image_size=S["image"],
        batch=S["resume_batch"],
        headline=(
            f"killed at step {killed_at}/{total}: "
            + (
                "bit-identical"
                if identical
                else f"max|d| {max(gap_w, gap_s):.2e} vs run-to-run {noise:.2e}"
            )
        ),
    )


# ---------------------------------------------------------------------------- contracam


def cam_model(c: Ctx):
    """The MoCo checkpoint of the train section, else a random model (said so)."""
    if c.moco_ckpt.exists():
        from oacl.models import load_checkpoint

        return load_checkpoint(c.moco_ckpt), str(c.moco_ckpt)
    from contracam_speed import build_model

    return build_model(c.S["arch"]), "random weights (no train checkpoint)"


def _iou(a, b) -> float:
    a, b = a > 0.5, b > 0.5
    inter, union = (a & b).sum((1, 2, 3)).float(), (a | b).sum((1, 2, 3)).float()
    return float(((inter / union.clamp_min(1)).where(union > 0, 1.0)).mean())


def sec_contracam(c: Ctx) -> None:
    import copy

    import numpy as np
    import torch

    from oacl.artifacts import read_manifest
    from oacl.cam.engine import CamEngine
    from oacl.cam.reference import reference_contracam
    from oacl.cam.run import load_image

    S = c.S
    model, source = cam_model(c)
    meta = getattr(model, "meta", {})
    mean, std = meta.get("mean", [0.485, 0.456, 0.406]), meta.get("std", [0.229, 0.224, 0.225])
    df = read_manifest(c.manifest).iloc[: S["cam_images"]]
    x = torch.from_numpy(np.stack([load_image(p, S["image"], mean, std)[0] for p in df["abspath"]]))
    ref_model = copy.deepcopy(model).double().cpu()
    dev = torch.device(c.device)
    if c.cuda:
        torch.backends.cudnn.benchmark = True  # as `oacl cam`
    out, ok, heads = {}, True, []
    for iters, expand in ((1, 1), (S["cam_iters"], 2)):
        key = f"iter{iters}_expand{expand}"
        t0 = time.perf_counter()
        ref = reference_contracam(ref_model, x.double(), iters, expand)
        t_ref = time.perf_counter() - t0
        out[key] = {"reference_s": round(t_ref, 2)}
        for prec, amp in (("bf16", torch.bfloat16), ("fp32", None)):
            engine = CamEngine(copy.deepcopy(model).to(dev), expand, True, True, amp)
            got = engine.contracam(x.to(dev), iters).double().cpu()
            d = (got - ref).abs()
            iou = _iou(got, ref)
            passed = iou >= PASS_IOU[prec]
            out[key][prec] = {
                "max_abs_diff": d.max().item(),
                "mean_abs_diff": d.mean().item(),
                "miou": round(iou, 4),
                "min_iou": PASS_IOU[prec],
                "pass": passed,
            }
            ok &= passed
            heads.append(f"{key} {prec} IoU {iou:.3f} max|d| {d.max().item():.1e}")
        c.save(**{key: out[key]})
    c.save(
        status="ok" if ok else "fail",
        device=c.device,
        images=len(x),
        image_size=S["image"],
        checkpoint=source,
        reference="float64 on CPU (oacl.cam.reference)",
        engine="fuse_bn, channels_last; bf16 = `oacl cam` on CUDA (amp auto)",
        headline="; ".join(heads),
    )


# ---------------------------------------------------------------------------- ddp


def sec_ddp(c: Ctx) -> None:
    import torch

    from oacl.train.loop import pretrain
    from oacl.train.params import resolve

    sys.path.insert(0, str(TESTS))
    # deterministic views and the comparison of tests/test_ddp.py
    from pretrain_checks import IDENTITY_AUG, ddp_gap, pretrain_cmd

    world = max(1, torch.cuda.device_count()) if c.cuda else 1
    S = c.S
    B = S["resume_batch"] * world
    n = 2 * B  # 2 steps per epoch, 2 epochs
    manifest = c.work / "data" / f"first{n}.parquet"
    if not manifest.exists():
        from oacl.artifacts import read_manifest, write_manifest

        write_manifest(manifest, read_manifest(c.manifest).iloc[:n].reset_index(drop=True))
    base = dict(
        arch=S["arch"],
        image_size=S["image"],
        store_size=S["store"],
        batch_size=B,
        epochs=2,
        knn_every=0,
        base_lr=0.5,
        augment=IDENTITY_AUG,
        workers=S["resume_workers"],
        method="moco",
        moco={"queue_size": 2 * B, "bn_splits": 1, "shuffle_bn": False},
    )
    single = dict(base)
    if not c.cuda and world > 1:  # gloo ranks normalise their half: the single run splits BN alike
        single = dict(base, moco=dict(base["moco"], bn_splits=world))
    t0 = time.perf_counter()
    pretrain(resolve(single), manifest, c.dir / "single" / "model.pt", device=c.device)
    c.save(single_s=round(time.perf_counter() - t0, 1))

    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={world}",
    ]
    t0 = time.perf_counter()
    # `python -m oacl.cli pretrain ...` under torchrun (the interpreter is torchrun's)
    ddp_cmd = pretrain_cmd(base, manifest, c.dir / "ddp" / "model.pt", c.device)[1:]
    rc = run_cmd(torchrun + ddp_cmd, c.dir / "torchrun.log", 600)
    c.save(torchrun_s=round(time.perf_counter() - t0, 1), torchrun_rc=rc)
    if rc:
        c.save(status="fail", tail=tail(c.dir / "torchrun.log"), headline=f"torchrun exited {rc}")
        return
    probe_out = c.dir / "probe.json"
    prc = run_cmd(
        torchrun
        + [
            str(Path(__file__).resolve()),
            "--dist-probe",
            str(probe_out),
            "--probe-device",
            c.device,
        ],
        c.dir / "probe.log",
        300,
    )
    probe = (
        json.loads(probe_out.read_text())
        if probe_out.exists()
        else {"ok": False, "rc": prc, "tail": tail(c.dir / "probe.log")}
    )
    gap, moved = ddp_gap(c.dir / "single" / "model.pt", c.dir / "ddp" / "model.pt", single)
    match = moved > 0 and gap <= DDP_REL_GAP * moved
    lines = (c.dir / "ddp" / "metrics.jsonl").read_text().splitlines()
    ok = match and probe.get("ok") and len(lines) == 2
    c.save(
        status="ok" if ok else "fail",
        world_size=world,
        backend=probe.get("backend"),
        probe=probe,
        max_abs_diff=gap,
        moved=moved,
        rel_gap=gap / moved if moved else None,
        max_rel_gap=DDP_REL_GAP,
        match=match,
        epochs_logged=len(lines),
        note=None
        if world > 1
        else "world size 1: oacl.train.dist.init joins no process group; "
        "the probe exercises torchrun + the backend",
        headline=f"world {world} {probe.get('backend')}: |single-ddp| {gap:.1e} = "
        f"{gap / max(moved, 1e-30):.1e} of training's change, all-reduce "
        f"{'ok' if probe.get('ok') else 'FAILED'}",
    )


def dist_probe(out: str, device: str) -> int:
    """Under torchrun: init the process group, all-reduce, rank 0 writes the result."""
    import torch
    import torch.distributed as tdist

    cuda = device == "cuda"
    backend = "nccl" if cuda else "gloo"
    local = int(os.environ.get("LOCAL_RANK", 0))
    if cuda:
        torch.cuda.set_device(local)
    tdist.init_process_group(backend)
    rank, world = tdist.get_rank(), tdist.get_world_size()
    t = torch.tensor([float(rank + 1)], device=f"cuda:{local}" if cuda else "cpu")
    tdist.all_reduce(t)
    tdist.barrier()
    ok = t.item() == world * (world + 1) / 2
    tdist.destroy_process_group()
    if rank == 0:
        Path(out).write_text(
            json.dumps({"ok": ok, "backend": backend, "world": world, "sum": t.item()})
        )
    return 0 if ok else 1


# ---------------------------------------------------------------------------- speed


def sec_speed_pretrain(c: Ctx) -> None:
    S = c.S
    heads, res = [], {}
    for arch in S["tp_archs"]:
        js = c.dir / f"{arch}.json"
        cmd = [
            sys.executable,
            str(BENCH / "pretrain_throughput.py"),
            "--device",
            c.device,
            "--arch",
            arch,
            "--manifest",
            str(c.manifest),
            "--decode",
            "cpu",
            "--skip-plain",
            "--json",
            str(js),
            *S["tp_args"],
        ]
        rc = run_cmd(cmd, c.dir / f"{arch}.log", 600)
        if rc or not js.exists():
            res[arch] = {"error": f"rc {rc}", "tail": tail(c.dir / f"{arch}.log")}
            heads.append(f"{arch} FAILED")
        else:
            s = json.loads(js.read_text())
            ratio = s.get("ratio_b_cpu")
            res[arch] = {
                "ceiling_img_s": s.get("a_ceiling"),
                "pipeline_img_s": s.get("b_pipeline_cpu"),
                "ratio": ratio,
                "goal": 0.8,
                "goal_met": ratio is not None and ratio >= 0.8,
                "benchmark": s,
            }
            heads.append(
                f"{arch} {s.get('b_pipeline_cpu', 0):.0f}/{s.get('a_ceiling', 0):.0f} img/s = {ratio}"
            )
        c.save(**{arch: res[arch]})
    ok = all("ratio" in r for r in res.values())
    c.save(status="ok" if ok else "fail", device=c.device, headline="; ".join(heads))


def sec_speed_contracam(c: Ctx) -> None:
    S = c.S
    ckpt = ["--checkpoint", str(c.moco_ckpt)] if c.moco_ckpt.exists() else ["--arch", S["arch"]]
    heads, ok = [], True
    for iters, expand in ((1, 1), (S["cam_iters"], 2)):
        key = f"iter{iters}_expand{expand}"
        js = c.dir / f"{key}.json"
        cmd = [
            sys.executable,
            str(BENCH / "contracam_speed.py"),
            "--device",
            c.device,
            "--iters",
            str(iters),
            "--expand",
            str(expand),
            "--json",
            str(js),
            *ckpt,
            *S["cs_args"],
        ]
        rc = run_cmd(cmd, c.dir / f"{key}.log", 600)
        if rc or not js.exists():
            c.save(**{key: {"error": f"rc {rc}", "tail": tail(c.dir / f"{key}.log")}})
            heads.append(f"{key} FAILED")
            ok = False
            continue
        s = json.loads(js.read_text())
        s.update(goal=2.0, goal_met=s["speedup"] >= 2.0)
        c.save(**{key: s})
        heads.append(
            f"{key} {s['ours_img_s']:.0f}/{s['ref_img_s']:.0f} img/s = {s['speedup']:.2f}x"
        )
    c.save(status="ok" if ok else "fail", device=c.device, headline="; ".join(heads))


def sec_speed_refine(c: Ctx) -> None:
    from multiprocessing import get_context

    import refine_speed as rs

    procs = os.cpu_count() or 1
    n = c.S["refine_per_core"] * procs
    images, masks = rs.synthetic(n, 224)
    manifest, shards = rs.make_shards(c.dir, images, masks, procs)
    jobs = [(manifest, s, c.dir / f"boxes_{k}.parquet") for k, s in enumerate(shards)]
    t0 = time.perf_counter()
    with get_context("fork").Pool(procs) as pool:
        cpu = sum(pool.map(rs._job, jobs))
    wall = time.perf_counter() - t0
    c.save(
        status="ok",
        processes=procs,
        images=n,
        image_px=224,
        wall_s=round(wall, 2),
        img_per_s=round(n / wall, 1),
        img_per_cpu_s=round(n / cpu, 1),
        headline=f"{n / wall:.0f} img/s on {procs} processes ({n / cpu:.1f} per CPU-second)",
    )


# ---------------------------------------------------------------------------- pipeline


def _pipeline(c: Ctx, smoke: bool) -> None:
    import yaml

    sys.path.insert(0, str(TESTS))
    from conftest import copy_workflow

    wd = c.dir / "wf"
    if wd.exists():
        shutil.rmtree(wd)
    wd.mkdir(parents=True)
    copy_workflow(wd)
    overlay = {"device": c.device}
    try:
        if "pydensecrf" in c.assume_missing:
            raise ImportError("assumed missing")
        import pydensecrf.densecrf  # noqa: F401
    except ImportError:  # the pipeline still runs, without the CRF (recorded in the overlay)
        overlay["refine"] = {"crf": False}
    (wd / "gpu_check.yaml").write_text(yaml.safe_dump(overlay))
    configs = (["workflow/configs/smoke.yaml"] if smoke else []) + ["gpu_check.yaml"]
    cmd = [sys.executable, "-m", "snakemake", "--cores", "all", "--configfile", *configs]
    if c.quick:
        cmd.append("--dry-run")  # a real default run takes ~20 min on 2 CPU cores
    env = dict(
        os.environ, PYTHONPATH=str(wd / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    log = c.dir / "snakemake.log"
    c.save(
        status="error: running",
        command=" ".join(cmd[1:]),
        overlay=overlay,
        dry_run=c.quick,
        config="workflow/configs/smoke.yaml" if smoke else "config.yaml",
    )
    t0 = time.perf_counter()
    try:
        rc = run_cmd(cmd, log, timeout=10**6, env=env, cwd=wd)
    finally:  # also on a timeout (the parent kills us): record how far it got
        text = tail(log, 10**7)
        done = re.findall(r"(\d+) of (\d+) steps \((\d+)%\) done", text)
        planned = re.search(r"^total\s+(\d+)", text, re.M)
        c.save(
            wall_s=round(time.perf_counter() - t0, 1),
            jobs_done=int(done[-1][0]) if done else 0,
            jobs_total=int(done[-1][1]) if done else (int(planned.group(1)) if planned else None),
        )
    ok = rc == 0
    c.save(
        status="ok" if ok else "fail",
        rc=rc,
        **({} if ok else {"tail": tail(log)}),
        headline=(
            f"{'dry run, ' if c.quick else ''}{c.res['jobs_total']} jobs, "
            f"{c.res['wall_s']:.0f} s, device {c.device}" + ("" if ok else f", rc {rc}")
        ),
    )


def sec_pipeline_smoke(c: Ctx) -> None:
    _pipeline(c, smoke=True)


def sec_pipeline_default(c: Ctx) -> None:
    _pipeline(c, smoke=False)


# ============================================================================ main


def child(name: str, ctx_path: str) -> int:
    c = Ctx(Path(ctx_path), name)
    try:
        globals()[f"sec_{name}"](c)
    except Exception as exc:  # noqa: BLE001 - recorded in the JSON; the parent goes on
        c.save(
            status=f"error: {type(exc).__name__}: {str(exc)[:300]}",
            traceback=traceback.format_exc()[-3000:],
        )
        traceback.print_exc()
        return 1
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--quick", action="store_true", help="CPU, tiny sizes (the test suite runs this)"
    )
    ap.add_argument("--out", default=str(REPO / "results" / "gpu_check" / "gpu_check.json"))
    ap.add_argument(
        "--workdir", default=None, help="keep data and logs here (default: a temp dir, removed)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the temp workdir")
    ap.add_argument(
        "--wheels", default=str(REPO / ".whl"), help="carried wheels (benchmarks/gpu_wheels.sh)"
    )
    ap.add_argument(
        "--budget",
        type=float,
        default=None,
        help=f"total seconds (default {GPU_BUDGET} on the GPU, {QUICK_BUDGET} with --quick)",
    )
    ap.add_argument("--only", default=None, help="comma-separated sections to run")
    ap.add_argument("--skip", default=None, help="comma-separated sections to leave out")
    ap.add_argument(
        "--section-budget", action="append", metavar="NAME=S", help="override one section's budget"
    )
    ap.add_argument(
        "--budget-scale",
        type=float,
        default=float(os.environ.get("GPU_CHECK_BUDGET_SCALE", "1")),
        help="multiply every budget (a slow or shared machine; default $GPU_CHECK_BUDGET_SCALE or 1)",
    )
    ap.add_argument(
        "--assume-missing",
        action="append",
        metavar="MODULE",
        help="treat a module as missing (tests the skip path)",
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--ctx", help=argparse.SUPPRESS)
    ap.add_argument("--dist-probe", help=argparse.SUPPRESS)
    ap.add_argument("--probe-device", default="cpu", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        return child(a.child, a.ctx)
    if a.dist_probe:
        return dist_probe(a.dist_probe, a.probe_device)
    if not a.quick:
        try:
            import torch

            if not torch.cuda.is_available():
                print(
                    "gpu_check: no CUDA device here; run with --quick for the CPU check",
                    file=sys.stderr,
                )
                return 2
        except ImportError:
            print("gpu_check: torch is not importable", file=sys.stderr)
            return 2
    return parent(a)


if __name__ == "__main__":
    sys.exit(main())
