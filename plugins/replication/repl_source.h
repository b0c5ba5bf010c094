/* The source side of a replication cycle (docs/replication.md): what changed
 * in a running domain's disks and the bytes, through libvirt checkpoints and
 * a pull-mode backup read with libnbd (../shared/reference/replication.md
 * sections 1 and 4.1).
 *
 * A job is one virDomainBackupBegin() over the replicated disks, exported on
 * a Unix socket in run_dir (made accessible to the QEMU user), optionally
 * incremental from a checkpoint, and creating the next checkpoint at the
 * same point in time. Quiescing brackets BackupBegin with FSFreeze/FSThaw
 * (thaw on every path). A pull job never completes on its own: nst_src_job_end()
 * aborts it; on failure it also deletes the new checkpoint, so the next
 * cycle can be a differential from the last checkpoint the target committed.
 *
 * Checkpoints Nestor creates are named "nestor-repl-<n>"; it touches no
 * other checkpoint. Errors: InvalidInput, InstanceInvalidState (domain not
 * running), CheckpointBroken (the incremental checkpoint is missing or its
 * bitmaps are inconsistent: after a QEMU crash), QuiesceFailed,
 * HypervisorError (libvirt), NbdError (libnbd). */
#ifndef NESTOR_PLUGINS_REPLICATION_REPL_SOURCE_H
#define NESTOR_PLUGINS_REPLICATION_REPL_SOURCE_H

#include <libvirt/libvirt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "messages/error.h"

#define NST_SRC_CHECKPOINT_PREFIX "nestor-repl-"
#define NST_SRC_MAX_DISKS 16

struct nst_src_disk_info {
        char name[32];    /* target dev */
        char *path;       /* source file, NULL for non-file disks */
        char format[16];  /* driver type: "qcow2", "raw" */
        uint64_t size;    /* virtual size (virDomainGetBlockInfo capacity) */
        bool cdrom;       /* device='cdrom' (never replicated) */
};
/* Disks of the domain in XML order; free with nst_src_disks_free. */
int nst_src_list_disks(virDomainPtr dom, struct nst_src_disk_info **ret, size_t *ret_n,
                       struct nst_error *err);
void nst_src_disks_free(struct nst_src_disk_info *d, size_t n);

enum nst_src_quiesce { NST_SRC_QUIESCE_OFF = 0, NST_SRC_QUIESCE_PREFERRED, NST_SRC_QUIESCE_REQUIRED };

struct nst_src_job_opts {
        const char *run_dir;          /* socket and scratch files go here */
        const char *incremental;      /* checkpoint to read changes since; NULL = full */
        const char *new_checkpoint;   /* created at the job's point in time */
        const char *const *disks;     /* target devs to read (others: backup='no') */
        size_t n_disks;
        enum nst_src_quiesce quiesce;
        /* Virtual size of each disk (as o->disks), or NULL: with every size
         * known and a spare made for each (nst_src_scratch_prepare), the job
         * takes the spares as its scratch files. */
        const uint64_t *sizes;
};

struct nst_src_extent {
        uint64_t offset;
        uint64_t length;   /* <= 32 MiB for data; zero extents may be longer */
        bool zero;         /* reads as zeroes: ship without payload */
};

struct nst_src_job;

/* Makes a spare scratch file for disk's next job in run_dir, off the
 * cycle's clock: libvirt would otherwise create it inside
 * virDomainBackupBegin (a QEMU blockdev-create job, 25-35 ms of a 110-200
 * ms call on the test machine). A spare fits one size and is used once;
 * spares of other sizes for disk are removed. */
int nst_src_scratch_prepare(const char *run_dir, const char *disk, uint64_t size,
                            struct nst_error *err);
/* Removes run_dir and what jobs left in it (spares, a stale socket). */
void nst_src_run_dir_remove(const char *run_dir);

/* The longest data extent a job gives or streams (repl_source.c says why). */
#define NST_SRC_EXTENT_MAX (UINT64_C(512) * 1024)

/* *ret_quiesced: whether the guest's filesystems were frozen for the point. */
int nst_src_job_begin(virDomainPtr dom, const struct nst_src_job_opts *o,
                      struct nst_src_job **ret, bool *ret_quiesced, struct nst_error *err);
/* What to ship for disk i (index into o->disks): incremental jobs give the
 * dirty extents (64 KiB granularity), full jobs the whole disk; both split
 * into data and zero ranges by base:allocation, sorted by offset, adjacent
 * ranges of one kind merged, data ranges split at NST_SRC_EXTENT_MAX.
 * *ret owned. */
int nst_src_job_extents(struct nst_src_job *j, size_t disk, struct nst_src_extent **ret,
                        size_t *ret_n, uint64_t *ret_disk_size, struct nst_error *err);

/* Called in offset order for each extent; data is NULL for zero extents,
 * digest is the digest_fn's value for data (0 without one). A negative
 * return stops the stream and is returned by nst_src_job_stream. */
typedef int (*nst_src_data_fn)(void *userdata, const struct nst_src_extent *e,
                               const void *data, uint64_t digest);
typedef uint64_t (*nst_src_digest_fn)(const void *data, size_t length);
/* Reads the data extents of ex[0..n) with up to `depth` reads in flight
 * (nbd_aio_pread), delivering each to fn in order. digest_fn (or NULL) runs
 * on each extent the moment its read completes, while the bytes are still
 * in the CPU cache (by the time fn gets them, up to depth - 1 later reads
 * may have gone through the cache). */
int nst_src_job_stream(struct nst_src_job *j, size_t disk, const struct nst_src_extent *ex,
                       size_t n, unsigned depth, nst_src_digest_fn digest_fn, nst_src_data_fn fn,
                       void *userdata, struct nst_error *err);
/* Reads [offset, offset + length) of the point-in-time view. */
int nst_src_job_read(struct nst_src_job *j, size_t disk, uint64_t offset, void *buf,
                     size_t length, struct nst_error *err);
/* SHA-256 of 64 KiB blocks [first, first + count) of the point-in-time view
 * (the last block may be short); out holds count * 32 bytes. For seeds and
 * resyncs: the caller ships the blocks whose digest differs from the
 * target's. */
int nst_src_job_hashes(struct nst_src_job *j, size_t disk, uint64_t first, uint32_t count,
                       uint8_t *out, struct nst_error *err);
/* Ends the job (virDomainAbortJob), disconnects, removes the socket. With
 * success false also deletes the new checkpoint. Frees j. */
int nst_src_job_end(struct nst_src_job *j, bool success, struct nst_error *err);

/* 0 when `checkpoint` exists and its bitmaps are usable for an incremental
 * job; CheckpointBroken (-ESTALE) otherwise. */
int nst_src_checkpoint_check(virDomainPtr dom, const char *checkpoint, struct nst_error *err);
/* Bytes changed since the checkpoint, per libvirt (XML_SIZE), summed over
 * the disks; -ENOTSUP when libvirt cannot say. */
int nst_src_changed_bytes(virDomainPtr dom, const char *checkpoint, uint64_t *ret,
                          struct nst_error *err);
/* Deletes Nestor's checkpoints other than `keep` (may be NULL = all). A
 * checkpoint whose bitmaps are gone is deleted as metadata only and its
 * stale bitmaps removed, so a broken chain does not block new checkpoints. */
int nst_src_checkpoints_prune(virDomainPtr dom, const char *keep, struct nst_error *err);
/* Aborts a backup job a previous agent process left running on dom (after a
 * kill -9); 0 when there was none. */
int nst_src_abort_stale_job(virDomainPtr dom, struct nst_error *err);

#endif
