#!/usr/bin/env bash
# test_train_mpi.sh QKV SOURCE_DIR — `mpirun -np N qkv train` (a build with -DQKV_WITH_MPI=ON)
# against one process on a tiny GPT-2:
#   - --exact-reduce 1 with 2 and 3 ranks gives the single process's metrics and final weights
#     byte for byte (the same --exact-reduce 1), with accum 5 (3 ranks: a last round of two);
#   - the default all-reduce (started block by block during the backward): every loss and
#     validation loss within 1e-6 relative, also with a rank that has no micro-batch;
#   - --resume with another number of ranks (2 -> 3, 3 -> 1) ends on the same weights;
#   - a rank killed (SIGKILL) mid-run stops the job (no hang), the last checkpoint resumes to
#     the uninterrupted run's weights; under --enable-recovery (mpirun leaves the others
#     running) the watchdog (--mpi-timeout) stops them with a clear error;
#   - ranks started with different options, or computing with other kernels (QKV_ARCH), are
#     refused at the start, exit 2;
#   - --zero 1 (ZeRO-1: AdamW's moments sharded): with --exact-reduce 1 on 2 and 3 ranks the
#     single process's metrics and weights byte for byte (also a model whose blocks and flat
#     buffer span several 4 MiB buckets), without it within 1e-6 relative; resumed across
#     zero / no zero and rank counts to the uninterrupted run's bits; one process with
#     --zero 1 is the run without it.
# Skipped (77) when mpirun is not installed.
set -uo pipefail
qkv=$1 src=$2
name=train_mpi
source "$(dirname "$0")/mpi_common.sh" # $tmp, check, mpi, kill_rank_1

"$qkv" tokenizer train --vocab-size 512 --special "<|endoftext|>" --out "$tmp/tok" \
    "$src"/docs/*.md "$src/README.md" >/dev/null 2>&1
"$qkv" data prepare --tokenizer "$tmp/tok" --val-fraction 0.25 --split-on "" --out "$tmp/data" \
    "$src"/docs/*.md "$src/README.md" >/dev/null 2>&1; rc=$?
check '[[ $rc -eq 0 && -f $tmp/data/meta.json ]]' "data prepare ($rc)"

flags=(--data "$tmp/data" --n-layer 2 --n-embd 32 --n-head 2 --seq 32 --batch 2 --accum 5
       --steps 6 --warmup 2 --lr 3e-3 --eval-every 2 --eval-batches 5 --save-every 2 --keep 5
       --threads 1 --no-tensorboard)
metrics() { sed 's/, "tokens_per_s.*//' "$1/metrics.jsonl"; } # without the timings
same_run() { # $1 $2: the same metrics and final weights, byte for byte
    [[ -s $1/metrics.jsonl ]] && diff <(metrics "$1") <(metrics "$2") >/dev/null &&
        cmp -s "$1/model/model.safetensors" "$2/model/model.safetensors"
}

# Exact reduction: 1, 2 and 3 processes agree bit for bit.
"$qkv" train "${flags[@]}" --exact-reduce 1 --out "$tmp/x1" >/dev/null 2>"$tmp/x1.err"; rc=$?
check '[[ $rc -eq 0 ]]' "single process, --exact-reduce 1 ($rc): $(tail -2 "$tmp/x1.err")"
for n in 2 3; do
    mpi $n "$qkv" train "${flags[@]}" --exact-reduce 1 --out "$tmp/x$n" >/dev/null 2>"$tmp/x$n.err"; rc=$?
    check '[[ $rc -eq 0 ]]' "-np $n --exact-reduce 1 ($rc): $(tail -3 "$tmp/x$n.err")"
    check 'same_run "$tmp/x1" "$tmp/x$n"' "-np $n --exact-reduce 1: metrics and weights equal one process's"
    check '[[ $(grep -c "processes (MPI)" "$tmp/x$n.err") -eq 1 ]]' "-np $n: one rank prints"
    check '[[ $(grep -c "\"loss\"" "$tmp/x$n/metrics.jsonl") -eq 6 ]]' "-np $n: one writer of metrics.jsonl"
done

# The default all-reduce: within 1e-6 relative of one process.
"$qkv" train "${flags[@]}" --out "$tmp/f1" >/dev/null 2>&1
losses() { grep -o '"\(val_\)\?loss": [0-9.]*' "$1/metrics.jsonl" | sed 's/.*: //'; }
for n in 2 3; do
    mpi $n "$qkv" train "${flags[@]}" --out "$tmp/f$n" >/dev/null 2>"$tmp/f$n.err"; rc=$?
    check '[[ $rc -eq 0 ]]' "-np $n all-reduce ($rc): $(tail -3 "$tmp/f$n.err")"
    check '[[ $(losses "$tmp/f1" | wc -l) -eq 9 ]] && paste <(losses "$tmp/f1") <(losses "$tmp/f$n") |
           awk "{d = \$1 - \$2; if (d < 0) d = -d; if (NF != 2 || d > 1e-6 * \$1) bad = 1} END {exit bad}"' \
        "-np $n all-reduce: losses within 1e-6 relative: $(paste -d' ' <(losses "$tmp/f1") <(losses "$tmp/f$n") | tr '\n' ',')"
done

# --accum 2 on 3 ranks: rank 2 computes nothing but still joins every all-reduce in order.
"$qkv" train "${flags[@]}" --accum 2 --out "$tmp/i1" >/dev/null 2>&1
mpi 3 "$qkv" train "${flags[@]}" --accum 2 --out "$tmp/i3" >/dev/null 2>"$tmp/i3.err"; rc=$?
check '[[ $rc -eq 0 && $(losses "$tmp/i1" | wc -l) -eq 9 ]] && paste <(losses "$tmp/i1") <(losses "$tmp/i3") |
       awk "{d = \$1 - \$2; if (d < 0) d = -d; if (NF != 2 || d > 1e-6 * \$1) bad = 1} END {exit bad}"' \
    "-np 3 --accum 2 (an idle rank): losses within 1e-6 relative ($rc): $(paste -d' ' <(losses "$tmp/i1") <(losses "$tmp/i3") | tr '\n' ',')"

# --resume with another number of ranks: the 2-rank run from its step 2 on 3 ranks, the 3-rank
# run from its step 4 alone; both end as the uninterrupted runs.
cp -r "$tmp/x2" "$tmp/r3" && rm -rf "$tmp"/r3/ckpt_0000000[46].safetensors "$tmp/r3/model"
mpi 3 "$qkv" train --resume --out "$tmp/r3" >/dev/null 2>"$tmp/r3.err"; rc=$?
check '[[ $rc -eq 0 ]] && grep -q "resuming at step 2" "$tmp/r3.err"' "2 -> 3 ranks by --resume ($rc): $(tail -2 "$tmp/r3.err")"
check 'same_run "$tmp/x1" "$tmp/r3"' "2 -> 3 ranks by --resume: the uninterrupted run's metrics and weights"
cp -r "$tmp/x3" "$tmp/r1" && rm -rf "$tmp/r1/ckpt_00000006.safetensors" "$tmp/r1/model"
"$qkv" train --resume --out "$tmp/r1" >/dev/null 2>"$tmp/r1.err"; rc=$?
check '[[ $rc -eq 0 ]] && grep -q "resuming at step 4" "$tmp/r1.err"' "3 ranks -> 1 by --resume ($rc): $(tail -2 "$tmp/r1.err")"
check 'same_run "$tmp/x1" "$tmp/r1"' "3 ranks -> 1 by --resume: the uninterrupted run's metrics and weights"

# ZeRO-1: the moments sharded; the weights, metrics and checkpoints as without it.
for n in 2 3; do
    mpi $n "$qkv" train "${flags[@]}" --exact-reduce 1 --zero 1 --out "$tmp/z$n" >/dev/null 2>"$tmp/z$n.err"; rc=$?
    check '[[ $rc -eq 0 ]] && grep -q "ZeRO-1: each process keeps the optimizer state of 1/$n" "$tmp/z$n.err"' \
        "-np $n --zero 1 --exact-reduce 1 ($rc): $(tail -3 "$tmp/z$n.err")"
    check 'same_run "$tmp/x1" "$tmp/z$n"' "-np $n --zero 1 --exact-reduce 1: metrics and weights equal one process's"
    check 'grep -q "optimizer state .* (its ZeRO-1 slice)" "$tmp/z$n.err"' "-np $n --zero 1: the slice's bytes reported"
    mpi $n "$qkv" train "${flags[@]}" --zero 1 --out "$tmp/fz$n" >/dev/null 2>"$tmp/fz$n.err"; rc=$?
    check '[[ $rc -eq 0 ]]' "-np $n --zero 1 ($rc): $(tail -3 "$tmp/fz$n.err")"
    check '[[ $(losses "$tmp/f1" | wc -l) -eq 9 ]] && paste <(losses "$tmp/f1") <(losses "$tmp/fz$n") |
           awk "{d = \$1 - \$2; if (d < 0) d = -d; if (NF != 2 || d > 1e-6 * \$1) bad = 1} END {exit bad}"' \
        "-np $n --zero 1 (reduce-scatter): losses within 1e-6 relative: $(paste -d' ' <(losses "$tmp/f1") <(losses "$tmp/fz$n") | tr '\n' ',')"
done
# one process: nothing to shard, the same run
"$qkv" train "${flags[@]}" --exact-reduce 1 --zero 1 --out "$tmp/z1" >/dev/null 2>"$tmp/z1.err"; rc=$?
check '[[ $rc -eq 0 ]] && grep -q "zero 1 with one process: nothing to shard" "$tmp/z1.err"' "one process --zero 1 ($rc): $(tail -2 "$tmp/z1.err")"
check 'same_run "$tmp/x1" "$tmp/z1"' "one process --zero 1: the run without it"
# a model whose blocks (1.2M floats) and flat buffer span several 4 MiB buckets, 3 steps
big=("${flags[@]}" --n-embd 320 --n-head 4 --steps 3 --accum 3 --eval-every 3)
"$qkv" train "${big[@]}" --exact-reduce 1 --out "$tmp/b1" >/dev/null 2>&1
mpi 3 "$qkv" train "${big[@]}" --exact-reduce 1 --zero 1 --out "$tmp/b3" >/dev/null 2>"$tmp/b3.err"; rc=$?
check '[[ $rc -eq 0 ]] && same_run "$tmp/b1" "$tmp/b3"' "-np 3 --zero 1, several buckets: one process's bits ($rc): $(tail -2 "$tmp/b3.err")"
"$qkv" train "${big[@]}" --out "$tmp/bf1" >/dev/null 2>&1
mpi 2 "$qkv" train "${big[@]}" --zero 1 --out "$tmp/bf2" >/dev/null 2>"$tmp/bf2.err"; rc=$?
check '[[ $rc -eq 0 && $(losses "$tmp/bf1" | wc -l) -eq 4 ]] && paste <(losses "$tmp/bf1") <(losses "$tmp/bf2") |
       awk "{d = \$1 - \$2; if (d < 0) d = -d; if (NF != 2 || d > 1e-6 * \$1) bad = 1} END {exit bad}"' \
    "-np 2 --zero 1, several buckets: losses within 1e-6 relative ($rc): $(paste -d' ' <(losses "$tmp/bf1") <(losses "$tmp/bf2") | tr '\n' ',')"
# resumed across zero / no zero and rank counts: 2 ranks -> 3 ranks with ZeRO-1 (step 2),
# ZeRO-1 on 3 ranks -> one process without (step 4), ZeRO-1 on 3 ranks -> on 2 (step 2)
cp -r "$tmp/x2" "$tmp/rz3" && rm -rf "$tmp"/rz3/ckpt_0000000[46].safetensors "$tmp/rz3/model"
mpi 3 "$qkv" train --resume --zero 1 --out "$tmp/rz3" >/dev/null 2>"$tmp/rz3.err"; rc=$?
check '[[ $rc -eq 0 ]] && grep -q "resuming at step 2" "$tmp/rz3.err" && same_run "$tmp/x1" "$tmp/rz3"' \
    "2 ranks -> 3 ranks with --zero 1 by --resume: the uninterrupted run's bits ($rc): $(tail -2 "$tmp/rz3.err")"
cp -r "$tmp/z3" "$tmp/rz1" && rm -rf "$tmp/rz1/ckpt_00000006.safetensors" "$tmp/rz1/model"
"$qkv" train --resume --zero 0 --out "$tmp/rz1" >/dev/null 2>"$tmp/rz1.err"; rc=$?
check '[[ $rc -eq 0 ]] && grep -q "resuming at step 4" "$tmp/rz1.err" && same_run "$tmp/x1" "$tmp/rz1"' \
    "3 ranks with --zero 1 -> one process without by --resume: the uninterrupted run's bits ($rc): $(tail -2 "$tmp/rz1.err")"
cp -r "$tmp/z3" "$tmp/rz2" && rm -rf "$tmp"/rz2/ckpt_0000000[46].safetensors "$tmp/rz2/model"
mpi 2 "$qkv" train --resume --out "$tmp/rz2" >/dev/null 2>"$tmp/rz2.err"; rc=$?
check '[[ $rc -eq 0 ]] && grep -q "resuming at step 2" "$tmp/rz2.err" && grep -q "ZeRO-1" "$tmp/rz2.err" && same_run "$tmp/x1" "$tmp/rz2"' \
    "3 -> 2 ranks, both --zero 1 (kept from the checkpoint's options) by --resume: the uninterrupted run's bits ($rc): $(tail -2 "$tmp/rz2.err")"

# A rank killed mid-run: the job stops, the last checkpoint resumes to the same weights.
# The run to kill never ends on its own (a constant learning rate over 10^7 steps), so the
# kill cannot come too late however fast the machine is; it resumes with --steps 1000, which
# a constant schedule makes the same run as the reference's 1000 steps.
long=("${flags[@]}" --exact-reduce 1 --decay constant --save-every 5 --eval-every 100)
"$qkv" train "${long[@]}" --steps 1000 --out "$tmp/ref" >/dev/null 2>&1
long+=(--steps 10000000)
kill_rank_1 "$tmp/k" -- train "${long[@]}"
check '[[ $hung -eq 0 && $rc -ne 0 ]]' "killed rank: the job stops (hung $hung, exit $rc)"
check 'grep -q "rank 1 .*signal 9" "$tmp/k.err"' "killed rank: mpirun names it: $(tail -3 "$tmp/k.err")"
check '[[ ! -e $tmp/k/model ]]' "killed rank: the run did not finish"
mpi 2 "$qkv" train --resume --steps 1000 --out "$tmp/k" >/dev/null 2>"$tmp/k2.err"; rc=$?
check '[[ $rc -eq 0 ]]' "killed rank: resumes ($rc): $(tail -2 "$tmp/k2.err")"
check 'cmp -s "$tmp/ref/model/model.safetensors" "$tmp/k/model/model.safetensors"' \
    "killed rank: resumed to the uninterrupted run's weights"
# mpirun --enable-recovery leaves rank 0 running: the watchdog stops it
long+=(--mpi-timeout 3)
kill_rank_1 "$tmp/w" --enable-recovery -- train "${long[@]}"
check '[[ $hung -eq 0 ]] && grep -q "rank 0 of 2: no answer from the other ranks for 3 s" "$tmp/w.err"' \
    "watchdog: rank 0 stops with a clear error (hung $hung): $(grep qkv: "$tmp/w.err" | head -2)"

# Different options on different ranks: refused at the start, exit 2, nothing trained.
mpirun --oversubscribe --allow-run-as-root -np 1 "$qkv" train "${flags[@]}" --out "$tmp/m" : \
    -np 1 "$qkv" train "${flags[@]}" --lr 2e-3 --out "$tmp/m" >/dev/null 2>"$tmp/m.err"; rc=$?
check '[[ $rc -eq 2 ]] && grep -q "rank 1 and rank 0 differ in their training options" "$tmp/m.err"' \
    "mismatched options: exit 2 ($rc): $(grep qkv: "$tmp/m.err" | head -2)"
check '[[ ! -e $tmp/m/metrics.jsonl || ! -s $tmp/m/metrics.jsonl ]] && ! ls "$tmp"/m/ckpt_* >/dev/null 2>&1' \
    "mismatched options: nothing trained"
# Ranks computing with other kernels (QKV_ARCH) would not sum to one process's gradients:
# refused the same way (so would another build of qkv: the build line is in the same hash).
mpirun --oversubscribe --allow-run-as-root -np 1 -x QKV_ARCH=avx2 "$qkv" train "${flags[@]}" \
    --out "$tmp/isa" : -np 1 -x QKV_ARCH=scalar "$qkv" train "${flags[@]}" --out "$tmp/isa" \
    >/dev/null 2>"$tmp/k.err"; rc=$?
check '[[ $rc -eq 2 ]] && grep -q "rank 1 and rank 0 differ in their qkv version, build or kernels" "$tmp/k.err"' \
    "mismatched kernels: exit 2 ($rc): $(grep "qkv" "$tmp/k.err" | tail -2)"

echo "$checks checks, $fail failed"
[[ $fail -eq 0 ]]
