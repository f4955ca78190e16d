"""benchmarks/localization_probe.py (the ablation tool of docs/architecture.md) runs its
documented forms on tiny data: generated scenes, then --manifest on that dataset with
--gallery, and its JSON line carries every score the ablation table quotes."""

import json
import subprocess
import sys
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
PROBE = REPO / "benchmarks" / "localization_probe.py"
TINY = [
    "--pretrain",
    json.dumps({"epochs": 1, "batch_size": 32, "moco": {"queue_size": 64}}),
    "--cam",
    json.dumps({"batch_size": 16}),
]


def probe(out, *args):
    proc = subprocess.run(
        [sys.executable, str(PROBE), "--out", str(out), *args, *TINY],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_probe_on_generated_scenes_then_on_a_given_manifest(tmp_path):
    scenes = json.dumps({"n_train": 64, "n_val": 16, "n_test": 16, "variants": []})
    first = probe(tmp_path, "--tag", "gen", "--scenes", scenes)
    for ref in ("contracam", "gaussian", "colour"):
        assert set(first[ref]) == {"miou", "auc", "auc_rot180"}
        assert 0 <= first[ref]["miou"] <= 1 and 0 <= first[ref]["auc"] <= 1
    # the centred Gaussian is symmetric: turning it does not change its AUC
    assert first["gaussian"]["auc"] == first["gaussian"]["auc_rot180"]
    manifest = tmp_path / "gen" / "data" / "manifest.parquet"
    gallery = tmp_path / "g.png"
    second = probe(
        tmp_path, "--tag", "given", "--manifest", str(manifest), "--gallery", str(gallery)
    )
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
