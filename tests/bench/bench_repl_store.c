/* The replica store alone, the target's half of a cycle without the network
 * or the source: a full cycle of a 1 GiB disk written in 512 KiB extents
 * into the raw first point, then incremental cycles of 1024 scattered
 * 64 KiB writes (in offset order, as a source sends them) into a new qcow2
 * overlay through qemu-nbd. Each cycle's time is split into writing (queueing
 * the extents, which the writer thread takes as they come) and committing
 * (the rest of the writes, the flush, the state file).
 *
 * Usage: bench_repl_store [DIR [ROUNDS [MB_S]]]   (default /var/tmp, 5 rounds)
 * MB_S paces the incremental extents the way a network would deliver them
 * (queued no faster than that many MB/s), so the writer sees its queue run
 * dry as it does in a real cycle; 0 (default) queues them as fast as it can.
 * Prints: per cycle, wall seconds and the CPU seconds of this process and of
 * its children (qemu-nbd, qemu-img). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "plugins/replication/repl_store.h"

#define DISK_SIZE (UINT64_C(1) << 30)
#define FULL_EXTENT (512 * 1024)
#define INC_EXTENT (64 * 1024)
#define INC_WRITES 1024

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(int who) {
        struct rusage u;
        getrusage(who, &u);
        return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
               (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? -1 : x > y;
}

/* Queues one extent filled with a pattern (the receiver's decrypt stands
 * in as a memset into the store's buffer). */
static int put(struct nst_rs_replica *r, uint64_t offset, uint32_t length, int pattern,
               struct nst_error *err) {
        struct nst_rs_wbuf *b;
        void *data;
        int rc = nst_rs_write_prepare(r, 0, offset, length, &b, &data, err);
        if (rc < 0)
                return rc;
        memset(data, pattern, length);
        return nst_rs_write_queue(r, b, err);
}

/* One cycle: offsets[0..n) of `length` bytes each, then the commit; the
 * extents are queued no faster than mb_s MB/s (0: no limit). */
static int cycle(struct nst_rs_replica *r, const char *name, const uint64_t *offsets, size_t n,
                 uint32_t length, int pattern, double mb_s, struct nst_error *err) {
        double c0 = cpu_s(RUSAGE_SELF), k0 = cpu_s(RUSAGE_CHILDREN), t0 = now_s();
        int rc = nst_rs_cycle_begin(r, name, NULL, err);
        double t1 = now_s();
        for (size_t i = 0; rc >= 0 && i < n; i++) {
                if (mb_s > 0)
                        while (now_s() < t1 + (double)i * length / (mb_s * 1e6))
                                ; /* spin: a sleep overshoots by more than an extent */
                rc = put(r, offsets[i], length, pattern, err);
        }
        double t2 = now_s();
        uint64_t id = 0;
        struct nst_rs_point p = {.time_ms = 0, .checkpoint = (char *)name};
        if (rc >= 0)
                rc = nst_rs_cycle_commit(r, &p, &id, err);
        double t3 = now_s();
        if (rc < 0)
                return rc;
        printf("%-12s %4zu x %3u KiB: %.3f s (begin %.3f, writing %.3f, commit %.3f); "
               "CPU: store %.2f s, qemu-nbd/qemu-img %.2f s\n",
               name, n, length / 1024, t3 - t0, t1 - t0, t2 - t1, t3 - t2,
               cpu_s(RUSAGE_SELF) - c0, cpu_s(RUSAGE_CHILDREN) - k0);
        return 0;
}

int main(int argc, char **argv) {
        const char *base = argc > 1 ? argv[1] : "/var/tmp";
        int rounds = argc > 2 ? atoi(argv[2]) : 5;
        double mb_s = argc > 3 ? atof(argv[3]) : 0;
        char dir[4096];
        snprintf(dir, sizeof(dir), "%s/bench-repl-store-%d", base, (int)getpid());
        struct nst_error err = NST_ERROR_INIT;
        struct nst_rs_disk disk = {.name = "vda", .size = DISK_SIZE};
        struct nst_rs_replica *r = NULL;
        if (nst_rs_create(dir, "bench", &disk, 1, NULL, &r, &err) < 0) {
                fprintf(stderr, "bench_repl_store: %s\n", err.message);
                return 1;
        }
        size_t n_full = DISK_SIZE / FULL_EXTENT;
        uint64_t *offsets = calloc(n_full, sizeof(*offsets));
        int rc = offsets ? 0 : -1;
        for (size_t i = 0; offsets && i < n_full; i++)
                offsets[i] = (uint64_t)i * FULL_EXTENT;
        if (rc == 0)
                rc = cycle(r, "full", offsets, n_full, FULL_EXTENT, 0x5a, 0, &err);
        srandom(1);
        for (int round = 1; rc >= 0 && round <= rounds; round++) {
                /* 1024 distinct 64 KiB blocks of the 16,384, sorted. */
                uint64_t blocks = DISK_SIZE / INC_EXTENT;
                for (size_t i = 0; i < INC_WRITES; i++) {
                        uint64_t b;
                        bool dup;
                        do {
                                b = (uint64_t)random() % blocks;
                                dup = false;
                                for (size_t k = 0; k < i && !dup; k++)
                                        dup = offsets[k] == b * INC_EXTENT;
                        } while (dup);
                        offsets[i] = b * INC_EXTENT;
                }
                qsort(offsets, INC_WRITES, sizeof(*offsets), cmp_u64);
                char name[32];
                snprintf(name, sizeof(name), "incremental%d", round);
                rc = cycle(r, name, offsets, INC_WRITES, INC_EXTENT, 0x40 + round, mb_s, &err);
        }
        if (rc < 0)
                fprintf(stderr, "bench_repl_store: %s\n", err.message);
        free(offsets);
        struct nst_error e2 = NST_ERROR_INIT;
        if (nst_rs_destroy(r, &e2) < 0)
                fprintf(stderr, "bench_repl_store: cleanup: %s\n", e2.message);
        nst_rs_buffers_trim(0, 0);
        return rc < 0;
}
