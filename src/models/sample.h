/* sample.h — choosing the next token from logits: Hugging Face's logits processors and a
 * reproducible draw (internal API; the options are the public qkv_sampling of qkv.h).
 *
 * The processors follow transformers' semantics exactly (RepetitionPenaltyLogitsProcessor,
 * TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper with min_tokens_to_keep 1), and
 * qkv__sample_token applies them in generate()'s order: repetition penalty, then (when
 * sampling) temperature, top-k, top-p. Removed tokens get -INFINITY. The draw is one uniform
 * number from the counter-based RNG (core/rng.h) at (seed, stream 0, step): a pure function of
 * the logits, the seed and the step, independent of threads and of other sequences. */
#ifndef QKV_MODELS_SAMPLE_H
#define QKV_MODELS_SAMPLE_H

#include "qkv.h"

#include <stdint.h>

/* logits (V): for each token with seen[v] != 0, divided by penalty if positive, else
 * multiplied by it. penalty > 0. */
void qkv__logits_repetition_penalty(float *logits, int64_t V, const uint8_t *seen, float penalty);
/* logits (V) /= t, t > 0. */
void qkv__logits_temperature(float *logits, int64_t V, float t);
/* Keeps the tokens whose logit is >= the k-th largest (ties with it included); k >= 1 (k >= V
 * keeps all). scratch (V) floats. */
void qkv__logits_top_k(float *logits, int64_t V, int64_t k, float *scratch);
/* Removes, in ascending order of logit, the tokens whose cumulative probability is
 * <= 1 - p, always keeping the most likely one. p in (0, 1]. scratch (V) int32. */
void qkv__logits_top_p(float *logits, int64_t V, float p, int32_t *scratch);
/* The index of the first largest logit. */
int32_t qkv__logits_argmax(const float *logits, int64_t V);
/* A token drawn from softmax(logits) with the uniform u in [0, 1): the first token (in id
 * order) whose cumulative probability exceeds u. */
int32_t qkv__sample_from_logits(const float *logits, int64_t V, float u);

/* Bytes of scratch qkv__sample_token needs for a vocabulary of V. */
size_t qkv__sample_scratch_size(int64_t V);
/* The next token under opts: logits (V) are processed in place; seen (V) marks the tokens of
 * the sequence so far (prompt included, as Hugging Face does); seed and step pick the random
 * draw. opts must have been validated (qkv__sampling_check). */
int32_t qkv__sample_token(float *logits, int64_t V, const uint8_t *seen, const qkv_sampling *opts,
                          uint64_t seed, uint64_t step, void *scratch);
/* INVALID_ARG naming the field when opts holds a value out of range. */
qkv_status qkv__sampling_check(const qkv_sampling *opts, int64_t V);

#endif
