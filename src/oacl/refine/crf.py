"""Dense CRF refinement of a soft ContraCAM mask (Krähenbühl & Koltun 2011).

The paper post-processes CAM masks with pydensecrf using the library defaults the
authors used: 2 labels, unary -log p, Gaussian pairwise (sxy 3, compat 3), bilateral
pairwise (sxy 80, srgb 13, compat 10), 5 mean-field iterations.

``sxy`` is measured in pixels, so the CRF's behaviour depends on the resolution it
runs at. The parameters are those of a working image whose SHORTER side is
``work_size`` (224, the resolution the authors used for real data): larger images are
shrunk to it (aspect ratio kept, so the kernels stay isotropic). A smaller image (the
64 px scenes) either is upscaled to it (``upsample``) or, by default, stays at its own
size with both ``sxy`` scaled by ``side / work_size`` (``scaled_params``): the kernels
then cover the same fraction of the image at 1/12 of the pixels.
"""

from __future__ import annotations

import numpy as np

CRF_DEFAULTS = {
    "gaussian_sxy": 3,
    "gaussian_compat": 3,
    "bilateral_sxy": 80,
    "bilateral_srgb": 13,
    "bilateral_compat": 10,
    "iterations": 5,
    "eps": 1e-5,  # probabilities are clipped to [eps, 1 - eps] before -log
}


def work_shape(height: int, width: int, work_size: int) -> tuple[int, int]:
    """(h, w) with the shorter side scaled to ``work_size``, aspect ratio kept."""
    if height <= 0 or width <= 0:
        raise ValueError(f"invalid image size {height}x{width}")
    scale = work_size / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def scaled_params(params: dict | None, scale: float) -> dict:
    """CRF parameters for a working image ``scale`` times the reference size: the
    spatial standard deviations (pixels) scale with it; colour and compat do not."""
    p = dict(CRF_DEFAULTS, **(params or {}))
    p["gaussian_sxy"] = p["gaussian_sxy"] * scale
    p["bilateral_sxy"] = p["bilateral_sxy"] * scale
    return p


def dense_crf(
    image_uint8_rgb: np.ndarray,
    prob_fg: np.ndarray,
    params: dict | None = None,
    threshold: float = 0.5,
) -> np.ndarray:
    """Refine a foreground probability map with a 2-label dense CRF.

    ``image_uint8_rgb`` (H, W, 3) uint8 and ``prob_fg`` (H, W) float in [0, 1] must have
    the same size (resize both to the working resolution first, see ``work_shape``).
    ``params`` overrides keys of CRF_DEFAULTS. Returns a uint8 (H, W) mask, 1 where the
    foreground marginal is >= ``threshold`` (0.5: the more probable label).
    """
    import pydensecrf.densecrf as dcrf

    p = dict(CRF_DEFAULTS, **(params or {}))
    unknown = set(p) - set(CRF_DEFAULTS)
    if unknown:
        raise ValueError(f"dense_crf: unknown parameter(s) {sorted(unknown)}")
    img = np.ascontiguousarray(image_uint8_rgb, dtype=np.uint8)
    prob = np.asarray(prob_fg, dtype=np.float32)
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[:2] != prob.shape:
        raise ValueError(f"dense_crf: image {img.shape} and mask {prob.shape} do not match")
    h, w = prob.shape
    prob = np.clip(prob, p["eps"], 1.0 - p["eps"])
    # label 0 = background, label 1 = foreground
    unary = -np.log(np.stack([1.0 - prob, prob]).reshape(2, -1))
    crf = dcrf.DenseCRF2D(w, h, 2)
    crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    crf.addPairwiseGaussian(sxy=p["gaussian_sxy"], compat=p["gaussian_compat"])
    crf.addPairwiseBilateral(
        sxy=p["bilateral_sxy"], srgb=p["bilateral_srgb"], rgbim=img, compat=p["bilateral_compat"]
    )
    q = np.asarray(crf.inference(int(p["iterations"]))).reshape(2, h, w)
    return (q[1] >= threshold).astype(np.uint8)
