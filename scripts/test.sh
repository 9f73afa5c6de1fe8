#!/usr/bin/env bash
# Installs, builds and runs every test; ends with CTest's summary line.
#   LONGCTX_FUZZ_SECONDS (default 5): how long each fuzz target runs first
#   (0 skips them; scripts/fuzz.sh SECONDS runs them alone, longer).
#   LONGCTX_ASAN (default 1): build the C++ unit tests with ASan + UBSan into build-asan/ and run them
#   (scripts/sanitize.sh address; about 14 minutes on 2 cores from nothing); 0 skips it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
fuzz_seconds="${LONGCTX_FUZZ_SECONDS:-5}"
if [ "$fuzz_seconds" != 0 ]; then
  echo "fuzzing every file parser for ${fuzz_seconds} s each (past findings first):"
  bash scripts/fuzz.sh "$fuzz_seconds"
fi
if [ "${LONGCTX_ASAN:-1}" != 0 ]; then
  echo "the C++ unit tests under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/):"
  SANITIZE_TARGETS="test_core test_kernels test_io test_model test_train" \
    BUILD_DIR=build-asan bash scripts/sanitize.sh address -E '^py\.'
fi
cd "${BUILD_DIR:-build}"
ctest --output-on-failure -j 2 "$@"
