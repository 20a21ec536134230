#!/usr/bin/env python3
"""check_peft_adapter.py — proves that an adapter directory written by qkv
(qkv_trainer_save_lora) loads in Hugging Face PEFT and computes what qkv computes:
PeftModel.from_pretrained(base, ADAPTER) on AutoModelForSequenceClassification (adapter task
SEQ_CLS) or AutoModelForCausalLM (CAUSAL_LM), eval mode, then the logits of one batch against
qkv's.

  tools/.venv/bin/python tools/check_peft_adapter.py BASE ADAPTER --batches FILE --index I
                                                     --logits FILE [--atol A] [--rtol R]

--batches: a safetensors file with ids, token_type_ids, attention_mask [S, B, T] (as
tests/fixtures/train/bert_cls/batches.safetensors); --index picks batch I. --logits: a
safetensors file whose tensor "logits" is qkv's [B, num_labels] (classifiers) or [B, T, V].
They must agree within |a - b| <= atol + rtol*|b| (defaults 1e-5, 1e-5).
Exits 0 with "OK: ..." or 1 with "FAIL: ..."; run through tests/run_python_check.sh."""
import argparse
import json
import os
import sys

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("adapter")
    ap.add_argument("--batches", required=True)
    ap.add_argument("--index", type=int, default=0)
    ap.add_argument("--logits", required=True)
    ap.add_argument("--atol", type=float, default=1e-5)
    ap.add_argument("--rtol", type=float, default=1e-5)
    a = ap.parse_args()
    import torch
    from peft import PeftModel
    from safetensors.numpy import load_file
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    with open(os.path.join(a.adapter, "adapter_config.json")) as f:
        task = json.load(f).get("task_type")
    cls = AutoModelForSequenceClassification if task == "SEQ_CLS" else AutoModelForCausalLM
    base = cls.from_pretrained(a.base, dtype=torch.float32, attn_implementation="eager")
    m = PeftModel.from_pretrained(base, a.adapter)
    m.eval()
    bt = load_file(a.batches)
    t = lambda k: torch.from_numpy(bt[k][a.index]).long()
    kw = dict(input_ids=t("ids"))
    for k in ("attention_mask", "token_type_ids"):
        if k in bt:
            kw[k] = t(k)
    with torch.no_grad():
        got = m(**kw).logits.float().numpy()
    want = load_file(a.logits)["logits"]
    if got.shape != want.shape:
        print(f"FAIL: PEFT logits {got.shape}, qkv's {want.shape}")
        sys.exit(1)
    err = np.abs(got - want)
    bad = err > a.atol + a.rtol * np.abs(want)
    if bad.any():
        print(f"FAIL: {int(bad.sum())} logits differ, max |d| {err.max():.3g}")
        sys.exit(1)
    print(f"OK: PeftModel.from_pretrained({os.path.basename(a.adapter)}) [{task}] logits "
          f"{tuple(got.shape)} match qkv's, max |d| {err.max():.3g}")


if __name__ == "__main__":
    main()
