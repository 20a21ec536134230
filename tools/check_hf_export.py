#!/usr/bin/env python3
"""check_hf_export.py — proves that a checkpoint directory written by qkv loads in Hugging Face
transformers: GPT2LMHeadModel.from_pretrained (AutoModelForMaskedLM for a *ForMaskedLM
architecture such as BertForMaskedLM, AutoModelForSequenceClassification for a
*ForSequenceClassification, AutoModelForCausalLM for other model types) with
no missing, unexpected or mismatched weights, a forward pass that gives finite logits, and, when
tokenizer.json is present, a tokenizer that loads (AutoTokenizer, else
PreTrainedTokenizerFast(tokenizer_file=...)) and round-trips a short text.

  tools/.venv/bin/python tools/check_hf_export.py DIR [--ids FILE[:NAME]] [--logits FILE[:NAME]]
                                                  [--types FILE[:NAME]] [--lens FILE[:NAME]]
                                                  [--index I] [--atol A] [--rtol R]

--ids / --logits: .npy or .safetensors (NAME picks a tensor; default "ids" / "logits", or the
only tensor in the file). ids are [T] or [B, T]; logits [T, V] or [B, T, V]. --index I takes
element I of the leading axis of ids given as [S, B, T] (e.g. tests/fixtures/train/
batches.safetensors) and of logits given as [S, B, T, V]. --types: token_type_ids like ids;
--lens: the real length of each row [B] (attention_mask 1 before it, 0 after; also indexed by
--index when [S, B]). --labels: for an encoder-decoder (MarianMTModel, whose ids are the source),
the decoder's labels [B, T] (-100 ignored; indexed by --index when [S, B, T]). A classifier's logits are [B, num_labels]. Without --ids the forward runs on a
few ids below the vocabulary size. The logits must agree within |a - b| <= atol + rtol*|b|
(defaults 1e-4, 1e-4); the model is run in float32 whatever its stored dtype.

Exits 0 and prints "OK: ..." when every check passes, 1 with "FAIL: ..." otherwise (2 for bad
arguments). Used through tests/run_python_check.sh, which sets HF_HUB_OFFLINE=1."""
import argparse
import json
import os
import sys

import numpy as np


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def load_array(spec, default_name):
    path, name = spec, None
    if not os.path.exists(path) and ":" in spec:
        path, name = spec.rsplit(":", 1)
    if not os.path.exists(path):
        fail(f"{path}: no such file")
    if path.endswith(".npy"):
        return np.load(path)
    from safetensors.numpy import load_file
    d = load_file(path)
    if name is None:
        if default_name in d:
            name = default_name
        elif len(d) == 1:
            name = next(iter(d))
        else:
            fail(f"{path}: holds {sorted(d)}; name one as {path}:NAME")
    if name not in d:
        fail(f"{path}: no tensor {name!r} (has {sorted(d)})")
    return d[name]


def check_tokenizer(d):
    tj = os.path.join(d, "tokenizer.json")
    if not os.path.exists(tj):
        return "no tokenizer.json"
    from transformers import AutoTokenizer, PreTrainedTokenizerFast
    how = "AutoTokenizer"
    try:
        tok = AutoTokenizer.from_pretrained(d)
    except Exception as e:  # e.g. no tokenizer_config.json: fall back to the raw file
        how = f"PreTrainedTokenizerFast (AutoTokenizer failed: {type(e).__name__})"
        try:
            tok = PreTrainedTokenizerFast(tokenizer_file=tj)
        except Exception as e2:
            fail(f"tokenizer.json does not load: {type(e2).__name__}: {e2}")
    text = "Hello world, this is a test."
    try:
        ids = tok.encode(text, add_special_tokens=False)
    except Exception as e:  # AutoTokenizer picked the model type's class (e.g. BERT's WordPiece
        # wrapper) for a tokenizer.json of another kind: use the file as it is
        how = f"PreTrainedTokenizerFast ({type(tok).__name__} failed: {type(e).__name__})"
        try:
            tok = PreTrainedTokenizerFast(tokenizer_file=tj)
            ids = tok.encode(text, add_special_tokens=False)
        except Exception as e2:
            fail(f"tokenizer.json does not encode: {type(e2).__name__}: {e2}")
    if not ids:
        fail("the tokenizer encodes a non-empty text to no ids")
    back = tok.decode(ids)
    note = "round-trips" if back == text else f"decodes to {back!r}"
    return f"tokenizer via {how}: {len(tok)} tokens, {len(ids)} ids for the test text, {note}", ids


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--ids")
    ap.add_argument("--logits")
    ap.add_argument("--types")
    ap.add_argument("--lens")
    ap.add_argument("--labels")
    ap.add_argument("--index", type=int, default=None)
    ap.add_argument("--atol", type=float, default=1e-4)
    ap.add_argument("--rtol", type=float, default=1e-4)
    a = ap.parse_args()
    if a.logits and not a.ids:
        ap.error("--logits needs --ids")
    d = a.dir
    if not os.path.isdir(d):
        fail(f"{d}: not a directory")
    cfg_path = os.path.join(d, "config.json")
    if not os.path.exists(cfg_path):
        fail(f"{d}: no config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)

    import torch
    from transformers import (AutoModelForCausalLM, AutoModelForMaskedLM,
                              AutoModelForSequenceClassification, GPT2LMHeadModel,
                              MarianMTModel)
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    archs = cfg.get("architectures") or []
    marian = cfg.get("model_type") == "marian"
    cls = (GPT2LMHeadModel if cfg.get("model_type") == "gpt2"
           else MarianMTModel if marian
           else AutoModelForMaskedLM if any(x.endswith("ForMaskedLM") for x in archs)
           else AutoModelForSequenceClassification
           if any(x.endswith("ForSequenceClassification") for x in archs)
           else AutoModelForCausalLM)
    try:
        model, info = cls.from_pretrained(d, dtype=torch.float32, output_loading_info=True)
    except Exception as e:
        fail(f"{cls.__name__}.from_pretrained({d}) raised {type(e).__name__}: {e}")
    model.eval()
    tied = set()
    if getattr(model.config, "tie_word_embeddings", False):
        out = model.get_output_embeddings()
        if out is not None and out.weight is model.get_input_embeddings().weight:
            tied = {n for n, p in model.named_parameters(remove_duplicate=False)
                    if p is out.weight}
    problems = []
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        # Marian's sinusoidal position tables are computed at load, not stored
        items = [k for k in (info.get(kind) or [])
                 if not (kind == "missing_keys" and (k in tied or "embed_positions" in k))]
        if items:
            problems.append(f"{kind}: {items[:8]}{' ...' if len(items) > 8 else ''}")
    if problems:
        fail(f"{d} loads with " + "; ".join(problems))
    V = model.config.vocab_size
    nparams = sum(p.numel() for p in model.parameters())

    tok_msg = check_tokenizer(d)
    tok_ids = None
    if isinstance(tok_msg, tuple):
        tok_msg, tok_ids = tok_msg
        if max(tok_ids) >= V:
            fail(f"the tokenizer gives id {max(tok_ids)} >= the model's vocab_size {V}")

    if a.ids:
        ids = load_array(a.ids, "ids")
    elif tok_ids is not None:
        ids = np.array(tok_ids)
    else:
        ids = np.array([0, 1, 2, 3, 5, 8, 13, 21]) % V
    expect = load_array(a.logits, "logits") if a.logits else None
    types = load_array(a.types, "token_type_ids") if a.types else None
    lens = load_array(a.lens, "kv_lens") if a.lens else None
    labels = load_array(a.labels, "labels") if a.labels else None
    if marian and labels is None:
        fail("a marian model needs --labels (the decoder's labels, -100 ignored)")
    seq_cls = cls is AutoModelForSequenceClassification
    if a.index is not None:
        if ids.ndim == 3:
            ids = ids[a.index]
        if types is not None and types.ndim == 3:
            types = types[a.index]
        if lens is not None and lens.ndim == 2:
            lens = lens[a.index]
        if labels is not None and labels.ndim == 3:
            labels = labels[a.index]
        if expect is not None and expect.ndim == (3 if seq_cls else 4):
            expect = expect[a.index]
    if ids.ndim == 1:
        ids = ids[None]
    if ids.ndim != 2:
        fail(f"ids have shape {list(ids.shape)}; want [T] or [B, T] (use --index for [S, B, T])")
    if ids.size == 0 or ids.min() < 0 or ids.max() >= V:
        fail(f"ids out of range [0, {V})")
    npos = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", None)
    if npos and ids.shape[1] > npos:
        fail(f"{ids.shape[1]} ids per row is more than the model's {npos} positions")
    try:
        with torch.no_grad():
            kw = {}
            if types is not None:
                kw["token_type_ids"] = torch.from_numpy(types.reshape(ids.shape).astype(np.int64))
            if lens is not None:
                mask = np.arange(ids.shape[1])[None, :] < lens.reshape(-1, 1)
                kw["attention_mask"] = torch.from_numpy(mask.astype(np.int64))
            if labels is not None:  # teacher forcing: the labels shifted right feed the decoder
                kw["labels"] = torch.from_numpy(labels.astype(np.int64))
            logits = model(torch.from_numpy(ids.astype(np.int64)), **kw).logits.numpy()
    except Exception as e:
        fail(f"the forward pass on {list(ids.shape)} ids raised {type(e).__name__}: {e}")
    if not np.isfinite(logits).all():
        fail("the forward pass gives non-finite logits")
    msg = f"forward on {list(ids.shape)} ids"
    if expect is not None:
        expect = expect.astype(np.float32)
        if expect.ndim == 2 and not seq_cls:
            expect = expect[None]
        if expect.shape != logits.shape:
            fail(f"expected logits have shape {list(expect.shape)}, transformers gives "
                 f"{list(logits.shape)}")
        diff = np.abs(logits - expect)
        bad = diff > a.atol + a.rtol * np.abs(expect)
        worst = np.unravel_index(int(np.argmax(diff)), diff.shape)
        if bad.any():
            fail(f"logits differ at {int(bad.sum())} of {diff.size} positions: max |diff| "
                 f"{diff.max():.3g} at {list(map(int, worst))} (transformers {logits[worst]:.6g}, "
                 f"expected {expect[worst]:.6g}; atol {a.atol:g}, rtol {a.rtol:g})")
        msg += f", logits match (max |diff| {diff.max():.3g})"
    print(f"OK: {d}: {cls.__name__} ({cfg.get('model_type')}, {nparams} parameters, vocab {V}) "
          f"loads with no missing/unexpected weights; {msg}; {tok_msg}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
