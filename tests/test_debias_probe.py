"""benchmarks/debias_probe.py (the mechanism check of docs/architecture.md): its verdict
rule, its no-test-split evaluation, and its documented command at tiny sizes."""

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import debias_probe as dp  # noqa: E402


def test_an_effect_counts_only_beyond_two_baseline_std_in_the_claimed_direction():
    base = {
        0: {"bg_gap": 20.0, "objcrop": 30.0},
        1: {"bg_gap": 22.0, "objcrop": 31.0},
        2: {"bg_gap": 24.0, "objcrop": 32.0},
    }  # baseline std: 2.0 (bg_gap), 1.0 (objcrop)
    lower = {
        s: {"bg_gap": v["bg_gap"] - 4.5, "objcrop": v["objcrop"] + 1.5} for s, v in base.items()
    }
    s = dp.summarise({"baseline": base, "bg_hardmix_gt": lower})
    gap, crop = s["bg_hardmix_gt"]["bg_gap"], s["bg_hardmix_gt"]["objcrop"]
    assert gap["effect"] == -4.5 and gap["baseline_std"] == 2.0 and gap["held"]  # 4.5 > 2 x 2
    assert crop["effect"] == 1.5 and not crop["held"]  # 1.5 < 2 x 1
    assert gap["per_seed_effect"] == {"0": -4.5, "1": -4.5, "2": -4.5}
    # a BG-Gap that rises is no improvement, however large
    higher = {k: {"bg_gap": v["bg_gap"] + 10} for k, v in base.items()}
    assert not dp.summarise({"baseline": base, "x": higher})["x"]["bg_gap"]["held"]
    assert "(-4.50, held)" in dp.table_md(s)


def test_the_val_evaluation_never_reads_the_test_split():
    cfg = dp.evaluate_cfg("val")
    assert cfg["linear"]["test_split"] == "val" and cfg["objcrop"]["test_split"] == "objcrop_val"
    # the head's penalty is chosen on a hold-out of train, not on val itself
    assert "val" not in (cfg["linear"]["val_split"], cfg["objcrop"]["val_split"])


def documented() -> list[str]:
    """The probe commands of docs/architecture.md, without ``python <script>``."""
    text = (REPO / "docs" / "architecture.md").read_text()
    lines = [
        ln
        for ln in text.splitlines()
        if ln.startswith(".venv/bin/python benchmarks/debias_probe.py")
    ]
    assert lines
    return [shlex.split(ln)[2:] for ln in lines]


def test_the_documented_commands_run_at_tiny_sizes(tmp_path):
    tiny_scenes = {"n_train": 48, "n_val": 24, "n_test": 8}
    tiny_pre = {"epochs": 1, "batch_size": 16, "moco": {"queue_size": 32}}
    kinds = set()
    for argv in documented():
        for flag, tiny in (("--scenes", tiny_scenes), ("--pretrain", tiny_pre)):
            at = argv.index(flag) if flag in argv else None
            given = json.loads(argv.pop(at + 1)) if at is not None else {}
            if at is not None:
                argv.pop(at)
            argv += [flag, json.dumps({**given, **tiny})]
        kind = argv[argv.index("--kind") + 1]
        if kind in kinds:  # one run per kind keeps the test short
            continue
        kinds.add(kind)
        # one seed (the verdict over seeds is tested above): its path, not its statistics
        seeds = ["--seeds", "0", "--head", json.dumps({"c_grid": {"min": 1e-3, "max": 1, "n": 3}})]
        proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "debias_probe.py"),
                               *argv, *seeds, "--out", str(tmp_path)],
                              capture_output=True, text=True, cwd=REPO)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        metric = "objcrop" if kind == "multi" else "bg_gap"
        variant = next(v for v in r["summary"] if v != "baseline")
        assert set(r["summary"]["baseline"][metric]["per_seed"]) == {"0"}
        assert set(r["summary"][variant][metric]["per_seed"]) == {"0"}
        assert r["split"] == "val"
        tag = argv[argv.index("--tag") + 1]
        m = pd.read_parquet(tmp_path / tag / "data" / "manifest.parquet")
        if kind == "single":  # the val split has the Background-Challenge variants
            assert {"mixed_same", "mixed_rand"} <= set(m.loc[m["split"] == "val", "variant"])
        # no feature of a test image was extracted (the cache names {split}__{variant})
        cached = [f.name for f in (tmp_path / tag).glob("*-s0/features/*.npz")]
        assert any(n.startswith("val__") for n in cached)
        assert not [n for n in cached if n.split("__")[0].endswith("test")], cached
        # a re-run of the tag with another recipe stops before it reuses the models
        other = [*argv, *seeds, "--out", str(tmp_path), "--pretrain", json.dumps({"epochs": 2})]
        proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "debias_probe.py"),
                               *other], capture_output=True, text=True, cwd=REPO)  # fmt: skip
        assert proc.returncode != 0 and "another pretrain" in proc.stderr
    assert kinds == {"single", "multi"}
