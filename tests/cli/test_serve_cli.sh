#!/usr/bin/env bash
# test_serve_cli.sh QKV MODEL_DIR SOURCE_DIR SERVE_CHECK — `qkv serve` end to end with curl on
# loopback ports the servers choose (--port 0; the port is read from the 'listening on' line):
# embeddings equal qkv embed's bit for bit (one text, many, base64, batched across concurrent
# requests), /tokenize, every error reply (status and OpenAI error code), limits, hostile
# bodies, slow and vanishing clients, the API key, SIGTERM finishing a request in flight,
# /metrics. Every server started is killed on exit. Skipped (77) without the real model.
set -uo pipefail
qkv=$1 model=$2 src=$3 check_tool=$4
if [[ ! -f "$model/model.safetensors" ]]; then
    echo "SKIP: no model at $model (scripts/fetch-model.sh installs it)"; exit 77
fi
source "$(dirname "$0")/serve_common.sh"
name=$(basename "$model")

metric() { curl -s "$@" "http://127.0.0.1:$port/metrics"; }

# ---------------------------------------------------------------- the expected vectors
{
    echo "A man is eating food."
    echo "Ünïcödé: 日本語のテキスト, emoji 🙂 and accents é à"
    echo ""
    for _ in $(seq 1 300); do printf 'lengthy '; done; echo # over 256 tokens: truncated
    echo "the last line"
} > "$tmp/in.txt"
"$qkv" embed --model "$model" --format npy --out "$tmp/want.npy" "$tmp/in.txt" 2>"$tmp/err"
check '[[ -s "$tmp/want.npy" ]]' "qkv embed: $(cat "$tmp/err")"
# the JSON body of those lines (they hold no quote or backslash)
body='{"model":"'"$name"'","input":['
first=1
while IFS= read -r line; do
    [[ $first -eq 1 ]] || body+=','
    body+="\"$line\""; first=0
done < "$tmp/in.txt"
body+=']}'
printf '%s' "$body" > "$tmp/all.json"

start_server "$tmp/a.log" --model "$model" --port 0 --max-body 65536 --max-inputs 8 \
    --max-tokens 1300 --timeout 2 --log
check '[[ -n $port ]]' "server A starts and says its port"

req /health
check '[[ $code == 200 && "$(field status)" == ok ]]' "health: $code"
req /v1/models
check '[[ $code == 200 && "$(field data.0.id)" == "$name" ]]' "models: $code $(cat "$tmp/r.json")"

# ---------------------------------------------------------------- embeddings = qkv embed
req /v1/embeddings -H 'Content-Type: application/json' --data-binary @"$tmp/all.json"
check '[[ $code == 200 ]]' "embeddings: $code $(head -c 300 "$tmp/r.json")"
check '"$check_tool" embeddings "$tmp/r.json" "$tmp/want.npy" 0' "embeddings equal qkv embed's bit for bit"
check '[[ "$(field model)" == "$name" ]]' "embeddings: the model's name"
all_tokens=$(field usage.prompt_tokens)
# one string (not an array), each row on its own
for row in 0 1 4; do
    line=$(sed -n "$((row + 1))p" "$tmp/in.txt")
    req /v1/embeddings --data-binary "{\"input\":\"$line\"}"
    check '[[ $code == 200 ]] && "$check_tool" embeddings "$tmp/r.json" "$tmp/want.npy" $row' \
        "one string (row $row) equals qkv embed's row"
done
req /v1/embeddings --data-binary "$(sed 's/"input"/"encoding_format":"base64","input"/' "$tmp/all.json")"
check '[[ $code == 200 ]] && "$check_tool" embeddings "$tmp/r.json" "$tmp/want.npy" 0' \
    "encoding_format base64 gives the same float32 bytes"
req /v1/embeddings --data-binary '{"input":"x","encoding_format":"float","dimensions":384,"user":"u"}'
check '[[ $code == 200 ]]' "encoding_format float, dimensions = the width, user: $code"

# /tokenize: the tokens the model sees; their count is the usage of the embeddings
req /tokenize --data-binary @"$tmp/all.json"
check '[[ $code == 200 && "$(field data.0.tokens.0)" == 101 && "$(field usage.total_tokens)" == "$all_tokens" ]]' \
    "tokenize: [CLS] first, the same token count as the embeddings ($all_tokens): $code"
check '[[ "$(field data.3.tokens | tr -cd , | wc -c)" == 255 ]]' "tokenize: a long text truncated to 256 tokens"

# ---------------------------------------------------------------- error replies
expect_error 400 invalid_json "malformed JSON" /v1/embeddings --data-binary '{"input": ["a",'
expect_error 400 invalid_json "empty body" /v1/embeddings -X POST
expect_error 400 invalid_request "a JSON array, not an object" /v1/embeddings --data-binary '["a"]'
expect_error 400 missing_field "no input" /v1/embeddings --data-binary '{"model":"'"$name"'"}'
expect_error 400 invalid_type "input a number" /v1/embeddings --data-binary '{"input":5}'
expect_error 400 invalid_type "input with a number" /v1/embeddings --data-binary '{"input":["a",7]}'
expect_error 400 invalid_type "token-id input" /v1/embeddings --data-binary '{"input":[[101,102]]}'
expect_error 400 invalid_value "empty input array" /v1/embeddings --data-binary '{"input":[]}'
expect_error 400 invalid_type "model not a string" /v1/embeddings --data-binary '{"input":"a","model":3}'
expect_error 404 model_not_found "unknown model" /v1/embeddings --data-binary '{"input":"a","model":"text-embedding-3-small"}'
expect_error 400 invalid_value "encoding_format" /v1/embeddings --data-binary '{"input":"a","encoding_format":"int8"}'
expect_error 400 invalid_value "dimensions" /v1/embeddings --data-binary '{"input":"a","dimensions":128}'
expect_error 400 invalid_json "duplicate keys" /v1/embeddings --data-binary '{"input":"a","input":"b"}'
expect_error 400 invalid_json "NUL escaped in a string" /v1/embeddings --data-binary '{"input":"a\u0000b"}'
expect_error 400 invalid_json "a lone surrogate" /v1/embeddings --data-binary '{"input":"\udc80"}'
printf '{"input":"\xff\xfe bad"}' > "$tmp/badutf8.json"
expect_error 400 invalid_json "invalid UTF-8" /v1/embeddings --data-binary @"$tmp/badutf8.json"
printf '{"input":' > "$tmp/deep.json"
for _ in $(seq 1 20000); do printf '['; done >> "$tmp/deep.json"
expect_error 400 invalid_json "20000 nested arrays" /v1/embeddings --data-binary @"$tmp/deep.json"
expect_error 400 too_many_inputs "9 inputs (--max-inputs 8)" /v1/embeddings \
    --data-binary '{"input":["a","b","c","d","e","f","g","h","i"]}'
long=$(for _ in $(seq 1 300); do printf 'lengthy '; done)
expect_error 400 too_many_tokens "6 x 256 tokens (--max-tokens 1300)" /v1/embeddings \
    --data-binary "{\"input\":[\"$long\",\"$long\",\"$long\",\"$long\",\"$long\",\"$long\"]}"
head -c 100000 /dev/zero | tr '\0' a | sed 's/^/{"input":"/; s/$/"}/' > "$tmp/big.json"
expect_error 413 request_too_large "100 kB body (--max-body 65536)" /v1/embeddings --data-binary @"$tmp/big.json"
expect_error 413 request_too_large "100 kB chunked body" /v1/embeddings -H 'Transfer-Encoding: chunked' \
    --data-binary @"$tmp/big.json"
expect_error 404 not_found "unknown route" /v2/things
expect_error 405 method_not_allowed "GET on /v1/embeddings" /v1/embeddings
expect_error 405 method_not_allowed "POST on /health" /health --data-binary '{}'
expect_error 404 model_not_found "completions without --lm" /v1/completions --data-binary '{"prompt":"hi"}'
expect_error 400 invalid_type "tokenize: input an object" /tokenize --data-binary '{"input":{}}'
req /health
check '[[ $code == 200 ]]' "still serving after the hostile requests: $code"

# ---------------------------------------------------------------- slow and vanishing clients
# a client that stops in the middle of its headers is closed after --timeout 2 (waited for at
# most 60 s); meanwhile the others are served
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Le' >&3
req /health
check '[[ $code == 200 ]]' "served while a slow client holds a connection: $code"
timeout 60 cat <&3 > /dev/null; rc=$?
check '[[ $rc -ne 124 ]]' "the slow client's connection is closed by the server"
exec 3<&- 3>&-
# a client that promises 1000 bytes, sends 10 and goes away
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"input":[' >&3
exec 3<&- 3>&-
for _ in $(seq 1 100); do # the server sees the close on its own time
    grep -q '^qkv_serve_aborted_total [1-9]' <<<"$(metric)" && break; sleep 0.1
done
check 'grep -q "^qkv_serve_aborted_total [1-9]" <<<"$(metric)"' "an early disconnect counts as aborted"
req /v1/embeddings --data-binary '{"input":"the last line"}'
check '[[ $code == 200 ]] && "$check_tool" embeddings "$tmp/r.json" "$tmp/want.npy" 4' \
    "serving after the early disconnect"

# ---------------------------------------------------------------- metrics
metric > "$tmp/metrics"
check 'grep -q "^qkv_serve_requests_total{route=\"/v1/embeddings\",code=\"200\"} [1-9]" "$tmp/metrics"' "metrics: embeddings 200 counted"
check 'grep -q "^qkv_serve_requests_total{route=\"/v1/embeddings\",code=\"413\"} 2" "$tmp/metrics"' "metrics: two 413 counted"
check 'grep -q "^qkv_serve_request_duration_seconds_bucket{route=\"/v1/embeddings\",le=\"+Inf\"} [1-9]" "$tmp/metrics"' "metrics: latency histogram"
check 'grep -q "^qkv_serve_tokens_total{kind=\"embedding\"} [1-9]" "$tmp/metrics"' "metrics: tokens"
check 'grep -q "^qkv_serve_batch_sequences_count{kind=\"embedding\"} [1-9]" "$tmp/metrics"' "metrics: batch sizes"
check 'grep -q "^# TYPE qkv_serve_request_duration_seconds histogram" "$tmp/metrics"' "metrics: TYPE lines"

kill -TERM "$pid"; wait "$pid"; rc=$?
check '[[ $rc -eq 0 ]] && grep -q "stopped" "$tmp/a.log"' "SIGTERM stops server A cleanly ($rc)"

# ---------------------------------------------------------------- batching, API key, SIGTERM
# B waits for a batch to fill (8 texts, --batch-wait-ms): eight concurrent one-text requests
# are embedded in one forward, and each still gets qkv embed's exact vector.
export QKV_API_KEY=sesame-test-key
start_server "$tmp/b.log" --model "$model" --port 0 --max-batch 8 --batch-wait-ms 60000
unset QKV_API_KEY
auth=(-H "Authorization: Bearer sesame-test-key")
check '[[ -n $port ]]' "server B starts"
expect_error 401 invalid_api_key "no API key" /v1/embeddings --data-binary '{"input":"a"}'
expect_error 401 invalid_api_key "a wrong API key" /v1/embeddings -H "Authorization: Bearer sesame" --data-binary '{"input":"a"}'
expect_error 401 invalid_api_key "metrics without the key" /metrics
req /health
check '[[ $code == 200 ]]' "health needs no key: $code"
cpids=()
for i in 0 1 2 3 4 0 1 4; do
    line=$(sed -n "$((i + 1))p" "$tmp/in.txt")
    n=${#cpids[@]}
    curl -s -o "$tmp/c$n.json" -w '%{http_code}' "${auth[@]}" --data-binary "{\"input\":[\"$line\"]}" \
        "http://127.0.0.1:$port/v1/embeddings" > "$tmp/c$n.code" &
    cpids+=($!)
done
wait "${cpids[@]}"
n=0
for i in 0 1 2 3 4 0 1 4; do
    check '[[ $(cat "$tmp/c$n.code") == 200 ]] && "$check_tool" embeddings "$tmp/c$n.json" "$tmp/want.npy" $i' \
        "concurrent request $n (row $i) equals qkv embed's row"
    n=$((n + 1))
done
metric "${auth[@]}" > "$tmp/metrics"
check 'grep -q "^qkv_serve_batch_requests_sum{kind=\"embedding\"} 8$" "$tmp/metrics" && grep -q "^qkv_serve_batch_requests_count{kind=\"embedding\"} 1$" "$tmp/metrics"' \
    "the eight requests went through one forward: $(grep '^qkv_serve_batch_requests_[sc]' "$tmp/metrics" | tr '\n' ' ')"

# SIGTERM while a request waits for its batch: it is answered, then the server exits 0
curl -s -o "$tmp/t.json" -w '%{http_code}' "${auth[@]}" --data-binary '{"input":"A man is eating food."}' \
    "http://127.0.0.1:$port/v1/embeddings" > "$tmp/t.code" &
tpid=$!
for _ in $(seq 1 300); do
    grep -q '^qkv_serve_requests_in_flight 2' <<<"$(metric "${auth[@]}")" && break; sleep 0.1
done
kill -TERM "$pid"
wait "$tpid"
wait "$pid"; rc=$?
check '[[ $(cat "$tmp/t.code") == 200 ]] && "$check_tool" embeddings "$tmp/t.json" "$tmp/want.npy" 0' \
    "the request in flight at SIGTERM is answered: $(cat "$tmp/t.code")"
check '[[ $rc -eq 0 ]] && grep -q "finishing 1 request" "$tmp/b.log"' "server B exits 0 after finishing it ($rc): $(tail -3 "$tmp/b.log")"

# ---------------------------------------------------------------- usage errors
"$qkv" serve --model "$model" >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "--port required ($rc)"
"$qkv" serve --model "$tmp/nope" --port 0 >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "missing model: exit 2 ($rc)"
"$qkv" serve --model "$model" --port 0 --host no.such.host.invalid >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 2 ]]' "unresolvable --host: exit 2 ($rc)"

echo "serve_cli: $((checks - fail)) passed, $fail failed"
[[ $fail -eq 0 ]]
