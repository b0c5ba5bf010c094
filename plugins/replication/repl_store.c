/* The replication target's point-in-time store (see repl_store.h for the
 * layout): state.json is the single record of what is committed, every
 * change to it is one atomic rename, and every multi-step operation is
 * ordered so that nst_rs_open() can tell from the files which step a crash
 * interrupted.
 *
 * Crash analysis (a crash may stop any step; "dir fsync" makes renames and
 * unlinks durable in the order they were made):
 *
 * Commit: (1) flush and stop every qemu-nbd, fsync the partial files;
 * (2) rename partial-<disk>.qcow2 to p<N>-<disk>.qcow2 (N = last id + 1),
 * dir fsync; (3) write state.json listing point N with those names (the
 * commit point); (4) remove partial.json. A crash before (3) leaves
 * p<N>-* files that state.json does not list: nst_rs_open() renames them
 * back to partial-<disk>.qcow2, so the cycle is a partial again, complete
 * and durable up to partial.json's mark, and the source resumes it (it never
 * got the commit's acknowledgement). A crash after (3) leaves a partial.json
 * whose base is no longer the latest point: nst_rs_open() removes it. A
 * point's file names are chosen from ids that are never reused, so a p<N>
 * file with N above the last id is always an uncommitted cycle and one with
 * N at or below it that state.json does not list is garbage from a merge.
 *
 * Merge (retention) of the oldest point A into the next one B: (1) record
 * {"merge": {"drop": A, "into": B}} in state.json; (2) per disk `qemu-img
 * commit -d` of B's image into A's image (B's image is left intact, so a
 * repeated commit writes the same data again: idempotent); (3) rebase
 * (unsafe, a pointer change) the image that was on B's image (the third
 * point's, or the partial when B is the latest) onto A's image, which now
 * reads as B did; (4) write state.json without A, B now naming A's files,
 * and no merge record; (5) remove B's old files (unlisted: garbage). Every
 * view through B stays the same during (2), since B's image shadows what
 * is being copied below it, so readers of later points see no change at any
 * step. nst_rs_open() redoes (2)-(5) when it finds the merge record.
 *
 * Cycle begin: the old partial.json goes first, then the old partial files;
 * new overlays are created and fsynced before the new partial.json names
 * the cycle, so a partial.json always describes complete overlays. The
 * qemu-nbd pids are recorded right after they are spawned, before any
 * client connects. qemu-nbd runs without --persistent, so once connected it
 * exits when our connection dies with the agent; only one that never saw a
 * client can outlive us, and that is what the recorded pid is for (its
 * /proc cmdline must still name qemu-nbd and our socket before we kill it).
 *
 * Unix socket paths are limited to 107 bytes: when <dir>/nbd-ro-<disk>.sock
 * could exceed that, sockets go to $TMPDIR/nestor-<uid>/rs-<hash of dir>
 * (both private to the agent's user, checked): the same directory whenever
 * the replica is open, so a killed agent's is taken again, not leaked;
 * partial.json records it, and a recorded one of another name (older
 * agents made random ones) is removed when empty. */
#include "plugins/replication/repl_store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libnbd.h>
#include <limits.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/clock.h"
#include "agent/fnv.h"
#include "agent/fs_util.h"
#include "messages/json_util.h"
#include "plugins/libvirt/disks.h"
#include "plugins/replication/repl_buf.h"

#define QEMU_NBD "/usr/bin/qemu-nbd"
#define STATE_FILE "state.json"
#define PARTIAL_FILE "partial.json"
#define STATE_FORMAT 1
#define STATE_MAX_BYTES (16 * 1024 * 1024)
#define IMG_TIMEOUT_MS (120 * 1000)
#define COMMIT_TIMEOUT_MS (6LL * 3600 * 1000)
#define NBD_START_TIMEOUT_MS 10000
#define NBD_EXIT_TIMEOUT_MS 10000
#define NBD_KILL_TIMEOUT_MS 5000
#define NBD_REQUEST_MAX (UINT64_C(32) << 20)
/* Reads through qemu-nbd stay small for the reason repl_source.c gives. */
#define HASH_READ_MAX (UINT32_C(512) << 10)
#define CYCLE_ID_MAX 128
#define SOCK_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path))
#define TOOL_OUT_MAX 4096
#define JSON_TEXT_FLAGS (JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE)

extern char **environ;

struct rs_point {
        struct nst_rs_point pub;
        char *files[NST_RS_MAX_DISKS]; /* names inside dir, p<id>-<disk>.qcow2 */
};

struct rs_boot {
        char *dir;       /* absolute, as given */
        uint64_t point;
};

/* Where a disk's writes go: one qemu-nbd we spawned and our connection to
 * it, or (direct) a raw partial file we write ourselves. */
struct rs_nbd {
        pid_t pid;                  /* 0: none */
        struct nbd_handle *h;
        bool direct;                /* a raw partial we write: no qemu-nbd */
        int fd;                     /* direct: O_DIRECT where the file system allows;
                                     * else the image read-only (writeback), or -1 */
        int fd_buffered;            /* for what is not block aligned */
        uint64_t unsynced;          /* bytes written since writeback was started */
        uint64_t max_request;
        char sock[SOCK_PATH_MAX];
        char log[PATH_MAX];
};

struct nst_rs_replica {
        char *dir;
        int dir_fd;                 /* flock()ed: one replica object per dir */
        char *replication;
        json_object *meta;
        struct nst_rs_disk disks[NST_RS_MAX_DISKS];
        char seed_format[NST_RS_MAX_DISKS][8];
        size_t n_disks;
        struct rs_point *points;
        size_t n_points;
        bool merging;               /* state.json records a merge of points[0] into [1] */
        struct rs_boot *boots;
        size_t n_boots;
        char *sockdir;              /* dir, or a short temporary directory */
        bool sockdir_tmp;
        /* the open cycle (cycle != NULL) */
        char *cycle;
        struct rs_nbd nbd[NST_RS_MAX_DISKS];
        /* The cycle's writer thread and its queue (nst_rs_write). */
        pthread_t writer;
        bool writer_running;
        pthread_mutex_t wlock;
        pthread_cond_t wcond;
        struct write_job *whead, *wtail;
        uint64_t wqueued;
        bool wbusy, wstop;
        int werrno;
        int wfailed;                /* the writer thread's own record of it */
        unsigned wdisk;
        /* The cycle's syncer thread: fdatasync() of the partials behind
         * the writer (under wlock). */
        pthread_t syncer;
        bool syncer_running, sstop, syncing;
        uint32_t sync_pending;      /* a bit per disk due for a sync */
        pthread_cond_t scond;
        bool has_mark;
        uint16_t mark_disk;
        uint64_t mark_offset;
};

static int writer_start(struct nst_rs_replica *r, struct nst_error *err);
static void writer_stop(struct nst_rs_replica *r);

/* What partial.json says. */
struct rs_partial {
        char *cycle;
        uint64_t base;
        bool has_mark;
        uint16_t mark_disk;
        uint64_t mark_offset;
        char *sockdir;
        size_t n_nbd;
        pid_t pids[NST_RS_MAX_DISKS];
        char socks[NST_RS_MAX_DISKS][SOCK_PATH_MAX];
};

static void partial_done(struct rs_partial *p) {
        free(p->cycle);
        free(p->sockdir);
        *p = (struct rs_partial){0};
}

static int oom(struct nst_error *err) {
        return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
}

static void sleep_ms(long ms) {
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static uint64_t latest_id(const struct nst_rs_replica *r) {
        return r->n_points ? r->points[r->n_points - 1].pub.id : 0;
}

static char *path_in(const char *dir, const char *name) {
        char *p = NULL;
        return asprintf(&p, "%s/%s", dir, name) < 0 ? NULL : p;
}

/* The first point of a disk without a seed has nothing below it: it is a
 * sparse raw file the target writes itself (a full copy into qcow2 through
 * qemu-nbd was several times slower than reading the source). Every later
 * point is a qcow2 overlay. The file name says the format. */
static bool partial_is_raw(const struct nst_rs_replica *r, size_t disk) {
        return r->n_points == 0 && !r->disks[disk].seed;
}

static const char *image_format(const char *name) {
        size_t n = strlen(name);
        return n > 4 && strcmp(name + n - 4, ".raw") == 0 ? "raw" : "qcow2";
}

static void partial_name(char *buf, size_t size, const struct nst_rs_replica *r, size_t disk) {
        snprintf(buf, size, "partial-%s.%s", r->disks[disk].name,
                 partial_is_raw(r, disk) ? "raw" : "qcow2");
}

/* ---- files ---- */

static int fsync_dir(const struct nst_rs_replica *r, struct nst_error *err) {
        if (fsync(r->dir_fd) < 0)
                return nst_error_set(err, -errno, "StorageError", "fsync %s: %s", r->dir,
                                     strerror(errno));
        return 0;
}

static int fsync_file(const char *path, struct nst_error *err) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) < 0)
                return nst_error_set(err, -errno, "StorageError", "fsync %s: %s", path,
                                     strerror(errno));
        return 0;
}

static int fsync_in(const struct nst_rs_replica *r, const char *name, struct nst_error *err) {
        _cleanup_free_ char *path = path_in(r->dir, name);
        return path ? fsync_file(path, err) : oom(err);
}

static int write_all(int fd, const char *buf, size_t len) {
        while (len) {
                ssize_t n = write(fd, buf, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                buf += n;
                len -= (size_t)n;
        }
        return 0;
}

/* temp file, fsync, rename, fsync dir. *renamed tells a caller whose
 * in-memory state must match the disk whether the new text is in place. */
static int write_atomic(const struct nst_rs_replica *r, const char *name, const char *text,
                        bool *renamed, struct nst_error *err) {
        char tmp[64];
        snprintf(tmp, sizeof(tmp), "%s.tmp", name);
        *renamed = false;
        _cleanup_close_ int fd =
                openat(r->dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
                return nst_error_set(err, -errno, "StorageError", "%s/%s: %s", r->dir, tmp,
                                     strerror(errno));
        int e = write_all(fd, text, strlen(text));
        if (e == 0 && fsync(fd) < 0)
                e = -errno;
        if (e < 0) {
                unlinkat(r->dir_fd, tmp, 0);
                return nst_error_set(err, e, e == -ENOSPC ? "InsufficientStorage" : "StorageError",
                                     "writing %s/%s: %s", r->dir, tmp, strerror(-e));
        }
        if (renameat(r->dir_fd, tmp, r->dir_fd, name) < 0) {
                e = -errno;
                unlinkat(r->dir_fd, tmp, 0);
                return nst_error_set(err, e, "StorageError", "rename %s/%s: %s", r->dir, tmp,
                                     strerror(-e));
        }
        *renamed = true;
        return fsync_dir(r, err);
}

static int read_text(int dir_fd, const char *dir, const char *name, char **ret,
                     struct nst_error *err) {
        _cleanup_close_ int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? -ENOENT
                                       : nst_error_set(err, -errno, "StorageError", "%s/%s: %s",
                                                       dir, name, strerror(errno));
        struct stat st;
        if (fstat(fd, &st) < 0 || st.st_size > STATE_MAX_BYTES)
                return nst_error_set(err, -EFBIG, "ReplicaCorrupt", "%s/%s: larger than %d bytes",
                                     dir, name, STATE_MAX_BYTES);
        _cleanup_free_ char *buf = malloc((size_t)st.st_size + 1);
        if (!buf)
                return oom(err);
        size_t n = 0;
        while (n < (size_t)st.st_size) {
                ssize_t got = read(fd, buf + n, (size_t)st.st_size - n);
                if (got < 0 && errno == EINTR)
                        continue;
                if (got < 0)
                        return nst_error_set(err, -errno, "StorageError", "%s/%s: %s", dir, name,
                                             strerror(errno));
                if (got == 0)
                        break;
                n += (size_t)got;
        }
        buf[n] = '\0';
        *ret = nst_steal(&buf);
        return (int)n;
}

static bool exists_in(const struct nst_rs_replica *r, const char *name) {
        return faccessat(r->dir_fd, name, F_OK, 0) == 0;
}

static void unlink_in(const struct nst_rs_replica *r, const char *name) {
        (void)unlinkat(r->dir_fd, name, 0);
}

/* ---- names ---- */

static bool disk_name_valid(const char *s) {
        size_t n = strlen(s);
        if (n == 0 || n >= NST_RS_DISK_NAME_MAX)
                return false;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
                      (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
                        return false;
        return true;
}

/* "p<digits>-<disk>.qcow2" or ".raw": the only names a point file may have, which
 * also keeps state.json from naming anything outside dir. *ret_id: digits. */
static bool point_file_parse(const char *name, const char *disk, uint64_t *ret_id) {
        if (name[0] != 'p' || name[1] < '0' || name[1] > '9')
                return false;
        char *end = NULL;
        errno = 0;
        unsigned long long id = strtoull(name + 1, &end, 10);
        if (errno || *end != '-')
                return false;
        size_t dl = strlen(disk);
        if (strncmp(end + 1, disk, dl) != 0 ||
            (strcmp(end + 1 + dl, ".qcow2") != 0 && strcmp(end + 1 + dl, ".raw") != 0))
                return false;
        *ret_id = id;
        return true;
}

/* The name the partial of disk gets when it becomes point id. */
static char *point_file_name(const struct nst_rs_replica *r, uint64_t id, size_t disk) {
        char *p = NULL;
        return asprintf(&p, "p%" PRIu64 "-%s.%s", id, r->disks[disk].name,
                        partial_is_raw(r, disk) ? "raw" : "qcow2") < 0
                       ? NULL
                       : p;
}

/* ---- qemu-img ---- */

static int qemu_img(const char *const argv[], int64_t timeout_ms, const char *what, char *out,
                    size_t out_size, struct nst_error *err) {
        int status = 0;
        int r = nst_run(argv, out, out_size, timeout_ms, &status, err);
        if (r < 0)
                return nst_error_prefix(err, "%s", what);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                return 0;
        size_t len = strlen(out);
        while (len && (out[len - 1] == '\n' || out[len - 1] == ' '))
                out[--len] = '\0';
        bool nospace = strstr(out, "No space left") != NULL;
        return nst_error_set(err, nospace ? -ENOSPC : -EIO,
                             nospace ? "InsufficientStorage" : "StorageError",
                             "%s: qemu-img failed (%s %d): %.400s", what,
                             WIFEXITED(status) ? "exit status" : "signal",
                             WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), out);
}

/* Format and virtual size of any image (the seed may be in use: -U). */
static int image_info(const char *path, char *format, size_t format_size, uint64_t *ret_size,
                      struct nst_error *err) {
        const char *argv[] = {NST_QEMU_IMG, "info", "-U", "--output=json", path, NULL};
        char out[TOOL_OUT_MAX * 4];
        int r = qemu_img(argv, IMG_TIMEOUT_MS, path, out, sizeof(out), err);
        if (r < 0)
                return r;
        _cleanup_json_ json_object *info = json_tokener_parse(out);
        json_object *fmt = NULL, *size = NULL;
        if (!info || !json_object_object_get_ex(info, "format", &fmt) ||
            !json_object_object_get_ex(info, "virtual-size", &size))
                return nst_error_set(err, -EIO, "StorageError",
                                     "qemu-img info %s: unexpected output: %.200s", path, out);
        snprintf(format, format_size, "%s", json_object_get_string(fmt));
        *ret_size = (uint64_t)json_object_get_int64(size);
        return 0;
}

/* A qcow2 overlay on backing (of format backing_fmt). */
static int create_overlay(const char *path, const char *backing, const char *backing_fmt,
                          uint64_t size, struct nst_error *err) {
        char size_s[32], out[TOOL_OUT_MAX];
        snprintf(size_s, sizeof(size_s), "%" PRIu64, size);
        const char *argv[] = {NST_QEMU_IMG, "create", "-q", "-f", "qcow2", "-o", "compat=1.1",
                              "-b", backing, "-F", backing_fmt, path, size_s, NULL};
        return qemu_img(argv, IMG_TIMEOUT_MS, path, out, sizeof(out), err);
}

/* An empty raw image: all holes, so it reads as zeroes and takes no space. */
static int create_sparse(const char *path, uint64_t size, struct nst_error *err) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
                return nst_error_set(err, -errno, "StorageError", "%s: %s", path,
                                     strerror(errno));
        return 0;
}

/* ---- qemu-nbd ---- */

/* qemu-nbd allocates a buffer per NBD request. With glibc's defaults the
 * top of its heap is given back whenever the requests in flight complete
 * and taken again for the next ones: a page fault per 4 KiB received and a
 * TLB shootdown per trim, both expensive in a virtual machine (perf, and
 * tests/bench/bench_repl_store: qemu-nbd 0.20-0.31 CPU-s for 1024 writes
 * of 64 KiB with the defaults, 0.15-0.17 with these). Requests up to 4 MiB
 * come from the heap, which keeps up to 64 MiB; the process lives for one
 * cycle. glibc ignores tunables it does not know; an operator's own
 * GLIBC_TUNABLES come after these and win. */
#define QEMU_NBD_TUNABLES                                                                   \
        "glibc.malloc.trim_threshold=67108864:glibc.malloc.top_pad=16777216:"             \
        "glibc.malloc.mmap_threshold=4194304"

static void strv_free(char **v) {
        for (char **p = v; p && *p; p++)
                free(*p);
        free(v);
}

static void strv_freep(char ***v) {
        strv_free(*v);
}

/* The agent's environment with QEMU_NBD_TUNABLES added; NULL without memory.
 * Free with strv_free. */
static char **qemu_nbd_environ(void) {
        size_t n = 0;
        while (environ[n])
                n++;
        char **env = calloc(n + 2, sizeof(*env));
        if (!env)
                return NULL;
        const char *own = getenv("GLIBC_TUNABLES");
        size_t k = 0;
        bool ok = asprintf(&env[k++], "GLIBC_TUNABLES=%s%s%s", QEMU_NBD_TUNABLES, own ? ":" : "",
                           own ? own : "") >= 0;
        if (!ok)
                env[0] = NULL;
        for (size_t i = 0; ok && i < n; i++)
                if (strncmp(environ[i], "GLIBC_TUNABLES=", 15) != 0 &&
                    !(env[k++] = strdup(environ[i])))
                        ok = false;
        if (!ok) {
                strv_free(env);
                return NULL;
        }
        return env;
}

static int spawn_child(const char *const argv[], char *const envp[], int out_fd, pid_t *ret_pid,
                       struct nst_error *err) {
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t at;
        posix_spawn_file_actions_init(&fa);
        posix_spawnattr_init(&at);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
        posix_spawn_file_actions_adddup2(&fa, out_fd, 2);
        posix_spawn_file_actions_addclosefrom_np(&fa, 3);
        /* The agent blocks signals for sigwait(): the child must not inherit that. */
        sigset_t none, all;
        sigemptyset(&none);
        sigfillset(&all);
        posix_spawnattr_setsigmask(&at, &none);
        posix_spawnattr_setsigdefault(&at, &all);
        posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        int r = posix_spawn(ret_pid, argv[0], &fa, &at, (char *const *)argv, envp);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&at);
        if (r != 0)
                return nst_error_set(err, -r, "StorageError", "cannot run %s: %s", argv[0],
                                     strerror(r));
        return 0;
}

static void log_tail(const char *path, char *buf, size_t size) {
        buf[0] = '\0';
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return;
        ssize_t n = read(fd, buf, size - 1);
        buf[n > 0 ? n : 0] = '\0';
        size_t len = strlen(buf);
        while (len && buf[len - 1] == '\n')
                buf[--len] = '\0';
}

/* Waits up to timeout_ms for our child to exit; true when it did (or when
 * someone else reaped it). A pidfd wakes us the moment it exits (qemu-nbd
 * at every commit); without one (kernels before 5.3) we look every 5 ms. */
static bool wait_child(pid_t pid, int64_t timeout_ms, int *ret_status) {
        int64_t deadline = nst_now_ms() + timeout_ms;
        _cleanup_close_ int pidfd = pidfd_open(pid, 0);
        for (;;) {
                pid_t w = waitpid(pid, ret_status, WNOHANG);
                if (w == pid || (w < 0 && errno == ECHILD))
                        return true;
                int64_t left = deadline - nst_now_ms();
                if (left <= 0)
                        return false;
                if (pidfd >= 0)
                        (void)poll(&(struct pollfd){.fd = pidfd, .events = POLLIN}, 1,
                                   (int)left);
                else
                        sleep_ms(5);
        }
}

/* Ends the connection and the process, gently first. Keeps the image. */
static void nbd_stop(struct rs_nbd *n) {
        if (n->direct) {
                /* No process and no socket: sock only names the file. */
                close(n->fd);
                if (n->fd_buffered != n->fd)
                        close(n->fd_buffered);
                *n = (struct rs_nbd){0};
                return;
        }
        if (n->sock[0] && n->fd >= 0) /* set up by nbd_spawn */
                close(n->fd);
        n->fd = -1;
        bool had_client = n->h != NULL;
        if (n->h) {
                (void)nbd_shutdown(n->h, 0);
                nbd_close(n->h);
                n->h = NULL;
        }
        if (n->pid > 0) {
                int status;
                /* Without --persistent qemu-nbd exits when its client leaves;
                 * one that never had a client needs a signal. */
                if (!had_client || !wait_child(n->pid, NBD_EXIT_TIMEOUT_MS, &status)) {
                        kill(n->pid, SIGTERM);
                        if (!wait_child(n->pid, NBD_KILL_TIMEOUT_MS, &status)) {
                                kill(n->pid, SIGKILL);
                                (void)wait_child(n->pid, NBD_KILL_TIMEOUT_MS, &status);
                        }
                }
                n->pid = 0;
        }
        if (n->sock[0])
                unlink(n->sock);
        if (n->log[0])
                unlink(n->log);
        n->sock[0] = n->log[0] = '\0';
}

/* Spawns qemu-nbd on image (format fmt) at <sockdir>/<prefix><disk>.sock,
 * its output in <dir>/<prefix><disk>.log. Does not wait for it. */
static int nbd_spawn(const struct nst_rs_replica *r, size_t disk, const char *prefix,
                     const char *image, const char *fmt, bool read_only, struct rs_nbd *n,
                     struct nst_error *err) {
        *n = (struct rs_nbd){.fd = -1, .fd_buffered = -1};
        int len = snprintf(n->sock, sizeof(n->sock), "%s/%s%s.sock", r->sockdir, prefix,
                           r->disks[disk].name);
        if (len < 0 || (size_t)len >= sizeof(n->sock))
                return nst_error_set(err, -ENAMETOOLONG, "StorageError",
                                     "socket path in %s is too long", r->sockdir);
        snprintf(n->log, sizeof(n->log), "%s/%s%s.log", r->dir, prefix, r->disks[disk].name);
        unlink(n->sock);
        _cleanup_close_ int log_fd =
                open(n->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (log_fd < 0)
                return nst_error_set(err, -errno, "StorageError", "%s: %s", n->log,
                                     strerror(errno));
        char sock_opt[SOCK_PATH_MAX + 16], fmt_opt[32];
        snprintf(sock_opt, sizeof(sock_opt), "--socket=%s", n->sock);
        snprintf(fmt_opt, sizeof(fmt_opt), "--format=%s", fmt);
        const char *rw[] = {QEMU_NBD, sock_opt, fmt_opt, "--cache=writeback", "--discard=unmap",
                            "--detect-zeroes=unmap", image, NULL};
        const char *ro[] = {QEMU_NBD, sock_opt, fmt_opt, "--read-only", image, NULL};
        _cleanup_(strv_freep) char **env = qemu_nbd_environ();
        if (!env)
                return oom(err);
        return spawn_child(read_only ? ro : rw, env, log_fd, &n->pid, err);
}

/* Connects to a qemu-nbd we spawned, retrying until its socket listens. */
static int nbd_attach(struct rs_nbd *n, uint64_t expect_size, struct nst_error *err) {
        int64_t deadline = nst_now_ms() + NBD_START_TIMEOUT_MS;
        char tail[512];
        for (;;) {
                int status;
                if (waitpid(n->pid, &status, WNOHANG) == n->pid) {
                        n->pid = 0;
                        log_tail(n->log, tail, sizeof(tail));
                        return nst_error_set(err, -EIO, "StorageError",
                                             "qemu-nbd for %s exited (status %d): %s", n->sock,
                                             WIFEXITED(status) ? WEXITSTATUS(status) : -1, tail);
                }
                if (access(n->sock, F_OK) == 0) {
                        struct nbd_handle *h = nbd_create();
                        if (!h)
                                return oom(err);
                        if (nbd_connect_unix(h, n->sock) == 0) {
                                n->h = h;
                                break;
                        }
                        nbd_close(h);
                }
                if (nst_now_ms() >= deadline) {
                        log_tail(n->log, tail, sizeof(tail));
                        return nst_error_set(err, -ETIMEDOUT, "StorageError",
                                             "qemu-nbd did not listen on %s within %d s: %s",
                                             n->sock, NBD_START_TIMEOUT_MS / 1000, tail);
                }
                sleep_ms(10);
        }
        int64_t size = nbd_get_size(n->h);
        if (size < 0 || (uint64_t)size != expect_size)
                return nst_error_set(err, -EIO, "StorageError",
                                     "qemu-nbd on %s: size %" PRId64 ", expected %" PRIu64,
                                     n->sock, size, expect_size);
        int64_t max = nbd_get_block_size(n->h, LIBNBD_SIZE_MAXIMUM);
        n->max_request = max > 0 && (uint64_t)max < NBD_REQUEST_MAX ? (uint64_t)max
                                                                    : NBD_REQUEST_MAX;
        return 0;
}

static int nbd_failed(const char *what, const char *sock, struct nst_error *err) {
        int e = nbd_get_errno();
        if (e == ENOSPC || e == EDQUOT)
                return nst_error_set(err, -ENOSPC, "InsufficientStorage", "%s on %s: %s", what,
                                     sock, nbd_get_error());
        return nst_error_set(err, e > 0 ? -e : -EIO, "StorageError", "%s on %s: %s", what, sock,
                             nbd_get_error());
}

/* The /proc cmdline of pid names qemu-nbd and "--socket=<sock>". */
static bool is_our_qemu_nbd(pid_t pid, const char *sock) {
        char path[64], buf[8192];
        snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return false;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        if (n <= 0)
                return false; /* gone, or a zombie */
        buf[n] = '\0';
        const char *arg0 = strrchr(buf, '/') ? strrchr(buf, '/') + 1 : buf;
        if (strcmp(arg0, "qemu-nbd") != 0)
                return false;
        char want[SOCK_PATH_MAX + 16];
        snprintf(want, sizeof(want), "--socket=%s", sock);
        for (const char *a = buf; a < buf + n; a += strlen(a) + 1)
                if (strcmp(a, want) == 0)
                        return true;
        return false;
}

/* True once pid has exited, or does not exist. A zombie leader is not
 * enough while other threads of qemu-nbd are still going down (they hold
 * the files, and so the image locks): only its own task may remain. */
static bool has_exited(pid_t pid) {
        char path[64], buf[512];
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return true;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        if (n <= 0)
                return true;
        buf[n] = '\0';
        const char *paren = strrchr(buf, ')');
        if (!paren || paren[1] != ' ' || (paren[2] != 'Z' && paren[2] != 'X'))
                return false;
        snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
        DIR *dh = opendir(path);
        if (!dh)
                return true;
        size_t tasks = 0;
        struct dirent *de;
        while ((de = readdir(dh)))
                if (de->d_name[0] != '.')
                        tasks++;
        closedir(dh);
        return tasks <= 1;
}

/* A qemu-nbd a previous agent left. It is not our child, so we cannot
 * wait for it: we watch /proc until it has exited, and re-check who it is
 * before escalating to SIGKILL. */
static void kill_stale(pid_t pid, const char *sock) {
        if (pid <= 1 || !is_our_qemu_nbd(pid, sock))
                return;
        kill(pid, SIGTERM);
        int64_t deadline = nst_now_ms() + NBD_KILL_TIMEOUT_MS;
        bool killed = false;
        while (!has_exited(pid)) {
                if (nst_now_ms() >= deadline) {
                        if (killed || !is_our_qemu_nbd(pid, sock))
                                return;
                        kill(pid, SIGKILL);
                        killed = true;
                        deadline = nst_now_ms() + NBD_KILL_TIMEOUT_MS;
                }
                sleep_ms(5);
        }
}

/* ---- strict JSON reading ---- */

static int corrupt(struct nst_error *err, const char *file, const char *where, const char *key,
                   const char *what) {
        return nst_error_set(err, -EBADMSG, "ReplicaCorrupt", "%s: field %s%s%s %s", file, where,
                             where[0] ? "." : "", key, what);
}

static int jfield(json_object *o, const char *key, json_type type, bool optional,
                  const char *file, const char *where, json_object **ret, struct nst_error *err) {
        json_object *v = NULL;
        if (!json_object_object_get_ex(o, key, &v) || !v) {
                *ret = NULL;
                return optional ? 0 : corrupt(err, file, where, key, "is missing");
        }
        if (!json_object_is_type(v, type)) {
                char what[64];
                snprintf(what, sizeof(what), "must be %s", json_type_to_name(type));
                return corrupt(err, file, where, key, what);
        }
        *ret = v;
        return 0;
}

static int jstring(json_object *o, const char *key, bool optional, const char *file,
                   const char *where, const char **ret, struct nst_error *err) {
        json_object *v = NULL;
        int r = jfield(o, key, json_type_string, optional, file, where, &v, err);
        *ret = r == 0 && v ? json_object_get_string(v) : NULL;
        return r;
}

static int juint(json_object *o, const char *key, const char *file, const char *where,
                 uint64_t *ret, struct nst_error *err) {
        json_object *v;
        int r = jfield(o, key, json_type_int, false, file, where, &v, err);
        if (r < 0)
                return r;
        if (json_object_get_int64(v) < 0)
                return corrupt(err, file, where, key, "must not be negative");
        *ret = json_object_get_uint64(v);
        return 0;
}

static int parse_file(const char *file, const char *text, size_t len, json_object **ret,
                      struct nst_error *err) {
        int r = nst_json_parse(text, len, ret, err);
        if (r < 0) {
                char why[NST_ERROR_MESSAGE_MAX];
                snprintf(why, sizeof(why), "%s", err ? err->message : "");
                return nst_error_set(err, -EBADMSG, "ReplicaCorrupt", "%s: not valid JSON: %s",
                                     file, why);
        }
        if (!*ret || !json_object_is_type(*ret, json_type_object))
                return nst_error_set(err, -EBADMSG, "ReplicaCorrupt", "%s: not a JSON object",
                                     file);
        return 0;
}

/* ---- state.json ---- */

static void point_free_fields(struct rs_point *p) {
        free(p->pub.checkpoint);
        if (p->pub.extra)
                json_object_put(p->pub.extra);
        for (size_t d = 0; d < NST_RS_MAX_DISKS; d++)
                free(p->files[d]);
        *p = (struct rs_point){0};
}

static json_object *string_or_null(const char *s) {
        return s ? json_object_new_string(s) : NULL;
}

static json_object *state_to_json(const struct nst_rs_replica *r) {
        json_object *o = json_object_new_object();
        json_object *disks = json_object_new_array();
        json_object *points = json_object_new_array();
        json_object *boots = json_object_new_array();
        if (!o || !disks || !points || !boots)
                goto fail;
        json_object_object_add(o, "format", json_object_new_int(STATE_FORMAT));
        json_object_object_add(o, "replication", json_object_new_string(r->replication));
        json_object_object_add(o, "meta", r->meta ? json_object_get(r->meta) : NULL);
        for (size_t i = 0; i < r->n_disks; i++) {
                json_object *d = json_object_new_object();
                json_object_object_add(d, "name", json_object_new_string(r->disks[i].name));
                json_object_object_add(d, "size", json_object_new_uint64(r->disks[i].size));
                json_object_object_add(d, "seed", string_or_null(r->disks[i].seed));
                json_object_object_add(d, "seed_format",
                                       r->disks[i].seed ? json_object_new_string(r->seed_format[i])
                                                        : NULL);
                json_object_array_add(disks, d);
        }
        for (size_t i = 0; i < r->n_points; i++) {
                const struct rs_point *p = &r->points[i];
                json_object *j = json_object_new_object(), *files = json_object_new_array();
                json_object_object_add(j, "id", json_object_new_uint64(p->pub.id));
                json_object_object_add(j, "time_ms", json_object_new_int64(p->pub.time_ms));
                json_object_object_add(j, "checkpoint", string_or_null(p->pub.checkpoint));
                json_object_object_add(j, "bytes", json_object_new_uint64(p->pub.bytes));
                json_object_object_add(j, "extra",
                                       p->pub.extra ? json_object_get(p->pub.extra) : NULL);
                for (size_t d = 0; d < r->n_disks; d++)
                        json_object_array_add(files, json_object_new_string(p->files[d]));
                json_object_object_add(j, "files", files);
                json_object_array_add(points, j);
        }
        json_object *merge = NULL;
        if (r->merging) {
                merge = json_object_new_object();
                json_object_object_add(merge, "drop", json_object_new_uint64(r->points[0].pub.id));
                json_object_object_add(merge, "into", json_object_new_uint64(r->points[1].pub.id));
        }
        for (size_t i = 0; i < r->n_boots; i++) {
                json_object *b = json_object_new_object();
                json_object_object_add(b, "dir", json_object_new_string(r->boots[i].dir));
                json_object_object_add(b, "point", json_object_new_uint64(r->boots[i].point));
                json_object_array_add(boots, b);
        }
        json_object_object_add(o, "disks", disks);
        json_object_object_add(o, "points", points);
        json_object_object_add(o, "merge", merge);
        json_object_object_add(o, "boots", boots);
        return o;
fail:
        json_object_put(o);
        json_object_put(disks);
        json_object_put(points);
        json_object_put(boots);
        return NULL;
}

static int write_state_ex(const struct nst_rs_replica *r, bool *renamed, struct nst_error *err) {
        _cleanup_json_ json_object *o = state_to_json(r);
        const char *text = o ? json_object_to_json_string_ext(o, JSON_TEXT_FLAGS) : NULL;
        if (!text) {
                *renamed = false;
                return oom(err);
        }
        return write_atomic(r, STATE_FILE, text, renamed, err);
}

static int parse_disk(struct nst_rs_replica *r, json_object *d, size_t i, struct nst_error *err) {
        char where[32];
        snprintf(where, sizeof(where), "disks[%zu]", i);
        const char *name, *seed, *fmt;
        int e;
        if (!json_object_is_type(d, json_type_object))
                return nst_error_set(err, -EBADMSG, "ReplicaCorrupt",
                                     "state.json: field %s must be an object", where);
        if ((e = jstring(d, "name", false, STATE_FILE, where, &name, err)) < 0 ||
            (e = juint(d, "size", STATE_FILE, where, &r->disks[i].size, err)) < 0 ||
            (e = jstring(d, "seed", true, STATE_FILE, where, &seed, err)) < 0 ||
            (e = jstring(d, "seed_format", true, STATE_FILE, where, &fmt, err)) < 0)
                return e;
        if (!disk_name_valid(name))
                return corrupt(err, STATE_FILE, where, "name", "is not a valid disk name");
        for (size_t j = 0; j < i; j++)
                if (strcmp(r->disks[j].name, name) == 0)
                        return corrupt(err, STATE_FILE, where, "name", "repeats a disk name");
        snprintf(r->disks[i].name, sizeof(r->disks[i].name), "%s", name);
        if (r->disks[i].size == 0 || r->disks[i].size % 512)
                return corrupt(err, STATE_FILE, where, "size",
                               "must be a positive multiple of 512");
        if (seed) {
                if (seed[0] != '/')
                        return corrupt(err, STATE_FILE, where, "seed", "must be an absolute path");
                if (!fmt || (strcmp(fmt, "raw") != 0 && strcmp(fmt, "qcow2") != 0))
                        return corrupt(err, STATE_FILE, where, "seed_format",
                                       "must be raw or qcow2");
                if (!(r->disks[i].seed = strdup(seed)))
                        return oom(err);
                snprintf(r->seed_format[i], sizeof(r->seed_format[i]), "%s", fmt);
        }
        return 0;
}

static int parse_point(struct nst_rs_replica *r, json_object *j, size_t i, struct rs_point *p,
                       struct nst_error *err) {
        char where[32];
        snprintf(where, sizeof(where), "points[%zu]", i);
        if (!json_object_is_type(j, json_type_object))
                return nst_error_set(err, -EBADMSG, "ReplicaCorrupt",
                                     "state.json: field %s must be an object", where);
        json_object *time_ms, *extra, *files;
        const char *checkpoint;
        int e;
        if ((e = juint(j, "id", STATE_FILE, where, &p->pub.id, err)) < 0 ||
            (e = jfield(j, "time_ms", json_type_int, false, STATE_FILE, where, &time_ms,
                        err)) < 0 ||
            (e = jstring(j, "checkpoint", true, STATE_FILE, where, &checkpoint, err)) < 0 ||
            (e = juint(j, "bytes", STATE_FILE, where, &p->pub.bytes, err)) < 0 ||
            (e = jfield(j, "extra", json_type_object, true, STATE_FILE, where, &extra, err)) < 0 ||
            (e = jfield(j, "files", json_type_array, false, STATE_FILE, where, &files, err)) < 0)
                return e;
        if (p->pub.id == 0 || (i > 0 && p->pub.id <= r->points[i - 1].pub.id))
                return corrupt(err, STATE_FILE, where, "id", "must increase from point to point");
        p->pub.time_ms = json_object_get_int64(time_ms);
        if (checkpoint && !(p->pub.checkpoint = strdup(checkpoint)))
                return oom(err);
        if (extra)
                p->pub.extra = json_object_get(extra);
        if (json_object_array_length(files) != r->n_disks)
                return corrupt(err, STATE_FILE, where, "files", "must name one file per disk");
        for (size_t d = 0; d < r->n_disks; d++) {
                json_object *f = json_object_array_get_idx(files, d);
                uint64_t id;
                const char *name = json_object_is_type(f, json_type_string)
                                           ? json_object_get_string(f)
                                           : NULL;
                char key[32];
                snprintf(key, sizeof(key), "files[%zu]", d);
                if (!name || !point_file_parse(name, r->disks[d].name, &id))
                        return corrupt(err, STATE_FILE, where, key,
                                       "must be a name like p<id>-<disk>.qcow2");
                if (!exists_in(r, name))
                        return nst_error_set(err, -ENOENT, "ReplicaCorrupt",
                                             "state.json: field %s.%s names %s, which does not "
                                             "exist in %s", where, key, name, r->dir);
                if (!(p->files[d] = strdup(name)))
                        return oom(err);
        }
        return 0;
}

static int parse_merge(struct nst_rs_replica *r, json_object *merge, struct nst_error *err) {
        uint64_t drop, into;
        int e;
        if ((e = juint(merge, "drop", STATE_FILE, "merge", &drop, err)) < 0 ||
            (e = juint(merge, "into", STATE_FILE, "merge", &into, err)) < 0)
                return e;
        if (r->n_points < 2 || r->points[0].pub.id != drop || r->points[1].pub.id != into)
                return corrupt(err, STATE_FILE, "merge", "drop",
                               "must name the two oldest points");
        r->merging = true;
        return 0;
}

static int parse_boots(struct nst_rs_replica *r, json_object *boots, struct nst_error *err) {
        size_t n = json_object_array_length(boots);
        if (n && !(r->boots = calloc(n, sizeof(*r->boots))))
                return oom(err);
        for (size_t i = 0; i < n; i++) {
                json_object *b = json_object_array_get_idx(boots, i);
                char where[32];
                snprintf(where, sizeof(where), "boots[%zu]", i);
                const char *dir;
                uint64_t point;
                int e;
                if (!json_object_is_type(b, json_type_object))
                        return nst_error_set(err, -EBADMSG, "ReplicaCorrupt",
                                             "state.json: field %s must be an object", where);
                if ((e = jstring(b, "dir", false, STATE_FILE, where, &dir, err)) < 0 ||
                    (e = juint(b, "point", STATE_FILE, where, &point, err)) < 0)
                        return e;
                if (dir[0] != '/')
                        return corrupt(err, STATE_FILE, where, "dir", "must be absolute");
                if (!(r->boots[i].dir = strdup(dir)))
                        return oom(err);
                r->boots[i].point = point;
                r->n_boots++;
        }
        return 0;
}

static int parse_state(struct nst_rs_replica *r, json_object *o, struct nst_error *err) {
        json_object *format, *meta, *disks, *points, *merge, *boots;
        const char *replication;
        int e;
        if ((e = jfield(o, "format", json_type_int, false, STATE_FILE, "", &format, err)) < 0 ||
            (e = jstring(o, "replication", false, STATE_FILE, "", &replication, err)) < 0 ||
            (e = jfield(o, "meta", json_type_object, true, STATE_FILE, "", &meta, err)) < 0 ||
            (e = jfield(o, "disks", json_type_array, false, STATE_FILE, "", &disks, err)) < 0 ||
            (e = jfield(o, "points", json_type_array, false, STATE_FILE, "", &points, err)) < 0 ||
            (e = jfield(o, "merge", json_type_object, true, STATE_FILE, "", &merge, err)) < 0 ||
            (e = jfield(o, "boots", json_type_array, false, STATE_FILE, "", &boots, err)) < 0)
                return e;
        if (json_object_get_int(format) != STATE_FORMAT)
                return corrupt(err, STATE_FILE, "", "format", "is not a format this agent reads");
        if (!(r->replication = strdup(replication)))
                return oom(err);
        r->meta = meta ? json_object_get(meta) : NULL;
        size_t n = json_object_array_length(disks);
        if (n == 0 || n > NST_RS_MAX_DISKS)
                return corrupt(err, STATE_FILE, "", "disks", "must list 1 to 16 disks");
        for (size_t i = 0; i < n; i++, r->n_disks++)
                if ((e = parse_disk(r, json_object_array_get_idx(disks, i), i, err)) < 0)
                        return e;
        n = json_object_array_length(points);
        if (n && !(r->points = calloc(n, sizeof(*r->points))))
                return oom(err);
        for (size_t i = 0; i < n; i++, r->n_points++)
                if ((e = parse_point(r, json_object_array_get_idx(points, i), i, &r->points[i],
                                     err)) < 0) {
                        point_free_fields(&r->points[i]);
                        return e;
                }
        if (merge && (e = parse_merge(r, merge, err)) < 0)
                return e;
        return parse_boots(r, boots, err);
}

/* ---- partial.json ---- */

static int write_partial(const struct nst_rs_replica *r, struct nst_error *err) {
        _cleanup_json_ json_object *o = json_object_new_object();
        json_object *nbd = json_object_new_array();
        if (!o || !nbd) {
                json_object_put(nbd);
                return oom(err);
        }
        json_object_object_add(o, "cycle", json_object_new_string(r->cycle));
        json_object_object_add(o, "base", json_object_new_uint64(latest_id(r)));
        json_object *mark = NULL;
        if (r->has_mark) {
                mark = json_object_new_object();
                json_object_object_add(mark, "disk", json_object_new_int(r->mark_disk));
                json_object_object_add(mark, "offset", json_object_new_uint64(r->mark_offset));
        }
        json_object_object_add(o, "mark", mark);
        json_object_object_add(o, "sockdir", json_object_new_string(r->sockdir));
        for (size_t i = 0; i < r->n_disks; i++) {
                if (r->nbd[i].pid <= 0)
                        continue;
                json_object *e = json_object_new_object();
                json_object_object_add(e, "pid", json_object_new_int(r->nbd[i].pid));
                json_object_object_add(e, "socket", json_object_new_string(r->nbd[i].sock));
                json_object_array_add(nbd, e);
        }
        json_object_object_add(o, "nbd", nbd);
        const char *text = json_object_to_json_string_ext(o, JSON_TEXT_FLAGS);
        bool renamed;
        return text ? write_atomic(r, PARTIAL_FILE, text, &renamed, err) : oom(err);
}

static int parse_partial(json_object *o, struct rs_partial *p, struct nst_error *err) {
        const char *cycle, *sockdir;
        json_object *mark, *nbd;
        int e;
        if ((e = jstring(o, "cycle", false, PARTIAL_FILE, "", &cycle, err)) < 0 ||
            (e = juint(o, "base", PARTIAL_FILE, "", &p->base, err)) < 0 ||
            (e = jfield(o, "mark", json_type_object, true, PARTIAL_FILE, "", &mark, err)) < 0 ||
            (e = jstring(o, "sockdir", false, PARTIAL_FILE, "", &sockdir, err)) < 0 ||
            (e = jfield(o, "nbd", json_type_array, false, PARTIAL_FILE, "", &nbd, err)) < 0)
                return e;
        if (!(p->cycle = strdup(cycle)) || !(p->sockdir = strdup(sockdir)))
                return oom(err);
        if (mark) {
                uint64_t disk;
                if ((e = juint(mark, "disk", PARTIAL_FILE, "mark", &disk, err)) < 0 ||
                    (e = juint(mark, "offset", PARTIAL_FILE, "mark", &p->mark_offset, err)) < 0)
                        return e;
                if (disk > NST_RS_MAX_DISKS)
                        return corrupt(err, PARTIAL_FILE, "mark", "disk", "is out of range");
                p->has_mark = true;
                p->mark_disk = (uint16_t)disk;
        }
        size_t n = json_object_array_length(nbd);
        if (n > NST_RS_MAX_DISKS)
                return corrupt(err, PARTIAL_FILE, "", "nbd", "lists too many processes");
        for (size_t i = 0; i < n; i++, p->n_nbd++) {
                json_object *e1 = json_object_array_get_idx(nbd, i);
                char where[32];
                snprintf(where, sizeof(where), "nbd[%zu]", i);
                uint64_t pid;
                const char *sock;
                if (!json_object_is_type(e1, json_type_object))
                        return nst_error_set(err, -EBADMSG, "ReplicaCorrupt",
                                             "partial.json: field %s must be an object", where);
                if ((e = juint(e1, "pid", PARTIAL_FILE, where, &pid, err)) < 0 ||
                    (e = jstring(e1, "socket", false, PARTIAL_FILE, where, &sock, err)) < 0)
                        return e;
                if (pid > INT32_MAX || strlen(sock) >= SOCK_PATH_MAX)
                        return corrupt(err, PARTIAL_FILE, where, "pid", "is out of range");
                p->pids[i] = (pid_t)pid;
                snprintf(p->socks[i], sizeof(p->socks[i]), "%s", sock);
        }
        return 0;
}

/* 0 and *p filled, -ENOENT when there is no partial.json, or an error. */
static int load_partial(const struct nst_rs_replica *r, struct rs_partial *p,
                        struct nst_error *err) {
        *p = (struct rs_partial){0};
        _cleanup_free_ char *text = NULL;
        int n = read_text(r->dir_fd, r->dir, PARTIAL_FILE, &text, err);
        if (n < 0)
                return n;
        _cleanup_json_ json_object *o = NULL;
        int e = parse_file(PARTIAL_FILE, text, (size_t)n, &o, err);
        if (e == 0)
                e = parse_partial(o, p, err);
        if (e < 0)
                partial_done(p);
        return e;
}

/* Removes partial.json first, then the files it described (either format:
 * one a seed-less replica's first cycle left is raw). */
static int discard_partial(const struct nst_rs_replica *r, struct nst_error *err) {
        unlink_in(r, PARTIAL_FILE);
        for (size_t i = 0; i < r->n_disks; i++) {
                static const char *const ext[] = {"raw", "qcow2"};
                for (size_t k = 0; k < 2; k++) {
                        char name[64];
                        snprintf(name, sizeof(name), "partial-%s.%s", r->disks[i].name, ext[k]);
                        unlink_in(r, name);
                }
        }
        return fsync_dir(r, err);
}

/* ---- object lifetime ---- */

static void replica_free(struct nst_rs_replica *r) {
        if (!r)
                return;
        writer_stop(r);
        for (size_t i = 0; i < NST_RS_MAX_DISKS; i++) {
                nbd_stop(&r->nbd[i]);
                free(r->disks[i].seed);
        }
        for (size_t i = 0; i < r->n_points; i++)
                point_free_fields(&r->points[i]);
        free(r->points);
        for (size_t i = 0; i < r->n_boots; i++)
                free(r->boots[i].dir);
        free(r->boots);
        if (r->meta)
                json_object_put(r->meta);
        if (r->sockdir_tmp)
                rmdir(r->sockdir);
        free(r->sockdir);
        free(r->cycle);
        free(r->replication);
        if (r->dir_fd >= 0)
                close(r->dir_fd);
        free(r->dir);
        free(r);
}
NST_DEFINE_CLEANUP(struct nst_rs_replica, replica_free)

/* mkdir that accepts an existing directory only if it is ours and private:
 * the short socket directories live under /tmp, which everyone can write. */
static int private_dir(const char *path, struct nst_error *err) {
        struct stat st;
        if (mkdir(path, 0700) < 0 && errno != EEXIST)
                return nst_error_set(err, -errno, "StorageError", "cannot create %s: %s", path,
                                     strerror(errno));
        if (lstat(path, &st) < 0)
                return nst_error_set(err, -errno, "StorageError", "%s: %s", path, strerror(errno));
        if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077))
                return nst_error_set(err, -EPERM, "StorageError",
                                     "%s is not a directory private to this user: no qemu-nbd "
                                     "sockets go there",
                                     path);
        return 0;
}

/* Sockets live in dir unless the longest one would not fit in sun_path
 * (the default state_path already does not); then in
 * $TMPDIR/nestor-<uid>/rs-<hash of dir>: the same directory every time the
 * replica is opened, so the one an agent killed with -9 left is taken again
 * instead of piling up. */
static int choose_sockdir(struct nst_rs_replica *r, struct nst_error *err) {
        size_t names = strlen("/nbd-ro-") + NST_RS_DISK_NAME_MAX + strlen(".sock");
        if (strlen(r->dir) + names < SOCK_PATH_MAX) {
                r->sockdir = strdup(r->dir);
                return r->sockdir ? 0 : oom(err);
        }
        const char *tmp = getenv("TMPDIR");
        const char *base = tmp && tmp[0] == '/' ? tmp : "/tmp";
        char parent[PATH_MAX];
        int e = snprintf(parent, sizeof(parent), "%s/nestor-%u", base, (unsigned)geteuid());
        size_t hash_name = strlen("/rs-") + 16;
        if (e < 0 || (size_t)e >= sizeof(parent) || (size_t)e + hash_name + names >= SOCK_PATH_MAX)
                return nst_error_set(err, -ENAMETOOLONG, "StorageError",
                                     "no short directory for qemu-nbd sockets under %s: set "
                                     "TMPDIR to a shorter path",
                                     base);
        if ((e = private_dir(parent, err)) < 0)
                return e;
        if (asprintf(&r->sockdir, "%s/rs-%016" PRIx64, parent, nst_fnv64(NST_FNV64_INIT, r->dir, strlen(r->dir))) < 0) {
                r->sockdir = NULL;
                return oom(err);
        }
        if ((e = private_dir(r->sockdir, err)) < 0)
                return e;
        r->sockdir_tmp = true;
        return 0;
}

static int replica_new(const char *dir, struct nst_rs_replica **ret, struct nst_error *err) {
        _cleanup_(replica_freep) struct nst_rs_replica *r = calloc(1, sizeof(*r));
        if (!r)
                return oom(err);
        r->dir_fd = -1;
        if (!dir || dir[0] != '/')
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "replica directory must be an absolute path");
        if (!(r->dir = strdup(dir)))
                return oom(err);
        size_t len = strlen(r->dir);
        while (len > 1 && r->dir[len - 1] == '/')
                r->dir[--len] = '\0';
        r->dir_fd = open(r->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (r->dir_fd < 0)
                return nst_error_set(err, -errno, errno == ENOENT ? "ReplicaNotFound"
                                                                  : "StorageError",
                                     "%s: %s", r->dir, strerror(errno));
        if (flock(r->dir_fd, LOCK_EX | LOCK_NB) < 0)
                return nst_error_set(err, -EBUSY, "ReplicaBusy",
                                     "%s is already open (by this or another process)", r->dir);
        int e = choose_sockdir(r, err);
        if (e < 0)
                return e;
        *ret = nst_steal(&r);
        return 0;
}

/* ---- create / open / close ---- */

static int check_disk(struct nst_rs_replica *r, const struct nst_rs_disk *in, size_t i,
                      struct nst_error *err) {
        if (!disk_name_valid(in->name))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "disk %zu: name '%.40s' must be 1 to %d letters, digits, "
                                     "'_' or '-'", i, in->name, NST_RS_DISK_NAME_MAX - 1);
        for (size_t j = 0; j < i; j++)
                if (strcmp(r->disks[j].name, in->name) == 0)
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "disk name %s appears twice", in->name);
        if (in->size == 0 || in->size % 512)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "disk %s: size %" PRIu64 " must be a positive multiple "
                                     "of 512", in->name, in->size);
        snprintf(r->disks[i].name, sizeof(r->disks[i].name), "%s", in->name);
        r->disks[i].size = in->size;
        if (!in->seed)
                return 0;
        if (!(r->disks[i].seed = realpath(in->seed, NULL)))
                return nst_error_set(err, -errno, "InvalidInput", "disk %s: seed %s: %s",
                                     in->name, in->seed, strerror(errno));
        uint64_t size;
        int e = image_info(r->disks[i].seed, r->seed_format[i], sizeof(r->seed_format[i]),
                           &size, err);
        if (e < 0)
                return e;
        if (strcmp(r->seed_format[i], "raw") != 0 && strcmp(r->seed_format[i], "qcow2") != 0)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "disk %s: seed %s is %s, not raw or qcow2", in->name,
                                     in->seed, r->seed_format[i]);
        if (size != in->size)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "disk %s: seed %s has %" PRIu64 " bytes, the disk %" PRIu64,
                                     in->name, in->seed, size, in->size);
        return 0;
}

int nst_rs_create(const char *dir, const char *replication, const struct nst_rs_disk *disks,
                  size_t n_disks, json_object *meta, struct nst_rs_replica **ret,
                  struct nst_error *err) {
        if (!dir || dir[0] != '/' || !replication || !replication[0])
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "a replica needs an absolute directory and a replication id");
        if (n_disks == 0 || n_disks > NST_RS_MAX_DISKS)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "a replica has 1 to %d disks, not %zu", NST_RS_MAX_DISKS,
                                     n_disks);
        int e = nst_mkdir_p(dir, 0700);
        if (e < 0)
                return nst_error_set(err, e, "StorageError", "cannot create %s: %s", dir,
                                     strerror(-e));
        _cleanup_(replica_freep) struct nst_rs_replica *r = NULL;
        if ((e = replica_new(dir, &r, err)) < 0)
                return e;
        if (exists_in(r, STATE_FILE))
                return nst_error_set(err, -EEXIST, "ReplicaExists", "%s/%s exists", r->dir,
                                     STATE_FILE);
        for (size_t i = 0; i < n_disks; i++, r->n_disks++)
                if ((e = check_disk(r, &disks[i], i, err)) < 0)
                        return e;
        if (!(r->replication = strdup(replication)))
                return oom(err);
        if (meta && json_object_deep_copy(meta, &r->meta, NULL) < 0)
                return oom(err);
        bool renamed;
        if ((e = write_state_ex(r, &renamed, err)) < 0)
                return e;
        *ret = nst_steal(&r);
        return 0;
}

/* p<last+1>-<disk> files are a commit that did not reach state.json: they
 * become the partial they were (see the crash analysis at the top). */
static int roll_back_commit(struct nst_rs_replica *r, struct nst_error *err) {
        bool any = false;
        for (size_t d = 0; d < r->n_disks; d++) {
                _cleanup_free_ char *name = point_file_name(r, latest_id(r) + 1, d);
                char partial[64];
                if (!name)
                        return oom(err);
                if (!exists_in(r, name))
                        continue;
                partial_name(partial, sizeof(partial), r, d);
                if (renameat(r->dir_fd, name, r->dir_fd, partial) < 0)
                        return nst_error_set(err, -errno, "StorageError", "rename %s/%s: %s",
                                             r->dir, name, strerror(errno));
                any = true;
        }
        return any ? fsync_dir(r, err) : 0;
}

static bool file_listed(const struct nst_rs_replica *r, size_t d, const char *name) {
        for (size_t i = 0; i < r->n_points; i++)
                if (strcmp(r->points[i].files[d], name) == 0)
                        return true;
        return false;
}

/* Point files state.json does not list, left by a merge that finished. */
static int remove_orphans(struct nst_rs_replica *r, struct nst_error *err) {
        int fd = openat(r->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *dh = fd >= 0 ? fdopendir(fd) : NULL;
        if (!dh) {
                if (fd >= 0)
                        close(fd);
                return nst_error_set(err, -errno, "StorageError", "%s: %s", r->dir,
                                     strerror(errno));
        }
        bool any = false;
        struct dirent *de;
        while ((de = readdir(dh))) {
                for (size_t d = 0; d < r->n_disks; d++) {
                        uint64_t id;
                        if (point_file_parse(de->d_name, r->disks[d].name, &id) &&
                            id <= latest_id(r) && !file_listed(r, d, de->d_name)) {
                                unlink_in(r, de->d_name);
                                any = true;
                        }
                }
        }
        closedir(dh);
        return any ? fsync_dir(r, err) : 0;
}

static int finish_merge(struct nst_rs_replica *r, struct nst_error *err);

/* Kills what partial.json says a dead agent left running, drops its
 * sockets, and removes a partial.json that a finished commit outlived. */
static int recover_partial(struct nst_rs_replica *r, struct nst_error *err) {
        struct rs_partial p;
        int e = load_partial(r, &p, err);
        if (e == -ENOENT)
                return 0;
        if (e < 0)
                return e;
        for (size_t i = 0; i < p.n_nbd; i++) {
                kill_stale(p.pids[i], p.socks[i]);
                struct stat st;
                if (lstat(p.socks[i], &st) == 0 && S_ISSOCK(st.st_mode))
                        unlink(p.socks[i]);
        }
        if (strcmp(p.sockdir, r->dir) != 0 && strcmp(p.sockdir, r->sockdir) != 0)
                (void)rmdir(p.sockdir); /* a dead agent's temporary one, if empty */
        bool stale = p.base != latest_id(r);
        partial_done(&p);
        return stale ? discard_partial(r, err) : 0;
}

int nst_rs_open(const char *dir, struct nst_rs_replica **ret, struct nst_error *err) {
        _cleanup_(replica_freep) struct nst_rs_replica *r = NULL;
        int e = replica_new(dir, &r, err);
        if (e < 0)
                return e;
        _cleanup_free_ char *text = NULL;
        int n = read_text(r->dir_fd, r->dir, STATE_FILE, &text, err);
        if (n == -ENOENT)
                return nst_error_set(err, -ENOENT, "ReplicaNotFound", "%s/%s does not exist",
                                     r->dir, STATE_FILE);
        if (n < 0)
                return n;
        _cleanup_json_ json_object *o = NULL;
        if ((e = parse_file(STATE_FILE, text, (size_t)n, &o, err)) < 0 ||
            (e = parse_state(r, o, err)) < 0)
                return e;
        if ((e = roll_back_commit(r, err)) < 0 || (e = recover_partial(r, err)) < 0)
                return e;
        if (r->merging && (e = finish_merge(r, err)) < 0)
                return nst_error_prefix(err, "finishing an interrupted merge in %s", r->dir);
        if ((e = remove_orphans(r, err)) < 0)
                return e;
        *ret = nst_steal(&r);
        return 0;
}

void nst_rs_cycle_abort(struct nst_rs_replica *r, bool keep_partial) {
        if (!r || !r->cycle)
                return;
        writer_stop(r);
        for (size_t i = 0; i < r->n_disks; i++)
                nbd_stop(&r->nbd[i]);
        if (keep_partial)
                (void)write_partial(r, NULL); /* the pids are gone */
        else
                (void)discard_partial(r, NULL);
        free(r->cycle);
        r->cycle = NULL;
        r->has_mark = false;
}

void nst_rs_close(struct nst_rs_replica *r) {
        nst_rs_cycle_abort(r, true);
        replica_free(r);
}

/* Regular files only: the directory holds nothing else of ours. */
static int remove_dir_files(const char *dir, struct nst_error *err) {
        DIR *dh = opendir(dir);
        if (!dh)
                return nst_error_set(err, -errno, "StorageError", "%s: %s", dir, strerror(errno));
        struct dirent *de;
        int e = 0;
        while ((de = readdir(dh))) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                if (unlinkat(dirfd(dh), de->d_name, 0) < 0 && errno != ENOENT && e == 0)
                        e = nst_error_set(err, -errno, "StorageError", "cannot remove %s/%s: %s",
                                          dir, de->d_name, strerror(errno));
        }
        closedir(dh);
        return e;
}

int nst_rs_destroy(struct nst_rs_replica *r, struct nst_error *err) {
        if (!r)
                return 0;
        if (r->n_boots) {
                int e = nst_error_set(err, -EBUSY, "ReplicaBusy",
                                      "%s has %zu boot export(s) (%s): release them first",
                                      r->dir, r->n_boots, r->boots[0].dir);
                nst_rs_close(r);
                return e;
        }
        nst_rs_cycle_abort(r, false);
        _cleanup_free_ char *dir = strdup(r->dir);
        replica_free(r);
        if (!dir)
                return oom(err);
        int e = remove_dir_files(dir, err);
        if (e < 0)
                return e;
        if (rmdir(dir) < 0)
                return nst_error_set(err, -errno, "StorageError", "cannot remove %s: %s", dir,
                                     strerror(errno));
        return 0;
}

/* ---- accessors ---- */

const char *nst_rs_id(const struct nst_rs_replica *r) {
        return r->replication;
}

json_object *nst_rs_meta(const struct nst_rs_replica *r) {
        return r->meta;
}

int nst_rs_set_meta(struct nst_rs_replica *r, json_object *meta, struct nst_error *err) {
        json_object *old = r->meta, *copy = NULL;
        if (meta && json_object_deep_copy(meta, &copy, NULL) < 0)
                return oom(err);
        r->meta = copy;
        bool renamed;
        int e = write_state_ex(r, &renamed, err);
        if (e < 0 && !renamed) {
                if (r->meta)
                        json_object_put(r->meta);
                r->meta = old;
                return e;
        }
        if (old)
                json_object_put(old);
        return e;
}

size_t nst_rs_disk_count(const struct nst_rs_replica *r) {
        return r->n_disks;
}

const struct nst_rs_disk *nst_rs_disk_at(const struct nst_rs_replica *r, size_t i) {
        return i < r->n_disks ? &r->disks[i] : NULL;
}

size_t nst_rs_point_count(const struct nst_rs_replica *r) {
        return r->n_points;
}

const struct nst_rs_point *nst_rs_point_at(const struct nst_rs_replica *r, size_t i) {
        return i < r->n_points ? &r->points[i].pub : NULL;
}

static struct rs_point *point_find(const struct nst_rs_replica *r, uint64_t id) {
        for (size_t i = 0; i < r->n_points; i++)
                if (r->points[i].pub.id == id)
                        return &r->points[i];
        return NULL;
}

const struct nst_rs_point *nst_rs_point_find(const struct nst_rs_replica *r, uint64_t id) {
        struct rs_point *p = point_find(r, id);
        return p ? &p->pub : NULL;
}

uint64_t nst_rs_allocated_bytes(const struct nst_rs_replica *r) {
        int fd = openat(r->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *dh = fd >= 0 ? fdopendir(fd) : NULL;
        if (!dh) {
                if (fd >= 0)
                        close(fd);
                return 0;
        }
        uint64_t total = 0;
        struct dirent *de;
        struct stat st;
        while ((de = readdir(dh)))
                if (fstatat(r->dir_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                    S_ISREG(st.st_mode))
                        total += (uint64_t)st.st_blocks * 512;
        closedir(dh);
        return total;
}

char *nst_rs_point_image(const struct nst_rs_replica *r, uint64_t point_id, unsigned disk) {
        struct rs_point *p = point_find(r, point_id);
        return p && disk < r->n_disks ? path_in(r->dir, p->files[disk]) : NULL;
}

bool nst_rs_cycle_open(const struct nst_rs_replica *r) {
        return r->cycle != NULL;
}

/* ---- cycles ---- */

static bool partial_files_exist(const struct nst_rs_replica *r) {
        for (size_t i = 0; i < r->n_disks; i++) {
                char name[64];
                partial_name(name, sizeof(name), r, i);
                if (!exists_in(r, name))
                        return false;
        }
        return true;
}

/* The partial overlays on the latest point, the seed, or nothing. */
static int create_partials(const struct nst_rs_replica *r, struct nst_error *err) {
        for (size_t i = 0; i < r->n_disks; i++) {
                char name[64];
                partial_name(name, sizeof(name), r, i);
                _cleanup_free_ char *path = path_in(r->dir, name);
                if (!path)
                        return oom(err);
                const char *backing = NULL, *fmt = NULL;
                if (r->n_points) {
                        backing = r->points[r->n_points - 1].files[i];
                        fmt = image_format(backing);
                } else if (r->disks[i].seed) {
                        backing = r->disks[i].seed;
                        fmt = r->seed_format[i];
                }
                int e = backing ? create_overlay(path, backing, fmt, r->disks[i].size, err)
                                : create_sparse(path, r->disks[i].size, err);
                if (e < 0 || (e = fsync_file(path, err)) < 0)
                        return e;
        }
        return fsync_dir(r, err);
}

/* O_DIRECT: a full copy does not go through (and evict) the compute node's
 * page cache, and here it wrote several times faster than buffered writes
 * into freshly allocated page cache. Writes that are not block aligned use
 * a second, buffered descriptor (the kernel keeps the two coherent). */
static int open_direct(struct nst_rs_replica *r, size_t disk, const char *name,
                       struct nst_error *err) {
        struct rs_nbd *n = &r->nbd[disk];
        *n = (struct rs_nbd){.fd = openat(r->dir_fd, name, O_RDWR | O_CLOEXEC)};
        if (n->fd < 0)
                return nst_error_set(err, -errno, "StorageError", "%s/%s: %s", r->dir, name,
                                     strerror(errno));
        n->fd_buffered = n->fd;
        int fd = openat(r->dir_fd, name, O_RDWR | O_CLOEXEC | O_DIRECT);
        if (fd >= 0)
                n->fd = fd; /* else (tmpfs and the like) buffered only */
        n->direct = true;
        n->max_request = NBD_REQUEST_MAX;
        snprintf(n->sock, sizeof(n->sock), "%s/%s", r->dir, name); /* for messages only */
        return 0;
}

static int start_cycle_nbd(struct nst_rs_replica *r, struct nst_error *err) {
        int e = 0;
        for (size_t i = 0; i < r->n_disks && e == 0; i++) {
                char name[64];
                partial_name(name, sizeof(name), r, i);
                _cleanup_free_ char *path = path_in(r->dir, name);
                if (!path)
                        e = oom(err);
                else if (partial_is_raw(r, i))
                        e = open_direct(r, i, name, err);
                else if ((e = nbd_spawn(r, i, "nbd-", path, "qcow2", false, &r->nbd[i],
                                        err)) == 0)
                        r->nbd[i].fd = openat(r->dir_fd, name, O_RDONLY | O_CLOEXEC);
        }
        /* Recorded before any client connects: see the crash analysis. */
        if (e == 0)
                e = write_partial(r, err);
        for (size_t i = 0; i < r->n_disks && e == 0; i++)
                if (!r->nbd[i].direct)
                        e = nbd_attach(&r->nbd[i], r->disks[i].size, err);
        return e;
}

int nst_rs_cycle_begin(struct nst_rs_replica *r, const char *cycle_id,
                       struct nst_rs_resume *ret_resume, struct nst_error *err) {
        if (r->cycle)
                return nst_error_set(err, -EBUSY, "ReplicaBusy",
                                     "replica %s: cycle %s is already open", r->replication,
                                     r->cycle);
        if (!cycle_id || !cycle_id[0] || strlen(cycle_id) > CYCLE_ID_MAX)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "a cycle id has 1 to %d characters", CYCLE_ID_MAX);
        if (r->merging)
                return nst_error_set(err, -EBUSY, "ReplicaBusy",
                                     "replica %s: a merge is unfinished", r->replication);
        struct rs_partial old;
        int e = load_partial(r, &old, err);
        if (e < 0 && e != -ENOENT)
                return e;
        bool resume = e == 0 && strcmp(old.cycle, cycle_id) == 0 && old.base == latest_id(r) &&
                      partial_files_exist(r);
        struct nst_rs_resume res = {.valid = resume};
        if (resume && old.has_mark) {
                res.disk = old.mark_disk;
                res.offset = old.mark_offset;
        }
        partial_done(&old);
        if (!resume && ((e = discard_partial(r, err)) < 0 || (e = create_partials(r, err)) < 0)) {
                (void)discard_partial(r, NULL);
                return e;
        }
        if (!(r->cycle = strdup(cycle_id)))
                return oom(err);
        r->has_mark = resume && (res.disk || res.offset);
        r->mark_disk = res.disk;
        r->mark_offset = res.offset;
        if ((e = start_cycle_nbd(r, err)) < 0 || (e = writer_start(r, err)) < 0) {
                nst_rs_cycle_abort(r, true);
                return e;
        }
        if (ret_resume)
                *ret_resume = res;
        return 0;
}

static int check_range(const struct nst_rs_replica *r, unsigned disk, uint64_t offset,
                       uint64_t length, const char *what, struct nst_error *err) {
        if (!r->cycle)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "replica %s: %s outside a cycle", r->replication, what);
        if (disk >= r->n_disks)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "replica %s: %s to disk %u, it has %zu", r->replication,
                                     what, disk, r->n_disks);
        if (offset > r->disks[disk].size || length > r->disks[disk].size - offset)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "replica %s: %s of %" PRIu64 " bytes at %" PRIu64
                                     " is outside disk %s (%" PRIu64 " bytes)",
                                     r->replication, what, length, offset, r->disks[disk].name,
                                     r->disks[disk].size);
        return 0;
}

/* Writes go through a writer thread per cycle, so receiving the next
 * extents from the network and writing the previous ones overlap. Into
 * qemu-nbd the writer keeps up to WRITE_DEPTH requests in flight per disk
 * (one at a time, each scattered 64 KiB extent waited for its round trip);
 * into a raw partial it calls pwrite(). At most WRITE_QUEUE_MAX bytes wait;
 * zero, mark and commit wait until the queue is empty and every request
 * completed, and report the first write that failed: nothing is
 * acknowledged to the source before its writes are done. */
#define WRITE_QUEUE_MAX (UINT64_C(64) << 20)
#define WRITE_DEPTH 16
#define DIRECT_ALIGN 4096
/* A flush takes longer the more was written since the last one: the page
 * cache qemu-nbd writes an overlay into, and the device's volatile cache
 * behind it and behind the O_DIRECT writes to a raw partial. A syncer
 * thread calls fdatasync() behind the writer every few MiB, so those run
 * while the cycle is still receiving and the flush that acknowledges a
 * mark or the commit has little left: at the end of a 1 GiB full sync it
 * had taken 0.6-0.7 s here (a quarter of the cycle); at the commit of 64
 * MiB of incremental writes 30-37 ms, 18-33 with the syncer
 * (bench_repl_store, paced at 400 MB/s). */
#define SYNC_AHEAD_OVERLAY_BYTES (UINT64_C(8) << 20)
#define SYNC_AHEAD_DIRECT_BYTES (UINT64_C(64) << 20)

struct write_job {
        struct write_job *next;
        struct nst_rs_replica *r;
        unsigned disk;
        unsigned pending;           /* requests in flight for it */
        bool zero;                  /* make the range read as zeroes; no data */
        uint64_t offset;
        uint64_t length;
        char *data;                 /* DIRECT_ALIGN aligned, for O_DIRECT */
        size_t capacity;
};

/* What a queued job holds: its buffer, which may be larger than its data. */
static uint64_t job_queued_bytes(const struct write_job *j) {
        return j->zero ? 0 : j->capacity;
}

static void job_free(struct write_job *j) {
        if (j) {
                free(j->data);
                free(j);
        }
}

/* Finished jobs are kept, with their buffers, for later cycles of any
 * replica: a fresh buffer costs a page fault per 4 KiB touched, which was
 * a third of the target's CPU in a 64 MiB incremental cycle here. Buffers
 * come in power-of-two classes from DIRECT_ALIGN to 4 MiB (above any source's
 * largest extent), so a kept one always fits; larger ones are not kept. At
 * most POOL_KEEP_MAX bytes are kept, and nst_rs_buffers_trim gives them
 * back once unused for a while. */
#define POOL_CLASSES 11 /* 4 KiB << 0 .. 4 KiB << 10 = 4 MiB */
/* As much as the queue holds: when the writer is the slower side (a full
 * sync onto this machine's disk), a smaller pool gave back every buffer
 * beyond it, and the receiver faulted in a fresh one for the next extent. */
#define POOL_KEEP_MAX WRITE_QUEUE_MAX

static struct {
        pthread_mutex_t lock;
        struct write_job *free[POOL_CLASSES];
        uint64_t bytes;
        int64_t last_use_ms;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* The class whose buffers hold length bytes; POOL_CLASSES when none does. */
static unsigned pool_class(uint64_t length) {
        unsigned c = 0;
        while (c < POOL_CLASSES && ((uint64_t)DIRECT_ALIGN << c) < length)
                c++;
        return c;
}

/* A job whose buffer holds length bytes (none for 0): a kept one if any,
 * of a larger class when its own has none (the 512 KiB buffers of a full
 * sync serve the 64 KiB extents of the incremental cycles after it, which
 * would otherwise take fresh memory while the pool is full of them). */
static struct write_job *job_get(uint64_t length) {
        struct write_job *j = NULL;
        unsigned c = pool_class(length);
        if (length && c < POOL_CLASSES) {
                pthread_mutex_lock(&pool.lock);
                for (unsigned k = c; k < POOL_CLASSES && !j; k++)
                        if ((j = pool.free[k])) {
                                pool.free[k] = j->next;
                                pool.bytes -= j->capacity;
                        }
                pool.last_use_ms = nst_now_ms();
                pthread_mutex_unlock(&pool.lock);
                if (j)
                        return j;
        }
        if (!(j = calloc(1, sizeof(*j))))
                return NULL;
        if (length) {
                size_t cap = c < POOL_CLASSES
                                     ? (size_t)DIRECT_ALIGN << c
                                     : (length + DIRECT_ALIGN - 1) / DIRECT_ALIGN * DIRECT_ALIGN;
                if (!(j->data = repl_buf_alloc(cap, DIRECT_ALIGN))) {
                        free(j);
                        return NULL;
                }
                j->capacity = cap;
        }
        return j;
}

/* A job for length bytes at offset of disk: with a buffer unless zero. */
static struct write_job *job_for(unsigned disk, bool zero, uint64_t offset, uint64_t length) {
        struct write_job *j = job_get(zero ? 0 : length);
        if (j) {
                j->disk = disk;
                j->zero = zero;
                j->offset = offset;
                j->length = length;
        }
        return j;
}

/* Back to the pool, or freed when it is full (or j has no buffer). */
static void job_put(struct write_job *j) {
        unsigned c = j ? pool_class(j->capacity) : POOL_CLASSES;
        if (j && j->capacity && c < POOL_CLASSES) {
                pthread_mutex_lock(&pool.lock);
                if (pool.bytes + j->capacity <= POOL_KEEP_MAX) {
                        j->next = pool.free[c];
                        pool.free[c] = j;
                        pool.bytes += j->capacity;
                        j = NULL;
                }
                pthread_mutex_unlock(&pool.lock);
        }
        job_free(j);
}

void nst_rs_buffers_trim(int64_t now_ms, int64_t idle_ms) {
        struct write_job *drop[POOL_CLASSES] = {NULL};
        pthread_mutex_lock(&pool.lock);
        if (pool.bytes && now_ms - pool.last_use_ms >= idle_ms) {
                memcpy(drop, pool.free, sizeof(drop));
                memset(pool.free, 0, sizeof(pool.free));
                pool.bytes = 0;
        }
        pthread_mutex_unlock(&pool.lock);
        for (unsigned c = 0; c < POOL_CLASSES; c++)
                while (drop[c]) {
                        struct write_job *j = drop[c];
                        drop[c] = j->next;
                        job_free(j);
                }
}

static int write_error(struct nst_rs_replica *r, unsigned disk, int e, struct nst_error *err) {
        const char *name = r->disks[disk].name;
        if (e == ENOSPC || e == EDQUOT)
                return nst_error_set(err, -ENOSPC, "InsufficientStorage",
                                     "%s: disk %s: writing the cycle's data: %s", r->dir, name,
                                     strerror(e));
        return nst_error_set(err, -e, "StorageError", "%s: disk %s: writing the cycle's data: %s",
                             r->dir, name, strerror(e));
}

/* Records the first failure of the cycle's writes (under wlock). */
static void record_failure_locked(struct nst_rs_replica *r, unsigned disk, int e) {
        if (e && !r->werrno) {
                r->werrno = e;
                r->wdisk = disk;
        }
}

_Static_assert(NST_RS_MAX_DISKS <= 32, "sync_pending has a bit per disk");

static void sync_request(struct nst_rs_replica *r, unsigned disk) {
        pthread_mutex_lock(&r->wlock);
        r->sync_pending |= UINT32_C(1) << disk;
        pthread_cond_broadcast(&r->scond);
        pthread_mutex_unlock(&r->wlock);
}

static void *syncer_main(void *arg) {
        pthread_setname_np(pthread_self(), "repl-syncer");
        struct nst_rs_replica *r = arg;
        pthread_mutex_lock(&r->wlock);
        for (;;) {
                while (!r->sync_pending && !r->sstop)
                        pthread_cond_wait(&r->scond, &r->wlock);
                uint32_t due = r->sync_pending;
                if (!due)
                        break; /* stopped */
                r->sync_pending = 0;
                r->syncing = true;
                pthread_mutex_unlock(&r->wlock);
                for (unsigned d = 0; d < r->n_disks; d++) {
                        if (!(due & (UINT32_C(1) << d)))
                                continue;
                        /* A flush reports a write error once, to whoever
                         * asks first: this one must be kept. */
                        int e = fdatasync(r->nbd[d].fd) < 0 ? errno : 0;
                        pthread_mutex_lock(&r->wlock);
                        record_failure_locked(r, d, e);
                        pthread_mutex_unlock(&r->wlock);
                }
                pthread_mutex_lock(&r->wlock);
                r->syncing = false;
                pthread_cond_broadcast(&r->scond);
        }
        pthread_mutex_unlock(&r->wlock);
        return NULL;
}

/* Waits until no background sync runs or is due; the first failure of
 * the cycle's writes or syncs. */
static int syncer_quiesce(struct nst_rs_replica *r, struct nst_error *err) {
        if (!r->writer_running)
                return 0;
        pthread_mutex_lock(&r->wlock);
        while (r->syncer_running && (r->sync_pending || r->syncing))
                pthread_cond_wait(&r->scond, &r->wlock);
        int e = r->werrno;
        unsigned disk = r->wdisk;
        pthread_mutex_unlock(&r->wlock);
        return e ? write_error(r, disk, e, err) : 0;
}

/* The job's bytes leave the queue; the first error is kept. */
static void write_job_done(struct write_job *j, int e) {
        struct nst_rs_replica *r = j->r;
        pthread_mutex_lock(&r->wlock);
        record_failure_locked(r, j->disk, e);
        r->wqueued -= job_queued_bytes(j);
        pthread_cond_broadcast(&r->wcond);
        pthread_mutex_unlock(&r->wlock);
        job_put(j);
}

static int write_completed(void *user_data, int *error) {
        struct write_job *j = user_data;
        if (*error && !j->r->wfailed)
                j->r->wfailed = *error;
        if (--j->pending == 0)
                write_job_done(j, j->r->wfailed);
        return 1; /* retire the command */
}

static int pwrite_all(int fd, const char *p, uint64_t len, uint64_t offset) {
        while (len) {
                ssize_t n = pwrite(fd, p, len, (off_t)offset);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n < 0 ? errno : EIO;
                p += n;
                offset += (uint64_t)n;
                len -= (uint64_t)n;
        }
        return 0;
}

/* Holes where the file system can punch them (the replica stays thin),
 * written zeroes where it cannot. */
static int zero_direct(int fd, uint64_t offset, uint64_t len) {
        if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset,
                      (off_t)len) == 0)
                return 0;
        if (errno != EOPNOTSUPP)
                return errno;
        static const char zeroes[64 * 1024];
        while (len) {
                uint64_t n = len < sizeof(zeroes) ? len : sizeof(zeroes);
                int e = pwrite_all(fd, zeroes, n, offset);
                if (e)
                        return e;
                offset += n;
                len -= n;
        }
        return 0;
}

/* Waits until disk's handle has fewer than depth requests in flight. */
static int nbd_settle(struct rs_nbd *n, int64_t depth) {
        while (n->h && nbd_aio_in_flight(n->h) >= depth)
                if (nbd_poll(n->h, -1) < 0)
                        return nbd_get_errno() > 0 ? nbd_get_errno() : EIO;
        return 0;
}

/* Hands j to its disk (the job is freed when its writes complete). */
static void write_job_submit(struct nst_rs_replica *r, struct write_job *j) {
        struct rs_nbd *n = &r->nbd[j->disk];
        if (n->direct) {
                int e;
                if (j->zero) {
                        e = zero_direct(n->fd_buffered, j->offset, j->length);
                } else {
                        /* The aligned middle through O_DIRECT, any unaligned head
                         * and tail buffered; j->data is aligned, so the middle
                         * starts at an aligned address when the head is empty. */
                        uint64_t end = j->offset + j->length;
                        uint64_t a = (j->offset + DIRECT_ALIGN - 1) / DIRECT_ALIGN * DIRECT_ALIGN;
                        uint64_t b = end / DIRECT_ALIGN * DIRECT_ALIGN;
                        if (a != j->offset || b <= a || n->fd == n->fd_buffered)
                                a = b = j->offset; /* all buffered */
                        e = pwrite_all(n->fd, j->data, b - a, a);
                        if (e == 0)
                                e = pwrite_all(n->fd_buffered, j->data + (b - j->offset),
                                               end - b, b);
                        if (e == 0 && (n->unsynced += j->length) >= SYNC_AHEAD_DIRECT_BYTES) {
                                n->unsynced = 0;
                                sync_request(r, j->disk);
                        }
                }
                write_job_done(j, e);
                return;
        }
        j->pending = 1; /* held while submitting, so no completion frees j early */
        for (uint64_t done = 0; done < j->length;) {
                uint64_t chunk = j->length - done < n->max_request ? j->length - done
                                                                   : n->max_request;
                int e = nbd_settle(n, WRITE_DEPTH);
                nbd_completion_callback cb = {.callback = write_completed, .user_data = j};
                j->pending++;
                /* No LIBNBD_CMD_FLAG_NO_HOLE on zeroes: qemu may unmap, which keeps
                 * the replica thin. */
                int64_t cookie = e ? 0
                                 : j->zero ? nbd_aio_zero(n->h, chunk, j->offset + done, cb, 0)
                                           : nbd_aio_pwrite(n->h, j->data + done, chunk,
                                                            j->offset + done, cb, 0);
                if (cookie < 0)
                        e = nbd_get_errno() > 0 ? nbd_get_errno() : EIO;
                if (e) {
                        /* The callback is not called for a request that was not queued. */
                        j->pending--;
                        if (!r->wfailed)
                                r->wfailed = e;
                        break;
                }
                done += chunk;
        }
        if (!j->zero && n->fd >= 0 && (n->unsynced += j->length) >= SYNC_AHEAD_OVERLAY_BYTES) {
                n->unsynced = 0;
                sync_request(r, j->disk);
        }
        if (--j->pending == 0)
                write_job_done(j, r->wfailed);
}

/* Every request of every disk completed. */
static void write_settle_all(struct nst_rs_replica *r) {
        for (size_t i = 0; i < r->n_disks; i++) {
                int e = nbd_settle(&r->nbd[i], 1);
                if (e == 0)
                        continue;
                r->wfailed = r->wfailed ? r->wfailed : e;
                pthread_mutex_lock(&r->wlock);
                record_failure_locked(r, (unsigned)i, e);
                pthread_mutex_unlock(&r->wlock);
        }
}

static void *writer_main(void *arg) {
        pthread_setname_np(pthread_self(), "repl-writer");
        struct nst_rs_replica *r = arg;
        pthread_mutex_lock(&r->wlock);
        for (;;) {
                while (!r->whead && !r->wstop)
                        pthread_cond_wait(&r->wcond, &r->wlock);
                struct write_job *j = r->whead;
                if (!j)
                        break; /* stopped, and everything queued is written */
                r->whead = j->next;
                if (!r->whead)
                        r->wtail = NULL;
                r->wbusy = true;
                int failed = r->werrno;
                pthread_mutex_unlock(&r->wlock);
                /* After a failure the rest is dropped: the cycle fails anyway. */
                if (failed)
                        write_job_done(j, 0);
                else
                        write_job_submit(r, j);
                pthread_mutex_lock(&r->wlock);
                if (!r->whead) {
                        /* Nothing more to send: let what is in flight complete, so
                         * that an empty queue with !wbusy means all written. */
                        pthread_mutex_unlock(&r->wlock);
                        write_settle_all(r);
                        pthread_mutex_lock(&r->wlock);
                }
                r->wbusy = false;
                pthread_cond_broadcast(&r->wcond);
        }
        pthread_mutex_unlock(&r->wlock);
        return NULL;
}

static int writer_start(struct nst_rs_replica *r, struct nst_error *err) {
        pthread_mutex_init(&r->wlock, NULL);
        pthread_cond_init(&r->wcond, NULL);
        pthread_cond_init(&r->scond, NULL);
        r->whead = r->wtail = NULL;
        r->wqueued = 0;
        r->wbusy = r->wstop = r->sstop = r->syncing = false;
        r->sync_pending = 0;
        r->werrno = r->wfailed = 0;
        int e = pthread_create(&r->writer, NULL, writer_main, r);
        if (e == 0) {
                r->writer_running = true;
                if ((e = pthread_create(&r->syncer, NULL, syncer_main, r)) == 0)
                        r->syncer_running = true;
        }
        if (e) {
                if (r->writer_running) {
                        writer_stop(r); /* and destroys the lock */
                } else {
                        pthread_cond_destroy(&r->scond);
                        pthread_cond_destroy(&r->wcond);
                        pthread_mutex_destroy(&r->wlock);
                }
                return nst_error_set(err, -e, "StorageError",
                                     "cannot start the writer threads: %s", strerror(e));
        }
        return 0;
}

/* Waits until every queued write is done; the first that failed. */
static int writer_drain(struct nst_rs_replica *r, struct nst_error *err) {
        if (!r->writer_running)
                return 0;
        pthread_mutex_lock(&r->wlock);
        while (r->whead || r->wbusy)
                pthread_cond_wait(&r->wcond, &r->wlock);
        int e = r->werrno;
        unsigned disk = r->wdisk;
        pthread_mutex_unlock(&r->wlock);
        return e ? write_error(r, disk, e, err) : 0;
}

/* Writes what is queued, then ends the thread. */
static void writer_stop(struct nst_rs_replica *r) {
        if (!r->writer_running)
                return;
        pthread_mutex_lock(&r->wlock);
        r->wstop = true;
        pthread_cond_broadcast(&r->wcond);
        pthread_mutex_unlock(&r->wlock);
        pthread_join(r->writer, NULL);
        r->writer_running = false;
        if (r->syncer_running) {
                pthread_mutex_lock(&r->wlock);
                r->sstop = true;
                pthread_cond_broadcast(&r->scond);
                pthread_mutex_unlock(&r->wlock);
                pthread_join(r->syncer, NULL);
                r->syncer_running = false;
        }
        pthread_cond_destroy(&r->scond);
        pthread_cond_destroy(&r->wcond);
        pthread_mutex_destroy(&r->wlock);
}

/* Queues j, waiting while the queue is full; fails (and frees j) with the
 * first earlier write that failed. */
static int enqueue(struct nst_rs_replica *r, struct write_job *j, struct nst_error *err) {
        uint64_t bytes = job_queued_bytes(j);
        j->r = r;
        j->next = NULL;
        j->pending = 0;
        pthread_mutex_lock(&r->wlock);
        while (r->wqueued + bytes > WRITE_QUEUE_MAX && (r->whead || r->wbusy))
                pthread_cond_wait(&r->wcond, &r->wlock);
        int e = r->werrno;
        unsigned failed_disk = r->wdisk;
        if (!e) {
                if (r->wtail)
                        r->wtail->next = j;
                else
                        r->whead = j;
                r->wtail = j;
                r->wqueued += bytes;
                pthread_cond_broadcast(&r->wcond);
        }
        pthread_mutex_unlock(&r->wlock);
        if (e) {
                job_put(j);
                return write_error(r, failed_disk, e, err);
        }
        return 0;
}

int nst_rs_write_prepare(struct nst_rs_replica *r, unsigned disk, uint64_t offset,
                         uint32_t length, struct nst_rs_wbuf **ret, void **ret_data,
                         struct nst_error *err) {
        int e = check_range(r, disk, offset, length, "write", err);
        if (e < 0)
                return e;
        if (length == 0)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "replica %s: empty write at %" PRIu64, r->replication,
                                     offset);
        struct write_job *j = job_for(disk, false, offset, length);
        if (!j)
                return oom(err);
        *ret = (struct nst_rs_wbuf *)j;
        *ret_data = j->data;
        return 0;
}

int nst_rs_write_queue(struct nst_rs_replica *r, struct nst_rs_wbuf *b, struct nst_error *err) {
        return enqueue(r, (struct write_job *)b, err);
}

void nst_rs_write_cancel(struct nst_rs_wbuf *b) {
        job_put((struct write_job *)b);
}

int nst_rs_write(struct nst_rs_replica *r, unsigned disk, uint64_t offset, const void *buf,
                 uint32_t length, struct nst_error *err) {
        if (length == 0)
                return check_range(r, disk, offset, length, "write", err);
        struct nst_rs_wbuf *b;
        void *data;
        int e = nst_rs_write_prepare(r, disk, offset, length, &b, &data, err);
        if (e < 0)
                return e;
        memcpy(data, buf, length);
        return nst_rs_write_queue(r, b, err);
}

int nst_rs_zero(struct nst_rs_replica *r, unsigned disk, uint64_t offset, uint64_t length,
                struct nst_error *err) {
        int e = check_range(r, disk, offset, length, "zero", err);
        if (e < 0)
                return e;
        if (length == 0)
                return 0;
        struct write_job *j = job_for(disk, true, offset, length);
        if (!j)
                return oom(err);
        /* In the queue, after the writes before it, which it must not overtake. */
        return enqueue(r, j, err);
}

static int flush_all(struct nst_rs_replica *r, struct nst_error *err) {
        int e = writer_drain(r, err);
        if (e < 0 || (e = syncer_quiesce(r, err)) < 0)
                return e;
        for (size_t i = 0; i < r->n_disks; i++) {
                struct rs_nbd *n = &r->nbd[i];
                if (n->direct && fdatasync(n->fd) < 0)
                        return write_error(r, (unsigned)i, errno, err);
                if (!n->direct && nbd_flush(n->h, 0) < 0)
                        return nbd_failed("flush", n->sock, err);
        }
        return 0;
}

int nst_rs_mark(struct nst_rs_replica *r, unsigned disk, uint64_t offset,
                struct nst_error *err) {
        if (!r->cycle)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "replica %s: mark outside a cycle", r->replication);
        /* disk == count marks the end of the last disk. */
        if (disk > r->n_disks || (disk < r->n_disks && offset > r->disks[disk].size))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "replica %s: mark (%u, %" PRIu64 ") is outside the disks",
                                     r->replication, disk, offset);
        int e = flush_all(r, err);
        if (e < 0)
                return e;
        bool had = r->has_mark;
        uint16_t old_disk = r->mark_disk;
        uint64_t old_offset = r->mark_offset;
        r->has_mark = true;
        r->mark_disk = (uint16_t)disk;
        r->mark_offset = offset;
        if ((e = write_partial(r, err)) < 0) {
                r->has_mark = had;
                r->mark_disk = old_disk;
                r->mark_offset = old_offset;
        }
        return e;
}

static int point_copy(const struct nst_rs_point *in, uint64_t id, struct rs_point *out,
                      struct nst_error *err) {
        *out = (struct rs_point){.pub = {.id = id, .time_ms = in->time_ms, .bytes = in->bytes}};
        if (in->checkpoint && !(out->pub.checkpoint = strdup(in->checkpoint)))
                return oom(err);
        if (in->extra && json_object_deep_copy(in->extra, &out->pub.extra, NULL) < 0)
                return oom(err);
        return 0;
}

/* Renames the files of the uncommitted point back to partial names. */
static void unrename(struct nst_rs_replica *r, struct rs_point *p, size_t n) {
        for (size_t d = 0; d < n; d++) {
                char name[64];
                partial_name(name, sizeof(name), r, d);
                (void)renameat(r->dir_fd, p->files[d], r->dir_fd, name);
        }
}

int nst_rs_cycle_commit(struct nst_rs_replica *r, const struct nst_rs_point *p,
                        uint64_t *ret_id, struct nst_error *err) {
        if (!r->cycle)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "replica %s: commit outside a cycle", r->replication);
        int e = flush_all(r, err);
        if (e < 0)
                return e;
        /* From here the cycle is closed; on failure its partial stays for a resume. */
        nst_rs_cycle_abort(r, true);
        for (size_t d = 0; d < r->n_disks; d++) {
                char name[64];
                partial_name(name, sizeof(name), r, d);
                if ((e = fsync_in(r, name, err)) < 0)
                        return e;
        }
        struct rs_point *grown = realloc(r->points, (r->n_points + 1) * sizeof(*grown));
        if (!grown)
                return oom(err);
        r->points = grown;
        struct rs_point *np = &r->points[r->n_points];
        uint64_t id = latest_id(r) + 1;
        if ((e = point_copy(p, id, np, err)) < 0) {
                point_free_fields(np);
                return e;
        }
        size_t renamed_files = 0;
        for (size_t d = 0; d < r->n_disks && e == 0; d++) {
                char name[64];
                partial_name(name, sizeof(name), r, d);
                if (!(np->files[d] = point_file_name(r, id, d)))
                        e = oom(err);
                else if (renameat(r->dir_fd, name, r->dir_fd, np->files[d]) < 0)
                        e = nst_error_set(err, -errno, "StorageError", "rename %s/%s: %s",
                                          r->dir, name, strerror(errno));
                else
                        renamed_files++;
        }
        if (e == 0)
                e = fsync_dir(r, err);
        bool in_place = false;
        if (e == 0) {
                r->n_points++;
                e = write_state_ex(r, &in_place, err);
                if (e < 0 && !in_place)
                        r->n_points--;
        }
        if (e < 0 && !in_place) {
                unrename(r, np, renamed_files);
                point_free_fields(np);
                return e;
        }
        /* The point exists now; partial.json only describes the past. */
        unlink_in(r, PARTIAL_FILE);
        if (e == 0)
                e = fsync_dir(r, err);
        if (ret_id)
                *ret_id = id;
        return e;
}

/* ---- retention ---- */

static int merge_disk(struct nst_rs_replica *r, size_t d, struct nst_error *err) {
        _cleanup_free_ char *base = path_in(r->dir, r->points[0].files[d]);
        _cleanup_free_ char *top = path_in(r->dir, r->points[1].files[d]);
        if (!base || !top)
                return oom(err);
        char out[TOOL_OUT_MAX];
        /* -d: leave top as it is, so that a repeated commit is harmless. */
        const char *commit[] = {NST_QEMU_IMG, "commit", "-q", "-f", "qcow2", "-d", top, NULL};
        int e = qemu_img(commit, COMMIT_TIMEOUT_MS, top, out, sizeof(out), err);
        if (e < 0 || (e = fsync_file(base, err)) < 0)
                return e;
        /* Whatever was on the second point's image now goes on the oldest one's. */
        char partial[64];
        partial_name(partial, sizeof(partial), r, d);
        const char *child_name = r->n_points > 2 ? r->points[2].files[d]
                                 : exists_in(r, partial) ? partial
                                                         : NULL;
        if (!child_name)
                return 0;
        _cleanup_free_ char *child = path_in(r->dir, child_name);
        if (!child)
                return oom(err);
        const char *rebase[] = {NST_QEMU_IMG, "rebase", "-q", "-f", "qcow2", "-u", "-b",
                                r->points[0].files[d], "-F", image_format(r->points[0].files[d]),
                                child, NULL};
        e = qemu_img(rebase, IMG_TIMEOUT_MS, child, out, sizeof(out), err);
        return e < 0 ? e : fsync_file(child, err);
}

/* Steps (2)-(5) of the merge in the crash analysis; safe to repeat. */
static int finish_merge(struct nst_rs_replica *r, struct nst_error *err) {
        int e;
        for (size_t d = 0; d < r->n_disks; d++)
                if ((e = merge_disk(r, d, err)) < 0)
                        return e;
        struct rs_point dropped = r->points[0];
        char *second_files[NST_RS_MAX_DISKS];
        memcpy(second_files, r->points[1].files, sizeof(second_files));
        memcpy(r->points[1].files, dropped.files, sizeof(second_files));
        memmove(&r->points[0], &r->points[1], (r->n_points - 1) * sizeof(*r->points));
        r->n_points--;
        r->merging = false;
        bool in_place;
        e = write_state_ex(r, &in_place, err);
        if (e < 0 && !in_place) {
                memmove(&r->points[1], &r->points[0], r->n_points * sizeof(*r->points));
                r->n_points++;
                r->points[0] = dropped;
                memcpy(r->points[1].files, second_files, sizeof(second_files));
                r->merging = true;
                return e;
        }
        for (size_t d = 0; d < r->n_disks; d++) {
                unlink_in(r, second_files[d]);
                free(second_files[d]);
                dropped.files[d] = NULL; /* now the new oldest point's */
        }
        point_free_fields(&dropped);
        int e2 = fsync_dir(r, err);
        return e < 0 ? e : e2;
}

int nst_rs_prune(struct nst_rs_replica *r, size_t keep, struct nst_error *err) {
        if (keep < 1)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "prune must keep at least one point");
        if (r->cycle)
                return nst_error_set(err, -EBUSY, "ReplicaBusy",
                                     "replica %s: cycle %s is open", r->replication, r->cycle);
        int e;
        if (r->merging && (e = finish_merge(r, err)) < 0)
                return e;
        if (r->n_points > keep && r->n_boots)
                return nst_error_set(err, -EBUSY, "ReplicaBusy",
                                     "replica %s: point %" PRIu64 " is exported for boot in %s",
                                     r->replication, r->boots[0].point, r->boots[0].dir);
        while (r->n_points > keep) {
                bool in_place;
                r->merging = true;
                if ((e = write_state_ex(r, &in_place, err)) < 0) {
                        r->merging = in_place;
                        return e;
                }
                if ((e = finish_merge(r, err)) < 0)
                        return e;
        }
        return 0;
}

/* ---- hashes ---- */

static int hash_blocks(const uint8_t *buf, uint64_t len, uint8_t *out, struct nst_error *err) {
        for (uint64_t off = 0; off < len; off += NST_RS_HASH_BLOCK) {
                uint64_t n = len - off < NST_RS_HASH_BLOCK ? len - off : NST_RS_HASH_BLOCK;
                if (!EVP_Digest(buf + off, n, out, NULL, EVP_sha256(), NULL))
                        return nst_error_set(err, -EIO, "StorageError", "SHA-256 failed");
                out += 32;
        }
        return 0;
}

static int hash_zeroes(uint64_t start, uint64_t end, uint8_t *out, struct nst_error *err) {
        _cleanup_free_ uint8_t *zero = calloc(1, NST_RS_HASH_BLOCK);
        if (!zero)
                return oom(err);
        for (uint64_t off = start; off < end; off += NST_RS_HASH_BLOCK, out += 32) {
                uint64_t n = end - off < NST_RS_HASH_BLOCK ? end - off : NST_RS_HASH_BLOCK;
                int e = hash_blocks(zero, n, out, err);
                if (e < 0)
                        return e;
        }
        return 0;
}

static int hash_through_nbd(struct rs_nbd *n, uint64_t start, uint64_t end, uint8_t *out,
                            struct nst_error *err) {
        uint64_t chunk_max = n->max_request < HASH_READ_MAX ? n->max_request : HASH_READ_MAX;
        chunk_max -= chunk_max % NST_RS_HASH_BLOCK;
        _cleanup_free_ uint8_t *buf = malloc(chunk_max);
        if (!buf)
                return oom(err);
        for (uint64_t off = start; off < end; off += chunk_max) {
                uint64_t len = end - off < chunk_max ? end - off : chunk_max;
                if (nbd_pread(n->h, buf, len, off, 0) < 0)
                        return nbd_failed("read", n->sock, err);
                int e = hash_blocks(buf, len, out, err);
                if (e < 0)
                        return e;
                out += (len + NST_RS_HASH_BLOCK - 1) / NST_RS_HASH_BLOCK * 32;
        }
        return 0;
}

int nst_rs_hashes(struct nst_rs_replica *r, unsigned disk, uint64_t first, uint32_t count,
                  uint8_t *out, struct nst_error *err) {
        if (disk >= r->n_disks)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "replica %s: no disk %u", r->replication, disk);
        uint64_t size = r->disks[disk].size;
        uint64_t blocks = (size + NST_RS_HASH_BLOCK - 1) / NST_RS_HASH_BLOCK;
        if (first > blocks || count > blocks - first)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "replica %s: blocks %" PRIu64 "+%u are outside disk %s "
                                     "(%" PRIu64 " blocks)", r->replication, first, count,
                                     r->disks[disk].name, blocks);
        if (count == 0)
                return 0;
        uint64_t start = first * NST_RS_HASH_BLOCK;
        uint64_t end = (first + count) * NST_RS_HASH_BLOCK;
        if (end > size)
                end = size;
        _cleanup_free_ char *image = NULL;
        const char *fmt = "qcow2";
        if (r->n_points) {
                image = path_in(r->dir, r->points[r->n_points - 1].files[disk]);
                fmt = image_format(r->points[r->n_points - 1].files[disk]);
        } else if (r->disks[disk].seed) {
                image = strdup(r->disks[disk].seed);
                fmt = r->seed_format[disk];
        } else
                return hash_zeroes(start, end, out, err);
        if (!image)
                return oom(err);
        struct rs_nbd n;
        int e = nbd_spawn(r, disk, "nbd-ro-", image, fmt, true, &n, err);
        if (e == 0)
                e = nbd_attach(&n, size, err);
        if (e == 0)
                e = hash_through_nbd(&n, start, end, out, err);
        nbd_stop(&n);
        return e;
}

/* ---- boot exports ---- */

static void boot_paths_free(char **paths, size_t n) {
        if (!paths)
                return;
        for (size_t i = 0; i < n; i++)
                free(paths[i]);
        free(paths);
}

static struct rs_boot *boot_find(const struct nst_rs_replica *r, const char *dest_dir) {
        for (size_t i = 0; i < r->n_boots; i++)
                if (strcmp(r->boots[i].dir, dest_dir) == 0)
                        return &r->boots[i];
        return NULL;
}

static int boot_forget(struct nst_rs_replica *r, struct rs_boot *b, struct nst_error *err) {
        struct rs_boot saved = *b;
        size_t at = (size_t)(b - r->boots);
        memmove(b, b + 1, (r->n_boots - at - 1) * sizeof(*b));
        r->n_boots--;
        bool in_place;
        int e = write_state_ex(r, &in_place, err);
        if (e < 0 && !in_place) {
                memmove(&r->boots[at + 1], &r->boots[at], (r->n_boots - at) * sizeof(*b));
                r->boots[at] = saved;
                r->n_boots++;
                return e;
        }
        free(saved.dir);
        return e;
}

static int boot_paths(const struct nst_rs_replica *r, const char *dest_dir, char ***ret,
                      struct nst_error *err) {
        char **paths = calloc(r->n_disks + 1, sizeof(*paths));
        if (!paths)
                return oom(err);
        for (size_t i = 0; i < r->n_disks; i++)
                if (asprintf(&paths[i], "%s/%s.qcow2", dest_dir, r->disks[i].name) < 0) {
                        paths[i] = NULL;
                        boot_paths_free(paths, i);
                        return oom(err);
                }
        *ret = paths;
        return 0;
}

int nst_rs_export_for_boot(struct nst_rs_replica *r, uint64_t point_id, const char *dest_dir,
                           char ***ret_paths, struct nst_error *err) {
        struct rs_point *p = point_find(r, point_id);
        if (!p)
                return nst_error_set(err, -ENOENT, "InvalidInput",
                                     "replica %s has no point %" PRIu64, r->replication,
                                     point_id);
        if (!dest_dir || dest_dir[0] != '/')
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "boot export directory must be an absolute path");
        if (boot_find(r, dest_dir))
                return nst_error_set(err, -EBUSY, "ReplicaBusy", "%s is already a boot export",
                                     dest_dir);
        if (r->merging) /* the merge may be about to drop this very point */
                return nst_error_set(err, -EBUSY, "ReplicaBusy",
                                     "replica %s: a merge is unfinished", r->replication);
        char **paths = NULL;
        int e = boot_paths(r, dest_dir, &paths, err);
        if (e < 0)
                return e;
        for (size_t i = 0; i < r->n_disks && e == 0; i++)
                if (access(paths[i], F_OK) == 0)
                        e = nst_error_set(err, -EEXIST, "InvalidInput", "%s exists", paths[i]);
        _cleanup_free_ char *real_dir = e == 0 ? realpath(r->dir, NULL) : NULL;
        if (e == 0 && !real_dir)
                e = nst_error_set(err, -errno, "StorageError", "%s: %s", r->dir, strerror(errno));
        if (e == 0 && (e = nst_mkdir_p(dest_dir, 0700)) < 0)
                e = nst_error_set(err, e, "StorageError", "cannot create %s: %s", dest_dir,
                                  strerror(-e));
        struct rs_boot *grown = e == 0 ? realloc(r->boots, (r->n_boots + 1) * sizeof(*grown))
                                       : NULL;
        if (e == 0 && !grown)
                e = oom(err);
        if (e < 0) {
                boot_paths_free(paths, r->n_disks);
                return e;
        }
        r->boots = grown;
        /* Recorded before the files exist, so that a crash leaves a record
         * (which blocks pruning) rather than unrecorded readers of the chain. */
        struct rs_boot *b = &r->boots[r->n_boots];
        *b = (struct rs_boot){.dir = strdup(dest_dir), .point = point_id};
        bool in_place = false;
        if (!b->dir)
                e = oom(err);
        else {
                r->n_boots++;
                e = write_state_ex(r, &in_place, err);
                if (e < 0 && !in_place) {
                        r->n_boots--;
                        free(b->dir);
                }
        }
        for (size_t i = 0; i < r->n_disks && e == 0; i++) {
                _cleanup_free_ char *backing = path_in(real_dir, p->files[i]);
                e = backing ? create_overlay(paths[i], backing, image_format(backing),
                                            r->disks[i].size, err)
                            : oom(err);
        }
        if (e < 0) {
                if (in_place) {
                        for (size_t i = 0; i < r->n_disks; i++)
                                unlink(paths[i]);
                        (void)boot_forget(r, boot_find(r, dest_dir), NULL);
                }
                boot_paths_free(paths, r->n_disks);
                return e;
        }
        *ret_paths = paths;
        return 0;
}

int nst_rs_release_boot(struct nst_rs_replica *r, const char *dest_dir, struct nst_error *err) {
        struct rs_boot *b = dest_dir ? boot_find(r, dest_dir) : NULL;
        if (!b)
                return nst_error_set(err, -ENOENT, "InvalidInput",
                                     "replica %s has no boot export in %s", r->replication,
                                     dest_dir ? dest_dir : "(null)");
        char **paths = NULL;
        int e = boot_paths(r, dest_dir, &paths, err);
        if (e < 0)
                return e;
        for (size_t i = 0; i < r->n_disks && e == 0; i++)
                if (unlink(paths[i]) < 0 && errno != ENOENT)
                        e = nst_error_set(err, -errno, "StorageError", "cannot remove %s: %s",
                                          paths[i], strerror(errno));
        boot_paths_free(paths, r->n_disks);
        return e < 0 ? e : boot_forget(r, b, err);
}
