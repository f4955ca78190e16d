import numpy as np
import pytest

from oacl.geometry import resize
from oacl.refine.params import CRF_DEFAULTS
from oacl.refine.refinement import dense_crf, scaled_params, work_shape


def _iou(a, b):
    a, b = a > 0, b > 0
    u = (a | b).sum()
    return 1.0 if u == 0 else (a & b).sum() / u


def _scene(h=96, w=96, seed=0):
    """A red square object on a green noisy background."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 1] = 120
    img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
    truth = np.zeros((h, w), np.uint8)
    truth[30:70, 25:65] = 1
    img[truth > 0] = (200, 40, 40)
    return img, truth


def test_crf_sharpens_blurred_blob():
    import cv2

    img, truth = _scene()
    # a blurred, shifted, over-wide CAM-like map
    blurred = cv2.GaussianBlur(truth.astype(np.float32), (0, 0), 9)
    blurred = np.roll(blurred, 4, axis=1)
    blurred = blurred / blurred.max()
    naive = (blurred >= 0.5).astype(np.uint8)
    refined = dense_crf(img, blurred, {"bilateral_sxy": 30})
    assert refined.dtype == np.uint8 and set(np.unique(refined)) <= {0, 1}
    assert _iou(refined, truth) > _iou(naive, truth) + 0.05
    assert _iou(refined, truth) > 0.9


def test_crf_defaults_match_paper():
    assert CRF_DEFAULTS["gaussian_sxy"] == 3 and CRF_DEFAULTS["gaussian_compat"] == 3
    assert CRF_DEFAULTS["bilateral_sxy"] == 80 and CRF_DEFAULTS["bilateral_srgb"] == 13
    assert CRF_DEFAULTS["bilateral_compat"] == 10 and CRF_DEFAULTS["iterations"] == 5


def test_crf_confident_unary_is_kept_and_deterministic():
    img, truth = _scene(seed=1)
    prob = truth.astype(np.float32)  # 0/1 -> clipped to eps, no log(0)
    a = dense_crf(img, prob)
    b = dense_crf(img, prob)
    assert np.array_equal(a, b)
    assert _iou(a, truth) > 0.95
    assert dense_crf(img, np.zeros_like(prob)).sum() == 0


def test_crf_rejects_mismatch_and_unknown_params():
    img, truth = _scene()
    with pytest.raises(ValueError, match="do not match"):
        dense_crf(img, truth[:50].astype(np.float32))
    with pytest.raises(ValueError, match="unknown"):
        dense_crf(img, truth.astype(np.float32), {"sxy": 3})


def test_work_shape_keeps_aspect_and_fixes_shorter_side():
    assert work_shape(64, 64, 224) == (224, 224)
    assert work_shape(480, 640, 224) == (224, 299)
    assert work_shape(300, 100, 50) == (150, 50)
    m = np.random.default_rng(0).random((64, 32)).astype(np.float32)
    assert resize(m, (224, 112), "shrink_all").shape == (224, 112)
    assert resize(m, (32, 16), "shrink_all").shape == (32, 16)


def test_scaled_params_scale_only_the_spatial_kernels():
    p = scaled_params({"bilateral_srgb": 20}, 0.25)
    assert p["gaussian_sxy"] == pytest.approx(0.75) and p["bilateral_sxy"] == pytest.approx(20)
    assert p["bilateral_srgb"] == 20 and p["gaussian_compat"] == 3 and p["iterations"] == 5


def test_refine_small_image_at_own_size_matches_upscaled():
    """A 64 px image refined at its own size (kernels scaled) vs upscaled to 224."""
    import cv2

    from oacl.refine.params import DEFAULTS
    from oacl.refine.refinement import refine_one

    img, truth = _scene(64, 64, seed=2)
    soft = cv2.GaussianBlur(truth.astype(np.float32), (0, 0), 5)
    soft = np.roll(soft / soft.max(), 3, axis=1)
    own = refine_one(img, soft, dict(DEFAULTS))
    up = refine_one(img, soft, dict(DEFAULTS, upsample=True))
    assert own["mask"].shape == (64, 64) and up["mask"].shape == (224, 224)
    up_small = resize(up["mask"], (64, 64), "shrink_all")
    assert _iou(own["mask"], truth) > 0.85 and _iou(own["mask"], up_small) > 0.85
    assert len(own["boxes"]) == len(up["boxes"]) >= 1
    assert np.allclose(own["boxes"], up["boxes"], atol=0.03)
