#!/usr/bin/env python3
"""check_tfevents.py RUN [--histograms] — reads a qkv run's TensorBoard event file with
TensorBoard's own EventAccumulator and checks it against RUN/metrics.jsonl.

Checks: exactly one events.out.tfevents.* file; every scalar of metrics.jsonl is there, at the
same step, under its tag (train/<key> for step lines, val/<key without val_> for validation
lines), equal to the printed value within half a unit of its last printed digit (plus float32
rounding: TensorBoard stores simple_value as float); no tag has a step metrics.jsonl lacks, or
a step twice (a resumed run must not duplicate points); with --histograms, weight histograms
at the validation steps whose counts add up to their `num`.
Exit 0 when all hold, 1 with a message otherwise."""
import glob
import json
import math
import os
import re
import sys

from tensorboard.backend.event_processing import event_accumulator as ea


def tolerance(text):
    """Half a unit of the last digit printed in text (a JSON number), e.g. 0.0005 for 1.234."""
    m = re.fullmatch(r"-?\d+(?:\.(\d+))?(?:[eE]([-+]?\d+))?", text)
    if not m:
        raise ValueError(f"not a number: {text}")
    decimals = len(m.group(1) or "")
    exp = int(m.group(2) or 0)
    return 0.5 * 10.0 ** (exp - decimals)


def main():
    run = sys.argv[1]
    histograms = "--histograms" in sys.argv[2:]
    files = sorted(glob.glob(os.path.join(run, "events.out.tfevents.*")))
    if len(files) != 1:
        print(f"FAIL: expected one event file in {run}, found {files}")
        return 1
    acc = ea.EventAccumulator(files[0], size_guidance={ea.SCALARS: 0, ea.HISTOGRAMS: 0})
    acc.Reload()
    tags = acc.Tags()
    want = {}  # tag -> {step: (value, tolerance)}
    eval_steps = []
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            raw = json.loads(line)
            # the numbers as printed, for their precision
            texts = dict(re.findall(r'"(\w+)": (-?[0-9][0-9.eE+-]*)', line))
            step = raw["step"]
            is_eval = "val_loss" in raw
            if is_eval:
                eval_steps.append(step)
                keys = ["val_loss", "val_ppl", "val_accuracy", "val_macro_f1"]
            else:
                keys = ["loss", "lr", "grad_norm", "tokens_per_s"]
            for k in keys:
                if raw.get(k) is None:
                    continue
                tag = "val/" + k[4:] if is_eval else "train/" + k
                want.setdefault(tag, {})[step] = (float(texts[k]), tolerance(texts[k]))
    fails = []
    checked = 0
    for tag, points in sorted(want.items()):
        if tag not in tags["scalars"]:
            fails.append(f"tag {tag} missing (scalars: {tags['scalars']})")
            continue
        events = acc.Scalars(tag)
        steps = [e.step for e in events]
        if len(steps) != len(set(steps)):
            fails.append(f"{tag}: a step appears twice: {steps}")
        if sorted(set(steps)) != sorted(points):
            fails.append(f"{tag}: steps {steps} != metrics.jsonl's {sorted(points)}")
        for e in events:
            if e.step not in points:
                continue
            v, tol = points[e.step]
            tol += abs(v) * 2.0**-23  # float32 rounding of the stored value
            checked += 1
            if not abs(e.value - v) <= tol:
                fails.append(f"{tag} step {e.step}: {e.value!r} != {v!r} (tolerance {tol:g})")
    extra = set(tags["scalars"]) - set(want)
    if extra:
        fails.append(f"tags with no metrics.jsonl value: {sorted(extra)}")
    n_hist = 0
    if histograms:
        htags = tags["histograms"]
        if not htags:
            fails.append("no histograms")
        for tag in htags:
            if not tag.startswith("weights/"):
                fails.append(f"histogram tag {tag}")
            for h in acc.Histograms(tag):
                n_hist += 1
                hv = h.histogram_value
                if abs(sum(hv.bucket) - hv.num) > 0.5 or not (hv.min <= hv.max):
                    fails.append(f"{tag} step {h.step}: buckets sum {sum(hv.bucket)} != num {hv.num}")
                if not math.isfinite(hv.sum_squares) or hv.num <= 0:
                    fails.append(f"{tag} step {h.step}: num {hv.num}")
            hsteps = [h.step for h in acc.Histograms(tag)]
            if hsteps != eval_steps:
                fails.append(f"{tag}: histogram steps {hsteps} != validation steps {eval_steps}")
    for m in fails[:20]:
        print("FAIL:", m)
    if fails:
        return 1
    print(f"tensorboard {ea.__name__}: {checked} scalars of {len(want)} tags equal metrics.jsonl;"
          f" {n_hist} histograms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
