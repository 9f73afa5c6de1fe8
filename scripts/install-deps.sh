#!/usr/bin/env bash
# Installs every Debian package longctx needs to build, run and test.
# Safe to run again: apt-get skips what is already installed.
set -euo pipefail

PKGS=(
  build-essential cmake ninja-build pkg-config
  libpcre2-dev
  libopenblas-openmp-dev
  openmpi-bin libopenmpi-dev
  nlohmann-json3-dev libcli11-dev libyaml-cpp-dev
  libgtest-dev googletest
  clang libclang-rt-14-dev
  python3 python3-numpy python3-torch python3-venv
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
else
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# PyPI-only test dependencies, in the repo's .venv/
bash "$(dirname "$0")/install-py.sh"
