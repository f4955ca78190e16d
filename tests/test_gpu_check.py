"""benchmarks/gpu_check.py --quick: every section of the GPU check runs on CPU.

The commands are taken from docs/gpu.md, so the documented ones are the tested ones.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import gpu_check  # benchmarks/ is on the path (pyproject.toml: pythonpath)
import pytest

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "gpu.md"


def doc_command(prefix: str) -> list[str]:
    """The documented command line starting with ``prefix``, python3 -> this interpreter."""
    lines = [ln.strip() for ln in DOC.read_text().splitlines() if ln.strip().startswith(prefix)]
    assert lines, f"docs/gpu.md has no command starting with {prefix!r}"
    argv = shlex.split(lines[0])
    return [sys.executable if a == "python3" else a for a in argv]


def gpu_run(n: int) -> str:
    """The command of run ``n`` of docs/gpu.md section 2, as the device call gets it."""
    m = re.search(rf"<!-- gpu-run-{n} -->\n```bash\n(.*?)\n```", DOC.read_text(), re.S)
    assert m, f"docs/gpu.md has no run {n}"
    cmd = m[1].strip()
    assert "\n" not in cmd and len(cmd) <= 2000  # one line, within the device call's limit
    return cmd


def run(argv, tmp_path, timeout=900):
    env = dict(
        os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    out = tmp_path / "out.json"
    report = json.loads(out.read_text()) if out.exists() else None
    return proc, report


def tree_snapshot() -> dict:
    """Every file of the checkout (caches and the venv aside), with its mtime and size."""
    skip = {".git", ".venv", "__pycache__", ".pytest_cache", ".snakemake"}
    snap = {}
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in skip]
        for f in files:
            st = os.stat(os.path.join(root, f))
            snap[os.path.join(root, f)] = (st.st_mtime_ns, st.st_size)
    return snap


def device_call(cmd: str, tmp_path: Path, env_extra=None, timeout=900):
    """``cmd`` as the GPU machine runs it (bash, repository root, $OUT an empty folder),
    with ``--quick`` appended; TMPDIR is a temporary folder too."""
    out, tmp = tmp_path / "OUT", tmp_path / "TMP"
    out.mkdir()
    tmp.mkdir()
    env = dict(os.environ, OUT=str(out), TMPDIR=str(tmp), GPU_CHECK_BUDGET_SCALE="4")
    env.update(env_extra or {})
    before = tree_snapshot()
    proc = subprocess.run(
        ["bash", "-c", cmd + " --quick"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    # files that appeared in the checkout (an edit made meanwhile by hand is not the call's)
    changed = set(tree_snapshot()) - set(before)
    return proc, out, changed


def test_run_1_as_documented_leaves_json_log_and_section_logs_under_out(tmp_path):
    cmd = gpu_run(1)
    assert cmd.startswith("python3 benchmarks/gpu_check.py ") and '--out "$OUT/' in cmd
    readme = (REPO / "README.md").read_text()
    assert f"`{cmd}`" in readme  # the README points at the same call
    proc, out, changed = device_call(cmd.replace("python3", sys.executable, 1), tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert not changed, f"written outside $OUT and the work folder: {sorted(changed)[:10]}"
    assert sorted(p.name for p in out.iterdir()) == [
        "gpu_check.json",
        "gpu_check.log",
        "gpu_check_logs.tar.gz",
    ]
    rep = json.loads((out / "gpu_check.json").read_text())
    s = rep["sections"]
    # every section but the opt-in default pipeline, which a GPU session cannot afford
    assert list(s) == [n for n in gpu_check.NAMES if n not in gpu_check.OPT_IN]
    bad = {
        k: (v["status"], v.get("log_tail", v.get("traceback", ""))[-1500:])
        for k, v in s.items()
        if v["status"] != "ok"
    }
    assert not bad, bad
    assert rep["meta"]["quick"] is True and rep["summary"] == {"ok": len(s)}
    assert rep["meta"]["workdir"] == str(tmp_path / "TMP" / "oacl_gpu_check")
    log = (out / "gpu_check.log").read_text()
    assert "section" in log and "pipeline_smoke" in log and "json:" in log  # the table
    with tarfile.open(out / "gpu_check_logs.tar.gz") as tar:
        names = tar.getnames()
    assert {f"logs/{n}.log" for n in s} <= set(names)
    assert "resume/c_resumed.log" in names and "ddp/torchrun.log" in names

    assert s["env"]["versions"]["torch"] and s["env"]["cuda_available"] in (True, False)
    assert s["data"]["images"] == gpu_check.SIZES["quick"]["n_images"]
    assert s["pytest_gpu"]["rc"] in (0, 5) and not s["pytest_gpu"].get("failed")
    assert "tests/test_augment.py" in s["pytest_gpu"]["files"]
    for m in ("moco", "byol"):
        t = s["train"][m]
        assert (
            t["finite"] and t["steps"] == 12 and len(t["loss_by_epoch"]) == 4 and t["img_per_s"] > 0
        )
        assert len(t["loader_start_s"]) == 4 and min(t["loader_start_s"]) >= 0
    r = s["resume"]
    assert r["identical"] and 0 < r["killed_at_step"] < r["total_steps"] == 9  # bit-exact on CPU
    assert r["noise_floor_weights"] == 0 and r["max_abs_diff_weights"] == 0
    for key in ("iter1_expand1", "iter2_expand2"):
        cam = s["contracam"][key]
        assert cam["fp32"]["miou"] >= 0.95 and cam["fp32"]["max_abs_diff"] < 1e-3
        assert cam["bf16"]["pass"] and cam["bf16"]["max_abs_diff"] > cam["fp32"]["max_abs_diff"]
    assert s["contracam"]["checkpoint"].endswith("model.pt")  # the train section's MoCo
    d = s["ddp"]
    assert d["match"] and d["probe"]["ok"] and d["backend"] == "gloo" and d["epochs_logged"] == 2
    for arch in ("resnet18_small", "resnet50"):
        sp = s["speed_pretrain"][arch]
        assert sp["ratio"] > 0 and sp["ceiling_img_s"] > 0 and sp["goal"] == 0.8
    for key in ("iter1_expand1", "iter2_expand2"):
        sc = s["speed_contracam"][key]
        assert sc["speedup"] > 0 and sc["miou"] > 0.9 and sc["goal"] == 2.0
    assert s["speed_refine"]["img_per_s"] > 0 and s["speed_refine"]["processes"] == os.cpu_count()
    p = s["pipeline_smoke"]
    assert (
        p["dry_run"] and p["rc"] == 0 and p["jobs_total"] > 10 and p["overlay"]["device"] == "cpu"
    )


def test_default_pipeline_section_runs_when_named(tmp_path):
    proc, rep = run(
        [sys.executable, "benchmarks/gpu_check.py", "--quick", "--out", str(tmp_path / "out.json"),
         "--workdir", str(tmp_path / "w"), "--only", "pipeline_default", "--budget-scale", "4"],
        tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    p = rep["sections"]["pipeline_default"]
    assert p["status"] == "ok" and p["dry_run"] and p["jobs_total"] > 10


def test_run_2_probe_runs_without_an_installed_oacl(tmp_path):
    """The probe as documented, by a Python that has torch & co. but no `oacl` installed
    and no `oacl` script beside it (what the GPU machine has)."""
    cmd = gpu_run(2)
    assert cmd.startswith("python3 benchmarks/localization_probe.py ")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python3").symlink_to(os.path.realpath(sys.executable))  # not the venv's
    import torch

    site = str(Path(torch.__file__).resolve().parents[1])  # the venv's packages, no .pth
    check = subprocess.run(
        [str(bindir / "python3"), "-c", "import oacl"],
        env=dict(os.environ, PYTHONPATH=site),
        capture_output=True,
        cwd=tmp_path,
    )
    assert check.returncode != 0  # the stand-in really lacks oacl
    env = {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": site}
    proc, out, changed = device_call(cmd, tmp_path, env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not changed, sorted(changed)[:10]
    names = sorted(p.name for p in out.iterdir())
    assert names == ["probe_c0.08.json", "probe_c0.08.png", "probe_c0.3.json", "probe_c0.3.png"]
    for c in ("0.08", "0.3"):
        res = json.loads((out / f"probe_c{c}.json").read_text())
        for ref in ("contracam", "gaussian", "colour", "cam_mean"):
            r = res[ref]
            assert {"auc", "shuffled_auc", "content_auc", "content_auc_ci95"} <= set(r)
            lo, hi = r["content_auc_ci95"]
            assert lo <= r["content_auc"] <= hi
    # both probes used one generated dataset
    assert not (tmp_path / "TMP" / "oacl-probe" / "od_e100_c0.3" / "data").exists()


def test_kill_tree_ends_a_worker_in_a_session_of_its_own():
    """As torchrun starts its workers: a grandchild in a new session outlives killpg of
    its parent's group; kill_tree ends it too."""
    code = (
        "import subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], "
        "start_new_session=True); print(p.pid, flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    grandchild = int(proc.stdout.readline())
    gpu_check.kill_tree(proc)
    assert not _alive(grandchild)


def test_kill_marked_ends_orphans_of_a_section():
    token = f"test-{os.getpid()}"
    env = dict(os.environ, **{gpu_check.MARK: token})
    code = (
        "import subprocess, sys; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], "
        "start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
        "print(p.pid, flush=True)"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    orphan = int(out.stdout)  # its parent has exited
    assert _alive(orphan)
    assert orphan in gpu_check.kill_marked(token)
    assert not _alive(orphan)


def _alive(pid: int) -> bool:
    import time

    for _ in range(50):  # a killed process is gone once reaped (init reaps orphans)
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        if state == "Z":
            return False
        time.sleep(0.05)
    return True


def test_missing_module_and_timeout_are_recorded_not_fatal(tmp_path):
    cmd = doc_command("python3 benchmarks/gpu_check.py --quick")
    proc, rep = run(
        cmd
        + [
            "--out",
            str(tmp_path / "out.json"),
            "--only",
            "env,speed_refine,pipeline_smoke",
            "--assume-missing",
            "pydensecrf",
            "--section-budget",
            "env=0.5",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    s = rep["sections"]
    assert list(s) == ["env", "speed_refine", "pipeline_smoke"]
    assert s["env"]["status"] == "timeout after 0 s"
    assert s["speed_refine"]["status"] == "skipped: missing module(s) pydensecrf"
    p = s["pipeline_smoke"]  # runs on without the CRF
    assert p["status"] == "ok" and p["overlay"] == {"device": "cpu", "refine": {"crf": False}}
    assert rep["summary"] == {"timeout": 1, "skipped": 1, "ok": 1}


def _fake_wheel(folder: Path, name: str, version: str = "1.0") -> Path:
    dist = f"{name.replace('-', '_')}-{version}"
    path = folder / f"{dist}-py3-none-any.whl"
    files = {
        f"{name.replace('-', '_')}_mod.py": "VALUE = 42\n",
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{k},,\n" for k in files) + f"{dist}.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as z:
        for k, v in files.items():
            z.writestr(k, v)
        z.writestr(f"{dist}.dist-info/RECORD", record)
    return path


def test_carried_wheels_install_only_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    whl = tmp_path / "whl"
    whl.mkdir()
    _fake_wheel(whl, "oacl-gpu-check-probe")
    _fake_wheel(whl, "pytest", "0.0.1")  # installed here: must not be replaced
    site = tmp_path / "work" / f"site-{gpu_check.python_tag()}"
    before = sorted(p.name for p in whl.iterdir())
    rec = gpu_check.install_wheels(whl, site)
    assert (
        rec["installed"] == ["oacl-gpu-check-probe"] and rec["present"] == 1 and not rec["failed"]
    )
    assert (site / "oacl_gpu_check_probe_mod.py").exists() and not (site / "pytest").exists()
    assert sys.path[0] == str(site)
    # nothing is installed beside the wheels (in the repository, .whl/ would grow the tree)
    assert sorted(p.name for p in whl.iterdir()) == before
    again = gpu_check.install_wheels(whl, site)  # a second run finds both present
    assert again["installed"] == [] and again["present"] == 2
    assert gpu_check.install_wheels(tmp_path / "none", site)["note"] == "no wheels carried"


def test_typing_extensions_without_sentinel_is_replaced_from_the_carry(tmp_path, monkeypatch):
    """snakemake's pydantic-core needs typing_extensions.Sentinel (4.15 on): an older one
    on the machine is installed over from the carried wheel, even though it is present."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    _fake_wheel(tmp_path, "typing-extensions", "9.9")
    site = tmp_path / "site"
    ok = gpu_check.install_wheels(tmp_path, site)  # this machine's has Sentinel: kept
    assert ok["installed"] == [] and ok["typing_extensions_sentinel"] is True
    monkeypatch.setitem(gpu_check.OUTDATED, "typing-extensions", lambda: False)
    rec = gpu_check.install_wheels(tmp_path, site)
    assert rec["installed"] == ["typing-extensions"]
    assert (site / "typing_extensions_mod.py").exists()


def _python312():
    for p in (
        "python3.12",
        *sorted(Path(os.path.expanduser("~/.pyenv/versions")).glob("3.12*/bin/python")),
    ):
        if shutil.which(str(p)):
            return p
    return None


@pytest.mark.slow
@pytest.mark.skipif(_python312() is None, reason="needs a Python 3.12 here")
def test_gpu_wheels_script_makes_the_carried_wheels(tmp_path):
    cmd = doc_command("bash benchmarks/gpu_wheels.sh")
    assert cmd == ["bash", "benchmarks/gpu_wheels.sh"]
    env = dict(os.environ, WHEELS_DIR=str(tmp_path / "whl"))
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = [w.name for w in (tmp_path / "whl").glob("*.whl")]
    for want in (
        r"snakemake-9\.",
        r"pydensecrf2-.*-cp312-cp312-linux_x86_64",
        r"jsonschema-",
        r"pycocotools-",
        r"pulp-",
    ):
        assert any(re.match(want, n) for n in names), (want, names)
    assert not any(n.startswith(("numpy-", "pandas-", "torch-")) for n in names)


def test_loader_startup_benchmark_prints_ratios(tmp_path):
    js = tmp_path / "loader.json"
    cmd = doc_command(".venv/bin/python benchmarks/loader_startup.py")
    assert cmd[1:] == ["benchmarks/loader_startup.py"]
    proc = subprocess.run(
        [sys.executable, *cmd[1:], "--images", "64", "--epochs", "1", "--json", str(js)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(js.read_text())
    assert rows["0 workers"]["ratio_to_0_workers"] == 1.0
    assert all(r["start_s"] > 0 and r["epoch_s"] >= r["start_s"] for r in rows.values())
    assert "epoch / 0 workers" in proc.stdout


def test_carry_size_check_as_documented():
    cmd = doc_command(".venv/bin/python benchmarks/carry_size.py")
    proc = subprocess.run([sys.executable, *cmd[1:]], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.match(r"carry: tree [\d.]+ MiB \+ \.whl [\d.]+ MiB = [\d.]+ MiB of 64", proc.stdout)
