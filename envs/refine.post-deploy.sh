#!/usr/bin/env bash
# Snakemake runs this inside the freshly created conda environment
# (--sdm conda): install the oacl package itself, without dependencies (the
# environment file provides them), editable so code edits need no rebuild.
# Snakemake runs a copy, .snakemake/conda/<hash>.post-deploy.sh, so the checkout is
# not beside it: the workflow exports OACL_REPO (workflow/rules/common.smk). Run by
# hand from envs/, the checkout is the folder above.
set -euo pipefail
repo=${OACL_REPO:-$(cd "$(dirname "$0")/.." && pwd)}
if [ ! -f "$repo/pyproject.toml" ] || [ ! -d "$repo/src/oacl" ]; then
    echo "post-deploy: no oacl checkout at $repo (set OACL_REPO to the repository root)" >&2
    exit 1
fi
pip install --no-deps --no-build-isolation -e "$repo"
