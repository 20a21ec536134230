/* qkv.h — the public C API of libqkv, a self-attention and Transformer engine.
 *
 * Conventions (see docs/ARCHITECTURE.md):
 *   - Every fallible function returns qkv_status; QKV_OK is 0. The enum only grows.
 *   - On failure, qkv_last_error() gives this thread's detailed message.
 *   - Handles are opaque; every *_free / *_close accepts NULL.
 *   - The library never exits or aborts on bad input, I/O errors or out-of-memory.
 *   - Sizes are int64_t / size_t; products of sizes from files or users are overflow-checked.
 *   - Structs that may grow (options, descriptors, stats: the ones whose first member is
 *     `size_t struct_size`) stay compatible across versions of the shared library. struct_size
 *     is 0, meaning the layout of qkv 0.2 (where it appeared), or the program's sizeof. The
 *     library reads only that many bytes (fields a shorter, older struct lacks take their
 *     defaults), accepts a longer, newer struct only if the bytes it does not know are all zero
 *     (else QKV_ERR_INVALID_ARG), and writes a struct it fills in only up to struct_size.
 *     So initialize every such struct, output structs too: `T x = {.struct_size = sizeof x};`,
 *     `= {0}`, memset, or the struct's QKV_*_INIT / *_defaults. Fields are only appended, and
 *     a new field's 0 keeps the old behaviour; a program that sets a field added after 0.2
 *     must set struct_size to its sizeof (the initializers above do).
 */
#ifndef QKV_H
#define QKV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(QKV_SHARED_BUILD)
#define QKV_API __declspec(dllexport)
#elif defined(__GNUC__)
#define QKV_API __attribute__((visibility("default")))
#else
#define QKV_API
#endif

/* ---------------------------------------------------------------- version */

#define QKV_VERSION_MAJOR 0
#define QKV_VERSION_MINOR 2 /* 0.2: struct_size in growable structs; qkv_tensor removed */
#define QKV_VERSION_PATCH 0
#define QKV_VERSION_STRING "0.2.0"

/* The version of the library actually linked (may differ from the header's). */
QKV_API const char *qkv_version(void);
/* One line describing the build: type, compiler, sanitizers, optional backends, ISAs built. */
QKV_API const char *qkv_build_info(void);

/* ---------------------------------------------------------------- errors */

typedef enum qkv_status {
    QKV_OK = 0,
    QKV_ERR_INVALID_ARG = 1, /* a caller-supplied argument or descriptor is invalid */
    QKV_ERR_NOMEM = 2,       /* an allocation failed */
    QKV_ERR_IO = 3,          /* open/read/write/mmap/rename failed */
    QKV_ERR_FORMAT = 4,      /* a file's contents are malformed */
    QKV_ERR_UNSUPPORTED = 5, /* valid, but not supported by this build or this CPU */
    QKV_ERR_NOT_FOUND = 6,   /* a named item (tensor, key, file) does not exist */
    QKV_ERR_OVERFLOW = 7,    /* a size computation would overflow */
    QKV_ERR_INTERNAL = 8,    /* a bug in qkv: please report it */
    QKV_ERR_INTERRUPTED = 9, /* stopped on the caller's request (e.g. a signal), state saved */
    QKV_ERR_NOT_FINITE = 10, /* a computed value (a loss, a norm) is NaN or infinite */
    QKV_ERR_WRITE = 11,      /* an output could not be written: disk full, file too large (the
                                file-size limit), a read-only or failing disk; nothing
                                half-written is left (a bad output path is QKV_ERR_IO) */
    QKV_ERR_PEER = 12,       /* another process of a distributed run (qkv_dist) died, failed or
                                did not answer within the timeout */
    /* append new codes here; never renumber */
} qkv_status;

/* Static, never NULL, for any value (unknown values give "unknown status"). */
QKV_API const char *qkv_strerror(qkv_status s);
/* This thread's detailed message of the last failure ("" if none). Valid until the next
 * failing call on this thread. */
QKV_API const char *qkv_last_error(void);
/* Forget this thread's last error message. */
QKV_API void qkv_clear_error(void);

/* ---------------------------------------------------------------- memory */

/* Every allocation libqkv makes goes through this hook. alloc must return memory aligned to
 * at least `align` (a power of two, at most 4096) or NULL; free receives what alloc returned
 * (never NULL). Set it before any other call, or at a point where no qkv object is alive. */
typedef struct qkv_allocator {
    void *(*alloc)(size_t size, size_t align, void *user);
    void (*free)(void *ptr, void *user);
    void *user;
} qkv_allocator;

/* NULL restores the default (aligned_alloc-based) allocator. */
QKV_API void qkv_set_allocator(const qkv_allocator *a);
/* 64-byte aligned allocation through the hook; NULL on failure (size 0 gives a valid pointer). */
QKV_API void *qkv_malloc(size_t size);
QKV_API void qkv_free(void *ptr);

/* ---------------------------------------------------------------- runtime */

typedef struct qkv_runtime qkv_runtime;

/* A persistent thread pool. n_threads 0 = QKV_NUM_THREADS if set, else the online CPUs.
 * Passing NULL as a runtime anywhere uses a default runtime created on first use. A runtime
 * also keeps one scratch block between calls, the largest that a call needed (the fused
 * attention's repacks of q, k, v: at most 66 MiB for a forward, 258 MiB for a backward), so
 * repeated calls do not fault fresh memory in; qkv_runtime_free releases it. */
QKV_API qkv_status qkv_runtime_create(int n_threads, qkv_runtime **out);
QKV_API void qkv_runtime_free(qkv_runtime *rt);
QKV_API int qkv_runtime_n_threads(const qkv_runtime *rt);

/* Work item for qkv_parallel_for: handle [begin, end) of the index range; tid in [0, n_threads). */
typedef void (*qkv_range_fn)(void *ctx, int64_t begin, int64_t end, int tid);
/* Splits [0, n) into contiguous chunks of at least `grain` items (0 means 1), one per thread at
 * most, and runs them on the pool; returns when all are done. The split depends only on n,
 * grain and the thread count, so results are reproducible for a given thread count. Calls from
 * inside a running qkv_parallel_for run serially on the calling thread. */
QKV_API void qkv_parallel_for(qkv_runtime *rt, int64_t n, int64_t grain, qkv_range_fn fn,
                              void *ctx);

/* ---------------------------------------------------------------- cpu */

typedef enum qkv_arch {
    QKV_ARCH_SCALAR = 0, /* portable C */
    QKV_ARCH_AVX2 = 1,   /* AVX2 + FMA + F16C */
    QKV_ARCH_AVX512 = 2, /* AVX-512 F/BW/VL/DQ */
} qkv_arch;

enum {
    QKV_CPU_SSE42 = 1u << 0,
    QKV_CPU_AVX = 1u << 1,
    QKV_CPU_AVX2 = 1u << 2,
    QKV_CPU_FMA = 1u << 3,
    QKV_CPU_F16C = 1u << 4,
    QKV_CPU_AVX512F = 1u << 5,
    QKV_CPU_AVX512BW = 1u << 6,
    QKV_CPU_AVX512VL = 1u << 7,
    QKV_CPU_AVX512DQ = 1u << 8,
    QKV_CPU_AVX512VNNI = 1u << 9,
    QKV_CPU_AVX512BF16 = 1u << 10,
    QKV_CPU_AVX512FP16 = 1u << 11,
    QKV_CPU_AMX_BF16 = 1u << 12, /* AMX tiles with bf16 (tdpbf16ps), and the OS lets us use them */
    QKV_CPU_AMX_INT8 = 1u << 13, /* AMX tiles with int8 (tdpbusd), likewise */
};

/* QKV_CPU_* bits the CPU and OS support (CPUID + XGETBV); 0 on non-x86. */
QKV_API unsigned qkv_cpu_features(void);
/* The best instruction set this CPU supports and this build contains. */
QKV_API qkv_arch qkv_arch_best(void);
/* The instruction set in use: QKV_ARCH (scalar|avx2|avx512) if set and supported, else best. */
QKV_API qkv_arch qkv_arch_active(void);
/* Force an instruction set for this process (tests use it). UNSUPPORTED if the CPU lacks it. */
QKV_API qkv_status qkv_arch_set(qkv_arch a);
QKV_API const char *qkv_arch_name(qkv_arch a);
/* Parse "scalar" | "avx2" | "avx512". */
QKV_API qkv_status qkv_arch_parse(const char *name, qkv_arch *out);
/* A note when QKV_ARCH was set but ignored (unknown or unsupported), else NULL. */
QKV_API const char *qkv_arch_env_note(void);
/* The i-th kernel of the active dispatch table: its op name and the ISA of the implementation
 * in use. Returns 0 when i is past the end. */
QKV_API int qkv_kernel_info(size_t i, const char **op, const char **isa);

/* This machine's FP32 FMA peak in GFLOP/s with rt's threads and the active ISA, measured now
 * over about `seconds` (0 = 0.2 s). For benchmarks that report percent of peak. */
QKV_API double qkv_fma_peak_gflops(qkv_runtime *rt, double seconds);

/* ---------------------------------------------------------------- dtypes */

typedef enum qkv_dtype {
    QKV_DTYPE_F32 = 0,
    QKV_DTYPE_F16 = 1,
    QKV_DTYPE_BF16 = 2,
    QKV_DTYPE_F64 = 3,
    QKV_DTYPE_I8 = 4,
    QKV_DTYPE_U8 = 5,
    QKV_DTYPE_I16 = 6,
    QKV_DTYPE_U16 = 7,
    QKV_DTYPE_I32 = 8,
    QKV_DTYPE_U32 = 9,
    QKV_DTYPE_I64 = 10,
    QKV_DTYPE_U64 = 11,
    QKV_DTYPE_BOOL = 12,
    QKV_DTYPE_F8_E4M3 = 13,
    QKV_DTYPE_F8_E5M2 = 14,
    QKV_DTYPE_COUNT_
} qkv_dtype;

/* Size in bytes of one element; 0 for an invalid value. */
QKV_API size_t qkv_dtype_size(qkv_dtype t);
/* safetensors spelling ("F32", "BF16", ...); "?" for an invalid value. */
QKV_API const char *qkv_dtype_name(qkv_dtype t);
QKV_API qkv_status qkv_dtype_parse(const char *name, qkv_dtype *out);

/* IEEE half / bfloat16 conversions: round to nearest even, NaN stays NaN (quiet), overflow to
 * Inf, subnormals exact. */
QKV_API float qkv_f16_to_f32(uint16_t h);
QKV_API uint16_t qkv_f32_to_f16(float f);
QKV_API float qkv_bf16_to_f32(uint16_t h);
QKV_API uint16_t qkv_f32_to_bf16(float f);
/* Bulk conversions (vectorized for the active instruction set). */
QKV_API void qkv_f16_to_f32_n(const uint16_t *src, float *dst, size_t n);
QKV_API void qkv_f32_to_f16_n(const float *src, uint16_t *dst, size_t n);
QKV_API void qkv_bf16_to_f32_n(const uint16_t *src, float *dst, size_t n);
QKV_API void qkv_f32_to_bf16_n(const float *src, uint16_t *dst, size_t n);

/* ---------------------------------------------------------------- safetensors */

#define QKV_MAX_DIMS 8 /* most dims a safetensors tensor may have here */

typedef struct qkv_safetensors qkv_safetensors;

typedef struct qkv_st_tensor {
    const char *name;
    qkv_dtype dtype;
    int ndim;
    int64_t shape[QKV_MAX_DIMS];
    const void *data; /* points into the mapped file (or the caller's buffer); valid until
                         qkv_safetensors_close. Aligned only as the writer aligned it: the
                         format does not require it (qkv's writer starts the data at a
                         multiple of 8) */
    size_t nbytes;
    uint64_t offset; /* byte offset of data from the start of the data section */
} qkv_st_tensor;

/* Maps (read-only, private) and validates a safetensors file: every check of the reference
 * implementation (header length and cap, strict UTF-8 JSON, known dtypes, shape x dtype size ==
 * span, contiguous offsets from 0 without gaps or overlaps, exact file size, string-only
 * __metadata__) plus duplicate names, unknown keys in a tensor entry and at most QKV_MAX_DIMS
 * dims. Names and metadata are copied; tensor data is not. Errors: INVALID_ARG (NULL
 * argument), IO (cannot open/stat/map, not a regular file), FORMAT (malformed, including shapes
 * whose size overflows; the message names the file and the tensor, what was expected and found,
 * and a byte offset where one helps), NOMEM, OVERFLOW (the file is larger than size_t). On
 * failure *out is NULL. The file must not be truncated while open (that would be SIGBUS).
 * A handle never changes after open: any number of threads may read it at once. */
QKV_API qkv_status qkv_safetensors_open(const char *path, qkv_safetensors **out);
/* Same checks on a caller-owned buffer (not copied; must outlive the handle). */
QKV_API qkv_status qkv_safetensors_open_memory(const void *buf, size_t len, qkv_safetensors **out);
QKV_API void qkv_safetensors_close(qkv_safetensors *st);
/* Tensors in file order: ascending offsets; zero-size tensors sharing an offset keep the
 * order of the header. NULL past the end. */
QKV_API size_t qkv_safetensors_count(const qkv_safetensors *st);
QKV_API const qkv_st_tensor *qkv_safetensors_tensor(const qkv_safetensors *st, size_t i);
/* Binary search by name (O(log n)); NULL if absent. */
QKV_API const qkv_st_tensor *qkv_safetensors_find(const qkv_safetensors *st, const char *name);
QKV_API size_t qkv_safetensors_metadata_count(const qkv_safetensors *st);
/* i-th metadata key/value, sorted by key (strcmp); both NULL when i is out of range. */
QKV_API void qkv_safetensors_metadata_at(const qkv_safetensors *st, size_t i, const char **key,
                                         const char **value);
/* NULL if absent. */
QKV_API const char *qkv_safetensors_metadata_get(const qkv_safetensors *st, const char *key);

/* A tensor to write: contiguous row-major data of shape x dtype size bytes. */
typedef struct qkv_st_write_tensor {
    const char *name;
    qkv_dtype dtype;
    int ndim;
    const int64_t *shape;
    const void *data;
} qkv_st_write_tensor;

/* Writes a safetensors file atomically: to "<path>.tmp.<pid>", fsync, rename, fsync of the
 * directory; on failure the temporary file is removed and path is untouched (except an IO
 * error syncing the directory after the rename: the new file is then in place). Tensors are
 * written in the given order (offsets follow it); the header is padded with spaces so the data
 * starts at a multiple of 8; metadata is n_meta key/value pairs (meta_keys[i] ->
 * meta_values[i]), may be 0. Names and metadata keys must be unique, valid UTF-8, and names not
 * "__metadata__"; data may be NULL for zero-size tensors. Errors: INVALID_ARG (bad input, checked
 * before touching the disk), OVERFLOW (sizes), NOMEM, IO. */
QKV_API qkv_status qkv_safetensors_write(const char *path, const qkv_st_write_tensor *tensors,
                                         size_t n_tensors, const char *const *meta_keys,
                                         const char *const *meta_values, size_t n_meta);

/* ---------------------------------------------------------------- models */

/* A model directory in the Hugging Face layout, loaded for a job. Today: BERT-family encoders
 * and sentence-transformers pipelines (modules.json: Transformer, Pooling mean/cls/max/
 * mean_sqrt_len, Normalize; sentence_bert_config.json max_seq_length). Weights are mmapped from
 * model.safetensors (F32 zero-copy; F16/BF16 converted once). Unsupported configurations are
 * refused with the field's name (QKV_ERR_UNSUPPORTED), missing or misshaped tensors with their
 * name and expected shape (QKV_ERR_FORMAT). */
typedef struct qkv_model qkv_model;

/* What a classification head predicts, as transformers' config.problem_type: one class per
 * input (softmax + cross-entropy), any number of classes (sigmoid + binary cross-entropy per
 * label), or real values (mean squared error). */
typedef enum qkv_problem_type {
    QKV_PROBLEM_SINGLE_LABEL = 0,
    QKV_PROBLEM_MULTI_LABEL = 1,
    QKV_PROBLEM_REGRESSION = 2,
} qkv_problem_type;

QKV_API qkv_status qkv_model_load(const char *dir, qkv_model **out);
QKV_API void qkv_model_free(qkv_model *m);

/* How qkv_model_load_opts (and qkv_lm_load_opts, qkv_seq2seq_load_opts) load a model.
 * Versioned (the rule at the top of this file): `qkv_model_options o = {.struct_size =
 * sizeof o};` gives the defaults, which are qkv_model_load's. */
typedef struct qkv_model_options {
    size_t struct_size;
    /* The encoder's linear layers (attention q, k, v, output and both MLP matrices):
     * QKV_DTYPE_F32 (0, the default: as stored, exact; F16/BF16 files widened to F32) or
     * QKV_DTYPE_BF16 (weights in bf16, FP32 activations and accumulation: half the weight
     * bytes; BF16 files packed as stored, F32 ones rounded to nearest even at load), QKV_DTYPE_F16
     * (the same with IEEE halves) or QKV_DTYPE_I8 (int8 weights with a scale per output channel
     * and 32 inputs, activations quantized to int8 per row and 32 inputs at each call: a quarter
     * of the weight bytes; the format: docs/KERNELS.md, "int8 GEMM"). Embedding tables,
     * LayerNorms, biases, the pooler and the classifier stay F32; with I8 the attention's value
     * projection is bf16 (in int8 it gave half of MiniLM's embedding error). Other dtypes:
     * INVALID_ARG. For qkv_lm_load_opts and qkv_seq2seq_load_opts: every linear layer and the
     * output head (the LM head is packed from the token embedding when tied; the embedding
     * lookups stay F32). */
    qkv_dtype dtype;
} qkv_model_options;
/* qkv_model_load with options (NULL: the defaults). */
QKV_API qkv_status qkv_model_load_opts(const char *dir, const qkv_model_options *opts,
                                       qkv_model **out);
/* The dtype the model's linear layers were loaded in (QKV_DTYPE_F32 for NULL). */
QKV_API qkv_dtype qkv_model_dtype(const qkv_model *m);
/* Width of one embedding (hidden size). */
QKV_API int64_t qkv_model_dim(const qkv_model *m);
/* Most tokens one sequence may have (longer texts are truncated by qkv_embed). */
QKV_API int64_t qkv_model_max_tokens(const qkv_model *m);
/* Sentence embeddings of n already-tokenized sequences, packed: ids [Σ lens], lens [n] each in
 * [1, qkv_model_max_tokens]; out [n, qkv_model_dim] (pooled and, if the pipeline says so,
 * L2-normalized). Sequences of any lengths are batched without padding. rt NULL = default. */
QKV_API qkv_status qkv_embed_tokens(qkv_runtime *rt, const qkv_model *m, const int32_t *ids,
                                    const int64_t *lens, size_t n, float *out);
/* Sentence embeddings of n texts: each is tokenized as sentence-transformers does (special
 * tokens, truncated to qkv_model_max_tokens), then embedded as by qkv_embed_tokens.
 * text_lens [n] gives byte lengths (NULL: NUL-terminated; a NULL text is ""). Any bytes are
 * accepted (invalid UTF-8 included). out [n, qkv_model_dim]. UNSUPPORTED if the model
 * directory has no tokenizer. */
QKV_API qkv_status qkv_embed(qkv_runtime *rt, const qkv_model *m, const char *const *texts,
                             const size_t *text_lens, size_t n, float *out);
/* The ids qkv_embed gives the model for n texts (texts, text_lens as for qkv_embed): special
 * tokens, truncated to qkv_model_max_tokens; packed, *ids [Σ lens] and *lens [n] (each >= 1),
 * both freed with qkv_free. qkv_embed_tokens on them gives exactly qkv_embed's output, so a
 * caller can count or limit tokens, or batch several callers' texts, before embedding.
 * UNSUPPORTED without a tokenizer, INVALID_ARG, NOMEM; on failure both are NULL. */
QKV_API qkv_status qkv_model_tokenize(qkv_runtime *rt, const qkv_model *m, const char *const *texts,
                                      const size_t *text_lens, size_t n, int32_t **ids,
                                      int64_t **lens);
/* The model directory's tokenizer (owned by the model), or NULL if it has none. */
QKV_API const struct qkv_tokenizer *qkv_model_tokenizer(const qkv_model *m);

/* Sequence classification (transformers' BertForSequenceClassification): a directory whose
 * config.json architectures names BertForSequenceClassification, or whose model.safetensors
 * has classifier.weight, loads the pooler (required then), the classifier [NL, C] and the
 * labels of config.json (id2label, else num_labels with names LABEL_i, else 2; problem_type,
 * else single-label, or regression when NL == 1). Another *ForSequenceClassification is
 * refused at load (UNSUPPORTED). A directory without a head loads as before; the calls below
 * then return UNSUPPORTED saying it has no classification head. */
/* NL, the number of labels; 0 when the model has no classification head. */
QKV_API int64_t qkv_model_num_labels(const qkv_model *m);
/* Name of label i (config.json's id2label[i]; owned by the model), NULL if i is not in [0, NL). */
QKV_API const char *qkv_model_label(const qkv_model *m, int64_t i);
/* The head's problem type (QKV_PROBLEM_SINGLE_LABEL when there is no head). */
QKV_API qkv_problem_type qkv_model_problem_type(const qkv_model *m);
/* Logits of n already-tokenized sequences, packed as for qkv_embed_tokens: ids and type_ids
 * [Σ lens] (type_ids NULL: all 0), lens [n] each in [1, qkv_model_max_tokens]; logits [n, NL]:
 * each sequence's first token ([CLS]) through the pooler (dense + tanh) and the classifier, as
 * transformers' model.eval() computes them. Batching does not change any bit. */
QKV_API qkv_status qkv_classify_tokens(qkv_runtime *rt, const qkv_model *m, const int32_t *ids,
                                       const int32_t *type_ids, const int64_t *lens, size_t n,
                                       float *logits);
/* Logits of n texts, or text pairs: pairs NULL (no pairs) or [n] (a NULL entry: that text has
 * no pair, and so is an empty one, as in transformers); text_lens / pair_lens [n] byte lengths,
 * or NULL (NUL-terminated). Each input is tokenized with the special tokens ([CLS] A [SEP] B
 * [SEP], B's tokens of type 1) and, over qkv_model_max_tokens, truncated longest-first, as
 * tokenizer(text, text_pair, truncation=True, max_length=max_position_embeddings) does; inputs
 * are tokenized in parallel. Any bytes are accepted (invalid UTF-8 reads as U+FFFD).
 * logits [n, NL]. UNSUPPORTED without a tokenizer. */
QKV_API qkv_status qkv_classify(qkv_runtime *rt, const qkv_model *m, const char *const *texts,
                                const size_t *text_lens, const char *const *pairs,
                                const size_t *pair_lens, size_t n, float *logits);
/* The ids qkv_classify gives the model (arguments as qkv_classify): packed *ids and *type_ids
 * [Σ lens], *lens [n], all freed with qkv_free. qkv_classify_tokens on them gives exactly
 * qkv_classify's logits, so a caller can count or limit tokens, or batch several callers'
 * inputs, first. UNSUPPORTED without a head or a tokenizer, INVALID_ARG, NOMEM; on failure all
 * three are NULL. */
QKV_API qkv_status qkv_classify_tokenize(qkv_runtime *rt, const qkv_model *m,
                                         const char *const *texts, const size_t *text_lens,
                                         const char *const *pairs, const size_t *pair_lens,
                                         size_t n, int32_t **ids, int32_t **type_ids,
                                         int64_t **lens);
/* Scores [n, NL] from logits [n, NL] as transformers' text-classification pipeline gives them:
 * the identity when config.json's problem_type is "regression", the sigmoid of each logit for
 * multi-label heads and heads of one label (problem_type not given), else the softmax of each
 * row. scores may be logits (in place). */
QKV_API qkv_status qkv_classify_scores(const qkv_model *m, const float *logits, size_t n,
                                       float *scores);

/* ---------------------------------------------------------------- generation */

/* A causal language model (decoder) in the Hugging Face layout, loaded for text generation:
 * GPT-2 (model_type "gpt2") and Llama-style models ("llama"; "mistral" without a sliding
 * window): config.json + model.safetensors, F32 weights zero-copy, F16/BF16 converted once.
 * Unsupported configurations (rope_scaling, biases in a Llama, an unknown model_type, ...) are
 * refused with the field's name (QKV_ERR_UNSUPPORTED); missing or misshaped tensors with their
 * name and expected shape (QKV_ERR_FORMAT). A loaded model never changes: any number of threads
 * may run it at once. Tokens in and out are ids (text goes through qkv_tokenizer). */
typedef struct qkv_lm qkv_lm;

QKV_API qkv_status qkv_lm_load(const char *dir, qkv_lm **out);
/* qkv_lm_load with options (NULL: the defaults; qkv_model_options.dtype: bf16, f16, int8). */
QKV_API qkv_status qkv_lm_load_opts(const char *dir, const qkv_model_options *opts, qkv_lm **out);
/* The dtype the linear layers were loaded in (QKV_DTYPE_F32 for NULL). */
QKV_API qkv_dtype qkv_lm_dtype(const qkv_lm *lm);
QKV_API void qkv_lm_free(qkv_lm *lm);
/* V: logits per position; ids must be in [0, V). */
QKV_API int64_t qkv_lm_vocab_size(const qkv_lm *lm);
/* The model's context: max_position_embeddings (GPT-2: n_positions, a hard limit). */
QKV_API int64_t qkv_lm_max_context(const qkv_lm *lm);
/* The end-of-sequence id (the first one of a list), or -1: generation_config.json's
 * eos_token_id when that file is in the model directory, else config.json's. Generation stops
 * on it only if it is in qkv_sampling.stop_tokens. */
QKV_API int32_t qkv_lm_eos_token(const qkv_lm *lm);
/* Every end-of-sequence id (eos_token_id may be a list, as in Llama 3): up to cap of them
 * into ids (which may be NULL when cap is 0); returns how many there are (at most 8). */
QKV_API size_t qkv_lm_eos_tokens(const qkv_lm *lm, int32_t *ids, size_t cap);

/* Logits of every position of n sequences, packed: ids [Σ lens], lens [n] each in
 * [1, qkv_lm_max_context]; logits [Σ lens, V] (row i: the scores of the token after token i).
 * Sequences of any lengths are batched without padding. rt NULL = default. */
QKV_API qkv_status qkv_lm_logits(qkv_runtime *rt, const qkv_lm *lm, const int32_t *ids,
                                 const int64_t *lens, size_t n, float *logits);

typedef enum qkv_context_overflow {
    /* a sequence that would need more than `context` tokens is refused up front
     * (QKV_ERR_INVALID_ARG, nothing generated) */
    QKV_CONTEXT_REFUSE = 0,
    /* when the cache is full, it restarts from the last context/2 tokens of the sequence
     * (recomputed in one prefill: learned absolute positions, as GPT-2's, cannot be shifted);
     * the model then sees at most `context` tokens. A prompt longer than the context keeps its
     * last context/2 tokens. */
    QKV_CONTEXT_SLIDE = 1,
} qkv_context_overflow;

/* How to generate. Zero-initialized means: greedy, no penalty, refuse on overflow;
 * max_new_tokens must be set. Processors run in Hugging Face generate()'s order and with its
 * semantics: repetition penalty, temperature, top-k, top-p. */
typedef struct qkv_sampling {
    size_t struct_size;       /* 0 or sizeof(qkv_sampling): see the top of this file */
    int64_t max_new_tokens;   /* >= 1: tokens generated per sequence at most */
    float temperature;        /* 0: greedy (argmax); > 0: sample from softmax(logits / t) */
    int64_t top_k;            /* 0: off; else keep the k most likely (ties with the k-th kept) */
    float top_p;              /* 0 or 1: off; else keep the smallest most-likely set of mass >= p */
    float repetition_penalty; /* 0 or 1: off; logits of tokens already in the sequence (prompt
                                 included) are divided by it if > 0, else multiplied */
    uint64_t seed;            /* sequence i draws from seed + i (or seeds[i]): prompt i alone
                                 with seed + i gives the same tokens as in the batch */
    const uint64_t *seeds;    /* [n] per-sequence seeds, or NULL */
    const int32_t *stop_tokens; /* generation of a sequence ends after emitting one of these */
    size_t n_stop_tokens;
    int64_t context; /* KV cache size in tokens per sequence; 0: the smallest that needs no
                        overflow (longest prompt + max_new_tokens - 1), capped at the model's */
    qkv_context_overflow overflow;
} qkv_sampling;

/* Called for every generated token, in order, sequence by sequence within a step; returning
 * nonzero ends that sequence (e.g. a stop string matched by the caller's detokenizer). */
typedef int (*qkv_token_fn)(void *user, size_t seq, int32_t token);

/* Timings of one generate call (prefill: the first pass over all prompts; decode: every later
 * pass, tokens = rows computed). */
typedef struct qkv_generate_stats {
    size_t struct_size; /* set by the caller (0 or sizeof): see the top of this file */
    int64_t prefill_tokens, decode_tokens;
    double prefill_seconds, decode_seconds;
} qkv_generate_stats;

/* Continues n prompts (ids [Σ lens] packed, lens [n] >= 1) at once, each with its own KV cache:
 * one batched prefill of all prompts, then one token per sequence per step. A sequence ends
 * after max_new_tokens, after a stop token (which is emitted), or when on_token says so.
 * Results are identical to running each prompt alone (same seeds). on_token may be NULL;
 * out [n, max_new_tokens] (may be NULL) receives the tokens of sequence i at row i, out_lens
 * [n] (may be NULL) how many; stats may be NULL. Errors: INVALID_ARG (arguments, options out of
 * range naming the field, a sequence too long for the context under QKV_CONTEXT_REFUSE),
 * NOMEM. On error, out and out_lens hold what was generated before it. */
QKV_API qkv_status qkv_lm_generate_tokens(qkv_runtime *rt, const qkv_lm *lm, const int32_t *ids,
                                          const int64_t *lens, size_t n, const qkv_sampling *opts,
                                          qkv_token_fn on_token, void *user, int32_t *out,
                                          int64_t *out_lens, qkv_generate_stats *stats);

/* Continuous batching: independent generations that start and end at different times, decoded
 * together. Each step is one forward over every sequence of the batch (a new sequence's whole
 * prompt, one token for the others; linear layers as one GEMM over all rows, attention per
 * sequence against its own KV cache), and a sequence's tokens are exactly those
 * qkv_lm_generate_tokens gives its prompt alone with the same options. A batch is used by one
 * thread at a time; the model may be shared. */
typedef struct qkv_lm_batch qkv_lm_batch;
#define QKV_LM_BATCH_MAX_STOP 16 /* stop tokens per sequence */
QKV_API qkv_status qkv_lm_batch_create(const qkv_lm *lm, qkv_lm_batch **out);
QKV_API void qkv_lm_batch_free(qkv_lm_batch *b);
/* Adds the prompt ids[0..len) with its own options (as qkv_lm_generate_tokens with n = 1: seed
 * is the sequence's, seeds[0] if given; the stop tokens are copied, at most
 * QKV_LM_BATCH_MAX_STOP). *seq receives its handle (never reused by this batch). The prompt is
 * fed at the next step. Errors as qkv_lm_generate_tokens's up-front ones, NOMEM. */
QKV_API qkv_status qkv_lm_batch_add(qkv_lm_batch *b, const int32_t *ids, int64_t len,
                                    const qkv_sampling *opts, size_t *seq);
/* One step: one token for every sequence, given to on_token(user, handle, token) (may be NULL;
 * nonzero ends that sequence). Sequences that ended (max_new_tokens, a stop token, on_token)
 * are removed; their handles go to ended (room for qkv_lm_batch_size before the step; may be
 * NULL), their count to *n_ended. On failure nothing is generated and the batch is as before. */
QKV_API qkv_status qkv_lm_batch_step(qkv_runtime *rt, qkv_lm_batch *b, qkv_token_fn on_token,
                                     void *user, size_t *ended, size_t *n_ended);
/* Removes a sequence before it ends (NOT_FOUND for an unknown handle). */
QKV_API qkv_status qkv_lm_batch_cancel(qkv_lm_batch *b, size_t seq);
/* The sequences in the batch. */
QKV_API size_t qkv_lm_batch_size(const qkv_lm_batch *b);

/* ---------------------------------------------------------------- tokenizer */

/* Text to ids exactly as Hugging Face `tokenizers` does it, for BERT-style WordPiece and
 * GPT-2-style byte-level BPE (docs/TOKENIZERS.md lists every supported component; anything
 * else is refused with QKV_ERR_UNSUPPORTED naming it). A tokenizer never changes after load
 * except for an internal cache behind a lock: any number of threads may encode at once. */
typedef struct qkv_tokenizer qkv_tokenizer;

/* Loads `path`: a tokenizer.json; a vocab.txt (WordPiece; flags from a tokenizer_config.json
 * beside it: do_lower_case, strip_accents, tokenize_chinese_chars, special tokens); a
 * vocab.json (byte-level BPE with merges.txt beside it); or a directory holding one of these
 * (tokenizer.json first). Errors: INVALID_ARG, IO, FORMAT (malformed, with file and JSON
 * path), UNSUPPORTED (the component's name), NOMEM. On failure *out is NULL. */
QKV_API qkv_status qkv_tokenizer_load(const char *path, qkv_tokenizer **out);
/* The tokenizer of the target side of a translation model directory dir: a Marian
 * directory's target.spm with its vocab.json, or with target_vocab.json when
 * tokenizer_config.json says separate_vocabs (MarianTokenizer's text_target and decode);
 * where dir has no target.spm, qkv_tokenizer_load(dir). Errors as qkv_tokenizer_load;
 * separate_vocabs without target_vocab.json is NOT_FOUND. */
QKV_API qkv_status qkv_tokenizer_load_target(const char *dir, qkv_tokenizer **out);
QKV_API void qkv_tokenizer_free(qkv_tokenizer *tok);

typedef enum qkv_truncation {
    QKV_TRUNCATE_LONGEST_FIRST = 0, /* remove from the longer sequence first (HF's default) */
    QKV_TRUNCATE_ONLY_FIRST = 1,
    QKV_TRUNCATE_ONLY_SECOND = 2,
} qkv_truncation;

typedef struct qkv_encode_options {
    size_t struct_size;          /* 0 or sizeof(qkv_encode_options): see the top of this file */
    int add_special_tokens;      /* 1: apply the post-processor ([CLS] A [SEP] ...) */
    int64_t max_length;          /* 0: no truncation; else total tokens incl. special ones */
    qkv_truncation truncation;   /* how to remove tokens when over max_length */
    int truncate_left;           /* 1: drop tokens at the start instead of the end */
    int64_t pad_to;              /* 0: no padding; else pad with pad_id up to this length */
    int64_t pad_to_multiple_of;  /* 0 or round the padded length up to a multiple */
    int pad_left;                /* 1: padding goes first */
    int32_t pad_id, pad_type_id; /* id and type id of padding tokens */
} qkv_encode_options;

/* The options the tokenizer file asks for: add_special_tokens 1, and the "truncation" and
 * "padding" of a tokenizer.json (Fixed padding only; none otherwise). tok may be NULL. Sets
 * o->struct_size to sizeof *o (the macro passes the program's sizeof). */
QKV_API void qkv_tokenizer_default_options_sized(const qkv_tokenizer *tok, qkv_encode_options *o,
                                                 size_t struct_size);
#define qkv_tokenizer_default_options(tok, o)                                                      \
    qkv_tokenizer_default_options_sized((tok), (o), sizeof *(o))

/* The result of one encode; all arrays have n entries. Read-only; free with
 * qkv_encoding_free. Offsets are [start, end) spans into the text the token came from (the
 * first text, or the pair's text when sequence_ids[i] == 1); special and padding tokens have
 * (0, 0). offsets are in bytes; char_offsets in code points, where each maximal invalid UTF-8
 * subsequence counts as one (as Python's errors="replace" decoding counts it). */
typedef struct qkv_encoding {
    size_t n;
    int32_t *ids;
    int32_t *type_ids;
    int32_t *attention_mask;      /* 1 for tokens, 0 for padding */
    int32_t *special_tokens_mask; /* 1 for special tokens and padding */
    int32_t *sequence_ids;        /* 0 first text, 1 pair text, -1 special or padding */
    int64_t *offsets;             /* [n][2] byte spans */
    int64_t *char_offsets;        /* [n][2] code point spans */
} qkv_encoding;

/* Encodes text[0..len) (and pair[0..pair_len) if pair is not NULL). Any bytes are accepted:
 * invalid UTF-8 is read as U+FFFD for classification (byte-level BPE still encodes the exact
 * bytes, so decode gives them back). opts NULL = qkv_tokenizer_default_options. Errors:
 * INVALID_ARG (NULL arguments, a text over 4 GiB, max_length smaller than the special tokens
 * or a sequence too short for ONLY_FIRST / ONLY_SECOND), NOMEM. On failure *out is NULL. */
QKV_API qkv_status qkv_tokenizer_encode(const qkv_tokenizer *tok, const char *text, size_t len,
                                        const char *pair, size_t pair_len,
                                        const qkv_encode_options *opts, qkv_encoding **out);
QKV_API void qkv_encoding_free(qkv_encoding *enc);

/* Text of ids[0..n) as the tokenizer's decoder writes it (HF's decode); skip_special_tokens
 * leaves out special tokens. *out is NUL-terminated, *out_len its length (may be NULL); free
 * it with qkv_free. Byte-level BPE gives back the exact bytes encoded (HF would replace
 * invalid UTF-8 with U+FFFD). Unknown ids: INVALID_ARG. */
QKV_API qkv_status qkv_tokenizer_decode(const qkv_tokenizer *tok, const int32_t *ids, size_t n,
                                        int skip_special_tokens, char **out, size_t *out_len);

/* Number of ids: 1 + the largest id of the vocabulary and added tokens. */
QKV_API size_t qkv_tokenizer_vocab_size(const qkv_tokenizer *tok);
/* The token string of id (NUL-terminated, owned by tok), or NULL if there is none. */
QKV_API const char *qkv_tokenizer_id_to_token(const qkv_tokenizer *tok, int32_t id);
/* The id of token[0..len), or -1. */
QKV_API int32_t qkv_tokenizer_token_to_id(const qkv_tokenizer *tok, const char *token, size_t len);

typedef enum qkv_special_token {
    QKV_SPECIAL_UNK = 0,
    QKV_SPECIAL_CLS = 1, /* or BOS (<s>) */
    QKV_SPECIAL_SEP = 2, /* or EOS (</s>, <|endoftext|>) */
    QKV_SPECIAL_PAD = 3,
    QKV_SPECIAL_MASK = 4,
    QKV_SPECIAL_COUNT_
} qkv_special_token;
/* The id of a special token, or -1 if the tokenizer has none. */
QKV_API int32_t qkv_tokenizer_special_id(const qkv_tokenizer *tok, qkv_special_token which);

/* Learns a byte-level BPE (GPT-2 pre-tokenization, byte alphabet, merges by pair frequency as
 * tokenizers' BpeTrainer does) from the texts files[0..n_files) and writes DIR/tokenizer.json,
 * loadable by qkv_tokenizer_load and by Hugging Face tokenizers. vocab_size counts the 256
 * bytes and the special tokens (special[0..n_special), given ids 0..). min_frequency: pairs
 * seen fewer times are not merged (0 = 2). progress (may be NULL) is called now and then with
 * the fraction done. Errors: INVALID_ARG, IO, NOMEM. */
typedef void (*qkv_progress_fn)(void *ctx, double fraction);
QKV_API qkv_status qkv_bpe_train(const char *const *files, size_t n_files, size_t vocab_size,
                                 const char *const *special, size_t n_special,
                                 int64_t min_frequency, const char *out_dir,
                                 qkv_progress_fn progress, void *progress_ctx);

/* ---------------------------------------------------------------- attention */

/* Scaled dot-product attention: out = softmax(q kᵀ · scale + bias + masks) v, per head.
 * Fields may be added at the end; meanings never change. Start from QKV_ATTENTION_DESC_INIT
 * (no window, everything else 0) and set what you need; or zero-initialize it and set
 * window_left/window_right to -1 for no window. */
typedef struct qkv_attention_desc {
    size_t struct_size;     /* 0 or sizeof(qkv_attention_desc): see the top of this file */
    int64_t batch;          /* B */
    int64_t q_len, kv_len;  /* Tq, Tk */
    int64_t n_heads;        /* Hq query heads */
    int64_t n_kv_heads;     /* Hk key/value heads, Hq % Hk == 0 (Hk == Hq: MHA, Hk == 1: MQA) */
    int64_t head_dim;       /* D of q and k */
    int64_t v_head_dim;     /* Dv of v and out; 0 means head_dim */
    float scale;            /* 0 means 1/sqrt(head_dim) */
    int causal;             /* key j visible to query i iff j <= i + (Tk - Tq) (bottom-right) */
    int64_t window_left;    /* -1 unlimited; else keys j >= i + (Tk - Tq) - window_left only */
    int64_t window_right;   /* -1 unlimited; else keys j <= i + (Tk - Tq) + window_right only */
    const int32_t *kv_lens; /* [B] keys j >= kv_lens[b] are masked (padding), or NULL */
    const float *bias;      /* additive score bias or NULL: element (b,h,i,j) is
                               bias[b*bias_stride_b + h*bias_stride_h + i*bias_stride_q + j];
                               a stride of 0 broadcasts */
    int64_t bias_stride_b, bias_stride_h, bias_stride_q;
    const float *alibi_slopes; /* [Hq] or NULL: adds -slope[h] * |i + (Tk - Tq) - j| */
    float dropout_p;           /* 0 for inference; dropout on probabilities, regenerated in
                                  backward from dropout_seed */
    uint64_t dropout_seed;
} qkv_attention_desc;

/* A descriptor with struct_size set, no window and every other field 0 (C99 / C++20). */
#define QKV_ATTENTION_DESC_INIT                                                                    \
    { .struct_size = sizeof(qkv_attention_desc), .window_left = -1, .window_right = -1 }

/* Row-major, contiguous:
 *   q [B, Tq, Hq, D]   k [B, Tk, Hk, D]   v [B, Tk, Hk, Dv]   out [B, Tq, Hq, Dv]
 *   lse [B, Hq, Tq]: log of the softmax denominator of the scaled, biased, masked scores;
 *   -INFINITY for a row with no visible key (its out row is 0, its gradients are 0).
 * Invalid descriptors (non-positive sizes, Hq % Hk != 0, NULL required pointers, sizes whose
 * products overflow, dropout_p outside [0, 1)) return QKV_ERR_INVALID_ARG naming the field. */
QKV_API qkv_status qkv_attention_forward(qkv_runtime *rt, const qkv_attention_desc *d,
                                         const float *q, const float *k, const float *v, float *out,
                                         float *lse /* may be NULL */);
/* The forward with q, k, v in bfloat16 (bit patterns, as qkv_f32_to_bf16 gives; same shapes):
 * each element is widened exactly to float and the rest is qkv_attention_forward's arithmetic
 * (float scores, float online softmax, float accumulation, float out and lse; bias and ALiBi
 * slopes stay float). So out and lse are bit-identical to qkv_attention_forward on q, k, v
 * converted by qkv_bf16_to_f32_n; the fused kernels read half the bytes of q, k, v. Same
 * descriptor, masks and errors as qkv_attention_forward. */
QKV_API qkv_status qkv_attention_forward_bf16(qkv_runtime *rt, const qkv_attention_desc *d,
                                              const uint16_t *q, const uint16_t *k,
                                              const uint16_t *v, float *out,
                                              float *lse /* may be NULL */);
/* Gradients of a scalar loss given dout [B, Tq, Hq, Dv]; out and lse are the forward's
 * outputs. dq [B, Tq, Hq, D], dk [B, Tk, Hk, D], dv [B, Tk, Hk, Dv] are overwritten. */
QKV_API qkv_status qkv_attention_backward(qkv_runtime *rt, const qkv_attention_desc *d,
                                          const float *q, const float *k, const float *v,
                                          const float *out, const float *lse, const float *dout,
                                          float *dq, float *dk, float *dv);
/* Probabilities for inspection: p [B, Hq, Tq, Tk] (materializes; for visualization). Dropout
 * is not applied. A row with no visible key is all zeros. */
QKV_API qkv_status qkv_attention_probs(qkv_runtime *rt, const qkv_attention_desc *d, const float *q,
                                       const float *k, float *p);

/* ---------------------------------------------------------------- attention maps */

/* What a model attends to, for inspection (docs/INTERPRET.md). Layers L and query heads H of a
 * loaded model; 0 for NULL. */
QKV_API int64_t qkv_model_num_layers(const qkv_model *m);
QKV_API int64_t qkv_model_num_heads(const qkv_model *m);
QKV_API int64_t qkv_lm_num_layers(const qkv_lm *lm);
QKV_API int64_t qkv_lm_num_heads(const qkv_lm *lm);

/* Floats that the maps of n sequences of lengths lens [n] take in a model of L layers and H
 * heads: Σ L·H·T². OVERFLOW if that does not fit a size_t (or the bytes would not);
 * INVALID_ARG for NULL lens with n > 0 or a size below 1. */
QKV_API qkv_status qkv_attention_maps_len(int64_t L, int64_t H, const int64_t *lens, size_t n,
                                          size_t *out);

/* Every layer's and head's attention probabilities of n already-tokenized sequences, packed as
 * for qkv_embed_tokens / qkv_lm_logits (ids [Σ lens], lens [n]; type_ids [Σ lens] or NULL for
 * BERT). They are computed by the forward that inference runs: in each layer, right after its
 * attention, qkv_attention_probs on that layer's own q and k (after the projections and, in a
 * Llama, RoPE) with the descriptor its attention used (scale, causal mask, the sequence's own
 * keys). probs receives sequence after sequence, each [L, H, T, T]: row i of head h of layer l
 * is query token i's distribution over key tokens j, 0 where the model may not look (j > i in a
 * decoder); dropout never applies. Sequences are packed, not padded: each attends only to its
 * own tokens, which is what a padded batch with an attention mask gives on its real tokens.
 * probs_len is probs' capacity in floats: at least qkv_attention_maps_len (else INVALID_ARG).
 * Errors as qkv_classify_tokens / qkv_lm_logits (lengths, ids, types: INVALID_ARG), NOMEM. */
QKV_API qkv_status qkv_model_attention(qkv_runtime *rt, const qkv_model *m, const int32_t *ids,
                                       const int32_t *type_ids, const int64_t *lens, size_t n,
                                       float *probs, size_t probs_len);
QKV_API qkv_status qkv_lm_attention(qkv_runtime *rt, const qkv_lm *lm, const int32_t *ids,
                                    const int64_t *lens, size_t n, float *probs, size_t probs_len);

/* Attention rollout (Abnar & Zuidema 2020) of one sequence's maps p [L, H, T, T]: per layer the
 * mean over heads A_l, plus the identity for the residual stream, rows renormalized to sum to
 * 1 (Â_l = (A_l + I) / rowsum), multiplied from the first layer up: out [T, T] =
 * Â_{L-1} ··· Â_1 Â_0, row i the share of input token j in what token i holds after the last
 * layer under that model of mixing. Accumulated in double. INVALID_ARG for NULL or sizes < 1,
 * OVERFLOW if T² does not fit, NOMEM. */
QKV_API qkv_status qkv_attention_rollout(const float *p, int64_t L, int64_t H, int64_t T,
                                         float *out);

/* Marks of key positions for qkv_attention_head_stats (bits of marks[j]). */
enum { QKV_MARK_CLS = 1, QKV_MARK_SEP = 2 };

/* Summary of one head's map. Every field is a mean over the query rows i of the map (rows that
 * see no key are left out; prev also leaves out row 0). */
typedef struct qkv_head_stats {
    size_t struct_size; /* set by the caller (0 or sizeof): see the top of this file */
    double entropy;     /* -Σ_j p_ij ln p_ij, in nats (0: one key; ln T: uniform) */
    double distance;    /* Σ_j p_ij |i - j|, in tokens */
    double cls;         /* Σ_j p_ij over keys marked QKV_MARK_CLS ([CLS], or BOS) */
    double sep;         /* Σ_j p_ij over keys marked QKV_MARK_SEP ([SEP], or EOS) */
    double prev;        /* p_i,i-1: attention on the previous token */
    int64_t rows;       /* query rows that saw at least one key */
} qkv_head_stats;

/* Summaries of one head's map p [T, T] (rows of probabilities, as qkv_model_attention gives
 * them); marks [T] or NULL (nothing marked). Accumulated in double; written into *out up to
 * its struct_size. INVALID_ARG for NULL p or out or T < 1. */
QKV_API qkv_status qkv_attention_head_stats(const float *p, int64_t T, const uint8_t *marks,
                                            qkv_head_stats *out);

/* ---------------------------------------------------------------- datasets */

/* A tokenized corpus: binary shards of token ids written once by qkv_data_prepare, read by
 * memory map (shards may be larger than memory). DIR holds meta.json (tokenizer, vocab size,
 * token counts, the split), train_NNNNN.bin and val_NNNNN.bin (docs/TRAINING.md has the
 * format). Documents are joined with the tokenizer's end-of-text id between them. */
typedef struct qkv_data_options {
    size_t struct_size;   /* 0 or sizeof(qkv_data_options): see the top of this file */
    double val_fraction;  /* share of documents sent to the validation split (0.05) */
    const char *split_on; /* a line equal to this separates documents (e.g. "%" for fortune
                             files); NULL: each file is one document */
    int64_t shard_tokens; /* tokens per shard file at most (0: 100,000,000) */
    uint64_t seed;        /* which documents go to validation (a pure function of it) */
    /* where tok was loaded from, recorded in meta.json (a tokenizer does not know its own
     * path); NULL: not recorded */
    const char *tokenizer_path;
    /* qkv_data_prepare_parallel only: */
    const char *target_tokenizer_path; /* recorded in meta.json as tokenizer_path is (NULL) */
    /* validation pairs from these two files instead of the val_fraction draw (NULL, NULL) */
    const char *val_source, *val_target;
    /* a pair with an empty line, invalid UTF-8, a NUL byte or the end-of-sentence token inside:
     * 0 stops with FORMAT naming the file and line; 1 skips the pair (counted in
     * qkv_data_stats.skipped). Unequal line counts always stop. (0) */
    int skip_bad_pairs;
} qkv_data_options;
/* The defaults in parentheses above; sets o->struct_size (the macro passes the program's
 * sizeof). */
QKV_API void qkv_data_default_options_sized(qkv_data_options *o, size_t struct_size);
#define qkv_data_default_options(o) qkv_data_default_options_sized((o), sizeof *(o))

typedef struct qkv_data_stats {
    size_t struct_size;   /* set by the caller (0 or sizeof): see the top of this file */
    int64_t documents[2]; /* train, validation */
    int64_t tokens[2];
    int64_t bytes_read;
    int64_t skipped; /* qkv_data_prepare_parallel: pairs skipped (skip_bad_pairs) */
} qkv_data_stats;

/* Tokenizes files[0..n_files) with tok and writes out_dir (created if missing; existing shards
 * of an earlier run are replaced atomically). Errors: INVALID_ARG, IO (with the path), NOMEM.
 * stats may be NULL; progress (may be NULL) gets the fraction of bytes done. */
QKV_API qkv_status qkv_data_prepare(const qkv_tokenizer *tok, const char *const *files,
                                    size_t n_files, const qkv_data_options *opts,
                                    const char *out_dir, qkv_data_stats *stats,
                                    qkv_progress_fn progress, void *progress_ctx);

/* A parallel dataset (meta.json "kind": "parallel"; docs/TRAINING.md "Dataset format") from
 * two line-aligned text files: line i of `source` and line i of `target` are a pair. Each side
 * is encoded without special tokens by its tokenizer (src_tok, tgt_tok; for a Marian directory
 * tgt_tok comes from qkv_tokenizer_load_target) and followed by its end-of-sentence id, which is
 * what transformers' MarianTokenizer gives (source text; text_target), so each split holds a
 * source and a target stream of sentences. A trailing "\r" of a line is dropped. Pair i goes to
 * validation by the draw of qkv_data_prepare (val_fraction, seed, on the line number), or all
 * of opts->val_source / val_target are validation. Unequal line counts, an empty line, invalid
 * UTF-8, a NUL byte or the end-of-sentence token inside a sentence: FORMAT naming the file
 * and line (skip_bad_pairs skips the last four). Output as qkv_data_prepare (staged, swapped
 * in). stats->documents counts pairs, tokens the source side's. */
QKV_API qkv_status qkv_data_prepare_parallel(const qkv_tokenizer *src_tok,
                                             const qkv_tokenizer *tgt_tok, const char *source,
                                             const char *target, const qkv_data_options *opts,
                                             const char *out_dir, qkv_data_stats *stats,
                                             qkv_progress_fn progress, void *progress_ctx);

typedef struct qkv_dataset qkv_dataset;
typedef enum qkv_split { QKV_SPLIT_TRAIN = 0, QKV_SPLIT_VAL = 1 } qkv_split;

/* Opens one split of a prepared directory. Malformed or truncated shards and ids outside the
 * vocabulary of meta.json are refused (FORMAT, naming the file). */
QKV_API qkv_status qkv_dataset_open(const char *dir, qkv_split split, qkv_dataset **out);
QKV_API void qkv_dataset_close(qkv_dataset *ds);
QKV_API int64_t qkv_dataset_tokens(const qkv_dataset *ds);
QKV_API int64_t qkv_dataset_vocab_size(const qkv_dataset *ds);
/* The tokenizer recorded in meta.json (qkv_data_options.tokenizer_path, stored absolute),
 * resolved: an absolute path, or a relative one joined to dir that must stay inside dir (else
 * qkv_dataset_open fails with FORMAT); NULL if none was recorded or the file is gone. It is a
 * name read from a data file: load it as a tokenizer before trusting it. Valid until close. */
QKV_API const char *qkv_dataset_tokenizer(const qkv_dataset *ds);
/* B windows of T + 1 consecutive tokens at positions drawn uniformly from the whole split:
 * ids[b, t] = window[t], targets[b, t] = window[t + 1] (ids, targets [B, T]). The draw is a
 * pure function of (seed, index): batch `index` is the same on every run, resumed or not.
 * INVALID_ARG if the split has fewer than T + 1 tokens. */
QKV_API qkv_status qkv_dataset_sample(const qkv_dataset *ds, uint64_t seed, uint64_t index,
                                      int64_t B, int64_t T, int32_t *ids, int32_t *targets);
/* The index-th batch of B consecutive, non-overlapping windows from the start (for
 * validation: batches 0.. cover the split in order); returns INVALID_ARG past the end.
 * qkv_dataset_batches gives how many such batches exist. */
QKV_API qkv_status qkv_dataset_sequential(const qkv_dataset *ds, int64_t index, int64_t B,
                                          int64_t T, int32_t *ids, int32_t *targets);
QKV_API int64_t qkv_dataset_batches(const qkv_dataset *ds, int64_t B, int64_t T);
/* Parallel datasets (qkv_data_prepare_parallel): is_parallel 1; pairs the sentence pairs of the
 * split; the target side's tokens, vocabulary and tokenizer (the source side's are
 * qkv_dataset_tokens / _vocab_size / _tokenizer). 0 / NULL for a token dataset, whose
 * qkv_dataset_sample / _sequential refuse a parallel one (INVALID_ARG). Every side was
 * checked at open: ids below its vocabulary, exactly `pairs` sentences each ending in the
 * side's end-of-sentence id. */
QKV_API int qkv_dataset_is_parallel(const qkv_dataset *ds);
QKV_API int64_t qkv_dataset_pairs(const qkv_dataset *ds);
QKV_API int64_t qkv_dataset_target_tokens(const qkv_dataset *ds);
QKV_API int64_t qkv_dataset_target_vocab_size(const qkv_dataset *ds);
QKV_API const char *qkv_dataset_target_tokenizer(const qkv_dataset *ds);
/* Sentence i of side 0 (source) or 1 (target), its end-of-sentence id included, into out[cap]:
 * *len = its length, or cap when it is longer (then out holds its first cap - 1 ids and the
 * end-of-sentence id, as transformers' truncation). sentence_len: the untruncated length (0
 * when out of range). */
QKV_API qkv_status qkv_dataset_sentence(const qkv_dataset *ds, int side, int64_t i, int64_t cap,
                                        int32_t *out, int64_t *len);
QKV_API int64_t qkv_dataset_sentence_len(const qkv_dataset *ds, int side, int64_t i);

/* ---------------------------------------------------------------- labelled text */

/* Examples for fine-tuning a classifier: a text, an optional second text (text_pair, for
 * sentence-pair tasks) and a label: one class name (single-label), a set of class names
 * (multi-label) or a real value (regression). Read from TSV or CSV (columns text[,text_pair],
 * label; quoting as RFC 4180), JSON lines ({"text", "text_pair", "label"}) or a directory
 * with one folder per class holding one file per example. docs/TRAINING.md, "Labelled data
 * for classification", has the formats and every rule. Malformed input is refused with
 * QKV_ERR_FORMAT and a message "FILE:LINE: what". */
typedef struct qkv_labeled qkv_labeled;

typedef enum qkv_labeled_format {
    QKV_LABELED_AUTO = 0,  /* a directory, else by extension: .tsv .csv .jsonl/.ndjson/.json */
    QKV_LABELED_TSV = 1,   /* tab-separated values */
    QKV_LABELED_CSV = 2,   /* comma-separated values */
    QKV_LABELED_JSONL = 3, /* one JSON object a line */
    QKV_LABELED_DIR = 4,   /* DIR/CLASS/FILE: one file an example, the folder its label */
} qkv_labeled_format;

typedef struct qkv_labeled_options {
    size_t struct_size;        /* 0 or sizeof(qkv_labeled_options): see the top of this file */
    qkv_labeled_format format; /* (AUTO) */
    qkv_problem_type problem;  /* what the label is (SINGLE_LABEL) */
    int header;                /* TSV/CSV: 0 detect a header row, 1 there is one, -1 there is
                                  none (columns by position: text,label or text,pair,label) */
    /* column (header) or key (JSON lines) names; NULL: the defaults in parentheses */
    const char *text_field;  /* ("text", else "sentence", else "sentence1") */
    const char *pair_field;  /* ("text_pair", else "sentence2"); optional */
    const char *label_field; /* ("label"; multi-label also "labels") */
    char label_separator;    /* multi-label TSV/CSV cells: names separated by this ('|') */
    int no_quotes;           /* TSV/CSV: '"' is plain text (pandas' QUOTE_NONE) */
    size_t max_record_bytes; /* most bytes of one TSV/CSV row, JSON line or example file:
                                larger is refused, naming the line (0: 1 MiB) */
} qkv_labeled_options;
/* The defaults in parentheses above; sets o->struct_size (the macro passes the program's
 * sizeof). A zeroed struct gives the same defaults. */
QKV_API void qkv_labeled_default_options_sized(qkv_labeled_options *o, size_t struct_size);
#define qkv_labeled_default_options(o) qkv_labeled_default_options_sized((o), sizeof *(o))

/* Reads path (a regular file or, for DIR, a directory; anything else is refused without
 * blocking). opts may be NULL. Label names are sorted: by value when every name is an integer
 * ("-1" < "2" < "10"), else by bytes; ids index that order until qkv_labeled_map_labels. */
QKV_API qkv_status qkv_labeled_load(const char *path, const qkv_labeled_options *opts,
                                    qkv_labeled **out);
QKV_API void qkv_labeled_free(qkv_labeled *d);
QKV_API int64_t qkv_labeled_count(const qkv_labeled *d);
QKV_API qkv_problem_type qkv_labeled_problem(const qkv_labeled *d);
/* 1 if at least one example has a text_pair. */
QKV_API int qkv_labeled_has_pairs(const qkv_labeled *d);
/* Example i's text / text_pair: NUL-terminated UTF-8 (never empty) and its byte length in
 * *len (len may be NULL); NULL for a missing pair or i out of range. Valid until d is freed. */
QKV_API const char *qkv_labeled_text(const qkv_labeled *d, int64_t i, size_t *len);
QKV_API const char *qkv_labeled_pair(const qkv_labeled *d, int64_t i, size_t *len);
/* The label names (0 for regression) and name k (NULL if out of range). */
QKV_API int64_t qkv_labeled_num_labels(const qkv_labeled *d);
QKV_API const char *qkv_labeled_label_name(const qkv_labeled *d, int64_t k);
/* Single-label: example i's label id in [0, num_labels); -1 otherwise. */
QKV_API int32_t qkv_labeled_label(const qkv_labeled *d, int64_t i);
/* Single- or multi-label: out[num_labels] = 1 for example i's labels, 0 for the others.
 * INVALID_ARG for regression or i out of range. */
QKV_API qkv_status qkv_labeled_label_vector(const qkv_labeled *d, int64_t i, float *out);
/* Regression: example i's value; NaN otherwise. */
QKV_API float qkv_labeled_value(const qkv_labeled *d, int64_t i);
/* Where example i was read: the file, and the line its record starts on (*line 0 for a file of
 * a class folder, which is one example). NULL if i is out of range. */
QKV_API const char *qkv_labeled_source(const qkv_labeled *d, int64_t i, int64_t *line);
/* How many TSV/CSV records of d run over several lines (a quoted field holding a line end), and
 * in *first_line (may be NULL) the line the first starts on; 0 for other formats. Legitimate in
 * RFC 4180 files, but in a TSV whose texts merely start with '"' it means lines were merged
 * into one example: read such files with no_quotes. */
QKV_API int64_t qkv_labeled_multiline(const qkv_labeled *d, int64_t *first_line);
/* Renumbers the labels by a given list (a model's id2label, or the training set's names for
 * its validation set): afterwards num_labels == n and label_name(k) == names[k]. Names must be
 * non-empty, valid UTF-8 and distinct (INVALID_ARG). A label of d not in the list fails with
 * FORMAT "FILE:LINE: unknown label 'x'" naming its first example; d is then unchanged. */
QKV_API qkv_status qkv_labeled_map_labels(qkv_labeled *d, const char *const *names, int64_t n);
/* Splits d into *train and *val (new handles with d's label names; d is unchanged). A pure
 * function of (seed, d's examples in order). Single-label: stratified, each class sends
 * round(val_fraction * its count) examples to val, but at least 1 and at most count - 1 when
 * it has 2 or more (a class of 1 stays in train); multi-label and regression: round(
 * val_fraction * count), at least 1 and at most count - 1. Examples keep their order.
 * INVALID_ARG unless 0 < val_fraction < 1 and d has 2 examples or more. */
QKV_API qkv_status qkv_labeled_split(const qkv_labeled *d, double val_fraction, uint64_t seed,
                                     qkv_labeled **train, qkv_labeled **val);

/* Labelled examples tokenized for a classifier trainer: each is [CLS] text [SEP] (text_pair
 * [SEP]) with token types, as the tokenizer's post-processor writes it, cut to max_length
 * tokens (longest_first, as transformers truncates), with its label(s) in the data's current
 * numbering (map the labels to the trainer's first: qkv_labeled_map_labels). Tokenized in
 * parallel on rt. An example the tokenizer refuses fails the build with FILE:LINE. */
typedef struct qkv_cls_data qkv_cls_data;
QKV_API qkv_status qkv_cls_data_build(qkv_runtime *rt, const qkv_labeled *d,
                                      const qkv_tokenizer *tok, int64_t max_length,
                                      qkv_cls_data **out);
QKV_API void qkv_cls_data_free(qkv_cls_data *d);
QKV_API int64_t qkv_cls_data_count(const qkv_cls_data *d);
/* All tokens; the longest example; how many examples reached max_length (cut, or exactly
 * that long). */
QKV_API int64_t qkv_cls_data_tokens(const qkv_cls_data *d);
QKV_API int64_t qkv_cls_data_max_len(const qkv_cls_data *d);
QKV_API int64_t qkv_cls_data_truncated(const qkv_cls_data *d);

/* ---------------------------------------------------------------- training */

/* Training Transformers from scratch or from a checkpoint: GPT-2 (the Hugging Face
 * GPT2LMHeadModel: pre-LN blocks, learned positions, tanh GELU, LM head tied to the token
 * embedding), Llama-style decoders (LlamaForCausalLM: RMSNorm, RoPE, SwiGLU, grouped-query
 * attention, tied or untied head) and BERT encoders as masked language models
 * (BertForMaskedLM: post-LN, token types, padding), all without dropout. Parameters,
 * gradients and the AdamW moments live in flat F32 buffers, one tensor per Hugging Face
 * parameter name. Every step is deterministic: for one thread count and ISA the same inputs
 * give bit-identical losses and weights, so a resumed run equals an uninterrupted one.
 * docs/TRAINING.md has the math and the policies. */
typedef struct qkv_trainer qkv_trainer;

typedef struct qkv_gpt2_shape {
    int64_t vocab_size;  /* V */
    int64_t n_positions; /* P: longest sequence */
    int64_t n_embd;      /* C */
    int64_t n_layer;     /* L */
    int64_t n_head;      /* H (divides C) */
} qkv_gpt2_shape;

/* Fresh weights initialized as transformers does: matrices and embeddings N(0, 0.02), the
 * two c_proj matrices of each block N(0, 0.02/sqrt(2L)), biases 0, LayerNorms 1 and 0; a
 * pure function of seed. */
QKV_API qkv_status qkv_trainer_new(const qkv_gpt2_shape *shape, uint64_t seed, qkv_trainer **out);
/* Starts from a Hugging Face directory (config.json + model.safetensors; F32/F16/BF16) of a
 * GPT-2, a Llama-style decoder or a BERT (a checkpoint without the masked-LM head gets a
 * fresh one, initialized from seed 0 as qkv_trainer_new_hf_config does). Configurations
 * training cannot reproduce (a GPT-2 with an untied head, a custom attention scale or
 * n_inner != 4C; see qkv_gpt / qkv_model loading for the rest) are refused with UNSUPPORTED
 * naming the field. A MarianMT directory (model_type marian) gives an encoder-decoder trainer
 * (arch "marian", MarianMTModel with teacher forcing: batches with src_ids, see
 * qkv_train_batch). */
QKV_API qkv_status qkv_trainer_load_hf(const char *dir, qkv_trainer **out);
/* A fresh trainer for the model a Hugging Face config.json describes (dir: a model directory
 * or the config file itself; model_type
 * gpt2, llama / mistral, bert, trained as BertForMaskedLM, or marian), initialized as
 * transformers does: matrices and embeddings N(0, 0.02) (GPT-2's c_proj N(0, 0.02/sqrt(2L));
 * Marian's init_std), norms 1, biases 0; a pure function of seed. (Marian: the pad token's
 * embedding row is not zeroed as transformers' padding_idx does.) Only config.json is read. */
QKV_API qkv_status qkv_trainer_new_hf_config(const char *dir, uint64_t seed, qkv_trainer **out);
/* What a classifier trainer predicts and over which labels (see qkv_trainer_load_hf_classifier).
 * struct_size: see the rule at the top of this file; qkv_classifier_spec_init sets it and the
 * defaults in parentheses. */
typedef struct qkv_classifier_spec {
    size_t struct_size;
    int64_t num_labels;        /* (0): config.json's id2label / num_labels */
    const char *const *labels; /* (NULL) or [num_labels] names, unique, UTF-8 */
    int problem_type;          /* (-1): config.json's problem_type; else a qkv_problem_type */
    uint64_t seed;             /* (0): a fresh pooler / classifier's initialization */
} qkv_classifier_spec;
QKV_API void qkv_classifier_spec_init_sized(qkv_classifier_spec *s, size_t struct_size);
#define qkv_classifier_spec_init(s) qkv_classifier_spec_init_sized((s), sizeof *(s))
/* A BERT with a sequence-classification head, as transformers' BertForSequenceClassification
 * (pooler dense + tanh over [CLS], dropout, linear classifier), from a Hugging Face directory
 * with or without that head: a BertModel / sentence-transformers checkpoint, a BertForMaskedLM
 * or a BertForSequenceClassification. The head (pooler and classifier) is loaded when the
 * checkpoint has one of the asked shape, else initialized fresh as transformers does
 * (N(0, initializer_range) matrices, zero biases) from spec->seed; the labels and problem type
 * come from spec, else config.json. The dropout rates are config.json's hidden_dropout_prob,
 * attention_probs_dropout_prob and classifier_dropout. spec NULL: every default. */
QKV_API qkv_status qkv_trainer_load_hf_classifier(const char *dir, const qkv_classifier_spec *spec,
                                                  qkv_trainer **out);
/* A classifier's labels (0 and NULL for other trainers or i out of range) and problem type. */
QKV_API int64_t qkv_trainer_num_labels(const qkv_trainer *t);
QKV_API const char *qkv_trainer_label(const qkv_trainer *t, int64_t i);
QKV_API qkv_problem_type qkv_trainer_problem_type(const qkv_trainer *t);
/* Sets a classifier's dropout rates for training forwards (each in [0, 1); a negative value
 * keeps the current one): hidden states, attention probabilities, the classifier's input. For an
 * encoder-decoder (marian): dropout, attention_dropout and activation_dropout. */
QKV_API qkv_status qkv_trainer_set_dropout(qkv_trainer *t, float hidden, float attention,
                                           float classifier);
/* How many of the trainer's parameters were initialized fresh by the last load (a new head). */
QKV_API size_t qkv_trainer_fresh_params(const qkv_trainer *t);
/* Label smoothing eps in [0, 1) of the loss of every later forward, as torch's
 * CrossEntropyLoss(label_smoothing=eps) (0 at load: none). */
QKV_API qkv_status qkv_trainer_set_label_smoothing(qkv_trainer *t, float eps);
/* "gpt2", "llama", "bert" or "bert_cls" ("" for NULL). */
QKV_API const char *qkv_trainer_arch(const qkv_trainer *t);
QKV_API void qkv_trainer_free(qkv_trainer *t);
QKV_API void qkv_trainer_get_shape(const qkv_trainer *t, qkv_gpt2_shape *shape);
/* Optimizer steps taken (0 for a new trainer; restored by qkv_trainer_restore). */
QKV_API int64_t qkv_trainer_steps(const qkv_trainer *t);

/* What the forward keeps for the backward. NONE keeps every activation of every layer (fast,
 * most memory); LAYERS keeps only each block's input and recomputes the block's forward
 * during the backward (about one more forward of compute, activations of one block). */
typedef enum qkv_recompute { QKV_RECOMPUTE_NONE = 0, QKV_RECOMPUTE_LAYERS = 1 } qkv_recompute;

/* Allocates activations for micro-batches of up to B sequences of T tokens (T <= n_positions).
 * Called again with a larger size it reallocates. The bytes of activations and scratch are
 * returned in *bytes (may be NULL). */
QKV_API qkv_status qkv_trainer_reserve(qkv_trainer *t, int64_t B, int64_t T, qkv_recompute policy,
                                       size_t *bytes);
/* Sets every gradient to 0. */
QKV_API void qkv_trainer_zero_grad(qkv_trainer *t);
/* One micro-batch: the forward of ids [B, T], the mean cross-entropy against targets [B, T]
 * (ids in [0, V); a target of -1 is ignored), and the backward, which ADDS scale times the
 * gradient of that mean loss to the gradients (scale 1/k for k accumulated micro-batches).
 * *loss gets the mean loss. Reserves on demand. */
QKV_API qkv_status qkv_trainer_forward_backward(qkv_runtime *rt, qkv_trainer *t, const int32_t *ids,
                                                const int32_t *targets, int64_t B, int64_t T,
                                                float scale, float *loss);
/* The forward only: the mean loss of a batch (validation). Gradients are untouched. */
QKV_API qkv_status qkv_trainer_eval(qkv_runtime *rt, qkv_trainer *t, const int32_t *ids,
                                    const int32_t *targets, int64_t B, int64_t T, float *loss);
/* A batch of any architecture: ids and targets [B, T] (a target of -1 or -100 is ignored, as
 * in transformers' labels); for BERT also token types [B, T] (NULL: all 0) and the number of
 * real tokens of each sequence [B] (the keys past it are padding, masked from attention; NULL:
 * all T). Classifiers (qkv_trainer_load_hf_classifier) take no targets but one label per
 * sequence: labels [B] (single-label: a class id in [0, num_labels), or -100 / -1 to ignore
 * the sequence) or values [B, num_labels] (multi-label: 1 or 0 per label, BCE-with-logits;
 * regression: the targets of the mean squared error); the [CLS] token is each sequence's
 * first. dropout_seed seeds the dropout masks of a training forward (forward_backward; the
 * config's rates, qkv_trainer_set_dropout): a pure function of it, the same in the backward.
 * struct_size: see the rule at the top of this file. */
typedef struct qkv_train_batch {
    size_t struct_size;
    const int32_t *ids;
    const int32_t *targets;
    const int32_t *types;
    const int32_t *kv_lens;
    int64_t B, T;
    const int32_t *labels;
    const float *values;
    uint64_t dropout_seed;
    /* encoder-decoders (marian): the source src_ids [B, S], src_lens [B] its lengths (tokens at
     * or past them are padding: masked as keys of the encoder's self-attention and of the
     * decoder's cross-attention; NULL: none), targets [B, T] the labels (-100 / -1 ignored), ids
     * the decoder's inputs [B, T] or NULL: the labels shifted right after
     * decoder_start_token_id, ignored labels as pad_token_id (transformers' shift_tokens_right). */
    const int32_t *src_ids;
    const int32_t *src_lens;
    int64_t S;
} qkv_train_batch;
/* qkv_trainer_forward_backward and qkv_trainer_eval for such a batch. */
QKV_API qkv_status qkv_trainer_forward_backward_batch(qkv_runtime *rt, qkv_trainer *t,
                                                      const qkv_train_batch *batch, float scale,
                                                      float *loss);
QKV_API qkv_status qkv_trainer_eval_batch(qkv_runtime *rt, qkv_trainer *t,
                                          const qkv_train_batch *batch, float *loss);
/* The logits [B*T, V] of the last forward ([B, num_labels] for classifiers; forward_backward
 * turns them into gradients; valid after qkv_trainer_eval only). */
QKV_API const float *qkv_trainer_logits(const qkv_trainer *t);
/* Gradient × input saliency of a classifier trainer's (qkv_trainer_load_hf_classifier) logit
 * `label` on one sequence ids [T] (type_ids [T] or NULL), in eval mode (no dropout):
 * saliency [T], entry i = Σ_c ∂logit/∂e_i,c · e_i,c with e_i the word embedding of token i
 * (what transformers gives for inputs_embeds), through the trainer's backward; logits [NL] (or
 * NULL) receives the forward's logits. The trainer's weights and gradients are left as they
 * were. UNSUPPORTED for a trainer that is not a classifier; INVALID_ARG as
 * qkv_trainer_forward_backward_batch for ids and types, or for a label outside [0, NL).
 * qkv_trainer_attribute does this and more. */
QKV_API qkv_status qkv_trainer_saliency(qkv_runtime *rt, qkv_trainer *t, const int32_t *ids,
                                        const int32_t *type_ids, int64_t T, int64_t label,
                                        float *saliency, float *logits);

/* What qkv_trainer_attribute explains: a scalar f of one sequence's word embeddings. */
typedef enum qkv_attr_target {
    QKV_ATTR_LOGIT = 0,      /* a classifier's (bert_cls) logit of label `index` */
    QKV_ATTR_NEXT_TOKEN = 1, /* a decoder's (gpt2, llama) logit of token `index` at the last
                                position: the score of the token that would come next */
    QKV_ATTR_SIMILARITY = 2, /* an encoder's (bert, bert_cls) cosine similarity between the
                                mean-pooled last hidden states of the sequence and of a second
                                sequence (held fixed): sentence-transformers' mean pooling */
} qkv_attr_target;
/* How integrated gradients approximates the path integral over alpha in [0, 1] with m steps:
 * the trapezoid rule on alpha = k/m, k = 0..m (m + 1 gradients, the ends weighted 1/2m, the
 * others 1/m), or the right Riemann sum on alpha = k/m, k = 1..m (m gradients, each 1/m;
 * captum's riemann_right with n_steps = m). */
typedef enum qkv_ig_rule { QKV_IG_TRAPEZOID = 0, QKV_IG_RIGHT = 1 } qkv_ig_rule;
/* struct_size: see the rule at the top of this file; qkv_attr_options_init sets it and the
 * defaults in parentheses. */
typedef struct qkv_attr_options {
    size_t struct_size;
    int target;                      /* (QKV_ATTR_LOGIT) a qkv_attr_target */
    int64_t index;                   /* (-1) the label or token whose logit is explained; -1:
                                        the largest logit of the input (the prediction);
                                        ignored by SIMILARITY (res->index -1) */
    const int32_t *compare_ids;      /* (NULL) SIMILARITY: the second sequence [compare_T] */
    const int32_t *compare_type_ids; /* (NULL: all 0) its token types */
    int64_t compare_T;               /* (0) */
    int64_t ig_steps;                /* (0) 0: gradient × input only; m >= 1: also integrated
                                        gradients with m steps (at most 100000) */
    int ig_rule;                     /* (QKV_IG_TRAPEZOID) a qkv_ig_rule */
    int32_t baseline_id;             /* (-1) the baseline's word embedding at every position:
                                        -1 all zero, else that token's (e.g. [PAD] or [MASK]) */
} qkv_attr_options;
QKV_API void qkv_attr_options_init_sized(qkv_attr_options *o, size_t struct_size);
#define qkv_attr_options_init(o) qkv_attr_options_init_sized((o), sizeof *(o))
/* What an attribution measured (struct_size: the caller's sizeof; written up to it). */
typedef struct qkv_attr_result {
    size_t struct_size;
    int64_t index;     /* the label or token explained (index, or the prediction) */
    double f_input;    /* f at the input */
    double f_baseline; /* f at the baseline (integrated gradients; else 0) */
    double ig_sum;     /* Σ_i ig[i]; completeness: ig_sum ≈ f_input - f_baseline, the gap
                          shrinks as ig_steps grows */
    int64_t passes;    /* forward + backward passes run */
} qkv_attr_result;
/* Attributions of f (opt->target) to the tokens of one sequence ids [T] (type_ids [T] or NULL;
 * decoders: NULL), in eval mode (no dropout), through the trainer's backward, with e_i the word
 * embedding of token i (positions and token types are not attributed):
 *   grad_x_input [T] (or NULL): Σ_c ∂f/∂e_i,c · e_i,c
 *   ig [T] (needed when opt->ig_steps > 0, else ignored): integrated gradients (Sundararajan et
 *     al. 2017) on the straight line from the baseline e0 to e: Σ_c (e − e0)_i,c · the rule's
 *     average of ∂f/∂e_i,c at e0 + alpha (e − e0); the same as transformers with inputs_embeds.
 * res (or NULL) gets what was explained and the completeness numbers. The trainer's weights and
 * gradients are left as they were (its parameters are frozen during the call). UNSUPPORTED for
 * a target the trainer's architecture lacks; INVALID_ARG for bad ids, types, options (naming
 * the field) or an index outside the logits. */
QKV_API qkv_status qkv_trainer_attribute(qkv_runtime *rt, qkv_trainer *t, const int32_t *ids,
                                         const int32_t *type_ids, int64_t T,
                                         const qkv_attr_options *opt, float *grad_x_input,
                                         float *ig, qkv_attr_result *res);

/* The global L2 norm of all gradients in *norm; when max_norm > 0 every gradient is then
 * multiplied by min(1, max_norm / (norm + 1e-6)) (torch.nn.utils.clip_grad_norm_). */
QKV_API qkv_status qkv_trainer_clip_grad_norm(qkv_runtime *rt, qkv_trainer *t, float max_norm,
                                              float *norm);

/* torch.optim.AdamW (decoupled weight decay, bias correction, eps added to the corrected
 * sqrt(v)). Decay applies to the matrices and embeddings only, never to biases and LayerNorm
 * parameters (the usual two parameter groups). */
typedef struct qkv_adamw {
    size_t struct_size; /* 0 or sizeof(qkv_adamw): see the top of this file */
    float beta1, beta2, eps, weight_decay;
} qkv_adamw;
/* torch's defaults: 0.9, 0.999, 1e-8, 0.01; sets hp->struct_size (the macro passes the
 * program's sizeof). */
QKV_API void qkv_adamw_defaults_sized(qkv_adamw *hp, size_t struct_size);
#define qkv_adamw_defaults(hp) qkv_adamw_defaults_sized((hp), sizeof *(hp))
QKV_API qkv_status qkv_trainer_adamw_step(qkv_runtime *rt, qkv_trainer *t, const qkv_adamw *hp,
                                          float lr);

/* qkv_trainer_clip_grad_norm(max_norm) then qkv_trainer_adamw_step in one pass over memory:
 * the same weights and moments bit for bit, but the clipping scale is applied on the fly, so
 * the stored gradients stay unscaled. *norm gets the pre-clip norm; when it is not finite
 * (a NaN or Inf gradient) nothing is updated and the step is not counted. */
QKV_API qkv_status qkv_trainer_step(qkv_runtime *rt, qkv_trainer *t, const qkv_adamw *hp, float lr,
                                    float max_norm, float *norm);

/* Learning rate of step s (0-based) of total: linear warmup lr_max·(s+1)/warmup for
 * s < warmup, then constant, or cosine / linear decay from lr_max to lr_min at s = total.
 * QKV_LR_LINEAR_HF is transformers' get_linear_schedule_with_warmup (the Trainer's default):
 * lr_max·s/warmup for s < warmup (0 at step 0), then linear from lr_max to lr_min at total. */
typedef enum qkv_lr_decay {
    QKV_LR_CONSTANT = 0,
    QKV_LR_COSINE = 1,
    QKV_LR_LINEAR = 2,
    QKV_LR_LINEAR_HF = 3
} qkv_lr_decay;
typedef struct qkv_lr_schedule {
    size_t struct_size; /* 0 or sizeof(qkv_lr_schedule): see the top of this file */
    double lr_max, lr_min;
    int64_t warmup, total;
    qkv_lr_decay decay;
} qkv_lr_schedule;
/* 0 for a NULL s; NaN (with qkv_last_error set) for a struct_size the library refuses. */
QKV_API double qkv_lr_at(const qkv_lr_schedule *s, int64_t step);

/* The parameter tensors in a fixed order, named as GPT2LMHeadModel.named_parameters(). */
typedef struct qkv_param_info {
    size_t struct_size; /* set by the caller (0 or sizeof): see the top of this file */
    const char *name;
    int ndim;
    int64_t shape[2];
    int64_t numel;
    float *data, *grad;
    int decay;     /* 1 if AdamW decays it */
    int trainable; /* 0 if frozen (qkv_trainer_set_trainable) */
} qkv_param_info;
QKV_API size_t qkv_trainer_param_count(const qkv_trainer *t);
QKV_API qkv_status qkv_trainer_param(qkv_trainer *t, size_t i, qkv_param_info *info);
/* Freezes (0) or unfreezes parameter i: a frozen parameter is left out of the gradient norm and
 * AdamW leaves it and its moments untouched, as torch does for requires_grad=False; its
 * gradient is not computed (it stays as zero_grad left it) where the layers allow skipping it. New
 * trainers train every parameter of the architecture's table. */
QKV_API qkv_status qkv_trainer_set_trainable(qkv_trainer *t, size_t i, int trainable);
/* The number of parameter values (the sum of every tensor's numel); 0 for a NULL trainer. */
QKV_API int64_t qkv_trainer_numel(const qkv_trainer *t);
/* Bytes of optimizer state (AdamW's two moments) this process holds: 8 per float of the flat
 * buffers, or of this rank's slice after a ZeRO-1 run (qkv_train_options.zero); 0 for NULL. */
QKV_API size_t qkv_trainer_optimizer_bytes(const qkv_trainer *t);
/* Model FLOPs of one forward + backward over B x T tokens, the usual convention for a rate of
 * "model FLOPs" (as llm.c and the MFU literature count): 6 · parameters · B·T for the
 * matrices, plus 12 · L · B · T² · C for the attention products (QKᵀ and PV, forward and
 * backward). 0 for a NULL trainer. */
QKV_API double qkv_trainer_step_flops(const qkv_trainer *t, int64_t B, int64_t T);

/* A checkpoint is one safetensors file: the parameters, AdamW's moments, the step count and a
 * caller JSON string (e.g. the run's configuration and data position), written atomically
 * (temporary file, fsync, rename): a crash leaves the previous file intact. */
QKV_API qkv_status qkv_trainer_save(const qkv_trainer *t, const char *path, const char *user_json);
/* *user_json (may be NULL) gets a copy to free with qkv_free. */
QKV_API qkv_status qkv_trainer_restore(const char *path, qkv_trainer **out, char **user_json);
/* Writes dir/config.json and dir/model.safetensors that transformers' GPT2LMHeadModel (and
 * qkv_lm_load) load; eot_id (or -1) becomes bos/eos_token_id. */
QKV_API qkv_status qkv_trainer_export_hf(const qkv_trainer *t, const char *dir, int32_t eot_id);

/* ---------------------------------------------------------------- LoRA */

/* Low-rank adapters as Hugging Face PEFT's LoRA (docs/TRAINING.md "LoRA"): every targeted
 * linear layer y = x·op(W) + b gets y += s · (drop(x) Aᵀ) Bᵀ with A (r, in), B (out, r) and
 * s = alpha / r (alpha / √r with use_rslora). Versioned: qkv_lora_config_init sets struct_size
 * and the defaults in parentheses. */
typedef struct qkv_lora_config {
    size_t struct_size;
    int64_t r;     /* (8) rank, 1 .. 4096 */
    float alpha;   /* (8) lora_alpha */
    float dropout; /* (0) lora_dropout, [0, 1): on the adapter's input while training */
    int use_rslora;
    /* (NULL: the architecture's attention projections: BERT query, value; GPT-2 c_attn; Llama
     * q_proj, v_proj, as PEFT's defaults) module names; a target matches every linear layer
     * whose module name is it or ends with "." + it (PEFT's rule): BERT query, key, value,
     * dense (every dense: attention.output, intermediate, output, the pooler and the MLM
     * transform); GPT-2 c_attn, c_proj (both), c_fc; Llama q_proj, k_proj, v_proj, o_proj,
     * gate_proj, up_proj, down_proj. Longer names (e.g. "attention.self.query") work too. */
    const char *const *targets;
    size_t n_targets;
    /* (NULL: a bert_cls trainer's "classifier", as PEFT's SEQ_CLS task; none for LMs) modules
     * trained in full and saved with the adapter (PEFT's modules_to_save), matched as targets
     * and by any enclosing module ("pooler" covers bert.pooler.dense.*); n 0 with a non-NULL
     * pointer: none */
    const char *const *modules_to_save;
    size_t n_modules_to_save;
    uint64_t seed; /* (0) A's initialization */
    /* (NULL) written as adapter_config.json's base_model_name_or_path (else null) */
    const char *base_model;
} qkv_lora_config;
QKV_API void qkv_lora_config_init_sized(qkv_lora_config *c, size_t struct_size);
#define qkv_lora_config_init(c) qkv_lora_config_init_sized((c), sizeof *(c))

/* Adds adapters to a trainer (once; INVALID_ARG the second time): lora_A (r, in) initialized
 * as PEFT does (Kaiming-uniform with a = √5: U(-1/√in, 1/√in), a pure function of seed) and
 * lora_B (out, r) zeros for every targeted layer of every block, appended to the parameters as
 * "<module>.lora_A.weight" / ".lora_B.weight"; freezes every other parameter but the
 * modules_to_save. The forward and backward then run the adapters: frozen weights get no
 * gradient computed. A target or module to save that matches nothing is INVALID_ARG naming
 * it. Parameter pointers from qkv_trainer_param taken before are invalid afterwards.
 * Checkpoints keep the adapters and the config; qkv_trainer_export_hf writes the merged model
 * (W + s·B·A). */
QKV_API qkv_status qkv_trainer_add_lora(qkv_trainer *t, const qkv_lora_config *c);
/* 1 if qkv_trainer_add_lora was called on t (or its checkpoint had adapters). */
QKV_API int qkv_trainer_has_lora(const qkv_trainer *t);
/* Writes a PEFT adapter directory (created if missing): adapter_config.json and
 * adapter_model.safetensors (PEFT's names "base_model.model.<module>.lora_A.weight" ...,
 * modules_to_save tensors as "base_model.model.<name>"), each file atomically;
 * PeftModel.from_pretrained loads it. INVALID_ARG without adapters. */
QKV_API qkv_status qkv_trainer_save_lora(const qkv_trainer *t, const char *dir);

/* Applies a PEFT LoRA adapter directory (adapter_config.json + adapter_model.safetensors, as
 * qkv_trainer_save_lora or PEFT's save_pretrained write them) to a loaded model without
 * merging: the adapters run beside the packed weights (inference: no dropout). Keys may name
 * the model's modules with or without the model prefix ("bert.", "transformer.", "model.").
 * A classifier's modules_to_save (classifier.weight / .bias) replace the head (a model
 * without a head becomes a classifier with labels LABEL_0 .. LABEL_{NL-1}). Everything is
 * checked before the model changes: FORMAT (a bad config, a key that is not one of the model's
 * layers, A/B missing or of the wrong shape, r above 4096), UNSUPPORTED (DoRA, biases,
 * per-layer rank or alpha patterns), IO (missing files, not regular files). A model takes one
 * adapter (INVALID_ARG the second time); not thread-safe against running the model. */
QKV_API qkv_status qkv_model_load_lora(qkv_model *m, const char *dir);
QKV_API qkv_status qkv_lm_load_lora(qkv_lm *lm, const char *dir);
/* Folds an adapter into a copy of a Hugging Face model directory: out_dir gets
 * model.safetensors with W += s·B·A (F32 for the merged matrices, other tensors as they were;
 * modules_to_save tensors replace or join the base's) and the other regular files of
 * model_dir copied (config, tokenizer, ...; subdirectories too, one level), written into a
 * temporary directory beside out_dir and renamed. An existing non-empty out_dir is refused
 * (INVALID_ARG); the checks of qkv_model_load_lora apply. */
QKV_API qkv_status qkv_lora_merge(const char *model_dir, const char *lora_dir, const char *out_dir);

/* ---------------------------------------------------------------- the training loop */

/* qkv_train_run is the whole training loop (src/train/loop.c), shared by `qkv train` and any
 * other front end: step s (0-based) samples micro-batches s·accum .. s·accum + accum - 1 with
 * qkv_dataset_sample(train, seed, ...), accumulates their gradients (scale 1/accum), takes
 * the fused clip + AdamW step (qkv_trainer_step) at the learning rate qkv_lr_at(s) of the
 * schedule (lr, min_lr, warmup, steps, decay), evaluates on `val` every eval_every steps and
 * after the last, and with a run directory writes metrics.jsonl and checkpoints
 * run_dir/ckpt_NNNNNNNN.safetensors every save_every steps, after the last step and on a stop
 * request, keeping the newest `keep`. It continues from qkv_trainer_steps(t), so a trainer
 * restored from a checkpoint (qkv_train_resume) finishes with the same bits as a run that was
 * never stopped. docs/TRAINING.md describes the files.
 *
 * Structs marked "versioned" start with struct_size: the caller sets it to sizeof the struct
 * it was compiled with (qkv_train_options_init does); sizes this library does not know are
 * refused with INVALID_ARG, so fields can be added at the end later. */

/* One process of a data-parallel run over MPI (qkv_dist_init, below). */
typedef struct qkv_dist qkv_dist;

/* Versioned. qkv_train_options_init sets struct_size and the defaults in parentheses. */
typedef struct qkv_train_options {
    size_t struct_size;
    const qkv_dataset *train; /* required */
    const qkv_dataset *val;   /* NULL: no validation */
    int64_t batch;            /* B sequences per micro-batch (8) */
    int64_t seq;              /* T tokens per sequence (128; at most the model's n_positions) */
    int64_t accum;            /* micro-batches per step (1) */
    int64_t steps;            /* train until the trainer has taken this many steps (1000) */
    uint64_t seed;            /* batch sampling (1234) */
    double lr, min_lr;        /* peak and final learning rate (1e-3, 1e-4) */
    int64_t warmup;           /* linear warmup steps (100) */
    qkv_lr_decay decay;       /* (QKV_LR_COSINE) */
    double weight_decay;      /* AdamW, as float (0.1) */
    double beta1, beta2, eps; /* AdamW, as float (0.9, 0.95, 1e-8) */
    double clip;              /* global gradient-norm clipping (1.0; 0 = off) */
    int64_t eval_every;       /* validation every N steps and after the last (100; 0 = last) */
    int64_t eval_batches;     /* validation batches: qkv_dataset_sequential 0.. (20) */
    /* the run directory (created if missing), or NULL to write nothing. On entry
     * metrics.jsonl is cut back to the lines of steps <= qkv_trainer_steps(t); a directory
     * holding a checkpoint of a later step is refused (INVALID_ARG). (NULL) */
    const char *run_dir;
    int64_t save_every;          /* checkpoint every N steps (200; 0 = only the last) */
    int64_t keep;                /* checkpoints kept, the newest (3) */
    const char *checkpoint_json; /* the user JSON stored in every checkpoint (NULL: "{}") */
    /* Masked-LM batches (BERT trainers): each token is chosen with this probability (a pure
     * function of seed, step and position); a chosen token is the target and its input becomes
     * mask_token_id 80% of the time, a random token 10%, itself 10%, as transformers'
     * DataCollatorForLanguageModeling; the other targets are ignored. (0.15, -1: required) */
    double mlm_probability;
    int32_t mask_token_id;
    /* Classifier trainers (qkv_trainer_load_hf_classifier) train on labelled examples instead
     * of train / val datasets (which must then be NULL): each epoch visits every example of
     * cls_train once, in an order that is a pure function of (seed, epoch) — grouped by length
     * when length_grouped (less padding), as transformers' group_by_length — in micro-batches
     * of `batch` examples padded to their longest (at most seq tokens: build the data with
     * max_length <= seq); the last micro-batch of an epoch may be smaller.
     * qkv_train_epoch_steps gives the steps of an epoch. Validation (eval_every, and after the
     * last step) runs over all of cls_val: loss, accuracy and macro-F1 (single-label: argmax;
     * multi-label: logit > 0; regression: the loss only). (NULL, NULL, 1) */
    const qkv_cls_data *cls_train, *cls_val;
    /* (also for encoder-decoders on sentence pairs: with length_grouped each epoch visits every
     * pair once in batches grouped by source + target length, visited in a seeded order; else
     * each batch's pairs are drawn at random. `qkv train` passes 0 unless --group-by-length 1) */
    int length_grouped;
    /* With a run directory: each validation better than every earlier one of the run (macro-F1
     * for classifiers, else the loss) is saved as run_dir/best.safetensors, a checkpoint
     * like the others (0) */
    int keep_best;
    /* With a run directory: also write a TensorBoard event file, run_dir/events.out.tfevents.
     * <seconds>.<host> (`tensorboard --logdir` reads it): the scalars of every metrics line
     * (train/loss, train/lr, train/grad_norm, train/tokens_per_s; val/loss, val/ppl,
     * val/accuracy, val/macro_f1 when finite), each record flushed as it is written. A resumed
     * run continues the newest event file of the directory, cut back like metrics.jsonl
     * (docs/TRAINING.md, "Watching a run"). (0) */
    int tensorboard;
    /* With tensorboard: a histogram of every trainable tensor ("weights/<name>") at each
     * validation step (eval_every, and the last step), whether or not there is validation
     * data. (0) */
    int tb_histograms;
    /* Data-parallel training (qkv_dist_init; NULL: this process alone). Each rank takes the
     * micro-batches r, r+N, ... of every step (N ranks; batch x accum is the global batch), the
     * gradients are summed over the ranks and every rank takes the same step; rank 0 alone
     * writes the run directory and calls the callbacks (should_stop is polled on every rank
     * and any rank's request stops all). At the start the ranks compare a hash of these
     * options, checkpoint_json, the model's shape, its weights and optimizer state, and the
     * library version: a difference is refused (INVALID_ARG naming the rank). (NULL) */
    qkv_dist *dist;
    /* 1: the reduction order is fixed, so the run is bit-identical for every number of ranks
     * (1 included): each micro-batch's gradient is computed alone and they are added in
     * micro-batch order (on rank 0, then broadcast). 0: each rank accumulates its own
     * micro-batches and an all-reduce sums them (faster; equal within rounding). (0) */
    int exact_reduce;
    /* 1: ZeRO-1 — AdamW's moments sharded across the ranks: each keeps those of a contiguous
     * slice of the parameters (8 bytes per parameter become 8/N), the gradients are
     * reduce-scattered (exact_reduce: scattered from rank 0), each rank steps its slice and
     * the weights are all-gathered; the same results as 0 (exact_reduce: the same bits).
     * Checkpoints keep their format (rank 0 gathers the moments), so a run resumes with or
     * without it on any number of ranks. On return the trainer holds its slice of the moments
     * only: qkv_trainer_step / _save refuse it (resume from the run's checkpoint to go on). With
     * one process (dist NULL) it changes nothing. (0) */
    int zero;
    /* Encoder-decoder trainers (marian) train on a parallel dataset (qkv_data_prepare_parallel;
     * train and val): micro-batch m holds `batch` sentence pairs drawn uniformly as a pure
     * function of (seed, m), padded to the batch's longest source and target, the target cut at
     * seq tokens and the source at src_seq (0: seq), each keeping its end-of-sentence id last;
     * validation runs over the val split's pairs in order, eval_batches batches at most, its
     * loss per labelled target token (label smoothing included: qkv_trainer_set_label_smoothing).
     * (0) */
    int64_t src_seq;
    /* Classifier runs (cls_train): examples per forward and backward. Each batch of `batch`
     * examples is computed as ceil(batch / micro_batch) micro-batches of consecutive examples
     * (the last ones smaller, or empty at an epoch's short last batch), each scaled by its
     * share of the batch, so the step's loss and gradient are the batch's means; micro-batch s
     * of batch m draws its dropout masks from (seed, m, s), and with dist the ranks share them
     * as they share accum's. The run's results depend on it (through rounding and the dropout
     * masks), not on the number of ranks: keep it when resuming. 0 (or >= batch): the batch
     * is one micro-batch. (0) */
    int64_t micro_batch;
} qkv_train_options;
/* The logits of every example of d under a classifier trainer (eval mode: no dropout):
 * out [count, num_labels], in d's order, computed in batches of `batch` examples of alike
 * lengths. */
QKV_API qkv_status qkv_trainer_predict(qkv_runtime *rt, qkv_trainer *t, const qkv_cls_data *d,
                                       int64_t batch, float *out);

/* ---------------------------------------------------------------- several processes (MPI) */

/* qkv_dist: this process's part in a data-parallel run over MPI (the build option
 * QKV_WITH_MPI; docs/TRAINING.md, "Several processes (MPI)"). 1 if this library was built
 * with MPI: */
QKV_API int qkv_dist_available(void);
/* Joins the MPI job (MPI_Init_thread unless MPI is already initialized) on a copy of
 * MPI_COMM_WORLD whose errors are returned, not fatal. Every collective of the training loop
 * then waits at most timeout_s seconds: a rank that died or hangs makes the others fail with
 * QKV_ERR_PEER instead of waiting forever. UNSUPPORTED in a build without MPI. */
QKV_API qkv_status qkv_dist_init(int *argc, char ***argv, double timeout_s, qkv_dist **out);
QKV_API int qkv_dist_rank(const qkv_dist *d); /* 0 for NULL */
QKV_API int qkv_dist_size(const qkv_dist *d); /* 1 for NULL */
/* Leaves the job (MPI_Finalize if qkv_dist_init initialized MPI) and frees d; NULL is fine. */
QKV_API void qkv_dist_finalize(qkv_dist *d);
/* Ends every process of the job with exit status code (MPI_Abort): after an error on one rank
 * that the others did not see, so that none waits for it. */
QKV_API void qkv_dist_abort(qkv_dist *d, int code);

/* Optimizer steps of one epoch over n examples: ceil(ceil(n / batch) / accum). */
QKV_API int64_t qkv_train_epoch_steps(int64_t n, int64_t batch, int64_t accum);
QKV_API void qkv_train_options_init(qkv_train_options *o);

typedef enum qkv_train_record_kind {
    QKV_TRAIN_RECORD_STEP = 0, /* a training step */
    QKV_TRAIN_RECORD_EVAL = 1  /* a validation */
} qkv_train_record_kind;

/* Versioned (set by the library: read a field only if struct_size covers it). One line of
 * metrics.jsonl. Fields of the other kind are NaN. */
typedef struct qkv_train_record {
    size_t struct_size;
    qkv_train_record_kind kind;
    int64_t step;        /* steps taken (from 1 after the first step) */
    int64_t total_steps; /* options.steps */
    double loss;         /* STEP: mean loss over the accumulated micro-batches */
    double lr, grad_norm;
    double tokens_per_s, step_s, elapsed_s; /* elapsed since this qkv_train_run began */
    double val_loss, val_ppl;               /* EVAL */
    /* 1 for the lines of metrics.jsonl kept from before a resumed run, sent once at the start
     * (so a plot can be redrawn whole); their numbers come from the file */
    int replayed;
    const char *json; /* the metrics.jsonl line, without its newline */
    /* classifier runs: the epochs done (fractional: step / steps of an epoch); EVAL: the
     * accuracy and macro-F1 on cls_val (NaN for regression); best: 1 when this EVAL is the
     * best of the run so far (keep_best saved it) */
    double epoch, val_accuracy, val_macro_f1;
    int best;
} qkv_train_record;

/* Versioned. Every member may be NULL; they run on the calling thread of qkv_train_run. */
typedef struct qkv_train_callbacks {
    size_t struct_size;
    /* after every step of this call (a STEP record, never replayed) */
    void (*progress)(const qkv_train_record *r, void *user);
    /* every metrics line: the replayed ones first, then each STEP and EVAL line as written */
    void (*metrics)(const qkv_train_record *r, void *user);
    /* polled before the first step and after every step: nonzero stops the run, which saves
     * a checkpoint of the step reached (with a run directory) and returns INTERRUPTED */
    int (*should_stop)(void *user);
    /* after each checkpoint is written (and older ones pruned) */
    void (*checkpoint)(int64_t step, const char *path, void *user);
} qkv_train_callbacks;

/* Trains t until qkv_trainer_steps(t) == opt->steps (nothing to do if it is already there).
 * cb may be NULL. Returns OK when done; INTERRUPTED after should_stop (checkpoint saved);
 * NOT_FINITE when a step's loss or gradient norm is not finite: the weights are not updated
 * and nothing of that step is written (the message names the step, the loss and the norm);
 * INVALID_ARG for bad options (naming the field); IO, NOMEM and the trainer's errors as they
 * come. The library installs no signal handler: map signals to should_stop. */
QKV_API qkv_status qkv_train_run(qkv_runtime *rt, qkv_trainer *t, const qkv_train_options *opt,
                                 const qkv_train_callbacks *cb, void *user);
/* The step of the newest run_dir/ckpt_NNNNNNNN.safetensors, or -1 if there is none. */
QKV_API int64_t qkv_train_latest_checkpoint(const char *run_dir);
/* qkv_trainer_restore of the newest intact checkpoint of run_dir: NOT_FOUND when there is
 * none. A checkpoint that fails to restore as damaged (malformed, its data_crc32c checksum not
 * matching, unreadable) is renamed to NAME.damaged (kept, never deleted) and the next older one
 * is tried; when none is left, the newest one's error is returned. */
QKV_API qkv_status qkv_train_resume(const char *run_dir, qkv_trainer **out, char **user_json);
/* The same; *set_aside (may be NULL) gets, when damaged checkpoints were set aside, a message
 * naming each and why (free with qkv_free), else NULL: a front end should show it. */
QKV_API qkv_status qkv_train_resume_checked(const char *run_dir, qkv_trainer **out,
                                            char **user_json, char **set_aside);

/* ---------------------------------------------------------------- classification metrics */

/* The metrics of a classifier's predictions over C classes (labels 0 .. C-1), computed as
 * scikit-learn 1.9 computes them with labels=range(C) and zero_division left at its default
 * (a ratio whose denominator is 0 is 0): precision_recall_fscore_support, confusion_matrix /
 * multilabel_confusion_matrix, accuracy_score, and the text of classification_report byte for
 * byte (tests/test_cls_metrics.c holds every number to sklearn's, docs/TRAINING.md). Averages
 * sum in numpy's (pairwise) order, so they carry the same bits and round the same way.
 * Single-label: one class id per sample. Multi-label: a 0/1 indicator matrix [N, C] per side,
 * a sample may have any number of classes. The library allocates the struct; fields may be
 * appended in later versions; every array is owned by it and freed with it. */
typedef struct qkv_cls_average {
    double precision, recall, f1;
} qkv_cls_average;

typedef struct qkv_cls_metrics {
    int64_t n_labels;  /* C */
    int64_t n_samples; /* N */
    int multilabel;    /* 0: from class ids; 1: from indicator matrices */
    /* per class [C]: tp / predicted, tp / true, 2 tp / (true + predicted); 0 for 0/0 */
    const double *precision, *recall, *f1;
    const int64_t *support;   /* [C] samples whose true labels hold the class */
    const int64_t *predicted; /* [C] samples whose predicted labels hold the class */
    int64_t support_total;    /* the sum of support (N for single-label) */
    /* single-label: correct / N; multi-label: samples whose whole row is predicted exactly */
    double accuracy;
    /* micro: from the summed counts (single-label: all three equal accuracy); macro: the mean
     * over classes; weighted: the mean weighted by support (the plain mean when no class has
     * support); samples: the mean over samples of each sample's ratios (multi-label only,
     * else all 0) */
    qkv_cls_average micro, macro, weighted, samples;
    /* single-label [C, C]: confusion[t*C + p] samples of true class t predicted as p (row =
     * true, as sklearn's confusion_matrix); multi-label [C, 2, 2]: per class tn, fp, fn, tp */
    const int64_t *confusion;
} qkv_cls_metrics;

/* From class ids y_true[N], y_pred[N] in [0, n_labels). INVALID_ARG names an id out of range
 * (and NULL pointers, N < 1, n_labels < 1 or above 2^20); NOMEM. *out: free with
 * qkv_cls_metrics_free. */
QKV_API qkv_status qkv_cls_metrics_compute(const int32_t *y_true, const int32_t *y_pred, int64_t n,
                                           int64_t n_labels, qkv_cls_metrics **out);
/* From indicator matrices y_true[N, C], y_pred[N, C] of 0s and 1s (any other value is
 * INVALID_ARG naming it). */
QKV_API qkv_status qkv_cls_metrics_compute_multilabel(const uint8_t *y_true, const uint8_t *y_pred,
                                                      int64_t n, int64_t n_labels,
                                                      qkv_cls_metrics **out);
QKV_API void qkv_cls_metrics_free(qkv_cls_metrics *m);

/* classification_report(y_true, y_pred, labels=range(C), target_names=names, digits=digits)
 * as sklearn prints it: one row per class, then "accuracy", "macro avg", "weighted avg"
 * (multi-label: "micro avg", "macro avg", "weighted avg", "samples avg"), values rounded half
 * to even on their binary value, the name column as wide as the longest of the names (in code
 * points, as Python's len()), "weighted avg" and digits. names: C strings of valid UTF-8, or
 * NULL for "0" .. "C-1". digits in [0, 60]. *text (NUL-terminated, ends with "\n"): free with
 * qkv_free. */
QKV_API qkv_status qkv_cls_report(const qkv_cls_metrics *m, const char *const *names, int digits,
                                  char **text);
/* The same numbers unrounded as one JSON object (for metrics files): n_samples, n_labels,
 * multilabel, accuracy, "classes": [{name, precision, recall, f1-score, support}] in label
 * order, "micro avg", "macro avg", "weighted avg" (and multi-label "samples avg") as {precision,
 * recall, f1-score, support}, and "confusion_matrix" (C rows of C counts) or, multi-label,
 * "multilabel_confusion_matrix" (C of [[tn, fp], [fn, tp]]). Reals print with 17 significant
 * digits (they read back to the same double). *json: free with qkv_free. */
QKV_API qkv_status qkv_cls_report_json(const qkv_cls_metrics *m, const char *const *names,
                                       char **json);
/* The confusion matrix as an aligned text table: single-label, a header row of the predicted
 * classes' names and one row per true class, counts right-aligned (columns as wide as their
 * name or largest count, in code points); multi-label, one row per class with tn, fp, fn, tp.
 * *text: free with qkv_free. */
QKV_API qkv_status qkv_cls_confusion_text(const qkv_cls_metrics *m, const char *const *names,
                                          char **text);

/* ---------------------------------------------------------------- logistic regression */

/* Multinomial logistic regression, the linear baseline of a classifier on frozen features
 * (e.g. sentence embeddings), fitted as scikit-learn's LogisticRegression(C, penalty="l2",
 * solver="lbfgs", fit_intercept) fits it: for C >= 3 classes the full softmax model (one row
 * of weights per class), for 2 classes the binomial one (one row, the positive class 1); the
 * objective is sklearn's, the mean cross-entropy plus ||W||^2 / (2 C n), the intercepts not
 * penalized. It is strictly convex (in the subspace the solver moves in), so any solver that
 * converges reaches sklearn's optimum; qkv's is L-BFGS (10 pairs, weak-Wolfe line search)
 * in double precision from zero, to a gradient of 1e-10 by default (closer than sklearn's own
 * stop). Deterministic: the same bits for any thread count.
 * docs/CLASSIFY.md, "Baselines", has the details. */
typedef struct qkv_logreg qkv_logreg;

typedef struct qkv_logreg_options {
    size_t struct_size; /* 0 or sizeof(qkv_logreg_options): see the top of this file */
    double C;           /* inverse regularization strength, > 0 (1.0; 0 means the default) */
    int no_intercept;   /* 1: no intercept (fit_intercept=False) */
    int64_t max_iter;   /* most L-BFGS iterations (0: 10000) */
    double tol;         /* stop when every |gradient| of the objective <= tol (0: 1e-10; the
                           scale of sklearn's tol, but sklearn also stops when the objective
                           falls by less than 64 eps relative, at about 1e-8) */
} qkv_logreg_options;
QKV_API void qkv_logreg_default_options_sized(qkv_logreg_options *o, size_t struct_size);
#define qkv_logreg_default_options(o) qkv_logreg_default_options_sized((o), sizeof *(o))

/* How a fit ended (filled up to struct_size). */
typedef struct qkv_logreg_stats {
    size_t struct_size;
    int64_t iterations;  /* L-BFGS iterations taken */
    int64_t evaluations; /* objective + gradient evaluations */
    double loss;         /* the objective at the result */
    double grad_max;     /* max |gradient| at the result */
    int converged;       /* 1: grad_max <= tol; 0: max_iter reached, or the line search found
                            no step first (the gradient is then at rounding level) */
} qkv_logreg_stats;

/* Fits x [n, d] (row-major) with labels y [n] in [0, n_classes): every class must occur
 * (INVALID_ARG naming one that does not), 2 <= n_classes <= 2^20, every feature finite
 * (INVALID_ARG naming row and column). rt NULL = the default runtime. *out: free with
 * qkv_logreg_free. A fit that does not converge still returns QKV_OK (see the stats). */
QKV_API qkv_status qkv_logreg_fit(qkv_runtime *rt, const float *x, const int32_t *y, int64_t n,
                                  int64_t d, int64_t n_classes, const qkv_logreg_options *opts,
                                  qkv_logreg **out);
QKV_API void qkv_logreg_free(qkv_logreg *m);
QKV_API int64_t qkv_logreg_num_classes(const qkv_logreg *m);
QKV_API int64_t qkv_logreg_dim(const qkv_logreg *m);
/* sklearn's coef_ [rows, d] and intercept_ [rows] (zeros without an intercept): rows is 1 for
 * two classes (the weights of class 1), else n_classes. Owned by m. */
QKV_API const double *qkv_logreg_coef(const qkv_logreg *m, int64_t *rows);
QKV_API const double *qkv_logreg_intercept(const qkv_logreg *m);
QKV_API qkv_status qkv_logreg_get_stats(const qkv_logreg *m, qkv_logreg_stats *out);
/* predict_proba: proba [n, n_classes] (softmax of the decision values; two classes: 1 - p,
 * p = sigmoid). x [n, d] must be finite. */
QKV_API qkv_status qkv_logreg_predict_proba(const qkv_logreg *m, const float *x, int64_t n,
                                            double *proba);
/* predict: the class of the largest decision value, the first on ties (two classes: 1 iff
 * the decision value is > 0), as sklearn. */
QKV_API qkv_status qkv_logreg_predict(const qkv_logreg *m, const float *x, int64_t n,
                                      int32_t *pred);

/* ---------------------------------------------------------------- translation models */

/* An encoder-decoder translation model (MarianMT, the OPUS-MT family; T5 and T5 v1.1) loaded
 * from a Hugging Face directory: config.json (model_type "marian" or "t5"),
 * generation_config.json if present (then
 * the decoding defaults come from it alone, as in transformers), model.safetensors
 * (docs/TRANSLATION.md, "Translating"). Generation follows transformers' generate() for it:
 * decoder_start_token_id, greedy or beam search, the directory's bad_words_ids and
 * forced_eos_token_id. A loaded model never changes: any number of threads may run it at once.
 * Errors of load as qkv_lm_load (UNSUPPORTED / FORMAT naming the field or tensor, IO). */
typedef struct qkv_seq2seq qkv_seq2seq;
QKV_API qkv_status qkv_seq2seq_load(const char *dir, qkv_seq2seq **out);
/* qkv_seq2seq_load with options (NULL: the defaults; qkv_model_options.dtype: bf16, f16,
 * int8), and the dtype it was loaded in (QKV_DTYPE_F32 for NULL). */
QKV_API qkv_status qkv_seq2seq_load_opts(const char *dir, const qkv_model_options *opts,
                                         qkv_seq2seq **out);
QKV_API qkv_dtype qkv_seq2seq_dtype(const qkv_seq2seq *m);
QKV_API void qkv_seq2seq_free(qkv_seq2seq *m);
/* The decoder's vocabulary (0 for NULL) and the most source tokens one sentence may have
 * (max_position_embeddings). */
QKV_API int64_t qkv_seq2seq_vocab_size(const qkv_seq2seq *m);
QKV_API int64_t qkv_seq2seq_max_source(const qkv_seq2seq *m);
/* The text the directory suggests putting before every source line: for T5, the "prefix" of
 * the first translation* entry of config.json's task_specific_params (e.g. "translate English
 * to German: "); "" when there is none, for Marian and for NULL. Owned by the model. */
QKV_API const char *qkv_seq2seq_source_prefix(const qkv_seq2seq *m);

typedef enum qkv_early_stopping {
    QKV_EARLY_STOP_FALSE = 0, /* transformers' early_stopping=False (its heuristic) */
    QKV_EARLY_STOP_TRUE = 1,  /* stop a sentence when num_beams hypotheses are finished */
    QKV_EARLY_STOP_NEVER = 2, /* "never": the canonical beam search */
} qkv_early_stopping;

/* How to decode; versioned (struct_size first). qkv_seq2seq_default_options fills in the
 * model directory's generation defaults; a field the program's struct lacks keeps them. */
typedef struct qkv_translate_options {
    size_t struct_size;     /* 0 or sizeof(qkv_translate_options): see the top of this file */
    int64_t num_beams;      /* 1: greedy; > 1 beam search */
    int64_t max_length;     /* target tokens at most, counting the start token (transformers'
                               max_length); <= max_position_embeddings */
    int64_t max_new_tokens; /* > 0: overrides max_length with 1 + max_new_tokens */
    float length_penalty;   /* beam scores are sum log p / length^length_penalty */
    qkv_early_stopping early_stopping;
    int64_t no_repeat_ngram_size; /* 0: off; else no n-gram of this size occurs twice */
    int renormalize_logits;       /* 1: log_softmax again after the logits processors */
} qkv_translate_options;

QKV_API void qkv_seq2seq_default_options_sized(const qkv_seq2seq *m, qkv_translate_options *o,
                                               size_t struct_size);
#define qkv_seq2seq_default_options(m, o) qkv_seq2seq_default_options_sized((m), (o), sizeof *(o))
/* Target tokens one sentence may get under opts (NULL: the defaults): max_length - 1, or
 * max_new_tokens. 0 on invalid options (qkv_last_error says why). */
QKV_API int64_t qkv_seq2seq_max_output(const qkv_seq2seq *m, const qkv_translate_options *opts);

/* Translates n sources at once: src [Σ lens] packed ids (the tokenizer's, </s> included), lens
 * [n] each in [1, qkv_seq2seq_max_source]. out [n, max_output] receives sentence i's target ids
 * at row i (without the start token; ending with EOS unless max_length cut it), out_lens [n]
 * their counts; scores [n] (may be NULL) the finished hypothesis' score (beam search: its
 * sequences_scores; greedy: the sum of the chosen tokens' log-probabilities after the logits
 * processors, divided by length^length_penalty). Sentences of any lengths are batched; each
 * result equals translating that sentence alone (up to float rounding of near ties).
 * opts NULL = the defaults. Errors: INVALID_ARG (arguments, options naming the field), NOMEM. */
QKV_API qkv_status qkv_seq2seq_generate(qkv_runtime *rt, const qkv_seq2seq *m, const int32_t *src,
                                        const int64_t *lens, size_t n,
                                        const qkv_translate_options *opts, int32_t *out,
                                        int64_t *out_lens, float *scores);

/* Text in, text out: n NUL-terminated sources are encoded with tok (the model directory's
 * tokenizer: source.spm + vocab.json), translated as qkv_seq2seq_generate and decoded without
 * special tokens. out[i] is a NUL-terminated string to release with qkv_free (all NULL on
 * failure); scores may be NULL. A source longer than qkv_seq2seq_max_source tokens is
 * INVALID_ARG naming it. Decodes with tok too: a directory with separate source and target
 * vocabularies (MarianTokenizer's separate_vocabs) needs qkv_seq2seq_translate_with. */
QKV_API qkv_status qkv_seq2seq_translate(qkv_runtime *rt, const qkv_seq2seq *m,
                                         const struct qkv_tokenizer *tok, const char *const *texts,
                                         size_t n, const qkv_translate_options *opts, char **out,
                                         float *scores);
/* The same, decoding the output with ttok (qkv_tokenizer_load_target of the directory). */
QKV_API qkv_status qkv_seq2seq_translate_with(qkv_runtime *rt, const qkv_seq2seq *m,
                                              const struct qkv_tokenizer *tok,
                                              const struct qkv_tokenizer *ttok,
                                              const char *const *texts, size_t n,
                                              const qkv_translate_options *opts, char **out,
                                              float *scores);

/* Attention maps of an encoder-decoder (docs/INTERPRET.md, "Encoder-decoder maps"): layers
 * and heads of the encoder (decoder 0) or of the decoder (decoder 1; its cross-attention has
 * the decoder's), 0 for NULL; decoder_start_token_id and eos_token_id (-1 for NULL). */
QKV_API int64_t qkv_seq2seq_num_layers(const qkv_seq2seq *m, int decoder);
QKV_API int64_t qkv_seq2seq_num_heads(const qkv_seq2seq *m, int decoder);
QKV_API int32_t qkv_seq2seq_start_token(const qkv_seq2seq *m);
QKV_API int32_t qkv_seq2seq_eos_token(const qkv_seq2seq *m);
/* Floats the maps of a source of S tokens and a decoder input of T tokens take:
 * Le·He·S² + Ld·Hd·T² + Ld·Hd·T·S. INVALID_ARG for NULL or sizes < 1, OVERFLOW; UNSUPPORTED
 * for a T5 model (maps are drawn for MarianMT only; this and qkv_seq2seq_attention). */
QKV_API qkv_status qkv_seq2seq_attention_len(const qkv_seq2seq *m, int64_t S, int64_t T,
                                             size_t *out);
/* Every layer's and head's attention probabilities of one source src [S] (the tokenizer's
 * ids, </s> included) and one decoder input dec [T] (transformers' decoder_input_ids: normally
 * decoder_start_token_id, then the target tokens but the last — the labels shifted right),
 * packed in probs one after the other:
 *   encoder self-attention  [Le, He, S, S]
 *   decoder self-attention  [Ld, Hd, T, T]  (causal: 0 for keys after the query)
 *   cross-attention         [Ld, Hd, T, S]  (row t: decoder token t over the source tokens)
 * Computed by the forward that translation runs — the encoder over the source, then the
 * decoder one token per step against its cache, as qkv_seq2seq_generate does — with
 * qkv_attention_probs on each layer's own q and k beside its attention; dropout never
 * applies. Row t of the decoder's maps is the step that reads dec[t] and predicts the next
 * token. probs_len: probs' capacity in floats, at least qkv_seq2seq_attention_len.
 * INVALID_ARG for NULL, S or T outside [1, max_position_embeddings], ids outside the
 * vocabulary (naming the token), a short probs; NOMEM. */
QKV_API qkv_status qkv_seq2seq_attention(qkv_runtime *rt, const qkv_seq2seq *m, const int32_t *src,
                                         int64_t S, const int32_t *dec, int64_t T, float *probs,
                                         size_t probs_len);
/* Summaries of a map whose queries and keys are two different sequences (cross-attention)
 * p [Tq, Tk]: entropy, cls and sep as qkv_attention_head_stats; distance and prev are NaN
 * (positions of two sequences do not compare). Same errors. */
QKV_API qkv_status qkv_attention_head_stats_cross(const float *p, int64_t Tq, int64_t Tk,
                                                  const uint8_t *marks, qkv_head_stats *out);

/* ---------------------------------------------------------------- translation metrics */

/* BLEU and chrF / chrF++ of hypotheses against one or more references, as sacreBLEU
 * QKV_SACREBLEU_VERSION computes them (sacrebleu.corpus_bleu / corpus_chrf, and the CLI's
 * text): every number carries sacreBLEU's bits (tests/test_sacrebleu.c holds them to the
 * sacrebleu package's on fixtures; docs/TRANSLATION.md). The texts are Python str to
 * sacreBLEU: qkv decodes UTF-8 strictly (invalid UTF-8 is INVALID_ARG naming the line) and
 * answers Python's whitespace, str.lower and the 'intl' tokenizer's \p{P} \p{S} \p{N} for
 * every code point as that Python does. Sentence-level scores are a corpus of one segment
 * (sacrebleu.sentence_bleu sets effective_order). Layout of the texts: hyps[i] for segment i
 * < n; refs[r * n + i] for reference r < n_refs of segment i (sacreBLEU's list of reference
 * streams); NUL-terminated UTF-8, "" allowed. */
#define QKV_SACREBLEU_VERSION "2.6.0"
#define QKV_BLEU_MAX_ORDER 16

typedef enum qkv_bleu_tokenize {
    QKV_BLEU_TOK_13A = 0,  /* mteval-v13a, sacreBLEU's default */
    QKV_BLEU_TOK_INTL = 1, /* mteval-v14 international: Unicode punctuation and symbols */
    QKV_BLEU_TOK_NONE = 2, /* whitespace only */
} qkv_bleu_tokenize;

typedef enum qkv_bleu_smooth {
    QKV_BLEU_SMOOTH_EXP = 0, /* sacreBLEU's default */
    QKV_BLEU_SMOOTH_NONE = 1,
    QKV_BLEU_SMOOTH_FLOOR = 2,
    QKV_BLEU_SMOOTH_ADD_K = 3,
} qkv_bleu_smooth;

typedef struct qkv_bleu_options {
    size_t struct_size;         /* 0 or sizeof(qkv_bleu_options): see the top of this file */
    qkv_bleu_tokenize tokenize; /* (13A) */
    qkv_bleu_smooth smooth;     /* (EXP) */
    double smooth_value;        /* FLOOR / ADD_K: the value (0: sacreBLEU's 0.1 / 1) */
    int max_ngram_order;        /* 1..QKV_BLEU_MAX_ORDER (4; 0 means 4) */
    int effective_order;        /* 1: stop at the highest order with n-grams (sentence BLEU) */
    int lowercase;              /* 1: Python's str.lower first (case:lc) */
} qkv_bleu_options;

typedef struct qkv_bleu_score {
    size_t struct_size; /* 0 or sizeof(qkv_bleu_score) */
    double score;       /* 0..100 */
    double bp;          /* brevity penalty */
    double ratio;       /* sys_len / ref_len (0 when ref_len is 0) */
    int64_t sys_len, ref_len;
    int max_ngram_order;
    /* per order n = 1..max_ngram_order at [n-1]: matched and total hypothesis n-grams (not
     * integers under ADD_K, which adds k from order 2) and the precision in percent */
    double counts[QKV_BLEU_MAX_ORDER], totals[QKV_BLEU_MAX_ORDER];
    double precisions[QKV_BLEU_MAX_ORDER];
} qkv_bleu_score;

/* n >= 1 segments, n_refs >= 1; opts may be NULL (the defaults). INVALID_ARG: NULL texts,
 * invalid UTF-8 (naming hypothesis / reference r and the line i + 1), options out of range. */
QKV_API qkv_status qkv_bleu(const char *const *hyps, int64_t n, const char *const *refs,
                            int64_t n_refs, const qkv_bleu_options *opts, qkv_bleu_score *out);

typedef struct qkv_chrf_options {
    size_t struct_size; /* 0 or sizeof(qkv_chrf_options) */
    int char_order;     /* character n-gram order 1..32 (6; 0 means 6) */
    int word_order;     /* word n-gram order 0..32 (0; 2 is chrF++) */
    int beta;           /* recall weight 1..100 (2; 0 means 2) */
    int lowercase;      /* 1: Python's str.lower first */
    int whitespace;     /* 1: keep whitespace in character n-grams */
    int eps_smoothing;  /* 1: chrF++.py's epsilon smoothing instead of the effective order */
} qkv_chrf_options;

typedef struct qkv_chrf_score {
    size_t struct_size; /* 0 or sizeof(qkv_chrf_score) */
    double score;       /* 0..100 */
    int char_order, word_order, beta;
} qkv_chrf_score;

/* As qkv_bleu: for each segment the reference of the best sentence F-score is kept (the
 * first on ties), its statistics summed over the corpus. */
QKV_API qkv_status qkv_chrf(const char *const *hyps, int64_t n, const char *const *refs,
                            int64_t n_refs, const qkv_chrf_options *opts, qkv_chrf_score *out);

/* sacreBLEU's signature, e.g. "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
 * and "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0". *text: free with
 * qkv_free. */
QKV_API qkv_status qkv_bleu_signature(const qkv_bleu_options *opts, int64_t n_refs, char **text);
QKV_API qkv_status qkv_chrf_signature(const qkv_chrf_options *opts, int64_t n_refs, char **text);
/* The line sacreBLEU's CLI prints with --format text and --width width (0..17; its default
 * is 1): "BLEU|SIGNATURE = 31.4 62.5/40.0/25.0/14.3 (BP = 1.000 ratio = 1.000 hyp_len = 8
 * ref_len = 8)" and "chrF2|SIGNATURE = 55.3" (chrF2++ with word_order 2). signature NULL or
 * "": the name alone. *text (no newline): free with qkv_free. */
QKV_API qkv_status qkv_bleu_format(const qkv_bleu_score *s, const char *signature, int width,
                                   char **text);
QKV_API qkv_status qkv_chrf_format(const qkv_chrf_score *s, const char *signature, int width,
                                   char **text);

#ifdef __cplusplus
}
#endif
#endif /* QKV_H */
