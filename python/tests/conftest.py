"""Shared fixtures of the qkv Python tests: the repository, the qkv command line the package
is compared with (QKV_CLI, else build/qkv), the model directories the CLI tests use, and a
tiny GPT-2 with a tokenizer trained here (as tests/cli/test_serve_completions.sh makes it)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures"
MINILM = ROOT / "models" / "all-MiniLM-L6-v2"


def _cli():
    env = os.environ.get("QKV_CLI")
    p = Path(env) if env else ROOT / "build" / "qkv"
    return p if p.is_file() and os.access(p, os.X_OK) else None


@pytest.fixture(scope="session")
def qkv_cli():
    p = _cli()
    if p is None:
        pytest.skip("no qkv command line to compare with: build it (cmake --build build) or "
                    "set QKV_CLI")
    return p


@pytest.fixture(scope="session")
def run(qkv_cli):
    """run(*args, input=None) -> stdout bytes of `qkv args...`; a failure fails the test."""

    def _run(*args, input=None):
        r = subprocess.run([str(qkv_cli), *map(str, args)], input=input,
                           capture_output=True, timeout=300)
        assert r.returncode == 0, f"qkv {' '.join(map(str, args))}: exit {r.returncode}: " \
                                  f"{r.stderr.decode(errors='replace')}"
        return r.stdout

    return _run


@pytest.fixture(scope="session")
def minilm():
    if not (MINILM / "model.safetensors").is_file():
        pytest.skip(f"no model at {MINILM} (scripts/fetch-model.sh installs it)")
    return MINILM


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory, run):
    """tests/fixtures/models/gpt2_tiny with a byte-level BPE of its vocabulary size (384)
    trained by `qkv tokenizer train` on data/corpus.txt: a decoder that takes text."""
    d = tmp_path_factory.mktemp("lm") / "tiny"
    d.mkdir()
    for f in ("config.json", "model.safetensors"):
        shutil.copy(FIX / "models" / "gpt2_tiny" / f, d / f)
    run("tokenizer", "train", "--vocab-size", 384, "--out", d, ROOT / "data" / "corpus.txt")
    assert (d / "tokenizer.json").is_file()
    return d
