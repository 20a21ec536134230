#!/usr/bin/env bash
# test_outputs_cli.sh QKV SOURCE_DIR — outputs (issue 14, points 2, 3 and 6): an existing file
# of another kind at an output path is refused (exit 2, untouched); every output is written
# whole or not at all (a file-size limit hit mid-write exits 1 and leaves the old file or
# dataset as it was — SIGXFSZ does not kill qkv); a saved search index knows what it was built
# from (the corpus and the model's files) and is rebuilt when any changed or when it holds
# non-finite values.
set -uo pipefail
qkv=$1 src=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0; checks=0
check() { checks=$((checks + 1)); if ! eval "$1"; then echo "FAIL: $2"; fail=$((fail + 1)); fi; }
run() { "$qkv" "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?; }
err() { head -c 300 "$tmp/err"; }

cp -r "$src/tests/fixtures/cls/single" "$tmp/m"
m=$tmp/m
seq 1 40 | sed 's/^/good movie bad game /' > "$tmp/in.txt"
echo "my notes, not an output" > "$tmp/notes.txt"
cp "$m/model.safetensors" "$tmp/weights.safetensors"

# ---- never overwrite what is not ours
run embed --model "$m" --out "$tmp/weights.safetensors" "$tmp/in.txt"
check '[[ $rc -eq 2 ]] && cmp -s "$tmp/weights.safetensors" "$m/model.safetensors" && grep -q "not replaced" "$tmp/err"' \
    "embed --out onto a model (jsonl): refused, untouched ($rc: $(err))"
run embed --model "$m" --format npy --out "$tmp/notes.txt" "$tmp/in.txt"
check '[[ $rc -eq 2 ]] && grep -q "my notes" "$tmp/notes.txt"' "embed --format npy onto a text file: refused ($rc)"
run embed --model "$m" --format safetensors --out "$tmp/notes.txt" "$tmp/in.txt"
check '[[ $rc -eq 2 ]] && grep -q "my notes" "$tmp/notes.txt"' "embed --format safetensors onto a text file: refused ($rc)"
mkdir "$tmp/adir"
run embed --model "$m" --out "$tmp/adir" "$tmp/in.txt"
check '[[ $rc -eq 2 && -d $tmp/adir ]]' "embed --out onto a directory: refused ($rc)"
# our own output of the same kind is replaced
run embed --model "$m" --format npy --out "$tmp/e.npy" "$tmp/in.txt"
check '[[ $rc -eq 0 ]] && head -c 6 "$tmp/e.npy" | grep -q NUMPY' "embed --format npy writes ($rc: $(err))"
cp "$tmp/e.npy" "$tmp/e0.npy"
run embed --model "$m" --format npy --out "$tmp/e.npy" "$tmp/in.txt"
check '[[ $rc -eq 0 ]] && cmp -s "$tmp/e.npy" "$tmp/e0.npy"' "a rerun replaces its own .npy ($rc)"
run embed --model "$m" --out "$tmp/e.jsonl" "$tmp/in.txt"
run embed --model "$m" --out "$tmp/e.jsonl" "$tmp/in.txt"
check '[[ $rc -eq 0 && $(wc -l < "$tmp/e.jsonl") -eq 40 ]]' "a rerun replaces its own .jsonl ($rc)"

# ---- nothing half-written: the file-size limit hit mid-write
(ulimit -f 2; "$qkv" embed --model "$m" --format npy --out "$tmp/e.npy" "$tmp/in.txt" \
    >/dev/null 2>"$tmp/err"); rc=$?
check '[[ $rc -eq 1 ]] && cmp -s "$tmp/e.npy" "$tmp/e0.npy" && ! ls "$tmp" | grep -q "e.npy.tmp"' \
    "embed past the file-size limit: exit 1, the old .npy intact, no temporary left ($rc: $(err))"
(ulimit -f 2; "$qkv" embed --model "$m" --format safetensors --out "$tmp/e.st" "$tmp/in.txt" \
    >/dev/null 2>"$tmp/err"); rc=$?
check '[[ $rc -eq 1 && ! -e $tmp/e.st ]]' "safetensors past the file-size limit: exit 1, nothing written ($rc: $(err))"

# ---- datasets: refused over foreign directories, the old one kept on failure
"$qkv" tokenizer train --vocab-size 300 --special "<|endoftext|>" --out "$tmp/tok" \
    "$src/README.md" >/dev/null 2>&1
mkdir "$tmp/notadataset"; echo "keep me" > "$tmp/notadataset/README"
run data prepare --tokenizer "$tmp/tok" --out "$tmp/notadataset" "$src/README.md"
check '[[ $rc -eq 2 ]] && grep -q "keep me" "$tmp/notadataset/README" && grep -q "not part of a qkv dataset" "$tmp/err"' \
    "data prepare into a directory of other files: refused ($rc: $(err))"
run data prepare --tokenizer "$tmp/tok" --out "$tmp/notes.txt" "$src/README.md"
check '[[ $rc -eq 2 ]] && grep -q "my notes" "$tmp/notes.txt"' "data prepare --out onto a file: refused ($rc)"
run data prepare --tokenizer "$tmp/tok" --out "$tmp/ds" "$src/README.md"
check '[[ $rc -eq 0 ]]' "data prepare ($rc: $(err))"
cp "$tmp/ds/meta.json" "$tmp/meta0.json"
cat "$src"/docs/*.md "$src"/docs/*.md > "$tmp/big.txt"
(ulimit -f 64; "$qkv" data prepare --tokenizer "$tmp/tok" --out "$tmp/ds" "$tmp/big.txt" \
    >/dev/null 2>"$tmp/err"); rc=$?
check '[[ $rc -eq 1 ]] && cmp -s "$tmp/ds/meta.json" "$tmp/meta0.json" && ! ls "$tmp" | grep -q "ds.tmp"' \
    "data prepare past the file-size limit: exit 1, the old dataset intact, no staging left ($rc: $(err))"
run data info "$tmp/ds"
check '[[ $rc -eq 0 ]]' "and the old dataset still opens ($rc)"
run data prepare --tokenizer "$tmp/tok" --out "$tmp/ds" "$tmp/big.txt"
check '[[ $rc -eq 0 ]] && ! cmp -s "$tmp/ds/meta.json" "$tmp/meta0.json"' "a rerun replaces its own dataset ($rc)"

# ---- search indexes: refused over foreign files, rebuilt when stale or corrupted
printf 'the cat sat\na dog ran\nstocks fell\ngood movie\n' > "$tmp/c.txt"
run search --model "$m" --corpus "$tmp/c.txt" --index "$tmp/notes.txt" movie
check '[[ $rc -eq 2 ]] && grep -q "my notes" "$tmp/notes.txt"' "search --index onto a text file: refused ($rc)"
run search --model "$m" --corpus "$tmp/c.txt" --index "$tmp/weights.safetensors" movie
check '[[ $rc -eq 2 ]] && cmp -s "$tmp/weights.safetensors" "$m/model.safetensors" && grep -q "not a qkv search index" "$tmp/err"' \
    "search --index onto a model's weights: refused, untouched ($rc: $(err))"
idx=$tmp/c.idx
run search --model "$m" --corpus "$tmp/c.txt" --index "$idx" movie
check '[[ $rc -eq 0 ]] && grep -q "index saved" "$tmp/err"' "index built ($rc: $(err))"
cp "$tmp/out" "$tmp/ranked0"
run search --model "$m" --corpus "$tmp/c.txt" --index "$idx" movie
check '[[ $rc -eq 0 ]] && grep -q "using the index" "$tmp/err" && cmp -s "$tmp/out" "$tmp/ranked0"' "index reused ($rc)"
touch -d "2001-01-01" "$m/config.json"
run search --model "$m" --corpus "$tmp/c.txt" --index "$idx" movie
check '[[ $rc -eq 0 ]] && grep -q "model changed" "$tmp/err"' "a changed model file: the index is rebuilt ($rc: $(err))"
echo "a new line" >> "$tmp/c.txt"
run search --model "$m" --corpus "$tmp/c.txt" --index "$idx" movie
check '[[ $rc -eq 0 ]] && grep -q "corpus changed" "$tmp/err"' "a changed corpus: the index is rebuilt ($rc)"
# a NaN written over the first embedding value (data starts after the 8-byte length + header)
hl=$(od -An -t u8 -N 8 "$idx" | tr -d ' ')
printf '\x00\x00\xc0\x7f' | dd of="$idx" bs=1 seek=$((8 + hl)) conv=notrunc status=none
run search --model "$m" --corpus "$tmp/c.txt" --index "$idx" movie
check '[[ $rc -eq 0 ]] && grep -q "not finite" "$tmp/err"' "an index holding NaN is not used: rebuilt ($rc: $(err))"
run search --model "$m" --corpus "$tmp/c.txt" --index "$idx" movie
check '[[ $rc -eq 0 ]] && grep -q "using the index" "$tmp/err"' "and the rebuilt one is used ($rc)"

echo "outputs_cli: $((checks - fail))/$checks checks passed"
[[ $fail -eq 0 ]]
