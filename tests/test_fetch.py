"""`oacl data fetch`: Debian packages via apt-get download + dpkg -x, mocked (no network)."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from oacl.data import fetch as fetch_mod

DEB = b"not a real deb, just bytes with a known hash"


def _fake_apt(bin_dir: Path, calls: Path) -> None:
    """apt-cache / apt-get / dpkg stand-ins that log their calls."""
    sha = hashlib.sha256(DEB).hexdigest()
    scripts = {
        "apt-cache": f'echo "apt-cache $*" >> {calls}\nprintf "Package: $3\\nVersion: 1:0.1-1\\n'
        f'SHA256: {sha}\\nSize: {len(DEB)}\\n"',
        "apt-get": f'echo "apt-get $*" >> {calls}\nprintf "{DEB.decode()}" > "pkg_1%3a0.1-1_all.deb"',
        "dpkg": f'echo "dpkg $*" >> {calls}\nd="$3/usr/share/openclipart/png/food/desserts"\n'
        'mkdir -p "$d" && echo png > "$d/cake.png"',
    }
    bin_dir.mkdir()
    for name, body in scripts.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body + "\n")
        (bin_dir / name).chmod(0o755)


def test_fetch_downloads_once_and_caches_by_content(tmp_path, monkeypatch):
    calls = tmp_path / "calls.log"
    _fake_apt(tmp_path / "bin", calls)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    dest = tmp_path / "sources" / "openclipart"
    # the documented command (docs/datasets.md), here with stand-ins for apt
    out = subprocess.run(["oacl", "data", "fetch", "openclipart", str(dest)], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    assert "openclipart-png 1:0.1-1" in out and "1 files, unpacked" in out
    assert (dest / "food/desserts/cake.png").exists()
    debs = list((tmp_path / "sources" / ".debs").glob("*.deb"))
    assert [d.name for d in debs] == [f"openclipart-png_{hashlib.sha256(DEB).hexdigest()}.deb"]
    assert "apt-get download openclipart-png=1:0.1-1" in calls.read_text()
    calls.write_text("")
    assert fetch_mod.fetch("openclipart", dest)["cached"]  # same SHA-256: nothing to do
    assert "apt-get" not in calls.read_text() and "dpkg" not in calls.read_text()
    (dest / fetch_mod.STAMP).unlink()  # stamp gone, .deb cached: unpack, no download
    (dest / "food/desserts/cake.png").unlink()
    with pytest.raises(fetch_mod.FetchError, match="not made by `oacl data fetch`"):
        fetch_mod.fetch("openclipart", dest)


def test_fetch_rejects_a_corrupt_download(tmp_path, monkeypatch):
    calls = tmp_path / "calls.log"
    _fake_apt(tmp_path / "bin", calls)
    apt_get = tmp_path / "bin" / "apt-get"
    apt_get.write_text(apt_get.read_text().replace("known hash", "other hash"))
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(fetch_mod.FetchError, match="SHA-256"):
        fetch_mod.fetch("wallpapers", tmp_path / "wp")


def test_no_apt_points_at_bring_your_own(monkeypatch, tmp_path):
    monkeypatch.setattr(fetch_mod.shutil, "which", lambda name: None)
    with pytest.raises(fetch_mod.FetchError) as err:
        fetch_mod.fetch("wallpapers", tmp_path / "wp")
    msg = str(err.value)
    assert "no apt-get" in msg and "Bring your own folders" in msg and "docs/datasets.md" in msg
    assert (
        "## Bring your own folders" in (Path(__file__).parents[1] / "docs/datasets.md").read_text()
    )


def test_cli_without_apt_exits_with_the_message(tmp_path):
    env = {**os.environ, "PATH": os.path.dirname(sys.executable)}  # no /usr/bin: no apt
    proc = subprocess.run(["oacl", "data", "fetch", "openclipart", str(tmp_path / "oc")],
                          capture_output=True, text=True, env=env)  # fmt: skip
    assert proc.returncode == 2
    assert "Bring your own folders" in proc.stderr and not (tmp_path / "oc").exists()
