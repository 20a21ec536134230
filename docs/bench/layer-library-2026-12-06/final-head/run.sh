#!/bin/bash
# Quiet-machine rerun at the final HEAD: old (9dce84a) vs new, interleaved, nothing else running.
cd /work/bench-ab2
export OPENBLAS_CORETYPE=SkylakeX
M=/work/main/models/all-MiniLM-L6-v2
run() { local name=$1 impl=$2 r=$3; shift 3
  echo "$(date -u +%T) START $name $impl r$r load=$(cut -d' ' -f1-3 /proc/loadavg)" >> raw/runlog.txt
  "$@" > raw/${name}_${impl}_r${r}.jsonl 2> raw/${name}_${impl}_r${r}.err
  echo "$(date -u +%T) END $name $impl r$r" >> raw/runlog.txt; }
for r in 1 2 3 4 5; do for impl in old new; do
  run generate $impl $r ./$impl/build/bench/bench_generate --keep /work/bench-ab2/models; done; done
for r in 1 2 3; do for impl in old new; do
  run embed $impl $r ./$impl/build/bench/bench_embed --model $M; done; done
for r in 1 2 3; do for impl in old new; do
  run train2 $impl $r ./$impl/build/bench/bench_train --shapes 4x64,8x256 --threads 2; done; done
echo "$(date -u +%T) ALL DONE" >> raw/runlog.txt
