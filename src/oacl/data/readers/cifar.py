"""CIFAR-10 / CIFAR-100 (python pickle release) -> manifest with materialised PNGs.

Layout (``root`` is the extracted folder or its parent)::

    cifar-10-batches-py/data_batch_1 .. data_batch_5, test_batch, batches.meta
    cifar-100-python/train, test, meta

The release has no per-image files, so every image is written as a PNG under
``images/<which>/<train|test>/``; one pickle batch is held in memory at a time.
``train`` batches give split ``train`` (a seeded ``val_fraction`` becomes ``val``),
the test batch ``test``. CIFAR-100 uses the 100 fine labels.
"""

from __future__ import annotations

import codecs
import importlib
import pickle
from pathlib import Path

import numpy as np

from ...io import write_json
from . import ManifestRows, holdout, progress, require, require_root, write_png

DEFAULTS = {
    "type": "cifar",
    "root": "",
    "which": "cifar10",  # cifar10 | cifar100
    "val_fraction": 0.05,
    "seed": 0,
    "reuse_files": False,
}
LAYOUT = {
    "cifar10": (
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        ["test_batch"],
        "batches.meta",
        b"labels",
        b"label_names",
    ),
    "cifar100": (
        "cifar-100-python",
        ["train"],
        ["test"],
        "meta",
        b"fine_labels",
        b"fine_label_names",
    ),
}


# The only callables a CIFAR batch needs: numpy array and dtype reconstruction (under
# numpy 1's and numpy 2's module names) and bytes from a protocol-2 pickle written by
# Python 3. Lists, dicts, bytes, str and numbers need none. Anything else (os.system, ...)
# is refused, so a crafted batch cannot run code.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): ("multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"): ("numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"): ("numeric", "_frombuffer"),
    ("numpy", "ndarray"): None,
    ("numpy", "dtype"): None,
    ("_codecs", "encode"): None,
}


def _numpy_private(module: str, name: str):
    """numpy's reconstruction helper: numpy._core (numpy 2) or numpy.core (numpy 1)."""
    try:
        mod = importlib.import_module(f"numpy._core.{module}")
    except ImportError:
        mod = importlib.import_module(f"numpy.core.{module}")
    return getattr(mod, name)


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refused {module}.{name} (not part of a CIFAR batch)")
        target = _ALLOWED[module, name]
        if target is not None:
            return _numpy_private(*target)
        return {"ndarray": np.ndarray, "dtype": np.dtype, "encode": codecs.encode}[name]


def _unpickle(path: Path) -> dict:
    """A CIFAR batch through the restricted unpickler above: no code in the file runs."""
    try:
        with open(path, "rb") as fh:
            obj = _CifarUnpickler(fh, encoding="bytes").load()
    except Exception as exc:
        raise ValueError(f"CIFAR: {path} is not a CIFAR python pickle: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"CIFAR: {path} holds a {type(obj).__name__}, not a CIFAR batch dict")
    return obj


def build(params: dict, out_dir: Path):
    which = params["which"]
    if which not in LAYOUT:
        raise ValueError(f"CIFAR: 'which' must be one of {sorted(LAYOUT)}, got {which!r}")
    folder, train_files, test_files, meta_file, label_key, names_key = LAYOUT[which]
    root = require_root(params["root"], which)
    if root.name != folder and (root / folder).is_dir():
        root = root / folder
    out_dir = Path(out_dir)
    paths = {f: require(root, f, which) for f in train_files + test_files + [meta_file]}
    meta = _unpickle(paths[meta_file])
    if names_key not in meta:
        raise ValueError(f"{which}: {paths[meta_file]} lacks {names_key.decode()}")
    write_json(out_dir / f"{which}_classes.json", [n.decode() for n in meta[names_key]])

    rows = ManifestRows()
    for part, files in (("train", train_files), ("test", test_files)):
        offset, ids = 0, []
        for f in files:
            batch = _unpickle(paths[f])
            for key in (b"data", label_key):
                if key not in batch:
                    raise ValueError(f"{which}: {paths[f]} lacks {key.decode()!r}")
            data = np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            for k, (img, label) in enumerate(
                progress(zip(data, batch[label_key]), f"{which} {f}", len(data))
            ):
                idx = offset + k
                rel = f"images/{which}/{part}/{idx:05d}.png"
                write_png(out_dir / rel, img, reuse=params["reuse_files"])
                image_id = f"{which}_{part}_{idx:05d}"
                ids.append(image_id)
                rows.add(image_id, rel, part, 32, 32, label=int(label), labels=[int(label)])
            offset += len(data)
            del batch, data
        if part == "train":
            held = holdout(ids, params["val_fraction"], params["seed"])
            split = rows.cols["split"]
            for i, image_id in enumerate(rows.cols["image_id"]):
                if image_id in held:
                    split[i] = "val"
    return rows.frame()
