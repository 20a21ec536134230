/* main.c — the qkv command: dispatches to subcommands, maps statuses to exit codes
 * (0 ok, 1 failure — including an output that could not be written: a full disk, the file-size
 * limit — 2 bad usage or bad input). */
#include "cli.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const cli_command commands[] = {
    {"info", "version, build options, CPU features, kernels and threads", cmd_info, cmd_info_help},
    {"demo", "a short attention demo: a causal attention pattern, then a timed run", cmd_demo,
     cmd_demo_help},
    {"embed", "sentence embeddings of text lines (all-MiniLM-L6-v2 by default)", cmd_embed,
     cmd_embed_help},
    {"classify", "labels of text lines (or pairs) with a BertForSequenceClassification model",
     cmd_classify, cmd_classify_help},
    {"evaluate", "score a classifier (sklearn's report) or translations (BLEU, chrF)", cmd_evaluate,
     cmd_evaluate_help},
    {"baseline",
     "baselines of a text-classification dataset: majority class, logistic regression "
     "on embeddings",
     cmd_baseline, cmd_baseline_help},
    {"search", "semantic search: rank the lines of a corpus against queries", cmd_search,
     cmd_search_help},
    {"generate", "continue a prompt with a GPT-2 / Llama-style model, streaming the text",
     cmd_generate, cmd_generate_help},
    {"perplexity", "how well a GPT-2 / Llama-style model predicts a held-out text (per dtype)",
     cmd_perplexity, cmd_perplexity_help},
    {"attention",
     "every layer's and head's attention on a text: safetensors, PNG heatmaps, an HTML page",
     cmd_attention, cmd_attention_help},
    {"translate", "translate lines with a MarianMT (OPUS-MT) model directory", cmd_translate,
     cmd_translate_help},
    {"inspect", "list the tensors and metadata of a .safetensors file", cmd_inspect,
     cmd_inspect_help},
    {"tokenize", "text to token ids with a Hugging Face tokenizer (WordPiece, byte-level BPE)",
     cmd_tokenize, cmd_tokenize_help},
    {"tokenizer", "tokenizer tools: `qkv tokenizer train` learns a byte-level BPE", cmd_tokenizer,
     cmd_tokenize_help},
    {"data", "datasets for training: `qkv data prepare` tokenizes text into shards", cmd_data,
     cmd_data_help},
    {"train", "train a GPT-2 (from scratch or a checkpoint) on a prepared dataset", cmd_train,
     cmd_train_help},
    {"finetune", "fine-tune a BERT into a text classifier on labelled data (TSV, CSV, JSONL)",
     cmd_finetune, cmd_finetune_help},
    {"report", "one offline HTML page of a training run: curves, configuration, reports",
     cmd_report, cmd_report_help},
    {"lora", "LoRA adapters: `qkv lora merge` folds one into a model directory", cmd_lora,
     cmd_lora_help},
    {"bench", "timings as JSON lines: attention, train, generate, embed, finetune, tokenize",
     cmd_bench, cmd_bench_help},
    {"serve", "an HTTP API (OpenAI's shapes): embeddings, completions, tokenize, metrics",
     cmd_serve, cmd_serve_help},
};
static const size_t n_commands = sizeof commands / sizeof commands[0];

int cli_is_help(const char *arg) { return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0; }

int cli_report(const char *what, qkv_status s) {
    const char *detail = qkv_last_error();
    /* Library messages about a file start with its name; say it once. */
    size_t wl = strlen(what);
    if (strncmp(detail, what, wl) == 0 && strncmp(detail + wl, ": ", 2) == 0) detail += wl + 2;
    fprintf(stderr, "qkv: %s: %s%s%s\n", what, qkv_strerror(s), *detail ? ": " : "", detail);
    switch (s) {
    case QKV_ERR_INVALID_ARG:
    case QKV_ERR_FORMAT:
    case QKV_ERR_NOT_FOUND:
    case QKV_ERR_UNSUPPORTED:
    case QKV_ERR_OVERFLOW:
    case QKV_ERR_IO: return EXIT_USAGE;
    default: return EXIT_FAIL;
    }
}

/* The MPI launchers' variables: Open MPI's, then PMIx's and MPICH / Slurm's (PMI). */
long cli_mpi_processes(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) return strtol(v, NULL, 10);
    }
    return getenv("PMIX_RANK") ? 2 : 1; /* PMIx without a size: assume several */
}

int cli_dist_begin(const char *cmd, double timeout_s, qkv_dist **out) {
    *out = NULL;
    if (cli_mpi_processes() <= 1) return 0;
    if (!qkv_dist_available())
        return cli_usage_error(cmd,
                               "started by mpirun (%ld processes), but this qkv was built "
                               "without MPI: every process would train alone into the same "
                               "directory (rebuild with -DQKV_WITH_MPI=ON)",
                               cli_mpi_processes());
    qkv_status s = qkv_dist_init(NULL, NULL, timeout_s, out);
    return s == QKV_OK ? 0 : cli_report("joining the MPI job", s);
}

void cli_dist_end(qkv_dist *d, int rc, int agreed) {
    if (!d) return;
    if (rc != 0 && !agreed) { /* the other ranks may be waiting for this one */
        fprintf(stderr, "qkv: rank %d of %d stops the job (exit %d)\n", qkv_dist_rank(d),
                qkv_dist_size(d), rc);
        qkv_dist_abort(d, rc);
    }
    qkv_dist_finalize(d);
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "qkv %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nRun 'qkv %s --help' for usage.\n", cmd);
    return EXIT_USAGE;
}

static void usage(FILE *f) {
    fprintf(f, "qkv %s — a self-attention and Transformer engine for the CPU\n\n", qkv_version());
    fprintf(f, "Usage: qkv <command> [options]\n       qkv <command> --help\n\nCommands:\n");
    for (size_t i = 0; i < n_commands; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nOptions:\n  -h, --help     show this help\n  --version      print the version\n"
               "\nEnvironment:\n  QKV_NUM_THREADS  threads of the default runtime (default: "
               "online CPUs)\n  QKV_ARCH         force an instruction set: scalar, avx2, avx512\n"
               "\nExit codes: 0 ok, 1 failure, 2 bad usage or bad input.\n");
}

int main(int argc, char **argv) {
    /* A write past the file-size limit (ulimit -f) fails with EFBIG, reported as a failed
     * write (exit 1, the old output kept), instead of SIGXFSZ killing the process mid-file. */
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (cli_is_help(cmd) || strcmp(cmd, "help") == 0) {
        if (argc > 2 && strcmp(cmd, "help") == 0) {
            for (size_t i = 0; i < n_commands; i++)
                if (strcmp(argv[2], commands[i].name) == 0) {
                    commands[i].help();
                    return EXIT_OK;
                }
            fprintf(stderr, "qkv: unknown command '%s'\n", argv[2]);
            return EXIT_USAGE;
        }
        usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("qkv %s\n", qkv_version());
        return EXIT_OK;
    }
    for (size_t i = 0; i < n_commands; i++) {
        if (strcmp(cmd, commands[i].name) != 0) continue;
        for (int a = 2; a < argc; a++) {
            if (strcmp(argv[a], "--") == 0) break;
            if (cli_is_help(argv[a])) {
                commands[i].help();
                return EXIT_OK;
            }
        }
        return commands[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "qkv: unknown command '%s'. Run 'qkv --help' for the list.\n", cmd);
    return EXIT_USAGE;
}
