#!/usr/bin/env bash
# test_train_cli.sh QKV SOURCE_DIR — `qkv train` end to end on a corpus made of the repo's own
# docs: a BPE trained by qkv, `qkv data prepare`, a tiny GPT-2 trained with validation,
# checkpoints, the loss plot and the Hugging Face export; then the promises of the run
# directory: --resume from an earlier checkpoint gives the same losses and the same final
# weights (byte for byte) as the uninterrupted run; SIGTERM finishes the step, saves and
# exits 143; a process killed while writing a checkpoint (ulimit -f: SIGXFSZ) leaves the
# previous checkpoint intact and resumable; a NaN stops the run before the update, exit 1,
# writing no checkpoint; --config equals the same flags; usage errors exit 2; --progress-json
# and --progress-ack (the Python package's driver).
set -uo pipefail
qkv=$1 src=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/qkv_train_cli.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail=0; checks=0
check() { checks=$((checks + 1)); if ! eval "$1"; then echo "FAIL: $2"; fail=$((fail + 1)); fi; }

"$qkv" tokenizer train --vocab-size 512 --special "<|endoftext|>" --out "$tmp/tok" \
    "$src"/docs/*.md "$src/README.md" >/dev/null 2>&1
check '[[ -f $tmp/tok/tokenizer.json ]]' "BPE trained"
"$qkv" data prepare --tokenizer "$tmp/tok" --val-fraction 0.25 --split-on "" --out "$tmp/data" \
    "$src"/docs/*.md "$src/README.md" >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 0 && -f $tmp/data/meta.json ]]' "data prepare ($rc)"

flags=(--data "$tmp/data" --n-layer 2 --n-embd 32 --n-head 2 --seq 32 --batch 4 --steps 12
       --warmup 2 --lr 3e-3 --eval-every 4 --eval-batches 2 --save-every 4 --keep 2 --threads 1)
"$qkv" train "${flags[@]}" --out "$tmp/a" >"$tmp/a.out" 2>"$tmp/a.err"; rc=$?
check '[[ $rc -eq 0 ]]' "train exit code $rc: $(tail -3 "$tmp/a.err")"
check '[[ $(grep -c "\"loss\"" "$tmp/a/metrics.jsonl") -eq 12 ]]' "12 step lines in metrics.jsonl"
check '[[ $(grep -c "\"val_loss\"" "$tmp/a/metrics.jsonl") -eq 3 ]]' "3 validations"
check 'head -c 4 "$tmp/a/loss.svg" | grep -q "<svg" && tail -c 8 "$tmp/a/loss.svg" | grep -q "</svg>"' "loss.svg"
check '[[ -f $tmp/a/ckpt_00000012.safetensors && -f $tmp/a/ckpt_00000008.safetensors && ! -e $tmp/a/ckpt_00000004.safetensors ]]' "keeps the last 2 checkpoints: $(ls "$tmp/a")"
check '[[ -f $tmp/a/model/config.json && -f $tmp/a/model/model.safetensors && -f $tmp/a/model/tokenizer.json ]]' "HF export"
first=$(sed -n 1p "$tmp/a/metrics.jsonl" | sed 's/.*"loss": \([0-9.]*\).*/\1/')
last=$(grep '"loss"' "$tmp/a/metrics.jsonl" | tail -1 | sed 's/.*"loss": \([0-9.]*\).*/\1/')
check 'awk -v a="$first" -v b="$last" "BEGIN{exit !(b < a)}"' "loss went down: $first -> $last"
# (a file, not $(...): a 12-step model may well generate only newlines, which $(...) would strip)
"$qkv" generate --model "$tmp/a/model" --prompt "The attention" --max-new-tokens 8 \
    >"$tmp/gen.out" 2>/dev/null; rc=$?
check '[[ $rc -eq 0 && -s $tmp/gen.out ]]' "qkv generate from the trained model ($rc)"

# Fine-tuning: start from the exported Hugging Face directory (--init); its first loss is
# near the trained model's, below the midpoint between a fresh model's and the trained one's.
"$qkv" train "${flags[@]}" --steps 2 --init "$tmp/a/model" --out "$tmp/ft" >/dev/null 2>&1; rc=$?
ft_first=$(sed -n 1p "$tmp/ft/metrics.jsonl" 2>/dev/null | sed 's/.*"loss": \([0-9.]*\).*/\1/')
check '[[ $rc -eq 0 ]] && awk -v a="$ft_first" -v b="$first" -v c="$last" "BEGIN{exit !(a < (b + c) / 2)}"' "--init starts from the checkpoint: first loss $ft_first vs fresh $first, trained $last ($rc)"

# transformers loads the export (skipped without a Python that has it).
"$src/tests/run_python_check.sh" torch,transformers "$src/tools/check_hf_export.py" "$tmp/a/model" \
    >"$tmp/py.out" 2>&1; rc=$?
if [[ $rc -eq 77 ]]; then cat "$tmp/py.out"; else
    check '[[ $rc -eq 0 ]]' "transformers loads the export: $(tail -3 "$tmp/py.out")"; fi

# Started by mpirun (its environment says 2 processes): a build without MPI refuses to train or
# fine-tune (each process would train alone into the same directory). (ldd's output is read
# whole first: `ldd | grep -q` under pipefail fails when grep exits before ldd has written all.)
if [[ $(ldd "$qkv" 2>/dev/null) != *libmpi* ]]; then
    OMPI_COMM_WORLD_SIZE=2 "$qkv" train "${flags[@]}" --out "$tmp/nompi" >/dev/null 2>"$tmp/nompi.err"; rc=$?
    check '[[ $rc -eq 2 && ! -e $tmp/nompi ]] && grep -q "built without MPI" "$tmp/nompi.err"' "mpirun without MPI: exit 2 ($rc)"
    OMPI_COMM_WORLD_SIZE=2 "$qkv" finetune --model "$tmp/a/model" --train x.tsv --out "$tmp/nompi_ft" >/dev/null 2>"$tmp/ft.err"; rc=$?
    check '[[ $rc -eq 2 && ! -e $tmp/nompi_ft ]] && grep -q "built without MPI" "$tmp/ft.err"' "finetune under mpirun without MPI: exit 2 ($rc)"
fi

losses() { grep '"loss"' "$1" | sed 's/"tokens_per_s.*//'; }

# Resume from step 8 (a copy of the run without its last checkpoint).
cp -r "$tmp/a" "$tmp/b"
rm -rf "$tmp/b/ckpt_00000012.safetensors" "$tmp/b/model"
"$qkv" train --resume --out "$tmp/b" >/dev/null 2>"$tmp/b.err"; rc=$?
check '[[ $rc -eq 0 ]]' "resume exit code $rc: $(tail -2 "$tmp/b.err")"
check 'grep -q "resuming at step 8" "$tmp/b.err"' "resumed at step 8"
check '[[ "$(losses "$tmp/a/metrics.jsonl")" == "$(losses "$tmp/b/metrics.jsonl")" ]]' "resumed losses equal the uninterrupted run's"
check 'cmp -s "$tmp/a/model/model.safetensors" "$tmp/b/model/model.safetensors"' "resumed final weights are bit-identical"

# --config FILE with the same settings gives the same run.
cat >"$tmp/cfg.json" <<EOF
{"data": "$tmp/data", "n_layer": 2, "n_embd": 32, "n_head": 2, "seq": 32, "batch": 4,
 "steps": 12, "warmup": 2, "lr": 0.003, "eval_every": 4, "eval_batches": 2, "save_every": 4,
 "keep": 2, "threads": 2}
EOF
"$qkv" train --config "$tmp/cfg.json" --out "$tmp/c" >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 0 ]]' "--config run ($rc)"
check '[[ "$(losses "$tmp/a/metrics.jsonl")" == "$(losses "$tmp/c/metrics.jsonl")" ]]' "--config (2 threads) equals the flags (1 thread)"

# Starts an endless run into $tmp/$2 (stderr to $tmp/$2.err), waits until it has logged $3
# losses (at most 5 s), sends it signal $1 and prints its exit code.
interrupted_run() {
    "$qkv" train "${flags[@]}" --steps 1000000 --eval-every 0 --save-every 0 --out "$tmp/$2" \
        >/dev/null 2>"$tmp/$2.err" &
    local pid=$!
    for _ in $(seq 50); do
        [[ $(grep -c '"loss"' "$tmp/$2/metrics.jsonl" 2>/dev/null) -ge $3 ]] && break
        sleep 0.1
    done
    kill -"$1" $pid
    wait $pid
    echo $?
}

# SIGTERM: finish the step, save, exit 143; then resume to a few more steps.
rc=$(interrupted_run TERM d 3)
check '[[ $rc -eq 143 ]]' "SIGTERM exit code $rc"
check 'grep -q "qkv train --resume" "$tmp/d.err"' "SIGTERM message says how to resume"
ck=$(ls "$tmp/d" | grep -c '^ckpt_.*\.safetensors$')
check '[[ $ck -eq 1 ]]' "a checkpoint was saved on SIGTERM ($ck)"
n=$(ls "$tmp/d" | sed -n 's/^ckpt_0*\([0-9][0-9]*\)\.safetensors$/\1/p')
"$qkv" train --resume --out "$tmp/d" --steps $((n + 2)) >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 0 && -f $tmp/d/ckpt_$(printf %08d $((n + 2))).safetensors ]]' "resume after SIGTERM ($rc)"

# Ctrl-C (SIGINT) does the same with exit code 130.
rc=$(interrupted_run INT d2 2)
check '[[ $rc -eq 130 && $(ls "$tmp/d2" | grep -c "^ckpt_") -eq 1 ]]' "SIGINT: exit $rc, checkpoint saved"

# A crash while writing a checkpoint: the previous one stays intact and resumable.
cp -r "$tmp/a" "$tmp/e"
before=$(md5sum <"$tmp/e/ckpt_00000012.safetensors")
(ulimit -f 100; exec "$qkv" train --resume --out "$tmp/e" --steps 16 >/dev/null 2>&1); rc=$?
check '[[ $rc -ne 0 ]]' "killed while writing the checkpoint ($rc)"
check '[[ "$(md5sum <"$tmp/e/ckpt_00000012.safetensors")" == "$before" ]]' "previous checkpoint untouched"
check '[[ ! -e $tmp/e/ckpt_00000016.safetensors ]]' "no partial checkpoint under the final name"
"$qkv" train --resume --out "$tmp/e" --steps 16 >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 0 && -f $tmp/e/ckpt_00000016.safetensors ]]' "resumed after the crash ($rc)"
check '[[ -z "$(ls "$tmp/e" | grep "\.tmp\.")" ]]' "leftover temporary files cleaned up"

# A NaN in the weights (wpe[0][0], read by every sequence): stop before the update, exit 1.
cp -r "$tmp/a" "$tmp/f"
rm -f "$tmp/f/ckpt_00000012.safetensors"
ck="$tmp/f/ckpt_00000008.safetensors"
hdr=$(od -An -tu8 -N8 "$ck" | tr -d ' ')
vocab=$(sed -n 's/.*"vocab_size": \([0-9]*\).*/\1/p' "$tmp/data/meta.json" | head -1)
printf '\x00\x00\xc0\x7f' | dd of="$ck" bs=1 seek=$((8 + hdr + vocab * 32 * 4)) conv=notrunc 2>/dev/null
# the checksum would catch the edit (test_checkpoint_damage_cli.sh): rename its key, same length,
# so the checkpoint reads as one from before checksums and the NaN reaches the step
perl -0777 -pi -e 's/"data_crc32c"/"data_crc32x"/' "$ck"
"$qkv" train --resume --out "$tmp/f" >/dev/null 2>"$tmp/f.err"; rc=$?
check '[[ $rc -eq 1 ]]' "NaN guard exit code $rc"
check 'grep -q "not finite" "$tmp/f.err"' "NaN guard message: $(cat "$tmp/f.err" | tail -2)"
check '[[ "$(ls "$tmp/f" | grep -c "^ckpt_")" -eq 1 ]]' "NaN guard wrote no checkpoint"
check 'grep -q "last good checkpoint is .*ckpt_00000008" "$tmp/f.err"' "NaN guard names the last good checkpoint"
check '[[ $(grep -c "\"loss\"" "$tmp/f/metrics.jsonl") -eq 8 ]]' "NaN guard: metrics.jsonl cut back to steps 1..8, no line for the failed step"

# Llama and BERT (masked LM) from scratch, on a tokenizer with a mask token: train, resume bit
# for bit, fine-tune the export (--init), run it (generate / embed), load it in transformers.
"$qkv" tokenizer train --vocab-size 512 --special "<|endoftext|>" --special "[MASK]" \
    --out "$tmp/tok2" "$src"/docs/*.md "$src/README.md" >/dev/null 2>&1
"$qkv" data prepare --tokenizer "$tmp/tok2" --val-fraction 0.25 --split-on "" --out "$tmp/data2" \
    "$src"/docs/*.md "$src/README.md" >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 0 ]]' "data prepare with a mask token ($rc)"
aflags=(--data "$tmp/data2" --n-layer 2 --n-embd 32 --n-head 4 --seq 32 --batch 4 --steps 8
        --warmup 2 --lr 3e-3 --eval-every 4 --eval-batches 2 --save-every 4 --keep 2 --threads 1)
for arch in llama bert; do
    extra=()
    [[ $arch == llama ]] && extra=(--n-kv-head 2)
    "$qkv" train --arch $arch "${aflags[@]}" "${extra[@]}" --out "$tmp/$arch" >/dev/null \
        2>"$tmp/$arch.err"; rc=$?
    check '[[ $rc -eq 0 ]]' "$arch: train exit code $rc: $(tail -2 "$tmp/$arch.err")"
    check 'grep -q "\"model_type\": \"$arch\"" "$tmp/$arch/model/config.json"' "$arch: exported as $arch"
    check '[[ $(grep -c "\"val_loss\"" "$tmp/$arch/metrics.jsonl") -eq 2 ]]' "$arch: 2 validations"
    cp -r "$tmp/$arch" "$tmp/$arch.r"
    rm -rf "$tmp/$arch.r/ckpt_00000008.safetensors" "$tmp/$arch.r/model"
    "$qkv" train --resume --out "$tmp/$arch.r" >/dev/null 2>&1; rc=$?
    check '[[ $rc -eq 0 ]] && cmp -s "$tmp/$arch/model/model.safetensors" "$tmp/$arch.r/model/model.safetensors"' "$arch: resumed weights are bit-identical ($rc)"
    "$qkv" train "${aflags[@]}" --steps 2 --init "$tmp/$arch/model" --out "$tmp/$arch.ft" \
        >/dev/null 2>"$tmp/$arch.ft.err"; rc=$?
    check '[[ $rc -eq 0 ]] && grep -q "qkv train: $arch" "$tmp/$arch.ft.err"' "$arch: --init from the export ($rc)"
    "$src/tests/run_python_check.sh" torch,transformers "$src/tools/check_hf_export.py" \
        "$tmp/$arch/model" >"$tmp/py.out" 2>&1; rc=$?
    if [[ $rc -eq 77 ]]; then cat "$tmp/py.out"; else
        check '[[ $rc -eq 0 ]]' "$arch: transformers loads the export: $(tail -3 "$tmp/py.out")"; fi
done
"$qkv" generate --model "$tmp/llama/model" --prompt "The attention" --max-new-tokens 8 \
    >"$tmp/gen2.out" 2>/dev/null; rc=$?
check '[[ $rc -eq 0 && -s $tmp/gen2.out ]]' "qkv generate from the trained Llama ($rc)"
echo "attention is all you need" | "$qkv" embed --model "$tmp/bert/model" >"$tmp/emb.out" 2>&1; rc=$?
check '[[ $rc -eq 0 ]] && grep -q "^\[" "$tmp/emb.out"' "qkv embed with the trained BERT ($rc): $(head -c 80 "$tmp/emb.out")"
"$qkv" train --arch bert "${aflags[@]}" --data "$tmp/data" --out "$tmp/nomask" >/dev/null \
    2>"$tmp/nomask.err"; rc=$?
check '[[ $rc -eq 2 ]] && grep -q "no token .\[MASK\]" "$tmp/nomask.err"' "bert without a mask token: exit $rc, $(tail -1 "$tmp/nomask.err")"
"$qkv" train --arch gpt3 "${aflags[@]}" --out "$tmp/badarch" >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "unknown --arch ($rc)"

# Usage errors.
"$qkv" train --out "$tmp/g" >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "missing --data ($rc)"
"$qkv" train "${flags[@]}" --out "$tmp/a" >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "refuses to overwrite a run ($rc)"
"$qkv" train --resume --out "$tmp/nothing" >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "--resume without a checkpoint ($rc)"
"$qkv" train --resume --out "$tmp/a" --batch 8 >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "--batch cannot change on resume ($rc)"
"$qkv" train "${flags[@]}" --n-head 3 --out "$tmp/h" >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "--n-head must divide --n-embd ($rc)"
"$qkv" train "${flags[@]}" --decay sometimes --out "$tmp/i" >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "bad --decay ($rc)"
"$qkv" train "${flags[@]}" --lr -1 --out "$tmp/j" >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "negative --lr ($rc)"
echo '{"data": "x", "bogus": 1}' >"$tmp/bad.json"
"$qkv" train --config "$tmp/bad.json" --out "$tmp/k" >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "unknown config key ($rc)"
"$qkv" train --data "$tmp/nonexistent" --out "$tmp/l" >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "missing dataset ($rc)"
# --progress-json FD: every metrics line as one JSON line on FD, the numbers at full precision;
# --progress-ack FD: after each line one byte is read, 's' or the end of the file stops the run
# after that step (checkpoint, exit 130 as Ctrl-C), anything else goes on
"$qkv" train "${flags[@]}" --steps 6 --out "$tmp/p" --progress-json 3 3>"$tmp/p.jsonl" >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 0 && $(wc -l <"$tmp/p.jsonl") -eq $(wc -l <"$tmp/p/metrics.jsonl") ]]' "--progress-json: a line per metrics line ($rc)"
check '[[ $(grep -c "\"kind\":\"step\"" "$tmp/p.jsonl") -eq 6 && $(grep -c "\"kind\":\"eval\"" "$tmp/p.jsonl") -eq 2 ]]' "--progress-json: 6 steps, 2 evaluations"
full=$(sed -n 1p "$tmp/p.jsonl" | sed 's/.*"loss":\([0-9.e-]*\).*/\1/')
file=$(sed -n 1p "$tmp/p/metrics.jsonl" | sed 's/.*"loss": \([0-9.]*\).*/\1/')
check '[[ $(printf %.6f "$full") == "$file" && ${#full} -gt ${#file} ]]' "--progress-json: full precision ($full, the file's $file)"
printf 'cs' | "$qkv" train "${flags[@]}" --steps 6 --out "$tmp/q" --progress-json 3 --progress-ack 0 \
    3>"$tmp/q.jsonl" >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 130 && $(wc -l <"$tmp/q.jsonl") -eq 2 && $(ls "$tmp/q" | grep -c ckpt_) -eq 1 && -f $tmp/q/ckpt_00000002.safetensors ]]' "--progress-ack s: stops after step 2 with its checkpoint ($rc: $(ls "$tmp/q"))"
"$qkv" train "${flags[@]}" --steps 6 --out "$tmp/q2" --progress-json 3 --progress-ack 0 \
    3>/dev/null </dev/null >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 130 && -f $tmp/q2/ckpt_00000001.safetensors ]]' "--progress-ack at its end: stops after step 1 ($rc)"
"$qkv" train "${flags[@]}" --out "$tmp/q3" --progress-json 9 >/dev/null 2>"$tmp/q3.err"; rc=$?
check '[[ $rc -eq 2 ]] && grep -q "not an open file descriptor" "$tmp/q3.err"' "--progress-json of a closed descriptor: exit 2 ($rc)"
help=$("$qkv" train --help); rc=$?; [[ $rc -eq 0 && $help == *resume* ]] || rc=1 # no grep -q on the pipe: it may close it early (SIGPIPE)
check '[[ $rc -eq 0 ]]' "--help"

echo "test_train_cli: $checks checks, $fail failed"
[[ $fail -eq 0 ]]
