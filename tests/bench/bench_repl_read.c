/* The reference a replication cycle is measured against: simply reading a
 * running domain's changed extents (or its whole disk) over NBD from a
 * pull-mode backup, with nothing shipped or written. Uses the replication
 * plugin's own reader (repl_source.c) with the same read depth as a cycle,
 * and a throw-away checkpoint that is deleted afterwards, so the
 * replication's chain is untouched.
 *
 * Usage: bench_repl_read URI DOMAIN DISK RUN_DIR (CHECKPOINT | --full) [DEPTH]
 * Prints: "read <bytes> bytes in <extents> extents: <seconds> s (<seconds> s with the
 * backup job's start and end)" */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "plugins/libvirt/lv_util.h"
#include "plugins/replication/repl_source.h"

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct totals {
        uint64_t bytes;
        size_t extents;
};

static int count(void *ud, const struct nst_src_extent *e, const void *data, uint64_t digest) {
        (void)digest;
        struct totals *t = ud;
        if (data)
                t->bytes += e->length;
        t->extents++;
        return 0;
}

int main(int argc, char **argv) {
        if (argc < 6) {
                fprintf(stderr,
                        "usage: %s URI DOMAIN DISK RUN_DIR (CHECKPOINT | --full) [DEPTH]\n",
                        argv[0]);
                return 2;
        }
        nst_lv_quiet_errors();
        unsigned depth = argc > 6 ? (unsigned)atoi(argv[6]) : 16;
        virConnectPtr conn = virConnectOpen(argv[1]);
        virDomainPtr dom = conn ? virDomainLookupByName(conn, argv[2]) : NULL;
        if (!dom) {
                fprintf(stderr, "cannot open domain %s on %s\n", argv[2], argv[1]);
                return 1;
        }
        char cp[64];
        snprintf(cp, sizeof(cp), NST_SRC_CHECKPOINT_PREFIX "bench-%d", (int)getpid());
        const char *disks[] = {argv[3]};
        bool full = strcmp(argv[5], "--full") == 0;
        struct nst_src_job_opts o = {
                .run_dir = argv[4],
                .incremental = full ? NULL : argv[5],
                .new_checkpoint = cp,
                .disks = disks,
                .n_disks = 1,
                .quiesce = NST_SRC_QUIESCE_OFF,
        };
        struct nst_error err = NST_ERROR_INIT;
        struct nst_src_job *job = NULL;
        bool quiesced = false;
        double t_begin = now_s();
        int rc = nst_src_job_begin(dom, &o, &job, &quiesced, &err);
        struct totals t = {0};
        double t0 = now_s(), elapsed = 0;
        if (rc >= 0) {
                struct nst_src_extent *ex = NULL;
                size_t n = 0;
                uint64_t size = 0;
                rc = nst_src_job_extents(job, 0, &ex, &n, &size, &err);
                if (rc >= 0)
                        rc = nst_src_job_stream(job, 0, ex, n, depth, NULL, count, &t, &err);
                elapsed = now_s() - t0;
                free(ex);
                struct nst_error e2 = NST_ERROR_INIT;
                nst_src_job_end(job, false, &e2); /* deletes the throw-away checkpoint */
        }
        double with_job = now_s() - t_begin;
        virDomainFree(dom);
        virConnectClose(conn);
        if (rc < 0) {
                fprintf(stderr, "%s: %s\n", err.cls, err.message);
                return 1;
        }
        printf("read %llu bytes in %zu extents: %.3f s (%.3f s with the backup job's start and "
               "end)\n",
               (unsigned long long)t.bytes, t.extents, elapsed, with_job);
        return 0;
}
