#include "plugins/libvirt/disks.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <json.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/clock.h"
#include "agent/fs_util.h"
#include "messages/json_util.h"

extern char **environ;

#define QEMU_IMG_TIMEOUT_MS (10 * 60 * 1000)
#define QEMU_IMG_OUTPUT_MAX (256 * 1024)
#define MAX_BACKING_CHAIN 16

/* Formats a base image may have. The rest (luks, network protocols, ...)
 * are nothing a lab guest boots from and only widen what qemu-img parses. */
static const char *const base_formats[] = {"qcow2", "raw", "vmdk", "vdi", "vhdx", "vpc", NULL};

int nst_run(const char *const argv[], char *out, size_t out_size, int64_t timeout_ms,
            int *ret_status, struct nst_error *err) {
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) < 0)
                return nst_error_set(err, -errno, "StorageError", "%s: pipe: %s", argv[0],
                                     strerror(errno));
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t at;
        posix_spawn_file_actions_init(&fa);
        posix_spawnattr_init(&at);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
        posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
        /* The agent's sockets and files are not the child's business. */
        posix_spawn_file_actions_addclosefrom_np(&fa, 3);
        /* The agent blocks its signals for sigwait(); the child must not
         * inherit that, nor ignored signals. */
        sigset_t none, all;
        sigemptyset(&none);
        sigfillset(&all);
        posix_spawnattr_setsigmask(&at, &none);
        posix_spawnattr_setsigdefault(&at, &all);
        posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        pid_t pid;
        int r = posix_spawn(&pid, argv[0], &fa, &at, (char *const *)argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&at);
        close(fds[1]);
        if (r != 0) {
                close(fds[0]);
                return nst_error_set(err, -r, "StorageError", "cannot run %s: %s", argv[0],
                                     strerror(r));
        }
        size_t n = 0;
        bool killed = false;
        int64_t deadline = nst_now_ms() + timeout_ms;
        for (;;) {
                int64_t left = deadline - nst_now_ms();
                if (left <= 0 && !killed) {
                        kill(pid, SIGKILL);
                        killed = true;
                }
                struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
                int pr = poll(&pfd, 1, killed ? 1000 : (int)(left > 1000 ? 1000 : left));
                if (pr < 0 && errno != EINTR)
                        break;
                if (pr <= 0)
                        continue;
                char buf[4096];
                ssize_t got = read(fds[0], buf, sizeof(buf));
                if (got < 0 && errno == EINTR)
                        continue;
                if (got <= 0)
                        break;
                size_t take = (size_t)got;
                if (n + take > out_size - 1)
                        take = out_size - 1 - n;
                memcpy(out + n, buf, take);
                n += take;
        }
        close(fds[0]);
        out[n] = '\0';
        int status;
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return nst_error_set(err, -errno, "StorageError", "waitpid %s: %s",
                                             argv[0], strerror(errno));
        if (killed)
                return nst_error_set(err, -ETIMEDOUT, "StorageError",
                                     "%s did not finish within %lld s and was killed", argv[0],
                                     (long long)(timeout_ms / 1000));
        *ret_status = status;
        return 0;
}

/* Runs qemu-img; a non-zero exit is a StorageError quoting its output. */
static int qemu_img(const char *const argv[], char *out, size_t out_size, const char *what,
                    struct nst_error *err) {
        int status = 0;
        int r = nst_run(argv, out, out_size, QEMU_IMG_TIMEOUT_MS, &status, err);
        if (r < 0)
                return r;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                return 0;
        size_t len = strlen(out);
        while (len && (out[len - 1] == '\n' || out[len - 1] == ' '))
                out[--len] = '\0';
        return nst_error_set(err, -EIO, "StorageError", "%s: qemu-img failed (%s %d): %.400s",
                             what, WIFEXITED(status) ? "exit status" : "signal",
                             WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), out);
}

bool nst_path_inside(const char *real, const char *const *dirs, size_t n_dirs) {
        for (size_t d = 0; d < n_dirs; d++) {
                _cleanup_free_ char *dir = realpath(dirs[d], NULL);
                if (!dir)
                        continue;
                size_t len = strlen(dir);
                if (strcmp(dir, "/") == 0 ||
                    (strncmp(real, dir, len) == 0 && (real[len] == '/' || real[len] == '\0')))
                        return true;
        }
        return false;
}

static bool is_uuid(const char *s) {
        if (strlen(s) != 36)
                return false;
        for (int i = 0; i < 36; i++) {
                bool dash = i == 8 || i == 13 || i == 18 || i == 23;
                if (dash ? s[i] != '-'
                         : !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        }
        return true;
}

int nst_instance_dir(char *buf, size_t size, const char *instances_path, const char *uuid) {
        if (!is_uuid(uuid) || instances_path[0] != '/')
                return -EINVAL;
        if ((size_t)snprintf(buf, size, "%s/%s", instances_path, uuid) >= size)
                return -ENAMETOOLONG;
        return 0;
}

/* One base image: resolve, check the place, inspect the chain. */
static int plan_one(const char *qemu_img_path, const struct nst_disk_spec *d, size_t idx,
                    const char *const *dirs, size_t n_dirs, struct nst_disk_source *src,
                    char *out, struct nst_error *err) {
        src->base = realpath(d->image, NULL);
        struct stat st;
        if (!src->base || stat(src->base, &st) < 0)
                return nst_error_set(err, -ENOENT, "ImageNotFound", "spec.disks[%zu].image: %s: %s",
                                     idx, d->image, strerror(errno));
        if (!S_ISREG(st.st_mode))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "spec.disks[%zu].image: %s is not a regular file", idx,
                                     d->image);
        if (!nst_path_inside(src->base, dirs, n_dirs))
                return nst_error_set(err, -EPERM, "InvalidInput",
                                     "spec.disks[%zu].image: %s is outside the allowed image "
                                     "directories",
                                     idx, d->image);
        const char *argv[] = {qemu_img_path, "info", "--output=json", "--backing-chain",
                              src->base, NULL};
        char what[64];
        snprintf(what, sizeof(what), "spec.disks[%zu].image", idx);
        int r = qemu_img(argv, out, QEMU_IMG_OUTPUT_MAX, what, err);
        if (r < 0)
                return r;
        _cleanup_json_ json_object *chain = NULL;
        struct nst_error perr = NST_ERROR_INIT;
        if (nst_json_parse(out, strlen(out), &chain, &perr) < 0 ||
            !json_object_is_type(chain, json_type_array) || json_object_array_length(chain) == 0)
                return nst_error_set(err, -EIO, "StorageError",
                                     "%s: unexpected qemu-img info output", what);
        size_t n = json_object_array_length(chain);
        if (n > MAX_BACKING_CHAIN)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s: backing chain longer than %d images", what,
                                     MAX_BACKING_CHAIN);
        for (size_t i = 0; i < n; i++) {
                json_object *img = json_object_array_get_idx(chain, i), *v;
                const char *file = json_object_object_get_ex(img, "filename", &v)
                                           ? json_object_get_string(v)
                                           : NULL;
                const char *fmt = json_object_object_get_ex(img, "format", &v)
                                          ? json_object_get_string(v)
                                          : NULL;
                _cleanup_free_ char *real = file ? realpath(file, NULL) : NULL;
                if (!real || !nst_path_inside(real, dirs, n_dirs))
                        return nst_error_set(err, -EPERM, "InvalidInput",
                                             "%s: %s has a backing file outside the allowed "
                                             "image directories (%.200s)",
                                             what, d->image, file ? file : "?");
                bool known = false;
                for (size_t f = 0; fmt && base_formats[f] && !known; f++)
                        known = strcmp(fmt, base_formats[f]) == 0;
                if (!known)
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "%s: unsupported image format '%.32s' (expected "
                                             "qcow2, raw, vmdk, vdi, vhdx or vpc)",
                                             what, fmt ? fmt : "?");
                if (i == 0) {
                        snprintf(src->format, sizeof(src->format), "%s", fmt);
                        if (json_object_object_get_ex(img, "virtual-size", &v))
                                src->base_bytes = (uint64_t)json_object_get_int64(v);
                }
        }
        if (d->size_gb && (d->size_gb << 30) < src->base_bytes)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "spec.disks[%zu].size_gb: %llu GiB is smaller than the "
                                     "image (%llu bytes)",
                                     idx, (unsigned long long)d->size_gb,
                                     (unsigned long long)src->base_bytes);
        return 0;
}

int nst_disks_plan(const char *qemu_img_path, const struct nst_guest_spec *spec,
                   const char *const *dirs, size_t n_dirs, struct nst_disk_plan *ret,
                   struct nst_error *err) {
        struct nst_disk_plan plan = {0};
        if (spec->n_disks && !(plan.disks = calloc(spec->n_disks, sizeof(*plan.disks))))
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        plan.n = spec->n_disks;
        _cleanup_free_ char *out = NULL;
        int r = 0;
        for (size_t i = 0; i < spec->n_disks && r == 0; i++) {
                if (!spec->disks[i].image)
                        continue;
                if (!out && !(out = malloc(QEMU_IMG_OUTPUT_MAX))) {
                        r = nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
                        break;
                }
                r = plan_one(qemu_img_path, &spec->disks[i], i, dirs, n_dirs, &plan.disks[i],
                             out, err);
        }
        if (r < 0) {
                nst_disk_plan_done(&plan);
                return r;
        }
        *ret = plan;
        return 0;
}

void nst_disk_plan_done(struct nst_disk_plan *plan) {
        for (size_t i = 0; i < plan->n; i++)
                free(plan->disks[i].base);
        free(plan->disks);
        plan->disks = NULL;
        plan->n = 0;
}

int nst_instance_dir_create(const char *instances_path, const char *uuid, struct nst_error *err) {
        char dir[4096];
        int r = nst_instance_dir(dir, sizeof(dir), instances_path, uuid);
        if (r < 0)
                return nst_error_set(err, r, "InvalidInput", "bad instance directory for %s",
                                     uuid);
        /* QEMU runs as another user (libvirt-qemu) and must traverse to the disks. */
        if ((r = nst_mkdir_p(instances_path, 0755)) < 0)
                return nst_error_set(err, r, "StorageError", "cannot create %s: %s",
                                     instances_path, strerror(-r));
        if (mkdir(dir, 0711) < 0) {
                if (errno == EEXIST)
                        return nst_error_set(err, -EEXIST, "InstanceExists",
                                             "instance directory %s already exists (left by "
                                             "an earlier attempt? destroy %s removes it)",
                                             dir, uuid);
                return nst_error_set(err, -errno, "StorageError", "cannot create %s: %s", dir,
                                     strerror(errno));
        }
        return 0;
}

bool nst_instance_dir_exists(const char *instances_path, const char *uuid) {
        char dir[4096];
        struct stat st;
        return nst_instance_dir(dir, sizeof(dir), instances_path, uuid) == 0 &&
               lstat(dir, &st) == 0;
}

int nst_disks_create(const char *qemu_img_path, const char *instances_path,
                     const struct nst_guest_spec *spec, const struct nst_disk_plan *plan,
                     struct nst_error *err) {
        char dir[4096];
        int r = nst_instance_dir(dir, sizeof(dir), instances_path, spec->uuid);
        if (r < 0)
                return nst_error_set(err, r, "InvalidInput", "bad instance directory for %s",
                                     spec->uuid);
        char out[4096];
        for (size_t i = 0; i < spec->n_disks; i++) {
                const struct nst_disk_spec *d = &spec->disks[i];
                const struct nst_disk_source *src = i < plan->n ? &plan->disks[i] : NULL;
                char path[4200], size[32] = "", what[48];
                snprintf(path, sizeof(path), "%s/disk%zu.qcow2", dir, i);
                snprintf(what, sizeof(what), "spec.disks[%zu]", i);
                if (d->size_gb)
                        snprintf(size, sizeof(size), "%lluG", (unsigned long long)d->size_gb);
                if (d->image && !(src && src->base))
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "%s: base image was not checked", what);
                if (d->image) {
                        /* The resolved path: a symlink swapped after the check
                         * cannot redirect the overlay. */
                        const char *argv[] = {qemu_img_path, "create", "-q", "-f", "qcow2",
                                              "-F", src->format, "-b", src->base, path,
                                              size[0] ? size : NULL, NULL};
                        r = qemu_img(argv, out, sizeof(out), what, err);
                } else {
                        const char *argv[] = {qemu_img_path, "create", "-q", "-f", "qcow2",
                                              path, size, NULL};
                        r = qemu_img(argv, out, sizeof(out), what, err);
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

int nst_instance_dir_remove(const char *instances_path, const char *uuid, struct nst_error *err) {
        char dir[4096];
        int r = nst_instance_dir(dir, sizeof(dir), instances_path, uuid);
        if (r < 0)
                return nst_error_set(err, r, "InvalidInput", "bad instance directory for %s",
                                     uuid);
        struct stat st;
        if (lstat(dir, &st) < 0 && errno == ENOENT)
                return 0;
        /* Depth first, never following a link, never leaving the file system. */
        if (nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) != 0 &&
            errno != ENOENT)
                return nst_error_set(err, -errno, "StorageError", "cannot remove %s: %s", dir,
                                     strerror(errno));
        if (lstat(dir, &st) == 0)
                return nst_error_set(err, -ENOTEMPTY, "StorageError",
                                     "cannot remove %s completely", dir);
        return 0;
}
