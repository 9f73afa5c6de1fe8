#!/usr/bin/env bash
# Installs, builds and runs every test; ends with CTest's summary line.
#   LONGCTX_FUZZ_SECONDS (default 5): how long each fuzz target runs first
#   (0 skips them; scripts/fuzz.sh SECONDS runs them alone, longer).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
fuzz_seconds="${LONGCTX_FUZZ_SECONDS:-5}"
if [ "$fuzz_seconds" != 0 ]; then
  echo "fuzzing every file parser for ${fuzz_seconds} s each (past findings first):"
  bash scripts/fuzz.sh "$fuzz_seconds"
fi
cd "${BUILD_DIR:-build}"
ctest --output-on-failure -j 2 "$@"
