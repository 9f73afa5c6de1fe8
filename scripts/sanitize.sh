#!/usr/bin/env bash
# Builds longctx with a sanitizer (cmake/sanitize.cmake) and runs its tests under it.
#   scripts/sanitize.sh address [ctest args...]   ASan + LSan + UBSan into build-asan/: every test
#   scripts/sanitize.sh thread  [ctest args...]   TSan into build-tsan/: the C++ unit tests and py.test_cp
# Extra arguments replace the default test selection and go to ctest (e.g. -R Core, -E '^py\.').
# Every sanitizer report aborts its program and goes to a file of $BUILD_DIR/sanitizer-reports/ (a Python
# test that expects a program to fail would otherwise take the abort for the failure it wanted and drop
# the report with the program's stderr); the script prints them and fails when there is any. Builds with
# CMAKE_BUILD_TYPE=Debug (asserts on, the library's and nlohmann::json's) and the sanitizer's -O1.
# Prints the build and test times (wall) at the end.
# Under thread, a selection of your own that includes Python tests other than py.test_cp also checks
# their one-rank runs with 2 OpenMP threads, which TSan cannot follow (see below).
# SANITIZE_TARGETS (space-separated CMake targets) builds only those (scripts/test.sh: the unit tests'
# binaries, for the ASan run of the C++ tests it makes in CI), instead of everything.
# Uses what scripts/install-deps.sh installed (run that first on a fresh machine); gcc's libasan,
# libubsan and libtsan come with it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
kind=${1:-}
[ $# -gt 0 ] && shift
JOBS=${JOBS:-2}
MPIRUN=$(command -v mpirun || true)

case "$kind" in
  address)
    BUILD_DIR=${BUILD_DIR:-build-asan}
    # Every finding is fatal: abort at the first ASan error, leak or UB report, so that ctest sees a
    # failure rather than a log line. Not detect_stack_use_after_return: gcc 12's fake stack frames are
    # only 32-byte aligned, and -march=native code keeps 64-byte aligned AVX-512 spills on the stack
    # (vmovdqa64), which then fault (a SEGV in attention_backward, not a bug of ours).
    # verify_asan_link_order=0: py.test_faults puts its fault shim (lib/libfault_shim.so) in LD_PRELOAD,
    # ahead of the ASan runtime the programs link; the shim only wraps a few system calls and is itself
    # built with ASan.
    REPORTS=$ROOT/$BUILD_DIR/sanitizer-reports
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1:strict_string_checks=1:check_initialization_order=1:strict_init_order=1:verify_asan_link_order=0:log_path=$REPORTS/asan
    # LSan ignores what scripts/lsan.supp lists (uninstrumented third-party libraries: libgomp, OpenMPI)
    export LSAN_OPTIONS=suppressions=$ROOT/scripts/lsan.supp:print_suppressions=0:log_path=$REPORTS/lsan
    export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:log_path=$REPORTS/ubsan
    # OpenMP threads that sleep when idle: on a loaded 2-core machine libgomp's spinning threads wait for
    # each other's time slices at every barrier (a 1.5 s test took 45 s with two spinning threads)
    export OMP_WAIT_POLICY=passive
    # OpenMPI's leaks at exit are matched through their callers in its libraries (scripts/lsan.supp),
    # which only a full unwind of each allocation reaches (the fast one stops at the first frame without
    # a frame pointer): the tests' mpirun (found on PATH) gets it for its ranks; the unit tests keep the
    # fast unwinder, twice as fast.
    WRAP_ENV='LSAN_OPTIONS="$LSAN_OPTIONS:fast_unwind_on_malloc=0"'
    TESTS=all  # the unit tests and the Python end-to-end ones (the CLI under ASan, mpirun's ranks too)
    ;;
  thread)
    BUILD_DIR=${BUILD_DIR:-build-tsan}
    # gcc's libgomp is not built with TSan: its barriers are invisible to it, so with more than one OpenMP
    # thread every parallel region would be reported as racing. One OpenMP thread keeps the parallel
    # regions on the calling thread (the ranks of mpirun get OMP_NUM_THREADS=1 from the tests too); the
    # threads TSan then checks are ours: the copy thread (core/copy_thread) and its hand-offs with the
    # compute thread in offload (train/saved_store, train/kv_pages), and, in the ranks of py.test_cp, the
    # ring's non-blocking exchanges (parallel/ring) beside OpenMPI's own threads. (Not OMP_THREAD_LIMIT=1:
    # OpenBLAS's OpenMP build then splits a GEMM for omp_get_max_threads() workers of which one runs, and
    # spins forever waiting for the others.)
    export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
    REPORTS=$ROOT/$BUILD_DIR/sanitizer-reports
    export TSAN_OPTIONS="suppressions=$ROOT/scripts/tsan.supp:halt_on_error=1:abort_on_error=1:second_deadlock_stack=1:print_suppressions=0:log_path=$REPORTS/tsan"
    # py.test_cp runs its one-rank references with the OMP_NUM_THREADS=2 that CTest gives every Python
    # test, which TSan cannot follow (above): those report nothing; the ranks of its mpirun (one OpenMP
    # thread each, -x OMP_NUM_THREADS=1) report everything.
    WRAP_ENV='TSAN_OPTIONS="$TSAN_OPTIONS:report_bugs=1"'
    # The C++ unit tests (Core.CopyThread*: the copy thread; Plan.*, Lora.*: SavedStore and KvPages on the
    # host and disk tiers through it; the rest single-threaded) but Attention.DeterministicAcrossThreadCounts
    # (it sets 2 and 3 OpenMP threads itself), and py.test_cp (ring and zigzag attention, Ulysses, ZeRO,
    # SeCO and training across 2-4 ranks). The other Python tests run one process with one thread, as the
    # unit tests already do, and take long under TSan.
    TESTS=unit+cp
    ;;
  *)
    echo "usage: scripts/sanitize.sh address|thread [ctest args...]" >&2
    exit 2
    ;;
esac

# The tests find mpirun on PATH: this one sets WRAP_ENV for the ranks it starts.
if [ -n "$MPIRUN" ]; then
  mkdir -p "$BUILD_DIR/sanitize-bin"
  printf '#!/bin/sh\n# made by scripts/sanitize.sh %s: the ranks of the tests under the sanitizer\n%s exec %s "$@"\n' \
    "$kind" "$WRAP_ENV" "$MPIRUN" > "$BUILD_DIR/sanitize-bin/mpirun"
  chmod +x "$BUILD_DIR/sanitize-bin/mpirun"
  export PATH=$ROOT/$BUILD_DIR/sanitize-bin:$PATH
fi

t0=$(date +%s)
mkdir -p "$REPORTS"
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DLONGCTX_CUDA=OFF -DLONGCTX_SANITIZE="$kind"
# (the environment above holds during the build too: gtest_discover_tests runs each test binary, under
# its sanitizer, right after linking it)
if [ -n "${SANITIZE_TARGETS:-}" ]; then
  # shellcheck disable=SC2086  # a list of target names
  cmake --build "$BUILD_DIR" -j "$JOBS" --target $SANITIZE_TARGETS
else
  cmake --build "$BUILD_DIR" -j "$JOBS"
fi
t1=$(date +%s)
cd "$BUILD_DIR"
rm -rf "$REPORTS"
mkdir -p "$REPORTS"
rc=0
if [ $# -gt 0 ]; then
  ctest --output-on-failure -j "$JOBS" "$@" || rc=$?
elif [ "$TESTS" = all ]; then
  ctest --output-on-failure -j "$JOBS" || rc=$?
else
  # thread: the unit tests, then py.test_cp
  ctest --output-on-failure -j "$JOBS" -E '^py\.|^Attention\.DeterministicAcrossThreadCounts$' || rc=$?
  TSAN_OPTIONS="$TSAN_OPTIONS:report_bugs=0" ctest --output-on-failure -R '^py\.test_cp$' || rc=$?
fi
t2=$(date +%s)
if [ -n "$(ls -A "$REPORTS")" ]; then
  for f in "$REPORTS"/*; do
    echo "==== $f"
    head -n 60 "$f"
  done
  echo "sanitize.sh $kind: $(ls "$REPORTS" | wc -l) sanitizer report(s) in $REPORTS"
  [ $rc -eq 0 ] && rc=1
fi
echo "sanitize.sh $kind: build $((t1 - t0)) s, tests $((t2 - t1)) s (exit $rc)"
exit $rc
