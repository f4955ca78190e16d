"""The report's parameters: ``DEFAULTS`` (the config's ``report`` section) and
``check_params``. Light: no matplotlib or pandas, so the config check reads it cheaply."""

from __future__ import annotations

DEFAULTS = {
    "title": "oacl: object-aware contrastive learning - results",
    "gallery": {"n_images": 4, "size": 160, "max_sets": 6},  # per (dataset, model, cam) set
}


def check_params(p: dict) -> None:
    """The report parameters (merged over DEFAULTS): ValueError naming the first bad key.
    The same ranges as the config schema's ``report`` section."""
    if not isinstance(p["title"], str):
        raise ValueError(f"report: title must be a string, got {p['title']!r}")
    for key, least in (("n_images", 0), ("size", 16), ("max_sets", 0)):
        value = p["gallery"][key]
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise ValueError(f"report: gallery.{key} must be an integer >= {least}, got {value!r}")
