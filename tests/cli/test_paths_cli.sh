#!/usr/bin/env bash
# test_paths_cli.sh QKV SOURCE_DIR — files only where they belong (issue 14, point 1): the
# tokenizer a dataset's meta.json names is stored absolute by `qkv data prepare` (so training
# from another directory finds it), a relative name there must stay inside the dataset
# directory (../ escapes refused with exit 2), and `qkv train` copies into its exported model
# only a file that loads as a tokenizer (a meta.json naming some other file on the machine
# does not get it copied, world-readable, into the run).
set -uo pipefail
qkv=$(realpath "$1") src=$(realpath "$2")
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0; checks=0
check() { checks=$((checks + 1)); if ! eval "$1"; then echo "FAIL: $2"; fail=$((fail + 1)); fi; }

mkdir -p "$tmp/work"
cd "$tmp/work" || exit 1
"$qkv" tokenizer train --vocab-size 300 --special "<|endoftext|>" --out tok \
    "$src/README.md" >/dev/null 2>&1
check '[[ -f tok/tokenizer.json ]]' "BPE trained"
"$qkv" data prepare --tokenizer tok --val-fraction 0.25 --split-on "" --out data \
    "$src"/docs/*.md "$src/README.md" >/dev/null 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 0 ]]' "data prepare with a relative tokenizer path ($rc: $(head -c 300 "$tmp/err"))"
check 'grep -q "\"tokenizer\": \"$tmp/work/tok\"" data/meta.json' \
    "meta.json stores the tokenizer absolute ($(grep tokenizer data/meta.json))"

flags=(--n-layer 1 --n-embd 16 --n-head 2 --seq 16 --batch 2 --steps 2 --warmup 1
       --eval-every 2 --eval-batches 1 --save-every 2 --threads 1)
# from another directory: the relative path typed at prepare time still resolves
cd "$tmp" || exit 1
"$qkv" train --data work/data "${flags[@]}" --out run1 >/dev/null 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 0 && -f run1/model/tokenizer.json ]]' \
    "train from another directory exports the tokenizer ($rc: $(tail -2 "$tmp/err"))"
check 'cmp -s run1/model/tokenizer.json work/tok/tokenizer.json' "the exported tokenizer is the dataset's"

# a relative name leading out of the dataset directory is refused
cp -r work/data esc
sed -i "s|\"tokenizer\": \"[^\"]*\"|\"tokenizer\": \"../work/tok/tokenizer.json\"|" esc/meta.json
"$qkv" train --data esc "${flags[@]}" --out run2 >/dev/null 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 2 ]] && grep -q "leads outside" "$tmp/err"' \
    "meta.json tokenizer ../ escaping the dataset: exit 2 ($rc: $(head -c 300 "$tmp/err"))"
# inside the directory (relative) is fine
cp work/tok/tokenizer.json esc/tokenizer.json
sed -i "s|\"tokenizer\": \"[^\"]*\"|\"tokenizer\": \"tokenizer.json\"|" esc/meta.json
"$qkv" train --data esc "${flags[@]}" --out run3 >/dev/null 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 0 ]] && cmp -s run3/model/tokenizer.json esc/tokenizer.json' \
    "a tokenizer named relative to the dataset and inside it is exported ($rc)"
# the wrong JSON type is refused with the field named
sed -i "s|\"tokenizer\": \"[^\"]*\"|\"tokenizer\": 7|" esc/meta.json
"$qkv" train --data esc "${flags[@]}" --out run4 >/dev/null 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 2 ]] && grep -q "\"tokenizer\" must be" "$tmp/err"' "tokenizer: 7 refused ($rc)"

# an absolute name of a file that is not a tokenizer: training runs, nothing is copied
echo "secret: hunter2" > secret.txt
chmod 600 secret.txt
cp -r work/data abs
sed -i "s|\"tokenizer\": \"[^\"]*\"|\"tokenizer\": \"$tmp/secret.txt\"|" abs/meta.json
"$qkv" train --data abs "${flags[@]}" --out run5 >/dev/null 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 0 && ! -e run5/model/tokenizer.json ]] && ! grep -rq hunter2 run5' \
    "a non-tokenizer named by meta.json is not copied into the run ($rc)"
check 'grep -q "was not copied" "$tmp/err"' "and the user is told why"

# a model's modules.json naming its Pooling folder outside the model directory
cp -r "$src/tests/fixtures/cls/single" pm
mkdir -p pooling && echo '{"pooling_mode_cls_token": true}' > pooling/config.json
printf '[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},\n {"idx":1,"name":"1","path":"../pooling","type":"sentence_transformers.models.Pooling"}]\n' > pm/modules.json
echo "good movie" | "$qkv" embed --model pm >/dev/null 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 2 ]] && grep -q "leads outside" "$tmp/err"' \
    "modules.json's Pooling path ../ escaping the model: exit 2 ($rc: $(head -c 300 "$tmp/err"))"
mv pooling pm/1_Pooling
sed -i 's|"../pooling"|"1_Pooling"|' pm/modules.json
echo "good movie" | "$qkv" embed --model pm >/dev/null 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 0 ]]' "and inside the model it is read ($rc: $(head -c 300 "$tmp/err"))"

echo "paths_cli: $((checks - fail))/$checks checks passed"
[[ $fail -eq 0 ]]
