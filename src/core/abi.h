/* abi.h — reading and writing the public structs that carry struct_size (qkv.h's rule).
 *
 * A program built against an older qkv.h passes a shorter struct than this library's; one
 * built against a newer qkv.h passes a longer one. Every function that reads such a struct
 * copies it with QKV__STRUCT_IN into a full local copy first (the missing tail gets the
 * defaults), and every function that fills one in writes it with QKV__STRUCT_OUT (never past
 * the program's struct_size). Nothing else in the library reads a caller's struct directly. */
#ifndef QKV_CORE_ABI_H
#define QKV_CORE_ABI_H

#include "qkv.h"

#include <stddef.h>

/* The size struct_size 0 stands for: each struct's size in qkv 0.2, where struct_size
 * appeared (every program that zero-initializes a struct of that version gets that layout).
 * When a field is appended to one of these structs, replace its sizeof here with
 * offsetof(type, first_new_field) and never change the entry again. */
#define QKV__SIZE0_qkv_sampling sizeof(qkv_sampling)
#define QKV__SIZE0_qkv_generate_stats sizeof(qkv_generate_stats)
#define QKV__SIZE0_qkv_encode_options sizeof(qkv_encode_options)
#define QKV__SIZE0_qkv_attention_desc sizeof(qkv_attention_desc)
#define QKV__SIZE0_qkv_data_options offsetof(qkv_data_options, target_tokenizer_path)
#define QKV__SIZE0_qkv_data_stats offsetof(qkv_data_stats, skipped)
#define QKV__SIZE0_qkv_adamw sizeof(qkv_adamw)
#define QKV__SIZE0_qkv_lr_schedule sizeof(qkv_lr_schedule)
#define QKV__SIZE0_qkv_param_info sizeof(qkv_param_info)
#define QKV__SIZE0_qkv_train_batch offsetof(qkv_train_batch, labels)
/* new after 0.2: struct_size 0 is its first layout */
#define QKV__SIZE0_qkv_classifier_spec sizeof(qkv_classifier_spec)
#define QKV__SIZE0_qkv_labeled_options sizeof(qkv_labeled_options)
#define QKV__SIZE0_qkv_logreg_options sizeof(qkv_logreg_options)
#define QKV__SIZE0_qkv_logreg_stats sizeof(qkv_logreg_stats)
#define QKV__SIZE0_qkv_lora_config sizeof(qkv_lora_config)
#define QKV__SIZE0_qkv_bleu_options sizeof(qkv_bleu_options)
#define QKV__SIZE0_qkv_bleu_score sizeof(qkv_bleu_score)
#define QKV__SIZE0_qkv_chrf_options sizeof(qkv_chrf_options)
#define QKV__SIZE0_qkv_chrf_score sizeof(qkv_chrf_score)
#define QKV__SIZE0_qkv_head_stats sizeof(qkv_head_stats)
#define QKV__SIZE0_qkv_attr_options sizeof(qkv_attr_options)
#define QKV__SIZE0_qkv_attr_result sizeof(qkv_attr_result)
#define QKV__SIZE0_qkv_translate_options sizeof(qkv_translate_options)
#define QKV__SIZE0_qkv_model_options sizeof(qkv_model_options)

/* Copies the program's struct `in` into `local` (this library's layout, `size` bytes): the
 * first min(struct_size, size) bytes of in (struct_size 0 means size0), the rest from
 * `defaults` (NULL: zeros); local's struct_size becomes size. in NULL gives the defaults. A
 * struct_size larger than size is accepted only if the bytes past size are all zero (fields
 * this version does not know, left at their "unset" value); otherwise, or for a struct_size
 * smaller than the struct_size field itself, INVALID_ARG naming `what`. */
qkv_status qkv__struct_in(void *local, size_t size, size_t size0, const void *in,
                          const void *defaults, const char *what);
/* Writes this library's `local` (size bytes) to the program's `out`: bytes up to min(its
 * struct_size, size) (struct_size 0 means size0), never past them; out's struct_size is left
 * as the program set it. */
void qkv__struct_out(void *out, const void *local, size_t size, size_t size0);
/* For the public *_defaults functions, which get the program's sizeof from a macro: fills
 * out[0, min(struct_size, size)) from `local`, zeroes the program's tail past size (fields
 * this version does not know: their zero is "unset") and sets out's struct_size (0 stays 0). */
void qkv__struct_fill(void *out, size_t struct_size, const void *local, size_t size, size_t size0);

/* The typed forms: T is the struct's type name; the pointers are checked against it. */
#define QKV__STRUCT_IN(T, local, in, defaults, what)                                               \
    qkv__struct_in(1 ? (local) : (T *)0, sizeof(T), QKV__SIZE0_##T, 1 ? (in) : (const T *)0,       \
                   1 ? (defaults) : (const T *)0, (what))
#define QKV__STRUCT_OUT(T, out, local)                                                             \
    qkv__struct_out(1 ? (out) : (T *)0, 1 ? (local) : (const T *)0, sizeof(T), QKV__SIZE0_##T)
#define QKV__STRUCT_FILL(T, out, struct_size, local)                                               \
    qkv__struct_fill(1 ? (out) : (T *)0, (struct_size), 1 ? (local) : (const T *)0, sizeof(T),     \
                     QKV__SIZE0_##T)

#endif
