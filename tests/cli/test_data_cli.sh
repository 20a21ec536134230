#!/usr/bin/env bash
# test_data_cli.sh QKV SOURCE_DIR — `qkv data prepare` and `qkv data info`: help, a prepared
# dataset with its summary, progress line and files, info on it, re-preparing with a seed, and
# exit code 2 with a clear message for usage errors, missing inputs and a corrupted shard.
set -uo pipefail
qkv=$1
fix=$2/tests/fixtures/tokenizer
out=$(mktemp); tmp=$(mktemp -d)
trap 'rm -rf "$tmp" "$out"' EXIT
fail=0; checks=0
expect() { # expect CODE DESCRIPTION -- command...
    local want=$1 what=$2; shift 3
    checks=$((checks + 1))
    "$@" >"$out" 2>&1
    local got=$?
    if [[ $got -ne $want ]]; then
        echo "FAIL: $what: exit $got, expected $want"; cat "$out"; fail=$((fail + 1))
    fi
}
contains() { # contains TEXT DESCRIPTION (searches the last command's output)
    checks=$((checks + 1))
    if ! grep -q -F -- "$1" "$out"; then
        echo "FAIL: $2: output lacks '$1'"; cat "$out"; fail=$((fail + 1))
    fi
}
lacks() { # lacks TEXT DESCRIPTION
    checks=$((checks + 1))
    if grep -q -F -- "$1" "$out"; then
        echo "FAIL: $2: output has '$1'"; cat "$out"; fail=$((fail + 1))
    fi
}

expect 0 "data --help" -- "$qkv" data --help
contains "Usage: qkv data prepare --tokenizer PATH --out DIR" "help"; contains "--split-on LINE" "help"
contains "qkv data info DIR" "help"; contains "--val-fraction" "help"
expect 0 "help data" -- "$qkv" help data
expect 0 "prepare --help" -- "$qkv" data prepare --help
contains "--shard-tokens" "prepare help"
expect 0 "listed" -- "$qkv" --help; contains "data" "command list"

printf 'First fortune.\n%%\nSecond\nfortune.\n%%\nThird one.\n%%\nFourth, the last.\n' > "$tmp/f.txt"
printf 'A second file, one more document.\n' > "$tmp/g.txt"
expect 0 "prepare" -- "$qkv" data prepare --tokenizer "$fix/bpe" --split-on % --val-fraction 0.3 \
    --shard-tokens 5 --seed 7 --progress --out "$tmp/ds" "$tmp/f.txt" "$tmp/g.txt"
contains "wrote $tmp/ds: train" "summary"; contains "tokens/s" "rate"; contains "100.0%" "progress line"
checks=$((checks + 1))
docs=$(sed -n 's/.*train \([0-9]*\) documents.*val \([0-9]*\) documents.*/\1 \2/p' "$out")
read -r dtrain dval <<<"$docs"
if [[ -z $docs || $((dtrain + dval)) -ne 5 || $dval -lt 1 || $dtrain -lt 1 ]]; then
    echo "FAIL: 5 documents in both splits, got '$docs'"; cat "$out"; fail=$((fail + 1)); fi
checks=$((checks + 1))
if [[ ! -f $tmp/ds/meta.json || ! -f $tmp/ds/train_00000.bin || ! -f $tmp/ds/val_00000.bin ]] ||
   ls "$tmp/ds" | grep -q tmp; then
    echo "FAIL: dataset files"; ls -l "$tmp/ds"; fail=$((fail + 1)); fi
checks=$((checks + 1))
if [[ $(head -c 8 "$tmp/ds/train_00000.bin") != QKVTOKS1 ]]; then
    echo "FAIL: shard magic"; fail=$((fail + 1)); fi

expect 0 "info" -- "$qkv" data info "$tmp/ds"
contains '"format": "qkv-tokens"' "info meta"; contains '"seed": "7"' "info seed"
contains "vocab_size: 5000" "info vocab"; contains "train: " "info train"; contains "val: " "info val"
contains "every shard checked" "info validated"

# the same seed gives the same files; no progress line unless asked (stderr is not a tty)
expect 0 "prepare again" -- "$qkv" data prepare --tokenizer "$fix/bpe/tokenizer.json" --split-on % \
    --val-fraction 0.3 --shard-tokens 5 --seed 7 --out "$tmp/ds2" "$tmp/f.txt" "$tmp/g.txt"
lacks "100.0%" "no progress without --progress"
checks=$((checks + 1))
for f in "$tmp"/ds/*.bin; do
    cmp -s "$f" "$tmp/ds2/$(basename "$f")" || { echo "FAIL: $f differs on a re-run"; fail=$((fail + 1)); }
done
expect 0 "whole files" -- "$qkv" data prepare --tokenizer "$fix/bpe" --val-fraction 0 --out "$tmp/ds3" \
    "$tmp/f.txt" "$tmp/g.txt"
contains "train 2 documents" "one document per file"; contains "val 0 documents" "no validation"
expect 0 "info empty val" -- "$qkv" data info "$tmp/ds3"; contains "val: 0 tokens" "empty val split"

# usage errors: exit 2
expect 2 "no subcommand" -- "$qkv" data
expect 2 "unknown subcommand" -- "$qkv" data frobnicate; contains "unknown subcommand" "message"
expect 2 "no tokenizer" -- "$qkv" data prepare --out "$tmp/x" "$tmp/f.txt"; contains "--tokenizer" "message"
expect 2 "no out" -- "$qkv" data prepare --tokenizer "$fix/bpe" "$tmp/f.txt"
expect 2 "no files" -- "$qkv" data prepare --tokenizer "$fix/bpe" --out "$tmp/x"
expect 2 "bad fraction" -- "$qkv" data prepare --tokenizer "$fix/bpe" --val-fraction 2 --out "$tmp/x" "$tmp/f.txt"
expect 2 "bad fraction text" -- "$qkv" data prepare --tokenizer "$fix/bpe" --val-fraction abc --out "$tmp/x" "$tmp/f.txt"
expect 2 "bad shard tokens" -- "$qkv" data prepare --tokenizer "$fix/bpe" --shard-tokens 0 --out "$tmp/x" "$tmp/f.txt"
expect 2 "bad seed" -- "$qkv" data prepare --tokenizer "$fix/bpe" --seed -1 --out "$tmp/x" "$tmp/f.txt"
expect 2 "unknown option" -- "$qkv" data prepare --tokenizer "$fix/bpe" --bogus --out "$tmp/x" "$tmp/f.txt"
expect 2 "missing file" -- "$qkv" data prepare --tokenizer "$fix/bpe" --out "$tmp/x" "$tmp/none.txt"
contains "none.txt" "missing file named"
expect 2 "missing tokenizer" -- "$qkv" data prepare --tokenizer /nonexistent --out "$tmp/x" "$tmp/f.txt"
expect 2 "info usage" -- "$qkv" data info
expect 2 "info not a dataset" -- "$qkv" data info "$tmp"; contains "meta.json" "message"
printf 'XXXXXXXX' | dd of="$tmp/ds/train_00000.bin" bs=1 seek=0 conv=notrunc 2>/dev/null
expect 2 "info corrupted shard" -- "$qkv" data info "$tmp/ds"
contains "train_00000.bin" "corrupted shard named"; contains "malformed" "status text"

echo "data_cli: $((checks - fail)) passed, $fail failed"
[[ $fail -eq 0 ]]
