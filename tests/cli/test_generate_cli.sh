#!/usr/bin/env bash
# test_generate_cli.sh QKV SOURCE_DIR — `qkv generate` on the tiny GPT-2 / Llama fixtures
# (token ids: the fixtures have no tokenizer): greedy output is deterministic, seeds reproduce,
# stop tokens and context overflow behave, options are validated, exit codes. (Equality with
# Hugging Face generate() is tested through the API in tests/test_lm_generate.c.)
set -uo pipefail
qkv=$1 src=$2
fx=$src/tests/fixtures/models
fail=0; checks=0
check() { checks=$((checks + 1)); if ! eval "$1"; then echo "FAIL: $2"; fail=$((fail + 1)); fi; }

out=$("$qkv" generate --model "$fx/gpt2_tiny" --ids "1 2 3 4" --max-new-tokens 12 2>/dev/null); rc=$?
check '[[ $rc -eq 0 ]]' "generate exit code $rc"
check '[[ $(echo "$out" | wc -w) -eq 12 ]]' "12 new ids: '$out'"
again=$("$qkv" generate --model "$fx/gpt2_tiny" --ids "1 2 3 4" --max-new-tokens 12 --threads 1 2>/dev/null)
check '[[ "$out" == "$again" ]]' "greedy is deterministic across thread counts"
s1=$("$qkv" generate --model "$fx/llama_tiny" --ids "5 6 7" --max-new-tokens 16 --temperature 0.9 --top-p 0.9 --seed 42 2>/dev/null)
s2=$("$qkv" generate --model "$fx/llama_tiny" --ids "5 6 7" --max-new-tokens 16 --temperature 0.9 --top-p 0.9 --seed 42 2>/dev/null)
s3=$("$qkv" generate --model "$fx/llama_tiny" --ids "5 6 7" --max-new-tokens 16 --temperature 0.9 --top-p 0.9 --seed 43 2>/dev/null)
check '[[ "$s1" == "$s2" ]]' "same seed, same tokens"
check '[[ "$s1" != "$s3" ]]' "another seed, other tokens"
first=$(echo "$out" | awk '{print $1}')
stopped=$("$qkv" generate --model "$fx/gpt2_tiny" --ids "1 2 3 4" --max-new-tokens 12 --stop-token "$first" 2>/dev/null)
check '[[ "$(echo $stopped)" == "$first" ]]' "stop token ends generation after emitting it"
json=$("$qkv" generate --model "$fx/gpt2_tiny" --ids "1 2 3 4" --max-new-tokens 3 --json 2>/dev/null)
check 'echo "$json" | grep -q "\"new_tokens\":3,\"ids\":\["' "--json output: $json"
"$qkv" generate --model "$fx/gpt2_tiny" --ids "1 2 3" --max-new-tokens 200 --context 8 >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "context overflow refused ($rc)"
"$qkv" generate --model "$fx/gpt2_tiny" --ids "1 2 3" --max-new-tokens 20 --context 8 --slide >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 0 ]]' "--slide keeps going ($rc)"
"$qkv" generate --model "$fx/gpt2_tiny" --ids "1 999999" >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "out-of-vocabulary id refused ($rc)"
"$qkv" generate --model "$fx/gpt2_tiny" --prompt "hello" >/dev/null 2>"${TMPDIR:-/tmp}/qkv_gen_err.$$"; rc=$?
check '[[ $rc -eq 2 ]] && grep -q -- "--ids" "${TMPDIR:-/tmp}/qkv_gen_err.$$"' "text without a tokenizer: exit 2 with a hint ($rc)"
rm -f "${TMPDIR:-/tmp}/qkv_gen_err.$$"
"$qkv" generate --ids "1" >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "--model required ($rc)"
"$qkv" generate --model "$fx/gpt2_tiny" --ids "1" --temperature -1 >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "negative temperature refused ($rc)"
"$qkv" generate --model /nonexistent --ids "1" >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "missing model dir exit 2 ($rc)"
echo "generate_cli: $((checks - fail)) passed, $fail failed"
[[ $fail -eq 0 ]]
