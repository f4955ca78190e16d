"""`prepare(cfg, out_dir)`: build one dataset's manifest, dispatching on ``cfg["type"]``.

- ``scenes``: the embedded procedural dataset (oacl.data.scenes);
- ``folder``: an image folder indexed in place (oacl.data.folder);
- ``composite``: cut-outs pasted on photographs (oacl.data.composite);
- anything else: a reader module ``oacl.data.readers.<type>`` exposing ``DEFAULTS`` and
  ``build(params, out_dir) -> pandas.DataFrame`` (manifest rows); the rows are
  completed with the optional manifest columns and written atomically here.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pandas as pd

from ..artifacts import fill_optional_columns, write_manifest
from ..params import merge_params

BUILTIN = ["scenes", "folder", "composite"]


def known_types() -> list[str]:
    """Built-in types plus the reader modules present in oacl.data.readers."""
    try:
        readers = importlib.import_module("oacl.data.readers")
        names = sorted(
            m.name for m in pkgutil.iter_modules(readers.__path__) if not m.name.startswith("_")
        )
    except ModuleNotFoundError:
        names = []
    return BUILTIN + names


def _reader(kind: str):
    if not isinstance(kind, str) or not kind.isidentifier():
        raise ValueError(f"unknown dataset type {kind!r} (known: {', '.join(known_types())})")
    name = f"oacl.data.readers.{kind}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name in (name, "oacl.data.readers"):
            raise ValueError(
                f"unknown dataset type {kind!r} (known: {', '.join(known_types())})"
            ) from None
        raise


def resolve_params(cfg: dict) -> tuple[str, dict, object]:
    """(type, merged params, module) for a dataset config section."""
    if not isinstance(cfg, dict) or "type" not in cfg:
        raise ValueError(f"dataset config needs a 'type' key (known: {', '.join(known_types())})")
    kind = cfg["type"]
    if kind == "scenes":
        from . import scenes as mod
    elif kind == "folder":
        from . import folder as mod
    elif kind == "composite":
        from . import composite as mod
    else:
        mod = _reader(kind)
    return kind, merge_params(mod.DEFAULTS, cfg, where=f"data[{kind}]"), mod


def prepare(cfg: dict, out_dir, progress: bool = True) -> Path:
    """Build the dataset described by ``cfg`` into ``out_dir``; return the manifest path."""
    kind, params, mod = resolve_params(cfg)
    out = Path(out_dir)
    if kind in ("scenes", "composite"):
        return mod.generate(params, out, progress=progress)
    if kind == "folder":
        return mod.index_folder(params, out, progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    df = mod.build(params, out)
    if not isinstance(df, pd.DataFrame):
        raise TypeError(
            f"oacl.data.readers.{kind}.build must return a pandas DataFrame, "
            f"got {type(df).__name__}"
        )
    df = complete_manifest(df)
    manifest = out / "manifest.parquet"
    write_manifest(manifest, df)
    return manifest


def complete_manifest(df: pd.DataFrame) -> pd.DataFrame:
    """Add the optional manifest columns a reader left out, with their 'unknown' values."""
    df = df.copy()
    if "labels" not in df and "label" in df:
        # a single-label reader may give only `label`; mirror it into `labels`
        df["labels"] = [[int(c)] if c >= 0 else [] for c in df["label"]]
    return fill_optional_columns(df)


def missing_paths(cfg: dict, skip=()) -> list[tuple[str, str]]:
    """``(config key, problem)`` for each path of a dataset config that does not exist:
    its root, IN-9's test_root, CUB's split_file, composite's folders and the files a
    reader declares in ``layout(params)`` (COCO's annotations). Reads no data, so a
    config check runs it before any job. ``skip``: paths the workflow makes itself."""
    _, p, mod = resolve_params(cfg)
    problems = []
    root = Path(str(p.get("root") or "")).expanduser()
    if "root" in p:
        if not p["root"]:
            problems.append(("root", "not set (the dataset folder)"))
        elif not root.is_dir():
            problems.append(("root", f"{root}: folder not found"))
    for key in ("test_root", "foregrounds", "backgrounds"):
        value = str(p.get(key) or "")
        if value and value.rstrip("/") not in skip and not Path(value).expanduser().is_dir():
            problems.append((key, f"{value}: folder not found"))
    if p.get("split_file") and root.is_dir() and not (root / p["split_file"]).is_file():
        problems.append(("split_file", f"{root / p['split_file']}: file not found"))
    if hasattr(mod, "layout") and root.is_dir():
        for rel, kind in mod.layout(p):
            ok = (root / rel).is_dir() if kind == "folder" else (root / rel).is_file()
            if not ok:
                problems.append(("root", f"{root}: expected {kind} {rel}"))
    return problems
