"""oacl.models: encoders, heads and the checkpoint format later stages read."""

from .backbones import FEAT_DIMS, L2Projector, build_encoder, feat_dim, feature_map, mlp
from .checkpoint import (
    FORMAT,
    EmbeddingModel,
    load_checkpoint,
    save_checkpoint,
)

__all__ = [
    "FEAT_DIMS",
    "FORMAT",
    "EmbeddingModel",
    "L2Projector",
    "build_encoder",
    "feat_dim",
    "feature_map",
    "load_checkpoint",
    "mlp",
    "save_checkpoint",
]
