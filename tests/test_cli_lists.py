"""List-valued options of every `oacl` stage keep every value.

`--boxes S0 --boxes S1` used to leave only S1 (argparse's nargs without action="extend"
keeps the last occurrence), so CAM-guided pretraining read one shard of two. Now every
list option accumulates, and the workflow's commands, as Snakemake writes them, hand
every shard to the stage that reads them.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
from pathlib import Path

import pytest
from conftest import REPO, copy_workflow, run_snakemake

from oacl.cli import build_parser, main

N_SHARDS = 3


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                for sub_name, subsub in _subparsers(sub):
                    yield f"{name} {sub_name}", subsub


def list_options():
    """{(command, option): action} of every optional argument that takes a list."""
    out = {}
    for name, sub in _subparsers(build_parser()):
        for action in sub._actions:
            if action.option_strings and action.nargs in ("*", "+"):
                out[(name, action.option_strings[0])] = action
    return out


def test_every_list_option_accumulates_repeated_flags():
    opts = list_options()
    expected = {
        ("pretrain", "--boxes"),
        ("pretrain", "--masks"),
        ("evaluate localization", "--masks"),
        ("evaluate localization", "--boxes"),
        ("inspect", "--masks"),
        ("inspect", "--boxes"),
        ("report", "--inputs"),
    }
    assert expected <= set(opts), sorted(opts)
    plain = [k for k, a in opts.items() if not isinstance(a, argparse._ExtendAction)]
    assert not plain, f"list options that keep only their last occurrence: {plain}"


@pytest.mark.parametrize(
    "head",
    [
        ["pretrain", "--manifest", "m.parquet", "--out", "o/model.pt"],
        ["evaluate", "localization", "--manifest", "m.parquet", "--out", "o.json", "--masks", "x"],
        ["inspect", "--out", "o.png"],
    ],
    ids=lambda h: h[0] if h[0] != "evaluate" else "localization",
)
def test_repeated_flags_and_one_flag_with_values_agree(head):
    parse = build_parser().parse_args
    base = parse(head)
    one = parse([*head, "--boxes", "b0", "b1", "b2"])
    rep = parse([*head, "--boxes", "b0", "--boxes", "b1", "--boxes", "b2"])
    mixed = parse([*head, "--boxes", "b0", "b1", "--boxes", "b2"])
    start = list(base.boxes or [])  # none by default
    assert one.boxes == rep.boxes == mixed.boxes == [*start, "b0", "b1", "b2"]


def test_report_inputs_accumulate():
    parse = build_parser().parse_args
    a = parse(["report", "--out", "r.html", "--inputs", "a", "b", "--inputs", "c"])
    assert a.inputs == ["a", "b", "c"]
    assert parse(["report", "--out", "r.html"]).inputs is None  # everything on disk


def test_ddp_relaunch_passes_every_shard(monkeypatch):
    """`--nproc 2` re-runs the command under torchrun: the children parse the same shards."""
    from oacl.train import dist

    seen = []
    monkeypatch.setattr(dist, "under_torchrun", lambda: False)
    monkeypatch.setattr(dist, "relaunch", lambda argv, nproc: seen.append(argv) or 0)
    argv = ["pretrain", "--cfg", json.dumps({"gpus": 0}), "--manifest", "m.parquet"]
    argv += ["--out", "o/model.pt", "--device", "cpu", "--nproc", "2"]
    argv += ["--boxes", "b0", "--boxes", "b1", "b2", "--masks", "m0", "--masks", "m1"]
    assert main(argv) == 0
    child = build_parser().parse_args(seen[0])
    assert child.boxes == ["b0", "b1", "b2"] and child.masks == ["m0", "m1"]


# --------------------------------------------------------------- the workflow's commands


@pytest.fixture(scope="module")
def planned_commands(tmp_path_factory):
    """{rule-ish command: [parsed args]} of a dry run of the smoke config with 3 shards:
    every `oacl` command Snakemake would run, as printed (`-p`), parsed by oacl's parser."""
    wf = copy_workflow(tmp_path_factory.mktemp("lists"))
    extra = wf / "shards.yaml"
    extra.write_text(f"cam:\n  n_shards: {N_SHARDS}\n")
    smoke = str(REPO / "workflow" / "configs" / "smoke.yaml")
    out = run_snakemake(wf, "-n", "-p", "--configfile", smoke, str(extra)).stdout
    parser = build_parser()
    cmds = {}
    for line in out.splitlines():
        m = re.match(r"\s*(?:Shell command:\s*)?(oacl .*)$", line)
        if not m:
            continue
        argv = shlex.split(m[1])[1:]
        argv = argv[: argv.index(">")] if ">" in argv else argv  # the log redirection
        args = parser.parse_args(argv)
        key = " ".join(argv[:2]) if argv[0] == "evaluate" else argv[0]
        cmds.setdefault(key, []).append(args)
    return cmds


def _all_shards(paths, stem):
    """The paths are the N_SHARDS shards of one CAM run: one folder, stem_0 .. stem_N-1."""
    paths = [Path(p) for p in paths]
    assert len({p.parent for p in paths}) == 1, paths
    assert sorted(p.name for p in paths) == sorted(
        f"{stem}_{i}.parquet" for i in range(N_SHARDS)
    ), paths


def test_pretrain_commands_pass_every_shard(planned_commands):
    cam_variants = {}
    for args in planned_commands["pretrain"]:
        variant = json.loads(args.cfg)["variant"]
        if variant.endswith("_cam"):
            cam_variants[variant] = args
            _all_shards(args.boxes, "boxes")
            if variant == "bg_mixup_cam":
                _all_shards(args.masks, "masks")
            else:
                assert args.masks == []
        else:
            assert args.boxes == [] and args.masks == []
    assert set(cam_variants) == {"oa_crop_cam", "bg_mixup_cam"}  # smoke.yaml's CAM variants


def test_localization_commands_pass_every_shard(planned_commands):
    runs = planned_commands["evaluate localization"]
    assert len(runs) == 2
    for args in runs:
        _all_shards(args.masks, "masks")
        _all_shards(args.boxes, "boxes")


def test_refine_jobs_cover_every_mask_shard(planned_commands):
    by_run = {}
    for args in planned_commands["refine"]:
        assert isinstance(args.masks, str)  # one shard per job
        by_run.setdefault(str(Path(args.masks).parent), []).append(args.masks)
    assert by_run
    for shards in by_run.values():
        _all_shards(shards, "masks")


def test_report_reads_every_shard(planned_commands):
    (args,) = planned_commands["report"]
    shards = [p for p in args.inputs if p.endswith(".parquet")]
    runs = {}
    for p in shards:
        runs.setdefault((str(Path(p).parent), Path(p).name.split("_")[0]), []).append(p)
    assert len(runs) >= 4  # masks and boxes of at least two CAM runs
    for (_, stem), paths in runs.items():
        _all_shards(paths, stem)
