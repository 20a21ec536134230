"""Training from Python: qkv.prepare_data / prepare_parallel (`qkv data prepare`), qkv.train
(`qkv train`) and qkv.finetune (`qkv finetune`) run the qkv command shipped in the package
(qkv/bin/qkv, or $QKV_EXE) in a child process: keyword options become its flags, its metrics
come back as JSON lines (--progress-json, with --progress-ack so that the callback can stop the
run after the step it has seen), its errors become qkv.Error subclasses with its message.
One implementation of the front end (cli/cmd_train.c, cli/cmd_finetune.c), a crash of the run
does not take Python down, and Ctrl-C behaves as in a terminal. docs/PYTHON.md, "Training"."""

import errno
import json
import os
import re
import signal
import subprocess
import tempfile

# (the flag for True, the flag for False) of the options that are switches on the command line;
# the other booleans are given as 1 / 0
_SWITCHES = {
    "train": {"tb_histograms": ("--tb-histograms", None),
              "tensorboard": (None, "--no-tensorboard")},
    "finetune": {"tb_histograms": ("--tb-histograms", None),
                 "tensorboard": (None, "--no-tensorboard"), "no_quotes": ("--no-quotes", None),
                 "recompute": ("--recompute", None),
                 "group_by_length": (None, "--no-group-by-length")},
    "data": {},
}
_OWN = ("progress_json", "progress_ack")  # the driver's


def executable():
    """The qkv command the training functions run: $QKV_EXE, else the package's qkv/bin/qkv."""
    p = os.environ.get("QKV_EXE") or os.path.join(os.path.dirname(__file__), "bin", "qkv")
    if not (os.path.isfile(p) and os.access(p, os.X_OK)):
        from . import NotFound
        raise NotFound(6, f"{p}: no qkv executable (the package installs it as qkv/bin/qkv; "
                          f"QKV_EXE may name another)")
    return p


def _value(v):
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return repr(v)  # the shortest text that reads back as the same double
    if isinstance(v, (list, tuple)):
        return ",".join(_value(x) for x in v)
    return os.fsdecode(v) if isinstance(v, (bytes, os.PathLike)) else str(v)


def _flags(cmd, fn, options):
    """Keyword options -> the command's flags (underscores become dashes)."""
    args = []
    for k, v in options.items():
        if k in _OWN:
            raise TypeError(f"qkv.{fn}() got an unexpected keyword argument '{k}'")
        if v is None:
            continue
        sw = _SWITCHES[cmd].get(k)
        if sw is not None and isinstance(v, bool):
            if sw[0 if v else 1]:
                args.append(sw[0 if v else 1])
            continue
        args += ["--" + k.replace("_", "-"), _value(v)]
    return args


def _path(p):
    p = os.fspath(p)
    p = os.fsdecode(p)
    return "./" + p if p.startswith("-") else p  # never taken for a flag


# ---------------------------------------------------------------- errors

def _error(cmd, fn, rc, log):
    """The exception for a failed run: the status and message of the line qkv printed."""
    from . import (_ERRORS, Error, InternalError, Interrupted, InvalidArgument, IOFailure,
                   NotFinite, lib)
    names = {lib.qkv_strerror(s).decode(): s for s in _ERRORS}
    status = {cls: s for s, cls in _ERRORS.items()}

    def make(cls, msg):  # cls with its own status number
        return cls(status[cls], msg)
    lines = log.splitlines()
    pat = re.compile(r"qkv: (.*?): (%s)(?:: (.*))?$" % "|".join(map(re.escape, names)))
    for ln in lines:  # cli_report: "qkv: WHAT: STATUS: DETAIL" (DETAIL without "WHAT: ")
        m = pat.match(ln)
        if m:
            what, name, detail = m.group(1), m.group(2), m.group(3) or ""
            msg = detail if detail.startswith(what + ":") or not detail else f"{what}: {detail}"
            return _ERRORS[names[name]](names[name], msg)
    own = [ln[len(cmd) + 6:] for ln in lines if ln.startswith(f"qkv {cmd}: ")
           and not ln.startswith(f"qkv {cmd}: warning")]
    msg = own[-1] if own else (lines[-1] if lines else f"qkv {cmd} exited with {rc}")
    if any(msg.endswith(": " + os.strerror(n)) for n in (errno.ENOENT, errno.EACCES,
                                                         errno.EISDIR, errno.ENOTDIR)):
        return make(IOFailure, msg)  # "qkv CMD: FILE: No such file or directory"
    if rc == 2:  # cli_usage_error: "qkv CMD: MESSAGE" then "Run 'qkv CMD --help' ..."
        m = re.match(r"(?:.*: )?unknown option '?--([^' ]+)'?$", msg)
        if m:
            return TypeError(f"qkv.{fn}() got an unexpected keyword argument "
                             f"'{m.group(1).replace('-', '_')}'")
        return make(InvalidArgument, msg)
    if rc == 143:
        return make(Interrupted, msg)
    if rc < 0:
        return make(InternalError, f"qkv {cmd} was killed by signal {-rc}: {msg}")
    return make(NotFinite, msg) if "not finite" in msg else Error(status[InternalError], msg)


# ---------------------------------------------------------------- the child

def _run(cmd, fn, args, progress=None, records=False):
    """Runs `qkv ARGS` in its own process group (a terminal's Ctrl-C reaches Python only), its
    stdout and stderr captured. With records: its metrics lines, each acknowledged after
    progress(d) returned, are returned as dicts. Ctrl-C or an exception of progress closes the
    acknowledgements and forwards SIGINT (the run stops after its step with a checkpoint), waits
    for the child, and is raised; a second Ctrl-C is forwarded too (which ends qkv at once, as
    in a terminal). Returns (records, stdout text, stderr text)."""
    argv = [executable(), *args]
    fds, pr, aw = [], -1, -1
    if records:
        pr, pw = os.pipe()
        ar, aw = os.pipe()
        argv += ["--progress-json", str(pw), "--progress-ack", str(ar)]
        fds = [pw, ar]
    seen, stop = [], None
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                 pass_fds=fds, start_new_session=True)
        except BaseException:
            for fd in (pr, aw) if records else ():
                os.close(fd)
            raise
        finally:
            for fd in fds:
                os.close(fd)
        reader = os.fdopen(pr, "rb") if records else None

        def request_stop(e):
            nonlocal stop, aw
            if stop is not None:  # again: forwarded, as a terminal would
                _signal(p)
                return
            stop = e
            if records and aw >= 0:
                os.close(aw)  # the end of the acknowledgements: stop after this step
                aw = -1
            _signal(p)

        try:
            while reader is not None:
                try:
                    line = reader.readline()
                    if not line:
                        break
                    d = json.loads(line)
                    seen.append(d)
                    if progress is not None and stop is None and not d.get("replayed"):
                        progress(d)
                    if aw >= 0:
                        try:
                            os.write(aw, b"c")
                        except OSError:
                            pass  # the child is gone: its exit status says why
                except BaseException as e:
                    request_stop(e)
            while True:
                try:
                    rc = p.wait()
                    break
                except KeyboardInterrupt as e:
                    request_stop(e)
        finally:
            if reader is not None:
                reader.close()
            if records and aw >= 0:
                os.close(aw)
            if p.poll() is None:  # only when Python itself fails here
                p.kill()
                p.wait()
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    if stop is not None:
        raise stop
    if rc == 130:
        raise KeyboardInterrupt
    if rc != 0:
        e = _error(cmd, fn, rc, stderr)
        e.stderr = stderr
        raise e
    return seen, stdout, stderr


def _signal(p):
    try:
        p.send_signal(signal.SIGINT)
    except ProcessLookupError:
        pass


# ---------------------------------------------------------------- datasets

def _split_counts(out, key):
    with open(os.path.join(out, "meta.json"), "rb") as f:
        meta = json.load(f)
    return {key: [meta["train"]["documents"], meta["val"]["documents"]],
            "tokens": [meta["train"]["tokens"], meta["val"]["tokens"]]}


def prepare_data(files, out, tokenizer, **options):
    """`qkv data prepare --tokenizer TOKENIZER --out OUT [options] FILES`: tokenizes text files
    into a token dataset for qkv.train (options: val_fraction, split_on, shard_tokens, seed).
    Returns {"documents": [train, val], "tokens": [train, val], "bytes_read": the files' size}."""
    if isinstance(files, (str, bytes, os.PathLike)):
        files = [files]
    files = [_path(f) for f in files]
    args = ["data", "prepare", "--tokenizer", _path(tokenizer), "--out", _path(out),
            *_flags("data", "prepare_data", options), *files]
    _run("data prepare", "prepare_data", args)
    st = _split_counts(out, "documents")
    st["bytes_read"] = sum(os.path.getsize(f) for f in files)
    return st


def prepare_parallel(source, target, out, tokenizer, **options):
    """`qkv data prepare --source SOURCE --target TARGET --tokenizer TOKENIZER --out OUT`: a
    parallel dataset of line-aligned sentence pairs, for translation models (options:
    target_tokenizer, val_fraction, val_source, val_target, on_error="stop"|"skip", seed).
    Returns {"pairs": [train, val], "tokens": [train, val] (source side), "skipped": n}."""
    args = ["data", "prepare", "--source", _path(source), "--target", _path(target),
            "--tokenizer", _path(tokenizer), "--out", _path(out),
            *_flags("data", "prepare_parallel", options)]
    _, stdout, _ = _run("data prepare", "prepare_parallel", args)
    st = _split_counts(out, "pairs")
    m = re.search(r"^skipped (\d+) pairs", stdout, re.M)
    st["skipped"] = int(m.group(1)) if m else 0
    return st


# ---------------------------------------------------------------- train / finetune

class TrainResult:
    """What qkv.train / qkv.finetune did: out (the run directory), model (the exported Hugging
    Face directory), adapter (finetune with LoRA: the PEFT adapter directory, else None), steps
    (the steps trained: the newest checkpoint's), metrics (every metrics line of the run as a
    dict at full precision, those of before a resume with "replayed": True), report / test_report
    (finetune: the text of report.txt / test_report.txt, else None) and log (what qkv printed on
    stderr)."""

    def __init__(self, out, metrics, log):
        self.out, self.metrics, self.log = out, metrics, log
        d = os.path.join(out, "model")
        self.model = d if os.path.isdir(d) else None
        d = os.path.join(out, "adapter")
        self.adapter = d if os.path.isdir(d) else None
        steps = [int(m.group(1)) for m in (re.fullmatch(r"ckpt_(\d+)\.safetensors", n)
                                          for n in os.listdir(out)) if m]
        self.steps = max(steps, default=0)
        self.report = self._text("report.txt")
        self.test_report = self._text("test_report.txt")

    def _text(self, name):
        try:
            with open(os.path.join(self.out, name), encoding="utf-8") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def __repr__(self):
        return f"TrainResult(out={self.out!r}, steps={self.steps}, model={self.model!r})"


def _train_like(cmd, fn, named, out, resume, progress, options):
    if out is None:
        from . import InvalidArgument
        raise InvalidArgument(1, f"{fn} needs out (the run directory)")
    out = os.fsdecode(os.fspath(out))
    args = [cmd]
    for k, v in named:
        if v is not None:
            args += ["--" + k, _path(v)]
    args += ["--out", _path(out)] + (["--resume"] if resume else [])
    args += _flags(cmd, fn, options)
    seen, _, log = _run(cmd, fn, args, progress, records=True)
    return TrainResult(out, seen, log)


def train(data=None, out=None, *, resume=False, progress=None, **options):
    """Trains a model as `qkv train --data DATA --out OUT [options]` does (docs/TRAINING.md),
    in a child process: options are its flags with underscores (n_layer=2, arch="marian",
    init="DIR", eval_every=4, config="FILE", ...), True / False as 1 / 0 or the switch. GPT-2,
    Llama-style decoders, BERT (masked LM) on a dataset of qkv.prepare_data, MarianMT on one of
    qkv.prepare_parallel. resume=True continues OUT from its newest checkpoint, bit for bit.
    progress(dict) is called with every new metrics line ("kind": "step" or "eval"; the numbers
    at full precision); the run waits for it. Ctrl-C, or an exception raised by progress, stops
    the run after its current step with a checkpoint, and is raised then. Writes what the CLI
    writes (config.json, metrics.jsonl, loss.svg, TensorBoard events, checkpoints, OUT/model).
    Returns a TrainResult; a failure raises the qkv.Error subclass of qkv's message."""
    return _train_like("train", "train", [("data", data)], out, resume, progress, options)


def finetune(model=None, train=None, out=None, *, resume=False, progress=None, **options):
    """Fine-tunes a BERT into a sequence classifier as `qkv finetune --model MODEL --train TRAIN
    --out OUT [options]` does, in a child process: options are its flags with underscores
    (epochs, batch, lr, val, test, problem, labels=[...], dropout=0.1 or "off", lora_r, ...).
    resume, progress, Ctrl-C and errors as qkv.train. Writes what the CLI writes (metrics,
    plots, checkpoints, best.safetensors, report.txt, test_report.txt, OUT/model, OUT/adapter
    with LoRA). Returns a TrainResult with the reports' text."""
    return _train_like("finetune", "finetune", [("model", model), ("train", train)], out,
                       resume, progress, options)
