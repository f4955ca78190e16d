"""Which src/oacl files a stage runs: the transitive imports of its entry modules.

The Snakemake rules list these files as ``code`` inputs (editing one reruns the rule's
jobs, common.smk ``code(...)``), and the stages that reuse earlier work fingerprint the
same lists (oacl.train.state ``CODE``, oacl.evaluate.features ``CODE``). They are read
from the import statements, so an import added to a module is a dependency at once:

* every ``import`` / ``from ... import`` of an oacl module is followed, at the top of
  a module or inside a function (a lazy import is code the module may run);
* importing ``oacl.a.b`` runs ``oacl/__init__.py`` and ``oacl/a/__init__.py`` too;
  ``from oacl.a import b`` is the module ``oacl/a/b.py`` when there is one;
* ``importlib.import_module("oacl....")`` with a literal name is followed;
* the imports listed in ``DISPATCH`` are not followed: with them a command-line module
  picks one of its sub-commands (and data/prepare.py one dataset type), so a rule for
  one sub-command does not depend on its siblings; the rule names the implementation
  it runs as a further entry module instead.

The dispatcher ``oacl/cli.py`` is nobody's entry: it only finds the sub-command.
Imports nothing from oacl; only the standard library.

    code_of("oacl.cam.cli")  # ['__init__.py', 'artifacts.py', 'cam/__init__.py', ...]
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent  # src/oacl
ROOT = "oacl"

# module -> the imports of it that select a sub-command / dataset type (not followed)
DISPATCH = {
    "oacl.data.cli": ("oacl.data.prepare", "oacl.data.fetch"),
    "oacl.data.prepare": ("oacl.data.scenes", "oacl.data.folder", "oacl.data.composite"),
    "oacl.refine.cli": ("oacl.refine.shard", "oacl.refine.inspect"),
    "oacl.evaluate.cli": (
        "oacl.evaluate.linear",
        "oacl.evaluate.shift",
        "oacl.evaluate.localization",
    ),
}


def module_file(module: str, package: Path = PACKAGE) -> Path | None:
    """src/oacl/a/b.py or src/oacl/a/b/__init__.py of module ``oacl.a.b`` (None if neither)."""
    parts = module.split(".")
    if parts[0] != ROOT:
        return None
    base = Path(package).joinpath(*parts[1:])
    for path in (base.with_suffix(".py") if len(parts) > 1 else None, base / "__init__.py"):
        if path is not None and path.is_file():
            return path
    return None


def _with_parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def imports(module: str, package: Path = PACKAGE) -> set[str]:
    """The oacl modules ``module`` imports anywhere in its source (parents included)."""
    path = module_file(module, package)
    if path is None:
        raise ModuleNotFoundError(f"{module}: no such module under {package}", name=module)
    is_pkg = path.name == "__init__.py"
    here = module if is_pkg else module.rpartition(".")[0]
    found: set[str] = set()

    def add(name: str) -> None:
        if name.split(".")[0] == ROOT and module_file(name, package) is not None:
            found.update(_with_parents(name))

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[: len(base) - (node.level - 1)]
                parent = ".".join(base + ([node.module] if node.module else []))
            else:
                parent = node.module or ""
            add(parent)
            for alias in node.names:  # `from pkg import sub`: the submodule, if it is one
                add(f"{parent}.{alias.name}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            add(node.args[0].value)
    found.discard(module)
    return found


@functools.cache
def _closure(entries: tuple[str, ...], package: str) -> tuple[str, ...]:
    pkg = Path(package)
    seen: set[str] = set()
    todo = [m for e in entries for m in _with_parents(e)]
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        cut = set(DISPATCH.get(mod, ()))
        todo += [m for m in imports(mod, pkg) if m not in cut]
    files = {module_file(m, pkg).relative_to(pkg).as_posix() for m in seen}
    return tuple(sorted(files))


def code_of(*entries: str, package: str | Path = PACKAGE) -> list[str]:
    """The files (relative to src/oacl, sorted) that running ``entries`` imports."""
    return list(_closure(tuple(entries), str(Path(package).resolve())))
