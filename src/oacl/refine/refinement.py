"""One soft mask -> CRF mask, object boxes, background rectangle (``refine_one``).

The refinement of the refine stage (oacl.refine.shard runs it over a mask shard) and
of the localisation table's reference maps (oacl.evaluate.localization), so both get
the same; the localisation's boxes of binarised maps follow the same box rules
(``clean_and_box``). The parameters are oacl.refine.params ``DEFAULTS``.

An image and its soft mask are brought to the CRF working resolution (shorter side
``work_size``; smaller images stay at their size with the CRF kernels scaled unless
``upsample``, see "Dense CRF" below), then

1. background rectangle: largest rectangle of zeros of the soft mask binarised at
   ``bg_threshold`` (0.2, paper Sec. 3 / background mixup);
2. binary mask: dense CRF (``crf: true``) keeping pixels whose foreground marginal is
   >= ``box_threshold``; without CRF the soft mask binarised at ``box_threshold``;
3. cleaning: drop connected components under ``min_component`` of the image;
4. boxes: outer contours, boxes under ``min_box_area`` dropped, ``margin`` added.

A soft mask with no pixel reaching ``bg_threshold`` is "empty": zero boxes, all-zero
mask, full-image background rectangle, ``empty=True`` (never an error). A mask with no
pixel below ``bg_threshold`` has no background: ``bg_rect = [0, 0, 0, 0]`` (zero
area), counted in the refine stage's log.

Dense CRF (Krähenbühl & Koltun 2011, ``dense_crf``). The paper post-processes CAM
masks with pydensecrf using the library defaults the authors used: 2 labels, unary -log p, Gaussian pairwise (sxy 3, compat 3), bilateral
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

from ..geometry import background_rect, binarize, clean_components, mask_to_boxes, resize
from .params import CRF_DEFAULTS


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


def refine_one(image: np.ndarray, soft: np.ndarray, params: dict) -> dict:
    """Refine one image. Returns boxes (normalised), binary mask (uint8 0/1 at the
    working resolution), bg_rect (normalised), empty, full."""
    work_size, crf_params = int(params["work_size"]), params["crf_params"]
    side = min(image.shape[0], image.shape[1])
    if side < work_size and not params["upsample"]:
        crf_params = scaled_params(crf_params, side / work_size)
        work_size = side
    shape = work_shape(image.shape[0], image.shape[1], work_size)
    img = resize(image, shape, "shrink_all")
    prob = np.clip(resize(soft.astype(np.float32), shape, "shrink_all"), 0.0, 1.0)
    rect, empty, full = background_rect(prob, params["bg_threshold"])
    if empty:
        return {
            "boxes": [],
            "mask": np.zeros(shape, np.uint8),
            "bg_rect": rect,
            "empty": True,
            "full": False,
        }
    if params["crf"]:
        binary = dense_crf(img, prob, crf_params, threshold=params["box_threshold"])
    else:
        binary = binarize(prob, params["box_threshold"])
    binary, boxes = clean_and_box(binary, params)
    return {"boxes": boxes, "mask": binary, "bg_rect": rect, "empty": False, "full": full}


def clean_and_box(binary: np.ndarray, params: dict) -> tuple[np.ndarray, list]:
    """The box rules: (the binary mask without its components under ``min_component`` of
    the image, the normalised boxes of what is left: ``min_box_area``, ``margin``,
    ``largest_only``)."""
    binary = clean_components(binary, params["min_component"])
    boxes = mask_to_boxes(binary, params["min_box_area"], params["margin"], params["largest_only"])
    return binary, boxes
