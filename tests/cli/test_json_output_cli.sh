#!/usr/bin/env bash
# test_json_output_cli.sh QKV SOURCE_DIR JSON_VALID — output that parses (issue 14, point 7):
# every JSON qkv writes is valid UTF-8 without NaN / Infinity (json_valid checks with
# jansson: strict UTF-8, no NaN tokens), also when a model's weights are NaN or a decoded
# token is half a character; a resumed run keeps every earlier metrics line (one written with
# NaN by an older qkv comes back as null); config fields of the wrong JSON type or out of range
# are refused naming the field (model configs, tokenizer_config.json, adapter_config.json,
# qkv train --config); --decode refuses ids that do not fit; bad QKV_NUM_THREADS / QKV_ARCH
# warn on stderr.
set -uo pipefail
qkv=$1 src=$2 jv=$3
tmp=$(mktemp -d "${TMPDIR:-/tmp}/qkv_json_cli.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
fail=0; checks=0
check() { checks=$((checks + 1)); if ! eval "$1"; then echo "FAIL: $2"; fail=$((fail + 1)); fi; }
run() { "$qkv" "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?; }
err() { head -c 300 "$tmp/err"; }
fx=$src/tests/fixtures

# ---- a model whose weights hold NaN: its numbers are null, never a bare nan
cp -r "$fx/cls/single" "$tmp/nan"
hdr=$(od -An -t u8 -N 8 "$tmp/nan/model.safetensors" | tr -d ' ')
size=$(stat -c %s "$tmp/nan/model.safetensors")
for ((off = 8 + hdr; off + 4 <= size; off += 1024)); do # a NaN every 256 floats
    printf '\xff\xff\xff\x7f' | dd of="$tmp/nan/model.safetensors" bs=1 seek=$off conv=notrunc status=none
done
printf 'good movie\nbad game\n' > "$tmp/in.txt"
run embed --model "$tmp/nan" "$tmp/in.txt"
cp "$tmp/out" "$tmp/embed.jsonl"
check '[[ $rc -eq 0 ]] && grep -q null "$tmp/embed.jsonl" && "$jv" --lines "$tmp/embed.jsonl"' \
    "embed of a NaN model: valid JSON lines with null ($rc: $(err); $(head -c 80 "$tmp/embed.jsonl"))"
run classify --model "$tmp/nan" --json "$tmp/in.txt"
cp "$tmp/out" "$tmp/cls.jsonl"
check '[[ $rc -eq 0 ]] && grep -q null "$tmp/cls.jsonl" && "$jv" --lines "$tmp/cls.jsonl"' \
    "classify --json of a NaN model: valid JSON ($rc: $(err); $(head -c 80 "$tmp/cls.jsonl"))"

# ---- strings: half a character decoded, a path that is not UTF-8 and holds a quote
bpe=$fx/tokenizer/bpe/tokenizer.json
id=$("$qkv" tokenize --model "$bpe" --ids-only --no-special "é" | awk '{print $1}')
run tokenize --model "$bpe" --json --decode "$id"
cp "$tmp/out" "$tmp/dec.json"
check '[[ $rc -eq 0 ]] && "$jv" "$tmp/dec.json"' "tokenize --json --decode of half a character: valid UTF-8 ($rc: $(od -c "$tmp/dec.json" | head -2))"
odd=$tmp/$'we\xffird"name'
mkdir "$odd" && cp "$fx/tokenizer/minilm/tokenizer.json" "$odd/"
run bench tokenize --model "$odd" --file "$tmp/in.txt" --reps 1
cp "$tmp/out" "$tmp/bench.jsonl"
check '[[ $rc -eq 0 ]] && "$jv" --lines "$tmp/bench.jsonl" && grep -q "\"lines\":2," "$tmp/bench.jsonl"' \
    "bench tokenize with an odd model path: valid JSON ($rc: $(err))"

# ---- metrics.jsonl: a resumed run keeps every earlier line; NaN from an older qkv becomes null
"$qkv" tokenizer train --vocab-size 300 --out "$tmp/tok" "$src/README.md" >/dev/null 2>&1
"$qkv" data prepare --tokenizer "$tmp/tok" --val-fraction 0.25 --split-on "" --out "$tmp/data" \
    "$src/README.md" >/dev/null 2>&1
flags=(--data "$tmp/data" --n-layer 1 --n-embd 16 --n-head 2 --seq 16 --batch 2 --warmup 1
       --eval-every 2 --eval-batches 1 --save-every 2 --threads 1 --no-tensorboard)
run train "${flags[@]}" --steps 4 --out "$tmp/run"
check '[[ $rc -eq 0 ]] && "$jv" --lines "$tmp/run/metrics.jsonl"' "train: metrics.jsonl parses ($rc: $(err))"
# an older qkv wrote the step-2 validation with NaN: the resumed run keeps it, as null
sed -i 's/^\({"step": 2, "val_loss": \)[0-9.]*/\1NaN/' "$tmp/run/metrics.jsonl"
n_before=$(grep -c '"step": [12],' "$tmp/run/metrics.jsonl")
rm -f "$tmp/run"/ckpt_00000004.safetensors
run train --resume --out "$tmp/run" --steps 6
n_after=$(grep -c '"step": [12],' "$tmp/run/metrics.jsonl")
check '[[ $rc -eq 0 && $n_before -eq 3 && $n_after -eq 3 ]] && grep -q "\"step\": 2, \"val_loss\": null" "$tmp/run/metrics.jsonl" && "$jv" --lines "$tmp/run/metrics.jsonl"' \
    "resume keeps the earlier lines (NaN written back as null) ($rc, $n_before -> $n_after lines: $(err))"

# ---- config fields of the wrong JSON type or out of range: refused, the field named
setkey() { # setkey FILE KEY VALUE: FILE (one key per line) with KEY set to VALUE
    sed -i "/^ *\"$2\": /d; s/^{/{\"$2\": $3,/" "$1"
}
bert() { # bert KEY VALUE: the classifier fixture with config.json's KEY set to VALUE
    rm -rf "$tmp/b"; cp -r "$fx/cls/single" "$tmp/b"
    setkey "$tmp/b/config.json" "$1" "$2"
    run embed --model "$tmp/b" "$tmp/in.txt"
}
for kv in 'hidden_act 5' 'position_embedding_type false' 'is_decoder "no"' 'model_type 3' \
          'layer_norm_eps 1e39' 'layer_norm_eps "1e-12"'; do
    k=${kv%% *} v=${kv#* }
    bert "$k" "$v"
    check '[[ $rc -eq 2 ]] && grep -q "$k" "$tmp/err"' "BERT config.json $k = $v: refused naming it ($rc: $(err))"
done
gpt() {
    rm -rf "$tmp/g"; cp -r "$fx/models/gpt2_tiny" "$tmp/g"
    setkey "$tmp/g/config.json" "$1" "$2"
    run generate --model "$tmp/g" --ids "1 2" --max-new-tokens 2
}
for kv in 'tie_word_embeddings "yes"' 'activation_function 1' 'scale_attn_weights 0' \
          'eos_token_id "1"' 'eos_token_id 100000' 'layer_norm_epsilon 1e300'; do
    k=${kv%% *} v=${kv#* }
    gpt "$k" "$v"
    check '[[ $rc -eq 2 ]] && grep -q "$k" "$tmp/err"' "GPT-2 config.json $k = $v: refused naming it ($rc: $(err))"
done
rm -rf "$tmp/v"; mkdir "$tmp/v"; cp "$fx/tokenizer/minilm/vocab.txt" "$tmp/v/"
echo '{"do_lower_case": "false"}' > "$tmp/v/tokenizer_config.json"
run tokenize --model "$tmp/v" "Hello"
check '[[ $rc -eq 2 ]] && grep -q do_lower_case "$tmp/err"' "tokenizer_config.json do_lower_case as a string: refused ($rc: $(err))"
echo '{"cls_token": 7}' > "$tmp/v/tokenizer_config.json"
run tokenize --model "$tmp/v" "Hello"
check '[[ $rc -eq 2 ]] && grep -q cls_token "$tmp/err"' "tokenizer_config.json cls_token as a number: refused ($rc: $(err))"
cp -r "$fx/train/lora/peft_adapter" "$tmp/ad"
setkey "$tmp/ad/adapter_config.json" use_rslora '"true"'
run embed --model "$fx/train/bert_cls/model" --lora "$tmp/ad" "$tmp/in.txt"
check '[[ $rc -eq 2 ]] && grep -q use_rslora "$tmp/err"' "adapter_config.json use_rslora as a string: refused ($rc: $(err))"
for cfg in '{"n_layer": "2"}' '{"data": 5}' '{"lr": "0.1"}'; do
    echo "$cfg" > "$tmp/cfg.json"
    run train --config "$tmp/cfg.json" --data "$tmp/data" --out "$tmp/cfgrun" --steps 1
    key=$(echo "$cfg" | sed 's/{"\([a-z_]*\)".*/\1/')
    check '[[ $rc -eq 2 && ! -e $tmp/cfgrun/config.json ]] && grep -q "$key" "$tmp/err"' "train --config $cfg: refused naming $key ($rc: $(err))"
done

# ---- --decode: ids that do not fit are refused, not wrapped
minilm=$fx/tokenizer/minilm/tokenizer.json
run tokenize --model "$minilm" --decode "101 4294967297 102"
check '[[ $rc -eq 2 ]] && grep -q 4294967297 "$tmp/err"' "--decode 4294967297 (wraps to 1): refused ($rc: $(cat "$tmp/out"))"
run tokenize --model "$minilm" --decode "101 30522"
check '[[ $rc -eq 2 ]]' "--decode an id past the vocabulary: refused ($rc)"
run tokenize --model "$minilm" --decode "101 x7 102"
check '[[ $rc -eq 2 ]] && grep -q "x7" "$tmp/err"' "--decode a word: refused, not skipped ($rc: $(cat "$tmp/out"))"

# ---- environment variables that are not understood are said so
QKV_NUM_THREADS=lots "$qkv" embed --model "$fx/cls/single" "$tmp/in.txt" >/dev/null 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 0 ]] && grep -q "QKV_NUM_THREADS=lots" "$tmp/err"' "QKV_NUM_THREADS=lots warns ($rc: $(err))"
QKV_NUM_THREADS=0 "$qkv" embed --model "$fx/cls/single" "$tmp/in.txt" >/dev/null 2>"$tmp/err"
check 'grep -q "QKV_NUM_THREADS=0" "$tmp/err"' "QKV_NUM_THREADS=0 warns"
QKV_NUM_THREADS=2 "$qkv" embed --model "$fx/cls/single" "$tmp/in.txt" >/dev/null 2>"$tmp/err"
check '! grep -q warning "$tmp/err"' "QKV_NUM_THREADS=2: no warning ($(err))"
QKV_ARCH=avx9000 "$qkv" embed --model "$fx/cls/single" "$tmp/in.txt" >/dev/null 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 0 ]] && grep -q "QKV_ARCH=avx9000" "$tmp/err"' "QKV_ARCH=avx9000 warns ($rc: $(err))"
QKV_ARCH=scalar "$qkv" embed --model "$fx/cls/single" "$tmp/in.txt" >/dev/null 2>"$tmp/err"
check '! grep -q warning "$tmp/err"' "QKV_ARCH=scalar: no warning ($(err))"

echo "json_output_cli: $((checks - fail)) passed, $fail failed"
[[ $fail -eq 0 ]]
