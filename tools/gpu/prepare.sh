#!/usr/bin/env bash
# Wheels for a GPU machine that has its own python3 with PyTorch and no network: the
# workspace's own distributions (built here, so their entry points register the plugins) and
# the pure-Python dependencies that machine's image lacks, at the versions uv.lock pins,
# into .whl/ (ignored by git; `carry` it). Run here, in the repository root, with network.
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf .whl && mkdir -p .whl
uv build --all-packages --wheel --out-dir .whl -q
# The image has numpy, scipy, matplotlib, jinja2, pyyaml, rich, click, pluggy, filelock,
# pyarrow, torch; not these (pydantic-core is compiled: the cp312 manylinux wheel).
MISSING="pydantic pydantic-core annotated-types typing-inspection tomli-w pebble lmfit asteval uncertainties dill"
for name in $MISSING; do
  version=$(uv export --locked --all-packages --no-hashes --no-header 2>/dev/null \
    | grep -i "^${name}==" | head -1 | cut -d'=' -f3 | cut -d' ' -f1 | cut -d';' -f1)
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl "${name}${version:+==$version}"
done
ls .whl
du -sh .whl
