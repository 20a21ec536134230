#!/usr/bin/env bash
# test_translate.sh QKV SOURCE_DIR — `qkv translate` on the tiny random MarianMT model of
# tools/gen_marian_fixtures.py (tests/fixtures/marian/tiny, with its tiny Marian tokenizer): the
# output text must equal what transformers' decode(generate(), skip_special_tokens=True) gave
# for each line (expect.translate.txt: the directory's generation config, beam 4;
# expect.translate_greedy12.txt: --beams 1 --max-length 12), from a file and from stdin, for any
# --batch (lines are sorted by length inside a window and written in input order) and thread
# count; --json gives one object per line; bad usage and bad input exit 2 with a message.
set -uo pipefail
qkv=$1 src=$2
fix=$src/tests/fixtures/marian
model=$fix/tiny
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0; checks=0
check() { checks=$((checks + 1)); if ! eval "$1"; then echo "FAIL: $2"; fail=$((fail + 1)); fi; }

first=$(head -n1 "$fix/expect.translate.txt")
"$qkv" translate --model "$model" "$fix/texts.txt" > "$tmp/a.txt"
check 'cmp -s "$tmp/a.txt" "$fix/expect.translate.txt"' "beam 4 output differs from transformers"
"$qkv" translate --model "$model" < "$fix/texts.txt" > "$tmp/b.txt"
check 'cmp -s "$tmp/b.txt" "$fix/expect.translate.txt"' "stdin (no FILE) differs"
"$qkv" translate --model "$model" - --batch 1 --threads 1 < "$fix/texts.txt" > "$tmp/c.txt"
check 'cmp -s "$tmp/c.txt" "$fix/expect.translate.txt"' "--batch 1 --threads 1 differs"
"$qkv" translate --model "$model" --batch 2 --threads 2 "$fix/texts.txt" > "$tmp/d.txt"
check 'cmp -s "$tmp/d.txt" "$fix/expect.translate.txt"' "--batch 2 (several windows) differs"
"$qkv" translate --model "$model" --beams 1 --max-length 12 --batch 4 "$fix/texts.txt" \
    > "$tmp/g.txt"
check 'cmp -s "$tmp/g.txt" "$fix/expect.translate_greedy12.txt"' "greedy output differs"
# --json: one object per input line, in order, the same text
"$qkv" translate --model "$model" --json --batch 3 "$fix/texts.txt" > "$tmp/j.txt"
check '[ "$(wc -l < "$tmp/j.txt")" = "$(wc -l < "$fix/texts.txt")" ]' "--json line count"
check '[ "$(sed -n 5p "$tmp/j.txt" | grep -o "\"line\": [0-9]*")" = "\"line\": 5" ]' \
    "--json lines out of order"
check 'head -n1 "$tmp/j.txt" | grep -qF "\"translation\": \"$first\""' "--json translation"
check 'grep -q "\"score\": -[0-9]" "$tmp/j.txt"' "--json lacks negative scores"
# streaming: with --batch 1 a line's translation comes back before the input ends
coproc TR { "$qkv" translate --model "$model" --batch 1; }
head -n1 "$fix/texts.txt" >&"${TR[1]}"
line=""
read -r -t 60 line <&"${TR[0]}"
check '[ "$line" = "$first" ]' "--batch 1 does not answer a line before the input ends"
exec {TR[1]}>&-
wait "$TR_PID"
# an empty input gives an empty output
: > "$tmp/empty.txt"
"$qkv" translate --model "$model" "$tmp/empty.txt" > "$tmp/e.txt"
check '[ $? -eq 0 ] && [ ! -s "$tmp/e.txt" ]' "empty input"
"$qkv" translate --help > "$tmp/help.txt"
check '[ $? -eq 0 ] && grep -q -- "--beams" "$tmp/help.txt"' "--help"

# errors: exit 2 and a message
expect2() { # ARGS... (stdin from $tmp/in)
    "$qkv" translate "$@" < "$tmp/in" > /dev/null 2> "$tmp/err"
    local rc=$?
    checks=$((checks + 1))
    if [ $rc -ne 2 ] || [ ! -s "$tmp/err" ]; then
        echo "FAIL: 'translate $*' exit $rc (want 2 and a message)"; fail=$((fail + 1))
    fi
}
echo "Hello" > "$tmp/in"
expect2
expect2 --model "$tmp/nonexistent"
expect2 --model "$src/tests/fixtures/models/gpt2_tiny"
expect2 --model "$model" --beams 0
expect2 --model "$model" --bogus
expect2 --model "$model" "$tmp"
expect2 --model "$model" "$tmp/nonexistent.txt"
expect2 --model "$model" --max-length 500
grep -q "max_length" "$tmp/err"; check '[ $? -eq 0 ]' "--max-length 500: message names max_length"
expect2 --model "$model" a.txt b.txt
# separate source and target vocabularies (separate_vocabs, target_vocab.json): as transformers
"$qkv" translate --model "$fix/sepvocab" "$fix/texts.txt" > "$tmp/sv.txt" 2>"$tmp/err"
check 'cmp -s "$tmp/sv.txt" "$fix/expect.sepvocab.translate.txt"' "sepvocab differs from transformers"
# ... and separate_vocabs without target_vocab.json: refused by name, not decoded with vocab.json
cp -r "$fix/sepvocab" "$tmp/sepvocab" && rm "$tmp/sepvocab/target_vocab.json"
expect2 --model "$tmp/sepvocab"
grep -q "target_vocab.json" "$tmp/err"; check '[ $? -eq 0 ]' "missing target_vocab.json: refused by name"
awk 'BEGIN { for (i = 0; i < 300; i++) printf "word%d ", i; print "" }' > "$tmp/in"
expect2 --model "$model"
grep -q "line 1" "$tmp/err"; check '[ $? -eq 0 ]' "a too long line: message names the line"
printf 'ok\nbad\0line\n' > "$tmp/in"
expect2 --model "$model"

echo "translate_cli: $checks checks, $fail failed"
[ $fail -eq 0 ]
