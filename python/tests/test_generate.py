"""qkv.LM against `qkv generate`: greedy and seeded-sampled token ids on the tiny GPT-2 and
Llama fixtures (no tokenizer: --ids), and text, streamed piece by piece, on the tiny GPT-2
with a tokenizer trained by the test (as the server's completion test does)."""

import json

import numpy as np
import pytest

import qkv
from conftest import FIX

MODELS = FIX / "models"


def cli_ids(run, model, *args):
    return [int(x) for x in run("generate", "--model", model, *args).split()]


@pytest.mark.parametrize("name", ["gpt2_tiny", "llama_tiny"])
@pytest.mark.parametrize("sampling,cli", [
    ({}, []),
    ({"temperature": 0.9, "top_p": 0.9, "seed": 42}, ["--temperature", "0.9", "--top-p", "0.9", "--seed", "42"]),
    ({"temperature": 0.7, "top_k": 5, "repetition_penalty": 1.3, "seed": 7},
     ["--temperature", "0.7", "--top-k", "5", "--repetition-penalty", "1.3", "--seed", "7"]),
])
def test_ids_equal_cli(run, name, sampling, cli):
    want = cli_ids(run, MODELS / name, "--ids", "1 2 3 4", "--max-new-tokens", 12, *cli)
    assert len(want) >= 1
    with qkv.LM(MODELS / name) as lm:
        got = lm.generate_ids([1, 2, 3, 4], 12, **sampling)
        assert got.dtype == np.int32 and got.tolist() == want
        streamed = list(lm.generate(np.array([1, 2, 3, 4]), 12, tokens=True, **sampling))
        assert streamed == want


def test_stop_token_and_context(run):
    with qkv.LM(MODELS / "gpt2_tiny") as lm:
        first = lm.generate_ids([1, 2, 3, 4], 12)[0]
        assert lm.generate_ids([1, 2, 3, 4], 12, stop_tokens=[first]).tolist() == [first]
        with pytest.raises(qkv.InvalidArgument) as e:  # refused, as qkv generate exits 2
            lm.generate_ids([1, 2, 3], 200, context=8)
        assert e.value.message
        want = cli_ids(run, MODELS / "gpt2_tiny", "--ids", "1 2 3", "--max-new-tokens", 20,
                       "--context", 8, "--slide")
        assert lm.generate_ids([1, 2, 3], 20, context=8, slide=True).tolist() == want


def test_text_and_stream_equal_cli(run, tiny_lm):
    prompt = "The cat sat on"
    want = json.loads(run("generate", "--model", tiny_lm, "--json", "--prompt", prompt,
                          "--max-new-tokens", 24))
    with qkv.LM(tiny_lm) as lm:
        assert lm.tokenizer is not None
        assert lm.generate_ids(prompt, 24).tolist() == want["ids"]
        pieces = list(lm.generate(prompt, 24))
        assert len(pieces) >= 2
        assert "".join(pieces) == want["text"]
        assert lm.complete(prompt, 24) == want["text"]
        # sampled, with a seed
        want = json.loads(run("generate", "--model", tiny_lm, "--json", "--prompt", prompt,
                              "--max-new-tokens", 24, "--temperature", 0.9, "--seed", 3))
        assert lm.complete(prompt, 24, temperature=0.9, seed=3) == want["text"]


def test_stop_string(run, tiny_lm):
    prompt = "The cat sat on"
    with qkv.LM(tiny_lm) as lm:
        text = lm.complete(prompt, 24)
        stop = next(text[i:i + 2] for i in range(1, len(text) - 1) if text[i:i + 2].isalpha()
                    and text[i:i + 2].isascii())
        want = run("generate", "--model", tiny_lm, "--prompt", prompt, "--max-new-tokens", 24,
                   "--stop", stop).decode("utf-8", "replace")
        got = lm.complete(prompt, 24, stop=["zzzz", stop])
        assert got == text[: text.index(stop) + len(stop)]
        assert got + "\n" == want


def test_closing_the_stream_early(tiny_lm):
    with qkv.LM(tiny_lm) as lm:
        it = lm.generate("The cat sat on", 24, tokens=True)
        first = [next(it), next(it)]
        it.close()  # the library is told to stop; the model is usable again at once
        assert lm.generate_ids("The cat sat on", 24)[:2].tolist() == first


def test_bad_prompts():
    with qkv.LM(MODELS / "gpt2_tiny") as lm:
        with pytest.raises(qkv.Unsupported):  # no tokenizer in the directory
            lm.generate("text needs a tokenizer", 4)
        with pytest.raises(qkv.InvalidArgument):
            lm.generate_ids([1, 999999], 4)
        with pytest.raises(qkv.InvalidArgument):
            lm.generate_ids([1], 4, temperature=-1)
        with pytest.raises(qkv.InvalidArgument):
            list(lm.generate([1, 999999], 4, tokens=True))  # raised by the iterator
        with pytest.raises(qkv.InvalidArgument):
            lm.generate_ids([], 4)


@pytest.mark.parametrize("name", ["gpt2_tiny", "llama_tiny"])
def test_bf16_equals_cli(run, name):
    """LM(dtype="bf16") is `qkv generate --dtype bf16`, id for id; a bad dtype is refused."""
    want = cli_ids(run, MODELS / name, "--ids", "1 2 3 4", "--max-new-tokens", 12, "--dtype",
                   "bf16")
    with qkv.LM(MODELS / name, dtype="bf16") as lm:
        assert lm.dtype == "bf16"
        assert lm.generate_ids([1, 2, 3, 4], 12).tolist() == want
    with qkv.LM(MODELS / name) as lm:
        assert lm.dtype == "f32"
    with pytest.raises(ValueError):
        qkv.LM(MODELS / name, dtype="int4")
