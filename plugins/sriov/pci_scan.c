/* PCI discovery (see pci_scan.h): libpci for what it reads well, the device
 * directories for what it does not, then the PF <-> VF links.
 *
 * A scan runs in three phases so that only the first can be interrupted by
 * libpci's error callback (a longjmp):
 *   1. libpci: enumerate and fill ids, class, subsystem, NUMA node and the
 *      SR-IOV capability into an array owned by the scan context;
 *   2. sysfs: sort by address, then read each device directory (physfn,
 *      driver, iommu_group, net/, sriov_* files; virtfnN and hostN/ only on
 *      PFs and FC functions) with *at() calls relative to its fd;
 *   3. links: resolve physfn/virtfn through the address index, drop the VFs
 *      that break the rules with a warning, compact, index again.
 * Host facts (IOMMU, vfio-pci, command line, NUMA) are read last. */
#include "plugins/sriov/pci_scan.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pci/pci.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_SYSFS_ROOT "/sys"
#define SCAN_MAX_WARNINGS 128 /* a tree full of broken VFs must not flood the report */
#define ATTR_MAX 4096         /* sysfs attributes are at most a page */
#define CMDLINE_MAX 8192
#define RETRY_DELAY_NS (20 * 1000 * 1000) /* let a sriov_numvfs write settle */

/* A virtfnN link of a PF. */
struct virtfn_link {
        int number;
        struct nst_pci_addr addr;
};

/* What phase 2 learns about links, parallel to the sorted functions. */
struct fn_links {
        bool has_physfn;
        bool physfn_parsed;
        struct nst_pci_addr physfn;
        struct virtfn_link *virtfn;
        size_t n_virtfn, virtfn_cap;
};

/* Everything a scan attempt allocates is reachable from here, so that a
 * longjmp out of libpci loses nothing: scan_ctx_reset frees it all. */
struct scan_ctx {
        jmp_buf jmp;
        struct pci_access *pacc;
        char libpci_error[1200];
        char bus_pci_path[1024]; /* libpci's own path limit */
        int devices_fd;

        struct nst_pci_function *fns;
        size_t n;
        struct fn_links *links;

        char **warnings;
        size_t n_warnings;
        size_t warnings_dropped;
        bool warnings_oom;
};

/* libpci's callbacks have no user pointer: one scan at a time, and the
 * callback finds its scan through the scanning thread's pointer. */
static pthread_mutex_t scan_lock = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local struct scan_ctx *current_scan;

/* ---- warnings ---- */

static void push_warning(struct scan_ctx *ctx, char *s) {
        char **w = realloc(ctx->warnings, (ctx->n_warnings + 1) * sizeof(*w));
        if (!w) {
                free(s);
                ctx->warnings_oom = true;
                return;
        }
        ctx->warnings = w;
        ctx->warnings[ctx->n_warnings++] = s;
}

static void add_warning_v(struct scan_ctx *ctx, const char *fmt, va_list ap) _printf_(2, 0);
static void add_warning_v(struct scan_ctx *ctx, const char *fmt, va_list ap) {
        if (ctx->n_warnings >= SCAN_MAX_WARNINGS) {
                ctx->warnings_dropped++;
                return;
        }
        char *s = NULL;
        if (vasprintf(&s, fmt, ap) < 0)
                ctx->warnings_oom = true;
        else
                push_warning(ctx, s);
}

static void add_warning(struct scan_ctx *ctx, const char *fmt, ...) _printf_(2, 3);
static void add_warning(struct scan_ctx *ctx, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        add_warning_v(ctx, fmt, ap);
        va_end(ap);
}

/* ---- the scan context ---- */

static void free_links(struct scan_ctx *ctx) {
        for (size_t i = 0; ctx->links && i < ctx->n; i++)
                free(ctx->links[i].virtfn);
        free(ctx->links);
        ctx->links = NULL;
}

static void free_functions(struct scan_ctx *ctx) {
        free_links(ctx);
        for (size_t i = 0; ctx->fns && i < ctx->n; i++)
                free(ctx->fns[i].vfs);
        free(ctx->fns);
        ctx->fns = NULL;
        ctx->n = 0;
}

static void free_warnings(struct scan_ctx *ctx) {
        for (size_t i = 0; i < ctx->n_warnings; i++)
                free(ctx->warnings[i]);
        free(ctx->warnings);
        ctx->warnings = NULL;
        ctx->n_warnings = ctx->warnings_dropped = 0;
        ctx->warnings_oom = false;
}

/* Back to the state before an attempt (the devices fd stays open). */
static void scan_ctx_reset(struct scan_ctx *ctx) {
        if (ctx->pacc) {
                pci_cleanup(ctx->pacc);
                ctx->pacc = NULL;
        }
        free_functions(ctx);
        free_warnings(ctx);
        ctx->libpci_error[0] = '\0';
}

static void scan_ctx_done(struct scan_ctx *ctx) {
        scan_ctx_reset(ctx);
        if (ctx->devices_fd >= 0)
                close(ctx->devices_fd);
        ctx->devices_fd = -1;
}

/* ---- phase 1: libpci ---- */

static __attribute__((noreturn)) void on_pci_error(char *msg, ...) _printf_(1, 2);
static __attribute__((noreturn)) void on_pci_error(char *msg, ...) {
        struct scan_ctx *ctx = current_scan;
        if (!ctx)
                abort(); /* only our scans install this handler */
        char buf[1024];
        va_list ap;
        va_start(ap, msg);
        vsnprintf(buf, sizeof(buf), msg, ap);
        va_end(ap);
        snprintf(ctx->libpci_error, sizeof(ctx->libpci_error), "libpci: %s", buf);
        longjmp(ctx->jmp, 1);
}

static void on_pci_warning(char *msg, ...) _printf_(1, 2);
static void on_pci_warning(char *msg, ...) {
        struct scan_ctx *ctx = current_scan;
        if (!ctx)
                return;
        char buf[512];
        va_list ap;
        va_start(ap, msg);
        vsnprintf(buf, sizeof(buf), msg, ap);
        va_end(ap);
        add_warning(ctx, "libpci: %s", buf);
}

static void on_pci_debug(char *msg, ...) _printf_(1, 2);
static void on_pci_debug(char *msg, ...) {
}

static int parse_int(const char *s, long min, long max, long *ret) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 0);
        if (errno != 0 || end == s || v < min || v > max)
                return -EINVAL;
        while (*end == '\n' || *end == ' ')
                end++;
        if (*end != '\0')
                return -EINVAL;
        *ret = v;
        return 0;
}

static void read_sriov_cap(struct pci_dev *d, struct nst_sriov_cap *cap) {
        struct pci_cap *c = pci_find_cap(d, PCI_EXT_CAP_ID_SRIOV, PCI_CAP_EXTENDED);
        if (!c)
                return;
        int at = (int)c->addr;
        *cap = (struct nst_sriov_cap){
                .present = true,
                .ctrl = pci_read_word(d, at + PCI_IOV_CTRL),
                .initial_vfs = pci_read_word(d, at + PCI_IOV_INITIALVF),
                .total_vfs = pci_read_word(d, at + PCI_IOV_TOTALVF),
                .num_vfs = pci_read_word(d, at + PCI_IOV_NUMVF),
                .offset = pci_read_word(d, at + PCI_IOV_OFFSET),
                .stride = pci_read_word(d, at + PCI_IOV_STRIDE),
                .vf_device = pci_read_word(d, at + PCI_IOV_DID),
        };
}

/* May longjmp (libpci's error callback). Returns false for a function the
 * model cannot hold (a domain above 0xffff), which is left out. */
static bool fill_from_libpci(struct scan_ctx *ctx, struct pci_dev *d, struct nst_pci_function *f) {
        if (d->domain < 0 || d->domain > 0xffff) {
                add_warning(ctx, "%04x:%02x:%02x.%d: PCI domain above ffff (VMD?) left out",
                            (unsigned)d->domain, d->bus, d->dev, d->func);
                return false;
        }
        /* Not PCI_FILL_IOMMU_GROUP or PCI_FILL_DRIVER: libpci resolves those
         * links with realpath(), ~15 syscalls each, which was two thirds of
         * a 1032-function scan; phase 2 reads the same basenames with one
         * readlinkat each. */
        pci_fill_info(d, PCI_FILL_IDENT | PCI_FILL_CLASS | PCI_FILL_CLASS_EXT | PCI_FILL_SUBSYS |
                                 PCI_FILL_NUMA_NODE);
        *f = (struct nst_pci_function){
                .addr = {.domain = (uint16_t)d->domain, .bus = d->bus, .slot = d->dev,
                         .function = d->func},
                .vendor = d->vendor_id,
                .device = d->device_id,
                .subsys_vendor = d->subsys_vendor_id,
                .subsys_device = d->subsys_id,
                .class_code = (uint32_t)d->device_class << 8 | d->prog_if,
                .numa_node = d->numa_node,
                .iommu_group = -1,
                .type = NST_PCI_TYPE_PCI,
                .sysfs_total_vfs = -1,
                .sysfs_num_vfs = -1,
                .parent = NST_PCI_NONE,
                .vf_number = -1,
        };
        nst_pci_addr_format(f->addr, f->address);

        /* A VF has no SR-IOV capability; skipping it saves a dozen config
         * reads per VF on a big tree. */
        char physfn[NST_PCI_ADDR_LEN + sizeof("/physfn")];
        snprintf(physfn, sizeof(physfn), "%s/physfn", f->address);
        if (faccessat(ctx->devices_fd, physfn, F_OK, AT_SYMLINK_NOFOLLOW) != 0)
                read_sriov_cap(d, &f->cap);
        return true;
}

/* Runs under the scan lock, after setjmp. May longjmp. */
static int collect_devices(struct scan_ctx *ctx) {
        struct pci_access *a = ctx->pacc = pci_alloc();
        a->error = on_pci_error;
        a->warning = on_pci_warning;
        a->debug = on_pci_debug;
        a->method = PCI_ACCESS_SYS_BUS_PCI;
        if (pci_set_param(a, "sysfs.path", ctx->bus_pci_path) < 0)
                return -EINVAL;
        pci_init(a);
        pci_scan_bus(a);

        size_t n = 0;
        for (struct pci_dev *d = a->devices; d; d = d->next)
                n++;
        ctx->fns = calloc(n ? n : 1, sizeof(*ctx->fns));
        if (!ctx->fns)
                return -ENOMEM;
        for (struct pci_dev *d = a->devices; d; d = d->next)
                if (fill_from_libpci(ctx, d, &ctx->fns[ctx->n]))
                        ctx->n++;

        pci_cleanup(a);
        ctx->pacc = NULL;
        return 0;
}

/* -EAGAIN when libpci failed (ctx->libpci_error says why). Nothing that
 * changes between setjmp and longjmp lives in this frame. */
static int libpci_phase(struct scan_ctx *ctx) {
        int r;
        pthread_mutex_lock(&scan_lock);
        current_scan = ctx;
        if (setjmp(ctx->jmp) == 0)
                r = collect_devices(ctx);
        else
                r = -EAGAIN; /* the caller's reset frees what was collected */
        current_scan = NULL;
        pthread_mutex_unlock(&scan_lock);
        return r;
}

/* ---- phase 2: the device directories ---- */

static int cmp_function(const void *a, const void *b) {
        uint32_t ka = nst_pci_addr_key(((const struct nst_pci_function *)a)->addr);
        uint32_t kb = nst_pci_addr_key(((const struct nst_pci_function *)b)->addr);
        return ka < kb ? -1 : ka > kb;
}

static void closedirp(DIR **d) {
        if (*d)
                closedir(*d);
}

/* A small attribute relative to dirfd, trailing newline removed. */
static int read_attr(int dirfd, const char *name, char *buf, size_t len) {
        _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        ssize_t n = read(fd, buf, len - 1);
        if (n < 0)
                return -errno;
        buf[n] = '\0';
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
                buf[--n] = '\0';
        return 0;
}

/* -1 when absent or unreadable: the model's "unknown". */
static int read_int_attr(int dirfd, const char *name) {
        char buf[64];
        long v;
        if (read_attr(dirfd, name, buf, sizeof(buf)) < 0 || parse_int(buf, 0, INT32_MAX, &v) < 0)
                return -1;
        return (int)v;
}

/* The last component of a symlink relative to dirfd; -errno. */
static int read_link_base(int dirfd, const char *name, char *buf, size_t len) {
        char target[PATH_MAX];
        ssize_t n = readlinkat(dirfd, name, target, sizeof(target) - 1);
        if (n < 0)
                return -errno;
        target[n] = '\0';
        const char *base = strrchr(target, '/');
        base = base ? base + 1 : target;
        if ((size_t)snprintf(buf, len, "%s", base) >= len)
                return -ENAMETOOLONG;
        return 0;
}

static int read_link_addr(int dirfd, const char *name, struct nst_pci_addr *ret) {
        char base[64];
        int r = read_link_base(dirfd, name, base, sizeof(base));
        if (r < 0)
                return r;
        return nst_pci_addr_parse(base, ret);
}

/* "virtfn12" -> 12; -1 for anything else. */
static int numbered_name(const char *name, const char *prefix) {
        size_t pl = strlen(prefix);
        if (strncmp(name, prefix, pl) != 0 || name[pl] < '0' || name[pl] > '9')
                return -1;
        long v;
        if (parse_int(name + pl, 0, 1 << 20, &v) < 0 || (name[pl] == '0' && name[pl + 1]))
                return -1;
        return (int)v;
}

/* The netdev: the smallest name under net/, so that a function with several
 * (rare: some multi-port functions) always gives the same one. */
static void read_netdev(int dirfd, char *buf, size_t len) {
        int fd = openat(dirfd, "net", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return;
        _cleanup_(closedirp) DIR *dir = fdopendir(fd);
        if (!dir) {
                close(fd);
                return;
        }
        buf[0] = '\0';
        for (struct dirent *e; (e = readdir(dir));) {
                size_t l = strlen(e->d_name);
                if (e->d_name[0] == '.' || l >= len)
                        continue;
                if (buf[0] == '\0' || strcmp(e->d_name, buf) < 0)
                        memcpy(buf, e->d_name, l + 1);
        }
}

static int add_virtfn(struct fn_links *l, int number, struct nst_pci_addr addr) {
        if (l->n_virtfn == l->virtfn_cap) {
                size_t cap = l->virtfn_cap ? l->virtfn_cap * 2 : 8;
                struct virtfn_link *v = realloc(l->virtfn, cap * sizeof(*v));
                if (!v)
                        return -ENOMEM;
                l->virtfn = v;
                l->virtfn_cap = cap;
        }
        l->virtfn[l->n_virtfn++] = (struct virtfn_link){.number = number, .addr = addr};
        return 0;
}

/* The virtfnN links of a PF and the hostN directories of an FC function:
 * only these need the directory listed. */
static int list_device_dir(struct scan_ctx *ctx, int fd, struct nst_pci_function *f,
                           struct fn_links *l, struct nst_error *err) {
        int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return nst_error_set(err, -errno, "PciDiscoveryFailed",
                                     "cannot list %s/devices/%s: %m", ctx->bus_pci_path,
                                     f->address);
        _cleanup_(closedirp) DIR *dir = fdopendir(dfd);
        if (!dir) {
                close(dfd);
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        bool is_fc = nst_pci_is_fc(f->class_code);
        int lowest_host = -1, num;
        for (struct dirent *e; (e = readdir(dir));) {
                if (f->type == NST_PCI_TYPE_PF && (num = numbered_name(e->d_name, "virtfn")) >= 0) {
                        struct nst_pci_addr a;
                        if (read_link_addr(fd, e->d_name, &a) < 0) {
                                add_warning(ctx, "PF %s: %s is not a link to a PCI device; ignored",
                                            f->address, e->d_name);
                                continue;
                        }
                        if (add_virtfn(l, num, a) < 0)
                                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
                } else if (is_fc && (num = numbered_name(e->d_name, "host")) >= 0) {
                        if (lowest_host < 0 || num < lowest_host)
                                lowest_host = num;
                }
        }
        if (lowest_host >= 0)
                snprintf(f->scsi_host, sizeof(f->scsi_host), "scsi_host%d", lowest_host);
        return 0;
}

/* What libpci does not read, from the device directory. Everything is an
 * *at() call on the directory fd: no path walks from the root, and a VF (most
 * functions on a big host) costs about six syscalls. -EAGAIN when the device
 * vanished since phase 1. */
static int read_device_dir(struct scan_ctx *ctx, struct nst_pci_function *f, struct fn_links *l,
                           struct nst_error *err) {
        _cleanup_close_ int fd = openat(ctx->devices_fd, f->address,
                                        O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
                if (errno == ENOENT)
                        return -EAGAIN;
                return nst_error_set(err, -errno, "PciDiscoveryFailed",
                                     "cannot open %s/devices/%s: %m", ctx->bus_pci_path,
                                     f->address);
        }
        int r = read_link_addr(fd, "physfn", &l->physfn);
        l->has_physfn = r == 0 || r == -EINVAL;
        l->physfn_parsed = r == 0;
        (void)read_link_base(fd, "driver", f->driver, sizeof(f->driver));
        char group[32];
        long g;
        if (read_link_base(fd, "iommu_group", group, sizeof(group)) == 0 &&
            parse_int(group, 0, INT32_MAX, &g) == 0)
                f->iommu_group = (int)g;
        read_netdev(fd, f->netdev, sizeof(f->netdev));

        if (l->has_physfn) {
                f->type = NST_PCI_TYPE_VF;
                f->cap = (struct nst_sriov_cap){0};
                return 0;
        }
        f->sysfs_total_vfs = read_int_attr(fd, "sriov_totalvfs");
        f->sysfs_num_vfs = read_int_attr(fd, "sriov_numvfs");
        if (f->sysfs_total_vfs > 0 || f->cap.present)
                f->type = NST_PCI_TYPE_PF;
        if (f->type == NST_PCI_TYPE_PF || nst_pci_is_fc(f->class_code))
                return list_device_dir(ctx, fd, f, l, err);
        return 0;
}

static int sysfs_phase(struct scan_ctx *ctx, struct nst_error *err) {
        if (ctx->n > 1)
                qsort(ctx->fns, ctx->n, sizeof(*ctx->fns), cmp_function);
        ctx->links = calloc(ctx->n ? ctx->n : 1, sizeof(*ctx->links));
        if (!ctx->links)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        for (size_t i = 0; i < ctx->n; i++) {
                int r = read_device_dir(ctx, &ctx->fns[i], &ctx->links[i], err);
                if (r == -EAGAIN)
                        snprintf(ctx->libpci_error, sizeof(ctx->libpci_error),
                                 "%s/devices/%s vanished during the scan", ctx->bus_pci_path,
                                 ctx->fns[i].address);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- phase 3: PF <-> VF links ---- */

static int cmp_virtfn(const void *a, const void *b) {
        int na = ((const struct virtfn_link *)a)->number;
        int nb = ((const struct virtfn_link *)b)->number;
        return na < nb ? -1 : na > nb;
}

/* Decides each VF's parent from physfn, or marks it excluded with a warning. */
static void resolve_parents(struct scan_ctx *ctx, const struct nst_pci_inventory *idx,
                            bool *excluded) {
        for (size_t i = 0; i < ctx->n; i++) {
                struct nst_pci_function *vf = &ctx->fns[i];
                const struct fn_links *l = &ctx->links[i];
                if (vf->type != NST_PCI_TYPE_VF)
                        continue;
                size_t p = l->physfn_parsed ? nst_pci_inventory_find(idx, l->physfn) : NST_PCI_NONE;
                if (p == NST_PCI_NONE) {
                        char pf[NST_PCI_ADDR_LEN] = "?";
                        if (l->physfn_parsed)
                                nst_pci_addr_format(l->physfn, pf);
                        add_warning(ctx,
                                    "VF %s: its PF %s (physfn) is not in the scan; VF left out",
                                    vf->address, pf);
                        excluded[i] = true;
                } else if (ctx->fns[p].type != NST_PCI_TYPE_PF) {
                        add_warning(ctx, "VF %s: physfn %s is not an SR-IOV PF; VF left out",
                                    vf->address, ctx->fns[p].address);
                        excluded[i] = true;
                } else if (vf->class_code >> 16 != ctx->fns[p].class_code >> 16) {
                        add_warning(ctx,
                                    "VF %s: class %06x differs from its PF %s (class %06x); a "
                                    "VF is only ever of its PF's type, VF left out",
                                    vf->address, vf->class_code, ctx->fns[p].address,
                                    ctx->fns[p].class_code);
                        excluded[i] = true;
                } else {
                        vf->parent = p;
                }
        }
}

/* Fills each PF's vfs[] (indices before compaction) from its virtfnN links,
 * keeping only VFs whose physfn points back. */
static int resolve_children(struct scan_ctx *ctx, const struct nst_pci_inventory *idx,
                            const bool *excluded, struct nst_error *err) {
        for (size_t i = 0; i < ctx->n; i++) {
                struct nst_pci_function *pf = &ctx->fns[i];
                struct fn_links *l = &ctx->links[i];
                if (pf->type != NST_PCI_TYPE_PF || l->n_virtfn == 0)
                        continue;
                qsort(l->virtfn, l->n_virtfn, sizeof(*l->virtfn), cmp_virtfn);
                pf->vfs = calloc(l->n_virtfn, sizeof(*pf->vfs));
                if (!pf->vfs)
                        return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
                for (size_t k = 0; k < l->n_virtfn; k++) {
                        char a[NST_PCI_ADDR_LEN];
                        nst_pci_addr_format(l->virtfn[k].addr, a);
                        size_t v = nst_pci_inventory_find(idx, l->virtfn[k].addr);
                        if (v == NST_PCI_NONE) {
                                add_warning(ctx,
                                            "PF %s: virtfn%d points to %s, which is not in the "
                                            "scan (dangling link); ignored",
                                            pf->address, l->virtfn[k].number, a);
                                continue;
                        }
                        if (excluded[v])
                                continue; /* already explained */
                        if (ctx->fns[v].type != NST_PCI_TYPE_VF || ctx->fns[v].parent != i) {
                                add_warning(ctx,
                                            "PF %s: virtfn%d points to %s, whose physfn is not "
                                            "this PF; ignored",
                                            pf->address, l->virtfn[k].number, a);
                                continue;
                        }
                        if (ctx->fns[v].vf_number >= 0) {
                                add_warning(ctx, "PF %s: virtfn%d and virtfn%d both point to %s; "
                                                 "the first is kept",
                                            pf->address, ctx->fns[v].vf_number,
                                            l->virtfn[k].number, a);
                                continue;
                        }
                        ctx->fns[v].vf_number = l->virtfn[k].number;
                        pf->vfs[pf->n_vfs++] = v;
                }
        }
        return 0;
}

/* Drops the excluded functions and renumbers parent/vfs indices. */
static int compact(struct scan_ctx *ctx, bool *excluded, struct nst_error *err) {
        _cleanup_free_ size_t *new_index = malloc((ctx->n ? ctx->n : 1) * sizeof(*new_index));
        if (!new_index)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        size_t kept = 0;
        for (size_t i = 0; i < ctx->n; i++) {
                new_index[i] = excluded[i] ? NST_PCI_NONE : kept;
                if (!excluded[i])
                        ctx->fns[kept++] = ctx->fns[i];
                else
                        free(ctx->fns[i].vfs);
        }
        for (size_t i = 0; i < kept; i++) {
                struct nst_pci_function *f = &ctx->fns[i];
                if (f->parent != NST_PCI_NONE)
                        f->parent = new_index[f->parent];
                for (size_t k = 0; k < f->n_vfs; k++)
                        f->vfs[k] = new_index[f->vfs[k]];
        }
        /* links[] is parallel to the old order: it is not needed any more. */
        free_links(ctx);
        ctx->n = kept;
        return 0;
}

static int links_phase(struct scan_ctx *ctx, struct nst_pci_inventory *inv,
                       struct nst_error *err) {
        /* A first index over every function, to resolve links in O(1). */
        inv->fns = ctx->fns;
        inv->n = ctx->n;
        int r = nst_pci_inventory_index(inv);
        inv->fns = NULL;
        inv->n = 0;
        if (r < 0)
                return nst_error_set(err, r, "MemoryError", "out of memory");

        _cleanup_free_ bool *excluded = calloc(ctx->n ? ctx->n : 1, sizeof(*excluded));
        if (!excluded)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        inv->fns = ctx->fns;
        inv->n = ctx->n;
        resolve_parents(ctx, inv, excluded);
        r = resolve_children(ctx, inv, excluded, err);
        inv->fns = NULL;
        inv->n = 0;
        if (r < 0)
                return r;

        /* A VF its PF does not list (caught mid-change) has no VF number. */
        for (size_t i = 0; i < ctx->n; i++)
                if (ctx->fns[i].type == NST_PCI_TYPE_VF && !excluded[i] &&
                    ctx->fns[i].vf_number < 0) {
                        add_warning(ctx, "VF %s: PF %s has no virtfn link to it; VF left out",
                                    ctx->fns[i].address, ctx->fns[ctx->fns[i].parent].address);
                        excluded[i] = true;
                }
        return compact(ctx, excluded, err);
}

/* ---- host facts ---- */

static bool dir_has_entries(int dirfd, const char *path) {
        int fd = openat(dirfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return false;
        _cleanup_(closedirp) DIR *dir = fdopendir(fd);
        if (!dir) {
                close(fd);
                return false;
        }
        for (struct dirent *e; (e = readdir(dir));)
                if (e->d_name[0] != '.')
                        return true;
        return false;
}

/* True when the comma-separated list has the word. */
static bool list_has(const char *list, size_t len, const char *word) {
        size_t wl = strlen(word);
        for (size_t i = 0; i < len;) {
                size_t j = i;
                while (j < len && list[j] != ',')
                        j++;
                if (j - i == wl && strncmp(list + i, word, wl) == 0)
                        return true;
                i = j + 1;
        }
        return false;
}

/* intel_iommu=on, amd_iommu=on or iommu=pt, the last occurrence of each
 * parameter winning as in the kernel. */
static bool cmdline_enables_iommu(const char *cmdline) {
        bool intel = false, amd = false, pt = false;
        for (const char *p = cmdline; *p;) {
                while (*p == ' ' || *p == '\t' || *p == '\n')
                        p++;
                const char *tok = p;
                while (*p && *p != ' ' && *p != '\t' && *p != '\n')
                        p++;
                size_t len = (size_t)(p - tok);
                const char *eq = memchr(tok, '=', len);
                if (!eq)
                        continue;
                size_t kl = (size_t)(eq - tok), vl = len - kl - 1;
                if (kl == 11 && strncmp(tok, "intel_iommu", kl) == 0)
                        intel = list_has(eq + 1, vl, "on");
                else if (kl == 9 && strncmp(tok, "amd_iommu", kl) == 0)
                        amd = list_has(eq + 1, vl, "on");
                else if (kl == 5 && strncmp(tok, "iommu", kl) == 0)
                        pt = list_has(eq + 1, vl, "pt");
        }
        return intel || amd || pt;
}

static void read_cmdline(const char *path, struct nst_pci_host_facts *facts) {
        if (!path)
                return;
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return;
        _cleanup_free_ char *buf = malloc(CMDLINE_MAX);
        if (!buf)
                return;
        ssize_t n = read(fd, buf, CMDLINE_MAX - 1);
        if (n < 0)
                return;
        buf[n] = '\0';
        facts->cmdline_read = true;
        facts->iommu_cmdline = cmdline_enables_iommu(buf);
}

/* physical_package_id of the first CPU in the node's cpulist; -1 for a node
 * without CPUs (memory only) or without topology. */
static int node_socket(int rootfd, int node) {
        char path[96], buf[ATTR_MAX];
        snprintf(path, sizeof(path), "devices/system/node/node%d/cpulist", node);
        if (read_attr(rootfd, path, buf, sizeof(buf)) < 0 || buf[0] < '0' || buf[0] > '9')
                return -1;
        long cpu = strtol(buf, NULL, 10);
        snprintf(path, sizeof(path), "devices/system/cpu/cpu%ld/topology/physical_package_id",
                 cpu);
        char id[32];
        long v;
        if (read_attr(rootfd, path, id, sizeof(id)) < 0 || parse_int(id, 0, INT32_MAX, &v) < 0)
                return -1;
        return (int)v;
}

static void read_numa(int rootfd, struct nst_pci_host_facts *facts) {
        for (size_t i = 0; i < NST_PCI_MAX_NUMA; i++)
                facts->node_socket[i] = -1;
        int fd = openat(rootfd, "devices/system/node", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return;
        _cleanup_(closedirp) DIR *dir = fdopendir(fd);
        if (!dir) {
                close(fd);
                return;
        }
        for (struct dirent *e; (e = readdir(dir));) {
                int node = numbered_name(e->d_name, "node");
                if (node < 0 || node >= NST_PCI_MAX_NUMA)
                        continue;
                if ((size_t)node + 1 > facts->n_numa_nodes)
                        facts->n_numa_nodes = (size_t)node + 1;
                facts->node_socket[node] = node_socket(rootfd, node);
        }
}

static void read_host_facts(int rootfd, const char *cmdline_path,
                            struct nst_pci_host_facts *facts) {
        *facts = (struct nst_pci_host_facts){0};
        facts->iommu_groups = dir_has_entries(rootfd, "kernel/iommu_groups");
        facts->vfio_pci_driver = faccessat(rootfd, "bus/pci/drivers/vfio-pci", F_OK, 0) == 0 ||
                                 faccessat(rootfd, "module/vfio_pci", F_OK, 0) == 0;
        read_cmdline(cmdline_path, facts);
        read_numa(rootfd, facts);
}

/* ---- the scan ---- */

/* One attempt: 0, -EAGAIN (try again: ctx->libpci_error says why), or a
 * final error already set in err. On success the inventory owns the
 * functions and warnings. */
static int scan_attempt(struct scan_ctx *ctx, struct nst_pci_inventory *inv,
                        struct nst_error *err) {
        int r = libpci_phase(ctx);
        if (r == -ENOMEM)
                return nst_error_set(err, r, "MemoryError", "out of memory");
        if (r == -EINVAL)
                return nst_error_set(err, r, "PciDiscoveryFailed",
                                     "libpci has no sysfs.path parameter");
        if (r < 0)
                return r;
        r = sysfs_phase(ctx, err);
        if (r < 0)
                return r;
        r = links_phase(ctx, inv, err);
        if (r < 0)
                return r;
        inv->fns = nst_steal(&ctx->fns);
        inv->n = ctx->n;
        ctx->n = 0;
        return nst_pci_inventory_index(inv) < 0
                       ? nst_error_set(err, -ENOMEM, "MemoryError", "out of memory")
                       : 0;
}

static int take_warnings(struct scan_ctx *ctx, struct nst_pci_inventory *inv,
                         struct nst_error *err) {
        char *s;
        if (ctx->warnings_dropped > 0) {
                if (asprintf(&s, "%zu more warnings not shown", ctx->warnings_dropped) < 0)
                        ctx->warnings_oom = true;
                else
                        push_warning(ctx, s);
        }
        if (ctx->warnings_oom)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        inv->warnings = nst_steal(&ctx->warnings);
        inv->n_warnings = ctx->n_warnings;
        ctx->n_warnings = 0;
        return 0;
}

int nst_pci_scan(const struct nst_pci_scan_options *o, struct nst_pci_inventory **ret,
                 struct nst_error *err) {
        const char *root = o && o->sysfs_root ? o->sysfs_root : DEFAULT_SYSFS_ROOT;
        _cleanup_close_ int rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (rootfd < 0)
                return nst_error_set(err, -errno, "PciDiscoveryFailed",
                                     "cannot open the sysfs root %s: %m", root);
        struct scan_ctx ctx = {.devices_fd = -1};
        if ((size_t)snprintf(ctx.bus_pci_path, sizeof(ctx.bus_pci_path), "%s/bus/pci", root) >=
            sizeof(ctx.bus_pci_path))
                return nst_error_set(err, -ENAMETOOLONG, "PciDiscoveryFailed",
                                     "sysfs root too long: %s", root);
        ctx.devices_fd = openat(rootfd, "bus/pci/devices", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (ctx.devices_fd < 0)
                return nst_error_set(err, -errno, "PciDiscoveryFailed",
                                     "cannot open %s/devices: %m", ctx.bus_pci_path);

        _cleanup_(nst_pci_inventory_freep) struct nst_pci_inventory *inv = calloc(1, sizeof(*inv));
        if (!inv) {
                scan_ctx_done(&ctx);
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        int r = -EAGAIN;
        for (int attempt = 0; attempt <= NST_PCI_SCAN_RETRIES && r == -EAGAIN; attempt++) {
                if (attempt > 0) {
                        scan_ctx_reset(&ctx);
                        nanosleep(&(struct timespec){.tv_nsec = RETRY_DELAY_NS}, NULL);
                }
                r = scan_attempt(&ctx, inv, err);
        }
        if (r == -EAGAIN)
                r = nst_error_set(err, -EIO, "PciDiscoveryFailed",
                                  "scan of %s failed %d times; last error: %s", ctx.bus_pci_path,
                                  NST_PCI_SCAN_RETRIES + 1, ctx.libpci_error);
        if (r == 0)
                r = take_warnings(&ctx, inv, err);
        scan_ctx_done(&ctx);
        if (r < 0)
                return r;
        read_host_facts(rootfd, o ? o->cmdline_path : NULL, &inv->facts);
        *ret = nst_steal(&inv);
        return 0;
}
