"""`oacl data fetch SOURCE DEST`: image sources that need no dataset download site.

Both come from Debian's package archive, which every Debian/Ubuntu machine reaches
through its configured apt mirror: the package is fetched with ``apt-get download``
(no root needed) and unpacked with ``dpkg -x`` into DEST (nothing is installed
system-wide).

- ``openclipart``: ``openclipart-png``, about 8,000 clip-art PNGs with alpha in topic
  folders (``food/desserts``, ``recreation/toys``, ...): cut-outs for ``composite``.
- ``wallpapers``: ``plasma-workspace-wallpapers``, KDE wallpapers, several of them
  photographs (``<Name>/contents/images/<W>x<H>.jpg``): backgrounds for ``composite``.

Cached by content: the candidate version's SHA-256 from the apt index names the
downloaded ``.deb`` in the cache folder (default ``<DEST>/../.debs``) and is recorded in
``<DEST>/.oacl-fetch.json``; a second fetch of the same package version downloads and
unpacks nothing. A machine without apt gets a message pointing at the "Bring your own
folders" section of docs/datasets.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

SOURCES = {
    "openclipart": {"package": "openclipart-png", "subdir": "usr/share/openclipart/png"},
    "wallpapers": {"package": "plasma-workspace-wallpapers", "subdir": "usr/share/wallpapers"},
}
STAMP = ".oacl-fetch.json"
TOOLS = ("apt-get", "apt-cache", "dpkg")


class FetchError(RuntimeError):
    pass


def _byo(why: str) -> FetchError:
    return FetchError(
        f"{why}\n`oacl data fetch` gets Debian packages with apt-get download + dpkg -x and "
        "needs a Debian/Ubuntu machine with a configured apt mirror. Elsewhere, bring your "
        "own folders of cut-outs and photos: see 'Bring your own folders' in docs/datasets.md "
        "(set datasets.<name>.foregrounds / backgrounds in the config)."
    )


def candidate(package: str) -> dict:
    """Version, SHA256 and Size of the package's install candidate in the apt index."""
    proc = subprocess.run(["apt-cache", "show", "--no-all-versions", package],
                          capture_output=True, text=True)  # fmt: skip
    fields = {}
    for line in proc.stdout.splitlines():
        key, sep, val = line.partition(": ")
        if sep and key in ("Version", "SHA256", "Size") and key not in fields:
            fields[key] = val.strip()
    if proc.returncode != 0 or "SHA256" not in fields or "Version" not in fields:
        raise _byo(
            f"apt knows no package {package!r} "
            f"({proc.stderr.strip() or 'no SHA256 in apt-cache show'}); "
            "on Debian/Ubuntu run `apt-get update` once (as root) to fetch the package lists."
        )
    return fields


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download(package: str, info: dict, cache: Path) -> Path:
    """The package's .deb in the cache, named by its SHA-256 (downloaded if absent)."""
    deb = cache / f"{package}_{info['SHA256']}.deb"
    if deb.exists() and sha256(deb) == info["SHA256"]:
        return deb
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
        proc = subprocess.run(["apt-get", "download", f"{package}={info['Version']}"], cwd=tmp,
                              capture_output=True, text=True)  # fmt: skip
        debs = sorted(Path(tmp).glob("*.deb"))
        if proc.returncode != 0 or len(debs) != 1:
            raise FetchError(f"apt-get download {package} failed:\n{proc.stdout}{proc.stderr}")
        got = sha256(debs[0])
        if got != info["SHA256"]:
            raise FetchError(
                f"{package}: downloaded .deb has SHA-256 {got}, index says {info['SHA256']}"
            )
        os.replace(debs[0], deb)
    return deb


def fetch(source: str, dest, cache=None) -> dict:
    """Fill ``dest`` with ``source``'s files; returns the stamp (with ``cached``)."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r} (known: {', '.join(SOURCES)})")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise _byo(f"this machine has no {', '.join(missing)}.")
    spec = SOURCES[source]
    dest = Path(dest).expanduser().absolute()
    info = candidate(spec["package"])
    stamp_path = dest / STAMP
    if stamp_path.exists():
        stamp = json.loads(stamp_path.read_text())
        if stamp.get("package") == spec["package"] and stamp.get("sha256") == info["SHA256"]:
            return {**stamp, "cached": True}
    elif dest.exists() and any(dest.iterdir()):
        raise FetchError(
            f"{dest} exists and was not made by `oacl data fetch`; choose an empty folder"
        )
    cache = Path(cache).expanduser() if cache else dest.parent / ".debs"
    deb = _download(spec["package"], info, cache)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}-") as tmp:
        proc = subprocess.run(["dpkg", "-x", str(deb), tmp], capture_output=True, text=True)
        tree = Path(tmp) / spec["subdir"]
        if proc.returncode != 0 or not tree.is_dir():
            raise FetchError(f"dpkg -x {deb} gave no {spec['subdir']}:\n{proc.stderr}")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tree, dest)
    n_files = sum(1 for f in dest.rglob("*") if f.is_file())
    stamp = {"source": source, "package": spec["package"], "version": info["Version"],
             "sha256": info["SHA256"], "n_files": n_files}  # fmt: skip
    stamp_path.write_text(json.dumps(stamp, indent=1) + "\n")
    return {**stamp, "cached": False}
