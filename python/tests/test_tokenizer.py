"""qkv.Tokenizer against `qkv tokenize`: the ids (and tokens, offsets, type ids) of every line
of the tokenizer fixtures' stress text for each kind of tokenizer (WordPiece, byte-level BPE,
SentencePiece Unigram / BPE, a Marian directory), text pairs with truncation, padding, and
decode against `qkv tokenize --decode`."""

import json

import numpy as np
import pytest

import qkv
from conftest import FIX

TOK = FIX / "tokenizer"
KINDS = ["minilm", "cased", "bpe", "qkvbpe", "spm/llama", "spm/t5", "spm/marian", "spm/unigram"]
# the stress text's lines as bytes (exactly what `qkv tokenize --file` reads: getline, "\n" cut)
LINES = (TOK / "stress.txt").read_bytes().split(b"\n")[:-1]


def cli_json(run, model, *args, input=None):
    out = run("tokenize", "--model", model, "--json", *args, input=input)
    return [json.loads(line) for line in out.decode("utf-8").splitlines()]


@pytest.mark.parametrize("kind", KINDS)
def test_ids_equal_cli_on_every_line(run, kind):
    model = TOK / kind
    want = cli_json(run, model, "--offsets", "--file", TOK / "stress.txt")
    assert len(want) == len(LINES)
    with qkv.Tokenizer(model) as tok:
        for i, (line, w) in enumerate(zip(LINES, want)):
            e = tok.encode(line)
            assert e.ids.tolist() == w["ids"], f"{kind} line {i + 1}"
            assert e.tokens == w["tokens"], f"{kind} line {i + 1}"
            assert e.type_ids.tolist() == w["type_ids"], f"{kind} line {i + 1}"
            assert e.attention_mask.tolist() == w["attention_mask"], f"{kind} line {i + 1}"
            assert e.offsets.tolist() == w["offsets"], f"{kind} line {i + 1}"
            assert tok.ids(line).dtype == np.int32


def test_ids_only_output(run):
    with qkv.Tokenizer(TOK / "minilm") as tok:
        out = run("tokenize", "--model", TOK / "minilm", "--ids-only", "Hello, World!")
        assert tok.ids("Hello, World!").tolist() == [int(x) for x in out.split()]
        assert tok.ids("Hello, World!", pad_to=0).tolist() == [101, 7592, 1010, 2088, 999, 102]


@pytest.mark.parametrize("opts,cli", [
    ({"max_length": 9}, ["--max-length", "9"]),
    ({"max_length": 14, "truncation": "only_first"}, ["--max-length", "14", "--truncation", "only_first"]),
    ({"max_length": 0, "pad_to": 0, "add_special_tokens": False}, ["--max-length", "0", "--pad-to", "0", "--no-special"]),
    ({"pad_to": 20}, ["--pad-to", "20"]),
])
def test_pairs_truncation_padding(run, opts, cli):
    text, pair = "The quick brown fox jumps over the lazy dog", "a pair of texts, here"
    want = cli_json(run, TOK / "minilm", "--pair", pair, *cli, text)[0]
    with qkv.Tokenizer(TOK / "minilm") as tok:
        e = tok.encode(text, pair, **opts)
        assert e.ids.tolist() == want["ids"]
        assert e.type_ids.tolist() == want["type_ids"]
        assert e.attention_mask.tolist() == want["attention_mask"]


@pytest.mark.parametrize("kind", ["minilm", "qkvbpe", "spm/llama"])
def test_decode_equals_cli(run, kind):
    model = TOK / kind
    with qkv.Tokenizer(model) as tok:
        ids = tok.ids(LINES[3], max_length=0, pad_to=0)
        text = " ".join(map(str, ids.tolist()))
        want = run("tokenize", "--model", model, "--decode", text)
        assert tok.decode_bytes(ids) + b"\n" == want
        want = run("tokenize", "--model", model, "--decode", "--keep-special", text)
        assert tok.decode_bytes(ids, skip_special_tokens=False) + b"\n" == want


def test_vocabulary_lookups():
    with qkv.Tokenizer(TOK / "minilm") as tok:
        assert tok.vocab_size == 30522
        assert tok.token_to_id("hello") == 7592 and tok.id_to_token(7592) == "hello"
        assert tok.token_to_id("no-such-token-here") is None
        assert tok.special_id("cls") == 101 and tok.special_id("sep") == 102
        assert tok.special_id("pad") == 0


def test_bad_arguments():
    with qkv.Tokenizer(TOK / "minilm") as tok:
        with pytest.raises(qkv.InvalidArgument) as e:
            tok.decode([101, 30522])  # not in the vocabulary
        assert e.value.status == 1 and "30522" in e.value.message
        with pytest.raises(qkv.InvalidArgument) as e:  # the library's own check and message
            tok.encode("The quick brown fox", "a pair", max_length=5, truncation="only_first")
        assert e.value.status == 1 and "only the first sequence" in e.value.message
        assert isinstance(e.value, qkv.Error) and isinstance(e.value, ValueError)
        with pytest.raises(ValueError):
            tok.encode("x", truncation="sideways")
        with pytest.raises(TypeError):
            tok.encode(5)
    tok.close()
    with pytest.raises(ValueError):
        tok.ids("closed")
