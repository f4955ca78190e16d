"""The paper presets dry-run on fixture roots in each dataset's real layout and plan the
full DAG, with GPU resources on the training and CAM jobs."""

import re

import fixtures_real as fx
import pytest
import yaml
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
    """{dataset: {"root": ..., other path keys}}: a small fixture in the real on-disk layout
    for each dataset, with the preset's other paths (IN-9 test_root, CUB split_file)
    pointed at the fixture's."""
    roots = {}
    for name, ds in preset_cfg["datasets"].items():
        if ds is None:
            continue
        root = base / name / "data"  # a folder of its own: fixtures may write beside root
        root.mkdir(parents=True)
        if ds["type"] == "cifar":
            facts = fx.make_cifar(root, which=ds.get("which", "cifar10"))
        else:
            facts = MAKERS[ds["type"]](root)
        extra = facts.get("cfg", {})
        roots[name] = {"root": str(root), **{k: v for k, v in extra.items() if k in ds}}
    return roots


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_dry_run_on_fixture_roots(preset, workflow_copy, tmp_path):
    path = REPO / "workflow" / "configs" / f"{preset}.yaml"
    cfg = yaml.safe_load(path.read_text())
    roots = fixture_roots(cfg, tmp_path)
    override = tmp_path / "roots.yaml"
    override.write_text(yaml.safe_dump({"datasets": roots}))
    proc = run_snakemake(workflow_copy, "-n", "--configfile", str(path), str(override))
    out = proc.stdout + proc.stderr
    # the full DAG: data, training, every evaluation, and the report
    for rule in ("prepare_data", "pretrain", "evaluate_linear", "report"):
        assert re.search(rf"^rule {rule}:", out, re.M), rule
    if preset.startswith(("coco", "in9")):
        for rule in ("cam", "refine", "evaluate_shift"):
            assert re.search(rf"^rule {rule}:", out, re.M), rule
    # GPU resources on training, CAM and feature-extraction jobs (which then run on CUDA
    # or fail), none on refine
    blocks = re.split(r"\n(?=rule \w+:)", out)
    for block in blocks:
        head = block.split(":", 1)[0]
        if head in ("rule pretrain", "rule cam", "rule evaluate_linear", "rule evaluate_shift"):
            assert "gpu=1" in block and "--device cuda" in block, block
        if head == "rule refine":
            assert "gpu=" not in block, block
    # the embedded scenes are not part of a preset's run
    assert "scenes_" not in out


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_datasets_prepare_on_fixture_roots(preset, tmp_path):
    """Every dataset section of a preset (its keys and protocol) prepares on the fixture
    in the real layout: a dry run alone would not catch an unknown reader key."""
    from oacl.artifacts import read_manifest
    from oacl.data.prepare import prepare

    cfg = yaml.safe_load((REPO / "workflow" / "configs" / f"{preset}.yaml").read_text())
    roots = fixture_roots(cfg, tmp_path)
    for name, paths in roots.items():
        df = read_manifest(
            prepare({**cfg["datasets"][name], **paths}, tmp_path / "out" / name, progress=False)
        )
        assert len(df) and set(df.split) >= {"train", "test"}, name
    # the paper protocols the presets name
    protocols = {n: ds.get("protocol", "oacl") for n, ds in cfg["datasets"].items() if ds}
    if preset in ("cub-r18", "flowers-r18", "coco-r18", "coco-r50"):
        assert protocols[preset.split("-")[0]] == "paper"
        assert cfg["evaluate"]["localization"]["protocol"] == "paper"
    if preset == "cub-r18":
        assert cfg["datasets"]["cub"]["split_file"]
    if preset == "in9-r18":
        assert cfg["datasets"]["in9"]["test_root"]


def test_walltime_chunks_of_a_paper_preset(workflow_copy, tmp_path):
    """docs/cluster.md, walltime chunks: coco-r50's pretraining (7,210 min) under a 48 h
    partition requests 2880 min, stops 300 s before it and may run up to 50 times."""
    path = REPO / "workflow" / "configs" / "coco-r50.yaml"
    roots = tmp_path / "roots.yaml"
    roots.write_text(
        yaml.safe_dump({"datasets": fixture_roots(yaml.safe_load(path.read_text()), tmp_path)})
    )
    chunks = ["--config", "resources={pretrain: {runtime_max: 2880}}"]
    out = run_snakemake(workflow_copy, "-n", "--configfile", str(path), str(roots), *chunks).stdout
    jobs = [b for b in re.split(r"\n(?=rule \w+:)", out) if b.startswith("rule pretrain:")]
    assert jobs and all("runtime=2880" in b and "--stop-after 172500 " in b for b in jobs), jobs[:1]
