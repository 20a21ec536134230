#!/usr/bin/env bash
# test_finetune_mpi.sh QKV SOURCE_DIR — `mpirun -np N qkv finetune` (a build with
# -DQKV_WITH_MPI=ON) against one process, on the tiny classifier of tests/fixtures/cls/single
# and a synthetic labelled set (108 training and 12 validation examples; batches of 5 in
# micro-batches of 2, so a step is 3 micro-batches and an epoch's last batch, of 3 examples, has
# an empty one; the validation's 3 batches are shared by the ranks):
#   - --exact-reduce 1 on 2 and 3 ranks: the single process's metrics (every loss and
#     validation score), best model and exported model byte for byte — full fine-tuning and
#     LoRA (the adapter too), each with dropout on and off; --zero 1 too;
#   - the default all-reduce: every loss within 1e-6 relative of one process (and the 1e-6 of
#     metrics.jsonl's six decimals);
#   - without --micro-batch, 2 ranks split each batch in two (ceil(5 / 2) = 3): one process
#     with --micro-batch 3 gives the same bits; the choice is stored in the run's options;
#   - --resume with another number of ranks (2 -> 3, 3 -> 1, LoRA 2 -> 3, ZeRO-1 on 3 -> one
#     process without) ends as the uninterrupted run, byte for byte;
#   - one rank prints and writes;
#   - a rank killed (SIGKILL) mid-run stops the job (no hang); its last checkpoint resumes on
#     the killed run's losses; under --enable-recovery the watchdog (--mpi-timeout) stops rank 0
#     with a clear error;
#   - ranks started with different options (--lr, --micro-batch) are refused at the start,
#     exit 2, nothing trained.
# Skipped (77) when mpirun is not installed.
set -uo pipefail
qkv=$1 src=$2
model=$src/tests/fixtures/cls/single
name=finetune_mpi
source "$(dirname "$0")/mpi_common.sh" # $tmp, check, mpi, kill_rank_1

source "$(dirname "$0")/cls_data.sh" # make_data
make_data 120 1 > "$tmp/train.tsv"

# 2 epochs of 22 steps; evaluations at 22 and 44; checkpoints every 11 steps
flags=(--model "$model" --train "$tmp/train.tsv" --epochs 2 --batch 5 --micro-batch 2 --lr 5e-3
       --save-every 11 --keep 10 --threads 1 --no-tensorboard)
metrics() { sed 's/, "tokens_per_s.*//' "$1/metrics.jsonl"; } # without the timings
same_run() { # $1 $2: the same metrics, best checkpoint's weights and exported model, byte for byte
    [[ -s $1/metrics.jsonl ]] && diff <(metrics "$1") <(metrics "$2") >/dev/null &&
        cmp -s "$1/model/model.safetensors" "$2/model/model.safetensors" &&
        { [[ ! -e $1/adapter ]] || cmp -s "$1/adapter/adapter_model.safetensors" "$2/adapter/adapter_model.safetensors"; }
}
losses() { grep -o '"\(val_\)\?loss": [0-9.]*' "$1/metrics.jsonl" | sed 's/.*: //'; }
within() { # $1 $2: as many losses, each within 1e-6 relative (plus the 1e-6 of the six
             # decimals metrics.jsonl prints: a last digit may round the other way)
    [[ $(losses "$1" | wc -l) -eq 46 ]] && paste <(losses "$1") <(losses "$2") |
        awk '{d = $1 - $2; if (d < 0) d = -d; if (NF != 2 || d > 1e-6 * $1 + 1e-6) bad = 1} END {exit bad}'
}

# Exact reduction: 1, 2 and 3 processes agree bit for bit, for every kind of run.
declare -A kind=([fd]="--dropout 0.1" [fo]="--dropout off"
                 [ld]="--dropout 0.1 --lora-r 4" [lo]="--dropout off --lora-r 4 --lora-dropout 0")
for k in fd fo ld lo; do
    # shellcheck disable=SC2086
    "$qkv" finetune "${flags[@]}" ${kind[$k]} --exact-reduce 1 --out "$tmp/${k}1" >/dev/null 2>"$tmp/${k}1.err"; rc=$?
    check '[[ $rc -eq 0 ]]' "$k: one process ($rc): $(tail -2 "$tmp/${k}1.err")"
    for n in 2 3; do
        # shellcheck disable=SC2086
        mpi $n "$qkv" finetune "${flags[@]}" ${kind[$k]} --exact-reduce 1 --out "$tmp/$k$n" >"$tmp/$k$n.out" 2>"$tmp/$k$n.err"; rc=$?
        check '[[ $rc -eq 0 ]]' "$k: -np $n --exact-reduce 1 ($rc): $(tail -3 "$tmp/$k$n.err")"
        check 'same_run "$tmp/${k}1" "$tmp/$k$n"' "$k: -np $n --exact-reduce 1: metrics and model equal one process's"
    done
done
check '[[ -s $tmp/ld2/adapter/adapter_model.safetensors ]]' "LoRA: -np 2 writes the adapter"
check '[[ $(grep -c "processes (MPI)" "$tmp/fd3.err") -eq 1 ]] && grep -q "3 micro-batches of 2; 3 processes" "$tmp/fd3.err"' \
    "-np 3: one rank prints how a step is shared: $(grep MPI "$tmp/fd3.err")"
check '[[ $(grep -c "\"loss\"" "$tmp/fd3/metrics.jsonl") -eq 44 && $(grep -c "macro avg" "$tmp/fd3.out") -eq 1 ]]' \
    "-np 3: one writer of metrics.jsonl and of the report"
check '! diff -q <(metrics "$tmp/fd1") <(metrics "$tmp/fo1") >/dev/null' "dropout on and off give the same run"

# ZeRO-1 with the exact reduction: the same bits.
for k in fd ld; do
    # shellcheck disable=SC2086
    mpi 3 "$qkv" finetune "${flags[@]}" ${kind[$k]} --exact-reduce 1 --zero 1 --out "$tmp/z$k" >/dev/null 2>"$tmp/z$k.err"; rc=$?
    check '[[ $rc -eq 0 ]] && grep -q "ZeRO-1: each process keeps the optimizer state of 1/3" "$tmp/z$k.err"' \
        "$k: -np 3 --zero 1 ($rc): $(tail -3 "$tmp/z$k.err")"
    check 'same_run "$tmp/${k}1" "$tmp/z$k"' "$k: -np 3 --zero 1 --exact-reduce 1: metrics and model equal one process's"
done

# The default all-reduce: within 1e-6 relative of one process.
"$qkv" finetune "${flags[@]}" --dropout 0.1 --out "$tmp/a1" >/dev/null 2>&1
for n in 2 3; do
    mpi $n "$qkv" finetune "${flags[@]}" --dropout 0.1 --out "$tmp/a$n" >/dev/null 2>"$tmp/a$n.err"; rc=$?
    check '[[ $rc -eq 0 ]] && within "$tmp/a1" "$tmp/a$n"' \
        "-np $n all-reduce: losses within 1e-6 relative ($rc): $(paste -d' ' <(losses "$tmp/a1") <(losses "$tmp/a$n") | head -8 | tr '\n' ',')"
done

# Without --micro-batch the ranks split each batch: 2 ranks, micro-batches of 3.
nomb=(--model "$model" --train "$tmp/train.tsv" --epochs 2 --batch 5 --lr 5e-3 --save-every 11
      --keep 10 --threads 1 --no-tensorboard --dropout 0.1 --exact-reduce 1)
mpi 2 "$qkv" finetune "${nomb[@]}" --out "$tmp/d2" >/dev/null 2>"$tmp/d2.err"; rc=$?
"$qkv" finetune "${nomb[@]}" --micro-batch 3 --out "$tmp/d1" >/dev/null 2>&1
check '[[ $rc -eq 0 ]] && grep -q "2 micro-batches of 3; 2 processes" "$tmp/d2.err" && grep -q "\"micro_batch\":3" "$tmp/d2/config.json"' \
    "-np 2 without --micro-batch: batches split in two, stored ($rc): $(grep -i micro "$tmp/d2.err")"
check 'same_run "$tmp/d1" "$tmp/d2"' "-np 2 without --micro-batch: one process with --micro-batch 3"

# --resume with another number of ranks.
resumed() { # $1: run to copy, $2: new name, $3: first checkpoint step to drop; rest: the command
    local from=$1 to=$2 drop=$3; shift 3
    cp -r "$tmp/$from" "$tmp/$to"
    rm -rf "$tmp/$to/model" "$tmp/$to/adapter"
    for s in 11 22 33 44; do [[ $s -ge $drop ]] && rm -f "$tmp/$to/ckpt_000000$s.safetensors"; done
    "$@" finetune --resume --threads 1 --out "$tmp/$to" >/dev/null 2>"$tmp/$to.err"
}
resumed fd2 r23 33 mpi 3 "$qkv"; rc=$?
check '[[ $rc -eq 0 ]] && grep -q "resuming .* at step 22" "$tmp/r23.err" && same_run "$tmp/fd1" "$tmp/r23"' \
    "2 -> 3 ranks by --resume: the uninterrupted run's bits ($rc): $(tail -2 "$tmp/r23.err")"
resumed fd3 r31 22 "$qkv"; rc=$?
check '[[ $rc -eq 0 ]] && grep -q "resuming .* at step 11" "$tmp/r31.err" && same_run "$tmp/fd1" "$tmp/r31"' \
    "3 ranks -> 1 by --resume: the uninterrupted run's bits ($rc): $(tail -2 "$tmp/r31.err")"
resumed ld2 rl23 33 mpi 3 "$qkv"; rc=$?
check '[[ $rc -eq 0 ]] && same_run "$tmp/ld1" "$tmp/rl23"' \
    "LoRA 2 -> 3 ranks by --resume: the uninterrupted run's model and adapter ($rc): $(tail -2 "$tmp/rl23.err")"
cp -r "$tmp/zfd" "$tmp/rz1"; rm -rf "$tmp/rz1/model" "$tmp"/rz1/ckpt_000000{33,44}.safetensors
"$qkv" finetune --resume --zero 0 --threads 1 --out "$tmp/rz1" >/dev/null 2>"$tmp/rz1.err"; rc=$?
check '[[ $rc -eq 0 ]] && same_run "$tmp/fd1" "$tmp/rz1"' \
    "ZeRO-1 on 3 ranks -> one process without by --resume: the same bits ($rc): $(tail -2 "$tmp/rz1.err")"
"$qkv" finetune --resume --micro-batch 3 --out "$tmp/rz1" >/dev/null 2>"$tmp/err"; rc=$?
check '[[ $rc -eq 2 ]] && grep -q "micro-batch cannot change on --resume" "$tmp/err"' "--resume --micro-batch refused ($rc)"

# A rank killed mid-run: the job stops. The run to kill never ends on its own (100000 epochs).
long=("${flags[@]}" --dropout 0.1 --exact-reduce 1 --epochs 100000 --save-every 5 --eval-every 1000000)
kill_rank_1 "$tmp/k" -- finetune "${long[@]}"
check '[[ $hung -eq 0 && $rc -ne 0 ]]' "killed rank: the job stops (hung $hung, exit $rc)"
check 'grep -q "rank 1 .*signal 9" "$tmp/k.err"' "killed rank: mpirun names it: $(tail -3 "$tmp/k.err")"
check '[[ ! -e $tmp/k/model ]]' "killed rank: the run did not finish"
# Its last checkpoint resumes (one process) on the steps of an uninterrupted run (one process
# too); both are stopped by SIGTERM once they have written the checkpoint 5 steps later.
until_term() { # $1: run directory, $2: the checkpoint to wait for; rest: the command; sets rc
    local dir=$1 want i; want=$(printf '%s/ckpt_%08d.safetensors' "$1" "$2"); shift 2
    "$@" --out "$dir" >/dev/null 2>"$dir.err" &
    local pid=$!
    for i in $(seq 1200); do [[ -f $want ]] && break; sleep 0.1; done
    kill -TERM $pid; wait $pid; rc=$?
}
from=$(ls "$tmp"/k/ckpt_*.safetensors | tail -1 | sed 's/.*ckpt_0*//; s/\.safetensors//')
until_term "$tmp/k" $((from + 5)) "$qkv" finetune --resume --threads 1
check '[[ $rc -eq 143 ]] && grep -q "resuming .* at step $from" "$tmp/k.err"' \
    "killed rank: the last checkpoint (step $from) resumes ($rc): $(tail -2 "$tmp/k.err")"
until_term "$tmp/kref" $((from + 5)) "$qkv" finetune "${long[@]}"
steps() { metrics "$1" | grep '"loss"' | head -$((from + 5)); }
check '[[ $(steps "$tmp/k" | wc -l) -eq $((from + 5)) ]] && diff <(steps "$tmp/k") <(steps "$tmp/kref") >/dev/null' \
    "killed rank: resumed from step $from, the uninterrupted run's losses bit for bit ($rc)"
# mpirun --enable-recovery leaves rank 0 running: the watchdog stops it
kill_rank_1 "$tmp/w" --enable-recovery -- finetune "${long[@]}" --mpi-timeout 3
check '[[ $hung -eq 0 ]] && grep -q "rank 0 of 2: no answer from the other ranks for 3 s" "$tmp/w.err"' \
    "watchdog: rank 0 stops with a clear error (hung $hung): $(grep qkv: "$tmp/w.err" | head -2)"

# Different options on different ranks: refused at the start, exit 2, nothing trained.
for opt in "--lr 2e-3" "--micro-batch 1"; do
    # shellcheck disable=SC2086
    mpirun --oversubscribe --allow-run-as-root -np 1 "$qkv" finetune "${flags[@]}" --out "$tmp/m" : \
        -np 1 "$qkv" finetune "${flags[@]}" $opt --out "$tmp/m" >/dev/null 2>"$tmp/m.err"; rc=$?
    check '[[ $rc -eq 2 ]] && grep -q "rank 1 and rank 0 differ in their training options" "$tmp/m.err"' \
        "mismatched $opt: exit 2 ($rc): $(grep qkv: "$tmp/m.err" | head -2)"
    check '! ls "$tmp"/m/ckpt_* >/dev/null 2>&1 && [[ ! -s $tmp/m/metrics.jsonl ]]' "mismatched $opt: nothing trained"
    rm -rf "$tmp/m"
done

echo "$checks checks, $fail failed"
[[ $fail -eq 0 ]]
