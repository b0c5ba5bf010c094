/* Tests of the target's point store (repl_store.c) with the real qemu-img,
 * qemu-nbd and qemu-io: content of every point is compared byte for byte
 * with a model kept in memory, thinness is read from `qemu-img map`, and
 * crashes are simulated by leaving the files a dead agent would leave. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json.h>
#include <openssl/sha.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/clock.h"
#include "messages/error.h"
#include "plugins/libvirt/disks.h"
#include "plugins/replication/repl_store.h"

#define MIB (UINT64_C(1) << 20)
#define DISK_SIZE (8 * MIB)
#define QEMU_IMG "/usr/bin/qemu-img"
#define QEMU_IO "/usr/bin/qemu-io"
#define QEMU_NBD "/usr/bin/qemu-nbd"

struct fixture {
        char root[64];
        char dir[256];    /* the replica */
        char seed[128];   /* qcow2 seed of vda */
        uint8_t *model[2]; /* what the latest point should read as, per disk */
        char sockparent[128]; /* where short socket directories go (test_long_directory) */
};

/* Entries of dir besides . and .. (-1 when it cannot be read). */
static int count_entries(const char *dir) {
        DIR *d = opendir(dir);
        if (!d)
                return -1;
        int n = 0;
        for (struct dirent *e; (e = readdir(d));)
                n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
        closedir(d);
        return n;
}

/* ---- helpers ---- */

static void run_ok(const char *const argv[]) {
        char out[4096];
        int status = -1;
        struct nst_error err = NST_ERROR_INIT;
        int r = nst_run(argv, out, sizeof(out), 60000, &status, &err);
        if (r < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                fail_msg("%s %s failed: %s %s", argv[0], argv[1], err.message, out);
}

static void run_capture(const char *const argv[], char *out, size_t size) {
        int status = -1;
        struct nst_error err = NST_ERROR_INIT;
        int r = nst_run(argv, out, size, 60000, &status, &err);
        if (r < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                fail_msg("%s %s failed: %s %s", argv[0], argv[1], err.message, out);
}

static void fill(uint8_t *model, uint64_t off, uint64_t len, int pattern) {
        memset(model + off, pattern, len);
}

/* qemu-io's "write -P": the way the seed gets known content. */
static void qemu_io_write(const char *file, int pattern, uint64_t off, uint64_t len) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "write -P 0x%02x %" PRIu64 " %" PRIu64, pattern, off, len);
        const char *argv[] = {QEMU_IO, "-f", "qcow2", "-c", cmd, file, NULL};
        run_ok(argv);
}

/* The full content of an image, through qemu-img convert to raw. */
static uint8_t *read_image(const struct fixture *f, const char *image, uint64_t size) {
        char raw[192];
        snprintf(raw, sizeof(raw), "%s/read.raw", f->root);
        const char *argv[] = {QEMU_IMG, "convert", "-U", "-O", "raw", image, raw, NULL};
        run_ok(argv);
        FILE *fp = fopen(raw, "rb");
        assert_non_null(fp);
        uint8_t *buf = malloc(size + 1);
        assert_non_null(buf);
        assert_int_equal(fread(buf, 1, size + 1, fp), size);
        fclose(fp);
        unlink(raw);
        return buf;
}

static void assert_image_equals(const struct fixture *f, const char *image, const uint8_t *model,
                                uint64_t size) {
        uint8_t *got = read_image(f, image, size);
        for (uint64_t i = 0; i < size; i++)
                if (got[i] != model[i]) {
                        uint8_t g = got[i];
                        free(got);
                        fail_msg("%s: byte %" PRIu64 " is 0x%02x, expected 0x%02x", image, i, g,
                                 model[i]);
                }
        free(got);
}

static void assert_point_equals(const struct fixture *f, struct nst_rs_replica *r, uint64_t id,
                                unsigned disk, const uint8_t *model) {
        char *image = nst_rs_point_image(r, id, disk);
        assert_non_null(image);
        assert_image_equals(f, image, model, DISK_SIZE);
        free(image);
}

/* No byte of [start, end) of image's top layer is allocated data. */
static void assert_no_data(const char *image, uint64_t start, uint64_t end) {
        static char out[65536];
        const char *argv[] = {QEMU_IMG, "map", "-U", "--output=json", image, NULL};
        run_capture(argv, out, sizeof(out));
        json_object *map = json_tokener_parse(out);
        assert_non_null(map);
        bool covered = false;
        for (size_t i = 0; i < json_object_array_length(map); i++) {
                json_object *e = json_object_array_get_idx(map, i), *v;
                json_object_object_get_ex(e, "start", &v);
                uint64_t s = (uint64_t)json_object_get_int64(v);
                json_object_object_get_ex(e, "length", &v);
                uint64_t l = (uint64_t)json_object_get_int64(v);
                json_object_object_get_ex(e, "depth", &v);
                int depth = json_object_get_int(v);
                json_object_object_get_ex(e, "data", &v);
                bool data = json_object_get_boolean(v);
                if (s + l <= start || s >= end)
                        continue;
                covered = true;
                if (depth == 0 && data)
                        fail_msg("%s: %" PRIu64 "+%" PRIu64 " holds data: %s", image, s, l, out);
        }
        json_object_put(map);
        assert_true(covered);
}

static struct nst_rs_replica *create_two(struct fixture *f, bool with_seed) {
        struct nst_rs_disk disks[2] = {{.name = "vda", .size = DISK_SIZE},
                                       {.name = "vdb", .size = DISK_SIZE}};
        if (with_seed)
                disks[0].seed = f->seed;
        json_object *meta = json_object_new_object();
        json_object_object_add(meta, "source_host", json_object_new_string("node-a"));
        struct nst_rs_replica *r = NULL;
        struct nst_error err = NST_ERROR_INIT;
        int e = nst_rs_create(f->dir, "repl-1", disks, 2, meta, &r, &err);
        json_object_put(meta);
        if (e < 0)
                fail_msg("create: %s: %s", err.cls, err.message);
        return r;
}

static struct nst_rs_replica *reopen(struct fixture *f, struct nst_rs_replica *r) {
        nst_rs_close(r);
        struct nst_error err = NST_ERROR_INIT;
        r = NULL;
        if (nst_rs_open(f->dir, &r, &err) < 0)
                fail_msg("open: %s: %s", err.cls, err.message);
        return r;
}

static void begin(struct nst_rs_replica *r, const char *cycle, struct nst_rs_resume *res) {
        struct nst_error err = NST_ERROR_INIT;
        struct nst_rs_resume dummy;
        if (nst_rs_cycle_begin(r, cycle, res ? res : &dummy, &err) < 0)
                fail_msg("begin %s: %s: %s", cycle, err.cls, err.message);
}

static void put(struct fixture *f, struct nst_rs_replica *r, unsigned disk, uint64_t off,
                uint64_t len, int pattern) {
        uint8_t *buf = malloc(len);
        assert_non_null(buf);
        memset(buf, pattern, len);
        struct nst_error err = NST_ERROR_INIT;
        if (nst_rs_write(r, disk, off, buf, (uint32_t)len, &err) < 0)
                fail_msg("write: %s", err.message);
        free(buf);
        fill(f->model[disk], off, len, pattern);
}

static void zero(struct fixture *f, struct nst_rs_replica *r, unsigned disk, uint64_t off,
                 uint64_t len) {
        struct nst_error err = NST_ERROR_INIT;
        if (nst_rs_zero(r, disk, off, len, &err) < 0)
                fail_msg("zero: %s", err.message);
        fill(f->model[disk], off, len, 0);
}

static uint64_t commit(struct nst_rs_replica *r, const char *checkpoint) {
        struct nst_rs_point p = {.time_ms = 1700000000000, .checkpoint = (char *)checkpoint,
                                 .bytes = 4242};
        struct nst_error err = NST_ERROR_INIT;
        uint64_t id = 0;
        if (nst_rs_cycle_commit(r, &p, &id, &err) < 0)
                fail_msg("commit: %s: %s", err.cls, err.message);
        return id;
}

static json_object *read_json(const struct fixture *f, const char *name) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", f->dir, name);
        json_object *o = json_object_from_file(path);
        assert_non_null(o);
        return o;
}

static void write_json(const struct fixture *f, const char *name, json_object *o) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", f->dir, name);
        assert_int_equal(json_object_to_file(path, o), 0);
}

static void write_text(const struct fixture *f, const char *name, const char *text) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", f->dir, name);
        FILE *fp = fopen(path, "w");
        assert_non_null(fp);
        fputs(text, fp);
        fclose(fp);
}

static bool file_exists(const struct fixture *f, const char *name) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", f->dir, name);
        return access(path, F_OK) == 0;
}

/* The names in the replica directory, sorted, space separated. */
static void list_dir(const struct fixture *f, char *buf, size_t size) {
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "ls %s | sort | tr '\\n' ' '", f->dir);
        FILE *p = popen(cmd, "r");
        assert_non_null(p);
        size_t n = fread(buf, 1, size - 1, p);
        buf[n] = '\0';
        pclose(p);
}

/* Two points: 1 = seed + cycle 1 writes, 2 = cycle 2 on top. Models are
 * returned for each point (caller frees). */
static void two_points(struct fixture *f, struct nst_rs_replica *r, uint8_t *p1[2]) {
        begin(r, "c1", NULL);
        put(f, r, 0, 512 * 1024, 256 * 1024, 0x11);
        put(f, r, 1, 0, 2 * MIB, 0x22);
        put(f, r, 1, 4 * MIB, 4 * MIB, 0x33);
        zero(f, r, 1, 4 * MIB, 4 * MIB);
        zero(f, r, 0, 4 * MIB, 4 * MIB); /* over the seed's 0xcd */
        assert_int_equal(commit(r, "cp1"), 1);
        for (int d = 0; d < 2; d++) {
                p1[d] = malloc(DISK_SIZE);
                assert_non_null(p1[d]);
                memcpy(p1[d], f->model[d], DISK_SIZE);
        }
        begin(r, "c2", NULL);
        put(f, r, 0, 4 * MIB + 64 * 1024, 64 * 1024, 0x44);
        zero(f, r, 1, 0, MIB);
        put(f, r, 1, 7 * MIB, 4096, 0x55);
        assert_int_equal(commit(r, "cp2"), 2);
}

/* ---- fixture ---- */

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));
        assert_non_null(f);
        const char *tmp = getenv("TMPDIR");
        snprintf(f->root, sizeof(f->root), "%s/rs-test-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
        assert_non_null(mkdtemp(f->root));
        snprintf(f->dir, sizeof(f->dir), "%s/replica", f->root);
        snprintf(f->seed, sizeof(f->seed), "%s/seed.qcow2", f->root);
        const char *mk[] = {QEMU_IMG, "create", "-q", "-f", "qcow2", f->seed, "8M", NULL};
        run_ok(mk);
        qemu_io_write(f->seed, 0xab, 0, MIB);
        qemu_io_write(f->seed, 0xcd, 6 * MIB, MIB);
        for (int d = 0; d < 2; d++) {
                f->model[d] = calloc(1, DISK_SIZE);
                assert_non_null(f->model[d]);
        }
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;
        char cmd[256];
        snprintf(cmd, sizeof(cmd), "umount %1$s/small/mnt 2>/dev/null; umount %1$s/small 2>/dev/null; rm -rf %1$s",
                 f->root);
        assert_int_equal(system(cmd), 0);
        free(f->model[0]);
        free(f->model[1]);
        free(f);
        return 0;
}

static void seed_model(struct fixture *f) {
        fill(f->model[0], 0, MIB, 0xab);
        fill(f->model[0], 6 * MIB, MIB, 0xcd);
}

/* ---- tests ---- */

static void test_create_checks(void **state) {
        struct fixture *f = *state;
        struct nst_error err = NST_ERROR_INIT;
        struct nst_rs_replica *r = NULL;
        struct nst_rs_disk bad_size[1] = {{.name = "vda", .size = 4 * MIB, .seed = f->seed}};
        assert_int_equal(nst_rs_create(f->dir, "x", bad_size, 1, NULL, &r, &err), -EINVAL);
        assert_string_equal(err.cls, "InvalidInput");
        assert_non_null(strstr(err.message, "seed"));
        nst_error_clear(&err);
        struct nst_rs_disk bad_name[1] = {{.name = "../x", .size = DISK_SIZE}};
        assert_int_equal(nst_rs_create(f->dir, "x", bad_name, 1, NULL, &r, &err), -EINVAL);
        assert_string_equal(err.cls, "InvalidInput");
        nst_error_clear(&err);

        r = create_two(f, true);
        assert_string_equal(nst_rs_id(r), "repl-1");
        assert_int_equal(nst_rs_disk_count(r), 2);
        assert_non_null(strstr(nst_rs_disk_at(r, 0)->seed, "seed.qcow2"));
        assert_null(nst_rs_disk_at(r, 1)->seed);
        assert_int_equal(nst_rs_point_count(r), 0);
        json_object *v;
        assert_true(json_object_object_get_ex(nst_rs_meta(r), "source_host", &v));

        /* The same directory twice, in this process or after a restart. */
        struct nst_rs_replica *r2 = NULL;
        assert_int_equal(nst_rs_open(f->dir, &r2, &err), -EBUSY);
        assert_string_equal(err.cls, "ReplicaBusy");
        nst_rs_close(r);
        nst_error_clear(&err);
        assert_int_equal(nst_rs_create(f->dir, "repl-1", bad_name, 1, NULL, &r2, &err), -EEXIST);
        assert_string_equal(err.cls, "ReplicaExists");

        /* No point yet: hashes are the seed's, or zeroes. */
        r = reopen(f, NULL);
        uint8_t got[3 * 32], want[32];
        nst_error_clear(&err);
        assert_int_equal(nst_rs_hashes(r, 0, 15, 3, got, &err), 0);
        seed_model(f);
        for (int i = 0; i < 3; i++) {
                SHA256(f->model[0] + (15 + i) * NST_RS_HASH_BLOCK, NST_RS_HASH_BLOCK, want);
                assert_memory_equal(got + i * 32, want, 32);
        }
        assert_int_equal(nst_rs_hashes(r, 1, 127, 1, got, &err), 0);
        SHA256(f->model[1], NST_RS_HASH_BLOCK, want);
        assert_memory_equal(got, want, 32);
        assert_int_equal(nst_rs_hashes(r, 1, 127, 2, got, &err), -EINVAL);
        assert_string_equal(err.cls, "InvalidInput");
        assert_int_equal(nst_rs_destroy(r, &err), 0);
        assert_int_equal(access(f->dir, F_OK), -1);
}

/* A disk whose size is not a multiple of the hash block: the last block
 * is hashed short. */
static void test_short_last_block(void **state) {
        struct fixture *f = *state;
        struct nst_rs_disk d[1] = {{.name = "sda", .size = 65536 + 1024}};
        struct nst_rs_replica *r = NULL;
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_rs_create(f->dir, "short", d, 1, NULL, &r, &err), 0);
        begin(r, "c1", NULL);
        uint8_t buf[1024];
        memset(buf, 0x5a, sizeof(buf));
        assert_int_equal(nst_rs_write(r, 0, 65536, buf, sizeof(buf), &err), 0);
        assert_int_equal(commit(r, NULL), 1);
        assert_null(nst_rs_point_at(r, 0)->checkpoint);
        uint8_t got[64], want[32];
        assert_int_equal(nst_rs_hashes(r, 0, 0, 2, got, &err), 0);
        SHA256(buf, sizeof(buf), want);
        assert_memory_equal(got + 32, want, 32);
        assert_int_equal(nst_rs_destroy(r, &err), 0);
}

static void test_cycles_and_prune(void **state) {
        struct fixture *f = *state;
        struct nst_error err = NST_ERROR_INIT;
        struct nst_rs_replica *r = create_two(f, true);
        seed_model(f);
        uint8_t *p1[2];
        two_points(f, r, p1);

        assert_int_equal(nst_rs_point_count(r), 2);
        const struct nst_rs_point *pt = nst_rs_point_at(r, 0);
        assert_int_equal(pt->id, 1);
        assert_string_equal(pt->checkpoint, "cp1");
        assert_int_equal(pt->bytes, 4242);
        assert_int_equal(pt->time_ms, 1700000000000);
        assert_ptr_equal(nst_rs_point_find(r, 2), nst_rs_point_at(r, 1));
        assert_null(nst_rs_point_find(r, 3));

        for (unsigned d = 0; d < 2; d++) {
                assert_point_equals(f, r, 1, d, p1[d]);
                assert_point_equals(f, r, 2, d, f->model[d]);
        }
        /* Thin: zeroed ranges hold no data, not even over the seed's data. */
        char *img = nst_rs_point_image(r, 1, 1);
        assert_no_data(img, 4 * MIB, 8 * MIB);
        free(img);
        img = nst_rs_point_image(r, 1, 0);
        assert_no_data(img, 4 * MIB, 8 * MIB);
        free(img);
        uint64_t allocated = nst_rs_allocated_bytes(r);
        assert_true(allocated > 2 * MIB && allocated < 6 * MIB);

        /* Hashes are the latest point's. */
        uint8_t got[128 * 32], want[32];
        assert_int_equal(nst_rs_hashes(r, 0, 0, 128, got, &err), 0);
        for (int i = 0; i < 128; i++) {
                SHA256(f->model[0] + (uint64_t)i * NST_RS_HASH_BLOCK, NST_RS_HASH_BLOCK, want);
                assert_memory_equal(got + i * 32, want, 32);
        }

        /* A restart sees the same points. */
        r = reopen(f, r);
        assert_int_equal(nst_rs_point_count(r), 2);
        assert_string_equal(nst_rs_point_at(r, 1)->checkpoint, "cp2");

        assert_int_equal(nst_rs_prune(r, 0, &err), -EINVAL);
        assert_int_equal(nst_rs_prune(r, 1, &err), 0);
        assert_int_equal(nst_rs_point_count(r), 1);
        assert_int_equal(nst_rs_point_at(r, 0)->id, 2);
        assert_string_equal(nst_rs_point_at(r, 0)->checkpoint, "cp2");
        for (unsigned d = 0; d < 2; d++)
                assert_point_equals(f, r, 2, d, f->model[d]);
        char names[512];
        list_dir(f, names, sizeof(names));
        assert_string_equal(names, "p1-vda.qcow2 p1-vdb.raw state.json ");

        /* A third cycle after the prune lands on the merged image. */
        begin(r, "c3", NULL);
        /* Hashing reads the latest point even while a cycle writes on it. */
        assert_int_equal(nst_rs_hashes(r, 1, 112, 1, got, &err), 0);
        SHA256(f->model[1] + 112 * NST_RS_HASH_BLOCK, NST_RS_HASH_BLOCK, want);
        assert_memory_equal(got, want, 32);
        put(f, r, 1, 3 * MIB, 64 * 1024, 0x66);
        assert_int_equal(commit(r, "cp3"), 3);
        r = reopen(f, r);
        assert_point_equals(f, r, 3, 1, f->model[1]);
        assert_point_equals(f, r, 3, 0, f->model[0]);
        assert_int_equal(nst_rs_destroy(r, &err), 0);
        free(p1[0]);
        free(p1[1]);
}

static void test_resume_and_discard(void **state) {
        struct fixture *f = *state;
        struct nst_error err = NST_ERROR_INIT;
        struct nst_rs_replica *r = create_two(f, false);
        uint8_t buf[4096] = {0};
        assert_int_equal(nst_rs_write(r, 0, 0, buf, sizeof(buf), &err), -EINVAL);
        assert_string_equal(err.cls, "InvalidInput");

        struct nst_rs_resume res = {.valid = true};
        begin(r, "c1", &res);
        assert_false(res.valid);
        assert_true(nst_rs_cycle_open(r));
        assert_int_equal(nst_rs_cycle_begin(r, "c1", &res, &err), -EBUSY);
        assert_string_equal(err.cls, "ReplicaBusy");
        put(f, r, 0, 0, MIB, 0x77);
        assert_int_equal(nst_rs_mark(r, 0, MIB, &err), 0);
        put(f, r, 0, MIB, MIB, 0x78);
        nst_rs_close(r); /* the agent stops without committing */

        r = reopen(f, NULL);
        assert_false(nst_rs_cycle_open(r));
        begin(r, "c1", &res);
        assert_true(res.valid);
        assert_int_equal(res.disk, 0);
        assert_int_equal(res.offset, MIB);
        put(f, r, 1, 0, MIB, 0x79);
        assert_int_equal(nst_rs_mark(r, 2, 0, &err), 0);
        nst_rs_cycle_abort(r, true);
        begin(r, "c1", &res);
        assert_true(res.valid);
        assert_int_equal(res.disk, 2);
        assert_int_equal(commit(r, "cp1"), 1);
        assert_point_equals(f, r, 1, 0, f->model[0]);
        assert_point_equals(f, r, 1, 1, f->model[1]);

        /* A partial of another cycle is thrown away. */
        begin(r, "c2", &res);
        put(f, r, 0, 0, MIB, 0x7a);
        nst_rs_close(r);
        fill(f->model[0], 0, MIB, 0x77);
        r = reopen(f, NULL);
        begin(r, "c3", &res);
        assert_false(res.valid);
        assert_int_equal(commit(r, "cp3"), 2);
        assert_point_equals(f, r, 2, 0, f->model[0]);

        /* Abort without keeping: nothing of the cycle stays. */
        begin(r, "c4", &res);
        nst_rs_cycle_abort(r, false);
        assert_false(file_exists(f, "partial.json"));
        assert_false(file_exists(f, "partial-vda.qcow2"));
        assert_int_equal(nst_rs_destroy(r, &err), 0);
}

static pid_t spawn(const char *const argv[]) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                int null = open("/dev/null", O_RDWR);
                dup2(null, 1);
                dup2(null, 2);
                execv(argv[0], (char *const *)argv);
                _exit(127);
        }
        return pid;
}

/* A dead agent's qemu-nbd is killed (its cmdline names our socket); an
 * unrelated process with a recycled pid is left alone. */
static void test_stale_qemu_nbd(void **state) {
        struct fixture *f = *state;
        struct nst_error err = NST_ERROR_INIT;
        struct nst_rs_replica *r = create_two(f, false);
        begin(r, "c0", NULL); /* the first point is raw, written without qemu-nbd */
        assert_int_equal(commit(r, "cp0"), 1);
        begin(r, "c1", NULL);
        put(f, r, 0, 0, MIB, 0x81);
        assert_int_equal(nst_rs_mark(r, 1, 0, &err), 0);
        nst_rs_close(r);

        char sock_opt[600], image[512], sock[512];
        snprintf(sock, sizeof(sock), "%s/nbd-vda.sock", f->dir);
        snprintf(sock_opt, sizeof(sock_opt), "--socket=%s", sock);
        snprintf(image, sizeof(image), "%s/partial-vda.qcow2", f->dir);
        const char *nbd_argv[] = {QEMU_NBD, sock_opt, "--format=qcow2", image, NULL};
        pid_t nbd = spawn(nbd_argv);
        for (int i = 0; i < 500 && access(sock, F_OK) != 0; i++)
                usleep(10000);
        assert_int_equal(access(sock, F_OK), 0);
        const char *sleep_argv[] = {"/bin/sleep", "60", NULL};
        pid_t sleeper = spawn(sleep_argv);

        json_object *p = read_json(f, "partial.json");
        json_object *list = json_object_new_array();
        json_object *e1 = json_object_new_object(), *e2 = json_object_new_object();
        json_object_object_add(e1, "pid", json_object_new_int(nbd));
        json_object_object_add(e1, "socket", json_object_new_string(sock));
        json_object_object_add(e2, "pid", json_object_new_int(sleeper));
        json_object_object_add(e2, "socket", json_object_new_string(sock));
        json_object_array_add(list, e1);
        json_object_array_add(list, e2);
        json_object_object_add(p, "nbd", list);
        write_json(f, "partial.json", p);
        json_object_put(p);

        r = reopen(f, NULL);
        int status;
        pid_t w = 0;
        for (int i = 0; i < 100 && (w = waitpid(nbd, &status, WNOHANG)) == 0; i++)
                usleep(10000);
        assert_int_equal(w, nbd);
        assert_int_equal(waitpid(sleeper, &status, WNOHANG), 0);
        kill(sleeper, SIGKILL);
        assert_int_equal(waitpid(sleeper, &status, 0), sleeper);

        /* The partial is intact and usable again (its lock is free). */
        struct nst_rs_resume res;
        begin(r, "c1", &res);
        assert_true(res.valid);
        assert_int_equal(res.disk, 1);
        assert_int_equal(commit(r, "cp1"), 2);
        assert_point_equals(f, r, 2, 0, f->model[0]);
        assert_int_equal(nst_rs_destroy(r, &err), 0);
}

/* A crash between the renames and state.json: the cycle is a partial again. */
static void test_crash_during_commit(void **state) {
        struct fixture *f = *state;
        struct nst_error err = NST_ERROR_INIT;
        struct nst_rs_replica *r = create_two(f, false);
        begin(r, "c1", NULL);
        put(f, r, 1, MIB, MIB, 0x91);
        assert_int_equal(nst_rs_mark(r, 1, 2 * MIB, &err), 0);
        nst_rs_close(r);
        char a[512], b[512];
        /* Without a seed the first point is raw (see partial_is_raw). */
        snprintf(a, sizeof(a), "%s/partial-vda.raw", f->dir);
        snprintf(b, sizeof(b), "%s/p1-vda.raw", f->dir);
        assert_int_equal(rename(a, b), 0); /* one disk renamed, the other not */

        r = reopen(f, NULL);
        assert_int_equal(nst_rs_point_count(r), 0);
        assert_true(file_exists(f, "partial-vda.raw"));
        assert_false(file_exists(f, "p1-vda.raw"));
        struct nst_rs_resume res;
        begin(r, "c1", &res);
        assert_true(res.valid);
        assert_int_equal(res.offset, 2 * MIB);
        assert_int_equal(commit(r, "cp1"), 1);
        assert_point_equals(f, r, 1, 1, f->model[1]);
        assert_false(file_exists(f, "partial.json"));
        assert_int_equal(nst_rs_destroy(r, &err), 0);
}

/* A merge of points 1 into 2 stopped after the first disk's commit; point
 * 3 still hangs on point 2's files. nst_rs_open finishes it. */
static void test_interrupted_merge(void **state) {
        struct fixture *f = *state;
        struct nst_error err = NST_ERROR_INIT;
        struct nst_rs_replica *r = create_two(f, true);
        seed_model(f);
        uint8_t *p1[2];
        two_points(f, r, p1);
        uint8_t *m2[2];
        for (int d = 0; d < 2; d++) {
                m2[d] = malloc(DISK_SIZE);
                assert_non_null(m2[d]);
                memcpy(m2[d], f->model[d], DISK_SIZE);
        }
        begin(r, "c3", NULL);
        put(f, r, 0, 2 * MIB, MIB, 0xa1);
        zero(f, r, 0, 0, 64 * 1024);
        assert_int_equal(commit(r, "cp3"), 3);
        nst_rs_close(r);

        json_object *s = read_json(f, "state.json");
        json_object *merge = json_object_new_object();
        json_object_object_add(merge, "drop", json_object_new_int(1));
        json_object_object_add(merge, "into", json_object_new_int(2));
        json_object_object_add(s, "merge", merge);
        write_json(f, "state.json", s);
        json_object_put(s);
        char top[512];
        snprintf(top, sizeof(top), "%s/p2-vda.qcow2", f->dir);
        const char *commit_argv[] = {QEMU_IMG, "commit", "-q", "-d", top, NULL};
        run_ok(commit_argv);

        r = reopen(f, NULL);
        assert_int_equal(nst_rs_point_count(r), 2);
        assert_int_equal(nst_rs_point_at(r, 0)->id, 2);
        for (unsigned d = 0; d < 2; d++) {
                assert_point_equals(f, r, 2, d, m2[d]);
                assert_point_equals(f, r, 3, d, f->model[d]);
        }
        char names[512];
        list_dir(f, names, sizeof(names));
        assert_string_equal(names,
                            "p1-vda.qcow2 p1-vdb.raw p3-vda.qcow2 p3-vdb.qcow2 state.json ");
        json_object *after = read_json(f, "state.json"), *v = NULL;
        assert_true(json_object_object_get_ex(after, "merge", &v));
        assert_null(v);
        json_object_put(after);
        assert_int_equal(nst_rs_destroy(r, &err), 0);
        for (int d = 0; d < 2; d++) {
                free(p1[d]);
                free(m2[d]);
        }
}

static void expect_corrupt(struct fixture *f, const char *needle) {
        struct nst_rs_replica *r = NULL;
        struct nst_error err = NST_ERROR_INIT;
        int e = nst_rs_open(f->dir, &r, &err);
        if (e >= 0) {
                nst_rs_close(r);
                fail_msg("opened a corrupt replica (expected %s)", needle);
        }
        assert_string_equal(err.cls, "ReplicaCorrupt");
        if (!strstr(err.message, needle))
                fail_msg("'%s' does not mention '%s'", err.message, needle);
}

static void test_corrupt_state(void **state) {
        struct fixture *f = *state;
        struct nst_rs_replica *r = create_two(f, false);
        begin(r, "c1", NULL);
        assert_int_equal(commit(r, "cp1"), 1);
        nst_rs_close(r);
        json_object *good = read_json(f, "state.json");

        write_text(f, "state.json", "{\"format\": 1, \"replication\": ");
        expect_corrupt(f, "state.json: not valid JSON");

        json_object *s = NULL;
        s = NULL;
        json_object_deep_copy(good, &s, NULL);
        json_object *points, *p0;
        json_object_object_get_ex(s, "points", &points);
        p0 = json_object_array_get_idx(points, 0);
        json_object_object_add(p0, "id", json_object_new_string("one"));
        write_json(f, "state.json", s);
        json_object_put(s);
        expect_corrupt(f, "points[0].id must be int");

        s = NULL;
        json_object_deep_copy(good, &s, NULL);
        json_object_object_get_ex(s, "points", &points);
        p0 = json_object_array_get_idx(points, 0);
        json_object *files;
        json_object_object_get_ex(p0, "files", &files);
        json_object_array_put_idx(files, 1, json_object_new_string("../../etc/passwd"));
        write_json(f, "state.json", s);
        json_object_put(s);
        expect_corrupt(f, "points[0].files[1]");

        s = NULL;
        json_object_deep_copy(good, &s, NULL);
        json_object_object_del(s, "disks");
        write_json(f, "state.json", s);
        json_object_put(s);
        expect_corrupt(f, "field disks is missing");

        write_json(f, "state.json", good);
        char a[512];
        snprintf(a, sizeof(a), "%s/p1-vdb.raw", f->dir);
        char b[512];
        snprintf(b, sizeof(b), "%s/elsewhere.raw", f->dir);
        assert_int_equal(rename(a, b), 0);
        expect_corrupt(f, "p1-vdb.raw, which does not exist");
        assert_int_equal(rename(b, a), 0);

        write_text(f, "partial.json", "{\"cycle\": \"c2\", \"base\": -1}");
        expect_corrupt(f, "partial.json: field base must not be negative");
        unlink(strcat(strcpy(a, f->dir), "/partial.json"));
        json_object_put(good);

        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_rs_open(f->dir, &r, &err), 0);
        assert_int_equal(nst_rs_destroy(r, &err), 0);
}

static void test_bounds(void **state) {
        struct fixture *f = *state;
        struct nst_error err = NST_ERROR_INIT;
        struct nst_rs_replica *r = create_two(f, false);
        begin(r, "c1", NULL);
        uint8_t buf[4096];
        memset(buf, 0xee, sizeof(buf));
        assert_int_equal(nst_rs_write(r, 0, DISK_SIZE - 100, buf, sizeof(buf), &err), -EINVAL);
        assert_string_equal(err.cls, "InvalidInput");
        assert_non_null(strstr(err.message, "outside disk vda"));
        assert_int_equal(nst_rs_write(r, 0, UINT64_MAX - 10, buf, sizeof(buf), &err), -EINVAL);
        assert_int_equal(nst_rs_write(r, 2, 0, buf, sizeof(buf), &err), -EINVAL);
        assert_non_null(strstr(err.message, "disk 2"));
        assert_int_equal(nst_rs_zero(r, 1, MIB, DISK_SIZE, &err), -EINVAL);
        assert_int_equal(nst_rs_mark(r, 0, DISK_SIZE + 1, &err), -EINVAL);
        assert_int_equal(nst_rs_write(r, 0, DISK_SIZE - 4096, buf, sizeof(buf), &err), 0);
        fill(f->model[0], DISK_SIZE - 4096, 4096, 0xee);
        assert_int_equal(commit(r, "cp1"), 1);
        assert_point_equals(f, r, 1, 0, f->model[0]);
        assert_point_equals(f, r, 1, 1, f->model[1]);
        assert_int_equal(nst_rs_destroy(r, &err), 0);
}

/* The data channel's path: prepare a buffer, fill it, queue it or cancel
 * it. A cancelled buffer writes nothing; buffers are reused (the same
 * memory) in the next cycle; bounds are checked before any buffer. */
static void test_two_step_write(void **state) {
        struct fixture *f = *state;
        struct nst_error err = NST_ERROR_INIT;
        struct nst_rs_replica *r = create_two(f, false);
        struct nst_rs_wbuf *b = NULL;
        void *data = NULL, *first = NULL;
        begin(r, "c1", NULL);
        assert_int_equal(nst_rs_write_prepare(r, 0, DISK_SIZE - 100, 4096, &b, &data, &err),
                         -EINVAL);
        assert_non_null(strstr(err.message, "outside disk vda"));
        assert_int_equal(nst_rs_write_prepare(r, 1, 0, 0, &b, &data, &err), -EINVAL);
        assert_int_equal(nst_rs_write_prepare(r, 0, MIB, 64 * 1024, &b, &data, &err), 0);
        assert_int_equal((uintptr_t)data % 4096, 0); /* O_DIRECT ready */
        memset(data, 0x66, 64 * 1024);
        nst_rs_write_cancel(b); /* an extent that failed its digest */
        assert_int_equal(nst_rs_write_prepare(r, 1, 2 * MIB, 64 * 1024, &b, &first, &err), 0);
        memset(first, 0x77, 64 * 1024);
        assert_int_equal(nst_rs_write_queue(r, b, &err), 0);
        fill(f->model[1], 2 * MIB, 64 * 1024, 0x77);
        assert_int_equal(commit(r, "cp1"), 1);
        assert_point_equals(f, r, 1, 0, f->model[0]);
        assert_point_equals(f, r, 1, 1, f->model[1]);
        /* The next cycle's 60 KiB extent takes a kept 64 KiB buffer. */
        begin(r, "c2", NULL);
        bool reused = false;
        for (int i = 0; i < 2; i++) {
                assert_int_equal(nst_rs_write_prepare(r, 0, (uint64_t)i * 65536, 60 * 1024, &b,
                                                      &data, &err), 0);
                reused = reused || data == first;
                memset(data, 0x10 + i, 60 * 1024);
                fill(f->model[0], (uint64_t)i * 65536, 60 * 1024, (uint8_t)(0x10 + i));
                assert_int_equal(nst_rs_write_queue(r, b, &err), 0);
        }
        assert_true(reused);
        assert_int_equal(commit(r, "cp2"), 2);
        assert_point_equals(f, r, 2, 0, f->model[0]);
        assert_point_equals(f, r, 2, 1, f->model[1]);
        assert_int_equal(nst_rs_destroy(r, &err), 0);
        nst_rs_buffers_trim(nst_now_ms(), 0);
}

/* The target's file system fills up mid-cycle: the cycle fails with
 * InsufficientStorage, the committed point is untouched, the aborted
 * cycle's files are gone (their space given back) and a later cycle that
 * fits commits. Needs root for the small tmpfs. */
static void test_disk_full(void **state) {
        struct fixture *f = *state;
        struct nst_error err = NST_ERROR_INIT;
        char small[128], cmd[256];
        snprintf(small, sizeof(small), "%s/small", f->root);
        assert_int_equal(mkdir(small, 0700), 0);
        snprintf(cmd, sizeof(cmd), "mount -t tmpfs -o size=10m nestor-test %s 2>/dev/null",
                 small);
        if (system(cmd) != 0)
                skip(); /* not root */
        snprintf(f->dir, sizeof(f->dir), "%s/replica", small);
        struct nst_rs_replica *r = create_two(f, false);
        begin(r, "c1", NULL);
        put(f, r, 0, 0, MIB, 0x31);
        assert_int_equal(commit(r, "cp1"), 1);
        uint8_t *p1 = malloc(DISK_SIZE);
        assert_non_null(p1);
        memcpy(p1, f->model[0], DISK_SIZE);

        begin(r, "c2", NULL);
        uint8_t *buf = malloc(MIB);
        assert_non_null(buf);
        memset(buf, 0x32, MIB);
        int rc = 0;
        for (unsigned d = 0; d < 2 && rc == 0; d++)
                for (uint64_t off = 0; off < DISK_SIZE && rc == 0; off += MIB)
                        rc = nst_rs_write(r, d, off, buf, MIB, &err);
        free(buf);
        if (rc == 0) {
                struct nst_rs_point p = {.time_ms = 1700000000000, .checkpoint = "cp2"};
                uint64_t id = 0;
                rc = nst_rs_cycle_commit(r, &p, &id, &err);
        }
        assert_int_equal(rc, -ENOSPC);
        assert_string_equal(err.cls, "InsufficientStorage");
        nst_rs_cycle_abort(r, false);
        assert_int_equal(nst_rs_point_count(r), 1);
        assert_point_equals(f, r, 1, 0, p1);
        assert_point_equals(f, r, 1, 1, f->model[1]);
        char names[1024];
        list_dir(f, names, sizeof(names));
        assert_null(strstr(names, "partial"));

        memcpy(f->model[0], p1, DISK_SIZE);
        free(p1);
        begin(r, "c3", NULL);
        put(f, r, 1, 2 * MIB, MIB, 0x33);
        assert_int_equal(commit(r, "cp3"), 2);
        assert_point_equals(f, r, 2, 0, f->model[0]);
        assert_point_equals(f, r, 2, 1, f->model[1]);
        assert_int_equal(nst_rs_destroy(r, &err), 0);
}

/* The target's disk loses writes the page cache had taken (a device error
 * on writeback; here a loop device whose backing file, on a small tmpfs,
 * runs out of space): the syncer's background fdatasync sees it, so the
 * cycle fails during its writes, not only at its commit, with an error that
 * names the disk; the committed point stays the only one, intact. Needs
 * root (tmpfs, a loop device). */
static void test_writeback_lost(void **state) {
        struct fixture *f = *state;
        struct nst_error err = NST_ERROR_INIT;
        char small[128], cmd[1024];
        snprintf(small, sizeof(small), "%s/small", f->root);
        assert_int_equal(mkdir(small, 0700), 0);
        /* No journal: the 512 MiB file system takes 0.3 MiB of the 24. */
        snprintf(cmd, sizeof(cmd),
                 "mount -t tmpfs -o size=24m nestor-test %1$s && truncate -s 512M %1$s/fs.img && "
                 "mkfs.ext4 -q -F -O ^has_journal %1$s/fs.img && mkdir %1$s/mnt && "
                 "mount -o loop,errors=continue %1$s/fs.img %1$s/mnt",
                 small);
        if (system(cmd) != 0)
                skip(); /* not root, or no loop device */
        snprintf(f->dir, sizeof(f->dir), "%s/mnt/replica", small);
        const uint64_t size = 256 * MIB, piece = 512 * 1024;
        struct nst_rs_disk d = {.name = "vda", .size = size};
        struct nst_rs_replica *r = NULL;
        if (nst_rs_create(f->dir, "lossy", &d, 1, NULL, &r, &err) < 0)
                fail_msg("create: %s", err.message);
        uint8_t *model = calloc(1, size);
        assert_non_null(model);
        begin(r, "c1", NULL);
        for (uint64_t off = 0; off < 4 * MIB; off += piece) {
                fill(model, off, piece, 0x41);
                if (nst_rs_write(r, 0, off, model + off, (uint32_t)piece, &err) < 0)
                        fail_msg("first point: %s", err.message);
        }
        assert_int_equal(commit(r, "cp1"), 1);

        /* The whole disk into the overlay: ten times what the tmpfs holds,
         * four times what the write queue (64 MiB) takes in ahead of the
         * writes (the error came after 85-106 MiB in three runs). */
        begin(r, "c2", NULL);
        uint8_t *buf = malloc(piece);
        assert_non_null(buf);
        memset(buf, 0x42, piece);
        uint64_t off = 0;
        int rc = 0;
        for (; off < size && rc == 0; off += piece)
                rc = nst_rs_write(r, 0, off, buf, (uint32_t)piece, &err);
        free(buf);
        if (rc == 0)
                fail_msg("256 MiB written into 24 MiB without an error before the commit");
        assert_true(rc == -ENOSPC || rc == -EIO);
        assert_true(strcmp(err.cls, "InsufficientStorage") == 0 ||
                    strcmp(err.cls, "StorageError") == 0);
        assert_non_null(strstr(err.message, "disk vda"));
        nst_rs_cycle_abort(r, false);
        assert_int_equal(nst_rs_point_count(r), 1);
        r = reopen(f, r);
        assert_int_equal(nst_rs_point_count(r), 1);
        char *image = nst_rs_point_image(r, 1, 0);
        assert_non_null(image);
        assert_image_equals(f, image, model, size);
        free(image);
        free(model);
        nst_rs_close(r);
        nst_rs_buffers_trim(nst_now_ms(), 0);
}

/* qemu-nbd runs with the malloc tunables that keep its request buffers
 * warm (the agent's own GLIBC_TUNABLES, appended, cannot be seen from
 * outside: see below); the rest of the environment is the agent's. */
static void test_qemu_nbd_environment(void **state) {
        struct fixture *f = *state;
        struct nst_rs_replica *r = create_two(f, false);
        begin(r, "c0", NULL);
        assert_int_equal(commit(r, "cp0"), 1);
        assert_int_equal(setenv("GLIBC_TUNABLES", "glibc.malloc.tcache_count=7", 1), 0);
        assert_int_equal(setenv("NESTOR_TEST_MARKER", "kept", 1), 0);
        begin(r, "c1", NULL);
        unsetenv("GLIBC_TUNABLES");
        unsetenv("NESTOR_TEST_MARKER");
        json_object *p = read_json(f, "partial.json");
        json_object *list = json_object_object_get(p, "nbd");
        assert_int_equal(json_object_array_length(list), 2);
        for (size_t i = 0; i < 2; i++) {
                int pid = json_object_get_int(
                        json_object_object_get(json_object_array_get_idx(list, i), "pid"));
                char path[64], env[65536];
                snprintf(path, sizeof(path), "/proc/%d/environ", pid);
                FILE *fp = fopen(path, "r");
                assert_non_null(fp);
                size_t n = fread(env, 1, sizeof(env) - 1, fp);
                fclose(fp);
                env[n] = '\0';
                /* glibc parses GLIBC_TUNABLES in place, ending each value
                 * with a NUL: /proc shows the string up to the first value
                 * (all of them apply; checked with mmap_threshold). */
                bool tunables = false, marker = false;
                for (size_t k = 0; k < n; k += strlen(env + k) + 1) {
                        tunables = tunables ||
                                   strcmp(env + k, "GLIBC_TUNABLES=glibc.malloc.trim_threshold="
                                                   "67108864") == 0;
                        marker = marker || strcmp(env + k, "NESTOR_TEST_MARKER=kept") == 0;
                }
                assert_true(tunables);
                assert_true(marker);
        }
        json_object_put(p);
        put(f, r, 1, 0, MIB, 0x44);
        assert_int_equal(commit(r, "cp1"), 2);
        assert_point_equals(f, r, 2, 1, f->model[1]);
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_rs_destroy(r, &err), 0);
}

/* Whether a thread of this process has that name (pthread_setname_np). */
static bool thread_named(const char *name) {
        DIR *d = opendir("/proc/self/task");
        assert_non_null(d);
        bool found = false;
        for (struct dirent *e; !found && (e = readdir(d));) {
                char path[300], comm[32] = "";
                snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
                FILE *fp = fopen(path, "r");
                if (!fp)
                        continue;
                found = fgets(comm, sizeof(comm), fp) && strncmp(comm, name, strlen(name)) == 0 &&
                        (comm[strlen(name)] == '\n' || comm[strlen(name)] == '\0');
                fclose(fp);
        }
        closedir(d);
        return found;
}

/* A first point larger than the interval at which the syncer flushes the
 * raw partial behind the writer (64 MiB): the background flushes run while
 * the writes go on, and the point is still exactly what was written. */
static void test_first_point_synced_ahead(void **state) {
        struct fixture *f = *state;
        struct nst_error err = NST_ERROR_INIT;
        const uint64_t size = 144 * MIB, piece = 512 * 1024;
        struct nst_rs_disk d = {.name = "vda", .size = size};
        struct nst_rs_replica *r = NULL;
        if (nst_rs_create(f->dir, "big", &d, 1, NULL, &r, &err) < 0)
                fail_msg("create: %s", err.message);
        begin(r, "c1", NULL);
        /* The thread names itself once it runs. */
        for (int i = 0; i < 200 && !thread_named("repl-syncer"); i++)
                usleep(10000);
        assert_true(thread_named("repl-syncer"));
        uint8_t *model = malloc(size);
        assert_non_null(model);
        for (uint64_t off = 0; off < size; off += piece) {
                fill(model, off, piece, (int)(off / piece) & 0xff);
                if (nst_rs_write(r, 0, off, model + off, (uint32_t)piece, &err) < 0)
                        fail_msg("write at %" PRIu64 ": %s", off, err.message);
        }
        assert_int_equal(commit(r, "cp1"), 1);
        assert_false(thread_named("repl-syncer"));
        char *image = nst_rs_point_image(r, 1, 0);
        assert_non_null(image);
        assert_image_equals(f, image, model, size);
        free(image);
        free(model);
        assert_int_equal(nst_rs_destroy(r, &err), 0);
        nst_rs_buffers_trim(nst_now_ms(), 0);
}

static void test_boot_export(void **state) {
        struct fixture *f = *state;
        struct nst_error err = NST_ERROR_INIT;
        struct nst_rs_replica *r = create_two(f, true);
        seed_model(f);
        uint8_t *p1[2];
        two_points(f, r, p1);
        char boot[192];
        snprintf(boot, sizeof(boot), "%s/boot", f->root);
        char **paths = NULL;
        assert_int_equal(nst_rs_export_for_boot(r, 9, boot, &paths, &err), -ENOENT);
        assert_string_equal(err.cls, "InvalidInput");
        assert_int_equal(nst_rs_export_for_boot(r, 1, boot, &paths, &err), 0);
        assert_non_null(strstr(paths[1], "/boot/vdb.qcow2"));
        for (unsigned d = 0; d < 2; d++)
                assert_image_equals(f, paths[d], p1[d], DISK_SIZE);
        /* A VM writing into its overlay changes nothing of the point. */
        qemu_io_write(paths[0], 0xfe, 0, MIB);
        assert_point_equals(f, r, 1, 0, p1[0]);

        r = reopen(f, r);
        assert_int_equal(nst_rs_prune(r, 1, &err), -EBUSY);
        assert_string_equal(err.cls, "ReplicaBusy");
        assert_int_equal(nst_rs_point_count(r), 2);
        assert_int_equal(nst_rs_release_boot(r, boot, &err), 0);
        assert_int_equal(access(paths[0], F_OK), -1);
        assert_int_equal(nst_rs_release_boot(r, boot, &err), -ENOENT);
        assert_int_equal(nst_rs_prune(r, 1, &err), 0);
        assert_point_equals(f, r, 2, 0, f->model[0]);
        assert_int_equal(nst_rs_destroy(r, &err), 0);
        for (int d = 0; d < 2; d++) {
                free(paths[d]);
                free(p1[d]);
        }
        free(paths);
}

/* A replica directory too deep for a Unix socket path next to it. */
static void test_long_directory(void **state) {
        struct fixture *f = *state;
        char deep[256];
        snprintf(deep, sizeof(deep), "%s/%s/%s", f->root,
                 "a-rather-long-directory-name-for-this-test-0123456789",
                 "another-long-directory-name-to-pass-the-unix-socket-limit");
        memcpy(f->dir, deep, sizeof(f->dir) - 1);
        f->dir[sizeof(f->dir) - 1] = '\0';
        assert_true(strlen(deep) < sizeof(f->dir));
        /* Short socket directories go under $TMPDIR: this test's own. */
        const char *old_tmp = getenv("TMPDIR");
        char *saved_tmp = old_tmp ? strdup(old_tmp) : NULL;
        assert_int_equal(setenv("TMPDIR", f->root, 1), 0);
        snprintf(f->sockparent, sizeof(f->sockparent), "%s/nestor-%u", f->root,
                 (unsigned)geteuid());
        struct nst_rs_replica *r = create_two(f, false);
        begin(r, "c1", NULL);
        put(f, r, 1, 0, MIB, 0x42);
        assert_int_equal(commit(r, "cp1"), 1);
        assert_point_equals(f, r, 1, 1, f->model[1]);

        /* An agent killed with a replica open leaves its short socket
         * directory; the next one to open the replica takes the same. */
        nst_rs_close(r);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                struct nst_rs_replica *killed = NULL;
                struct nst_error e = NST_ERROR_INIT;
                _exit(nst_rs_open(f->dir, &killed, &e) == 0 ? 0 : 1); /* no close */
        }
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        assert_int_equal(count_entries(f->sockparent), 1);
        r = reopen(f, NULL);
        begin(r, "c2", NULL); /* qemu-nbd on an overlay: a socket in the short directory */
        put(f, r, 0, MIB, 64 * 1024, 0x43);
        assert_int_equal(commit(r, "cp2"), 2);
        assert_point_equals(f, r, 2, 0, f->model[0]);
        assert_int_equal(count_entries(f->sockparent), 1);
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_rs_destroy(r, &err), 0);
        assert_int_equal(count_entries(f->sockparent), 0);
        if (saved_tmp)
                setenv("TMPDIR", saved_tmp, 1);
        else
                unsetenv("TMPDIR");
        free(saved_tmp);
}

int main(void) {
        signal(SIGPIPE, SIG_IGN);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_create_checks, setup, teardown),
                cmocka_unit_test_setup_teardown(test_short_last_block, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cycles_and_prune, setup, teardown),
                cmocka_unit_test_setup_teardown(test_resume_and_discard, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stale_qemu_nbd, setup, teardown),
                cmocka_unit_test_setup_teardown(test_crash_during_commit, setup, teardown),
                cmocka_unit_test_setup_teardown(test_interrupted_merge, setup, teardown),
                cmocka_unit_test_setup_teardown(test_corrupt_state, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bounds, setup, teardown),
                cmocka_unit_test_setup_teardown(test_two_step_write, setup, teardown),
                cmocka_unit_test_setup_teardown(test_disk_full, setup, teardown),
                cmocka_unit_test_setup_teardown(test_writeback_lost, setup, teardown),
                cmocka_unit_test_setup_teardown(test_first_point_synced_ahead, setup, teardown),
                cmocka_unit_test_setup_teardown(test_qemu_nbd_environment, setup, teardown),
                cmocka_unit_test_setup_teardown(test_boot_export, setup, teardown),
                cmocka_unit_test_setup_teardown(test_long_directory, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
