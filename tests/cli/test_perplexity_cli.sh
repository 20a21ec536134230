#!/usr/bin/env bash
# test_perplexity_cli.sh QKV SRC — `qkv perplexity` on a tiny GPT-2 that `qkv train` trains here:
#  - on the dataset's val split with the run's --seq, --batch and --eval-batches windows, its
#    mean NLL is the run's last val_loss (metrics.jsonl, 6 decimals): the same windows, the
#    same model, two implementations (the trainer's fused loss, this command's log-softmax);
#  - f32 as --dtype is the default bit for bit; bf16 is within 1% of f32's perplexity (the
#    issue's target; test_decoders_bf16 bounds the logits themselves); int8 within 3% (the
#    issue's int8 target);
#  - a text file: its windows cover every token (tokens = text tokens - 1);
#  - bad usage and bad input exit 2 with a message: no tokens source, both, --context past the
#    model's, a parallel or missing dataset, a text of one token, a bad --dtype / --split.
set -uo pipefail
qkv=$1; src=$2
tmp=$(mktemp -d /tmp/qkv_perplexity.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0; checks=0
check() { # check CONDITION DESCRIPTION
    checks=$((checks + 1))
    if ! eval "$1"; then echo "FAIL: $2"; fail=$((fail + 1)); fi
}
. "$src/tests/cli/tiny_runs.sh"

tiny_data "$qkv" "$src" "$tmp"
"$qkv" train --data "$tmp/data" --n-layer 2 --n-embd 32 --n-head 2 --seq 32 --batch 4 --steps 12 \
    --warmup 2 --lr 3e-3 --eval-every 6 --eval-batches 3 --threads 1 --out "$tmp/run" >/dev/null 2>&1
rc=$?
check '[[ $rc -eq 0 && -f $tmp/run/model/model.safetensors ]]' "train ($rc)"
cp "$tmp/tok/tokenizer.json" "$tmp/run/model/"
m=$tmp/run/model
want=$(grep '"val_loss"' "$tmp/run/metrics.jsonl" | tail -1 | sed 's/.*"val_loss": *\([0-9.]*\).*/\1/')

"$qkv" perplexity --model "$m" --data "$tmp/data" --context 32 --batch 4 --max-windows 12 --threads 1 \
    --json >"$tmp/f32.json" 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 0 ]]' "perplexity --data: exit $rc: $(cat "$tmp/err")"
got=$(sed 's/.*"nll":\([0-9.e+-]*\).*/\1/' "$tmp/f32.json")
check '[[ $(printf "%.6f" "$got") == "$want" ]]' "mean NLL $got is not the run's val_loss $want"
check 'grep -q "\"tokens\":384,\"windows\":12,\"context\":32,\"dtype\":\"f32\"" "$tmp/f32.json"' \
    "JSON fields: $(cat "$tmp/f32.json")"

"$qkv" perplexity --model "$m" --data "$tmp/data" --context 32 --batch 4 --max-windows 12 --threads 1 \
    --json --dtype f32 >"$tmp/f32b.json" 2>/dev/null
check '[[ $(cut -d, -f1-2 "$tmp/f32.json") == $(cut -d, -f1-2 "$tmp/f32b.json") ]]' "--dtype f32 is not the default"
"$qkv" perplexity --model "$m" --data "$tmp/data" --context 32 --batch 4 --max-windows 12 --threads 1 \
    --json --dtype bf16 >"$tmp/bf16.json" 2>/dev/null; rc=$?
check '[[ $rc -eq 0 ]] && grep -q "\"dtype\":\"bf16\"" "$tmp/bf16.json"' "bf16 run: $(cat "$tmp/bf16.json")"
p32=$(sed 's/.*"perplexity":\([0-9.e+-]*\).*/\1/' "$tmp/f32.json")
p16=$(sed 's/.*"perplexity":\([0-9.e+-]*\).*/\1/' "$tmp/bf16.json")
check 'awk -v a="$p32" -v b="$p16" "BEGIN { d = (b - a) / a; exit !(d < 0.01 && d > -0.01) }"' \
    "bf16 perplexity $p16 is not within 1% of f32's $p32"
"$qkv" perplexity --model "$m" --data "$tmp/data" --context 32 --batch 4 --max-windows 12 --threads 1 \
    --json --dtype int8 >"$tmp/int8.json" 2>/dev/null; rc=$?
check '[[ $rc -eq 0 ]] && grep -q "\"dtype\":\"int8\"" "$tmp/int8.json"' "int8 run: $(cat "$tmp/int8.json")"
p8=$(sed 's/.*"perplexity":\([0-9.e+-]*\).*/\1/' "$tmp/int8.json")
check 'awk -v a="$p32" -v b="$p8" "BEGIN { d = (b - a) / a; exit !(d < 0.03 && d > -0.03) }"' \
    "int8 perplexity $p8 is not within 3% of f32's $p32"
echo "perplexity f32 $p32, bf16 $p16, int8 $p8"

# a text: every token after the first is predicted once
text='the cat sat on the mat and the dog sat on the log'
printf '%s\n' "$text" >"$tmp/t.txt"
n=$("$qkv" tokenize --model "$tmp/tok" --no-special --json "$text" 2>/dev/null |
    sed 's/.*"ids":\[\([^]]*\)\].*/\1/' | tr ',' '\n' | wc -l)
"$qkv" perplexity --model "$m" --context 8 --json "$tmp/t.txt" >"$tmp/t.json" 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 0 ]]' "perplexity FILE: exit $rc: $(cat "$tmp/err")"
check 'grep -q "\"tokens\":$((n - 1)),\"windows\":$(((n - 1 + 7) / 8))," "$tmp/t.json"' \
    "text of $n tokens: $(cat "$tmp/t.json")"
"$qkv" perplexity --model "$m" --context 8 - <"$tmp/t.txt" >"$tmp/s.txt" 2>/dev/null
check 'grep -q "^perplexity [0-9.]* (mean NLL" "$tmp/s.txt"' "stdin, text output: $(cat "$tmp/s.txt")"

expect2() { # expect2 MESSAGE-PART ARGS...
    local part=$1; shift
    "$qkv" perplexity "$@" >/dev/null 2>"$tmp/err"; local rc=$?
    check '[[ $rc -eq 2 ]] && grep -q -- "$part" "$tmp/err"' "perplexity $*: exit $rc, expected 2 and '$part': $(cat "$tmp/err")"
}
printf 'a' >"$tmp/one.txt"
expect2 "give the tokens" --model "$m"
expect2 "give one of them" --model "$m" --data "$tmp/data" "$tmp/t.txt"
expect2 "longer than the model's context" --model "$m" --data "$tmp/data" --context 33
expect2 "2 at least" --model "$m" "$tmp/one.txt"
expect2 "no-such" --model "$m" --data "$tmp/no-such"
expect2 "--dtype is f32, bf16, f16 or int8" --model "$m" --dtype int4 "$tmp/t.txt"
expect2 "--split is val or train" --model "$m" --data "$tmp/data" --split test
expect2 "--model DIR is required" "$tmp/t.txt"

echo "perplexity_cli: $((checks - fail)) passed, $fail failed"
[[ $fail -eq 0 ]]
