#!/usr/bin/env bash
# Creates .venv-hf/ in the repo root with PyPI's current torch, transformers
# (5.x), safetensors and numpy: the baseline a user would pick instead of
# longctx (Hugging Face LlamaForCausalLM, SDPA attention, gradient
# checkpointing), used by `bench/compare_torch.py --baseline hf`.
# The benchmark's own setup, not part of the build or the tests. The default
# torch wheel brings its CUDA libraries (about 5 GB); it runs on the CPU too.
# Safe to run again: a venv that already imports them is kept.
#   scripts/install-hf-bench.sh            # create or keep .venv-hf
#   VENV=/elsewhere scripts/install-hf-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv-hf}
PY_PKGS=(torch "transformers>=5,<6" safetensors numpy)
CHECK='import torch, transformers, safetensors, numpy, sys; sys.exit(int(transformers.__version__.split(".")[0]) < 5)'

if "$VENV/bin/python" -c "$CHECK" 2>/dev/null; then
  "$VENV/bin/python" -c 'import torch, transformers; print("install-hf-bench: '"$VENV"' ready: torch", torch.__version__, "transformers", transformers.__version__)'
  exit 0
fi

# shellcheck source=scripts/venv_base.sh
source scripts/venv_base.sh  # (the cwd is the repo root here)
venv_base install-hf-bench

# Keep a venv that only lacks a package (pip fills it in); rebuild one whose interpreter is gone.
if ! "$VENV/bin/python" -c "import sys" 2>/dev/null; then
  rm -rf "$VENV"
  echo "install-hf-bench: creating $VENV with $BASE"
  "$BASE" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade "${PY_PKGS[@]}"
"$VENV/bin/python" -c "$CHECK"
"$VENV/bin/python" -c 'import torch, transformers; print("install-hf-bench: '"$VENV"' ready: torch", torch.__version__, "transformers", transformers.__version__)'
