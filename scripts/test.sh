#!/usr/bin/env bash
# Installs, builds and runs every test; ends with CTest's summary line.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
cd "${BUILD_DIR:-build}"
ctest --output-on-failure -j 2 "$@"
