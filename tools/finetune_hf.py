#!/usr/bin/env python3
"""finetune_hf.py — the PyTorch peer of `qkv finetune`: fine-tunes a BERT directory as a
sequence classifier with transformers' Trainer on labelled TSV files and reports what qkv
reports, so the two runs can be compared number for number.

    tools/.venv/bin/python tools/finetune_hf.py --model models/all-MiniLM-L6-v2 \\
        --train data/fortunes-cls/train.tsv --val data/fortunes-cls/val.tsv \\
        --test data/fortunes-cls/test.tsv --epochs 3 --threads 2 --out runs/hf-full.json
    ... --lora --lr 5e-4 --out runs/hf-lora.json        # LoRA on query and value (peft)
    ... --limit 200 --epochs 1                         # a quick check on 200 examples

The model: AutoModelForSequenceClassification.from_pretrained(DIR, num_labels, id2label,
label2id) (a BertModel checkpoint such as all-MiniLM-L6-v2 keeps its pooler and gets a fresh
classifier, initialized by transformers after set_seed(--seed)). Labels are the training set's names
sorted by bytes, as qkv_labeled numbers them. Input files: TSV as tools/make_fortunes_dataset.py
writes them (a header row naming text[, text_pair], label; RFC 4180 quoting), read with
Python's csv module.

Training is transformers' Trainer with its defaults unless an option says otherwise: AdamW
(Trainer's default optimizer, adamw_torch_fused: betas 0.9 / 0.999, eps 1e-8), --lr 2e-5,
weight decay --weight-decay 0.01 on every parameter except biases and LayerNorm weights
(Trainer.get_decay_parameter_names), linear warmup over --warmup-ratio of the steps then
linear decay to 0 (get_linear_schedule_with_warmup), --batch 32, --epochs 3, gradient
clipping at 1.0, the config's dropout (hidden_dropout_prob, attention_probs_dropout_prob,
classifier_dropout), tokenizer(text, text_pair, truncation=True, max_length=--max-length 128)
with dynamic padding per batch (DataCollatorWithPadding), the training set shuffled each epoch
by Trainer's seeded sampler, --seed 42 (transformers.set_seed). torch.set_num_threads(--threads).
LoRA (--lora): peft LoraConfig(task_type SEQ_CLS, r --lora-r 8, lora_alpha --lora-alpha 16,
lora_dropout --lora-dropout 0.1, target_modules query,value); the classifier head is trained
in full (peft's modules_to_save for SEQ_CLS), everything else frozen.

Reported (stdout, and --out JSON): after each epoch the validation loss, accuracy and macro-F1
and the epoch's wall time (which includes that epoch's evaluation); the time of each optimizer
step ("step_seconds": the mean over all, the median over all but the first); the test set's
classification_report (sklearn, digits 4), accuracy and macro-F1, trainable parameter count,
torch / transformers / peft versions and thread count.
"""
import argparse
import csv
import json
import os
import statistics
import sys
import time


def read_tsv(path, limit=None):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows or "text" not in rows[0] or "label" not in rows[0]:
        sys.exit(f"finetune_hf: {path}: needs a header with text and label columns")
    rows = rows[:limit] if limit else rows
    return ([r["text"] for r in rows], [r.get("text_pair") for r in rows],
            [r["label"] for r in rows])


def main():
    ap = argparse.ArgumentParser(description="fine-tune a BERT classifier with transformers' "
                                             "Trainer (the peer of qkv finetune)")
    ap.add_argument("--model", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--val")
    ap.add_argument("--test", required=True)
    ap.add_argument("--out", help="results JSON")
    ap.add_argument("--epochs", type=float, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--warmup-ratio", type=float, default=0.0)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, help="use the first N training examples")
    ap.add_argument("--limit-eval", type=int, help="use the first N val / test examples")
    ap.add_argument("--lora", action="store_true")
    ap.add_argument("--group-by-length", action="store_true",
                    help="batches of alike lengths (transformers' LengthGroupedSampler), as qkv "
                         "finetune does by default")
    ap.add_argument("--lora-r", type=int, default=8)
    ap.add_argument("--lora-alpha", type=float, default=16)
    ap.add_argument("--lora-dropout", type=float, default=0.1)
    a = ap.parse_args()

    import numpy as np
    import torch
    import transformers
    from sklearn.metrics import accuracy_score, classification_report, f1_score
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer,
                              DataCollatorWithPadding, Trainer, TrainerCallback,
                              TrainingArguments, set_seed)

    torch.set_num_threads(a.threads)
    set_seed(a.seed)
    train = read_tsv(a.train, a.limit)
    test = read_tsv(a.test, a.limit_eval)
    val = read_tsv(a.val, a.limit_eval) if a.val else None
    names = sorted(set(train[2]), key=lambda s: s.encode())
    lid = {n: i for i, n in enumerate(names)}
    for split, path in ((test, a.test), (val, a.val)):
        if split:
            unknown = sorted(set(split[2]) - set(names))
            if unknown:
                sys.exit(f"finetune_hf: {path}: label '{unknown[0]}' is not in the training set")

    tok = AutoTokenizer.from_pretrained(a.model)

    class DS(torch.utils.data.Dataset):
        def __init__(self, d):
            texts, pairs, labels = d
            has_pair = any(p for p in pairs)
            enc = tok(texts, [p or "" for p in pairs] if has_pair else None,
                      truncation=True, max_length=a.max_length)
            self.items = [{k: enc[k][i] for k in enc} | {"labels": lid[labels[i]]}
                          for i in range(len(texts))]

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            return self.items[i]

    ds_train, ds_test = DS(train), DS(test)
    ds_val = DS(val) if val else None
    model = AutoModelForSequenceClassification.from_pretrained(
        a.model, num_labels=len(names), id2label=dict(enumerate(names)), label2id=lid)
    peft_version = None
    if a.lora:
        import peft
        from peft import LoraConfig, TaskType, get_peft_model
        peft_version = peft.__version__
        model = get_peft_model(model, LoraConfig(
            task_type=TaskType.SEQ_CLS, r=a.lora_r, lora_alpha=a.lora_alpha,
            lora_dropout=a.lora_dropout, target_modules=["query", "value"]))
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_total = sum(p.numel() for p in model.parameters())

    def metrics(p):
        pred = np.argmax(p.predictions, -1)
        return {"accuracy": accuracy_score(p.label_ids, pred),
                "macro_f1": f1_score(p.label_ids, pred, average="macro",
                                     labels=list(range(len(names))), zero_division=0)}

    class Timer(TrainerCallback):
        def __init__(self):
            self.steps, self.epochs, self.evals = [], [], []

        def on_epoch_begin(self, args, state, control, **kw):
            self.e0 = time.perf_counter()

        def on_epoch_end(self, args, state, control, **kw):
            self.epochs.append(time.perf_counter() - self.e0)

        def on_step_begin(self, args, state, control, **kw):
            self.s0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.steps.append(time.perf_counter() - self.s0)

        def on_evaluate(self, args, state, control, metrics=None, **kw):
            self.evals.append(dict(metrics or {}, epoch=state.epoch))

    timer = Timer()
    import tempfile
    with tempfile.TemporaryDirectory() as tmpdir:
        args = TrainingArguments(
            output_dir=tmpdir, use_cpu=True, per_device_train_batch_size=a.batch,
            per_device_eval_batch_size=a.batch, learning_rate=a.lr, weight_decay=a.weight_decay,
            warmup_steps=a.warmup_ratio, num_train_epochs=a.epochs, max_grad_norm=1.0,
            lr_scheduler_type="linear", seed=a.seed, eval_strategy="epoch" if val else "no",
            save_strategy="no",
            train_sampling_strategy="group_by_length" if a.group_by_length else "random",
            logging_strategy="epoch", report_to="none",
            disable_tqdm=True, dataloader_num_workers=0)
        trainer = Trainer(model=model, args=args, train_dataset=ds_train, eval_dataset=ds_val,
                          data_collator=DataCollatorWithPadding(tok), compute_metrics=metrics,
                          callbacks=[timer])
        t0 = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - t0
        out = trainer.predict(ds_test)
    pred = np.argmax(out.predictions, -1)
    # the labels as predict() returns them: its order need not be the file's (with
    # train_sampling_strategy="group_by_length" transformers 5 batches the test set by length too)
    y = np.asarray(out.label_ids)
    assert sorted(y.tolist()) == sorted(lid[l] for l in test[2])
    report = classification_report(y, pred, labels=list(range(len(names))), target_names=names,
                                   digits=4, zero_division=0)
    acc = accuracy_score(y, pred)
    mf1 = f1_score(y, pred, average="macro", labels=list(range(len(names))), zero_division=0)
    steps = timer.steps[1:] if len(timer.steps) > 1 else timer.steps
    res = {
        "model": a.model, "lora": a.lora, "labels": names,
        "n_train": len(ds_train), "n_val": len(ds_val) if ds_val else 0, "n_test": len(ds_test),
        "hyper": {k: getattr(a, k) for k in ("epochs", "batch", "lr", "weight_decay",
                                             "warmup_ratio", "max_length", "seed", "lora_r",
                                             "lora_alpha", "lora_dropout")},
        "optimizer": args.optim if isinstance(args.optim, str) else args.optim.value,
        "trainable_params": n_trainable, "total_params": n_total,
        "epochs": [{"epoch": e.get("epoch"), "val_loss": e.get("eval_loss"),
                    "val_accuracy": e.get("eval_accuracy"), "val_macro_f1": e.get("eval_macro_f1")}
                   for e in timer.evals],
        "epoch_seconds": timer.epochs, "train_seconds": train_s,
        "step_seconds": {"n": len(timer.steps), "mean": statistics.mean(timer.steps),
                         "median_after_first": statistics.median(steps)},
        "test": {"accuracy": acc, "macro_f1": mf1, "report": report},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "peft": peft_version},
        "threads": torch.get_num_threads(),
    }
    for e, s in zip(res["epochs"], timer.epochs):
        print(f"epoch {e['epoch']}: val loss {e['val_loss']}, accuracy {e['val_accuracy']}, "
              f"macro-F1 {e['val_macro_f1']}, {s:.1f} s")
    print(f"{'LoRA' if a.lora else 'full'} fine-tuning: {n_trainable} of {n_total} parameters "
          f"trained, {len(timer.steps)} steps, {res['step_seconds']['median_after_first']:.3f} "
          f"s/step (median), {train_s:.1f} s, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"\ntest ({len(ds_test)} examples)\n{report}\naccuracy {acc:.4f}  macro-F1 {mf1:.4f}")
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        tmp = a.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(res, f, indent=2)
            f.write("\n")
        os.replace(tmp, a.out)


if __name__ == "__main__":
    main()
