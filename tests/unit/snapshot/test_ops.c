/* The parts of the snapshot operations (plugins/snapshot/snap_ops.h) that
 * run without QEMU: snapshot name rules, quiesce values, the sidecar file
 * (atomic write, read back, malformed and missing files, removal), the memory
 * estimate from given statistics, the space check decision and its message,
 * and finding which instance a snapshot name belongs to. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "messages/json_util.h"
#include "plugins/snapshot/snap_ops.h"

#define MiB (UINT64_C(1024) * 1024)
#define KiB UINT64_C(1024)

static char tmpdir[256];

static int setup_dir(void **state) {
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/nestor-snapops-XXXXXX");
        assert_non_null(mkdtemp(tmpdir));
        return 0;
}

static int teardown_dir(void **state) {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        assert_int_equal(system(cmd), 0);
        return 0;
}

static void write_file(const char *path, const char *text) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
}

static size_t count_entries(const char *dir) {
        DIR *d = opendir(dir);
        assert_non_null(d);
        size_t n = 0;
        struct dirent *e;
        while ((e = readdir(d)))
                if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                        n++;
        closedir(d);
        return n;
}

/* ---- names and quiesce ---- */

static void test_names(void **state) {
        const char *good[] = {"a", "s1", "auto-20240301T020000Z", "A.b_c-9", "..x", "-x"};
        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
                assert_true(nst_snap_name_valid(good[i]));
        char max[NST_SNAP_NAME_MAX + 2];
        memset(max, 'x', NST_SNAP_NAME_MAX);
        max[NST_SNAP_NAME_MAX] = '\0';
        assert_true(nst_snap_name_valid(max));
        max[NST_SNAP_NAME_MAX] = 'x';
        max[NST_SNAP_NAME_MAX + 1] = '\0';
        assert_false(nst_snap_name_valid(max));
        const char *bad[] = {"", ".", "..", "a/b", "a b", "a\nb", "é", "a*", "../etc"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct nst_error err = NST_ERROR_INIT;
                assert_false(nst_snap_name_valid(bad[i]));
                assert_int_equal(nst_snap_name_check(bad[i], &err), -EINVAL);
                assert_string_equal(err.cls, "InvalidInput");
                assert_non_null(strstr(err.message, "A-Z a-z 0-9 . _ -"));
        }
        assert_false(nst_snap_name_valid(NULL));
}

static void test_quiesce(void **state) {
        enum nst_snap_quiesce q = NST_SNAP_QUIESCE_OFF;
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_snap_quiesce_parse(NULL, &q, &err), 0);
        assert_int_equal(q, NST_SNAP_QUIESCE_PREFERRED);
        assert_int_equal(nst_snap_quiesce_parse("required", &q, &err), 0);
        assert_int_equal(q, NST_SNAP_QUIESCE_REQUIRED);
        assert_int_equal(nst_snap_quiesce_parse("off", &q, &err), 0);
        assert_int_equal(q, NST_SNAP_QUIESCE_OFF);
        assert_string_equal(nst_snap_quiesce_str(q), "off");
        assert_int_equal(nst_snap_quiesce_parse("Required", &q, &err), -EINVAL);
        assert_string_equal(err.cls, "InvalidInput");
        assert_non_null(strstr(err.message, "\"Required\""));
        assert_int_equal(q, NST_SNAP_QUIESCE_OFF); /* untouched on error */
}

/* ---- sidecar ---- */

static void test_sidecar_roundtrip(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        json_object *meta = json_object_new_object();
        json_object_object_add(meta, "consistency", json_object_new_string("crash"));
        json_object_object_add(meta, "memory_file", json_object_new_string("/x/s1.mem"));
        json_object_object_add(meta, "size", json_object_new_int64(INT64_C(808130733)));
        assert_int_equal(nst_snap_sidecar_write(tmpdir, "s1", meta, &err), 0);
        json_object_put(meta);
        /* Only the final file is left: the temporary one was renamed. */
        assert_int_equal(count_entries(tmpdir), 1);
        char path[512];
        snprintf(path, sizeof(path), "%s/s1.json", tmpdir);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);

        json_object *back = NULL;
        assert_int_equal(nst_snap_sidecar_read(tmpdir, "s1", &back, &err), 0);
        assert_non_null(back);
        json_object *v = NULL;
        assert_true(json_object_object_get_ex(back, "consistency", &v));
        assert_string_equal(json_object_get_string(v), "crash");
        assert_true(json_object_object_get_ex(back, "size", &v));
        assert_int_equal(json_object_get_int64(v), INT64_C(808130733));
        json_object_put(back);

        /* Rewriting replaces the content. */
        meta = json_object_new_object();
        json_object_object_add(meta, "consistency", json_object_new_string("filesystem"));
        assert_int_equal(nst_snap_sidecar_write(tmpdir, "s1", meta, &err), 0);
        json_object_put(meta);
        assert_int_equal(nst_snap_sidecar_read(tmpdir, "s1", &back, &err), 0);
        assert_true(json_object_object_get_ex(back, "consistency", &v));
        assert_string_equal(json_object_get_string(v), "filesystem");
        assert_false(json_object_object_get_ex(back, "size", &v));
        json_object_put(back);

        assert_int_equal(nst_snap_sidecar_remove(tmpdir, "s1", &err), 0);
        assert_int_equal(count_entries(tmpdir), 0);
        /* Removing or reading a missing sidecar is fine; the read gives NULL. */
        assert_int_equal(nst_snap_sidecar_remove(tmpdir, "s1", &err), 0);
        back = (json_object *)0x1;
        assert_int_equal(nst_snap_sidecar_read(tmpdir, "s1", &back, &err), 0);
        assert_null(back);
}

static void test_sidecar_errors(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        char path[512];
        snprintf(path, sizeof(path), "%s/bad.json", tmpdir);
        write_file(path, "{\"consistency\": ");
        json_object *o = NULL;
        assert_true(nst_snap_sidecar_read(tmpdir, "bad", &o, &err) < 0);
        assert_null(o);
        assert_non_null(strstr(err.message, "bad.json"));
        write_file(path, "[1, 2]\n");
        nst_error_clear(&err);
        assert_int_equal(nst_snap_sidecar_read(tmpdir, "bad", &o, &err), -EINVAL);
        assert_non_null(strstr(err.message, "not a JSON object"));
        /* A name that could leave the directory is refused before any I/O. */
        json_object *meta = json_object_new_object();
        assert_int_equal(nst_snap_sidecar_write(tmpdir, "../evil", meta, &err), -EINVAL);
        assert_string_equal(err.cls, "InvalidInput");
        json_object_put(meta);
        /* A directory that does not exist. */
        meta = json_object_new_object();
        char missing[512];
        snprintf(missing, sizeof(missing), "%s/no/such", tmpdir);
        assert_true(nst_snap_sidecar_write(missing, "s1", meta, &err) < 0);
        assert_string_equal(err.cls, "SnapshotFailed");
        json_object_put(meta);
}

static void test_find_owner(void **state) {
        const char *a = "11111111-1111-4111-8111-111111111111";
        const char *b = "22222222-2222-4222-8222-222222222222";
        char dir[512], path[600];
        snprintf(dir, sizeof(dir), "%s/%s", tmpdir, a);
        assert_int_equal(mkdir(dir, 0700), 0);
        snprintf(dir, sizeof(dir), "%s/%s", tmpdir, b);
        assert_int_equal(mkdir(dir, 0700), 0);
        snprintf(path, sizeof(path), "%s/nightly.json", dir);
        write_file(path, "{}");
        char owner[37] = "";
        assert_int_equal(nst_snap_find_owner(tmpdir, "nightly", a, owner), 0);
        assert_string_equal(owner, b);
        /* Its own snapshots do not count, nor do unknown names. */
        assert_int_equal(nst_snap_find_owner(tmpdir, "nightly", b, owner), -ENOENT);
        assert_int_equal(nst_snap_find_owner(tmpdir, "weekly", a, owner), -ENOENT);
        assert_int_equal(nst_snap_find_owner(tmpdir, "../x", a, owner), -ENOENT);
}

/* ---- estimate ---- */

static virDomainMemoryStatStruct stat_of(int tag, unsigned long long kib) {
        return (virDomainMemoryStatStruct){.tag = tag, .val = kib};
}

static void test_estimate_configured(void **state) {
        /* A stopped guest or no statistics: the configured RAM. */
        struct nst_snap_mem_stats st;
        nst_snap_mem_stats_fill(NULL, 0, 16 * 1024 * 1024, &st);
        const char *basis = NULL;
        assert_int_equal(nst_snap_memory_estimate(&st, &basis),
                         16 * 1024 * MiB + NST_SNAP_MEM_OVERHEAD);
        assert_string_equal(basis, "configured");
}

static void test_estimate_rss(void **state) {
        /* An idle guest: QEMU's RSS, plus the overhead. */
        virDomainMemoryStatStruct s[] = {stat_of(VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON, 1048576),
                                         stat_of(VIR_DOMAIN_MEMORY_STAT_RSS, 53000)};
        struct nst_snap_mem_stats st;
        nst_snap_mem_stats_fill(s, 2, 1048576, &st);
        assert_true(st.has_rss);
        assert_false(st.has_available);
        const char *basis = NULL;
        assert_int_equal(nst_snap_memory_estimate(&st, &basis),
                         53000 * KiB + NST_SNAP_MEM_OVERHEAD);
        assert_string_equal(basis, "rss");
}

static void test_estimate_guest_stats(void **state) {
        /* The guest uses more than is resident (swapped out host pages):
         * the guest's view wins; page cache ("usable") still counts. */
        virDomainMemoryStatStruct s[] = {stat_of(VIR_DOMAIN_MEMORY_STAT_RSS, 100 * 1024),
                                         stat_of(VIR_DOMAIN_MEMORY_STAT_AVAILABLE, 1024 * 1024),
                                         stat_of(VIR_DOMAIN_MEMORY_STAT_UNUSED, 256 * 1024),
                                         stat_of(VIR_DOMAIN_MEMORY_STAT_USABLE, 900 * 1024)};
        struct nst_snap_mem_stats st;
        nst_snap_mem_stats_fill(s, 4, 1024 * 1024, &st);
        assert_true(st.has_usable);
        assert_int_equal(st.usable_kib, 900 * 1024);
        const char *basis = NULL;
        assert_int_equal(nst_snap_memory_estimate(&st, &basis),
                         768 * MiB + NST_SNAP_MEM_OVERHEAD);
        assert_string_equal(basis, "rss+guest_stats");
        /* Without RSS. */
        nst_snap_mem_stats_fill(s + 1, 3, 1024 * 1024, &st);
        assert_int_equal(nst_snap_memory_estimate(&st, &basis),
                         768 * MiB + NST_SNAP_MEM_OVERHEAD);
        assert_string_equal(basis, "guest_stats");
}

static void test_estimate_capped(void **state) {
        /* QEMU's RSS includes its own memory: never more than the guest's RAM. */
        virDomainMemoryStatStruct s[] = {stat_of(VIR_DOMAIN_MEMORY_STAT_RSS, 300 * 1024)};
        struct nst_snap_mem_stats st;
        nst_snap_mem_stats_fill(s, 1, 256 * 1024, &st);
        assert_int_equal(nst_snap_memory_estimate(&st, NULL), 256 * MiB + NST_SNAP_MEM_OVERHEAD);
        /* Nonsense guest statistics (unused > available) are ignored. */
        virDomainMemoryStatStruct t[] = {stat_of(VIR_DOMAIN_MEMORY_STAT_AVAILABLE, 100),
                                         stat_of(VIR_DOMAIN_MEMORY_STAT_UNUSED, 200)};
        nst_snap_mem_stats_fill(t, 2, 512 * 1024, &st);
        const char *basis = NULL;
        assert_int_equal(nst_snap_memory_estimate(&st, &basis), 512 * MiB + NST_SNAP_MEM_OVERHEAD);
        assert_string_equal(basis, "configured");
}

/* ---- the space check ---- */

static void test_space_fits(void **state) {
        struct nst_snap_space items[] = {
                {"memory file", "/var/lib/nestor/snapshots", 1, 800 * MiB, 2048 * MiB},
                {"overlays", "/var/lib/nestor/instances/x", 1, NST_SNAP_OVERLAY_INITIAL,
                 2048 * MiB}};
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_snap_space_check(items, 2, 512 * MiB, &err), 0);
        assert_false(nst_error_is_set(&err));
        /* Exactly full is still fine. */
        items[0].need = 2048 * MiB - 512 * MiB - NST_SNAP_OVERLAY_INITIAL;
        assert_int_equal(nst_snap_space_check(items, 2, 512 * MiB, &err), 0);
}

static void test_space_refused(void **state) {
        /* One byte more than fits, counting both items on the same filesystem. */
        struct nst_snap_space items[] = {
                {"memory file", "/srv/tiny", 7, 16 * MiB - 1, 16 * MiB},
                {"overlays", "/srv/tiny/inst", 7, 2, 16 * MiB}};
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_snap_space_check(items, 2, 0, &err), -ENOSPC);
        assert_string_equal(err.cls, "InsufficientStorage");
        assert_non_null(strstr(err.message, "/srv/tiny"));
        assert_non_null(strstr(err.message, "memory file 16.0 MiB + overlays 0.0 MiB"));
        assert_non_null(strstr(err.message, "only 16.0 MiB are free"));
        assert_non_null(strstr(err.message, "nothing was done"));
}

static void test_space_reserve(void **state) {
        /* The reserve alone decides: 10 MiB needed, 500 free, 512 reserve. */
        struct nst_snap_space items[] = {{"memory file", "/a", 1, 10 * MiB, 500 * MiB}};
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_snap_space_check(items, 1, 512 * MiB, &err), -ENOSPC);
        assert_non_null(strstr(err.message, "512.0 MiB reserve"));
        assert_non_null(strstr(err.message, "= 522.0 MiB"));
        assert_int_equal(nst_snap_space_check(items, 1, 490 * MiB, &err), 0);
}

static void test_space_separate_filesystems(void **state) {
        /* Items on different filesystems do not add up; the one short of
         * space is named. */
        struct nst_snap_space items[] = {{"memory file", "/big", 1, 900 * MiB, 1000 * MiB},
                                         {"overlays", "/small", 2, 300 * KiB, 200 * KiB}};
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_snap_space_check(items, 2, 0, &err), -ENOSPC);
        assert_non_null(strstr(err.message, "in /small"));
        assert_null(strstr(err.message, "/big"));
        items[1].free = 400 * KiB;
        assert_int_equal(nst_snap_space_check(items, 2, 0, &err), 0);
        /* On one filesystem, the same numbers would not fit. */
        items[1].fs_id = 1;
        items[1].free = 1000 * MiB;
        assert_int_equal(nst_snap_space_check(items, 2, 100 * MiB, &err), -ENOSPC);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_names),
                cmocka_unit_test(test_quiesce),
                cmocka_unit_test_setup_teardown(test_sidecar_roundtrip, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_sidecar_errors, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_find_owner, setup_dir, teardown_dir),
                cmocka_unit_test(test_estimate_configured),
                cmocka_unit_test(test_estimate_rss),
                cmocka_unit_test(test_estimate_guest_stats),
                cmocka_unit_test(test_estimate_capped),
                cmocka_unit_test(test_space_fits),
                cmocka_unit_test(test_space_refused),
                cmocka_unit_test(test_space_reserve),
                cmocka_unit_test(test_space_separate_filesystems),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
