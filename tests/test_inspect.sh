#!/usr/bin/env bash
# test_inspect.sh QKV SOURCE_DIR [python] — `qkv inspect`: usage, exit codes, messages, output.
#   basic (default): committed fixtures (valid ones written by Hugging Face safetensors);
#   python: writes a file with the reference implementation and checks that `qkv inspect`
#           lists the same tensors and metadata (tools/safetensors_roundtrip.py inspect);
#           skipped (exit 77) without a Python that has safetensors and numpy.
set -uo pipefail
qkv=$1
src=$2
mode=${3:-basic}
fx=$src/tests/fixtures/safetensors
out=$(mktemp)
trap 'rm -f "$out"' EXIT
fail=0; checks=0

expect() { # expect CODE DESCRIPTION -- command...
    local want=$1 what=$2; shift 3
    checks=$((checks + 1))
    "$@" >"$out" 2>&1
    local got=$?
    if [[ $got -ne $want ]]; then
        echo "FAIL: $what: exit $got, expected $want"; cat "$out"; fail=$((fail + 1))
    fi
}
contains() { # contains TEXT DESCRIPTION (searches the last command's output)
    checks=$((checks + 1))
    if ! grep -qF -- "$1" "$out"; then
        echo "FAIL: $2: output lacks '$1'"; cat "$out"; fail=$((fail + 1))
    fi
}

if [[ $mode == python ]]; then
    py=""
    for cand in "${QKV_PYTHON:-}" "$src/tools/.venv/bin/python" python3; do
        [[ -n $cand ]] || continue
        if "$cand" -c 'import safetensors, numpy' >/dev/null 2>&1; then py=$cand; break; fi
        [[ -n ${QKV_PYTHON:-} ]] && break # an explicit choice is not second-guessed
    done
    if [[ -z $py ]]; then
        echo "SKIP: no Python with the safetensors and numpy packages (set QKV_PYTHON)"
        exit 77
    fi
    dir=$(mktemp -d)
    "$py" "$src/tools/safetensors_roundtrip.py" inspect "$qkv" "$dir"
    rc=$?
    rm -rf "$dir"
    exit $rc
fi

# usage
expect 0 "inspect --help" -- "$qkv" inspect --help
contains "Usage: qkv inspect FILE.safetensors" "inspect --help"; contains "--json" "inspect --help"
expect 0 "help inspect" -- "$qkv" help inspect; contains "Usage: qkv inspect" "help inspect"
expect 2 "inspect without a file" -- "$qkv" inspect; contains "missing FILE" "no file"
contains "qkv inspect --help" "no file hint"
expect 2 "inspect unknown option" -- "$qkv" inspect --bogus "$fx/valid/tiny_model.safetensors"
contains "unknown option '--bogus'" "unknown option"
expect 2 "inspect two files" -- "$qkv" inspect "$fx/valid/tiny_model.safetensors" "$fx/valid/zero_size.safetensors"

# bad input: missing, not a file, malformed (exit 2, message naming the file and the problem)
expect 2 "missing file" -- "$qkv" inspect /nonexistent/model.safetensors
contains "qkv: /nonexistent/model.safetensors: input/output error" "missing file"
contains "No such file" "missing file"
expect 2 "a directory" -- "$qkv" inspect "$fx"; contains "not a regular file" "a directory"
m=$fx/malformed
expect 2 "malformed: gap" -- "$qkv" inspect "$m/gap_in_offsets.safetensors"
contains "qkv: $m/gap_in_offsets.safetensors: malformed file: " "malformed prefix"
contains "gap in data offsets" "malformed detail"
expect 2 "malformed: unknown dtype" -- "$qkv" inspect --json "$m/unknown_dtype.safetensors"
contains "unknown dtype 'F128'" "unknown dtype"
expect 2 "malformed: empty file" -- "$qkv" inspect "$m/empty_file.safetensors"; contains "too short" "empty file"
expect 2 "malformed: truncated" -- "$qkv" inspect "$m/truncated_at_168.safetensors"
contains "truncated" "truncated"
n_bad=0
for f in "$m"/*.safetensors; do # every malformed fixture: exit 2 and a one-line message
    "$qkv" inspect "$f" >"$out" 2>&1
    rc=$?
    checks=$((checks + 1))
    if [[ $rc -ne 2 ]] || ! grep -q "malformed file: " "$out"; then
        echo "FAIL: $f: exit $rc"; cat "$out"; fail=$((fail + 1))
    fi
    n_bad=$((n_bad + 1))
done

# valid files written by the reference implementation
v=$fx/valid
expect 0 "tiny_model" -- "$qkv" inspect "$v/tiny_model.safetensors"
contains "8 tensors, 536 parameters, 2320 bytes of data" "tiny_model totals"
contains "embeddings.word_embeddings.weight" "tiny_model names"
contains "[30, 8]" "tiny_model shape"
contains "format = pt" "tiny_model metadata"
expect 0 "tiny_model --json" -- "$qkv" inspect --json "$v/tiny_model.safetensors"
contains '"tensor_count":8,"parameter_count":536,"bytes":2320' "json totals"
contains '{"name":"position_ids","dtype":"I64","shape":[1,16],"bytes":128,' "json tensor"
contains '"metadata":{"format":"pt"}' "json metadata"
expect 0 "zero_size --json" -- "$qkv" inspect "$v/zero_size.safetensors" --json
contains '"name":"scalar","dtype":"F32","shape":[],"bytes":4' "0-d tensor"
contains '"shape":[2,0,3],"bytes":0' "zero-size tensor"
expect 0 "all_dtypes --json" -- "$qkv" inspect --json "$v/all_dtypes.safetensors"
contains '"quotes":"a\"b\\c\nd\te"' "json escaping"
contains '"unicode":"héllo ✓ 名前"' "json utf-8"
contains '"dtype":"F8_E5M2"' "f8 dtype"
expect 0 "all_dtypes table" -- "$qkv" inspect "$v/all_dtypes.safetensors"
contains 'quotes = a"b\\c\nd\te' "table escaping"
expect 0 "no tensors" -- "$qkv" inspect "$v/no_tensors.safetensors"
contains "0 tensors, 0 parameters, 0 bytes of data" "no tensors"
expect 0 "-- before the file" -- "$qkv" inspect -- "$v/metadata_only.safetensors"
contains "note = no tensors" "metadata_only"

echo "inspect: $((checks - fail)) passed, $fail failed ($n_bad malformed files)"
[[ $fail -eq 0 ]]
