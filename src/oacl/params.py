"""Stage parameters: a stage's DEFAULTS dict merged with what the config gives.

Rules pass their config section as JSON (``--cfg '{...}'``); unknown keys are an
error that names the key, so a typo in config.yaml never silently does nothing.
"""

from __future__ import annotations

import copy
import json
from typing import Any


def merge_params(defaults: dict, given: dict | str | None, where: str = "cfg") -> dict:
    """Deep-merge ``given`` over ``defaults``; a key not in defaults raises ValueError."""
    if given is None:
        given = {}
    if isinstance(given, str):
        try:
            given = json.loads(given) if given.strip() else {}
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: not valid JSON: {exc}") from exc
    out = copy.deepcopy(defaults)
    _merge(out, given, where)
    return out


def _merge(dst: dict, src: dict, where: str) -> None:
    for key, val in src.items():
        if key not in dst:
            raise ValueError(f"{where}: unknown key {key!r} (known: {sorted(dst)})")
        if isinstance(dst[key], dict) and isinstance(val, dict) and dst[key]:
            _merge(dst[key], val, f"{where}.{key}")
        else:
            dst[key] = copy.deepcopy(val)


def deep_merge(base: dict, over: dict) -> dict:
    """``over`` merged over a copy of ``base`` key by key, at every depth: a mapping in both
    is merged, anything else in ``over`` replaces. Neither argument is changed. (Unlike
    ``merge_params`` any key is accepted: the config's own sections are merged with it.)"""
    out = copy.deepcopy(base)
    for key, val in over.items():
        if isinstance(val, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], val)
        else:
            out[key] = copy.deepcopy(val)
    return out


def drop_null_entries(config: dict) -> dict:
    """How a preset removes an entry of config.yaml: the datasets, experiments and
    localization_tables entries set to null are dropped (in ``config``, returned too)."""
    for section in ("datasets", "experiments", "localization_tables"):
        if isinstance(config.get(section), dict):
            config[section] = {k: v for k, v in config[section].items() if v is not None}
    return config


def params_json(params: dict[str, Any]) -> str:
    """Canonical JSON for recording the parameters that produced an artifact."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"))
