#!/usr/bin/env bash
# run.sh — the README's main command: builds qkv (release) if needed and runs its main job.
# For now that is `qkv info` (machine, build, kernels) and `qkv demo` (an attention pattern and
# a timed GPT-2-sized attention forward + backward). Extra arguments go to `qkv demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs" --target qkv_cli >/dev/null
./build/qkv info
echo
./build/qkv demo "$@"
