/* cmd_evaluate_mt.c — `qkv evaluate --hyp FILE --ref FILE...`: translations scored with BLEU,
 * chrF and chrF++ as sacreBLEU scores them (qkv_bleu / qkv_chrf), printed as `sacrebleu -f
 * text` prints them (the metric names right-aligned on " = "), with sacreBLEU's signatures.
 *
 * Files are read as the sacrebleu CLI reads them: lines split at "\n" only (a last line
 * without one counts), each right-stripped (text_lines drops "\r"; the metrics strip the
 * rest); every reference file must have the hypothesis file's number of lines.
 *
 * --sentence-level is `sacrebleu -sl`: one metric, one line per segment, each segment scored
 * as a corpus of one (BLEU with the effective order, as sacreBLEU's CLI turns it on there). */
#include "atomic.h"
#include "cli.h"
#include "textio.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CMD "evaluate"
#define MAX_REFS 64

enum { M_BLEU = 1, M_CHRF = 2, M_CHRFPP = 4 };

typedef struct mt_opts {
    const char *hyp, *refs[MAX_REFS], *json;
    int n_refs, metrics, width, sentence;
    qkv_bleu_tokenize tokenize;
    int lowercase;
} mt_opts;

void cmd_evaluate_mt_help(void) {
    printf(
        "Translation mode: qkv evaluate --hyp FILE --ref FILE [--ref FILE2 ...] [options]\n\n"
        "Scores translations (one a line) against one or more reference translations (files\n"
        "with the same number of lines) with BLEU, chrF and chrF++ exactly as sacreBLEU %s\n"
        "computes them (corpus_bleu / corpus_chrf with its defaults: BLEU with the 13a\n"
        "tokenizer, exp smoothing, 4-grams, case-sensitive; chrF with character 6-grams,\n"
        "beta 2; chrF++ adds word 2-grams), and prints them as `sacrebleu REF... -i HYP -m bleu\n"
        "chrf -f text` does, each with sacreBLEU's signature, e.g.\n"
        " BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:%s = 31.4 62.5/40.0/...\n"
        "chrF2|nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:%s = 55.3\n"
        "  --hyp FILE            the translations (- for stdin)\n"
        "  --ref FILE            a reference file; repeat for more references (at most %d)\n"
        "  --metric LIST         bleu, chrf, chrf++, comma-separated (default bleu,chrf)\n"
        "  --tokenize T          BLEU's tokenizer: 13a (default), intl, none\n"
        "  --lowercase           case-insensitive, every metric (Python's str.lower; case:lc)\n"
        "  --width N             decimals printed (default 1, as sacrebleu's CLI), 0..17\n"
        "  --json PATH           the scores unrounded as JSON (- for stdout instead of the text):\n"
        "                        [{name, score, signature, text, ...}], BLEU with counts,\n"
        "                        totals, precisions, bp, ratio, hyp_len, ref_len\n"
        "  --sentence-level      one score a line, each line scored alone, as `sacrebleu -sl`:\n"
        "                        one metric (--metric bleu, chrf or chrf++); BLEU with the\n"
        "                        effective order (eff:yes); --json gives one object a line\n"
        "Input must be UTF-8 (invalid UTF-8 or a NUL byte: exit 2 naming the line).\n",
        QKV_SACREBLEU_VERSION, QKV_SACREBLEU_VERSION, QKV_SACREBLEU_VERSION, MAX_REFS);
}

static int parse_metrics(const char *v, int *out) {
    char *copy = strdup(v), *save = NULL;
    if (!copy) return cli_usage_error(CMD, "out of memory");
    *out = 0;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int m = strcmp(t, "bleu") == 0     ? M_BLEU
                : strcmp(t, "chrf") == 0   ? M_CHRF
                : strcmp(t, "chrf++") == 0 ? M_CHRFPP
                                           : 0;
        if (!m) { /* the message first: t points into copy */
            int rc = cli_usage_error(CMD, "--metric: '%s' is not bleu, chrf or chrf++", t);
            free(copy);
            return rc;
        }
        *out |= m;
    }
    free(copy);
    return *out ? EXIT_OK : cli_usage_error(CMD, "--metric names no metric");
}

static int parse(int argc, char **argv, mt_opts *o) {
    memset(o, 0, sizeof *o);
    o->metrics = M_BLEU | M_CHRF;
    o->width = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        long v;
        if (strcmp(a, "--hyp") == 0 && more)
            o->hyp = argv[++i];
        else if (strcmp(a, "--ref") == 0 && more) {
            if (o->n_refs == MAX_REFS)
                return cli_usage_error(CMD, "at most %d --ref files", MAX_REFS);
            o->refs[o->n_refs++] = argv[++i];
        } else if (strcmp(a, "--json") == 0 && more)
            o->json = argv[++i];
        else if (strcmp(a, "--metric") == 0 && more) {
            if (parse_metrics(argv[++i], &o->metrics)) return EXIT_USAGE;
        } else if (strcmp(a, "--tokenize") == 0 && more) {
            const char *t = argv[++i];
            if (strcmp(t, "13a") == 0)
                o->tokenize = QKV_BLEU_TOK_13A;
            else if (strcmp(t, "intl") == 0)
                o->tokenize = QKV_BLEU_TOK_INTL;
            else if (strcmp(t, "none") == 0)
                o->tokenize = QKV_BLEU_TOK_NONE;
            else
                return cli_usage_error(CMD, "--tokenize is 13a, intl or none, not '%s'", t);
        } else if (strcmp(a, "--width") == 0 && more) {
            if (cli_parse_count(CMD, a, argv[++i], 0, 17, &v)) return EXIT_USAGE;
            o->width = (int)v;
        } else if (strcmp(a, "--lowercase") == 0)
            o->lowercase = 1;
        else if (strcmp(a, "--sentence-level") == 0)
            o->sentence = 1;
        else if (a[0] == '-')
            return cli_usage_error(CMD, "unknown option '%s' in translation mode%s", a,
                                   more ? "" : " (or its value is missing)");
        else
            return cli_usage_error(CMD, "unexpected argument '%s'", a);
    }
    if (!o->hyp) return cli_usage_error(CMD, "translation mode needs --hyp FILE");
    if (!o->n_refs) return cli_usage_error(CMD, "translation mode needs --ref FILE");
    if (o->sentence && (o->metrics & (o->metrics - 1)))
        return cli_usage_error(CMD, "--sentence-level scores one metric: pick it with --metric "
                                    "bleu, chrf or chrf++");
    return EXIT_OK;
}

/* The lines of path (a regular file, or stdin for "-"), refusing NUL bytes. */
static int read_lines(const char *what, const char *path, text_lines *t) {
    struct stat sb;
    if (strcmp(path, "-") != 0) {
        if (stat(path, &sb) != 0) {
            fprintf(stderr, "qkv %s: %s %s: %s\n", CMD, what, path, strerror(errno));
            return EXIT_USAGE;
        }
        if (!S_ISREG(sb.st_mode)) {
            fprintf(stderr, "qkv %s: %s %s: not a regular file\n", CMD, what, path);
            return EXIT_USAGE;
        }
    }
    int rc = text_lines_read(path, t);
    if (rc) return rc;
    for (size_t i = 0; i < t->n; i++)
        if (strlen(t->line[i]) != t->len[i]) {
            fprintf(stderr, "qkv %s: %s %s:%zu: a NUL byte in the line\n", CMD, what, path, i + 1);
            text_lines_free(t);
            return EXIT_USAGE;
        }
    return EXIT_OK;
}

typedef struct result {
    char *text; /* sacreBLEU's line */
    json_t *obj;
} result;

static int fail_metric(const char *name, qkv_status s, const mt_opts *o) {
    int rc = cli_report(name, s);
    fprintf(stderr, "qkv %s: (hypothesis: %s", CMD, o->hyp);
    for (int r = 0; r < o->n_refs; r++) fprintf(stderr, "; reference %d: %s", r + 1, o->refs[r]);
    fprintf(stderr, ")\n");
    return rc;
}

static json_t *jreals(const double *v, int n) {
    json_t *a = json_array();
    for (int k = 0; a && k < n; k++) json_array_append_new(a, json_real(v[k]));
    return a;
}

static int run_bleu(const mt_opts *o, const char **hyps, int64_t n, const char **refs,
                    result *res) {
    qkv_bleu_options bo = {.struct_size = sizeof bo};
    bo.tokenize = o->tokenize;
    bo.lowercase = o->lowercase;
    bo.effective_order = o->sentence;
    qkv_bleu_score s = {.struct_size = sizeof s};
    char *sig = NULL;
    qkv_status st = qkv_bleu(hyps, n, refs, o->n_refs, &bo, &s);
    if (st == QKV_OK) st = qkv_bleu_signature(&bo, o->n_refs, &sig);
    if (st == QKV_OK) st = qkv_bleu_format(&s, sig, o->width, &res->text);
    if (st != QKV_OK) {
        qkv_free(sig);
        return fail_metric("BLEU", st, o);
    }
    res->obj = json_pack("{s:s, s:f, s:s, s:s, s:o, s:o, s:o, s:f, s:f, s:I, s:I}", "name", "BLEU",
                         "score", s.score, "signature", sig, "text", res->text, "counts",
                         jreals(s.counts, s.max_ngram_order), "totals",
                         jreals(s.totals, s.max_ngram_order), "precisions",
                         jreals(s.precisions, s.max_ngram_order), "bp", s.bp, "ratio", s.ratio,
                         "hyp_len", (json_int_t)s.sys_len, "ref_len", (json_int_t)s.ref_len);
    qkv_free(sig);
    return EXIT_OK;
}

static int run_chrf(const mt_opts *o, int word_order, const char **hyps, int64_t n,
                    const char **refs, result *res) {
    qkv_chrf_options co = {.struct_size = sizeof co};
    co.word_order = word_order;
    co.lowercase = o->lowercase;
    qkv_chrf_score s = {.struct_size = sizeof s};
    char *sig = NULL;
    const char *name = word_order ? "chrF++" : "chrF";
    qkv_status st = qkv_chrf(hyps, n, refs, o->n_refs, &co, &s);
    if (st == QKV_OK) st = qkv_chrf_signature(&co, o->n_refs, &sig);
    if (st == QKV_OK) st = qkv_chrf_format(&s, sig, o->width, &res->text);
    if (st != QKV_OK) {
        qkv_free(sig);
        return fail_metric(name, st, o);
    }
    res->obj =
        json_pack("{s:s, s:f, s:s, s:s, s:i, s:i, s:i}", "name", word_order ? "chrF2++" : "chrF2",
                  "score", s.score, "signature", sig, "text", res->text, "char_order", s.char_order,
                  "word_order", s.word_order, "beta", s.beta);
    qkv_free(sig);
    return EXIT_OK;
}

/* The metrics o asks for on segments hyps[n] (refs as qkv_bleu lays them out), into res[nres]. */
static int run_metrics(const mt_opts *o, const char **hyps, int64_t n, const char **refs,
                       result *res, int *nres) {
    int rc = EXIT_OK;
    if (o->metrics & M_BLEU && (rc = run_bleu(o, hyps, n, refs, &res[(*nres)++]))) return rc;
    if (o->metrics & M_CHRF && (rc = run_chrf(o, 0, hyps, n, refs, &res[(*nres)++]))) return rc;
    if (o->metrics & M_CHRFPP && (rc = run_chrf(o, 2, hyps, n, refs, &res[(*nres)++]))) return rc;
    return rc;
}

static void put_json(FILE *f, const void *obj) {
    json_dumpf((const json_t *)obj, f, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
    fputc('\n', f);
}

static int no_memory_for_json(void) {
    fprintf(stderr, "qkv %s: out of memory for the JSON\n", CMD);
    return EXIT_FAIL;
}

/* --sentence-level: each segment alone, its line printed as sacrebleu -sl prints it (or one
 * JSON object a segment, with its line number). */
static int sentence_level(const mt_opts *o, const char **hyps, int64_t n, const char **refs) {
    const char *seg_refs[MAX_REFS];
    json_t *all = o->json ? json_array() : NULL;
    int rc = EXIT_OK, to_stdout = !o->json || strcmp(o->json, "-") != 0;
    if (o->json && !all) return no_memory_for_json();
    for (int64_t i = 0; i < n && rc == EXIT_OK; i++) {
        for (int r = 0; r < o->n_refs; r++) seg_refs[r] = refs[(size_t)r * (size_t)n + (size_t)i];
        result res = {0};
        int nres = 0;
        rc = run_metrics(o, &hyps[i], 1, seg_refs, &res, &nres);
        if (rc == EXIT_OK && to_stdout) printf("%s\n", res.text);
        if (rc == EXIT_OK && all &&
            (!res.obj || json_object_set_new(res.obj, "line", json_integer(i + 1)) != 0 ||
             json_array_append(all, res.obj) != 0))
            rc = no_memory_for_json();
        qkv_free(res.text);
        json_decref(res.obj);
    }
    if (rc == EXIT_OK && all) {
        if (strcmp(o->json, "-") == 0) {
            put_json(stdout, all);
        } else if (atomic_write(o->json, put_json, all) != 0) {
            fprintf(stderr, "qkv %s: --json %s: %s\n", CMD, o->json, strerror(errno));
            rc = EXIT_FAIL;
        }
    }
    json_decref(all);
    return rc;
}

/* The corpus scores res[nres]: printed as sacrebleu -f text does, and as JSON if asked. */
static int corpus_output(const mt_opts *o, const result *res, int nres) {
    if (o->json) {
        json_t *all = json_array();
        for (int k = 0; k < nres; k++)
            if (!all || !res[k].obj || json_array_append(all, res[k].obj) != 0) {
                json_decref(all);
                return no_memory_for_json();
            }
        if (strcmp(o->json, "-") == 0) {
            put_json(stdout, all);
        } else if (atomic_write(o->json, put_json, all) != 0) {
            fprintf(stderr, "qkv %s: --json %s: %s\n", CMD, o->json, strerror(errno));
            json_decref(all);
            return EXIT_FAIL;
        }
        json_decref(all);
    }
    if (!o->json || strcmp(o->json, "-") != 0) {
        /* sacrebleu's print_single_results: the part before " =" right-aligned */
        size_t w = 0;
        for (int k = 0; k < nres; k++) {
            size_t l = (size_t)(strchr(res[k].text, '=') - res[k].text) - 1;
            w = l > w ? l : w;
        }
        for (int k = 0; k < nres; k++) {
            size_t l = (size_t)(strchr(res[k].text, '=') - res[k].text) - 1;
            printf("%*s%s\n", (int)(w - l), "", res[k].text);
        }
    }
    return EXIT_OK;
}

int cmd_evaluate_mt(int argc, char **argv) {
    mt_opts o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc;
    text_lines h, r[MAX_REFS];
    int nread = 0;
    const char **hyps = NULL, **refs = NULL;
    result res[3] = {{0}};
    if ((rc = read_lines("--hyp", o.hyp, &h))) return rc;
    for (; nread < o.n_refs; nread++)
        if ((rc = read_lines("--ref", o.refs[nread], &r[nread]))) goto done;
    if (h.n == 0) {
        rc = cli_usage_error(CMD, "--hyp %s has no lines", o.hyp);
        goto done;
    }
    for (int k = 0; k < o.n_refs; k++)
        if (r[k].n != h.n) {
            fprintf(stderr, "qkv %s: --ref %s has %zu lines, --hyp %s has %zu\n", CMD, o.refs[k],
                    r[k].n, o.hyp, h.n);
            rc = EXIT_USAGE;
            goto done;
        }
    hyps = malloc(h.n * sizeof *hyps);
    refs = malloc(h.n * (size_t)o.n_refs * sizeof *refs);
    if (!hyps || !refs) {
        fprintf(stderr, "qkv %s: out of memory\n", CMD);
        rc = EXIT_FAIL;
        goto done;
    }
    for (size_t i = 0; i < h.n; i++) {
        hyps[i] = h.line[i];
        for (int k = 0; k < o.n_refs; k++) refs[(size_t)k * h.n + i] = r[k].line[i];
    }
    int64_t n = (int64_t)h.n;
    int nres = 0;
    if (o.sentence) {
        if ((rc = sentence_level(&o, hyps, n, refs))) goto done;
    } else if ((rc = run_metrics(&o, hyps, n, refs, res, &nres)) ||
               (rc = corpus_output(&o, res, nres)))
        goto done;
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "qkv %s: write error on stdout\n", CMD);
        rc = EXIT_FAIL;
    }
done:
    for (int k = 0; k < 3; k++) {
        qkv_free(res[k].text);
        json_decref(res[k].obj);
    }
    free(hyps);
    free(refs);
    text_lines_free(&h);
    for (int k = 0; k < nread; k++) text_lines_free(&r[k]);
    return rc;
}
