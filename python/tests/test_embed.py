"""qkv.Model.embed against `qkv embed --format npy`: bit-identical float32 (both run
qkv_embed of the same library build on the same texts, and qkv's embeddings do not depend on
batching or on how texts are grouped, so there is no tolerance to allow)."""

import numpy as np
import pytest

import qkv
from conftest import FIX

# str, and the fixture's lines as bytes (one holds invalid UTF-8; texts may be any bytes)
LINES = [
    "A man is eating food.",
    "Ünïcödé: 日本語のテキスト, emoji 🙂 and accents é à",
    "",
    "lengthy " * 300,  # over 256 tokens: truncated
    "the last line",
] + [s.rstrip(b"\r") for s in (FIX / "embed" / "sentences.txt").read_bytes().split(b"\n")[:-1]]
assert any(isinstance(s, bytes) and b"\xff" in s for s in LINES)


@pytest.fixture(scope="module")
def model(minilm):
    with qkv.Model(minilm) as m:
        yield m


@pytest.fixture(scope="module")
def want(run, tmp_path_factory, minilm):
    d = tmp_path_factory.mktemp("embed")
    (d / "in.txt").write_bytes(b"".join(qkv._bytes(s) + b"\n" for s in LINES))
    run("embed", "--model", minilm, "--format", "npy", "--out", d / "want.npy", d / "in.txt")
    w = np.load(d / "want.npy")
    assert w.shape == (len(LINES), 384) and w.dtype == np.float32
    return w


def test_embed_equals_cli_bit_for_bit(model, want):
    got = model.embed(LINES)
    assert got.shape == want.shape and got.dtype == np.float32
    assert np.array_equal(np.asarray(got).view(np.uint32), np.asarray(want).view(np.uint32))


def test_embed_one_at_a_time_equals_batch(model, want):
    for i in (0, 1, 2, 3, len(LINES) - 1):
        row = model.embed([LINES[i]])
        assert row.shape == (1, 384)
        assert np.array_equal(np.asarray(row[0]).view(np.uint32), np.asarray(want[i]).view(np.uint32)), f"row {i}"


def test_embed_writes_into_the_given_buffer(model, want):
    out = np.full((len(LINES), model.dim), np.nan, dtype=np.float32)
    got = model.embed(LINES, out=out)
    assert got is out
    assert np.array_equal(np.asarray(out).view(np.uint32), np.asarray(want).view(np.uint32))
    with pytest.raises(ValueError):
        model.embed(LINES, out=np.empty((len(LINES), model.dim), dtype=np.float64))
    with pytest.raises(ValueError):
        model.embed(LINES, out=np.empty((len(LINES) + 1, model.dim), dtype=np.float32))
    with pytest.raises(ValueError):  # not C-contiguous
        model.embed(LINES[:2], out=np.empty((model.dim, 2), dtype=np.float32).T)


def test_tokenize_then_embed_tokens(model, want):
    seqs = model.tokenize(LINES)
    assert len(seqs) == len(LINES)
    assert seqs[0][0] == 101 and seqs[0][-1] == 102  # [CLS] ... [SEP]
    assert len(seqs[3]) == model.max_tokens == 256  # truncated
    assert np.array_equal(np.asarray(model.embed_tokens(seqs)).view(np.uint32), np.asarray(want).view(np.uint32))


def test_texts_as_bytes_and_empty_list(model, want):
    got = model.embed([s.encode("utf-8") for s in LINES[:3]])  # str given as bytes
    assert np.array_equal(np.asarray(got).view(np.uint32), np.asarray(want[:3]).view(np.uint32))
    assert model.embed([]).shape == (0, 384)
    with pytest.raises(TypeError):
        model.embed("one string, not a list")


@pytest.mark.parametrize("dtype", ["bf16", "f16", "int8"])
def test_16bit_equals_cli_and_stays_close(run, tmp_path, minilm, want, dtype):
    """Model(dtype=D) is `qkv embed --dtype D` bit for bit, and close to f32 (cosine >= 0.9995
    per text for 16 bits, >= 0.995 for int8; test_embed_bf16 justifies both)."""
    (tmp_path / "in.txt").write_bytes(b"".join(qkv._bytes(s) + b"\n" for s in LINES))
    run("embed", "--model", minilm, "--dtype", dtype, "--format", "npy", "--out",
        tmp_path / "h.npy", tmp_path / "in.txt")
    cli = np.load(tmp_path / "h.npy")
    with qkv.Model(minilm, dtype=dtype) as m:
        assert m.dtype == dtype
        got = m.embed(LINES)
    assert np.array_equal(got.view(np.uint32), cli.view(np.uint32))
    assert not np.array_equal(got.view(np.uint32), want.view(np.uint32))
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() >= (0.995 if dtype == "int8" else 0.9995), cos.min()


def test_bad_dtype(minilm):
    with pytest.raises(ValueError, match="'f32', 'bf16', 'f16' or 'int8'"):
        qkv.Model(minilm, dtype="int4")
    with qkv.Model(minilm) as m:
        assert m.dtype == "f32"
