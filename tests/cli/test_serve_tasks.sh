#!/usr/bin/env bash
# test_serve_tasks.sh QKV SOURCE_DIR SERVE_CHECK — POST /classify (`qkv serve --classifier`) and
# POST /translate (`--translator`) on the tiny fixture models: every label and score equals
# `qkv classify --all`'s as it prints them (single-label, multi-label, regression, text pairs,
# logits, top_k), concurrent requests batched into one forward give the same rows, translations
# equal `qkv translate`'s output and transformers' (MarianMT beam 4 and greedy, T5 with its
# prefix), every invalid field is a 4xx in OpenAI's error shape, /v1/models, /health and
# /metrics list and count both.
set -uo pipefail
qkv=$1 src=$2 check_tool=$3
source "$(dirname "$0")/serve_common.sh"
cls=$src/tests/fixtures/cls
mt=$src/tests/fixtures/marian
t5=$src/tests/fixtures/t5

# stop_server: SIGTERM, exit 0
stop_server() {
    kill -TERM "$pid"; wait "$pid"; local rc=$?
    check '[[ $rc -eq 0 ]]' "SIGTERM: exit 0 ($rc): $(tail -3 "$tmp/log")"
}

# ---------------------------------------------------------------- classification = qkv classify
for name in single multi regression pair; do
    pairs=(); mode=
    [[ $name == pair ]] && pairs=(--pairs) && mode=pairs
    "$qkv" classify --model "$cls/$name" --all "${pairs[@]}" "$cls/$name.txt" > "$tmp/$name.cli" 2>/dev/null
    "$qkv" classify --model "$cls/$name" --all --logits "${pairs[@]}" "$cls/$name.txt" > "$tmp/$name.logits" 2>/dev/null
    input=$("$check_tool" inputs "$cls/$name.txt" $mode)
    start_server "$tmp/log" --classifier "$cls/$name" --port 0
    check '[[ -n $port ]]' "$name: the server starts: $(cat "$tmp/log")"
    req /classify --data-binary "{\"input\":$input}"
    "$check_tool" classify "$tmp/r.json" > "$tmp/$name.srv"
    check '[[ $code == 200 && -s "$tmp/$name.cli" ]] && cmp -s "$tmp/$name.srv" "$tmp/$name.cli"' \
        "$name: /classify equals qkv classify --all: $code $(diff "$tmp/$name.srv" "$tmp/$name.cli" | head -5)"
    req /classify --data-binary "{\"model\":\"$name\",\"input\":$input,\"logits\":true}"
    "$check_tool" classify "$tmp/r.json" > "$tmp/$name.srvl"
    check '[[ $code == 200 ]] && cmp -s "$tmp/$name.srvl" "$tmp/$name.logits"' "$name: logits equal qkv classify --logits --all"
    req /classify --data-binary "{\"input\":$input,\"top_k\":1}"
    "$check_tool" classify "$tmp/r.json" > "$tmp/$name.top1"
    check '[[ $code == 200 ]] && cut -f1,2 "$tmp/$name.cli" | cmp -s - "$tmp/$name.top1"' "$name: top_k 1 = the best label"
    if [[ $name == single ]]; then
        first=$(head -n1 "$cls/single.txt")
        req /classify --data-binary "{\"input\":\"$first\"}"
        check '[[ $code == 200 && "$(field data.0.label)" == "$(head -n1 "$tmp/single.cli" | cut -f1)" && "$(field usage.prompt_tokens)" -ge 3 && "$(field data.0.object)" == classification ]]' \
            "a single string input: $(head -c 300 "$tmp/r.json")"
        # errors
        expect_error 400 invalid_type "input not a string" /classify --data-binary '{"input":5}'
        expect_error 400 invalid_type "a pair of one" /classify --data-binary '{"input":[["a"]]}'
        expect_error 400 invalid_type "a pair of three" /classify --data-binary '{"input":[["a","b","c"]]}'
        expect_error 400 invalid_type "a pair with a number" /classify --data-binary '{"input":[["a",3]]}'
        expect_error 400 missing_field "no input" /classify --data-binary '{"top_k":1}'
        expect_error 400 invalid_value "empty input" /classify --data-binary '{"input":[]}'
        expect_error 400 invalid_value "top_k 0" /classify --data-binary '{"input":"a","top_k":0}'
        expect_error 400 invalid_value "top_k past the labels" /classify --data-binary '{"input":"a","top_k":4}'
        expect_error 400 invalid_value "top_k 1.5" /classify --data-binary '{"input":"a","top_k":1.5}'
        expect_error 400 invalid_type "logits a string" /classify --data-binary '{"input":"a","logits":"yes"}'
        expect_error 404 model_not_found "another model" /classify --data-binary '{"input":"a","model":"nope"}'
        expect_error 400 invalid_json "not JSON" /classify --data-binary '{"input":'
        expect_error 405 method_not_allowed "GET /classify" /classify
        expect_error 404 model_not_found "no translator" /translate --data-binary '{"input":"a"}'
    fi
    stop_server
done

# limits: inputs and tokens
start_server "$tmp/log" --classifier "$cls/single" --port 0 --max-inputs 3 --max-tokens 12
expect_error 400 too_many_inputs "over --max-inputs" /classify --data-binary '{"input":["a","b","c","d"]}'
expect_error 400 too_many_tokens "over --max-tokens" /classify --data-binary '{"input":["the movie is good","the film is great","i love it"]}'
req /classify --data-binary '{"input":["good","bad"]}'
check '[[ $code == 200 ]]' "under the limits: $code"
stop_server

# concurrent requests batched into one forward (--batch-wait-ms lets the batch fill): each
# reply equals its line of qkv classify
start_server "$tmp/log" --classifier "$cls/single" --port 0 --max-batch 4 --batch-wait-ms 60000
bg=()
for i in 1 2 3 4; do
    line=$(sed -n "${i}p" "$cls/single.txt")
    curl -s -o "$tmp/c$i.json" --data-binary "{\"input\":[\"$line\"]}" "http://127.0.0.1:$port/classify" &
    bg+=($!)
done
wait "${bg[@]}"
for i in 1 2 3 4; do
    check '[[ "$("$check_tool" classify "$tmp/c$i.json")" == "$(sed -n "${i}p" "$tmp/single.cli")" ]]' "batched request $i equals qkv classify's line $i"
done
curl -s "http://127.0.0.1:$port/metrics" > "$tmp/metrics"
check 'grep -q "^qkv_serve_batch_requests_sum{kind=\"classification\"} 4$" "$tmp/metrics" && grep -q "^qkv_serve_batch_requests_count{kind=\"classification\"} 1$" "$tmp/metrics"' \
    "the four requests went through one forward: $(grep '^qkv_serve_batch_requests_[sc].*classif' "$tmp/metrics" | tr '\n' ' ')"
stop_server

# ---------------------------------------------------------------- translation = qkv translate
start_server "$tmp/log" --translator "$mt/tiny" --classifier "$cls/single" --port 0 --max-new-tokens 64
check '[[ -n $port ]]' "translator: the server starts: $(cat "$tmp/log")"
input=$("$check_tool" inputs "$mt/texts.txt")
req /translate --data-binary "{\"input\":$input}"
"$check_tool" translations "$tmp/r.json" > "$tmp/mt.srv"
check '[[ $code == 200 ]] && cmp -s "$tmp/mt.srv" "$mt/expect.translate.txt"' "beam 4 (the directory's defaults) equals transformers': $code $(diff "$tmp/mt.srv" "$mt/expect.translate.txt" | head -4)"
check '[[ "$(field usage.total_tokens)" == $(( $(field usage.prompt_tokens) + $(field usage.completion_tokens) )) && "$(field data.0.object)" == translation && "$(field data.0.tokens)" -ge 1 ]]' \
    "usage adds up: $(field usage)"
req /translate --data-binary "{\"input\":$input,\"beams\":1,\"max_length\":12}"
"$check_tool" translations "$tmp/r.json" > "$tmp/mt.greedy"
check '[[ $code == 200 ]] && cmp -s "$tmp/mt.greedy" "$mt/expect.translate_greedy12.txt"' "greedy, max_length 12 equals transformers'"
"$qkv" translate --model "$mt/tiny" --beams 2 --max-new-tokens 7 --no-repeat-ngram 2 --length-penalty 0.5 "$mt/texts.txt" > "$tmp/mt.cli" 2>/dev/null
req /translate --data-binary "{\"input\":$input,\"beams\":2,\"max_new_tokens\":7,\"no_repeat_ngram_size\":2,\"length_penalty\":0.5}"
"$check_tool" translations "$tmp/r.json" > "$tmp/mt.opts"
check '[[ $code == 200 && -s "$tmp/mt.cli" ]] && cmp -s "$tmp/mt.opts" "$tmp/mt.cli"' "beams 2, max_new_tokens 7, no_repeat_ngram_size 2, length_penalty 0.5 equal qkv translate's"
first=$(head -n1 "$mt/texts.txt")
req /translate --data-binary "{\"input\":\"$first\",\"model\":\"tiny\"}"
check '[[ $code == 200 && "$(field data.0.translation)" == "$(head -n1 "$mt/expect.translate.txt")" ]]' "a single string input"
long=$(printf 'word %.0s' $(seq 1 700))
expect_error 400 context_length_exceeded "a source over the model's positions" /translate --data-binary "{\"input\":[\"a\",\"$long\"]}"
expect_error 400 invalid_value "beams 0" /translate --data-binary '{"input":"a","beams":0}'
expect_error 400 invalid_value "beams 17" /translate --data-binary '{"input":"a","beams":17}'
expect_error 400 invalid_value "max_new_tokens over --max-new-tokens" /translate --data-binary '{"input":"a","max_new_tokens":65}'
expect_error 400 invalid_value "max_length 1" /translate --data-binary '{"input":"a","max_length":1}'
expect_error 400 invalid_value "length_penalty a string" /translate --data-binary '{"input":"a","length_penalty":"x"}'
expect_error 400 invalid_type "prefix a number" /translate --data-binary '{"input":"a","prefix":5}'
expect_error 400 invalid_type "input of numbers" /translate --data-binary '{"input":[1,2]}'
expect_error 404 model_not_found "another model" /translate --data-binary '{"input":"a","model":"t5"}'
req /v1/models
check '[[ "$(field data.0.kind)" == classification && "$(field data.1.kind)" == translation && "$(field data.1.id)" == tiny ]]' "/v1/models lists both: $(cat "$tmp/r.json")"
req /health
check '[[ "$(field models.classification)" == single && "$(field models.translation)" == tiny ]]' "/health lists both: $(cat "$tmp/r.json")"
req /classify --data-binary '{"input":"good"}'
curl -s "http://127.0.0.1:$port/metrics" > "$tmp/metrics"
check 'grep -q "^qkv_serve_requests_total{route=\"/translate\",code=\"200\"} 4$" "$tmp/metrics"' "metrics: four translations answered"
check 'grep -q "^qkv_serve_requests_total{route=\"/translate\",code=\"400\"} 8$" "$tmp/metrics" && grep -q "^qkv_serve_requests_total{route=\"/translate\",code=\"404\"} 1$" "$tmp/metrics"' "metrics: eight bad translations, one unknown model"
check 'grep -q "^qkv_serve_requests_total{route=\"/classify\",code=\"200\"} 1$" "$tmp/metrics"' "metrics: the classification"
check 'grep -q "^qkv_serve_tokens_total{kind=\"translation_source\"} [1-9]" "$tmp/metrics" && grep -q "^qkv_serve_tokens_total{kind=\"translation\"} [1-9]" "$tmp/metrics" && grep -q "^qkv_serve_tokens_total{kind=\"classification\"} [1-9]" "$tmp/metrics"' "metrics: tokens"
check 'grep -q "^qkv_serve_request_duration_seconds_count{route=\"/translate\"} 13$" "$tmp/metrics"' "metrics: translate latency"
stop_server

# T5: the directory's task prefix by default, "prefix" overrides it
start_server "$tmp/log" --translator "$t5/v11" --port 0
input=$("$check_tool" inputs "$t5/texts.txt")
req /translate --data-binary "{\"input\":$input}"
"$check_tool" translations "$tmp/r.json" > "$tmp/t5.srv"
check '[[ $code == 200 ]] && cmp -s "$tmp/t5.srv" "$t5/expect.translate.txt"' "T5 with its prefix equals transformers': $code"
req /translate --data-binary "{\"input\":$input,\"prefix\":\"\",\"beams\":3}"
"$check_tool" translations "$tmp/r.json" > "$tmp/t5.np"
check '[[ $code == 200 ]] && cmp -s "$tmp/t5.np" "$t5/expect.translate_noprefix_beam3.txt"' "T5 without a prefix, beam 3, equals transformers'"
stop_server

echo "serve_tasks: $((checks - fail)) passed, $fail failed"
[[ $fail -eq 0 ]]
