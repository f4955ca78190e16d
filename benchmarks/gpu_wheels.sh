#!/usr/bin/env bash
# Wheels that a GPU machine without internet may lack for benchmarks/gpu_check.py, made
# here (where PyPI is reachable) into .whl/ (git-ignored) and carried with the working tree.
#
#   bash benchmarks/gpu_wheels.sh [PYTHON_VERSION ...]     # default: 3.12
#
# For each version, that Python (python3.12 on PATH, or pyenv's) resolves snakemake,
# jsonschema, pycocotools and pydensecrf2 (built from its sdist: PyPI has no binary
# wheel) with their dependencies, as `pip wheel` for that interpreter and this Linux.
# Build this on a glibc no newer than the GPU machine's (pydensecrf2 is a plain
# linux_x86_64 build). The big packages a CUDA PyTorch image has anyway (numpy, pandas,
# scipy, pyarrow, matplotlib, pillow, torch ...) are dropped to keep the carry small
# (~31 MB for one Python); gpu_check.py installs only what is missing there, with
# pip --no-index --no-deps, into .whl/site-<tag> (nothing of that Python is replaced).
# WHEELS_DIR overrides the destination.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${WHEELS_DIR:-.whl}
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(3.12)
# the ranges of pyproject.toml
reqs=("snakemake>=9,<10" "jsonschema>=4" "pycocotools>=2.0.7" "pydensecrf2>=1.1" "typing_extensions>=4.15")
# distributions the GPU image provides (wheel names use _ for -)
image_has='^(numpy|pandas|scipy|pyarrow|matplotlib|pillow|contourpy|kiwisolver|fonttools|cycler|torch|torchvision|triton|opencv_python_headless|scikit_learn|sympy|networkx|nvidia_[a-z0-9_]+)-'

find_python() {
    local v=$1 p
    for p in "python$v" "$(pyenv root 2>/dev/null)/versions/$v"*/bin/python; do
        if command -v "$p" >/dev/null 2>&1 && "$p" -c "import sys; assert sys.version.startswith('$v.')" 2>/dev/null; then
            command -v "$p"
            return 0
        fi
    done
    return 1
}

mkdir -p "$dest"
for v in "${versions[@]}"; do
    py=$(find_python "$v") || { echo "gpu_wheels: no Python $v here (python$v or pyenv)" >&2; exit 1; }
    echo "gpu_wheels: Python $v ($py) -> $dest" >&2
    "$py" -m pip wheel -q --disable-pip-version-check --wheel-dir "$dest" "${reqs[@]}"
done
find "$dest" -maxdepth 1 -name '*.whl' -printf '%f\n' | grep -E "$image_has" | while read -r w; do
    rm -f "$dest/$w"
done
echo "gpu_wheels: $(find "$dest" -maxdepth 1 -name '*.whl' | wc -l) wheels, $(du -sh "$dest" | cut -f1) in $dest" >&2
