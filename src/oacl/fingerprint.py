"""What a stage's result depends on, as hashes: its config, its input files' bytes and its code.

A stage that reuses earlier work (pretraining's ``train_state.pt``, the evaluation
feature cache) stores ``fingerprint(...)`` beside that work and reuses it only when a
fresh fingerprint is equal. Everything is hashed by content, never by name or mtime:
an input rewritten with other bytes under the same path (a dataset regenerated with
another seed) or a source file with one more comment is a change; a file rewritten
with the same bytes is not. ``differences`` says in words what changed, for the log.

    fp = fingerprint({"lr": 0.1}, {"manifest": [m], "images": paths}, ["io.py", "train/*.py"])
    differences(old_fp, fp)  # [] when the old work may be reused

Code patterns are globs relative to the ``oacl`` package folder (src/oacl); the stages
pass the file lists of ``oacl.codedeps.code_of``, as the Snakemake rules list their code.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
FORMAT = "oacl-fingerprint-v1"
_CHUNK = 1 << 20


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (hex). A missing file raises FileNotFoundError naming it."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def files_digest(paths: Sequence[str | os.PathLike]) -> str:
    """One sha256 over the ordered list of (position, file hash): order and content count."""
    h = hashlib.sha256()
    for p in paths:
        h.update(file_digest(p).encode())
        h.update(b"\n")
    return h.hexdigest()


def code_digests(patterns: Iterable[str]) -> dict[str, str]:
    """{path relative to src/oacl: sha256} of the package files matching ``patterns``."""
    out = {}
    for pat in patterns:
        matched = sorted(PACKAGE.glob(pat))
        if not matched:
            raise FileNotFoundError(f"code pattern {pat!r} matches nothing under {PACKAGE}")
        for p in matched:
            out[p.relative_to(PACKAGE).as_posix()] = file_digest(p)
    return dict(sorted(out.items()))


def config_digest(config) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def fingerprint(
    config, inputs: Mapping[str, Sequence[str | os.PathLike]], code: Iterable[str]
) -> dict:
    """``{"format", "config", "inputs": {name: hash}, "code": {file: hash}, "digest"}``.

    ``config``: anything JSON-serialisable that shapes the result; ``inputs``: named,
    ordered lists of files whose bytes shape it; ``code``: globs under src/oacl.
    """
    fp = {
        "format": FORMAT,
        "config": config_digest(config),
        "inputs": {name: files_digest(list(paths)) for name, paths in sorted(inputs.items())},
        "code": code_digests(code),
    }
    fp["digest"] = config_digest([fp["config"], fp["inputs"], fp["code"]])
    return fp


def differences(old, new: dict) -> list[str]:
    """What differs between two fingerprints, in words ([] when they are equal)."""
    if not isinstance(old, dict) or old.get("format") != new["format"]:
        return ["no fingerprint of this format was stored"]
    if old.get("digest") == new["digest"]:
        return []
    out = []
    if old.get("config") != new["config"]:
        out.append("config changed")
    oi, ni = old.get("inputs", {}), new["inputs"]
    for name in sorted(set(oi) | set(ni)):
        if name not in oi or name not in ni:
            out.append(f"input {name} {'added' if name in ni else 'removed'}")
        elif oi[name] != ni[name]:
            out.append(f"input {name} changed")
    oc, nc = old.get("code", {}), new["code"]
    changed = sorted(f for f in set(oc) | set(nc) if oc.get(f) != nc.get(f))
    if changed:
        shown = ", ".join(f"src/oacl/{f}" for f in changed[:5])
        more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        out.append(f"code changed ({shown}{more})")
    return out or ["fingerprint changed"]
