"""Training health records (oacl.train.health) and the normalised-cut reference (oacl.cam.ncut)."""

import math

import pandas as pd
import pytest
import torch

from oacl.cam.ncut import ncut_masks
from oacl.train import health


def test_chance_loss_per_method():
    assert health.chance_loss({"method": "moco", "moco": {"queue_size": 1024}}, 8) == pytest.approx(
        math.log(1025)
    )
    assert health.chance_loss({"method": "supervised"}, 8) == pytest.approx(math.log(8))
    assert health.chance_loss({"method": "byol"}, 8) is None


def test_reliance_rows_align_variants_by_scene():
    rows = []
    for sid in (3, 1, 2):
        for v in ("original", "only_bg_t", "only_fg"):
            if sid == 2 and v == "only_fg":
                continue  # scene 2 lacks a variant: left out
            rows.append({"split": "test", "variant": v, "scene_id": sid, "image_id": f"{v}/{sid}"})
    rows.append({"split": "train", "variant": "original", "scene_id": 9, "image_id": "x"})
    got = health.reliance_rows(pd.DataFrame(rows))
    assert [list(got[v]["scene_id"]) for v in ("original", "only_bg_t", "only_fg")] == [[1, 3]] * 3
    assert list(got["only_fg"]["image_id"]) == ["only_fg/1", "only_fg/3"]
    assert health.reliance_rows(pd.DataFrame(rows[:1] + rows[-1:])) is None


def test_ncut_separates_a_distinct_patch():
    # 8x8 map: background positions share one feature, a 3x3 block another
    f = torch.zeros(2, 4, 8, 8)
    f[:, 0] = 1.0
    f[:, 1, 2:5, 3:6] = 3.0
    f[:, 0, 2:5, 3:6] = 0.0
    f += 0.01 * torch.randn(f.shape, generator=torch.Generator().manual_seed(0))
    m = ncut_masks(f, 8)
    assert m.shape == (2, 1, 8, 8)
    block = torch.zeros(8, 8, dtype=torch.bool)
    block[2:5, 3:6] = True
    # the smaller, distinct block is the foreground (largest |eigenvector| entry)
    assert (m[0, 0][block] > 0.5).all() and (m[0, 0][~block] < 0.5).all()
