"""Manifest -> dataset -> loader: items, fallbacks for empty side information (absent is an
error), deterministic resumable sharded order."""

import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from oacl.artifacts import (
    BOX_SCHEMA,
    MASK_SCHEMA,
    read_boxes,
    read_manifest,
    read_masks,
    write_manifest,
    write_rows,
)
from oacl.io import encode_png, write_bytes
from oacl.train import data as D


def _write_set(tmp_path, n=12, jpeg_every=3):
    import cv2

    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        h, w = 30 + 2 * i, 48
        img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        if jpeg_every and i % jpeg_every == 0:
            name = f"img{i}.jpg"
            ok, buf = cv2.imencode(".jpg", img[:, :, ::-1])
            write_bytes(tmp_path / name, buf.tobytes())
        else:
            name = f"img{i}.png"
            write_bytes(tmp_path / name, encode_png(img))
        m = np.zeros((h, w), np.uint8)
        m[: h // 2, : w // 2] = 255  # object top-left; background = right half / bottom
        write_bytes(tmp_path / f"m{i}.png", encode_png(m))
        rows.append(
            dict(
                image_id=f"id{i}",
                path=name,
                split="train",
                variant="original",
                scene_id=i,
                width=w,
                height=h,
                label=i % 4,
                labels=[i % 4],
                bg_label=0,
                boxes=[[0.0, 0.0, 0.5, 0.5]] * (i % 3),
                box_labels=[0] * (i % 3),
                mask_path=f"m{i}.png",
            )
        )
    write_manifest(tmp_path / "manifest.parquet", pd.DataFrame(rows))
    return read_manifest(tmp_path / "manifest.parquet")


@pytest.fixture
def df(tmp_path):
    return _write_set(tmp_path)


def test_items_and_collate(df):
    ds = D.ManifestImages(df, 32)
    it = ds[4]
    assert it["image"].shape == (3, 32, 32) and it["image"].dtype == torch.uint8
    assert it["label"].dtype == torch.int64 and int(it["label"]) == 0 and int(it["index"]) == 4
    assert it["orig_hw"].tolist() == [38.0, 48.0]
    assert it["boxes"].shape == (1, 4) and "mask" not in it and "bg" not in it
    batch = D.collate([ds[i] for i in range(3)])  # 0, 1, 2 boxes
    assert batch["boxes"].shape == (3, 2, 4) and batch["n_boxes"].tolist() == [0, 1, 2]
    assert torch.equal(batch["boxes"][1, 1], torch.zeros(4))  # padding
    assert batch["image"].shape == (3, 3, 32, 32)
    # squash: the stored image is the whole original resized, so a pixel block maps back
    import cv2

    from oacl.io import read_rgb

    ref = cv2.resize(read_rgb(df["abspath"][1]), (32, 32), interpolation=cv2.INTER_AREA)
    assert np.array_equal(ds[1]["image"].permute(1, 2, 0).numpy(), ref)


def test_cam_boxes_masks_and_missing_fallbacks(df, tmp_path):
    box_rows, mask_rows = [], []
    for i in range(1, 12):  # id0 has neither boxes nor mask
        box_rows.append(
            dict(
                image_id=f"id{i}",
                boxes=[[0.1, 0.1, 0.4, 0.6]],
                n_boxes=1,
                height=8,
                width=8,
                mask_png=encode_png(np.zeros((8, 8), np.uint8)),
                bg_rect=None if i == 5 else [0.5, 0.5, 1.0, 1.0],
                empty=False,
                params="{}",
            )
        )
        m = np.full((10, 10), 128, np.uint8)
        mask_rows.append(
            dict(
                image_id=f"id{i}",
                height=10,
                width=10,
                orig_height=1,
                orig_width=1,
                mask_png=encode_png(m),
                params="{}",
            )
        )
    write_rows(tmp_path / "b.parquet", box_rows, BOX_SCHEMA)
    write_rows(tmp_path / "m.parquet", mask_rows, MASK_SCHEMA)
    boxes, masks = read_boxes(tmp_path / "b.parquet"), read_masks(tmp_path / "m.parquet")
    # an image absent from the side information is an error, not a fallback
    with pytest.raises(ValueError, match=r"missing for 1 of 12 images .*'id0'"):
        D.ManifestImages(df, 16, boxes=boxes, masks=masks, variant="bg_mixup_cam")
    # present but empty: id0 has no box and no mask, id0 and id5 no background rectangle
    boxes["id0"] = dict(boxes["id1"], image_id="id0", boxes=[], n_boxes=0, bg_rect=None)
    masks["id0"] = None
    ds = D.ManifestImages(df, 16, boxes=boxes, masks=masks, variant="bg_mixup_cam")
    assert not ds.missing
    it = ds[(1, 0)]
    assert it["mask"].shape == (1, 16, 16) and torch.allclose(it["mask"], torch.tensor(128 / 255))
    assert torch.equal(ds[(0, 1)]["mask"], torch.ones(1, 16, 16))  # no mask -> no mix
    assert ds[0]["boxes"].shape == (0, 4)  # no boxes -> whole image later
    # background: tiled bottom-right quarter of the partner
    img3 = ds.load_image(3)[0]
    bg = ds[(1, 3)]["bg"].permute(1, 2, 0).numpy()
    q = img3[8:, 8:]
    assert np.array_equal(bg[:8, :8], q) and np.array_equal(bg[8:, 8:], q)
    assert np.array_equal(
        ds[(1, 5)]["bg"].permute(1, 2, 0).numpy(), ds.load_image(5)[0]
    )  # fallback
    with pytest.raises(ValueError, match="box shards"):
        D.ManifestImages(df, 16, variant="oa_crop_cam")
    with pytest.raises(ValueError, match="mask shards"):
        D.ManifestImages(df, 16, boxes=boxes, variant="bg_mixup_cam")
    oa = D.ManifestImages(df, 16, boxes=boxes, variant="oa_crop_cam")
    assert oa[2]["boxes"].tolist() == [pytest.approx([0.1, 0.1, 0.4, 0.6])]


def test_gt_variants(df):
    ds = D.ManifestImages(df, 16, variant="bg_hardmix_gt")
    it = ds[(2, 3)]
    m = it["mask"][0]
    assert (
        set(m.unique().tolist()) <= {0.0, 1.0} and m[:4, :4].min() == 1 and m[12:, 12:].max() == 0
    )
    # background from the partner's GT mask: the largest zero rectangle, tiled
    assert it["bg"].shape == (3, 16, 16)
    assert D.ManifestImages(df, 16, variant="oa_crop_gt")[2]["boxes"].shape == (2, 4)


def test_largest_zero_rect_matches_brute_force():
    rng = np.random.default_rng(1)
    for _ in range(30):
        H, W = rng.integers(1, 8, 2)
        m = rng.random((H, W)) < 0.35
        best = 0
        for y1, y2 in itertools.combinations(range(H + 1), 2):
            for x1, x2 in itertools.combinations(range(W + 1), 2):
                if not m[y1:y2, x1:x2].any():
                    best = max(best, (y2 - y1) * (x2 - x1))
        r = D.largest_zero_rect(m)
        if best == 0:
            assert r is None
            continue
        x1, y1, x2, y2 = round(r[0] * W), round(r[1] * H), round(r[2] * W), round(r[3] * H)
        assert not m[y1:y2, x1:x2].any() and (y2 - y1) * (x2 - x1) == best


def _batches(loader):
    return [b["index"].tolist() for b in loader]


def test_loader_order_resume_and_sharding(df):
    ds = D.ManifestImages(df, 8)
    full = _batches(D.build_loader(ds, 4, 0, True, False, seed=3, epoch=1))
    assert sorted(sum(full, [])) == list(range(12)) and len(full) == 3
    assert full == _batches(D.build_loader(ds, 4, 0, True, False, seed=3, epoch=1))
    assert full != _batches(D.build_loader(ds, 4, 0, True, False, seed=3, epoch=2))
    assert _batches(D.build_loader(ds, 4, 0, False, False)) == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [8, 9, 10, 11],
    ]
    # resume mid-epoch: exactly the remaining batches
    for k in range(4):
        ld = D.build_loader(ds, 4, 0, True, False, seed=3, epoch=1, start_batch=k)
        assert _batches(ld) == full[k:] and len(ld) == len(full) - k
    # drop_last and a short last batch
    odd = _batches(D.build_loader(ds, 5, 0, True, False, seed=3))
    assert [len(b) for b in odd] == [5, 5, 2]
    assert [len(b) for b in _batches(D.build_loader(ds, 5, 0, True, True, seed=3))] == [5, 5]
    # DDP: each rank takes its slice of every global batch
    shards = [
        _batches(
            D.build_loader(ds, 4, 0, True, False, seed=3, epoch=1, start_batch=1, rank=r, world=2)
        )
        for r in range(2)
    ]
    assert [a + b for a, b in zip(*shards)] == full[1:]
    with pytest.raises(ValueError, match="divisible"):
        D.build_loader(ds, 5, 0, True, False, world=2)


def test_workers_give_the_same_batches(df):
    ds = D.ManifestImages(df, 8, variant="bg_hardmix_gt")
    a = list(D.build_loader(ds, 4, 0, True, False, seed=1))
    b = list(D.build_loader(ds, 4, 2, True, False, seed=1))
    for x, y in zip(a, b):
        assert set(x) == set(y) and all(torch.equal(x[k], y[k]) for k in x)
    # background partners are other samples
    sampler = D.GlobalBatchSampler(12, 4, True, False, seed=1, partners=True)
    pairs = sum(sampler.global_batches(), [])
    assert all(i != j for i, j in pairs)


def test_persistent_loader_moved_epoch_by_epoch_gives_the_fresh_loaders_batches(df):
    """The training loop keeps one loader (workers start once) and moves it with
    set_position: every epoch, and a resumed start mid-epoch, match a new loader."""
    ds = D.ManifestImages(df, 8, variant="bg_hardmix_gt")
    kept = D.build_loader(ds, 4, 2, True, False, seed=1, persistent=True)
    assert kept.persistent_workers
    for epoch, start in ((0, 0), (1, 0), (2, 1), (3, 0)):
        D.set_position(kept, epoch, start)
        fresh = list(D.build_loader(ds, 4, 0, True, False, seed=1, epoch=epoch, start_batch=start))
        got = list(kept)
        assert len(got) == len(fresh) > 0
        for x, y in zip(got, fresh):
            assert all(torch.equal(x[k], y[k]) for k in x)


def test_decode_on_device_cpu_matches_cpu_path(df):
    ref = D.ManifestImages(df, 24)
    raw = D.ManifestImages(df, 24, decode="device")
    rb = D.collate([ref[i] for i in range(6)])
    xb = D.decode_on_device(D.collate([raw[i] for i in range(6)]), 24, "cpu")
    assert xb["image"].shape == rb["image"].shape and xb["image"].dtype == torch.uint8
    assert torch.equal(xb["orig_hw"], rb["orig_hw"])
    # different resamplers (OpenCV area vs antialiased bilinear): close, not identical
    assert (xb["image"].float() - rb["image"].float()).abs().mean() < 12
    # through worker processes (one flat byte tensor per batch)
    for b in D.build_loader(raw, 4, 2, False, False):
        dec = D.decode_on_device(b, 24, "cpu")
        assert torch.equal(
            dec["image"],
            D.decode_on_device(D.collate([raw[int(i)] for i in b["index"]]), 24, "cpu")["image"],
        )
    with pytest.raises(ValueError, match="not supported"):
        D.ManifestImages(df, 24, variant="bg_hardmix_gt", decode="device")
