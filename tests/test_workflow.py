"""End-to-end: the smoke configuration runs the whole DAG with `snakemake --cores 2`,
code edits rerun exactly the dependent jobs, and a lost shard is recomputed alone.

The pipeline runs once per module; every test gets its finished folder back as it was
(smoke_run), so the tests may change it and run in any order."""

import json
import re
import shlex
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, copy_workflow, run_snakemake

SMOKE = ["--configfile", str(REPO / "workflow" / "configs" / "smoke.yaml")]
SMOKE_RESULTS = "results/smoke"  # smoke.yaml's `results`: never the default's folder


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
def smoke_done(tmp_path_factory):
    """The smoke pipeline run once: its folder, a pristine copy of it, its seconds."""
    workdir = copy_workflow(tmp_path_factory.mktemp("smoke"))
    t0 = time.time()
    # a new interpreter, as the README runs it (the other calls fork: conftest.py)
    run_snakemake(workdir, "--cores", "2", *SMOKE, timeout=1500, fresh=True)
    seconds = time.time() - t0
    pristine = tmp_path_factory.mktemp("smoke_pristine") / "run"
    shutil.copytree(workdir, pristine, symlinks=True)
    return workdir, pristine, seconds


@pytest.fixture
def smoke_run(smoke_done):
    """The finished smoke run as it finished, whatever another test changed in it: the
    folder is restored from the pristine copy in place. copytree keeps the files' mtimes,
    so nothing is out of date."""
    workdir, pristine, seconds = smoke_done
    shutil.rmtree(workdir)
    shutil.copytree(pristine, workdir, symlinks=True)
    return workdir, seconds


def test_smoke_pipeline_produces_every_artifact(smoke_run):
    workdir, seconds = smoke_run
    res = workdir / SMOKE_RESULTS
    assert (res / "report.html").stat().st_size > 1000
    manifest = pd.read_parquet(res / "data" / "scenes_multi" / "manifest.parquet")
    masks = pd.concat(
        pd.read_parquet(p)
        for p in sorted((res / "cam" / "scenes_multi").glob("*/iter10/masks_*.parquet"))
    )
    boxes = pd.concat(
        pd.read_parquet(p)
        for p in sorted((res / "refine" / "scenes_multi").glob("*/iter10/boxes_*.parquet"))
    )
    assert set(masks.image_id) == set(boxes.image_id)
    assert set(masks.image_id) <= set(manifest.image_id)
    for name in ("moco-baseline-s0", "moco-oa_crop_cam-s0"):
        assert (res / "models" / "scenes_multi" / name / "model.pt").exists()
        assert (res / "eval" / "scenes_multi" / name / "linear.json").exists()
    assert (res / "models" / "scenes_single" / "moco-bg_mixup_cam-s0" / "model.pt").exists()
    # nothing left to do
    assert planned_jobs(workdir) == {}
    print(f"smoke pipeline: {seconds:.0f} s")


def _train_ids(res, dataset):
    m = pd.read_parquet(res / "data" / dataset / "manifest.parquet")
    return set(m.loc[(m["split"] == "train") & (m["variant"] == "original"), "image_id"])


# the smoke config's CAM variants: (dataset, model) -> the CAM run whose shards it reads
CAM_VARIANTS = {
    ("scenes_multi", "moco-oa_crop_cam-s0"): "moco-baseline-s0/iter10",
    ("scenes_single", "moco-bg_mixup_cam-s0"): "moco-baseline-s0/iter1",
}


def test_cam_variants_trained_on_every_shard(smoke_run):
    """Every training image of a CAM variant got its row from the shard that holds it
    (metrics.jsonl side_info, checked against the shard files); the only fallbacks are
    the images whose CAM yields nothing. The pretrain rule used to pass one --boxes per
    shard and the command kept only the last: half the images trained without boxes."""
    from oacl.train import sideinfo

    workdir, _ = smoke_run
    res = workdir / SMOKE_RESULTS
    for (dataset, model), run in CAM_VARIANTS.items():
        train = _train_ids(res, dataset)
        lines = (res / "models" / dataset / model / "metrics.jsonl").read_text().splitlines()
        cov = json.loads(lines[0])["side_info"]
        assert cov["images"] == len(train) and set(cov["missing"].values()) == {0}, cov
        assert all(c == len(train) for c in cov["covered"].values())
        kinds = ["boxes", "masks"] if model.startswith("moco-bg_mixup") else ["boxes"]
        assert sorted({r["kind"] for r in cov["shards"]}) == sorted(kinds)
        empty = dict.fromkeys(cov["needs"], 0)
        for kind in kinds:
            recs = [r for r in cov["shards"] if r["kind"] == kind]
            stage = "refine" if kind == "boxes" else "cam"
            expected = sorted(
                f"{SMOKE_RESULTS}/{stage}/{dataset}/{run}/{kind}_{i}.parquet" for i in range(2)
            )
            assert sorted(r["shard"] for r in recs) == expected  # both shards were read
            for rec in recs:
                rows = pd.read_parquet(workdir / rec["shard"])
                rows = rows[rows["image_id"].isin(train)]
                assert rec["train_images"] == len(rows) > 0  # it covered its own images
                for row in rows.itertuples():  # what counts as empty, from the shard itself
                    if kind == "boxes" and "boxes" in empty:
                        empty["boxes"] += sideinfo.empty_boxes(row.boxes)
                    if kind == "boxes" and "bg_rect" in empty:
                        empty["bg_rect"] += sideinfo.empty_rect(row.bg_rect)
                    if kind == "masks":
                        empty["mask"] += sideinfo.empty_mask(row.mask_png)
            assert sum(r["train_images"] for r in recs) == len(train)
        assert cov["empty"] == empty  # no fallback beyond the empty CAMs
        assert cov["empty_fraction"] <= cov["max_empty"]


def test_a_cam_variant_given_one_of_two_shards_fails_before_training(
    smoke_run, tmp_path, capsys, monkeypatch
):
    from oacl.cli import main
    from oacl.train import loop

    def no_training(*args, **kw):
        raise AssertionError("a training step ran")

    monkeypatch.setattr(loop, "_train_step", no_training)
    workdir, _ = smoke_run
    res = workdir / SMOKE_RESULTS
    shard = res / "refine" / "scenes_multi" / "moco-baseline-s0" / "iter10" / "boxes_1.parquet"
    in_shard = len(_train_ids(res, "scenes_multi") & set(pd.read_parquet(shard)["image_id"]))
    n_train = len(_train_ids(res, "scenes_multi"))
    out = tmp_path / "moco-oa_crop_cam-s0" / "model.pt"
    cfg = {"variant": "oa_crop_cam", "epochs": 1, "batch_size": 32, "workers": 0}
    rc = main(
        [
            "pretrain",
            "--cfg",
            json.dumps(cfg),
            "--manifest",
            str(res / "data" / "scenes_multi" / "manifest.parquet"),
            "--out",
            str(out),
            "--boxes",
            str(shard),
            "--device",
            "cpu",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2, err
    assert f"{n_train - in_shard} of {n_train} training images have no boxes" in err
    assert f"{shard} (boxes): {in_shard} of the {n_train} training images" in err
    assert not out.parent.exists()


README = (REPO / "README.md").read_text()


def readme_commands():
    """Every `.venv/bin/...` command of the README: table cells and bash blocks."""
    cmds = re.findall(r"^\|[^|]*\| `(\.venv/bin/[^`]+)`", README, re.M)
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        cmds += [line for line in block.splitlines() if line.startswith(".venv/bin/")]
    return cmds


def on_smoke(text):
    """A README command or snippet about the default's results/, pointed at the smoke
    run's folder (smoke.yaml's `results`)."""
    return (
        text.replace("'results/", f"'{SMOKE_RESULTS}/")
        .replace(" results/", f" {SMOKE_RESULTS}/")
        .replace('"results/', f'"{SMOKE_RESULTS}/')
    )


def test_readme_commands_run_on_the_smoke_results(smoke_run, tmp_path):
    """Each README command, executed: snakemake ones as a dry run (-n) in the smoke
    folder, the rest for real against its results. An unknown kind of command fails here,
    so a command added to the README comes with a way to run it."""
    import os
    import subprocess
    import sys

    workdir, _ = smoke_run
    env = dict(os.environ, PYTHONPATH=str(workdir / "src"))
    bindir = os.path.dirname(sys.executable)
    cmds = readme_commands()
    assert len(cmds) >= 9, cmds
    shutil.copytree(REPO / "slurm", workdir / "slurm", dirs_exist_ok=True)  # --profile slurm
    for cmd in cmds:
        cmd = cmd.replace("/scratch/$USER/oacl-run1", str(tmp_path / "run1"))
        if cmd.startswith(".venv/bin/snakemake"):
            args = shlex.split(cmd)[1:]
            if "--report" in args:
                # Snakemake's report of the smoke run (issue 27.9): built, with the
                # workflow description and the evaluations' captions
                report = workdir / args[args.index("--report") + 1]
                run_snakemake(workdir, *args, *SMOKE)
                html = report.read_text()
                assert "Object-aware Contrastive Learning" in html
                assert "Linear evaluation of model" in html and "Evaluation scenes_multi" in html
                continue
            if "--config" in args:
                # a nested override (issue 27.6): it used to fail the schema check with
                # "config.yaml:51: pretrain.epochs: '2' is not of type 'integer'"
                proc = run_snakemake(workdir, *args, "-n", "-p")
                assert '"epochs":2' in proc.stdout, cmd
                continue
            if "smoke.yaml" in cmd and "--directory" not in cmd:
                # the smoke command itself: its results are there, nothing left to do
                proc = run_snakemake(workdir, *args, "-n")
                assert "Nothing to be done" in proc.stdout + proc.stderr, cmd
                continue
            proc = run_snakemake(workdir, *args, "-n", "--quiet", "rules", check=False)
            if "workflow/configs/in9-r18.yaml" in args:
                # a paper preset: its roots do not exist here, and the dry run says so
                # (issue 27.7); with the check skipped the DAG is planned
                out = proc.stdout + proc.stderr
                assert proc.returncode != 0 and "datasets.in9.root: /data/in9" in out, out
                more = ("--config", "check_roots=false")
                proc = run_snakemake(workdir, *args, *more, "-n", "--quiet", "rules", check=False)
            assert proc.returncode == 0, (cmd, (proc.stdout + proc.stderr)[-2000:])
        elif cmd.startswith(".venv/bin/oacl "):
            argv = on_smoke(cmd).split()
            argv[0] = os.path.join(bindir, "oacl")
            if "--out" in argv:
                argv[argv.index("--out") + 1] = str(tmp_path / argv[argv.index("--out") + 1])
            proc = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True)
            if argv[1] == "check-config" and not Path("/data/in9").exists():
                # as the README says: the preset's roots are not set here
                assert proc.returncode == 2, proc.stderr
                assert (
                    "in9-r18.yaml:13: datasets.in9.root: /data/in9: folder not found" in proc.stderr
                )
                argv.append("--no-check-roots")
                proc = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True)
            assert proc.returncode == 0, (cmd, proc.stderr[-2000:])
            if "--out" in argv:
                out = Path(argv[argv.index("--out") + 1])
                assert out.stat().st_size > 1000, cmd
        else:
            raise AssertionError(f"README command of unknown kind (add it to this test): {cmd}")
    # the Python and SQL snippets
    snippet = on_smoke(re.search(r"```python\n(.*?)```", README, re.S)[1])
    proc = subprocess.run(
        [sys.executable, "-c", snippet], cwd=workdir, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0 and "image_id" in proc.stdout, proc.stderr
    sql = on_smoke(re.search(r"```sql\n-- DuckDB\n(.*?)```", README, re.S)[1])
    glob = re.search(r"FROM '([^']+)'", sql)[1]
    shards = sorted(workdir.glob(glob))
    assert len(shards) == 2  # both shards of the one iter10 model: the query reads all data
    import duckdb  # the dev extra installs it (pyproject.toml)

    with duckdb_cwd(workdir):
        rows = duckdb.sql(sql.strip().rstrip(";")).fetchall()
    n = sum((pd.read_parquet(p)["n_boxes"] > 1).sum() for p in shards)
    assert len(rows) == n


class duckdb_cwd:
    def __init__(self, path):
        self.path, self.old = path, None

    def __enter__(self):
        import os

        self.old = os.getcwd()
        os.chdir(self.path)

    def __exit__(self, *exc):
        import os

        os.chdir(self.old)


def test_lost_shard_with_up_to_date_consumers_is_rebuilt(smoke_run):
    """Only a shard is lost (its consumers are up to date): it used to stay lost ("Nothing
    to be done") and `results/cam/*/masks_*.parquet` readers silently read part of the data."""
    workdir, _ = smoke_run
    res = workdir / SMOKE_RESULTS
    assert planned_jobs(workdir) == {}
    masks = res / "cam" / "scenes_multi" / "moco-baseline-s0" / "iter10" / "masks_1.parquet"
    boxes = res / "refine" / "scenes_single" / "moco-baseline-s0" / "iter1" / "boxes_0.parquet"
    masks.unlink()
    jobs = planned_jobs(workdir)
    assert jobs.get("cam") == 1 and "prepare_data" not in jobs
    boxes.unlink()
    jobs = planned_jobs(workdir)
    assert jobs.get("cam") == 1 and jobs.get("refine", 0) >= 2
    run_snakemake(
        workdir,
        "--cores",
        "2",
        *SMOKE,
        "--",
        str(masks.relative_to(workdir)),
        str(boxes.relative_to(workdir)),
    )
    assert masks.exists() and boxes.exists()


def edit(path):
    """A real code change (Snakemake compares checksums, so a bare touch is not one)."""
    with open(path, "a") as fh:
        fh.write("\n# edited by test_workflow\n")


def test_code_edits_rerun_exactly_the_dependent_jobs(smoke_run):
    """A rule's code inputs are its entry modules' transitive imports (oacl.codedeps)."""
    workdir, _ = smoke_run
    # the report draws its gallery with overlay.py (imported lazily): the report alone
    # reruns (the gallery code used to be missing from its code inputs)
    edit(workdir / "src" / "oacl" / "overlay.py")
    assert planned_jobs(workdir) == {"report": 1, "all": 1}
    # imported only by the localisation evaluation (via evaluate/localization.py)
    edit(workdir / "src" / "oacl" / "evaluate" / "protocols.py")
    assert planned_jobs(workdir) == {"evaluate_localization": 2, "report": 1, "all": 1}
    # the CRF (refine stage and the references of the localisation evaluation)
    edit(workdir / "src" / "oacl" / "refine" / "refinement.py")
    jobs = planned_jobs(workdir)
    # every refine shard, and what uses boxes; not the data, CAM or baseline models
    assert jobs.get("refine") == 4
    assert "prepare_data" not in jobs and "cam" not in jobs
    assert jobs.get("pretrain") == 2  # oa_crop_cam and bg_mixup_cam read the boxes
    assert jobs.get("evaluate_localization") == 2
    edit(workdir / "src" / "oacl" / "data" / "scenes" / "render.py")
    jobs = planned_jobs(workdir)
    assert jobs.get("prepare_data") == 2 and jobs.get("pretrain") == 4
    assert jobs.get("cam") == 4


def test_lost_refine_shard_is_recomputed_alone(smoke_run):
    workdir, _ = smoke_run
    res = workdir / SMOKE_RESULTS
    shard = res / "refine" / "scenes_single" / "moco-baseline-s0" / "iter1" / "boxes_1.parquet"
    before = pd.read_parquet(shard)
    # as if the run had been killed during refine: this shard (atomic writes: absent,
    # not half-written) and everything downstream of it are missing
    shard.unlink()
    for p in [
        res / "eval" / "scenes_single" / "moco-baseline-s0" / "localization_iter1.json",
        res / "report.html",
    ]:
        p.unlink()
    shutil.rmtree(res / "models" / "scenes_single" / "moco-bg_mixup_cam-s0")
    shutil.rmtree(res / "eval" / "scenes_single" / "moco-bg_mixup_cam-s0")
    jobs = planned_jobs(workdir)
    assert jobs.get("refine") == 1 and "cam" not in jobs and "prepare_data" not in jobs
    assert jobs.get("pretrain") == 1  # only the model that reads the lost shard
    run_snakemake(workdir, "--cores", "2", *SMOKE, "--", str(shard.relative_to(workdir)))
    pd.testing.assert_frame_equal(before, pd.read_parquet(shard))


def test_a_copied_run_and_a_git_worktree_have_nothing_to_do(smoke_run, tmp_path):
    """Issue 27.1: Snakemake records each job's input paths; code inputs used to be
    absolute, so `cp -a` of a finished run, a renamed checkout or a git worktree reran all
    jobs ("Set of input files has changed since last execution")."""
    import subprocess

    workdir, _ = smoke_run
    # issue 27.4: every job's log starts with where it ran
    for log in sorted((workdir / SMOKE_RESULTS / "logs").rglob("*.log")):
        first = log.read_text().splitlines()[0]
        assert re.search(r"oacl \w+: host \S+, device (cpu|cuda)", first), (log, first)
    moved = tmp_path / "moved"
    subprocess.run(["cp", "-a", str(workdir), str(moved)], check=True)
    proc = run_snakemake(moved, "-n", *SMOKE)
    assert "Nothing to be done" in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]

    # a git worktree of the same commit: fresh files (new mtimes: Snakemake compares the
    # recorded checksums) at another path, with the finished results moved into it
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=m"]
    subprocess.run([*git, "init", "-q"], cwd=moved, check=True)
    sources = ["Snakefile", "config.yaml", "workflow", "src", "profiles", "envs"]
    subprocess.run([*git, "add", *sources], cwd=moved, check=True)
    subprocess.run([*git, "commit", "-qm", "run"], cwd=moved, check=True)
    tree = tmp_path / "tree"
    subprocess.run([*git, "worktree", "add", "-q", str(tree)], cwd=moved, check=True)
    for name in ("results", ".snakemake"):
        (moved / name).rename(tree / name)
    proc = run_snakemake(tree, "-n", *SMOKE)
    assert "Nothing to be done" in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]


def test_walltime_chunks_rerun_pretrain_to_the_same_model(smoke_run):
    """Issue 27.5: with resources.pretrain.chunk_s each pretrain job stops after its chunk
    (one step here) with train_state.pt saved and exit 75, Snakemake retries it (the
    rule's retries are max_chunks), and it resumes until done: the model is the one the
    unchunked smoke run wrote, byte for byte."""
    workdir, _ = smoke_run
    folder = workdir / SMOKE_RESULTS / "models" / "scenes_multi" / "moco-baseline-s0"
    ref = (folder / "model.pt").read_bytes()
    shutil.rmtree(folder)  # train_state.pt too: from scratch
    target = str((folder / "model.pt").relative_to(workdir))
    chunks = ["--config", "resources={pretrain: {chunk_s: 1}}"]
    proc = run_snakemake(workdir, "--cores", "2", *SMOKE, *chunks, "--", target)
    out = proc.stdout + proc.stderr
    assert "--stop-after 1 " in out  # the chunk reached the command
    assert out.count("Error in rule pretrain") >= 1, out[-3000:]  # >= 2 runs of the job
    log = (workdir / SMOKE_RESULTS / "logs/pretrain/scenes_multi/moco-baseline-s0.log").read_text()
    assert "resuming" in log, log[-2000:]  # the last run continued a chunk
    assert (folder / "model.pt").read_bytes() == ref
