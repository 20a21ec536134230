#!/usr/bin/env bash
# run_python_check.sh MODULES SCRIPT ARGS... — runs a tools/ comparison script with a Python
# that has MODULES (comma-separated), found as $QKV_PYTHON, tools/.venv/bin/python or python3.
# Exits 77 (CTest: skipped) with a message when none has them: qkv never needs Python to build
# or test; these checks compare against installed peers when they are there.
mods=$1; shift
root=$(cd "$(dirname "$0")/.." && pwd)
imports=$(echo "$mods" | tr ',' '\n' | sed 's/^/import /' | paste -sd ';')
for py in "${QKV_PYTHON:-}" "$root/tools/.venv/bin/python" python3; do
    [[ -n "$py" ]] && command -v "$py" >/dev/null 2>&1 || continue
    if "$py" -c "$imports" >/dev/null 2>&1; then
        HF_HUB_OFFLINE=1 exec "$py" "$@"
    fi
done
echo "SKIP: no Python with $mods (set QKV_PYTHON, or create tools/.venv with them)"
exit 77
