#!/usr/bin/env python3
"""st_server.py [--model DIR] [--host H] [--port P] [--threads N] [--lock] — sentence-transformers
behind a plain Python HTTP server: the peer of `qkv serve` in tools/bench_serve.py.

POST /v1/embeddings (also /embeddings) takes OpenAI's {"input": "text" | ["text", ...],
"encoding_format": "float" | "base64"} and answers {"object":"list","data":[{"object":"embedding",
"index":i,"embedding":[...]}],"model":NAME,"usage":{"prompt_tokens":T,"total_tokens":T}}, each
request's inputs encoded by one model.encode call (normalized, as the model's modules say);
GET /health answers {"status":"ok"}. http.server.ThreadingHTTPServer, HTTP/1.1 keep-alive, a
thread per connection; torch.set_num_threads(--threads). With --lock one encode runs at a time
(otherwise the connection threads call model.encode concurrently, as a simple Flask-style server
does). Prints `st_server: listening on http://HOST:PORT` when ready (--port 0: a free port);
SIGTERM / SIGINT stop it."""
import argparse
import base64
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 4 << 20


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="models/all-MiniLM-L6-v2")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--lock", action="store_true", help="one model.encode at a time")
    args = ap.parse_args()
    if not os.path.isfile(os.path.join(args.model, "config.json")):
        sys.exit(f"st_server: {args.model}: not a sentence-transformers directory (no config.json)")

    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    model = SentenceTransformer(args.model, device="cpu")
    name = os.path.basename(os.path.normpath(args.model))
    tok = model.tokenizer
    lock = threading.Lock() if args.lock else None

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):  # quiet: one line per request would cost more than the encode
            pass

        def reply(self, code, obj):
            body = json.dumps(obj, separators=(",", ":")).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def error(self, code, msg):
            self.reply(code, {"error": {"message": msg, "type": "invalid_request_error",
                                        "param": None, "code": None}})

        def do_GET(self):
            if self.path == "/health":
                self.reply(200, {"status": "ok", "models": {"embedding": name}})
            else:
                self.error(404, "not found")

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            if n > MAX_BODY:
                self.close_connection = True
                return self.error(413, "request too large")
            raw = self.rfile.read(n)
            if self.path not in ("/v1/embeddings", "/embeddings"):
                return self.error(404, "not found")
            try:
                req = json.loads(raw)
                inp = req["input"]
            except (ValueError, KeyError, TypeError):
                return self.error(400, "invalid JSON or no 'input'")
            texts = [inp] if isinstance(inp, str) else inp
            if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                return self.error(400, "'input' must be a string or a list of strings")
            if lock:
                with lock:
                    emb = model.encode(texts, batch_size=len(texts) or 1, convert_to_numpy=True)
            else:
                emb = model.encode(texts, batch_size=len(texts) or 1, convert_to_numpy=True)
            emb = np.asarray(emb, dtype=np.float32)
            ids = tok(texts, truncation=True, max_length=model.max_seq_length)["input_ids"]
            ntok = sum(len(x) for x in ids)  # one batched fast-tokenizer call
            b64 = req.get("encoding_format") == "base64"
            data = [{"object": "embedding", "index": i,
                     "embedding": base64.b64encode(e.tobytes()).decode() if b64 else e.tolist()}
                    for i, e in enumerate(emb)]
            self.reply(200, {"object": "list", "data": data, "model": name,
                             "usage": {"prompt_tokens": ntok, "total_tokens": ntok}})

    class Server(ThreadingHTTPServer):
        request_queue_size = 1024  # listen backlog (socketserver's 5 drops bursts of connects)
        daemon_threads = True

    srv = Server((args.host, args.port), Handler)

    def stop(signum, frame):
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = srv.server_address[:2]
    print(f"st_server: listening on http://{host}:{port} (embeddings: {name}, torch threads "
          f"{args.threads}{', one encode at a time' if lock else ''})", flush=True)
    srv.serve_forever()
    srv.server_close()
    print("st_server: stopped", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
