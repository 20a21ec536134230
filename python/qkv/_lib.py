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


# ---- training (qkv_data_*, qkv_labeled_*, qkv_cls_data_*, qkv_trainer_*, qkv_train_run)


class DataOptions(C.Structure):  # qkv_data_options
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("val_fraction", C.c_double),
        ("split_on", C.c_char_p),
        ("shard_tokens", C.c_int64),
        ("seed", C.c_uint64),
        ("tokenizer_path", C.c_char_p),
        ("target_tokenizer_path", C.c_char_p),
        ("val_source", C.c_char_p),
        ("val_target", C.c_char_p),
        ("skip_bad_pairs", C.c_int),
    ]


class DataStats(C.Structure):  # qkv_data_stats
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("documents", C.c_int64 * 2),
        ("tokens", C.c_int64 * 2),
        ("bytes_read", C.c_int64),
        ("skipped", C.c_int64),
    ]


class LabeledOptions(C.Structure):  # qkv_labeled_options
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("format", C.c_int),
        ("problem", C.c_int),
        ("header", C.c_int),
        ("text_field", C.c_char_p),
        ("pair_field", C.c_char_p),
        ("label_field", C.c_char_p),
        ("label_separator", C.c_char),
        ("no_quotes", C.c_int),
        ("max_record_bytes", C.c_size_t),
    ]


class Gpt2Shape(C.Structure):  # qkv_gpt2_shape
    _fields_ = [(n, C.c_int64) for n in ("vocab_size", "n_positions", "n_embd", "n_layer",
                                         "n_head")]


class ClassifierSpec(C.Structure):  # qkv_classifier_spec
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("num_labels", C.c_int64),
        ("labels", c_char_pp),
        ("problem_type", C.c_int),
        ("seed", C.c_uint64),
    ]


class LoraConfig(C.Structure):  # qkv_lora_config
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("r", C.c_int64),
        ("alpha", C.c_float),
        ("dropout", C.c_float),
        ("use_rslora", C.c_int),
        ("targets", c_char_pp),
        ("n_targets", C.c_size_t),
        ("modules_to_save", c_char_pp),
        ("n_modules_to_save", C.c_size_t),
        ("seed", C.c_uint64),
        ("base_model", C.c_char_p),
    ]


class ParamInfo(C.Structure):  # qkv_param_info
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("name", C.c_char_p),
        ("ndim", C.c_int),
        ("shape", C.c_int64 * 2),
        ("numel", C.c_int64),
        ("data", c_float_p),
        ("grad", c_float_p),
        ("decay", C.c_int),
        ("trainable", C.c_int),
    ]


class TrainOptions(C.Structure):  # qkv_train_options
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("train", C.c_void_p),
        ("val", C.c_void_p),
        ("batch", C.c_int64),
        ("seq", C.c_int64),
        ("accum", C.c_int64),
        ("steps", C.c_int64),
        ("seed", C.c_uint64),
        ("lr", C.c_double),
        ("min_lr", C.c_double),
        ("warmup", C.c_int64),
        ("decay", C.c_int),
        ("weight_decay", C.c_double),
        ("beta1", C.c_double),
        ("beta2", C.c_double),
        ("eps", C.c_double),
        ("clip", C.c_double),
        ("eval_every", C.c_int64),
        ("eval_batches", C.c_int64),
        ("run_dir", C.c_char_p),
        ("save_every", C.c_int64),
        ("keep", C.c_int64),
        ("checkpoint_json", C.c_char_p),
        ("mlm_probability", C.c_double),
        ("mask_token_id", C.c_int32),
        ("cls_train", C.c_void_p),
        ("cls_val", C.c_void_p),
        ("length_grouped", C.c_int),
        ("keep_best", C.c_int),
        ("tensorboard", C.c_int),
        ("tb_histograms", C.c_int),
        ("dist", C.c_void_p),
        ("exact_reduce", C.c_int),
        ("zero", C.c_int),
        ("src_seq", C.c_int64),
        ("micro_batch", C.c_int64),
    ]


class TrainRecord(C.Structure):  # qkv_train_record
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("kind", C.c_int),
        ("step", C.c_int64),
        ("total_steps", C.c_int64),
        ("loss", C.c_double),
        ("lr", C.c_double),
        ("grad_norm", C.c_double),
        ("tokens_per_s", C.c_double),
        ("step_s", C.c_double),
        ("elapsed_s", C.c_double),
        ("val_loss", C.c_double),
        ("val_ppl", C.c_double),
        ("replayed", C.c_int),
        ("json", C.c_char_p),
        ("epoch", C.c_double),
        ("val_accuracy", C.c_double),
        ("val_macro_f1", C.c_double),
        ("best", C.c_int),
    ]


RECORD_FN = C.CFUNCTYPE(None, C.POINTER(TrainRecord), C.c_void_p)
STOP_FN = C.CFUNCTYPE(C.c_int, C.c_void_p)
CHECKPOINT_FN = C.CFUNCTYPE(None, C.c_int64, C.c_char_p, C.c_void_p)


class TrainCallbacks(C.Structure):  # qkv_train_callbacks
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("progress", RECORD_FN),
        ("metrics", RECORD_FN),
        ("should_stop", STOP_FN),
        ("checkpoint", CHECKPOINT_FN),
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
    "qkv_lm_free": (None, [_vp]),
    "qkv_lm_vocab_size": (C.c_int64, [_vp]),
    "qkv_lm_max_context": (C.c_int64, [_vp]),
    "qkv_lm_eos_tokens": (C.c_size_t, [_vp, c_int32_p, C.c_size_t]),
    "qkv_lm_generate_tokens": (_st, [_vp, _vp, c_int32_p, c_int64_p, C.c_size_t,
                                     C.POINTER(Sampling), TOKEN_FN, _vp, c_int32_p, c_int64_p,
                                     C.POINTER(GenerateStats)]),
    # translation
    "qkv_seq2seq_load": (_st, [C.c_char_p, C.POINTER(_vp)]),
    "qkv_seq2seq_free": (None, [_vp]),
    "qkv_seq2seq_source_prefix": (C.c_char_p, [_vp]),
    "qkv_seq2seq_default_options_sized": (None, [_vp, C.POINTER(TranslateOptions), C.c_size_t]),
    "qkv_seq2seq_translate": (_st, [_vp, _vp, _vp, c_char_pp, C.c_size_t,
                                    C.POINTER(TranslateOptions), C.POINTER(_vp), c_float_p]),
    # datasets, labelled data, training
    "qkv_data_default_options_sized": (None, [C.POINTER(DataOptions), C.c_size_t]),
    "qkv_data_prepare": (_st, [_vp, c_char_pp, C.c_size_t, C.POINTER(DataOptions), C.c_char_p,
                               C.POINTER(DataStats), _vp, _vp]),
    "qkv_data_prepare_parallel": (_st, [_vp, _vp, C.c_char_p, C.c_char_p,
                                        C.POINTER(DataOptions), C.c_char_p,
                                        C.POINTER(DataStats), _vp, _vp]),
    "qkv_dataset_open": (_st, [C.c_char_p, C.c_int, C.POINTER(_vp)]),
    "qkv_dataset_close": (None, [_vp]),
    "qkv_dataset_tokens": (C.c_int64, [_vp]),
    "qkv_dataset_vocab_size": (C.c_int64, [_vp]),
    "qkv_dataset_tokenizer": (C.c_char_p, [_vp]),
    "qkv_dataset_is_parallel": (C.c_int, [_vp]),
    "qkv_labeled_default_options_sized": (None, [C.POINTER(LabeledOptions), C.c_size_t]),
    "qkv_labeled_load": (_st, [C.c_char_p, C.POINTER(LabeledOptions), C.POINTER(_vp)]),
    "qkv_labeled_free": (None, [_vp]),
    "qkv_labeled_count": (C.c_int64, [_vp]),
    "qkv_labeled_num_labels": (C.c_int64, [_vp]),
    "qkv_labeled_label_name": (C.c_char_p, [_vp, C.c_int64]),
    "qkv_labeled_label": (C.c_int32, [_vp, C.c_int64]),
    "qkv_labeled_label_vector": (_st, [_vp, C.c_int64, c_float_p]),
    "qkv_labeled_value": (C.c_float, [_vp, C.c_int64]),
    "qkv_labeled_map_labels": (_st, [_vp, c_char_pp, C.c_int64]),
    "qkv_labeled_split": (_st, [_vp, C.c_double, C.c_uint64, C.POINTER(_vp), C.POINTER(_vp)]),
    "qkv_cls_data_build": (_st, [_vp, _vp, _vp, C.c_int64, C.POINTER(_vp)]),
    "qkv_cls_data_free": (None, [_vp]),
    "qkv_cls_data_count": (C.c_int64, [_vp]),
    "qkv_trainer_new": (_st, [C.POINTER(Gpt2Shape), C.c_uint64, C.POINTER(_vp)]),
    "qkv_trainer_load_hf": (_st, [C.c_char_p, C.POINTER(_vp)]),
    "qkv_trainer_new_hf_config": (_st, [C.c_char_p, C.c_uint64, C.POINTER(_vp)]),
    "qkv_classifier_spec_init_sized": (None, [C.POINTER(ClassifierSpec), C.c_size_t]),
    "qkv_trainer_load_hf_classifier": (_st, [C.c_char_p, C.POINTER(ClassifierSpec),
                                             C.POINTER(_vp)]),
    "qkv_trainer_num_labels": (C.c_int64, [_vp]),
    "qkv_trainer_label": (C.c_char_p, [_vp, C.c_int64]),
    "qkv_trainer_problem_type": (C.c_int, [_vp]),
    "qkv_trainer_set_dropout": (_st, [_vp, C.c_float, C.c_float, C.c_float]),
    "qkv_trainer_fresh_params": (C.c_size_t, [_vp]),
    "qkv_trainer_set_label_smoothing": (_st, [_vp, C.c_float]),
    "qkv_trainer_arch": (C.c_char_p, [_vp]),
    "qkv_trainer_free": (None, [_vp]),
    "qkv_trainer_get_shape": (None, [_vp, C.POINTER(Gpt2Shape)]),
    "qkv_trainer_steps": (C.c_int64, [_vp]),
    "qkv_trainer_reserve": (_st, [_vp, C.c_int64, C.c_int64, C.c_int, c_size_p]),
    "qkv_trainer_param_count": (C.c_size_t, [_vp]),
    "qkv_trainer_param": (_st, [_vp, C.c_size_t, C.POINTER(ParamInfo)]),
    "qkv_trainer_numel": (C.c_int64, [_vp]),
    "qkv_trainer_restore": (_st, [C.c_char_p, C.POINTER(_vp), C.POINTER(_vp)]),
    "qkv_trainer_export_hf": (_st, [_vp, C.c_char_p, C.c_int32]),
    "qkv_lora_config_init_sized": (None, [C.POINTER(LoraConfig), C.c_size_t]),
    "qkv_trainer_add_lora": (_st, [_vp, C.POINTER(LoraConfig)]),
    "qkv_trainer_has_lora": (C.c_int, [_vp]),
    "qkv_trainer_save_lora": (_st, [_vp, C.c_char_p]),
    "qkv_trainer_predict": (_st, [_vp, _vp, _vp, C.c_int64, c_float_p]),
    "qkv_train_epoch_steps": (C.c_int64, [C.c_int64, C.c_int64, C.c_int64]),
    "qkv_train_options_init": (None, [C.POINTER(TrainOptions)]),
    "qkv_train_run": (_st, [_vp, _vp, C.POINTER(TrainOptions), C.POINTER(TrainCallbacks), _vp]),
    "qkv_train_latest_checkpoint": (C.c_int64, [C.c_char_p]),
    "qkv_train_resume_checked": (_st, [C.c_char_p, C.POINTER(_vp), C.POINTER(_vp),
                                       C.POINTER(_vp)]),
    "qkv_cls_metrics_compute": (_st, [c_int32_p, c_int32_p, C.c_int64, C.c_int64,
                                      C.POINTER(_vp)]),
    "qkv_cls_metrics_compute_multilabel": (_st, [C.POINTER(C.c_uint8), C.POINTER(C.c_uint8),
                                                 C.c_int64, C.c_int64, C.POINTER(_vp)]),
    "qkv_cls_metrics_free": (None, [_vp]),
    "qkv_cls_report": (_st, [_vp, c_char_pp, C.c_int, C.POINTER(_vp)]),
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
