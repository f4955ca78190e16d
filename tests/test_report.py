"""The HTML report renders from a partial results folder and shows the right numbers."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from oacl.artifacts import MASK_SCHEMA, write_manifest, write_rows
from oacl.io import encode_png, write_bytes, write_json, write_text
from oacl.report import paper_tables, readers, report

BENCH = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def fake_results(root: Path, gallery: bool = False) -> Path:
    """A results folder with some stages run: two seeds x two variants of shift/linear."""
    r = root / "results"
    accs = {  # (variant, seed) -> (linear test acc, mixed_same, mixed_rand)
        ("baseline", 0): (0.80, 0.90, 0.60),
        ("baseline", 1): (0.90, 0.92, 0.64),
        ("bg_mixup_cam", 0): (0.90, 0.93, 0.80),
        ("bg_mixup_cam", 1): (0.95, 0.95, 0.84),
    }
    for (variant, seed), (lin, same, rand) in accs.items():
        d = r / "eval" / "scenes_single" / f"moco-{variant}-s{seed}"
        write_json(
            d / "linear.json", {"test_acc": lin, "lambda": 1e-3, "n": {"test": 100}, "timing": {}}
        )
        write_json(
            d / "shift.json",
            {
                "accuracy": {
                    "original": lin,
                    "mixed_same": same,
                    "mixed_rand": rand,
                    "sketch": lin / 2,
                },
                "bg_gap": same - rand,
                "skipped": ["stylized"],
                "objcrop": None,
            },
        )
    write_json(
        r / "eval" / "scenes_multi" / "moco-baseline-s0" / "localization_iter10.json",
        {
            "n_images": 32,
            "metrics": {
                "contracam": {"mask_miou": 0.4567, "box_miou": 0.33},
                "gaussian": {"mask_miou": 0.2101},
                "cam_mean": {"mask_miou": 0.4812},
            },
        },
    )
    write_text(
        r / "models" / "scenes_single" / "moco-baseline-s0" / "metrics.jsonl",
        "".join(
            json.dumps(
                {"epoch": e, "loss": 5 - e, "knn_acc": 0.3 + 0.1 * e if e % 2 == 0 else None}
            )
            + "\n"
            for e in range(1, 7)
        ),
    )
    write_text(
        r / "benchmarks" / "pretrain" / "scenes_single" / "moco-baseline-s0.tsv",
        BENCH + "123.4\t0:02:03\t812.5\t900\t800\t805\t1\t2\t95.0\t200.5\n",
    )
    write_text(
        r / "benchmarks" / "prepare_data" / "scenes_single.tsv",
        BENCH + "7.5\t0:00:07\t-\t-\t-\t-\t-\t-\t-\t-\n",
    )
    if gallery:
        rng = np.random.default_rng(0)
        data = r / "data" / "scenes_multi"
        rows, masks = [], []
        for i in range(3):
            img = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            write_bytes(data / f"img/{i}.png", encode_png(img))
            rows.append(
                dict(
                    image_id=f"im{i}",
                    path=f"img/{i}.png",
                    split="test",
                    variant="original",
                    scene_id=i,
                    width=32,
                    height=32,
                    label=0,
                    labels=[0],
                    bg_label=-1,
                    boxes=[[0.1, 0.1, 0.6, 0.6]],
                    box_labels=[0],
                    mask_path="",
                )
            )
            soft = np.zeros((8, 8), np.uint8)
            soft[2:6, 2:6] = 255
            masks.append(
                dict(
                    image_id=f"im{i}",
                    height=8,
                    width=8,
                    orig_height=32,
                    orig_width=32,
                    mask_png=encode_png(soft),
                    params="{}",
                )
            )
        write_manifest(data / "manifest.parquet", pd.DataFrame(rows))
        write_rows(
            r / "cam" / "scenes_multi" / "moco-baseline-s0" / "iter10" / "masks_0.parquet",
            masks,
            MASK_SCHEMA,
        )
    return r


def test_parse_model_and_mean_std():
    assert readers.parse_model("moco-bg_mixup_cam-s12") == {
        "method": "moco",
        "variant": "bg_mixup_cam",
        "seed": 12,
    }
    assert readers.parse_model("weird") is None
    m, s, n = readers.mean_std([0.8, 0.9, None])
    assert (round(m, 4), round(s, 4), n) == (0.85, 0.0707, 2)


def test_report_from_partial_results(tmp_path):
    from oacl.cli import main

    results = fake_results(tmp_path)
    out = tmp_path / "report.html"
    cfg = {"datasets": {"scenes_single": {"type": "scenes"}}, "report": {"title": "My run"}}
    assert (
        main(["report", "--cfg", json.dumps(cfg), "--results", str(results), "--out", str(out)])
        == 0
    )
    page = out.read_text()
    text = re.sub(r"<[^>]+>", " ", page)
    # linear: mean +- std over the two seeds, and the difference to the baseline
    assert "85.00 ± 7.07" in text and "92.50 ± 3.54" in text and "(+7.50)" in text
    # shift: BG-Gap aggregated per variant (baseline gaps 0.30 and 0.28 -> 29.00 ± 1.41)
    assert "bg_gap ↓" in text and "29.00 ± 1.41" in text
    assert "12.00 ± 1.41" in text  # bg_mixup gaps 0.13, 0.11
    assert "absent from the manifest: stylized" in text
    # localisation, timings, curves
    assert "0.457" in text and "0.210" in text and "iter10" in text
    # the configuration's own mean map gets its row, and beating it is checked
    assert "iter10 mean map (reference)" in text and "0.481" in text
    assert "raw mask mIoU 0.457 ≤ cam_mean 0.481" in text
    assert "<td class=t>oacl</td>" in page  # the mask protocol of a result without the key
    assert "pretrain" in text and "123.4" in text and "812" in text
    assert 'alt="training curves scenes_single"' in page
    # paper tables beside ours, labelled as not comparable
    assert "89.17 ± 0.49" in text and "76.37" in text and paper_tables.CAVEAT in text
    # missing stages are "not run", the page is self-contained
    assert "not run: no ContraCAM mask shards" in text
    assert "My run" in text and "scenes_single" in text
    assert (
        "http://" not in page.replace("http://www.w3.org", "")
        and "https://" not in page
        and "<link" not in page
    )
    assert page.count("data:image/png;base64,") >= 3  # timings, bar chart, curves


def test_report_from_empty_results(tmp_path):
    (tmp_path / "results").mkdir()
    page = report.render_report({}, tmp_path / "results")
    assert page.count("not run") >= 6
    assert "<table" in page  # the paper tables are still shown


def test_report_gallery_uses_mask_shards(tmp_path):
    results = fake_results(tmp_path, gallery=True)
    page = report.render_report({"report": {"gallery": {"n_images": 2}}}, results)
    assert (
        'alt="im0"' in page and 'alt="im2"' in page and 'alt="im1"' not in page
    )  # spread over ids
    assert "not run: no ContraCAM" not in page


def test_report_rejects_unknown_report_option(tmp_path):
    (tmp_path / "results").mkdir()
    with pytest.raises(ValueError, match="galery"):
        report.render_report({"report": {"galery": {}}}, tmp_path / "results")
    with pytest.raises(ValueError, match="gallery.size must be an integer >= 16"):
        report.render_report({"report": {"gallery": {"size": 8}}}, tmp_path / "results")


def test_paper_tables_are_rectangular():
    for t in paper_tables.TABLES.values():
        assert all(len(r) == len(t["columns"]) for r in t["rows"]), t["id"]
    t7 = {r[0].split()[0]: r for r in paper_tables.TABLE7["rows"]}
    # BG-Gap in the paper is Mixed-Same minus Mixed-Rand (up to rounding of the means)
    for col in range(1, 7):
        assert t7["BG-Gap"][col][0] == pytest.approx(
            t7["Mixed-Same"][col][0] - t7["Mixed-Rand"][col][0], abs=0.05
        )


def test_report_reads_exactly_its_inputs(tmp_path):
    """A stale eval JSON (a seed no longer configured) on disk used to be averaged in
    ("44.25 ± 61.16, seeds 2"); the workflow passes the DAG's files with --inputs."""
    from oacl.cli import main

    results = fake_results(tmp_path, gallery=True)
    inputs = sorted(str(p) for p in (results / "eval").rglob("*.json"))
    inputs.append(
        str(results / "cam" / "scenes_multi" / "moco-baseline-s0" / "iter10" / "masks_0.parquet")
    )
    stale = results / "eval" / "scenes_single" / "moco-baseline-s5"
    write_json(
        stale / "linear.json", {"test_acc": 0.10, "lambda": 1e-3, "n": {"test": 100}, "timing": {}}
    )
    write_json(
        stale / "shift.json",
        {
            "accuracy": {"original": 0.1, "mixed_same": 0.5, "mixed_rand": 0.1},
            "bg_gap": 0.4,
            "skipped": [],
            "objcrop": None,
        },
    )
    write_text(
        results / "models" / "scenes_single" / "moco-baseline-s5" / "metrics.jsonl",
        json.dumps({"epoch": 1, "loss": 9.0}) + "\n",
    )
    stale_cam = results / "cam" / "scenes_multi" / "moco-baseline-s5" / "old"
    stale_cam.mkdir(parents=True)
    shutil.copy(
        results / "cam" / "scenes_multi" / "moco-baseline-s0" / "iter10" / "masks_0.parquet",
        stale_cam / "masks_0.parquet",
    )
    out = tmp_path / "report.html"
    assert main(["report", "--results", str(results), "--inputs", *inputs, "--out", str(out)]) == 0
    text = re.sub(r"<[^>]+>", " ", out.read_text())
    assert "85.00 ± 7.07" in text and "29.00 ± 1.41" in text  # seeds 0 and 1 only
    assert "moco-baseline-s5" not in text and "old" not in text.split()
    # without --inputs, everything on disk (the standalone use)
    assert main(["report", "--results", str(results), "--out", str(out)]) == 0
    assert "85.00 ± 7.07" not in re.sub(r"<[^>]+>", " ", out.read_text())
    # an input that does not exist is an error, not a silently smaller report
    assert (
        main(
            [
                "report",
                "--results",
                str(results),
                "--inputs",
                *inputs,
                str(stale / "nope.json"),
                "--out",
                str(out),
            ]
        )
        == 2
    )


def test_report_shows_side_information_beside_each_debiased_model(tmp_path):
    """metrics.jsonl's side_info (oacl.train.sideinfo): per source shard, the training
    images covered and the empty ones; a debiased model without it is flagged."""
    r = tmp_path / "results"
    cov = {
        "variant": "oa_crop_cam",
        "source": "cam",
        "images": 96,
        "needs": ["boxes"],
        "shards": [
            {
                "shard": "results/refine/d/m/iter10/boxes_0.parquet",
                "kind": "boxes",
                "rows": 80,
                "train_images": 48,
                "boxes": 47,
                "bg_rect": 48,
                "empty": {"boxes": 1, "bg_rect": 0},
            },
            {
                "shard": "results/refine/d/m/iter10/boxes_1.parquet",
                "kind": "boxes",
                "rows": 80,
                "train_images": 48,
                "boxes": 48,
                "bg_rect": 48,
                "empty": {"boxes": 0, "bg_rect": 0},
            },
        ],
        "covered": {"boxes": 96},
        "missing": {"boxes": 0},
        "empty": {"boxes": 1},
        "empty_images": 1,
        "empty_fraction": 1 / 96,
        "max_empty": 0.05,
    }
    lines = {
        "moco-oa_crop_cam-s0": [
            {"epoch": 1, "loss": 5.0, "side_info": cov},
            {"epoch": 2, "loss": 4.0},
        ],
        "moco-bg_mixup_cam-s0": [{"epoch": 1, "loss": 5.0}],  # written before the check existed
        "moco-baseline-s0": [{"epoch": 1, "loss": 5.0}],
    }
    for model, recs in lines.items():
        write_text(
            r / "models" / "scenes_multi" / model / "metrics.jsonl",
            "".join(json.dumps(x) + "\n" for x in recs),
        )
    page = report.render_report({}, r)
    section = page[page.index('<section id="side_info">') :]
    section = section[: section.index("</section>")]
    text = re.sub(r"<[^>]+>", " ", section)
    assert "moco-oa_crop_cam-s0" in text and "OA-Crop (CAM)" in text
    assert "boxes 96/96" in text and "1.0% (≤ 5%)" in text
    assert "boxes_0.parquet (boxes): 48 · empty boxes 1" in text
    assert "boxes_1.parquet (boxes): 48" in text
    assert "moco-bg_mixup_cam-s0" in text and "not recorded" in text
    assert "moco-baseline-s0" not in text  # nothing to cover
    # BG-Mixup reads a box shard for its bg_rect only: its empty box lists are not shown
    cov_bg = dict(cov, variant="bg_mixup_cam", needs=["mask", "bg_rect"])
    cov_bg.update(covered={"mask": 96, "bg_rect": 96}, empty={"mask": 0, "bg_rect": 0})
    recs = [{"epoch": 1, "loss": 5.0, "side_info": cov_bg}]
    write_text(
        r / "models" / "scenes_multi" / "moco-bg_mixup_cam-s0" / "metrics.jsonl",
        "".join(json.dumps(x) + "\n" for x in recs),
    )
    page = report.render_report({}, r)
    section = page[page.index('<section id="side_info">') :]
    row = re.search(r"<tr>(?:(?!</tr>).)*moco-bg_mixup_cam-s0.*?</tr>", section)[0]
    text = re.sub(r"<[^>]+>", " ", row)
    assert "BG-Mixup (CAM)" in text and "mask 96/96" in text and "empty boxes" not in text


def test_report_shows_content_auc_per_map_and_over_seeds(tmp_path):
    """The localisation section gives every map's AUC turned 180°, shuffled AUC and
    content AUC with its interval; a configuration over two seeds gets per-seed values
    and mean ± std over seeds."""
    from oacl.cli import main

    results = fake_results(tmp_path)
    for seed, (c, lo, hi) in enumerate([(0.069, 0.049, 0.089), (0.081, 0.060, 0.1)]):
        write_json(
            results
            / "eval"
            / "scenes_single"
            / f"moco-baseline-s{seed}"
            / "localization_iter1.json",
            {
                "n_images": 300,
                "metrics": {
                    "contracam": {
                        "pixel_auc": 0.7,
                        "auc_rot180": 0.612,
                        "shuffled_auc": 0.631,
                        "content_auc": c,
                        "content_auc_ci95": [lo, hi],
                    },
                    "cam_mean": {"content_auc": 0.001, "content_auc_ci95": [-0.01, 0.012]},
                    "gaussian": {"content_auc": -0.002, "content_auc_ci95": [-0.02, 0.015]},
                },
            },
        )
    out = tmp_path / "report.html"
    cfg = {"datasets": {"scenes_single": {"type": "scenes"}}}
    assert (
        main(["report", "--cfg", json.dumps(cfg), "--results", str(results), "--out", str(out)])
        == 0
    )
    text = re.sub(r"<[^>]+>", " ", out.read_text())
    for header in ("AUC turned 180°", "shuffled AUC", "content AUC [95% CI]"):
        assert header in text
    assert "0.069 [0.049, 0.089]" in text and "0.612" in text and "0.631" in text
    assert "-0.002 [-0.020, 0.015]" in text  # the references' too
    assert "Content AUC over seeds" in text
    assert "s0: 0.069 [0.049, 0.089]; s1: 0.081 [0.060, 0.100]" in text
    assert "0.075 ± 0.008" in text  # mean ± std (ddof 1) over the two seeds
