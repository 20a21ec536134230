#!/usr/bin/env bash
# test_full_disk_cli.sh QKV SOURCE_DIR — a full disk (issue 14, points 3 and 9): on a 64 KiB
# tmpfs filled up after a first good run, `qkv embed --out`, `qkv data prepare` and `qkv train`'s
# checkpoints fail with exit 1 (QKV_ERR_WRITE, not bad input) and leave the earlier file,
# dataset and checkpoint as they were, with no temporary left. Mounting needs root: skipped
# (exit 77) otherwise. The run's checkpoints get a 256 KiB tmpfs (remounted).
set -uo pipefail
qkv=$1 src=$2
tmp=$(mktemp -d)
mnt=$tmp/mnt
mkdir "$mnt"
if [[ $(id -u) -ne 0 ]] || ! mount -t tmpfs -o size=64k,mode=0755 qkvtest "$mnt" 2>/dev/null; then
    rm -rf "$tmp"
    echo "full_disk_cli: skipped (mounting a tmpfs needs root)"
    exit 77
fi
trap 'umount "$mnt"; rm -rf "$tmp"' EXIT
fail=0; checks=0
check() { checks=$((checks + 1)); if ! eval "$1"; then echo "FAIL: $2"; fail=$((fail + 1)); fi; }
err() { head -c 300 "$tmp/err"; }
# fills the tmpfs to the last byte (the filler is removed before the next case)
fill() {
    dd if=/dev/zero of="$mnt/filler" bs=1k 2>/dev/null
    # leave $1 KiB free (tmpfs frees whole pages)
    [[ -n ${1:-} ]] && truncate -s "-$1K" "$mnt/filler"
    sync
}
unfill() { rm -f "$mnt/filler"; }
temps() { find "$mnt" -name '*.tmp*' -o -name '.*tmp*' | grep -v filler; }

m=$src/tests/fixtures/cls/single
seq 1 2 | sed 's/^/good movie /' > "$tmp/few.txt"
seq 1 400 | sed 's/^/good movie bad game /' > "$tmp/many.txt"

# ---- qkv embed --out
"$qkv" embed --model "$m" --format npy --out "$mnt/e.npy" "$tmp/few.txt" >/dev/null 2>"$tmp/err"
check '[[ $? -eq 0 ]]' "embed into the tmpfs ($(err))"
cp "$mnt/e.npy" "$tmp/e0.npy"
fill
"$qkv" embed --model "$m" --format npy --out "$mnt/e.npy" "$tmp/many.txt" >/dev/null 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 1 ]] && cmp -s "$mnt/e.npy" "$tmp/e0.npy" && [[ -z $(temps) ]]' \
    "embed --out on a full disk: exit 1, the old file intact, no temporary ($rc: $(err))"
"$qkv" embed --model "$m" --out "$mnt/e.jsonl" "$tmp/many.txt" >/dev/null 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 1 && ! -e $mnt/e.jsonl && -z $(temps) ]]' \
    "embed --out (jsonl) on a full disk: exit 1, nothing left ($rc: $(err))"
unfill
rm -f "$mnt/e.npy"

# ---- qkv data prepare
"$qkv" tokenizer train --vocab-size 300 --special "<|endoftext|>" --out "$tmp/tok" \
    "$src/README.md" >/dev/null 2>&1
printf 'a small corpus of words\nand another line of it\n' > "$tmp/small.txt"
"$qkv" data prepare --tokenizer "$tmp/tok" --val-fraction 0.5 --out "$mnt/ds" "$tmp/small.txt" >/dev/null 2>"$tmp/err"
check '[[ $? -eq 0 ]]' "data prepare into the tmpfs ($(err))"
cp "$mnt/ds/meta.json" "$tmp/meta0.json"
fill
"$qkv" data prepare --tokenizer "$tmp/tok" --out "$mnt/ds" "$src/README.md" "$src"/docs/*.md \
    >/dev/null 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 1 ]] && cmp -s "$mnt/ds/meta.json" "$tmp/meta0.json" && [[ -z $(ls -a "$mnt" | grep -v "^\.*$" | grep -v "^ds$" | grep -v filler) ]]' \
    "data prepare on a full disk: exit 1, the old dataset intact, no staging left ($rc: $(err); $(ls -a "$mnt" | tr '\n' ' '))"
"$qkv" data info "$mnt/ds" >/dev/null 2>"$tmp/err"
check '[[ $? -eq 0 ]]' "and the old dataset still opens ($(err))"
unfill
rm -rf "$mnt/ds"

# ---- qkv train: checkpoints (a run with its exported model needs more room)
mount -o remount,size=256k "$mnt"
"$qkv" data prepare --tokenizer "$tmp/tok" --out "$tmp/ds" "$src/README.md" >/dev/null 2>&1
tr=(--data "$tmp/ds" --out "$mnt/run" --n-layer 1 --n-head 2 --n-embd 8 --seq 8 --batch 2
    --warmup 1 --eval-every 0 --eval-batches 1 --save-every 2 --threads 1)
"$qkv" train "${tr[@]}" --steps 2 >/dev/null 2>"$tmp/err"
check '[[ $? -eq 0 ]] && ls "$mnt/run" | grep -q "^ckpt_"' "train into the tmpfs ($(err); $(ls "$mnt/run" 2>/dev/null | tr '\n' ' '))"
ck=$(ls "$mnt/run" | grep "^ckpt_" | head -1)
cp "$mnt/run/$ck" "$tmp/ck0" 2>/dev/null
fill
"$qkv" train --out "$mnt/run" --resume --steps 4 >/dev/null 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 1 ]] && cmp -s "$mnt/run/$ck" "$tmp/ck0" && [[ -z $(temps) ]]' \
    "train --resume on a full disk (its config.json): exit 1, the checkpoint intact ($rc: $(err))"
unfill
ckb=$(( $(stat -c %s "$mnt/run/$ck") / 1024 ))
fill $((ckb / 2)) # room for the run's small files, not for a checkpoint
"$qkv" train --out "$mnt/run" --resume --steps 4 >/dev/null 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 1 ]] && cmp -s "$mnt/run/$ck" "$tmp/ck0" && [[ -z $(temps) ]] && grep -qi "checkpoint" "$tmp/err"' \
    "a checkpoint that does not fit: exit 1, the earlier checkpoint intact, no temporary ($rc: $(err))"
unfill
"$qkv" train --out "$mnt/run" --resume --steps 4 >/dev/null 2>"$tmp/err"
check '[[ $? -eq 0 ]]' "and the run resumes from it once there is room ($(err))"

echo "full_disk_cli: $((checks - fail))/$checks checks passed"
[[ $fail -eq 0 ]]
