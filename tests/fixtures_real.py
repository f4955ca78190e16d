"""Tiny fixtures in each real dataset's TRUE on-disk layout (folder names, file names,
annotation formats), for the reader tests. Each ``make_*`` writes under ``root`` and
returns a dict of facts the tests check the manifest against.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def _image(path: Path, w: int, h: int, seed: int = 0, fmt: str | None = None) -> np.ndarray:
    """A smooth random RGB image (JPEG-friendly) of size w x h; returns the pixels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = rng.integers(0, 200, 3)
    rgb = np.stack([(base[c] + 2 * xx + (c + 1) * yy) % 256 for c in range(3)], axis=2).astype(
        np.uint8
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, format=fmt)
    return rgb


# --------------------------------------------------------------------------- COCO 2017


def _rle_uncompressed(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE: run lengths over the column-major pixels, zeros first."""
    flat = mask.flatten(order="F")
    counts, cur, run = [], 0, 0
    for v in flat:
        if v != cur:
            counts.append(run)
            cur, run = v, 0
        run += 1
    counts.append(run)
    return {"counts": counts, "size": list(mask.shape)}


def make_coco(root: Path) -> dict:
    from pycocotools import mask as mask_utils

    root = Path(root)
    sizes = {
        1: (40, 30, "train2017"),
        2: (50, 40, "train2017"),
        4: (20, 20, "train2017"),
        3: (40, 40, "val2017"),
    }
    images = {"train2017": [], "val2017": []}
    for iid, (w, h, src) in sizes.items():
        name = f"{iid:012d}.jpg"
        _image(root / src / name, w, h, seed=iid)
        images[src].append({"id": iid, "file_name": name, "width": w, "height": h})
    categories = [  # non-contiguous ids, unsorted: the reader sorts by id -> 0, 1, 2
        {"id": 90, "name": "toothbrush", "supercategory": "indoor"},
        {"id": 1, "name": "person", "supercategory": "person"},
        {"id": 3, "name": "car", "supercategory": "vehicle"},
    ]
    crowd = np.zeros((30, 40), np.uint8)
    crowd[20:28, 30:38] = 1
    rle_obj = np.zeros((40, 50), np.uint8)
    rle_obj[5:35, 10:40] = 1
    compressed = mask_utils.encode(np.asfortranarray(rle_obj))
    compressed["counts"] = compressed["counts"].decode("ascii")
    train_anns = [
        # polygon, car, 20x16 box: kept everywhere
        {
            "id": 11,
            "image_id": 1,
            "category_id": 3,
            "iscrowd": 0,
            "bbox": [4, 4, 20, 16],
            "area": 320,
            "segmentation": [[4, 4, 24, 4, 24, 20, 4, 20]],
        },
        # polygon, person, 3x2 box (0.5% of the image): a GT box, but under the 1% OA-Crop filter
        {
            "id": 12,
            "image_id": 1,
            "category_id": 1,
            "iscrowd": 0,
            "bbox": [30, 2, 3, 2],
            "area": 6,
            "segmentation": [[30, 2, 33, 2, 33, 4, 30, 4]],
        },
        # crowd, uncompressed RLE: mask only
        {
            "id": 13,
            "image_id": 1,
            "category_id": 1,
            "iscrowd": 1,
            "bbox": [30, 20, 8, 8],
            "area": 64,
            "segmentation": _rle_uncompressed(crowd),
        },
        # compressed RLE, toothbrush
        {
            "id": 21,
            "image_id": 2,
            "category_id": 90,
            "iscrowd": 0,
            "bbox": [10, 5, 30, 30],
            "area": 900,
            "segmentation": compressed,
        },
    ]
    val_anns = [
        {
            "id": 31,
            "image_id": 3,
            "category_id": 1,
            "iscrowd": 0,
            "bbox": [5, 5, 30, 30],
            "area": 900,
            "segmentation": [[5, 5, 35, 5, 35, 35, 5, 35]],
        },
        # a thin diagonal strip: its box covers 16% of the image, its mask 0.6% -- kept by
        # a box-area filter, dropped by the authors' mask-area filter
        {
            "id": 32,
            "image_id": 3,
            "category_id": 3,
            "iscrowd": 0,
            "bbox": [20, 2, 16, 16],
            "area": 10,
            "segmentation": [[20, 2, 21, 2, 36, 17, 36, 18, 35, 18, 20, 3]],
        },
    ]
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for src, anns in (("train2017", train_anns), ("val2017", val_anns)):
        data = {
            "info": {},
            "licenses": [],
            "images": images[src],
            "annotations": anns,
            "categories": categories,
        }
        (root / "annotations" / f"instances_{src}.json").write_text(json.dumps(data))
    return {
        "sizes": sizes,
        "cat_order": [1, 3, 90],
        "anns": {a["id"]: a for a in train_anns + val_anns},
        "crowd_mask": crowd,
    }


# --------------------------------------------------------------------------- ImageNet-9


def make_in9(root: Path) -> dict:
    """The training archive original.tar.gz unpacked under ``root`` (original/train plus
    its uncleaned original/val) and the release's test archive as ``root/bg_challenge``
    (<variant>/val and fg_mask/val). Mixed files are named like the release:
    ``fg_<wnid>_<num>_bg_<bgwnid>_<bgnum>``, with identical names in mixed_rand and
    mixed_next (the ``_bg_`` ids are mixed_next's)."""
    root = Path(root)
    test_root = root / "bg_challenge"
    train = {"00_dog": ["n02085620_1.JPEG", "n02085620_2.JPEG"], "01_bird": ["n01530575_1.JPEG"]}
    val = {"00_dog": ["n02085620_10.JPEG"], "01_bird": ["n01530575_20.JPEG"]}
    # mixed_*: the foreground of each val image pasted on another class's background
    bg_of = {"n02085620_10": "n01530575_20", "n01530575_20": "n02085620_10"}
    seed = 0
    for cls, names in train.items():
        for n in names:
            seed += 1
            _image(root / "original/train" / cls / n, 24, 20, seed, fmt="JPEG")
    # the training archive's own (uncleaned) val: must not become the test set
    _image(root / "original/val/00_dog/n02085620_99.JPEG", 24, 20, 99, fmt="JPEG")
    variants = ["original", "mixed_rand", "mixed_next", "only_bg_t"]
    for v in variants:
        for cls, names in val.items():
            for n in names:
                seed += 1
                stem = n[: -len(".JPEG")]
                name = f"fg_{stem}_bg_{bg_of[stem]}.JPEG" if v.startswith("mixed") else n
                _image(test_root / v / "val" / cls / name, 24, 20, seed, fmt="JPEG")
    mask = np.zeros((20, 24), bool)
    mask[5:15, 6:18] = True
    (test_root / "fg_mask/val/00_dog").mkdir(parents=True)
    np.save(test_root / "fg_mask/val/00_dog/n02085620_10.npy", mask)
    return {
        "train": train,
        "val": val,
        "variants": variants,
        "mask": mask,
        "test_root": test_root,
        "cfg": {"test_root": str(test_root)},  # preset keys besides root
    }


# --------------------------------------------------------------------------- CUB-200-2011


def make_cub(root: Path) -> dict:
    root = Path(root)
    items = [  # (id, relpath, class 1-based, is_train, bbox xywh, size)
        (
            1,
            "001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.jpg",
            1,
            1,
            (2.0, 3.0, 10.0, 8.0),
            (30, 20),
        ),
        (
            2,
            "001.Black_footed_Albatross/Black_Footed_Albatross_0002_55.jpg",
            1,
            0,
            (0.0, 0.0, 30.0, 20.0),
            (30, 20),
        ),
        (
            3,
            "002.Laysan_Albatross/Laysan_Albatross_0001_545.jpg",
            2,
            1,
            (5.0, 5.0, 12.0, 10.0),
            (26, 22),
        ),
        (
            4,
            "002.Laysan_Albatross/Laysan_Albatross_0002_1027.jpg",
            2,
            0,
            (1.5, 2.5, 4.0, 4.0),
            (26, 22),
        ),
    ]
    lines = {k: [] for k in ("images", "image_class_labels", "train_test_split", "bounding_boxes")}
    for iid, rel, cls, tr, (x, y, w, h), (W, H) in items:
        _image(root / "images" / rel, W, H, iid, fmt="JPEG")
        seg = np.zeros((H, W), np.uint8)
        seg[int(y) : int(y + h), int(x) : int(x + w)] = 255
        seg[0, 0] = 51  # soft mask: a pixel one of five annotators marked,
        seg[0, 1] = 102  # two of five (background at the paper's > 0.5),
        seg[0, 2] = 153  # three of five (foreground)
        (root / "segmentations" / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(seg).save((root / "segmentations" / rel).with_suffix(".png"))
        lines["images"].append(f"{iid} {rel}")
        lines["image_class_labels"].append(f"{iid} {cls}")
        lines["train_test_split"].append(f"{iid} {tr}")
        lines["bounding_boxes"].append(f"{iid} {x} {y} {w} {h}")
    for k, v in lines.items():
        (root / f"{k}.txt").write_text("\n".join(v) + "\n")
    (root / "classes.txt").write_text("1 001.Black_footed_Albatross\n2 002.Laysan_Albatross\n")
    # ReDO's split file (as in the authors' data/splits/cub.txt): <id> <0 train|1 val|2 test>,
    # kept outside the CUB folder like a separate download
    redo = {1: 0, 2: 0, 3: 2, 4: 1}
    split_file = root.parent / "splits" / "cub.txt"
    split_file.parent.mkdir(parents=True, exist_ok=True)
    split_file.write_text("".join(f"{i} {v}\n" for i, v in redo.items()))
    return {
        "items": items,
        "redo": redo,
        "split_file": split_file,
        "cfg": {"split_file": str(split_file)},  # preset keys besides root
    }


# --------------------------------------------------------------------------- Flowers-102


def make_flowers(root: Path) -> dict:
    import scipy.io

    root = Path(root)
    labels = [3, 1, 102, 7, 3, 1]
    fg_boxes = {}
    for n in range(1, len(labels) + 1):
        _image(root / "jpg" / f"image_{n:05d}.jpg", 32, 24, n, fmt="JPEG")
        seg = np.zeros((24, 32, 3), np.uint8)
        seg[..., 2] = 254  # the blue background of segmim
        y0, x0 = n, 2 * n
        seg[y0 : y0 + 8, x0 : x0 + 10] = (200, 60, 40)  # the flower
        seg[y0 : y0 + 4, x0 : x0 + 4] = (
            0,
            160,
            40,
        )  # a part with R == 0: ReDO's rule calls it background
        (root / "segmim").mkdir(parents=True, exist_ok=True)
        Image.fromarray(seg).save(root / "segmim" / f"segmim_{n:05d}.jpg", quality=90)
        fg_boxes[n] = (x0, y0, x0 + 10, y0 + 8)
    scipy.io.savemat(root / "imagelabels.mat", {"labels": np.array([labels], np.uint8)})
    scipy.io.savemat(
        root / "setid.mat",
        {"trnid": np.array([[1, 2]]), "valid": np.array([[3, 4]]), "tstid": np.array([[5, 6]])},
    )
    return {
        "labels": labels,
        "split": {1: "train", 2: "train", 3: "val", 4: "val", 5: "test", 6: "test"},
        "fg_boxes": fg_boxes,
    }


# --------------------------------------------------------------------------- CIFAR


def make_cifar(root: Path, which: str = "cifar10", per_batch: int = 3) -> dict:
    root = Path(root)
    rng = np.random.default_rng(0)
    n_classes = 10 if which == "cifar10" else 100
    if which == "cifar10":
        folder, train, test, meta = (
            "cifar-10-batches-py",
            [f"data_batch_{i}" for i in range(1, 6)],
            ["test_batch"],
            "batches.meta",
        )
        label_key, names = (
            b"labels",
            {
                b"label_names": [f"class{i}".encode() for i in range(10)],
                b"num_cases_per_batch": per_batch,
            },
        )
    else:
        folder, train, test, meta = "cifar-100-python", ["train"], ["test"], "meta"
        label_key, names = (
            b"fine_labels",
            {
                b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
            },
        )
    (root / folder).mkdir(parents=True, exist_ok=True)
    written = {"train": [], "test": []}
    for part, files in (("train", train), ("test", test)):
        for f in files:
            imgs = rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8)
            labels = rng.integers(0, n_classes, per_batch).tolist()
            batch = {
                b"batch_label": f.encode(),
                b"data": imgs.transpose(0, 3, 1, 2).reshape(per_batch, -1),
                label_key: labels,
                b"filenames": [f"img_{i}.png".encode() for i in range(per_batch)],
            }
            if which == "cifar100":
                batch[b"coarse_labels"] = [x // 5 for x in labels]
            with open(root / folder / f, "wb") as fh:
                pickle.dump(batch, fh)
            written[part].extend(zip(imgs, labels))
    with open(root / folder / meta, "wb") as fh:
        pickle.dump(names, fh)
    return {"images": written, "folder": folder}


# --------------------------------------------------------------------------- Food-101


def make_food101(root: Path) -> dict:
    root = Path(root)
    classes = ["apple_pie", "baby_back_ribs", "baklava"]
    train, test = [], []
    k = 0
    for c in classes:
        for i in range(3):
            k += 1
            entry = f"{c}/{1000 + k}"
            _image(root / "images" / f"{entry}.jpg", 20 + k, 18, k, fmt="JPEG")
            (test if i == 2 else train).append(entry)
    (root / "meta").mkdir(parents=True)
    (root / "meta/classes.txt").write_text("\n".join(classes) + "\n")
    (root / "meta/train.txt").write_text("\n".join(train) + "\n")
    (root / "meta/test.txt").write_text("\n".join(test) + "\n")
    return {"classes": classes, "train": train, "test": test}


# --------------------------------------------------------------------------- Oxford-IIIT Pets


def make_pets(root: Path) -> dict:
    root = Path(root)
    entries = {  # name -> (class 1-based, species, breed id, split)
        "Abyssinian_100": (1, 1, 1, "trainval"),
        "Abyssinian_101": (1, 1, 1, "test"),
        "american_bulldog_10": (2, 2, 1, "trainval"),
        "american_bulldog_100": (2, 2, 1, "test"),
    }
    (root / "annotations/trimaps").mkdir(parents=True)
    for i, name in enumerate(entries):
        _image(root / "images" / f"{name}.jpg", 30, 24, i, fmt="JPEG")
        tri = np.full((24, 30), 2, np.uint8)  # background
        tri[4:16, 5:20] = 3  # boundary band
        tri[6:14, 7:18] = 1  # pet
        Image.fromarray(tri, mode="L").save(root / "annotations/trimaps" / f"{name}.png")
    header = "#Image CLASS-ID SPECIES BREED ID\n#ID: 1:37 Class ids\n"
    for part in ("trainval", "test"):
        body = "".join(f"{n} {c} {s} {b}\n" for n, (c, s, b, p) in entries.items() if p == part)
        (root / f"annotations/{part}.txt").write_text(("" if part == "trainval" else header) + body)
    return {"entries": entries}


# --------------------------------------------------------------------------- ImageNet shifts


def make_imagenet_shift(root: Path, kind: str = "sketch") -> dict:
    """ImageNet-Sketch (``sketch/<wnid>/``) or ImageNet-C (``<corruption>/<severity>/<wnid>/``)."""
    root = Path(root)
    wnids = {"n02085620": "dog", "n01530575": "bird", "n03000134": None}  # last: not an IN-9 class
    parents = ["sketch"] if kind == "sketch" else ["gaussian_noise/1", "gaussian_noise/3", "fog/3"]
    k = 0
    for parent in parents:
        for w in wnids:
            for i in range(2):
                k += 1
                _image(root / parent / w / f"{w}_{i}.JPEG", 16, 12, k, fmt="JPEG")
    mapping = root.parent / f"{root.name}_map.tsv"
    mapping.write_text("# wnid\tIN-9 class\nn02085620\t00_dog\nn01530575\tbird\n")
    return {"wnids": wnids, "parents": parents, "mapping": mapping}
