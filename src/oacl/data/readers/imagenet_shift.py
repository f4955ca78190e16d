"""ImageNet-Sketch / -R / -C / Stylized-ImageNet restricted to the 9 ImageNet-9 classes.

These releases store images in WordNet-ID folders (``n02085620/``) at some depth:
ImageNet-Sketch ``sketch/<wnid>/``, ImageNet-R ``<wnid>/``, ImageNet-C
``<corruption>/<severity>/<wnid>/``, Stylized-ImageNet ``val/<wnid>/``. Every
``<wnid>`` folder under ``root`` is read; the path between ``root`` and it is the
``subset`` column (e.g. ``gaussian_noise/3``), which ``subsets`` can filter.

``mapping`` (required; no mapping ships with oacl) is a file from WordNet ID (or
ImageNet class index 0..999) to an IN-9 class (index 0..8, IN-9 folder name like
``00_dog`` or class name like ``dog``; -1 drops the class):

* TSV/CSV/TXT: one ``key<TAB>class`` pair a line (``#`` comments allowed);
* JSON: an object ``{key: class}`` -- e.g. the Background Challenge's ``in_to_in9.json``
  (ImageNet index -> IN-9 index). Integer keys need the index -> WordNet-ID order:
  ``wnid_list`` (one WordNet ID a line, first token, in class-index order, e.g.
  ``LOC_synset_mapping.txt``), or, without it, the sorted wnid folders when ``root`` has
  exactly 1000 of them (ImageNet-Sketch).

Images of unmapped classes are skipped (counted in the log). All rows are split
``test`` with ``variant`` = the config's ``variant``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from . import ManifestRows, image_size, progress, require_root
from ._in9_classes import IMAGE_EXTS, IN9_CLASSES

log = logging.getLogger(__name__)

DEFAULTS = {
    "type": "imagenet_shift",
    "root": "",
    "variant": "sketch",  # sketch | rendition | corrupted | stylized (the manifest's variant)
    "mapping": "",  # WordNet ID (or ImageNet index) -> IN-9 class file, required
    "wnid_list": "",  # ImageNet index -> WordNet ID order, for integer-keyed mappings
    "subsets": None,  # keep only these subset paths (e.g. ["gaussian_noise/3"]); null = all
    "split": "test",
    "read_sizes": True,  # false: width/height 0 (skips one header read per image)
}
_WNID = re.compile(r"^n\d{8}$")


def build(params: dict, out_dir: Path):
    name = f"imagenet_shift ({params['variant']})"
    root = require_root(params["root"], name)
    folders = _wnid_folders(root)
    if not folders:
        raise ValueError(
            f"{name} root {root}: no WordNet-ID folders (expected e.g. n02085620/ at some depth)"
        )
    mapping = load_mapping(
        params["mapping"], params["wnid_list"], sorted({w for _, w in folders}), name
    )
    subsets = set(params["subsets"]) if params["subsets"] is not None else None

    rows = ManifestRows(extra={"subset": ""})
    skipped = 0
    for subset, wnid in progress(folders, f"{name} folders"):
        if subsets is not None and subset not in subsets:
            continue
        folder = root / subset / wnid
        files = sorted(
            e.name for e in os.scandir(folder) if Path(e.name).suffix.lower() in IMAGE_EXTS
        )
        label = mapping.get(wnid, -1)
        if label < 0:
            skipped += len(files)
            continue
        for f in files:
            path = folder / f
            w, h = image_size(path) if params["read_sizes"] else (0, 0)
            rel = path.relative_to(root).as_posix()
            rows.add(
                f"{params['variant']}/{rel}",
                str(path),
                params["split"],
                w,
                h,
                variant=params["variant"],
                label=label,
                labels=[label],
                subset=subset,
            )
    log.info("%s: %d images kept, %d of unmapped classes skipped", name, len(rows), skipped)
    if not len(rows):
        raise ValueError(
            f"{name} root {root}: no image of a mapped class (check 'mapping' and 'subsets')"
        )
    return rows.frame()


def _wnid_folders(root: Path) -> list[tuple[str, str]]:
    """(subset path relative to root, wnid) of every WordNet-ID folder, sorted."""
    out = []
    for dirpath, dirnames, _ in os.walk(root):
        dirnames.sort()
        here = Path(dirpath)
        for d in list(dirnames):
            if _WNID.match(d):
                rel = here.relative_to(root).as_posix()
                out.append(("" if rel == "." else rel, d))
                dirnames.remove(d)  # no wnid folders inside wnid folders
    return sorted(out)


def in9_class(value, where: str) -> int:
    """An IN-9 class given as index, ``NN_name`` folder name or class name -> index (-1 = drop)."""
    if isinstance(value, int) or (isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip())):
        idx = int(value)
        if not -1 <= idx < len(IN9_CLASSES):
            raise ValueError(f"{where}: IN-9 class index {idx} outside -1..8")
        return idx
    key = re.sub(r"^\d+_", "", str(value).strip().lower()).replace("_", " ")
    if key not in IN9_CLASSES:
        raise ValueError(f"{where}: {value!r} is not an IN-9 class ({IN9_CLASSES})")
    return IN9_CLASSES.index(key)


def load_mapping(path: str, wnid_list: str, wnids_present: list[str], name: str) -> dict[str, int]:
    """Read a WordNet ID (or ImageNet index) -> IN-9 class file as {wnid: class index}."""
    if not path:
        raise ValueError(
            f"{name}: config key 'mapping' is required: a TSV/JSON file mapping WordNet IDs "
            "to IN-9 classes (see docs/datasets.md)"
        )
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"{name}: mapping file {p} not found")
    pairs: list[tuple[str, object, str]] = []
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"mapping file {p} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"mapping file {p}: expected a JSON object {{wnid or index: class}}")
        pairs = [(str(k), v, f"mapping file {p} key {k}") for k, v in data.items()]
    else:
        for n, line in enumerate(p.read_text().splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = (
                re.split(r"[\t,]", line, maxsplit=1)
                if re.search(r"[\t,]", line)
                else line.split(None, 1)
            )
            if len(parts) != 2:
                raise ValueError(
                    f"mapping file {p} line {n}: expected 'wnid<TAB>class', got {line!r}"
                )
            pairs.append((parts[0].strip(), parts[1].strip(), f"mapping file {p} line {n}"))
    index_order = None
    out: dict[str, int] = {}
    for key, value, where in pairs:
        cls = in9_class(value, where)
        if not _WNID.match(key):
            if not re.fullmatch(r"\d+", key):
                raise ValueError(
                    f"{where}: key {key!r} is neither a WordNet ID nor an ImageNet class index"
                )
            if index_order is None:
                index_order = _index_order(wnid_list, wnids_present, p, name)
            if int(key) >= len(index_order):
                raise ValueError(
                    f"{where}: ImageNet index {key} outside the {len(index_order)} classes"
                )
            key = index_order[int(key)]
        out[key] = cls
    return out


def _index_order(wnid_list: str, wnids_present: list[str], mapping: Path, name: str) -> list[str]:
    if wnid_list:
        p = Path(wnid_list).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"{name}: wnid_list file {p} not found")
        order = [ln.split()[0] for ln in p.read_text().splitlines() if ln.strip()]
        bad = [w for w in order if not _WNID.match(w)]
        if bad:
            raise ValueError(f"wnid_list file {p}: {bad[0]!r} is not a WordNet ID")
        return order
    if len(wnids_present) == 1000:  # a full 1000-class release: folder order is class order
        return wnids_present
    raise ValueError(
        f"{name}: mapping file {mapping} is keyed by ImageNet class index; set 'wnid_list' "
        f"(index -> WordNet ID order) since the root has {len(wnids_present)} wnid folders, not 1000"
    )
