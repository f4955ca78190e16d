"""The variant registry and the model-name pattern: one definition, read by every stage."""

import ast
import re

import pytest
from conftest import REPO

from oacl import configcheck, variants
from oacl.report import readers
from oacl.train import objaware

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def test_registry_answers_what_each_variant_needs():
    assert variants.NAMES == (
        "baseline",
        "oa_crop_cam",
        "oa_crop_gt",
        "bg_mixup_cam",
        "bg_hardmix_gt",
        "mixup",
        "cutmix",
    )
    assert objaware.VARIANTS == variants.NAMES
    assert objaware.NEEDS_MASK == objaware.NEEDS_BG == ("bg_mixup_cam", "bg_hardmix_gt")
    assert objaware.OA_CROP == ("oa_crop_cam", "oa_crop_gt")
    assert [n for n in variants.NAMES if objaware.mixes(n)] == [
        "bg_mixup_cam",
        "bg_hardmix_gt",
        "mixup",
        "cutmix",
    ]
    assert {n: objaware.box_source(n) for n in variants.NAMES} == {
        "baseline": None,
        "oa_crop_cam": "cam",
        "oa_crop_gt": "gt",
        "bg_mixup_cam": "cam",
        "bg_hardmix_gt": "gt",
        "mixup": None,
        "cutmix": None,
    }
    # the workflow's questions: which shards a pretrain job reads
    assert [n for n in variants.NAMES if variants.get(n).cam_boxes] == [
        "oa_crop_cam",
        "bg_mixup_cam",
    ]
    assert [n for n in variants.NAMES if variants.get(n).cam_masks] == ["bg_mixup_cam"]
    assert [n for n in variants.NAMES if variants.get(n).hard_mask] == ["bg_hardmix_gt"]
    assert [n for n in variants.NAMES if variants.uses_cam(n)] == ["oa_crop_cam", "bg_mixup_cam"]
    with pytest.raises(ValueError, match="unknown variant 'oa_crop_magic'"):
        variants.get("oa_crop_magic")
    assert objaware.box_source("oa_crop_magic") is None and not objaware.mixes("oa_crop_magic")


def test_report_display_names_come_from_the_registry():
    assert readers.VARIANT_NAMES == {n: v.display for n, v in variants.VARIANTS.items()}
    assert readers.variant_order(["cutmix", "zz", "baseline"]) == ["baseline", "cutmix", "zz"]
    assert variants.display_name("bg_mixup_cam") == "BG-Mixup (CAM)"
    assert variants.display_name("other") == "other"


def test_model_names_one_pattern():
    name = variants.model_name("moco", "bg_mixup_cam", 12)
    assert name == "moco-bg_mixup_cam-s12"
    assert variants.parse_model(name) == {"method": "moco", "variant": "bg_mixup_cam", "seed": 12}
    assert readers.parse_model is variants.parse_model
    for bad in ("weird", "moco-baseline-s", "Moco-baseline-s0", "moco-baseline-s0-x"):
        assert variants.parse_model(bad) is None, bad
    assert re.fullmatch(variants.MODEL_RE, name)
    assert variants.model_pattern() == f"^{variants.MODEL_RE}$"
    assert re.match(variants.model_pattern("supervised"), "supervised-baseline-s0")
    assert not re.match(variants.model_pattern("supervised"), "moco-baseline-s0")
    # the Snakefile's wildcard constraints are these patterns
    snakefile = (REPO / "Snakefile").read_text()
    assert "model=variants.MODEL_RE" in snakefile and "variant=variants.VARIANT_RE" in snakefile


def test_schema_variant_names_and_model_patterns_are_generated(tmp_path):
    raw = SCHEMA.read_text()
    for literal in ("oa_crop_cam", "[a-z_]+-s[0-9]+"):
        assert literal not in raw  # written once, in oacl.variants
    schema = configcheck.full_schema(SCHEMA)
    exp = schema["properties"]["experiments"]["additionalProperties"]["properties"]
    assert exp["variants"]["items"]["enum"] == list(variants.NAMES)
    assert exp["cam_model"]["pattern"] == variants.model_pattern()
    loc = schema["properties"]["localization_tables"]["additionalProperties"]["properties"]
    # one name or a list of names (one per seed), each matching the pattern
    for key, method in (("model", None), ("classifier_model", "supervised")):
        one, many = loc[key]["anyOf"]
        pattern = variants.model_pattern(method) if method else variants.model_pattern()
        assert one["pattern"] == many["items"]["pattern"] == pattern


def _string_constants(path):
    return [
        n
        for n in ast.walk(ast.parse(path.read_text()))
        if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]


def test_no_variant_is_named_outside_the_registry():
    """Variant properties are asked of oacl.variants, not read from the name's spelling."""
    # "baseline" is the reference every variant is compared with; "mixup"/"cutmix" are
    # also the registry's mix kinds
    special = {n for n in variants.NAMES if n not in ("baseline", "mixup", "cutmix")}
    found = []
    for path in sorted((REPO / "src" / "oacl").rglob("*.py")):
        if path.name == "variants.py":
            continue
        text = path.read_text()
        if re.search(r"""(endswith|startswith)\(\s*["'](_cam|_gt|bg_|oa_)""", text):
            found.append(f"{path}: suffix test")
        found += [
            f"{path}:{n.lineno}: {n.value}" for n in _string_constants(path) if n.value in special
        ]
    for path in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        text = path.read_text()
        found += [
            f"{path}: {m}" for m in re.findall(r"""["'](\w*_cam|\w*_gt|bg_\w+|oa_\w+)["']""", text)
        ]
    assert not found, found
