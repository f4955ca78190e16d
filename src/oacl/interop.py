"""Interoperability: import the authors' released boxes, export encoders to other tools.

``oacl import-boxes --manifest M --boxes-txt FILE --out boxes.parquet``
    The authors' box files have one line per image, ``image_id x1,y1,x2,y2 ...`` with
    normalised coordinates. Image ids are matched to the manifest's ``image_id``, else
    to the image file's stem (with or without leading zeros, so ``000000000139`` and
    ``139`` both match COCO image 139). The output is a box shard (BOX_SCHEMA) with an
    empty ``mask_png`` and ``bg_rect`` = the full image; unmatched lines are counted.

``oacl export --checkpoint model.pt --format torchvision|detectron2 --out FILE``
    torchvision: the encoder's ResNet ``state_dict`` (torch.save). It has no ``fc.*``
    keys unless the model has a linear ``classifier`` (supervised models), so load it
    with ``torchvision.models.resnet50().load_state_dict(sd, strict=False)``: the only
    missing keys are ``fc.weight`` and ``fc.bias``.
    detectron2: the pickle Detectron2 reads as ``MODEL.WEIGHTS`` for a ResNet backbone,
    with the key renaming of the MoCo conversion scheme (``conv1/bn1`` -> ``stem.conv1``
    / ``stem.conv1.norm``, ``layerN`` -> ``res{N+1}``, ``bnK`` -> ``convK.norm``,
    ``downsample.0/1`` -> ``shortcut`` / ``shortcut.norm``), numpy values, and
    ``matching_heuristics: True``.
"""

from __future__ import annotations

import logging
import pickle
import re
from collections import OrderedDict
from pathlib import Path

from .artifacts import BOX_SCHEMA, read_manifest, write_rows
from .io import atomic_path, torch_save
from .params import params_json

log = logging.getLogger(__name__)

FORMATS = ["torchvision", "detectron2"]


# --------------------------------------------------------------------------- import-boxes


def parse_box_line(line: str, where: str) -> tuple[str, list[list[float]]]:
    """``image_id x1,y1,x2,y2 ...`` -> (image_id, boxes), boxes normalised and validated."""
    parts = line.split()
    key, boxes = parts[0], []
    for tok in parts[1:]:
        try:
            vals = [float(v) for v in tok.split(",")]
        except ValueError:
            raise ValueError(f"{where}: box {tok!r} is not four comma-separated numbers") from None
        if len(vals) != 4:
            raise ValueError(f"{where}: box {tok!r} has {len(vals)} values, expected x1,y1,x2,y2")
        if min(vals) < -1e-3 or max(vals) > 1 + 1e-3:
            raise ValueError(
                f"{where}: box {tok!r} is not normalised to [0, 1] (pixel coordinates?)"
            )
        x1, y1, x2, y2 = (min(max(v, 0.0), 1.0) for v in vals)
        if x2 <= x1 or y2 <= y1:
            raise ValueError(f"{where}: box {tok!r} has x2 <= x1 or y2 <= y1")
        boxes.append([x1, y1, x2, y2])
    return key, boxes


def _id_lookup(df) -> dict[str, int]:
    """Key -> manifest row: image_id first, then unique file stems (and without leading zeros)."""
    by_stem: dict[str, list[int]] = {}
    for i, p in enumerate(df["path"]):
        stem = Path(p).stem
        by_stem.setdefault(stem, []).append(i)
        if stem.lstrip("0") and stem.lstrip("0") != stem:
            by_stem.setdefault(stem.lstrip("0"), []).append(i)
    lookup = {k: v[0] for k, v in by_stem.items() if len(v) == 1}  # ambiguous stems never match
    lookup.update({iid: i for i, iid in enumerate(df["image_id"])})
    return lookup


def import_boxes(manifest: str | Path, boxes_txt: str | Path, out: str | Path) -> dict:
    """Convert an authors' box file to a box shard; returns counts (matched, unmatched...)."""
    df = read_manifest(manifest)
    boxes_txt = Path(boxes_txt)
    if not boxes_txt.is_file():
        raise FileNotFoundError(f"box file not found: {boxes_txt}")
    lookup = _id_lookup(df)
    found: dict[int, list] = {}
    unmatched, examples = 0, []
    with open(boxes_txt) as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip() or line.startswith("#"):
                continue
            key, boxes = parse_box_line(line, f"{boxes_txt} line {n}")
            stem = Path(key).stem
            row = next(
                (lookup[k] for k in (key, stem, stem.lstrip("0")) if k and k in lookup), None
            )
            if row is None:
                unmatched += 1
                if len(examples) < 3:
                    examples.append(key)
                continue
            found.setdefault(row, []).extend(boxes)  # repeated lines add boxes
    params = params_json(
        {"imported_from": str(boxes_txt.resolve()), "format": "image_id x1,y1,x2,y2 ..."}
    )
    rows = [
        {
            "image_id": df["image_id"].iat[i],
            "boxes": b,
            "n_boxes": len(b),
            "height": int(df["height"].iat[i]),
            "width": int(df["width"].iat[i]),
            "mask_png": b"",
            "bg_rect": [0.0, 0.0, 1.0, 1.0],
            "empty": not b,
            "params": params,
        }
        for i, b in sorted(found.items())
    ]
    write_rows(out, rows, BOX_SCHEMA)
    counts = {
        "matched": len(rows),
        "boxes": sum(r["n_boxes"] for r in rows),
        "unmatched_lines": unmatched,
        "unmatched_examples": examples,
        "manifest_images_without_boxes": len(df) - len(rows),
    }
    if unmatched:
        log.warning(
            "%s: %d line(s) matched no manifest image (e.g. %s)", boxes_txt, unmatched, examples
        )
    return counts


# --------------------------------------------------------------------------- export


def encoder_state_dict(encoder) -> OrderedDict[str, object]:
    """The encoder's weights on CPU without the (Identity) head: torchvision key layout."""
    return OrderedDict(
        (k, v.detach().cpu().clone())
        for k, v in encoder.state_dict().items()
        if not k.startswith("fc.")
    )


def torchvision_state_dict(model) -> OrderedDict[str, object]:
    """A state_dict for ``torchvision.models.<arch>()``; adds ``fc.*`` from a linear classifier."""
    import torch.nn as nn

    sd = encoder_state_dict(model.encoder)
    arch = (getattr(model, "meta", None) or {}).get("arch", "")
    _check_torchvision(sd, arch)
    clf = getattr(model, "classifier", None)
    if isinstance(clf, nn.Linear):
        sd["fc.weight"] = clf.weight.detach().cpu().clone()
        sd["fc.bias"] = clf.bias.detach().cpu().clone()
    return sd


def _check_torchvision(sd: dict, arch: str) -> None:
    import torchvision.models as tvm

    if not (arch.startswith("resnet") and hasattr(tvm, arch)):
        if arch:
            log.warning(
                "arch %r is not a torchvision model: the export keeps the ResNet key layout, "
                "but only a module of the same shape can load it",
                arch,
            )
        return
    import torch

    with torch.device("meta"):  # shapes only: skips the (slow) weight initialisation
        ref = getattr(tvm, arch)(weights=None).state_dict()
    for k, v in ref.items():
        if k.startswith("fc."):
            continue
        if k not in sd:
            raise ValueError(f"encoder is not a torchvision {arch}: missing {k}")
        if tuple(sd[k].shape) != tuple(v.shape):
            raise ValueError(
                f"encoder is not a torchvision {arch}: {k} has shape {tuple(sd[k].shape)}, expected {tuple(v.shape)}"
            )


def detectron2_key(key: str) -> str:
    """torchvision ResNet key -> Detectron2 ResNet backbone key."""
    parts = key.split(".")
    m = re.fullmatch(r"layer(\d)", parts[0])
    if m is None:  # stem: conv1 / bn1
        head, rest = ["stem"], parts
    else:
        head, rest = [f"res{int(m.group(1)) + 1}", parts[1]], parts[2:]
    name = rest[0]
    if name == "downsample":
        mod = ["shortcut"] if rest[1] == "0" else ["shortcut", "norm"]
        rest = rest[2:]
    elif re.fullmatch(r"bn\d", name):
        mod = [f"conv{name[2:]}", "norm"]
        rest = rest[1:]
    else:
        mod = [name]
        rest = rest[1:]
    return ".".join(head + mod + rest)


def detectron2_weights(encoder) -> dict:
    """The Detectron2 pickle payload: renamed keys, numpy values, matching heuristics on."""
    model = {
        detectron2_key(k): v.numpy()
        for k, v in encoder_state_dict(encoder).items()
        if not k.endswith("num_batches_tracked")  # Detectron2's FrozenBN has no counter
    }
    return {"model": model, "__author__": "oacl", "matching_heuristics": True}


def export_model(model, fmt: str, out: str | Path) -> Path:
    """Write ``model.encoder`` in ``fmt`` (torchvision | detectron2) to ``out`` atomically."""
    out = Path(out)
    if fmt == "torchvision":
        torch_save(out, torchvision_state_dict(model))
    elif fmt == "detectron2":
        payload = detectron2_weights(model.encoder)
        with atomic_path(out) as tmp:
            with open(tmp, "wb") as fh:
                pickle.dump(payload, fh)
    else:
        raise ValueError(f"unknown export format {fmt!r} (known: {FORMATS})")
    return out


# --------------------------------------------------------------------------- CLI


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "import-boxes", help="convert the authors' released box file to a box shard"
    )
    p.add_argument("--manifest", required=True, help="manifest.parquet of the dataset")
    p.add_argument(
        "--boxes-txt",
        required=True,
        help="one line per image: image_id x1,y1,x2,y2 ... (normalised)",
    )
    p.add_argument("--out", required=True, help="box shard to write (.parquet)")
    p.set_defaults(func=_import_boxes_cmd)

    p = subparsers.add_parser(
        "export", help="export a checkpoint's encoder for torchvision or Detectron2"
    )
    p.add_argument("--checkpoint", required=True, help="model.pt written by oacl pretrain")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument(
        "--out", required=True, help="output file (.pth for torchvision, .pkl for detectron2)"
    )
    p.set_defaults(func=_export_cmd)


def _import_boxes_cmd(args) -> int:
    counts = import_boxes(args.manifest, args.boxes_txt, args.out)
    print(
        f"import-boxes: {counts['matched']} images, {counts['boxes']} boxes -> {args.out}; "
        f"{counts['unmatched_lines']} unmatched line(s)"
        + (
            f" (e.g. {', '.join(counts['unmatched_examples'])})"
            if counts["unmatched_lines"]
            else ""
        )
        + f"; {counts['manifest_images_without_boxes']} manifest images without a line"
    )
    return 0


def _export_cmd(args) -> int:
    import oacl.models  # lazy: torch is only needed here

    if not Path(args.checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint not found: {args.checkpoint}")
    model = oacl.models.load_checkpoint(args.checkpoint)
    out = export_model(model, args.format, args.out)
    n = len(encoder_state_dict(model.encoder))
    print(f"export: {args.format} weights of {n} encoder tensors -> {out}")
    return 0


__all__ = [
    "FORMATS",
    "detectron2_key",
    "detectron2_weights",
    "encoder_state_dict",
    "export_model",
    "import_boxes",
    "parse_box_line",
    "register",
    "torchvision_state_dict",
]
