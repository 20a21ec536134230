/* bench_mpi.c — what data-parallel training pays for communication here (a -DQKV_WITH_MPI=ON
 * build; mpirun -np N bench_mpi): the point-to-point latency and bandwidth between ranks 0
 * and 1 (ping-pong, half the round trip), and the time of one gradient bucket (4 MiB of
 * floats, the loop's BUCKET) through MPI_Allreduce (the default reduction) and MPI_Gather +
 * MPI_Bcast (what --exact-reduce 1 does per micro-batch round); --bucket-floats N for
 * another bucket size. One JSON object per line,
 * medians of --reps repetitions (default 30) after a warm-up; printed by rank 0.
 * docs/SCALING.md fits its α–β model to these numbers. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp_d);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size, reps = 30, bucket = 1 << 20; /* floats: 4 MiB, the loop's BUCKET */
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--reps") == 0)
            reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--bucket-floats") == 0)
            bucket = atoi(argv[++i]);
    if (reps < 3) reps = 3;
    if (bucket < 1 || bucket > (1 << 26)) bucket = 1 << 20;
    float *a = calloc((size_t)bucket, sizeof *a), *g = calloc((size_t)bucket * (size_t)size, 4);
    double *t = calloc((size_t)reps, sizeof *t);
    if (!a || !g || !t) MPI_Abort(MPI_COMM_WORLD, 1);
    for (int i = 0; i < bucket; i++) a[i] = (float)(i % 97) * 1e-3f;
    /* ping-pong between 0 and 1 */
    static const int bytes[] = {8, 1024, 65536, 1 << 20, 4 << 20};
    for (size_t k = 0; size >= 2 && k < sizeof bytes / sizeof *bytes; k++) {
        const int n = bytes[k];
        if (n > 4 * bucket) break;
        for (int r = -1; r < reps; r++) {
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = MPI_Wtime();
            if (rank == 0) {
                MPI_Send(a, n, MPI_BYTE, 1, 0, MPI_COMM_WORLD);
                MPI_Recv(a, n, MPI_BYTE, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            } else if (rank == 1) {
                MPI_Recv(a, n, MPI_BYTE, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                MPI_Send(a, n, MPI_BYTE, 0, 0, MPI_COMM_WORLD);
            }
            if (r >= 0) t[r] = (MPI_Wtime() - t0) / 2;
        }
        if (rank == 0) {
            double m = median(t, reps);
            printf("{\"bench\": \"pingpong\", \"ranks\": %d, \"bytes\": %d, \"one_way_us\": %.2f, "
                   "\"MB_per_s\": %.1f}\n",
                   size, n, 1e6 * m, (double)n / m / 1e6);
        }
    }
    /* one bucket: all-reduce, and gather + broadcast */
    for (int mode = 0; mode < 2; mode++) {
        for (int r = -1; r < reps; r++) {
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = MPI_Wtime();
            if (mode == 0) {
                MPI_Allreduce(MPI_IN_PLACE, a, bucket, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            } else {
                MPI_Gather(a, bucket, MPI_FLOAT, g, bucket, MPI_FLOAT, 0, MPI_COMM_WORLD);
                MPI_Bcast(a, bucket, MPI_FLOAT, 0, MPI_COMM_WORLD);
            }
            double dt = MPI_Wtime() - t0, mx;
            MPI_Allreduce(&dt, &mx, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
            if (r >= 0) t[r] = mx;
            if (mode == 0) /* keep the values finite */
                for (int i = 0; i < bucket; i++) a[i] = (float)(i % 97) * 1e-3f;
        }
        if (rank == 0) {
            double m = median(t, reps);
            printf("{\"bench\": \"%s\", \"ranks\": %d, \"bytes\": %d, \"ms\": %.3f, "
                   "\"MB_per_s\": %.1f}\n",
                   mode ? "gather_bcast" : "allreduce", size, 4 * bucket, 1e3 * m,
                   4.0 * bucket / m / 1e6);
        }
    }
    free(a), free(g), free(t);
    MPI_Finalize();
    return 0;
}
