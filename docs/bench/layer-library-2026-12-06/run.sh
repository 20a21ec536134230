#!/bin/bash
# Interleaved old/new benchmark runs; raw JSON lines to raw/<bench>_<impl>_r<k>.jsonl
cd /work/bench-ab
export OPENBLAS_CORETYPE=SkylakeX
LOG=raw/runlog.txt
heavy() { ps -eo pid,pcpu,args --sort=-pcpu | awk 'NR>1' | grep -v -e bench_train -e bench_embed -e bench_generate -e 'ps -eo' -e grep -e awk | awk '$2>40 || /\.ci\/run|ctest|cmake|scripts\/fuzz|cc1|ninja|make /' ; }
WAITED=0
waitquiet() { # global waiting budget 900 s
  while :; do
    h=$(heavy); [ -z "$h" ] && return 0
    if [ $WAITED -ge 900 ]; then echo "$(date -u +%T) NOT QUIET (wait budget spent), measuring anyway: $(echo "$h" | head -3 | cut -c1-120 | tr '\n' '|')" >> $LOG; return 0; fi
    echo "$(date -u +%T) waiting: $(echo "$h" | head -3 | cut -c1-120 | tr '\n' '|')" >> $LOG
    sleep 30; WAITED=$((WAITED+30))
  done
}
run() { # name impl round cmd...
  local name=$1 impl=$2 r=$3; shift 3
  waitquiet
  echo "$(date -u +%T) START $name $impl r$r load=$(cut -d' ' -f1-3 /proc/loadavg) top=$(ps -eo pcpu,args --sort=-pcpu | sed -n 2,3p | cut -c1-80 | tr '\n' '|') :: $*" >> $LOG
  "$@" > raw/${name}_${impl}_r${r}.jsonl 2> raw/${name}_${impl}_r${r}.err; local rc=$?
  echo "$(date -u +%T) END   $name $impl r$r rc=$rc load=$(cut -d' ' -f1-3 /proc/loadavg)" >> $LOG
}
M=/work/main/models/all-MiniLM-L6-v2
for r in 1 2 3; do for impl in old new; do
  run train2 $impl $r ./$impl/build/bench/bench_train --shapes 4x64,8x256 --threads 2
done; done
for r in 1 2 3; do for impl in old new; do
  run train1 $impl $r ./$impl/build/bench/bench_train --shapes 4x64 --threads 1
done; done
for r in 1 2 3; do for impl in old new; do
  run generate $impl $r ./$impl/build/bench/bench_generate --keep /work/bench-ab/models
done; done
for r in 1 2 3; do for impl in old new; do
  run embed $impl $r ./$impl/build/bench/bench_embed --model $M ${EMBED_REPS:+--reps $EMBED_REPS}
done; done
echo "$(date -u +%T) ALL DONE" >> $LOG
