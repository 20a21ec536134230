"""Training from Python: qkv.prepare_data / prepare_parallel (`qkv data prepare`), qkv.train
(`qkv train`) and qkv.finetune (`qkv finetune`), over the library's qkv_data_*, qkv_trainer_*,
qkv_labeled_* / qkv_cls_data_* and qkv_train_run, as the command line drives them: the same
options and defaults, the same run directory (config.json, metrics.jsonl, checkpoints holding
the same options, so either front end resumes the other's run), the same exported model.
docs/PYTHON.md, "Training"."""

import ctypes as C
import json
import math
import os
import signal
import tempfile
import threading

import numpy as np

from . import _lib
from ._lib import lib


def _errors():
    from . import Error, InvalidArgument, Interrupted, _check  # noqa: F401 (import cycle)
    return Error, InvalidArgument, Interrupted, _check


def _usage(msg):
    """An option the front end refuses (the CLI's exit 2): qkv.InvalidArgument."""
    _, InvalidArgument, _, _ = _errors()
    return InvalidArgument(1, msg)


def _check(status):
    _errors()[3](status)


def _b(path):
    return None if path is None else os.fsencode(path)


# ---------------------------------------------------------------- jansson's JSON text
# The options stored in checkpoints (and RUN/config.json) are written byte for byte as the CLI's
# jansson writes them, so a run started here resumes with `qkv ... --resume` and the reverse, and
# the checkpoints of the same run are the same files.


def _jstr(s):
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch in "\b\f\n\r\t":
            out.append({"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
        elif o < 0x20:
            out.append("\\u%04X" % o)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _jreal(x):
    s = "%.17g" % x
    if "." not in s and "e" not in s:
        s += ".0"
    if "e" in s:  # jansson drops '+' and leading zeros of the exponent
        mant, exp = s.split("e")
        sign = "-" if exp.startswith("-") else ""
        s = mant + "e" + sign + (exp.lstrip("+-").lstrip("0") or "0")
    return s


def _jdumps(items, indent):
    """items: (key, value) pairs; values str, bool, int or float (a real)."""
    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        if isinstance(v, float):
            return _jreal(v)
        return _jstr(v)
    if indent:
        return "{\n" + ",\n".join(f"  {_jstr(k)}: {val(v)}" for k, v in items) + "\n}"
    return "{" + ",".join(f"{_jstr(k)}:{val(v)}" for k, v in items) + "}"


def _utf8(s, what):
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise _usage(f"the options cannot be recorded ({what} is not valid UTF-8)") from None


def _write_atomic(path, data):
    d = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp.", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# ---------------------------------------------------------------- datasets


def _stats(st, pairs=False):
    key = "pairs" if pairs else "documents"
    r = {key: [int(st.documents[0]), int(st.documents[1])],
         "tokens": [int(st.tokens[0]), int(st.tokens[1])], "bytes_read": int(st.bytes_read)}
    if pairs:
        r["skipped"] = int(st.skipped)
    return r


def prepare_data(files, out, tokenizer, *, val_fraction=0.05, split_on=None, shard_tokens=0,
                 seed=0):
    """`qkv data prepare --tokenizer TOKENIZER --out OUT FILES`: tokenizes text files into a
    token dataset for qkv.train. Returns the counts: {"documents": [train, val], "tokens":
    [train, val], "bytes_read": n}."""
    from . import Tokenizer
    if isinstance(files, (str, bytes, os.PathLike)):
        files = [files]
    keep = [os.fsencode(f) for f in files]
    if not keep:
        raise _usage("prepare_data needs at least one file")
    with Tokenizer(tokenizer) as tok:
        o = _lib.DataOptions()
        lib.qkv_data_default_options_sized(C.byref(o), C.sizeof(o))
        o.val_fraction = float(val_fraction)
        o.split_on = None if split_on is None else split_on.encode("utf-8", "surrogateescape")
        o.shard_tokens = int(shard_tokens)
        o.seed = int(seed)
        o.tokenizer_path = os.fsencode(tokenizer)
        st = _lib.DataStats(struct_size=C.sizeof(_lib.DataStats))
        arr = (C.c_char_p * len(keep))(*keep)
        _check(lib.qkv_data_prepare(tok._handle(), arr, len(keep), C.byref(o), os.fsencode(out),
                                    C.byref(st), None, None))
    return _stats(st)


def prepare_parallel(source, target, out, tokenizer, *, target_tokenizer=None,
                     val_fraction=0.05, val_source=None, val_target=None, on_error="stop",
                     seed=0):
    """`qkv data prepare --source SOURCE --target TARGET --tokenizer TOKENIZER --out OUT`: a
    parallel dataset of line-aligned sentence pairs (for translation models). Returns the
    counts: {"pairs": [train, val], "tokens": [train, val] (source side), "bytes_read",
    "skipped"}."""
    from . import Tokenizer
    if on_error not in ("stop", "skip"):
        raise _usage("on_error must be stop or skip")
    if (val_source is None) != (val_target is None):
        raise _usage("val_source and val_target go together")
    ttp = tokenizer if target_tokenizer is None else target_tokenizer
    h = C.c_void_p()
    _check(lib.qkv_tokenizer_load_target(os.fsencode(ttp), C.byref(h)))
    ttok = Tokenizer.__new__(Tokenizer)
    ttok._h, ttok._owner = h, None
    with Tokenizer(tokenizer) as tok, ttok:
        o = _lib.DataOptions()
        lib.qkv_data_default_options_sized(C.byref(o), C.sizeof(o))
        o.val_fraction = float(val_fraction)
        o.seed = int(seed)
        o.tokenizer_path = os.fsencode(tokenizer)
        o.target_tokenizer_path = os.fsencode(ttp)
        o.val_source, o.val_target = _b(val_source), _b(val_target)
        o.skip_bad_pairs = 1 if on_error == "skip" else 0
        st = _lib.DataStats(struct_size=C.sizeof(_lib.DataStats))
        _check(lib.qkv_data_prepare_parallel(tok._handle(), ttok._handle(), os.fsencode(source),
                                             os.fsencode(target), C.byref(o), os.fsencode(out),
                                             C.byref(st), None, None))
    return _stats(st, pairs=True)


# ---------------------------------------------------------------- the loop


class TrainResult:
    """What qkv.train / qkv.finetune did: out (the run directory), model (the exported Hugging
    Face directory), adapter (finetune with LoRA: the PEFT adapter directory, else None), steps
    (the trainer's steps), metrics (every metrics.jsonl line of the run as a dict, also those of
    before a resume), report (finetune: scikit-learn's classification_report of the best model
    on the validation set, or {"mse": ...} for regression) and test_report (the same on test)."""

    def __init__(self, **kw):
        self.adapter = self.report = self.test_report = None
        self.__dict__.update(kw)

    def __repr__(self):
        return f"TrainResult(out={self.out!r}, steps={self.steps}, model={self.model!r})"


_RECORD_REALS = ("loss", "lr", "grad_norm", "tokens_per_s", "step_s", "elapsed_s", "val_loss",
                 "val_ppl", "epoch", "val_accuracy", "val_macro_f1")


class _Stop:
    """Ctrl-C and the callback's exceptions become a stop request at the next step boundary (the
    CLI's SIGINT: the loop saves a checkpoint and returns INTERRUPTED)."""

    def __init__(self, callback):
        self.callback = callback
        self.exc = None
        self.metrics = []
        self.old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            try:
                self.old = signal.signal(signal.SIGINT, self._on_sigint)
            except ValueError:
                self.old = None
        return self

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)

    def _on_sigint(self, sig, frame):
        if self.exc is None:
            self.exc = KeyboardInterrupt()

    def record(self, r):
        """One metrics line as a dict: the line's fields, the numbers at full precision (the
        file rounds them), plus kind "step" / "eval"."""
        rec = r.contents
        d = json.loads(rec.json.decode("utf-8"))
        for k in d:
            if k in _RECORD_REALS:
                d[k] = float(getattr(rec, k))
        d["kind"] = "eval" if rec.kind == 1 else "step"
        if rec.replayed:
            d["replayed"] = True
        return d

    def on_metrics(self, r, user):
        try:
            d = self.record(r)
            self.metrics.append(d)
            if self.callback is not None and not d.get("replayed") and self.exc is None:
                self.callback(d)
        except BaseException as e:  # stops the run cleanly, raised after it
            if self.exc is None:
                self.exc = e

    def should_stop(self, user):
        return 1 if self.exc is not None else 0


def _run(rt, t, o, callback):
    """qkv_train_run with the Python callback; raises what stopped it."""
    Error, _, Interrupted, _ = _errors()
    with _Stop(callback) as st:
        cb = _lib.TrainCallbacks()
        cb.struct_size = C.sizeof(cb)
        cb.metrics = _lib.RECORD_FN(st.on_metrics)
        cb.should_stop = _lib.STOP_FN(st.should_stop)
        s = lib.qkv_train_run(rt, t, C.byref(o), C.byref(cb), None)
    if s == 9 and st.exc is not None:  # INTERRUPTED: the checkpoint of the step is saved
        raise st.exc
    _check(s)
    if st.exc is not None:  # raised in the last step's callback: the run had finished
        raise st.exc
    return st.metrics


def _options():
    o = _lib.TrainOptions()
    lib.qkv_train_options_init(C.byref(o))
    if o.struct_size != C.sizeof(o):
        raise ImportError(f"qkv: this libqkv's qkv_train_options has {o.struct_size} bytes, the "
                          f"package's {C.sizeof(o)}: install the package and library together")
    return o


class _Handles:
    """The library objects of a run, freed at the end whatever happens."""

    def __init__(self):
        self.items = []

    def add(self, free, h):
        if h:
            self.items.append((free, h))
        return h

    def new(self, free):
        h = C.c_void_p()
        self.items.append((free, h))
        return h

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for free, h in reversed(self.items):
            if h:
                getattr(lib, free)(h)


def _runtime(hs, threads):
    rt = hs.new("qkv_runtime_free")
    _check(lib.qkv_runtime_create(int(threads or 0), C.byref(rt)))
    return rt


def _resume(hs, out):
    """qkv_train_resume_checked: the trainer and its stored options (a dict, in order)."""
    t = hs.new("qkv_trainer_free")
    user, aside = C.c_void_p(), C.c_void_p()
    _check(lib.qkv_train_resume_checked(os.fsencode(out), C.byref(t), C.byref(user),
                                        C.byref(aside)))
    text = C.string_at(user).decode("utf-8") if user else ""
    lib.qkv_free(user)
    if aside:
        import warnings
        warnings.warn("qkv: set aside damaged checkpoints: " +
                      C.string_at(aside).decode("utf-8", "replace") +
                      f"; resuming from step {lib.qkv_trainer_steps(t)}")
        lib.qkv_free(aside)
    try:
        saved = json.loads(text)
    except ValueError:
        saved = None
    if not isinstance(saved, dict):
        raise _usage(f"{out}: the checkpoint holds no options of this command")
    return t, saved


# ---------------------------------------------------------------- qkv.train

# `qkv train`'s options in its order (cli/cmd_train.c OPTS): kind, default, range, may change on
# resume. Kinds: s string, i whole number, f real, u seed.
_TRAIN = [
    ("data", "s", "", None, 0), ("out", "s", "", None, 0), ("init", "s", "", None, 0),
    ("decay", "s", "cosine", None, 0), ("recompute", "s", "none", None, 1),
    ("arch", "s", "gpt2", None, 0), ("mask_token", "s", "[MASK]", None, 0),
    ("n_kv_head", "i", 0, (0, 1024), 0), ("n_inner", "i", 0, (0, 1 << 20), 0),
    ("n_layer", "i", 4, (1, 1024), 0), ("n_head", "i", 4, (1, 1024), 0),
    ("n_embd", "i", 128, (1, 65536), 0), ("n_positions", "i", 0, (0, 1 << 20), 0),
    ("batch", "i", 8, (1, 1 << 16), 0), ("seq", "i", 128, (1, 1 << 20), 0),
    ("accum", "i", 1, (1, 1 << 16), 0), ("steps", "i", 1000, (1, 10**12), 1),
    ("warmup", "i", 100, (0, 10**12), 0), ("eval_every", "i", 100, (0, 10**12), 1),
    ("eval_batches", "i", 20, (1, 10**9), 1), ("save_every", "i", 200, (0, 10**12), 1),
    ("keep", "i", 3, (1, 10**6), 1), ("log_every", "i", 10, (1, 10**12), 1),
    ("threads", "i", 0, (0, 4096), 1), ("tensorboard", "i", 1, (0, 1), 1),
    ("tb_histograms", "i", 0, (0, 1), 1), ("exact_reduce", "i", 0, (0, 1), 1),
    ("zero", "i", 0, (0, 1), 1), ("mpi_timeout", "f", 300.0, (1, 1e6), 1),
    ("lr", "f", 1e-3, (0, 10), 0), ("min_lr", "f", 1e-4, (0, 10), 0),
    ("weight_decay", "f", 0.1, (0, 10), 0), ("beta1", "f", 0.9, (0, 0.999999), 0),
    ("beta2", "f", 0.95, (0, 0.999999), 0), ("eps", "f", 1e-8, (0, 1), 0),
    ("clip", "f", 1.0, (0, 1e9), 0), ("seed", "u", 1234, None, 0),
    ("src_seq", "i", 0, (0, 1 << 20), 0), ("label_smoothing", "f", -1.0, (-1, 0.999), 0),
    ("dropout", "f", -1.0, (-1, 0.999), 0), ("group_by_length", "i", 0, (0, 1), 0),
]
_TRAIN_BY = {d[0]: d for d in _TRAIN}


def _set(cfg, name, v, table):
    """Checks and stores one option as the CLI's set_opt does."""
    _, kind, _, rng, _ = table[name]
    if kind == "s":
        if not isinstance(v, (str, os.PathLike)):
            raise _usage(f"{name} must be a string, not {v!r}")
        cfg[name] = os.fspath(v)
        return
    if isinstance(v, bool):
        if rng != (0, 1):
            raise _usage(f"{name} must be a number, not {v!r}")
        v = int(v)
    if kind == "u":
        if not isinstance(v, int) or v < 0 or v >= 2**64:
            raise _usage(f"{name} must be a whole number >= 0, not {v!r}")
        cfg[name] = v
        return
    if not isinstance(v, (int, float)) or (kind == "i" and v != math.floor(v)):
        raise _usage(f"{name} must be a {'whole ' if kind == 'i' else ''}number, not {v!r}")
    if not (rng[0] <= v <= rng[1]):
        lo, hi = ((f"{x:.0f}" for x in rng) if kind == "i" else (f"{x:g}" for x in rng))
        raise _usage(f"{name} must be a {'whole ' if kind == 'i' else ''}number in "
                     f"[{lo}, {hi}], not {v!r}")
    cfg[name] = int(v) if kind == "i" else float(v)


def _train_json(cfg):
    """cmd_train.c's cfg_json: every option, dashes in the names, indented by 2."""
    items = []
    for name, kind, *_ in _TRAIN:
        v = cfg[name]
        if kind == "s":
            _utf8(v, name)
        items.append((name.replace("_", "-"), str(v) if kind == "u" else v))
    return _jdumps(items, indent=True)


def _train_from_json(saved, where):
    cfg = {d[0]: d[2] for d in _TRAIN}
    for key, v in saved.items():
        name = key.replace("-", "_")
        if name not in _TRAIN_BY:
            raise _usage(f"{where}: unknown option '{key}'")
        if name == "out" or v is None:
            continue
        if _TRAIN_BY[name][1] == "u" and isinstance(v, str) and v.isdigit():
            v = int(v)
        _set(cfg, name, v, _TRAIN_BY)
    return cfg


def train(data=None, out=None, *, resume=False, progress=None, **options):
    """Trains a GPT-2, Llama-style decoder or BERT (masked LM) on a token dataset of
    qkv.prepare_data, as `qkv train --data DATA --out OUT` does: options are the CLI's flags with
    underscores (n_layer=2, eval_every=4, ...) and the CLI's defaults; init="DIR" starts from a
    Hugging Face directory. resume=True continues the run in OUT from its newest checkpoint, bit
    for bit (only steps, eval_every, eval_batches, save_every, keep, threads, tensorboard,
    tb_histograms and recompute may change). progress(dict) is called with every new
    metrics.jsonl line (a "step" or "eval" dict, its "kind"). Ctrl-C, or an exception raised by
    progress, stops the run after the current step with a checkpoint (as the CLI on SIGINT) and
    is raised then. Writes OUT/config.json, metrics.jsonl, the TensorBoard events file (unless
    tensorboard=False), checkpoints and OUT/model (the model as a Hugging Face directory with the
    dataset's tokenizer.json); not the CLI's loss.svg (`qkv report OUT` draws the run). Returns a
    TrainResult."""
    if out is None:
        raise _usage("train needs out (the run directory)")
    for k in options:
        if k not in _TRAIN_BY or k in ("data", "out"):
            raise TypeError(f"qkv.train() got an unexpected keyword argument '{k}'")
    options = {k: (v if v is not None else _TRAIN_BY[k][2]) for k, v in options.items()}
    if "threads" in options and options["threads"] is None:
        options["threads"] = 0
    out = os.fspath(out)
    with _Handles() as hs:
        t = None
        if resume:
            if lib.qkv_train_latest_checkpoint(os.fsencode(out)) < 0:
                raise _usage(f"resume: no checkpoint in {out}")
            t, saved = _resume(hs, out)
            cfg = _train_from_json(saved, out)
            for k, v in options.items():
                if not _TRAIN_BY[k][4]:
                    raise _usage(f"{k} cannot change on resume (it would not continue the "
                                 f"same run)")
                _set(cfg, k, v, _TRAIN_BY)
            if data is not None and os.fspath(data) != cfg["data"]:
                raise _usage("data cannot change on resume (it would not continue the same run)")
        else:
            if data is None:
                raise _usage("train needs data (a dataset from qkv.prepare_data)")
            cfg = {d[0]: d[2] for d in _TRAIN}
            _set(cfg, "data", data, _TRAIN_BY)
            for k, v in options.items():
                _set(cfg, k, v, _TRAIN_BY)
        cfg["out"] = out
        return _train(hs, cfg, t, resume, progress)


def _dataset_eot(data):
    try:
        with open(os.path.join(data, "meta.json"), "rb") as f:
            e = json.load(f).get("eot_id")
        return e if isinstance(e, int) and not isinstance(e, bool) else -1
    except (OSError, ValueError, AttributeError):
        return -1


def _new_model(hs, cfg, train_ds):
    """A fresh model of cfg["arch"] as cmd_train.c's new_model makes it."""
    P = cfg["n_positions"] or cfg["seq"]
    V = int(lib.qkv_dataset_vocab_size(train_ds))
    tp = lib.qkv_dataset_tokenizer(train_ds)
    tv = -1
    if tp:
        from . import Tokenizer
        try:
            with Tokenizer(os.fsdecode(tp)) as tok:
                tv = tok.vocab_size
        except Exception:
            tv = -1
    if tv >= 0 and V > tv:
        raise _usage(f"{cfg['data']}: meta.json claims a vocabulary of {V} ids, but its "
                     f"tokenizer {os.fsdecode(tp)} has {tv}")
    if tv < 0 and V > 1048576:
        raise _usage(f"{cfg['data']}: meta.json claims a vocabulary of {V} ids and names no "
                     f"tokenizer that confirms it; more than 1048576 is refused")
    C_, H = cfg["n_embd"], cfg["n_head"]
    Hk = cfg["n_kv_head"] or H
    F = cfg["n_inner"] or 4 * C_
    if C_ % H:
        raise _usage(f"n_head {H} must divide n_embd {C_}")
    if H % Hk:
        raise _usage(f"n_kv_head {Hk} must divide n_head {H}")
    t = hs.new("qkv_trainer_free")
    arch = cfg["arch"]
    if arch == "gpt2":
        if cfg["n_inner"] and cfg["n_inner"] != 4 * C_:
            raise _usage("GPT-2 training needs n_inner = 4 n_embd")
        sh = _lib.Gpt2Shape(V, P, C_, cfg["n_layer"], H)
        _check(lib.qkv_trainer_new(C.byref(sh), cfg["seed"], C.byref(t)))
        return t
    L = cfg["n_layer"]
    if arch == "llama":
        if (C_ // H) % 2:
            raise _usage("llama needs an even head size (n_embd / n_head)")
        js = (f'{{"model_type": "llama", "vocab_size": {V}, "hidden_size": {C_}, '
              f'"intermediate_size": {F}, "num_hidden_layers": {L}, '
              f'"num_attention_heads": {H}, "num_key_value_heads": {Hk}, '
              f'"max_position_embeddings": {P}, "rms_norm_eps": 1e-05, '
              f'"rope_theta": 10000.0, "tie_word_embeddings": false, '
              f'"hidden_act": "silu"}}\n')
    elif arch == "bert":
        if Hk != H:
            raise _usage("n_kv_head is for llama")
        js = (f'{{"model_type": "bert", "vocab_size": {V}, "hidden_size": {C_}, '
              f'"intermediate_size": {F}, "num_hidden_layers": {L}, '
              f'"num_attention_heads": {H}, "max_position_embeddings": {P}, '
              f'"type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_act": "gelu"}}\n')
    elif arch == "marian":
        from . import Unsupported
        raise Unsupported(5, "qkv.train: arch marian (translation models) is trained with the "
                             "command line (`qkv train --arch marian`), not yet from Python")
    else:
        raise _usage(f"arch must be gpt2, llama, bert or marian, not '{arch}'")
    path = os.path.join(cfg["out"], "model_config.json")
    _write_atomic(path, (js + "\n").encode())  # (two newlines, as the CLI writes it)
    _check(lib.qkv_trainer_new_hf_config(os.fsencode(path), cfg["seed"], C.byref(t)))
    return t


def _record_init_shape(cfg, t, sh):
    """--init: the run's config records the shape of the model that is trained."""
    cfg["arch"] = lib.qkv_trainer_arch(t).decode()
    cfg["n_layer"], cfg["n_head"] = int(sh.n_layer), int(sh.n_head)
    cfg["n_embd"], cfg["n_positions"] = int(sh.n_embd), int(sh.n_positions)
    cfg["n_kv_head"] = cfg["n_inner"] = 0
    try:
        with open(os.path.join(cfg["init"], "config.json"), "rb") as f:
            j = json.load(f)
    except (OSError, ValueError):
        j = {}
    if not isinstance(j, dict):
        j = {}
    ff = {"gpt2": "n_inner", "marian": "encoder_ffn_dim"}.get(cfg["arch"], "intermediate_size")
    kv = j.get("num_key_value_heads")
    if isinstance(kv, int) and not isinstance(kv, bool) and cfg["arch"] == "llama":
        cfg["n_kv_head"] = kv
    if isinstance(j.get(ff), int) and not isinstance(j.get(ff), bool):
        cfg["n_inner"] = j[ff]


def _mask_token_id(tp, token):
    from . import Tokenizer
    if not tp:
        raise _usage("masked-LM training needs the dataset's tokenizer (none recorded)")
    with Tokenizer(os.fsdecode(tp)) as tok:
        i = tok.token_to_id(token)
    if i is None:
        raise _usage(f"the tokenizer {os.fsdecode(tp)} has no token '{token}' (mask_token; train "
                     f"one with `qkv tokenizer train --special '{token}'`)")
    return i


def _train(hs, c, t, resuming, progress):
    out = c["out"]
    last = lib.qkv_train_latest_checkpoint(os.fsencode(out))
    if not resuming and last >= 0:
        raise _usage(f"{out} already holds a run (checkpoint of step {last}); use resume=True to "
                     f"continue it or choose another out")
    os.makedirs(out, exist_ok=True)
    train_ds = hs.new("qkv_dataset_close")
    val_ds = hs.new("qkv_dataset_close")
    _check(lib.qkv_dataset_open(os.fsencode(c["data"]), 0, C.byref(train_ds)))
    _check(lib.qkv_dataset_open(os.fsencode(c["data"]), 1, C.byref(val_ds)))
    if lib.qkv_dataset_is_parallel(train_ds):
        from . import Unsupported
        raise Unsupported(5, f"qkv.train: {c['data']} is a parallel dataset: encoder-decoders "
                             f"(arch marian) are trained with `qkv train`, not yet from Python")
    tp = lib.qkv_dataset_tokenizer(train_ds)
    if t is None:
        if c["init"]:
            t = hs.new("qkv_trainer_free")
            _check(lib.qkv_trainer_load_hf(os.fsencode(c["init"]), C.byref(t)))
        else:
            t = _new_model(hs, c, train_ds)
    sh = _lib.Gpt2Shape()
    lib.qkv_trainer_get_shape(t, C.byref(sh))
    if c["init"] and not resuming:
        _record_init_shape(c, t, sh)
    arch = lib.qkv_trainer_arch(t).decode()
    if arch == "marian":
        from . import Unsupported
        raise Unsupported(5, "qkv.train: marian models are trained with `qkv train`, not yet "
                             "from Python")
    mask_id = _mask_token_id(tp, c["mask_token"]) if arch == "bert" else -1
    if c["label_smoothing"] < 0:
        c["label_smoothing"] = 0.0
    if c["dropout"] >= 0:
        raise _usage("dropout is for marian")
    _check(lib.qkv_trainer_set_label_smoothing(t, c["label_smoothing"]))
    if c["src_seq"]:
        raise _usage("src_seq is for marian")
    if lib.qkv_dataset_vocab_size(train_ds) > sh.vocab_size:
        raise _usage(f"the dataset's vocabulary ({lib.qkv_dataset_vocab_size(train_ds)}) is "
                     f"larger than the model's ({sh.vocab_size})")
    if c["seq"] > sh.n_positions:
        raise _usage(f"seq {c['seq']} is longer than the model's n_positions {sh.n_positions}")
    if lib.qkv_dataset_tokens(train_ds) < c["seq"] + 1:
        raise _usage(f"the train split has {lib.qkv_dataset_tokens(train_ds)} tokens, fewer than "
                     f"seq + 1")
    decays = {"cosine": 1, "linear": 2, "constant": 0}
    if c["decay"] not in decays:
        raise _usage("decay must be cosine, linear or constant")
    if c["recompute"] not in ("none", "layers"):
        raise _usage("recompute must be none or layers")
    rt = _runtime(hs, c["threads"])
    _check(lib.qkv_trainer_reserve(t, c["batch"], c["seq"], 1 if c["recompute"] == "layers"
                                   else 0, None))
    js = _train_json(c)
    _write_atomic(os.path.join(out, "config.json"), (js + "\n").encode())
    o = _options()
    o.train, o.val = train_ds, val_ds
    for k in ("batch", "seq", "accum", "steps", "seed", "lr", "min_lr", "warmup", "weight_decay",
              "beta1", "beta2", "eps", "clip", "eval_every", "eval_batches", "save_every",
              "keep", "tensorboard", "tb_histograms", "exact_reduce", "zero", "src_seq"):
        setattr(o, k, c[k])
    o.decay = decays[c["decay"]]
    o.run_dir = os.fsencode(out)
    o.mask_token_id = mask_id
    o.length_grouped = c["group_by_length"]
    o.checkpoint_json = js.encode()
    metrics = _run(rt, t, o, progress)
    model = os.path.join(out, "model")
    _check(lib.qkv_trainer_export_hf(t, os.fsencode(model), _dataset_eot(c["data"])))
    if tp:
        src = os.fsdecode(tp)
        if os.path.isdir(src):
            src = os.path.join(src, "tokenizer.json")
        _copy_tokenizer_file(src, os.path.join(model, "tokenizer.json"))
    return TrainResult(out=out, model=model, steps=int(lib.qkv_trainer_steps(t)),
                       metrics=metrics)


def _copy_tokenizer_file(src, dst):
    """The dataset's tokenizer into the export, only if it loads as a tokenizer (as the CLI)."""
    import warnings
    from . import Error, Tokenizer
    try:
        Tokenizer(src).close()
        with open(src, "rb") as f:
            data = f.read()
        _write_atomic(dst, data)
    except (Error, OSError) as e:
        warnings.warn(f"qkv: the tokenizer {src} was not copied to {dst}: {e}")


# ---------------------------------------------------------------- qkv.finetune

# `qkv finetune`'s options: default, kind (s string, i whole, f real, b switch), range.
_FT = {
    "val": ("", "s", None), "val_split": (0.1, "f", (1e-6, 0.9)), "test": ("", "s", None),
    "labels": ("", "s", None), "problem": ("", "s", None), "format": ("", "s", None),
    "text_field": ("", "s", None), "pair_field": ("", "s", None),
    "label_field": ("", "s", None), "header": ("", "s", None), "label_sep": ("|", "s", None),
    "no_quotes": (False, "b", None), "group_by_length": (True, "b", None),
    "recompute": (False, "b", None), "lr": (2e-5, "f", (0, 10)),
    "weight_decay": (0.01, "f", (0, 10)), "warmup_ratio": (0.1, "f", (0, 1)),
    "clip": (1.0, "f", (0, 1e6)), "dropout": (-1.0, "f", (0, 0.99)),
    "epochs": (3, "i", (1, 100000)), "batch": (32, "i", (1, 1 << 16)),
    "max_length": (128, "i", (3, 1 << 16)), "eval_every": (0, "i", (1, 2**63 - 1)),
    "save_every": (0, "i", (1, 2**63 - 1)), "keep": (2, "i", (1, 1000)),
    "seed": (42, "i", (0, 2**63 - 1)), "lora_r": (0, "i", (1, 4096)),
    "lora_alpha": (0.0, "f", (1e-6, 1e6)), "lora_dropout": (0.1, "f", (0, 0.99)),
    "lora_targets": ("query,value", "s", None), "micro_batch": (0, "i", (1, 1 << 16)),
    "exact_reduce": (0, "i", (0, 1)), "zero": (0, "i", (0, 1)),
    "threads": (0, "i", (1, 1024)), "tensorboard": (True, "b", None),
    "tb_histograms": (False, "b", None),
}
# what may be given again on resume (the rest comes from the checkpoint)
_FT_RESUMABLE = ("threads", "tensorboard", "tb_histograms", "exact_reduce", "zero")


def _ft_set(c, k, v):
    default, kind, rng = _FT[k]
    if k == "dropout" and v == "off":
        v = 0.0
    if k == "labels" and not isinstance(v, str):
        v = ",".join(v)
    if kind == "s":
        if not isinstance(v, (str, os.PathLike)):
            raise _usage(f"{k} must be a string, not {v!r}")
        v = os.fspath(v)
        allowed = {"problem": ("single", "multi", "regression"),
                   "format": ("tsv", "csv", "jsonl", "dir"), "header": ("yes", "no")}
        if k in allowed and v not in allowed[k]:
            raise _usage(f"{k} is {', '.join(allowed[k][:-1])} or {allowed[k][-1]}")
        if k == "label_sep" and len(v) != 1:
            raise _usage("label_sep is one character")
        c[k] = v
        return
    if kind == "b":
        c[k] = bool(v)
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)) or \
            (kind == "i" and v != math.floor(v)) or not (rng[0] <= v <= rng[1]):
        what = "a whole number" if kind == "i" else "a number"
        lo, hi = (f"{x:g}" for x in rng) if kind == "f" else rng
        raise _usage(f"{k} must be {what} in [{lo}, {hi}], not {v!r}")
    c[k] = int(v) if kind == "i" else float(v)


def _ft_json(c):
    """cmd_finetune.c's cfg_json (compact, in its order)."""
    keys = [("model", "s"), ("train", "s"), ("val", "s"), ("test", "s"), ("out", "s"),
            ("labels", "s"), ("problem", "s"), ("format", "s"), ("text_field", "s"),
            ("pair_field", "s"), ("label_field", "s"), ("header", "s"), ("label_sep", "s"),
            ("no_quotes", "b"), ("group", "b"), ("recompute", "b"), ("val_split", "f"),
            ("lr", "f"), ("weight_decay", "f"), ("warmup_ratio", "f"), ("clip", "f"),
            ("dropout", "f"), ("epochs", "i"), ("batch", "i"), ("max_length", "i"),
            ("eval_every", "i"), ("save_every", "i"), ("keep", "i"), ("seed", "i"),
            ("lora_r", "i"), ("lora_alpha", "f"), ("lora_dropout", "f"), ("lora_targets", "s"),
            ("micro_batch", "i"), ("exact_reduce", "i"), ("zero", "i")]
    items = []
    for k, kind in keys:
        v = c["group_by_length" if k == "group" else k]
        if kind == "s":
            _utf8(v, k)
        items.append((k, bool(v) if kind == "b" else float(v) if kind == "f" else v))
    return _jdumps(items, indent=False)


def _ft_from_json(saved, out):
    c = {k: d[0] for k, d in _FT.items()}
    try:
        for k in ("model", "train", "val", "test", "labels", "problem", "format", "text_field",
                  "pair_field", "label_field", "header", "label_sep", "lora_targets"):
            if not isinstance(saved[k], str):
                raise KeyError(k)
            c[k] = saved[k]
        for k, dst in (("no_quotes", "no_quotes"), ("group", "group_by_length"),
                       ("recompute", "recompute")):
            if not isinstance(saved[k], bool):
                raise KeyError(k)
            c[dst] = saved[k]
        for k in ("val_split", "lr", "weight_decay", "warmup_ratio", "clip", "dropout",
                  "lora_alpha", "lora_dropout"):
            if isinstance(saved[k], bool) or not isinstance(saved[k], (int, float)):
                raise KeyError(k)
            c[k] = float(saved[k])
        ints = ["epochs", "batch", "max_length", "eval_every", "save_every", "keep", "seed",
                "lora_r"]
        if "micro_batch" in saved:
            ints += ["micro_batch", "exact_reduce", "zero"]
        for k in ints:
            if isinstance(saved[k], bool) or not isinstance(saved[k], int):
                raise KeyError(k)
            c[k] = saved[k]
    except KeyError:
        raise _usage(f"{out}: the checkpoint holds no qkv finetune options") from None
    return c


def _absolute(p):
    p = os.fspath(p)
    return p if p.startswith("/") else os.getcwd() + "/" + p


def _problem_of_config(model):
    try:
        with open(os.path.join(model, "config.json"), "rb") as f:
            p = json.load(f).get("problem_type")
    except (OSError, ValueError, AttributeError):
        p = None
    return {"multi_label_classification": 1, "regression": 2}.get(p, 0)


def _load_labeled(hs, c, path, problem):
    o = _lib.LabeledOptions()
    lib.qkv_labeled_default_options_sized(C.byref(o), C.sizeof(o))
    o.problem = problem
    o.format = {"": 0, "tsv": 1, "csv": 2, "jsonl": 3, "dir": 4}[c["format"]]
    o.header = {"": 0, "yes": 1, "no": -1}[c["header"]]
    for k in ("text_field", "pair_field", "label_field"):
        setattr(o, k, c[k].encode() if c[k] else None)
    o.label_separator = c["label_sep"].encode()
    o.no_quotes = int(c["no_quotes"])
    d = hs.new("qkv_labeled_free")
    _check(lib.qkv_labeled_load(os.fsencode(path), C.byref(o), C.byref(d)))
    return d


def _names(names):
    keep = [n.encode("utf-8") for n in names]
    return (C.c_char_p * max(len(keep), 1))(*keep), keep


def _map_labels(d, names):
    arr, keep = _names(names)
    _check(lib.qkv_labeled_map_labels(d, arr, len(names)))


def _trainer_labels(t):
    return [lib.qkv_trainer_label(t, k).decode("utf-8")
            for k in range(lib.qkv_trainer_num_labels(t))]


def finetune(model=None, train=None, out=None, *, resume=False, progress=None, **options):
    """Fine-tunes a BERT into a sequence classifier on labelled text, as `qkv finetune --model
    MODEL --train TRAIN --out OUT` does: options are the CLI's flags with underscores and its
    defaults (epochs=3, batch=32, lr=2e-5, max_length=128, seed=42, val=FILE or val_split=0.1,
    test=FILE, problem="single"|"multi"|"regression", labels=[...], dropout=0.1 or "off",
    group_by_length=True, lora_r=8, lora_alpha, lora_dropout, lora_targets, ...). resume=True
    continues OUT from its newest checkpoint (data and options from the checkpoint; threads and
    tensorboard may be given). progress, Ctrl-C and exceptions as qkv.train. Writes OUT/
    config.json, metrics.jsonl, TensorBoard events, checkpoints, best.safetensors, report.txt
    (and test_report.txt) and OUT/model, the best model as a Hugging Face directory with the
    tokenizer (and OUT/adapter with LoRA); not the CLI's SVG plots (`qkv report OUT` draws the
    run). Returns a TrainResult whose report is the validation report's text."""
    if out is None:
        raise _usage("finetune needs out (the run directory)")
    for k in options:
        if k not in _FT:
            raise TypeError(f"qkv.finetune() got an unexpected keyword argument '{k}'")
    out = os.fspath(out)
    with _Handles() as hs:
        if resume:
            if "micro_batch" in options:
                raise _usage("micro_batch cannot change on resume (the run's results depend on "
                             "it)")
            for k in options:
                if k not in _FT_RESUMABLE:
                    raise _usage(f"{k} cannot change on resume (the options are the run's)")
            t, saved = _resume(hs, out)
            c = _ft_from_json(saved, out)
            for k, v in options.items():
                _ft_set(c, k, v)
            c["out"] = out
            pt = lib.qkv_trainer_problem_type(t)
            names = _trainer_labels(t)
            dtrain = _load_labeled(hs, c, c["train"], pt)
            if pt != 2:
                _map_labels(dtrain, names)
        else:
            if model is None or train is None:
                raise _usage("finetune needs model (a BERT directory) and train (labelled data)")
            c = {k: d[0] for k, d in _FT.items()}
            for k, v in options.items():
                if v is not None:
                    _ft_set(c, k, v)
            c["model"], c["train"], c["out"] = _absolute(model), _absolute(train), out
            for k in ("val", "test"):
                if c[k]:
                    c[k] = _absolute(c[k])
            if not c["micro_batch"] or c["micro_batch"] > c["batch"]:
                c["micro_batch"] = c["batch"]
            if lib.qkv_train_latest_checkpoint(os.fsencode(out)) >= 0:
                raise _usage(f"{out} already holds a run (continue it with resume=True, or "
                             f"choose another out)")
            t, pt, names, dtrain = _ft_setup(hs, c)
        (val, dtrain), test = _eval_sets(hs, c, pt, names, dtrain)
        return _ft_run(hs, c, t, dtrain, val, test, progress)


def _ft_setup(hs, c):
    """Data, labels and the model of a new run (cmd_finetune.c's setup)."""
    pt = {"": None, "single": 0, "multi": 1, "regression": 2}[c["problem"]]
    if pt is None:
        pt = _problem_of_config(c["model"])
    dtrain = _load_labeled(hs, c, c["train"], pt)
    names = []
    if c["labels"]:
        names = c["labels"].split(",")
    elif pt != 2:
        probe = C.c_void_p()
        if lib.qkv_trainer_load_hf_classifier(os.fsencode(c["model"]), None,
                                              C.byref(probe)) == 0:
            try:
                n = _trainer_labels(probe)
                if len(n) <= 4096 and not any(x.startswith("LABEL_") for x in n):
                    arr, keep = _names(n)
                    if lib.qkv_labeled_map_labels(dtrain, arr, len(n)) == 0:
                        names = n
            finally:
                lib.qkv_trainer_free(probe)
        lib.qkv_clear_error()
    if not names and pt != 2:
        n = lib.qkv_labeled_num_labels(dtrain)
        names = [] if n > 4096 else [lib.qkv_labeled_label_name(dtrain, k).decode("utf-8")
                                     for k in range(n)]
    if pt == 2:
        names = ["LABEL_0"]
    elif not names:
        raise _usage("the training data has no labels")
    else:
        _map_labels(dtrain, names)
    arr, keep = _names(names)
    sp = _lib.ClassifierSpec()
    lib.qkv_classifier_spec_init_sized(C.byref(sp), C.sizeof(sp))
    sp.num_labels, sp.labels, sp.problem_type, sp.seed = len(names), arr, pt, c["seed"]
    t = hs.new("qkv_trainer_free")
    _check(lib.qkv_trainer_load_hf_classifier(os.fsencode(c["model"]), C.byref(sp), C.byref(t)))
    if c["dropout"] >= 0:
        d = c["dropout"]
        _check(lib.qkv_trainer_set_dropout(t, d, d, d))
    if c["lora_r"] > 0:
        targets = c["lora_targets"].split(",")[:64]
        tarr, tkeep = _names(targets)
        lc = _lib.LoraConfig()
        lib.qkv_lora_config_init_sized(C.byref(lc), C.sizeof(lc))
        lc.r = c["lora_r"]
        lc.alpha = c["lora_alpha"] if c["lora_alpha"] > 0 else 2.0 * c["lora_r"]
        lc.dropout = c["lora_dropout"]
        lc.targets, lc.n_targets = tarr, len(targets)
        lc.seed = c["seed"]
        lc.base_model = c["model"].encode()
        _check(lib.qkv_trainer_add_lora(t, C.byref(lc)))
    return t, pt, names, dtrain


def _eval_sets(hs, c, pt, names, dtrain):
    """((val, train), test): --val, else --val-split of the training data; --test."""
    if c["val"]:
        val = _load_labeled(hs, c, c["val"], pt)
    else:
        tr, va = hs.new("qkv_labeled_free"), hs.new("qkv_labeled_free")
        _check(lib.qkv_labeled_split(dtrain, c["val_split"], c["seed"], C.byref(tr),
                                     C.byref(va)))
        dtrain, val = tr, va
    test = _load_labeled(hs, c, c["test"], pt) if c["test"] else None
    for d in (val, test):
        if d is not None and pt != 2:
            _map_labels(d, names)
    return (val, dtrain), test


def _ft_run(hs, c, t, train, val, test, progress):
    from . import Tokenizer
    out = c["out"]
    rt = _runtime(hs, c["threads"])
    sh = _lib.Gpt2Shape()
    lib.qkv_trainer_get_shape(t, C.byref(sh))
    if c["max_length"] > sh.n_positions:
        c["max_length"] = int(sh.n_positions)
    sets = {}
    with Tokenizer(c["model"]) as tok:
        for name, d in (("train", train), ("val", val), ("test", test)):
            if d is not None:
                cd = hs.new("qkv_cls_data_free")
                _check(lib.qkv_cls_data_build(rt, d, tok._handle(), c["max_length"],
                                              C.byref(cd)))
                sets[name] = cd
    epoch_steps = lib.qkv_train_epoch_steps(lib.qkv_cls_data_count(sets["train"]), c["batch"], 1)
    total = epoch_steps * c["epochs"]
    o = _options()
    o.cls_train, o.cls_val = sets["train"], sets["val"]
    o.length_grouped = int(c["group_by_length"])
    o.batch, o.seq, o.accum, o.steps = c["batch"], c["max_length"], 1, total
    o.seed, o.lr, o.min_lr = c["seed"], c["lr"], 0
    o.warmup = math.ceil(c["warmup_ratio"] * total)
    o.decay = 3  # QKV_LR_LINEAR_HF
    o.weight_decay, o.beta1, o.beta2, o.eps = c["weight_decay"], 0.9, 0.999, 1e-8
    o.clip = c["clip"]
    o.eval_every = c["eval_every"] or epoch_steps
    o.save_every = c["save_every"] or epoch_steps
    o.run_dir, o.keep, o.keep_best = os.fsencode(out), c["keep"], 1
    o.tensorboard, o.tb_histograms = int(c["tensorboard"]), int(c["tb_histograms"])
    o.micro_batch, o.exact_reduce, o.zero = c["micro_batch"], c["exact_reduce"], c["zero"]
    js = _ft_json(c)
    o.checkpoint_json = js.encode()
    os.makedirs(out, exist_ok=True)
    _write_atomic(os.path.join(out, "config.json"), js.encode())
    if c["recompute"]:
        _check(lib.qkv_trainer_reserve(t, c["batch"], c["max_length"], 1, None))
    metrics = _run(rt, t, o, progress)
    best = C.c_void_p()
    if lib.qkv_trainer_restore(os.fsencode(os.path.join(out, "best.safetensors")),
                               C.byref(best), None) == 0:
        t = hs.add("qkv_trainer_free", best)  # the run's trainer is freed with the others
    lib.qkv_clear_error()
    res = TrainResult(out=out, steps=int(lib.qkv_trainer_steps(t)), metrics=metrics)
    res.report = _report(rt, t, sets["val"], val, c, "")
    if test is not None:
        res.test_report = _report(rt, t, sets["test"], test, c, "test_")
    model = os.path.join(out, "model")
    _check(lib.qkv_trainer_export_hf(t, os.fsencode(model), -1))
    for f in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        src = os.path.join(c["model"], f)
        if os.path.isfile(src) and not os.path.islink(src):
            with open(src, "rb") as fh:
                _write_atomic(os.path.join(model, f), fh.read())
    res.model = model
    if lib.qkv_trainer_has_lora(t):
        res.adapter = os.path.join(out, "adapter")
        _check(lib.qkv_trainer_save_lora(t, os.fsencode(res.adapter)))
    return res


def _report(rt, t, cd, src, c, prefix):
    """The best model on a labelled set: classification_report's text (written to
    OUT/<prefix>report.txt), or {"mse": ...} for regression (cmd_finetune.c's report)."""
    n, NL = int(lib.qkv_cls_data_count(cd)), int(lib.qkv_trainer_num_labels(t))
    lg = np.zeros((max(n, 1), NL), np.float32)
    _check(lib.qkv_trainer_predict(rt, t, cd, c["batch"], lg.ctypes.data_as(_lib.c_float_p)))
    lg = lg[:n]
    pt = lib.qkv_trainer_problem_type(t)
    m = C.c_void_p()
    if pt == 2:
        se = 0.0
        for i in range(n):  # summed in order, as the CLI
            e = float(lg[i, 0]) - float(lib.qkv_labeled_value(src, i))
            se += e * e
        return {"mse": se / n, "n": n}
    if pt == 0:
        yt = np.array([lib.qkv_labeled_label(src, i) for i in range(n)], np.int32)
        yp = np.argmax(lg, axis=1).astype(np.int32)  # the first of ties, as the CLI
        _check(lib.qkv_cls_metrics_compute(yt.ctypes.data_as(_lib.c_int32_p),
                                           yp.ctypes.data_as(_lib.c_int32_p), n, NL, C.byref(m)))
    else:
        vec = np.zeros(NL, np.float32)
        mt = np.zeros((n, NL), np.uint8)
        for i in range(n):
            _check(lib.qkv_labeled_label_vector(src, i, vec.ctypes.data_as(_lib.c_float_p)))
            mt[i] = vec > 0.5
        mp = (lg > 0).astype(np.uint8)
        u8 = C.POINTER(C.c_uint8)
        _check(lib.qkv_cls_metrics_compute_multilabel(mt.ctypes.data_as(u8),
                                                      mp.ctypes.data_as(u8), n, NL, C.byref(m)))
    try:
        arr, keep = _names(_trainer_labels(t))
        text = C.c_void_p()
        _check(lib.qkv_cls_report(m, arr, 4, C.byref(text)))
        report = C.string_at(text)
        lib.qkv_free(text)
    finally:
        lib.qkv_cls_metrics_free(m)
    _write_atomic(os.path.join(c["out"], prefix + "report.txt"), report)
    return report.decode("utf-8")
