#!/usr/bin/env bash
# Installs what building and testing breccia needs: the C++ toolchain and libraries (apt) and
# the pinned Python packages (requirements-test.txt). Safe to run again: it installs only what
# is missing. PYTHON selects the interpreter (default python3).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
APT_PACKAGES=(build-essential cmake ninja-build libgtest-dev libgmock-dev libbenchmark-dev
              nlohmann-json3-dev libsimdjson-dev libopenblas-dev libhwy-dev clang libclang-rt-dev
              libomp-dev)

# Runs a command with its output kept in a log, shown only when the command fails.
quietly() {
  local what="$1"
  shift
  local log
  log="$(mktemp)"
  if ! "$@" >"$log" 2>&1; then
    echo "install-deps: $what failed; its output:" >&2
    cat "$log" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
}

missing=()
for package in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if ((${#missing[@]} > 0)); then
  if ! command -v apt-get >/dev/null; then
    echo "install-deps: missing ${missing[*]}, and there is no apt-get to install them." >&2
    echo "Install them with your system's package manager, then run this again." >&2
    exit 1
  fi
  sudo=()
  if ((EUID != 0)); then
    if ! command -v sudo >/dev/null; then
      echo "install-deps: missing ${missing[*]}; run as root (or install sudo) to install them." >&2
      exit 1
    fi
    sudo=(sudo)
  fi
  echo "install-deps: installing ${missing[*]}"
  quietly "apt-get update" "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  quietly "apt-get install" "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! command -v "$PYTHON" >/dev/null; then
  echo "install-deps: no '$PYTHON' found; install Python 3.11 or set PYTHON." >&2
  exit 1
fi
quietly "pip install -r requirements-test.txt" env PIP_ROOT_USER_ACTION=ignore \
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$PYTHON" -m pip install -q -r requirements-test.txt
