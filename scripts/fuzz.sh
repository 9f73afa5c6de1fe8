#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz (clang, ASan + UBSan, into
# build-fuzz/) and runs each for SECONDS seconds, one after another on one
# core, on a scratch copy of its seed corpus and past findings
# (tests/fuzz/corpus/<name>/ and regress/<name>/ stay as they are). Prints one
# line per target with its result and the number of inputs it ran; exits
# non-zero when any target finds a crash, a sanitizer report, a leak, a
# timeout or an out-of-memory (the input is saved under build-fuzz/findings/).
#
#   scripts/fuzz.sh [SECONDS] [TARGET ...]     SECONDS defaults to 5; TARGET e.g. npy or fuzz_npy
#
# Environment: FUZZ_JOBS (build jobs, default 2), FUZZ_BUILD (build dir,
# default build-fuzz), CXX / CC (default clang++ / clang).
set -uo pipefail

SECONDS_PER_TARGET="${1:-5}"
shift || true
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${FUZZ_BUILD:-$ROOT/build-fuzz}"
JOBS="${FUZZ_JOBS:-2}"
case "$SECONDS_PER_TARGET" in
  '' | *[!0-9]* | 0) echo "fuzz.sh: SECONDS must be a whole number >= 1, got '$SECONDS_PER_TARGET'" >&2; exit 2 ;;
esac

export CXX="${CXX:-clang++}" CC="${CC:-clang}"
command -v "$CXX" >/dev/null || { echo "fuzz.sh: $CXX not found (scripts/install-deps.sh installs clang)" >&2; exit 2; }

mkdir -p "$BUILD"
if [ ! -f "$BUILD/build.ninja" ]; then
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Fuzz -DLONGCTX_FUZZ=ON -DLONGCTX_CUDA=OFF \
    -DLONGCTX_TESTS=OFF -DLONGCTX_NATIVE=OFF >"$BUILD/fuzz-configure.log" 2>&1 ||
    { cat "$BUILD/fuzz-configure.log" >&2; echo "fuzz.sh: configure failed" >&2; exit 2; }
fi
cmake --build "$BUILD" --target fuzz_all -j "$JOBS" >"$BUILD/fuzz-build.log" 2>&1 ||
  { tail -50 "$BUILD/fuzz-build.log" >&2; echo "fuzz.sh: build failed (full log: $BUILD/fuzz-build.log)" >&2; exit 2; }

targets=()
if [ $# -gt 0 ]; then
  for t in "$@"; do targets+=("fuzz_${t#fuzz_}"); done
else
  for f in "$ROOT"/tests/fuzz/fuzz_*.cpp; do targets+=("$(basename "$f" .cpp)"); done
fi

# UBSan reports abort (the build also has -fno-sanitize-recover=all); leaks are findings.
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export OMP_NUM_THREADS=1

scratch="$(mktemp -d "${TMPDIR:-/tmp}/longctx_fuzz_corpus.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$BUILD/findings" "$BUILD/logs"
failed=0
for t in "${targets[@]}"; do
  name="${t#fuzz_}"
  exe="$BUILD/fuzz/$t"
  log="$BUILD/logs/$t.log"
  if [ ! -x "$exe" ]; then
    printf '%-28s MISSING (no %s)\n' "$t" "$exe"
    failed=1
    continue
  fi
  corpus="$scratch/$name"
  mkdir -p "$corpus"
  # seeds, plus every input that once was a finding (each run re-checks them)
  for d in corpus regress; do
    [ -d "$ROOT/tests/fuzz/$d/$name" ] && cp -r "$ROOT/tests/fuzz/$d/$name/." "$corpus/"
  done
  dict=()
  [ -f "$ROOT/tests/fuzz/dict/$name.dict" ] && dict=("-dict=$ROOT/tests/fuzz/dict/$name.dict")
  "$exe" "$corpus" "${dict[@]}" -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -timeout=10 \
    -max_len=8192 -print_final_stats=1 -artifact_prefix="$BUILD/findings/$name-" >"$log" 2>&1
  rc=$?
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  if [ $rc -eq 0 ]; then
    printf '%-28s OK     %10s execs in %ss\n' "$t" "${execs:-?}" "$SECONDS_PER_TARGET"
  else
    failed=1
    what="$(grep -m1 -oE 'ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer): [a-zA-Z-]+|runtime error: .*|==longctx fuzz== FINDING: .*|ERROR: libFuzzer: [a-z-]+' "$log")"
    artifact="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)"
    printf '%-28s FAILED (exit %d) %s\n' "$t" "$rc" "${what:-see $log}"
    [ -n "$artifact" ] && printf '%-28s   input: %s\n' "" "$artifact"
    printf '%-28s   log:   %s\n' "" "$log"
  fi
done
exit $failed
