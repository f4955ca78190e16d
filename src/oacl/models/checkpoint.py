"""The model checkpoint every later stage reads (``model.pt``).

Format: a dict ``{"format": FORMAT, "meta": {...}, "state_dict": {...}}`` holding only
plain types and tensors, so it loads with ``torch.load(weights_only=True)``. ``meta``
says how to rebuild the module: method, arch, image_size, mean, std, num_classes,
feat_dim, epoch and ``projector`` = ``{"in", "hidden", "out", "bn"}`` (None for the
supervised model's identity projector).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

from ..io import torch_save
from .backbones import L2Projector, build_encoder, mlp

FORMAT = "oacl-checkpoint-v1"


class EmbeddingModel(nn.Module):
    """``encoder`` (pooled features), ``projector`` (L2-normalised), optional ``classifier``."""

    def __init__(self, meta: dict):
        super().__init__()
        self.meta = dict(meta)
        self.encoder = build_encoder(meta["arch"])
        proj = meta.get("projector")
        head = mlp(proj["in"], proj["hidden"], proj["out"], proj["bn"]) if proj else None
        self.projector = L2Projector(head)
        if meta["method"] == "supervised":
            self.classifier = nn.Linear(meta["feat_dim"], meta["num_classes"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.encoder(x))


def save_checkpoint(path: str | os.PathLike, model: EmbeddingModel) -> None:
    """Write ``model`` atomically in the format ``load_checkpoint`` reads."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    torch_save(path, {"format": FORMAT, "meta": dict(model.meta), "state_dict": state})


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> EmbeddingModel:
    """Load ``model.pt`` as an eval-mode EmbeddingModel on ``device``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} is not an oacl checkpoint (cannot be read: {exc})") from exc
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ValueError(f"{path} is not an oacl checkpoint (expected format {FORMAT!r})")
    try:
        model = EmbeddingModel(obj["meta"])
        model.load_state_dict(obj["state_dict"])
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise ValueError(f"checkpoint {path} is incompatible with this code: {exc}") from exc
    return model.to(device).eval()
