#!/usr/bin/env bash
# test_report_cli.sh QKV SOURCE_DIR — `qkv report RUN`: the HTML page of a `qkv train` run and
# of a `qkv finetune` run: written atomically to RUN/report.html or --out, self-contained (no
# script, nothing loaded from elsewhere), one chart per metric with as many points as
# metrics.jsonl has lines, the summary's numbers recomputed here from metrics.jsonl, the
# configuration, the finetune reports and confusion matrices; text from the run escaped;
# hostile runs (no metrics, a directory instead of the file, garbage lines) and usage errors.
set -uo pipefail
qkv=$1 src=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/qkv_report_cli.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
. "$src/tests/cli/tiny_runs.sh"
fail=0; checks=0
check() { checks=$((checks + 1)); if ! eval "$1"; then echo "FAIL: $2"; fail=$((fail + 1)); fi; }
# the points of the polyline of series $2 (0-based) inside the chart figure id $1 of page $3
points() {
    awk -v id="$1" -v k="$2" '
        index($0, "<figure class=\"chart\" id=\"" id "\"") { inside = 1; n = 0 }
        inside && /<polyline/ { if (n++ == k) { sub(/.*points="/, ""); sub(/".*/, "");
                                print split($0, a, " "); exit } }
        inside && /<\/figure>/ { inside = 0 }' "$3"
}

tiny_data "$qkv" "$src" "$tmp"
run="$tmp/run <b>&amp;"   # text from the run (its path) must come out escaped
"$qkv" train --data "$tmp/data" --n-layer 2 --n-embd 32 --n-head 2 --seq 32 --batch 4 --steps 10 \
    --warmup 2 --lr 3e-3 --eval-every 5 --eval-batches 2 --threads 1 --out "$run" >/dev/null 2>&1
rc=$?
check '[[ $rc -eq 0 ]]' "train ($rc)"
"$qkv" report "$run" >/dev/null 2>"$tmp/r.err"; rc=$?
page=$run/report.html
check '[[ $rc -eq 0 && -s $page ]]' "report: exit $rc: $(cat "$tmp/r.err")"
check '[[ -z "$(ls "$run" | grep "\.tmp\.")" ]]' "no temporary file left"
check 'head -1 "$page" | grep -q "<!DOCTYPE html>" && tail -1 "$page" | grep -q "</html>"' "a whole HTML page"
check '! grep -qi "<script\|src=\"http\|href=\|@import\|url(" "$page"' "self-contained: no script, nothing loaded"
check 'grep -q "<title>qkv report: .*run &lt;b&gt;&amp;amp;</title>" "$page"' "the run's path is escaped in the title"
check '! grep -q "<b>" "$page"' "no markup from the run's path"
steps=$(grep -c '"loss"' "$run/metrics.jsonl")
evals=$(grep -c '"val_loss"' "$run/metrics.jsonl")
for id in chart-loss chart-lr chart-grad-norm chart-throughput chart-val-ppl; do
    check 'grep -q "id=\"$id\"" "$page"' "chart $id present"
done
check '! grep -q "id=\"chart-val\"" "$page"' "no accuracy chart for a language model"
check '[[ "$(points chart-loss 0 "$page")" == "$steps" ]]' "training loss: $(points chart-loss 0 "$page") points, $steps steps"
check '[[ "$(points chart-loss 1 "$page")" == "$evals" ]]' "validation loss: $(points chart-loss 1 "$page") points, $evals validations"
check '[[ "$(points chart-lr 0 "$page")" == "$steps" ]]' "learning rate points"
# the summary, recomputed from metrics.jsonl
last_loss=$(grep '"loss"' "$run/metrics.jsonl" | tail -1 | sed 's/.*"loss": \([0-9.]*\).*/\1/')
want=$(awk -v x="$last_loss" 'BEGIN { printf "%.6g", x }')
check 'grep -q "<th>last training loss</th><td>$want</td>" "$page"' "last training loss $want in the summary"
check 'grep -q "<th>steps logged</th><td>$steps</td>" "$page"' "steps logged $steps"
sum_s=$(grep '"loss"' "$run/metrics.jsonl" | sed 's/.*"step_s": \([0-9.]*\).*/\1/' | awk '{ s += $1 } END { printf "%.2f", s }')
check 'grep -q "<th>training time (sum of step times, s)</th><td>$sum_s</td>" "$page"' "training time $sum_s"
check 'grep -q "<th>n-embd</th><td>32</td>" "$page" && grep -q "<th>steps</th><td>10</td>" "$page"' "the configuration table"

# --out elsewhere; the run directory is left alone
"$qkv" report "$run" --out "$tmp/elsewhere.html" >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 0 && -s $tmp/elsewhere.html ]] && cmp -s "$tmp/elsewhere.html" "$page"' "--out writes the same page ($rc)"

# finetune: validation scores, the reports and confusion matrices
tiny_labelled "$tmp/train.tsv"
head -33 "$tmp/train.tsv" >"$tmp/test.tsv"
"$qkv" finetune --model "$src/tests/fixtures/cls/single" --train "$tmp/train.tsv" --test "$tmp/test.tsv" \
    --epochs 2 --batch 16 --lr 5e-3 --dropout off --threads 1 --out "$tmp/ft" >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 0 ]]' "finetune ($rc)"
"$qkv" report "$tmp/ft" >/dev/null 2>&1; rc=$?
fp=$tmp/ft/report.html
check '[[ $rc -eq 0 ]] && grep -q "id=\"chart-val\"" "$fp"' "finetune: the validation scores chart ($rc)"
check '[[ "$(points chart-val 1 "$fp")" == "$(grep -c "\"val_macro_f1\"" "$tmp/ft/metrics.jsonl")" ]]' "macro-F1 points"
check 'grep -q "id=\"report\"" "$fp" && grep -q "macro avg" "$fp"' "the validation report"
check 'grep -q "id=\"test_report\"" "$fp" && grep -q "id=\"test_confusion\"" "$fp"' "the test report and confusion matrix"
# the embedded confusion matrix is the run's confusion.svg, byte for byte
emb=$(grep -o 'id="confusion" alt="confusion matrix" src="data:image/svg+xml;base64,[^"]*' "$fp" | sed 's/.*base64,//')
check '[[ -n $emb ]] && cmp -s <(printf "%s" "$emb" | base64 -d) "$tmp/ft/confusion.svg"' "confusion.svg embedded whole"
check 'grep -q "<th>epochs</th><td>2</td>" "$fp"' "finetune's config.json in the page"
check 'grep -q "<th>best checkpoint</th><td>step" "$fp"' "the best checkpoint named"

# hostile runs and usage
mkdir -p "$tmp/empty" "$tmp/dirmetrics/metrics.jsonl"
"$qkv" report "$tmp/empty" >/dev/null 2>"$tmp/e.err"; rc=$?
check '[[ $rc -eq 2 ]] && grep -q "metrics.jsonl" "$tmp/e.err"' "no metrics.jsonl: exit 2 naming it ($rc)"
check '[[ ! -e $tmp/empty/report.html ]]' "nothing written for a failed report"
"$qkv" report "$tmp/dirmetrics" >/dev/null 2>"$tmp/e.err"; rc=$?
check '[[ $rc -eq 2 ]] && grep -q "not a regular file" "$tmp/e.err"' "metrics.jsonl a directory: exit 2 ($rc)"
"$qkv" report "$tmp/nonexistent" >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "a missing RUN: exit 2 ($rc)"
mkdir -p "$tmp/junk"
{ printf '{"step": 1, "loss": 2.0, "lr": 0.1, "grad_norm": 1, "tokens_per_s": 10, "step_s": 0.5}\n'
  printf 'not json\n[1,2]\n{"step": "x"}\n'; head -c 100000 /dev/zero | tr '\0' 'a'; printf '\n'
  printf '{"step": 2, "loss": 1.0, "lr": 0.1, "grad_norm": NaN}\n'
  printf '{"step": 3, "loss": 1e999, "lr": 0.1}\n{"step": 4, "loss": 0.5}\n'; printf '\xff\xfe{' ; } >"$tmp/junk/metrics.jsonl"
# 7 lines to skip: "not json", an array, a string step, the 100000-byte line, NaN, 1e999
# (jansson refuses the overflow) and the stray bytes at the end; steps 1 and 4 are read
printf '[1, 2' >"$tmp/junk/config.json"
"$qkv" report "$tmp/junk" >/dev/null 2>"$tmp/j.err"; rc=$?
check '[[ $rc -eq 0 ]] && grep -q "<th>lines skipped</th><td>7 " "$tmp/junk/report.html"' "garbage lines skipped and counted ($rc): $(grep -o "lines skipped</th><td>[0-9]*" "$tmp/junk/report.html")"
check 'grep -q "No readable config.json" "$tmp/junk/report.html"' "a broken config.json is said, not fatal"
"$qkv" report >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "no RUN: exit 2 ($rc)"
"$qkv" report "$run" --bogus >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "unknown option: exit 2 ($rc)"
"$qkv" report --help >"$tmp/h.out" 2>&1; rc=$?
check '[[ $rc -eq 0 ]] && grep -q "Usage: qkv report RUN" "$tmp/h.out"' "--help ($rc)"

echo "report_cli: $checks checks, $fail failed"
[[ $fail -eq 0 ]]
