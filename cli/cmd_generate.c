/* cmd_generate.c — `qkv generate`: continue a prompt with a decoder model (GPT-2 or
 * Llama-style Hugging Face directory), streaming the text to stdout as tokens are produced and
 * reporting prefill and decode speed on stderr. Text goes through the directory's tokenizer
 * (tokenizer.json, or vocab.json + merges.txt) whenever it has one, also for a prompt given as
 * --ids; ids are printed only with --ids-out or when there is no tokenizer. As transformers'
 * generate, it stops at the model's end-of-sequence ids (generation_config.json, else
 * config.json) unless --ignore-eos. The library's limits are checked here first, so that a
 * refusal names the flags (--context, --slide, --max-new-tokens), not the API's fields. */
#include "cli.h"
#include "textio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cmd_generate_help(void) {
    printf("Usage: qkv generate --model DIR [--prompt TEXT | -] [options]\n\n"
           "Continues the prompt (from --prompt, or stdin with '-') and streams the new text to\n"
           "stdout as it is produced; prefill and decode tokens/s go to stderr at the end.\n\n"
           "Sampling (Hugging Face generate semantics):\n"
           "  --max-new-tokens N   tokens to generate at most (default 64)\n"
           "  --temperature T      0 = greedy (default); > 0 samples from softmax(logits/T)\n"
           "  --top-k K            keep the K most likely tokens (0 = off)\n"
           "  --top-p P            keep the smallest set with probability mass >= P (1 = off)\n"
           "  --repetition-penalty R   penalize tokens already in the text (1 = off)\n"
           "  --seed S             random seed (default 0): same seed, same text\n"
           "  --stop TEXT          stop once TEXT appears in the output (repeatable)\n"
           "  --stop-token ID      stop after this token id (repeatable)\n"
           "  --ignore-eos         go on past the model's end-of-sequence token (by default\n"
           "                       generation stops there: eos_token_id of the directory's\n"
           "                       generation_config.json, else of config.json)\n"
           "  --context N          KV cache size in tokens (default: prompt + max new tokens)\n"
           "  --slide              when the context is full, keep going on its last half\n"
           "                       (default: refuse a prompt + output longer than --context)\n"
           "Input and output:\n"
           "  --ids \"1 2 3\"        the prompt as token ids (no tokenizer needed)\n"
           "  --ids-out            print the new token ids instead of text (without a tokenizer\n"
           "                       in the directory, ids are printed anyway)\n"
           "  --json               one JSON object at the end instead of streaming text\n"
           "  --threads N          threads (default: QKV_NUM_THREADS or all CPUs)\n"
           "  --dtype T            weights of the linear layers and the head: f32 (default,\n"
           "                       exact), bf16 or f16 (half the bytes a decode step reads;\n"
           "                       logits differ slightly: docs/PERFORMANCE.md) or int8\n"
           "                       (int8 weights and activations, a scale per 32 inputs)\n"
           "  --lora DIR           apply a PEFT LoRA adapter directory (not merged)\n");
}

typedef struct {
    const qkv_tokenizer *tok;
    int32_t *ids;
    size_t n, cap;
    size_t printed; /* bytes of decoded output already written */
    const char **stops;
    size_t n_stops;
    int json, ids_mode, failed;
    char *text; /* latest decode */
    size_t text_len;
} stream;

static int on_token(void *user, size_t seq, int32_t token) {
    (void)seq;
    stream *s = user;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        int32_t *p = realloc(s->ids, cap * sizeof *p);
        if (!p) {
            s->failed = 1;
            return 1;
        }
        s->ids = p;
        s->cap = cap;
    }
    s->ids[s->n++] = token;
    if (s->ids_mode) {
        if (!s->json) {
            printf("%s%d", s->n > 1 ? " " : "", token);
            fflush(stdout);
        }
        return 0;
    }
    /* Decode everything so far and write what is new: byte-level BPE only ever appends. */
    char *text = NULL;
    size_t len = 0;
    if (qkv_tokenizer_decode(s->tok, s->ids, s->n, 1, &text, &len) != QKV_OK) {
        s->failed = 1;
        return 1;
    }
    qkv_free(s->text);
    s->text = text;
    s->text_len = len;
    size_t end = len;
    int stop = 0;
    for (size_t k = 0; k < s->n_stops; k++) {
        const char *hit = strstr(text, s->stops[k]);
        if (hit) {
            size_t e = (size_t)(hit - text) + strlen(s->stops[k]);
            if (!stop || e < end) end = e;
            stop = 1;
        }
    }
    if (stop) s->text_len = end;
    if (!s->json && end > s->printed) {
        fwrite(text + s->printed, 1, end - s->printed, stdout);
        fflush(stdout);
        s->printed = end;
    }
    return stop;
}

static int parse_ids(const char *str, int32_t **ids, int64_t *n) {
    size_t cap = 16, k = 0;
    int32_t *v = malloc(cap * sizeof *v);
    const char *p = str;
    while (v && *p) {
        while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < 0 || x > INT32_MAX) {
            free(v);
            return -1;
        }
        if (k == cap) {
            int32_t *g = realloc(v, 2 * cap * sizeof *g);
            if (!g) break;
            v = g;
            cap *= 2;
        }
        v[k++] = (int32_t)x;
        p = end;
    }
    if (!v) return -1;
    *ids = v;
    *n = (int64_t)k;
    return 0;
}

/* What qkv_lm_generate_tokens would refuse, said in the command's words; the exit code. */
static int check_limits(const qkv_lm *lm, int64_t n_prompt, long max_new, long context, int slide,
                        double top_p, const int32_t *stop, size_t n_stop) {
    const int64_t max_ctx = qkv_lm_max_context(lm), V = qkv_lm_vocab_size(lm);
    if (top_p > 1) return cli_usage_error("generate", "--top-p must be in [0, 1], not %g", top_p);
    for (size_t i = 0; i < n_stop; i++)
        if (stop[i] >= V)
            return cli_usage_error("generate",
                                   "--stop-token %d is not in the model's vocabulary [0, %lld)",
                                   stop[i], (long long)V);
    if (context > max_ctx)
        return cli_usage_error("generate",
                               "--context %ld is longer than the model's context of %lld tokens "
                               "(max_position_embeddings / n_positions in config.json)",
                               context, (long long)max_ctx);
    const int64_t need = n_prompt + max_new - 1; /* the last new token is never fed back */
    const int64_t cap = context ? context : (need < max_ctx ? need : max_ctx);
    if (slide && cap < 2) return cli_usage_error("generate", "--slide needs --context 2 or more");
    if (!slide && need > cap)
        return cli_usage_error(
            "generate",
            "the prompt (%lld tokens) and --max-new-tokens %ld need a context of %lld tokens, "
            "more than %s %lld: shorten the prompt, lower --max-new-tokens, or add --slide (go "
            "on over the last half of the context)",
            (long long)n_prompt, max_new, (long long)need,
            context ? "--context" : "the model's context of", (long long)cap);
    return EXIT_OK;
}

int cmd_generate(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL, *ids_arg = NULL, *lora = NULL;
    qkv_dtype dtype = QKV_DTYPE_F32;
    long max_new = 64, top_k = 0, threads = 0, context = 0;
    double temperature = 0, top_p = 1, rep = 1;
    unsigned long long seed = 0;
    int json = 0, slide = 0, ignore_eos = 0, ids_out = 0;
    const char *stops[64];
    size_t n_stops = 0;
    int32_t stop_ids[64]; /* --stop-token (48 at most) and the model's eos ids (8 at most) */
    size_t n_stop_ids = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
#define NEED_VALUE                                                                                 \
    if (!v) return cli_usage_error("generate", "%s needs a value", a);                             \
    i++
        if (strcmp(a, "--model") == 0) {
            NEED_VALUE;
            model = v;
        } else if (strcmp(a, "--lora") == 0) {
            NEED_VALUE;
            lora = v;
        } else if (strcmp(a, "--dtype") == 0) {
            NEED_VALUE;
            if (cli_parse_dtype("generate", v, &dtype)) return EXIT_USAGE;
        } else if (strcmp(a, "--prompt") == 0) {
            NEED_VALUE;
            prompt = v;
        } else if (strcmp(a, "-") == 0) {
            prompt = "-";
        } else if (strcmp(a, "--ids") == 0) {
            NEED_VALUE;
            ids_arg = v;
        } else if (strcmp(a, "--max-new-tokens") == 0) {
            NEED_VALUE;
            if (cli_parse_count("generate", a, v, 1, 1 << 20, &max_new)) return EXIT_USAGE;
        } else if (strcmp(a, "--top-k") == 0) {
            NEED_VALUE;
            if (cli_parse_count("generate", a, v, 0, 1 << 30, &top_k)) return EXIT_USAGE;
        } else if (strcmp(a, "--threads") == 0) {
            NEED_VALUE;
            if (cli_parse_count("generate", a, v, 1, 1024, &threads)) return EXIT_USAGE;
        } else if (strcmp(a, "--context") == 0) {
            NEED_VALUE;
            if (cli_parse_count("generate", a, v, 1, 1 << 24, &context)) return EXIT_USAGE;
        } else if (strcmp(a, "--temperature") == 0 || strcmp(a, "--top-p") == 0 ||
                   strcmp(a, "--repetition-penalty") == 0) {
            NEED_VALUE;
            double x = strtod(v, &end);
            if (!*v || *end || !(x >= 0) || x > 1e6)
                return cli_usage_error("generate", "%s wants a non-negative number, got '%s'", a,
                                       v);
            if (a[2] == 't' && a[3] == 'e')
                temperature = x;
            else if (a[2] == 't')
                top_p = x;
            else
                rep = x;
        } else if (strcmp(a, "--seed") == 0) {
            NEED_VALUE;
            seed = strtoull(v, &end, 10);
            if (!*v || *end)
                return cli_usage_error("generate", "--seed wants a number, got '%s'", v);
        } else if (strcmp(a, "--stop") == 0) {
            NEED_VALUE;
            if (n_stops == 64 || !*v) return cli_usage_error("generate", "bad or too many --stop");
            stops[n_stops++] = v;
        } else if (strcmp(a, "--stop-token") == 0) {
            NEED_VALUE;
            long t;
            if (n_stop_ids == 48) return cli_usage_error("generate", "too many --stop-token");
            if (cli_parse_count("generate", a, v, 0, INT32_MAX, &t)) return EXIT_USAGE;
            stop_ids[n_stop_ids++] = (int32_t)t;
        } else if (strcmp(a, "--eos") == 0) {
            /* the default now; kept so that older command lines still run */
        } else if (strcmp(a, "--ignore-eos") == 0) {
            ignore_eos = 1;
        } else if (strcmp(a, "--ids-out") == 0) {
            ids_out = 1;
        } else if (strcmp(a, "--slide") == 0) {
            slide = 1;
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
        } else {
            return cli_usage_error("generate", "unknown option '%s'", a);
        }
#undef NEED_VALUE
    }
    if (!model) return cli_usage_error("generate", "--model DIR is required");
    if (!prompt && !ids_arg)
        return cli_usage_error("generate", "give a prompt: --prompt TEXT, '-' (stdin) or --ids");

    qkv_lm *lm = NULL;
    qkv_tokenizer *tok = NULL;
    qkv_runtime *rt = NULL;
    int32_t *ids = NULL;
    int64_t n_ids = 0;
    char *stdin_text = NULL;
    stream st = {0};
    int rc = EXIT_OK;
    const qkv_model_options mo = {.struct_size = sizeof mo, .dtype = dtype};
    qkv_status s = qkv_lm_load_opts(model, &mo, &lm);
    if (s != QKV_OK) {
        rc = cli_report(model, s);
        goto done;
    }
    if (lora && (s = qkv_lm_load_lora(lm, lora)) != QKV_OK) {
        rc = cli_report(lora, s);
        goto done;
    }
    /* the tokenizer whenever the directory has one: text out, also for an --ids prompt */
    s = qkv_tokenizer_load(model, &tok);
    if (s != QKV_OK && !(s == QKV_ERR_NOT_FOUND && ids_arg)) {
        rc = cli_report(model, s);
        if (s == QKV_ERR_NOT_FOUND)
            fprintf(stderr, "qkv generate: text needs the model's tokenizer; --ids works "
                            "without one\n");
        goto done;
    }
    if (ids_arg) {
        if (parse_ids(ids_arg, &ids, &n_ids) != 0 || n_ids == 0) {
            rc = cli_usage_error("generate", "--ids wants token ids separated by spaces");
            goto done;
        }
    } else {
        size_t len;
        const char *text = prompt;
        if (strcmp(prompt, "-") == 0) {
            text_lines t;
            if ((rc = text_lines_read("-", &t))) goto done;
            size_t total = 0;
            for (size_t i = 0; i < t.n; i++) total += t.len[i] + 1;
            stdin_text = malloc(total + 1);
            if (!stdin_text) {
                text_lines_free(&t);
                rc = EXIT_FAIL;
                goto done;
            }
            size_t o = 0;
            for (size_t i = 0; i < t.n; i++) {
                memcpy(stdin_text + o, t.line[i], t.len[i]);
                o += t.len[i];
                if (i + 1 < t.n) stdin_text[o++] = '\n';
            }
            stdin_text[o] = '\0';
            text_lines_free(&t);
            text = stdin_text;
        }
        len = strlen(text);
        qkv_encode_options o;
        qkv_tokenizer_default_options(tok, &o);
        o.add_special_tokens = 1;
        o.max_length = 0;
        o.pad_to = 0;
        qkv_encoding *enc = NULL;
        s = qkv_tokenizer_encode(tok, text, len, NULL, 0, &o, &enc);
        if (s != QKV_OK) {
            rc = cli_report("prompt", s);
            goto done;
        }
        n_ids = (int64_t)enc->n;
        ids = malloc((enc->n ? enc->n : 1) * sizeof *ids);
        if (ids) memcpy(ids, enc->ids, enc->n * sizeof *ids);
        qkv_encoding_free(enc);
        if (!ids || n_ids == 0) {
            rc = n_ids == 0 ? cli_usage_error("generate", "the prompt is empty") : EXIT_FAIL;
            goto done;
        }
    }
    for (int64_t i = 0; i < n_ids; i++)
        if (ids[i] >= qkv_lm_vocab_size(lm)) {
            rc = cli_usage_error("generate", "token id %d is outside the vocabulary (%lld)", ids[i],
                                 (long long)qkv_lm_vocab_size(lm));
            goto done;
        }
    if (!ignore_eos) /* every end-of-sequence id of the model (at most 8) */
        n_stop_ids += qkv_lm_eos_tokens(lm, stop_ids + n_stop_ids, 8);
    if ((rc = check_limits(lm, n_ids, max_new, context, slide, top_p, stop_ids, n_stop_ids)))
        goto done;
    s = qkv_runtime_create((int)threads, &rt);
    if (s != QKV_OK) {
        rc = cli_report("runtime", s);
        goto done;
    }
    qkv_sampling opts;
    memset(&opts, 0, sizeof opts);
    opts.max_new_tokens = max_new;
    opts.temperature = (float)temperature;
    opts.top_k = top_k;
    opts.top_p = (float)top_p;
    opts.repetition_penalty = (float)rep;
    opts.seed = seed;
    opts.stop_tokens = n_stop_ids ? stop_ids : NULL;
    opts.n_stop_tokens = n_stop_ids;
    opts.context = context;
    opts.overflow = slide ? QKV_CONTEXT_SLIDE : QKV_CONTEXT_REFUSE;
    st.tok = tok;
    st.stops = stops;
    st.n_stops = n_stops;
    st.json = json;
    st.ids_mode = tok == NULL || ids_out;
    qkv_generate_stats stats;
    memset(&stats, 0, sizeof stats);
    s = qkv_lm_generate_tokens(rt, lm, ids, &n_ids, 1, &opts, on_token, &st, NULL, NULL, &stats);
    if (!json) {
        printf("\n");
        fflush(stdout);
    }
    if (s != QKV_OK) {
        rc = cli_report("generate", s);
        goto done;
    }
    if (st.failed) {
        fprintf(stderr, "qkv generate: out of memory or undecodable token\n");
        rc = EXIT_FAIL;
        goto done;
    }
    double pf =
        stats.prefill_seconds > 0 ? (double)stats.prefill_tokens / stats.prefill_seconds : 0;
    double dc = stats.decode_seconds > 0 ? (double)stats.decode_tokens / stats.decode_seconds : 0;
    if (json) {
        printf("{\"prompt_tokens\":%lld,\"new_tokens\":%zu,\"ids\":[", (long long)n_ids, st.n);
        for (size_t i = 0; i < st.n; i++) printf("%s%d", i ? "," : "", st.ids[i]);
        printf("]");
        if (tok && !ids_out) {
            printf(",\"text\":");
            json_write_string(stdout, st.text ? st.text : "", st.text ? st.text_len : 0);
        }
        printf(",\"prefill_tokens_per_s\":%.1f,\"decode_tokens_per_s\":%.1f}\n", pf, dc);
    } else {
        fprintf(stderr,
                "qkv generate: %lld prompt tokens, %zu new; prefill %.1f tokens/s, "
                "decode %.1f tokens/s\n",
                (long long)n_ids, st.n, pf, dc);
    }
done:
    qkv_free(st.text);
    free(st.ids);
    free(ids);
    free(stdin_text);
    qkv_runtime_free(rt);
    qkv_tokenizer_free(tok);
    qkv_lm_free(lm);
    return rc;
}
