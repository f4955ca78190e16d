"""End-to-end: the smoke configuration runs the whole DAG with `snakemake --cores 2`,
code edits rerun exactly the dependent jobs, and a lost shard is recomputed alone."""

import os
import re
import time

import pandas as pd
import pytest

from conftest import REPO, copy_workflow, run_snakemake

SMOKE = ["--configfile", str(REPO / "workflow" / "configs" / "smoke.yaml")]


def planned_jobs(workdir):
    """{rule: count} of a dry run."""
    proc = run_snakemake(workdir, "-n", "--quiet", "rules", *SMOKE)
    counts = {}
    for line in (proc.stdout + proc.stderr).splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m and m.group(1) not in ("total", "job"):
            counts[m.group(1)] = int(m.group(2))
    return counts


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    workdir = copy_workflow(tmp_path_factory.mktemp("smoke"))
    t0 = time.time()
    run_snakemake(workdir, "--cores", "2", *SMOKE, timeout=1500)
    return workdir, time.time() - t0


def test_smoke_pipeline_produces_every_artifact(smoke_run):
    workdir, seconds = smoke_run
    res = workdir / "results"
    assert (res / "report.html").stat().st_size > 1000
    manifest = pd.read_parquet(res / "data" / "scenes_multi" / "manifest.parquet")
    masks = pd.concat(pd.read_parquet(p) for p in
                      sorted((res / "cam" / "scenes_multi").glob("*/iter10/masks_*.parquet")))
    boxes = pd.concat(pd.read_parquet(p) for p in
                      sorted((res / "refine" / "scenes_multi").glob("*/iter10/boxes_*.parquet")))
    assert set(masks.image_id) == set(boxes.image_id)
    assert set(masks.image_id) <= set(manifest.image_id)
    for name in ("moco-baseline-s0", "moco-oa_crop_cam-s0"):
        assert (res / "models" / "scenes_multi" / name / "model.pt").exists()
        assert (res / "eval" / "scenes_multi" / name / "linear.json").exists()
    assert (res / "models" / "scenes_single" / "moco-bg_mixup_cam-s0" / "model.pt").exists()
    # nothing left to do
    assert planned_jobs(workdir) == {}
    print(f"smoke pipeline: {seconds:.0f} s")


def test_editing_generator_reruns_data_and_what_follows_only(smoke_run):
    workdir, _ = smoke_run
    src = workdir / "src" / "oacl" / "refine" / "crf.py"
    os.utime(src)  # a code change to the CRF: refine and what depends on its boxes
    jobs = planned_jobs(workdir)
    assert "prepare_data" not in jobs and "contracam" not in jobs
    assert jobs.get("refine", 0) > 0
    # untouched baseline models are not retrained
    assert jobs.get("pretrain", 0) == 2  # the two *_cam variants use the boxes
    os.utime(workdir / "src" / "oacl" / "data" / "scenes.py")
    jobs = planned_jobs(workdir)
    assert jobs.get("prepare_data") == 2
    assert jobs.get("pretrain") == 4


def test_lost_refine_shard_is_recomputed_alone(smoke_run, tmp_path):
    workdir, _ = smoke_run
    # restore a state where nothing is outdated
    run_snakemake(workdir, "--cores", "2", "--touch", *SMOKE)
    shard = next((workdir / "results" / "refine" / "scenes_single").glob("*/iter1/boxes_1.parquet"))
    before = pd.read_parquet(shard)
    shard.unlink()  # as if the job had been killed before its atomic rename
    jobs = planned_jobs(workdir)
    assert jobs.get("refine") == 1 and "contracam" not in jobs and "prepare_data" not in jobs
    run_snakemake(workdir, "--cores", "2", "--allowed-rules", "refine", *SMOKE, "--", str(
        shard.relative_to(workdir)))
    after = pd.read_parquet(shard)
    pd.testing.assert_frame_equal(before, after)
