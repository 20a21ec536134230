#!/usr/bin/env bash
# test_train_mt.sh QKV SOURCE_DIR — translation training from the command line: a toy
# parallel corpus (each of 8 words has a fixed partner; a sentence of 1-3 words maps word for
# word), `qkv data prepare --source --target` with the tiny Marian tokenizer, hostile parallel
# files (exit 2 naming file and line, or --on-error skip), a MarianMT trained from scratch by
# `qkv train --arch marian` (validation loss falls clearly in 200 steps), its export
# translated by `qkv translate` (most held-out sentences exact) and, when a Python with
# transformers is there, loaded by MarianMTModel (the same greedy output); --resume from the
# middle gives bit-identical weights; fine-tuning with --init from the export and from a
# Marian directory; SIGTERM saves and resumes; usage errors exit 2.
set -uo pipefail
qkv=$1 src=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/qkv_train_mt.XXXXXX")
trap '[[ -n ${KEEP:-} ]] || rm -rf "$tmp"' EXIT
fail=0; checks=0
check() { checks=$((checks + 1)); if ! eval "$1"; then echo "FAIL: $2"; fail=$((fail + 1)); fi; }
tok=$src/tests/fixtures/marian/tiny

# toy_pairs N SEED SRC TGT: N pairs of 1-3 words (bash's RANDOM sequence is fixed by its seed)
toy_pairs() {
    local a=(the a of to and in you or) b=(of to and in you or the a) i k n w s t
    RANDOM=$2
    : >"$3"; : >"$4"
    for ((i = 0; i < $1; i++)); do
        n=$((1 + RANDOM % 3)); s=""; t=""
        for ((k = 0; k < n; k++)); do w=$((RANDOM % 8)); s+="${s:+ }${a[w]}"; t+="${t:+ }${b[w]}"; done
        echo "$s" >>"$3"; echo "$t" >>"$4"
    done
}
toy_pairs 1000 42 "$tmp/train.src" "$tmp/train.tgt"
toy_pairs 20 7 "$tmp/test.src" "$tmp/test.tgt"

"$qkv" data prepare --source "$tmp/train.src" --target "$tmp/train.tgt" --tokenizer "$tok" \
    --val-fraction 0.1 --out "$tmp/data" >"$tmp/prep.out" 2>&1; rc=$?
check '[[ $rc -eq 0 ]] && grep -q "pairs" "$tmp/prep.out"' "data prepare ($rc): $(cat "$tmp/prep.out")"
"$qkv" data info "$tmp/data" >"$tmp/info.out" 2>&1; rc=$?
check '[[ $rc -eq 0 ]] && grep -q "\"kind\": \"parallel\"" "$tmp/info.out" && grep -q "^train: [0-9]* pairs" "$tmp/info.out"' "data info ($rc)"

# hostile parallel files: exit 2 naming the file (and line); the old dataset stays
printf 'the\nof a\n' >"$tmp/h.src"; printf 'of\n' >"$tmp/h.tgt"
"$qkv" data prepare --source "$tmp/h.src" --target "$tmp/h.tgt" --tokenizer "$tok" --out "$tmp/data" >/dev/null 2>"$tmp/h.err"; rc=$?
check '[[ $rc -eq 2 ]] && grep -q "h.src has 2 lines" "$tmp/h.err"' "unequal line counts: exit 2 ($rc: $(cat "$tmp/h.err"))"
"$qkv" data info "$tmp/data" >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 0 ]]' "the old dataset survives a failed prepare"
printf 'the\n\nof a\n' >"$tmp/h.src"; printf 'of\nto\nand of\n' >"$tmp/h.tgt"
"$qkv" data prepare --source "$tmp/h.src" --target "$tmp/h.tgt" --tokenizer "$tok" --out "$tmp/h" >/dev/null 2>"$tmp/h.err"; rc=$?
check '[[ $rc -eq 2 ]] && grep -q "h.src: line 2: an empty line" "$tmp/h.err"' "empty line: exit 2 naming it ($rc: $(cat "$tmp/h.err"))"
printf 'the\n\xff\nof a\n' >"$tmp/h.src"
"$qkv" data prepare --source "$tmp/h.src" --target "$tmp/h.tgt" --tokenizer "$tok" --out "$tmp/h" >/dev/null 2>"$tmp/h.err"; rc=$?
check '[[ $rc -eq 2 ]] && grep -q "line 2: invalid UTF-8" "$tmp/h.err"' "invalid UTF-8: exit 2 ($rc)"
"$qkv" data prepare --source "$tmp/h.src" --target "$tmp/h.tgt" --tokenizer "$tok" --out "$tmp/h" --on-error skip --val-fraction 0 >"$tmp/h.out" 2>&1; rc=$?
check '[[ $rc -eq 0 ]] && grep -q "train 2 pairs" "$tmp/h.out" && grep -q "skipped 1 pairs" "$tmp/h.out"' "--on-error skip ($rc: $(cat "$tmp/h.out"))"
"$qkv" data prepare --source "$tmp/h.src" --target "$tmp/h.tgt" --tokenizer "$tok" --out "$tmp/h" --val-source "$tmp/h.src" >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "--val-source without --val-target: exit 2 ($rc)"
"$qkv" data prepare --source "$tmp/h.src" --target "$tmp/h.tgt" --tokenizer "$tok" --out "$tmp/h" --val-fraction 0.5 --val-source "$tmp/h.src" --val-target "$tmp/h.tgt" >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "--val-fraction with --val-source: exit 2 ($rc)"
"$qkv" data prepare --source "$tmp/h.src" --tokenizer "$tok" --out "$tmp/h" >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "--source without --target: exit 2 ($rc)"
"$qkv" data prepare --source "$tmp" --target "$tmp/h.tgt" --tokenizer "$tok" --out "$tmp/h" >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "a directory as --source: exit 2 ($rc)"

# from scratch
flags=(--data "$tmp/data" --arch marian --n-layer 2 --n-embd 64 --n-head 4 --batch 16 --seq 16
       --lr 2e-3 --warmup 20 --eval-every 50 --eval-batches 10 --save-every 100 --dropout 0
       --threads 2)
"$qkv" train "${flags[@]}" --steps 200 --out "$tmp/a" >/dev/null 2>"$tmp/a.err"; rc=$?
check '[[ $rc -eq 0 ]]' "train --arch marian ($rc): $(tail -3 "$tmp/a.err")"
check 'grep -q "label smoothing 0.1" "$tmp/a.err"' "label smoothing 0.1 by default"
vals=$(grep '"val_loss"' "$tmp/a/metrics.jsonl" | sed 's/.*"val_loss": \([0-9.]*\).*/\1/' | tr '\n' ' ')
read -r v50 _ _ v200 <<<"$vals"
check 'awk -v a="${v50:-0}" -v b="${v200:-9}" "BEGIN{exit !(b < 0.8 * a)}"' "validation loss falls clearly: $vals"
for f in config.json generation_config.json model.safetensors source.spm target.spm vocab.json; do
    check '[[ -f $tmp/a/model/$f ]]' "export holds $f"
done
"$qkv" translate --model "$tmp/a/model" "$tmp/test.src" >"$tmp/test.hyp" 2>"$tmp/tr.err"; rc=$?
exact=$(paste -d '\t' "$tmp/test.hyp" "$tmp/test.tgt" | awk -F '\t' '$1 == $2' | wc -l)
check '[[ $rc -eq 0 && $exact -ge 12 ]]' "qkv translate: $exact of 20 toy sentences exact ($rc: $(head -2 "$tmp/tr.err"))"
"$src/tests/run_python_check.sh" torch,transformers,sentencepiece "$src/tools/check_marian_export.py" \
    "$tmp/a/model" "$tmp/test.src" "$tmp/test.hyp" >"$tmp/py.out" 2>&1; rc=$?
if [[ $rc -ne 77 ]]; then
    check '[[ $rc -eq 0 ]]' "MarianMTModel loads the export and greedy-decodes as qkv translate: $(tail -3 "$tmp/py.out")"
fi

# --resume from step 100 gives the same weights, bit for bit
cp -r "$tmp/a" "$tmp/b"
rm -rf "$tmp/b/ckpt_00000200.safetensors" "$tmp/b/model"
"$qkv" train --resume --out "$tmp/b" >/dev/null 2>"$tmp/b.err"; rc=$?
check '[[ $rc -eq 0 ]] && grep -q "resuming at step 100" "$tmp/b.err"' "resume ($rc): $(tail -2 "$tmp/b.err")"
check 'cmp -s "$tmp/a/model/model.safetensors" "$tmp/b/model/model.safetensors"' "resumed weights are bit-identical"

# fine-tuning: from the export, and from a Marian directory
"$qkv" train --data "$tmp/data" --init "$tmp/a/model" --steps 10 --batch 16 --seq 16 --warmup 2 \
    --lr 1e-3 --eval-every 10 --eval-batches 10 --threads 2 --out "$tmp/ft" >/dev/null 2>"$tmp/ft.err"; rc=$?
ft=$(grep '"val_loss"' "$tmp/ft/metrics.jsonl" | sed 's/.*"val_loss": \([0-9.]*\).*/\1/')
check '[[ $rc -eq 0 ]] && awk -v a="${ft:-9}" -v b="${v200:-0}" "BEGIN{exit !(a < b + 0.2)}"' "fine-tune --init the export ($rc): val $ft after 10 steps vs $v200"
"$qkv" train --data "$tmp/data" --init "$tok" --steps 4 --batch 4 --seq 16 --warmup 1 --eval-every 4 \
    --eval-batches 2 --threads 2 --out "$tmp/ft2" >/dev/null 2>"$tmp/ft2.err"; rc=$?
check '[[ $rc -eq 0 && -f $tmp/ft2/model/model.safetensors ]]' "fine-tune --init a Marian directory ($rc): $(tail -2 "$tmp/ft2.err")"
"$qkv" translate --model "$tmp/ft2/model" "$tmp/test.src" >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 0 ]]' "its export translates ($rc)"

# --group-by-length 1: epochs of length-grouped batches (56 per epoch here); resuming inside
# the second epoch gives the same weights, bit for bit
"$qkv" train "${flags[@]}" --steps 70 --save-every 35 --eval-every 70 --group-by-length 1 \
    --out "$tmp/gl" >/dev/null 2>"$tmp/gl.err"; rc=$?
check '[[ $rc -eq 0 ]]' "--group-by-length 1 ($rc): $(tail -2 "$tmp/gl.err")"
cp -r "$tmp/gl" "$tmp/gl2" && rm -rf "$tmp/gl2/ckpt_00000070.safetensors" "$tmp/gl2/model"
"$qkv" train --resume --out "$tmp/gl2" >/dev/null 2>"$tmp/gl2.err"; rc=$?
check '[[ $rc -eq 0 ]] && cmp -s "$tmp/gl/model/model.safetensors" "$tmp/gl2/model/model.safetensors"' \
    "--group-by-length 1: resumed at step 35, bit-identical weights ($rc: $(tail -2 "$tmp/gl2.err"))"
check '! cmp -s "$tmp/gl/model/model.safetensors" "$tmp/a/model/model.safetensors"' "grouped batches differ from random draws"

# separate vocabularies: a tokenizer directory with separate_vocabs (target_vocab.json), and
# two different tokenizer directories for the sides; the export keeps them apart (its own
# target_vocab.json + separate_vocabs, separate embedding tables) and transformers decodes it
# as qkv translate does
sv=$src/tests/fixtures/marian/sepvocab
for how in same two; do
    if [[ $how == same ]]; then tflags=(--tokenizer "$sv"); else tflags=(--tokenizer "$tok" --target-tokenizer "$sv"); fi
    "$qkv" data prepare --source "$tmp/train.src" --target "$tmp/train.tgt" "${tflags[@]}" \
        --val-fraction 0.1 --out "$tmp/sv_$how" >/dev/null 2>"$tmp/sv.err"; rc=$?
    check '[[ $rc -eq 0 ]]' "data prepare, separate vocabularies ($how: $rc): $(tail -2 "$tmp/sv.err")"
    "$qkv" train --data "$tmp/sv_$how" --arch marian --n-layer 1 --n-embd 32 --n-head 2 --batch 16 \
        --seq 16 --steps 30 --warmup 5 --lr 2e-3 --eval-every 30 --eval-batches 2 --dropout 0 \
        --threads 2 --out "$tmp/svr_$how" >/dev/null 2>"$tmp/sv.err"; rc=$?
    m=$tmp/svr_$how/model
    check '[[ $rc -eq 0 && -f $m/target_vocab.json ]] && grep -q "\"separate_vocabs\": true" "$m/tokenizer_config.json"' \
        "separate vocabularies ($how): the export has target_vocab.json and separate_vocabs ($rc: $(tail -2 "$tmp/sv.err"))"
    check 'grep -q "\"share_encoder_decoder_embeddings\": false" "$m/config.json"' "separate vocabularies ($how): separate embedding tables"
    "$qkv" translate --model "$m" "$tmp/test.src" >"$tmp/sv.hyp" 2>"$tmp/sv.err"; rc=$?
    check '[[ $rc -eq 0 ]]' "separate vocabularies ($how): the export translates ($rc: $(head -2 "$tmp/sv.err"))"
    "$src/tests/run_python_check.sh" torch,transformers,sentencepiece "$src/tools/check_marian_export.py" \
        "$m" "$tmp/test.src" "$tmp/sv.hyp" >"$tmp/py.out" 2>&1; rc=$?
    if [[ $rc -ne 77 ]]; then
        check '[[ $rc -eq 0 ]]' "separate vocabularies ($how): MarianMTModel decodes as qkv translate: $(tail -3 "$tmp/py.out")"
    fi
done

# SIGTERM: the step finishes, a checkpoint is saved, exit 143; --resume goes on
"$qkv" train "${flags[@]}" --steps 1000000 --save-every 0 --eval-every 0 --out "$tmp/c" >/dev/null 2>"$tmp/c.err" &
pid=$!
for _ in $(seq 200); do grep -q '"step": 3,' "$tmp/c/metrics.jsonl" 2>/dev/null && break; sleep 0.1; done
kill -TERM $pid; wait $pid; rc=$?
n=$(ls "$tmp/c" | sed -n 's/^ckpt_0*\([0-9]*\)\.safetensors$/\1/p' | tail -1)
check '[[ $rc -eq 143 && -n $n ]]' "SIGTERM: exit 143 with a checkpoint ($rc, step ${n:-none})"
"$qkv" train --resume --out "$tmp/c" --steps $((${n:-0} + 2)) >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 0 && -f $tmp/c/model/model.safetensors ]]' "resume after SIGTERM ($rc)"

# usage errors
"$qkv" tokenizer train --vocab-size 300 --special "<|endoftext|>" --out "$tmp/bpe" "$tmp/train.src" >/dev/null 2>&1
"$qkv" data prepare --tokenizer "$tmp/bpe" --out "$tmp/lm" "$tmp/train.src" >/dev/null 2>&1
"$qkv" train --data "$tmp/lm" --arch marian --steps 2 --out "$tmp/u1" >/dev/null 2>"$tmp/u1.err"; rc=$?
check '[[ $rc -eq 2 ]] && grep -q "not a parallel dataset" "$tmp/u1.err"' "--arch marian on a token dataset: exit 2 ($rc)"
"$qkv" train --data "$tmp/data" --steps 2 --out "$tmp/u2" >/dev/null 2>"$tmp/u2.err"; rc=$?
check '[[ $rc -eq 2 ]] && grep -q "parallel dataset" "$tmp/u2.err"' "gpt2 on a parallel dataset: exit 2 ($rc)"
"$qkv" train --data "$tmp/data" --init "$tmp/a/model" --steps 2 --seq 16 --src-seq 32 --out "$tmp/u3" >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "--src-seq beyond the model's positions: exit 2 ($rc)"
"$qkv" train "${flags[@]}" --steps 2 --recompute layers --out "$tmp/u4" >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "--recompute layers for marian: exit 2 ($rc)"

echo "train_mt: $checks checks, $fail failed"
[[ $fail -eq 0 ]]
