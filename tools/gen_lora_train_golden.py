#!/usr/bin/env python3
"""gen_lora_train_golden.py — LoRA fine-tuning golden files from Hugging Face PEFT, so the C
trainer's adapters (qkv_trainer_add_lora) can be checked against peft + transformers + torch.

Usage: tools/.venv/bin/python tools/gen_lora_train_golden.py   (writes tests/fixtures/train/lora/)

The base model and batches are tests/fixtures/train/bert_cls/{model, batches.safetensors}
(tools/gen_cls_train_golden.py: a tiny BertForSequenceClassification, 2 layers, hidden 32,
3 labels, dropout 0). PEFT: LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8,
target_modules=["query", "value"], lora_dropout=0), so modules_to_save = the classifier. PEFT
initializes B to zero, which makes A's first gradient zero; so A and B are set to seeded
N(0, 0.2) values (written to init.safetensors) before anything is computed. Float32, one thread.

init.safetensors    the adapters' starting values under the trainer's names
                    ("bert.encoder.layer.0.attention.self.query.lora_A.weight", ...)
grads.safetensors   batch 0: loss [1], logits [4, 3] and the gradient of every trainable
                    parameter (lora_A / lora_B of each layer, classifier.weight / .bias)
steps.safetensors   5 steps on batches 0..4 (zero_grad, loss, backward, AdamW lr 1e-2,
                    betas (0.9, 0.999), eps 1e-8, weight_decay 0.01 on every trainable matrix
                    but not classifier.bias, no clipping): losses [5], final.<name> of every
                    trainable parameter
peft_adapter/       PeftModel.save_pretrained after the 5 steps (adapter_config.json +
                    adapter_model.safetensors, as PEFT writes them)
peft_logits.safetensors   logits [4, 3] of batch 5 by that adapter in eval mode."""
import json
import os
import shutil
import sys

import numpy as np
import torch
from peft import LoraConfig, get_peft_model
from transformers import BertForSequenceClassification
from transformers.utils import logging as hf_logging

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_train_golden import f32, write_safetensors  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = os.path.join(ROOT, "tests", "fixtures", "train", "bert_cls")
OUT = os.path.join(ROOT, "tests", "fixtures", "train", "lora")
STEPS = 5


def load_batches():
    from safetensors.numpy import load_file
    return load_file(os.path.join(BASE, "batches.safetensors"))


def qkv_name(n):  # PEFT's parameter name -> the trainer's
    n = n.removeprefix("base_model.model.").replace(".default", "")
    return n.replace("classifier.modules_to_save.", "classifier.")


def model():
    base = BertForSequenceClassification.from_pretrained(os.path.join(BASE, "model"),
                                                         dtype=torch.float32,
                                                         attn_implementation="eager")
    cfg = LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query", "value"],
                     lora_dropout=0.0)
    m = get_peft_model(base, cfg)
    g = torch.Generator().manual_seed(4242)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if "lora_" in n:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    m.train()
    return m


def forward(m, bt, s):
    t = lambda k: torch.from_numpy(bt[k][s]).long()
    out = m(input_ids=t("ids"), attention_mask=t("attention_mask"),
            token_type_ids=t("token_type_ids"), labels=t("labels"))
    return out.loss, out.logits


def main():
    hf_logging.set_verbosity_error()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(OUT, exist_ok=True)
    bt = load_batches()
    m = model()
    train = [(n, p) for n, p in m.named_parameters() if p.requires_grad]
    write_safetensors(os.path.join(OUT, "init.safetensors"),
                      [(qkv_name(n), f32(p)) for n, p in train if "lora_" in n])
    loss, logits = forward(m, bt, 0)
    loss.backward()
    write_safetensors(os.path.join(OUT, "grads.safetensors"),
                      [("loss", np.array([loss.item()], np.float32)), ("logits", f32(logits))] +
                      [(qkv_name(n), f32(p.grad)) for n, p in train])
    print(f"grads: loss {loss.item():.6f}, {len(train)} trainable tensors")
    m.zero_grad(set_to_none=True)
    decay = [p for n, p in train if not n.endswith("bias")]
    no_decay = [p for n, p in train if n.endswith("bias")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": no_decay, "weight_decay": 0.0}], lr=1e-2,
                            betas=(0.9, 0.999), eps=1e-8, foreach=False, fused=False)
    losses = []
    for s in range(STEPS):
        opt.zero_grad(set_to_none=True)
        loss, _ = forward(m, bt, s)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    print("losses", losses)
    write_safetensors(os.path.join(OUT, "steps.safetensors"),
                      [("losses", np.array(losses, np.float32))] +
                      [("final." + qkv_name(n), f32(p)) for n, p in train])
    d = os.path.join(OUT, "peft_adapter")
    shutil.rmtree(d, ignore_errors=True)
    m.save_pretrained(d)
    cp = os.path.join(d, "adapter_config.json")  # no absolute path in a committed fixture
    with open(cp) as f:
        c = json.load(f)
    c["base_model_name_or_path"] = "tests/fixtures/train/bert_cls/model"
    with open(cp, "w") as f:
        json.dump(c, f, indent=2, sort_keys=True)
        f.write("\n")
    readme = os.path.join(d, "README.md")
    if os.path.exists(readme):
        os.remove(readme)
    m.eval()
    with torch.no_grad():
        _, lg = forward(m, bt, STEPS)
    write_safetensors(os.path.join(OUT, "peft_logits.safetensors"), [("logits", f32(lg))])


if __name__ == "__main__":
    main()
