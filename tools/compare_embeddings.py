#!/usr/bin/env python3
"""compare_embeddings.py QKV MODEL_DIR — the full embedding comparison of issue 6: every usable
line of the Debian fortunes corpus (up to --limit, default 1500) plus the stress lines of
tests/fixtures/embed/sentences.txt, embedded by `qkv embed` and by sentence-transformers on
PyTorch. Fails unless every sentence has cosine >= 0.99999 and max abs difference <= 1e-4.
Exit 77 (skip) when sentence-transformers/torch or the corpus is missing."""
import glob
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    from sentence_transformers import SentenceTransformer
except ImportError as e:
    print(f"SKIP: {e}")
    sys.exit(77)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    qkv, model = sys.argv[1], sys.argv[2]
    limit = int(sys.argv[3]) if len(sys.argv) > 3 else 1500
    files = sorted(f for f in glob.glob("/usr/share/games/fortunes/*")
                   if not f.endswith((".dat", ".u8")) and os.path.isfile(f))
    if not files:
        print("SKIP: the fortunes corpus is not installed (apt-get install fortunes)")
        sys.exit(77)
    lines = []
    for f in files:
        with open(f, "rb") as fh:
            lines += [l for l in fh.read().split(b"\n") if l.strip() and l.strip() != b"%"]
    step = max(1, len(lines) // limit)
    lines = lines[::step][:limit]
    with open(os.path.join(ROOT, "tests", "fixtures", "embed", "sentences.txt"), "rb") as fh:
        lines += fh.read().split(b"\n")[:-1]
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = os.path.join(tmp, "in.txt"), os.path.join(tmp, "out.npy")
        with open(inp, "wb") as fh:
            fh.write(b"\n".join(lines) + b"\n")
        subprocess.run([qkv, "embed", "--model", model, "--format", "npy", "--out", out, inp],
                       check=True)
        got = np.load(out).astype(np.float64)
    texts = [l.decode("utf-8", errors="replace") for l in lines]
    st = SentenceTransformer(model, device="cpu")
    want = st.encode(texts, batch_size=64, convert_to_numpy=True).astype(np.float64)
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    mx = np.abs(got - want).max(1)
    bad = np.where((cos < 0.99999) | (mx > 1e-4))[0]
    print(f"{len(lines)} sentences: min cosine {cos.min():.9f}, max abs difference {mx.max():.3g}, "
          f"{len(bad)} outside the tolerance")
    for i in bad[:10]:
        print(f"  line {i + 1}: cosine {cos[i]:.8f} max abs {mx[i]:.3g}: {texts[i][:80]!r}")
    sys.exit(1 if len(bad) else 0)


if __name__ == "__main__":
    main()
