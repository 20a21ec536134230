#!/usr/bin/env bash
# test_cli.sh QKV — the command line's contract: help, version, exit codes, info output.
set -uo pipefail
qkv=$1
fail=0; checks=0
expect() { # expect CODE DESCRIPTION -- command...
    local want=$1 what=$2; shift 3
    checks=$((checks + 1))
    "$@" >/tmp/qkv_cli_out.$$ 2>&1
    local got=$?
    if [[ $got -ne $want ]]; then
        echo "FAIL: $what: exit $got, expected $want"; cat /tmp/qkv_cli_out.$$; fail=$((fail + 1))
    fi
}
contains() { # contains TEXT DESCRIPTION (searches the last command's output)
    checks=$((checks + 1))
    if ! grep -q -- "$1" /tmp/qkv_cli_out.$$; then
        echo "FAIL: $2: output lacks '$1'"; cat /tmp/qkv_cli_out.$$; fail=$((fail + 1))
    fi
}
expect 0 "--help" -- "$qkv" --help;           contains "Usage: qkv" "--help"; contains "Exit codes" "--help"
expect 0 "--version" -- "$qkv" --version;     contains "qkv 0." "--version"
expect 2 "no arguments" -- "$qkv"
expect 2 "unknown command" -- "$qkv" frobnicate; contains "unknown command" "unknown command"
expect 0 "help info" -- "$qkv" help info;     contains "Usage: qkv info" "help info"
expect 0 "info --help" -- "$qkv" info --help; contains "Usage: qkv info" "info --help"
expect 0 "info" -- "$qkv" info;               contains "arch:" "info"; contains "threads:" "info"
expect 2 "info bad option" -- "$qkv" info --bogus
expect 0 "info --json" -- "$qkv" info --json; contains '"arch_active"' "info --json"
expect 0 "QKV_ARCH=scalar info" -- env QKV_ARCH=scalar "$qkv" info --json
contains '"arch_active":"scalar"' "QKV_ARCH=scalar"
expect 0 "QKV_ARCH=bogus info" -- env QKV_ARCH=bogus "$qkv" info; contains "ignored" "QKV_ARCH=bogus"
expect 0 "QKV_NUM_THREADS=3 info" -- env QKV_NUM_THREADS=3 "$qkv" info --json
contains '"threads":3' "QKV_NUM_THREADS"
expect 0 "demo" -- "$qkv" demo --seq 64 --threads 2; contains "sum 1.000" "demo"; contains "GFLOP/s" "demo"
expect 2 "demo bad seq" -- "$qkv" demo --seq 0
expect 2 "demo bad option" -- "$qkv" demo --nope
expect 0 "bench --help" -- "$qkv" bench --help; contains "qkv bench attention" "bench --help"
expect 0 "bench attention" -- "$qkv" bench attention --shape 1,64,2,16 --reps 1 --threads 1
contains '"bench":"attention"' "bench attention JSON"; contains '"fwd_peak_pct"' "bench attention peak"
expect 0 "bench train" -- "$qkv" bench train --layers 1 --shape 1x8 --reps 1 --threads 1
contains '"bench":"train"' "bench train JSON"
expect 0 "bench attention dropout" -- "$qkv" bench attention --shape 1,64,2,16 --reps 1 --threads 1 --dropout 0.1
contains '"dropout":0.1' "bench attention --dropout JSON"
expect 2 "bench attention bad dropout" -- "$qkv" bench attention --dropout 1
src=$(cd "$(dirname "$0")/../.." && pwd)
expect 0 "bench finetune" -- "$qkv" bench finetune --model "$src/tests/fixtures/cls/single" --batch 2 --tokens 8 --reps 1 --threads 1
contains '"bench":"finetune"' "bench finetune JSON"
expect 2 "bench finetune missing model" -- "$qkv" bench finetune --model /nonexistent --reps 1
expect 2 "bench unknown" -- "$qkv" bench bogus
expect 2 "bench bad shape" -- "$qkv" bench attention --shape 1,2,3
expect 2 "bench generate without --model" -- "$qkv" bench generate
expect 2 "bench generate missing model" -- "$qkv" bench generate --model /nonexistent
rm -f /tmp/qkv_cli_out.$$
echo "cli: $((checks - fail)) passed, $fail failed"
[[ $fail -eq 0 ]]
