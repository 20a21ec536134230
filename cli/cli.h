/* cli.h — shared pieces of the qkv command: subcommand signature, exit codes, messages.
 * The CLI uses only the public API (include/qkv.h). */
#ifndef QKV_CLI_H
#define QKV_CLI_H

#include "qkv.h"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

typedef struct cli_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the subcommand name */
    void (*help)(void);
} cli_command;

/* Prints "qkv: <what>: <strerror>: <last_error>" to stderr and returns the exit code for s:
 * 2 for bad input or usage (INVALID_ARG, FORMAT, NOT_FOUND, UNSUPPORTED, IO on open), else 1. */
int cli_report(const char *what, qkv_status s);
/* Prints "qkv <cmd>: <msg>" and a hint to use --help; returns EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...);
/* The number of processes an MPI launcher (mpirun, srun) started, from its environment
 * variables; 1 when there is none. */
long cli_mpi_processes(void);
/* Under mpirun (its environment variables say several processes) joins the job: *out is the
 * handle for the training options, NULL when this process runs alone. Refuses (EXIT_USAGE) a
 * build without MPI started by mpirun. */
int cli_dist_begin(const char *cmd, double timeout_s, qkv_dist **out);
/* Leaves the job. After a failure the other ranks did not share (agreed == 0) it ends every
 * rank (MPI_Abort) so that none waits for this one. */
void cli_dist_end(qkv_dist *d, int rc, int agreed);
/* 1 if arg is -h or --help. */
int cli_is_help(const char *arg);

/* qkv_model_load_lora(m, lora) when lora is not NULL; the exit code (0: applied). */
int cli_apply_lora(const char *cmd, qkv_model *m, const char *lora);

int cmd_info(int argc, char **argv);
void cmd_info_help(void);
int cmd_demo(int argc, char **argv);
void cmd_demo_help(void);
int cmd_embed(int argc, char **argv);
void cmd_embed_help(void);
int cmd_classify(int argc, char **argv);
void cmd_classify_help(void);
/* Loads dir as a classifier for `qkv cmd`: exit 2 with a message when it has no
 * classification head or no tokenizer; returns the exit code (cmd_classify.c). */
int cli_load_classifier(const char *cmd, const char *dir, qkv_dtype dtype, qkv_model **m);
int cmd_evaluate(int argc, char **argv);
void cmd_evaluate_help(void);
/* qkv evaluate --hyp/--ref: translations scored with BLEU / chrF (cmd_evaluate_mt.c). */
int cmd_evaluate_mt(int argc, char **argv);
void cmd_evaluate_mt_help(void);
int cmd_baseline(int argc, char **argv);
void cmd_baseline_help(void);
int cmd_search(int argc, char **argv);
void cmd_search_help(void);
int cmd_generate(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
void cmd_perplexity_help(void);
void cmd_generate_help(void);
int cmd_attention(int argc, char **argv);
void cmd_attention_help(void);
int cmd_inspect(int argc, char **argv);
void cmd_inspect_help(void);
int cmd_tokenize(int argc, char **argv);
void cmd_tokenize_help(void); /* also covers `qkv tokenizer train` */
int cmd_tokenizer(int argc, char **argv);
int cmd_data(int argc, char **argv);
void cmd_data_help(void);
int cmd_train(int argc, char **argv);
void cmd_train_help(void);
int cmd_finetune(int argc, char **argv);
void cmd_finetune_help(void);
int cmd_report(int argc, char **argv);
void cmd_report_help(void);
int cmd_lora(int argc, char **argv);
void cmd_lora_help(void);
int cmd_translate(int argc, char **argv);
void cmd_translate_help(void);
/* Translation as qkv translate does it, shared with qkv serve (cmd_translate.c). The ids of
 * prefix + text[0..len) under tok's default options (*ids malloc'd, *n tokens). */
qkv_status cli_translate_encode(const qkv_tokenizer *tok, const char *prefix, const char *text,
                                size_t len, int32_t **ids, int64_t *n);
/* Translates n sources (ids[i] of lens[i] tokens, each in [1, qkv_seq2seq_max_source]): sorted
 * by length, `batch` at a time through qkv_seq2seq_generate, decoded without special tokens
 * by ttok (the target side's tokenizer: qkv_tokenizer_load_target). In input order: text[i]
 * (qkv_free), score[i], tlen[i] target tokens. On failure the texts made so far are freed and
 * set to NULL. */
qkv_status cli_translate_ids(qkv_runtime *rt, const qkv_seq2seq *m, const qkv_tokenizer *ttok,
                             const qkv_translate_options *o, size_t batch, int32_t *const *ids,
                             const int64_t *lens, size_t n, char **text, float *score,
                             int64_t *tlen);
int cmd_bench(int argc, char **argv);
void cmd_bench_help(void);
int cmd_serve(int argc, char **argv);
void cmd_serve_help(void);

#endif
