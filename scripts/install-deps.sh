#!/usr/bin/env bash
# Installs what building and testing breccia needs: the C++ toolchain and libraries (apt) and
# the pinned Python packages (requirements-test.txt) into the interpreter PYTHON (default: the
# project environment .venv/bin/python when it exists, else python3; scripts/setup.sh makes
# that environment). `install-deps.sh apt` or `install-deps.sh pip` does one half. Safe to run
# again: it installs only what is missing. On a terminal pip shows its progress.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
default_python=python3
[[ -x .venv/bin/python ]] && default_python=.venv/bin/python
PYTHON="${PYTHON:-$default_python}"
part="${1:-all}"
# python3-dev and python3-venv: a bare Debian/Ubuntu lacks the headers an extension builds
# against and the venv module scripts/setup.sh uses.
APT_PACKAGES=(build-essential cmake ninja-build python3-dev python3-venv libgtest-dev
              libgmock-dev libbenchmark-dev nlohmann-json3-dev libsimdjson-dev libopenblas-dev
              libhwy-dev clang libclang-rt-dev libomp-dev pkgconf)

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

install_apt() {
  local missing=()
  for package in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$package")
    fi
  done
  ((${#missing[@]} > 0)) || return 0
  if ! command -v apt-get >/dev/null; then
    echo "install-deps: missing ${missing[*]}, and there is no apt-get to install them." >&2
    echo "Install them with your system's package manager, then run this again." >&2
    exit 1
  fi
  local sudo=()
  if ((EUID != 0)); then
    if ! command -v sudo >/dev/null; then
      echo "install-deps: missing ${missing[*]}; run as root (or install sudo) to install them." >&2
      exit 1
    fi
    sudo=(sudo)
  fi
  echo "install-deps: installing ${missing[*]} (apt)"
  quietly "apt-get update" "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  quietly "apt-get install" "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
}

install_pip() {
  if ! command -v "$PYTHON" >/dev/null; then
    echo "install-deps: no '$PYTHON' found; install Python 3.10 or newer, or set PYTHON." >&2
    exit 1
  fi
  local pip=(env PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 "$PYTHON" -m pip
             install -r requirements-test.txt)
  echo "install-deps: the pinned Python packages of requirements-test.txt into $PYTHON" \
    "(first time: about 1.6 GB, PyTorch and JAX the bulk)"
  if [[ -t 1 ]]; then
    "${pip[@]}" --progress-bar on | { grep -v '^Requirement already satisfied' || true; }
  else
    quietly "pip install -r requirements-test.txt" "${pip[@]}" -q
  fi
}

case "$part" in
  apt) install_apt ;;
  pip) install_pip ;;
  all) install_apt && install_pip ;;
  *)
    echo "install-deps: expected 'apt', 'pip' or nothing, got '$part'" >&2
    exit 2
    ;;
esac
