#!/usr/bin/env bash
# Snakemake runs this inside the freshly created conda environment
# (--sdm conda): install the oacl package itself, without dependencies (the
# environment file provides them), editable so code edits need no rebuild.
set -euo pipefail
pip install --no-deps --no-build-isolation -e "$(cd "$(dirname "$0")/.." && pwd)"
