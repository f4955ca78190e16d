"""Atomic file writes and robust image reading shared by every stage.

Every artifact is written to a temporary file in the destination folder and then
renamed over the target, so a killed job never leaves a half-written output that
Snakemake (or a resumed run) would mistake for a finished one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

_UMASK = os.umask(0)
os.umask(_UMASK)


class ImageError(ValueError):
    """An image file that cannot be decoded; the message names the path."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give outputs normal permissions
    try:
        yield tmp
        with open(tmp, "rb+") as fh:  # flush to disk before the rename is visible
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_parquet(path: str | os.PathLike, table) -> None:
    """Write a pyarrow Table (or pandas DataFrame) atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not isinstance(table, pa.Table):
        table = pa.Table.from_pandas(table, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def torch_save(path: str | os.PathLike, obj: Any) -> None:
    """torch.save atomically, byte-reproducibly: the same object gives the same bytes.

    Given a file name, torch.save names the zip archive's top folder after it (here the
    random temporary name); given an open file it uses the fixed name "archive".
    """
    import torch

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)


class UnreadableFile(ValueError):
    """A file that cannot be read as what it should be; ``reason`` says why (no path)."""

    def __init__(self, path, what: str, reason: str):
        super().__init__(f"{path} cannot be read as {what}: {reason}")
        self.reason = reason


def torch_load(path: str | os.PathLike, what: str) -> Any:
    """``torch.load`` with ``weights_only=True``: tensors and plain containers only, so a
    tampered file cannot run code. Any failure is an UnreadableFile naming ``path``;
    PyTorch's advice to retry without weights_only is not passed on (that would run
    whatever the file holds)."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # the line that names what was refused ("... unsupported GLOBAL posix.system ...");
        # the lines around it are PyTorch's advice, wording varying between versions
        detail = next(
            (ln.strip() for ln in str(exc).splitlines() if "GLOBAL" in ln or "Unsupported" in ln),
            "it holds objects other than tensors and plain containers",
        )
        raise UnreadableFile(
            path, what, f"refused ({detail}); only tensors and plain containers are loaded"
        ) from None
    except Exception as exc:
        first = (str(exc).splitlines() or [""])[0]
        raise UnreadableFile(path, what, f"{type(exc).__name__}: {first}") from None


# --------------------------------------------------------------------------- images


def encode_png(array: np.ndarray) -> bytes:
    """Encode a uint8 HxW or HxWx3 (RGB) array as PNG bytes."""
    import cv2

    a = np.ascontiguousarray(array)
    if a.dtype != np.uint8:
        raise ValueError(f"encode_png expects uint8, got {a.dtype}")
    if a.ndim == 3:
        a = a[:, :, ::-1]  # OpenCV writes BGR
    ok, buf = cv2.imencode(".png", a)
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    """Decode PNG bytes (as written by encode_png) to a uint8 array (RGB if colour)."""
    import cv2

    a = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if a is None:
        raise ImageError("could not decode PNG bytes")
    if a.ndim == 3:
        a = a[:, :, ::-1].copy()
    return a


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read any common image as uint8 RGB (H, W, 3).

    Grayscale, palette, RGBA (composited on black), CMYK and 16-bit images are
    converted; a truncated or corrupt file raises ImageError naming the path.
    """
    from PIL import Image, ImageFile

    ImageFile.LOAD_TRUNCATED_IMAGES = False
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                # scaled by the file's bit depth, never by its content: a dark 16-bit
                # image (maximum 199) stays dark instead of being read as 8-bit
                a = np.asarray(im, dtype=np.float64)
                a = np.rint(a / (2.0 ** _bit_depth(im) - 1) * 255.0).clip(0, 255).astype(np.uint8)
                return np.repeat(a[:, :, None], 3, axis=2)
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
                bg = Image.new("RGBA", im.size, (0, 0, 0, 255))
                im = Image.alpha_composite(bg, im)
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except FileNotFoundError:
        raise
    except Exception as exc:  # PIL raises many types for broken files
        raise ImageError(f"{path}: cannot decode image ({type(exc).__name__}: {exc})") from exc


def _bit_depth(im) -> int:
    """Bits per sample of an integer greyscale PIL image ("I;16*" or "I")."""
    if im.mode.startswith("I;16"):
        return 16
    bits = getattr(im, "tag_v2", {}).get(258)  # TIFF BitsPerSample
    if bits:
        return int(bits[0] if isinstance(bits, tuple) else bits)
    return 16  # PNG and PGM decode deeper-than-8-bit grey as "I" holding 16-bit samples


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a mask PNG as uint8 (H, W); any non-zero pixel is foreground for binary masks."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L"), dtype=np.uint8).copy()
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise ImageError(f"{path}: cannot decode mask ({type(exc).__name__}: {exc})") from exc
