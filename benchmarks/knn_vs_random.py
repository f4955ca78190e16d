"""kNN accuracy (k=20) of a trained checkpoint's encoder vs a randomly initialised one.

    python benchmarks/knn_vs_random.py --checkpoint results/models/scenes_single/moco-baseline-s0/model.pt \
        --manifest results/data/scenes_single/manifest.parquet

Train features: split `train`; evaluated on `val` (original) and on each test variant
present. Both encoders see the same images in the same run, so the ratio is fair.
"""

import argparse

from oacl import ompenv

ompenv.apply()  # before torch loads: libgomp reads its wait policy only then

import torch  # noqa: E402

from oacl.artifacts import read_manifest  # noqa: E402
from oacl.models import build_encoder, load_checkpoint  # noqa: E402
from oacl.train.data import ManifestImages, build_loader  # noqa: E402
from oacl.train.knn import extract, knn_predict  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--manifest", required=True)
    ap.add_argument(
        "--variants", nargs="*", default=["original", "only_fg", "mixed_same", "mixed_rand"]
    )
    args = ap.parse_args()
    torch.manual_seed(0)
    model = load_checkpoint(args.checkpoint)
    meta = model.meta
    random_enc = build_encoder(meta["arch"]).eval()
    df = read_manifest(args.manifest)
    size = int(meta["image_size"])

    def loader(rows):
        return build_loader(
            ManifestImages(rows.reset_index(drop=True), meta.get("store_size", size)),
            256,
            0,
            False,
            False,
        )

    train = df[(df.split == "train") & (df.variant == "original")]
    evals = {"val/original": df[(df.split == "val") & (df.variant == "original")]}
    for v in args.variants:
        rows = df[(df.split == "test") & (df.variant == v)]
        if len(rows):
            evals[f"test/{v}"] = rows
    n_classes = int(df.label.max()) + 1
    dev = torch.device("cpu")
    print(f"{'set':<18} {'trained':>8} {'random':>8}")
    with torch.no_grad():
        tr = {
            name: extract(enc, loader(train), size, dev)
            for name, enc in (("trained", model.encoder), ("random", random_enc))
        }
        for set_name, rows in evals.items():
            accs = []
            for name, enc in (("trained", model.encoder), ("random", random_enc)):
                f, y = extract(enc, loader(rows), size, dev)
                pred = knn_predict(tr[name][0], tr[name][1], f, n_classes)
                accs.append((pred == y).float().mean().item())
            print(f"{set_name:<18} {accs[0]:8.3f} {accs[1]:8.3f}")


if __name__ == "__main__":
    main()
