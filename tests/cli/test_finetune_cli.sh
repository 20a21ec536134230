#!/usr/bin/env bash
# test_finetune_cli.sh QKV SOURCE_DIR — `qkv finetune` end to end on the tiny classifier of
# tests/fixtures/cls/single (vocabulary of 120 words) and a synthetic labelled set the test
# writes (a keyword decides the label, so a working fine-tune must learn it): the run directory's
# files, the exported model classifying with `qkv classify`, the reports, a SIGINT + --resume
# giving the bit-identical model of an uninterrupted run, label handling, and exit 2 for bad
# usage and bad data with FILE:LINE.
set -uo pipefail
qkv=$1 src=$2
model=$src/tests/fixtures/cls/single
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0; checks=0
check() { checks=$((checks + 1)); if ! eval "$1"; then echo "FAIL: $2"; fail=$((fail + 1)); fi; }

source "$(dirname "$0")/cls_data.sh" # make_data
make_data 400 1 > "$tmp/train.tsv"
make_data 100 2 > "$tmp/test.tsv"
common=(--model "$model" --train "$tmp/train.tsv" --epochs 12 --batch 16 --lr 5e-3 --dropout off
        --threads 1)

"$qkv" finetune "${common[@]}" --test "$tmp/test.tsv" --out "$tmp/a" > "$tmp/a.out" 2>"$tmp/a.err"; rc=$?
check '[[ $rc -eq 0 ]]' "finetune: exit $rc: $(tail -3 "$tmp/a.err")"
for f in metrics.jsonl loss.svg f1.svg best.safetensors report.txt confusion.svg test_report.txt \
         test_confusion.svg model/config.json model/model.safetensors model/tokenizer.json; do
    check '[[ -s "$tmp/a/$f" ]]' "run directory lacks $f"
done
check '[[ $(ls "$tmp/a"/ckpt_*.safetensors | wc -l) -eq 2 ]]' "--keep 2 (default) checkpoints kept"
check 'grep -q "\"id2label\"" "$tmp/a/model/config.json" && grep -q "\"positive\"" "$tmp/a/model/config.json"' \
      "the export names the labels"
check 'grep -q "BertForSequenceClassification" "$tmp/a/model/config.json"' "the export's architecture"
# it learned the keyword rule: test accuracy in the report
acc=$(awk '$1 == "accuracy" { print $2 }' "$tmp/a/test_report.txt")
check 'awk -v a="$acc" "BEGIN { exit !(a >= 0.9) }"' "test accuracy $acc < 0.9: the fine-tune did not learn"
check 'grep -q "macro avg" "$tmp/a.out" && grep -q "confusion matrix" "$tmp/a.out"' "reports printed"
check 'grep -q "\"val_macro_f1\"" "$tmp/a/metrics.jsonl" && grep -q "\"best\": true" "$tmp/a/metrics.jsonl"' \
      "metrics.jsonl has the evaluations and marks the best"
check '! grep -q "NaN\|nan\|inf" "$tmp/a/metrics.jsonl"' "metrics.jsonl holds no NaN / Infinity"
# the exported model classifies as the report says
printf 'the movie was good\nawful film\nvote on the law\n' > "$tmp/q.txt"
"$qkv" classify --model "$tmp/a/model" "$tmp/q.txt" > "$tmp/q.out" 2>/dev/null; rc=$?
check '[[ $rc -eq 0 ]]' "qkv classify on the export: exit $rc"
check '[[ "$(cut -f1 "$tmp/q.out" | paste -sd,)" == "positive,negative,neutral" ]]' \
      "qkv classify on the export: $(cut -f1 "$tmp/q.out" | paste -sd,)"

# SIGINT, then --resume: the same model as the uninterrupted run (every step is deterministic)
"$qkv" finetune "${common[@]}" --test "$tmp/test.tsv" --out "$tmp/b" > /dev/null 2>"$tmp/b.err" &
pid=$!
for _ in $(seq 1 2000); do
    [[ -f "$tmp/b/metrics.jsonl" && $(wc -l < "$tmp/b/metrics.jsonl") -ge 60 ]] && break
    sleep 0.01
done
kill -INT $pid; wait $pid; rc=$?
if [[ $rc -eq 0 ]]; then
    echo "note: the run finished before SIGINT arrived; the resume check is weaker this time"
else
    check '[[ $rc -eq 130 ]]' "SIGINT: exit $rc, want 130"
    check 'grep -q "finetune --resume --out" "$tmp/b.err"' "SIGINT prints how to resume"
    "$qkv" finetune --resume --out "$tmp/b" --threads 1 > /dev/null 2>"$tmp/b2.err"; rc=$?
    check '[[ $rc -eq 0 ]]' "--resume: exit $rc: $(tail -2 "$tmp/b2.err")"
fi
check 'cmp -s "$tmp/a/model/model.safetensors" "$tmp/b/model/model.safetensors"' \
      "interrupted + resumed model differs from the uninterrupted one"
check 'cmp -s "$tmp/a/test_report.txt" "$tmp/b/test_report.txt"' "resumed test report differs"

# LoRA: adapters (PEFT files) besides the merged model; the base + adapter classifies as the
# merged model does; resuming from an earlier checkpoint (the newest removed) ends identical
"$qkv" finetune "${common[@]}" --epochs 3 --lora-r 4 --out "$tmp/l" > /dev/null 2>"$tmp/l.err"; rc=$?
check '[[ $rc -eq 0 ]] && grep -q "LoRA r 4 on query,value" "$tmp/l.err"' "LoRA run: exit $rc: $(tail -2 "$tmp/l.err")"
check '[[ -s "$tmp/l/adapter/adapter_config.json" && -s "$tmp/l/adapter/adapter_model.safetensors" ]]' \
      "LoRA run writes the PEFT adapter"
check 'grep -q "\"SEQ_CLS\"" "$tmp/l/adapter/adapter_config.json"' "the adapter's task type"
"$qkv" classify --model "$model" --lora "$tmp/l/adapter" "$tmp/q.txt" > "$tmp/ql1" 2>/dev/null
"$qkv" classify --model "$tmp/l/model" "$tmp/q.txt" > "$tmp/ql2" 2>/dev/null
check '[[ -s "$tmp/ql1" ]] && diff <(cut -f1 "$tmp/ql1") <(cut -f1 "$tmp/ql2") > /dev/null' \
      "base + --lora adapter and the merged model disagree"
cp -r "$tmp/l" "$tmp/l2"
rm -rf "$tmp/l2/model" "$tmp/l2/adapter" "$(ls "$tmp/l2"/ckpt_*.safetensors | tail -1)"
"$qkv" finetune --resume --out "$tmp/l2" > /dev/null 2>"$tmp/l2.err"; rc=$?
check '[[ $rc -eq 0 ]]' "LoRA --resume: exit $rc: $(tail -2 "$tmp/l2.err")"
check 'cmp -s "$tmp/l/model/model.safetensors" "$tmp/l2/model/model.safetensors" &&
       cmp -s "$tmp/l/adapter/adapter_model.safetensors" "$tmp/l2/adapter/adapter_model.safetensors"' \
      "LoRA resumed from an earlier checkpoint ends differently"

# a finished run: --resume has nothing to do and exits 0; a new run into it is refused
"$qkv" finetune --resume --out "$tmp/a" > /dev/null 2>&1; rc=$?
check '[[ $rc -eq 0 ]]' "--resume of a finished run: exit $rc"
"$qkv" finetune "${common[@]}" --out "$tmp/a" > /dev/null 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 2 ]] && grep -q "already holds a run" "$tmp/err"' "a new run into a run directory: exit $rc"

# labels: --labels fixes the order; an unknown label in the validation file names FILE:LINE
"$qkv" finetune "${common[@]}" --epochs 1 --labels neutral,negative,positive --out "$tmp/c" \
    > /dev/null 2>&1; rc=$?
check '[[ $rc -eq 0 ]] && grep -q "\"0\": \"neutral\"" "$tmp/c/model/config.json"' "--labels order in id2label"
{ head -5 "$tmp/test.tsv"; printf 'good game\tsurprised\n'; } > "$tmp/badval.tsv"
"$qkv" finetune "${common[@]}" --val "$tmp/badval.tsv" --out "$tmp/d" > /dev/null 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 2 ]] && grep -q "badval.tsv:6: unknown label" "$tmp/err"' \
      "unknown validation label: exit $rc: $(cat "$tmp/err")"
printf 'text\tlabel\n\tpositive\n' > "$tmp/empty.tsv"
"$qkv" finetune --model "$model" --train "$tmp/empty.tsv" --out "$tmp/e" > /dev/null 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 2 ]] && grep -q "empty.tsv:2" "$tmp/err"' "empty text: exit $rc: $(cat "$tmp/err")"

# a TSV whose text starts with '"' but is not quoted: lines merge into one record; warned
{ printf 'text\tlabel\n"Quoted start.\tpositive\nplain good\tpositive\nend"\tnegative\n'
  tail -n +2 "$tmp/train.tsv" | head -40; } > "$tmp/quotes.tsv"
"$qkv" finetune --model "$model" --train "$tmp/quotes.tsv" --epochs 1 --out "$tmp/qt" > /dev/null 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 0 ]] && grep -q "quotes.tsv: 1 record(s) run over several lines" "$tmp/err" && grep -q "from line 2" "$tmp/err"' \
      "multi-line quoted record: exit $rc, no warning: $(head -2 "$tmp/err")"
"$qkv" finetune --model "$model" --train "$tmp/quotes.tsv" --epochs 1 --no-quotes --out "$tmp/qt2" > /dev/null 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 0 ]] && ! grep -q "several lines" "$tmp/err"' "--no-quotes: exit $rc, still warned"
"$qkv" evaluate --model "$tmp/a/model" --data "$tmp/quotes.tsv" > /dev/null 2>"$tmp/err"
check 'grep -q "qkv evaluate: warning: .*quotes.tsv: 1 record(s) run over several lines" "$tmp/err"' \
      "qkv evaluate does not warn about the merged lines: $(head -2 "$tmp/err")"

# usage
"$qkv" finetune --train "$tmp/train.tsv" --out "$tmp/f" > /dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "no --model: exit $rc"
"$qkv" finetune "${common[@]}" > /dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "no --out: exit $rc"
"$qkv" finetune "${common[@]}" --lr -1 --out "$tmp/g" > /dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "--lr -1: exit $rc"
"$qkv" finetune --resume --out "$tmp/nothing" > /dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "--resume without a run: exit $rc"
"$qkv" finetune --model "$src/tests/fixtures/train/gpt2_tiny" --train "$tmp/train.tsv" \
    --out "$tmp/h" > /dev/null 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 2 ]]' "a GPT-2 directory: exit $rc: $(cat "$tmp/err")"
# --progress-json / --progress-ack (the Python package's driver; more in test_train_cli.sh):
# a JSON line per metrics line with the evaluation's scores, 's' stops after that step
"$qkv" finetune "${common[@]}" --epochs 1 --out "$tmp/p" --progress-json 3 3>"$tmp/p.jsonl" \
    >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 0 && $(wc -l <"$tmp/p.jsonl") -eq $(wc -l <"$tmp/p/metrics.jsonl") ]] && grep -q "\"kind\":\"eval\".*" "$tmp/p.jsonl" && grep "\"kind\":\"eval\"" "$tmp/p.jsonl" | grep -q "val_macro_f1"' "finetune --progress-json ($rc)"
printf 'ccs' | "$qkv" finetune "${common[@]}" --out "$tmp/q" --progress-json 3 --progress-ack 0 \
    3>/dev/null >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 130 && -f $tmp/q/ckpt_00000003.safetensors && ! -d $tmp/q/model ]]' "finetune --progress-ack s: stops after step 3 ($rc: $(ls "$tmp/q"))"
"$qkv" finetune --help > "$tmp/help"; rc=$?
check '[[ $rc -eq 0 ]] && grep -q "warmup" "$tmp/help"' "--help explains the schedule"
echo "finetune_cli: $((checks - fail)) passed, $fail failed"
[[ $fail -eq 0 ]]
