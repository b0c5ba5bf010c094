/* Snapshot operations on one libvirt domain (see snap_ops.h). libvirt 9.0
 * creates and deletes external snapshots itself (deletion commits the
 * overlay back); it cannot revert to them, so revert is done here: new empty
 * overlays on the snapshot's images, the definition pointed at them, and the
 * guest started (or its memory restored). Overlays no chain needs any more
 * are removed after a revert or a delete. */
#include "plugins/snapshot/snap_ops.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <libvirt/virterror.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "messages/json_util.h"
#include "plugins/libvirt/disks.h"
#include "plugins/libvirt/lv_util.h"
#include "plugins/libvirt/xml_writer.h"

#define MIB (1024.0 * 1024.0)
#define OVERLAY_TAG ".snap-"
#define REVERT_TAG ".revert-"
#define CHAIN_MAX 256

NST_DEFINE_CLEANUP(virDomainSnapshot, virDomainSnapshotFree)

/* ---- names, quiesce ---- */

bool nst_snap_name_valid(const char *name) {
        if (!name)
                return false;
        size_t n = strlen(name);
        if (n == 0 || n > NST_SNAP_NAME_MAX || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
                return false;
        return strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") ==
               n;
}

int nst_snap_name_check(const char *name, struct nst_error *err) {
        if (nst_snap_name_valid(name))
                return 0;
        return nst_error_set(err, -EINVAL, "InvalidInput",
                             "snapshot name '%.80s' is invalid: 1-%d of A-Z a-z 0-9 . _ - "
                             "(not '.' or '..')",
                             name ? name : "", NST_SNAP_NAME_MAX);
}

static const char *const quiesce_names[] = {"preferred", "required", "off"};

int nst_snap_quiesce_parse(const char *s, enum nst_snap_quiesce *ret, struct nst_error *err) {
        for (size_t i = 0; i < NST_ARRAY_SIZE(quiesce_names); i++)
                if (!s || strcmp(s, quiesce_names[i]) == 0) {
                        *ret = s ? (enum nst_snap_quiesce)i : NST_SNAP_QUIESCE_PREFERRED;
                        return 0;
                }
        return nst_error_set(err, -EINVAL, "InvalidInput",
                             "quiesce must be \"preferred\", \"required\" or \"off\", got \"%.40s\"",
                             s);
}

const char *nst_snap_quiesce_str(enum nst_snap_quiesce q) {
        return (size_t)q < NST_ARRAY_SIZE(quiesce_names) ? quiesce_names[q] : "?";
}

/* ---- files ---- */

static int path_join(char *buf, size_t size, const char *dir, const char *name, const char *ext,
                     struct nst_error *err) {
        int n = snprintf(buf, size, "%s/%s%s", dir, name, ext ? ext : "");
        if (n < 0 || (size_t)n >= size)
                return nst_error_set(err, -ENAMETOOLONG, "InvalidInput", "path too long: %s/%s%s",
                                     dir, name, ext ? ext : "");
        return 0;
}

static int mkdir_p(const char *dir, mode_t mode, struct nst_error *err) {
        char buf[PATH_MAX];
        if (snprintf(buf, sizeof(buf), "%s", dir) >= (int)sizeof(buf))
                return nst_error_set(err, -ENAMETOOLONG, "SnapshotFailed", "path too long: %s", dir);
        for (char *p = buf + 1;; p++) {
                bool end = *p == '\0';
                if (*p == '/' || end) {
                        *p = '\0';
                        if (mkdir(buf, mode) < 0 && errno != EEXIST)
                                return nst_error_set(err, -errno, "SnapshotFailed",
                                                     "cannot create %s: %s", buf, strerror(errno));
                        if (end)
                                break;
                        *p = '/';
                }
        }
        return 0;
}

int nst_snap_sidecar_write(const char *dir, const char *name, json_object *meta,
                           struct nst_error *err) {
        char path[PATH_MAX], tmp[PATH_MAX];
        int r = nst_snap_name_check(name, err);
        if (r < 0 || (r = path_join(path, sizeof(path), dir, name, ".json", err)) < 0 ||
            (r = path_join(tmp, sizeof(tmp), dir, name, ".json.tmp", err)) < 0)
                return r;
        size_t len;
        const char *text = nst_json_to_string(meta, &len);
        if (!text)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
                return nst_error_set(err, -errno, "SnapshotFailed", "cannot write %s: %s", tmp,
                                     strerror(errno));
        size_t off = 0;
        while (off < len) {
                ssize_t w = write(fd, text + off, len - off);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        goto fail;
                off += (size_t)w;
        }
        if (write(fd, "\n", 1) != 1 || fsync(fd) < 0)
                goto fail;
        if (rename(tmp, path) < 0)
                goto fail;
        return 0;
fail:
        r = -(errno ? errno : EIO);
        unlink(tmp);
        return nst_error_set(err, r, "SnapshotFailed", "cannot write %s: %s", path, strerror(-r));
}

int nst_snap_sidecar_read(const char *dir, const char *name, json_object **ret,
                          struct nst_error *err) {
        char path[PATH_MAX];
        *ret = NULL;
        int r = nst_snap_name_check(name, err);
        if (r < 0 || (r = path_join(path, sizeof(path), dir, name, ".json", err)) < 0)
                return r;
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                if (errno == ENOENT)
                        return 0;
                return nst_error_set(err, -errno, "SnapshotFailed", "cannot read %s: %s", path,
                                     strerror(errno));
        }
        char buf[65536];
        size_t len = 0;
        for (;;) {
                ssize_t n = read(fd, buf + len, sizeof(buf) - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return nst_error_set(err, -errno, "SnapshotFailed", "cannot read %s: %s",
                                             path, strerror(errno));
                if (n == 0)
                        break;
                len += (size_t)n;
                if (len == sizeof(buf))
                        return nst_error_set(err, -EFBIG, "SnapshotFailed", "%s is too large",
                                             path);
        }
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
                len--;
        json_object *o = NULL;
        r = nst_json_parse(buf, len, &o, err);
        if (r < 0)
                return nst_error_prefix(err, "sidecar %s", path);
        if (!json_object_is_type(o, json_type_object)) {
                json_object_put(o);
                return nst_error_set(err, -EINVAL, "SnapshotFailed",
                                     "sidecar %s: not a JSON object", path);
        }
        *ret = o;
        return 0;
}

int nst_snap_sidecar_remove(const char *dir, const char *name, struct nst_error *err) {
        char path[PATH_MAX];
        int r = nst_snap_name_check(name, err);
        if (r < 0 || (r = path_join(path, sizeof(path), dir, name, ".json", err)) < 0)
                return r;
        if (unlink(path) < 0 && errno != ENOENT)
                return nst_error_set(err, -errno, "SnapshotFailed", "cannot remove %s: %s", path,
                                     strerror(errno));
        return 0;
}

int nst_snap_find_owner(const char *snapshot_dir, const char *name, const char *except_uuid,
                        char ret_uuid[37]) {
        if (!nst_snap_name_valid(name))
                return -ENOENT;
        DIR *d = opendir(snapshot_dir);
        if (!d)
                return -ENOENT;
        struct dirent *e;
        int r = -ENOENT;
        while ((e = readdir(d))) {
                if (strlen(e->d_name) != 36 || (except_uuid && strcmp(e->d_name, except_uuid) == 0))
                        continue;
                char path[PATH_MAX];
                if (snprintf(path, sizeof(path), "%s/%s/%s.json", snapshot_dir, e->d_name, name) >=
                    (int)sizeof(path))
                        continue;
                if (access(path, F_OK) == 0) {
                        memcpy(ret_uuid, e->d_name, 37);
                        r = 0;
                        break;
                }
        }
        closedir(d);
        return r;
}

/* ---- estimate arithmetic and the space check ---- */

void nst_snap_mem_stats_fill(const virDomainMemoryStatStruct *s, int n, uint64_t configured_kib,
                             struct nst_snap_mem_stats *ret) {
        *ret = (struct nst_snap_mem_stats){.configured_kib = configured_kib};
        for (int i = 0; i < n; i++) {
                switch (s[i].tag) {
                case VIR_DOMAIN_MEMORY_STAT_RSS:
                        ret->rss_kib = s[i].val, ret->has_rss = true;
                        break;
                case VIR_DOMAIN_MEMORY_STAT_AVAILABLE:
                        ret->available_kib = s[i].val, ret->has_available = true;
                        break;
                case VIR_DOMAIN_MEMORY_STAT_UNUSED:
                        ret->unused_kib = s[i].val, ret->has_unused = true;
                        break;
                case VIR_DOMAIN_MEMORY_STAT_USABLE:
                        ret->usable_kib = s[i].val, ret->has_usable = true;
                        break;
                default:
                        break;
                }
        }
}

uint64_t nst_snap_memory_estimate(const struct nst_snap_mem_stats *st, const char **ret_basis) {
        uint64_t used = 0;
        bool rss = st->has_rss && st->rss_kib > 0;
        /* Page cache is "usable" but non-zero: only truly unused pages are out. */
        bool guest = st->has_available && st->has_unused && st->available_kib > 0 &&
                     st->unused_kib <= st->available_kib;
        const char *basis = "configured";
        if (rss)
                used = st->rss_kib, basis = "rss";
        if (guest && st->available_kib - st->unused_kib > used)
                used = st->available_kib - st->unused_kib, basis = rss ? "rss+guest_stats"
                                                                       : "guest_stats";
        else if (guest && rss)
                basis = "rss+guest_stats";
        if (!rss && !guest)
                used = st->configured_kib;
        if (st->configured_kib && used > st->configured_kib)
                used = st->configured_kib;
        if (ret_basis)
                *ret_basis = basis;
        return used * 1024 + NST_SNAP_MEM_OVERHEAD;
}

int nst_snap_space_check(const struct nst_snap_space *items, size_t n, uint64_t reserve,
                         struct nst_error *err) {
        for (size_t i = 0; i < n; i++) {
                bool seen = false;
                for (size_t j = 0; j < i && !seen; j++)
                        seen = items[j].fs_id == items[i].fs_id;
                if (seen)
                        continue;
                uint64_t need = 0;
                char what[256] = "";
                size_t wl = 0;
                for (size_t j = i; j < n; j++) {
                        if (items[j].fs_id != items[i].fs_id)
                                continue;
                        need += items[j].need;
                        int w = snprintf(what + wl, sizeof(what) - wl, "%s%s %.1f MiB",
                                         wl ? " + " : "", items[j].what, items[j].need / MIB);
                        if (w > 0 && (size_t)w < sizeof(what) - wl)
                                wl += (size_t)w;
                }
                if (need + reserve > items[i].free)
                        return nst_error_set(
                                err, -ENOSPC, "InsufficientStorage",
                                "not enough space for the snapshot in %s: it needs %s, plus the "
                                "%.1f MiB reserve ([snapshot] reserve_mb) = %.1f MiB, but only "
                                "%.1f MiB are free; nothing was done",
                                items[i].dir, what, reserve / MIB, (need + reserve) / MIB,
                                items[i].free / MIB);
        }
        return 0;
}

/* Free space of dir's filesystem; a missing dir is measured at its nearest
 * existing ancestor (the snapshot directory may not exist yet). */
static int fs_free(const char *dir, uint64_t *ret_fs, uint64_t *ret_free, struct nst_error *err) {
        char buf[PATH_MAX];
        snprintf(buf, sizeof(buf), "%s", dir);
        for (;;) {
                struct statvfs v;
                struct stat st;
                if (statvfs(buf, &v) == 0 && stat(buf, &st) == 0) {
                        *ret_fs = (uint64_t)st.st_dev;
                        *ret_free = (uint64_t)v.f_bavail * v.f_frsize;
                        return 0;
                }
                if (errno != ENOENT)
                        return nst_error_set(err, -errno, "SnapshotFailed", "cannot stat %s: %s",
                                             buf, strerror(errno));
                char *slash = strrchr(buf, '/');
                if (!slash || slash == buf)
                        return nst_error_set(err, -ENOENT, "SnapshotFailed", "%s not found", dir);
                *slash = '\0';
        }
}

/* ---- strings and image chains ---- */

struct strset {
        char **v;
        size_t n, cap;
};

static void strset_free(struct strset *s) {
        for (size_t i = 0; i < s->n; i++)
                free(s->v[i]);
        free(s->v);
        *s = (struct strset){0};
}

static bool strset_has(const struct strset *s, const char *x) {
        for (size_t i = 0; i < s->n; i++)
                if (strcmp(s->v[i], x) == 0)
                        return true;
        return false;
}

static int strset_add(struct strset *s, const char *x) {
        if (!x || !*x || strset_has(s, x))
                return 0;
        if (s->n == s->cap) {
                size_t cap = s->cap ? s->cap * 2 : 16;
                char **v = realloc(s->v, cap * sizeof(*v));
                if (!v)
                        return -ENOMEM;
                s->v = v, s->cap = cap;
        }
        if (!(s->v[s->n] = strdup(x)))
                return -ENOMEM;
        s->n++;
        return 0;
}

/* The backing file a qcow2 image names (resolved against its directory),
 * read from the header: 1 found, 0 none (or not qcow2), <0 errno. */
static int qcow2_backing(const char *path, char *buf, size_t size) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        unsigned char h[20];
        if (pread(fd, h, sizeof(h), 0) != (ssize_t)sizeof(h) || memcmp(h, "QFI\xfb", 4) != 0)
                return 0;
        uint64_t off = 0;
        for (int i = 0; i < 8; i++)
                off = off << 8 | h[8 + i];
        uint32_t len = (uint32_t)h[16] << 24 | (uint32_t)h[17] << 16 | (uint32_t)h[18] << 8 | h[19];
        if (off == 0 || len == 0)
                return 0;
        char name[PATH_MAX];
        if (len >= sizeof(name) || pread(fd, name, len, (off_t)off) != (ssize_t)len)
                return -EINVAL;
        name[len] = '\0';
        if (name[0] == '/') {
                snprintf(buf, size, "%s", name);
        } else if (strchr(name, ':')) {
                return 0; /* a protocol or json: backing is not a file of ours */
        } else {
                char dir[PATH_MAX];
                snprintf(dir, sizeof(dir), "%s", path);
                int n = snprintf(buf, size, "%s/%s", dirname(dir), name);
                if (n < 0 || (size_t)n >= size)
                        return -ENAMETOOLONG;
        }
        return 1;
}

/* Adds path and every image below it. */
static int chain_add(struct strset *s, const char *path) {
        char cur[PATH_MAX];
        snprintf(cur, sizeof(cur), "%s", path);
        for (int depth = 0; depth < CHAIN_MAX; depth++) {
                char real[PATH_MAX];
                const char *p = realpath(cur, real) ? real : cur;
                if (strset_has(s, p))
                        return 0;
                if (strset_add(s, p) < 0)
                        return -ENOMEM;
                char next[PATH_MAX];
                if (qcow2_backing(p, next, sizeof(next)) <= 0)
                        return 0;
                snprintf(cur, sizeof(cur), "%s", next);
        }
        return 0;
}

/* ---- XML ---- */

struct dom_disk {
        char dev[32];
        char *source;
        char *format;
};

struct dom_disks {
        struct dom_disk d[NST_SNAP_MAX_DISKS];
        size_t n;
};

static void dom_disks_clear(struct dom_disks *dd) {
        for (size_t i = 0; i < dd->n; i++) {
                free(dd->d[i].source);
                free(dd->d[i].format);
        }
        dd->n = 0;
}

static const struct dom_disk *dom_disks_find(const struct dom_disks *dd, const char *dev) {
        for (size_t i = 0; i < dd->n; i++)
                if (strcmp(dd->d[i].dev, dev) == 0)
                        return &dd->d[i];
        return NULL;
}

/* The writable file disks under `domain` (a <domain> node): the ones a
 * snapshot covers. */
static int dom_disks_read(xmlXPathContextPtr ctx, xmlNodePtr domain, struct dom_disks *ret,
                          struct nst_error *err) {
        _cleanup_(xmlXPathFreeObjectp) xmlXPathObjectPtr set = nst_xpath_nodes(
                ctx, domain,
                "devices/disk[@type='file' and (not(@device) or @device='disk') and "
                "not(readonly) and not(shareable) and source/@file and target/@dev]");
        if (!set)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        for (int i = 0; i < nst_xpath_count(set) && ret->n < NST_SNAP_MAX_DISKS; i++) {
                xmlNodePtr n = set->nodesetval->nodeTab[i];
                _cleanup_free_ char *dev = nst_xpath_string(ctx, n, "string(target/@dev)");
                struct dom_disk *d = &ret->d[ret->n];
                if (!dev || strlen(dev) >= sizeof(d->dev))
                        continue;
                snprintf(d->dev, sizeof(d->dev), "%s", dev);
                d->source = nst_xpath_string(ctx, n, "string(source/@file)");
                d->format = nst_xpath_string(ctx, n, "string(driver/@type)");
                if (!d->source || !d->format) {
                        free(d->source);
                        free(d->format);
                        return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
                }
                ret->n++;
        }
        return 0;
}

static int domain_disks(virDomainPtr dom, unsigned flags, struct dom_disks *ret,
                        struct nst_error *err) {
        _cleanup_(xmlFreeDocp) xmlDocPtr doc = NULL;
        _cleanup_(xmlXPathFreeContextp) xmlXPathContextPtr ctx = NULL;
        int r = nst_lv_domain_doc(dom, flags, &doc, &ctx, err);
        if (r < 0)
                return r;
        return dom_disks_read(ctx, xmlDocGetRootElement(doc), ret, err);
}

/* What libvirt's snapshot XML says. */
struct snap_info {
        char *xml;
        char *name, *description, *parent, *state, *memfile;
        int64_t created;
        size_t n_disks;
        struct {
                char dev[32];
                char *overlay;
        } disks[NST_SNAP_MAX_DISKS];
        struct dom_disks base; /* the domain's disks when it was taken */
};

static void snap_info_free(struct snap_info *s) {
        if (!s)
                return;
        free(s->xml);
        free(s->name);
        free(s->description);
        free(s->parent);
        free(s->state);
        free(s->memfile);
        for (size_t i = 0; i < s->n_disks; i++)
                free(s->disks[i].overlay);
        dom_disks_clear(&s->base);
        free(s);
}
NST_DEFINE_CLEANUP(struct snap_info, snap_info_free)

static int snap_info_parse(const char *xml, struct snap_info **ret, struct nst_error *err) {
        _cleanup_(snap_info_freep) struct snap_info *s = calloc(1, sizeof(*s));
        if (!s || !(s->xml = strdup(xml)))
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        _cleanup_(xmlFreeDocp) xmlDocPtr doc = NULL;
        _cleanup_(xmlXPathFreeContextp) xmlXPathContextPtr ctx = NULL;
        int r = nst_xml_parse_xpath(xml, "snapshot", "HypervisorError", &doc, &ctx, err);
        if (r < 0)
                return r;
        _cleanup_free_ char *created = nst_xpath_string(ctx, NULL, "string(/domainsnapshot/creationTime)");
        _cleanup_free_ char *mem = nst_xpath_string(ctx, NULL,
                                                    "string(/domainsnapshot/memory/@snapshot)");
        s->name = nst_xpath_string(ctx, NULL, "string(/domainsnapshot/name)");
        s->description = nst_xpath_string(ctx, NULL, "string(/domainsnapshot/description)");
        s->parent = nst_xpath_string(ctx, NULL, "string(/domainsnapshot/parent/name)");
        s->state = nst_xpath_string(ctx, NULL, "string(/domainsnapshot/state)");
        s->memfile = nst_xpath_string(ctx, NULL, "string(/domainsnapshot/memory/@file)");
        if (!created || !mem || !s->name || !s->description || !s->parent || !s->state ||
            !s->memfile)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        s->created = strtoll(created, NULL, 10);
        if (strcmp(mem, "external") != 0)
                s->memfile[0] = '\0';
        _cleanup_(xmlXPathFreeObjectp) xmlXPathObjectPtr set =
                nst_xpath_nodes(ctx, NULL, "/domainsnapshot/disks/disk[@snapshot='external']");
        if (!set)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        for (int i = 0; i < nst_xpath_count(set) && s->n_disks < NST_SNAP_MAX_DISKS; i++) {
                xmlNodePtr n = set->nodesetval->nodeTab[i];
                _cleanup_free_ char *dev = nst_xml_attr(n, "name");
                char *file = nst_xpath_string(ctx, n, "string(source/@file)");
                if (!dev || !file || !*file || strlen(dev) >= sizeof(s->disks[0].dev)) {
                        free(file);
                        continue;
                }
                snprintf(s->disks[s->n_disks].dev, sizeof(s->disks[0].dev), "%s", dev);
                s->disks[s->n_disks++].overlay = file;
        }
        _cleanup_(xmlXPathFreeObjectp) xmlXPathObjectPtr dom =
                nst_xpath_nodes(ctx, NULL, "/domainsnapshot/domain");
        if (nst_xpath_count(dom) == 1 &&
            (r = dom_disks_read(ctx, dom->nodesetval->nodeTab[0], &s->base, err)) < 0)
                return r;
        *ret = nst_steal(&s);
        return 0;
}

static int snap_not_found(const struct nst_snap_env *env, const char *name,
                          struct nst_error *err) {
        char owner[37];
        if (nst_snap_find_owner(env->snapshot_dir, name, env->uuid, owner) == 0)
                return nst_error_set(err, -ENOENT, "SnapshotNotFound",
                                     "snapshot '%s' is not a snapshot of instance %s (%s): it "
                                     "belongs to instance %s",
                                     name, env->name, env->uuid, owner);
        return nst_error_set(err, -ENOENT, "SnapshotNotFound",
                             "instance %s (%s) has no snapshot '%s'", env->name, env->uuid, name);
}

static int snap_lookup(const struct nst_snap_env *env, const char *name, virDomainSnapshotPtr *ret,
                       struct nst_error *err) {
        int r = nst_snap_name_check(name, err);
        if (r < 0)
                return r;
        virDomainSnapshotPtr snap = virDomainSnapshotLookupByName(env->dom, name, 0);
        if (!snap) {
                virErrorPtr e = virGetLastError();
                if (e && e->code == VIR_ERR_NO_DOMAIN_SNAPSHOT)
                        return snap_not_found(env, name, err);
                return nst_lv_error(err, -EIO, "HypervisorError", "cannot look up snapshot %s",
                                    name);
        }
        *ret = snap;
        return 0;
}

static int snap_info_get(virDomainSnapshotPtr snap, struct snap_info **ret,
                         struct nst_error *err) {
        _cleanup_free_ char *xml = virDomainSnapshotGetXMLDesc(snap, VIR_DOMAIN_SNAPSHOT_XML_SECURE);
        if (!xml)
                return nst_lv_error(err, -EIO, "HypervisorError", "cannot read snapshot %s",
                                    virDomainSnapshotGetName(snap));
        return snap_info_parse(xml, ret, err);
}

/* ---- results ---- */

static void iso_time(int64_t t, char buf[32]) {
        time_t tt = (time_t)t;
        struct tm tm;
        strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&tt, &tm));
}

static int64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static json_object *file_json(const char *path, const char *kind, const char *disk,
                              uint64_t *total) {
        json_object *f = json_object_new_object();
        struct stat st;
        bool ok = stat(path, &st) == 0;
        json_object_object_add(f, "path", json_object_new_string(path));
        json_object_object_add(f, "kind", json_object_new_string(kind));
        json_object_object_add(f, "disk", nst_json_string_or_null(disk));
        json_object_object_add(f, "exists", json_object_new_boolean(ok));
        json_object_object_add(f, "size", ok ? json_object_new_int64(st.st_size) : NULL);
        json_object_object_add(f, "allocated",
                               ok ? json_object_new_int64((int64_t)st.st_blocks * 512) : NULL);
        if (ok && total)
                *total += (uint64_t)st.st_size;
        return f;
}

static json_object *sidecar_get(json_object *sc, const char *key) {
        json_object *v = NULL;
        if (sc && json_object_object_get_ex(sc, key, &v) && v)
                return json_object_get(v);
        return NULL;
}

static json_object *snap_json(const struct nst_snap_env *env, const struct snap_info *s,
                              json_object *sc, bool current) {
        json_object *o = json_object_new_object();
        char when[32];
        iso_time(s->created, when);
        uint64_t total = 0;
        json_object_object_add(o, "name", json_object_new_string(s->name));
        json_object_object_add(o, "instance", json_object_new_string(env->uuid));
        json_object_object_add(o, "description", nst_json_string_or_null(s->description));
        json_object_object_add(o, "created_at", json_object_new_string(when));
        json_object_object_add(o, "parent", nst_json_string_or_null(s->parent));
        json_object_object_add(o, "current", json_object_new_boolean(current));
        json_object_object_add(o, "memory", json_object_new_boolean(s->memfile[0] != '\0'));
        json_object *ds = sidecar_get(sc, "domain_state");
        json_object_object_add(o, "domain_state", ds ? ds : json_object_new_string(s->state));
        json_object *c = sidecar_get(sc, "consistency");
        json_object_object_add(o, "consistency", c ? c : json_object_new_string("unknown"));
        json_object *files = json_object_new_array();
        for (size_t i = 0; i < s->n_disks; i++)
                json_object_array_add(files,
                                      file_json(s->disks[i].overlay, "overlay", s->disks[i].dev,
                                                &total));
        if (s->memfile[0])
                json_object_array_add(files, file_json(s->memfile, "memory", NULL, &total));
        json_object_object_add(o, "files", files);
        json_object_object_add(o, "total_size", json_object_new_int64((int64_t)total));
        json_object *bases = json_object_new_array();
        for (size_t i = 0; i < s->base.n; i++) {
                json_object *b = json_object_new_object();
                json_object_object_add(b, "disk", json_object_new_string(s->base.d[i].dev));
                json_object_object_add(b, "path", json_object_new_string(s->base.d[i].source));
                json_object_array_add(bases, b);
        }
        json_object_object_add(o, "images", bases);
        static const char *const extra[] = {"quiesce", "quiesce_note", "live", "sizes_at_creation",
                                            "duration_ms", "reverted_at"};
        for (size_t i = 0; i < NST_ARRAY_SIZE(extra); i++) {
                json_object *v = sidecar_get(sc, extra[i]);
                if (v)
                        json_object_object_add(o, extra[i], v);
        }
        json_object_object_add(o, "nestor", json_object_new_boolean(sc != NULL));
        return o;
}

static int snap_describe(const struct nst_snap_env *env, virDomainSnapshotPtr snap,
                         json_object **ret, struct nst_error *err) {
        _cleanup_(snap_info_freep) struct snap_info *s = NULL;
        _cleanup_json_ json_object *sc = NULL;
        char dir[PATH_MAX];
        int r = snap_info_get(snap, &s, err);
        if (r < 0 || (r = path_join(dir, sizeof(dir), env->snapshot_dir, env->uuid, NULL, err)) < 0 ||
            (r = nst_snap_sidecar_read(dir, s->name, &sc, err)) < 0)
                return r;
        *ret = snap_json(env, s, sc, virDomainSnapshotIsCurrent(snap, 0) == 1);
        return 0;
}

int nst_snap_get(const struct nst_snap_env *env, const char *name, json_object **ret,
                 struct nst_error *err) {
        _cleanup_(virDomainSnapshotFreep) virDomainSnapshotPtr snap = NULL;
        int r = snap_lookup(env, name, &snap, err);
        return r < 0 ? r : snap_describe(env, snap, ret, err);
}

int nst_snap_list(const struct nst_snap_env *env, json_object **ret, struct nst_error *err) {
        virDomainSnapshotPtr *snaps = NULL;
        int n = virDomainListAllSnapshots(env->dom, &snaps, VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL);
        if (n < 0)
                return nst_lv_error(err, -EIO, "HypervisorError",
                                    "cannot list the snapshots of %s", env->name);
        _cleanup_json_ json_object *list = json_object_new_array();
        int r = 0;
        for (int i = 0; i < n; i++) {
                json_object *o = NULL;
                if (r >= 0 && (r = snap_describe(env, snaps[i], &o, err)) >= 0)
                        json_object_array_add(list, o);
                virDomainSnapshotFree(snaps[i]);
        }
        free(snaps);
        if (r < 0)
                return r;
        *ret = nst_steal(&list);
        return 0;
}

/* ---- estimate ---- */

struct plan {
        struct dom_disks disks;
        char snapdir[PATH_MAX]; /* <snapshot_dir>/<uuid> */
        char memfile[PATH_MAX];
        char overlay[NST_SNAP_MAX_DISKS][PATH_MAX];
        uint64_t mem_need;
        const char *mem_basis;
        struct nst_snap_space space[2];
        size_t n_space;
        int state;
};

static void plan_free(struct plan *p) {
        if (!p)
                return;
        dom_disks_clear(&p->disks);
        free(p);
}
NST_DEFINE_CLEANUP(struct plan, plan_free)

static bool state_active(int state) {
        return state == VIR_DOMAIN_RUNNING || state == VIR_DOMAIN_PAUSED ||
               state == VIR_DOMAIN_BLOCKED || state == VIR_DOMAIN_PMSUSPENDED;
}

static const char *state_name(int state) {
        switch (state) {
        case VIR_DOMAIN_RUNNING:
        case VIR_DOMAIN_BLOCKED:
                return "running";
        case VIR_DOMAIN_PAUSED:
                return "paused";
        case VIR_DOMAIN_PMSUSPENDED:
                return "suspended";
        case VIR_DOMAIN_CRASHED:
                return "crashed";
        default:
                return "shutoff";
        }
}

static int domain_state(const struct nst_snap_env *env, int *ret, struct nst_error *err) {
        int reason;
        if (virDomainGetState(env->dom, ret, &reason, 0) < 0)
                return nst_lv_error(err, -EIO, "HypervisorError", "cannot read the state of %s",
                                    env->name);
        return 0;
}

/* Sizes and places of a snapshot named `name` (NULL: sizes only). */
static int plan_make(const struct nst_snap_env *env, const char *name, bool memory,
                     struct plan **ret, struct nst_error *err) {
        _cleanup_(plan_freep) struct plan *p = calloc(1, sizeof(*p));
        if (!p)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        int r = domain_state(env, &p->state, err);
        if (r < 0 || (r = domain_disks(env->dom, state_active(p->state) ? 0 : VIR_DOMAIN_XML_INACTIVE,
                                       &p->disks, err)) < 0 ||
            (r = path_join(p->snapdir, sizeof(p->snapdir), env->snapshot_dir, env->uuid, NULL,
                           err)) < 0)
                return r;
        if (name) {
                for (size_t i = 0; i < p->disks.n; i++) {
                        char leaf[128];
                        snprintf(leaf, sizeof(leaf), "%s%s%s", p->disks.d[i].dev, OVERLAY_TAG,
                                 name);
                        if ((r = path_join(p->overlay[i], sizeof(p->overlay[i]), env->overlay_dir,
                                           leaf, ".qcow2", err)) < 0)
                                return r;
                }
                if ((r = path_join(p->memfile, sizeof(p->memfile), p->snapdir, name, ".mem",
                                   err)) < 0)
                        return r;
        }
        uint64_t fs, avail;
        if (memory) {
                virDomainInfo info;
                if (virDomainGetInfo(env->dom, &info) < 0)
                        return nst_lv_error(err, -EIO, "HypervisorError",
                                            "cannot read the memory size of %s", env->name);
                virDomainMemoryStatStruct st[VIR_DOMAIN_MEMORY_STAT_NR];
                int n = state_active(p->state)
                                ? virDomainMemoryStats(env->dom, st, VIR_DOMAIN_MEMORY_STAT_NR, 0)
                                : 0;
                struct nst_snap_mem_stats ms;
                nst_snap_mem_stats_fill(st, n < 0 ? 0 : n, info.memory, &ms);
                p->mem_need = nst_snap_memory_estimate(&ms, &p->mem_basis);
                if ((r = fs_free(p->snapdir, &fs, &avail, err)) < 0)
                        return r;
                p->space[p->n_space++] = (struct nst_snap_space){
                        "memory file", env->snapshot_dir, fs, p->mem_need, avail};
        }
        if ((r = fs_free(env->overlay_dir, &fs, &avail, err)) < 0)
                return r;
        p->space[p->n_space++] = (struct nst_snap_space){
                "overlays", env->overlay_dir, fs, NST_SNAP_OVERLAY_INITIAL * p->disks.n, avail};
        *ret = nst_steal(&p);
        return 0;
}

int nst_snap_estimate(const struct nst_snap_env *env, bool memory, json_object **ret,
                      struct nst_error *err) {
        _cleanup_(plan_freep) struct plan *p = NULL;
        int r = plan_make(env, NULL, memory, &p, err);
        if (r < 0)
                return r;
        json_object *o = json_object_new_object();
        uint64_t total = 0;
        for (size_t i = 0; i < p->n_space; i++)
                total += p->space[i].need;
        json_object_object_add(o, "instance", json_object_new_string(env->uuid));
        json_object_object_add(o, "memory", json_object_new_boolean(memory));
        json_object_object_add(o, "memory_bytes", json_object_new_int64((int64_t)p->mem_need));
        json_object_object_add(o, "memory_basis", nst_json_string_or_null(p->mem_basis));
        json_object_object_add(o, "disks", json_object_new_int((int)p->disks.n));
        json_object_object_add(o, "disk_bytes",
                               json_object_new_int64((int64_t)(NST_SNAP_OVERLAY_INITIAL *
                                                               p->disks.n)));
        json_object_object_add(o, "total_bytes", json_object_new_int64((int64_t)total));
        json_object_object_add(o, "reserve_bytes",
                               json_object_new_int64((int64_t)env->reserve_bytes));
        json_object *where = json_object_new_array();
        for (size_t i = 0; i < p->n_space; i++) {
                json_object *w = json_object_new_object();
                json_object_object_add(w, "what", json_object_new_string(p->space[i].what));
                json_object_object_add(w, "dir", json_object_new_string(p->space[i].dir));
                json_object_object_add(w, "need_bytes",
                                       json_object_new_int64((int64_t)p->space[i].need));
                json_object_object_add(w, "free_bytes",
                                       json_object_new_int64((int64_t)p->space[i].free));
                json_object_array_add(where, w);
        }
        json_object_object_add(o, "where", where);
        struct nst_error e = NST_ERROR_INIT;
        bool fits = nst_snap_space_check(p->space, p->n_space, env->reserve_bytes, &e) == 0;
        json_object_object_add(o, "fits", json_object_new_boolean(fits));
        if (!fits)
                json_object_object_add(o, "reason", json_object_new_string(e.message));
        *ret = o;
        return 0;
}

/* ---- create ---- */

static int snapshot_xml(const struct nst_snap_create_opts *o, const struct plan *p, bool memory,
                        char **ret, struct nst_error *err) {
        struct nst_xw w;
        nst_xw_init(&w, 1024);
        nst_xw_start(&w, "domainsnapshot");
        nst_xw_elem_text(&w, "name", o->name);
        if (o->description)
                nst_xw_elem_text(&w, "description", o->description);
        nst_xw_start(&w, "memory");
        nst_xw_attr(&w, "snapshot", memory ? "external" : "no");
        if (memory)
                nst_xw_attr(&w, "file", p->memfile);
        nst_xw_end(&w);
        nst_xw_start(&w, "disks");
        for (size_t i = 0; i < p->disks.n; i++) {
                nst_xw_start(&w, "disk");
                nst_xw_attr(&w, "name", p->disks.d[i].dev);
                nst_xw_attr(&w, "snapshot", "external");
                nst_xw_attr(&w, "type", "file");
                nst_xw_elem_attr(&w, "driver", "type", "qcow2");
                nst_xw_elem_attr(&w, "source", "file", p->overlay[i]);
                nst_xw_end(&w);
        }
        nst_xw_end(&w);
        nst_xw_end(&w);
        int r = nst_xw_finish(&w, ret, NULL, err);
        nst_xw_release(&w);
        return r;
}

/* The guest agent channel as the live XML shows it: 1 connected, 0 not
 * (*why says how), <0 error. */
static int agent_connected(const struct nst_snap_env *env, const char **why,
                           struct nst_error *err) {
        _cleanup_(xmlFreeDocp) xmlDocPtr doc = NULL;
        _cleanup_(xmlXPathFreeContextp) xmlXPathContextPtr ctx = NULL;
        int r = nst_lv_domain_doc(env->dom, 0, &doc, &ctx, err);
        if (r < 0)
                return r;
        _cleanup_free_ char *state =
                nst_xpath_string(ctx, NULL, "string(" NST_AGENT_CHANNEL_XPATH "/@state)");
        _cleanup_(xmlXPathFreeObjectp) xmlXPathObjectPtr chan =
                nst_xpath_nodes(ctx, NULL, NST_AGENT_CHANNEL_XPATH);
        if (!state || !chan)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        if (nst_xpath_count(chan) == 0) {
                *why = "the guest agent is not connected: the domain has no guest agent channel "
                       "(org.qemu.guest_agent.0)";
                return 0;
        }
        if (strcmp(state, "connected") != 0) {
                *why = "the guest agent is not connected: no qemu-guest-agent answers in the "
                       "guest";
                return 0;
        }
        return 1;
}

static bool agent_error(void) {
        virErrorPtr e = virGetLastError();
        return e && (e->code == VIR_ERR_AGENT_UNRESPONSIVE ||
                     e->code == VIR_ERR_AGENT_UNSYNCED ||
                     e->code == VIR_ERR_OPERATION_UNSUPPORTED ||
                     e->code == VIR_ERR_ARGUMENT_UNSUPPORTED ||
                     (e->message && strstr(e->message, "agent")));
}

static int file_absent(const char *path, const char *what, struct nst_error *err) {
        if (access(path, F_OK) == 0)
                return nst_error_set(err, -EEXIST, "SnapshotExists",
                                     "%s %s already exists (left from an earlier snapshot?); "
                                     "nothing was done",
                                     what, path);
        return 0;
}

static json_object *sidecar_new(const struct nst_snap_env *env,
                                const struct nst_snap_create_opts *o, const struct plan *p) {
        json_object *sc = json_object_new_object();
        char when[32];
        iso_time(time(NULL), when);
        json_object_object_add(sc, "name", json_object_new_string(o->name));
        json_object_object_add(sc, "instance", json_object_new_string(env->uuid));
        json_object_object_add(sc, "status", json_object_new_string("creating"));
        json_object_object_add(sc, "started_at", json_object_new_string(when));
        json_object_object_add(sc, "memory", json_object_new_boolean(o->memory));
        json_object_object_add(sc, "memory_file",
                               o->memory ? json_object_new_string(p->memfile) : NULL);
        json_object_object_add(sc, "quiesce",
                               json_object_new_string(nst_snap_quiesce_str(o->quiesce)));
        json_object_object_add(sc, "live", json_object_new_boolean(o->live));
        json_object_object_add(sc, "domain_state", json_object_new_string(state_name(p->state)));
        json_object *ov = json_object_new_array();
        for (size_t i = 0; i < p->disks.n; i++)
                json_object_array_add(ov, json_object_new_string(p->overlay[i]));
        json_object_object_add(sc, "overlays", ov);
        return sc;
}

/* Tries the snapshot with `flags`; -EAGAIN (err filled) when it failed for
 * want of the guest agent. */
static int take(const struct nst_snap_env *env, const char *xml, unsigned flags,
                struct nst_error *err) {
        virDomainSnapshotPtr snap = virDomainSnapshotCreateXML(env->dom, xml, flags);
        if (snap) {
                virDomainSnapshotFree(snap);
                return 0;
        }
        if ((flags & VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE) && agent_error())
                return nst_lv_error(err, -EAGAIN, "QuiesceFailed",
                                    "cannot freeze the filesystems of %s (quiesce \"required\"; "
                                    "nothing was created)",
                                    env->name);
        return nst_lv_error(err, -EIO, "SnapshotFailed", "snapshot of %s failed", env->name);
}

static void remove_leftovers(const struct plan *p, bool memory) {
        for (size_t i = 0; i < p->disks.n; i++) {
                /* An atomic snapshot that failed leaves no overlay; one that
                 * libvirt did not remove is not in any chain: ours to drop. */
                unlink(p->overlay[i]);
        }
        if (memory)
                unlink(p->memfile);
}

int nst_snap_create(const struct nst_snap_env *env, const struct nst_snap_create_opts *o,
                    json_object **ret, struct nst_error *err) {
        int64_t t0 = now_ms();
        int r = nst_snap_name_check(o->name, err);
        if (r < 0)
                return r;
        if (o->description && strlen(o->description) > 4096)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "description is longer than 4096 bytes");
        if (o->memory && o->quiesce == NST_SNAP_QUIESCE_REQUIRED)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "quiesce \"required\" applies to disk-only snapshots: a "
                                     "memory snapshot saves the running state itself (use "
                                     "\"preferred\" or \"off\")");
        virDomainSnapshotPtr dup = virDomainSnapshotLookupByName(env->dom, o->name, 0);
        if (dup) {
                virDomainSnapshotFree(dup);
                return nst_error_set(err, -EEXIST, "SnapshotExists",
                                     "instance %s already has a snapshot named '%s'", env->name,
                                     o->name);
        }
        _cleanup_(plan_freep) struct plan *p = NULL;
        if ((r = plan_make(env, o->name, o->memory, &p, err)) < 0)
                return r;
        bool active = state_active(p->state);
        if (o->memory && !active)
                return nst_error_set(err, -EINVAL, "InstanceInvalidState",
                                     "a memory snapshot needs a running instance: %s is %s",
                                     env->name, state_name(p->state));
        if (p->disks.n == 0)
                return nst_error_set(err, -EINVAL, "InstanceInvalidState",
                                     "instance %s has no writable file disk to snapshot",
                                     env->name);
        for (size_t i = 0; i < p->disks.n; i++)
                if ((r = file_absent(p->overlay[i], "overlay", err)) < 0)
                        return r;
        if (o->memory && (r = file_absent(p->memfile, "memory file", err)) < 0)
                return r;
        if ((r = nst_snap_space_check(p->space, p->n_space, env->reserve_bytes, err)) < 0)
                return r;

        /* Quiesce is decided before anything is written. */
        const char *consistency = "crash", *note = NULL;
        bool quiesce = false;
        if (o->memory) {
                consistency = "memory";
        } else if (!active) {
                consistency = "offline";
        } else if (o->quiesce != NST_SNAP_QUIESCE_OFF) {
                const char *why = NULL;
                if ((r = agent_connected(env, &why, err)) < 0)
                        return r;
                if (r == 0 && o->quiesce == NST_SNAP_QUIESCE_REQUIRED)
                        return nst_error_set(err, -EIO, "QuiesceFailed",
                                             "cannot quiesce %s: %s; quiesce \"required\", so "
                                             "nothing was created",
                                             env->name, why);
                if (r == 0)
                        note = why;
                quiesce = r == 1;
        }

        _cleanup_free_ char *xml = NULL;
        if ((r = snapshot_xml(o, p, o->memory, &xml, err)) < 0)
                return r;
        if ((r = mkdir_p(p->snapdir, 0711, err)) < 0)
                return r;
        _cleanup_json_ json_object *sc = sidecar_new(env, o, p);
        if ((r = nst_snap_sidecar_write(p->snapdir, o->name, sc, err)) < 0)
                return r;

        unsigned flags = VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC;
        if (o->memory)
                flags |= o->live && p->state == VIR_DOMAIN_RUNNING ? VIR_DOMAIN_SNAPSHOT_CREATE_LIVE
                                                                   : 0;
        else
                flags |= VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY;
        if (quiesce) {
                r = take(env, xml, flags | VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE, err);
                if (r == 0) {
                        consistency = "filesystem";
                } else if (r == -EAGAIN && o->quiesce == NST_SNAP_QUIESCE_PREFERRED) {
                        note = "the guest agent did not freeze the filesystems: crash-consistent";
                        nst_error_clear(err);
                        r = take(env, xml, flags, err);
                }
        } else {
                r = take(env, xml, flags, err);
        }
        if (r < 0) {
                remove_leftovers(p, o->memory);
                struct nst_error e2 = NST_ERROR_INIT;
                nst_snap_sidecar_remove(p->snapdir, o->name, &e2);
                return r;
        }

        int64_t ms = now_ms() - t0;
        json_object *sizes = json_object_new_object();
        uint64_t total = 0;
        for (size_t i = 0; i < p->disks.n; i++) {
                struct stat st;
                int64_t sz = stat(p->overlay[i], &st) == 0 ? st.st_size : -1;
                json_object_object_add(sizes, p->overlay[i], json_object_new_int64(sz));
                total += sz > 0 ? (uint64_t)sz : 0;
        }
        if (o->memory) {
                struct stat st;
                int64_t sz = stat(p->memfile, &st) == 0 ? st.st_size : -1;
                json_object_object_add(sizes, p->memfile, json_object_new_int64(sz));
                total += sz > 0 ? (uint64_t)sz : 0;
        }
        json_object_object_add(sc, "status", json_object_new_string("done"));
        json_object_object_add(sc, "consistency", json_object_new_string(consistency));
        json_object_object_add(sc, "quiesce_note", nst_json_string_or_null(note));
        json_object_object_add(sc, "sizes_at_creation", sizes);
        json_object_object_add(sc, "total_size_at_creation", json_object_new_int64((int64_t)total));
        json_object_object_add(sc, "duration_ms", json_object_new_int64(ms));
        json_object_object_add(sc, "estimate_bytes",
                               json_object_new_int64((int64_t)(p->mem_need +
                                                               p->space[p->n_space - 1].need)));
        if ((r = nst_snap_sidecar_write(p->snapdir, o->name, sc, err)) < 0)
                return nst_error_prefix(err, "snapshot %s was created, but", o->name);
        if ((r = nst_snap_get(env, o->name, ret, err)) < 0)
                return r;
        json_object_object_add(*ret, "duration_ms", json_object_new_int64(ms));
        return 0;
}

/* ---- the chains in use, and removing what no chain needs ---- */

/* Every image a definition or a snapshot still refers to, with what lies
 * below it; `skip` (a snapshot name, may be NULL) is left out. */
static int images_in_use(const struct nst_snap_env *env, const char *skip, struct strset *keep,
                         struct nst_error *err) {
        struct dom_disks dd = {0};
        int r = domain_disks(env->dom, VIR_DOMAIN_XML_INACTIVE, &dd, err);
        for (size_t i = 0; r >= 0 && i < dd.n; i++)
                r = chain_add(keep, dd.d[i].source);
        dom_disks_clear(&dd);
        int active = virDomainIsActive(env->dom);
        if (r >= 0 && active == 1) {
                r = domain_disks(env->dom, 0, &dd, err);
                for (size_t i = 0; r >= 0 && i < dd.n; i++)
                        r = chain_add(keep, dd.d[i].source);
                dom_disks_clear(&dd);
        }
        if (r < 0)
                return r == -ENOMEM ? nst_error_set(err, r, "MemoryError", "out of memory") : r;
        virDomainSnapshotPtr *snaps = NULL;
        int n = virDomainListAllSnapshots(env->dom, &snaps, 0);
        if (n < 0)
                return nst_lv_error(err, -EIO, "HypervisorError",
                                    "cannot list the snapshots of %s", env->name);
        for (int i = 0; i < n; i++) {
                if (r >= 0 && !(skip && strcmp(virDomainSnapshotGetName(snaps[i]), skip) == 0)) {
                        struct snap_info *s = NULL;
                        r = snap_info_get(snaps[i], &s, err);
                        for (size_t j = 0; r >= 0 && j < s->n_disks; j++)
                                r = chain_add(keep, s->disks[j].overlay);
                        for (size_t j = 0; r >= 0 && s && j < s->base.n; j++)
                                r = chain_add(keep, s->base.d[j].source);
                        if (r >= 0 && s && s->memfile[0])
                                r = strset_add(keep, s->memfile);
                        snap_info_free(s);
                        if (r == -ENOMEM)
                                nst_error_set(err, r, "MemoryError", "out of memory");
                }
                virDomainSnapshotFree(snaps[i]);
        }
        free(snaps);
        return r;
}

static bool our_overlay(const char *leaf) {
        size_t n = strlen(leaf);
        return n > 6 && strcmp(leaf + n - 6, ".qcow2") == 0 &&
               (strstr(leaf, OVERLAY_TAG) || strstr(leaf, REVERT_TAG));
}

/* Removes the overlays Nestor made in overlay_dir that nothing refers to;
 * their paths go to `removed`. */
static int collect_garbage(const struct nst_snap_env *env, const struct strset *keep,
                           json_object *removed, struct nst_error *err) {
        DIR *d = opendir(env->overlay_dir);
        if (!d)
                return errno == ENOENT ? 0
                                       : nst_error_set(err, -errno, "SnapshotFailed",
                                                       "cannot read %s: %s", env->overlay_dir,
                                                       strerror(errno));
        struct dirent *e;
        int r = 0;
        while ((e = readdir(d))) {
                if (!our_overlay(e->d_name))
                        continue;
                char path[PATH_MAX], real[PATH_MAX];
                if (snprintf(path, sizeof(path), "%s/%s", env->overlay_dir, e->d_name) >=
                    (int)sizeof(path))
                        continue;
                const char *p = realpath(path, real) ? real : path;
                if (strset_has(keep, p))
                        continue;
                if (unlink(path) < 0) {
                        r = nst_error_set(err, -errno, "SnapshotFailed", "cannot remove %s: %s",
                                          path, strerror(errno));
                        break;
                }
                json_object_array_add(removed, json_object_new_string(path));
        }
        closedir(d);
        return r;
}

/* ---- delete ---- */

/* How many images in `set` have `base` as their backing file. */
static size_t users_of(const struct strset *set, const char *base) {
        size_t n = 0;
        char real[PATH_MAX];
        const char *b = realpath(base, real) ? real : base;
        for (size_t i = 0; i < set->n; i++) {
                char next[PATH_MAX], rn[PATH_MAX];
                if (qcow2_backing(set->v[i], next, sizeof(next)) <= 0)
                        continue;
                if (strcmp(realpath(next, rn) ? rn : next, b) == 0)
                        n++;
        }
        return n;
}

static bool in_set(const struct strset *set, const char *path) {
        char real[PATH_MAX];
        return strset_has(set, realpath(path, real) ? real : path);
}

int nst_snap_delete(const struct nst_snap_env *env, const char *name, json_object **ret,
                    struct nst_error *err) {
        _cleanup_(virDomainSnapshotFreep) virDomainSnapshotPtr snap = NULL;
        _cleanup_(snap_info_freep) struct snap_info *s = NULL;
        int r = snap_lookup(env, name, &snap, err);
        if (r < 0 || (r = snap_info_get(snap, &s, err)) < 0)
                return r;
        char snapdir[PATH_MAX];
        if ((r = path_join(snapdir, sizeof(snapdir), env->snapshot_dir, env->uuid, NULL, err)) < 0)
                return r;

        /* The commit writes into the image below the snapshot's overlay: refuse
         * when another branch (left by a revert) still reads that image. */
        struct strset all = {0}, current = {0};
        r = images_in_use(env, NULL, &all, err);
        struct dom_disks dd = {0};
        bool active = virDomainIsActive(env->dom) == 1;
        if (r >= 0)
                r = domain_disks(env->dom, active ? 0 : VIR_DOMAIN_XML_INACTIVE, &dd, err);
        for (size_t i = 0; r >= 0 && i < dd.n; i++)
                if (chain_add(&current, dd.d[i].source) < 0)
                        r = nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        dom_disks_clear(&dd);
        bool on_chain = true;
        for (size_t i = 0; r >= 0 && i < s->n_disks; i++) {
                const struct dom_disk *b = dom_disks_find(&s->base, s->disks[i].dev);
                on_chain = on_chain && in_set(&current, s->disks[i].overlay);
                if (on_chain && b && users_of(&all, b->source) > 1)
                        r = nst_error_set(err, -EBUSY, "SnapshotInUse",
                                          "cannot delete snapshot '%s' of %s yet: its image %s is "
                                          "also the base of another branch (snapshots taken "
                                          "before a revert); delete those snapshots first",
                                          name, env->name, b->source);
        }
        strset_free(&all);
        strset_free(&current);
        if (r < 0)
                return r;

        bool metadata_only = false;
        if (!on_chain) {
                /* Not in the chain the guest uses (a branch a revert left):
                 * nothing to commit, only files to drop. */
                metadata_only = true;
                if (virDomainSnapshotDelete(snap, VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY) < 0)
                        return nst_lv_error(err, -EIO, "SnapshotFailed",
                                            "cannot delete snapshot '%s' of %s", name, env->name);
        } else if (virDomainSnapshotDelete(snap, 0) < 0) {
                return nst_lv_error(err, -EIO, "SnapshotFailed",
                                    "cannot delete snapshot '%s' of %s (nothing was removed)",
                                    name, env->name);
        }
        _cleanup_json_ json_object *removed = json_object_new_array();
        if (s->memfile[0] && unlink(s->memfile) == 0)
                json_object_array_add(removed, json_object_new_string(s->memfile));
        struct nst_error e2 = NST_ERROR_INIT;
        char mem2[PATH_MAX];
        if (path_join(mem2, sizeof(mem2), snapdir, name, ".mem", &e2) == 0 && unlink(mem2) == 0 &&
            strcmp(mem2, s->memfile) != 0)
                json_object_array_add(removed, json_object_new_string(mem2));
        if ((r = nst_snap_sidecar_remove(snapdir, name, err)) < 0)
                return r;
        struct strset keep = {0};
        r = images_in_use(env, NULL, &keep, err);
        if (r >= 0)
                r = collect_garbage(env, &keep, removed, err);
        /* Every file the snapshot made must be gone unless something still
         * needs it (a later snapshot of an abandoned branch). */
        json_object *left = json_object_new_array();
        for (size_t i = 0; r >= 0 && i < s->n_disks; i++)
                if (access(s->disks[i].overlay, F_OK) == 0 && !in_set(&keep, s->disks[i].overlay))
                        json_object_array_add(left, json_object_new_string(s->disks[i].overlay));
        strset_free(&keep);
        if (r >= 0 && s->memfile[0] && access(s->memfile, F_OK) == 0)
                json_object_array_add(left, json_object_new_string(s->memfile));
        if (r >= 0 && json_object_array_length(left) > 0)
                r = nst_error_set(err, -EIO, "SnapshotFailed",
                                  "snapshot '%s' of %s was deleted, but its files are still "
                                  "there: %s",
                                  name, env->name, nst_json_to_string(left, NULL));
        json_object_put(left);
        rmdir(snapdir); /* only when empty */
        if (r < 0)
                return r;
        json_object *o = json_object_new_object();
        json_object_object_add(o, "name", json_object_new_string(name));
        json_object_object_add(o, "instance", json_object_new_string(env->uuid));
        json_object_object_add(o, "deleted", json_object_new_boolean(true));
        json_object_object_add(o, "committed", json_object_new_boolean(!metadata_only));
        json_object_object_add(o, "removed", nst_steal(&removed));
        *ret = o;
        return 0;
}

/* ---- revert ---- */

/* Sets source/@file of the <disk> elements under `parent_expr` whose
 * `dev_expr` names dev, and drops their <backingStore>. */
static int xml_set_sources(const char *xml, const char *what, const char *disks_expr,
                           const char *dev_expr, char *const *devs, char *const *files, size_t n,
                           char **ret, struct nst_error *err) {
        _cleanup_(xmlFreeDocp) xmlDocPtr doc = NULL;
        _cleanup_(xmlXPathFreeContextp) xmlXPathContextPtr ctx = NULL;
        int r = nst_xml_parse_xpath(xml, what, "HypervisorError", &doc, &ctx, err);
        if (r < 0)
                return r;
        _cleanup_(xmlXPathFreeObjectp) xmlXPathObjectPtr set =
                ctx ? nst_xpath_nodes(ctx, NULL, disks_expr) : NULL;
        if (!set)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        size_t done = 0;
        for (int i = 0; i < nst_xpath_count(set); i++) {
                xmlNodePtr disk = set->nodesetval->nodeTab[i];
                _cleanup_free_ char *dev = nst_xpath_string(ctx, disk, dev_expr);
                for (size_t j = 0; dev && j < n; j++) {
                        if (strcmp(dev, devs[j]) != 0)
                                continue;
                        for (xmlNodePtr c = disk->children; c;) {
                                xmlNodePtr next = c->next;
                                if (c->type == XML_ELEMENT_NODE &&
                                    xmlStrcmp(c->name, BAD_CAST "source") == 0)
                                        xmlSetProp(c, BAD_CAST "file", BAD_CAST files[j]);
                                if (c->type == XML_ELEMENT_NODE &&
                                    xmlStrcmp(c->name, BAD_CAST "backingStore") == 0) {
                                        xmlUnlinkNode(c);
                                        xmlFreeNode(c);
                                }
                                c = next;
                        }
                        done++;
                }
        }
        if (done != n)
                return nst_error_set(err, -EINVAL, "SnapshotFailed",
                                     "%s XML: %zu of %zu disks found to repoint", what, done, n);
        xmlChar *out = NULL;
        int len = 0;
        xmlDocDumpMemory(doc, &out, &len);
        if (!out)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        *ret = strdup((const char *)out);
        xmlFree(out);
        return *ret ? 0 : nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
}

static int qemu_img_overlay(const char *qemu_img, const char *base, const char *fmt,
                            const char *path, struct nst_error *err) {
        const char *argv[] = {qemu_img, "create", "-q", "-f", "qcow2", "-F", fmt, "-b", base,
                              path, NULL};
        char out[1024];
        int status = 0;
        int r = nst_run(argv, out, sizeof(out), 120000, &status, err);
        if (r < 0)
                return r;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                return nst_error_set(err, -EIO, "SnapshotFailed",
                                     "qemu-img create of %s on %s failed: %s", path, base, out);
        return 0;
}

struct revert_plan {
        char *devs[NST_SNAP_MAX_DISKS], *files[NST_SNAP_MAX_DISKS];
        size_t n;
        char *new_def, *new_snap, *restore_xml;
};

static void revert_plan_clear(struct revert_plan *rp) {
        for (size_t i = 0; i < rp->n; i++) {
                free(rp->devs[i]);
                free(rp->files[i]);
        }
        free(rp->new_def);
        free(rp->new_snap);
        free(rp->restore_xml);
        *rp = (struct revert_plan){0};
}

/* Removes the overlays a failed revert made, except one the definition
 * already points at. */
static void revert_drop_overlays(const struct nst_snap_env *env, const struct revert_plan *rp) {
        struct strset keep = {0};
        struct nst_error e = NST_ERROR_INIT;
        bool known = images_in_use(env, NULL, &keep, &e) >= 0;
        for (size_t i = 0; i < rp->n; i++)
                if (known && !in_set(&keep, rp->files[i]))
                        unlink(rp->files[i]);
        strset_free(&keep);
}

/* New empty overlays on the snapshot's images (names unique per revert) and
 * the XML documents pointing at them; the guest is not touched. */
static int revert_prepare(const struct nst_snap_env *env, const struct snap_info *s,
                          struct revert_plan *rp, struct nst_error *err) {
        char stamp[32];
        snprintf(stamp, sizeof(stamp), "%lld", (long long)time(NULL));
        int r;
        for (size_t i = 0; i < s->n_disks; i++) {
                const struct dom_disk *b = dom_disks_find(&s->base, s->disks[i].dev);
                if (!b)
                        return nst_error_set(err, -EINVAL, "SnapshotFailed",
                                             "snapshot '%s' does not say which image disk %s had",
                                             s->name, s->disks[i].dev);
                if (access(b->source, R_OK) != 0)
                        return nst_error_set(err, -ENOENT, "SnapshotFailed",
                                             "image %s of snapshot '%s' is missing", b->source,
                                             s->name);
                char leaf[256], path[PATH_MAX];
                snprintf(leaf, sizeof(leaf), "%s%s%s-%s", b->dev, REVERT_TAG, s->name, stamp);
                if ((r = path_join(path, sizeof(path), env->overlay_dir, leaf, ".qcow2", err)) < 0 ||
                    (r = file_absent(path, "overlay", err)) < 0)
                        return r;
                if ((r = qemu_img_overlay(env->qemu_img, b->source,
                                          b->format[0] ? b->format : "qcow2", path, err)) < 0)
                        return r;
                rp->devs[rp->n] = strdup(b->dev);
                rp->files[rp->n] = strdup(path);
                rp->n++;
                if (!rp->devs[rp->n - 1] || !rp->files[rp->n - 1])
                        return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        _cleanup_free_ char *persistent = virDomainGetXMLDesc(
                env->dom, VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE);
        if (!persistent)
                return nst_lv_error(err, -EIO, "HypervisorError",
                                    "cannot read the definition of %s", env->name);
        if ((r = xml_set_sources(persistent, "domain", "/domain/devices/disk",
                                 "string(target/@dev)", rp->devs, rp->files, rp->n, &rp->new_def,
                                 err)) < 0 ||
            (r = xml_set_sources(s->xml, "snapshot", "/domainsnapshot/disks/disk",
                                 "string(@name)", rp->devs, rp->files, rp->n, &rp->new_snap,
                                 err)) < 0)
                return r;
        if (!s->memfile[0])
                return 0;
        _cleanup_free_ char *saved = virDomainSaveImageGetXMLDesc(env->conn, s->memfile,
                                                                  VIR_DOMAIN_SAVE_IMAGE_XML_SECURE);
        if (!saved)
                return nst_lv_error(err, -EIO, "SnapshotFailed", "cannot read the memory file %s",
                                    s->memfile);
        return xml_set_sources(saved, "saved domain", "/domain/devices/disk",
                               "string(target/@dev)", rp->devs, rp->files, rp->n,
                               &rp->restore_xml, err);
}

/* Stops the guest (its current state is what a revert discards), points the
 * definition at the new overlays, then starts it or restores its memory. */
static int revert_apply(const struct nst_snap_env *env, const struct snap_info *s,
                        const struct revert_plan *rp, bool was_active, const char **ret_state,
                        const char **ret_note, struct nst_error *err) {
        if (was_active && virDomainDestroy(env->dom) < 0)
                return nst_lv_error(err, -EIO, "SnapshotFailed", "cannot stop %s", env->name);
        virDomainPtr def = virDomainDefineXML(env->conn, rp->new_def);
        if (!def) {
                int r = nst_lv_error(err, -EIO, "SnapshotFailed",
                                     "cannot point the disks of %s at the new overlays; the "
                                     "instance is unchanged",
                                     env->name);
                if (was_active)
                        virDomainCreate(env->dom);
                return r;
        }
        virDomainFree(def);
        /* The snapshot now owns the new overlays, so deleting it later
         * commits them like any other. */
        virDomainSnapshotPtr redefined = virDomainSnapshotCreateXML(
                env->dom, rp->new_snap,
                VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE | VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT);
        if (redefined)
                virDomainSnapshotFree(redefined);
        else
                *ret_note = "the snapshot's metadata could not be updated to the new overlays";
        *ret_state = "shutoff";
        if (s->memfile[0]) {
                if (virDomainRestoreFlags(env->conn, s->memfile, rp->restore_xml, 0) < 0)
                        return nst_lv_error(err, -EIO, "SnapshotFailed",
                                            "%s: disks reverted to '%s' but the memory could not "
                                            "be restored from %s; the instance is stopped",
                                            env->name, s->name, s->memfile);
                int st;
                struct nst_error e = NST_ERROR_INIT;
                *ret_state = domain_state(env, &st, &e) == 0 ? state_name(st) : "running";
        } else if (was_active) {
                if (virDomainCreate(env->dom) < 0)
                        return nst_lv_error(err, -EIO, "SnapshotFailed",
                                            "%s reverted to '%s' but did not start", env->name,
                                            s->name);
                *ret_state = "running";
        }
        return 0;
}

int nst_snap_revert(const struct nst_snap_env *env, const char *name, json_object **ret,
                    struct nst_error *err) {
        int64_t t0 = now_ms();
        _cleanup_(virDomainSnapshotFreep) virDomainSnapshotPtr snap = NULL;
        _cleanup_(snap_info_freep) struct snap_info *s = NULL;
        int r = snap_lookup(env, name, &snap, err);
        if (r < 0 || (r = snap_info_get(snap, &s, err)) < 0)
                return r;
        if (s->n_disks == 0)
                return nst_error_set(err, -ENOTSUP, "SnapshotFailed",
                                     "snapshot '%s' of %s is not an external snapshot Nestor can "
                                     "revert to",
                                     name, env->name);
        if (s->memfile[0] && access(s->memfile, R_OK) != 0)
                return nst_error_set(err, -ENOENT, "SnapshotFailed",
                                     "the memory file %s of snapshot '%s' is missing", s->memfile,
                                     name);
        int state;
        if ((r = domain_state(env, &state, err)) < 0)
                return r;
        struct revert_plan rp = {0};
        const char *final_state = NULL, *note = NULL;
        r = revert_prepare(env, s, &rp, err);
        if (r >= 0)
                r = revert_apply(env, s, &rp, state_active(state), &final_state, &note, err);
        if (r < 0) {
                revert_drop_overlays(env, &rp);
                revert_plan_clear(&rp);
                return r;
        }
        json_object *created = json_object_new_array();
        for (size_t i = 0; i < rp.n; i++)
                json_object_array_add(created, json_object_new_string(rp.files[i]));
        revert_plan_clear(&rp);
        json_object *removed = json_object_new_array();
        struct strset keep = {0};
        struct nst_error e2 = NST_ERROR_INIT;
        if (images_in_use(env, NULL, &keep, &e2) < 0 ||
            collect_garbage(env, &keep, removed, &e2) < 0)
                note = note ? note : "old overlays could not be cleaned up";
        strset_free(&keep);
        char snapdir[PATH_MAX];
        _cleanup_json_ json_object *sc = NULL;
        if (path_join(snapdir, sizeof(snapdir), env->snapshot_dir, env->uuid, NULL, &e2) == 0 &&
            nst_snap_sidecar_read(snapdir, name, &sc, &e2) == 0 && sc) {
                char when[32];
                iso_time(time(NULL), when);
                json_object_object_add(sc, "reverted_at", json_object_new_string(when));
                nst_snap_sidecar_write(snapdir, name, sc, &e2);
        }
        json_object *o = json_object_new_object();
        json_object_object_add(o, "name", json_object_new_string(name));
        json_object_object_add(o, "instance", json_object_new_string(env->uuid));
        json_object_object_add(o, "memory", json_object_new_boolean(s->memfile[0] != '\0'));
        json_object_object_add(o, "state", json_object_new_string(final_state));
        json_object_object_add(o, "overlays", created);
        json_object_object_add(o, "removed", removed);
        json_object_object_add(o, "note", nst_json_string_or_null(note));
        json_object_object_add(o, "duration_ms", json_object_new_int64(now_ms() - t0));
        *ret = o;
        return 0;
}
