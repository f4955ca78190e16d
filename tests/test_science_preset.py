"""The science preset (workflow/configs/science.yaml) plans the fair localisation test:
MoCo over 3 seeds on both free-placement datasets, each seed scored by every CAM
configuration, the references and the positive control, with each experiment's own
pretrain overrides (a supervised and a MoCo baseline on one dataset included)."""

from __future__ import annotations

import json
import re
import shlex

import pytest
import yaml
from conftest import REPO, copy_workflow, run_snakemake

from oacl import configcheck
from oacl.params import deep_merge

SCIENCE = REPO / "workflow" / "configs" / "science.yaml"


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    """(dry-run stdout with commands, the merged config) of the science preset."""
    wf = copy_workflow(tmp_path_factory.mktemp("science"))
    out = run_snakemake(wf, "-n", "-p", "--configfile", str(SCIENCE)).stdout
    return out, configcheck.merge_configs([wf / "config.yaml", SCIENCE])


def _pretrain_cfgs(out: str) -> dict:
    """{output model path: --cfg of its planned `oacl pretrain` command}."""
    cfgs = {}
    for line in out.splitlines():
        m = re.match(r"\s*(?:Shell command:\s*)?(oacl pretrain .*)$", line)
        if m:
            argv = shlex.split(m[1])
            cfgs[argv[argv.index("--out") + 1]] = json.loads(argv[argv.index("--cfg") + 1])
    return cfgs


def test_science_preset_scores_every_seed_on_both_free_datasets(plan):
    out, cfg = plan
    for ds in ("scenes_free", "composite_free"):
        assert cfg["datasets"][ds]["placement"] == "free"
        loc = cfg["localization_tables"][ds]
        seeds = [m for m in loc["model"] if m.startswith("moco-baseline-")]
        assert len(seeds) == 3
        for model in seeds:
            for cam in ("iter1", "iter1_nonsr"):
                assert f"results/science/eval/{ds}/{model}/localization_{cam}.json" in out
        assert (
            f"results/science/eval/{ds}/supervised-baseline-s0/localization_classifier.json" in out
        )
    # the positive control: a classifier on scenes whose background ignores the class
    control = cfg["datasets"]["scenes_free_control"]
    assert control["bg_bias"] * control.get("n_bg_classes", 8) == pytest.approx(1.0)
    assert (
        "results/science/eval/scenes_free_control/supervised-baseline-s0/localization_classifier.json"
        in out
    )
    # the default run's files are not touched: everything but the sources in its own folder
    assert "results/data/" not in out and "results/models/" not in out


def test_each_experiment_gets_its_own_pretrain_overrides(plan):
    """Two experiments train a `baseline` on scenes_free (MoCo and supervised): each
    model's command carries its own experiment's overrides, not the first one's."""
    out, cfg = plan
    cfgs = _pretrain_cfgs(out)
    for name, exp in cfg["experiments"].items():
        for method in exp["methods"]:
            for seed in exp["seeds"]:
                for variant in exp["variants"]:
                    model = f"results/science/models/{exp['dataset']}/{method}-{variant}-s{seed}/model.pt"
                    got = cfgs[model]
                    want = deep_merge(cfg["pretrain"], exp.get("pretrain", {}))
                    for key, value in want.items():
                        assert got[key] == value, (name, model, key)


def test_overrides_follow_the_method_on_a_shared_dataset_and_variant(tmp_path):
    """A supervised baseline's own override reaches its command and not the MoCo
    baseline's (the first experiment training `baseline` on the dataset)."""
    extra = tmp_path / "sup_override.yaml"
    extra.write_text("experiments:\n  scenes_references:\n    pretrain: {epochs: 3}\n")
    wf = copy_workflow(tmp_path)
    out = run_snakemake(wf, "-n", "-p", "--configfile", str(SCIENCE), str(extra)).stdout
    cfgs = _pretrain_cfgs(out)
    models = "results/science/models/scenes_free"
    assert cfgs[f"{models}/supervised-baseline-s0/model.pt"]["epochs"] == 3
    assert cfgs[f"{models}/moco-baseline-s0/model.pt"]["epochs"] == 25


def test_a_listed_model_that_no_experiment_trains_is_named(tmp_path):
    cfg = yaml.safe_load(SCIENCE.read_text())
    cfg["localization_tables"]["scenes_free"]["model"].append("moco-baseline-s7")
    bad = tmp_path / "bad_science.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    wf = copy_workflow(tmp_path)
    proc = run_snakemake(wf, "-n", "--configfile", str(bad), check=False)
    assert proc.returncode != 0
    assert "localization_tables.scenes_free.model: 'moco-baseline-s7'" in proc.stdout + proc.stderr
