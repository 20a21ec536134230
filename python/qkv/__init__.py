"""qkv: Python bindings of libqkv (include/qkv.h) through ctypes; docs/PYTHON.md.

    import qkv
    m = qkv.Model("models/all-MiniLM-L6-v2")
    v = m.embed(["A man is eating food.", "It is raining."])   # float32 [2, 384]

Tokenizer (encode / ids / decode), Model (embed, tokenize, classify), LM (generate, an
iterator of text pieces or token ids), Translator (translate lines), and training as the
command line does it: prepare_data / prepare_parallel, train and finetune. Every failure of the
library raises a subclass of qkv.Error carrying qkv's status and message. Calls release the
GIL while the library works.
"""

import codecs
import ctypes as C
import os
import queue
import threading
from collections import namedtuple

import numpy as np

from . import _lib
from ._lib import lib

__all__ = [
    "Error", "InvalidArgument", "OutOfMemory", "IOFailure", "FormatError", "Unsupported",
    "NotFound", "Overflow", "InternalError", "Interrupted", "NotFinite", "WriteError",
    "PeerError", "Tokenizer", "Encoding", "Model", "Classification", "LM", "Translator",
    "version", "build_info", "prepare_data", "prepare_parallel", "train", "finetune",
    "TrainResult",
]

# ---------------------------------------------------------------- errors


class Error(Exception):
    """A failure of libqkv: .status is the qkv_status number, .status_name qkv_strerror of it,
    .message the library's detailed message (qkv_last_error)."""

    def __init__(self, status, message):
        self.status = int(status)
        self.status_name = lib.qkv_strerror(self.status).decode()
        self.message = message
        # as the CLI says it: "invalid argument: what went wrong"
        super().__init__(f"{self.status_name}: {message}" if message else self.status_name)


class InvalidArgument(Error, ValueError):
    """QKV_ERR_INVALID_ARG"""


class OutOfMemory(Error, MemoryError):
    """QKV_ERR_NOMEM"""


class IOFailure(Error):
    """QKV_ERR_IO: a file could not be opened, read or mapped"""


class FormatError(Error):
    """QKV_ERR_FORMAT: a file's contents are malformed"""


class Unsupported(Error):
    """QKV_ERR_UNSUPPORTED"""


class NotFound(Error):
    """QKV_ERR_NOT_FOUND"""


class Overflow(Error, OverflowError):
    """QKV_ERR_OVERFLOW"""


class InternalError(Error):
    """QKV_ERR_INTERNAL: a bug in qkv"""


class Interrupted(Error):
    """QKV_ERR_INTERRUPTED"""


class NotFinite(Error):
    """QKV_ERR_NOT_FINITE"""


class WriteError(Error):
    """QKV_ERR_WRITE"""


class PeerError(Error):
    """QKV_ERR_PEER"""


_ERRORS = {1: InvalidArgument, 2: OutOfMemory, 3: IOFailure, 4: FormatError, 5: Unsupported,
           6: NotFound, 7: Overflow, 8: InternalError, 9: Interrupted, 10: NotFinite,
           11: WriteError, 12: PeerError}


def _check(status):
    if status != 0:
        msg = lib.qkv_last_error().decode("utf-8", "replace")
        raise _ERRORS.get(status, Error)(status, msg)


def version():
    """The version of the loaded libqkv ("0.2.0")."""
    return lib.qkv_version().decode()


def build_info():
    """One line describing the library's build (type, compiler, ISAs)."""
    return lib.qkv_build_info().decode()


# ---------------------------------------------------------------- helpers


def _bytes(text, what="text"):
    if isinstance(text, bytes):
        return text
    if isinstance(text, str):
        return text.encode("utf-8", "surrogateescape")
    raise TypeError(f"qkv: {what} must be str or bytes, not {type(text).__name__}")


def _path(p):
    return os.fsencode(p)


def _open(load, path):
    """The handle a qkv_*_load(path, &out) gives, or its error raised."""
    h = C.c_void_p()
    _check(load(_path(path), C.byref(h)))
    return h


_DTYPES = {"f32": 0, "f16": 1, "bf16": 2, "int8": 4}  # qkv_dtype: QKV_DTYPE_F32, _F16, _BF16, _I8


def _open_as(load_opts, path, dtype):
    """The handle a qkv_*_load_opts(path, &options, &out) gives with weights in dtype."""
    if dtype not in _DTYPES:
        raise ValueError(f"qkv: dtype must be 'f32', 'bf16', 'f16' or 'int8', not {dtype!r}")
    o = _lib.ModelOptions(C.sizeof(_lib.ModelOptions), _DTYPES[dtype])
    return _open(lambda p, h: load_opts(p, C.byref(o), h), path)


def _dtype_name(d):
    return next(k for k, v in _DTYPES.items() if v == int(d))


class _Texts:
    """n texts as the C API takes them: char *const texts[n] and size_t lens[n] (any bytes)."""

    def __init__(self, texts, what="texts"):
        if isinstance(texts, (str, bytes)):
            raise TypeError(f"qkv: {what} must be a list of str, not one string")
        self.keep = [_bytes(t, what) for t in texts]
        n = len(self.keep)
        self.n = n
        self.ptrs = (C.c_char_p * max(n, 1))(*self.keep)
        self.lens = (C.c_size_t * max(n, 1))(*[len(b) for b in self.keep])


class _Runtime:
    """A thread pool of n threads, or the library's default one (None)."""

    def __init__(self, threads):
        self.handle = None
        if threads is not None:
            h = C.c_void_p()
            _check(lib.qkv_runtime_create(int(threads), C.byref(h)))
            self.handle = h

    def free(self):
        if self.handle:
            lib.qkv_runtime_free(self.handle)
            self.handle = None


def _f32(a):
    return a.ctypes.data_as(_lib.c_float_p)


def _i32(a):
    return a.ctypes.data_as(_lib.c_int32_p)


def _i64(a):
    return a.ctypes.data_as(_lib.c_int64_p)


def _packed(seqs, what="ids"):
    """Sequences of ids -> (ids int32 [Σ lens], lens int64 [n])."""
    arrays = [np.ascontiguousarray(np.asarray(s, dtype=np.int64).reshape(-1)) for s in seqs]
    for a in arrays:
        if a.size and (a.min() < -2**31 or a.max() >= 2**31):
            raise InvalidArgument(1, f"qkv: {what}: a token id does not fit int32")
    lens = np.array([a.size for a in arrays], dtype=np.int64)
    ids = np.concatenate(arrays).astype(np.int32) if arrays else np.zeros(0, np.int32)
    if ids.size == 0:
        ids = np.zeros(1, np.int32)  # a valid pointer; lens say 0
    return np.ascontiguousarray(ids), lens


class _Handle:
    _free = None

    def close(self):
        """Releases the library's object now (also done when the object is collected)."""
        h = getattr(self, "_h", None)
        if h:
            self._h = None
            getattr(lib, self._free)(h)
        rt = getattr(self, "_rt", None)
        if rt is not None:
            rt.free()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _handle(self):
        if not self._h:
            raise ValueError(f"qkv: this {type(self).__name__} is closed")
        return self._h


# ---------------------------------------------------------------- tokenizer

_TRUNCATION = {"longest_first": 0, "only_first": 1, "only_second": 2}


class Encoding:
    """One encode: numpy arrays ids, type_ids, attention_mask, special_tokens_mask,
    sequence_ids (int32 [n]), offsets and char_offsets (int64 [n, 2]); tokens (list of str)."""

    def __init__(self, enc, tok):
        n = enc.n

        def arr(p, shape, dtype):
            if n == 0:
                return np.zeros(shape, dtype)
            return np.ctypeslib.as_array(p, shape=shape).astype(dtype, copy=True)

        self.ids = arr(enc.ids, (n,), np.int32)
        self.type_ids = arr(enc.type_ids, (n,), np.int32)
        self.attention_mask = arr(enc.attention_mask, (n,), np.int32)
        self.special_tokens_mask = arr(enc.special_tokens_mask, (n,), np.int32)
        self.sequence_ids = arr(enc.sequence_ids, (n,), np.int32)
        self.offsets = arr(enc.offsets, (n, 2), np.int64)
        self.char_offsets = arr(enc.char_offsets, (n, 2), np.int64)
        self.tokens = [tok.id_to_token(int(i)) for i in self.ids]

    def __len__(self):
        return len(self.ids)

    def __repr__(self):
        return f"Encoding(ids={self.ids.tolist()}, tokens={self.tokens})"


class Tokenizer(_Handle):
    """A Hugging Face tokenizer (tokenizer.json, vocab.txt, vocab.json + merges.txt, a
    SentencePiece model, or a directory holding one), as qkv_tokenizer_load reads it."""

    _free = "qkv_tokenizer_free"

    def __init__(self, path):
        self._h = _open(lib.qkv_tokenizer_load, path)
        self._owner = None

    @classmethod
    def _borrowed(cls, handle, owner):
        t = cls.__new__(cls)
        t._h = None  # not ours to free
        t._b = C.c_void_p(handle)
        t._owner = owner  # keeps the model (which owns the tokenizer) alive
        return t

    def _handle(self):
        if self._owner is not None:
            return self._owner._handle() and self._b
        return super()._handle()

    @property
    def vocab_size(self):
        return int(lib.qkv_tokenizer_vocab_size(self._handle()))

    def id_to_token(self, i):
        s = lib.qkv_tokenizer_id_to_token(self._handle(), int(i))
        return None if s is None else s.decode("utf-8", "replace")

    def token_to_id(self, token):
        """The id of token, or None."""
        b = _bytes(token, "token")
        i = lib.qkv_tokenizer_token_to_id(self._handle(), b, len(b))
        return None if i < 0 else int(i)

    def special_id(self, which):
        """The id of "unk", "cls", "sep", "pad" or "mask" (BOS is cls, EOS sep), or None."""
        k = ["unk", "cls", "sep", "pad", "mask"].index(which)
        i = lib.qkv_tokenizer_special_id(self._handle(), k)
        return None if i < 0 else int(i)

    def _options(self, add_special_tokens, max_length, truncation, pad_to):
        o = _lib.EncodeOptions()
        lib.qkv_tokenizer_default_options_sized(self._handle(), C.byref(o), C.sizeof(o))
        o.add_special_tokens = 1 if add_special_tokens else 0
        if max_length is not None:  # None: the tokenizer file's; 0: off
            o.max_length = int(max_length)
        if pad_to is not None:
            o.pad_to = int(pad_to)
            if pad_to == 0:
                o.pad_to_multiple_of = 0
        try:
            o.truncation = _TRUNCATION[truncation]
        except KeyError:
            raise ValueError(f"qkv: truncation is one of {sorted(_TRUNCATION)}, not {truncation!r}")
        return o

    def encode(self, text, pair=None, *, add_special_tokens=True, max_length=None,
               truncation="longest_first", pad_to=None):
        """Encodes text (and pair): an Encoding. Truncation and padding are the tokenizer
        file's unless max_length / pad_to are given (0 turns them off), as `qkv tokenize`."""
        o = self._options(add_special_tokens, max_length, truncation, pad_to)
        t = _bytes(text)
        p = None if pair is None else _bytes(pair, "pair")
        out = C.POINTER(_lib.Encoding)()
        _check(lib.qkv_tokenizer_encode(self._handle(), t, len(t), p, len(p) if p else 0,
                                        C.byref(o), C.byref(out)))
        try:
            return Encoding(out.contents, self)
        finally:
            lib.qkv_encoding_free(out)

    def ids(self, text, pair=None, **options):
        """The ids of encode(text, pair, **options): int32 numpy array."""
        return self.encode(text, pair, **options).ids

    def decode_bytes(self, ids, skip_special_tokens=True):
        """The bytes the decoder writes for ids (byte-level BPE gives back the exact bytes)."""
        a = np.ascontiguousarray(np.asarray(ids, dtype=np.int64).reshape(-1))
        v = self.vocab_size
        bad = a[(a < 0) | (a >= v)]
        if bad.size:  # refused, as `qkv tokenize --decode` does (the library would skip it)
            raise InvalidArgument(1, f"qkv: decode: {int(bad[0])} is not an id of the "
                                     f"vocabulary [0, {v})")
        a = a.astype(np.int32)
        if a.size == 0:
            a = np.zeros(1, np.int32)
            n = 0
        else:
            n = a.size
        out = C.c_void_p()
        ln = C.c_size_t()
        _check(lib.qkv_tokenizer_decode(self._handle(), _i32(a), n,
                                        1 if skip_special_tokens else 0, C.byref(out),
                                        C.byref(ln)))
        try:
            return C.string_at(out, ln.value)
        finally:
            lib.qkv_free(out)

    def decode(self, ids, skip_special_tokens=True):
        """The text of ids (invalid UTF-8 from byte-level pieces reads as U+FFFD)."""
        return self.decode_bytes(ids, skip_special_tokens).decode("utf-8", "replace")


# ---------------------------------------------------------------- models

Classification = namedtuple("Classification", ["labels", "scores", "logits"])
Classification.__doc__ = """Model.classify's result for n inputs: labels[i] the best label of
input i (ties: the first in label order), scores [n, NL] float32 as the text-classification
pipeline gives them (softmax, sigmoid or the raw value), logits [n, NL] float32; the columns
are Model.labels."""

_PROBLEMS = {0: "single_label_classification", 1: "multi_label_classification", 2: "regression"}


class Model(_Handle):
    """A sentence-transformers / BERT-family model directory (qkv_model_load): sentence
    embeddings, and classification when it has a sequence-classification head."""

    _free = "qkv_model_free"

    def __init__(self, path, threads=None, dtype="f32"):
        """threads: the size of this model's own thread pool (None: the library's default,
        QKV_NUM_THREADS or every CPU). dtype: the weights of the encoder's linear layers,
        "f32" (exact, the default), "bf16" or "f16" (half the bytes) or "int8" (a quarter);
        embedding tables and norms stay f32."""
        self._h = None
        self._rt = _Runtime(threads)
        self._h = _open_as(lib.qkv_model_load_opts, path, dtype)

    @property
    def dtype(self):
        """The dtype the linear layers run in: "f32", "bf16", "f16" or "int8"."""
        return _dtype_name(lib.qkv_model_dtype(self._handle()))

    @property
    def dim(self):
        return int(lib.qkv_model_dim(self._handle()))

    @property
    def max_tokens(self):
        return int(lib.qkv_model_max_tokens(self._handle()))

    @property
    def tokenizer(self):
        """The directory's tokenizer (owned by the model), or None."""
        t = lib.qkv_model_tokenizer(self._handle())
        return None if not t else Tokenizer._borrowed(t, self)

    def _out(self, n, cols, out):
        if out is None:
            return np.empty((n, cols), dtype=np.float32)
        if (not isinstance(out, np.ndarray) or out.dtype != np.float32
                or out.shape != (n, cols) or not out.flags.c_contiguous
                or not out.flags.writeable):
            raise ValueError(f"qkv: out must be a writable C-contiguous float32 array of shape "
                             f"({n}, {cols})")
        return out

    def embed(self, texts, out=None):
        """Sentence embeddings of a list of texts: float32 [n, dim], written by the library
        straight into the returned array (or into out, a float32 [n, dim] C-contiguous array).
        Texts are tokenized as sentence-transformers does and truncated to max_tokens."""
        t = _Texts(texts)
        out = self._out(t.n, self.dim, out)
        if t.n:
            _check(lib.qkv_embed(self._rt.handle, self._handle(), t.ptrs, t.lens, t.n,
                                 _f32(out)))
        return out

    def tokenize(self, texts):
        """The ids embed gives the model for each text: a list of int32 arrays."""
        t = _Texts(texts)
        if not t.n:
            return []
        ids = _lib.c_int32_p()
        lens = _lib.c_int64_p()
        _check(lib.qkv_model_tokenize(self._rt.handle, self._handle(), t.ptrs, t.lens, t.n,
                                      C.byref(ids), C.byref(lens)))
        try:
            ln = np.ctypeslib.as_array(lens, shape=(t.n,)).copy()
            flat = np.ctypeslib.as_array(ids, shape=(int(ln.sum()),)).copy()
        finally:
            lib.qkv_free(C.cast(ids, C.c_void_p))
            lib.qkv_free(C.cast(lens, C.c_void_p))
        return np.split(flat, np.cumsum(ln)[:-1])

    def embed_tokens(self, seqs, out=None):
        """Embeddings of already-tokenized sequences (each 1..max_tokens ids)."""
        ids, lens = _packed(seqs)
        out = self._out(len(lens), self.dim, out)
        if len(lens):
            _check(lib.qkv_embed_tokens(self._rt.handle, self._handle(), _i32(ids), _i64(lens),
                                        len(lens), _f32(out)))
        return out

    # classification

    @property
    def num_labels(self):
        """NL, the classification head's number of labels; 0 without a head."""
        return int(lib.qkv_model_num_labels(self._handle()))

    @property
    def labels(self):
        h = self._handle()
        return [lib.qkv_model_label(h, i).decode("utf-8", "replace")
                for i in range(self.num_labels)]

    @property
    def problem_type(self):
        return _PROBLEMS.get(lib.qkv_model_problem_type(self._handle()), "unknown")

    def logits(self, texts, pairs=None):
        """The head's logits of texts (and text pairs: a list as long, None entries for no
        pair): float32 [n, NL]. Unsupported without a head."""
        t = _Texts(texts)
        nl = self.num_labels
        out = np.empty((t.n, nl), dtype=np.float32)
        p_ptrs = p_lens = None
        if pairs is not None:
            if isinstance(pairs, (str, bytes)) or len(pairs) != t.n:
                raise ValueError("qkv: pairs must be a list as long as texts")
            keep = [None if p is None else _bytes(p, "pair") for p in pairs]
            p_ptrs = (C.c_char_p * max(t.n, 1))(*keep)
            p_lens = (C.c_size_t * max(t.n, 1))(*[0 if p is None else len(p) for p in keep])
        if t.n or nl == 0:  # without a head the library says so (UNSUPPORTED)
            buf = out if out.size else np.empty(1, np.float32)
            _check(lib.qkv_classify(self._rt.handle, self._handle(), t.ptrs, t.lens, p_ptrs,
                                    p_lens, t.n, _f32(buf)))
        return out

    def classify(self, texts, pairs=None):
        """Labels and scores of texts (and pairs): a Classification(labels, scores, logits)."""
        logits = self.logits(texts, pairs)
        scores = np.empty_like(logits)
        if logits.size:
            _check(lib.qkv_classify_scores(self._handle(), _f32(logits), logits.shape[0],
                                           _f32(scores)))
        names = self.labels
        best = [names[int(np.argmax(row))] for row in scores]  # argmax: first of ties
        return Classification(best, scores, logits)


# ---------------------------------------------------------------- generation


class LM(_Handle):
    """A causal language model directory (GPT-2, Llama-style; qkv_lm_load) and its tokenizer
    when the directory has one."""

    _free = "qkv_lm_free"

    def __init__(self, path, threads=None, dtype="f32"):
        """threads as for Model. dtype: the weights of the linear layers and the LM head,
        "f32" (exact, the default), "bf16" or "f16" (half the bytes each decode step reads), "int8"."""
        self._h = None
        self.tokenizer = None
        self._rt = _Runtime(threads)
        self._h = _open_as(lib.qkv_lm_load_opts, path, dtype)
        t = C.c_void_p()
        s = lib.qkv_tokenizer_load(_path(path), C.byref(t))
        if s == 0:
            tok = Tokenizer.__new__(Tokenizer)
            tok._h, tok._owner = t, None
            self.tokenizer = tok
        elif s != 6:  # NOT_FOUND: a directory without a tokenizer (ids only)
            _check(s)

    def close(self):
        if self.tokenizer is not None:
            self.tokenizer.close()
        super().close()

    @property
    def dtype(self):
        """The dtype the linear layers run in: "f32", "bf16", "f16" or "int8"."""
        return _dtype_name(lib.qkv_lm_dtype(self._handle()))

    @property
    def vocab_size(self):
        return int(lib.qkv_lm_vocab_size(self._handle()))

    @property
    def max_context(self):
        return int(lib.qkv_lm_max_context(self._handle()))

    @property
    def eos_tokens(self):
        buf = (C.c_int32 * 8)()
        n = lib.qkv_lm_eos_tokens(self._handle(), buf, 8)
        return [int(buf[i]) for i in range(min(n, 8))]

    def _prompt_ids(self, prompt):
        if isinstance(prompt, (str, bytes)):
            if self.tokenizer is None:
                raise Unsupported(5, "qkv: this model directory has no tokenizer; give the "
                                     "prompt as token ids")
            # as qkv generate: special tokens, no truncation or padding
            ids = self.tokenizer.ids(prompt, max_length=0, pad_to=0)
        else:
            ids = prompt
        ids, lens = _packed([ids], "prompt")
        if lens[0] == 0:
            raise InvalidArgument(1, "qkv: the prompt is empty")
        return ids, lens

    def _sampling(self, max_new_tokens, temperature, top_k, top_p, repetition_penalty, seed,
                  stop_tokens, ignore_eos, context, slide):
        stops = [int(t) for t in (stop_tokens or [])]
        if not ignore_eos:
            stops += self.eos_tokens
        stop_arr = (C.c_int32 * max(len(stops), 1))(*stops)
        o = _lib.Sampling()
        o.struct_size = C.sizeof(o)
        o.max_new_tokens = int(max_new_tokens)
        o.temperature = float(temperature)
        o.top_k = int(top_k)
        o.top_p = float(top_p)
        o.repetition_penalty = float(repetition_penalty)
        o.seed = int(seed)
        o.stop_tokens = C.cast(stop_arr, _lib.c_int32_p) if stops else None
        o.n_stop_tokens = len(stops)
        o.context = int(context)
        o.overflow = 1 if slide else 0
        return o, stop_arr

    def generate_ids(self, prompt, max_new_tokens=64, *, temperature=0.0, top_k=0, top_p=1.0,
                     repetition_penalty=1.0, seed=0, stop_tokens=None, ignore_eos=False,
                     context=0, slide=False):
        """All new token ids at once (int32 array); options as generate."""
        ids, lens = self._prompt_ids(prompt)
        o, keep = self._sampling(max_new_tokens, temperature, top_k, top_p, repetition_penalty,
                                 seed, stop_tokens, ignore_eos, context, slide)
        out = np.zeros(max(int(max_new_tokens), 1), dtype=np.int32)
        n = np.zeros(1, dtype=np.int64)
        _check(lib.qkv_lm_generate_tokens(self._rt.handle, self._handle(), _i32(ids), _i64(lens),
                                          1, C.byref(o), _lib.TOKEN_FN(), None, _i32(out),
                                          _i64(n), None))
        return out[: int(n[0])].copy()

    def generate(self, prompt, max_new_tokens=64, *, temperature=0.0, top_k=0, top_p=1.0,
                 repetition_penalty=1.0, seed=0, stop=None, stop_tokens=None, ignore_eos=False,
                 context=0, slide=False, tokens=False):
        """Continues prompt (a str, with the directory's tokenizer, or a list of token ids)
        and yields the new text piece by piece as it is produced (tokens=True: the new token
        ids). Options as `qkv generate`: greedy when temperature is 0; seed makes a sample
        reproducible; generation stops at the model's end-of-sequence ids unless ignore_eos,
        at any of stop_tokens (emitted), or once a stop string appears (the text ends after
        it). Closing the iterator early stops the generation."""
        if not tokens and self.tokenizer is None:
            raise Unsupported(5, "qkv: this model directory has no tokenizer: use "
                                 "tokens=True for ids")
        stops = [_bytes(s, "stop") for s in (stop or [])]
        ids, lens = self._prompt_ids(prompt)
        o, keep = self._sampling(max_new_tokens, temperature, top_k, top_p, repetition_penalty,
                                 seed, stop_tokens, ignore_eos, context, slide)
        q = queue.Queue()
        cancel = threading.Event()
        done = object()
        new_ids = []
        state = {"printed": 0}
        utf8 = codecs.getincrementaldecoder("utf-8")("replace")

        def on_token(_user, _seq, token):
            if cancel.is_set():
                return 1
            new_ids.append(int(token))
            if tokens:
                q.put(int(token))
                return 0
            try:  # decode everything so far and send what is new (as qkv generate does)
                text = self.tokenizer.decode_bytes(new_ids)
            except Error as e:
                q.put(e)
                return 1
            end, hit = len(text), False
            for s in stops:
                k = text.find(s)
                if k >= 0 and (not hit or k + len(s) < end):
                    end, hit = k + len(s), True
            if end > state["printed"]:
                piece = utf8.decode(text[state["printed"]:end])
                state["printed"] = end
                if piece:
                    q.put(piece)
            return 1 if hit else 0

        cb = _lib.TOKEN_FN(on_token)
        h = self._handle()

        def run():
            try:
                _check(lib.qkv_lm_generate_tokens(self._rt.handle, h, _i32(ids), _i64(lens), 1,
                                                  C.byref(o), cb, None, None, None, None))
                if not tokens:
                    tail = utf8.decode(b"", final=True)
                    if tail:
                        q.put(tail)
            except BaseException as e:  # handed to the consumer
                q.put(e)
            q.put(done)

        return self._iterate(run, q, cancel, done, (cb, keep, ids, lens, o))

    def _iterate(self, run, q, cancel, done, keep):
        th = threading.Thread(target=run, name="qkv-generate", daemon=True)
        th.start()
        try:
            while True:
                item = q.get()
                if item is done:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancel.set()
            th.join()  # the model and the buffers stay alive until the library returns
            del keep

    def complete(self, prompt, max_new_tokens=64, **options):
        """The whole new text of generate (a str)."""
        return "".join(self.generate(prompt, max_new_tokens, **options))


# ---------------------------------------------------------------- translation


class Translator(_Handle):
    """An encoder-decoder translation model directory (MarianMT, T5; qkv_seq2seq_load) with
    its tokenizer."""

    _free = "qkv_seq2seq_free"

    def __init__(self, path, threads=None, dtype="f32"):
        """threads as for Model. dtype: the weights of the linear layers and the output
        projection, "f32" (exact, the default), "bf16" or "f16" (half the bytes), "int8"."""
        self._h = None
        self._tok = None
        self._rt = _Runtime(threads)
        self._h = _open_as(lib.qkv_seq2seq_load_opts, path, dtype)
        self._tok = Tokenizer(path)

    @property
    def dtype(self):
        """The dtype the linear layers run in: "f32", "bf16", "f16" or "int8"."""
        return _dtype_name(lib.qkv_seq2seq_dtype(self._handle()))

    def close(self):
        if self._tok is not None:
            self._tok.close()
        super().close()

    @property
    def source_prefix(self):
        """What the directory suggests before every line (T5's task prefix; "" for Marian)."""
        return lib.qkv_seq2seq_source_prefix(self._handle()).decode("utf-8", "replace")

    def translate(self, lines, *, num_beams=None, max_length=None, max_new_tokens=None,
                  length_penalty=None, prefix=None, return_scores=False):
        """Translates a list of lines: a list of str (and the scores with return_scores).
        Options default to the directory's generation config, as `qkv translate`; prefix
        defaults to source_prefix ("" turns it off)."""
        if prefix is None:
            prefix = self.source_prefix
        pre = _bytes(prefix, "prefix")
        if isinstance(lines, (str, bytes)):
            raise TypeError("qkv: lines must be a list of str, not one string")
        srcs = [pre + _bytes(s, "line") for s in lines]
        for i, s in enumerate(srcs):
            if b"\0" in s:
                raise InvalidArgument(1, f"qkv: line {i + 1} holds a NUL byte")
        o = _lib.TranslateOptions()
        lib.qkv_seq2seq_default_options_sized(self._handle(), C.byref(o), C.sizeof(o))
        if num_beams is not None:
            o.num_beams = int(num_beams)
        if max_length is not None:
            o.max_length = int(max_length)
        if max_new_tokens is not None:
            o.max_new_tokens = int(max_new_tokens)
        if length_penalty is not None:
            o.length_penalty = float(length_penalty)
        n = len(srcs)
        if n == 0:
            return ([], np.zeros(0, np.float32)) if return_scores else []
        ptrs = (C.c_char_p * n)(*srcs)
        out = (C.c_void_p * n)()
        scores = np.zeros(n, dtype=np.float32)
        _check(lib.qkv_seq2seq_translate(self._rt.handle, self._handle(), self._tok._handle(),
                                         ptrs, n, C.byref(o), out, _f32(scores)))
        texts = []
        for p in out:
            texts.append(C.string_at(p).decode("utf-8", "replace"))
            lib.qkv_free(p)
        return (texts, scores) if return_scores else texts


# ---------------------------------------------------------------- training (python/qkv/_train.py)

from ._train import TrainResult, finetune, prepare_data, prepare_parallel, train  # noqa: E402
