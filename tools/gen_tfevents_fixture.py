#!/usr/bin/env python3
"""gen_tfevents_fixture.py — a TensorBoard event file written by TensorBoard's own code, for
tests/test_tfevents.c (qkv's framing, CRC-32C and Event encoding must give the same bytes).

Writes tests/fixtures/tfevents/reference.tfevents with tensorboard's RecordWriter (the TFRecord
framing and its masked CRC-32C) and tensorboard.compat.proto's Event / Summary /
HistogramProto messages, three records:
  1. wall_time 1700000000.25, file_version "brain.Event:2"
  2. wall_time 1700000001.5, step 3: simple_value scalars train/loss 2.5,
     train/lr 0.000123 (stored as float32, as TensorBoard does), val/ppl 1e30, zero 0.0
  3. wall_time 1700000002.75, step 4: a histogram "weights/h.0.w" of the 64 values
     x[i] = ((i * 37) % 101 - 50) / 16 (exact in float32) and one +inf, which is left out:
     min, max, num, sum, sum of squares and 30 equal-width buckets between min and max
     (bucket_limit = each bucket's right edge, the last one max), the rule qkv documents in
     src/io/tfevents.h — this script computes the buckets itself from that rule.
The C test encodes the same inputs and compares the whole file byte for byte.

Run: tools/.venv/bin/python tools/gen_tfevents_fixture.py   (tensorboard 2.21.0)
"""
import math
import os

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "tfevents")
BUCKETS = 30


def histogram(values):
    xs = [v for v in values if math.isfinite(v)]
    mn, mx = min(xs), max(xs)
    nb = BUCKETS if mx > mn else 1
    limits = [mx if b == nb - 1 else mn + (mx - mn) * (b + 1) / nb for b in range(nb)]
    counts = [0.0] * nb
    if nb == 1:
        counts[0] = float(len(xs))
    else:
        for v in xs:
            b = int((v - mn) / (mx - mn) * nb)
            counts[min(max(b, 0), nb - 1)] += 1
    h = summary_pb2.HistogramProto(min=mn, max=mx, num=float(len(xs)), sum=math.fsum(xs),
                                   sum_squares=math.fsum(v * v for v in xs))
    # qkv sums in order, in double: the same as math.fsum for these exact binary fractions
    assert h.sum == sum(xs) and h.sum_squares == sum(v * v for v in xs)
    h.bucket_limit.extend(limits)
    h.bucket.extend(counts)
    return h


def main():
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "reference.tfevents")
    with open(path, "wb") as f:
        w = RecordWriter(f)
        w.write(event_pb2.Event(wall_time=1700000000.25, file_version="brain.Event:2")
                .SerializeToString())
        s = summary_pb2.Summary()
        for tag, v in [("train/loss", 2.5), ("train/lr", 0.000123), ("val/ppl", 1e30),
                       ("zero", 0.0)]:
            s.value.add(tag=tag, simple_value=v)
        w.write(event_pb2.Event(wall_time=1700000001.5, step=3, summary=s).SerializeToString())
        xs = [((i * 37) % 101 - 50) / 16 for i in range(64)] + [math.inf]
        s = summary_pb2.Summary()
        s.value.add(tag="weights/h.0.w", histo=histogram(xs))
        w.write(event_pb2.Event(wall_time=1700000002.75, step=4, summary=s).SerializeToString())
        w.flush()
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
