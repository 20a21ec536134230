#!/usr/bin/env bash
# test_translate_t5.sh QKV SOURCE_DIR — `qkv translate` on the tiny random T5 v1.1 model of
# tools/gen_t5_fixtures.py (tests/fixtures/t5/v11, tokenizer.json): the output must equal
# transformers' decode(generate(prefix + line), skip_special_tokens=True) — with the prefix of
# config.json's task_specific_params by default (expect.translate.txt), and with --prefix ''
# --beams 3 (expect.translate_noprefix_beam3.txt); --prefix TEXT given explicitly; a directory
# holding the same model with spiece.model instead of tokenizer.json; hostile configs exit 2.
set -uo pipefail
qkv=$1 src=$2
fix=$src/tests/fixtures/t5
model=$fix/v11
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0; checks=0
check() { checks=$((checks + 1)); if ! eval "$1"; then echo "FAIL: $2"; fail=$((fail + 1)); fi; }

"$qkv" translate --model "$model" "$fix/texts.txt" > "$tmp/a.txt"
check 'cmp -s "$tmp/a.txt" "$fix/expect.translate.txt"' "default prefix: output differs"
"$qkv" translate --model "$model" --batch 2 --threads 2 \
    --prefix "translate English to German: " < "$fix/texts.txt" > "$tmp/b.txt"
check 'cmp -s "$tmp/b.txt" "$fix/expect.translate.txt"' "explicit --prefix, --batch 2 differs"
"$qkv" translate --model "$model" --prefix '' --beams 3 "$fix/texts.txt" > "$tmp/c.txt"
check 'cmp -s "$tmp/c.txt" "$fix/expect.translate_noprefix_beam3.txt"' "--prefix '' --beams 3"
check '! cmp -s "$tmp/a.txt" "$tmp/c.txt"' "the prefix changes nothing (the test cannot fail)"
# spiece.model instead of tokenizer.json
mkdir "$tmp/sp"
cp "$model/config.json" "$model/generation_config.json" "$model/model.safetensors" "$tmp/sp/"
cp "$fix/spiece/spiece.model" "$tmp/sp/"
"$qkv" translate --model "$tmp/sp" "$fix/texts.txt" > "$tmp/d.txt"
check 'cmp -s "$tmp/d.txt" "$fix/expect.translate.txt"' "spiece.model directory differs"
"$qkv" translate --help > "$tmp/help.txt"
check 'grep -q -- "--prefix" "$tmp/help.txt" && grep -q "task_specific_params" "$tmp/help.txt"' \
    "--help tells about --prefix and its default"
# hostile configs: exit 2 with a message naming the field
echo "Hello" > "$tmp/in"
for edit in 's/"num_heads": 4/"num_heads": 0/' 's/"d_kv": 16/"d_kv": 0/' \
    's/"relative_attention_num_buckets": 10/"relative_attention_num_buckets": 100000000/' \
    's/"d_ff": 40/"d_ff": 41/'; do
    rm -rf "$tmp/bad"; mkdir "$tmp/bad"
    cp "$model"/* "$tmp/bad/"
    sed -i "$edit" "$tmp/bad/config.json"
    "$qkv" translate --model "$tmp/bad" < "$tmp/in" > /dev/null 2> "$tmp/err"
    rc=$?
    check '[ $rc -eq 2 ] && [ -s "$tmp/err" ]' "config edit '$edit': exit $rc (want 2)"
done
echo "translate_t5_cli: $checks checks, $fail failed"
[ "$fail" -eq 0 ]
