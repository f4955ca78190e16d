"""Reference maps and map-level scores (oacl.evaluate.references)."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from oacl.evaluate import references as refs


def test_pixel_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        gt = rng.random((12, 9)) < 0.3
        score = np.round(rng.random((12, 9)) + 0.5 * gt, 1)  # coarse values: many ties
        assert refs.pixel_auc(score, gt) == pytest.approx(roc_auc_score(gt.ravel(), score.ravel()))
    assert refs.pixel_auc(np.zeros((4, 4)), np.zeros((4, 4), bool)) is None
    assert refs.pixel_auc(np.zeros((4, 4)), np.ones((4, 4), bool)) is None


def test_pointing_and_mass():
    gt = np.zeros((5, 5), bool)
    gt[1:3, 1:3] = True
    score = np.zeros((5, 5))
    score[2, 2], score[4, 4] = 1.0, 0.5
    assert refs.pointing_hit(score, gt)
    assert refs.mass_inside(score, gt) == pytest.approx(1 / 1.5)
    score[4, 4] = 2.0
    assert not refs.pointing_hit(score, gt)
    assert refs.mass_inside(np.zeros((5, 5)), gt) is None


def test_colour_saliency_marks_what_differs_from_the_frame():
    img = np.full((32, 32, 3), (40, 120, 40), np.uint8)
    img[10:20, 12:22] = (200, 60, 200)
    sal = refs.colour_saliency(img)
    assert sal.shape == (32, 32) and sal.min() == 0 and sal.max() == pytest.approx(1)
    assert sal[10:20, 12:22].min() > 0.9
    outside = np.ones((32, 32), bool)
    outside[10:20, 12:22] = False
    assert sal[outside].max() < 0.1
    assert refs.colour_saliency(np.zeros((8, 8, 3), np.uint8)).max() == 0  # flat image


def test_centred_gaussian_peaks_in_the_centre():
    g = refs.centred_gaussian(20, 30, 0.25)
    assert g.shape == (20, 30) and g.max() <= 1
    assert np.unravel_index(g.argmax(), g.shape) in {(9, 14), (9, 15), (10, 14), (10, 15)}


def test_shuffled_auc_scores_the_map_against_other_images_masks():
    rng = np.random.default_rng(1)
    gts = [rng.random((10, 14)) < 0.3 for _ in range(15)]
    score = rng.random((10, 14))
    picks = np.random.default_rng([0, 3]).choice([j for j in range(15) if j != 3], 10, False)
    expected = np.mean([roc_auc_score(gts[j].ravel(), score.ravel()) for j in picks])
    assert refs.shuffled_auc(score, gts, 3, k=10, seed=0) == pytest.approx(expected)
    assert refs.shuffled_auc(score, gts[:1], 0) is None  # no other image
    mean, lo, hi = refs.bootstrap_ci([0.1, 0.2, None, float("nan"), 0.3])
    assert mean == pytest.approx(0.2) and 0.1 <= lo <= mean <= hi <= 0.3
