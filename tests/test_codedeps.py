"""Rule code inputs and stage fingerprints come from the import graph (oacl.codedeps)."""

import json
import re
import subprocess
import sys

from conftest import REPO

from oacl import codedeps
from oacl.codedeps import code_of

RULES = REPO / "workflow" / "rules"


def rule_entries():
    """{rule: entry modules} as the rule files name them in `code=code(...)`."""
    out = {}
    for path in sorted(RULES.glob("*.smk")):
        for rule, body in re.findall(
            r"^rule (\w+):\n(.*?)(?=^rule |\Z)", path.read_text(), re.MULTILINE | re.DOTALL
        ):
            m = re.search(r"^\s+code=code\(([^)]*)\)", body, re.MULTILINE)
            if m:
                out[rule] = tuple(re.findall(r'"([\w.]+)"', m[1]))
    return out


def test_every_rule_names_existing_entry_modules():
    entries = rule_entries()
    assert {
        "pretrain",
        "refine",
        "evaluate_linear",
        "evaluate_shift",
        "evaluate_localization",
        "evaluate_transfer",
        "report",
    } <= set(entries)
    for rule, mods in entries.items():
        assert mods, rule
        for mod in mods:
            assert codedeps.module_file(mod) is not None, (rule, mod)
    # the data rule's entries depend on the dataset type (common.smk data_code)
    assert "dataset_module(kind)" in (RULES / "common.smk").read_text()


def test_imports_are_followed_transitively_and_lazily():
    # the report draws its gallery with overlay.py (a lazy import): editing it reruns
    # the report (its former home refine/inspect.py was missing from the code inputs)
    report = code_of("oacl.report.cli")
    assert "overlay.py" in report and "report/report.py" in report
    assert "variants.py" in report and "__init__.py" in report
    assert "refine/inspect.py" not in report  # `oacl inspect` only
    # a package's __init__ runs on import: models/__init__ imports checkpoint
    assert "models/checkpoint.py" in code_of("oacl.models.backbones")
    # importlib.import_module with a literal name
    assert "data/readers/__init__.py" in code_of("oacl.data.prepare")
    # the test oracle cam/reference.py is imported by no stage
    assert "cam/reference.py" not in code_of("oacl.cam.cli")


def test_dispatch_imports_are_not_followed():
    """A sub-command's rule does not depend on its siblings' code."""
    refine = code_of("oacl.refine.cli", "oacl.refine.shard")
    assert "refine/refinement.py" in refine and "refine/cli.py" in refine
    assert "refine/inspect.py" not in refine  # `oacl inspect`, a sibling command
    linear = code_of("oacl.evaluate.cli", "oacl.evaluate.linear")
    assert "evaluate/features.py" in linear and "geometry.py" in linear
    assert not {"evaluate/localization.py", "evaluate/shift.py", "refine/refinement.py"} & set(
        linear
    )
    # the localisation evaluation runs the refine stage's refinement (its references' CRF
    # masks and box rules), not the refine stage's shard driver or command
    local = code_of("oacl.evaluate.cli", "oacl.evaluate.localization")
    assert {"refine/refinement.py", "refine/params.py"} <= set(local)
    assert not {"refine/shard.py", "refine/cli.py"} & set(local)
    scenes = code_of("oacl.data.cli", "oacl.data.prepare", "oacl.data.scenes")
    assert not {"data/folder.py", "data/composite.py", "data/fetch.py"} & set(scenes)
    assert "data/scenes/write.py" in code_of("oacl.data.composite")
    # each cut edge is a real import of its module (the table cannot go stale)
    for mod, cut in codedeps.DISPATCH.items():
        assert set(cut) <= codedeps.imports(mod), mod


def test_fingerprints_use_the_derived_lists():
    from oacl.evaluate import features
    from oacl.train import state

    assert state.CODE == code_of(*rule_entries()["pretrain"])  # the pretrain rule's code
    assert features.CODE == code_of("oacl.evaluate.features")
    assert set(features.CODE) <= set(code_of(*rule_entries()["evaluate_linear"]))


def test_derived_lists_cover_what_python_imports():
    """What importing a stage module loads (sys.modules) is within its derived list."""
    entries = [
        "oacl.train.loop",
        "oacl.report.report",
        "oacl.refine.shard",
        "oacl.cam.cli",
        "oacl.cam.run",
    ]
    prog = (
        "import importlib, json, sys\n"
        f"for e in {entries!r}: importlib.import_module(e); "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'oacl')))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", prog],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": ""},
        check=True,
    )
    for entry, line in zip(entries, proc.stdout.splitlines()):
        loaded = {
            codedeps.module_file(m).relative_to(codedeps.PACKAGE).as_posix()
            for m in json.loads(line)
        }
        derived = set().union(*(code_of(e) for e in entries[: entries.index(entry) + 1]))
        assert loaded <= derived, (entry, loaded - derived)


def test_every_module_is_some_rules_code():
    """A module no rule runs is one of these; a new stage module is covered by an import."""
    not_rules = {
        "cli.py",
        "ompenv.py",  # the OpenMP wait policy cli.py sets: speed, not results
        "configcheck.py",
        "interop.py",
        "data/fetch.py",
        "cam/reference.py",
        "refine/inspect.py",  # `oacl inspect`, run by hand
        "data/folder.py",
        "data/composite.py",
    }  # the last two: other dataset types
    covered = set()
    for mods in rule_entries().values():
        covered |= set(code_of(*mods))
    covered |= set(code_of("oacl.data.cli", "oacl.data.prepare", "oacl.data.scenes"))
    readers = set()  # a reader type's rule runs the reader and what it imports
    for p in (codedeps.PACKAGE / "data" / "readers").glob("[!_]*.py"):
        readers |= set(code_of(f"oacl.data.readers.{p.stem}"))
    every = {p.relative_to(codedeps.PACKAGE).as_posix() for p in codedeps.PACKAGE.rglob("*.py")}
    assert every - covered - readers - not_rules == set()
