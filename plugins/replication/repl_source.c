/* The source side of a replication cycle (see repl_source.h): a pull-mode
 * libvirt backup job over the replicated disks, read through libnbd.
 *
 * Why this shape (../shared/reference/replication.md sections 1, 3, 4.1):
 * the pull export is a point-in-time (fleecing) view, so the guest keeps
 * writing while we read; the dirty bitmap of the incremental checkpoint says
 * what to read, base:allocation which of it reads as zeroes (shipped
 * without payload). libvirt 9.0 keeps every checkpoint's bitmap recording
 * on its own, which is what makes "delete the new checkpoint and go
 * differential from the last acknowledged one" safe after a failure.
 *
 * After a QEMU crash the bitmaps created at run time are gone and the older
 * ones are marked inconsistent; libvirt then refuses the checkpoint (XML
 * with sizes) and refuses a normal delete. Pruning falls back to deleting
 * the metadata and removing the stale bitmaps through QMP, so that a new
 * full job can start a new chain. */
#include "plugins/replication/repl_source.h"

#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <json.h>
#include <libnbd.h>
#include <libvirt/libvirt-qemu.h>
#include <libvirt/virterror.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/fs_util.h"
#include "messages/json_util.h"
#include "plugins/libvirt/disks.h"
#include "plugins/libvirt/lv_util.h"
#include "plugins/libvirt/xml_writer.h"
#include "plugins/replication/repl_buf.h"

#define KIB 1024ULL
#define MIB (1024ULL * KIB)
#define GIB (1024ULL * MIB)

/* QEMU's NBD server answers reads of up to 32 MiB, but it allocates a
 * buffer per request, and glibc serves large ones from fresh memory (mmap,
 * or a heap it trims as the requests complete): with 4 MiB requests every
 * page QEMU reads into was a page fault, 4 of the 4.7 CPU-seconds QEMU spent
 * exporting 1 GiB, because faults are slow on this kind of virtual machine.
 * 512 KiB requests stay in glibc's heap in a fresh QEMU too and read the
 * same GiB in 0.4-0.5 s instead of 2.9 s (docs/benchmarks.md); 1 MiB and
 * larger fault unless an earlier larger read raised glibc's thresholds. */
#define DATA_EXTENT_MAX NST_SRC_EXTENT_MAX
/* NBD lengths are 32-bit: stay well below 4 GiB per block-status request. */
#define BLOCK_STATUS_MAX (2 * GIB)
#define HASH_BLOCK (64 * KIB)
#define HASH_READ DATA_EXTENT_MAX
#define STREAM_DEPTH_MAX 64
#define NBD_POLL_MS 1000
#define NBD_IDLE_MAX_MS 60000
#define CHECKPOINT_NAME_MAX 64
#define THAW_ATTEMPTS 3
#define SOCKET_NAME "nbd.sock"
#define SPARE_TIMEOUT_MS 30000
#define DIRTY_CONTEXT_PREFIX "qemu:dirty-bitmap:"
#define QMP_OUT_MAX (4 * MIB)

NST_DEFINE_CLEANUP(virDomainCheckpoint, virDomainCheckpointFree)
NST_DEFINE_CLEANUP(json_object, json_object_put)

struct src_disk {
        char name[32];
        char *export_name;
        char *dirty_context;  /* "qemu:dirty-bitmap:<exportbitmap>"; NULL in full jobs */
        struct nbd_handle *nbd;
        uint64_t size;
        bool zero_info;       /* base:allocation negotiated */
};

struct nst_src_job {
        virDomainPtr dom;     /* a reference of our own */
        const char *name;     /* dom's, for messages */
        char *new_checkpoint;
        char *scratch_dir;    /* set when the scratch files are ours to remove */
        bool running;         /* the libvirt job is ours to abort */
        char socket[sizeof(((struct sockaddr_un *)0)->sun_path)];
        size_t n;
        struct src_disk disks[NST_SRC_MAX_DISKS];
};

/* Call before the libvirt call whose error is reported: virDomainGetName()
 * resets libvirt's last error. */
static const char *dom_name(virDomainPtr dom) {
        const char *n = virDomainGetName(dom);
        return n ? n : "?";
}

/* libnbd keeps its last error per thread, like libvirt. */
static int nbd_failure(struct nst_error *err, const char *disk, const char *action) {
        int e = nbd_get_errno();
        const char *m = nbd_get_error();
        return nst_error_set(err, -(e > 0 ? e : EIO), "NbdError", "disk %s: %s: %s", disk,
                             action, m ? m : "unknown libnbd error");
}

static bool checkpoint_name_valid(const char *name) {
        size_t n = name ? strlen(name) : 0;
        static const char allowed[] =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-";
        return n > 0 && n <= CHECKPOINT_NAME_MAX && name[0] != '.' && strspn(name, allowed) == n;
}

static int checkpoint_name_check(const char *name, struct nst_error *err) {
        if (checkpoint_name_valid(name))
                return 0;
        return nst_error_set(err, -EINVAL, "InvalidInput",
                             "checkpoint name '%.80s' is invalid: 1-%d of A-Z a-z 0-9 . _ -",
                             name ? name : "", CHECKPOINT_NAME_MAX);
}

static bool is_ours(const char *checkpoint) {
        return strncmp(checkpoint, NST_SRC_CHECKPOINT_PREFIX,
                       strlen(NST_SRC_CHECKPOINT_PREFIX)) == 0;
}

/* ---- disks ---- */

void nst_src_disks_free(struct nst_src_disk_info *d, size_t n) {
        if (!d)
                return;
        for (size_t i = 0; i < n; i++)
                free(d[i].path);
        free(d);
}

static int fill_disk(virDomainPtr dom, xmlXPathContextPtr ctx, xmlNodePtr node,
                     struct nst_src_disk_info *d, struct nst_error *err) {
        const char *dn = dom_name(dom);
        _cleanup_free_ char *dev = nst_xpath_string(ctx, node, "string(target/@dev)");
        _cleanup_free_ char *type = nst_xml_attr(node, "type");
        _cleanup_free_ char *device = nst_xml_attr(node, "device");
        _cleanup_free_ char *format = nst_xpath_string(ctx, node, "string(driver/@type)");
        _cleanup_free_ char *file = nst_xpath_string(ctx, node, "string(source/@file)");
        if (!dev || !format || !file)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        if (dev[0] == '\0' || strlen(dev) >= sizeof(d->name))
                return nst_error_set(err, -EINVAL, "HypervisorError",
                                     "domain %s: disk target '%.40s' is empty or too long",
                                     dn, dev);
        snprintf(d->name, sizeof(d->name), "%s", dev);
        snprintf(d->format, sizeof(d->format), "%s", format);
        d->cdrom = device && strcmp(device, "cdrom") == 0;
        if (type && strcmp(type, "file") == 0 && file[0] != '\0')
                d->path = nst_steal(&file);
        if (d->cdrom)
                return 0;
        virDomainBlockInfo info;
        if (virDomainGetBlockInfo(dom, d->name, &info, 0) < 0)
                return nst_lv_error(err, -EIO, "HypervisorError", "domain %s: size of disk %s",
                                    dn, d->name);
        d->size = info.capacity;
        return 0;
}

int nst_src_list_disks(virDomainPtr dom, struct nst_src_disk_info **ret, size_t *ret_n,
                       struct nst_error *err) {
        _cleanup_(xmlFreeDocp) xmlDocPtr doc = NULL;
        _cleanup_(xmlXPathFreeContextp) xmlXPathContextPtr ctx = NULL;
        int r = nst_lv_domain_doc(dom, 0, &doc, &ctx, err);
        if (r < 0)
                return r;
        _cleanup_(xmlXPathFreeObjectp) xmlXPathObjectPtr nodes =
                nst_xpath_nodes(ctx, NULL, "/domain/devices/disk");
        if (!nodes)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        size_t n = (size_t)nst_xpath_count(nodes);
        struct nst_src_disk_info *d = calloc(n ? n : 1, sizeof(*d));
        if (!d)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        for (size_t i = 0; i < n; i++) {
                r = fill_disk(dom, ctx, nodes->nodesetval->nodeTab[i], &d[i], err);
                if (r < 0) {
                        nst_src_disks_free(d, n);
                        return r;
                }
        }
        *ret = d;
        *ret_n = n;
        return 0;
}

static const struct nst_src_disk_info *find_disk(const struct nst_src_disk_info *d, size_t n,
                                                 const char *name) {
        for (size_t i = 0; i < n; i++)
                if (strcmp(d[i].name, name) == 0)
                        return &d[i];
        return NULL;
}

static bool selected(const struct nst_src_job_opts *o, const char *name) {
        for (size_t i = 0; i < o->n_disks; i++)
                if (strcmp(o->disks[i], name) == 0)
                        return true;
        return false;
}

/* ---- job setup ---- */

static int check_opts(const struct nst_src_job_opts *o, struct nst_error *err) {
        if (!o || !o->run_dir || o->run_dir[0] != '/')
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "the job needs an absolute run_dir");
        if (o->n_disks == 0 || o->n_disks > NST_SRC_MAX_DISKS || !o->disks)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "a job reads 1 to %d disks, not %zu", NST_SRC_MAX_DISKS,
                                     o ? o->n_disks : 0);
        if ((unsigned)o->quiesce > NST_SRC_QUIESCE_REQUIRED)
                return nst_error_set(err, -EINVAL, "InvalidInput", "unknown quiesce mode %d",
                                     (int)o->quiesce);
        int r;
        if (o->incremental && (r = checkpoint_name_check(o->incremental, err)) < 0)
                return r;
        if (o->new_checkpoint) {
                if ((r = checkpoint_name_check(o->new_checkpoint, err)) < 0)
                        return r;
                if (!is_ours(o->new_checkpoint))
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "new checkpoint '%s' must start with '%s'",
                                             o->new_checkpoint, NST_SRC_CHECKPOINT_PREFIX);
                if (o->incremental && strcmp(o->incremental, o->new_checkpoint) == 0)
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "new checkpoint '%s' is the incremental base",
                                             o->new_checkpoint);
        }
        for (size_t i = 0; i < o->n_disks; i++) {
                if (!o->disks[i])
                        return nst_error_set(err, -EINVAL, "InvalidInput", "disk %zu is NULL", i);
                for (size_t k = 0; k < i; k++)
                        if (strcmp(o->disks[i], o->disks[k]) == 0)
                                return nst_error_set(err, -EINVAL, "InvalidInput",
                                                     "disk %s is listed twice", o->disks[i]);
        }
        return 0;
}

static int check_disks(virDomainPtr dom, const struct nst_src_job_opts *o,
                       const struct nst_src_disk_info *d, size_t n, struct nst_error *err) {
        const char *dn = dom_name(dom);
        for (size_t i = 0; i < o->n_disks; i++) {
                const struct nst_src_disk_info *di = find_disk(d, n, o->disks[i]);
                if (!di)
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "domain %s has no disk %s", dn,
                                             o->disks[i]);
                if (di->cdrom)
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "disk %s of %s is a cdrom", di->name, dn);
                /* Persistent bitmaps live in qcow2 v3 only. */
                if ((o->incremental || o->new_checkpoint) && strcmp(di->format, "qcow2") != 0)
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "disk %s of %s is %s: checkpoints need qcow2",
                                             di->name, dn,
                                             di->format[0] ? di->format : "of unknown format");
        }
        return 0;
}

/* The QEMU user creates the socket and (through libvirt) the scratch files. */
static int lookup_qemu_owner(uid_t *uid, gid_t *gid) {
        static const char *const users[] = {"libvirt-qemu", "qemu"};
        static const char *const groups[] = {"kvm", "qemu"};
        char buf[4096];
        struct passwd pw, *pwr = NULL;
        for (size_t i = 0; i < NST_ARRAY_SIZE(users) && !pwr; i++)
                if (getpwnam_r(users[i], &pw, buf, sizeof(buf), &pwr) != 0)
                        pwr = NULL;
        if (!pwr)
                return -ENOENT;
        *uid = pwr->pw_uid;
        *gid = pwr->pw_gid;
        struct group gr, *grr = NULL;
        for (size_t i = 0; i < NST_ARRAY_SIZE(groups) && !grr; i++)
                if (getgrnam_r(groups[i], &gr, buf, sizeof(buf), &grr) != 0)
                        grr = NULL;
        if (grr)
                *gid = grr->gr_gid;
        return 0;
}

static int prepare_run_dir(const char *run_dir, char *socket, size_t socket_size,
                           struct nst_error *err) {
        int n = snprintf(socket, socket_size, "%s/" SOCKET_NAME, run_dir);
        if (n < 0 || (size_t)n >= socket_size)
                return nst_error_set(err, -ENAMETOOLONG, "InvalidInput",
                                     "run_dir %s is too long: the NBD socket path %s/%s must be "
                                     "shorter than %zu bytes",
                                     run_dir, run_dir, SOCKET_NAME, socket_size);
        int r = nst_mkdir_p(run_dir, 0750);
        if (r < 0)
                return nst_error_set(err, r, "ReplicationFailed", "cannot create %s: %s", run_dir,
                                     strerror(-r));
        if (geteuid() == 0) {
                uid_t uid;
                gid_t gid;
                if (lookup_qemu_owner(&uid, &gid) < 0)
                        return nst_error_set(err, -ENOENT, "ReplicationFailed",
                                             "no QEMU user (libvirt-qemu or qemu) to own %s",
                                             run_dir);
                if (chown(run_dir, uid, gid) < 0 || chmod(run_dir, 0770) < 0)
                        return nst_error_set(err, -errno, "ReplicationFailed",
                                             "cannot hand %s to the QEMU user: %s", run_dir,
                                             strerror(errno));
        }
        /* Left by a job that did not end (agent killed): QEMU cannot bind
         * over it, and libvirt does not reuse a scratch file. */
        if (unlink(socket) < 0 && errno != ENOENT)
                return nst_error_set(err, -errno, "ReplicationFailed", "cannot remove %s: %s",
                                     socket, strerror(errno));
        return 0;
}

/* A job's scratch file: one libvirt creates (and removes, sometimes after
 * the job's end returned), or a spare we made, under a name of its own. */
static int scratch_path(char *buf, size_t size, const char *run_dir, const char *disk,
                        bool spare, struct nst_error *err) {
        int n = snprintf(buf, size, "%s/scratch-%s%s.qcow2", run_dir, disk,
                         spare ? ".spare" : "");
        if (n < 0 || (size_t)n >= size)
                return nst_error_set(err, -ENAMETOOLONG, "InvalidInput",
                                     "run_dir %s is too long", run_dir);
        return 0;
}

/* ---- spare scratch files ----
 * A scratch file must be empty (its clusters shadow the disk in the export)
 * and exactly the disk's size (QEMU refuses a backup target of another
 * size), so a spare is named by its size and used once: a job that takes it
 * renames it to scratch-<disk>.spare.qcow2 and removes it when it ends
 * (libvirt leaves files it did not create); one left by a killed agent is
 * removed as stale, never taken again. */

#define SPARE_PREFIX "spare-"

/* A target dev as it may appear in a file name. */
static bool dev_name_ok(const char *disk) {
        size_t n = disk ? strlen(disk) : 0;
        return n > 0 && n < sizeof(((struct nst_src_disk_info *)0)->name) &&
               strchr(disk, '/') == NULL && disk[0] != '.';
}

static int spare_path(char *buf, size_t size, const char *run_dir, const char *disk,
                      uint64_t disk_size) {
        int n = snprintf(buf, size, "%s/" SPARE_PREFIX "%s-%" PRIu64 ".qcow2", run_dir, disk,
                         disk_size);
        return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* Removes run_dir's spares of disk (of another size, half made), but keep. */
static void remove_spares(const char *run_dir, const char *disk, const char *keep) {
        _cleanup_closedir_ DIR *dir = opendir(run_dir);
        if (!dir)
                return;
        char prefix[64];
        snprintf(prefix, sizeof(prefix), SPARE_PREFIX "%s-", disk);
        struct dirent *e;
        while ((e = readdir(dir)))
                if (strncmp(e->d_name, prefix, strlen(prefix)) == 0 &&
                    strcmp(e->d_name, keep) != 0)
                        (void)unlinkat(dirfd(dir), e->d_name, 0);
}

int nst_src_scratch_prepare(const char *run_dir, const char *disk, uint64_t size,
                            struct nst_error *err) {
        char path[PATH_MAX], tmp[PATH_MAX + 8];
        if (!run_dir || run_dir[0] != '/' || !dev_name_ok(disk) || size == 0 ||
            spare_path(path, sizeof(path), run_dir, disk, size) < 0)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "no spare scratch for disk %s of %" PRIu64 " bytes in %s",
                                     disk ? disk : "(null)", size, run_dir ? run_dir : "(null)");
        remove_spares(run_dir, disk, strrchr(path, '/') + 1);
        if (access(path, F_OK) == 0)
                return 0;
        /* Made under another name first: a spare never exists half made. */
        snprintf(tmp, sizeof(tmp), "%s.new", path);
        char size_s[32], out[1024];
        snprintf(size_s, sizeof(size_s), "%" PRIu64, size);
        const char *argv[] = {NST_QEMU_IMG, "create", "-q", "-f", "qcow2", tmp, size_s, NULL};
        int status = 0;
        int r = nst_run(argv, out, sizeof(out), SPARE_TIMEOUT_MS, &status, err);
        if (r < 0)
                return r;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                (void)unlink(tmp);
                return nst_error_set(err, -EIO, "StorageError",
                                     "cannot create the spare scratch %s: %.300s", tmp, out);
        }
        uid_t uid;
        gid_t gid;
        if ((geteuid() == 0 && lookup_qemu_owner(&uid, &gid) == 0 && chown(tmp, uid, gid) < 0) ||
            rename(tmp, path) < 0) {
                r = nst_error_set(err, -errno, "StorageError", "cannot make the spare %s: %s",
                                  path, strerror(errno));
                (void)unlink(tmp);
                return r;
        }
        return 0;
}

void nst_src_run_dir_remove(const char *run_dir) {
        _cleanup_closedir_ DIR *dir = opendir(run_dir);
        struct dirent *e;
        /* Spares, and what an interrupted job left: its socket, scratch files. */
        while (dir && (e = readdir(dir)))
                if (e->d_name[0] != '.')
                        (void)unlinkat(dirfd(dir), e->d_name, 0);
        (void)rmdir(run_dir);
}

/* A scratch file a job took from the spares. */
static void remove_taken_spare(const char *run_dir, const char *disk) {
        char scratch[PATH_MAX];
        if (scratch_path(scratch, sizeof(scratch), run_dir, disk, true, NULL) == 0)
                (void)unlink(scratch);
}

static void remove_taken_spares(const struct nst_src_job_opts *o, size_t n) {
        for (size_t i = 0; i < n; i++)
                remove_taken_spare(o->run_dir, o->disks[i]);
}

/* Scratch files of a job that did not end (agent killed): libvirt does not
 * reuse one, and a spare that served a job holds its copied data. */
static int remove_stale_scratch(const struct nst_src_job_opts *o, struct nst_error *err) {
        for (size_t i = 0; i < o->n_disks; i++)
                for (int spare = 0; spare < 2; spare++) {
                        char scratch[PATH_MAX];
                        int r = scratch_path(scratch, sizeof(scratch), o->run_dir, o->disks[i],
                                             spare, err);
                        if (r < 0)
                                return r;
                        if (unlink(scratch) < 0 && errno != ENOENT)
                                return nst_error_set(err, -errno, "ReplicationFailed",
                                                     "cannot remove the stale %s: %s", scratch,
                                                     strerror(errno));
                }
        return 0;
}

/* Takes a spare of the right size for each disk, all or none. */
static bool take_spares(const struct nst_src_job_opts *o) {
        if (!o->sizes)
                return false;
        size_t taken = 0;
        for (; taken < o->n_disks; taken++) {
                char spare[PATH_MAX], scratch[PATH_MAX];
                if (spare_path(spare, sizeof(spare), o->run_dir, o->disks[taken],
                               o->sizes[taken]) < 0 ||
                    scratch_path(scratch, sizeof(scratch), o->run_dir, o->disks[taken], true,
                                 NULL) < 0 ||
                    rename(spare, scratch) < 0)
                        break;
        }
        if (taken == o->n_disks)
                return true;
        remove_taken_spares(o, taken);
        return false;
}

static int backup_xml(const struct nst_src_job_opts *o, const char *socket,
                      const struct nst_src_disk_info *d, size_t n, bool spares, char **ret,
                      struct nst_error *err) {
        struct nst_xw w;
        nst_xw_init(&w, 1024);
        nst_xw_start(&w, "domainbackup");
        nst_xw_attr(&w, "mode", "pull");
        if (o->incremental)
                nst_xw_elem_text(&w, "incremental", o->incremental);
        nst_xw_start(&w, "server");
        nst_xw_attr(&w, "transport", "unix");
        nst_xw_attr(&w, "socket", socket);
        nst_xw_end(&w);
        nst_xw_start(&w, "disks");
        for (size_t i = 0; i < n; i++) {
                nst_xw_start(&w, "disk");
                nst_xw_attr(&w, "name", d[i].name);
                if (!selected(o, d[i].name)) {
                        nst_xw_attr(&w, "backup", "no");
                        nst_xw_end(&w);
                        continue;
                }
                char scratch[PATH_MAX];
                int r = scratch_path(scratch, sizeof(scratch), o->run_dir, d[i].name, spares,
                                     err);
                if (r < 0) {
                        nst_xw_release(&w);
                        return r;
                }
                nst_xw_attr(&w, "backup", "yes");
                nst_xw_attr(&w, "type", "file");
                nst_xw_elem_attr(&w, "scratch", "file", scratch);
                nst_xw_end(&w);
        }
        nst_xw_end(&w);
        nst_xw_end(&w);
        int r = nst_xw_finish(&w, ret, NULL, err);
        nst_xw_release(&w);
        return r;
}

static int checkpoint_xml(const struct nst_src_job_opts *o, const struct nst_src_disk_info *d,
                          size_t n, char **ret, struct nst_error *err) {
        struct nst_xw w;
        nst_xw_init(&w, 512);
        nst_xw_start(&w, "domaincheckpoint");
        nst_xw_elem_text(&w, "name", o->new_checkpoint);
        nst_xw_start(&w, "disks");
        for (size_t i = 0; i < n; i++) {
                nst_xw_start(&w, "disk");
                nst_xw_attr(&w, "name", d[i].name);
                nst_xw_attr(&w, "checkpoint", selected(o, d[i].name) ? "bitmap" : "no");
                nst_xw_end(&w);
        }
        nst_xw_end(&w);
        nst_xw_end(&w);
        int r = nst_xw_finish(&w, ret, NULL, err);
        nst_xw_release(&w);
        return r;
}

static int freeze(virDomainPtr dom, enum nst_src_quiesce q, bool *frozen, struct nst_error *err) {
        const char *dn = dom_name(dom);
        *frozen = false;
        if (q == NST_SRC_QUIESCE_OFF)
                return 0;
        if (virDomainFSFreeze(dom, NULL, 0, 0) >= 0) {
                *frozen = true;
                return 0;
        }
        if (q == NST_SRC_QUIESCE_REQUIRED)
                return nst_lv_error(err, -EIO, "QuiesceFailed",
                                    "cannot quiesce %s (quiesce is required)", dn);
        return 0;   /* crash-consistent instead */
}

static int thaw(virDomainPtr dom, struct nst_error *err) {
        const char *dn = dom_name(dom);
        for (int i = 0; i < THAW_ATTEMPTS; i++)
                if (virDomainFSThaw(dom, NULL, 0, 0) >= 0)
                        return 0;
        return nst_lv_error(err, -EIO, "QuiesceFailed",
                            "cannot thaw the file systems of %s", dn);
}

/* exportname / exportbitmap of every job disk, from the running job. */
static int read_exports(struct nst_src_job *j, bool incremental, struct nst_error *err) {
        _cleanup_free_ char *xml = virDomainBackupGetXMLDesc(j->dom, 0);
        if (!xml)
                return nst_lv_error(err, -EIO, "HypervisorError",
                                    "cannot read the backup job of %s", j->name);
        _cleanup_(xmlFreeDocp) xmlDocPtr doc = NULL;
        _cleanup_(xmlXPathFreeContextp) xmlXPathContextPtr ctx = NULL;
        int r = nst_xml_parse_xpath(xml, "backup XML", "HypervisorError", &doc, &ctx, err);
        if (r < 0)
                return r;
        _cleanup_(xmlXPathFreeObjectp) xmlXPathObjectPtr nodes =
                nst_xpath_nodes(ctx, NULL, "/domainbackup/disks/disk");
        if (!nodes)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        for (int i = 0; i < nst_xpath_count(nodes); i++) {
                xmlNodePtr node = nodes->nodesetval->nodeTab[i];
                _cleanup_free_ char *name = nst_xml_attr(node, "name");
                for (size_t k = 0; name && k < j->n; k++) {
                        struct src_disk *d = &j->disks[k];
                        if (strcmp(d->name, name) != 0)
                                continue;
                        d->export_name = nst_xml_attr(node, "exportname");
                        if (!d->export_name)
                                d->export_name = strdup(name);
                        _cleanup_free_ char *bitmap = nst_xml_attr(node, "exportbitmap");
                        if (incremental && !bitmap)
                                return nst_error_set(err, -EPROTO, "HypervisorError",
                                                     "backup job of %s: disk %s has no "
                                                     "exportbitmap",
                                                     j->name, name);
                        if (incremental &&
                            asprintf(&d->dirty_context, DIRTY_CONTEXT_PREFIX "%s", bitmap) < 0)
                                d->dirty_context = NULL;
                        if (!d->export_name || (incremental && !d->dirty_context))
                                return nst_error_set(err, -ENOMEM, "MemoryError",
                                                     "out of memory");
                }
        }
        for (size_t k = 0; k < j->n; k++)
                if (!j->disks[k].export_name)
                        return nst_error_set(err, -EPROTO, "HypervisorError",
                                             "backup job of %s does not export disk %s",
                                             j->name, j->disks[k].name);
        return 0;
}

static int connect_disk(struct src_disk *d, const char *socket, struct nst_error *err) {
        d->nbd = nbd_create();
        if (!d->nbd)
                return nbd_failure(err, d->name, "export setup");
        /* Every read fills its whole buffer or fails, so libnbd need not
         * zero it first (a measurable share of a full copy's CPU here). */
        if (nbd_set_pread_initialize(d->nbd, false) < 0 ||
            nbd_set_export_name(d->nbd, d->export_name) < 0 ||
            (d->dirty_context && nbd_add_meta_context(d->nbd, d->dirty_context) < 0) ||
            nbd_add_meta_context(d->nbd, LIBNBD_CONTEXT_BASE_ALLOCATION) < 0)
                return nbd_failure(err, d->name, "export setup");
        if (nbd_connect_unix(d->nbd, socket) < 0)
                return nbd_failure(err, d->name, "cannot connect to the export");
        int64_t size = nbd_get_size(d->nbd);
        if (size < 0)
                return nbd_failure(err, d->name, "export setup");
        d->size = (uint64_t)size;
        if (d->dirty_context && nbd_can_meta_context(d->nbd, d->dirty_context) != 1)
                return nst_error_set(err, -EPROTO, "NbdError",
                                     "disk %s: the export does not offer %s", d->name,
                                     d->dirty_context);
        d->zero_info = nbd_can_meta_context(d->nbd, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
        return 0;
}

static void disconnect_disk(struct src_disk *d) {
        if (d->nbd) {
                (void)nbd_shutdown(d->nbd, 0);
                nbd_close(d->nbd);
                d->nbd = NULL;
        }
}

/* Deletes a checkpoint by name; a missing one is fine. */
static int delete_checkpoint(virDomainPtr dom, const char *name, struct nst_error *err) {
        _cleanup_(virDomainCheckpointFreep) virDomainCheckpointPtr cp =
                virDomainCheckpointLookupByName(dom, name, 0);
        if (!cp) {
                if (virGetLastErrorCode() == VIR_ERR_NO_DOMAIN_CHECKPOINT)
                        return 0;
                return nst_lv_error(err, -EIO, "HypervisorError", "cannot look up checkpoint %s",
                                    name);
        }
        if (virDomainCheckpointDelete(cp, 0) < 0)
                return nst_lv_error(err, -EIO, "HypervisorError", "cannot delete checkpoint %s",
                                    name);
        return 0;
}

/* virDomainAbortJob returns before libvirt has seen the backup's block
 * jobs end; until it has, the domain still has a job and the next backup
 * would be refused. Waits for that, a few milliseconds, at most 5 s. */
static void wait_job_gone(virDomainPtr dom) {
        for (int i = 0; i < 1000; i++) {
                virDomainJobInfo info;
                if (virDomainGetJobInfo(dom, &info) < 0 || info.type == VIR_DOMAIN_JOB_NONE)
                        return;
                struct timespec ts = {0, 5 * 1000 * 1000};
                nanosleep(&ts, NULL);
        }
}

/* Ends whatever the job holds; the first failure is reported. */
static int job_teardown(struct nst_src_job *j, bool success, struct nst_error *err) {
        int r = 0;
        for (size_t i = 0; i < j->n; i++) {
                disconnect_disk(&j->disks[i]);
                free(j->disks[i].export_name);
                free(j->disks[i].dirty_context);
        }
        if (j->running && virDomainAbortJob(j->dom) < 0)
                r = nst_lv_error(err, -EIO, "HypervisorError",
                                 "cannot end the backup job of %s", j->name);
        else if (j->running)
                wait_job_gone(j->dom);
        if (j->socket[0] != '\0')
                (void)unlink(j->socket);
        for (size_t i = 0; j->scratch_dir && i < j->n; i++)
                remove_taken_spare(j->scratch_dir, j->disks[i].name);
        if (!success && j->running && j->new_checkpoint) {
                struct nst_error e = NST_ERROR_INIT;
                int rd = delete_checkpoint(j->dom, j->new_checkpoint, &e);
                if (rd < 0 && r == 0) {
                        r = rd;
                        if (err)
                                *err = e;
                }
        }
        virDomainFree(j->dom);
        free(j->new_checkpoint);
        free(j->scratch_dir);
        free(j);
        return r;
}

static int job_new(virDomainPtr dom, const struct nst_src_job_opts *o, struct nst_src_job **ret,
                   struct nst_error *err) {
        struct nst_src_job *j = calloc(1, sizeof(*j));
        if (!j)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        if (o->new_checkpoint && !(j->new_checkpoint = strdup(o->new_checkpoint))) {
                free(j);
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        virDomainRef(dom);
        j->dom = dom;
        j->name = dom_name(dom);
        j->n = o->n_disks;
        for (size_t i = 0; i < o->n_disks; i++)
                snprintf(j->disks[i].name, sizeof(j->disks[i].name), "%s", o->disks[i]);
        *ret = j;
        return 0;
}

/* BackupBegin bracketed by freeze/thaw; the thaw happens on every path. */
static int begin_backup(virDomainPtr dom, const struct nst_src_job_opts *o, const char *bxml,
                        const char *cxml, unsigned flags, bool *ret_quiesced,
                        struct nst_error *err) {
        const char *dn = dom_name(dom);
        bool frozen;
        int r = freeze(dom, o->quiesce, &frozen, err);
        if (r < 0)
                return r;
        int rb = virDomainBackupBegin(dom, bxml, cxml, flags);
        if (rb < 0)
                r = nst_lv_error(err, -EIO, "HypervisorError",
                                 "cannot begin the backup job of %s", dn);
        if (frozen) {
                struct nst_error e = NST_ERROR_INIT;
                int rt = thaw(dom, &e);
                if (rt < 0 && r == 0) {
                        if (err)
                                *err = e;
                        (void)virDomainAbortJob(dom);
                        if (o->new_checkpoint)
                                (void)delete_checkpoint(dom, o->new_checkpoint, NULL);
                        return rt;
                }
        }
        if (r < 0 && o->incremental) {
                /* Say why when it is the base checkpoint: the caller then goes full. */
                struct nst_error e = NST_ERROR_INIT;
                if (nst_src_checkpoint_check(dom, o->incremental, &e) == -ESTALE) {
                        if (err)
                                *err = e;
                        return -ESTALE;
                }
        }
        if (r == 0)
                *ret_quiesced = frozen;
        return r;
}

int nst_src_job_begin(virDomainPtr dom, const struct nst_src_job_opts *o,
                      struct nst_src_job **ret, bool *ret_quiesced, struct nst_error *err) {
        const char *dn = dom_name(dom);
        int r = check_opts(o, err);
        if (r < 0)
                return r;
        int active = virDomainIsActive(dom);
        if (active < 0)
                return nst_lv_error(err, -EIO, "HypervisorError", "cannot read the state of %s",
                                    dn);
        if (!active)
                return nst_error_set(err, -EINVAL, "InstanceInvalidState",
                                     "%s is not running: replication reads running domains",
                                     dn);
        struct nst_src_disk_info *disks = NULL;
        size_t nd = 0;
        if ((r = nst_src_list_disks(dom, &disks, &nd, err)) < 0)
                return r;
        char socket[sizeof(((struct sockaddr_un *)0)->sun_path)];
        _cleanup_free_ char *bxml = NULL, *cxml = NULL;
        bool quiesced = false;
        if ((r = check_disks(dom, o, disks, nd, err)) < 0 ||
            (r = prepare_run_dir(o->run_dir, socket, sizeof(socket), err)) < 0 ||
            (r = remove_stale_scratch(o, err)) < 0) {
                nst_src_disks_free(disks, nd);
                return r;
        }
        bool spares = take_spares(o);
        if ((r = backup_xml(o, socket, disks, nd, spares, &bxml, err)) < 0 ||
            (o->new_checkpoint && (r = checkpoint_xml(o, disks, nd, &cxml, err)) < 0) ||
            (r = begin_backup(dom, o, bxml, cxml,
                              spares ? VIR_DOMAIN_BACKUP_BEGIN_REUSE_EXTERNAL : 0, &quiesced,
                              err)) < 0) {
                nst_src_disks_free(disks, nd);
                if (spares) /* it may hold copied data now: never taken again */
                        remove_taken_spares(o, o->n_disks);
                return r;
        }
        nst_src_disks_free(disks, nd);

        struct nst_src_job *j = NULL;
        if ((r = job_new(dom, o, &j, err)) < 0) {
                (void)virDomainAbortJob(dom);
                if (spares)
                        remove_taken_spares(o, o->n_disks);
                if (o->new_checkpoint)
                        (void)delete_checkpoint(dom, o->new_checkpoint, NULL);
                return r;
        }
        j->running = true;
        if (spares && !(j->scratch_dir = strdup(o->run_dir))) {
                (void)job_teardown(j, false, NULL);
                remove_taken_spares(o, o->n_disks);
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        snprintf(j->socket, sizeof(j->socket), "%s", socket);
        r = read_exports(j, o->incremental != NULL, err);
        for (size_t i = 0; r >= 0 && i < j->n; i++)
                r = connect_disk(&j->disks[i], j->socket, err);
        if (r < 0) {
                (void)job_teardown(j, false, NULL);
                return r;
        }
        *ret = j;
        if (ret_quiesced)
                *ret_quiesced = quiesced;
        return 0;
}

static int job_disk(struct nst_src_job *j, size_t disk, struct src_disk **ret,
                    struct nst_error *err) {
        if (!j || disk >= j->n)
                return nst_error_set(err, -EINVAL, "InvalidInput", "no disk %zu in the job", disk);
        if (!j->disks[disk].nbd)
                return nst_error_set(err, -ENOTCONN, "NbdError",
                                     "disk %s: the connection to the export was lost",
                                     j->disks[disk].name);
        *ret = &j->disks[disk];
        return 0;
}

/* ---- extents ---- */

struct range {
        uint64_t off, len;
        uint32_t flags;
};

struct range_list {
        struct range *v;
        size_t n, cap;
        uint64_t end;   /* covered so far: [0, end) */
};

struct status_walk {
        const char *dirty_context;
        struct range_list dirty, alloc;
        uint64_t size;
        int error;
};

static int range_add(struct range_list *l, uint64_t off, uint64_t len, uint32_t flags) {
        if (l->n > 0) {
                struct range *p = &l->v[l->n - 1];
                if (p->flags == flags && p->off + p->len == off) {
                        p->len += len;
                        return 0;
                }
        }
        if (l->n == l->cap) {
                size_t cap = l->cap ? l->cap * 2 : 64;
                struct range *v = reallocarray(l->v, cap, sizeof(*v));
                if (!v)
                        return -ENOMEM;
                l->v = v;
                l->cap = cap;
        }
        l->v[l->n++] = (struct range){off, len, flags};
        return 0;
}

/* Replies of the two contexts may cover different lengths: each list keeps
 * only what extends it, so a re-asked range is not counted twice. */
static int extent_cb(void *userdata, const char *metacontext, uint64_t offset, uint32_t *entries,
                     size_t nr_entries, int *error) {
        struct status_walk *w = userdata;
        struct range_list *l;
        if (w->dirty_context && strcmp(metacontext, w->dirty_context) == 0)
                l = &w->dirty;
        else if (strcmp(metacontext, LIBNBD_CONTEXT_BASE_ALLOCATION) == 0)
                l = &w->alloc;
        else
                return 0;
        uint64_t pos = offset;
        for (size_t i = 0; i + 1 < nr_entries; i += 2) {
                uint64_t end = pos + entries[i];
                if (end > w->size)
                        end = w->size;
                uint64_t from = pos > l->end ? pos : l->end;
                if (pos > l->end) {
                        w->error = -EPROTO;   /* a hole in the server's answer */
                        *error = EPROTO;
                        return -1;
                }
                if (end > from) {
                        if (range_add(l, from, end - from, entries[i + 1]) < 0) {
                                w->error = -ENOMEM;
                                *error = ENOMEM;
                                return -1;
                        }
                        l->end = end;
                }
                pos += entries[i];
        }
        return 0;
}

static uint64_t walk_pos(const struct status_walk *w, bool want_alloc) {
        uint64_t p = w->size;
        if (w->dirty_context)
                p = w->dirty.end;
        if (want_alloc && w->alloc.end < p)
                p = w->alloc.end;
        return p;
}

static int block_status_walk(struct src_disk *d, struct status_walk *w, struct nst_error *err) {
        nbd_extent_callback cb = {.callback = extent_cb, .user_data = w};
        for (;;) {
                uint64_t off = walk_pos(w, d->zero_info);
                if (off >= w->size)
                        return 0;
                uint64_t count = w->size - off;
                if (count > BLOCK_STATUS_MAX)
                        count = BLOCK_STATUS_MAX;
                if (nbd_block_status(d->nbd, count, off, cb, 0) < 0) {
                        if (w->error == -ENOMEM)
                                return nst_error_set(err, -ENOMEM, "MemoryError",
                                                     "out of memory");
                        return nbd_failure(err, d->name, "block status");
                }
                if (walk_pos(w, d->zero_info) <= off)
                        return nst_error_set(err, -EPROTO, "NbdError",
                                             "disk %s: block status made no progress at offset "
                                             "%" PRIu64,
                                             d->name, off);
        }
}

struct extent_out {
        struct nst_src_extent *v;
        size_t n, cap;
};

static int out_push(struct extent_out *o, uint64_t off, uint64_t len, bool zero) {
        if (o->n == o->cap) {
                size_t cap = o->cap ? o->cap * 2 : 64;
                struct nst_src_extent *v = reallocarray(o->v, cap, sizeof(*v));
                if (!v)
                        return -ENOMEM;
                o->v = v;
                o->cap = cap;
        }
        o->v[o->n++] = (struct nst_src_extent){.offset = off, .length = len, .zero = zero};
        return 0;
}

/* Appends [off, off + len), merged with its neighbour of the same kind;
 * data is cut into pieces of at most DATA_EXTENT_MAX. */
static int out_emit(struct extent_out *o, uint64_t off, uint64_t len, bool zero) {
        if (o->n > 0) {
                struct nst_src_extent *p = &o->v[o->n - 1];
                if (p->zero == zero && p->offset + p->length == off) {
                        uint64_t take = zero ? len : DATA_EXTENT_MAX - p->length;
                        if (take > len)
                                take = len;
                        p->length += take;
                        off += take;
                        len -= take;
                }
        }
        while (len > 0) {
                uint64_t take = zero || len <= DATA_EXTENT_MAX ? len : DATA_EXTENT_MAX;
                if (out_push(o, off, take, zero) < 0)
                        return -ENOMEM;
                off += take;
                len -= take;
        }
        return 0;
}

/* The flags of l at pos, and where they stop. *i only moves forward. */
static uint32_t flags_at(const struct range_list *l, size_t *i, uint64_t pos, uint64_t *end) {
        while (*i < l->n && l->v[*i].off + l->v[*i].len <= pos)
                (*i)++;
        if (*i == l->n) {   /* not reached: both lists cover the disk */
                *end = UINT64_MAX;
                return 0;
        }
        *end = l->v[*i].off + l->v[*i].len;
        return l->v[*i].flags;
}

static int combine(const struct status_walk *w, bool full, struct extent_out *o) {
        size_t di = 0, ai = 0;
        for (uint64_t pos = 0; pos < w->size;) {
                uint64_t dend, aend;
                uint32_t dflags = flags_at(&w->dirty, &di, pos, &dend);
                uint32_t aflags = flags_at(&w->alloc, &ai, pos, &aend);
                uint64_t end = dend < aend ? dend : aend;
                if (end > w->size)
                        end = w->size;
                if (full || (dflags & 1)) {
                        if (out_emit(o, pos, end - pos, (aflags & LIBNBD_STATE_ZERO) != 0) < 0)
                                return -ENOMEM;
                }
                pos = end;
        }
        return 0;
}

int nst_src_job_extents(struct nst_src_job *j, size_t disk, struct nst_src_extent **ret,
                        size_t *ret_n, uint64_t *ret_disk_size, struct nst_error *err) {
        struct src_disk *d = NULL;
        int r = job_disk(j, disk, &d, err);
        if (r < 0)
                return r;
        struct status_walk w = {.dirty_context = d->dirty_context, .size = d->size};
        struct extent_out o = {0};
        if (d->size > 0) {
                r = block_status_walk(d, &w, err);
                /* What a context did not tell reads as "all dirty" / "all data". */
                if (r >= 0 && !d->dirty_context && range_add(&w.dirty, 0, d->size, 1) < 0)
                        r = -ENOMEM;
                if (r >= 0 && !d->zero_info && range_add(&w.alloc, 0, d->size, 0) < 0)
                        r = -ENOMEM;
                if (r >= 0 && combine(&w, !d->dirty_context, &o) < 0)
                        r = -ENOMEM;
                if (r == -ENOMEM && !nst_error_is_set(err))
                        nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        free(w.dirty.v);
        free(w.alloc.v);
        if (r < 0) {
                free(o.v);
                return r;
        }
        *ret = o.v;
        *ret_n = o.n;
        if (ret_disk_size)
                *ret_disk_size = d->size;
        return 0;
}

/* ---- reading ---- */

enum wait_result { WAIT_DONE = 0, WAIT_FAILED = -1, WAIT_BROKEN = -2 };

/* WAIT_FAILED: the command failed (and is retired); WAIT_BROKEN: the
 * connection is unusable and the command may still be pending. */
static enum wait_result wait_command(struct nbd_handle *h, int64_t cookie) {
        int idle = 0;
        for (;;) {
                int c = nbd_aio_command_completed(h, (uint64_t)cookie);
                if (c == 1)
                        return WAIT_DONE;
                if (c < 0)
                        return WAIT_FAILED;
                int p = nbd_poll(h, NBD_POLL_MS);
                if (p < 0)
                        return WAIT_BROKEN;
                idle = p == 0 ? idle + NBD_POLL_MS : 0;
                if (idle >= NBD_IDLE_MAX_MS)
                        return WAIT_BROKEN;
        }
}

static int check_stream_extents(const struct src_disk *d, const struct nst_src_extent *ex,
                                size_t n, size_t *ret_max, size_t *ret_data,
                                struct nst_error *err) {
        size_t max = 0, data = 0;
        for (size_t i = 0; i < n; i++) {
                const struct nst_src_extent *e = &ex[i];
                if (e->length == 0 || e->offset > d->size || e->length > d->size - e->offset ||
                    (!e->zero && e->length > DATA_EXTENT_MAX))
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "disk %s: extent %zu (offset %" PRIu64
                                             ", length %" PRIu64 ") is empty, beyond the disk "
                                             "(%" PRIu64 " bytes) or data over %llu KiB",
                                             d->name, i, e->offset, e->length, d->size,
                                             (unsigned long long)(DATA_EXTENT_MAX / 1024));
                if (!e->zero) {
                        data++;
                        if (e->length > max)
                                max = (size_t)e->length;
                }
        }
        *ret_max = max;
        *ret_data = data;
        return 0;
}

struct stream;

struct slot {
        struct stream *s;
        size_t idx;      /* into the extents */
        int64_t cookie;
        void *buf;       /* reused for every read through this slot */
        uint64_t digest;
};

struct stream {
        struct src_disk *d;
        const struct nst_src_extent *ex;
        size_t n;
        struct slot *ring;
        unsigned depth;
        size_t head, inflight, next;
        nst_src_digest_fn digest_fn;
};

/* libnbd calls this as the read's last bytes arrive. */
static int read_completed(void *user_data, int *error) {
        struct slot *sl = user_data;
        if (*error == 0)
                sl->digest = sl->s->digest_fn(sl->buf, (size_t)sl->s->ex[sl->idx].length);
        return 0; /* retired by wait_command */
}

/* Keeps up to depth data reads in flight, in extent order. */
static int stream_fill(struct stream *s, struct nst_error *err) {
        while (s->inflight < s->depth && s->next < s->n) {
                const struct nst_src_extent *e = &s->ex[s->next];
                if (e->zero) {
                        s->next++;
                        continue;
                }
                struct slot *sl = &s->ring[(s->head + s->inflight) % s->depth];
                sl->idx = s->next;
                sl->digest = 0;
                nbd_completion_callback cb = NBD_NULL_COMPLETION;
                if (s->digest_fn)
                        cb = (nbd_completion_callback){.callback = read_completed, .user_data = sl};
                sl->cookie = nbd_aio_pread(s->d->nbd, sl->buf, (size_t)e->length, e->offset, cb,
                                           0);
                if (sl->cookie < 0)
                        return nbd_failure(err, s->d->name, "read");
                s->inflight++;
                s->next++;
        }
        return 0;
}

/* Waits out every read still in flight, so no buffer is freed under one. */
static void stream_drain(struct stream *s) {
        while (s->inflight > 0) {
                if (wait_command(s->d->nbd, s->ring[s->head].cookie) == WAIT_BROKEN) {
                        /* Closing the handle retires what is pending. */
                        disconnect_disk(s->d);
                        break;
                }
                s->head = (s->head + 1) % s->depth;
                s->inflight--;
        }
        s->inflight = 0;
}

static int stream_run(struct stream *s, nst_src_data_fn fn, void *userdata,
                      struct nst_error *err) {
        for (size_t i = 0; i < s->n; i++) {
                const struct nst_src_extent *e = &s->ex[i];
                const void *data = NULL;
                uint64_t digest = 0;
                if (!e->zero) {
                        int r = stream_fill(s, err);
                        if (r < 0)
                                return r;
                        struct slot *sl = &s->ring[s->head];
                        enum wait_result w = wait_command(s->d->nbd, sl->cookie);
                        if (w != WAIT_DONE) {
                                r = nbd_failure(err, s->d->name, "read");
                                if (w == WAIT_BROKEN) {
                                        disconnect_disk(s->d);
                                        s->inflight = 0;
                                        return r;
                                }
                                s->head = (s->head + 1) % s->depth;
                                s->inflight--;
                                return r;
                        }
                        data = sl->buf;
                        digest = sl->digest;
                }
                int r = fn(userdata, e, data, digest);
                if (!e->zero) {
                        s->head = (s->head + 1) % s->depth;
                        s->inflight--;
                }
                if (r < 0) {
                        if (!nst_error_is_set(err))
                                nst_error_set(err, r, "ReplicationFailed",
                                              "disk %s: the stream stopped at offset %" PRIu64
                                              ": %s",
                                              s->d->name, e->offset, strerror(-r));
                        return r;
                }
        }
        return 0;
}

int nst_src_job_stream(struct nst_src_job *j, size_t disk, const struct nst_src_extent *ex,
                       size_t n, unsigned depth, nst_src_digest_fn digest_fn, nst_src_data_fn fn,
                       void *userdata, struct nst_error *err) {
        struct src_disk *d = NULL;
        int r = job_disk(j, disk, &d, err);
        if (r < 0)
                return r;
        if (!fn || (n > 0 && !ex))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "stream needs extents and a callback");
        size_t max = 0, data = 0;
        if ((r = check_stream_extents(d, ex, n, &max, &data, err)) < 0)
                return r;
        if (depth == 0)
                depth = 1;
        if (depth > STREAM_DEPTH_MAX)
                depth = STREAM_DEPTH_MAX;
        if (data > 0 && depth > data)
                depth = (unsigned)data;
        struct stream s = {.d = d, .ex = ex, .n = n, .depth = depth, .digest_fn = digest_fn};
        s.ring = calloc(depth, sizeof(*s.ring));
        if (!s.ring)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        /* One block for all slots: 16 x 512 KiB is on huge pages, where 16
         * separate buffers would each be fresh mmapped memory. */
        size_t slot_size = (max + 63) / 64 * 64;
        _cleanup_free_ uint8_t *block = NULL;
        if (data > 0 && !(block = repl_buf_alloc(slot_size * depth, sizeof(void *)))) {
                free(s.ring);
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        for (unsigned i = 0; i < depth; i++) {
                s.ring[i].s = &s;
                s.ring[i].buf = block ? block + (size_t)i * slot_size : NULL;
        }
        r = stream_run(&s, fn, userdata, err);
        if (d->nbd)
                stream_drain(&s);
        free(s.ring);
        return r;
}

int nst_src_job_read(struct nst_src_job *j, size_t disk, uint64_t offset, void *buf,
                     size_t length, struct nst_error *err) {
        struct src_disk *d = NULL;
        int r = job_disk(j, disk, &d, err);
        if (r < 0)
                return r;
        if (offset > d->size || length > d->size - offset)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "disk %s: read of %zu bytes at %" PRIu64
                                     " is beyond the disk (%" PRIu64 " bytes)",
                                     d->name, length, offset, d->size);
        for (size_t done = 0; done < length;) {
                size_t take = length - done;
                if (take > DATA_EXTENT_MAX)
                        take = DATA_EXTENT_MAX;
                if (nbd_pread(d->nbd, (char *)buf + done, take, offset + done, 0) < 0)
                        return nbd_failure(err, d->name, "read");
                done += take;
        }
        return 0;
}

int nst_src_job_hashes(struct nst_src_job *j, size_t disk, uint64_t first, uint32_t count,
                       uint8_t *out, struct nst_error *err) {
        struct src_disk *d = NULL;
        int r = job_disk(j, disk, &d, err);
        if (r < 0)
                return r;
        uint64_t blocks = (d->size + HASH_BLOCK - 1) / HASH_BLOCK;
        if (first > blocks || count > blocks - first)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "disk %s: blocks %" PRIu64 "+%u are beyond its %" PRIu64
                                     " blocks of 64 KiB",
                                     d->name, first, count, blocks);
        if (count == 0)
                return 0;
        _cleanup_free_ uint8_t *buf = malloc(HASH_READ);
        if (!buf)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        uint64_t off = first * HASH_BLOCK;
        uint64_t end = (first + count) * HASH_BLOCK;
        if (end > d->size)
                end = d->size;
        uint8_t *o = out;
        while (off < end) {
                size_t len = end - off > HASH_READ ? HASH_READ : (size_t)(end - off);
                if ((r = nst_src_job_read(j, disk, off, buf, len, err)) < 0)
                        return r;
                for (size_t b = 0; b < len; b += HASH_BLOCK, o += 32) {
                        size_t bl = len - b > HASH_BLOCK ? HASH_BLOCK : len - b;
                        if (!EVP_Digest(buf + b, bl, o, NULL, EVP_sha256(), NULL))
                                return nst_error_set(err, -EIO, "ReplicationFailed",
                                                     "SHA-256 failed (OpenSSL)");
                }
                off += len;
        }
        return 0;
}

int nst_src_job_end(struct nst_src_job *j, bool success, struct nst_error *err) {
        if (!j)
                return 0;
        return job_teardown(j, success, err);
}

/* ---- checkpoints ---- */

static int qmp(virDomainPtr dom, const char *cmd, json_object **ret, struct nst_error *err) {
        const char *dn = dom_name(dom);
        char *out = NULL;
        if (virDomainQemuMonitorCommand(dom, cmd, &out, 0) < 0)
                return nst_lv_error(err, -EIO, "HypervisorError", "QMP on %s failed",
                                    dn);
        _cleanup_free_ char *text = out;
        size_t len = strlen(text);
        if (len > QMP_OUT_MAX)
                return nst_error_set(err, -EFBIG, "HypervisorError", "QMP reply of %zu bytes",
                                     len);
        json_object *o = NULL;
        int r = nst_json_parse(text, len, &o, err);
        if (r < 0)
                return nst_error_prefix(err, "QMP reply from %s", dn);
        json_object *e;
        if (json_object_object_get_ex(o, "error", &e)) {
                json_object *desc = NULL;
                json_object_object_get_ex(e, "desc", &desc);
                r = nst_error_set(err, -EIO, "HypervisorError", "QMP on %s: %s", dn,
                                  desc ? json_object_get_string(desc) : "error");
                json_object_put(o);
                return r;
        }
        *ret = o;
        return 0;
}

/* The block nodes of the domain (QMP query-named-block-nodes, flat). */
static int query_nodes(virDomainPtr dom, json_object **ret_reply, json_object **ret_nodes,
                       struct nst_error *err) {
        const char *dn = dom_name(dom);
        json_object *reply = NULL, *nodes;
        int r = qmp(dom, "{\"execute\":\"query-named-block-nodes\",\"arguments\":{\"flat\":true}}",
                    &reply, err);
        if (r < 0)
                return r;
        if (!json_object_object_get_ex(reply, "return", &nodes) ||
            !json_object_is_type(nodes, json_type_array)) {
                json_object_put(reply);
                return nst_error_set(err, -EPROTO, "HypervisorError",
                                     "query-named-block-nodes on %s: no node list", dn);
        }
        *ret_reply = reply;
        *ret_nodes = nodes;
        return 0;
}

/* The dirty-bitmap list of one node from query-named-block-nodes. */
static json_object *node_bitmaps(json_object *node) {
        json_object *bitmaps;
        if (!json_object_object_get_ex(node, "dirty-bitmaps", &bitmaps) ||
            !json_object_is_type(bitmaps, json_type_array))
                return NULL;
        return bitmaps;
}

static const char *bitmap_name(json_object *bitmap) {
        json_object *n;
        return json_object_object_get_ex(bitmap, "name", &n) ? json_object_get_string(n) : NULL;
}

/* After a QEMU crash libvirt 9.0 still gives sizes for checkpoints whose
 * bitmaps are gone (created at run time, never saved) or inconsistent (left
 * "in use" by the QEMU that died): QEMU is asked directly. */
static int check_bitmaps_consistent(virDomainPtr dom, const char *checkpoint, xmlDocPtr doc,
                                    struct nst_error *err) {
        const char *dn = dom_name(dom);
        _cleanup_(xmlXPathFreeContextp) xmlXPathContextPtr ctx = nst_xpath_new(doc);
        _cleanup_(xmlXPathFreeObjectp) xmlXPathObjectPtr disks =
                ctx ? nst_xpath_nodes(ctx, NULL,
                                      "/domaincheckpoint/disks/disk[@checkpoint='bitmap']")
                    : NULL;
        if (!disks)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        if (nst_xpath_count(disks) == 0)
                return 0;
        _cleanup_(json_object_putp) json_object *reply = NULL;
        json_object *nodes;
        int r = query_nodes(dom, &reply, &nodes, err);
        if (r < 0)
                return r;
        for (int i = 0; i < nst_xpath_count(disks); i++) {
                xmlNodePtr disk = disks->nodesetval->nodeTab[i];
                _cleanup_free_ char *bitmap = nst_xml_attr(disk, "bitmap");
                _cleanup_free_ char *disk_name = nst_xml_attr(disk, "name");
                const char *want = bitmap ? bitmap : checkpoint;
                bool found = false, broken = false;
                for (size_t k = 0; k < json_object_array_length(nodes); k++) {
                        json_object *bitmaps = node_bitmaps(json_object_array_get_idx(nodes, k));
                        for (size_t b = 0; bitmaps && b < json_object_array_length(bitmaps);
                             b++) {
                                json_object *bm = json_object_array_get_idx(bitmaps, b), *inc;
                                const char *name = bitmap_name(bm);
                                if (!name || strcmp(name, want) != 0)
                                        continue;
                                found = true;
                                broken |= json_object_object_get_ex(bm, "inconsistent", &inc) &&
                                          json_object_get_boolean(inc);
                        }
                }
                if (!found || broken)
                        return nst_error_set(err, -ESTALE, "CheckpointBroken",
                                             "checkpoint %s of %s is unusable: bitmap '%s' of "
                                             "disk '%s' is %s (QEMU stopped without saving it)",
                                             checkpoint, dn, want, disk_name ? disk_name : "?",
                                             found ? "inconsistent" : "missing");
        }
        return 0;
}

/* The checkpoint's XML with sizes (needs a running domain), parsed; *ret
 * NULL when the domain is not running. CheckpointBroken for a missing
 * checkpoint or one with missing or inconsistent bitmaps. */
static int checkpoint_inspect(virDomainPtr dom, const char *checkpoint, xmlDocPtr *ret,
                              struct nst_error *err) {
        const char *dn = dom_name(dom);
        int r = checkpoint_name_check(checkpoint, err);
        if (r < 0)
                return r;
        _cleanup_(virDomainCheckpointFreep) virDomainCheckpointPtr cp =
                virDomainCheckpointLookupByName(dom, checkpoint, 0);
        if (!cp) {
                if (virGetLastErrorCode() == VIR_ERR_NO_DOMAIN_CHECKPOINT)
                        return nst_lv_error(err, -ESTALE, "CheckpointBroken",
                                            "checkpoint %s of %s does not exist", checkpoint,
                                            dn);
                return nst_lv_error(err, -EIO, "HypervisorError", "cannot look up checkpoint %s",
                                    checkpoint);
        }
        int active = virDomainIsActive(dom);
        if (active < 0)
                return nst_lv_error(err, -EIO, "HypervisorError", "cannot read the state of %s",
                                    dn);
        *ret = NULL;
        if (!active)
                return 0;
        _cleanup_free_ char *xml = virDomainCheckpointGetXMLDesc(
                cp, VIR_DOMAIN_CHECKPOINT_XML_SIZE | VIR_DOMAIN_CHECKPOINT_XML_NO_DOMAIN);
        if (!xml) {
                const char *m = virGetLastErrorMessage();
                if (virGetLastErrorCode() == VIR_ERR_CHECKPOINT_INCONSISTENT ||
                    (m && strstr(m, "missing or broken bitmap")))
                        return nst_lv_error(err, -ESTALE, "CheckpointBroken",
                                            "checkpoint %s of %s is unusable", checkpoint, dn);
                return nst_lv_error(err, -EIO, "HypervisorError",
                                    "cannot read checkpoint %s of %s", checkpoint, dn);
        }
        _cleanup_(xmlFreeDocp) xmlDocPtr doc = NULL;
        if ((r = nst_xml_parse(xml, "checkpoint XML", "HypervisorError", &doc, err)) < 0 ||
            (r = check_bitmaps_consistent(dom, checkpoint, doc, err)) < 0)
                return r;
        *ret = nst_steal(&doc);
        return 0;
}

int nst_src_checkpoint_check(virDomainPtr dom, const char *checkpoint, struct nst_error *err) {
        _cleanup_(xmlFreeDocp) xmlDocPtr doc = NULL;
        return checkpoint_inspect(dom, checkpoint, &doc, err);
}

int nst_src_changed_bytes(virDomainPtr dom, const char *checkpoint, uint64_t *ret,
                          struct nst_error *err) {
        const char *dn = dom_name(dom);
        _cleanup_(xmlFreeDocp) xmlDocPtr doc = NULL;
        int r = checkpoint_inspect(dom, checkpoint, &doc, err);
        if (r < 0)
                return r;
        if (!doc)
                return nst_error_set(err, -ENOTSUP, "InstanceInvalidState",
                                     "%s is not running: libvirt knows no checkpoint sizes", dn);
        _cleanup_(xmlXPathFreeContextp) xmlXPathContextPtr ctx = nst_xpath_new(doc);
        _cleanup_(xmlXPathFreeObjectp) xmlXPathObjectPtr nodes =
                ctx ? nst_xpath_nodes(ctx, NULL, "/domaincheckpoint/disks/disk[@size]") : NULL;
        if (!nodes)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        if (nst_xpath_count(nodes) == 0)
                return nst_error_set(err, -ENOTSUP, "HypervisorError",
                                     "checkpoint %s of %s: libvirt reports no sizes", checkpoint,
                                     dn);
        uint64_t sum = 0;
        for (int i = 0; i < nst_xpath_count(nodes); i++) {
                _cleanup_free_ char *s = nst_xml_attr(nodes->nodesetval->nodeTab[i], "size");
                char *end = NULL;
                errno = 0;
                unsigned long long v = s ? strtoull(s, &end, 10) : 0;
                if (!s || errno || end == s || *end != '\0' || s[0] == '-')
                        return nst_error_set(err, -EPROTO, "HypervisorError",
                                             "checkpoint %s: bad size '%.40s'", checkpoint,
                                             s ? s : "");
                sum += v;
        }
        *ret = sum;
        return 0;
}

/* ---- pruning ---- */

static bool name_in(const char *name, char *const *names, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (names[i] && strcmp(names[i], name) == 0)
                        return true;
        return false;
}

static int remove_bitmap(virDomainPtr dom, const char *node, const char *bitmap,
                         struct nst_error *err) {
        _cleanup_(json_object_putp) json_object *cmd = json_object_new_object();
        json_object *args = json_object_new_object();
        if (!cmd || !args) {
                json_object_put(args);
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        json_object_object_add(cmd, "execute", json_object_new_string("block-dirty-bitmap-remove"));
        json_object_object_add(args, "node", json_object_new_string(node));
        json_object_object_add(args, "name", json_object_new_string(bitmap));
        json_object_object_add(cmd, "arguments", args);
        _cleanup_(json_object_putp) json_object *reply = NULL;
        int r = qmp(dom, json_object_to_json_string_ext(cmd, JSON_C_TO_STRING_PLAIN), &reply, err);
        if (r < 0)
                return nst_error_prefix(err, "removing bitmap %s from node %s", bitmap, node);
        return 0;
}

/* Removes Nestor's bitmaps that no checkpoint in `live` names, on every
 * block node of the domain (a crashed QEMU leaves them inconsistent, and
 * libvirt no longer knows them). Returns how many were removed. */
static int sweep_stale_bitmaps(virDomainPtr dom, char *const *live, size_t n_live,
                               struct nst_error *err) {
        _cleanup_(json_object_putp) json_object *reply = NULL;
        json_object *nodes;
        int r = query_nodes(dom, &reply, &nodes, err);
        if (r < 0)
                return r;
        int removed = 0;
        for (size_t i = 0; i < json_object_array_length(nodes); i++) {
                json_object *node = json_object_array_get_idx(nodes, i), *nn;
                json_object *bitmaps = node_bitmaps(node);
                if (!bitmaps || !json_object_object_get_ex(node, "node-name", &nn))
                        continue;
                for (size_t k = 0; k < json_object_array_length(bitmaps); k++) {
                        const char *name = bitmap_name(json_object_array_get_idx(bitmaps, k));
                        if (!name || !is_ours(name) || name_in(name, live, n_live))
                                continue;
                        r = remove_bitmap(dom, json_object_get_string(nn), name, err);
                        if (r < 0)
                                return r;
                        removed++;
                }
        }
        return removed;
}

static int prune_one(virDomainCheckpointPtr cp, const char *name, bool *ret_stale,
                     struct nst_error *err) {
        if (virDomainCheckpointDelete(cp, 0) == 0)
                return 0;
        /* "bitmap ... not found in backing chain" after a QEMU crash: only
         * the metadata can go; the bitmaps are swept afterwards. */
        if (virDomainCheckpointDelete(cp, VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY) < 0)
                return nst_lv_error(err, -EIO, "HypervisorError", "cannot delete checkpoint %s",
                                    name);
        *ret_stale = true;
        return 0;
}

int nst_src_checkpoints_prune(virDomainPtr dom, const char *keep, struct nst_error *err) {
        const char *dn = dom_name(dom);
        virDomainCheckpointPtr *cps = NULL;
        int n = virDomainListAllCheckpoints(dom, &cps, 0);
        if (n < 0)
                return nst_lv_error(err, -EIO, "HypervisorError",
                                    "cannot list the checkpoints of %s", dn);
        int r = 0;
        bool stale = false;
        size_t n_live = 0;
        char **live = calloc((size_t)n + 1, sizeof(*live));
        if (!live)
                r = nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        for (int i = 0; i < n; i++) {
                const char *name = virDomainCheckpointGetName(cps[i]);
                bool drop = name && is_ours(name) && !(keep && strcmp(name, keep) == 0);
                if (r >= 0 && drop)
                        r = prune_one(cps[i], name, &stale, err);
                else if (r >= 0 && name && !(live[n_live++] = strdup(name)))
                        r = nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
                virDomainCheckpointFree(cps[i]);
        }
        free(cps);
        int active = r >= 0 ? virDomainIsActive(dom) : 0;
        /* Stale bitmaps are looked for when a delete showed some may exist,
         * or on a full reset (keep NULL): the sweep costs QMP round-trips. */
        if (r >= 0 && (stale || !keep) && active == 1) {
                int s = sweep_stale_bitmaps(dom, live, n_live, err);
                if (s < 0)
                        r = s;
        }
        for (size_t i = 0; i < n_live; i++)
                free(live[i]);
        free(live);
        return r;
}

/* ---- stale jobs ---- */

int nst_src_abort_stale_job(virDomainPtr dom, struct nst_error *err) {
        const char *dn = dom_name(dom);
        int type = VIR_DOMAIN_JOB_NONE, nparams = 0;
        virTypedParameterPtr params = NULL;
        if (virDomainGetJobStats(dom, &type, &params, &nparams, 0) < 0)
                return nst_lv_error(err, -EIO, "HypervisorError",
                                    "cannot read the job of %s", dn);
        int op = 0;
        bool backup = type != VIR_DOMAIN_JOB_NONE &&
                      virTypedParamsGetInt(params, nparams, VIR_DOMAIN_JOB_OPERATION, &op) == 1 &&
                      op == VIR_DOMAIN_JOB_OPERATION_BACKUP;
        virTypedParamsFree(params, nparams);
        if (!backup)
                return 0;
        if (virDomainAbortJob(dom) < 0)
                return nst_lv_error(err, -EIO, "HypervisorError",
                                    "cannot abort the stale backup job of %s", dn);
        return 1;
}
