"""ContraCAM written straight from the paper's pseudo-code (Appendix A, Algorithms 1-3).

Deliberately plain: no batching tricks, no copies beyond what expansion needs, a loop
per image for the normalisation. It is the baseline of benchmarks/contracam_speed.py
and the oracle of tests/test_contracam.py. The reading of lost symbols is the one
documented in oacl.cam.engine.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F


def get_features(encoder, x):
    with torch.no_grad():  # Algorithm 1 sets feature.requires_grad afterwards
        x = encoder.conv1(x)
        x = encoder.bn1(x)
        x = encoder.relu(x)
        x = encoder.maxpool(x)
        x = encoder.layer1(x)
        x = encoder.layer2(x)
        x = encoder.layer3(x)
        x = encoder.layer4(x)
    return x


def get_projection(encoder, projector, feature):
    x = encoder.avgpool(feature)
    x = torch.flatten(x, 1)
    return projector(x)


def contrastive_score(query, key, queues, pos_mode="batch_sum"):
    """Algorithm 2."""
    eye = torch.eye(query.size(0), dtype=query.dtype, device=query.device)
    pos = torch.einsum("nc,nc->n", query, key)
    if pos_mode == "batch_sum":
        pos = pos.unsqueeze(0)  # (1, b): the positive is summed over the batch
    else:
        pos = pos.unsqueeze(1)  # (b, 1): Eq. (1), one positive per sample
    neg = torch.cat([torch.einsum("nc,kc->nk", query, q) * (1 - eye) for q in queues], dim=1)
    score = (pos.exp().sum(dim=1) / neg.exp().sum(dim=1)).log()
    return score


def normalize(cam):
    cam = cam.clone()
    for i in range(cam.size(0)):
        cam[i] -= cam[i].min()
        top = cam[i].max()
        cam[i] = cam[i] / top if top > 0 else torch.zeros_like(cam[i])
    return cam


def compute_cam(feature, score, size, nsr=True):
    """Algorithm 3."""
    grad = torch.autograd.grad(score.sum(), feature)[0]
    weight = F.adaptive_avg_pool2d(grad, output_size=(1, 1))
    if nsr:
        weight = weight.clamp_min(0)  # clamp negative weights
    cam = torch.sum(weight * feature, dim=1, keepdim=True).detach()
    cam = F.relu(cam)
    cam = F.interpolate(cam, size=size, mode="bicubic", align_corners=False)
    cam = F.relu(cam)  # bicubic ringing below zero
    return normalize(cam)


def expand_res(encoder, factor):
    encoder = copy.deepcopy(encoder)
    blocks = {1: [], 2: [encoder.layer4[0]], 4: [encoder.layer4[0], encoder.layer3[0]]}[factor]
    for block in blocks:
        for m in block.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.stride = (1, 1)
    return encoder


def reference_contracam(model, image, n_iters=1, expand=1, nsr=True, pos_mode="batch_sum"):
    """Algorithm 1: iterative ContraCAM of a batch of normalised images."""
    encoder = expand_res(model.encoder, expand).eval()
    projector = model.projector.eval()
    b, c, h, w = image.shape
    mask_color = image.mean(dim=(0, 2, 3), keepdim=True)
    masked_image = image  # initial: original image
    queues, mask = [], None
    for i in range(n_iters):
        feature = get_features(encoder, masked_image)  # spatial features
        feature.requires_grad = True
        output = get_projection(encoder, projector, feature)  # projection outputs
        if i == 0:
            key = output.detach()  # original images
        queues.append(output.detach())  # masked images
        score = contrastive_score(output, key, queues, pos_mode)
        cam = compute_cam(feature, score, size=(h, w), nsr=nsr)
        mask = torch.max(mask, cam) if i > 0 else cam  # union over iterations
        masked_image = image * (1 - mask) + mask_color * mask  # soft mask
    return mask
