#!/bin/bash
source <(sed -n '/^heavy()/p' /work/bench-ab/run.sh)
while :; do h=$(heavy); [ -n "$h" ] && echo "$(date -u +%T) $(echo "$h" | head -3 | cut -c1-110 | tr '\n' '|')" >> /work/bench-ab/raw/monitor.txt; sleep 10; done
