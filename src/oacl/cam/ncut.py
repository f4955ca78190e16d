"""A feature-based unsupervised localiser for the localisation table: normalised cut.

TokenCut (Wang et al., "Self-Supervised Transformers for Unsupervised Object
Discovery using Normalized Cut", CVPR 2022) bipartitions the patch graph of a
self-supervised backbone: nodes are the positions of the last feature map, an edge
weighs 1 where the cosine of two positions exceeds ``tau`` and ``eps`` elsewhere; the
second-smallest generalised eigenvector y of (D - W) y = lambda D y splits the nodes at
its mean, and the side holding the largest |y| is the foreground.

One departure, for CNN features: a ReLU feature map has non-negative entries, so
every cosine is positive and the graph is nearly complete; each image's positions
are centred (its mean feature subtracted) before the cosine.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TAU, EPS = 0.2, 1e-5  # TokenCut's defaults


@torch.no_grad()
def ncut_masks(feats: torch.Tensor, size: int, tau: float = TAU, eps: float = EPS) -> torch.Tensor:
    """(B, K, h, w) feature maps -> (B, 1, size, size) foreground maps in [0, 1]."""
    B, K, h, w = feats.shape
    f = feats.double().flatten(2).transpose(1, 2)  # (B, n, K)
    f = F.normalize(f - f.mean(dim=1, keepdim=True), dim=2)
    out = torch.zeros(B, h * w, dtype=torch.float64, device=feats.device)
    for b in range(B):
        W = torch.where(f[b] @ f[b].T > tau, 1.0, eps).to(f)
        d = W.sum(1)
        dm = d.rsqrt()
        lap = torch.eye(len(d), dtype=f.dtype, device=f.device) - dm[:, None] * W * dm[None, :]
        _, vecs = torch.linalg.eigh(lap)
        y = dm * vecs[:, 1]
        fg = y > y.mean()
        if not fg[y.abs().argmax()]:
            fg = ~fg
        out[b] = fg.to(out)
    m = out.view(B, 1, h, w).float()
    return F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
