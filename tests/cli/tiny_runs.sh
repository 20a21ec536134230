# tiny_runs.sh — sourced by the CLI tests of run directories (tensorboard, report, browser):
# the small inputs of a tiny `qkv train` and a tiny `qkv finetune`.

# tiny_data QKV SRC DIR: a byte-level BPE of 512 tokens (DIR/tok) and a dataset (DIR/data) made
# of the repository's own docs; returns data prepare's exit code.
tiny_data() {
    "$1" tokenizer train --vocab-size 512 --special "<|endoftext|>" --out "$3/tok" \
        "$2"/docs/*.md "$2/README.md" >/dev/null 2>&1
    "$1" data prepare --tokenizer "$3/tok" --val-fraction 0.25 --split-on "" --out "$3/data" \
        "$2"/docs/*.md "$2/README.md" >/dev/null 2>&1
}

# tiny_labelled FILE: 96 labelled lines (TSV with a header), positive / negative by a keyword
# among filler words (awk's own generator, seeded: the same file every time).
tiny_labelled() {
    awk 'BEGIN { srand(3); split("good great love", P); split("bad awful hate", N);
        split("the movie film it this was is very", F); print "text\tlabel";
        for (i = 0; i < 96; i++) { s = F[1 + int(rand() * 8)] " " F[1 + int(rand() * 8)];
            if (i % 2) print s " " P[1 + int(rand() * 3)] "\tpositive";
            else print s " " N[1 + int(rand() * 3)] "\tnegative" } }' >"$1"
}
