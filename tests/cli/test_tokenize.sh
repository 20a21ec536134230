#!/usr/bin/env bash
# test_tokenize.sh QKV SOURCE_DIR — `qkv tokenize` and `qkv tokenizer train`: help, output
# formats (plain, --ids-only, --json with offsets), pairs and truncation, streaming a file
# with a progress bar, decode, and exit code 2 with a clear message for bad models and usage.
set -uo pipefail
qkv=$1
fix=$2/tests/fixtures/tokenizer
out=$(mktemp); tmp=$(mktemp -d)
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
expect 0 "tokenize --help" -- "$qkv" tokenize --help
contains "Usage: qkv tokenize --model PATH" "help"; contains "tokenizer train" "help"
expect 0 "help tokenize" -- "$qkv" help tokenize
expect 0 "plain" -- "$qkv" tokenize --model "$fix/minilm" "Hello, World!"
contains "ids: 101 7592 1010 2088 999 102" "plain ids (tokenizer.json pads to 128)"
contains "tokens: [CLS] hello , world ! [SEP]" "plain tokens"
expect 0 "vocab.txt" -- "$qkv" tokenize --model "$fix/minilm/vocab.txt" --offsets "Hello, World!"
contains "ids: 101 7592 1010 2088 999 102" "vocab.txt ids"; contains "offsets: 0:0 0:5 5:6 7:12 12:13 0:0" "offsets"
expect 0 "json" -- "$qkv" tokenize --model "$fix/bpe" --json --offsets "Hi <|endoftext|>"
contains '"tokens":["H","i","Ġ","<|endoftext|>"]' "json tokens"; contains '"offsets":[[0,1],[1,2],[3,3],[3,16]]' "json offsets (HF trims the lone space)"
expect 0 "pair + truncation" -- "$qkv" tokenize --model "$fix/minilm" --pad-to 0 --max-length 6 --pair "b b b b" "a a"
contains "ids: 101 1037 102 1038 1038 102" "pair truncated longest_first"
expect 0 "no special" -- "$qkv" tokenize --model "$fix/cased" --no-special --ids-only "Hello"
expect 0 "decode" -- "$qkv" tokenize --model "$fix/minilm" --decode "101 7592 1010 2088 999 102"
contains "hello, world!" "decode"
printf 'one line\nsecond line\n\nlast' > "$tmp/in.txt"
expect 0 "file + progress" -- "$qkv" tokenize --model "$fix/bpe" --ids-only --progress --file "$tmp/in.txt"
contains "100.0%" "progress bar"
checks=$((checks + 1)); n=$(grep -c '^[0-9]' "$out"); [[ $n -eq 3 ]] || { echo "FAIL: 3 id lines, got $n"; fail=$((fail + 1)); }
expect 0 "stdin" -- bash -c "printf 'a\nb\n' | '$qkv' tokenize --model '$fix/cased' --json - "
contains '"ids":[2,' "stdin json"
expect 2 "missing model" -- "$qkv" tokenize --model /nonexistent "x"; contains "qkv: /nonexistent" "missing model message"
expect 2 "dir without tokenizer" -- "$qkv" tokenize --model "$tmp" "x"; contains "no tokenizer.json" "empty dir message"
echo '{"model":{"type":"WordLevel","vocab":{}}}' > "$tmp/u.json"
expect 2 "unsupported" -- "$qkv" tokenize --model "$tmp/u.json" "x"; contains 'model "WordLevel" is not supported' "unsupported message"
# a Marian directory (source.spm + vocab.json): the ids MarianTokenizer gives (fixture line 0)
spm="$fix/spm"
want=$(head -1 "$spm/expect.marian.jsonl" | sed 's/.*"ids": \[\([0-9, ]*\)\].*/\1/; s/,//g')
expect 0 "marian dir" -- "$qkv" tokenize --model "$spm/marian" --ids-only "Hello world!"; contains "$want" "marian ids"
printf 'x\0y' > "$tmp/hostile.spm"
expect 2 "hostile spm" -- "$qkv" tokenize --model "$tmp/hostile.spm" "x"; contains "SentencePiece" "hostile spm message"
echo '{"model":' > "$tmp/bad.json"
expect 2 "malformed" -- "$qkv" tokenize --model "$tmp/bad.json" "x"; contains "invalid JSON" "malformed message"
expect 2 "no model" -- "$qkv" tokenize "x"
expect 2 "no text" -- "$qkv" tokenize --model "$fix/minilm"
expect 2 "bad option" -- "$qkv" tokenize --model "$fix/minilm" --bogus x
expect 2 "bad number" -- "$qkv" tokenize --model "$fix/minilm" --max-length -3 x
expect 2 "missing file" -- "$qkv" tokenize --model "$fix/minilm" --file "$tmp/none.txt"
printf 'low lower lowest\nnewer newest wider\n' > "$tmp/train.txt"
expect 0 "train" -- "$qkv" tokenizer train --vocab-size 270 --out "$tmp/bpe" "$tmp/train.txt"
expect 0 "trained loads" -- "$qkv" tokenize --model "$tmp/bpe" --ids-only "lowest"
expect 2 "train usage" -- "$qkv" tokenizer train --out "$tmp/x"
expect 2 "train missing file" -- "$qkv" tokenizer train --vocab-size 300 --out "$tmp/x" "$tmp/none"
expect 2 "tokenizer no subcommand" -- "$qkv" tokenizer
rm -rf "$out" "$tmp"
echo "tokenize cli: $((checks - fail)) passed, $fail failed"
[[ $fail -eq 0 ]]
