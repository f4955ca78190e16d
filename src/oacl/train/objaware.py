"""Object-aware variants applied before the standard augmentations (STUB)."""
