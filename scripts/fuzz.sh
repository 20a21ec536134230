#!/usr/bin/env bash
# fuzz.sh [SECONDS] [TARGET] — builds the libFuzzer targets with clang, ASan and UBSan in
# build-fuzz/ and runs TARGET (default fuzz_safetensors; also fuzz_tokenizer_load,
# fuzz_tokenizer_encode, fuzz_spm, fuzz_dataset, fuzz_labeled, fuzz_tfevents, fuzz_model_config,
# fuzz_checkpoint, fuzz_serve_request) for SECONDS (default
# 60), seeded with the test fixtures.
# The growing corpus stays in build-fuzz/corpus/TARGET between runs; a crash is saved as
# build-fuzz/artifacts/crash-* and makes the script fail. Needs clang and its runtime
# (Debian: clang libclang-rt-14-dev or newer).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-60}
target=${2:-fuzz_safetensors}
build=$root/build-fuzz
cc=${CC:-clang}
case "$secs" in ''|*[!0-9]*) echo "fuzz.sh: SECONDS must be a number, not '$secs'" >&2; exit 2 ;; esac
"$root/scripts/install-deps.sh" --fuzz
if ! command -v "$cc" >/dev/null; then
    echo "fuzz.sh: $cc not found (set CC to a clang)" >&2; exit 2
fi

case "$target" in
    fuzz_safetensors)
        seeds=("$root/tests/fixtures/safetensors/valid" "$root/tests/fixtures/safetensors/malformed")
        dict=$root/fuzz/safetensors.dict ;;
    fuzz_tokenizer_load)
        seeds=("$root/fuzz/tokenizer_seeds/load") ;;
    fuzz_tokenizer_encode)
        seeds=("$root/fuzz/tokenizer_seeds/encode") ;;
    fuzz_spm)
        seeds=("$root/fuzz/spm_seeds") ;;
    fuzz_dataset)
        seeds=("$root/fuzz/dataset_seeds") ;;
    fuzz_labeled)
        seeds=("$root/fuzz/labeled_seeds") ;;
    fuzz_tfevents)
        seeds=("$root/fuzz/tfevents_seeds") ;;
    fuzz_model_config)
        seeds=("$root/fuzz/model_config_seeds") ;;
    fuzz_checkpoint)
        seeds=("$root/fuzz/checkpoint_seeds") ;;
    fuzz_serve_request)
        seeds=("$root/fuzz/serve_seeds") ;;
    *) echo "fuzz.sh: unknown target '$target'" >&2; exit 2 ;;
esac

cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DQKV_BUILD_FUZZ=ON -DQKV_SANITIZE=address,undefined -DQKV_BUILD_TESTS=OFF \
    -DQKV_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" --target "$target" -j"$(nproc 2>/dev/null || echo 2)"

corpus=$build/corpus/$target
mkdir -p "$corpus" "$build/artifacts"
opts=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 -max_len=65536 -print_final_stats=1
      -artifact_prefix="$build/artifacts/")
[[ -n ${dict:-} ]] && opts+=(-dict="$dict")
echo "fuzz.sh: running $target for ${secs}s (corpus $corpus)"
# libFuzzer writes new inputs to the first directory only; the seed directories are read.
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
    "$build/fuzz/$target" "${opts[@]}" "$corpus" "${seeds[@]}"
