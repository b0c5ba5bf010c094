/* oslo's dispatch rules, checked against the cases captured from the real
 * Python server (rpc.md section 11). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "agent/dispatcher.h"

static int handler(struct nst_call *c, json_object *args, void *ud, json_object **ret,
                   struct nst_error *err) {
        return 0;
}

static struct nst_dispatcher *make(void) {
        struct nst_dispatcher *d;
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_dispatcher_new(&d), 0);
        const struct nst_method ms[] = {
                {"ping", "6.1", handler, NULL},
                {"spawn", "6.0", handler, NULL},
        };
        for (size_t i = 0; i < 2; i++)
                assert_int_equal(nst_dispatcher_add(d, NULL, &ms[i], "test", &err), 0);
        const struct nst_method base = {"ping", "1.1", handler, NULL};
        assert_int_equal(nst_dispatcher_add(d, "baseapi", &base, "test", &err), 0);
        return d;
}

static void find_ok(struct nst_dispatcher *d, const char *ns, const char *name, const char *v,
                    const char *expect_version) {
        const struct nst_dispatch_entry *e = NULL;
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_dispatcher_find(d, ns, name, v, &e, &err), 0);
        assert_string_equal(e->name, name);
        assert_string_equal(e->version_str, expect_version);
}

static void find_fails(struct nst_dispatcher *d, const char *ns, const char *name, const char *v,
                       const char *cls, const char *message) {
        const struct nst_dispatch_entry *e = NULL;
        struct nst_error err = NST_ERROR_INIT;
        assert_true(nst_dispatcher_find(d, ns, name, v, &e, &err) < 0);
        assert_null(e);
        assert_string_equal(err.cls, cls);
        assert_string_equal(err.module, "oslo_messaging.rpc.dispatcher");
        assert_string_equal(err.message, message);
}

static void test_compatible_versions(void **state) {
        struct nst_dispatcher *d = make();
        find_ok(d, NULL, "ping", "6.0", "6.1");
        find_ok(d, NULL, "ping", "6.1", "6.1");
        find_ok(d, NULL, "spawn", "6.0", "6.0");
        find_ok(d, "baseapi", "ping", "1.0", "1.1");
        nst_dispatcher_free(d);
}

static void test_unsupported_version(void **state) {
        struct nst_dispatcher *d = make();
        find_fails(d, NULL, "ping", "6.2", "UnsupportedVersion",
                   "Endpoint does not support RPC version 6.2. Attempted method: ping");
        find_fails(d, NULL, "ping", "7.0", "UnsupportedVersion",
                   "Endpoint does not support RPC version 7.0. Attempted method: ping");
        /* No version means 1.0, which no default-namespace method serves. */
        find_fails(d, NULL, "ping", NULL, "UnsupportedVersion",
                   "Endpoint does not support RPC version 1.0. Attempted method: ping");
        /* spawn exists but only up to 6.0. */
        find_fails(d, NULL, "spawn", "6.1", "UnsupportedVersion",
                   "Endpoint does not support RPC version 6.1. Attempted method: spawn");
        find_fails(d, NULL, "ping", "six", "UnsupportedVersion",
                   "Endpoint does not support RPC version six. Attempted method: ping");
        nst_dispatcher_free(d);
}

static void test_no_such_method(void **state) {
        struct nst_dispatcher *d = make();
        find_fails(d, NULL, "no_such_method", "6.0", "NoSuchMethod",
                   "Endpoint does not support RPC method no_such_method");
        find_fails(d, NULL, "_private", "6.0", "NoSuchMethod",
                   "Endpoint does not support RPC method _private");
        /* Unknown namespace: nothing matches, so oslo says UnsupportedVersion. */
        find_fails(d, "other", "ping", "1.0", "UnsupportedVersion",
                   "Endpoint does not support RPC version 1.0. Attempted method: ping");
        nst_dispatcher_free(d);
}

static void test_registration_errors(void **state) {
        struct nst_dispatcher *d = make();
        struct nst_error err = NST_ERROR_INIT;
        const struct nst_method dup = {"ping", "6.3", handler, NULL};
        assert_int_equal(nst_dispatcher_add(d, NULL, &dup, "other", &err), -EEXIST);
        assert_non_null(strstr(err.message, "already registered by test"));
        const struct nst_method major = {"ping", "7.0", handler, NULL};
        assert_int_equal(nst_dispatcher_add(d, NULL, &major, "other", &err), 0);
        find_ok(d, NULL, "ping", "7.0", "7.0");
        const struct nst_method bad_name = {"_hidden", "1.0", handler, NULL};
        assert_int_equal(nst_dispatcher_add(d, NULL, &bad_name, "x", &err), -EINVAL);
        const struct nst_method bad_version = {"fine", "1", handler, NULL};
        assert_true(nst_dispatcher_add(d, NULL, &bad_version, "x", &err) < 0);
        const struct nst_method no_fn = {"fine", "1.0", NULL, NULL};
        assert_int_equal(nst_dispatcher_add(d, NULL, &no_fn, "x", &err), -EINVAL);
        nst_dispatcher_free(d);
}

static void test_describe_sorted(void **state) {
        struct nst_dispatcher *d = make();
        json_object *list = nst_dispatcher_describe(d);
        assert_int_equal(json_object_array_length(list), 3);
        const char *first = json_object_get_string(
                json_object_object_get(json_object_array_get_idx(list, 0), "name"));
        const char *last_ns = json_object_get_string(
                json_object_object_get(json_object_array_get_idx(list, 2), "namespace"));
        assert_string_equal(first, "ping");
        assert_string_equal(last_ns, "baseapi");
        json_object_put(list);
        nst_dispatcher_free(d);
}

static void test_builtins_run_on_io_thread(void **state) {
        struct nst_dispatcher *d = make();
        struct nst_error err = NST_ERROR_INIT;
        const struct nst_dispatch_entry *e;
        const struct nst_method m = {"health", "1.0", handler, NULL};
        assert_int_equal(nst_dispatcher_add_builtin(d, NULL, &m, &err), 0);
        assert_int_equal(nst_dispatcher_find(d, NULL, "health", "1.0", &e, &err), 0);
        assert_true(e->io_thread);
        assert_string_equal(e->owner, "agent");
        assert_int_equal(nst_dispatcher_find(d, NULL, "ping", "6.0", &e, &err), 0);
        assert_false(e->io_thread);
        nst_dispatcher_free(d);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_compatible_versions),
                cmocka_unit_test(test_unsupported_version),
                cmocka_unit_test(test_no_such_method),
                cmocka_unit_test(test_registration_errors),
                cmocka_unit_test(test_describe_sorted),
                cmocka_unit_test(test_builtins_run_on_io_thread),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
