# serve_common.sh — sourced by the qkv serve tests (test_serve_cli.sh, test_serve_completions.sh)
# after they set $qkv and $check_tool (tests/serve_check): a temporary directory removed on exit
# with every server started killed, check, start_server, and curl helpers.
command -v curl >/dev/null || { echo "SKIP: no curl (scripts/install-deps.sh installs it)"; exit 77; }
tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
    wait 2>/dev/null
    [[ -n ${KEEP_TMP:-} ]] && echo "kept $tmp" || rm -rf "$tmp"
}
trap cleanup EXIT
fail=0; checks=0
check() { checks=$((checks + 1)); if ! eval "$1"; then echo "FAIL: $2"; fail=$((fail + 1)); fi; }

# start_server LOG ARGS...: starts qkv serve, sets $pid and $port (empty when it did not start)
start_server() {
    local log=$1; shift
    : > "$log" # emptied here: a log reused from an earlier server must not give its port
    "$qkv" serve "$@" > "$log" 2>&1 &
    pid=$!
    pids+=("$pid")
    port=
    for _ in $(seq 1 600); do # waits for the model to load; not a timing check
        port=$(sed -n 's/.*listening on http:\/\/[^ ]*:\([0-9][0-9]*\) .*/\1/p' "$log")
        [[ -n $port ]] && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "server did not start: $(cat "$log")"
}

# req URL [curl args...]: the status in $code, the body in $tmp/r.json
req() {
    local url=$1; shift
    code=$(curl -s -o "$tmp/r.json" -w '%{http_code}' "$@" "http://127.0.0.1:$port$url")
}
# field PATH [FILE]: a field of the reply (or of FILE), as serve_check prints it
field() { "$check_tool" field "${2:-$tmp/r.json}" "$1" 2>/dev/null; }
# expect_error STATUS CODE WHAT URL [curl args...]: the status and OpenAI's error shape
expect_error() {
    local want=$1 ecode=$2 what=$3; shift 3
    req "$@"
    check '[[ $code == "$want" && "$(field error.code)" == "$ecode" && -n "$(field error.message)" && "$(field error.type)" != "" ]]' \
        "$what: want $want $ecode, got $code $(head -c 300 "$tmp/r.json")"
}
