"""oacl: object-aware contrastive learning (Mo et al., NeurIPS 2021) as a staged pipeline."""

__version__ = "0.1.0"
