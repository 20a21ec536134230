#!/usr/bin/env python3
"""bench_serve.py — a load benchmark of `qkv serve` (issue 19, point 3): C concurrent clients
(default 64) for D seconds (default 60) sending requests back to back on keep-alive
connections, in these modes (--modes, comma-separated; default all of them):

  embeddings             qkv serve --model M                   POST /v1/embeddings (dynamic batching)
  embeddings-unbatched   qkv serve --model M --max-batch 1     one request per forward
  st                     tools/st_server.py --model M          sentence-transformers behind
                                                               http.server, torch threads = --threads
  completions            qkv serve --lm L --decode-batch 64    POST /v1/completions
  completions-unbatched  qkv serve --lm L --decode-batch 1     one completion per decode step
  llamacpp               llama.cpp's server on a GGUF          POST /v1/completions; only with
                                                               --llama-server BIN --llama-model GGUF

Each server is started on a free loopback port (--port 0), waited for, loaded by the clients
for --warmup seconds (not counted), then for --duration seconds, and stopped with SIGTERM (also
on Ctrl-C or a SIGTERM to this script; SIGKILL if it does not exit). Texts are lines of real
text files (--text, default /usr/share/common-licenses/*, else docs/*.md); an embeddings
request has 1..--inputs of them, a completion prompt is the first --prompt-words words of one.

Per mode, JSON: requests/s, inputs/s (embeddings) or completion tokens/s (completions; from
the replies' usage), latency p50/p90/p99/max, errors (non-200 replies by status, connection
errors and timeouts by kind, replies with the wrong number of embeddings; must be 0), the
server's VmRSS from /proc/PID/status every second (at ready, first / max / last of the
measured window, the slope in MiB/min over the window and over its second half, and every
sample), the server's and this client's CPU seconds (on a small machine the client can be the
bottleneck: compare client_cpu_s with duration_s), and for qkv the /metrics batch histograms
(qkv_serve_batch_sequences / _requests: batches, mean, estimated p50/p90, buckets) counted over
the measured window. Prints one JSON document on stdout (--out FILE also writes it); progress
goes to stderr. Exit status 1 if any mode had an error.

  tools/.venv/bin/python tools/bench_serve.py --duration 3 --clients 4 --warmup 1   # smoke
  tools/.venv/bin/python tools/bench_serve.py --out bench-serve.json               # 64 x 60 s
  tools/.venv/bin/python tools/bench_serve.py --url http://127.0.0.1:8080 --pid PID --modes embeddings

Only the standard library is used for the clients (asyncio, raw HTTP/1.1)."""
import argparse
import asyncio
import glob
import json
import math
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALL_MODES = ["embeddings", "embeddings-unbatched", "st", "completions", "completions-unbatched",
             "llamacpp"]
LM_CANDIDATES = ["/work/runs/fortunes-gpt2/model", "/work/runs/fortunes-gpt2/run/model"]
LISTENING = re.compile(r"listening on http://(\[[^\]]*\]|[^ :]+):(\d+)")

_live = []  # servers started and not yet stopped: stopped on every way out


def log(*a):
    print("bench_serve:", *a, file=sys.stderr, flush=True)


class Fatal(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# servers


class Server:
    """A server process in its own session (a Ctrl-C on the terminal reaches only us; we send it
    SIGTERM). Ready when its stdout says 'listening on http://HOST:PORT', or, with ready_port,
    when GET /health answers 200."""

    def __init__(self, name, argv, workdir, ready_port=None):
        self.name, self.argv, self.ready_port = name, argv, ready_port
        self.log_path = os.path.join(workdir, name + ".log")
        self.proc = None
        self.host = "127.0.0.1"
        self.port = None

    def log_tail(self, n=2000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def start(self, timeout):
        logf = open(self.log_path, "ab")  # O_APPEND: shared with the stdout pump
        log(f"{self.name}: starting: {' '.join(self.argv)}")
        try:
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=logf,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as e:
            raise Fatal(f"{self.name}: cannot run {self.argv[0]}: {e}")
        finally:
            logf.close()
        _live.append(self)
        found = threading.Event()

        def pump():  # reads stdout to its end (the server must never block on a full pipe)
            with open(self.log_path, "ab") as out:
                for line in self.proc.stdout:
                    out.write(line)
                    out.flush()
                    m = LISTENING.search(line.decode(errors="replace"))
                    if m and not found.is_set():
                        self.host = m.group(1).strip("[]")
                        self.port = int(m.group(2))
                        found.set()

        threading.Thread(target=pump, daemon=True).start()
        until = time.monotonic() + timeout
        while time.monotonic() < until:
            if self.ready_port is None and found.wait(0.1):
                break
            if self.ready_port is not None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{self.ready_port}/health",
                                                timeout=2) as r:
                        if r.status == 200:
                            self.port = self.ready_port
                            break
                except OSError:
                    time.sleep(0.2)
            if self.proc.poll() is not None:
                raise Fatal(f"{self.name}: exited with status {self.proc.returncode} before it "
                            f"was ready:\n{self.log_tail()}")
        else:
            raise Fatal(f"{self.name}: not ready after {timeout} s:\n{self.log_tail()}")
        log(f"{self.name}: ready on {self.host}:{self.port} (pid {self.proc.pid})")

    def stop(self, timeout=40):
        """SIGTERM, then SIGKILL after timeout s; the exit status (negative: killed by signal)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.name}: still running {timeout} s after SIGTERM: SIGKILL")
                self.proc.kill()
                self.proc.wait()
        if self in _live:
            _live.remove(self)
        return self.proc.returncode


def stop_all():
    for s in list(_live):
        try:
            s.stop()
        except Exception as e:  # keep stopping the others
            log(f"{s.name}: stop: {e}")


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# /proc and /metrics


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def slope_per_min(samples):
    """Least-squares slope of (seconds, MiB) samples, in MiB per minute."""
    if len(samples) < 2:
        return None
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    if var == 0:
        return None
    return round(60 * sum((t - mt) * (v - mv) for t, v in samples) / var, 3)


METRIC = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$')


def parse_metrics(text):
    """{(name, frozenset(labels)): value} of a Prometheus text exposition."""
    out = {}
    for line in text.splitlines():
        m = METRIC.match(line.strip())
        if not m:
            continue
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        try:
            out[(m.group(1), labels)] = float(m.group(3))
        except ValueError:
            pass
    return out


def histogram_summary(before, after, name):
    """Per kind, the histogram `name` counted between two scrapes."""
    def delta(key):
        return after.get(key, 0.0) - before.get(key, 0.0)

    kinds = sorted({dict(l).get("kind") for (n, l) in after if n == name + "_count"} - {None})
    res = {}
    for kind in kinds:
        count = delta((name + "_count", frozenset({("kind", kind)})))
        if not count:
            continue
        total = delta((name + "_sum", frozenset({("kind", kind)})))
        buckets = []
        for (n, l), _ in after.items():
            d = dict(l)
            if n == name + "_bucket" and d.get("kind") == kind:
                le = float("inf") if d["le"] == "+Inf" else float(d["le"])
                buckets.append((le, d["le"], delta((n, l))))
        buckets.sort()

        def quantile(q):  # the upper bound of the bucket holding the q-quantile
            for le, les, c in buckets:
                if count and c >= q * count:
                    return les
            return None

        res[kind] = {"batches": int(count), "mean": round(total / count, 2) if count else None,
                     "p50_le": quantile(0.5), "p90_le": quantile(0.9),
                     "buckets_cumulative": {les: int(c) for _, les, c in buckets}}
    return res


def counter_delta(before, after, name):
    out = {}
    for (n, l), v in after.items():
        if n == name:
            key = ",".join(f"{k}={v2}" for k, v2 in sorted(l)) or "total"
            d = v - before.get((n, l), 0.0)
            if d:
                out[key] = int(d) if d == int(d) else d
    return out


def scrape(host, port, timeout=10):
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout) as r:
            return parse_metrics(r.read().decode())
    except OSError as e:
        log(f"/metrics: {e}")
        return None


# ---------------------------------------------------------------------------------------------
# the clients: raw HTTP/1.1 on asyncio streams, one keep-alive connection per client


async def http_exchange(reader, writer, request):
    """Sends request, reads one reply: (status, body, keep_alive)."""
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise ValueError(f"bad status line {lines[0][:80]!r}")
    status = int(parts[1])
    hdr = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            hdr[k.strip().lower()] = v.strip()
    keep = parts[0] == "HTTP/1.1" and hdr.get("connection", "").lower() != "close"
    if "content-length" in hdr:
        body = await reader.readexactly(int(hdr["content-length"]))
    elif "chunked" in hdr.get("transfer-encoding", "").lower():
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                break
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(chunks)
    else:
        body, keep = await reader.read(), False
    return status, body, keep


class Load:
    def __init__(self, args, kind, host, port, texts, pid):
        self.args, self.kind, self.host, self.port, self.texts, self.pid = \
            args, kind, host, port, texts, pid
        self.path = "/v1/embeddings" if kind == "embeddings" else "/v1/completions"
        self.done = []  # (sent, answered, units, prompt tokens, finish reason) of every 200
        self.errors, self.error_samples = {}, []

    def error(self, what, sample=None):
        self.errors[what] = self.errors.get(what, 0) + 1
        if sample is not None and len(self.error_samples) < 5:
            self.error_samples.append(sample)

    def body(self, rng):
        a = self.args
        if self.kind == "embeddings":
            n = rng.randint(a.inputs_min, a.inputs_max)
            obj = {"input": [rng.choice(self.texts) for _ in range(n)],
                   "encoding_format": a.encoding_format}
        else:
            n = 1
            obj = {"prompt": rng.choice(self.texts), "max_tokens": a.max_tokens,
                   "temperature": a.temperature, "seed": rng.randrange(1 << 31)}
        body = json.dumps(obj).encode()
        head = (f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        return head.encode() + body, n

    def check(self, body, n):
        """(units, prompt tokens, finish reason) of a 200 reply (units: inputs or completion
        tokens), or None if it is wrong."""
        if self.kind == "embeddings":
            return (n, 0, None) if body.count(b'"object":"embedding"') == n else None
        try:
            r = json.loads(body)
            return (int(r["usage"]["completion_tokens"]), int(r["usage"]["prompt_tokens"]),
                    str(r["choices"][0].get("finish_reason")))
        except (ValueError, KeyError, IndexError, TypeError):
            return None

    async def client(self, i):
        rng = random.Random(self.args.seed * 1000003 + i)
        reader = writer = None
        while time.monotonic() < self.end:
            request, n = self.body(rng)
            t0 = time.monotonic()
            try:
                if writer is None:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(self.host, self.port), self.args.timeout)
                status, body, keep = await asyncio.wait_for(
                    http_exchange(reader, writer, request), self.args.timeout)
            except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    asyncio.TimeoutError, ValueError) as e:
                self.error("connection:" + type(e).__name__, str(e)[:200])
                if writer is not None:
                    writer.close()
                reader = writer = None
                await asyncio.sleep(0.05)  # a dead server must not turn this into a busy loop
                continue
            t1 = time.monotonic()
            if not keep:
                writer.close()
                reader = writer = None
            if status != 200:
                self.error(f"http_{status}", body[:300].decode(errors="replace"))
                continue
            got = self.check(body, n)
            if got is None:
                self.error("bad_reply", body[:300].decode(errors="replace"))
                continue
            self.done.append((t0, t1) + got)
        if writer is not None:
            writer.close()

    async def sample_rss(self):
        while True:
            kib = rss_kib(self.pid)
            if kib is not None:
                self.rss.append((time.monotonic() - self.start, kib / 1024))
            await asyncio.sleep(1)

    async def run(self):
        a = self.args
        self.rss = []
        self.rss_ready = rss_kib(self.pid) if self.pid else None
        now = time.monotonic()
        self.start = now + a.warmup
        self.end = self.start + a.duration
        sampler = asyncio.ensure_future(self.sample_rss()) if self.pid else None
        tasks = [asyncio.ensure_future(self.client(i)) for i in range(a.clients)]
        before = after = None
        try:
            await asyncio.sleep(max(0.0, self.start - time.monotonic()))
            loop = asyncio.get_running_loop()
            if a.metrics:
                before = await loop.run_in_executor(None, scrape, self.host, self.port)
            self.cpu0 = cpu_seconds(self.pid) if self.pid else None
            self.ru0 = resource.getrusage(resource.RUSAGE_SELF)
            await asyncio.sleep(max(0.0, self.end - time.monotonic()))
            self.cpu1 = cpu_seconds(self.pid) if self.pid else None
            self.ru1 = resource.getrusage(resource.RUSAGE_SELF)
            if a.metrics:  # at the end of the window, while the last requests finish
                after = await loop.run_in_executor(None, scrape, self.host, self.port)
            # the requests in flight at the end are answered (not counted) before the server
            # is stopped; a client waits at most --timeout
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            if sampler:
                sampler.cancel()
        return self.report(before, after)

    def report(self, before, after):
        # what was answered in the window [start, end] (a closed loop in its steady state:
        # requests sent in the warm-up and answered in the window count, those in flight at its
        # end do not); errors count whenever they happen, warm-up and tail included
        win = [d for d in self.done if self.start <= d[1] <= self.end]
        lat = sorted(t1 - t0 for t0, t1, *_ in win)
        units = sum(d[2] for d in win)
        span = self.end - self.start
        n = len(lat)

        def pct(q):
            return round(1e3 * lat[min(n - 1, max(0, math.ceil(q * n) - 1))], 2) if n else None

        r = {"route": self.path, "requests": n, "duration_s": round(span, 3), "requests_per_s": round(n / span, 2)}
        if self.kind == "embeddings":
            r["inputs"] = units
            r["inputs_per_s"] = round(units / span, 2)
        else:
            r["completion_tokens"] = units
            r["completion_tokens_per_s"] = round(units / span, 2)
            r["prompt_tokens"] = sum(d[3] for d in win)
            r["finish_reasons"] = {}
            for d in win:
                r["finish_reasons"][d[4]] = r["finish_reasons"].get(d[4], 0) + 1
        r["latency_ms"] = {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99),
                           "max": round(1e3 * lat[-1], 2) if n else None,
                           "mean": round(1e3 * sum(lat) / n, 2) if n else None}
        r["errors"] = sum(self.errors.values())
        r["errors_by_kind"] = self.errors
        if self.error_samples:
            r["error_samples"] = self.error_samples
        r["outside_window_requests"] = len(self.done) - n
        if self.pid:
            win = [(t, v) for t, v in self.rss if 0 <= t <= self.end - self.start + 0.5]
            half = [(t, v) for t, v in win if t >= self.args.duration / 2]
            r["rss_mib"] = {
                "at_ready": round(self.rss_ready / 1024, 1) if self.rss_ready else None,
                "first": round(win[0][1], 1) if win else None,
                "max": round(max(v for _, v in win), 1) if win else None,
                "last": round(win[-1][1], 1) if win else None,
                "slope_mib_per_min": slope_per_min(win),
                "slope_second_half_mib_per_min": slope_per_min(half),
                "samples": [[round(t, 1), round(v, 1)] for t, v in self.rss]}
            if self.cpu0 is not None and self.cpu1 is not None:
                r["server_cpu_s"] = round(self.cpu1 - self.cpu0, 2)
        r["client_cpu_s"] = round((self.ru1.ru_utime + self.ru1.ru_stime) -
                                  (self.ru0.ru_utime + self.ru0.ru_stime), 2)
        if before is not None and after is not None:
            r["metrics"] = {
                "batch_sequences": histogram_summary(before, after, "qkv_serve_batch_sequences"),
                "batch_requests": histogram_summary(before, after, "qkv_serve_batch_requests"),
                "requests_total": counter_delta(before, after, "qkv_serve_requests_total"),
                "aborted_total": counter_delta(before, after, "qkv_serve_aborted_total"),
                "tokens_total": counter_delta(before, after, "qkv_serve_tokens_total")}
        return r


# ---------------------------------------------------------------------------------------------
# modes


def read_texts(paths):
    texts = []
    for p in paths:
        if not os.path.isfile(p):
            continue
        with open(p, encoding="utf-8", errors="replace") as f:
            for line in f:
                line = " ".join(line.split())
                if len(line.split()) >= 3:
                    texts.append(line)
    return texts


def find_lm(args, workdir):
    if args.lm:
        if not os.path.isfile(os.path.join(args.lm, "config.json")):
            raise Fatal(f"--lm {args.lm}: not a model directory (no config.json)")
        return args.lm
    for d in LM_CANDIDATES:
        if os.path.isfile(os.path.join(d, "config.json")):
            return d
    # the tiny GPT-2 fixture with a BPE trained on data/corpus.txt, as tests/cli/test_serve_completions.sh
    src = os.path.join(ROOT, "tests/fixtures/models/gpt2_tiny")
    corpus = os.path.join(ROOT, "data/corpus.txt")
    if not (os.path.isfile(os.path.join(src, "model.safetensors")) and os.path.isfile(corpus)):
        raise Fatal("no language model: pass --lm DIR (none of " + ", ".join(LM_CANDIDATES) +
                    " and no tests/fixtures/models/gpt2_tiny)")
    lm = os.path.join(workdir, "gpt2_tiny")
    os.makedirs(lm)
    for f in ("config.json", "model.safetensors"):
        shutil.copy(os.path.join(src, f), lm)
    log(f"no fortunes GPT-2 found: the tiny fixture GPT-2 in {lm} (tokenizer trained now)")
    subprocess.run([args.qkv, "tokenizer", "train", "--vocab-size", "384", "--out", lm, corpus],
                   check=True, stdout=subprocess.DEVNULL)
    return lm


def lm_context(lm):
    try:
        with open(os.path.join(lm, "config.json")) as f:
            c = json.load(f)
        return int(c.get("n_positions") or c.get("max_position_embeddings") or 0) or None
    except (OSError, ValueError, TypeError):
        return None


def fitting_prompts(args, texts, host, port):
    """The prompts (first --prompt-words words of each text) whose tokens, as the server's
    /tokenize counts them, leave room for --max-tokens in the model's context (a prompt that
    does not fit is a 400 context_length_exceeded, which would count as an error). Computed once
    and reused by the other completion modes."""
    if args.prompts is not None:
        return args.prompts
    prompts = sorted({" ".join(t.split()[:args.prompt_words]) for t in texts})
    limit = args.max_prompt_tokens
    if limit is None and args.lm_dir and lm_context(args.lm_dir):
        limit = lm_context(args.lm_dir) - args.max_tokens
    if limit is None:
        args.prompts = prompts
        return prompts
    kept = []
    for i in range(0, len(prompts), 1000):
        chunk = prompts[i:i + 1000]
        req = urllib.request.Request(f"http://{host}:{port}/tokenize",
                                     data=json.dumps({"input": chunk}).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=args.timeout) as r:
                data = json.load(r)["data"]
        except (OSError, ValueError, KeyError) as e:
            raise Fatal(f"/tokenize (to keep the prompts that fit the context): {e}")
        kept += [p for p, d in zip(chunk, data) if len(d["tokens"]) <= limit]
    if not kept:
        raise Fatal(f"no prompt of --prompt-words {args.prompt_words} words fits in "
                    f"{limit} tokens (context minus --max-tokens)")
    log(f"prompts: {len(kept)} of {len(prompts)} fit in {limit} tokens")
    args.prompts = kept
    return kept


def run_mode(mode, args, texts, workdir):
    kind = "embeddings" if mode in ("embeddings", "embeddings-unbatched", "st") else "completions"
    if args.url:
        m = re.match(r"http://([^/:]+|\[[^\]]+\]):(\d+)/?$", args.url)
        if not m:
            raise Fatal(f"--url {args.url}: want http://HOST:PORT")
        host, port = m.group(1).strip("[]"), int(m.group(2))
        if kind == "completions":
            texts = fitting_prompts(args, texts, host, port)
        load = Load(args, kind, host, port, texts, args.pid)
        return asyncio.run(load.run())

    threads, port = str(args.threads), None
    qkv_common = ["serve", "--port", "0", "--threads", threads,
                  "--max-connections", str(args.clients + 8)] + args.serve_arg
    if mode == "embeddings":
        argv = [args.qkv, *qkv_common, "--model", args.model]
    elif mode == "embeddings-unbatched":
        argv = [args.qkv, *qkv_common, "--model", args.model, "--max-batch", "1"]
    elif mode == "st":
        argv = [sys.executable, os.path.join(ROOT, "tools/st_server.py"), "--model", args.model,
                "--port", "0", "--threads", threads] + (["--lock"] if args.st_lock else [])
    elif mode in ("completions", "completions-unbatched"):
        argv = [args.qkv, *qkv_common, "--lm", args.lm_dir, "--decode-batch",
                str(args.decode_batch if mode == "completions" else 1)]
    elif mode == "llamacpp":
        if not (args.llama_server and args.llama_model):
            return {"skipped": "no llama.cpp server: pass --llama-server BIN --llama-model GGUF"}
        if not os.path.isfile(args.llama_model):
            raise Fatal(f"--llama-model {args.llama_model}: no such file")
        port = free_port()
        argv = [args.llama_server, "-m", args.llama_model, "--host", "127.0.0.1", "--port",
                str(port), "-t", threads, "-np", str(args.clients), "--cont-batching"]
    srv = Server(mode, argv, workdir, ready_port=port)
    try:
        srv.start(args.startup_timeout)
        args.metrics = mode not in ("st", "llamacpp")
        if kind == "completions" and mode != "llamacpp":
            texts = fitting_prompts(args, texts, srv.host, srv.port)
        elif kind == "completions":
            texts = args.prompts or [" ".join(t.split()[:args.prompt_words]) for t in texts]
        load = Load(args, kind, srv.host, srv.port, texts, srv.proc.pid)
        log(f"{mode}: {args.clients} clients, {args.warmup} s warm-up + {args.duration} s")
        res = asyncio.run(load.run())
    finally:
        code = srv.stop()
    res["server"] = " ".join(os.path.relpath(a, ROOT) if a.startswith(ROOT) else a for a in argv)
    res["server_exit"] = code
    if code != 0:
        res["server_log_tail"] = srv.log_tail(1000)
    log(f"{mode}: {res['requests_per_s']} req/s, p50 {res['latency_ms']['p50']} ms, "
        f"p99 {res['latency_ms']['p99']} ms, errors {res['errors']}, exit {code}")
    return res


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modes", default=",".join(ALL_MODES),
                    help="comma-separated, of: " + ", ".join(ALL_MODES))
    ap.add_argument("--clients", type=int, default=64, help="concurrent clients (64)")
    ap.add_argument("--duration", type=float, default=60, help="measured seconds per mode (60)")
    ap.add_argument("--warmup", type=float, default=5, help="seconds of load not counted (5)")
    ap.add_argument("--timeout", type=float, default=60, help="per request, seconds (60)")
    ap.add_argument("--startup-timeout", type=float, default=300)
    ap.add_argument("--qkv", default=os.path.join(ROOT, "build/qkv"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models/all-MiniLM-L6-v2"))
    ap.add_argument("--lm", help="language model dir (default: the fortunes GPT-2 if present, "
                    "else the tiny fixture GPT-2)")
    ap.add_argument("--threads", type=int, default=2,
                    help="qkv serve --threads and the peers' torch threads (2)")
    ap.add_argument("--serve-arg", action="append", default=[],
                    help="one more argument for every qkv serve (repeat)")
    ap.add_argument("--text", action="append",
                    help="text file(s) whose lines are the inputs (default "
                    "/usr/share/common-licenses/*, else docs/*.md)")
    ap.add_argument("--inputs", default="1-4",
                    help="texts per embeddings request: N or A-B, uniform (1-4)")
    ap.add_argument("--encoding-format", choices=("float", "base64"), default="float")
    ap.add_argument("--prompt-words", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=32, help="per completion (32)")
    ap.add_argument("--max-prompt-tokens", type=int,
                    help="keep the prompts of at most this many tokens (default: the LM's "
                    "context minus --max-tokens)")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--decode-batch", type=int, default=64, help="of mode completions (64)")
    ap.add_argument("--st-lock", action="store_true", help="st_server.py --lock")
    ap.add_argument("--llama-server", help="llama.cpp's llama-server binary")
    ap.add_argument("--llama-model", help="a GGUF for --llama-server")
    ap.add_argument("--url", help="an already running server http://HOST:PORT (one mode, no "
                    "start/stop; --pid for its RSS)")
    ap.add_argument("--pid", type=int, help="with --url: the server's pid, for RSS and CPU")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args()
    args.modes = [m for m in args.modes.split(",") if m]
    bad = [m for m in args.modes if m not in ALL_MODES]
    if bad:
        ap.error(f"unknown mode(s) {bad}; modes: {ALL_MODES}")
    if args.url and len(args.modes) != 1:
        ap.error("--url takes one mode (--modes embeddings or --modes completions)")
    m = re.fullmatch(r"(\d+)(?:-(\d+))?", args.inputs)
    if not m:
        ap.error("--inputs: N or A-B")
    args.inputs_min = int(m.group(1))
    args.inputs_max = int(m.group(2) or m.group(1))
    if not 1 <= args.inputs_min <= args.inputs_max:
        ap.error("--inputs: want 1 <= A <= B")
    if args.clients < 1 or args.duration <= 0 or args.warmup < 0 or args.timeout <= 0:
        ap.error("--clients >= 1, --duration > 0, --warmup >= 0, --timeout > 0")
    args.metrics = bool(args.url)
    args.prompts, args.lm_dir = None, None
    return args


def on_term(signum, frame):
    raise KeyboardInterrupt


def main():
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)  # also when started in the background (SIG_IGN)
    if signal.getsignal(signal.SIGHUP) != signal.SIG_IGN:  # nohup is respected
        signal.signal(signal.SIGHUP, on_term)
    args = parse_args()
    workdir = tempfile.mkdtemp(prefix="bench_serve.")
    results, status = {}, 0
    doc = {"config": {k: getattr(args, k) for k in
                      ("clients", "duration", "warmup", "threads", "inputs", "encoding_format",
                       "prompt_words", "max_tokens", "temperature", "timeout", "seed")},
           "machine": {"cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg()},
           "results": results}
    try:
        texts = read_texts(args.text or sorted(glob.glob("/usr/share/common-licenses/*"))
                           or sorted(glob.glob(os.path.join(ROOT, "docs/*.md"))))
        if not texts:
            raise Fatal("no texts: pass --text FILE")
        doc["config"]["texts"] = len(texts)
        if not args.url:
            if not os.access(args.qkv, os.X_OK):
                raise Fatal(f"{args.qkv}: no qkv binary (build it, or pass --qkv)")
            embed = [m for m in args.modes if m in ("embeddings", "embeddings-unbatched", "st")]
            if embed and not os.path.isfile(os.path.join(args.model, "config.json")):
                raise Fatal(f"--model {args.model}: not a model directory (no config.json)")
            if any(m.startswith("completions") for m in args.modes):
                args.lm_dir = find_lm(args, workdir)
                doc["config"]["lm"] = args.lm_dir
            doc["config"]["model"] = args.model
        for mode in args.modes:
            results[mode] = run_mode(mode, args, texts, workdir)
            if args.prompts is not None:
                doc["config"]["prompts"] = len(args.prompts)
            if results[mode].get("errors") or results[mode].get("server_exit") not in (0, None):
                status = 1
    except Fatal as e:
        log(f"error: {e}")
        doc["error"] = str(e)
        status = 2
    except KeyboardInterrupt:
        log("interrupted: stopping the servers")
        doc["interrupted"] = True
        status = 130
    finally:
        stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    # one line per RSS sample
    text = re.sub(r"\[\s*(-?[\d.]+),\s*(-?[\d.]+)\s*\]", r"[\1, \2]", json.dumps(doc, indent=1))
    print(text)
    if args.out:
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, args.out)
    return status


if __name__ == "__main__":
    sys.exit(main())
