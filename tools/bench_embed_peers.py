#!/usr/bin/env python3
"""bench_embed_peers.py [MODEL_DIR] [options] — the peers of bench/bench_embed.c on the same
cases: all-MiniLM-L6-v2 (BertModel + mean pooling + normalization, what sentence-transformers
runs) on PyTorch, and on ONNX Runtime when `onnxruntime` is installed (the model is exported
with torch.onnx to a temporary file once per batch shape, and checked against PyTorch before it
is timed). With --ort-int8 ONNX Runtime also runs the export quantized by
onnxruntime.quantization.quantize_dynamic (int8 weights per channel, dynamic uint8 activations:
ORT's "dynamic int8"); its pooled embeddings are compared with PyTorch's by cosine (printed as
"cos_min" / "cos_mean"), not timed-only. Same JSON lines, "impl" telling which. Threads are
pinned with torch.set_num_threads / ORT intra_op_num_threads.

Options: --batches 1,32  --seqs 16,128,256  --threads 1,2  --reps 10  --no-pytorch  --no-ort
         --ort-int8"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch
from transformers import BertModel


def ints(s):
    return tuple(int(x) for x in s.split(","))


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", nargs="?", default="models/all-MiniLM-L6-v2")
    p.add_argument("--batches", type=ints, default=(1, 32))
    p.add_argument("--seqs", type=ints, default=(16, 128, 256))
    p.add_argument("--threads", type=ints, default=(1, 2))
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--no-pytorch", action="store_true", help="skip the PyTorch rows")
    p.add_argument("--no-ort", action="store_true", help="skip ONNX Runtime FP32")
    p.add_argument("--ort-int8", action="store_true",
                   help="also ONNX Runtime with dynamic int8 quantization")
    return p.parse_args()


def inputs(b, t):
    rng = np.random.default_rng(7)
    ids = rng.integers(1000, 29000, size=(b, t), dtype=np.int64)
    ids[:, 0], ids[:, -1] = 101, 102
    return ids, np.ones((b, t), dtype=np.int64)


def pool(h, mask):
    m = mask[..., None].astype(h.dtype)
    e = (h * m).sum(1) / m.sum(1)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def bench(fn, reps):
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def line(impl, b, t, th, med, **extra):
    rec = {"op": "embed", "impl": impl, "batch": b, "seq": t, "threads": th,
           "ms": round(med * 1e3, 3), "sentences_per_s": round(b / med, 1),
           "tokens_per_s": round(b * t / med)}
    rec.update(extra)
    print(json.dumps(rec), flush=True)


def main():
    args = parse()
    model = BertModel.from_pretrained(args.model, add_pooling_layer=False).eval()
    if not args.no_pytorch:
        for th in args.threads:
            torch.set_num_threads(th)
            for b in args.batches:
                for t in args.seqs:
                    ids, mask = inputs(b, t)
                    ti, tm = torch.from_numpy(ids), torch.from_numpy(mask)

                    def run():
                        with torch.inference_mode():
                            h = model(input_ids=ti, attention_mask=tm).last_hidden_state
                        return pool(h.numpy(), mask)
                    line("pytorch", b, t, th, bench(run, args.reps))
    if args.no_ort and not args.ort_int8:
        return
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

    def session(path, th):
        so = ort.SessionOptions()
        so.intra_op_num_threads = th
        so.inter_op_num_threads = 1
        return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

    wrapped = Wrap(model).eval()
    torch.set_num_threads(max(args.threads))
    with tempfile.TemporaryDirectory() as tmp:
        for b in args.batches:
            for t in args.seqs:
                ids, mask = inputs(b, t)
                path = os.path.join(tmp, f"minilm_{b}x{t}.onnx")
                torch.onnx.export(wrapped, (torch.from_numpy(ids), torch.from_numpy(mask)), path,
                                  input_names=["input_ids", "attention_mask"], output_names=["h"],
                                  opset_version=17, dynamo=False)
                with torch.inference_mode():
                    ref = wrapped(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
                feed = {"input_ids": ids, "attention_mask": mask}
                if not args.no_ort:
                    for th in args.threads:
                        sess = session(path, th)
                        err = float(abs(sess.run(None, feed)[0] - ref).max())
                        if err > 1e-3:
                            print(f"bench_embed_peers: ONNX output differs from PyTorch by "
                                  f"{err:.3g} at {b}x{t}; ORT skipped there", file=sys.stderr)
                            continue
                        line("onnxruntime", b, t, th,
                             bench(lambda: pool(sess.run(None, feed)[0], mask), args.reps))
                if args.ort_int8:
                    from onnxruntime.quantization import QuantType, quantize_dynamic
                    qpath = os.path.join(tmp, f"minilm_{b}x{t}_int8.onnx")
                    quantize_dynamic(path, qpath, weight_type=QuantType.QInt8, per_channel=True)
                    want = pool(ref, mask)
                    for th in args.threads:
                        sess = session(qpath, th)
                        cos = (pool(sess.run(None, feed)[0], mask) * want).sum(1)
                        line("onnxruntime-int8", b, t, th,
                             bench(lambda: pool(sess.run(None, feed)[0], mask), args.reps),
                             cos_min=round(float(cos.min()), 6),
                             cos_mean=round(float(cos.mean()), 6))


if __name__ == "__main__":
    main()
