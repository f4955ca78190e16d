"""The paper presets dry-run on fixture roots in each dataset's real layout and plan the
full DAG, with GPU resources on the training and CAM jobs."""

import re

import pytest
import yaml

import fixtures_real as fx
from conftest import REPO, run_snakemake

PRESETS = ["coco-r18", "coco-r50", "in9-r18", "cub-r18", "flowers-r18"]
MAKERS = {
    "coco": fx.make_coco,
    "in9": fx.make_in9,
    "cub": fx.make_cub,
    "flowers": fx.make_flowers,
    "food101": fx.make_food101,
    "pets": fx.make_pets,
}


def fixture_roots(preset_cfg, base):
    """{dataset: root} with a small fixture in the real on-disk layout for each dataset."""
    roots = {}
    for name, ds in preset_cfg["datasets"].items():
        if ds is None:
            continue
        root = base / name
        root.mkdir()
        if ds["type"] == "cifar":
            fx.make_cifar(root, which=ds.get("which", "cifar10"))
        else:
            MAKERS[ds["type"]](root)
        roots[name] = str(root)
    return roots


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_dry_run_on_fixture_roots(preset, workflow_copy, tmp_path):
    path = REPO / "workflow" / "configs" / f"{preset}.yaml"
    cfg = yaml.safe_load(path.read_text())
    roots = fixture_roots(cfg, tmp_path)
    override = tmp_path / "roots.yaml"
    override.write_text(yaml.safe_dump({"datasets": {k: {"root": v} for k, v in roots.items()}}))
    proc = run_snakemake(workflow_copy, "-n", "--configfile", str(path), str(override))
    out = proc.stdout + proc.stderr
    # the full DAG: data, training, every evaluation, and the report
    for rule in ("prepare_data", "pretrain", "evaluate_linear", "report"):
        assert re.search(rf"^rule {rule}:", out, re.M), rule
    if preset.startswith(("coco", "in9")):
        for rule in ("contracam", "refine", "evaluate_shift"):
            assert re.search(rf"^rule {rule}:", out, re.M), rule
    # GPU resources on training and CAM jobs, none on refine
    blocks = re.split(r"\n(?=rule \w+:)", out)
    for block in blocks:
        head = block.split(":", 1)[0]
        if head in ("rule pretrain", "rule contracam"):
            assert "gpu=1" in block, block
        if head == "rule refine":
            assert "gpu=" not in block, block
    # the embedded scenes are not part of a preset's run
    assert "scenes_" not in out
