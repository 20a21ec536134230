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
while pgrep -f run3.sh >/dev/null; do sleep 2; done
echo "$(date -u +%T) run4.sh: extra round 5 for train2 (r1, r2 and new r4 overlapped other jobs)" >> $LOG
for r in 5; do for impl in old new; do
  run train2 $impl $r ./$impl/build/bench/bench_train --shapes 4x64,8x256 --threads 2
done; done
echo "$(date -u +%T) RUN4 DONE" >> $LOG
