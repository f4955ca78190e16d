"""ContraCAM (paper Section 2.2, Appendix A Algorithms 1-3) and the classifier Grad-CAM.

Reading of the pseudo-code (some symbols were lost in the paper's text extraction;
the authors' released code agrees with this reading):

* features = layer4 map A (B, K, h, w) of the masked images; the trunk runs without
  autograd and A becomes the leaf that requires grad (``feature.requires_grad = True``).
* output = projector(avgpool(A)), L2-normalised (B, D). At iteration 0 the key is
  ``output.detach()`` (the original images); the queues collect ``output.detach()`` of
  every iteration (original images, then the masked images of later iterations).
* Algorithm 2: pos_n = query_n . key_n; neg = cat over queues of (query . q^T) * (1 - eye):
  the self-pair logit (and the pair with the sample's own masked views) is set to 0,
  i.e. it contributes exp(0) = 1 to the denominator rather than being removed.
  score = log(P / sum_k exp(neg_nk)) with
    pos_mode="batch_sum"  P = sum_m exp(pos_m) (pos has shape (1, B) before
                          ``.exp().sum(dim=1)`` in the released code: default), or
    pos_mode="per_sample" P = exp(pos_n) (Eq. 1 read literally).
  No temperature (Algorithm 2 has none). Computed with logsumexp (same value).
  At iteration 0 the query equals the key on the unit sphere, where the gradient of
  query . key vanishes: the two modes give the same first CAM and differ only from
  iteration 1 on (masked queries against the original keys).
* Algorithm 3: w_k = spatial mean of d score.sum() / dA_k; w = max(w, 0) when ``nsr``
  (negative-signal removal; off for the ablation); cam = ReLU(sum_k w_k A_k) at the
  activation resolution (Grad-CAM's ReLU, as in the released code), upsampled bicubically
  with align_corners=False, negatives from bicubic ringing clamped to 0 (what
  Algorithm 3's ReLU after ``interpolate`` does), then min-max normalised per image.
  A constant map (e.g. all weights removed by NSR) normalises to all zeros.
* Algorithm 1: mask = running max of the CAMs; masked image =
  image * (1 - mask) + mask_color * mask, mask_color = per-channel mean of the
  (normalised) batch over images and pixels.
* Batch of one: every negative is the sample itself or its own masked view, which the
  pseudo-code zeroes, so the score reduces to the positive term (minus a constant) and
  the CAM highlights what supports similarity to the sample's own embedding. It is
  computed as defined (no error); pass ``extra_negatives`` to supply real negatives.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .expand import prepare_encoder, trunk
from .params import DEFAULTS, resolve

# the log of the score's numerator P per ``pos_mode`` (module docstring); the keys are
# oacl.cam.params.CHOICES["pos_mode"]
LOG_NUMERATOR = {
    "batch_sum": lambda pos: torch.logsumexp(pos, dim=0),
    "per_sample": lambda pos: pos,
}


def contrastive_score(
    query: torch.Tensor,
    key: torch.Tensor,
    queues: Sequence[torch.Tensor],
    pos_mode: str = DEFAULTS["pos_mode"],
    extra_negatives: torch.Tensor | None = None,
    temperature: float = DEFAULTS["temperature"],
) -> torch.Tensor:
    """Algorithm 2: the contrastive score of each query (B,), see the module docstring.

    ``extra_negatives`` (N, D): further negatives (e.g. a memory bank), never masked.
    ``temperature`` (> 0): every logit is divided by it (Eq. 1 has the training
    temperature; Algorithm 2, the default 1, has none). A lower one weights the nearest
    negatives. The arguments are taken as checked (oacl.cam.params).
    """
    b = query.shape[0]
    pos = (query * key).sum(dim=1)
    bank = torch.cat(list(queues), dim=0)  # (T*B, D): queue t holds rows t*B .. t*B+B-1
    off_diag = 1.0 - torch.eye(b, dtype=query.dtype, device=query.device)
    neg = (query @ bank.T).view(b, -1, b) * off_diag[:, None, :]
    neg = neg.reshape(b, -1)
    if extra_negatives is not None:
        neg = torch.cat([neg, query @ extra_negatives.to(query).T], dim=1)
    pos, neg = pos / temperature, neg / temperature
    log_num = LOG_NUMERATOR[pos_mode](pos)
    return log_num - torch.logsumexp(neg, dim=1)


def normalize_minmax(cam: torch.Tensor) -> torch.Tensor:
    """Per-image min-max to [0, 1] over (C, H, W); constant maps become zeros."""
    lo = cam.amin(dim=(1, 2, 3), keepdim=True)
    rng = cam.amax(dim=(1, 2, 3), keepdim=True) - lo
    out = (cam - lo) / torch.where(rng > 0, rng, torch.ones_like(rng))
    return out.clamp_(0.0, 1.0)


def cam_from_score(
    features: torch.Tensor, score: torch.Tensor, size: tuple[int, int], nsr: bool = True
) -> torch.Tensor:
    """Algorithm 3: Grad-CAM of ``score`` w.r.t. ``features`` upsampled to ``size``."""
    (grad,) = torch.autograd.grad(score.sum(), features)
    weight = grad.mean(dim=(2, 3))  # = adaptive_avg_pool2d(grad, 1)
    if nsr:
        weight = weight.clamp_min(0)
    cam = torch.einsum("bk,bkhw->bhw", weight, features.detach()).relu().unsqueeze(1)
    cam = F.interpolate(cam, size=size, mode="bicubic", align_corners=False).clamp_min_(0)
    return normalize_minmax(cam)


@contextlib.contextmanager
def _frozen(*modules: nn.Module | None):
    """Eval mode and no parameter grads inside; previous state restored on exit."""
    modules = [m for m in modules if isinstance(m, nn.Module)]
    modes = [[(s, s.training) for s in m.modules()] for m in modules]
    flags = [[(p, p.requires_grad) for p in m.parameters()] for m in modules]
    try:
        for m in modules:
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)
        yield
    finally:
        for saved in modes:
            for s, mode in saved:
                s.train(mode)
        for saved in flags:
            for p, flag in saved:
                p.requires_grad_(flag)


class CamEngine:
    """A model prepared once for CAM inference (copied encoder), reusable over batches.

    ``fuse_bn`` folds BatchNorm into the convs of the copy; ``channels_last`` (default:
    on) and ``amp_dtype`` (e.g. ``torch.bfloat16``: the trunk only, the score, gradients
    and CAM stay float32) trade exactness for speed; see benchmarks/contracam_speed.py.
    """

    def __init__(
        self,
        model: nn.Module,
        expand_res: int = DEFAULTS["expand_res"],
        fuse_bn: bool = DEFAULTS["fuse_bn"],
        channels_last: bool | None = None,
        amp_dtype: torch.dtype | None = None,
    ):
        self.channels_last = (
            DEFAULTS["channels_last"] if channels_last is None else bool(channels_last)
        )
        self.encoder = prepare_encoder(model.encoder, expand_res, fuse_bn, self.channels_last)
        self.projector = getattr(model, "projector", None)
        self.classifier = getattr(model, "classifier", None)
        self.amp_dtype = amp_dtype
        self.expand_res = expand_res
        param = next(self.encoder.parameters())
        self.device, self.dtype = param.device, param.dtype  # float64 models stay float64

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The layer4 map (model dtype) as a leaf that requires grad (trunk without autograd)."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        amp = (
            torch.autocast(x.device.type, dtype=self.amp_dtype)
            if self.amp_dtype is not None
            else contextlib.nullcontext()
        )
        with torch.no_grad(), amp:
            feats = trunk(self.encoder, x)
        return feats.to(self.dtype).requires_grad_(True)

    def _refresh(self, x, feats, changed):
        """Features of ``x``, re-running the trunk only for samples whose input changed.

        Exact: an unchanged running max gives a bit-identical masked image, hence the
        same features (converged samples stop costing a trunk pass).
        """
        if feats is None or changed is None or bool(changed.all()):
            self.trunk_images += x.shape[0]
            return self.features(x)
        feats = feats.detach().clone()
        idx = changed.nonzero().flatten()
        if len(idx):
            feats[idx] = self.features(x[idx]).detach()
            self.trunk_images += len(idx)
        return feats.requires_grad_(True)

    def pooled(self, feats: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.encoder.avgpool(feats), 1)

    def contracam(
        self,
        images: torch.Tensor,
        iters: int = DEFAULTS["iters"],
        nsr: bool = DEFAULTS["nsr"],
        pos_mode: str = DEFAULTS["pos_mode"],
        mask_color=DEFAULTS["mask_color"],
        extra_negatives: torch.Tensor | None = None,
        temperature: float = DEFAULTS["temperature"],
    ) -> torch.Tensor:
        """Algorithm 1 on one batch; returns soft masks (B, 1, H, W) in [0, 1]. The
        parameters are taken as checked (oacl.cam.params)."""
        images = _check_images(images).to(self.device, self.dtype)
        if self.projector is None:
            raise ValueError("model has no .projector: ContraCAM needs the projection head")
        size = tuple(images.shape[-2:])
        color = _mask_color(images, mask_color)
        queues: list[torch.Tensor] = []
        x, mask, feats, changed = images, None, None, None
        self.trunk_images = 0  # images the trunk actually ran on (for benchmarks)
        with _frozen(self.projector):
            for it in range(iters):
                feats = self._refresh(x, feats, changed)
                with torch.enable_grad():
                    output = self.projector(self.pooled(feats))
                    if it == 0:
                        key = output.detach()  # original images
                    queues.append(output.detach())  # original, then masked images
                    score = contrastive_score(
                        output, key, queues, pos_mode, extra_negatives, temperature
                    )
                    cam = cam_from_score(feats, score, size, nsr)
                if mask is None:
                    mask, changed = cam, None
                else:  # union; a sample whose mask did not grow keeps its masked image
                    new = torch.maximum(mask, cam)
                    changed = (new != mask).flatten(1).any(dim=1)
                    mask = new
                if it + 1 < iters:  # the last masked image would be unused
                    x = images * (1 - mask) + color * mask
        return mask

    def classifier_cam(
        self, images: torch.Tensor, labels: torch.Tensor | None = None, nsr: bool = DEFAULTS["nsr"]
    ) -> torch.Tensor:
        """Grad-CAM of the logit of ``labels`` (default: the top prediction)."""
        images = _check_images(images).to(self.device, self.dtype)
        if self.classifier is None:
            raise ValueError("model has no .classifier: classifier CAM needs a supervised model")
        with _frozen(self.classifier):
            feats = self.features(images)
            with torch.enable_grad():
                logits = self.classifier(self.pooled(feats))
                if labels is None:
                    labels = logits.detach().argmax(dim=1)
                labels = torch.as_tensor(labels, device=logits.device).long().view(-1, 1)
                score = logits.gather(1, labels).squeeze(1)
                return cam_from_score(feats, score, tuple(images.shape[-2:]), nsr)


def _check_images(images: torch.Tensor) -> torch.Tensor:
    if not torch.is_tensor(images) or images.ndim != 4 or images.shape[0] < 1:
        shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise ValueError(f"images must be a (B, C, H, W) tensor with B >= 1, got {shape}")
    return images


def _mask_color(images: torch.Tensor, mask_color) -> torch.Tensor:
    if isinstance(mask_color, str):
        if mask_color != "batch_mean":
            raise ValueError(
                f"mask_color must be 'batch_mean' or per-channel values, got {mask_color!r}"
            )
        return images.mean(dim=(0, 2, 3), keepdim=True)
    color = torch.as_tensor(mask_color, dtype=images.dtype, device=images.device)
    return color.reshape(1, -1, 1, 1) if color.ndim else color


def contracam(
    model: nn.Module,
    images: torch.Tensor,
    iters: int = DEFAULTS["iters"],
    expand_res: int = DEFAULTS["expand_res"],
    nsr: bool = DEFAULTS["nsr"],
    pos_mode: str = DEFAULTS["pos_mode"],
    mask_color=DEFAULTS["mask_color"],
    extra_negatives: torch.Tensor | None = None,
    **engine_kw,
) -> torch.Tensor:
    """Iterative ContraCAM soft masks (B, 1, H, W) in [0, 1] of normalised ``images``.

    The rest of the batch (and its masked views) are the negatives, so batch
    composition matters. ``engine_kw``: ``fuse_bn``, ``channels_last``, ``amp_dtype``
    (see CamEngine). The caller's model is not modified. The parameters are checked
    as ``oacl cam`` checks its configuration (oacl.cam.params).
    """
    p = resolve(
        dict(iters=iters, expand_res=expand_res, nsr=nsr, pos_mode=pos_mode), where="contracam"
    )
    engine = CamEngine(model, p["expand_res"], **engine_kw)
    return engine.contracam(
        images, p["iters"], p["nsr"], p["pos_mode"], mask_color, extra_negatives
    )


def classifier_cam(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    nsr: bool = DEFAULTS["nsr"],
    expand_res: int = DEFAULTS["expand_res"],
    **engine_kw,
) -> torch.Tensor:
    """Grad-CAM masks (B, 1, H, W) in [0, 1] for a supervised model's logit (parameters
    checked as in ``contracam``)."""
    p = resolve(dict(nsr=nsr, expand_res=expand_res), where="classifier_cam")
    engine = CamEngine(model, p["expand_res"], **engine_kw)
    return engine.classifier_cam(images, labels, p["nsr"])
