#!/usr/bin/env bash
# run.sh — the README's main command. Installs what is missing (system packages, the default
# model all-MiniLM-L6-v2), builds qkv (release), then does qkv's main job: semantic search
# with sentence embeddings over the bundled corpus data/corpus.txt, printing the top matches
# for a few queries. Arguments, if any, replace the default queries.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/fetch-model.sh
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs" --target qkv_cli >/dev/null
./build/qkv info | head -4
echo
if [[ $# -eq 0 ]]; then
    set -- "how does a transformer know the order of words?" \
           "a pet sleeping in the sun" \
           "what happened in the economy" \
           "tips for cooking pasta"
fi
mkdir -p out
./build/qkv search --model models/all-MiniLM-L6-v2 --corpus data/corpus.txt \
    --index out/corpus.qkv-index.safetensors --top-k 3 "$@"
