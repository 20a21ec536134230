# cls_data.sh — sourced by the qkv finetune tests (test_finetune_cli.sh, test_finetune_mpi.sh):
# make_data N SEED prints N labelled examples as TSV with a header: filler words and one keyword
# of the label (positive, negative or neutral), deterministic (awk's own generator), so a
# working fine-tune must learn the keywords.
make_data() {
    awk -v n="$1" -v seed="$2" 'BEGIN {
        srand(seed); split("good great love win", P); split("bad awful hate", N);
        split("vote law cell atom paint", U);
        split("the movie film it this was is very team game music and of to in play", F);
        print "text\tlabel";
        for (i = 0; i < n; i++) {
            k = int(rand() * 3); s = "";
            for (j = 0; j < 2 + int(rand() * 4); j++) s = s F[1 + int(rand() * 16)] " ";
            if (k == 0) { w = P[1 + int(rand() * 4)]; l = "positive" }
            else if (k == 1) { w = N[1 + int(rand() * 3)]; l = "negative" }
            else { w = U[1 + int(rand() * 5)]; l = "neutral" }
            print s w "\t" l } }'
}
