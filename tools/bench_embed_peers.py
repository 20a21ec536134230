#!/usr/bin/env python3
"""bench_embed_peers.py [MODEL_DIR] — the peers of bench/bench_embed.c on the same cases:
all-MiniLM-L6-v2 (BertModel + mean pooling + normalization, what sentence-transformers runs) on
PyTorch, and on ONNX Runtime when `onnxruntime` is installed (the model is exported with
torch.onnx to a temporary file once per batch shape, and checked against PyTorch before it is
timed). Same JSON lines, "impl" telling which. Threads are pinned with torch.set_num_threads /
ORT intra_op_num_threads."""
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch
from transformers import BertModel

MODEL = sys.argv[1] if len(sys.argv) > 1 else "models/all-MiniLM-L6-v2"
BATCHES, SEQS, THREADS, REPS = (1, 32), (16, 128, 256), (1, 2), 10


def inputs(b, t):
    rng = np.random.default_rng(7)
    ids = rng.integers(1000, 29000, size=(b, t), dtype=np.int64)
    ids[:, 0], ids[:, -1] = 101, 102
    return ids, np.ones((b, t), dtype=np.int64)


def pool(h, mask):
    m = mask[..., None].astype(h.dtype)
    e = (h * m).sum(1) / m.sum(1)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def bench(fn):
    fn()
    ts = []
    for _ in range(REPS):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def line(impl, b, t, th, med):
    print(json.dumps({"op": "embed", "impl": impl, "batch": b, "seq": t, "threads": th,
                      "ms": round(med * 1e3, 3), "sentences_per_s": round(b / med, 1),
                      "tokens_per_s": round(b * t / med)}), flush=True)


def main():
    model = BertModel.from_pretrained(MODEL, add_pooling_layer=False).eval()
    for th in THREADS:
        torch.set_num_threads(th)
        for b in BATCHES:
            for t in SEQS:
                ids, mask = inputs(b, t)
                ti, tm = torch.from_numpy(ids), torch.from_numpy(mask)

                def run():
                    with torch.inference_mode():
                        h = model(input_ids=ti, attention_mask=tm).last_hidden_state
                    return pool(h.numpy(), mask)
                line("pytorch", b, t, th, bench(run))
    try:
        import onnxruntime as ort
    except ImportError:
        print("bench_embed_peers: onnxruntime not installed; ORT skipped", file=sys.stderr)
        return
    # transformers 5 bakes the traced shape into the attention mask code, so a dynamic-axes
    # export gives wrong results at other shapes: export once per (batch, length), check the
    # ONNX output against PyTorch at that shape, then time it.
    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, i, a):
            return self.m(input_ids=i, attention_mask=a).last_hidden_state

    wrapped = Wrap(model).eval()
    with tempfile.TemporaryDirectory() as tmp:
        for b in BATCHES:
            for t in SEQS:
                ids, mask = inputs(b, t)
                path = os.path.join(tmp, f"minilm_{b}x{t}.onnx")
                torch.onnx.export(wrapped, (torch.from_numpy(ids), torch.from_numpy(mask)), path,
                                  input_names=["input_ids", "attention_mask"], output_names=["h"],
                                  opset_version=17, dynamo=False)
                with torch.inference_mode():
                    ref = wrapped(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
                for th in THREADS:
                    so = ort.SessionOptions()
                    so.intra_op_num_threads = th
                    so.inter_op_num_threads = 1
                    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
                    feed = {"input_ids": ids, "attention_mask": mask}
                    err = float(abs(sess.run(None, feed)[0] - ref).max())
                    if err > 1e-3:
                        print(f"bench_embed_peers: ONNX output differs from PyTorch by {err:.3g} "
                              f"at {b}x{t}; ORT skipped there", file=sys.stderr)
                        continue
                    run = lambda: pool(sess.run(None, feed)[0], mask)
                    line("onnxruntime", b, t, th, bench(run))


if __name__ == "__main__":
    main()
