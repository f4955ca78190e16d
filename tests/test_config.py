"""Config validation: a wrong key, type or value stops the run before any job, naming it."""

import copy
import re

import pytest
import yaml
from conftest import REPO, run_snakemake

from oacl import configcheck


def dry_run(workdir, *extra):
    proc = run_snakemake(workdir, "-n", "--quiet", "rules", *extra, check=False)
    proc.stderr = proc.stdout + proc.stderr  # snakemake logs errors to either stream
    return proc


def test_default_config_dry_run_shows_every_stage(workflow_copy):
    proc = dry_run(workflow_copy)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    for rule in (
        "prepare_data",
        "pretrain",
        "cam",
        "refine",
        "evaluate_linear",
        "evaluate_shift",
        "evaluate_localization",
        "report",
    ):
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


def test_unknown_cam_config_is_named(workflow_copy, tmp_path):
    bad = {
        "localization_tables": {"scenes_multi": {"model": "moco-baseline-s0", "cams": ["iter99"]}}
    }
    proc = dry_run(workflow_copy, "--configfile", _write(tmp_path, bad))
    assert proc.returncode != 0
    assert "iter99" in proc.stderr


def test_no_job_runs_on_invalid_config(workflow_copy, tmp_path):
    proc = run_snakemake(
        workflow_copy,
        "--cores",
        "1",
        "--configfile",
        _write(tmp_path, {"pretrain": {"epochs": 0}}),
        check=False,
    )
    assert proc.returncode != 0
    assert not (workflow_copy / "results").exists()


def test_localisation_only_cam_masks_only_the_scored_splits(workflow_copy, tmp_path):
    """iter1 trains nothing on scenes_multi (only the localisation table reads it), so
    its CAM jobs there mask the test split; on scenes_single BG-Mixup trains on it."""
    import json
    import re

    proc = run_snakemake(workflow_copy, "-n", "-p")
    cfgs = {}
    for m in re.finditer(
        r"oacl cam --cfg '(\{[^']*\})' --checkpoint results/models/(\w+)/[^/]+/model\.pt"
        r".*?--out results/cam/\w+/[^/]+/(\w+)/masks_0",
        proc.stdout,
    ):
        cfgs[(m[2], m[3])] = json.loads(m[1])
    assert "splits" not in cfgs[("scenes_single", "iter1")]  # cam DEFAULTS: train and test
    assert "splits" not in cfgs[("scenes_multi", "iter10")]  # OA-Crop trains on these boxes
    assert cfgs[("scenes_multi", "iter1")]["splits"] == ["test"]
    assert cfgs[("scenes_multi", "iter10_nonsr")]["splits"] == ["test"]
    # a *_cam variant that trains on iter1 of scenes_multi brings its train masks back
    override = _write(tmp_path, {"experiments": {"contextual": {"cam": "iter1"}}})
    proc = run_snakemake(workflow_copy, "-n", "-p", "--configfile", override)
    assert re.search(
        r"oacl cam --cfg '\{(?![^']*splits)[^']*\}' --checkpoint results/models/scenes_multi/"
        r"[^\n]*iter1/masks_0",
        proc.stdout,
    )


# ------------------------------------------------------------------ stage sections


def test_stage_section_errors_stop_the_run_before_any_job(workflow_copy, tmp_path):
    """Each used to pass the schema: the CRF stayed on, a string lr crashed hours in, an
    unknown CAM key failed only when that job ran, an experiment's epochs 0 trained nothing."""
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
        proc = run_snakemake(
            workflow_copy, "--cores", "1", "--configfile", str(override), check=False
        )
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, section
        key = {
            "refine": "refine.crf",
            "pretrain": "pretrain.base_lr",
            "cam": "cam.configs.iter1",
            "experiments": "experiments.contextual.pretrain.epochs",
            "evaluate": "evaluate.shift.linear.c_grid.n",
        }[section]
        assert key in out, (section, out[-1500:])
        assert f"{override}:" in out  # the file (and line) the value came from
        assert not (workflow_copy / "results").exists()


def test_error_names_the_line_of_the_file_that_set_it(workflow_copy, tmp_path):
    override = tmp_path / "o.yaml"
    override.write_text("# comment\nrefine:\n  work_size: 224\n  crf: 'false'\n")
    proc = dry_run(workflow_copy, "--configfile", str(override))
    assert proc.returncode != 0
    assert f"{override}:4: refine.crf" in proc.stderr


def test_model_outside_every_experiment_is_an_error(workflow_copy, tmp_path):
    """A cam_model or localisation model no experiment lists used to schedule an extra
    pretrain job silently (with the top-level pretrain settings)."""
    bad = {"experiments": {"contextual": {"cam_model": "moco-baseline-s7"}}}
    proc = dry_run(workflow_copy, "--configfile", _write(tmp_path, bad))
    assert proc.returncode != 0
    assert "experiments.contextual.cam_model" in proc.stderr and "moco-baseline-s7" in proc.stderr
    bad = {
        "localization_tables": {"scenes_single": {"model": "byol-baseline-s0", "cams": ["iter1"]}}
    }
    proc = dry_run(workflow_copy, "--configfile", _write(tmp_path, bad))
    assert proc.returncode != 0
    assert (
        "localization_tables.scenes_single.model" in proc.stderr
        and "byol-baseline-s0" in proc.stderr
    )


@pytest.mark.parametrize(
    "text,what", [("", "empty"), ("pretrain:\n  epochs: [1, 2\n", "syntax"), ("- a\n- b\n", "list")]
)
def test_broken_base_config_names_file_and_line(workflow_copy, text, what):
    (workflow_copy / "config.yaml").write_text(text)
    proc = dry_run(workflow_copy)
    assert proc.returncode != 0
    path = workflow_copy / "config.yaml"
    line = {"empty": 1, "syntax": 3, "list": 1}[what]
    assert re.search(rf"{re.escape(str(path))}:{line}\b", proc.stderr), proc.stderr[-1500:]


# every stage's DEFAULTS against the generated schema: a wrong type and an unknown key
# are rejected for every key, so the schema cannot fall behind a stage

BASE = yaml.safe_load((REPO / "config.yaml").read_text())
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


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


# ------------------------------------------------------------------ results elsewhere


def test_results_outside_the_repository(workflow_copy, tmp_path):
    """docs/cluster.md: `--directory` keeps config.yaml (it used to be lost: "'experiments'
    is a required property"), from the repository root and from the run folder itself."""
    run1 = tmp_path / "scratch" / "run1"
    run1.mkdir(parents=True)
    for extra in ([], ["--configfile", "workflow/configs/smoke.yaml"]):
        proc = run_snakemake(workflow_copy, "-n", "--directory", str(run1), *extra, check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-2000:]
        assert "results/report.html" in out and "evaluate_localization" in out
        assert (run1 / ".snakemake").is_dir() and not (workflow_copy / ".snakemake").exists()
    smoke = run_snakemake(
        workflow_copy,
        "-n",
        "-p",
        "--directory",
        str(run1),
        "--configfile",
        "workflow/configs/smoke.yaml",
    ).stdout
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


def test_report_command_lists_exactly_the_configured_files(workflow_copy, tmp_path):
    """The report rule passes its inputs; a seed dropped from the config is not among them."""
    override = _write(
        tmp_path,
        {
            "experiments": {"background": {"seeds": [1], "cam_model": "moco-baseline-s1"}},
            "localization_tables": {"scenes_single": {"model": "moco-baseline-s1"}},
        },
    )
    out = run_snakemake(workflow_copy, "-n", "-p", "--configfile", override).stdout
    cmd = re.search(r"oacl report .*--inputs (.*?) --out", out)[1].split()
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
        assert main(["check-config", *map(str, files)]) == 0, preset


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


def test_experiment_pretrain_override_is_merged_key_by_key(workflow_copy, tmp_path):
    """An experiment setting only moco.queue_size used to drop config.yaml's moco.momentum
    (0.99) for the stage default (0.999): the override replaced the whole `moco` mapping."""
    override = _write(
        tmp_path, {"experiments": {"contextual": {"pretrain": {"moco": {"queue_size": 2048}}}}}
    )
    out = run_snakemake(workflow_copy, "-n", "-p", "--configfile", override).stdout
    cfgs = {}
    for m in re.finditer(r"oacl pretrain --cfg '(\{.*?\})'", out):
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
        for kind in ("logs", "benchmarks"):
            for path in re.findall(rf'"(results/{kind}/[^"]*)"', body):
                assert re.match(rf"results/{kind}/{rule}[/.]", path), (rule, path)
    cam = rules["cam"]
    assert '"oacl cam ' in cam and '"results/cam/' in cam and 'res("cam", ' in cam
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
