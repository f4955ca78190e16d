"""End-to-end: the smoke configuration runs the whole DAG with `snakemake --cores 2`,
code edits rerun exactly the dependent jobs, and a lost shard is recomputed alone."""

import re
import shutil
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


def edit(path):
    """A real code change (Snakemake compares checksums, so a bare touch is not one)."""
    with open(path, "a") as fh:
        fh.write("\n# edited by test_workflow\n")


def test_code_edits_rerun_exactly_the_dependent_jobs(smoke_run):
    workdir, _ = smoke_run
    edit(workdir / "src" / "oacl" / "refine" / "crf.py")
    jobs = planned_jobs(workdir)
    # every refine shard, and what uses boxes; not the data, CAM or baseline models
    assert jobs.get("refine") == 4
    assert "prepare_data" not in jobs and "contracam" not in jobs
    assert jobs.get("pretrain") == 2  # oa_crop_cam and bg_mixup_cam read the boxes
    assert jobs.get("evaluate_localization") == 2
    edit(workdir / "src" / "oacl" / "data" / "scenes.py")
    jobs = planned_jobs(workdir)
    assert jobs.get("prepare_data") == 2 and jobs.get("pretrain") == 4
    assert jobs.get("contracam") == 4


def test_lost_refine_shard_is_recomputed_alone(smoke_run):
    workdir, _ = smoke_run
    res = workdir / "results"
    # bring everything up to date again after the edits above
    run_snakemake(workdir, "--cores", "2", "--touch", *SMOKE)
    shard = res / "refine" / "scenes_single" / "moco-baseline-s0" / "iter1" / "boxes_1.parquet"
    before = pd.read_parquet(shard)
    # as if the run had been killed during refine: this shard (atomic writes: absent,
    # not half-written) and everything downstream of it are missing
    shard.unlink()
    for p in [res / "eval" / "scenes_single" / "moco-baseline-s0" / "localization_iter1.json",
              res / "report.html"]:
        p.unlink()
    shutil.rmtree(res / "models" / "scenes_single" / "moco-bg_mixup_cam-s0")
    shutil.rmtree(res / "eval" / "scenes_single" / "moco-bg_mixup_cam-s0")
    jobs = planned_jobs(workdir)
    assert jobs.get("refine") == 1 and "contracam" not in jobs and "prepare_data" not in jobs
    assert jobs.get("pretrain") == 1  # only the model that reads the lost shard
    run_snakemake(workdir, "--cores", "2", *SMOKE, "--", str(shard.relative_to(workdir)))
    pd.testing.assert_frame_equal(before, pd.read_parquet(shard))
