"""prepare(): dispatch on the dataset type, reader interface, errors, CLI."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from oacl.artifacts import read_manifest
from oacl.cli import main
from oacl.data.prepare import known_types, prepare

TINY = {"type": "scenes", "n_train": 12, "n_val": 4, "n_test": 4, "workers": 1}


def test_unknown_type_names_it_and_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match=r"unknown dataset type 'imagenet_21k'.*scenes, folder"):
        prepare({"type": "imagenet_21k"}, tmp_path)
    with pytest.raises(ValueError, match="unknown dataset type"):
        prepare({"type": "../etc"}, tmp_path)
    with pytest.raises(ValueError, match="needs a 'type'"):
        prepare({"n_train": 3}, tmp_path)
    assert known_types()[:2] == ["scenes", "folder"]


def test_scenes_and_folder_dispatch(tmp_path):
    df = read_manifest(prepare(TINY, tmp_path / "s", progress=False))
    assert (df["split"] == "train").sum() == 12 and (df["variant"] == "mixed_rand").sum() == 4
    with pytest.raises(ValueError, match="unknown key 'n_trian'"):
        prepare({**TINY, "n_trian": 5}, tmp_path / "s2")
    img = tmp_path / "imgs/train/a/x.png"
    img.parent.mkdir(parents=True)
    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(img)
    df = read_manifest(
        prepare({"type": "folder", "root": str(tmp_path / "imgs")}, tmp_path / "f", progress=False)
    )
    assert list(df["image_id"]) == ["train/a/x.png"] and df["abspath"][0] == str(img)


@pytest.fixture()
def fake_reader(monkeypatch):
    """A reader module oacl.data.readers.fake_rd following the reader interface."""
    calls = []

    def build(params, out_dir):
        calls.append((params, out_dir))
        if params["broken"]:
            return [{"image_id": "x"}]
        return pd.DataFrame(
            {
                "image_id": ["a", "b"],
                "path": ["/d/a.jpg", "/d/b.jpg"],
                "split": ["train", "val"],
                "width": [5, 6],
                "height": [7, 8],
                "label": [3, -1],
            }
        )

    mod = types.ModuleType("oacl.data.readers.fake_rd")
    mod.DEFAULTS = {"type": "fake_rd", "root": "", "broken": False}
    mod.build = build
    if "oacl.data.readers" not in sys.modules:
        try:
            import oacl.data.readers  # noqa: F401  (another helper's package, if present)
        except ModuleNotFoundError:
            monkeypatch.setitem(
                sys.modules, "oacl.data.readers", types.ModuleType("oacl.data.readers")
            )
    monkeypatch.setitem(sys.modules, "oacl.data.readers.fake_rd", mod)
    return calls


def test_reader_rows_are_completed_and_written(fake_reader, tmp_path):
    path = prepare({"type": "fake_rd", "root": "/d"}, tmp_path / "r")
    assert path == tmp_path / "r/manifest.parquet"
    params, out = fake_reader[0]
    assert params == {"type": "fake_rd", "root": "/d", "broken": False} and out == tmp_path / "r"
    df = read_manifest(path)
    assert list(df["variant"]) == ["original"] * 2 and list(df["scene_id"]) == [-1, -1]
    assert [list(x) for x in df["labels"]] == [[3], []]
    assert all(len(b) == 0 for b in df["boxes"]) and list(df["mask_path"]) == ["", ""]
    with pytest.raises(ValueError, match="unknown key 'rooot'"):
        prepare({"type": "fake_rd", "rooot": "/d"}, tmp_path / "r2")
    with pytest.raises(TypeError, match="must return a pandas DataFrame"):
        prepare({"type": "fake_rd", "broken": True}, tmp_path / "r3")
    assert not (tmp_path / "r3/manifest.parquet").exists()


def test_cli_prepare_and_synth(tmp_path, capsys):
    out = tmp_path / "c"
    assert main(["data", "prepare", "--quiet", "--cfg", json.dumps(TINY), "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    assert (
        line.startswith(str(out / "manifest.parquet"))
        and "train 12" in line
        and "test/only_fg 4" in line
    )
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps({**TINY, "kind": "multi"}))
    assert (
        main(["data", "synth", "--quiet", "--cfg", str(cfg_file), "--out", str(tmp_path / "m")])
        == 0
    )
    assert "objcrop_train" in capsys.readouterr().out
    assert main(["data", "synth", "--cfg", '{"type": "folder"}', "--out", str(tmp_path / "x")]) == 2
    assert main(["data", "prepare", "--cfg", '{"type": "nope"}', "--out", str(tmp_path / "x")]) == 2
    assert "unknown dataset type 'nope'" in capsys.readouterr().err
