#!/usr/bin/env bash
# test_classify_cli.sh QKV SOURCE_DIR — `qkv classify` end to end on the tiny classifiers of
# tests/fixtures/cls (tools/gen_cls_golden.py): every label and score against transformers'
# text-classification pipeline (1e-5), plain text, --pairs and JSON lines agreeing, the output
# forms (default, --top-k, --all, --json, --logits), batch and thread counts not changing a
# bit, and exit 2 with FILE:LINE for bad input and for a model without a classification head.
set -uo pipefail
qkv=$1 src=$2
fix=$src/tests/fixtures/cls
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0; checks=0
check() { checks=$((checks + 1)); if ! eval "$1"; then echo "FAIL: $2"; fail=$((fail + 1)); fi; }
# same_tsv A B: the same lines, fields alternating label (equal) and number (within 1e-5)
same_tsv() {
    awk -F'\t' 'NR == FNR { want[FNR] = $0; n = FNR; next }
        { split(want[FNR], w, "\t"); if (NF != length(w)) { print "line " FNR ": " NF " fields, want " length(w); bad = 1; next }
          for (i = 1; i <= NF; i++)
            if (i % 2 ? $i != w[i] : ($i - w[i] > 1e-5 || w[i] - $i > 1e-5)) { print "line " FNR " field " i ": " $i ", want " w[i]; bad = 1 } }
        END { if (FNR != n) { print FNR " lines, want " n; bad = 1 } exit bad }' "$2" "$1"
}

for name in single multi regression; do
    "$qkv" classify --model "$fix/$name" --all "$fix/$name.txt" > "$tmp/$name.all" 2>"$tmp/err"; rc=$?
    check '[[ $rc -eq 0 ]]' "$name: exit $rc: $(cat "$tmp/err")"
    check 'same_tsv "$tmp/$name.all" "$fix/${name}_pipeline.tsv"' "$name: --all against the pipeline"
    "$qkv" classify --model "$fix/$name" "$fix/$name.jsonl" > "$tmp/$name.jl" 2>/dev/null
    check 'cut -f1,2 "$tmp/$name.all" | cmp -s - "$tmp/$name.jl"' "$name: JSON lines (auto) == text, default = best label"
done
"$qkv" classify --model "$fix/pair" --pairs --all "$fix/pair.txt" > "$tmp/pair.all" 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 0 ]]' "pair: exit $rc: $(cat "$tmp/err")"
check 'same_tsv "$tmp/pair.all" "$fix/pair_pipeline.tsv"' "pair: --pairs --all against the pipeline"
"$qkv" classify --model "$fix/pair" --all "$fix/pair.jsonl" > "$tmp/pair.jl" 2>/dev/null
check 'cmp -s "$tmp/pair.all" "$tmp/pair.jl"' "pair: JSON lines == TAB-separated text"
cp "$fix/pair.jsonl" "$tmp/pairs.json"
"$qkv" classify --model "$fix/pair" --jsonl --all "$tmp/pairs.json" > "$tmp/pair.j2" 2>/dev/null
check 'cmp -s "$tmp/pair.all" "$tmp/pair.j2"' "pair: --jsonl on a file not named .jsonl"
"$qkv" classify --model "$fix/pair" --all "$fix/pair.txt" > "$tmp/nopairs" 2>/dev/null
check '! cmp -s "$tmp/pair.all" "$tmp/nopairs"' "pair: without --pairs the TAB is part of the text"

# output forms
"$qkv" classify --model "$fix/multi" --top-k 2 "$fix/multi.txt" > "$tmp/top2" 2>/dev/null
check 'cut -f1-4 "$tmp/multi.all" | cmp -s - "$tmp/top2"' "--top-k 2 = the first two of --all"
"$qkv" classify --model "$fix/multi" --top-k 9 "$fix/multi.txt" > "$tmp/top9" 2>/dev/null
check 'cmp -s "$tmp/multi.all" "$tmp/top9"' "--top-k past the labels = --all"
"$qkv" classify --model "$fix/single" --json "$fix/single.txt" > "$tmp/json" 2>/dev/null
check '[[ $(wc -l < "$tmp/json") -eq 10 ]]' "--json: one line per input"
check 'paste <(cut -f1 "$tmp/single.all") "$tmp/json" | awk -F"\t" "index(\$2, \"{\\\"label\\\":\\\"\" \$1 \"\\\",\\\"score\\\":\") != 1 { exit 1 }"' "--json: label and score of the best"
check 'grep -c "\"scores\":{\"[a-z]*\":[-0-9.e]*,\"[a-z]*\":[-0-9.e]*,\"[a-z]*\":[-0-9.e]*}}$" "$tmp/json" | grep -qx 10' "--json: every label's score"
"$qkv" classify --model "$fix/single" --logits --all "$fix/single.txt" > "$tmp/logits" 2>/dev/null
check '! cmp -s "$tmp/logits" "$tmp/single.all" && [[ $(wc -l < "$tmp/logits") -eq 10 ]]' "--logits: raw values"
check 'awk -F"\t" "{ for (i = 2; i <= NF; i += 2) s += \$i; if (s < 0.99999 || s > 1.00001) exit 1; s = 0 }" "$tmp/single.all"' "single-label scores sum to 1"

# batching, threads, stdin
"$qkv" classify --model "$fix/single" --all --batch 1 "$fix/single.txt" > "$tmp/b1" 2>/dev/null
check 'cmp -s "$tmp/b1" "$tmp/single.all"' "--batch 1 gives the same bits"
"$qkv" classify --model "$fix/single" --all --batch 3 --threads 1 - < "$fix/single.txt" > "$tmp/t1" 2>/dev/null
check 'cmp -s "$tmp/t1" "$tmp/single.all"' "stdin, --batch 3, --threads 1 give the same bits"

# input edge cases: empty lines and invalid UTF-8 in plain text are classified
printf 'good\n\n\xff\xfe bad\n' > "$tmp/odd.txt"
"$qkv" classify --model "$fix/single" "$tmp/odd.txt" > "$tmp/odd.out" 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 0 && $(wc -l < "$tmp/odd.out") -eq 3 ]]' "plain text: empty and invalid UTF-8 lines classified ($rc)"

# errors: exit 2 naming FILE:LINE
printf '{"text": "a"}\n{"text": "b"}\nnot json\n' > "$tmp/bad1.jsonl"
"$qkv" classify --model "$fix/single" "$tmp/bad1.jsonl" > "$tmp/out" 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 2 ]] && grep -q "bad1.jsonl:3:" "$tmp/err" && [[ ! -s "$tmp/out" ]]' "bad JSON: exit 2 at line 3, no output ($rc: $(cat "$tmp/err"))"
# bad_jsonl NAME CONTENT NEEDLE: exit 2 with NEEDLE (which names NAME.jsonl:LINE) on stderr
bad_jsonl() {
    local needle=$3 # check evals its test here, where $3 is not this function's
    printf "$2" > "$tmp/$1.jsonl"
    "$qkv" classify --model "$fix/single" "$tmp/$1.jsonl" > /dev/null 2>"$tmp/err"; rc=$?
    check '[[ $rc -eq 2 ]] && grep -qF "$needle" "$tmp/err"' "$1: exit 2 with '$3' ($rc: $(cat "$tmp/err"))"
}
bad_jsonl not_string '{"text": 5}\n' 'not_string.jsonl:1: "text" must be a string'
bad_jsonl pair_list '{"text": "a", "text_pair": []}\n' 'pair_list.jsonl:1: "text_pair" must be'
bad_jsonl empty_line '{"text": "a"}\n\n' 'empty_line.jsonl:2:'
bad_jsonl bad_utf8 '{"text": "a \xff"}\n' 'bad_utf8.jsonl:1:'
bad_jsonl no_text '{"txt": "a"}\n' 'no_text.jsonl:1: "text" must be a string'
printf '["a"]\n' | "$qkv" classify --model "$fix/single" --jsonl - > /dev/null 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 2 ]] && grep -q "<stdin>:1: not a JSON object" "$tmp/err"' "stdin JSON lines: not an object ($rc)"
"$qkv" classify --model "$src/tests/fixtures/train/bert_tiny/model" "$fix/single.txt" > /dev/null 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 2 ]] && grep -q "has no classification head" "$tmp/err"' "model without a head: exit 2 ($rc)"
"$qkv" classify --model "$tmp/nope" "$fix/single.txt" > /dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "missing model: exit 2 ($rc)"
"$qkv" classify --model "$fix/single" "$tmp/missing.txt" > /dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "missing input: exit 2 ($rc)"
"$qkv" classify "$fix/single.txt" > /dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "--model required ($rc)"
for bad in "--top-k 0" "--top-k 2 --all" "--pairs --jsonl" "--batch 0" "--bogus"; do
    "$qkv" classify --model "$fix/single" $bad "$fix/single.txt" > /dev/null 2>&1; rc=$?
    check '[[ $rc -eq 2 ]]' "usage error '$bad' ($rc)"
done
help=$("$qkv" classify --help); rc=$?; [[ $rc -eq 0 && $help == *text_pair* ]] || rc=1
check '[[ $rc -eq 0 ]]' "--help explains the input forms"
echo "classify_cli: $((checks - fail)) passed, $fail failed"
[[ $fail -eq 0 ]]
