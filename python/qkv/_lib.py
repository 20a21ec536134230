"""The ctypes declarations of include/qkv.h that the package uses, and the error mapping.

The library is the package's own libqkv.so (installed beside this file by `pip install .`), or
the file named by the environment variable QKV_LIBRARY (e.g. build/libqkv.so of a CMake build).
Structs mirror the header field by field; those that start with struct_size are passed with
struct_size = their ctypes size (see the rule at the top of qkv.h).
"""

import ctypes as C
import os

c_int32_p = C.POINTER(C.c_int32)
c_int64_p = C.POINTER(C.c_int64)
c_size_p = C.POINTER(C.c_size_t)
c_float_p = C.POINTER(C.c_float)
c_char_pp = C.POINTER(C.c_char_p)


class EncodeOptions(C.Structure):  # qkv_encode_options
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("add_special_tokens", C.c_int),
        ("max_length", C.c_int64),
        ("truncation", C.c_int),
        ("truncate_left", C.c_int),
        ("pad_to", C.c_int64),
        ("pad_to_multiple_of", C.c_int64),
        ("pad_left", C.c_int),
        ("pad_id", C.c_int32),
        ("pad_type_id", C.c_int32),
    ]


class Encoding(C.Structure):  # qkv_encoding
    _fields_ = [
        ("n", C.c_size_t),
        ("ids", c_int32_p),
        ("type_ids", c_int32_p),
        ("attention_mask", c_int32_p),
        ("special_tokens_mask", c_int32_p),
        ("sequence_ids", c_int32_p),
        ("offsets", c_int64_p),
        ("char_offsets", c_int64_p),
    ]


class Sampling(C.Structure):  # qkv_sampling
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("max_new_tokens", C.c_int64),
        ("temperature", C.c_float),
        ("top_k", C.c_int64),
        ("top_p", C.c_float),
        ("repetition_penalty", C.c_float),
        ("seed", C.c_uint64),
        ("seeds", C.POINTER(C.c_uint64)),
        ("stop_tokens", c_int32_p),
        ("n_stop_tokens", C.c_size_t),
        ("context", C.c_int64),
        ("overflow", C.c_int),
    ]


class GenerateStats(C.Structure):  # qkv_generate_stats
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("prefill_tokens", C.c_int64),
        ("decode_tokens", C.c_int64),
        ("prefill_seconds", C.c_double),
        ("decode_seconds", C.c_double),
    ]


class TranslateOptions(C.Structure):  # qkv_translate_options
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("num_beams", C.c_int64),
        ("max_length", C.c_int64),
        ("max_new_tokens", C.c_int64),
        ("length_penalty", C.c_float),
        ("early_stopping", C.c_int),
        ("no_repeat_ngram_size", C.c_int64),
        ("renormalize_logits", C.c_int),
    ]


class ModelOptions(C.Structure):  # qkv_model_options
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("dtype", C.c_int),  # qkv_dtype
    ]


TOKEN_FN = C.CFUNCTYPE(C.c_int, C.c_void_p, C.c_size_t, C.c_int32)  # qkv_token_fn

_vp = C.c_void_p
_st = C.c_int  # qkv_status
# name: (restype, argtypes)
_PROTOS = {
    "qkv_version": (C.c_char_p, []),
    "qkv_build_info": (C.c_char_p, []),
    "qkv_strerror": (C.c_char_p, [C.c_int]),
    "qkv_last_error": (C.c_char_p, []),
    "qkv_clear_error": (None, []),
    "qkv_free": (None, [_vp]),
    "qkv_runtime_create": (_st, [C.c_int, C.POINTER(_vp)]),
    "qkv_runtime_free": (None, [_vp]),
    "qkv_runtime_n_threads": (C.c_int, [_vp]),
    # tokenizer
    "qkv_tokenizer_load": (_st, [C.c_char_p, C.POINTER(_vp)]),
    "qkv_tokenizer_load_target": (_st, [C.c_char_p, C.POINTER(_vp)]),
    "qkv_tokenizer_free": (None, [_vp]),
    "qkv_tokenizer_default_options_sized": (None, [_vp, C.POINTER(EncodeOptions), C.c_size_t]),
    "qkv_tokenizer_encode": (_st, [_vp, C.c_char_p, C.c_size_t, C.c_char_p, C.c_size_t,
                                   C.POINTER(EncodeOptions), C.POINTER(C.POINTER(Encoding))]),
    "qkv_encoding_free": (None, [C.POINTER(Encoding)]),
    "qkv_tokenizer_decode": (_st, [_vp, c_int32_p, C.c_size_t, C.c_int, C.POINTER(_vp),
                                   c_size_p]),
    "qkv_tokenizer_vocab_size": (C.c_size_t, [_vp]),
    "qkv_tokenizer_id_to_token": (C.c_char_p, [_vp, C.c_int32]),
    "qkv_tokenizer_token_to_id": (C.c_int32, [_vp, C.c_char_p, C.c_size_t]),
    "qkv_tokenizer_special_id": (C.c_int32, [_vp, C.c_int]),
    # sentence embeddings and classification
    "qkv_model_load": (_st, [C.c_char_p, C.POINTER(_vp)]),
    "qkv_model_load_opts": (_st, [C.c_char_p, C.POINTER(ModelOptions), C.POINTER(_vp)]),
    "qkv_model_dtype": (C.c_int, [_vp]),
    "qkv_model_free": (None, [_vp]),
    "qkv_model_dim": (C.c_int64, [_vp]),
    "qkv_model_max_tokens": (C.c_int64, [_vp]),
    "qkv_model_tokenizer": (_vp, [_vp]),
    "qkv_embed": (_st, [_vp, _vp, c_char_pp, c_size_p, C.c_size_t, c_float_p]),
    "qkv_embed_tokens": (_st, [_vp, _vp, c_int32_p, c_int64_p, C.c_size_t, c_float_p]),
    "qkv_model_tokenize": (_st, [_vp, _vp, c_char_pp, c_size_p, C.c_size_t,
                                 C.POINTER(c_int32_p), C.POINTER(c_int64_p)]),
    "qkv_model_num_labels": (C.c_int64, [_vp]),
    "qkv_model_label": (C.c_char_p, [_vp, C.c_int64]),
    "qkv_model_problem_type": (C.c_int, [_vp]),
    "qkv_classify": (_st, [_vp, _vp, c_char_pp, c_size_p, c_char_pp, c_size_p, C.c_size_t,
                           c_float_p]),
    "qkv_classify_scores": (_st, [_vp, c_float_p, C.c_size_t, c_float_p]),
    # generation
    "qkv_lm_load": (_st, [C.c_char_p, C.POINTER(_vp)]),
    "qkv_lm_load_opts": (_st, [C.c_char_p, C.POINTER(ModelOptions), C.POINTER(_vp)]),
    "qkv_lm_dtype": (C.c_int, [_vp]),
    "qkv_lm_free": (None, [_vp]),
    "qkv_lm_vocab_size": (C.c_int64, [_vp]),
    "qkv_lm_max_context": (C.c_int64, [_vp]),
    "qkv_lm_eos_tokens": (C.c_size_t, [_vp, c_int32_p, C.c_size_t]),
    "qkv_lm_generate_tokens": (_st, [_vp, _vp, c_int32_p, c_int64_p, C.c_size_t,
                                     C.POINTER(Sampling), TOKEN_FN, _vp, c_int32_p, c_int64_p,
                                     C.POINTER(GenerateStats)]),
    # translation
    "qkv_seq2seq_load": (_st, [C.c_char_p, C.POINTER(_vp)]),
    "qkv_seq2seq_load_opts": (_st, [C.c_char_p, C.POINTER(ModelOptions), C.POINTER(_vp)]),
    "qkv_seq2seq_dtype": (C.c_int, [_vp]),
    "qkv_seq2seq_free": (None, [_vp]),
    "qkv_seq2seq_source_prefix": (C.c_char_p, [_vp]),
    "qkv_seq2seq_default_options_sized": (None, [_vp, C.POINTER(TranslateOptions), C.c_size_t]),
    "qkv_seq2seq_translate": (_st, [_vp, _vp, _vp, c_char_pp, C.c_size_t,
                                    C.POINTER(TranslateOptions), C.POINTER(_vp), c_float_p]),
}


def _library_path():
    env = os.environ.get("QKV_LIBRARY")
    if env:
        return env
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "libqkv.so")
    if os.path.isfile(here):
        return here
    raise ImportError(
        "qkv: libqkv.so is not installed beside the package (install with `pip install .` "
        "from the qkv repository) and QKV_LIBRARY is not set")


def _load():
    lib = C.CDLL(_library_path())  # CDLL: every call releases the GIL
    for name, (res, args) in _PROTOS.items():
        f = getattr(lib, name)
        f.restype = res
        f.argtypes = args
    return lib


lib = _load()
