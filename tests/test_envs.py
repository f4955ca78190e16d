"""The conda environments in envs/ (used with `snakemake --sdm conda`).

conda is not installed where the tests run, so these check the structure: each
file parses, uses conda-forge, pins versions inside pyproject.toml's ranges, and
lists every third-party package the code of its rule family imports. The imports
are found by reading the source (ast), so adding an import without adding the
package to the environment fails here.
"""

from __future__ import annotations

import ast
import os
import re
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
ENVS = ROOT / "envs"
SRC = ROOT / "src"

# rule family -> the oacl modules/packages its commands run. Every family also
# needs what `oacl` imports to build its parser (all command modules, top level).
FAMILIES = {
    "torch": ["oacl.train", "oacl.models", "oacl.cam", "oacl.evaluate"],
    "refine": ["oacl.refine"],
    "data": ["oacl.data", "oacl.evaluate.localization", "oacl.report"],
}
# import name -> distribution name, where they differ
DIST_OF = {
    "cv2": "opencv-python-headless",
    "PIL": "pillow",
    "pydensecrf": "pydensecrf2",
    "sklearn": "scikit-learn",
    "yaml": "pyyaml",
}


def load_env(name):
    path = ENVS / f"{name}.yaml"
    with open(path) as f:
        return yaml.safe_load(f)


def pip_requirements(env):
    """The pip section as Requirement objects (option lines like --extra-index-url skipped)."""
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            return [Requirement(r) for r in dep["pip"] if not r.startswith("-")]
    return []


def conda_names(env):
    return {re.split(r"[=<>! ]", d)[0] for d in env["dependencies"] if isinstance(d, str)}


def env_dists(env):
    return {canonicalize_name(r.name) for r in pip_requirements(env)} | {
        canonicalize_name(n) for n in conda_names(env)
    }


def pyproject_requirements():
    import tomllib

    with open(ROOT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    return {canonicalize_name(r.name): r for r in reqs}, project["requires-python"]


# ----------------------------------------------------------------- import scan
def module_file(module):
    base = SRC / Path(*module.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


class _Imports(ast.NodeVisitor):
    """Absolute names imported by one module; optional (try/except ImportError)
    imports are skipped, function bodies only when `deep`."""

    def __init__(self, module, is_package, deep):
        self.package = module if is_package else module.rpartition(".")[0]
        self.deep = deep
        self.names = set()

    def visit_Import(self, node):
        self.names.update(a.name for a in node.names)

    def visit_ImportFrom(self, node):
        if node.level:
            parts = self.package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1])
            mod = f"{base}.{node.module}" if node.module else base
        else:
            mod = node.module
        self.names.add(mod)
        # `from pkg import sub` may name a submodule
        self.names.update(f"{mod}.{a.name}" for a in node.names if module_file(f"{mod}.{a.name}"))

    def visit_Try(self, node):
        optional = any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
            for h in node.handlers
        )
        for stmt in ([] if optional else node.body) + node.orelse + node.finalbody:
            self.visit(stmt)
        for h in node.handlers:
            self.visit(h)

    def _function(self, node):
        if self.deep:
            self.generic_visit(node)

    visit_FunctionDef = visit_AsyncFunctionDef = _function


def third_party_imports(entries, cli_modules):
    """Top-level third-party modules imported by `entries` (every import, also inside
    functions) and by `cli_modules` (module level only: what building the parser runs),
    following oacl's own imports."""
    todo = [(m, False) for m in cli_modules]
    for entry in entries:  # a package entry stands for all of its modules
        path = module_file(entry)
        files = path.parent.rglob("*.py") if path.name == "__init__.py" else [path]
        todo += [(".".join(p.relative_to(SRC).with_suffix("").parts), True) for p in files]
    seen, external = {}, set()
    while todo:
        module, deep = todo.pop()
        module = module.removesuffix(".__init__")
        if seen.get(module) is True or seen.get(module) == deep:
            continue
        seen[module] = deep or seen.get(module, False)
        path = module_file(module)
        if path is None:
            continue
        visitor = _Imports(module, path.name == "__init__.py", deep)
        visitor.visit(ast.parse(path.read_text(), filename=str(path)))
        for name in visitor.names:
            top = name.split(".")[0]
            if top == "oacl":
                parts = name.split(".")
                # importing a.b.c runs a/__init__, a/b/__init__ too (module level)
                todo += [(".".join(parts[:i]), False) for i in range(1, len(parts))]
                todo.append((name, deep))
            elif top not in sys.stdlib_module_names and top != "__future__":
                external.add(top)
    return external


def cli_command_modules():
    tree = ast.parse((SRC / "oacl" / "cli.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            getattr(t, "id", None) == "COMMAND_MODULES" for t in node.targets
        ):
            return ["oacl.cli"] + [ast.literal_eval(e) for e in node.value.elts]
    raise AssertionError("oacl/cli.py has no COMMAND_MODULES list")


ENV_NAMES = sorted(p.stem for p in ENVS.glob("*.yaml"))


# ------------------------------------------------------------------- tests
def test_every_family_has_an_environment():
    assert set(FAMILIES) <= set(ENV_NAMES), (
        f"missing envs/*.yaml for {set(FAMILIES) - set(ENV_NAMES)}"
    )


@pytest.mark.parametrize("name", ENV_NAMES)
def test_structure(name):
    env = load_env(name)
    assert env["name"] == f"oacl-{name}"
    assert env["channels"][0] == "conda-forge"
    assert "defaults" not in env["channels"], "mixing defaults with conda-forge breaks solves"
    _, requires_python = pyproject_requirements()
    pythons = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python=")]
    assert len(pythons) == 1, "pin python to major.minor"
    minor = pythons[0].split("=")[1]
    from packaging.specifiers import SpecifierSet

    assert f"{minor}.0" in SpecifierSet(requires_python), f"python={minor} vs {requires_python}"
    assert "pip" in conda_names(env), "a pip section needs pip from conda-forge"
    assert pip_requirements(env), "no pip section"


@pytest.mark.parametrize("name", ENV_NAMES)
def test_versions_pinned_and_inside_pyproject_ranges(name):
    declared, _ = pyproject_requirements()
    for req in pip_requirements(load_env(name)):
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{name}: pin {req} with =="
        key = canonicalize_name(req.name)
        assert key in declared, f"{name}: {req.name} is not a dependency in pyproject.toml"
        version = specs[0].version
        assert declared[key].specifier.contains(version, prereleases=True), (
            f"{name}: {req.name}=={version} is outside pyproject's {declared[key]}"
        )


def test_same_version_of_a_package_in_every_environment():
    pins = {}
    for name in ENV_NAMES:
        for req in pip_requirements(load_env(name)):
            pins.setdefault(canonicalize_name(req.name), {})[name] = str(req.specifier)
    differing = {k: v for k, v in pins.items() if len(set(v.values())) > 1}
    assert not differing, f"versions differ between environments: {differing}"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_environment_lists_every_import_of_its_rule_family(family):
    needed = third_party_imports(FAMILIES[family], cli_command_modules())
    dists = env_dists(load_env(family))
    missing = sorted(
        f"{mod} (package {DIST_OF.get(mod, mod)})"
        for mod in needed
        if canonicalize_name(DIST_OF.get(mod, mod)) not in dists
    )
    assert not missing, f"envs/{family}.yaml lacks imports of its rules: {missing}"


def test_import_scan_sees_known_imports():
    # guards the scanner itself: these imports exist in the code base
    assert "pydensecrf" in third_party_imports(["oacl.refine"], [])
    assert "torch" in third_party_imports(["oacl.models"], [])
    assert "torch" not in third_party_imports(["oacl.params"], [])


@pytest.mark.parametrize("name", ENV_NAMES)
def test_post_deploy_installs_oacl_without_dependencies(name):
    script = ENVS / f"{name}.post-deploy.sh"
    assert script.is_file(), f"{script} missing: the environment would lack the oacl command"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert "pip install" in text and "--no-deps" in text


def test_rules_point_at_existing_environments():
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        for ref in re.findall(r"conda:\s*\n?\s*[\"']([^\"']+)[\"']", smk.read_text()):
            assert (smk.parent / ref).resolve().is_file(), f"{smk.name}: conda env {ref} not found"


def _fake_pip(tmp_path):
    """A `pip` first on PATH that records its arguments (as the env's own pip would be)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    pip = bindir / "pip"
    pip.write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "pip_args"}\n')
    pip.chmod(0o755)
    return bindir


@pytest.mark.parametrize("name", ENV_NAMES)
def test_post_deploy_installs_the_checkout_when_run_as_snakemake_runs_it(name, tmp_path):
    """Issue 27.3: Snakemake copies the script to .snakemake/conda/<hash>.post-deploy.sh
    (snakemake/deployment/conda.py: copy_permission_safe, then `<shebang interpreter>
    <copy>` in the activated env, with its own environment), so `$(dirname "$0")/..`
    was .snakemake/ and pip installed no project."""
    import shutil
    import subprocess

    work = tmp_path / "run"
    (work / ".snakemake" / "conda").mkdir(parents=True)
    copy = work / ".snakemake" / "conda" / "0123abcd.post-deploy.sh"
    shutil.copy2(ENVS / f"{name}.post-deploy.sh", copy)
    env = dict(os.environ, PATH=f"{_fake_pip(tmp_path)}{os.pathsep}{os.environ['PATH']}")
    env.pop("OACL_REPO", None)
    run = lambda env: subprocess.run(  # noqa: E731
        ["bash", str(copy)], cwd=work, env=env, capture_output=True, text=True
    )
    proc = run(env)  # without the workflow's variable: a clear error, no install
    assert proc.returncode == 1 and "set OACL_REPO" in proc.stderr
    assert not (tmp_path / "pip_args").exists()
    proc = run(dict(env, OACL_REPO=str(ROOT)))  # as the workflow exports it
    assert proc.returncode == 0, proc.stderr
    args = (tmp_path / "pip_args").read_text().split()
    assert args[-2:] == ["-e", str(ROOT)] and "--no-deps" in args


def test_the_workflow_exports_the_checkout_to_what_snakemake_runs(workflow_copy):
    """Post-deploy scripts, like rules' shell commands, inherit Snakemake's environment."""
    from conftest import run_snakemake

    with open(workflow_copy / "Snakefile", "a") as fh:
        fh.write('\n\nrule show_repo:\n    output:\n        "repo.txt",\n')
        fh.write('    shell:\n        "echo $OACL_REPO > {output}"\n')
    run_snakemake(workflow_copy, "--cores", "1", "repo.txt")
    assert (workflow_copy / "repo.txt").read_text().strip() == str(workflow_copy)
