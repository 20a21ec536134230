#!/usr/bin/env bash
# test_tensorboard_cli.sh QKV SOURCE_DIR — the TensorBoard event files of `qkv train` and
# `qkv finetune`: one events.out.tfevents.* per run directory; TensorBoard's own
# EventAccumulator (tools/check_tfevents.py) reads it and finds every scalar of metrics.jsonl
# at its step (and, with --tb-histograms, a histogram of every weight at each validation);
# --resume from an earlier checkpoint continues the same file with no step twice and nothing
# lost; a truncated last record (a crash mid-write) neither stops TensorBoard's reader nor
# survives the next resume; --no-tensorboard writes none. The TensorBoard checks are skipped,
# with a message, where no Python has the `tensorboard` package; the rest runs anyway.
set -uo pipefail
qkv=$1 src=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/qkv_tb_cli.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
. "$src/tests/cli/tiny_runs.sh"
fail=0; checks=0; skipped=0
check() { checks=$((checks + 1)); if ! eval "$1"; then echo "FAIL: $2"; fail=$((fail + 1)); fi; }
# tb_check RUN [--histograms] WHAT: TensorBoard reads RUN and agrees with its metrics.jsonl
tb_check() {
    local run=$1 what=${*: -1} extra=()
    [[ $# -eq 3 ]] && extra=("$2")
    "$src/tests/run_python_check.sh" tensorboard "$src/tools/check_tfevents.py" "$run" "${extra[@]}" \
        >"$tmp/py.out" 2>&1; local rc=$?
    if [[ $rc -eq 77 ]]; then skipped=$((skipped + 1)); return; fi
    check '[[ $rc -eq 0 ]]' "$what: $(grep -v WARNING "$tmp/py.out" | tail -3)"
    [[ $rc -eq 0 ]] && echo "$what: $(tail -1 "$tmp/py.out")"
}
events() { ls "$1"/events.out.tfevents.* 2>/dev/null; }

tiny_data "$qkv" "$src" "$tmp"; rc=$?
check '[[ $rc -eq 0 ]]' "data prepare ($rc)"

flags=(--data "$tmp/data" --n-layer 2 --n-embd 32 --n-head 2 --seq 32 --batch 4 --steps 12
       --warmup 2 --lr 3e-3 --eval-every 4 --eval-batches 2 --save-every 4 --keep 3 --threads 1)
"$qkv" train "${flags[@]}" --tb-histograms --out "$tmp/a" >/dev/null 2>"$tmp/a.err"; rc=$?
check '[[ $rc -eq 0 ]]' "train: exit $rc: $(tail -3 "$tmp/a.err")"
check '[[ $(events "$tmp/a" | wc -l) -eq 1 ]]' "one event file: $(ls "$tmp/a")"
check '[[ "$(basename "$(events "$tmp/a")")" =~ ^events\.out\.tfevents\.[0-9]{10}\.. ]]' \
      "the file's name is events.out.tfevents.<time>.<host>: $(events "$tmp/a")"
tb_check "$tmp/a" --histograms "TensorBoard reads the train run"

# --resume from step 4 (later checkpoints removed): the events past step 4 are cut, then
# written again; a truncated record appended first (as a crash mid-write leaves) is dropped.
cp -r "$tmp/a" "$tmp/b"
rm -f "$tmp/b"/ckpt_00000008.safetensors "$tmp/b"/ckpt_00000012.safetensors
ev=$(events "$tmp/b")
printf '\x40\x00\x00\x00\x00\x00\x00\x00\x01\x02\x03' >>"$ev"
tb_check "$tmp/b" --histograms "TensorBoard reads a file whose last record is truncated"
"$qkv" train --resume --out "$tmp/b" >/dev/null 2>"$tmp/b.err"; rc=$?
check '[[ $rc -eq 0 ]]' "resume: exit $rc: $(tail -2 "$tmp/b.err")"
check '[[ "$(events "$tmp/b")" == "$ev" ]]' "the resumed run continues the same event file: $(events "$tmp/b")"
check '[[ ! -e $(ls "$tmp/b"/*.tmp.* 2>/dev/null | head -1) ]]' "no temporary file left"
tb_check "$tmp/b" --histograms "TensorBoard reads the resumed run (no duplicate, none lost)"

# --resume with nothing past the checkpoint (stopped at step 12, then --steps 16): appended as is
cp -r "$tmp/a" "$tmp/c"
head_bytes=$(wc -c <"$(events "$tmp/c")")
"$qkv" train --resume --steps 16 --out "$tmp/c" >/dev/null 2>"$tmp/c.err"; rc=$?
check '[[ $rc -eq 0 ]]' "resume --steps 16: exit $rc: $(tail -2 "$tmp/c.err")"
check 'cmp -s -n "$head_bytes" "$(events "$tmp/a")" "$(events "$tmp/c")"' \
      "a resume with nothing to cut leaves the earlier records byte for byte"
check '[[ $(wc -c <"$(events "$tmp/c")") -gt $head_bytes ]]' "and appends"
tb_check "$tmp/c" --histograms "TensorBoard reads the extended run"

"$qkv" train "${flags[@]}" --steps 4 --no-tensorboard --out "$tmp/off" >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 0 && -s $tmp/off/metrics.jsonl && -z "$(events "$tmp/off")" ]]' \
      "--no-tensorboard writes no event file ($rc): $(ls "$tmp/off")"

# qkv finetune: validation accuracy and macro-F1 too
tiny_labelled "$tmp/train.tsv"
"$qkv" finetune --model "$src/tests/fixtures/cls/single" --train "$tmp/train.tsv" --epochs 2 \
    --batch 16 --lr 5e-3 --dropout off --threads 1 --tb-histograms --out "$tmp/ft" \
    >/dev/null 2>"$tmp/ft.err"; rc=$?
check '[[ $rc -eq 0 ]]' "finetune: exit $rc: $(tail -3 "$tmp/ft.err")"
check '[[ $(events "$tmp/ft" | wc -l) -eq 1 && -s $tmp/ft/config.json ]]' "finetune: one event file and config.json"
tb_check "$tmp/ft" --histograms "TensorBoard reads the finetune run"
check 'grep -q "\"val_macro_f1\": [0-9]" "$tmp/ft/metrics.jsonl"' "finetune logged macro-F1"

if [[ $skipped -gt 0 ]]; then
    echo "SKIP (part): $skipped TensorBoard reads skipped: no Python with the tensorboard package" \
         "(tools/.venv: pip install -r tools/requirements.txt)"
fi
echo "tensorboard_cli: $checks checks, $fail failed"
[[ $fail -eq 0 ]]
