"""The model checkpoint every later stage reads (``model.pt``).

Format: a dict ``{"format": FORMAT, "meta": {...}, "state_dict": {...}, "sha256": hex}``
holding only plain types and tensors, so it loads with ``torch.load(weights_only=True)``.
``sha256`` (``content_hash``) covers meta and every tensor's name, dtype, shape and
bytes; ``load_checkpoint`` recomputes it, so a corrupted byte is an error, not silently
changed weights (the zip archive torch writes has no check of its own on load). ``meta``
says how to rebuild the module: method, arch, image_size, mean, std, num_classes,
feat_dim, epoch and ``projector`` = ``{"in", "hidden", "out", "bn"}`` (None for the
supervised model's identity projector).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
import torch.nn as nn

from ..io import UnreadableFile, torch_load, torch_save
from .backbones import L2Projector, build_encoder, mlp

FORMAT = "oacl-checkpoint-v2"  # v2: with the content hash "sha256"


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
    obj = {"format": FORMAT, "meta": dict(model.meta), "state_dict": state}
    torch_save(path, dict(obj, sha256=content_hash(obj)))


def content_hash(obj: dict) -> str:
    """sha256 of a checkpoint's meta (canonical JSON) and of each tensor's name, dtype,
    shape and bytes, in name order."""
    h = hashlib.sha256(json.dumps(obj["meta"], sort_keys=True, default=str).encode())
    for name in sorted(obj["state_dict"]):
        t = obj["state_dict"][name].detach().cpu().contiguous()
        h.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> EmbeddingModel:
    """Load ``model.pt`` as an eval-mode EmbeddingModel on ``device``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        obj = torch_load(path, "an oacl checkpoint")
    except UnreadableFile as exc:
        raise ValueError(
            f"{path} is not an oacl checkpoint (cannot be read: {exc.reason})"
        ) from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ValueError(f"{path} is not an oacl checkpoint (expected format {FORMAT!r})")
    try:
        digest = content_hash(obj)
    except (KeyError, TypeError, AttributeError, RuntimeError) as exc:
        raise ValueError(f"checkpoint {path} is malformed ({type(exc).__name__}: {exc})") from None
    if digest != obj.get("sha256"):
        raise ValueError(
            f"checkpoint {path} is corrupted: its content hash {digest[:16]}... differs from "
            f"the one stored when it was written ({str(obj.get('sha256'))[:16]}...); "
            "re-run the job that wrote it"
        )
    try:
        model = EmbeddingModel(obj["meta"])
        model.load_state_dict(obj["state_dict"])
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise ValueError(f"checkpoint {path} is incompatible with this code: {exc}") from exc
    return model.to(device).eval()
