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
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "gpu.md"
sys.path.insert(0, str(REPO / "benchmarks"))
import gpu_check  # noqa: E402


def doc_command(prefix: str) -> list[str]:
    """The documented command line starting with ``prefix``, python3 -> this interpreter."""
    lines = [ln.strip() for ln in DOC.read_text().splitlines() if ln.strip().startswith(prefix)]
    assert lines, f"docs/gpu.md has no command starting with {prefix!r}"
    argv = shlex.split(lines[0])
    return [sys.executable if a == "python3" else a for a in argv]


def run(argv, tmp_path, timeout=900):
    env = dict(
        os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    out = tmp_path / "out.json"
    report = json.loads(out.read_text()) if out.exists() else None
    return proc, report


def test_quick_run_covers_every_section(tmp_path):
    cmd = doc_command("python3 benchmarks/gpu_check.py --quick")
    assert cmd[1:] == [str(Path("benchmarks/gpu_check.py")), "--quick"]
    assert doc_command("python3 benchmarks/gpu_check.py")[1:] == ["benchmarks/gpu_check.py"]
    # the shared test machine can be slow: stretch the budgets, the code paths are the point
    proc, rep = run(
        cmd
        + [
            "--out",
            str(tmp_path / "out.json"),
            "--workdir",
            str(tmp_path / "w"),
            "--budget-scale",
            "4",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    s = rep["sections"]
    assert list(s) == gpu_check.NAMES
    bad = {
        k: (v["status"], v.get("log_tail", v.get("traceback", ""))[-1500:])
        for k, v in s.items()
        if v["status"] != "ok"
    }
    assert not bad, bad
    assert rep["meta"]["quick"] is True and rep["summary"] == {"ok": len(gpu_check.NAMES)}
    assert "section" in proc.stdout and "pipeline_default" in proc.stdout  # the table

    assert s["env"]["versions"]["torch"] and s["env"]["cuda_available"] in (True, False)
    assert s["data"]["images"] == gpu_check.SIZES["quick"]["n_images"]
    assert s["pytest_gpu"]["rc"] in (0, 5) and not s["pytest_gpu"].get("failed")
    assert "tests/test_augment.py" in s["pytest_gpu"]["files"]
    for m in ("moco", "byol"):
        t = s["train"][m]
        assert (
            t["finite"] and t["steps"] == 12 and len(t["loss_by_epoch"]) == 4 and t["img_per_s"] > 0
        )
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
    for name in ("pipeline_smoke", "pipeline_default"):
        p = s[name]
        assert (
            p["dry_run"]
            and p["rc"] == 0
            and p["jobs_total"] > 10
            and p["overlay"]["device"] == "cpu"
        )


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
    _fake_wheel(tmp_path, "oacl-gpu-check-probe")
    _fake_wheel(tmp_path, "pytest", "0.0.1")  # installed here: must not be replaced
    rec = gpu_check.install_wheels(tmp_path)
    assert (
        rec["installed"] == ["oacl-gpu-check-probe"] and rec["present"] == 1 and not rec["failed"]
    )
    site = tmp_path / f"site-{gpu_check.python_tag()}"
    assert (site / "oacl_gpu_check_probe_mod.py").exists() and not (site / "pytest").exists()
    assert sys.path[0] == str(site)
    again = gpu_check.install_wheels(tmp_path)  # a second run finds both present
    assert again["installed"] == [] and again["present"] == 2
    assert gpu_check.install_wheels(tmp_path / "none")["note"] == "no wheels carried"


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
