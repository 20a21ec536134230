#!/usr/bin/env bash
# test_dtype_cli.sh QKV SRC — --dtype on embed, search, serve, bench embed, classify, evaluate,
# generate and translate (issue 18), and the dtypes `qkv info` reports: bf16, f16 and int8 run,
# bf16 differs from f32 only in the last bits; a bad --dtype is a usage error (exit 2) naming the accepted
# values; a search index built in one dtype is rebuilt for the other. On the tiny fixtures
# (classifier with its tokenizer, GPT-2, Marian), so it runs everywhere.
set -uo pipefail
qkv=$1; src=$2
model=$src/tests/fixtures/cls/single
tmp=$(mktemp -d /tmp/qkv_dtype_cli.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0; checks=0
expect() { # expect CODE DESCRIPTION -- command...
    local want=$1 what=$2; shift 3
    checks=$((checks + 1))
    "$@" >"$tmp/out" 2>&1
    local got=$?
    if [[ $got -ne $want ]]; then
        echo "FAIL: $what: exit $got, expected $want"; cat "$tmp/out"; fail=$((fail + 1))
    fi
}
contains() { # contains TEXT DESCRIPTION (the last command's output)
    checks=$((checks + 1))
    local out; out=$(cat "$tmp/out")
    if [[ "$out" != *"$1"* ]]; then
        echo "FAIL: $2: output lacks '$1'"; echo "$out"; fail=$((fail + 1))
    fi
}

expect 0 "info" -- "$qkv" info; contains "dtypes:       f32 native; bf16 " "info dtypes"
contains "model dtypes: f32 (default), bf16, f16, int8" "info model dtypes"
expect 0 "info --json" -- "$qkv" info --json; contains '"dtypes":{"f32":"native","bf16":"' "info --json dtypes"
contains '"model_dtypes":["f32","bf16","f16","int8"]' "info --json model_dtypes"

printf 'the cat sat on the mat\na dog barks\nrain in spain\n' >"$tmp/in.txt"
printf 'text\tlabel\nthis movie is very good\tpositive\nawful film\tnegative\n' >"$tmp/in.tsv"
gpt=$src/tests/fixtures/models/gpt2_tiny
marian=$src/tests/fixtures/marian/tiny
for cmd in "embed $tmp/in.txt" "search --corpus $tmp/in.txt cat" "bench embed --reps 1" "serve --port 0" \
    "classify $tmp/in.txt" "evaluate --data $tmp/in.tsv" "generate --ids 1" "translate $tmp/in.txt"; do
    m=$model
    [[ $cmd == generate* ]] && m=$gpt
    [[ $cmd == translate* ]] && m=$marian
    # shellcheck disable=SC2086
    expect 2 "$cmd --dtype int4" -- "$qkv" $cmd --model "$m" --dtype int4
    contains "--dtype is f32, bf16, f16 or int8, not 'int4'" "$cmd: the message names the values"
    # shellcheck disable=SC2086
    expect 2 "$cmd --dtype ''" -- "$qkv" $cmd --model "$m" --dtype ''
done

# classify, evaluate, generate, translate: bf16 runs; f32 as --dtype is the default, bit for bit
run2() { # run2 NAME CMD...: CMD's output (without timings) into $tmp/NAME.dflt, .f32 and .bf16
    local name=$1; shift
    expect 0 "$name" -- "$@"; grep -v 'tokens/s' "$tmp/out" >"$tmp/$name.dflt"
    expect 0 "$name --dtype f32" -- "$@" --dtype f32; grep -v 'tokens/s' "$tmp/out" >"$tmp/$name.f32"
    expect 0 "$name --dtype bf16" -- "$@" --dtype bf16; grep -v 'tokens/s' "$tmp/out" >"$tmp/$name.bf16"
    expect 0 "$name --dtype f16" -- "$@" --dtype f16; grep -v 'tokens/s' "$tmp/out" >"$tmp/$name.f16"
    expect 0 "$name --dtype int8" -- "$@" --dtype int8; grep -v 'tokens/s' "$tmp/out" >"$tmp/$name.int8"
    checks=$((checks + 1))
    cmp -s "$tmp/$name.dflt" "$tmp/$name.f32" || { echo "FAIL: $name: --dtype f32 differs from the default"; fail=$((fail + 1)); }
}
run2 classify "$qkv" classify --model "$model" --all --json --threads 1 "$tmp/in.txt"
checks=$((checks + 1))
cmp -s "$tmp/classify.f32" "$tmp/classify.bf16" && { echo "FAIL: classify bf16 gave the f32 scores"; fail=$((fail + 1)); }
checks=$((checks + 1))
cmp -s "$tmp/classify.f32" "$tmp/classify.f16" && { echo "FAIL: classify f16 gave the f32 scores"; fail=$((fail + 1)); }
run2 evaluate "$qkv" evaluate --model "$model" --data "$tmp/in.tsv" --threads 1
contains "accuracy" "evaluate bf16 prints the report"
run2 generate "$qkv" generate --model "$gpt" --ids "1 2 3" --ids-out --max-new-tokens 8 --threads 1
checks=$((checks + 1))
[[ $(head -1 "$tmp/generate.bf16" | wc -w) -ge 1 ]] || { echo "FAIL: generate bf16 printed no ids"; fail=$((fail + 1)); }
checks=$((checks + 1))
[[ $(head -1 "$tmp/generate.int8" | wc -w) -ge 1 ]] || { echo "FAIL: generate int8 printed no ids"; fail=$((fail + 1)); }
run2 translate "$qkv" translate --model "$marian" --json --threads 1 "$src/tests/fixtures/marian/texts.txt"
checks=$((checks + 1))
for d in bf16 f16 int8; do
    checks=$((checks + 1))
    [[ $(grep -c '"translation"' "$tmp/translate.$d") -eq $(wc -l < "$src/tests/fixtures/marian/texts.txt") ]] ||
        { echo "FAIL: translate $d: not one JSON line per input"; fail=$((fail + 1)); }
done

expect 0 "embed f32" -- "$qkv" embed --model "$model" --out "$tmp/f32.npy" --format npy "$tmp/in.txt"
expect 0 "embed bf16" -- "$qkv" embed --model "$model" --dtype bf16 --out "$tmp/bf16.npy" --format npy "$tmp/in.txt"
expect 0 "embed --dtype f32 is the default" -- "$qkv" embed --model "$model" --dtype f32 --out "$tmp/f32b.npy" --format npy "$tmp/in.txt"
checks=$((checks + 2))
cmp -s "$tmp/f32.npy" "$tmp/f32b.npy" || { echo "FAIL: --dtype f32 differs from the default"; fail=$((fail + 1)); }
# bf16 weights change the last bits, not the embedding: the files differ, but within 1% (the
# cosine bound itself is tested on the real model by test_embed_bf16)
if cmp -s "$tmp/f32.npy" "$tmp/bf16.npy"; then
    echo "FAIL: --dtype bf16 gave the f32 embeddings bit for bit (weights not rounded?)"; fail=$((fail + 1))
fi

expect 0 "bench embed bf16" -- "$qkv" bench embed --model "$model" --dtype bf16 --batch 2 --tokens 8 --reps 1 --threads 1
contains '"dtype":"bf16"' "bench embed --dtype JSON"; contains '"rss_load_mib":' "bench embed rss"
expect 0 "bench embed int8" -- "$qkv" bench embed --model "$model" --dtype int8 --batch 2 --tokens 8 --reps 1 --threads 1
contains '"dtype":"int8"' "bench embed --dtype int8 JSON"

expect 0 "search f32" -- "$qkv" search --model "$model" --corpus "$tmp/in.txt" cat
expect 0 "search f32 again" -- "$qkv" search --model "$model" --corpus "$tmp/in.txt" cat
contains "using the index" "search reuses its f32 index"
expect 0 "search bf16" -- "$qkv" search --model "$model" --dtype bf16 --corpus "$tmp/in.txt" cat
contains "rebuilding the index" "search rebuilds the index for bf16"
expect 0 "search bf16 again" -- "$qkv" search --model "$model" --dtype bf16 --corpus "$tmp/in.txt" cat
contains "using the index" "search reuses its bf16 index"
expect 0 "search int8" -- "$qkv" search --model "$model" --dtype int8 --corpus "$tmp/in.txt" cat
contains "rebuilding the index" "search rebuilds the index for int8"

echo "dtype_cli: $((checks - fail)) passed, $fail failed"
[[ $fail -eq 0 ]]
