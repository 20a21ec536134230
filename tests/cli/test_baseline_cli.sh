#!/usr/bin/env bash
# test_baseline_cli.sh QKV SOURCE_DIR — `qkv baseline` end to end on tiny data
# (tests/fixtures/baseline, tools/gen_baseline_fixture.py) with the tiny BERT of
# tests/fixtures/cls/single: the majority-class report and the logistic-regression reports
# (C 1, C 0.1, and text pairs embedded separately and concatenated) byte for byte against
# scikit-learn's classification_report of DummyClassifier / LogisticRegression on
# transformers' embeddings; --val, --json (written whole, atomically), thread counts not
# changing a byte, and exit 2 with FILE:LINE for bad input.
set -uo pipefail
qkv=$1 src=$2
fix=$src/tests/fixtures/baseline model=$src/tests/fixtures/cls/single
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0; checks=0
check() { checks=$((checks + 1)); if ! eval "$1"; then echo "FAIL: $2"; fail=$((fail + 1)); fi; }
# block FILE TITLE_PREFIX N: the N-th report (1-based) whose "== " title starts with the prefix
block() {
    awk -v p="== $2" -v want="$3" 'index($0, p) == 1 { k++; if (k == want) { f = 1; next } }
        f && /^accuracy [0-9]/ { f = 0 } f' "$1" | sed '$d'
}

"$qkv" baseline --model "$model" --train "$fix/train.tsv" --test "$fix/test.tsv" \
    --json "$tmp/out.json" > "$tmp/out" 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 0 ]]' "exit $rc: $(cat "$tmp/err")"
check 'block "$tmp/out" majority 1 | cmp -s - "$fix/majority.txt"' "majority report = sklearn's"
check 'block "$tmp/out" logistic 1 | cmp -s - "$fix/logreg.txt"' "logreg report (C 1) = sklearn's"
# the summary line repeats the report's accuracy
acc=$(block "$tmp/out" logistic 1 | awk '$1 == "accuracy" { print $2 }')
check 'grep -q "^accuracy $acc  macro-F1 " "$tmp/out"' "summary line with accuracy $acc"
check 'grep -q "converged" "$tmp/out" && ! grep -q "NOT converged" "$tmp/out"' "the fit converged"
check '[[ -s "$tmp/out.json" ]] && ! ls "$tmp" | grep -q "\.tmp"' "--json written, no temporary left"
check 'grep -q "\"majority\"" "$tmp/out.json" && grep -q "\"logreg\"" "$tmp/out.json" && grep -q "\"macro_f1\"" "$tmp/out.json" && grep -q "\"label\": \"happy\"" "$tmp/out.json"' "--json holds both baselines"
json_acc=$(awk '/"logreg"/ { f = 1 } f && /"accuracy"/ { gsub(/[",]/, ""); print $2; exit }' "$tmp/out.json")
check 'awk -v a="$json_acc" -v b="$acc" "BEGIN { exit !(a - b < 5e-5 && b - a < 5e-5) }"' "--json accuracy $json_acc ~ report's $acc"

"$qkv" baseline --model "$model" --train "$fix/train.tsv" --test "$fix/test.tsv" --C 0.1 > "$tmp/c01" 2>/dev/null
check 'block "$tmp/c01" logistic 1 | cmp -s - "$fix/logreg_c01.txt"' "logreg report (--C 0.1) = sklearn's"
"$qkv" baseline --model "$model" --train "$fix/pairs_train.jsonl" --test "$fix/pairs_test.jsonl" > "$tmp/pairs" 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 0 ]] && block "$tmp/pairs" logistic 1 | cmp -s - "$fix/pairs_logreg.txt"' "pairs: [e(text), e(pair)] report = sklearn's ($rc: $(cat "$tmp/err"))"
check 'grep -q "48 features (text and text_pair" "$tmp/pairs"' "pairs: 2 x 24 features"

# --val: the same numbers for the same file; threads change nothing
"$qkv" baseline --model "$model" --train "$fix/train.tsv" --test "$fix/test.tsv" --val "$fix/test.tsv" --threads 1 > "$tmp/val" 2>/dev/null
check 'block "$tmp/val" logistic 2 | cmp -s - "$fix/logreg.txt" && block "$tmp/val" majority 2 | cmp -s - "$fix/majority.txt"' "--val reports"
"$qkv" baseline --model "$model" --train "$fix/train.tsv" --test "$fix/test.tsv" --threads 2 > "$tmp/t2" 2>/dev/null
check 'cmp -s <(grep -v " s$" "$tmp/out") <(grep -v " s$" "$tmp/t2")' "--threads 2 = default threads, byte for byte"
"$qkv" baseline --model "$model" --train "$fix/train.tsv" --test "$fix/test.tsv" --digits 2 > "$tmp/d2" 2>/dev/null
check '[[ $(grep -Ec "^    accuracy +0\.[0-9]{2} +21$" "$tmp/d2") -eq 2 ]]' "--digits 2: both reports"

# errors: exit 2 and a message naming the problem
bad() { # bad NAME NEEDLE ARGS...: exit 2 and NEEDLE on stderr, nothing written to --json
    local name=$1 needle=$2; shift 2
    "$qkv" baseline "$@" > /dev/null 2>"$tmp/err"; rc=$?
    check '[[ $rc -eq 2 ]] && grep -qF -- "$needle" "$tmp/err"' "$name: exit 2 with '$needle' ($rc: $(cat "$tmp/err"))"
}
printf 'text\tlabel\nthe movie\thappy\na cell\tunknown\n' > "$tmp/badlabel.tsv"
bad "unknown test label" "badlabel.tsv:3: unknown label 'unknown'" --model "$model" --train "$fix/train.tsv" --test "$tmp/badlabel.tsv"
printf 'text\tlabel\nthe movie\thappy\na cell\thappy\n' > "$tmp/one.tsv"
bad "one class" "two or more" --model "$model" --train "$tmp/one.tsv" --test "$fix/test.tsv"
printf 'text\tlabel\nthe movie\n' > "$tmp/short.tsv"
bad "malformed train" "short.tsv:2:" --model "$model" --train "$tmp/short.tsv" --test "$fix/test.tsv"
bad "missing test" "--test are required" --model "$model" --train "$fix/train.tsv"
bad "bad C" "--C wants a number > 0" --model "$model" --train "$fix/train.tsv" --test "$fix/test.tsv" --C -1
bad "unknown option" "unknown option" --model "$model" --train "$fix/train.tsv" --test "$fix/test.tsv" --bogus
bad "no such file" "$tmp/none.tsv" --model "$model" --train "$tmp/none.tsv" --test "$fix/test.tsv"
bad "no model" "$tmp/nomodel" --model "$tmp/nomodel" --train "$fix/train.tsv" --test "$fix/test.tsv"
"$qkv" baseline --model "$model" --train "$fix/train.tsv" --test "$fix/test.tsv" --json "$tmp/no/dir/x.json" > /dev/null 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 1 ]] && grep -q "cannot write" "$tmp/err"' "--json into a missing directory: exit 1 ($rc)"
"$qkv" baseline --help > "$tmp/help"; rc=$?
check '[[ $rc -eq 0 ]] && grep -q "majority" "$tmp/help"' "--help"

echo "$((checks - fail)) passed, $fail failed"
[[ $fail -eq 0 ]]
