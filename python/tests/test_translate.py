"""qkv.Translator against `qkv translate` and the fixtures transformers wrote for the tiny
MarianMT model (beam 4 with the directory's generation config; greedy with max_length 12)."""

import numpy as np
import pytest

import qkv
from conftest import FIX

MARIAN = FIX / "marian"
TEXTS = (MARIAN / "texts.txt").read_text(encoding="utf-8").splitlines()


def test_translate_equals_cli_and_transformers(run):
    want = run("translate", "--model", MARIAN / "tiny", MARIAN / "texts.txt")
    expect = (MARIAN / "expect.translate.txt").read_text(encoding="utf-8").splitlines()
    with qkv.Translator(MARIAN / "tiny") as tr:
        assert tr.source_prefix == ""
        got = tr.translate(TEXTS)
        assert got == want.decode("utf-8").splitlines()
        assert got == expect


def test_greedy_options(run):
    want = run("translate", "--model", MARIAN / "tiny", "--beams", 1, "--max-length", 12,
               MARIAN / "texts.txt").decode("utf-8").splitlines()
    expect = (MARIAN / "expect.translate_greedy12.txt").read_text(encoding="utf-8").splitlines()
    with qkv.Translator(MARIAN / "tiny") as tr:
        got, scores = tr.translate(TEXTS, num_beams=1, max_length=12, return_scores=True)
        assert got == want == expect
        assert scores.shape == (len(TEXTS),) and np.all(np.isfinite(scores))
        assert tr.translate([]) == []
        with pytest.raises(qkv.InvalidArgument):
            tr.translate(TEXTS[:1], num_beams=0)


def test_t5_prefix(run):
    t5 = FIX / "t5"
    model = t5 / "v11"  # the model the CLI test (test_translate_t5.sh) uses
    texts = (t5 / "texts.txt").read_text(encoding="utf-8").splitlines()
    with qkv.Translator(model) as tr:
        assert tr.source_prefix  # from task_specific_params
        got = tr.translate(texts)
        assert got == run("translate", "--model", model, t5 / "texts.txt").decode().splitlines()
        assert got == (t5 / "expect.translate.txt").read_text(encoding="utf-8").splitlines()
        got = tr.translate(texts, prefix="", num_beams=3)
        assert got == (t5 / "expect.translate_noprefix_beam3.txt").read_text(
            encoding="utf-8").splitlines()


def test_bf16_equals_cli(run):
    """Translator(dtype="bf16") is `qkv translate --dtype bf16`, line for line."""
    want = run("translate", "--model", MARIAN / "tiny", "--dtype", "bf16",
               MARIAN / "texts.txt").decode("utf-8").splitlines()
    with qkv.Translator(MARIAN / "tiny", dtype="bf16") as tr:
        assert tr.dtype == "bf16"
        assert tr.translate(TEXTS) == want
    with qkv.Translator(MARIAN / "tiny") as tr:
        assert tr.dtype == "f32"
    with pytest.raises(ValueError):
        qkv.Translator(MARIAN / "tiny", dtype="int4")
