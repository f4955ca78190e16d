"""`oacl pretrain` end to end on a tiny manifest: outputs, variants and user errors."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest
import torch
from _pretrain_data import TINY, make_manifest, one_thread

from oacl.artifacts import BOX_SCHEMA, read_manifest, write_manifest, write_rows
from oacl.cli import main
from oacl.models import load_checkpoint

_threads = pytest.fixture(autouse=True)(one_thread)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return make_manifest(tmp_path_factory.mktemp("data"), n_train=32, n_val=16)


def _run(args, cfg):
    return main(["pretrain", "--cfg", json.dumps(cfg), *map(str, args), "--device", "cpu"])


def test_pretrain_writes_model_metrics_and_state(tmp_path, manifest, caplog):
    out = tmp_path / "moco-baseline-s0" / "model.pt"
    with caplog.at_level(logging.INFO, logger="oacl.train"):
        assert _run(["--manifest", manifest, "--out", out], dict(TINY, method="moco")) == 0
    model = load_checkpoint(out)
    assert model.meta["method"] == "moco" and model.meta["epoch"] == 2
    assert model.meta["image_size"] == 32 and model.meta["num_classes"] == 4
    z = model.projector(model.encoder(torch.randn(2, 3, 32, 32)))
    torch.testing.assert_close(z.norm(dim=1), torch.ones(2))
    rows = [json.loads(x) for x in (out.parent / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    for r in rows:
        assert r["loss"] > 0 and r["img_per_s"] > 0 and r["time_s"] > 0
        assert 0.0 <= r["knn_acc"] <= 1.0
    assert rows[1]["lr"] < rows[0]["lr"]  # cosine schedule
    assert (out.parent / "train_state.pt").exists()
    # stderr is not a TTY under pytest: plain progress lines every log_every steps
    assert any("img/s" in m and "eta" in m for m in caplog.messages)


@pytest.mark.parametrize(
    "method,variant", [("byol", "oa_crop_gt"), ("supervised", "baseline"), ("moco", "cutmix")]
)
def test_other_methods_and_variants(tmp_path, manifest, method, variant):
    out = tmp_path / "m" / "model.pt"
    cfg = dict(TINY, method=method, variant=variant, epochs=1, knn_every=0)
    assert _run(["--manifest", manifest, "--out", out], cfg) == 0
    model = load_checkpoint(out)
    assert model.meta["method"] == method and model.meta["variant"] == variant
    assert hasattr(model, "classifier") == (method == "supervised")


def test_adam_trains_and_its_state_is_saved(tmp_path, manifest):
    """optimizer adam (the supervised control's): Adam moments in train_state.pt, and the
    run is not the SGD run."""
    models = {}
    for opt in ("sgd", "adam"):
        out = tmp_path / opt / "model.pt"
        cfg = dict(TINY, method="supervised", optimizer=opt, base_lr=0.002, epochs=1, knn_every=0)
        assert _run(["--manifest", manifest, "--out", out], cfg) == 0
        state = torch.load(out.parent / "train_state.pt", weights_only=True)["optimizer"]
        assert ("exp_avg" in state["state"][0]) == (opt == "adam")
        models[opt] = load_checkpoint(out).classifier.weight
    assert not torch.equal(models["sgd"], models["adam"])


def test_oa_crop_cam_reads_box_shards(tmp_path, manifest, capsys):
    df = read_manifest(manifest)
    shard = tmp_path / "boxes_0.parquet"
    rows = [
        dict(
            image_id=i,
            boxes=[[0.1, 0.1, 0.6, 0.6]],
            n_boxes=1,
            height=8,
            width=8,
            mask_png=b"",
            bg_rect=[0.6, 0.6, 1.0, 1.0],
            empty=False,
            params="{}",
        )
        for i in df["image_id"]
    ]
    write_rows(shard, rows, BOX_SCHEMA)
    cfg = dict(TINY, variant="oa_crop_cam", epochs=1, knn_every=0)
    out = tmp_path / "cam" / "model.pt"
    assert _run(["--manifest", manifest, "--out", out], cfg) == 2
    assert "needs box shards (--boxes)" in capsys.readouterr().err
    assert _run(["--manifest", manifest, "--out", out, "--boxes", shard], cfg) == 0
    assert load_checkpoint(out).meta["variant"] == "oa_crop_cam"


def test_user_errors(tmp_path, manifest, capsys):
    out = tmp_path / "x" / "model.pt"

    def err(args, cfg):
        assert _run(args, cfg) == 2
        return capsys.readouterr().err

    assert "manifest not found" in err(
        ["--manifest", tmp_path / "nope.parquet", "--out", out], TINY
    )
    msg = err(["--manifest", manifest, "--out", out], dict(TINY, batch_size=64))
    assert "batch_size 64 is larger than the train split" in msg and "(32 images)" in msg
    assert "moco.queue_size 40 must be a multiple" in err(
        ["--manifest", manifest, "--out", out], dict(TINY, moco={"queue_size": 40})
    )
    assert "optimizer must be one of sgd, adam, got 'lbfgs'" in err(
        ["--manifest", manifest, "--out", out], dict(TINY, optimizer="lbfgs")
    )
    assert "unknown key 'lr'" in err(["--manifest", manifest, "--out", out], dict(TINY, lr=0.1))
    assert "unknown key 'queue'" in err(
        ["--manifest", manifest, "--out", out], dict(TINY, moco={"queue": 5})
    )
    only_val = tmp_path / "val_only.parquet"
    df = read_manifest(manifest)
    write_manifest(only_val, df[df["split"] == "val"].assign(path=df["abspath"]))
    assert "no train rows" in err(["--manifest", only_val, "--out", out], TINY)
    assert not out.exists()


@pytest.mark.parametrize("epochs", [0, -1, 1.5, "2"])
def test_a_job_that_would_train_zero_steps_fails(tmp_path, manifest, capsys, epochs):
    """epochs <= 0 used to write an untrained model.pt and exit 0 (then evaluated as real)."""
    out = tmp_path / "model.pt"
    assert _run(["--manifest", manifest, "--out", out], dict(TINY, epochs=epochs)) == 2
    assert "epochs" in capsys.readouterr().err
    assert not out.exists()


def _box_shards(tmp_path, df, n=2):
    """The box shards of a CAM run over every row (train and val), split like the cam rule."""
    paths = []
    ids = list(df["image_id"])
    for k in range(n):
        part = ids[k * len(ids) // n : (k + 1) * len(ids) // n]
        rows = [
            dict(
                image_id=i,
                boxes=[] if i == "train/5" else [[0.1, 0.1, 0.6, 0.6]],  # one empty CAM
                n_boxes=0 if i == "train/5" else 1,
                height=8,
                width=8,
                mask_png=b"",
                bg_rect=[0.6, 0.6, 1.0, 1.0],
                empty=i == "train/5",
                params="{}",
            )
            for i in part
        ]
        paths.append(tmp_path / f"boxes_{k}.parquet")
        write_rows(paths[-1], rows, BOX_SCHEMA)
    return paths


def test_cam_variant_reads_every_shard_and_records_its_coverage(tmp_path, manifest, capsys):
    """Two shards as the workflow passes them: every training image from the shard that
    holds it (metrics.jsonl side_info); one of the two: an error before training."""
    df = read_manifest(manifest)
    shards = _box_shards(tmp_path, df)
    cfg = dict(TINY, variant="oa_crop_cam", knn_every=0)
    out = tmp_path / "cam" / "model.pt"
    assert _run(["--manifest", manifest, "--out", out, "--boxes", shards[1]], cfg) == 2
    err = capsys.readouterr().err
    n_train = int((df["split"] == "train").sum())
    in_1 = sum(1 for i in pd.read_parquet(shards[1])["image_id"] if i.startswith("train/"))
    assert f"{n_train - in_1} of {n_train} training images have no boxes in any box shard" in err
    assert f"{shards[1]} (boxes): {in_1} of the {n_train} training images" in err
    assert not out.parent.exists()  # failed before training: no state, no metrics

    assert _run(["--manifest", manifest, "--out", out, "--boxes", *shards], cfg) == 0
    rows = [json.loads(x) for x in (out.parent / "metrics.jsonl").read_text().splitlines()]
    cov = rows[0]["side_info"]
    assert all("side_info" not in r for r in rows[1:])  # recorded once, on the first line
    assert cov["images"] == n_train and cov["missing"] == {"boxes": 0}
    for rec, path in zip(cov["shards"], shards):
        train_ids = [i for i in pd.read_parquet(path)["image_id"] if i.startswith("train/")]
        assert rec["shard"] == str(path) and rec["train_images"] == len(train_ids)
    assert sum(r["train_images"] for r in cov["shards"]) == n_train
    assert cov["empty"] == {"boxes": 1} and cov["empty_images"] == 1  # train/5's empty CAM


def test_gt_variant_without_ground_truth_fails_before_training(tmp_path, manifest, capsys):
    """The tiny manifest has no GT masks: BG-HardMix (GT) would never mix."""
    out = tmp_path / "gt" / "model.pt"
    cfg = dict(TINY, variant="bg_hardmix_gt")
    assert _run(["--manifest", manifest, "--out", out], cfg) == 2
    err = capsys.readouterr().err
    assert "32 of 32 training images (100.0%) have empty side information" in err
    assert "side_info_max_empty = 0.05" in err and not out.parent.exists()


def test_the_thread_tuner_runs_only_when_asked(tmp_path, manifest):
    # the default keeps its thread count (bitwise reproducible); "auto" records the tuner's
    torch.set_num_threads(2)  # the tuner needs a count to lower (one_thread restores it)
    for threads in (None, "auto"):
        out = tmp_path / str(threads) / "model.pt"
        cfg = dict(TINY, method="moco", epochs=1, knn_every=0, threads=threads)
        assert _run(["--manifest", manifest, "--out", out], cfg) == 0
        row = json.loads((out.parent / "metrics.jsonl").read_text().splitlines()[-1])
        assert ("threads" in row) == (threads == "auto"), row
