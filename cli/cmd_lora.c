/* cmd_lora.c — `qkv lora merge`: a PEFT LoRA adapter folded into a copy of a Hugging Face model
 * directory (qkv_lora_merge). */
#include "cli.h"

#include <stdio.h>
#include <string.h>

void cmd_lora_help(void) {
    printf("Usage: qkv lora merge --model DIR --lora DIR --out DIR\n\n"
           "Writes a Hugging Face model directory with the adapter folded in: every adapted\n"
           "matrix becomes W + scale * B A (scale = lora_alpha / r, or / sqrt(r) with rslora),\n"
           "saved modules (a classifier head) replace the model's, and the other files of\n"
           "--model (config, tokenizer, ...) are copied. The result loads without --lora\n"
           "wherever the model did. --out must not exist or be an empty directory; it is\n"
           "written beside itself and renamed into place.\n\n"
           "Exit status: 0 done; 2 bad usage or a bad model or adapter directory; 1 otherwise.\n");
}

int cmd_lora(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "merge") != 0)
        return cli_usage_error("lora", "the subcommand is `qkv lora merge`");
    const char *model = NULL, *lora = NULL, *out = NULL;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const int more = i + 1 < argc;
        if (cli_is_help(a)) {
            cmd_lora_help();
            return EXIT_OK;
        } else if (strcmp(a, "--model") == 0 && more)
            model = argv[++i];
        else if (strcmp(a, "--lora") == 0 && more)
            lora = argv[++i];
        else if (strcmp(a, "--out") == 0 && more)
            out = argv[++i];
        else
            return cli_usage_error("lora", "unknown option or missing value '%s'", a);
    }
    if (!model || !lora || !out)
        return cli_usage_error("lora", "merge needs --model DIR, --lora DIR and --out DIR");
    qkv_status s = qkv_lora_merge(model, lora, out);
    if (s != QKV_OK) return cli_report(out, s);
    fprintf(stderr, "qkv lora merge: wrote %s\n", out);
    return EXIT_OK;
}
