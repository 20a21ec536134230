"""The official `openai` Python client against `qkv serve` on a loopback port the server
chooses (--port 0, read from its 'listening on' line), with an API key: embeddings equal to
`qkv embed`'s bit for bit (encoding_format float, base64, and the client's default), and
completions, plain and streamed, equal to `qkv generate`'s greedy text. Skipped when the
openai package is not installed (pip install -r python/requirements-test.txt)."""

import base64
import json
import os
import re
import subprocess
import time

import numpy as np
import pytest

openai = pytest.importorskip(
    "openai", reason="the openai package is not installed: the OpenAI-client test of qkv serve "
                     "is skipped (pip install -r python/requirements-test.txt)")

from test_embed import LINES  # noqa: E402  (str and bytes; the bytes here are valid UTF-8)

KEY = "qkv-test-key"
TEXTS = [s if isinstance(s, str) else s.decode("utf-8", "replace") for s in LINES[:40]]
PROMPT = "The cat sat on"


@pytest.fixture(scope="module")
def server(qkv_cli, minilm, tiny_lm, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = dict(os.environ, QKV_API_KEY=KEY)
    with open(log, "wb") as f:
        p = subprocess.Popen([str(qkv_cli), "serve", "--model", str(minilm), "--lm", str(tiny_lm),
                              "--port", "0", "--max-new-tokens", "64"], stdout=f,
                             stderr=subprocess.STDOUT, env=env)
    try:
        port = None
        for _ in range(600):  # waits for the models to load; not a timing check
            m = re.search(r"listening on http://[^ ]*:(\d+) ", log.read_text(errors="replace"))
            if m:
                port = int(m.group(1))
                break
            if p.poll() is not None:
                break
            time.sleep(0.1)
        assert port, f"qkv serve did not start: {log.read_text(errors='replace')}"
        yield port
    finally:
        p.terminate()  # SIGTERM: a clean shutdown
        try:
            assert p.wait(timeout=60) == 0, log.read_text(errors="replace")
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"http://127.0.0.1:{server}/v1", api_key=KEY, max_retries=0,
                         timeout=120)


@pytest.fixture(scope="module")
def want(run, tmp_path_factory, minilm):
    d = tmp_path_factory.mktemp("embed")
    (d / "in.txt").write_text("".join(t + "\n" for t in TEXTS), encoding="utf-8")
    run("embed", "--model", minilm, "--format", "npy", "--out", d / "want.npy", d / "in.txt")
    return np.load(d / "want.npy")


def test_embeddings_float(client, want, minilm):
    r = client.embeddings.create(model=minilm.name, input=TEXTS, encoding_format="float")
    assert r.model == minilm.name and len(r.data) == len(TEXTS)
    got = np.array([d.embedding for d in sorted(r.data, key=lambda d: d.index)],
                   dtype=np.float32)
    assert np.array_equal(np.asarray(got).view(np.uint32), np.asarray(want).view(np.uint32))
    assert r.usage.prompt_tokens > len(TEXTS)


def test_embeddings_base64(client, want, minilm):
    # asked for explicitly: the client hands back the server's base64 string
    r = client.embeddings.create(model=minilm.name, input=TEXTS, encoding_format="base64")
    got = np.stack([np.frombuffer(base64.b64decode(d.embedding), dtype="<f4")
                    for d in sorted(r.data, key=lambda d: d.index)])
    assert np.array_equal(np.asarray(got).view(np.uint32), np.asarray(want).view(np.uint32))
    # the client's default: it asks for base64 itself and decodes it into floats
    r = client.embeddings.create(model=minilm.name, input=TEXTS[1])
    assert np.array_equal(np.asarray(np.array(r.data[0].embedding, dtype=np.float32)).view(np.uint32), np.asarray(want[1]).view(np.uint32))


def test_completion_equals_qkv_generate(client, run, tiny_lm):
    want = json.loads(run("generate", "--model", tiny_lm, "--json", "--prompt", PROMPT,
                          "--max-new-tokens", 24))["text"]
    r = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=24, temperature=0)
    assert r.object == "text_completion"
    assert r.choices[0].text == want
    assert r.choices[0].finish_reason in ("length", "stop")
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_completion_streamed(client, run, tiny_lm):
    want = json.loads(run("generate", "--model", tiny_lm, "--json", "--prompt", PROMPT,
                          "--max-new-tokens", 24))["text"]
    chunks = list(client.completions.create(model="tiny", prompt=PROMPT, max_tokens=24,
                                            temperature=0, stream=True))
    assert len(chunks) >= 2
    assert "".join(c.choices[0].text for c in chunks if c.choices) == want
    assert chunks[-1].choices[0].finish_reason == "length"


def test_errors_reach_the_client(client, server, minilm):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="tiny", prompt=PROMPT, max_tokens=4, n=2)
    assert e.value.status_code == 400
    bad = openai.OpenAI(base_url=f"http://127.0.0.1:{server}/v1", api_key="wrong",
                        max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.embeddings.create(model=minilm.name, input=["x"], encoding_format="float")
