"""Presets that change a dataset or a model's recipe never write the default's files
(issue 27.2: the smoke preset's dry run in a folder with the default results planned all
26 jobs over them, "Params have changed")."""

import re

from conftest import REPO, run_snakemake


def planned_files(workdir, *args):
    """Every output, log and benchmark file of the whole DAG, as the dry run lists them."""
    out = run_snakemake(workdir, "-n", *args).stdout
    files = set()
    for m in re.finditer(r"^    (?:output|log|benchmark): (.*)$", out, re.M):
        files.update(f.strip() for f in m[1].split(","))
    return files


def test_smoke_presets_share_no_file_with_their_base(workflow_copy):
    configs = REPO / "workflow" / "configs"
    pairs = [
        ([], ["--configfile", str(configs / "smoke.yaml")], "results/smoke/"),
        (
            ["--configfile", str(configs / "composite.yaml")],
            [
                "--configfile",
                str(configs / "composite.yaml"),
                str(configs / "composite-smoke.yaml"),
            ],
            "results/composite-smoke/",
        ),
    ]
    for base_args, smoke_args, folder in pairs:
        base = planned_files(workflow_copy, *base_args)
        smoke = planned_files(workflow_copy, *smoke_args)
        assert len(base) > 100 and len(smoke) > 60, (len(base), len(smoke))
        # fetched sources (Debian packages) are the same for every preset, hence shared
        shared = {f for f in base & smoke if not f.startswith("results/sources/")}
        assert not shared, sorted(shared)[:5]
        assert all(f.startswith((folder, "results/sources/")) for f in smoke), sorted(smoke)[:5]
