#!/usr/bin/env bash
# test_evaluate_cli.sh QKV SOURCE_DIR — `qkv evaluate` end to end on the tiny classifiers of
# tests/fixtures/cls (tools/gen_cls_golden.py) and labelled files written here: its predictions
# are `qkv classify`'s labels; the report, the confusion matrix, the JSON accuracy and the
# regression numbers are recomputed here (awk) from the predictions file and must match what it
# printed; the data options (TSV, CSV with named fields, no header, JSON lines, class folders,
# pairs, multi-label separators); the output files (written, replaced, never a directory);
# batch and thread counts not changing a byte; exit 2 for an unknown label (FILE:LINE and the
# model's labels), bad data and bad usage. The byte-for-byte comparison with scikit-learn's
# classification_report is tools/check_evaluate.py (test evaluate_vs_sklearn).
set -uo pipefail
qkv=$1 src=$2
fix=$src/tests/fixtures/cls
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0; checks=0
check() { checks=$((checks + 1)); if ! eval "$1"; then echo "FAIL: $2"; fail=$((fail + 1)); fi; }

# 30 texts over the fixtures' vocabulary (the random classifiers give them mixed labels)
cat > "$tmp/texts.txt" <<'EOF'
bad game this is
hate paint
team music
atom very
was vote
was movie was paint vote
hate music
movie this
music is music music game is movie
paint play
great vote bad
good music great paint hate and
good music music
very team good paint of was music
it very
and paint vote in awful
music law team great movie
of in movie
music great
cell win awful to law great
was good atom vote not in
bad cell vote is
was in paint music love win hate
awful of team it
music love law was hate
film cell
and was is to of great this
and hate law great of game
team the law team not it good
is very in great bad
EOF
n=30
single_names=(negative neutral positive)
multi_names=(sports politics science art)

# field NAME FILE: the string value of "NAME" on every line of a predictions file
field() { sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p" "$2"; }

# sk_report DIGITS NAMES... < "true<TAB>pred" lines: classification_report recomputed in awk
# (sklearn's formats; per-class ratios one division each; averages summed in order, which is
# numpy's for fewer than 8 classes)
sk_report() {
    local digits=$1; shift
    awk -F'\t' -v digits="$digits" -v names="$*" '
        BEGIN { C = split(names, nm, " "); for (k = 1; k <= C; k++) id[nm[k]] = k
                w = 12; for (k = 1; k <= C; k++) if (length(nm[k]) > w) w = length(nm[k]); if (digits > w) w = digits }
        { t = id[$1]; p = id[$2]; sup[t]++; pr[p]++; if (t == p) { tp[t]++; ok++ } N++ }
        END {
            printf "%" w "s  %9s %9s %9s %9s\n\n", "", "precision", "recall", "f1-score", "support"
            for (k = 1; k <= C; k++) {
                P[k] = pr[k] ? tp[k] / pr[k] : 0; R[k] = sup[k] ? tp[k] / sup[k] : 0
                F[k] = (sup[k] + pr[k]) ? 2 * tp[k] / (sup[k] + pr[k]) : 0
                printf "%" w "s  %9." digits "f %9." digits "f %9." digits "f %9d\n", nm[k], P[k], R[k], F[k], sup[k]
                mp += P[k]; mr += R[k]; mf += F[k]; wp += P[k] * sup[k]; wr += R[k] * sup[k]; wf += F[k] * sup[k]
            }
            printf "\n%" w "s  %9s %9s %9." digits "f %9d\n", "accuracy", "", "", ok / N, N
            printf "%" w "s  %9." digits "f %9." digits "f %9." digits "f %9d\n", "macro avg", mp / C, mr / C, mf / C, N
            printf "%" w "s  %9." digits "f %9." digits "f %9." digits "f %9d\n", "weighted avg", wp / N, wr / N, wf / N, N
        }'
}

# ------------------------------------------------------------------ single-label
awk -v n3="${single_names[*]}" 'BEGIN { split(n3, L, " "); print "text\tlabel" } { print $0 "\t" L[(NR * 7 + int(NR / 4)) % 3 + 1] }' \
    "$tmp/texts.txt" > "$tmp/s.tsv"
"$qkv" evaluate --model "$fix/single" --data "$tmp/s.tsv" --predictions "$tmp/s.pred" \
    --report "$tmp/s.report" --json "$tmp/s.json" --confusion "$tmp/s.svg" > "$tmp/s.out" 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 0 ]]' "single: exit $rc: $(cat "$tmp/err")"
check '[[ $(wc -l < "$tmp/s.pred") -eq $n ]]' "single: one prediction per example"
"$qkv" classify --model "$fix/single" "$tmp/texts.txt" | cut -f1 > "$tmp/s.classify"
check 'field predicted "$tmp/s.pred" | cmp -s - "$tmp/s.classify"' "single: predicted labels = qkv classify's"
check '[[ $(sort -u "$tmp/s.classify" | wc -l) -ge 2 ]]' "single: the texts get more than one label (else the test is weak)"
check 'tail -n +2 "$tmp/s.tsv" | cut -f2 | cmp -s - <(field true "$tmp/s.pred")' "single: true labels in file order"
check 'cmp -s <(seq 2 $((n + 1))) <(sed -n "s/.*\"line\":\([0-9]*\).*/\1/p" "$tmp/s.pred")' "single: source lines (after the header)"
check 'cmp -s <(seq 0 $((n - 1))) <(sed -n "s/^{\"index\":\([0-9]*\),.*/\1/p" "$tmp/s.pred")' "single: indices"
paste <(field true "$tmp/s.pred") <(field predicted "$tmp/s.pred") > "$tmp/s.pairs"
sk_report 2 "${single_names[@]}" < "$tmp/s.pairs" > "$tmp/s.want"
check 'cmp -s "$tmp/s.report" "$tmp/s.want"' "single: --report = the report recomputed from the predictions ($(diff "$tmp/s.report" "$tmp/s.want" | head -5))"
check 'head -c $(wc -c < "$tmp/s.report") "$tmp/s.out" | cmp -s - "$tmp/s.report"' "single: stdout starts with the report"
# the confusion matrix on stdout: rows of true labels, columns of predictions
awk -F'\t' -v names="${single_names[*]}" 'BEGIN { C = split(names, nm, " ") } { c[$1 "," $2]++ }
    END { for (t = 1; t <= C; t++) { printf "%s", nm[t]; for (p = 1; p <= C; p++) printf " %d", c[nm[t] "," nm[p]]; print "" } }' \
    "$tmp/s.pairs" > "$tmp/s.cm.want"
tail -n 3 "$tmp/s.out" | awk '{ $1 = $1; print }' > "$tmp/s.cm"
check 'cmp -s "$tmp/s.cm" "$tmp/s.cm.want"' "single: confusion matrix counts"
check 'grep -q "^true \\\\ pred  *negative  *neutral  *positive$" "$tmp/s.out"' "single: confusion header"
acc=$(awk -F'\t' '$1 == $2 { k++ } END { printf "%.17g", k / NR }' "$tmp/s.pairs")
check 'grep -q "^  \"accuracy\": $acc,$" "$tmp/s.json"' "single: JSON accuracy $acc at the top level"
check 'grep -q "^  \"macro_f1\": 0\.[0-9]*,$" "$tmp/s.json" && grep -q "\"confusion_matrix\"" "$tmp/s.json" && grep -q "\"problem_type\": \"single_label_classification\"" "$tmp/s.json"' "single: JSON macro_f1, confusion matrix, problem type"
check 'head -c 200 "$tmp/s.svg" | grep -q "<svg" && grep -q ">neutral<" "$tmp/s.svg" && tail -n 1 "$tmp/s.svg" | grep -q "</svg>"' "single: the SVG is written"
check '! ls "$tmp" | grep -q "\.tmp\."' "no temporary file left"

# --digits 4, batch and thread counts
"$qkv" evaluate --model "$fix/single" --data "$tmp/s.tsv" --digits 4 --report "$tmp/s4.report" > /dev/null 2>&1
check 'sk_report 4 "${single_names[@]}" < "$tmp/s.pairs" | cmp -s - "$tmp/s4.report"' "single: --digits 4"
"$qkv" evaluate --model "$fix/single" --data "$tmp/s.tsv" --batch 1 --threads 1 --predictions "$tmp/s.b1.pred" > "$tmp/s.b1.out" 2>/dev/null
check 'cmp -s "$tmp/s.pred" "$tmp/s.b1.pred" && cmp -s "$tmp/s.out" "$tmp/s.b1.out"' "single: --batch 1 --threads 1 give the same bytes"
"$qkv" evaluate --model "$fix/single" --data "$tmp/s.tsv" --batch 7 --progress > /dev/null 2>"$tmp/err"
check 'grep -q "evaluating.*30/30" "$tmp/err"' "--progress draws a bar on stderr"

# the same data as CSV with other column names, as TSV without a header, as JSON lines, as class folders
{ echo "idx,y,sentence"; tail -n +2 "$tmp/s.tsv" | awk -F'\t' '{ print NR "," $2 "," $1 }'; } > "$tmp/s.csv"
"$qkv" evaluate --model "$fix/single" --data "$tmp/s.csv" --text-field sentence --label-field y --report "$tmp/csv.report" > /dev/null 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 0 ]] && cmp -s "$tmp/csv.report" "$tmp/s.report"' "CSV with --text-field / --label-field ($rc: $(cat "$tmp/err"))"
tail -n +2 "$tmp/s.tsv" > "$tmp/nohdr.txt"
"$qkv" evaluate --model "$fix/single" --data "$tmp/nohdr.txt" --format tsv --no-header --report "$tmp/nh.report" --predictions "$tmp/nh.pred" > /dev/null 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 0 ]] && cmp -s "$tmp/nh.report" "$tmp/s.report"' "--format tsv --no-header ($rc: $(cat "$tmp/err"))"
check '[[ $(sed -n "1s/.*\"line\":\([0-9]*\).*/\1/p" "$tmp/nh.pred") -eq 1 ]]' "no header: the first example is line 1"
awk -F'\t' 'NR > 1 { printf "{\"text\": \"%s\", \"label\": \"%s\"}\n", $1, $2 }' "$tmp/s.tsv" > "$tmp/s.jsonl"
"$qkv" evaluate --model "$fix/single" --data "$tmp/s.jsonl" --report "$tmp/jl.report" > /dev/null 2>&1
check 'cmp -s "$tmp/jl.report" "$tmp/s.report"' "JSON lines"
mkdir -p "$tmp/folders"
awk -F'\t' -v d="$tmp/folders" 'NR > 1 { system("mkdir -p " d "/" $2); f = sprintf("%s/%s/%03d.txt", d, $2, NR); printf "%s\n", $1 > f; close(f) }' "$tmp/s.tsv"
"$qkv" evaluate --model "$fix/single" --data "$tmp/folders" --report "$tmp/dir.report" --predictions "$tmp/dir.pred" > /dev/null 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 0 ]] && cmp -s "$tmp/dir.report" "$tmp/s.report"' "class folders ($rc: $(cat "$tmp/err"))"
check 'grep -q "^{\"index\":0,\"line\":0,\"file\":\".*folders/negative/[0-9]*\.txt\"" "$tmp/dir.pred"' "class folders: predictions name the file"

# ------------------------------------------------------------------ pairs
paste "$tmp/texts.txt" <(tac "$tmp/texts.txt") > "$tmp/pairs.txt"
awk -F'\t' 'BEGIN { print "sentence1\tsentence2\tlabel" } { print $0 "\t" (NR % 3 ? "entailment" : "not_entailment") }' "$tmp/pairs.txt" > "$tmp/p.tsv"
"$qkv" evaluate --model "$fix/pair" --data "$tmp/p.tsv" --predictions "$tmp/p.pred" --report "$tmp/p.report" > /dev/null 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 0 ]]' "pairs: exit $rc: $(cat "$tmp/err")"
"$qkv" classify --model "$fix/pair" --pairs "$tmp/pairs.txt" | cut -f1 > "$tmp/p.classify"
check 'field predicted "$tmp/p.pred" | cmp -s - "$tmp/p.classify"' "pairs: predicted labels = qkv classify --pairs's"
paste <(field true "$tmp/p.pred") <(field predicted "$tmp/p.pred") | sk_report 2 entailment not_entailment > "$tmp/p.want"
check 'cmp -s "$tmp/p.report" "$tmp/p.want"' "pairs: the report"
"$qkv" classify --model "$fix/pair" "$tmp/texts.txt" | cut -f1 > "$tmp/p.nopair"
check '! cmp -s "$tmp/p.nopair" "$tmp/p.classify"' "pairs: the pairs matter (texts alone classify differently)"

# ------------------------------------------------------------------ multi-label
# example i has label k when bit k of (i * 5 + 3) is set: every subset, the empty one included
awk -v names="${multi_names[*]}" 'BEGIN { split(names, L, " ") }
    { v = (NR * 5 + 3) % 16; s = ""; for (k = 0; k < 4; k++) if (int(v / 2 ^ k) % 2) s = s (s == "" ? "" : ";") L[k + 1]; print $0 "\t" s }' \
    "$tmp/texts.txt" > "$tmp/m.tsv"
"$qkv" evaluate --model "$fix/multi" --data "$tmp/m.tsv" --format tsv --no-header --label-sep ';' \
    --predictions "$tmp/m.pred" --report "$tmp/m.report" --json "$tmp/m.json" > "$tmp/m.out" 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 0 ]]' "multi: exit $rc: $(cat "$tmp/err")"
check 'grep -q "^ samples avg " "$tmp/m.report" && grep -q "^   micro avg " "$tmp/m.report"' "multi: the multi-label report"
# the sets again, from qkv classify's scores (sigmoid > 0.5), and from the data
"$qkv" classify --model "$fix/multi" --all "$tmp/texts.txt" |
    awk -F'\t' -v names="${multi_names[*]}" 'BEGIN { C = split(names, L, " ") }
        { delete on; for (i = 1; i < NF; i += 2) if ($(i + 1) > 0.5) on[$i] = 1
          s = ""; for (k = 1; k <= C; k++) if (L[k] in on) s = s (s == "" ? "" : ",") "\"" L[k] "\""; print "[" s "]" }' > "$tmp/m.classify"
check 'sed -n "s/.*\"predicted\":\(\[[^]]*\]\).*/\1/p" "$tmp/m.pred" | cmp -s - "$tmp/m.classify"' "multi: predicted sets = qkv classify's sigmoids above 0.5"
check 'cut -f2 "$tmp/m.tsv" | sed "s/^/[\"/; s/;/\",\"/g; s/\$/\"]/; s/^\[\"\"\]\$/[]/" | cmp -s - <(sed -n "s/.*\"true\":\(\[[^]]*\]\).*/\1/p" "$tmp/m.pred")' "multi: true sets, the empty one included"
# per label: tn fp fn tp (the confusion text) and the report's rows, recomputed
sed -n 's/.*"true":\[\([^]]*\)\],"predicted":\[\([^]]*\)\].*/\1\t\2/p' "$tmp/m.pred" |
    awk -F'\t' -v names="${multi_names[*]}" 'BEGIN { C = split(names, L, " ") }
        { for (k = 1; k <= C; k++) { q = "\"" L[k] "\""; t = index("," $1 ",", "," q ",") > 0; p = index("," $2 ",", "," q ",") > 0
            if (t && p) tp[k]++; else if (p) fp[k]++; else if (t) fn[k]++; else tn[k]++ } }
        END { for (k = 1; k <= C; k++) {
            printf "%s %d %d %d %d\n", L[k], tn[k], fp[k], fn[k], tp[k] > "/dev/stderr"
            P = tp[k] + fp[k] ? tp[k] / (tp[k] + fp[k]) : 0; R = tp[k] + fn[k] ? tp[k] / (tp[k] + fn[k]) : 0
            F = 2 * tp[k] + fp[k] + fn[k] ? 2 * tp[k] / (2 * tp[k] + fp[k] + fn[k]) : 0
            printf "%12s  %9.2f %9.2f %9.2f %9d\n", L[k], P, R, F, tp[k] + fn[k] } }' > "$tmp/m.rows.want" 2>"$tmp/m.cm.want"
check 'sed -n "3,6p" "$tmp/m.report" | cmp -s - "$tmp/m.rows.want"' "multi: per-label rows recomputed ($(sed -n 3,6p "$tmp/m.report" | diff - "$tmp/m.rows.want" | head -4))"
check 'tail -n 4 "$tmp/m.out" | awk "{ \$1 = \$1; print }" | cmp -s - "$tmp/m.cm.want"' "multi: tn fp fn tp per label"
check 'grep -q "\"threshold\": 0.5" "$tmp/m.json" && grep -q "\"multilabel_confusion_matrix\"" "$tmp/m.json"' "multi: JSON threshold and matrices"
"$qkv" evaluate --model "$fix/multi" --data "$tmp/m.tsv" --format tsv --no-header --label-sep ';' --threshold 0 --predictions "$tmp/m0.pred" > /dev/null 2>&1
check '[[ $(grep -c "\"predicted\":\[\"sports\",\"politics\",\"science\",\"art\"\]" "$tmp/m0.pred") -eq $n ]]' "multi: --threshold 0 predicts every label"
"$qkv" evaluate --model "$fix/multi" --data "$tmp/m.tsv" --format tsv --no-header --label-sep ';' --threshold 1 --predictions "$tmp/m1.pred" > /dev/null 2>&1
check '[[ $(grep -c "\"predicted\":\[\]" "$tmp/m1.pred") -eq $n ]]' "multi: --threshold 1 predicts none"

# ------------------------------------------------------------------ regression
awk 'BEGIN { print "text,label" } { printf "%s,%g\n", $0, (NR % 7) * 0.25 - 1.5 }' "$tmp/texts.txt" > "$tmp/r.csv"
"$qkv" evaluate --model "$fix/regression" --data "$tmp/r.csv" --digits 6 --predictions "$tmp/r.pred" \
    --report "$tmp/r.report" --json "$tmp/r.json" > "$tmp/r.out" 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 0 ]] && cmp -s "$tmp/r.out" "$tmp/r.report"' "regression: exit $rc, --report = stdout: $(cat "$tmp/err")"
"$qkv" classify --model "$fix/regression" "$tmp/texts.txt" | cut -f2 > "$tmp/r.classify"
# (the same floats: the predictions file has the shortest digits that read back, classify 7)
sed -n 's/.*"predicted":\([^}]*\)}/\1/p' "$tmp/r.pred" | paste - "$tmp/r.classify" > "$tmp/r.both"
check '[[ $(wc -l < "$tmp/r.both") -eq $n ]] && awk -F"\t" "{ d = \$1 - \$2; if (d < 0) d = -d; if (\$2 == \"\" || d > 6e-7 * (\$2 < 0 ? -\$2 : \$2)) exit 1 }" "$tmp/r.both"' "regression: predictions = qkv classify's values"
sed -n 's/.*"true":\([^,]*\),"predicted":\([^}]*\)}/\1 \2/p' "$tmp/r.pred" |
    awk '{ y[NR] = $1; p[NR] = $2; my += $1; mp += $2; se += ($2 - $1) ^ 2; ae += ($2 > $1 ? $2 - $1 : $1 - $2) }
        END { n = NR; my /= n; mp /= n
              for (i = 1; i <= n; i++) { syy += (y[i] - my) ^ 2; spp += (p[i] - mp) ^ 2; syp += (y[i] - my) * (p[i] - mp) }
              printf "%-10s %d\n%-10s %.6f\n%-10s %.6f\n%-10s %.6f\n%-11s %.6f\n%-10s %.6f\n", "examples", n, "MSE", se / n,
                  "MAE", ae / n, "RMSE", sqrt(se / n), "R²", 1 - se / syy, "Pearson r", syp / sqrt(syy * spp) }' > "$tmp/r.want"
check 'cmp -s "$tmp/r.report" "$tmp/r.want"' "regression: MSE MAE RMSE R² r recomputed ($(diff "$tmp/r.report" "$tmp/r.want" | head -4))"
check 'grep -q "\"mse\": " "$tmp/r.json" && grep -q "\"pearson_r\": " "$tmp/r.json" && grep -q "\"problem_type\": \"regression\"" "$tmp/r.json"' "regression: JSON"
awk 'BEGIN { print "text,label" } { print $0 ",0.5" }' "$tmp/texts.txt" > "$tmp/rc.csv"
"$qkv" evaluate --model "$fix/regression" --data "$tmp/rc.csv" --json "$tmp/rc.json" > "$tmp/rc.out" 2>&1; rc=$?
check '[[ $rc -eq 0 ]] && grep -q "^Pearson r  nan$" "$tmp/rc.out" && grep -q "\"pearson_r\": null" "$tmp/rc.json" && grep -q "^R²         0.0000$" "$tmp/rc.out"' "regression: constant truth: r is nan / null, R² 0 ($rc)"

# ------------------------------------------------------------------ outputs
echo old > "$tmp/old.txt"
"$qkv" evaluate --model "$fix/single" --data "$tmp/s.tsv" --report "$tmp/old.txt" > /dev/null 2>&1
check 'cmp -s "$tmp/old.txt" "$tmp/s.report"' "an existing regular file is replaced"
mkdir "$tmp/adir"
"$qkv" evaluate --model "$fix/single" --data "$tmp/s.tsv" --json "$tmp/adir" > "$tmp/out" 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 2 && ! -s "$tmp/out" ]] && grep -q "adir: exists and is not a regular file" "$tmp/err" && [[ -d "$tmp/adir" ]]' "an output that is a directory: exit 2 before anything ($rc)"
mkfifo "$tmp/fifo"
"$qkv" evaluate --model "$fix/single" --data "$tmp/s.tsv" --predictions "$tmp/fifo" > /dev/null 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 2 && -p "$tmp/fifo" ]]' "an output that is a FIFO: exit 2 ($rc)"
"$qkv" evaluate --model "$fix/single" --data "$tmp/s.tsv" --report "$tmp/no/such/r.txt" > /dev/null 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 2 ]] && grep -q "no such directory" "$tmp/err"' "an output in a missing directory: exit 2 ($rc)"
"$qkv" evaluate --model "$fix/single" --data "$tmp/s.tsv" --report "$tmp/s.tsv" > /dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]] && cmp -s <(head -1 "$tmp/s.tsv") <(printf "text\tlabel\n")' "an output over the data: exit 2 ($rc)"
"$qkv" evaluate --model "$fix/single" --data "$tmp/s.tsv" --report "$tmp/x" --json "$tmp/x" > /dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "two outputs on one path: exit 2 ($rc)"

# ------------------------------------------------------------------ bad data, bad usage
{ head -n 12 "$tmp/s.tsv"; printf 'a text\tmaybe\n'; tail -n +13 "$tmp/s.tsv"; } > "$tmp/unk.tsv"
"$qkv" evaluate --model "$fix/single" --data "$tmp/unk.tsv" --report "$tmp/unk.report" > "$tmp/out" 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 2 && ! -s "$tmp/out" && ! -e "$tmp/unk.report" ]] && grep -q "unk.tsv:13: unknown label .maybe." "$tmp/err" && grep -q "'"'"'negative'"'"', '"'"'neutral'"'"', '"'"'positive'"'"'" "$tmp/err"' \
    "unknown label: exit 2 naming FILE:LINE and the model's labels ($rc: $(cat "$tmp/err"))"
printf 'text\tlabel\ngood\tpositive\nbad\tnegative\textra\n' > "$tmp/cols.tsv"
"$qkv" evaluate --model "$fix/single" --data "$tmp/cols.tsv" > /dev/null 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 2 ]] && grep -q "cols.tsv:3:" "$tmp/err"' "a row with an extra column: exit 2 at line 3 ($rc: $(cat "$tmp/err"))"
printf 'text,label\ngood,0.5\nbad,high\n' > "$tmp/rbad.csv"
"$qkv" evaluate --model "$fix/regression" --data "$tmp/rbad.csv" > /dev/null 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 2 ]] && grep -q "rbad.csv:3:" "$tmp/err"' "regression: a label that is not a number: exit 2 at line 3 ($rc)"
printf 'text\tlabel\n' > "$tmp/empty.tsv"
"$qkv" evaluate --model "$fix/single" --data "$tmp/empty.tsv" > /dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "no examples: exit 2 ($rc)"
"$qkv" evaluate --model "$src/tests/fixtures/train/bert_tiny/model" --data "$tmp/s.tsv" > /dev/null 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 2 ]] && grep -q "has no classification head" "$tmp/err"' "a model without a head: exit 2 ($rc)"
"$qkv" evaluate --model "$tmp/nope" --data "$tmp/s.tsv" > /dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "a missing model: exit 2 ($rc)"
"$qkv" evaluate --model "$fix/single" --data "$tmp/missing.tsv" > /dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "a missing data file: exit 2 ($rc)"
"$qkv" evaluate --model "$fix/single" --data "$tmp/folders" --format tsv > /dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "a directory read as TSV: exit 2 ($rc)"
"$qkv" evaluate --model "$fix/multi" --data "$tmp/m.tsv" --format tsv --no-header --label-sep ';' --confusion "$tmp/m.svg" > /dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 && ! -e "$tmp/m.svg" ]]' "--confusion on a multi-label model: exit 2 ($rc)"
for bad in "" "--data $tmp/s.tsv" "--model $fix/single" "--format xml" "--digits 61" "--threshold 2" \
    "--threshold nan" "--batch 0" "--threads 0" "--label-sep ab" "--bogus" "$tmp/s.tsv"; do
    case "$bad" in --data*|--model*|"") args=($bad) ;; *) args=(--model "$fix/single" --data "$tmp/s.tsv" $bad) ;; esac
    "$qkv" evaluate "${args[@]}" > /dev/null 2>&1; rc=$?
    check '[[ $rc -eq 2 ]]' "usage error '$bad' ($rc)"
done
"$qkv" evaluate --help > "$tmp/help"; rc=$?
check '[[ $rc -eq 0 ]] && grep -q -- "--predictions" "$tmp/help" && grep -q "classification_report" "$tmp/help" && grep -q "Pearson" "$tmp/help"' "--help explains the outputs"
check '[[ $("$qkv" --help) == *evaluate* ]]' "qkv --help lists evaluate"

echo "evaluate_cli: $((checks - fail)) passed, $fail failed"
[[ $fail -eq 0 ]]
