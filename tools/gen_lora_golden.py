#!/usr/bin/env python3
"""gen_lora_golden.py — Hugging Face PEFT golden files for the LoRA adapter of src/nn's linear
layer (qkv_nn_lora).

Writes tests/fixtures/nn/lora_*.safetensors: PEFT's LoraLayer wrapped around a torch.nn.Linear
and around GPT-2's transformers Conv1D (fan_in_fan_out=True, the [in, out] weight), with random
lora_A / lora_B (PEFT starts B at zero, which would test nothing), lora_dropout = 0: the input,
the base weight and bias, A, B, the output, an upstream gradient and the gradients of x, the base
weight (unfrozen here so it is checked too), the bias, A and B, and the base weight after PEFT's
merge_adapter(). Metadata: r, lora_alpha, use_rslora and PEFT's own `scaling`, so the C test
(tests/test_nn_lora.c) checks that alpha / r (alpha / sqrt(r) for rslora) is PEFT's scale.

As gen_nn_golden.py (whose helpers this uses): float64 from float32-representable values,
stored as float32; seeded and byte-reproducible.
Usage:  tools/.venv/bin/python tools/gen_lora_golden.py   (torch 2.x, transformers, peft)
"""
import pathlib
import sys

import torch
from peft import LoraConfig, get_peft_model
from transformers.pytorch_utils import Conv1D

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from gen_nn_golden import OUT, leaf, randn, save  # noqa: E402  (seeded generator, writer)

torch.manual_seed(0)  # PEFT's own initializers (overwritten below)


class Wrap(torch.nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.lin = layer

    def forward(self, x):
        return self.lin(x)


def gen(name, N, C, OC, r, alpha, conv1d=False, rslora=False):
    base = Conv1D(OC, C) if conv1d else torch.nn.Linear(C, OC)
    base = base.double()
    with torch.no_grad():
        base.weight.copy_(randn(*base.weight.shape, scale=0.5))
        base.bias.copy_(randn(OC, scale=0.2))
    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=["lin"],
                     fan_in_fan_out=conv1d, use_rslora=rslora)
    model = get_peft_model(Wrap(base), cfg).double()
    layer = model.base_model.model.lin
    A, B = layer.lora_A["default"].weight, layer.lora_B["default"].weight  # (r, C), (OC, r)
    with torch.no_grad():
        A.copy_(randn(r, C, scale=0.5))
        B.copy_(randn(OC, r, scale=0.5))
    w = layer.base_layer.weight
    w.requires_grad_(True)
    layer.base_layer.bias.requires_grad_(True)
    x = leaf(randn(N, C))
    y = model(x)
    dy = randn(N, OC)
    y.backward(dy)
    scaling = layer.scaling["default"]
    tensors = {"x": x, "w": w, "bias": layer.base_layer.bias, "lora_A": A, "lora_B": B, "y": y,
               "dy": dy, "dx": x.grad, "dw": w.grad, "dbias": layer.base_layer.bias.grad,
               "dA": A.grad, "dB": B.grad}
    tensors = {k: v.detach().clone() for k, v in tensors.items()}
    with torch.no_grad():
        model.merge_adapter()
        tensors["w_merged"] = layer.base_layer.weight.detach().clone()
        model.unmerge_adapter()
    save(name, tensors, r=r, lora_alpha=alpha, use_rslora=int(rslora), fan_in_fan_out=int(conv1d),
         scaling=repr(float(scaling)))


def main():
    gen("lora_linear", 5, 12, 10, 4, 8)
    gen("lora_conv1d", 6, 9, 14, 3, 16, conv1d=True, rslora=True)
    print(f"wrote lora_linear, lora_conv1d to {OUT}")


if __name__ == "__main__":
    main()
