"""Import direction: a stage package imports only itself and the ground floor.

Stage packages: data, train, cam, refine, evaluate, report (src/oacl/<stage>/). The
ground floor is every top-level module of src/oacl (io, artifacts, params, geometry,
overlay, fingerprint, interop, ...) and the ``models`` package: what several stages
share lives there, so no stage reaches into another (train does not import refine,
evaluate does not import refine or train, report does not import refine, ...), and the
ground floor imports no stage at all.

Every import statement counts, also those inside functions (lazy imports). Imports
through ``importlib`` by name are not seen (cli.py loads the stages' sub-commands that
way, configcheck the stages' DEFAULTS, data.prepare the readers of its own package).

Exceptions: the dispatchers (``oacl.cli``, ``oacl.configcheck``) may import every stage;
and the localisation evaluation, which scores the refine stage's work, runs the refine
stage's refinement and box rules (``oacl.refine.refinement``, ``oacl.refine.params``) on
its reference maps, so that both are one definition (``SHARED``); and the report's
localisation gallery, which draws the evaluation's own reference maps
(``oacl.evaluate.references``). There are no others.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "oacl"
STAGES = ("data", "train", "cam", "refine", "evaluate", "report")

# top-level modules that may import every stage
DISPATCHERS = {
    "oacl.cli",  # the `oacl` command: each stage's sub-commands (through importlib today)
    "oacl.configcheck",  # generates each stage section's schema from that stage's DEFAULTS
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module name) of every oacl import in ``source``."""
    package = module if is_package else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "oacl"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "oacl":
                continue
            # `from pkg import x` imports the module pkg.x when there is one
            out += [
                (node.lineno, f"{target}.{a.name}" if is_module(f"{target}.{a.name}") else target)
                for a in node.names
            ]
    return list(dict.fromkeys(out))  # one entry per (line, module)


def is_module(name: str) -> bool:
    path = SRC.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def area(module: str) -> str:
    """The stage a module belongs to, or "ground" for the ground floor."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else "ground"


# importer -> the modules of another stage it may import (by name, not their package)
SHARED = {
    "oacl.evaluate.localization": {"oacl.refine.params", "oacl.refine.refinement"},
    # the report's localisation gallery draws the colour map the evaluation scored
    "oacl.report.gallery_loc": {"oacl.evaluate.references"},
}


def allowed(importer: str, target: str) -> bool:
    return importer in DISPATCHERS or target in SHARED.get(importer, ())


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    src_area = area(module)
    bad = []
    for line, target in imported_modules(source, module, is_package):
        dst_area = area(target)
        if dst_area == "ground" or dst_area == src_area or allowed(module, target):
            continue
        where = "the ground floor" if src_area == "ground" else f"stage {src_area!r}"
        bad.append(f"{module}:{line} imports {target} ({where} must not import stage {dst_area!r})")
    return bad


def all_modules():
    for path in sorted(SRC.rglob("*.py")):
        yield path, module_name(path)


def test_stages_import_only_themselves_and_the_ground_floor():
    bad = []
    for path, module in all_modules():
        bad += violations(path.read_text(encoding="utf-8"), module, path.name == "__init__.py")
    assert not bad, "imports against the stage direction:\n" + "\n".join(bad)


def test_dispatchers_exist():
    assert all((SRC.parent / (m.replace(".", "/") + ".py")).is_file() for m in DISPATCHERS)


@pytest.mark.parametrize(
    "module, source, n_bad",
    [
        ("oacl.train.data", "from ..refine import x\n", 1),
        ("oacl.train.data", "def f():\n    from ..refine.background import largest_rectangle\n", 1),
        ("oacl.train.data", "import oacl.refine.shard\n", 1),
        ("oacl.evaluate.features", "from ..train.augment import eval_transform\n", 1),
        ("oacl.evaluate.linear", "from ..refine import refine\n", 1),
        ("oacl.evaluate.localization", "from ..refine import shard as refine_stage\n", 1),
        ("oacl.evaluate.localization", "from ..refine import cli\n", 1),
        ("oacl.evaluate.linear", "from ..refine.refinement import refine_one\n", 1),
        ("oacl.report.report", "from .. import refine\n", 1),
        ("oacl.geometry", "from .train import data\n", 1),
        ("oacl.models.checkpoint", "from ..cam import cli\n", 1),
        ("oacl.data.readers.coco", "from ...train import data\n", 1),
        (
            "oacl.train.data",
            "from ..geometry import resize\nfrom .. import io, artifacts\nfrom . import objaware\n",
            0,
        ),
        (
            "oacl.data.readers.coco",
            "from ...geometry import expand_box\nfrom . import ManifestRows\n",
            0,
        ),
        ("oacl.evaluate.localization", "from ..refine.refinement import refine_one\n", 0),
        ("oacl.evaluate.localization", "from ..refine import params\n", 0),
        ("oacl.cli", "from .train import cli\n", 0),
    ],
)
def test_checker_catches_wrong_directions(module, source, n_bad):
    assert len(violations(source, module)) == n_bad


def test_package_relative_imports_resolve():
    # in a package's __init__, `from . import x` is that package's module x
    assert imported_modules("from . import ncut\n", "oacl.cam", is_package=True) == [
        (1, "oacl.cam.ncut")
    ]
    assert imported_modules("from ..refine import inspect\n", "oacl.report.report", False) == [
        (1, "oacl.refine.inspect")
    ]
    assert imported_modules(
        "from ..artifacts import read_manifest, write_rows\n", "oacl.train.loop", False
    ) == [(1, "oacl.artifacts")]


# --------------------------------------------------------------------------- light modules
# What the config check reads (every Snakemake start, a dry run too) must not import torch
# or OpenCV: each stage's DEFAULTS and CHOICES are in a light parameters module.

LIGHT = ("oacl.configcheck", "oacl.device", "oacl.imagenet", "oacl.params", "oacl.variants")
HEAVY = ("torch", "torchvision", "cv2")


def params_modules() -> list[str]:
    return sorted(module_name(p) for p in SRC.rglob("params.py") if p.parent != SRC)


def _heavy_imports(code: str) -> list[str]:
    """The heavy modules a fresh interpreter (not this one: conftest preloads torch) has
    imported after running ``code``."""
    probe = (
        f"{code}\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=SRC.parents[1]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_config_check_reads_params_modules():
    from oacl.configcheck import STAGES as CHECKED

    modules = {m.partition(":")[0] for m, _ in CHECKED.values()}
    assert modules <= set(params_modules()), modules - set(params_modules())


@pytest.mark.parametrize("module", [*LIGHT, *params_modules()])
def test_light_modules_import_no_torch_or_opencv(module):
    assert _heavy_imports(f"import {module}") == []


def test_config_check_imports_no_torch():
    """The check the Snakefile runs on the default config (schema generated from the
    stages' DEFAULTS, cross-references)."""
    code = (
        "from pathlib import Path\n"
        "from oacl import configcheck as cc\n"
        "paths = [Path('config.yaml')]\n"
        "config = cc.merge_configs(paths)\n"
        "cc.check_config(config, 'workflow/schemas/config.schema.yaml', cc.load_config_files(paths))\n"
        "cc.cross_check(config)"
    )
    assert "torch" not in _heavy_imports(code)
