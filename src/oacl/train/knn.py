"""Cheap kNN monitor: cosine kNN (k=20, temperature-weighted votes) on frozen features.

Features are the encoder's pooled output on centre crops, L2-normalised; each val
image takes the k most similar train images and votes with weight exp(sim / T), as
in Wu et al. (2018) and the MoCo/BYOL monitors. Used only to watch training.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


@torch.no_grad()
def extract(encoder, loader, image_size: int, device, channels_last: bool = False):
    """(features (N, C) L2-normalised float32 on ``device``, labels (N,) int64)."""
    from ..geometry import eval_transform

    was_training = encoder.training
    encoder.eval()
    feats, labels = [], []
    for batch in loader:
        x = eval_transform(batch["image"].to(device, non_blocking=True), image_size)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            f = encoder(x)
        feats.append(F.normalize(f.float(), dim=1))
        labels.append(batch["label"].to(device))
    encoder.train(was_training)
    return torch.cat(feats), torch.cat(labels)


@torch.no_grad()
def knn_predict(
    train_f,
    train_y,
    test_f,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    chunk: int = 1024,
) -> torch.Tensor:
    """Predicted class of each row of ``test_f`` by weighted vote of its k nearest train rows."""
    k = min(k, train_f.shape[0])
    preds = []
    for q in test_f.split(chunk):
        sim, idx = (q @ train_f.t()).topk(k, dim=1)
        weight = (sim / temperature).exp()
        votes = torch.zeros(q.shape[0], num_classes, device=q.device, dtype=weight.dtype)
        votes.scatter_add_(1, train_y[idx], weight)
        preds.append(votes.argmax(dim=1))
    return torch.cat(preds)


def knn_accuracy(
    encoder,
    train_loader,
    val_loader,
    image_size: int,
    device,
    k: int = 20,
    temperature: float = 0.07,
    channels_last: bool = False,
) -> float:
    """Top-1 kNN accuracy of val images against train features (rows with label < 0 ignored)."""
    tf, ty = extract(encoder, train_loader, image_size, device, channels_last)
    vf, vy = extract(encoder, val_loader, image_size, device, channels_last)
    tf, ty = tf[ty >= 0], ty[ty >= 0]
    vf, vy = vf[vy >= 0], vy[vy >= 0]
    if len(ty) == 0 or len(vy) == 0:
        return float("nan")
    num_classes = int(max(ty.max(), vy.max())) + 1
    pred = knn_predict(tf, ty, vf, num_classes, k=k, temperature=temperature)
    return float((pred == vy).float().mean())


def subsample(n: int, max_n: int, seed: int = 0) -> np.ndarray:
    """A fixed subset (sorted indices) of at most ``max_n`` of ``n`` rows."""
    if max_n is None or n <= max_n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_n, replace=False))
