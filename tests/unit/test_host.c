/* The plugin host: loading real modules with dlopen, and the registries. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/config.h"
#include "agent/host.h"

static const char *plugin_dir(void) {
        static char dir[PATH_MAX];
        const char *build = getenv("NESTOR_BUILD_DIR");
        snprintf(dir, sizeof(dir), "%s/plugins", build ? build : "build");
        return dir;
}

struct fixture {
        struct nst_config *cfg;
        struct nst_host *host;
};

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));
        assert_int_equal(nst_config_new(&f->cfg), 0);
        assert_int_equal(nst_host_new(f->cfg, "node1", &f->host), 0);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;
        nst_host_free(f->host);
        nst_config_free(f->cfg);
        free(f);
        return 0;
}

static void test_load_testing_plugin(void **state) {
        struct fixture *f = *state;
        struct nst_error err = NST_ERROR_INIT;
        const char *names[] = {"testing"};

        assert_int_equal(nst_host_load_plugins(f->host, plugin_dir(), names, 1, &err), 0);
        const struct nst_dispatch_entry *e;
        assert_int_equal(nst_dispatcher_find(f->host->dispatcher, NULL, "echo", "1.3", &e, &err),
                         0);
        assert_string_equal(e->owner, "testing");
        assert_int_equal(f->host->timers.n, 1);

        json_object *report = nst_host_collect_report(f->host);
        assert_string_equal(json_object_get_string(json_object_object_get(report, "testing")),
                            "ok");
        json_object_put(report);

        assert_int_equal(nst_host_start_plugins(f->host, &err), 0);
        json_object *plugins = nst_host_describe_plugins(f->host);
        assert_int_equal(json_object_array_length(plugins), 1);
        json_object_put(plugins);

        /* Loading it twice is refused and leaves the first one in place. */
        assert_int_equal(nst_host_load_plugins(f->host, plugin_dir(), names, 1, &err), -EEXIST);
        assert_string_equal(err.cls, "PluginError");
        assert_int_equal(f->host->n_plugins, 1);
}

static void test_missing_plugin_is_all_or_nothing(void **state) {
        struct fixture *f = *state;
        struct nst_error err = NST_ERROR_INIT;
        const char *names[] = {"testing", "no_such_plugin"};

        assert_true(nst_host_load_plugins(f->host, plugin_dir(), names, 2, &err) < 0);
        assert_non_null(strstr(err.message, "no_such_plugin"));
        assert_int_equal(f->host->n_plugins, 0);
}

static void test_bad_names_and_symlinks(void **state) {
        struct fixture *f = *state;
        struct nst_error err = NST_ERROR_INIT;
        const char *bad[] = {"../etc/passwd"};
        assert_int_equal(nst_host_load_plugins(f->host, plugin_dir(), bad, 1, &err), -EINVAL);
        assert_non_null(strstr(err.message, "is not a plugin name"));

        char dir[] = "/tmp/nestor-plugins-XXXXXX", target[PATH_MAX + 16], link[64];
        assert_non_null(mkdtemp(dir));
        snprintf(target, sizeof(target), "%s/testing.so", plugin_dir());
        snprintf(link, sizeof(link), "%s/testing.so", dir);
        assert_int_equal(symlink(target, link), 0);
        const char *names[] = {"testing"};
        assert_int_equal(nst_host_load_plugins(f->host, dir, names, 1, &err), -EINVAL);
        assert_non_null(strstr(err.message, "not a regular file"));
        unlink(link);
        rmdir(dir);
}

static int dummy(struct nst_call *c, json_object *a, void *ud, json_object **r,
                 struct nst_error *err) {
        return 0;
}

static void test_registries(void **state) {
        struct fixture *f = *state;
        struct nst_error err = NST_ERROR_INIT;
        int impl = 42;

        assert_int_equal(nst_host_provide(f->host, "pci-claims", &impl, &err), 0);
        assert_ptr_equal(nst_host_lookup(f->host, "pci-claims"), &impl);
        assert_null(nst_host_lookup(f->host, "nothing"));
        assert_int_equal(nst_host_provide(f->host, "pci-claims", &impl, &err), -EEXIST);

        const struct nst_method m = {"thing", "1.0", dummy, NULL};
        assert_int_equal(nst_host_register_method(f->host, NULL, &m, &err), 0);
        assert_int_equal(nst_host_register_method(f->host, NULL, &m, &err), -EEXIST);
        assert_true(nst_host_register_periodic(f->host, "x", 0, 0, NULL, NULL, &err) < 0);
        assert_string_equal(nst_host_name(f->host), "node1");

        /* No transport yet: notify fails cleanly and frees the payload. */
        assert_int_equal(nst_host_notify(f->host, "x.y", NST_PRIO_INFO, json_object_new_object(),
                                         NULL, &err),
                         -ENOTCONN);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_load_testing_plugin, setup, teardown),
                cmocka_unit_test_setup_teardown(test_missing_plugin_is_all_or_nothing, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_bad_names_and_symlinks, setup, teardown),
                cmocka_unit_test_setup_teardown(test_registries, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
