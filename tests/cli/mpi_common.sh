# mpi_common.sh — sourced by the mpirun tests (test_train_mpi.sh, test_finetune_mpi.sh) after
# they set $qkv and $name: the skip (77) without mpirun, a temporary directory $tmp removed on
# exit, check, mpi N CMD (mpirun -np N on this machine) and killing one rank of a running job.
if ! command -v mpirun >/dev/null 2>&1; then echo "SKIP: mpirun not found (openmpi-bin)"; exit 77; fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/qkv_$name.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail=0; checks=0
check() { checks=$((checks + 1)); if ! eval "$1"; then echo "FAIL: $2"; fail=$((fail + 1)); fi; }
mpi() { local n=$1; shift; mpirun --oversubscribe --allow-run-as-root -np "$n" "$@"; }

# rank_pid MPIRUN_PID RANK: the pid of that rank among mpirun's children
rank_pid() {
    for p in $(pgrep -P "$1"); do
        grep -qz "^OMPI_COMM_WORLD_RANK=$2\$" "/proc/$p/environ" 2>/dev/null && echo "$p"
    done
}

# kill_rank_1 DIR [MPIRUN OPTIONS] -- QKV ARGS: runs `mpirun -np 2 qkv ARGS --out DIR` (stderr
# in DIR.err), SIGKILLs rank 1 once DIR holds a checkpoint and waits for the job; sets rc (its
# exit status) and hung (1 when it did not stop within 2 minutes: then it is killed).
kill_rank_1() {
    local dir=$1 mo=() i; shift
    while [[ $# -gt 0 && $1 != -- ]]; do mo+=("$1"); shift; done
    shift
    mpirun --oversubscribe --allow-run-as-root "${mo[@]}" -np 2 "$qkv" "$@" \
        --out "$dir" >/dev/null 2>"$dir.err" &
    local mp=$!
    # the first checkpoint (any: --keep deletes the early ones within milliseconds)
    for i in $(seq 600); do compgen -G "$dir/ckpt_*.safetensors" >/dev/null && break; sleep 0.1; done
    kill -9 $(rank_pid $mp 1) 2>/dev/null
    hung=1 # a generous bound that only a hang reaches (the job stops within seconds)
    for i in $(seq 1200); do kill -0 $mp 2>/dev/null || { hung=0; break; }; sleep 0.1; done
    [[ $hung -eq 1 ]] && kill -9 $mp
    wait $mp; rc=$?
}
