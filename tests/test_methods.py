"""MoCo v2, BYOL and supervised objectives against formulas written out by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from _pretrain_data import one_thread

from oacl.train.methods import BYOL, MoCo, Supervised, build_method
from oacl.train.params import DEFAULTS
from oacl.train.setup import lr_at

_threads = pytest.fixture(autouse=True)(one_thread)


def _views(b=8, s=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, s, s, generator=g), torch.randn(b, 3, s, s, generator=g)


def test_moco_loss_and_queue_match_infonce():
    torch.manual_seed(0)
    m = MoCo("resnet18_small", queue_size=32, temperature=0.2, bn_splits=1).train()
    v1, v2 = _views()
    queue0 = m.queue.clone()
    loss, stats = m(v1, v2, None)
    # by hand: encoders in train mode (batch statistics), keys from the key network
    q = F.normalize(m.projector(m.encoder(v1)), dim=1)
    with torch.no_grad():
        k = F.normalize(m.key_projector(m.key_encoder(v2)), dim=1)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue0.t()], 1) / 0.2
    expected = F.cross_entropy(logits, torch.zeros(8, dtype=torch.long))
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-4)
    assert 0.0 <= float(stats["acc"]) <= 1.0
    # the keys entered the queue at the pointer, which advanced by the batch
    torch.testing.assert_close(m.queue[:8], k, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(m.queue[8:], queue0[8:])
    assert int(m.queue_ptr) == 8
    # gradients reach the query network only
    loss.backward()
    assert m.encoder.conv1.weight.grad is not None
    assert all(p.grad is None and not p.requires_grad for p in m.key_encoder.parameters())


def test_moco_symmetric_and_queue_size_check():
    torch.manual_seed(0)
    m = MoCo("resnet18_small", queue_size=32, symmetric=True, bn_splits=1)
    loss, _ = m(*_views(), None)
    assert int(m.queue_ptr) == 16 and torch.isfinite(loss)
    bad = MoCo("resnet18_small", queue_size=20, bn_splits=1)
    with pytest.raises(ValueError, match="queue_size 20 must be a multiple"):
        bad(*_views(), None)


def test_moco_split_bn_decorrelates_query_and_key_statistics():
    torch.manual_seed(0)
    m = MoCo("resnet18_small", queue_size=32, bn_splits=2, shuffle_bn=True)
    v1, _ = _views()
    q = m._query(v1)
    by_hand = torch.cat([m.projector(m.encoder(c)) for c in v1.chunk(2)])
    torch.testing.assert_close(q, F.normalize(by_hand, dim=1), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(q, F.normalize(m.projector(m.encoder(v1)), dim=1), atol=1e-3)
    # keys come back in input order although the key pass saw a permuted batch:
    # key and query nets are identical at init, so equal inputs give the same embedding
    # up to the batch statistics; the permutation must not reorder rows.
    k = m._key(v1)
    assert torch.nn.functional.cosine_similarity(k, q).min() > 0.5


def test_moco_momentum_update():
    torch.manual_seed(0)
    m = MoCo("resnet18_small", queue_size=32, momentum=0.9)
    with torch.no_grad():
        for p in m.encoder.parameters():
            p.add_(1.0)
    before = m.key_encoder.conv1.weight.clone()
    m.momentum_update(0.5)
    torch.testing.assert_close(
        m.key_encoder.conv1.weight, 0.9 * before + 0.1 * m.encoder.conv1.weight
    )


def test_byol_loss_and_target_schedule():
    torch.manual_seed(0)
    m = BYOL("resnet18_small", hidden=64, base_momentum=0.99)
    assert m.target_momentum(0.0) == pytest.approx(0.99)
    assert m.target_momentum(0.5) == pytest.approx(0.995)
    assert m.target_momentum(1.0) == pytest.approx(1.0)
    v1, v2 = _views()
    loss, _ = m(v1, v2, None)
    p1 = m.predictor(m.projector(m.encoder(v1)))
    p2 = m.predictor(m.projector(m.encoder(v2)))
    with torch.no_grad():
        z1 = m.target_projector(m.target_encoder(v1))
        z2 = m.target_projector(m.target_encoder(v2))
    expected = (2 - 2 * F.cosine_similarity(p1, z2)).mean() + (
        2 - 2 * F.cosine_similarity(p2, z1)
    ).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        for p in m.encoder.parameters():
            p.add_(1.0)
    t0 = m.target_encoder.conv1.weight.clone()
    m.momentum_update(0.0)
    torch.testing.assert_close(
        m.target_encoder.conv1.weight, 0.99 * t0 + 0.01 * m.encoder.conv1.weight
    )
    t1 = m.target_encoder.conv1.weight.clone()
    m.momentum_update(1.0)  # momentum 1: target frozen
    torch.testing.assert_close(m.target_encoder.conv1.weight, t1)


def test_supervised_cross_entropy():
    torch.manual_seed(0)
    m = Supervised("resnet18_small", num_classes=3)
    v1, v2 = _views()
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    loss, stats = m(v1, v2, y)
    torch.testing.assert_close(
        loss, F.cross_entropy(m.classifier(m.encoder(v1)), y), rtol=1e-4, atol=1e-4
    )
    with pytest.raises(ValueError, match="2 classes"):
        Supervised("resnet18_small", num_classes=0)


def test_build_method_and_lr_schedule():
    p = dict(DEFAULTS, method="byol")
    assert isinstance(build_method(p, 0), BYOL)
    assert build_method(p, 0).projector_spec["hidden"] == 512  # small-model default
    with pytest.raises(ValueError, match="unknown method 'simclr'"):
        build_method(dict(DEFAULTS, method="simclr"), 0)
    p = dict(DEFAULTS, batch_size=128, base_lr=0.03, min_lr=1e-3)
    assert lr_at(0, 100, p) == pytest.approx(0.015)
    assert lr_at(100, 100, p) == pytest.approx(1e-3 * 0.5)
    mid = (0.015 + 0.0005) / 2
    assert lr_at(50, 100, p) == pytest.approx(mid)
    assert lr_at(25, 100, p) == pytest.approx(
        0.0005 + (0.015 - 0.0005) * (1 + math.cos(math.pi / 4)) / 2
    )
