#!/usr/bin/env bash
# install-deps.sh — installs the system packages qkv needs to build and test (Debian/Ubuntu).
# Idempotent: installs only what is missing and says what. Usage:
#   scripts/install-deps.sh          # build + test needs
#   scripts/install-deps.sh --fuzz   # also clang + libFuzzer runtime
#   scripts/install-deps.sh --mpi    # also Open MPI, for the -DQKV_WITH_MPI=ON build (CI)
#   scripts/install-deps.sh --python # also Python 3 with venv (scripts/test-python.sh)
set -euo pipefail

pkgs=(cmake make gcc pkg-config libjansson-dev curl unzip ca-certificates
      libutf8proc-dev libcsv-dev libcairo2-dev libfontconfig-dev fonts-dejavu-core
      libprotobuf-c-dev protobuf-c-compiler libmicrohttpd-dev
      fortunes) # fortunes: the tokenizer tests' corpus; cairo + a font: qkv attention's PNGs;
              # protobuf-c: SentencePiece model files and TensorBoard event files;
              # libmicrohttpd: qkv serve (its test talks to it with curl)
for arg in "$@"; do
    case "$arg" in
        --fuzz) pkgs+=(clang libclang-rt-dev) ;;
        # optional group: data-parallel training (mpirun -np N qkv train), tests/cli/test_train_mpi.sh
        --mpi) pkgs+=(libopenmpi-dev openmpi-bin) ;;
        # optional group: the Python package's tests (scripts/test-python.sh)
        --python) pkgs+=(python3 python3-venv) ;;
        *) echo "install-deps: unknown option $arg" >&2; exit 2 ;;
    esac
done
# Optional: the browser test of the HTML pages (tests/cli/test_report_browser.sh) renders them
# in headless Chromium and reads the screenshot with libpng. Installed along when this runs as
# root (CI: one download of ~100 MB, once); otherwise only noted — that test then skips.
optional=(chromium libpng-dev)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=()
for p in "${pkgs[@]}"; do
    installed "$p" || missing+=("$p")
done
missing_optional=()
for p in "${optional[@]}"; do
    installed "$p" || missing_optional+=("$p")
done
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    missing+=("${missing_optional[@]}")
elif [[ ${#missing_optional[@]} -gt 0 ]]; then
    echo "install-deps: optional, for the browser test of the HTML pages: ${missing_optional[*]}" >&2
fi

if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-deps: no apt-get here; please install: ${missing[*]}" >&2
    exit 1
fi

if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: missing packages: ${missing[*]}" >&2
    echo "install-deps: run as root:  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
