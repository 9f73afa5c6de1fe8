#!/usr/bin/env bash
# Creates .venv/ in the repo root with the PyPI-only packages the Python tests
# need (`tokenizers`, the reference for our BPE tokenizer). The system python
# stays untouched: Debian's python refuses pip installs outside a venv.
# Safe to run again: an existing venv that already imports them is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
PY_PKGS=(tokenizers)

# The cuDNN frontend's C++ headers (site-packages/include), for the CUDA build's fused attention;
# --no-deps: its Python side pulls in large packages the build does not need.
CUDNN_FE=nvidia-cudnn-frontend==1.32.0
has_fe() { ls "$VENV"/lib/python3*/site-packages/include/cudnn_frontend.h >/dev/null 2>&1; }

if "$VENV/bin/python" -c "import tokenizers" 2>/dev/null; then
  has_fe || "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps "$CUDNN_FE"
  echo "install-py: $VENV ready"
  exit 0
fi

# shellcheck source=scripts/venv_base.sh
source scripts/venv_base.sh  # (the cwd is the repo root here)
venv_base install-py

# A venv whose base interpreter went away cannot be repaired in place.
rm -rf "$VENV"
echo "install-py: creating $VENV with $BASE"
"$BASE" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PY_PKGS[@]}"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps "$CUDNN_FE"
"$VENV/bin/python" -c "import tokenizers; print('install-py: tokenizers', tokenizers.__version__)"
