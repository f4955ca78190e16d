"""benchmarks/localization_probe.py (the ablation tool of docs/architecture.md) runs its
documented forms on tiny data: generated scenes, then --manifest on that dataset with
--gallery, and its JSON line carries every score the ablation table quotes."""

import json
import shlex
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from oacl.models import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
PROBE = REPO / "benchmarks" / "localization_probe.py"
TINY_PRETRAIN = {"epochs": 1, "batch_size": 32, "moco": {"queue_size": 64}}
TINY_CAM = {"batch_size": 16}


def probe(out, *args, pretrain=(), cam=()):
    tiny = [
        "--pretrain",
        json.dumps({**TINY_PRETRAIN, **dict(pretrain)}),
        "--cam",
        json.dumps({**TINY_CAM, **dict(cam)}),
    ]
    proc = subprocess.run(
        [sys.executable, str(PROBE), "--out", str(out), *args, *tiny],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def documented_probe() -> list[str]:
    """The probe command of docs/gpu.md (section 5), without ``python3 <script>``."""
    lines = [
        line
        for line in (REPO / "docs" / "gpu.md").read_text().splitlines()
        if line.startswith("python3 benchmarks/localization_probe.py")
    ]
    assert len(lines) == 1, lines
    argv = shlex.split(lines[0])[2:]
    # where the device call writes ($OUT, the sweep) is tested in tests/test_gpu_check.py
    for flag in ("--out", "--json", "--gallery", "--min-crops"):
        if flag in argv:
            at = argv.index(flag)
            del argv[at : at + 2]
    return argv


def test_probe_on_generated_scenes_then_on_a_given_manifest(tmp_path):
    documented = documented_probe()
    at = documented.index("--scenes")
    tiny = {"n_train": 64, "n_val": 16, "n_test": 16, "variants": []}
    scenes = json.dumps({**json.loads(documented[at + 1]), **tiny})
    # the documented command (--device auto, its scene switches), at tiny sizes: later
    # flags override earlier
    first = probe(tmp_path, *documented, "--tag", "gen", "--scenes", scenes)
    for ref in ("contracam", "gaussian", "colour", "cam_mean"):
        assert set(first[ref]) == {"miou", "auc", "auc_rot180", "shuffled_auc", "content_auc",
                                   "content_auc_ci95"}  # fmt: skip
        assert 0 <= first[ref]["miou"] <= 1 and 0 <= first[ref]["auc"] <= 1
    spread = first["per_image"]
    assert 0 <= spread["share_auc_above_0.8"] + spread["share_auc_below_0.5"] <= 1
    assert len(spread["auc_by_area_quartile"]) == 4
    # the centred Gaussian is symmetric: turning it does not change its AUC
    assert first["gaussian"]["auc"] == first["gaussian"]["auc_rot180"]
    manifest = tmp_path / "gen" / "data" / "manifest.parquet"
    gallery = tmp_path / "g.png"
    # the switches of the positional-prior rows: padding without position, Eq. 1's temperature
    second = probe(
        tmp_path,
        *("--tag", "given", "--manifest", str(manifest), "--gallery", str(gallery)),
        *("--device", "cpu"),
        pretrain={"arch": "resnet18_small_reflect"},
        cam={"temperature": 0.2},
    )
    model = load_checkpoint(tmp_path / "given" / "model.pt")
    assert model.meta["arch"] == "resnet18_small_reflect"
    assert model.encoder.conv1.padding_mode == "reflect"
    rows = pd.read_parquet(tmp_path / "given" / "masks.parquet", columns=["params"])
    assert json.loads(rows["params"].iloc[0])["temperature"] == 0.2
    assert not (tmp_path / "given" / "data").exists()  # nothing generated
    assert second["gaussian"] == first["gaussian"] and second["colour"] == first["colour"]
    img = cv2.imread(str(gallery))
    assert img.shape[0] == 8 * 64 and img.shape[1] == 3 * 64
    lines = (tmp_path / "probes.jsonl").read_text().splitlines()
    assert [json.loads(line)["tag"] for line in lines] == ["gen", "given"]


def test_probe_names_a_missing_manifest(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(PROBE),
            "--out",
            str(tmp_path),
            "--tag",
            "x",
            "--manifest",
            str(tmp_path / "nope" / "manifest.parquet"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode != 0 and "nope/manifest.parquet does not exist" in proc.stderr


def test_per_image_spread_counts_found_and_missed_images_by_object_size():
    import importlib.util

    spec = importlib.util.spec_from_file_location("probe", PROBE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    auc = np.array([0.9, 0.95, 0.3, 0.6, np.nan])  # the last image: no GT pixels
    area = np.array([0.1, 0.2, 0.3, 0.4, 0.0])
    assert mod.per_image(auc, area) == {
        "share_auc_above_0.8": 0.5,
        "share_auc_below_0.5": 0.25,
        "auc_by_area_quartile": [0.9, 0.95, 0.3, 0.6],
    }
    assert mod.per_image(np.array([np.nan]), np.array([0.0]))["share_auc_above_0.8"] is None
