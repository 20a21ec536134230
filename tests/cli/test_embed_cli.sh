#!/usr/bin/env bash
# test_embed_cli.sh QKV MODEL_DIR SOURCE_DIR — `qkv embed` and `qkv search` end to end on the
# real model: output shapes and formats, index reuse and invalidation, exit codes. Skipped (77)
# when the model is not installed (scripts/fetch-model.sh).
set -uo pipefail
qkv=$1 model=$2 src=$3
if [[ ! -f "$model/model.safetensors" ]]; then
    echo "SKIP: no model at $model (scripts/fetch-model.sh installs it)"; exit 77
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0; checks=0
check() { checks=$((checks + 1)); if ! eval "$1"; then echo "FAIL: $2"; fail=$((fail + 1)); fi; }

printf 'the first line\nsecond line\n\nfourth, after an empty one\n' > "$tmp/in.txt"
"$qkv" embed --model "$model" "$tmp/in.txt" > "$tmp/out.jsonl" 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 0 ]]' "embed exit code $rc: $(cat "$tmp/err")"
check '[[ $(wc -l < "$tmp/out.jsonl") -eq 4 ]]' "embed: one line per input line"
check '[[ $(head -1 "$tmp/out.jsonl" | tr -cd , | wc -c) -eq 383 ]]' "embed: 384 values per line"
check 'head -1 "$tmp/out.jsonl" | grep -q "^\[-\?[0-9]"' "embed: JSON array"
# stdin gives the same numbers as a file
head -2 "$tmp/in.txt" | "$qkv" embed --model "$model" - > "$tmp/stdin.jsonl" 2>/dev/null
check 'cmp -s <(head -2 "$tmp/out.jsonl") "$tmp/stdin.jsonl"' "embed: stdin equals file"
# 1 thread and the default (all CPUs) give the same bits: no sum depends on the thread count
"$qkv" embed --model "$model" --threads 1 "$tmp/in.txt" > "$tmp/t1.jsonl" 2>/dev/null
check 'cmp -s "$tmp/t1.jsonl" "$tmp/out.jsonl"' "embed: 1 thread gives the same bits as the default"
"$qkv" embed --model "$model" --format safetensors --out "$tmp/e.safetensors" "$tmp/in.txt" 2>/dev/null
check 'grep -q "embeddings .*F32 .*\[4, 384\]" <<<"$("$qkv" inspect "$tmp/e.safetensors")"' "embed: safetensors output"
"$qkv" embed --model "$model" --format npy --out "$tmp/e.npy" "$tmp/in.txt" 2>/dev/null
check '[[ $(stat -c %s "$tmp/e.npy") -eq $((128 + 4 * 384 * 4)) ]]' "embed: npy size"
check 'head -c 6 "$tmp/e.npy" | grep -q NUMPY' "embed: npy magic"
"$qkv" embed --model "$model" --format npy "$tmp/in.txt" >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "embed: npy without --out is a usage error ($rc)"
"$qkv" embed --model "$tmp/nope" "$tmp/in.txt" >/dev/null 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 2 ]] && grep -q fetch-model "$tmp/err"' "embed: missing model exit 2 with a hint ($rc)"
"$qkv" embed --model "$model" "$tmp/missing.txt" >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "embed: missing input exit 2 ($rc)"

cp "$src/data/corpus.txt" "$tmp/corpus.txt"
"$qkv" search --model "$model" --corpus "$tmp/corpus.txt" --top-k 2 "tips for cooking pasta" \
    > "$tmp/s1" 2>"$tmp/s1.err"; rc=$?
check '[[ $rc -eq 0 ]]' "search exit code $rc"
check 'grep -q "1\..*pasta" "$tmp/s1"' "search: the pasta line ranks first"
check 'grep -q "index saved" "$tmp/s1.err"' "search: index saved"
"$qkv" search --model "$model" --corpus "$tmp/corpus.txt" --top-k 2 --json "a pet sleeping" \
    > "$tmp/s2" 2>"$tmp/s2.err"
check 'grep -q "using the index" "$tmp/s2.err"' "search: index reused"
check 'grep -q "\"rank\":1,\"line\":21," "$tmp/s2"' "search: JSON with the cat line first"
echo "A brand new line about pasta sauce." >> "$tmp/corpus.txt"
"$qkv" search --model "$model" --corpus "$tmp/corpus.txt" "pasta" > /dev/null 2>"$tmp/s3.err"
check 'grep -q "embedded 121 lines" "$tmp/s3.err"' "search: a changed corpus is re-embedded"
echo "tips for cooking pasta" | "$qkv" search --model "$model" --corpus "$tmp/corpus.txt" --top-k 1 > "$tmp/s4" 2>/dev/null
check 'grep -q "Query: tips for cooking pasta" "$tmp/s4"' "search: queries from stdin"
"$qkv" search --model "$model" "x" > /dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "search: --corpus required ($rc)"
echo "embed_cli: $((checks - fail)) passed, $fail failed"
[[ $fail -eq 0 ]]
