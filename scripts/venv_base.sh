# shellcheck shell=bash
# Sourced by the scripts that make a venv (install-py.sh, install-hf-bench.sh):
# venv_base NAME sets BASE to the first python3 that can build a venv with pip
# in it (Debian splits ensurepip into python3-venv, so `import venv` alone is
# not enough), installing python3-venv when none can; NAME prefixes its messages.
venv_base() {
  local cand
  BASE=""
  for cand in python3 /usr/bin/python3; do
    if command -v "$cand" >/dev/null && "$cand" -c "import venv, ensurepip" 2>/dev/null; then
      BASE=$cand
      return 0
    fi
  done
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "$1: installing python3-venv"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-venv
  BASE=/usr/bin/python3
}
