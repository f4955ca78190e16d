"""The Parquet artifacts every stage exchanges, defined in one place.

manifest.parquet  one row per image (see MANIFEST_SCHEMA)
mask shards       ContraCAM soft masks, one row per image (see MASK_SCHEMA)
box shards        refined masks, boxes and background rectangles (see BOX_SCHEMA)

Coordinates: boxes are [x1, y1, x2, y2] normalised to [0, 1] of the original image
(x to width, y to height). Pixel rectangles (bg_rect) are also normalised.
Any reader (pandas, pyarrow, DuckDB) can open these files; the helpers here add
validation with errors that name the file and the missing column.
"""

from __future__ import annotations

import glob
import logging
import os
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .io import write_parquet

log = logging.getLogger(__name__)

BOX_TYPE = pa.list_(pa.list_(pa.float32(), 4))

MANIFEST_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),  # unique within the dataset
        ("path", pa.string()),  # relative to the manifest's folder, or absolute
        ("split", pa.string()),  # train | val | test | objcrop_train | ...
        ("variant", pa.string()),  # original | only_fg | mixed_rand | ... (original if n/a)
        ("scene_id", pa.int64()),  # rows derived from the same scene share it (-1 if n/a)
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("label", pa.int32()),  # image-level class (-1 if none)
        ("labels", pa.list_(pa.int32())),  # all object classes in the image
        ("bg_label", pa.int32()),  # background class (-1 if unknown)
        ("boxes", BOX_TYPE),  # ground-truth boxes, normalised xyxy (empty if unknown)
        ("box_labels", pa.list_(pa.int32())),
        ("mask_path", pa.string()),  # ground-truth foreground mask PNG ("" if none)
    ]
)
MANIFEST_REQUIRED = ["image_id", "path", "split", "width", "height"]
# The Background Challenge's test variants (Xiao et al. 2021), "original" first: the
# variant names of every manifest, the order of the shift evaluation and of the report.
BG_CHALLENGE_VARIANTS = (
    "original",
    "only_fg",
    "mixed_same",
    "mixed_rand",
    "mixed_next",
    "only_bg_b",
    "only_bg_t",
)

# the optional columns, with the value that means "unknown" (a writer may leave them out)
MANIFEST_DEFAULTS = {
    "variant": "original",
    "scene_id": -1,
    "label": -1,
    "bg_label": -1,
    "mask_path": "",
}
MANIFEST_LIST_COLUMNS = ("labels", "boxes", "box_labels")  # optional; unknown = []

MASK_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("height", pa.int32()),  # of the stored mask (CAM resolution)
        ("width", pa.int32()),
        ("orig_height", pa.int32()),  # of the original image
        ("orig_width", pa.int32()),
        ("mask_png", pa.binary()),  # 8-bit PNG of the soft mask, 0..255
        ("params", pa.string()),  # JSON of the parameters that produced it
    ]
)

BOX_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("boxes", BOX_TYPE),  # normalised xyxy, after the 1% filter and 20% margin
        ("n_boxes", pa.int32()),
        ("height", pa.int32()),  # of the stored binary mask (CRF working resolution)
        ("width", pa.int32()),
        ("mask_png", pa.binary()),  # binary mask after CRF + cleaning, PNG 0/255
        ("bg_rect", pa.list_(pa.float32(), 4)),  # largest background rectangle, normalised xyxy
        ("empty", pa.bool_()),  # the CAM had no foreground: zero boxes, full-image background
        ("params", pa.string()),
    ]
)


class ArtifactError(ValueError):
    """A Parquet artifact that is missing, unreadable or lacks required columns."""


def read_table(path: str | os.PathLike, required: list[str], kind: str) -> pa.Table:
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{kind} not found: {path}")
    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise ArtifactError(f"{kind} {path} is not a readable Parquet file: {exc}") from exc
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise ArtifactError(f"{kind} {path} lacks column(s) {missing}; has {table.column_names}")
    return table


def read_manifest(path: str | os.PathLike):
    """Read a manifest as a pandas DataFrame with every MANIFEST_SCHEMA column present.

    Adds ``abspath`` (the image path resolved against the manifest's folder).
    """
    table = read_table(path, MANIFEST_REQUIRED, "manifest")
    df = fill_optional_columns(table.to_pandas())
    root = Path(path).resolve().parent
    df["abspath"] = [p if os.path.isabs(p) else str(root / p) for p in df["path"]]
    df["mask_abspath"] = [
        "" if not m else (m if os.path.isabs(m) else str(root / m)) for m in df["mask_path"]
    ]
    if df["image_id"].duplicated().any():
        dup = df.loc[df["image_id"].duplicated(), "image_id"].iloc[0]
        raise ArtifactError(f"manifest {path}: duplicate image_id {dup!r}")
    return df


def fill_optional_columns(df):
    """Add the optional manifest columns ``df`` lacks, with their "unknown" values (in place)."""
    for col, val in MANIFEST_DEFAULTS.items():
        if col not in df:
            df[col] = val
    for col in MANIFEST_LIST_COLUMNS:
        if col not in df:
            df[col] = [[] for _ in range(len(df))]
    return df


def write_manifest(path: str | os.PathLike, df) -> None:
    """Write a manifest DataFrame (extra columns are kept after the schema's columns)."""
    df = df.copy()
    for col in ("abspath", "mask_abspath"):
        if col in df:
            del df[col]
    missing = [c for c in MANIFEST_SCHEMA.names if c not in df]
    if missing:
        raise ArtifactError(f"manifest for {path} lacks column(s) {missing}")
    cols = list(MANIFEST_SCHEMA.names) + [c for c in df.columns if c not in MANIFEST_SCHEMA.names]
    df = df[cols]
    fields = list(MANIFEST_SCHEMA) + [
        pa.Schema.from_pandas(df[[c]], preserve_index=False).field(c)
        for c in cols[len(MANIFEST_SCHEMA) :]
    ]
    table = pa.Table.from_pandas(df, schema=pa.schema(fields), preserve_index=False)
    write_parquet(path, table)


def write_rows(path: str | os.PathLike, rows: list[dict], schema: pa.Schema) -> None:
    """Write a list of row dicts with a fixed schema (an empty list gives an empty file)."""
    cols = {name: [r[name] for r in rows] for name in schema.names}
    write_parquet(path, pa.Table.from_pydict(cols, schema=schema))


SHARD_KINDS = {"masks": (MASK_SCHEMA, "mask shard"), "boxes": (BOX_SCHEMA, "box shard")}


def read_shards(paths, kind: str) -> dict[str, dict[str, dict]]:
    """Read mask (``kind="masks"``) or box (``kind="boxes"``) shards, keeping which shard
    each row came from: {shard path as given: {image_id: row dict}}, in the order given.

    The shards of one CAM run are disjoint, so an image_id in two shards (or twice in one)
    is an ArtifactError naming both: the same shard was given twice, or shards of two runs
    were mixed, and one of the two rows would silently win.
    """
    schema, what = SHARD_KINDS[kind]
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    out: dict[str, dict[str, dict]] = {}
    where: dict[str, str] = {}  # image_id -> the shard that holds it
    for p in paths:
        key = str(p)
        if key in out:
            raise ArtifactError(f"{what} {key} is given twice")
        rows = out[key] = {}
        for row in read_table(p, schema.names, what).to_pylist():
            image_id = row["image_id"]
            if image_id in where:
                other = where[image_id]
                raise ArtifactError(
                    f"image_id {image_id!r} is in two {what}s: {other} and {key}"
                    if other != key
                    else f"{what} {key}: duplicate image_id {image_id!r}"
                )
            where[image_id] = key
            rows[image_id] = row
    return out


def merge_shards(shards: dict[str, dict[str, dict]]) -> dict[str, dict]:
    """{image_id: row} of ``read_shards``' result (the shards are disjoint)."""
    return {k: row for rows in shards.values() for k, row in rows.items()}


def read_masks(paths) -> dict[str, dict]:
    """Read mask shards into {image_id: row dict} (``read_shards`` keeps the shard of each)."""
    return merge_shards(read_shards(paths, "masks"))


def read_boxes(paths) -> dict[str, dict]:
    """Read box shards into {image_id: row dict} (``read_shards`` keeps the shard of each)."""
    return merge_shards(read_shards(paths, "boxes"))


def remove_stale_shards(out, n_shards: int) -> list[Path]:
    """Delete the shards ``<prefix>_<j>.parquet`` with ``j >= n_shards`` beside ``out``
    (``<prefix>_<i>.parquet``, ``i < n_shards``): left by a run with more shards, a folder
    glob (inspect, DuckDB) would read them beside the current ones. A name off that
    pattern removes nothing.
    """
    out = Path(out)
    m = re.fullmatch(r"(.+)_(\d+)\.parquet", out.name)
    if not m or int(m[2]) >= n_shards:
        return []
    removed = []
    for p in sorted(out.parent.glob(f"{glob.escape(m[1])}_*.parquet")):
        k = re.fullmatch(rf"{re.escape(m[1])}_(\d+)\.parquet", p.name)
        if k and int(k[1]) >= n_shards:
            p.unlink(missing_ok=True)  # the other shards' jobs remove the same files
            removed.append(p)
            log.info("removed stale shard %s (this run has %d shards)", p, n_shards)
    return removed


def shard_rows(n_rows: int, shard: int, n_shards: int) -> np.ndarray:
    """Row indices of shard ``shard`` of ``n_shards``: contiguous, balanced, covering all rows.

    Depends only on the row count, so re-running one shard gives the same rows.
    """
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard {shard} out of range for n_shards={n_shards}")
    bounds = np.linspace(0, n_rows, n_shards + 1).round().astype(int)
    return np.arange(bounds[shard], bounds[shard + 1])
