#!/usr/bin/env bash
# test_evaluate_mt.sh QKV SOURCE_DIR — `qkv evaluate --hyp --ref` (translation mode) against
# the sacrebleu CLI: its text output on tests/fixtures/sacrebleu/cli (written by
# tools/gen_sacrebleu_fixtures.py running `sacrebleu ... -f text`) must be the same bytes for
# one and two references, --width, chrF++, the intl tokenizer, --lowercase and
# --sentence-level (sacrebleu -sl); --json must
# hold the same scores; and bad input must exit 2 with a message: reference and hypothesis
# files of different lengths, invalid UTF-8 (naming the line), a NUL byte, a directory, a
# missing --ref, unknown metric or tokenizer.
set -uo pipefail
qkv=$1 src=$2
fix=$src/tests/fixtures/sacrebleu/cli
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0; checks=0
check() { checks=$((checks + 1)); if ! eval "$1"; then echo "FAIL: $2"; fail=$((fail + 1)); fi; }

cd "$fix" || exit 1
"$qkv" evaluate --hyp hyp.txt --ref ref1.txt > "$tmp/a.txt"
check 'cmp -s "$tmp/a.txt" expected_default_1ref.txt' "one reference differs from sacrebleu"
"$qkv" evaluate --hyp hyp.txt --ref ref1.txt --ref ref2.txt --metric chrf,bleu > "$tmp/b.txt"
check 'cmp -s "$tmp/b.txt" expected_default_2ref.txt' "two references differ from sacrebleu"
"$qkv" evaluate --hyp hyp.txt --ref ref1.txt --metric bleu,chrf++ --width 4 > "$tmp/c.txt"
check 'cmp -s "$tmp/c.txt" expected_w4_chrfpp.txt' "--width 4 / chrf++ differ from sacrebleu"
"$qkv" evaluate --hyp hyp.txt --ref ref1.txt --ref ref2.txt --tokenize intl --lowercase \
    --width 3 > "$tmp/d.txt"
check 'cmp -s "$tmp/d.txt" expected_intl_lc.txt' "intl / lowercase differ from sacrebleu"
# stdin as the hypothesis
"$qkv" evaluate --hyp - --ref ref1.txt < hyp.txt > "$tmp/e.txt"
check 'cmp -s "$tmp/e.txt" expected_default_1ref.txt' "--hyp - differs"
# JSON: the printed text inside, the unrounded score rounding to the printed one
"$qkv" evaluate --hyp hyp.txt --ref ref1.txt --width 4 --json "$tmp/s.json" > /dev/null
check 'grep -q "\"name\": \"BLEU\"" "$tmp/s.json" && grep -q "\"name\": \"chrF2\"" "$tmp/s.json"' \
    "--json lacks a metric"
bleu=$(awk -F'= ' '/BLEU/ {split($2, a, " "); print a[1]}' expected_w4_chrfpp.txt)
score=$(grep -m1 '"score"' "$tmp/s.json" | sed 's/[^0-9.]//g')
check '[ "$(printf "%.4f" "$score")" = "$bleu" ]' "--json BLEU score $score is not $bleu"
"$qkv" evaluate --hyp hyp.txt --ref ref1.txt --json - > "$tmp/j.txt"
check 'head -c1 "$tmp/j.txt" | grep -q "\["' "--json - does not print JSON on stdout"

# sentence level: `sacrebleu -sl` line by line
sl() { local name=$1; shift; "$qkv" evaluate --hyp hyp.txt --sentence-level "$@" > "$tmp/$name.txt"
       check 'cmp -s "$tmp/$name.txt" expected_$name.txt' "--sentence-level $name differs from sacrebleu -sl"; }
sl sl_bleu --ref ref1.txt --metric bleu
sl sl_bleu_2ref_w3 --ref ref1.txt --ref ref2.txt --metric bleu --width 3 --tokenize intl
sl sl_chrf --ref ref1.txt --metric chrf
sl sl_chrfpp_lc --ref ref1.txt --ref ref2.txt --metric chrf++ --lowercase --width 2
"$qkv" evaluate --hyp hyp.txt --ref ref1.txt --metric bleu --sentence-level --json - > "$tmp/slj.txt"
check '[ "$(grep -c "\"line\":" "$tmp/slj.txt")" -eq "$(wc -l < hyp.txt)" ]' \
    "--sentence-level --json: not one object a line"
"$qkv" evaluate --hyp hyp.txt --ref ref1.txt --sentence-level 2> "$tmp/err"; rc=$?
check '[ $rc -eq 2 ] && grep -q "one metric" "$tmp/err"' "--sentence-level with two metrics: exit $rc"

# bad input
head -n 5 ref1.txt > "$tmp/short.txt"
"$qkv" evaluate --hyp hyp.txt --ref "$tmp/short.txt" 2> "$tmp/err"; rc=$?
check '[ $rc -eq 2 ] && grep -q "has 5 lines" "$tmp/err"' "line counts: exit $rc"
{ head -n 2 hyp.txt; printf 'bad \xff byte\n'; tail -n +4 hyp.txt; } > "$tmp/bad.txt"
"$qkv" evaluate --hyp "$tmp/bad.txt" --ref ref1.txt 2> "$tmp/err"; rc=$?
check '[ $rc -eq 2 ] && grep -q "hypothesis, line 3: invalid UTF-8" "$tmp/err"' \
    "invalid UTF-8: exit $rc: $(cat "$tmp/err")"
{ head -n 1 ref1.txt; printf 'nul\0byte\n'; tail -n +3 ref1.txt; } > "$tmp/nul.txt"
"$qkv" evaluate --hyp hyp.txt --ref "$tmp/nul.txt" 2> "$tmp/err"; rc=$?
check '[ $rc -eq 2 ] && grep -q ":2: a NUL byte" "$tmp/err"' "NUL byte: exit $rc"
"$qkv" evaluate --hyp "$tmp" --ref ref1.txt 2> /dev/null; rc=$?
check '[ $rc -eq 2 ]' "a directory as --hyp: exit $rc"
"$qkv" evaluate --hyp hyp.txt 2> /dev/null; rc=$?
check '[ $rc -eq 2 ]' "no --ref: exit $rc"
"$qkv" evaluate --hyp hyp.txt --ref ref1.txt --metric ter 2> /dev/null; rc=$?
check '[ $rc -eq 2 ]' "unknown metric: exit $rc"
"$qkv" evaluate --hyp hyp.txt --ref ref1.txt --tokenize zh 2> /dev/null; rc=$?
check '[ $rc -eq 2 ]' "unknown tokenizer: exit $rc"
: > "$tmp/empty.txt"
"$qkv" evaluate --hyp "$tmp/empty.txt" --ref "$tmp/empty.txt" 2> /dev/null; rc=$?
check '[ $rc -eq 2 ]' "empty files: exit $rc"

echo "evaluate_mt: $checks checks, $fail failed"
[ $fail -eq 0 ]
