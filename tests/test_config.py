"""Config validation: a wrong key, type or value stops the run before any job, naming it."""

import copy
import re

import pytest
import yaml
from conftest import REPO, copy_workflow, run_snakemake

from oacl import configcheck

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def dry_run(workdir, *extra):
    proc = run_snakemake(workdir, "-n", "--quiet", "rules", *extra, check=False)
    proc.stderr = proc.stdout + proc.stderr  # snakemake logs errors to either stream
    return proc


def check(capsys, *files, base=REPO / "config.yaml"):
    """`oacl check-config`, in-process: the checks common.smk runs before any job is
    scheduled (each file parsed, merged over the base, schema, cross-references), with
    Snakemake's message; (exit code, stderr). The tests marked "end to end" below run
    Snakemake itself, proving that the Snakefile runs these checks."""
    from oacl.cli import main

    rc = main(["check-config", "--base", str(base), "--schema", str(SCHEMA), *map(str, files)])
    return rc, capsys.readouterr().err


STAGES = (
    "prepare_data",
    "pretrain",
    "cam",
    "refine",
    "evaluate_linear",
    "evaluate_shift",
    "evaluate_localization",
    "report",
)


@pytest.fixture(scope="module")
def default_plan(tmp_path_factory):
    """`snakemake -n -p` of the default config, run from the workflow folder: every job
    with its shell command (one DAG shared by the tests that read it)."""
    wf = copy_workflow(tmp_path_factory.mktemp("default"))
    proc = run_snakemake(wf, "-n", "-p")
    return proc.stdout + proc.stderr


def test_default_config_dry_run_shows_every_stage(default_plan):
    for rule in STAGES:
        assert re.search(rf"^rule {rule}:", default_plan, re.M), rule


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory):
    """A workflow copy, and a run folder outside it planned with the smoke preset
    (`--directory`, docs/cluster.md): (workflow copy, run folder, `-n -p` output)."""
    wf = copy_workflow(tmp_path_factory.mktemp("elsewhere"))
    run1 = tmp_path_factory.mktemp("scratch") / "run1"
    run1.mkdir()
    smoke = "workflow/configs/smoke.yaml"
    proc = run_snakemake(wf, "-n", "-p", "--directory", str(run1), "--configfile", smoke)
    return wf, run1, proc.stdout + proc.stderr


def test_smoke_config_is_valid(elsewhere):
    # the presets are dry-run on fixture roots in test_presets.py; the smoke preset runs
    # for real in test_workflow.py
    _, _, out = elsewhere
    for rule in STAGES:
        assert re.search(rf"^rule {rule}:", out, re.M), rule


def _write(tmp_path, data):
    path = tmp_path / "override.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_unknown_top_level_key_is_named(capsys, tmp_path):
    rc, err = check(capsys, _write(tmp_path, {"pretrian": {}}))
    assert rc != 0
    assert "pretrian" in err


def test_wrong_type_is_named(capsys, tmp_path):
    rc, err = check(capsys, _write(tmp_path, {"pretrain": {"epochs": "six"}}))
    assert rc != 0
    assert "epochs" in err


def test_threads_is_a_count_or_auto(capsys, tmp_path):
    # "auto" asks for the thread tuner (oacl.train.threads); any other word is an error
    assert check(capsys, _write(tmp_path, {"pretrain": {"threads": "auto"}}))[0] == 0
    rc, err = check(capsys, _write(tmp_path, {"pretrain": {"threads": "many"}}))
    assert rc != 0 and "threads" in err


def test_wrong_value_is_named(capsys, tmp_path):
    bad = {"experiments": {"contextual": {"variants": ["baseline", "oa_crop_magic"]}}}
    rc, err = check(capsys, _write(tmp_path, bad))
    assert rc != 0
    assert "oa_crop_magic" in err


def test_unknown_dataset_reference_is_named(workflow_copy, tmp_path):
    """End to end: the Snakefile runs the cross-reference checks (cross_check) before it
    plans anything."""
    bad = {
        "experiments": {
            "extra": {
                "dataset": "nope",
                "methods": ["moco"],
                "variants": ["baseline"],
                "seeds": [0],
            }
        }
    }
    proc = dry_run(workflow_copy, "--configfile", _write(tmp_path, bad))
    assert proc.returncode != 0
    assert "experiments.extra.dataset" in proc.stderr and "nope" in proc.stderr


def test_scene_value_out_of_range_is_named_before_any_job(capsys, tmp_path):
    """The schema checks the types of a dataset's keys; the scenes' value ranges (here an
    ablation switch of docs/architecture.md) are checked at config time too."""
    bad = {"datasets": {"scenes_single": {"bg_drift": 3}}}
    rc, err = check(capsys, _write(tmp_path, bad))
    assert rc != 0
    assert "datasets.scenes_single" in err and "bg_drift" in err
    good = {"datasets": {"scenes_single": {"bg_drift": 1.0, "object_colours": "own"}}}
    assert check(capsys, _write(tmp_path, good))[0] == 0


def test_unknown_cam_config_is_named(capsys, tmp_path):
    bad = {
        "localization_tables": {"scenes_multi": {"model": "moco-baseline-s0", "cams": ["iter99"]}}
    }
    rc, err = check(capsys, _write(tmp_path, bad))
    assert rc != 0
    assert "iter99" in err


def test_no_job_runs_on_invalid_config(workflow_copy, tmp_path):
    """End to end: a real run (not a dry run) on a value the schema rejects stops before
    any job, naming the file and line that set it."""
    override = tmp_path / "o.yaml"
    override.write_text("# comment\nrefine:\n  work_size: 224\n  crf: 'false'\n")
    proc = run_snakemake(workflow_copy, "--cores", "1", "--configfile", str(override), check=False)
    assert proc.returncode != 0
    assert f"{override}:4: refine.crf" in proc.stdout + proc.stderr
    assert not (workflow_copy / "results").exists()


# the plans of the default config with three overrides of different parts of it, in one
# DAG: each test below reads the jobs of its own part
OVERRIDES = {
    # a *_cam variant that trains on iter1 of scenes_multi
    "contextual_cam": {"experiments": {"contextual": {"cam": "iter1"}}},
    # the background experiment on seed 1 only
    "background_seed": {
        "experiments": {"background": {"seeds": [1], "cam_model": "moco-baseline-s1"}},
        "localization_tables": {"scenes_single": {"model": "moco-baseline-s1"}},
    },
    # an experiment that sets only moco.queue_size
    "contextual_queue": {
        "experiments": {"contextual": {"pretrain": {"moco": {"queue_size": 2048}}}}
    },
}


@pytest.fixture(scope="module")
def override_plan(tmp_path_factory):
    from oacl.params import deep_merge

    override = {}
    for part in OVERRIDES.values():
        override = deep_merge(override, part)
    wf = copy_workflow(tmp_path_factory.mktemp("override"))
    return run_snakemake(wf, "-n", "-p", "--configfile", _write(wf, override)).stdout


def test_localisation_only_cam_masks_only_the_scored_splits(default_plan, override_plan):
    """iter1 trains nothing on scenes_multi (only the localisation table reads it), so
    its CAM jobs there mask the test split; on scenes_single BG-Mixup trains on it."""
    import json

    cfgs = {}
    for m in re.finditer(
        r"oacl cam --cfg '(\{[^']*\})' --checkpoint results/models/(\w+)/[^/]+/model\.pt"
        r".*?--out results/cam/\w+/[^/]+/(\w+)/masks_0",
        default_plan,
    ):
        cfgs[(m[2], m[3])] = json.loads(m[1])
    assert "splits" not in cfgs[("scenes_single", "iter1")]  # cam DEFAULTS: train and test
    assert "splits" not in cfgs[("scenes_multi", "iter10")]  # OA-Crop trains on these boxes
    assert cfgs[("scenes_multi", "iter1")]["splits"] == ["test"]
    assert cfgs[("scenes_multi", "iter10_nonsr")]["splits"] == ["test"]
    # a *_cam variant that trains on iter1 of scenes_multi (OVERRIDES["contextual_cam"])
    # brings its train masks back
    assert re.search(
        r"oacl cam --cfg '\{(?![^']*splits)[^']*\}' --checkpoint results/models/scenes_multi/"
        r"[^\n]*iter1/masks_0",
        override_plan,
    )


# ------------------------------------------------------------------ stage sections


def test_stage_section_errors_stop_the_run_before_any_job(capsys, tmp_path):
    """Each used to pass the schema: the CRF stayed on, a string lr crashed hours in, an
    unknown CAM key failed only when that job ran, an experiment's epochs 0 trained nothing.
    (That Snakemake stops on such an error before any job: test_no_job_runs_on_invalid_config.)"""
    bad = {
        "refine": {"crf": "false"},
        "pretrain": {"base_lr": "0.1"},
        "cam": {"configs": {"iter1": {"itres": 3}}},
        "experiments": {"contextual": {"pretrain": {"epochs": 0}}},
        "evaluate": {"shift": {"linear": {"c_grid": {"n": "8"}}}},
    }
    for section, value in bad.items():
        override = tmp_path / f"{section}.yaml"
        override.write_text(yaml.safe_dump({section: value}))
        rc, out = check(capsys, override)
        assert rc != 0, section
        key = {
            "refine": "refine.crf",
            "pretrain": "pretrain.base_lr",
            "cam": "cam.configs.iter1",
            "experiments": "experiments.contextual.pretrain.epochs",
            "evaluate": "evaluate.shift.linear.c_grid.n",
        }[section]
        assert key in out, (section, out[-1500:])
        assert f"{override}:" in out  # the file (and line) the value came from


def test_error_names_the_line_of_the_file_that_set_it(capsys, tmp_path):
    override = tmp_path / "o.yaml"
    override.write_text("# comment\nrefine:\n  work_size: 224\n  crf: 'false'\n")
    rc, err = check(capsys, override)
    assert rc != 0
    assert f"{override}:4: refine.crf" in err


def test_model_outside_every_experiment_is_an_error(capsys, tmp_path):
    """A cam_model or localisation model no experiment lists used to schedule an extra
    pretrain job silently (with the top-level pretrain settings)."""
    bad = {"experiments": {"contextual": {"cam_model": "moco-baseline-s7"}}}
    rc, err = check(capsys, _write(tmp_path, bad))
    assert rc != 0
    assert "experiments.contextual.cam_model" in err and "moco-baseline-s7" in err
    bad = {
        "localization_tables": {"scenes_single": {"model": "byol-baseline-s0", "cams": ["iter1"]}}
    }
    rc, err = check(capsys, _write(tmp_path, bad))
    assert rc != 0
    assert "localization_tables.scenes_single.model" in err and "byol-baseline-s0" in err


BROKEN = {
    "empty": ("", 1),
    "syntax": ("pretrain:\n  epochs: [1, 2\n", 3),
    "list": ("- a\n- b\n", 1),
}


@pytest.mark.parametrize("what", sorted(BROKEN))
def test_broken_base_config_names_file_and_line(capsys, tmp_path, what):
    text, line = BROKEN[what]
    path = tmp_path / "config.yaml"
    path.write_text(text)
    rc, err = check(capsys, base=path)
    assert rc != 0
    assert re.search(rf"{re.escape(str(path))}:{line}\b", err), err[-1500:]


def test_broken_base_config_stops_snakemake(workflow_copy):
    """End to end: the Snakefile parses the config.yaml beside it itself (file and line of
    a YAML error; Snakemake's own parser names neither)."""
    text, line = BROKEN["syntax"]
    (workflow_copy / "config.yaml").write_text(text)
    proc = dry_run(workflow_copy)
    assert proc.returncode != 0
    path = workflow_copy / "config.yaml"
    assert re.search(rf"{re.escape(str(path))}:{line}\b", proc.stderr), proc.stderr[-1500:]


# every stage's DEFAULTS against the generated schema: a wrong type and an unknown key
# are rejected for every key, so the schema cannot fall behind a stage

BASE = yaml.safe_load((REPO / "config.yaml").read_text())


def _stage_locations():
    """(label, DEFAULTS, dropped keys, function placing a section into a config)."""

    def at(*path):
        def place(cfg, section):
            d = cfg
            for p in path[:-1]:
                d = d.setdefault(p, {})
            d[path[-1]] = section
            return cfg

        return place

    where = {
        "pretrain": [at("pretrain"), at("experiments", "contextual", "pretrain")],
        "cam_config": [at("cam", "configs", "iter1")],
        "refine": [at("refine")],
        "eval_linear": [at("evaluate", "linear")],
        "eval_shift": [at("evaluate", "shift")],
        "eval_localization": [at("evaluate", "localization")],
        "report": [at("report")],
    }
    for name, (module, drop) in configcheck.STAGES.items():
        defaults = configcheck._defaults(module)
        for place in where[name]:
            yield name, defaults, drop, place
    schema = yaml.safe_load(SCHEMA.read_text())
    for kind in schema["properties"]["datasets"]["additionalProperties"]["properties"]["type"][
        "enum"
    ]:
        defaults = configcheck.dataset_defaults(kind)
        yield f"data_{kind}", defaults, ("type",), at("datasets", "extra")


def _leaves(d, prefix=()):
    for k, v in d.items():
        yield prefix + (k,), v
        if isinstance(v, dict) and v:
            yield from _leaves(v, prefix + (k,))


def _wrong(value):
    """A value of another type than the default (for None defaults: a mapping)."""
    if isinstance(value, bool):
        return "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return 5
    if isinstance(value, list):
        return "x"
    if isinstance(value, dict):
        return "x"
    return {"a": 1}


def _nest(path, value, base=None):
    out = {}
    d = out
    for p in path[:-1]:
        d = d.setdefault(p, {})
    d[path[-1]] = value
    return out


def _cfg_with(place, section, kind):
    cfg = copy.deepcopy(BASE)
    if kind.startswith("data_"):
        section = {"type": kind[5:], **section}
    return place(cfg, section)


def test_schema_rejects_a_wrong_type_and_an_unknown_key_for_every_stage_key():
    checked = 0
    for name, defaults, drop, place in _stage_locations():
        configcheck.check_config(_cfg_with(place, {}, name), SCHEMA)  # the defaults pass
        for path, value in _leaves(defaults):
            dotted = ".".join(path)
            if dotted in drop or path[0] in drop:
                continue
            for bad, what in [
                (_wrong(value), "wrong type"),
                (_nest(path[:-1] + ("no_such_key",), 1), "unknown key"),
            ]:
                section = _nest(path, bad) if what == "wrong type" else bad
                with pytest.raises(configcheck.ConfigError) as exc:
                    configcheck.check_config(_cfg_with(place, section, name), SCHEMA)
                msg = str(exc.value)
                assert (path[-1] if what == "wrong type" else "no_such_key") in msg, (
                    name,
                    dotted,
                    what,
                    msg,
                )
            checked += 1
        # keys the rule sets itself are not accepted from the config
        for dotted in drop:
            if dotted == "type":
                continue
            path = tuple(dotted.split("."))
            value = defaults
            for p in path:
                value = value[p]
            with pytest.raises(configcheck.ConfigError):
                configcheck.check_config(_cfg_with(place, _nest(path, value), name), SCHEMA)
    assert checked > 150


def test_schema_constraints_name_only_keys_the_stages_have(tmp_path):
    schema = yaml.safe_load(SCHEMA.read_text())
    schema["$defs"]["refine"]["properties"]["crf_paramz"] = {"minimum": 0}
    path = tmp_path / "drift.schema.yaml"
    path.write_text(yaml.safe_dump(schema))
    with pytest.raises(configcheck.ConfigError, match="crf_paramz"):
        configcheck.full_schema(path)


@pytest.mark.parametrize(
    "path, bad",
    [
        (("pretrain", "augment", "mix_view"), "both"),
        (("pretrain", "augment", "blur_method"), "fft"),
        (("pretrain", "method"), "simclr"),  # the rule sets it: not accepted at all
        (("cam", "configs", "iter1", "pos_mode"), "sum"),
        (("experiments", "*", "methods"), ["simclr"]),
    ],
)
def test_stage_choices_are_the_schema_enums_at_any_depth(path, bad):
    """A stage's CHOICES (nested like its DEFAULTS: pretrain.augment.mix_view) are the
    schema's enums, and the pretrain methods are those of experiments.*.methods."""
    cfg = copy.deepcopy(BASE)
    d = cfg
    for p in path[:-1]:
        d = d[next(iter(d))] if p == "*" else d.setdefault(p, {})
    d[path[-1]] = bad
    with pytest.raises(configcheck.ConfigError, match=path[-1]):
        configcheck.check_config(cfg, SCHEMA)


# ------------------------------------------------------------------ results elsewhere


def test_results_outside_the_repository(elsewhere, tmp_path):
    """docs/cluster.md: `--directory` keeps config.yaml (it used to be lost: "'experiments'
    is a required property"), from the repository root and from the run folder itself."""
    workflow_copy, run1, smoke = elsewhere
    proc = run_snakemake(workflow_copy, "-n", "--directory", str(run1), check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
    for out, res in ((proc.stdout + proc.stderr, "results"), (smoke, "results/smoke")):
        assert f"{res}/report.html" in out and "evaluate_localization" in out
    assert (run1 / ".snakemake").is_dir() and not (workflow_copy / ".snakemake").exists()
    assert '"n_train":96' in smoke  # the preset is merged over the base config
    run2 = tmp_path / "run2"
    run2.mkdir()
    proc = run_snakemake(
        run2,
        "-n",
        "-s",
        str(workflow_copy / "Snakefile"),
        "--configfile",
        str(workflow_copy / "workflow/configs/smoke.yaml"),
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
    assert not (workflow_copy / "results").exists() and not (run1 / "results").exists()


def test_report_command_lists_exactly_the_configured_files(override_plan):
    """The report rule passes its inputs; a seed dropped from the config
    (OVERRIDES["background_seed"]) is not among them."""
    cmd = re.search(r"oacl report .*--inputs (.*?) --out", override_plan)[1].split()
    assert "results/eval/scenes_single/moco-bg_mixup_cam-s1/shift.json" in cmd
    assert not any("scenes_single/moco-bg_mixup_cam-s0" in c for c in cmd)
    shards = [c for c in cmd if c.endswith(".parquet")]
    assert "results/cam/scenes_multi/moco-baseline-s0/iter10/masks_1.parquet" in shards
    assert "results/refine/scenes_single/moco-baseline-s1/iter1/boxes_0.parquet" in shards


def test_check_config_names_file_and_line_of_a_preset(tmp_path, capsys):
    """Snakemake parses --configfile files before the workflow loads and reports a YAML
    error there without file or line; `oacl check-config` names both."""
    from oacl.cli import main

    bad = tmp_path / "preset.yaml"
    bad.write_text("pretrain:\n  epochs: 2\n  moco: {queue_size: 4096\n")
    assert main(["check-config", str(bad)]) == 2
    assert re.search(rf"{re.escape(str(bad))}:4:\d+: YAML syntax error", capsys.readouterr().err)
    bad.write_text("")
    assert main(["check-config", str(bad)]) == 2
    assert f"{bad}:1: config file is empty" in capsys.readouterr().err
    bad.write_text("experiments:\n  contextual:\n    pretrain:\n      epochs: 0\n")
    assert main(["check-config", str(bad)]) == 2
    assert f"{bad}:4: experiments.contextual.pretrain.epochs" in capsys.readouterr().err
    for preset in sorted((REPO / "workflow" / "configs").glob("*.yaml")):
        # <base>-smoke.yaml is an overlay of <base>.yaml (composite-smoke.yaml)
        base = preset.with_name(preset.name.replace("-smoke", ""))
        files = [base, preset] if base != preset and base.exists() else [preset]
        # their roots (/data/...) do not exist here: checked in test_dataset_roots_...
        assert main(["check-config", "--no-check-roots", *map(str, files)]) == 0, preset


def test_deep_merge_keeps_keys_an_override_does_not_name():
    from oacl.params import deep_merge

    base = {
        "epochs": 6,
        "moco": {"queue_size": 1024, "momentum": 0.99},
        "augment": {"p_mix": {"moco": 1.0}},
    }
    over = {"moco": {"queue_size": 4096}, "augment": {"p_mix": {"byol": 0.5}}, "workers": None}
    merged = deep_merge(base, over)
    assert merged == {
        "epochs": 6,
        "moco": {"queue_size": 4096, "momentum": 0.99},
        "augment": {"p_mix": {"moco": 1.0, "byol": 0.5}},
        "workers": None,
    }
    assert base["moco"] == {"queue_size": 1024, "momentum": 0.99}  # inputs unchanged
    merged["augment"]["p_mix"]["moco"] = 0.0
    assert over["augment"]["p_mix"] == {"byol": 0.5} and base["augment"]["p_mix"]["moco"] == 1.0
    assert deep_merge({"a": {"b": 1}}, {"a": 3}) == {"a": 3}  # a non-mapping replaces


def test_experiment_pretrain_override_is_merged_key_by_key(override_plan):
    """An experiment setting only moco.queue_size (OVERRIDES["contextual_queue"]) used to
    drop config.yaml's moco.momentum (0.99) for the stage default (0.999): the override
    replaced the whole `moco` mapping."""
    cfgs = {}
    for m in re.finditer(r"oacl pretrain --cfg '(\{.*?\})'", override_plan):
        cfg = yaml.safe_load(m[1])
        cfgs[(cfg["variant"], cfg["moco"]["queue_size"])] = cfg["moco"]
    assert cfgs[("oa_crop_cam", 2048)] == {"queue_size": 2048, "momentum": 0.99}  # contextual
    assert cfgs[("bg_mixup_cam", 1024)] == {"queue_size": 1024, "momentum": 0.99}  # background


def test_one_name_per_stage():
    """A rule's log and benchmark folders are named after it; the CAM stage is `cam`
    everywhere (rule, command, results folder, resources key, logs)."""
    rules = {}
    for path in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        rules.update(
            re.findall(
                r"^rule (\w+):\n(.*?)(?=^rule |\Z)", path.read_text(), re.MULTILINE | re.DOTALL
            )
        )
    assert {"prepare_data", "pretrain", "cam", "refine", "report"} <= set(rules)
    for rule, body in rules.items():
        # log_of/benchmark_of (common.smk): results/{logs,benchmarks}/<rule>[/<job>]
        assert re.findall(r"^    log:\n\s+log_of\(\"(\w+)\"", body, re.M) == [rule], rule
        for name in re.findall(r"benchmark_of\(\"(\w+)\"", body):
            assert name == rule, (rule, name)
    cam = rules["cam"]
    assert '"oacl cam ' in cam and 'path("masks")' in cam and 'res("cam", ' in cam
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    assert '"masks": "{results}/cam/' in common
    assert "rule refine:" in (REPO / "workflow" / "rules" / "refine.smk").read_text()


def test_old_localization_key_is_named_with_its_new_name(tmp_path):
    """Top-level `localization:` (the tables to make) is now `localization_tables:`, so
    that `localization` means one thing: the evaluation's parameters, evaluate.localization."""
    bad = tmp_path / "old.yaml"
    bad.write_text("localization:\n  scenes_multi: {model: moco-baseline-s0, cams: [iter10]}\n")
    with pytest.raises(
        configcheck.ConfigError, match=r"old.yaml:1: localization: renamed to localization_tables"
    ):
        paths = [REPO / "config.yaml", bad]
        configcheck.check_config(
            configcheck.merge_configs(paths),
            REPO / "workflow/schemas/config.schema.yaml",
            configcheck.load_config_files(paths),
        )


DUPLICATE = "pretrain:\n  epochs: 1\nreport: {}\npretrain:\n  epochs: 2\n"


def test_duplicate_keys_are_an_error_naming_both_lines(tmp_path, capsys):
    """Issue 28: YAML keeps the last of two equal keys without a word; here it is an error
    with both lines, at the top level and nested (also in a flow mapping)."""
    dup = tmp_path / "dup.yaml"
    dup.write_text(DUPLICATE)
    rc, err = check(capsys, dup)
    assert rc == 2 and f"{dup}:4: duplicate key 'pretrain' (first at line 1)" in err, err
    dup.write_text("experiments:\n  a:\n    pretrain:\n      epochs: 1\n      epochs: 2\n")
    rc, err = check(capsys, dup)
    assert f"{dup}:5: duplicate key 'experiments.a.pretrain.epochs' (first at line 4)" in err
    dup.write_text("cam:\n  configs:\n    x: {iters: 1, iters: 2}\n")
    rc, err = check(capsys, dup)
    assert f"{dup}:3: duplicate key 'cam.configs.x.iters' (first at line 3)" in err
    rc, err = check(capsys, base=dup)  # the base config too
    assert rc == 2 and f"{dup}:3: duplicate key" in err


def test_duplicate_keys_stop_snakemake(workflow_copy):
    """End to end: Snakemake's parser accepts the file (the last key wins); the workflow's
    own check stops the run naming file and both lines."""
    dup = workflow_copy / "dup.yaml"
    dup.write_text(DUPLICATE)
    proc = dry_run(workflow_copy, "--configfile", str(dup))
    assert proc.returncode != 0
    assert f"{dup}:4: duplicate key 'pretrain' (first at line 1)" in proc.stderr, proc.stderr


def test_target_read_as_a_config_file_says_to_put_targets_first(tmp_path, capsys):
    """`snakemake --configfile a.yaml all` reads `all` as a config file (Snakemake fails
    before the workflow loads); check-config, given the same words, says what happened."""
    rc, err = check(capsys, REPO / "workflow" / "configs" / "smoke.yaml", "all")
    assert rc == 2 and "all: cannot read config file" in err
    assert "give targets before --configfile" in err
    rc, err = check(capsys, tmp_path / "missing.yaml")  # a config file's name: no hint
    assert rc == 2 and "missing.yaml: cannot read" in err and "targets" not in err


def test_nested_command_line_override_is_typed_and_named_as_origin(workflow_copy):
    """Issue 27.6: Snakemake reads `--config 'pretrain={epochs: 2}'` leaves as strings; the
    schema check used to fail on '2' and blame config.yaml:51."""
    from oacl.configcheck import command_line_config, locate

    typed, origin = command_line_config(
        {"pretrain": {"epochs": "2", "moco": {"queue_size": "64"}}, "device": "cpu"}
    )
    assert typed == {"pretrain": {"epochs": 2, "moco": {"queue_size": 64}}, "device": "cpu"}
    files = configcheck.load_config_files([REPO / "config.yaml"]) + [origin]
    assert locate(["pretrain", "epochs"], files) == "command line (--config)"
    assert locate(["pretrain", "batch_size"], files).startswith(str(REPO / "config.yaml"))
    proc = run_snakemake(workflow_copy, "-n", "--config", "pretrain={epochs: 0}", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "command line (--config): pretrain.epochs: 0 is less than the minimum of 1" in out


def test_dataset_roots_are_checked_before_any_job(tmp_path, capsys):
    """Issue 27.7: a missing root or COCO annotation file used to surface only when
    prepare_data ran (on a cluster, after queueing); check-config and the dry run say it."""
    from oacl.cli import main

    root = tmp_path / "coco"
    (root / "train2017").mkdir(parents=True)
    (root / "val2017").mkdir()
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_train2017.json").write_text("{}")
    preset = tmp_path / "mine.yaml"
    preset.write_text(
        "datasets:\n"
        f"  coco: {{type: coco, root: {root}}}\n"
        f"  cub: {{type: cub, root: {tmp_path / 'nowhere'}}}\n"
    )
    assert main(["check-config", str(preset)]) == 2
    err = capsys.readouterr().err
    assert (
        f"{preset}:2: datasets.coco.root: {root}: expected file annotations/instances_val2017.json"
        in err
    )
    assert f"{preset}:3: datasets.cub.root: {tmp_path / 'nowhere'}: folder not found" in err
    assert main(["check-config", "--no-check-roots", str(preset)]) == 0
