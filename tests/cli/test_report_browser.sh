#!/usr/bin/env bash
# test_report_browser.sh QKV SOURCE_DIR PNG_INK — the HTML that qkv writes (the pages of
# `qkv report` for a `qkv train` and a `qkv finetune` run, and the `qkv attention` page of an
# encoder-decoder with its three stacks) as a person sees it: headless
# Chromium renders each page to a screenshot and to its DOM. The screenshot must not be blank
# (PNG_INK, tests/png_ink.c, counts the pixels that are not white and those of a clear hue:
# the chart lines are blue and orange, the text black and grey), and the DOM must hold the
# title and every chart with its lines. A blank page rendered the same way is the control: it
# must count as blank. Skipped (exit 77) with a message where Chromium or PNG_INK (libpng) is
# absent; scripts/install-deps.sh installs Chromium where it runs as root (CI).
set -uo pipefail
qkv=$1 src=$2 ink=${3:-}
browser=
for b in "${QKV_CHROMIUM:-}" chromium chromium-browser google-chrome; do
    [[ -n "$b" ]] && command -v "$b" >/dev/null 2>&1 && { browser=$b; break; }
done
if [[ -z "$browser" ]]; then
    echo "SKIP: no Chromium (apt-get install chromium, or set QKV_CHROMIUM): the report pages are not rendered"
    exit 77
fi
if [[ -z "$ink" || ! -x "$ink" ]]; then
    echo "SKIP: png_ink was not built (libpng-dev missing): screenshots cannot be checked"
    exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/qkv_report_browser.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
. "$src/tests/cli/tiny_runs.sh"
fail=0; checks=0
check() { checks=$((checks + 1)); if ! eval "$1"; then echo "FAIL: $2"; fail=$((fail + 1)); fi; }

# headless Chromium, no network, its own profile; --no-sandbox: CI runs as root
chrome() {
    timeout 120 "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run \
        --user-data-dir="$tmp/profile" --disable-extensions --window-size=1100,2600 \
        --proxy-server=127.0.0.1:9 "$@" 2>>"$tmp/chrome.err"
}
shot() { # PAGE PNG
    rm -f "$2"
    (cd "$tmp" && chrome --screenshot="$2" "file://$1") >/dev/null
}

tiny_data "$qkv" "$src" "$tmp"
"$qkv" train --data "$tmp/data" --n-layer 2 --n-embd 32 --n-head 2 --seq 32 --batch 4 --steps 10 \
    --warmup 2 --lr 3e-3 --eval-every 5 --eval-batches 2 --threads 1 --out "$tmp/run" >/dev/null 2>&1
"$qkv" report "$tmp/run" >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 0 ]]' "qkv report of a train run ($rc)"
tiny_labelled "$tmp/train.tsv"
"$qkv" finetune --model "$src/tests/fixtures/cls/single" --train "$tmp/train.tsv" --epochs 2 \
    --batch 16 --lr 5e-3 --dropout off --threads 1 --out "$tmp/ft" >/dev/null 2>&1
"$qkv" report "$tmp/ft" >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 0 ]]' "qkv report of a finetune run ($rc)"

# the control: a blank page counts as blank
printf '<!DOCTYPE html><html><head><title>blank</title></head><body></body></html>\n' >"$tmp/blank.html"
shot "$tmp/blank.html" "$tmp/blank.png"
read -r bw bh bink bcol < <("$ink" "$tmp/blank.png" 2>/dev/null || echo 0 0 -1 -1)
check '[[ $bw -gt 0 && $bink -eq 0 && $bcol -eq 0 ]]' "the blank control renders blank: ${bw}x$bh, ink $bink, colour $bcol ($(tail -2 "$tmp/chrome.err"))"

# each page: rendered, not blank, coloured chart lines; the DOM holds the expected elements
for kind in run ft; do
    page=$tmp/$kind/report.html
    shot "$page" "$tmp/$kind.png"
    read -r w h nink ncol < <("$ink" "$tmp/$kind.png" 2>/dev/null || echo 0 0 0 0)
    check '[[ $w -gt 0 ]]' "$kind: a screenshot ($(tail -2 "$tmp/chrome.err"))"
    # at least 0.5% of the pixels inked (the pages ink ~2%, the blank one 0), and a thousand of
    # clear colour (the curves)
    check '[[ $nink -gt $((w * h / 200)) ]]' "$kind: the page looks blank: $nink of $((w * h)) pixels inked"
    check '[[ $ncol -gt 1000 ]]' "$kind: no chart lines drawn: $ncol coloured pixels"
    echo "$kind: ${w}x$h screenshot, $nink pixels inked, $ncol coloured"
    (cd "$tmp" && chrome --dump-dom "file://$page") >"$tmp/$kind.dom"
    check 'grep -q "<h1 id=\"title\">qkv report: " "$tmp/$kind.dom"' "$kind: the title in the DOM"
    charts="chart-loss chart-lr chart-grad-norm chart-throughput"
    [[ $kind == ft ]] && charts="$charts chart-val"
    for id in $charts; do
        # the figure, its <svg> and at least one drawn line, as the browser parsed them
        read -r nsvg n < <(awk -v id="$id" 'index($0, "id=\"" id "\"") { f = 1 }
            f && /<svg/ { s++ } f && /<polyline/ { c++ } f && /<\/figure>/ { exit }
            END { print s + 0, c + 0 }' "$tmp/$kind.dom")
        check '[[ $nsvg -eq 1 && $n -ge 1 ]]' "$kind: chart $id rendered with its lines ($nsvg svg, $n lines)"
    done
    check 'grep -q "id=\"summary\"" "$tmp/$kind.dom" && grep -q "id=\"config\"" "$tmp/$kind.dom"' "$kind: summary and configuration"
done
check 'grep -q "id=\"report\"" "$tmp/ft.dom" && grep -q "<img class=\"confusion\" id=\"confusion\"" "$tmp/ft.dom"' "ft: the classification report and confusion matrix"

# the attention page of an encoder-decoder (`qkv attention` on the tiny MarianMT): the canvas
# is drawn (viridis: coloured pixels), the stack selector holds the three stacks, and the page
# opened on the cross-attention stack (#2) shows it with its table (no distance: dashes)
"$qkv" attention --model "$src/tests/fixtures/marian/tiny" --text "The GNU General Public License is free." \
    --target-text "Eine freie Lizenz." --out "$tmp/attn" >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 0 ]]' "qkv attention on the tiny Marian ($rc)"
for png in "$tmp"/attn/cross_layer00_head00.png "$tmp"/attn/encoder_rollout.png "$tmp"/attn/decoder_layer01_heads.png; do
    read -r w h nink ncol < <("$ink" "$png" 2>/dev/null || echo 0 0 0 0)
    check '[[ $w -gt 0 && $ncol -gt 1000 ]]' "$(basename "$png"): a coloured heatmap (${w}x$h, $ncol coloured)"
done
page=$tmp/attn/attention.html
shot "$page" "$tmp/attn.png"
read -r w h nink ncol < <("$ink" "$tmp/attn.png" 2>/dev/null || echo 0 0 0 0)
check '[[ $w -gt 0 && $nink -gt $((w * h / 200)) && $ncol -gt 5000 ]]' "attention page: drawn ($nink inked, $ncol coloured of $((w * h)))"
echo "attention: ${w}x$h screenshot, $nink pixels inked, $ncol coloured"
(cd "$tmp" && chrome --dump-dom "file://$page") >"$tmp/attn.dom"
check 'grep -q "<select id=\"stack\"><option value=\"0\">encoder self-attention</option><option value=\"1\">decoder self-attention</option><option value=\"2\">cross-attention</option></select>" "$tmp/attn.dom"' "attention page: the stack selector"
check 'grep -q "<b id=\"what\">encoder self-attention: layer 0, head 0</b>" "$tmp/attn.dom" && [[ $(grep -o "<tr data-l" "$tmp/attn.dom" | wc -l) -eq 8 ]]' "attention page: the encoder shown first, its 8 heads in the table"
(cd "$tmp" && chrome --dump-dom "file://$page#2") >"$tmp/attn2.dom"
check 'grep -q "<b id=\"what\">cross-attention: layer 0, head 0</b>" "$tmp/attn2.dom" && [[ $(grep -o "<td>–</td>" "$tmp/attn2.dom" | wc -l) -eq 16 ]]' "attention page #2: the cross-attention stack with dashes for distance and previous"

echo "report_browser ($browser): $checks checks, $fail failed"
[[ $fail -eq 0 ]]
