/* Redelivered requests must not run twice, within a bounded memory. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "agent/dedup.h"

static void make_id(unsigned n, char out[NST_UUID_HEX_LEN + 1]) {
        snprintf(out, NST_UUID_HEX_LEN + 1, "%032x", n);
}

static void test_first_time_not_seen_then_seen(void **state) {
        struct nst_dedup d;
        nst_dedup_init(&d);
        assert_false(nst_dedup_seen(&d, "0123456789abcdef0123456789abcdef"));
        assert_true(nst_dedup_seen(&d, "0123456789abcdef0123456789abcdef"));
        assert_true(nst_dedup_seen(&d, "0123456789abcdef0123456789abcdef"));
        assert_false(nst_dedup_seen(&d, "0123456789abcdef0123456789abcdee"));
        assert_int_equal(d.used, 2);
}

static void test_null_is_never_seen(void **state) {
        struct nst_dedup d;
        nst_dedup_init(&d);
        assert_false(nst_dedup_seen(&d, NULL));
        assert_false(nst_dedup_seen(&d, NULL));
        assert_int_equal(d.used, 0);
}

static void test_empty_and_short_ids(void **state) {
        struct nst_dedup d;
        nst_dedup_init(&d);
        /* An empty table must not match "" against its zeroed slots. */
        assert_false(nst_dedup_seen(&d, ""));
        assert_true(nst_dedup_seen(&d, ""));
        assert_false(nst_dedup_seen(&d, "abc"));
        assert_true(nst_dedup_seen(&d, "abc"));
        assert_false(nst_dedup_seen(&d, "ab"));
        assert_false(nst_dedup_seen(&d, "abcd"));
}

static void test_long_ids_compare_on_32_chars(void **state) {
        struct nst_dedup d;
        nst_dedup_init(&d);
        assert_false(nst_dedup_seen(&d, "0123456789abcdef0123456789abcdefXYZ"));
        assert_true(nst_dedup_seen(&d, "0123456789abcdef0123456789abcdef"));
        assert_true(nst_dedup_seen(&d, "0123456789abcdef0123456789abcdefOTHER"));
}

static void test_eviction_after_size(void **state) {
        struct nst_dedup d;
        char id[NST_UUID_HEX_LEN + 1];

        nst_dedup_init(&d);
        for (unsigned i = 0; i < NST_DEDUP_SIZE; i++) {
                make_id(i, id);
                assert_false(nst_dedup_seen(&d, id));
        }
        assert_int_equal(d.used, NST_DEDUP_SIZE);
        /* All NST_DEDUP_SIZE are still remembered. */
        for (unsigned i = 0; i < NST_DEDUP_SIZE; i++) {
                make_id(i, id);
                assert_true(nst_dedup_seen(&d, id));
        }
        /* One more evicts the oldest only. */
        make_id(NST_DEDUP_SIZE, id);
        assert_false(nst_dedup_seen(&d, id));
        make_id(1, id);
        assert_true(nst_dedup_seen(&d, id));
        make_id(NST_DEDUP_SIZE - 1, id);
        assert_true(nst_dedup_seen(&d, id));
        make_id(0, id);
        /* Forgotten: counts as new, and is remembered again (evicting 1). */
        assert_false(nst_dedup_seen(&d, id));
        assert_true(nst_dedup_seen(&d, id));
        make_id(1, id);
        assert_false(nst_dedup_seen(&d, id));
        assert_int_equal(d.used, NST_DEDUP_SIZE);
}

static void test_wraps_many_times(void **state) {
        struct nst_dedup d;
        char id[NST_UUID_HEX_LEN + 1];

        nst_dedup_init(&d);
        for (unsigned i = 0; i < 10 * NST_DEDUP_SIZE + 7; i++) {
                make_id(i, id);
                assert_false(nst_dedup_seen(&d, id));
                /* The last NST_DEDUP_SIZE are remembered, the one before is not. */
                make_id(i, id);
                assert_true(nst_dedup_seen(&d, id));
                if (i >= NST_DEDUP_SIZE - 1) {
                        make_id(i - (NST_DEDUP_SIZE - 1), id);
                        assert_true(nst_dedup_seen(&d, id));
                }
        }
        make_id(10 * NST_DEDUP_SIZE + 6 - NST_DEDUP_SIZE, id);
        assert_false(nst_dedup_seen(&d, id));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_first_time_not_seen_then_seen),
                cmocka_unit_test(test_null_is_never_seen),
                cmocka_unit_test(test_empty_and_short_ids),
                cmocka_unit_test(test_long_ids_compare_on_32_chars),
                cmocka_unit_test(test_eviction_after_size),
                cmocka_unit_test(test_wraps_many_times),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
