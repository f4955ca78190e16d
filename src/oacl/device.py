"""Which torch device a stage runs on: ``resolve_device``, the one rule every stage uses
(pretraining, CAM, feature extraction for evaluation). Light: torch is imported inside
the function, so importing this module costs nothing.
"""

from __future__ import annotations

NAMES = ("auto", "cpu", "cuda")


def resolve_device(name: str, where: str = "device") -> str:
    """``"cuda"`` or ``"cpu"`` for a device name of ``NAMES``: ``auto`` is CUDA when
    available, else the CPU; ``cuda`` without CUDA, or another name, is a ValueError."""
    if name not in NAMES:
        raise ValueError(f"{where}: device must be one of {', '.join(NAMES)}, got {name!r}")
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{where}: device 'cuda' requested but CUDA is not available")
    return name
