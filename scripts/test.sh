#!/usr/bin/env bash
# test.sh — builds qkv and runs the whole test suite (the README's test command).
#   scripts/test.sh                     release build with debug info, in build/
#   scripts/test.sh --sanitize          ASan + UBSan build, in build-asan/
#   scripts/test.sh --tsan              ThreadSanitizer build of the threading tests, in build-tsan/
#   scripts/test.sh --mpi               -DQKV_WITH_MPI=ON build (Open MPI), in build-mpi/: the
#                                       training tests and the mpirun tests (train_mpi,
#                                       finetune_mpi)
# Extra arguments after -- go to ctest (e.g. -- -R attention).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=release
while [[ $# -gt 0 ]]; do
    case "$1" in
        --sanitize) mode=asan ;;
        --tsan) mode=tsan ;;
        --mpi) mode=mpi ;;
        --) shift; break ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "test.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

if [[ "$mode" == mpi ]]; then scripts/install-deps.sh --mpi; else scripts/install-deps.sh; fi
scripts/fetch-model.sh # the real model the end-to-end tests run (once; skipped if present)

jobs=$(nproc 2>/dev/null || echo 2)
case "$mode" in
    release) dir=build; flags=() ;;
    # -O1: sanitizers stay exact and the suite runs ~5x faster than at -O0
    asan) dir=build-asan; flags=(-DCMAKE_BUILD_TYPE=Debug "-DCMAKE_C_FLAGS_DEBUG=-O1 -g" -DQKV_SANITIZE=address,undefined) ;;
    tsan) dir=build-tsan; flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DQKV_SANITIZE=thread) ;;
    mpi) dir=build-mpi; flags=(-DCMAKE_BUILD_TYPE=Release -DQKV_WITH_MPI=ON) ;;
esac

cmake -S . -B "$dir" "${flags[@]}" -DQKV_BUILD_TESTS=ON >/dev/null
cmake --build "$dir" -j"$jobs"

ctest_args=(--test-dir "$dir" --output-on-failure -j"$jobs")
if [[ "$mode" == tsan ]]; then
    # TSan: the tests whose subject is threading.
    ctest_args+=(-R 'core_runtime|kernels_gemm_avx512|attention_flash_avx512|lm_generate_avx512|train_avx512|decode_region_avx512')
fi
if [[ "$mode" == mpi ]]; then
    # MPI changes the training loop only (src/train/dist.c, loop.c): its tests and mpirun's.
    ctest_args+=(-R 'core_error|core_abi|train_loop|cls_data|train_cli|finetune_cli|train_mpi|finetune_mpi')
fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1}
ctest "${ctest_args[@]}" "$@"
