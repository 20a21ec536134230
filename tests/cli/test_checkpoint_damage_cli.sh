#!/usr/bin/env bash
# test_checkpoint_damage_cli.sh QKV SOURCE_DIR — checkpoints carry a checksum of their data
# (issue 14, point 6): a flipped byte in the newest checkpoint's tensors is caught on --resume,
# the damaged file is renamed aside (kept), training goes on from the newest intact checkpoint
# and says so; the resumed run ends with the same weights as an uninterrupted one; with no
# intact checkpoint left, --resume fails (exit 2) naming the checksum.
set -uo pipefail
qkv=$1 src=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0; checks=0
check() { checks=$((checks + 1)); if ! eval "$1"; then echo "FAIL: $2"; fail=$((fail + 1)); fi; }

"$qkv" tokenizer train --vocab-size 300 --special "<|endoftext|>" --out "$tmp/tok" \
    "$src/README.md" >/dev/null 2>&1
"$qkv" data prepare --tokenizer "$tmp/tok" --val-fraction 0.25 --split-on "" --out "$tmp/data" \
    "$src"/docs/*.md >/dev/null 2>&1
flags=(--data "$tmp/data" --n-layer 1 --n-embd 16 --n-head 2 --seq 16 --batch 2 --warmup 1
       --eval-every 4 --eval-batches 1 --save-every 4 --keep 3 --threads 1 --no-tensorboard)
"$qkv" train "${flags[@]}" --steps 12 --out "$tmp/ref" >/dev/null 2>&1
cp -r "$tmp/ref" "$tmp/a"
rm -r "$tmp/a/model"
check '[[ -f $tmp/a/ckpt_00000012.safetensors && -f $tmp/a/ckpt_00000008.safetensors ]]' \
    "checkpoints written"
# flip one byte in the last tensor byte of the newest checkpoint
f=$tmp/a/ckpt_00000012.safetensors
size=$(stat -c %s "$f")
byte=$(od -An -t u1 -j $((size - 3)) -N 1 "$f" | tr -d ' ')
printf "\\x$(printf %02x $(( (byte + 1) % 256 )))" | dd of="$f" bs=1 seek=$((size - 3)) conv=notrunc status=none
"$qkv" inspect "$f" >/dev/null 2>&1
check '[[ $? -eq 0 ]]' "the damaged checkpoint still parses as safetensors (only its data changed)"
"$qkv" train --resume --steps 12 --out "$tmp/a" >/dev/null 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 0 ]]' "--resume past a damaged checkpoint succeeds ($rc: $(tail -3 "$tmp/err"))"
check 'grep -q "set aside damaged checkpoints" "$tmp/err" && grep -q "checksum" "$tmp/err" && grep -q "resuming from step 8" "$tmp/err"' \
    "and says which, why and from where ($(head -c 400 "$tmp/err"))"
check '[[ -f $tmp/a/ckpt_00000012.safetensors.damaged ]]' "the damaged file is kept, renamed"
check 'cmp -s "$tmp/a/model/model.safetensors" "$tmp/ref/model/model.safetensors"' \
    "the resumed run ends with the uninterrupted run's weights"
check '[[ $(grep -c "\"loss\"" "$tmp/a/metrics.jsonl") -eq 12 ]]' "metrics.jsonl has each step once"

# nothing intact left: a clear failure naming the checksum
"$qkv" train "${flags[@]}" --steps 4 --out "$tmp/b" >/dev/null 2>&1
f=$tmp/b/ckpt_00000004.safetensors
size=$(stat -c %s "$f")
byte=$(od -An -t u1 -j $((size - 3)) -N 1 "$f" | tr -d ' ')
printf "\\x$(printf %02x $(( (byte + 1) % 256 )))" | dd of="$f" bs=1 seek=$((size - 3)) conv=notrunc status=none
"$qkv" train --resume --steps 8 --out "$tmp/b" >/dev/null 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 2 ]] && grep -q "checksum" "$tmp/err"' "no intact checkpoint: exit 2 naming the checksum ($rc: $(head -c 300 "$tmp/err"))"

echo "checkpoint_damage_cli: $((checks - fail))/$checks checks passed"
[[ $fail -eq 0 ]]
