#!/usr/bin/env bash
# test_attention_cli.sh QKV SOURCE_DIR — `qkv attention` on the tiny random BERT of
# tests/fixtures/attnmap (with a WordPiece vocab.txt written here) and the tiny GPT-2 of
# tests/fixtures/models (with a byte-level BPE trained here by `qkv tokenizer train`): the
# files it writes (safetensors with the maps' shapes and tokens, PNGs, one offline HTML page),
# --layer / --head, token text that could break the page, refusals and exit codes; and the tiny
# MarianMT of tests/fixtures/marian (three stacks: encoder, decoder, cross; the greedy target;
# --target-text; hostile targets). The maps' values are tested against transformers through the
# API (tests/test_attnmap.c, tests/test_attnmap_marian.c).
set -uo pipefail
qkv=$1 src=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/qkv_attn_cli.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail=0; checks=0
check() { checks=$((checks + 1)); if ! eval "$1"; then echo "FAIL: $2"; fail=$((fail + 1)); fi; }
is_png() { [[ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" == "89504e470d0a1a0a" ]]; }

# a BERT directory: the fixture's weights + a 64-word WordPiece vocabulary ([CLS] = 1, [SEP] = 2)
bert=$tmp/bert; mkdir "$bert"
cp "$src/tests/fixtures/attnmap/bert_tiny/config.json" "$src/tests/fixtures/attnmap/bert_tiny/model.safetensors" "$bert/"
{ printf '[PAD]\n[CLS]\n[SEP]\n[UNK]\n[MASK]\n'
  for w in the a cat dog sat on mat it was tired because where is train station next to old \
           bridge . , ? ! "<" ">" / script b x; do echo "$w"; done
  for i in $(seq 1 30); do echo "w$i"; done; } > "$bert/vocab.txt"
check '[[ $(wc -l < "$bert/vocab.txt") -eq 64 ]]' "vocab.txt has 64 words"

out=$tmp/out
"$qkv" attention --model "$bert" --text "The cat sat on the mat." --pair "Where is it?" --out "$out" > "$tmp/table" 2> "$tmp/err"; rc=$?
check '[[ $rc -eq 0 ]]' "bert: exit $rc: $(cat "$tmp/err")"
check '[[ -f "$out/attention.safetensors" && -f "$out/attention.html" && -f "$out/rollout.png" ]]' "bert: the files"
check '[[ $(ls "$out"/layer*_head*.png | wc -l) -eq 10 ]]' "bert: 2 x 4 head PNGs + 2 grids ($(ls "$out" | tr '\n' ' '))"
all_png=1; for f in "$out"/*.png; do is_png "$f" || all_png=0; done
check '[[ $all_png -eq 1 ]]' "every .png is a PNG"
"$qkv" inspect "$out/attention.safetensors" > "$tmp/inspect" 2>&1
check 'grep -Eq "^layer\.1 +F32 +\[4, 14, 14\]" "$tmp/inspect"' "layer.1 is [heads, T, T]: $(cat "$tmp/inspect")"
check 'grep -Eq "^rollout +F32 +\[14, 14\]" "$tmp/inspect"' "rollout [T, T]"
check 'grep -q "tokens = \[\"\[CLS\]\",\"the\",\"cat\"" "$tmp/inspect"' "tokens in the metadata"
check 'grep -q "pair = Where is it?" "$tmp/inspect"' "pair in the metadata"
check '[[ $(grep -cE "^ +[0-9]+ +[0-9]+ +[0-9.]+ " "$tmp/table") -eq 8 ]]' "table: one row per head: $(cat "$tmp/table")"
check 'grep -q "\[CLS\]" "$tmp/table" && grep -q "previous" "$tmp/table"' "table header"
html=$out/attention.html
check 'grep -q "<script id=\"data\" type=\"application/json\">" "$html"' "page: inline data"
check '! grep -Eq "https?://|<link|src=" "$html"' "page: nothing loaded from elsewhere"
check 'grep -q "\"L\":2,\"H\":4" "$html"' "page: sizes"
check 'grep -q "\"tokens\":\[\"\[CLS\]\",\"the\"" "$html"' "page: tokens"

# same input, same bytes
"$qkv" attention --model "$bert" --text "The cat sat on the mat." --pair "Where is it?" --out "$tmp/again" --threads 1 > /dev/null 2>&1
check 'cmp -s "$out/attention.safetensors" "$tmp/again/attention.safetensors"' "deterministic across runs and thread counts"

# --layer / --head draw only that head (and that layer's grid)
"$qkv" attention --model "$bert" --text "a dog" --out "$tmp/one" --layer 1 --head 2 > /dev/null 2>&1; rc=$?
check '[[ $rc -eq 0 && "$(cd "$tmp/one" && ls *.png | tr "\n" " ")" == "layer01_head02.png layer01_heads.png rollout.png " ]]' "--layer 1 --head 2: $(ls "$tmp/one" 2>/dev/null | tr '\n' ' ')"

# text that would close the page's script if it were not escaped, and invalid UTF-8
"$qkv" attention --model "$bert" --text $'</script><b>x \xff\xfe it' --out "$tmp/evil" > /dev/null 2> "$tmp/err"; rc=$?
check '[[ $rc -eq 0 ]]' "hostile text: exit $rc: $(cat "$tmp/err")"
check '[[ $(grep -o "</script>" "$tmp/evil/attention.html" | wc -l) -eq 2 ]]' "hostile text: the page's two scripts only"
check 'grep -q "&lt;/script&gt;&lt;b&gt;x" "$tmp/evil/attention.html"' "hostile text: escaped in the page header"

# a decoder: the tiny GPT-2 with a 300-token byte-level BPE
printf 'the cat sat on the mat\nthe dog sat on the log\nwhere is the cat\n' > "$tmp/corpus.txt"
gpt=$tmp/gpt; mkdir "$gpt"
"$qkv" tokenizer train --vocab-size 300 --out "$gpt" "$tmp/corpus.txt" > /dev/null 2>&1
cp "$src/tests/fixtures/models/gpt2_tiny/config.json" "$src/tests/fixtures/models/gpt2_tiny/model.safetensors" "$gpt/"
"$qkv" attention --model "$gpt" --text "the cat sat on the log" --out "$tmp/gout" > "$tmp/table" 2> "$tmp/err"; rc=$?
check '[[ $rc -eq 0 ]]' "gpt2: exit $rc: $(cat "$tmp/err")"
check 'grep -q "first" "$tmp/table" && [[ $(grep -cE "^ +[0-9]+ +[0-9]+ +[0-9.]+ " "$tmp/table") -eq 8 ]]' "gpt2: table: $(cat "$tmp/table")"
check '[[ $(ls "$tmp/gout"/*.png | wc -l) -eq 12 ]]' "gpt2: PNGs (8 heads, 2 grids, rollout, saliency)"
# a decoder's saliency: the next-token logit, gradient x input and integrated gradients
check 'grep -q "saliency of the logit of the next token" "$tmp/table" && grep -q "completeness gap" "$tmp/table"' "gpt2: next-token saliency printed"
check 'is_png "$tmp/gout/saliency.png"' "gpt2: saliency.png"
check 'grep -q "\"ig\":\[" "$tmp/gout/attention.html" && grep -q "integrated gradients" "$tmp/gout/attention.html"' "gpt2: IG in the page"
"$qkv" inspect "$tmp/gout/attention.safetensors" > "$tmp/inspect" 2>&1
check 'grep -Eq "^integrated_gradients +F32 +\[8\]" "$tmp/inspect" && grep -q "saliency_target = next-token" "$tmp/inspect" && grep -q "ig_steps = 50" "$tmp/inspect" && grep -q "ig_rule = trapezoid" "$tmp/inspect"' "gpt2: IG saved with its settings: $(cat "$tmp/inspect")"
"$qkv" attention --model "$gpt" --text "the cat sat on" --label " the" --ig-steps 0 --out "$tmp/g0" > "$tmp/table" 2> "$tmp/err"; rc=$?
"$qkv" inspect "$tmp/g0/attention.safetensors" > "$tmp/inspect" 2>&1
check '[[ $rc -eq 0 ]] && grep -q "saliency_label = ␣the" "$tmp/inspect" && ! grep -q "integrated_gradients" "$tmp/inspect"' "gpt2: --label TOKEN and --ig-steps 0 ($rc): $(cat "$tmp/err")"
"$qkv" attention --model "$gpt" --text "the cat" --label "#5" --ig-steps 4 --ig-rule right --baseline eos --out "$tmp/g1" > "$tmp/table" 2> "$tmp/err"; rc=$?
check '[[ $rc -eq 0 ]] && grep -q "4 steps, right rule, baseline eos" "$tmp/table"' "gpt2: --label #ID, --ig-rule right, --baseline eos ($rc): $(cat "$tmp/err")"
for bad in "--label #100000" "--label the_cat_sat_on" "--baseline mask" "--ig-rule left" "--ig-steps -1" "--target similarity" "--compare x" "--target logit" "--baseline nope"; do
    "$qkv" attention --model "$gpt" --text "the cat" $bad --out "$tmp/x" > /dev/null 2> "$tmp/err"; rc=$?
    check '[[ $rc -eq 2 && ! -e "$tmp/x" ]]' "gpt2: $bad refused ($rc): $(cat "$tmp/err")"
done

# an encoder's similarity to a second text (values tested in test_attribution.c)
"$qkv" attention --model "$bert" --text "the cat sat on the mat" --compare "a dog sat" --ig-steps 8 --out "$tmp/sim" > "$tmp/table" 2> "$tmp/err"; rc=$?
check '[[ $rc -eq 0 ]] && grep -q "saliency of the cosine similarity with \"a dog sat\"" "$tmp/table"' "bert: similarity saliency ($rc): $(cat "$tmp/err")"
"$qkv" inspect "$tmp/sim/attention.safetensors" > "$tmp/inspect" 2>&1
check 'grep -q "compare = a dog sat" "$tmp/inspect" && grep -q "saliency_target = similarity" "$tmp/inspect" && is_png "$tmp/sim/saliency.png"' "bert: similarity saved and drawn"
"$qkv" attention --model "$bert" --text "the cat" --target next-token --out "$tmp/x" > /dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "bert: --target next-token refused ($rc)"
"$qkv" attention --model "$bert" --text "the cat" --target similarity --out "$tmp/x" > /dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "bert: similarity without --compare refused ($rc)"
"$qkv" inspect "$tmp/gout/attention.safetensors" > "$tmp/inspect" 2>&1
check 'grep -q "tokens = \[\"the\",\"␣cat\"" "$tmp/inspect"' "gpt2: a leading space shown as ␣: $(grep tokens "$tmp/inspect")"
"$qkv" attention --model "$gpt" --text "the cat" --pair "a dog" --out "$tmp/x" > /dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 && ! -e "$tmp/x" ]]' "--pair with a decoder refused ($rc)"

# a classifier: gradient x input saliency of a label's logit (values tested in test_attnmap.c)
cls=$src/tests/fixtures/cls/pair
"$qkv" attention --model "$cls" --text "the cat sat" --pair "a dog" --label entailment --out "$tmp/cls" > "$tmp/table" 2> "$tmp/err"; rc=$?
check '[[ $rc -eq 0 ]]' "classifier: exit $rc: $(cat "$tmp/err")"
check 'grep -q "saliency of the logit of label .entailment." "$tmp/table"' "classifier: saliency printed"
"$qkv" inspect "$tmp/cls/attention.safetensors" > "$tmp/inspect" 2>&1
check 'grep -Eq "^saliency +F32" "$tmp/inspect" && grep -Eq "^integrated_gradients +F32" "$tmp/inspect" && grep -q "saliency_label = entailment" "$tmp/inspect" && grep -q "saliency_target = logit" "$tmp/inspect"' "classifier: saliency saved: $(cat "$tmp/inspect")"
"$qkv" attention --model "$cls" --text "the cat" --baseline pad --ig-steps 3 --out "$tmp/clsp" > "$tmp/table" 2> "$tmp/err"; rc=$?
check '[[ $rc -eq 0 ]] && grep -q "baseline pad (that token" "$tmp/table"' "classifier: --baseline pad ($rc): $(cat "$tmp/err")"
check 'grep -q "<h2>Saliency</h2>" "$tmp/cls/attention.html" && grep -q "\"saliency\":\[" "$tmp/cls/attention.html"' "classifier: saliency in the page"
"$qkv" attention --model "$cls" --text "the cat" --label nosuch --out "$tmp/x" > /dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "an unknown --label refused ($rc)"
"$qkv" attention --model "$bert" --text "the cat" --label 0 --out "$tmp/x" > /dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "--label without a classification head refused ($rc)"
mkdir -p "$tmp/busy2/saliency.png"
"$qkv" attention --model "$cls" --text "a" --out "$tmp/busy2" > /dev/null 2> "$tmp/err"; rc=$?
check '[[ $rc -eq 2 && ! -e "$tmp/busy2/attention.safetensors" ]]' "a directory where saliency.png goes: refused before writing ($rc)"

# an encoder-decoder: the tiny random MarianMT of tests/fixtures/marian (2 + 2 layers, 4 heads);
# the maps' values are tested against transformers in tests/test_attnmap_marian.c
mar=$src/tests/fixtures/marian/tiny
"$qkv" attention --model "$mar" --text "Hello world!" --out "$tmp/m1" > "$tmp/table" 2> "$tmp/err"; rc=$?
check '[[ $rc -eq 0 ]]' "marian: exit $rc: $(cat "$tmp/err")"
check 'grep -q "greedy translation" "$tmp/table"' "marian: says the target is the greedy translation: $(head -3 "$tmp/table")"
check '[[ $(ls "$tmp/m1"/*.png | wc -l) -eq 31 ]]' "marian: 3 stacks x 2 layers x (4 heads + grid) + rollout PNGs ($(ls "$tmp/m1" | tr '\n' ' '))"
check 'is_png "$tmp/m1/cross_layer01_head03.png" && is_png "$tmp/m1/encoder_rollout.png" && is_png "$tmp/m1/decoder_layer00_heads.png"' "marian: PNGs"
"$qkv" inspect "$tmp/m1/attention.safetensors" > "$tmp/inspect" 2>&1
greedy=$(sed -n 's/^  target = //p' "$tmp/inspect")
want=$(echo "Hello world!" | "$qkv" translate --model "$mar" --beams 1 2>/dev/null)
check '[[ -n "$want" && "$greedy" == "$want" ]]' "marian: the target is qkv translate --beams 1's ('$greedy' vs '$want')"
check 'grep -q "target_from = greedy translation by qkv" "$tmp/inspect"' "marian: target_from"
# --target-text: shapes [H, T, T], [H, T, S], [H, S, S] with S and T from the ids
"$qkv" attention --model "$mar" --text "The GNU General Public License is a free license." --target-text "Eine Lizenz." --out "$tmp/m2" > "$tmp/table" 2> "$tmp/err"; rc=$?
check '[[ $rc -eq 0 ]] && grep -q "the target is --target-text" "$tmp/table"' "marian --target-text: exit $rc: $(cat "$tmp/err")"
"$qkv" inspect "$tmp/m2/attention.safetensors" > "$tmp/inspect" 2>&1
S=$(sed -nE 's/^source_ids +I32 +\[([0-9]+)\].*/\1/p' "$tmp/inspect"); T=$(sed -nE 's/^decoder_ids +I32 +\[([0-9]+)\].*/\1/p' "$tmp/inspect")
check '[[ $S -eq 14 && $T -eq 13 ]]' "marian: S 14 and T 13 (Eine Lizenz. + </s>, shifted right): S=$S T=$T"
check 'grep -Eq "^encoder\.layer\.1 +F32 +\[4, $S, $S\]" "$tmp/inspect" && grep -Eq "^decoder\.layer\.1 +F32 +\[4, $T, $T\]" "$tmp/inspect" && grep -Eq "^cross\.layer\.1 +F32 +\[4, $T, $S\]" "$tmp/inspect" && grep -Eq "^encoder\.rollout +F32 +\[$S, $S\]" "$tmp/inspect"' "marian: tensor names and shapes: $(cat "$tmp/inspect")"
check 'grep -q "decoder_tokens = \[\"<pad>\",\"▁\",\"E\"" "$tmp/inspect" && grep -q "target = Eine Lizenz." "$tmp/inspect"' "marian: decoder tokens start with the start token"
check '[[ $(grep -cE "^ +[0-9]+ +[0-9]+ +[0-9.]+ +- " "$tmp/table") -eq 8 ]]' "marian: the cross table has no distance: $(cat "$tmp/table")"
check 'grep -q "\"name\":\"cross-attention\"" "$tmp/m2/attention.html" && grep -q "\"name\":\"decoder self-attention\"" "$tmp/m2/attention.html" && grep -q "\"R\":$T,\"C\":$S" "$tmp/m2/attention.html"' "marian: the page holds the three stacks"
# hostile: exit 2, nothing written
long=$(for i in $(seq 1 150); do printf "word "; done)
for bad in "--target-text=" "--target-text=   " "--target-text=$long" "--text-long" "--pair=x" "--target=logit" "--target=Hallo" "--label=x" "--layer=2"; do
    case "$bad" in
        --text-long) args=(--text "$long") ;;
        *) args=(--text "Hello" "${bad%%=*}" "${bad#*=}") ;;
    esac
    "$qkv" attention --model "$mar" "${args[@]}" --out "$tmp/mx" > /dev/null 2> "$tmp/err"; rc=$?
    check '[[ $rc -eq 2 && ! -e "$tmp/mx" ]]' "marian: ${bad:0:30} refused ($rc): $(cat "$tmp/err")"
done
"$qkv" attention --model "$mar" --text "$long" --out "$tmp/mx" > /dev/null 2> "$tmp/err"
check 'grep -q "max_position_embeddings" "$tmp/err"' "marian: a long text names the limit: $(cat "$tmp/err")"
"$qkv" attention --model "$mar" --text "Hello" --target-text "" --out "$tmp/mx" > /dev/null 2> "$tmp/err"
check 'grep -q "gives no tokens" "$tmp/err"' "marian: an empty target said so: $(cat "$tmp/err")"
"$qkv" attention --model "$mar" --text "Hello" --target "Hallo" --out "$tmp/mx" > /dev/null 2> "$tmp/err"
check 'grep -q -- "--target-text" "$tmp/err"' "marian: --target TEXT points to --target-text: $(cat "$tmp/err")"
"$qkv" attention --model "$bert" --text "the cat" --target-text "a dog" --out "$tmp/mx" > /dev/null 2> "$tmp/err"; rc=$?
check '[[ $rc -eq 2 && ! -e "$tmp/mx" ]] && grep -q "encoder-decoder" "$tmp/err"' "--target-text on a BERT refused ($rc): $(cat "$tmp/err")"
"$qkv" attention --model "$gpt" --text "the cat" --target-text "a dog" --out "$tmp/mx" > /dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 && ! -e "$tmp/mx" ]]' "--target-text on a GPT-2 refused ($rc)"

# refusals: exit 2 and nothing written
touch "$tmp/file"
"$qkv" attention --model "$bert" --text "a" --out "$tmp/file" > /dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "--out a regular file refused ($rc)"
mkdir -p "$tmp/busy/attention.html"
"$qkv" attention --model "$bert" --text "a" --out "$tmp/busy" > /dev/null 2> "$tmp/err"; rc=$?
check '[[ $rc -eq 2 && ! -e "$tmp/busy/attention.safetensors" ]] && grep -q "not a regular file" "$tmp/err"' "a directory where a file goes: refused before writing ($rc)"
"$qkv" attention --model "$bert" --text "a" --out "$tmp/y" --layer 2 > /dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "--layer past the model refused ($rc)"
"$qkv" attention --model "$bert" --out "$tmp/y" > /dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "--text required ($rc)"
"$qkv" attention --model "$tmp/none" --text "a" --out "$tmp/y" > /dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "missing model directory ($rc)"
mkdir "$tmp/t5"; echo '{"model_type": "t5"}' > "$tmp/t5/config.json"
"$qkv" attention --model "$tmp/t5" --text "a" --out "$tmp/y" > /dev/null 2> "$tmp/err"; rc=$?
check '[[ $rc -eq 2 ]] && grep -q "t5" "$tmp/err"' "an unsupported model_type named ($rc)"
# into a file: grep -q leaving a pipe early would end qkv with SIGPIPE (the help passes 4 KiB)
"$qkv" attention --help > "$tmp/help"; rc=$?
check '[[ $rc -eq 0 ]] && grep -q "rollout" "$tmp/help" && grep -q "cross-attention" "$tmp/help" && grep -q -- "--target-text" "$tmp/help"' "--help explains ($rc)"

echo "attention_cli: $checks checks, $fail failed"
[[ $fail -eq 0 ]]
