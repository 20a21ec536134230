#!/usr/bin/env bash
# test-python.sh — the Python package (pyproject.toml, python/qkv; docs/PYTHON.md) and its
# pytest suite (python/tests), which compares the package's results with the qkv command line
# of build/ and talks to `qkv serve` with the openai client. Creates (or reuses) a venv in
# build-python/venv, pip installs python/requirements-test.txt (pinned) and the package (`pip
# install .` builds libqkv with CMake through scikit-build-core), then runs pytest. Needs
# Python 3 with venv, and PyPI; building and testing qkv itself (scripts/test.sh) never does.
# Arguments go to pytest (e.g. -k embed).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
if ! "$py" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    scripts/install-deps.sh --python # Debian's python3 + python3-venv
fi
scripts/install-deps.sh
scripts/fetch-model.sh # the real model the embedding and server tests use (once)
if [[ ! -x build/qkv ]]; then # the CLI the tests compare with (scripts/test.sh builds it too)
    cmake -S . -B build >/dev/null
    cmake --build build -j"$(nproc 2>/dev/null || echo 2)" --target qkv_cli
fi
venv=build-python/venv
[[ -x $venv/bin/python ]] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r python/requirements-test.txt
# the library in the package is built as build/ was (same CMAKE_BUILD_TYPE, so the same compiler
# flags): the tests compare its floats with the CLI's bit for bit
btype=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' build/CMakeCache.txt 2>/dev/null)
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    ${btype:+--config-settings=cmake.build-type=$btype} .
# from python/tests' parent's parent (the root), pytest imports the installed package, not
# python/qkv (which has no library beside it)
QKV_CLI=$PWD/build/qkv "$venv/bin/python" -m pytest -rs python/tests "$@"
