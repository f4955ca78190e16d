"""Config validation: a wrong key, type or value stops the run before any job, naming it."""

import yaml

from conftest import REPO, run_snakemake


def dry_run(workdir, *extra):
    proc = run_snakemake(workdir, "-n", "--quiet", "rules", *extra, check=False)
    proc.stderr = proc.stdout + proc.stderr  # snakemake logs errors to either stream
    return proc


def test_default_config_dry_run_shows_every_stage(workflow_copy):
    proc = dry_run(workflow_copy)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    for rule in ("prepare_data", "pretrain", "contracam", "refine", "evaluate_linear",
                 "evaluate_shift", "evaluate_localization", "report"):
        assert rule in out


def test_smoke_config_is_valid(workflow_copy):
    # the presets are dry-run on fixture roots in test_presets.py
    proc = dry_run(workflow_copy, "--configfile", str(REPO / "workflow/configs/smoke.yaml"))
    assert proc.returncode == 0, proc.stderr[-2000:]


def _write(tmp_path, data):
    path = tmp_path / "override.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_unknown_top_level_key_is_named(workflow_copy, tmp_path):
    proc = dry_run(workflow_copy, "--configfile", _write(tmp_path, {"pretrian": {}}))
    assert proc.returncode != 0
    assert "pretrian" in proc.stderr


def test_wrong_type_is_named(workflow_copy, tmp_path):
    proc = dry_run(workflow_copy, "--configfile", _write(tmp_path, {"pretrain": {"epochs": "six"}}))
    assert proc.returncode != 0
    assert "epochs" in proc.stderr


def test_wrong_value_is_named(workflow_copy, tmp_path):
    bad = {"experiments": {"contextual": {"variants": ["baseline", "oa_crop_magic"]}}}
    proc = dry_run(workflow_copy, "--configfile", _write(tmp_path, bad))
    assert proc.returncode != 0
    assert "oa_crop_magic" in proc.stderr


def test_unknown_dataset_reference_is_named(workflow_copy, tmp_path):
    bad = {"experiments": {"extra": {"dataset": "nope", "methods": ["moco"],
                                     "variants": ["baseline"], "seeds": [0]}}}
    proc = dry_run(workflow_copy, "--configfile", _write(tmp_path, bad))
    assert proc.returncode != 0
    assert "experiments.extra.dataset" in proc.stderr and "nope" in proc.stderr


def test_unknown_cam_config_is_named(workflow_copy, tmp_path):
    bad = {"localization": {"scenes_multi": {"model": "moco-baseline-s0", "cams": ["iter99"]}}}
    proc = dry_run(workflow_copy, "--configfile", _write(tmp_path, bad))
    assert proc.returncode != 0
    assert "iter99" in proc.stderr


def test_no_job_runs_on_invalid_config(workflow_copy, tmp_path):
    proc = run_snakemake(workflow_copy, "--cores", "1", "--configfile",
                         _write(tmp_path, {"pretrain": {"epochs": 0}}), check=False)
    assert proc.returncode != 0
    assert not (workflow_copy / "results").exists()


def test_localisation_only_cam_masks_only_the_scored_splits(workflow_copy, tmp_path):
    """iter1 trains nothing on scenes_multi (only the localisation table reads it), so
    its CAM jobs there mask the test split; on scenes_single BG-Mixup trains on it."""
    import json
    import re

    proc = run_snakemake(workflow_copy, "-n", "-p")
    cfgs = {}
    for m in re.finditer(r"oacl cam --cfg '(\{[^']*\})' --checkpoint results/models/(\w+)/[^/]+/model\.pt"
                         r".*?--out results/cam/\w+/[^/]+/(\w+)/masks_0", proc.stdout):
        cfgs[(m[2], m[3])] = json.loads(m[1])
    assert "splits" not in cfgs[("scenes_single", "iter1")]  # cam DEFAULTS: train and test
    assert "splits" not in cfgs[("scenes_multi", "iter10")]  # OA-Crop trains on these boxes
    assert cfgs[("scenes_multi", "iter1")]["splits"] == ["test"]
    assert cfgs[("scenes_multi", "iter10_nonsr")]["splits"] == ["test"]
    # a *_cam variant that trains on iter1 of scenes_multi brings its train masks back
    override = _write(tmp_path, {"experiments": {"contextual": {"cam": "iter1"}}})
    proc = run_snakemake(workflow_copy, "-n", "-p", "--configfile", override)
    assert re.search(r"oacl cam --cfg '\{(?![^']*splits)[^']*\}' --checkpoint results/models/scenes_multi/"
                     r"[^\n]*iter1/masks_0", proc.stdout)
