/* Snapshot operations on one libvirt domain: create, list, get, delete,
 * revert and estimate, plus the pure pieces they are built from (name rules,
 * the sidecar file, the size estimate, the space check), which the unit tests
 * drive without QEMU (docs/snapshot.md).
 *
 * Snapshots are external: a disk-only snapshot puts a new qcow2 overlay on
 * every disk (the guest writes there from then on; the snapshot's data is the
 * image below it); a memory snapshot also saves the guest's RAM to
 * <snapshot_dir>/<uuid>/<name>.mem. Nestor's own facts about a snapshot
 * (consistency achieved, sizes at creation, options asked for) live in the
 * sidecar <snapshot_dir>/<uuid>/<name>.json; list and get merge it with
 * libvirt's snapshot XML.
 *
 * Errors: InvalidInput, SnapshotExists, SnapshotNotFound, InstanceInvalidState,
 * InsufficientStorage, QuiesceFailed, SnapshotFailed, HypervisorError. The
 * caller serializes operations per domain. */
#ifndef NESTOR_PLUGINS_SNAPSHOT_SNAP_OPS_H
#define NESTOR_PLUGINS_SNAPSHOT_SNAP_OPS_H

#include <json.h>
#include <libvirt/libvirt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "messages/error.h"

#define NST_SNAP_NAME_MAX 64
#define NST_SNAP_MAX_DISKS 64
/* What a memory file holds beyond the guest's non-zero pages: the libvirt
 * header, the domain XML and device state (measured 2.9 MiB). */
#define NST_SNAP_MEM_OVERHEAD (UINT64_C(3) * 1024 * 1024)
/* A new overlay before the guest writes to it (measured 197,120 bytes). */
#define NST_SNAP_OVERLAY_INITIAL (UINT64_C(200) * 1024)

/* ---- pure helpers ---- */

/* [A-Za-z0-9._-]{1,64}, and not "." or "..". */
bool nst_snap_name_valid(const char *name);
/* InvalidInput naming the rule when !nst_snap_name_valid(name). */
int nst_snap_name_check(const char *name, struct nst_error *err);

enum nst_snap_quiesce {
        NST_SNAP_QUIESCE_PREFERRED = 0,
        NST_SNAP_QUIESCE_REQUIRED,
        NST_SNAP_QUIESCE_OFF,
};
/* "preferred" (also for NULL), "required" or "off"; else InvalidInput. */
int nst_snap_quiesce_parse(const char *s, enum nst_snap_quiesce *ret, struct nst_error *err);
const char *nst_snap_quiesce_str(enum nst_snap_quiesce q);

/* The sidecar of snapshot `name` in dir (<snapshot_dir>/<uuid>). Written
 * atomically (temporary file, fsync, rename). read: *ret owned, NULL (and 0
 * returned) when there is no sidecar; a malformed one is an error. remove:
 * a missing file is fine. */
int nst_snap_sidecar_write(const char *dir, const char *name, json_object *meta,
                           struct nst_error *err);
int nst_snap_sidecar_read(const char *dir, const char *name, json_object **ret,
                          struct nst_error *err);
int nst_snap_sidecar_remove(const char *dir, const char *name, struct nst_error *err);

/* Memory statistics, in KiB as libvirt reports them; has_* says which
 * libvirt gave (a guest without a balloon driver gives RSS only). */
struct nst_snap_mem_stats {
        uint64_t configured_kib; /* the domain's current memory */
        uint64_t rss_kib, available_kib, unused_kib, usable_kib;
        bool has_rss, has_available, has_unused, has_usable;
};
void nst_snap_mem_stats_fill(const virDomainMemoryStatStruct *s, int n, uint64_t configured_kib,
                             struct nst_snap_mem_stats *ret);
/* Bytes a memory file will take: the non-zero guest RAM plus
 * NST_SNAP_MEM_OVERHEAD. Non-zero RAM is bounded by QEMU's RSS (pages never
 * touched are not resident) and by what the guest says it uses
 * (available - unused), the larger of the two, never more than the
 * configured RAM; configured RAM when nothing is known. *ret_basis (may be
 * NULL): "rss", "guest_stats", "rss+guest_stats" or "configured". */
uint64_t nst_snap_memory_estimate(const struct nst_snap_mem_stats *st, const char **ret_basis);

/* One place a snapshot writes to. fs_id identifies the filesystem (st_dev):
 * items on one filesystem add up. */
struct nst_snap_space {
        const char *what; /* "memory file", "overlays" */
        const char *dir;
        uint64_t fs_id;
        uint64_t need;    /* bytes */
        uint64_t free;    /* bytes available to an unprivileged writer (f_bavail) */
};
/* InsufficientStorage (-ENOSPC) when, on some filesystem, the sum of need
 * plus reserve exceeds free; the message names the directory and the sizes
 * in MiB. */
int nst_snap_space_check(const struct nst_snap_space *items, size_t n, uint64_t reserve,
                         struct nst_error *err);

/* Where (on disk) a snapshot of this instance named `name` is, if another
 * instance's sidecar directory under snapshot_dir has it: *ret_uuid gets the
 * uuid (37 bytes). -ENOENT when none. */
int nst_snap_find_owner(const char *snapshot_dir, const char *name, const char *except_uuid,
                        char ret_uuid[37]);

/* ---- operations on a domain ---- */

struct nst_snap_env {
        virConnectPtr conn;       /* borrowed */
        virDomainPtr dom;         /* borrowed; a Nestor instance */
        const char *uuid, *name;  /* the instance */
        const char *snapshot_dir; /* memory files and sidecars: <snapshot_dir>/<uuid>/ */
        const char *overlay_dir;  /* where overlays go: the instance directory */
        const char *qemu_img;     /* absolute path */
        uint64_t reserve_bytes;   /* free space create keeps */
};

struct nst_snap_create_opts {
        const char *name;
        const char *description; /* may be NULL */
        bool memory;
        enum nst_snap_quiesce quiesce;
        bool live;               /* memory: save RAM while the guest runs */
};

/* Result objects are owned by the caller. */
int nst_snap_create(const struct nst_snap_env *env, const struct nst_snap_create_opts *o,
                    json_object **ret, struct nst_error *err);
int nst_snap_list(const struct nst_snap_env *env, json_object **ret, struct nst_error *err);
int nst_snap_get(const struct nst_snap_env *env, const char *name, json_object **ret,
                 struct nst_error *err);
int nst_snap_delete(const struct nst_snap_env *env, const char *name, json_object **ret,
                    struct nst_error *err);
int nst_snap_revert(const struct nst_snap_env *env, const char *name, json_object **ret,
                    struct nst_error *err);
int nst_snap_estimate(const struct nst_snap_env *env, bool memory, json_object **ret,
                      struct nst_error *err);

#endif
