#!/usr/bin/env bash
# test_serve_completions.sh QKV SOURCE_DIR SERVE_CHECK — POST /v1/completions of `qkv serve --lm`
# on the tiny GPT-2 fixture with a byte-level BPE trained here (qkv tokenizer train, vocabulary
# = the model's 384): the text equals qkv generate's for the same prompt and options (greedy,
# sampled with a seed, token-id prompts), streaming (server-sent events) gives the same text
# in pieces ending with [DONE], stop strings cut the text, every invalid field is a 4xx with
# OpenAI's error shape, a client leaving mid-stream does not hurt the server, SIGTERM exits 0;
# eight concurrent completions (decoded together, one forward per step) each equal qkv
# generate's text alone.
set -uo pipefail
qkv=$1 src=$2 check_tool=$3
source "$(dirname "$0")/serve_common.sh"

lm=$tmp/tiny
mkdir -p "$lm"
cp "$src/tests/fixtures/models/gpt2_tiny/config.json" "$src/tests/fixtures/models/gpt2_tiny/model.safetensors" "$lm/"
"$qkv" tokenizer train --vocab-size 384 --out "$lm" "$src/data/corpus.txt" > /dev/null 2>"$tmp/err"
check '[[ -f "$lm/tokenizer.json" ]]' "tokenizer train: $(cat "$tmp/err")"

start_server "$tmp/log" --lm "$lm" --port 0 --max-new-tokens 64
check '[[ -n $port ]]' "the server starts: $(cat "$tmp/log")"

# qkv generate's text for the same prompt and options, as serve_check prints a JSON string
gen_text() {
    "$qkv" generate --model "$lm" --json "$@" 2>/dev/null > "$tmp/gen.json"
    field text "$tmp/gen.json"
}

prompt="The cat sat on"
want=$(gen_text --prompt "$prompt" --max-new-tokens 24)
req /v1/completions --data-binary "{\"model\":\"tiny\",\"prompt\":\"$prompt\",\"max_tokens\":24,\"temperature\":0}"
check '[[ $code == 200 && "$(field object)" == text_completion && "$(field choices.0.text)" == "$want" ]]' \
    "greedy completion equals qkv generate's text: $code $(head -c 400 "$tmp/r.json") vs '$want'"
greedy=$(field choices.0.text)
check '[[ -n "$greedy" && "$(field usage.completion_tokens)" -ge 1 && "$(field usage.total_tokens)" == $(( $(field usage.prompt_tokens) + $(field usage.completion_tokens) )) ]]' \
    "usage adds up: $(field usage)"

want=$(gen_text --prompt "$prompt" --max-new-tokens 24 --temperature 0.9 --top-p 0.9 --seed 42)
req /v1/completions --data-binary "{\"prompt\":\"$prompt\",\"max_tokens\":24,\"temperature\":0.9,\"top_p\":0.9,\"seed\":42}"
check '[[ $code == 200 && "$(field choices.0.text)" == "$want" ]]' "a seeded sample equals qkv generate's: '$(field choices.0.text)' vs '$want'"

want=$(gen_text --ids "5 6 7 8" --max-new-tokens 10)
req /v1/completions --data-binary '{"prompt":[5,6,7,8],"max_tokens":10,"temperature":0}'
check '[[ $code == 200 && "$(field choices.0.text)" == "$want" && "$(field usage.prompt_tokens)" == 4 ]]' \
    "a token-id prompt: '$(field choices.0.text)' vs '$want'"

# streamed: the same text in server-sent events, a finish_reason, then [DONE]
curl -sN --data-binary "{\"prompt\":\"$prompt\",\"max_tokens\":24,\"temperature\":0,\"stream\":true}" \
    "http://127.0.0.1:$port/v1/completions" > "$tmp/sse"
streamed=
n=0
while IFS= read -r line; do
    [[ $line == "data: {"* ]] || continue
    printf '%s' "${line#data: }" > "$tmp/ev$n.json"
    t=$(field choices.0.text "$tmp/ev$n.json"; printf x) # x keeps the text's own newlines
    t=${t%x}
    streamed+=${t%$'\n'} # serve_check's line end
    last=$n; n=$((n + 1))
done < "$tmp/sse"
check '[[ $n -ge 2 && "$streamed" == "$greedy" ]]' "streamed text ($n events) equals the plain completion: '$streamed' vs '$greedy'"
check '[[ "$(field choices.0.finish_reason "$tmp/ev$last.json")" == length ]]' "the last event has finish_reason"
check '[[ "$(grep -v "^$" "$tmp/sse" | tail -1)" == "data: [DONE]" ]]' "the stream ends with data: [DONE]"
check 'grep -q "^$" "$tmp/sse"' "events are separated by blank lines"

# a stop string: the text up to it, finish_reason stop
# (two ASCII letters of the text after its first byte: the text may hold invalid UTF-8, which
# the replies show as U+FFFD and a stop string could not name)
stop=$(printf '%s' "${greedy:1}" | LC_ALL=C grep -o '[A-Za-z][A-Za-z]' | head -1)
check '[[ -n "$stop" ]]' "the greedy text has two ASCII letters for a stop string: '$greedy'"
if [[ -n $stop ]]; then
    prefix=${greedy%%"$stop"*}
    req /v1/completions --data-binary "$(printf '{"prompt":"%s","max_tokens":24,"temperature":0,"stop":["zzzz",%s]}' "$prompt" "$(printf '%s' "$stop" | sed 's/\\/\\\\/g; s/"/\\"/g; s/^/"/; s/$/"/')")"
    check '[[ $code == 200 && "$(field choices.0.text)" == "$prefix" && "$(field choices.0.finish_reason)" == stop ]]' \
        "stop '$stop': '$(field choices.0.text)' vs '$prefix' ($(field choices.0.finish_reason))"
fi

# ---------------------------------------------------------------- errors
expect_error 400 unsupported "n = 2" /v1/completions --data-binary '{"prompt":"a","n":2}'
req /v1/completions --data-binary '{"prompt":"a","max_tokens":2,"n":1,"best_of":1,"echo":false,"presence_penalty":0.0,"frequency_penalty":0,"logprobs":null,"suffix":null,"user":"u"}'
check '[[ $code == 200 ]]' "OpenAI's defaults written out are accepted: $code $(head -c 300 "$tmp/r.json")"
expect_error 400 unsupported "presence_penalty 0.5" /v1/completions --data-binary '{"prompt":"a","presence_penalty":0.5}'
expect_error 400 unsupported "logprobs" /v1/completions --data-binary '{"prompt":"a","logprobs":2}'
expect_error 400 invalid_value "max_tokens 0" /v1/completions --data-binary '{"prompt":"a","max_tokens":0}'
expect_error 400 invalid_value "max_tokens over --max-new-tokens" /v1/completions --data-binary '{"prompt":"a","max_tokens":65}'
expect_error 400 invalid_value "max_tokens 2.5" /v1/completions --data-binary '{"prompt":"a","max_tokens":2.5}'
expect_error 400 invalid_value "temperature 5" /v1/completions --data-binary '{"prompt":"a","temperature":5}'
expect_error 400 invalid_value "top_p 0" /v1/completions --data-binary '{"prompt":"a","top_p":0}'
expect_error 400 invalid_type "seed a string" /v1/completions --data-binary '{"prompt":"a","seed":"7"}'
expect_error 400 invalid_type "stream a string" /v1/completions --data-binary '{"prompt":"a","stream":"yes"}'
expect_error 400 invalid_value "5 stop strings" /v1/completions --data-binary '{"prompt":"a","stop":["a","b","c","d","e"]}'
expect_error 400 invalid_value "an empty stop string" /v1/completions --data-binary '{"prompt":"a","stop":""}'
expect_error 400 missing_field "no prompt" /v1/completions --data-binary '{"max_tokens":3}'
expect_error 400 invalid_type "prompt an object" /v1/completions --data-binary '{"prompt":{}}'
expect_error 400 invalid_value "an empty prompt" /v1/completions --data-binary '{"prompt":""}'
expect_error 400 invalid_value "a token id outside the vocabulary" /v1/completions --data-binary '{"prompt":[1,384]}'
expect_error 400 invalid_value "two prompts" /v1/completions --data-binary '{"prompt":[[1,2],[3]]}'
ids=$(seq -s, 1 120)
expect_error 400 context_length_exceeded "120 tokens + 20 > the context of 128" /v1/completions --data-binary "{\"prompt\":[$ids],\"max_tokens\":20}"
expect_error 404 model_not_found "another model" /v1/completions --data-binary '{"prompt":"a","model":"gpt-4"}'
expect_error 404 model_not_found "embeddings without --model" /v1/embeddings --data-binary '{"input":"a"}'
expect_error 400 invalid_json "malformed" /v1/completions --data-binary '{"prompt":'
req /tokenize --data-binary "{\"input\":\"$prompt\"}"
check '[[ $code == 200 && "$(field usage.total_tokens)" -ge 1 ]]' "tokenize with the language model: $code"

# a client that leaves in the middle of a stream
curl -sN --data-binary '{"prompt":"a","max_tokens":64,"temperature":1,"stream":true}' \
    "http://127.0.0.1:$port/v1/completions" | head -c 10 > /dev/null
req /health
check '[[ $code == 200 ]]' "serving after a client left mid-stream: $code"
curl -s "http://127.0.0.1:$port/metrics" > "$tmp/metrics"
check 'grep -q "^qkv_serve_tokens_total{kind=\"completion\"} [1-9]" "$tmp/metrics" && grep -q "^qkv_serve_tokens_total{kind=\"prompt\"} [1-9]" "$tmp/metrics"' \
    "metrics count prompt and completion tokens"
check 'grep -q "^qkv_serve_requests_total{route=\"/v1/completions\",code=\"400\"} [1-9]" "$tmp/metrics"' "metrics count the 400s"

# ---------------------------------------------------------------- decode steps batched
# Concurrent completions are decoded together (one forward per step over all of them); each
# text must be exactly qkv generate's for its prompt and options alone. Eight requests with
# different prompts, lengths and options (greedy, seeded samples, two streamed).
prompts=("The cat sat on" "Once upon a time" "It was" "A" "The quick brown fox jumps over the lazy" "We" "In the beginning there was" "Hello")
max=(24 40 8 33 17 50 5 29)
temps=(0 0.9 0 1.0 0.7 0 1.2 0)
for i in "${!prompts[@]}"; do
    o=(--prompt "${prompts[$i]}" --max-new-tokens "${max[$i]}")
    [[ ${temps[$i]} != 0 ]] && o+=(--temperature "${temps[$i]}" --seed $((100 + i)))
    want[$i]=$(gen_text "${o[@]}")
done
# concurrent_requests PREFIX: the eight at once (request i streamed when i is 1 or 4)
concurrent_requests() {
    local bg=()
    for i in "${!prompts[@]}"; do
        local body="{\"prompt\":\"${prompts[$i]}\",\"max_tokens\":${max[$i]},\"temperature\":${temps[$i]},\"seed\":$((100 + i))"
        if [[ $i == 1 || $i == 4 ]]; then
            curl -sN --data-binary "$body,\"stream\":true}" "http://127.0.0.1:$port/v1/completions" > "$tmp/$1$i.sse" &
        else
            curl -s -o "$tmp/$1$i.json" --data-binary "$body}" "http://127.0.0.1:$port/v1/completions" &
        fi
        bg+=($!)
    done
    wait "${bg[@]}"
}
# the text of a reply, or of a stream's events put together
reply_text() {
    if [[ -f "$tmp/$1.sse" ]]; then
        local text= line t k=0
        while IFS= read -r line; do
            [[ $line == "data: {"* ]] || continue
            printf '%s' "${line#data: }" > "$tmp/$1.ev$k.json"
            t=$(field choices.0.text "$tmp/$1.ev$k.json"; printf x)
            t=${t%x}
            text+=${t%$'\n'}
            k=$((k + 1))
        done < "$tmp/$1.sse"
        printf '%s' "$text"
    else
        field choices.0.text "$tmp/$1.json"
    fi
}
# on this server, as they come (some overlap, some not): the same texts whatever the timing
concurrent_requests a
for i in "${!prompts[@]}"; do
    got=$(reply_text a$i)
    check '[[ "$got" == "${want[$i]}" ]]' "concurrent completion $i equals qkv generate's: '$got' vs '${want[$i]}'"
done
kill -TERM "$pid"; wait "$pid"; rc=$?
check '[[ $rc -eq 0 ]] && grep -q stopped "$tmp/log"' "SIGTERM: exit 0 ($rc)"

# a server that lets the eight gather (--batch-wait-ms, --decode-batch 8): the first step runs
# all eight prompts in one forward, and sequences leave the batch as they end (5 tokens to 50)
start_server "$tmp/log" --lm "$lm" --port 0 --max-new-tokens 64 --decode-batch 8 --batch-wait-ms 60000
concurrent_requests b
for i in "${!prompts[@]}"; do
    got=$(reply_text b$i)
    check '[[ "$got" == "${want[$i]}" ]]' "batched completion $i equals qkv generate's: '$got' vs '${want[$i]}'"
done
curl -s "http://127.0.0.1:$port/metrics" > "$tmp/metrics"
le() { sed -n "s/^qkv_serve_batch_sequences_bucket{kind=\"decode\",le=\"$1\"} //p" "$tmp/metrics"; }
check '[[ $(le 4) -lt $(le 8) ]]' \
    "some decode steps carried more than four sequences: $(grep '^qkv_serve_batch_sequences_bucket{kind="decode"' "$tmp/metrics" | tr '\n' ' ')"
check 'grep -q "^qkv_serve_batch_sequences_count{kind=\"decode\"} 50$" "$tmp/metrics"' \
    "50 steps: the longest completion's tokens ($(grep '^qkv_serve_batch_sequences_count{kind="decode"' "$tmp/metrics"))"
kill -TERM "$pid"; wait "$pid"; rc=$?
check '[[ $rc -eq 0 ]]' "SIGTERM: exit 0 ($rc)"
echo "serve_completions: $((checks - fail)) passed, $fail failed"
[[ $fail -eq 0 ]]
