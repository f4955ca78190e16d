import base64
import re
import shutil

import numpy as np
import pytest
from test_refine_cli import H, W, make_data

from oacl.cli import main
from oacl.io import decode_png
from oacl.overlay import gallery_ids
from oacl.refine.shard import refine_shard


@pytest.fixture()
def results(tmp_path):
    """A results/ tree in the workflow layout with one mask shard and its box shard."""
    manifest, masks = make_data(tmp_path / "src")
    root = tmp_path / "results"
    data = root / "data" / "toy"
    data.mkdir(parents=True)
    shutil.copy(manifest, data / "manifest.parquet")
    shutil.copytree(tmp_path / "src" / "img", data / "img")
    cam = root / "cam" / "toy" / "moco-baseline-s0" / "default"
    cam.mkdir(parents=True)
    shutil.copy(masks, cam / "masks_0.parquet")
    box = root / "refine" / "toy" / "moco-baseline-s0" / "default" / "boxes_0.parquet"
    refine_shard(
        {"crf": False, "work_size": 64}, data / "manifest.parquet", cam / "masks_0.parquet", box
    )
    return root


def test_inspect_from_results_dir(results, tmp_path):
    out = tmp_path / "o.png"
    assert (
        main(["inspect", str(results), "--image-id", "one", "--out", str(out), "--size", "128"])
        == 0
    )
    img = decode_png(out.read_bytes())
    # shorter side 48 px upscaled to 128: 3 panels of 213 px + 2 gaps, plus header
    pw = round(W * 128 / H)
    assert img.shape == (24 + 128, 3 * pw + 8, 3)
    # green box pixels in the first panel, cyan background rectangle in the third
    first, third = img[24:, :pw], img[24:, 2 * pw + 8 :]
    assert ((first == (0, 220, 0)).all(axis=2)).sum() > 50
    assert ((third == (0, 230, 255)).all(axis=2)).sum() > 50
    # the heat-map panel differs from the plain image where the CAM is hot
    assert not np.array_equal(img[24:, pw + 4 : 2 * pw + 4], first)


def test_inspect_from_shard_files(results, tmp_path):
    masks = next(results.glob("cam/*/*/*/masks_0.parquet"))
    boxes = next(results.glob("refine/*/*/*/boxes_0.parquet"))
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert main(["inspect", str(masks), "--image-id", "two", "--out", str(a)]) == 0
    assert main(["inspect", str(boxes), "--image-id", "two", "--out", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()  # same counterparts found from either shard
    c = tmp_path / "c.png"
    manifest = results / "data" / "toy" / "manifest.parquet"
    assert (
        main(
            [
                "inspect",
                "--manifest",
                str(manifest),
                "--masks",
                str(masks),
                "--image-id",
                "two",
                "--out",
                str(c),
            ]
        )
        == 0
    )
    assert c.exists()


def test_inspect_gallery_and_errors(results, tmp_path, capsys):
    out = tmp_path / "g.html"
    assert main(["inspect", str(results), "--gallery", "3", "--out", str(out)]) == 0
    page = out.read_text()
    pngs = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert len(pngs) == 3
    assert decode_png(base64.b64decode(pngs[0])).ndim == 3
    assert gallery_ids(["d", "a", "c", "b", "e"], 3) == ["a", "c", "e"]
    assert (
        main(["inspect", str(results), "--image-id", "nope", "--out", str(tmp_path / "x.png")]) == 2
    )
    assert "nope" in capsys.readouterr().err
    assert (
        main(
            [
                "inspect",
                str(tmp_path / "missing"),
                "--image-id",
                "one",
                "--out",
                str(tmp_path / "x.png"),
            ]
        )
        == 2
    )


def test_inspect_from_a_cam_or_refine_folder(results, tmp_path):
    """The README's `oacl inspect results/refine/<ds>/<model>/<cam> ...` used to fail with
    "no mask shards under .../<cam>/cam/"."""
    ref = tmp_path / "ref.png"
    assert main(["inspect", str(results), "--image-id", "two", "--out", str(ref)]) == 0
    for stage in ("refine", "cam"):
        folder = results / stage / "toy" / "moco-baseline-s0" / "default"
        out = tmp_path / f"{stage}.png"
        assert main(["inspect", str(folder), "--image-id", "two", "--out", str(out)]) == 0
        assert out.read_bytes() == ref.read_bytes()
        page = tmp_path / f"{stage}.html"
        assert main(["inspect", str(folder), "--gallery", "2", "--out", str(page)]) == 0
        assert page.read_text().count("data:image/png;base64,") == 2


@pytest.mark.parametrize("how", ["file", "folder", "results"])
def test_truncated_shard_is_named(results, tmp_path, capsys, how):
    """Issue 28: a truncated shard gives an error naming the file, not only pyarrow's
    "Parquet magic bytes not found"."""
    masks = next(results.glob("cam/*/*/*/masks_0.parquet"))
    masks.write_bytes(masks.read_bytes()[:100])
    src = {"file": masks, "folder": masks.parent, "results": results}[how]
    out = tmp_path / "x.png"
    assert main(["inspect", str(src), "--image-id", "one", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(masks) in err and "not a readable Parquet file" in err, err


def test_stale_shards_of_a_run_with_more_shards_are_removed(results, tmp_path, capsys):
    """Issue 28: after a 2-shard run, a 1-shard run leaves no masks_1 / boxes_1 for inspect
    or a DuckDB glob to read beside its own shard."""
    cam = next(results.glob("cam/*/*/*"))
    ref = results / "refine" / cam.relative_to(results / "cam")
    manifest = results / "data" / "toy" / "manifest.parquet"
    for stale in (cam / "masks_1.parquet", cam / "masks_12.parquet"):
        shutil.copy(cam / "masks_0.parquet", stale)  # a stale shard: the same image_ids
    shutil.copy(ref / "boxes_0.parquet", ref / "boxes_1.parquet")
    out = tmp_path / "x.png"
    assert main(["inspect", str(cam), "--image-id", "one", "--out", str(out)]) == 2
    assert "is in two mask shards" in capsys.readouterr().err  # readers refuse duplicates
    args = ["refine", "--cfg", '{"crf": false, "work_size": 64}', "--manifest", str(manifest)]
    args += ["--masks", str(cam / "masks_0.parquet"), "--out", str(ref / "boxes_0.parquet")]
    assert main([*args, "--n-shards", "1"]) == 0
    assert sorted(p.name for p in ref.iterdir()) == ["boxes_0.parquet"]
    # the CAM stage does the same for masks (shared helper, as oacl.cam.run calls it)
    from oacl.artifacts import remove_stale_shards

    remove_stale_shards(cam / "masks_0.parquet", 1)
    assert sorted(p.name for p in cam.iterdir()) == ["masks_0.parquet"]
    assert main(["inspect", str(cam), "--image-id", "one", "--out", str(out)]) == 0
    # a name off the <prefix>_<i>.parquet pattern, or i >= n_shards, removes nothing
    shutil.copy(cam / "masks_0.parquet", cam / "masks_1.parquet")
    assert remove_stale_shards(cam / "all.parquet", 1) == []
    assert remove_stale_shards(cam / "masks_3.parquet", 2) == []
    assert (cam / "masks_1.parquet").exists()
