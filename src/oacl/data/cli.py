"""`oacl data prepare|synth|index|fetch`: build a dataset's manifest.parquet, fetch sources."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ..artifacts import read_manifest


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="prepare datasets (manifest.parquet)")
    sub = data.add_subparsers(dest="data_command", required=True)

    p = sub.add_parser("prepare", help="build the dataset of a config section (any type)")
    p.add_argument("--cfg", required=True, help="dataset config as JSON (or a path to a JSON file)")
    p.add_argument("--out", required=True, help="output folder (manifest.parquet goes there)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_prepare)

    p = sub.add_parser("synth", help="generate the procedural scene dataset (type scenes)")
    p.add_argument("--cfg", default="{}", help="scenes config as JSON (or a path to a JSON file)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_synth)

    p = sub.add_parser("index", help="index a folder root/<split>/<class>/<image> in place")
    p.add_argument("--root", required=True, help="dataset folder")
    p.add_argument("--out", required=True, help="output folder (manifest.parquet goes there)")
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip undecodable/tiny images (listed in skipped.json)",
    )
    p.add_argument(
        "--min-size", type=int, default=None, help="smallest accepted image side in px (default 8)"
    )
    p.add_argument("--relative", action="store_true", help="store paths relative to --out")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default 2)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_index)

    p = sub.add_parser(
        "fetch",
        help="get cut-outs (openclipart) or photos (wallpapers) from Debian packages",
        description="apt-get download + dpkg -x of a Debian package into DEST "
        "(no root; nothing installed); cached by the package's SHA-256.",
    )
    p.add_argument("source", choices=["openclipart", "wallpapers"])
    p.add_argument("dest", help="folder to fill (the dataset root)")
    p.add_argument("--cache", default=None, help="folder for the .deb (default DEST/../.debs)")
    p.set_defaults(func=_fetch)


def _load_cfg(text: str) -> dict:
    """--cfg is inline JSON, or the path of a JSON file."""
    stripped = text.strip()
    if stripped and not stripped.startswith("{") and Path(stripped).is_file():
        text = Path(stripped).read_text()
    try:
        cfg = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"--cfg: not valid JSON: {exc}") from exc
    if not isinstance(cfg, dict):
        raise ValueError("--cfg: must be a JSON object")
    return cfg


def _run(cfg: dict, out: str, quiet: bool) -> int:
    from .prepare import prepare

    t0 = time.time()
    manifest = prepare(cfg, out, progress=not quiet)
    df = read_manifest(manifest)
    counts = df.groupby(["split", "variant"], sort=False).size()
    parts = ", ".join(
        f"{s}/{v} {n}" if v != "original" else f"{s} {n}" for (s, v), n in counts.items()
    )
    note = ""
    skipped = Path(out) / "skipped.json"
    if cfg.get("type") == "folder" and cfg.get("skip_bad") and skipped.exists():
        info = json.loads(skipped.read_text())
        note = f"; skipped {info['n_skipped']} bad image(s) {info['counts']} (see {skipped})"
    elif cfg.get("type") == "composite" and skipped.exists():
        info = json.loads(skipped.read_text())
        note = f"; skipped {info['n_skipped']} cut-out(s) {info['counts']} (see {skipped})"
    print(f"{manifest}: {len(df)} rows ({parts}) in {time.time() - t0:.1f} s{note}")
    return 0


def _prepare(args) -> int:
    return _run(_load_cfg(args.cfg), args.out, args.quiet)


def _synth(args) -> int:
    cfg = _load_cfg(args.cfg)
    if cfg.setdefault("type", "scenes") != "scenes":
        raise ValueError(
            f"oacl data synth makes type 'scenes' datasets; cfg has type {cfg['type']!r}"
        )
    return _run(cfg, args.out, args.quiet)


def _index(args) -> int:
    cfg = {
        "type": "folder",
        "root": args.root,
        "skip_bad": bool(args.skip_bad),
        "relative_paths": bool(args.relative),
    }
    if args.min_size is not None:
        cfg["min_size"] = args.min_size
    if args.workers is not None:
        cfg["workers"] = args.workers
    return _run(cfg, args.out, args.quiet)


def _fetch(args) -> int:
    from .fetch import FetchError, fetch

    t0 = time.time()
    try:
        st = fetch(args.source, args.dest, args.cache)
    except FetchError as exc:
        print(f"oacl data fetch {args.source}: {exc}", file=sys.stderr)
        return 2
    how = (
        "already there (same SHA-256)" if st["cached"] else f"unpacked in {time.time() - t0:.1f} s"
    )
    print(f"{args.dest}: {st['package']} {st['version']} (sha256 {st['sha256'][:12]}), "
          f"{st['n_files']} files, {how}")  # fmt: skip
    return 0
