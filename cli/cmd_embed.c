/* cmd_embed.c — `qkv embed`: sentence embeddings of the lines of a file (or stdin) with a
 * sentence-transformers model directory (default: models/all-MiniLM-L6-v2). Output: one JSON
 * array per line, or a .npy / .safetensors file for large outputs. */
#include "atomic.h"
#include "cli.h"
#include "textio.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void cmd_embed_help(void) {
    printf("Usage: qkv embed [--model DIR] [options] [FILE | -]\n\n"
           "Embeds every line of FILE (default: stdin) with a sentence-transformers model and\n"
           "writes one embedding per input line, in order. Texts longer than the model's\n"
           "max_seq_length (256 tokens for all-MiniLM-L6-v2) are truncated, as\n"
           "sentence-transformers does.\n\n"
           "Options:\n"
           "  --model DIR        model directory (default: $QKV_MODEL, else\n"
           "                     models/all-MiniLM-L6-v2; scripts/fetch-model.sh installs it)\n"
           "  --lora DIR         apply a PEFT LoRA adapter directory (not merged)\n"
           "  --dtype T          weights of the linear layers: f32 (default, exact), bf16 or\n"
           "                     f16 (half the bytes; embeddings within ~1e-5 of f32 in\n"
           "                     cosine; f16 keeps 3 more bits, bf16 f32's range) or int8\n"
           "                     (int8 weights and activations, a scale per 32 inputs;\n"
           "                     the attention's value projection in bf16)\n"
           "  --format F         jsonl (default: one JSON array per line on stdout),\n"
           "                     npy or safetensors (binary float32 [lines, dim]; needs --out)\n"
           "  --out FILE         write to FILE instead of stdout\n"
           "  --batch N          texts per batch (default 256)\n"
           "  --threads N        threads (default: QKV_NUM_THREADS or all CPUs)\n"
           "  --progress         show progress on stderr even when it is not a terminal\n");
}

#define DEFAULT_MODEL "all-MiniLM-L6-v2"

/* Where the default model is looked for, in order (n: how many were filled). */
static int default_model_places(char places[][PATH_MAX], int cap) {
    int n = 0;
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) *slash = '\0'; /* the executable's directory: <prefix>/bin or the build */
        static const char *const rel[] = {"/../share/qkv/models/" DEFAULT_MODEL,
                                          "/models/" DEFAULT_MODEL, "/../models/" DEFAULT_MODEL};
        for (size_t i = 0; i < sizeof rel / sizeof *rel && n < cap; i++) {
            char p[PATH_MAX];
            if (snprintf(p, sizeof p, "%s%s", exe, rel[i]) >= (int)sizeof p) continue;
            /* canonical, so the list says where that is; a place that does not exist is
               listed as written */
            if (!realpath(p, places[n])) snprintf(places[n], PATH_MAX, "%s", p);
            n++;
        }
    }
    if (n < cap) snprintf(places[n++], PATH_MAX, "models/" DEFAULT_MODEL);
    return n;
}

const char *cli_default_model(void) {
    static char found[PATH_MAX];
    const char *env = getenv("QKV_MODEL");
    if (env && *env) return env;
    char places[4][PATH_MAX];
    int n = default_model_places(places, 4);
    for (int i = 0; i < n; i++) {
        struct stat sb;
        char cfg[PATH_MAX + 16];
        if (snprintf(cfg, sizeof cfg, "%s/config.json", places[i]) >= (int)sizeof cfg) continue;
        if (stat(cfg, &sb) == 0 && S_ISREG(sb.st_mode)) {
            memcpy(found, places[i], sizeof found); /* both PATH_MAX, NUL-terminated */
            return found;
        }
    }
    return "models/" DEFAULT_MODEL; /* none: the load fails and the hint lists the places */
}

int cli_parse_dtype(const char *cmd, const char *val, qkv_dtype *out) {
    if (strcmp(val, "f32") == 0)
        *out = QKV_DTYPE_F32;
    else if (strcmp(val, "bf16") == 0)
        *out = QKV_DTYPE_BF16;
    else if (strcmp(val, "f16") == 0)
        *out = QKV_DTYPE_F16;
    else if (strcmp(val, "int8") == 0)
        *out = QKV_DTYPE_I8;
    else
        return cli_usage_error(cmd, "--dtype is f32, bf16, f16 or int8, not '%s'", val);
    return EXIT_OK;
}

const char *cli_dtype_name(qkv_dtype d) {
    return d == QKV_DTYPE_BF16  ? "bf16"
           : d == QKV_DTYPE_F16 ? "f16"
           : d == QKV_DTYPE_I8  ? "int8"
                                : "f32";
}

int cli_load_model(const char *cmd, const char *dir, qkv_model **m) {
    return cli_load_model_as(cmd, dir, QKV_DTYPE_F32, m);
}

int cli_load_model_as(const char *cmd, const char *dir, qkv_dtype dtype, qkv_model **m) {
    qkv_model_options o = {.struct_size = sizeof o, .dtype = dtype};
    qkv_status s = qkv_model_load_opts(dir, &o, m);
    if (s == QKV_OK) return EXIT_OK;
    int rc = cli_report(dir, s);
    const char *env = getenv("QKV_MODEL");
    if (s == QKV_ERR_IO && dir == cli_default_model() && !(env && *env)) {
        char places[4][PATH_MAX];
        int n = default_model_places(places, 4);
        fprintf(stderr,
                "qkv %s: no default model (" DEFAULT_MODEL "); looked in $QKV_MODEL (unset)", cmd);
        for (int i = 0; i < n; i++) fprintf(stderr, ", %s", places[i]);
        fprintf(stderr, ".\n  scripts/fetch-model.sh installs it into models/; --model DIR or "
                        "QKV_MODEL=DIR chooses another\n");
    } else if (s == QKV_ERR_IO) {
        fprintf(stderr,
                "qkv %s: no model at '%s'? scripts/fetch-model.sh installs the default "
                "one; --model DIR chooses another\n",
                cmd, dir);
    }
    return rc;
}

int cli_apply_lora(const char *cmd, qkv_model *m, const char *lora) {
    if (!lora) return EXIT_OK;
    qkv_status s = qkv_model_load_lora(m, lora);
    if (s == QKV_OK) return EXIT_OK;
    (void)cmd;
    return cli_report(lora, s);
}

int cli_parse_count(const char *cmd, const char *opt, const char *val, long lo, long hi,
                    long *out) {
    char *end;
    errno = 0;
    long v = strtol(val, &end, 10);
    if (!*val || *end || errno || v < lo || v > hi)
        return cli_usage_error(cmd, "%s wants a number in %ld..%ld, got '%s'", opt, lo, hi, val);
    *out = v;
    return EXIT_OK;
}

/* Embeds t's lines in batches into out [t->n, dim], with progress. */
int cli_embed_lines(qkv_runtime *rt, const qkv_model *m, const text_lines *t, size_t batch,
                    int force_progress, float *out) {
    progress p;
    progress_begin(&p, "embedding", t->n, force_progress);
    int64_t dim = qkv_model_dim(m);
    for (size_t i = 0; i < t->n; i += batch) {
        size_t k = t->n - i < batch ? t->n - i : batch;
        qkv_status s = qkv_embed(rt, m, (const char *const *)t->line + i, t->len + i, k,
                                 out + i * (size_t)dim);
        if (s != QKV_OK) {
            progress_end(&p, i);
            char what[64];
            snprintf(what, sizeof what, "lines %zu..%zu", i + 1, i + k);
            return cli_report(what, s);
        }
        progress_update(&p, i + k);
    }
    progress_end(&p, t->n);
    return EXIT_OK;
}

static int write_npy(FILE *f, const float *x, size_t rows, size_t cols) {
    char hdr[128];
    int n = snprintf(hdr, sizeof hdr,
                     "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu, %zu), }", rows, cols);
    size_t total = 10 + (size_t)n + 1, pad = (64 - total % 64) % 64;
    unsigned short hlen = (unsigned short)((size_t)n + pad + 1);
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fputc(hlen & 0xff, f);
    fputc(hlen >> 8, f);
    fwrite(hdr, 1, (size_t)n, f);
    for (size_t i = 0; i < pad; i++) fputc(' ', f);
    fputc('\n', f);
    fwrite(x, sizeof(float), rows * cols, f);
    return ferror(f) ? -1 : 0;
}

int cmd_embed(int argc, char **argv) {
    const char *model = cli_default_model(), *format = "jsonl", *out_path = NULL, *in = "-";
    const char *lora = NULL;
    long batch = 256, threads = 0;
    int force_progress = 0, have_in = 0;
    qkv_dtype dtype = QKV_DTYPE_F32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (strcmp(a, "--model") == 0 && more)
            model = argv[++i];
        else if (strcmp(a, "--lora") == 0 && more)
            lora = argv[++i];
        else if (strcmp(a, "--dtype") == 0 && more) {
            if (cli_parse_dtype("embed", argv[++i], &dtype)) return EXIT_USAGE;
        } else if (strcmp(a, "--format") == 0 && more)
            format = argv[++i];
        else if (strcmp(a, "--out") == 0 && more)
            out_path = argv[++i];
        else if (strcmp(a, "--batch") == 0 && more) {
            if (cli_parse_count("embed", a, argv[++i], 1, 1 << 20, &batch)) return EXIT_USAGE;
        } else if (strcmp(a, "--threads") == 0 && more) {
            if (cli_parse_count("embed", a, argv[++i], 1, 1024, &threads)) return EXIT_USAGE;
        } else if (strcmp(a, "--progress") == 0)
            force_progress = 1;
        else if (a[0] == '-' && a[1] != '\0')
            return cli_usage_error("embed", "unknown option '%s'", a);
        else if (have_in)
            return cli_usage_error("embed", "one input file at most (got '%s' and '%s')", in, a);
        else {
            in = a;
            have_in = 1;
        }
    }
    int binary = 0;
    if (strcmp(format, "npy") == 0 || strcmp(format, "safetensors") == 0)
        binary = 1;
    else if (strcmp(format, "jsonl") != 0)
        return cli_usage_error("embed", "--format is jsonl, npy or safetensors, not '%s'", format);
    if (binary && !out_path)
        return cli_usage_error("embed", "--format %s writes a file: add --out FILE", format);
    out_kind kind = strcmp(format, "npy") == 0           ? OUT_NPY
                    : strcmp(format, "safetensors") == 0 ? OUT_SAFETENSORS
                                                         : OUT_JSONL;
    if (out_path && cli_check_output("embed", "--out", out_path, kind)) return EXIT_USAGE;

    text_lines t;
    int rc = text_lines_read(in, &t);
    if (rc) return rc;
    qkv_model *m = NULL;
    qkv_runtime *rt = NULL;
    float *emb = NULL;
    if ((rc = cli_load_model_as("embed", model, dtype, &m))) goto done;
    if ((rc = cli_apply_lora("embed", m, lora))) goto done;
    qkv_status s = qkv_runtime_create((int)threads, &rt);
    if (s != QKV_OK) {
        rc = cli_report("runtime", s);
        goto done;
    }
    size_t dim = (size_t)qkv_model_dim(m);
    emb = malloc((t.n ? t.n : 1) * dim * sizeof *emb);
    if (!emb) {
        fprintf(stderr, "qkv embed: out of memory for %zu embeddings\n", t.n);
        rc = EXIT_FAIL;
        goto done;
    }
    if ((rc = cli_embed_lines(rt, m, &t, (size_t)batch, force_progress, emb))) goto done;
    if (strcmp(format, "safetensors") == 0) {
        int64_t shape[2] = {(int64_t)t.n, (int64_t)dim};
        qkv_st_write_tensor w = {"embeddings", QKV_DTYPE_F32, 2, shape, emb};
        const char *k[] = {"model", "format"}, *v[] = {model, "one row per input line"};
        s = qkv_safetensors_write(out_path, &w, 1, k, v, 2);
        if (s != QKV_OK) rc = cli_report(out_path, s);
        goto done;
    }
    atomic_file af = {0}; /* --out: written whole, then renamed over the path */
    if (out_path && atomic_open(&af, out_path) != 0) {
        fprintf(stderr, "qkv embed: %s: cannot create: %s\n", out_path, strerror(errno));
        rc = EXIT_USAGE;
        goto done;
    }
    FILE *f = out_path ? af.f : stdout;
    if (binary) {
        if (write_npy(f, emb, t.n, dim) != 0) {
            fprintf(stderr, "qkv embed: %s: cannot write: %s (nothing written)\n", out_path,
                    strerror(errno));
            rc = EXIT_FAIL;
        }
    } else {
        for (size_t i = 0; i < t.n; i++) {
            fputc('[', f);
            for (size_t c = 0; c < dim; c++) { /* NaN from NaN weights: null */
                if (c) fputc(',', f);
                json_write_number(f, "%.7g", emb[i * dim + c]);
            }
            fputs("]\n", f);
        }
    }
    if (out_path) {
        if (rc == 0 && atomic_commit(&af) != 0) {
            fprintf(stderr, "qkv embed: %s: cannot write: %s (nothing written)\n", out_path,
                    strerror(errno));
            rc = EXIT_FAIL;
        }
        atomic_abort(&af); /* after a failure: the old file stays, the temporary goes */
    } else if (fflush(f) != 0 || ferror(f)) {
        fprintf(stderr, "qkv embed: write error\n");
        rc = EXIT_FAIL;
    }
done:
    free(emb);
    qkv_runtime_free(rt);
    qkv_model_free(m);
    text_lines_free(&t);
    return rc;
}
