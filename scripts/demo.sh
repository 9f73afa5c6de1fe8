#!/usr/bin/env bash
# The main job on its built-in default: install, build, then train a small
# Llama from scratch on passkey retrieval (128-token samples with skipped
# positions, then 512 -> 4096 tokens) and print its passkey accuracy per length
# and depth. About 6-7 minutes on 2 cores after the build. Extra arguments are
# config overrides (key=value).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
./build/bin/longctx info
exec ./build/bin/longctx train configs/passkey-demo.yaml "$@"
