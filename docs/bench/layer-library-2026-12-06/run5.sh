#!/bin/bash
cd /work/bench-ab
export OPENBLAS_CORETYPE=SkylakeX
LOG=raw/runlog.txt
source <(sed -n '/^heavy()/p' run.sh)
waitquiet() { # up to 120 s per run
  for i in 1 2 3 4 5 6 7 8 9 10 11 12; do
    h=$(heavy); [ -z "$h" ] && return 0
    echo "$(date -u +%T) waiting: $(echo "$h" | head -2 | cut -c1-100 | tr '\n' '|')" >> $LOG
    sleep 10
  done
  echo "$(date -u +%T) NOT QUIET after 120 s, measuring anyway" >> $LOG
}
run() {
  local name=$1 impl=$2 r=$3; shift 3
  waitquiet
  echo "$(date -u +%T) START $name $impl r$r load=$(cut -d' ' -f1-3 /proc/loadavg) :: $*" >> $LOG
  "$@" > raw/${name}_${impl}_r${r}.jsonl 2> raw/${name}_${impl}_r${r}.err; local rc=$?
  echo "$(date -u +%T) END   $name $impl r$r rc=$rc load=$(cut -d' ' -f1-3 /proc/loadavg)" >> $LOG
}
echo "$(date -u +%T) run5.sh: extra GPT-2-only generate pairs (rounds 1-4 of gen_gpt2)" >> $LOG
for r in 1 2 3 4; do for impl in old new; do
  run gengpt2 $impl $r ./$impl/build/bench/bench_generate --only gpt2 --keep /work/bench-ab/models
done; done
echo "$(date -u +%T) RUN5 DONE" >> $LOG
