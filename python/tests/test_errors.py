"""Failures of the library become qkv.Error subclasses carrying qkv's status and message: the
message is the one the CLI prints for the same input (after its "qkv: WHAT: status: ")."""

import os
import shutil
import subprocess

import pytest

import qkv
from conftest import FIX

BERT = FIX / "train" / "bert_tiny" / "model"


def cli_message(qkv_cli, *args):
    r = subprocess.run([str(qkv_cli), *map(str, args)], capture_output=True, timeout=60)
    assert r.returncode == 2, r
    return r.stderr.decode("utf-8", "replace")


def test_missing_model_dir(qkv_cli, tmp_path):
    missing = tmp_path / "no-such-model"
    for cls in (qkv.Model, qkv.LM, qkv.Translator):
        with pytest.raises(qkv.IOFailure) as e:
            cls(missing)
        err = e.value
        assert isinstance(err, qkv.Error) and err.status == 3
        assert err.status_name == "input/output error"
        assert str(missing) in err.message and str(missing) in str(err)
    with pytest.raises(qkv.Error) as e:
        qkv.Tokenizer(missing)
    assert str(missing) in e.value.message
    with pytest.raises(qkv.IOFailure) as e:
        qkv.Model(missing)
    # the CLI says the same: "qkv: DIR: input/output error: config.json: cannot open"
    detail = e.value.message[len(str(missing)) + 2:]
    assert detail in cli_message(qkv_cli, "embed", "--model", missing, "/dev/null")


def test_damaged_weights(qkv_cli, tmp_path):
    d = tmp_path / "bad"
    shutil.copytree(BERT, d)
    w = d / "model.safetensors"
    data = w.read_bytes()
    w.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(qkv.FormatError) as e:
        qkv.Model(d)
    assert e.value.status == 4 and "model.safetensors" in e.value.message
    w.write_bytes(b"\xff" * 64)  # not a safetensors file at all
    with pytest.raises(qkv.FormatError) as e:
        qkv.Model(d)
    assert "model.safetensors" in e.value.message
    msg = cli_message(qkv_cli, "embed", "--model", d, "/dev/null")
    assert e.value.message.split(": ", 1)[-1] in msg


def test_bad_tokenizer_file(tmp_path):
    p = tmp_path / "tokenizer.json"
    p.write_text('{"model": {"type": "WordPiece", "vocab": 5}}')
    with pytest.raises(qkv.Error) as e:
        qkv.Tokenizer(p)
    assert e.value.status in (4, 5) and "tokenizer.json" in e.value.message
    with pytest.raises(qkv.IOFailure):  # only regular files are opened as files
        qkv.Tokenizer(os.devnull)


def test_lm_from_an_encoder(tmp_path):
    with pytest.raises(qkv.Error) as e:  # a BERT directory is not a decoder
        qkv.LM(BERT)
    assert e.value.status in (4, 5) and e.value.message
