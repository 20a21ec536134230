#!/usr/bin/env bash
# test_hostile_files_cli.sh QKV SOURCE_DIR — only regular files are opened as files (issue 14,
# point 5): a FIFO, a directory or a device given where qkv expects a file (a model's
# config.json, model.safetensors or tokenizer.json, a dataset's meta.json or shard, a
# checkpoint or safetensors file, a search index, an adapter's files) is refused at once with
# exit 2 and a message naming the file — never waited on (each run has a 20 s timeout; a FIFO
# with no writer would block an open() forever).
set -uo pipefail
qkv=$1 src=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0; checks=0
check() { checks=$((checks + 1)); if ! eval "$1"; then echo "FAIL: $2"; fail=$((fail + 1)); fi; }
run() { timeout 20 "$qkv" "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?; }
# refused: exit 2 (a timeout is 124), the file named with what it is
refused() { # WHAT-IT-IS FILE DESCRIPTION
    kind=$1 name=$2
    check '[[ $rc -eq 2 ]] && grep -F "not a regular file ($kind)" "$tmp/err" | grep -qF "$name"' \
        "$3: exit 2 naming $2 as $1 (rc $rc: $(head -c 300 "$tmp/err"))"
}

model=$src/tests/fixtures/cls/single
echo "good movie" > "$tmp/in.txt"
fresh() { rm -rf "$tmp/m"; cp -r "$model" "$tmp/m"; }

# the baseline: the copy works
fresh
run classify --model "$tmp/m" "$tmp/in.txt"
check '[[ $rc -eq 0 ]]' "the fixture classifier runs (rc $rc: $(head -c 300 "$tmp/err"))"

for f in config.json model.safetensors tokenizer.json; do
    fresh; rm "$tmp/m/$f"; mkfifo "$tmp/m/$f"
    run classify --model "$tmp/m" "$tmp/in.txt"
    refused "a FIFO" "$f" "classify with $f a FIFO"
    fresh; rm "$tmp/m/$f"; mkdir "$tmp/m/$f"
    run classify --model "$tmp/m" "$tmp/in.txt"
    refused "a directory" "$f" "classify with $f a directory"
done
fresh; rm "$tmp/m/model.safetensors"; ln -s /dev/zero "$tmp/m/model.safetensors"
run classify --model "$tmp/m" "$tmp/in.txt"
refused "a character device" "model.safetensors" "classify with model.safetensors -> /dev/zero"

# embed and generate read models through the same loaders
fresh; rm "$tmp/m/config.json"; mkfifo "$tmp/m/config.json"
run embed --model "$tmp/m" "$tmp/in.txt"
refused "a FIFO" "config.json" "embed with config.json a FIFO"
rm -rf "$tmp/g"; cp -r "$src/tests/fixtures/models/gpt2_tiny" "$tmp/g"
rm "$tmp/g/model.safetensors"; mkfifo "$tmp/g/model.safetensors"
run generate --model "$tmp/g" --ids "1 2 3" --max-new-tokens 2
refused "a FIFO" "model.safetensors" "generate with model.safetensors a FIFO"

# qkv inspect: a FIFO, a directory, a device
mkfifo "$tmp/p.safetensors"
run inspect "$tmp/p.safetensors"
refused "a FIFO" "p.safetensors" "inspect of a FIFO"
run inspect /dev/null
refused "a character device" "/dev/null" "inspect of /dev/null"
mkdir "$tmp/d.safetensors"
run inspect "$tmp/d.safetensors"
refused "a directory" "d.safetensors" "inspect of a directory"

# a search index that is a FIFO
printf 'good movie\nbad game\n' > "$tmp/corpus.txt"
mkfifo "$tmp/idx.safetensors"
run search --model "$tmp/m" --corpus "$tmp/corpus.txt" --index "$tmp/idx.safetensors" "movie"
check '[[ $rc -eq 2 ]]' "search with its index a FIFO: exit 2, not a hang (rc $rc: $(head -c 300 "$tmp/err"))"

# a dataset whose meta.json or shard is a FIFO
fresh
seq 1 200 | sed 's/^/good movie bad game /' > "$tmp/text.txt"
run data prepare --tokenizer "$tmp/m/tokenizer.json" --out "$tmp/ds" "$tmp/text.txt"
check '[[ $rc -eq 0 ]]' "data prepare works (rc $rc: $(head -c 300 "$tmp/err"))"
run data info "$tmp/ds"
check '[[ $rc -eq 0 ]]' "data info works (rc $rc)"
shard=$(ls "$tmp/ds" | grep -v meta.json | head -1)
cp -r "$tmp/ds" "$tmp/ds2"
rm "$tmp/ds2/$shard"; mkfifo "$tmp/ds2/$shard"
run data info "$tmp/ds2"
refused "a FIFO" "$shard" "data info with a shard a FIFO"
cp -r "$tmp/ds" "$tmp/ds3"
rm "$tmp/ds3/meta.json"; mkfifo "$tmp/ds3/meta.json"
run data info "$tmp/ds3"
refused "a FIFO" "meta.json" "data info with meta.json a FIFO"

# a LoRA adapter whose files are FIFOs
mkdir "$tmp/ad"; mkfifo "$tmp/ad/adapter_config.json"
run classify --model "$tmp/m" --lora "$tmp/ad" "$tmp/in.txt"
check '[[ $rc -eq 2 ]] && grep -q "adapter_config.json" "$tmp/err"' "classify --lora with adapter_config.json a FIFO: exit 2 (rc $rc: $(head -c 300 "$tmp/err"))"

echo "hostile_files_cli: $((checks - fail))/$checks checks passed"
[[ $fail -eq 0 ]]
