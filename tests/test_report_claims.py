"""The report's first screen (issue 25 item 4): a claims table before the configuration,
held / not held on both sides of the bar, "one seed" and "not measured"; each *_cam
model's side-information coverage with a link to the masks and boxes it trained on;
the warnings of the sections below grouped under the table; and a gallery that shows
the CAM runs a *_cam variant trained on first."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from oacl.artifacts import MASK_SCHEMA, write_rows
from oacl.io import encode_png, write_json, write_text
from oacl.report import claims, report

# --------------------------------------------------------------- verdict logic

BASE = {0: 0.30, 1: 0.28, 2: 0.29}  # mean 0.29, std (ddof 1) 0.01: the bar is 0.02


def shifted(delta: float, seeds=(0, 1, 2)) -> dict:
    return {s: BASE[s] + delta for s in seeds}


@pytest.mark.parametrize(
    "var, better, want",
    [
        (shifted(-0.021), "↓", "held"),  # 0.021 below: beyond 2 std
        (shifted(-0.019), "↓", "not held"),  # 0.019 below: within 2 std
        (shifted(+0.021), "↓", "not held"),  # beyond the bar, the wrong way
        (shifted(+0.021), "↑", "held"),
        (shifted(+0.019), "↑", "not held"),
        (shifted(-0.05, seeds=(0,)), "↓", "one seed"),  # a variant over one seed
        ({}, "↓", "not measured"),
        ({0: None, 1: float("nan")}, "↓", "not measured"),
        (shifted(-0.05), None, "reference"),  # mixup / cutmix: no claim
    ],
)
def test_verdict_on_both_sides_of_the_bar(var, better, want):
    assert claims.verdict(claims.effect(BASE, var), better) == want


def test_verdict_needs_min_seeds_of_the_baseline_too():
    e = claims.effect({0: 0.30}, shifted(-0.2))
    assert (e["n_base"], e["n_var"]) == (1, 3)
    assert claims.verdict(e, "↓") == "one seed"


def test_effect_and_paired_interval():
    var = {0: 0.27, 1: 0.27, 2: 0.27}  # differences -0.03, -0.01, -0.02
    e = claims.effect(BASE, var)
    assert e["effect"] == pytest.approx(-0.02)
    assert e["diff_mean"] == pytest.approx(-0.02) and e["n_pairs"] == 3
    assert e["diff_std"] == pytest.approx(0.01)
    assert claims._interval(e, 100.0) == "-2.00 ± 1.00 (n=3 paired)"
    assert e["base_std"] == pytest.approx(0.01)
    # seeds that do not pair: the effect over all seeds, no interval
    e = claims.effect(BASE, {5: 0.2, 6: 0.22})
    assert e["effect"] == pytest.approx(0.21 - 0.29) and e["n_pairs"] == 0
    assert claims._interval(e, 100.0).endswith("none paired")


def test_paper_figures_come_from_the_paper_tables():
    by = {c.variant: c.paper for c in claims.CLAIMS}
    assert "COCO-Crop 67.38 → 69.92" in by["oa_crop_cam"]
    assert "COCO-Crop 67.38 → 71.60" in by["oa_crop_gt"]
    assert "BG-Gap 20.64 → 17.24" in by["bg_mixup_cam"]
    assert "BG-Gap 20.64 → 12.53" in by["bg_hardmix_gt"]
    assert by.keys() == {"oa_crop_cam", "oa_crop_gt", "bg_mixup_cam", "bg_hardmix_gt"} | {
        "mixup",
        "cutmix",
    }
    assert "+3.4" in claims.CAM_PAPER and "+4.4" in claims.CAM_PAPER
    assert "0.361 → 0.427" in claims.NSR_PAPER


def test_a_variant_added_to_the_registry_gets_its_claim(monkeypatch):
    """BG-Mixup from GT masks (not in the paper): a BG-Gap claim citing Table 7's rows."""
    from oacl import variants

    v = variants.Variant("bg_mixup_gt", "BG-Mixup (GT)", "gt", False, "bg_mixup")
    monkeypatch.setitem(variants.VARIANTS, v.name, v)
    c = claims.claim_of("bg_mixup_gt")
    assert (c.metric, c.better) == ("bg_gap", "↓")
    assert c.paper.startswith("not in the paper") and "BG-HardMix (GT) 20.64 → 12.53" in c.paper
    assert claims.claim_of("baseline") is None


# --------------------------------------------------------------- the rendered page


def write_shift(r: Path, ds: str, model: str, *, objcrop=None, gap=None) -> None:
    same = 0.9
    write_json(
        r / "eval" / ds / model / "shift.json",
        {
            "accuracy": {"original": 0.8}
            | ({} if gap is None else {"mixed_same": same, "mixed_rand": same - gap}),
            "bg_gap": gap,
            "skipped": [],
            "objcrop": None if objcrop is None else {"test_acc": objcrop},
        },
    )


def write_masks(r: Path, ds: str, model: str, cam: str) -> None:
    soft = np.zeros((8, 8), np.uint8)
    soft[2:6, 2:6] = 255
    row = dict(
        image_id="im0",
        height=8,
        width=8,
        orig_height=32,
        orig_width=32,
        mask_png=encode_png(soft),
        params="{}",
    )
    write_rows(r / "cam" / ds / model / cam / "masks_0.parquet", [row], MASK_SCHEMA)


COV = {
    "variant": "bg_mixup_cam",
    "source": "cam",
    "images": 96,
    "needs": ["mask", "bg_rect"],
    "shards": [
        {
            "shard": "results/cam/scenes_single/moco-baseline-s0/zz_iter1/masks_0.parquet",
            "kind": "masks",
            "rows": 96,
            "train_images": 96,
            "empty": {"mask": 0},
        }
    ],
    "covered": {"mask": 96, "bg_rect": 96},
    "empty": {"mask": 0, "bg_rect": 2},
    "empty_fraction": 2 / 96,
    "max_empty": 0.05,
}

CFG = {
    "datasets": {"scenes_multi": {"type": "scenes"}, "scenes_single": {"type": "scenes"}},
    "experiments": {
        "contextual": {
            "dataset": "scenes_multi",
            "methods": ["moco"],
            "variants": ["baseline", "oa_crop_gt"],
            "seeds": [0, 1, 2],
        },
        "background": {
            "dataset": "scenes_single",
            "methods": ["moco"],
            "variants": ["baseline", "bg_mixup_cam", "bg_hardmix_gt"],
            "seeds": [0, 1, 2],
            "cam_model": "moco-baseline-s0",
            "cam": "zz_iter1",  # sorts last: only the ordering can bring it first
        },
    },
    "report": {"gallery": {"max_sets": 2, "n_images": 1}},
}


def debias_results(root: Path) -> Path:
    """OA-Crop (GT) on scenes_multi over 3 seeds (+3.0 points, bar 2.0: held); BG-Mixup
    (CAM) on scenes_single over 3 seeds (−1.5 points, bar 2.0: not held), BG-HardMix (GT)
    over one seed; six CAM runs, the trained-on one last by name."""
    r = root / "results"
    for s, acc in enumerate((0.60, 0.62, 0.61)):
        write_shift(r, "scenes_multi", f"moco-baseline-s{s}", objcrop=acc)
        write_shift(r, "scenes_multi", f"moco-oa_crop_gt-s{s}", objcrop=acc + 0.03)
    for s, gap in enumerate((0.30, 0.28, 0.29)):
        write_shift(r, "scenes_single", f"moco-baseline-s{s}", gap=gap)
        write_shift(r, "scenes_single", f"moco-bg_mixup_cam-s{s}", gap=gap - 0.015)
    write_shift(r, "scenes_single", "moco-bg_hardmix_gt-s0", gap=0.1)
    for s in range(3):
        recs = [{"epoch": 1, "loss": 6.9, "chance_loss": 6.93}]  # near chance: a warning
        if s < 2:
            recs[0]["side_info"] = COV
        write_text(
            r / "models" / "scenes_single" / f"moco-bg_mixup_cam-s{s}" / "metrics.jsonl",
            "".join(json.dumps(x) + "\n" for x in recs),
        )
    for cam in ("a1", "a2", "a3", "a4", "a5"):
        write_masks(r, "scenes_multi", "moco-baseline-s0", cam)
    write_masks(r, "scenes_single", "moco-baseline-s0", "zz_iter1")
    return r


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def row_of(section: str, *words: str) -> str:
    rows = re.findall(r"<tr>.*?</tr>", section)
    return text_of(next(r for r in rows if all(w in text_of(r) for w in words)))


def test_claims_table_opens_the_report(tmp_path):
    page = report.render_report(CFG, debias_results(tmp_path))
    assert page.index('<section id="claims">') < page.index('<section id="config">')
    assert page.index('<section id="claims">') < page.index('<section id="timings">')
    nav = re.search(r"<nav>(.*?)</nav>", page)[1]
    assert nav.startswith('<a href="#claims">')
    claims_html = page[page.index('<section id="claims">') :]
    claims_html = claims_html[: claims_html.index("</section>")]
    oa = row_of(claims_html, "OA-Crop (GT) raises object-crop accuracy", "scenes_multi")
    assert "+3.00 points" in oa and "+3.00 ± 0.00 (n=3 paired)" in oa
    assert "bar 2.00" in oa and "67.38 → 71.60" in oa and " held " in oa
    bg = row_of(claims_html, "BG-Mixup (CAM) lowers BG-Gap", "scenes_single")
    assert "-1.50 points" in bg and "not held" in bg and "20.64 → 17.24" in bg
    hard = row_of(claims_html, "BG-HardMix (GT) lowers BG-Gap")
    assert "one seed" in hard and "held" not in hard.replace("one seed", "")
    assert "n = 1 variant, 3 baseline seed(s), 1 paired" in hard
    cam = row_of(claims_html, "OA-Crop (CAM) raises object-crop accuracy")
    assert "not measured" in cam and "69.92" in cam
    assert row_of(claims_html, "ContraCAM beats the references").count("not measured") == 1
    assert "1 held, 1 not held, 1 one seed" in text_of(claims_html)


def test_cam_model_shows_its_coverage_and_the_masks_it_trained_on(tmp_path):
    page = report.render_report(CFG, debias_results(tmp_path))
    claims_html = page[page.index('<section id="claims">') : page.index('<section id="config">')]
    bg = row_of(claims_html, "BG-Mixup (CAM) lowers BG-Gap", "scenes_single")
    assert "s0: mask 96/96, bg_rect 96/96 · empty 2.1%" in bg
    assert "s2: not recorded" in bg
    assert "3 near chance" in bg and "1 side info not recorded" in bg
    anchor = "gallery-scenes_single-moco-baseline-s0-zz_iter1"
    assert f'href="#{anchor}"' in claims_html
    assert f'<h3 id="{anchor}">' in page  # the link lands on the gallery set
    side = page[page.index('<section id="side_info">') :]
    side = side[: side.index("</section>")]
    assert f'href="#{anchor}"' in side  # and from the side-information table too


def test_gallery_shows_the_trained_on_sets_first(tmp_path):
    """Six CAM runs, max_sets 2: the run BG-Mixup (CAM) trained on sorts last by name and
    used to be cut; now it comes first, then the rest up to the cap."""
    page = report.render_report(CFG, debias_results(tmp_path))
    gallery = page[page.index('<section id="gallery">') :]
    gallery = gallery[: gallery.index("</section>")]
    heads = re.findall(r"<h3[^>]*>(.*?)</h3>", gallery)
    assert len(heads) == 2
    assert heads[0].startswith("scenes_single · moco-baseline-s0 · zz_iter1")
    assert heads[1].startswith("scenes_multi · moco-baseline-s0 · a1")
    assert "trained on by moco-bg_mixup_cam (BG-Mixup (CAM))" in text_of(gallery)
    assert "4 more CAM run(s) not shown" in text_of(gallery)


def test_warnings_sit_below_the_claims_table(tmp_path):
    """The health section's red list of warnings is collapsed; the first screen counts
    them by kind, with each line in a collapsed list under the table."""
    page = report.render_report(CFG, debias_results(tmp_path))
    claims_html = page[page.index('<section id="claims">') : page.index('<section id="config">')]
    text = text_of(claims_html)
    assert "3 model(s) within 5% of their chance loss" in text
    assert "scenes_single · moco-bg_mixup_cam-s2: loss 6.900 is within 5% of chance" in text
    assert "1 debiased model(s) whose side information was not recorded" in text
    health = page[page.index('<section id="health">') :]
    health = health[: health.index("</section>")]
    assert '<p class="neg">' not in health and '<details><summary class="neg">' in health


def test_contracam_rows_summarise_the_fair_test(tmp_path):
    """The fair test's verdict (fair_test.py) per dataset: held on free placement, no
    verdict on centred; NSR not held once iter1 without NSR has more content."""
    from test_report_localization import CFG as LOC_CFG
    from test_report_localization import cc, loc_data, science_results, write_loc

    r = science_results(tmp_path)
    page = report.render_report(LOC_CFG, r)
    part = page[page.index('<section id="claims">') : page.index('<section id="config">')]
    beat = row_of(part, "ContraCAM beats the references", "scenes_free")
    # MaxBoxAccV2 0.52 vs the Gaussian's 0.45 in every seed: +7 points, paired over 3
    assert "+7.00 points" in beat and "+7.00 ± 0.00 (n=3 paired)" in beat
    assert "checks (a)-(c): held, held, held" in beat
    assert "ImageNet +3.4 points, CUB +4.4 points held " in beat  # paper figure, verdict
    assert "3 below a trivial reference" in beat  # its iter1 maps' red lines (colour map)
    assert "no verdict (not free placement)" in row_of(
        part, "ContraCAM beats the references", "scenes_single"
    )
    assert " held " in row_of(part, "NSR helps", "scenes_free")
    refs = dict(gauss={"pixel_auc": 0.55, "maxboxacc_v2": 0.45}, colour={"pixel_auc": 0.8})
    for s in range(3):  # without NSR now more content than with it (0.107 on average)
        write_loc(
            r,
            "scenes_free",
            f"moco-baseline-s{s}",
            "iter1_nonsr",
            loc_data(cc(content=0.2), **refs),
        )
    page = report.render_report(LOC_CFG, r)
    part = page[page.index('<section id="claims">') : page.index('<section id="config">')]
    nsr = row_of(part, "NSR helps", "scenes_free")
    assert "not held" in nsr and "-0.093" in nsr
