/* Instance files: the directory <instances_path>/<uuid>/ and the qcow2 disks
 * in it (disk<N>.qcow2, named as domain_xml.c refers to them), made with
 * qemu-img through posix_spawn with an argument vector (never a shell).
 *
 * A base image must resolve (symlinks followed) to a file inside one of the
 * allowed image directories, and so must every image of its backing chain,
 * so that an image cannot smuggle in a file the spec could not name. */
#ifndef NESTOR_PLUGINS_LIBVIRT_DISKS_H
#define NESTOR_PLUGINS_LIBVIRT_DISKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "messages/error.h"
#include "plugins/libvirt/guest_spec.h"

/* What a spec's disk will be made from, found before anything is created. */
struct nst_disk_source {
        char *base;            /* resolved base image, NULL for a new empty disk */
        char format[16];       /* the base's format (qemu-img info) */
        uint64_t base_bytes;   /* its virtual size */
};

struct nst_disk_plan {
        struct nst_disk_source *disks; /* one per spec disk */
        size_t n;
};

/* Resolves and inspects every base image (qemu-img info): ImageNotFound for
 * a missing file, InvalidInput for one outside dirs, with a backing file
 * outside dirs, in an unsupported format, or larger than the disk's
 * size_gb. Fills *ret (release with nst_disk_plan_done). */
int nst_disks_plan(const char *qemu_img, const struct nst_guest_spec *spec,
                   const char *const *dirs, size_t n_dirs, struct nst_disk_plan *ret,
                   struct nst_error *err);
void nst_disk_plan_done(struct nst_disk_plan *plan);

/* True when `real` (an absolute resolved path) is dir itself or below it,
 * for one of the resolved dirs: a prefix check on a directory boundary. */
bool nst_path_inside(const char *real, const char *const *dirs, size_t n_dirs);

/* "<instances_path>/<uuid>" into buf. -ENAMETOOLONG, -EINVAL (not a uuid). */
int nst_instance_dir(char *buf, size_t size, const char *instances_path, const char *uuid);

/* Creates instances_path (if needed) and the instance directory, which must
 * not exist yet (InstanceExists). */
int nst_instance_dir_create(const char *instances_path, const char *uuid, struct nst_error *err);
bool nst_instance_dir_exists(const char *instances_path, const char *uuid);

/* Creates the disks of spec in the instance directory. On failure the disks
 * made so far are left to nst_instance_dir_remove. Class StorageError. */
int nst_disks_create(const char *qemu_img, const char *instances_path,
                     const struct nst_guest_spec *spec, const struct nst_disk_plan *plan,
                     struct nst_error *err);

/* Removes the instance directory and everything in it, without following
 * symbolic links. A directory that does not exist is not an error. */
int nst_instance_dir_remove(const char *instances_path, const char *uuid, struct nst_error *err);

/* Where Debian installs qemu-img (the replication plugin's images). */
#define NST_QEMU_IMG "/usr/bin/qemu-img"

/* Runs argv[0] (an absolute path) with argv, stdin from /dev/null, stdout
 * and stderr into out (NUL-terminated, cut at out_size - 1; the rest is
 * read and dropped), no other descriptors, default signal handling. Killed
 * after timeout_ms. *ret_status: the wait status. */
int nst_run(const char *const argv[], char *out, size_t out_size, int64_t timeout_ms,
            int *ret_status, struct nst_error *err);

#endif
