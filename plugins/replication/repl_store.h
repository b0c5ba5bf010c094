/* The target side's copy of one replication (docs/replication.md): a chain
 * of points in time, each a qcow2 overlay per disk on the point before it,
 * in <dir> (<state_path>/replication/target/<replication>/):
 *
 *   state.json            replication meta, disks, committed points (the
 *                         only record of what is committed; written
 *                         atomically: temporary file, fsync, rename, fsync dir)
 *   p<id>-<disk>.qcow2    a point's overlay of one disk; the oldest point's
 *                         images are raw (p<id>-<disk>.raw, see below) or
 *                         qcow2 overlays on the seed file
 *   partial-<disk>.qcow2  the cycle being received, on the latest point
 *   partial.json          which cycle the partial files belong to and how
 *                         far they are durable (the resume mark)
 *
 * Writes go into the partial overlays through qemu-nbd (one per disk, on a
 * Unix socket in <dir>) with libnbd: qcow2 handling stays in QEMU, zero
 * ranges become zero clusters or holes, never written bytes, so the replica
 * is thin. The first cycle of a disk without a seed has nothing to overlay:
 * its partial is a sparse raw file (partial-<disk>.raw) written directly,
 * O_DIRECT where the file system allows, zero ranges punched as holes. A cycle becomes a point only in nst_rs_cycle_commit(), whose last
 * step is the state.json rename: a crash at any moment leaves either the
 * previous points or the previous points plus the new one, never a half
 * applied point. Retention merges the oldest point into the next one with
 * qemu-img commit; the merge is recorded first, so an interrupted merge is
 * finished by nst_rs_open().
 *
 * One thread at a time per replica. Errors: InvalidInput, ReplicaCorrupt
 * (a state.json that does not parse or names missing files), ReplicaBusy,
 * StorageError (qemu-img/qemu-nbd/filesystem failures, with their output),
 * InsufficientStorage (ENOSPC while writing). */
#ifndef NESTOR_PLUGINS_REPLICATION_REPL_STORE_H
#define NESTOR_PLUGINS_REPLICATION_REPL_STORE_H

#include <json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "messages/error.h"

#define NST_RS_DISK_NAME_MAX 32
#define NST_RS_MAX_DISKS 16
#define NST_RS_HASH_BLOCK (UINT32_C(64) * 1024)

struct nst_rs_disk {
        char name[NST_RS_DISK_NAME_MAX]; /* the guest's target dev, "vda" */
        uint64_t size;                   /* virtual size in bytes */
        char *seed;                      /* a copy carried by other means (raw
                                          * or qcow2, any path), or NULL */
};

struct nst_rs_point {
        uint64_t id;         /* 1, 2, ...: never reused */
        int64_t time_ms;     /* wall clock of the source's point in time */
        char *checkpoint;    /* the source checkpoint this point equals */
        uint64_t bytes;      /* bytes received for it */
        json_object *extra;  /* free-form (consistency, cycle kind), may be NULL */
};

struct nst_rs_resume {
        bool valid;          /* a partial of the same cycle exists */
        uint16_t disk;       /* everything before (disk, offset) is durable */
        uint64_t offset;
};

struct nst_rs_replica;

/* Creates <dir> (mode 0700) and an empty replica: no points yet. meta is
 * stored as is (the source host, its domain XML, ...), borrowed. Seeds are
 * checked now: they must exist and have the disk's virtual size.
 * ReplicaExists when <dir>/state.json exists. */
int nst_rs_create(const char *dir, const char *replication, const struct nst_rs_disk *disks,
                  size_t n_disks, json_object *meta, struct nst_rs_replica **ret,
                  struct nst_error *err);
/* Opens an existing replica, finishing an interrupted merge and killing
 * qemu-nbd processes a previous agent left (their pids are in partial.json).
 * The partial cycle's files are kept for a resume. */
int nst_rs_open(const char *dir, struct nst_rs_replica **ret, struct nst_error *err);
/* Stops qemu-nbd if a cycle is open (keeping the partial files), frees. */
void nst_rs_close(struct nst_rs_replica *r);
/* Closes and removes every file of the replica and the directory. */
int nst_rs_destroy(struct nst_rs_replica *r, struct nst_error *err);

const char *nst_rs_id(const struct nst_rs_replica *r);
json_object *nst_rs_meta(const struct nst_rs_replica *r); /* borrowed */
/* Replaces meta (borrowed) and writes state.json. */
int nst_rs_set_meta(struct nst_rs_replica *r, json_object *meta, struct nst_error *err);
size_t nst_rs_disk_count(const struct nst_rs_replica *r);
const struct nst_rs_disk *nst_rs_disk_at(const struct nst_rs_replica *r, size_t i);
/* Committed points, oldest first. */
size_t nst_rs_point_count(const struct nst_rs_replica *r);
const struct nst_rs_point *nst_rs_point_at(const struct nst_rs_replica *r, size_t i);
const struct nst_rs_point *nst_rs_point_find(const struct nst_rs_replica *r, uint64_t id);
/* Bytes the replica's files take on disk (st_blocks), all points. */
uint64_t nst_rs_allocated_bytes(const struct nst_rs_replica *r);

/* Opens a cycle: the partial overlays on the latest point (or the seed, or
 * nothing), qemu-nbd on each, libnbd connected. When partial files of the
 * same cycle id exist they are reused and *ret_resume says where they are
 * durable to; partial files of another cycle are discarded. ReplicaBusy when
 * a cycle is already open. */
int nst_rs_cycle_begin(struct nst_rs_replica *r, const char *cycle_id,
                       struct nst_rs_resume *ret_resume, struct nst_error *err);
/* Writes into the open cycle; bounds are checked against the disk size. */
int nst_rs_write(struct nst_rs_replica *r, unsigned disk, uint64_t offset, const void *buf,
                 uint32_t length, struct nst_error *err);
/* The same in two steps, for a caller that can fill the store's buffer
 * itself (the data channel receives into it: no copy): prepare checks the
 * range and hands out a buffer of length bytes (length > 0), which is then
 * either queued (its bytes are written; the buffer is the store's again on
 * every path) or cancelled (nothing is written). */
struct nst_rs_wbuf;
int nst_rs_write_prepare(struct nst_rs_replica *r, unsigned disk, uint64_t offset,
                         uint32_t length, struct nst_rs_wbuf **ret, void **ret_data,
                         struct nst_error *err);
int nst_rs_write_queue(struct nst_rs_replica *r, struct nst_rs_wbuf *b, struct nst_error *err);
void nst_rs_write_cancel(struct nst_rs_wbuf *b);
/* Write buffers are kept between cycles (and replicas) to spare page
 * faults; this frees them when none was taken for idle_ms (0: now). */
void nst_rs_buffers_trim(int64_t now_ms, int64_t idle_ms);
/* The range reads as zeroes afterwards and takes no space where qcow2 can
 * avoid it. */
int nst_rs_zero(struct nst_rs_replica *r, unsigned disk, uint64_t offset, uint64_t length,
                struct nst_error *err);
/* Flushes every disk and records (disk, offset) as the resume mark. */
int nst_rs_mark(struct nst_rs_replica *r, unsigned disk, uint64_t offset,
                struct nst_error *err);
/* Flushes, stops qemu-nbd, and makes the partial overlays point `p->id =
 * last id + 1` (p's other fields are copied; p->id is ignored and the new id
 * returned in *ret_id). */
int nst_rs_cycle_commit(struct nst_rs_replica *r, const struct nst_rs_point *p,
                        uint64_t *ret_id, struct nst_error *err);
/* Stops qemu-nbd; keep_partial false also removes the partial files. */
void nst_rs_cycle_abort(struct nst_rs_replica *r, bool keep_partial);
bool nst_rs_cycle_open(const struct nst_rs_replica *r);

/* Merges the oldest points until at most `keep` remain (keep >= 1). */
int nst_rs_prune(struct nst_rs_replica *r, size_t keep, struct nst_error *err);

/* SHA-256 of NST_RS_HASH_BLOCK-sized blocks [first, first + count) of a disk
 * as the latest point has it (the seed when there is no point yet, zeroes
 * when there is neither); the last block may be short. Reads through a
 * read-only qemu-nbd. out holds count * 32 bytes. */
int nst_rs_hashes(struct nst_rs_replica *r, unsigned disk, uint64_t first, uint32_t count,
                  uint8_t *out, struct nst_error *err);

/* The top image of a point's chain for one disk (owned string). */
char *nst_rs_point_image(const struct nst_rs_replica *r, uint64_t point_id, unsigned disk);
/* Creates <dest_dir>/<disk>.qcow2 overlays on point_id's images, for a VM
 * that boots from the point without changing it; paths[i] (owned) for disk
 * i. While such overlays exist (they are listed in state.json until
 * nst_rs_release_boot()), nst_rs_prune() merges nothing: a running VM
 * reads through the chain's files. */
int nst_rs_export_for_boot(struct nst_rs_replica *r, uint64_t point_id, const char *dest_dir,
                           char ***ret_paths, struct nst_error *err);
int nst_rs_release_boot(struct nst_rs_replica *r, const char *dest_dir, struct nst_error *err);

#endif
