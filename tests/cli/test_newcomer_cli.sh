#!/usr/bin/env bash
# test_newcomer_cli.sh QKV SOURCE_DIR JSON_VALID — what a newcomer expects (issue 14,
# point 8), as Hugging Face users know it: qkv generate stops at the model's EOS ids
# (generation_config.json, else config.json; --ignore-eos goes on) and prints text whenever the
# directory has a tokenizer (--ids-out for ids); refusals name the flags (--context, --slide),
# not the API's fields; qkv train --init records the real model shape in RUN/config.json;
# tokenize --decode --keep-special; the default model is found next to the installation;
# qkv bench tokenize; tokenize --truncation only_first over a file names the line and stops or
# skips (--on-error). Expected values are computed by qkv itself (ids from --ignore-eos runs,
# text from --decode), never typed in.
set -uo pipefail
qkv=$(realpath "$1") src=$(realpath "$2") jv=$3
tmp=$(mktemp -d "${TMPDIR:-/tmp}/qkv_newcomer_cli.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
fail=0; checks=0
check() { checks=$((checks + 1)); if ! eval "$1"; then echo "FAIL: $2"; fail=$((fail + 1)); fi; }
run() { "$qkv" "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?; }
err() { head -c 300 "$tmp/err"; }
fx=$src/tests/fixtures

# ---- generate stops at the model's EOS by default
cp -r "$fx/models/gpt2_tiny" "$tmp/g" # no tokenizer: ids are printed
cp -r "$fx/models/gpt2_tiny" "$tmp/g2"
sed -i '/"eos_token_id"/d' "$tmp/g2/config.json" # no EOS at all: 12 tokens
"$qkv" generate --model "$tmp/g2" --ids "1 2 3 4" --max-new-tokens 12 >"$tmp/all" 2>/dev/null
read -r -a all <"$tmp/all"
eos=${all[2]} # the third new token becomes the EOS id
printf '{"eos_token_id": %s}\n' "$eos" > "$tmp/g/generation_config.json"
run generate --model "$tmp/g" --ids "1 2 3 4" --max-new-tokens 12
read -r -a got <"$tmp/out"
check '[[ $rc -eq 0 && ${#all[@]} -eq 12 && "${got[*]}" == "${all[*]:0:3}" ]]' \
    "stops at generation_config.json's eos_token_id $eos: '${got[*]}' vs '${all[*]}' ($rc: $(err))"
run generate --model "$tmp/g" --ids "1 2 3 4" --max-new-tokens 12 --ignore-eos
check '[[ $rc -eq 0 && "$(cat "$tmp/out")" == "$(cat "$tmp/all")" ]]' "--ignore-eos goes on ($rc: $(err))"
rm "$tmp/g/generation_config.json"
sed -i "s/\"eos_token_id\": [0-9]*/\"eos_token_id\": [${all[1]}, 9999]/; s/\"vocab_size\": 384/\"vocab_size\": 384/" "$tmp/g/config.json"
sed -i "s/, 9999\]/, ${all[5]}]/" "$tmp/g/config.json"
run generate --model "$tmp/g" --ids "1 2 3 4" --max-new-tokens 12
read -r -a got <"$tmp/out"
check '[[ $rc -eq 0 && "${got[*]}" == "${all[*]:0:2}" ]]' "config.json's eos_token_id list: stops at the first met ('${got[*]}', $rc: $(err))"

# ---- text whenever the directory has a tokenizer; --ids-out for ids
"$qkv" tokenizer train --vocab-size 384 --out "$tmp/tok" "$src/README.md" "$src"/docs/*.md >/dev/null 2>&1
cp -r "$fx/models/gpt2_tiny" "$tmp/t"
cp "$tmp/tok/tokenizer.json" "$tmp/t/"
run generate --model "$tmp/t" --ids "1 2 3 4" --max-new-tokens 6 --ignore-eos --ids-out
cp "$tmp/out" "$tmp/ids"
"$qkv" tokenize --model "$tmp/t" --decode "$(cat "$tmp/ids")" >"$tmp/want" 2>/dev/null
run generate --model "$tmp/t" --ids "1 2 3 4" --max-new-tokens 6 --ignore-eos
check '[[ $rc -eq 0 ]] && [[ $(wc -w <"$tmp/ids") -eq 6 ]] && cmp -s "$tmp/out" "$tmp/want"' \
    "an --ids prompt prints text with the directory's tokenizer, --ids-out the ids ($rc: $(err); $(od -c "$tmp/out" | head -2))"
run generate --model "$tmp/t" --ids "1 2 3 4" --max-new-tokens 6 --ignore-eos --json
cp "$tmp/out" "$tmp/gen.json"
check '[[ $rc -eq 0 ]] && "$jv" "$tmp/gen.json" && grep -q "\"text\":" "$tmp/gen.json"' "--json has the text ($rc)"

# ---- refusals in the CLI's words
run generate --model "$tmp/g" --ids "1 2 3" --max-new-tokens 200 --context 8
check '[[ $rc -eq 2 ]] && grep -q -- "--context" "$tmp/err" && grep -q -- "--slide" "$tmp/err" && ! grep -q "QKV_CONTEXT\|qkv_lm_" "$tmp/err"' \
    "a context too small names --context and --slide ($rc: $(err))"
run generate --model "$tmp/g" --ids "1 2 3" --context 100000
check '[[ $rc -eq 2 ]] && grep -q -- "--context 100000" "$tmp/err" && ! grep -q "qkv_lm_" "$tmp/err"' "--context past the model's ($rc: $(err))"
run generate --model "$tmp/g" --ids "1 2 3" --top-p 2
check '[[ $rc -eq 2 ]] && grep -q -- "--top-p" "$tmp/err" && ! grep -q "top_p" "$tmp/err"' "--top-p 2 ($rc: $(err))"
run generate --model "$tmp/g" --ids "1 2 3" --stop-token 5000
check '[[ $rc -eq 2 ]] && grep -q -- "--stop-token" "$tmp/err" && ! grep -q "stop_tokens" "$tmp/err"' "--stop-token past the vocabulary ($rc: $(err))"

# ---- qkv train --init: RUN/config.json records the model that is trained
"$qkv" data prepare --tokenizer "$tmp/tok" --val-fraction 0.25 --split-on "" --out "$tmp/data" \
    "$src/README.md" >/dev/null 2>&1
run train --init "$fx/models/gpt2_tiny" --data "$tmp/data" --seq 16 --batch 2 --steps 1 \
    --eval-batches 1 --threads 1 --no-tensorboard --out "$tmp/run"
get() { sed -n "s/.*\"$1\": *\([0-9]*\).*/\1/p" "$fx/models/gpt2_tiny/config.json"; }
L=$(get n_layer) C=$(get n_embd) H=$(get n_head) P=$(get n_positions)
check '[[ $rc -eq 0 && -n $L$C$H$P ]] && grep -q "\"n-layer\": $L," "$tmp/run/config.json" && grep -q "\"n-embd\": $C," "$tmp/run/config.json" && grep -q "\"n-head\": $H," "$tmp/run/config.json" && grep -q "\"n-positions\": $P," "$tmp/run/config.json" && grep -q "\"arch\": \"gpt2\"" "$tmp/run/config.json"' \
    "--init: config.json records $L layers, n_embd $C, $H heads, $P positions ($rc: $(err); $(tr -d '\n' <"$tmp/run/config.json" 2>/dev/null | head -c 300))"

# ---- tokenize --decode --keep-special
minilm=$fx/tokenizer/minilm/tokenizer.json
ids=$("$qkv" tokenize --model "$minilm" --ids-only --pad-to 0 "hello world")
run tokenize --model "$minilm" --decode --keep-special "$ids"
check '[[ $rc -eq 0 ]] && grep -q "^\[CLS\] hello world \[SEP\]$" "$tmp/out"' "--keep-special keeps [CLS] / [SEP] ($rc: $(cat "$tmp/out"))"
run tokenize --model "$minilm" --decode "$ids"
check '[[ $rc -eq 0 ]] && grep -qx "hello world" "$tmp/out"' "without it they go ($(cat "$tmp/out"))"

# ---- the default model is found next to the installation, from any directory
mkdir -p "$tmp/inst/bin" "$tmp/inst/share/qkv/models" "$tmp/elsewhere"
cp "$qkv" "$tmp/inst/bin/qkv"
cp -r "$fx/cls/single" "$tmp/inst/share/qkv/models/all-MiniLM-L6-v2"
(cd "$tmp/elsewhere" && echo "good movie" | env -u QKV_MODEL "$tmp/inst/bin/qkv" embed >"$tmp/out" 2>"$tmp/err"); rc=$?
(cd "$tmp/elsewhere" && echo "good movie" | "$qkv" embed --model "$fx/cls/single" >"$tmp/want" 2>/dev/null)
check '[[ $rc -eq 0 ]] && cmp -s "$tmp/out" "$tmp/want"' "default model from <prefix>/share/qkv/models ($rc: $(err))"
rm -rf "$tmp/inst/share"
(cd "$tmp/elsewhere" && echo "good movie" | env -u QKV_MODEL "$tmp/inst/bin/qkv" embed >"$tmp/out" 2>"$tmp/err"); rc=$?
check '[[ $rc -eq 2 ]] && grep -q "QKV_MODEL" "$tmp/err" && grep -q "share/qkv/models" "$tmp/err" && grep -q "models/all-MiniLM-L6-v2" "$tmp/err"' \
    "no default model: the message lists where it looked ($rc: $(err))"

# ---- qkv bench tokenize
printf 'one line\nand another one\nthird\n' > "$tmp/lines.txt"
run bench tokenize --model "$minilm" --file "$tmp/lines.txt" --reps 1
cp "$tmp/out" "$tmp/bench.jsonl"
want_tokens=$("$qkv" tokenize --model "$minilm" --file "$tmp/lines.txt" --ids-only --max-length 0 --pad-to 0 | wc -w)
check '[[ $rc -eq 0 ]] && "$jv" --lines "$tmp/bench.jsonl" && grep -q "\"bench\":\"tokenize\"" "$tmp/bench.jsonl" && grep -q "\"lines\":3,\"tokens\":$want_tokens," "$tmp/bench.jsonl"' \
    "bench tokenize: 3 lines, $want_tokens tokens ($rc: $(err); $(cat "$tmp/bench.jsonl"))"

# ---- truncation over a file that some line cannot meet: the line is named; stop or skip
# only_first with a pair that leaves the first sequence no room fails on every line, from 1;
# only_second fails on the line whose first sequence alone is too long (line 2)
printf 'short\nthis line is much too long for the budget it is given here\nok\n' > "$tmp/t.txt"
run tokenize --model "$minilm" --file "$tmp/t.txt" --pair "a b c d e f" --max-length 8 \
    --truncation only_first --ids-only
check '[[ $rc -eq 2 && ! -s $tmp/out ]] && grep -q "line 1" "$tmp/err" && grep -q -- "--truncation only_first" "$tmp/err"' \
    "only_first: stops at line 1, named with the flags ($rc: $(err))"
tf=(--model "$minilm" --file "$tmp/t.txt" --pair "a b" --max-length 8 --pad-to 0
    --truncation only_second --ids-only)
run tokenize "${tf[@]}"
check '[[ $rc -eq 2 && $(wc -l <"$tmp/out") -eq 1 ]] && grep -q "line 2" "$tmp/err"' "only_second: stops at line 2, named ($rc: $(err))"
run tokenize "${tf[@]}" --on-error skip
check '[[ $rc -eq 0 && $(wc -l <"$tmp/out") -eq 3 && -z $(sed -n 2p "$tmp/out") && -n $(sed -n 3p "$tmp/out") ]] && grep -q "line 2" "$tmp/err"' \
    "--on-error skip: line 2 named and skipped, line 3 done ($rc: $(err))"
run tokenize "${tf[@]}" --on-error skip --json
cp "$tmp/out" "$tmp/skip.jsonl"
check '[[ $rc -eq 0 && $(sed -n 2p "$tmp/skip.jsonl") == null ]] && "$jv" --lines "$tmp/skip.jsonl"' "--on-error skip --json: null for line 2 ($rc)"

echo "newcomer_cli: $((checks - fail)) passed, $fail failed"
[[ $fail -eq 0 ]]
