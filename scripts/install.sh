#!/usr/bin/env bash
# Install sklearn-mtr (editable) with its dependencies, without ever replacing a torch that
# is already installed. With no torch present it installs the CPU build pinned below (on
# this project's machines a local wheel; elsewhere set SKLEARN_MTR_TORCH_SPEC, e.g. to a
# CUDA build or add --index-url for PyTorch's CPU wheels).
#   bash scripts/install.sh          # the package
#   bash scripts/install.sh test     # the package and the test tools
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    "$PY" -m pip install --quiet ${SKLEARN_MTR_TORCH_SPEC:-torch==2.13.0}
fi
extra=""
if [ "${1:-}" = "test" ]; then extra="[test]"; fi
"$PY" -m pip install --quiet --disable-pip-version-check -e ".${extra}"
