/* Host topology from a fake sysfs tree (tests/fixtures/mkfakesysfs.py:
 * 2 CPUs per NUMA node, 4 CPUs per socket), memory and disk. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "plugins/inventory/topology.h"

static char dir[] = "/tmp/nestor-topo-XXXXXX";

static const char *source_dir(void) {
        const char *env = getenv("NESTOR_SOURCE_DIR");
        return env ? env : ".";
}

static int64_t get_int(json_object *o, const char *key) {
        json_object *v = json_object_object_get(o, key);
        if (!v)
                fail_msg("no %s in %s", key, json_object_to_json_string(o));
        return json_object_get_int64(v);
}

static void make_tree(const char *args) {
        char cmd[512];
        snprintf(cmd, sizeof(cmd),
                 "rm -rf %s/t && /usr/bin/python3 %s/tests/fixtures/mkfakesysfs.py %s/t "
                 "--quiet %s", dir, source_dir(), dir, args);
        assert_int_equal(system(cmd), 0);
}

static void test_two_sockets_four_nodes(void **state) {
        make_tree("--numa-nodes 4 --nics 4 --ports 1");
        char root[128];
        snprintf(root, sizeof(root), "%s/t/sys", dir);
        json_object *t = nst_topology_json(root);
        assert_int_equal(get_int(t, "threads"), 8);
        assert_int_equal(get_int(t, "sockets"), 2);
        assert_int_equal(get_int(t, "cores"), 8);
        assert_int_equal(get_int(t, "threads_per_core"), 1);
        json_object *nodes = json_object_object_get(t, "numa_nodes");
        assert_int_equal(json_object_array_length(nodes), 4);
        json_object *n3 = json_object_array_get_idx(nodes, 3);
        assert_int_equal(get_int(n3, "id"), 3);
        assert_string_equal(json_object_get_string(json_object_object_get(n3, "cpus")), "6-7");
        assert_int_equal(get_int(n3, "cpu_count"), 2);
        json_object_put(t);
}

static void test_missing_tree_gives_nulls(void **state) {
        json_object *t = nst_topology_json("/nonexistent");
        assert_null(json_object_object_get(t, "threads"));
        assert_null(json_object_object_get(t, "sockets"));
        assert_int_equal(json_object_array_length(json_object_object_get(t, "numa_nodes")), 0);
        json_object_put(t);
}

static void test_memory_and_disk(void **state) {
        char path[128];
        snprintf(path, sizeof(path), "%s/meminfo", dir);
        FILE *f = fopen(path, "w");
        fputs("MemTotal:       2048000 kB\nMemFree: 1 kB\nMemAvailable:   1024000 kB\n", f);
        fclose(f);
        json_object *m = nst_memory_json(path);
        assert_int_equal(get_int(m, "total_mb"), 2000);
        assert_int_equal(get_int(m, "available_mb"), 1000);
        json_object_put(m);
        /* A state_path that does not exist yet is measured where it will be. */
        snprintf(path, sizeof(path), "%s/not/yet", dir);
        json_object *d = nst_disk_json(path);
        assert_true(json_object_get_double(json_object_object_get(d, "total_gb")) > 0);
        assert_string_equal(json_object_get_string(json_object_object_get(d, "path")), path);
        json_object_put(d);
}

static int setup(void **state) {
        return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_two_sockets_four_nodes),
                cmocka_unit_test(test_missing_tree_gives_nulls),
                cmocka_unit_test(test_memory_and_disk),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
