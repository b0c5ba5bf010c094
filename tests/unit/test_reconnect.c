/* The reconnect state machine decides how hard we hit a broker that is down;
 * every rule is checked by driving the clock by hand. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "agent/reconnect.h"

#define MIN 500
#define MAX 4000

static void assert_in_range64(int64_t v, int64_t lo, int64_t hi) {
        if (v < lo || v > hi)
                fail_msg("%lld not in [%lld, %lld]", (long long)v, (long long)lo, (long long)hi);
}

/* Waits out the backoff and starts an attempt, returning the time it starts. */
static int64_t wait_and_connect(struct nst_reconnect *r, int64_t now) {
        int64_t t = nst_reconnect_timeout(r, now);
        assert_true(t >= 0);
        if (t > 0)
                assert_int_equal(nst_reconnect_run(r, now + t - 1), NST_RECONNECT_NONE);
        assert_int_equal(nst_reconnect_run(r, now + t), NST_RECONNECT_CONNECT);
        assert_int_equal(r->state, NST_RECONNECT_CONNECTING);
        return now + t;
}

static void test_first_run_connects_at_once(void **state) {
        struct nst_reconnect r;
        nst_reconnect_init(&r, 3, MIN, MAX, 42, 1000);
        assert_int_equal(r.state, NST_RECONNECT_BACKOFF);
        assert_int_equal(nst_reconnect_timeout(&r, 1000), 0);
        assert_int_equal(nst_reconnect_host(&r), 0);
        assert_int_equal(nst_reconnect_run(&r, 1000), NST_RECONNECT_CONNECT);
        assert_int_equal(r.state, NST_RECONNECT_CONNECTING);
        /* Nothing more to do while the owner connects. */
        assert_int_equal(nst_reconnect_run(&r, 1000), NST_RECONNECT_NONE);
        assert_int_equal(nst_reconnect_timeout(&r, 1000), -1);
        nst_reconnect_connected(&r, 1010);
        assert_int_equal(r.state, NST_RECONNECT_ACTIVE);
        assert_int_equal(r.n_connects, 1);
        assert_int_equal(nst_reconnect_timeout(&r, 5000), -1);
        assert_int_equal(nst_reconnect_run(&r, 99999), NST_RECONNECT_NONE);
}

static void test_backoff_grows_to_cap(void **state) {
        static const int64_t expect[] = {500, 1000, 2000, 4000, 4000, 4000};
        struct nst_reconnect r;
        int64_t now = 0;

        nst_reconnect_init(&r, 1, MIN, MAX, 7, now);
        assert_int_equal(nst_reconnect_run(&r, now), NST_RECONNECT_CONNECT);
        for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
                now += 3;
                nst_reconnect_connect_failed(&r, now);
                assert_int_equal(r.state, NST_RECONNECT_BACKOFF);
                assert_int_equal(r.attempts, i + 1);
                assert_int_equal(r.backoff, expect[i]);
                /* Jitter only shortens, never beyond a quarter. */
                int64_t t = nst_reconnect_timeout(&r, now);
                assert_in_range64(t, expect[i] * 3 / 4, expect[i]);
                now = wait_and_connect(&r, now);
        }
}

static void test_jitter_stays_in_bounds_and_varies(void **state) {
        for (unsigned seed = 0; seed < 200; seed++) {
                struct nst_reconnect r;
                int64_t now = 0, lo = INT64_MAX, hi = 0;

                nst_reconnect_init(&r, 2, MIN, MAX, seed, now);
                for (int i = 0; i < 50; i++) {
                        assert_int_equal(nst_reconnect_run(&r, now), NST_RECONNECT_CONNECT);
                        nst_reconnect_connect_failed(&r, now);
                        int64_t t = nst_reconnect_timeout(&r, now);
                        assert_in_range64(t, r.backoff * 3 / 4, r.backoff);
                        assert_true(t <= MAX);
                        if (r.backoff == MAX) {
                                lo = t < lo ? t : lo;
                                hi = t > hi ? t : hi;
                        }
                        now += t;
                }
                /* 46 capped waits with identical delays would mean no jitter. */
                assert_true(hi > lo);
        }
}

static void test_same_seed_same_schedule(void **state) {
        struct nst_reconnect a, b;
        nst_reconnect_init(&a, 1, MIN, MAX, 1234, 0);
        nst_reconnect_init(&b, 1, MIN, MAX, 1234, 0);
        for (int i = 0; i < 10; i++) {
                nst_reconnect_run(&a, a.deadline);
                nst_reconnect_run(&b, b.deadline);
                nst_reconnect_connect_failed(&a, a.deadline);
                nst_reconnect_connect_failed(&b, b.deadline);
                assert_int_equal(a.deadline, b.deadline);
        }
}

static void test_hosts_rotate(void **state) {
        struct nst_reconnect r;
        int64_t now = 0;

        nst_reconnect_init(&r, 3, MIN, MAX, 1, now);
        size_t seen[7];
        for (size_t i = 0; i < 7; i++) {
                now = wait_and_connect(&r, now);
                seen[i] = nst_reconnect_host(&r);
                nst_reconnect_connect_failed(&r, now);
        }
        for (size_t i = 0; i < 7; i++)
                assert_int_equal(seen[i], i % 3);

        /* A disconnect also moves on: that node may be the one going down. */
        now = wait_and_connect(&r, now);
        size_t h = nst_reconnect_host(&r);
        nst_reconnect_connected(&r, now);
        assert_int_equal(nst_reconnect_host(&r), h);
        nst_reconnect_disconnected(&r, now + 100000);
        assert_int_equal(nst_reconnect_host(&r), (h + 1) % 3);
        assert_int_equal(r.n_disconnects, 1);
}

static void test_single_host_stays(void **state) {
        struct nst_reconnect r;
        nst_reconnect_init(&r, 1, MIN, MAX, 1, 0);
        for (int i = 0; i < 5; i++) {
                nst_reconnect_run(&r, r.deadline);
                assert_int_equal(nst_reconnect_host(&r), 0);
                nst_reconnect_connect_failed(&r, r.deadline);
        }
}

static void test_stable_connection_resets_backoff(void **state) {
        struct nst_reconnect r;
        int64_t now = 0;

        nst_reconnect_init(&r, 2, MIN, MAX, 99, now);
        assert_int_equal(r.stable_ms, 10 * MIN);
        for (int i = 0; i < 4; i++) {
                now = wait_and_connect(&r, now);
                nst_reconnect_connect_failed(&r, now);
        }
        assert_int_equal(r.backoff, MAX);

        now = wait_and_connect(&r, now);
        nst_reconnect_connected(&r, now);
        assert_int_equal(r.attempts, 0);
        now += r.stable_ms;
        nst_reconnect_disconnected(&r, now);
        assert_int_equal(r.state, NST_RECONNECT_BACKOFF);
        assert_int_equal(r.backoff, 0);
        /* Immediate retry after a long-lived connection. */
        assert_int_equal(nst_reconnect_timeout(&r, now), 0);
        assert_int_equal(nst_reconnect_run(&r, now), NST_RECONNECT_CONNECT);
        /* And the series starts again from the bottom. */
        nst_reconnect_connect_failed(&r, now);
        assert_int_equal(r.backoff, MIN);
}

static void test_flapping_connection_keeps_growing(void **state) {
        static const int64_t expect[] = {500, 1000, 2000, 4000, 4000};
        struct nst_reconnect r;
        int64_t now = 0;

        nst_reconnect_init(&r, 1, MIN, MAX, 5, now);
        for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
                now = wait_and_connect(&r, now);
                nst_reconnect_connected(&r, now);
                /* Up for just under the stable period. */
                now += r.stable_ms - 1;
                nst_reconnect_disconnected(&r, now);
                assert_int_equal(r.backoff, expect[i]);
                assert_in_range64(nst_reconnect_timeout(&r, now), expect[i] * 3 / 4, expect[i]);
        }
        assert_int_equal(r.n_connects, 5);
        assert_int_equal(r.n_disconnects, 5);
}

static void test_timeout_counts_down(void **state) {
        struct nst_reconnect r;
        nst_reconnect_init(&r, 1, 1000, 1000, 3, 0);
        nst_reconnect_run(&r, 0);
        nst_reconnect_connect_failed(&r, 10000);
        int64_t d = r.deadline;
        assert_in_range64(d - 10000, 750, 1000);
        assert_int_equal(nst_reconnect_timeout(&r, 10000), d - 10000);
        assert_int_equal(nst_reconnect_timeout(&r, d - 1), 1);
        assert_int_equal(nst_reconnect_timeout(&r, d), 0);
        /* A late loop gets 0, not a negative value meaning "never". */
        assert_int_equal(nst_reconnect_timeout(&r, d + 5000), 0);
        assert_int_equal(nst_reconnect_run(&r, d + 5000), NST_RECONNECT_CONNECT);
        assert_int_equal(nst_reconnect_timeout(&r, d + 5000), -1);
}

static void test_disconnect_while_connecting_is_a_failure(void **state) {
        struct nst_reconnect r;
        nst_reconnect_init(&r, 2, MIN, MAX, 3, 0);
        nst_reconnect_run(&r, 0);
        nst_reconnect_disconnected(&r, 10);
        assert_int_equal(r.state, NST_RECONNECT_BACKOFF);
        assert_int_equal(r.backoff, MIN);
        assert_int_equal(r.attempts, 1);
        assert_int_equal(r.n_disconnects, 0);
        assert_int_equal(nst_reconnect_host(&r), 1);
        /* A second report in BACKOFF changes nothing. */
        int64_t d = r.deadline;
        nst_reconnect_disconnected(&r, 20);
        assert_int_equal(r.deadline, d);
        assert_int_equal(nst_reconnect_host(&r), 1);
}

static void test_no_hosts_is_void(void **state) {
        struct nst_reconnect r;
        nst_reconnect_init(&r, 0, MIN, MAX, 3, 0);
        assert_int_equal(r.state, NST_RECONNECT_VOID);
        assert_int_equal(nst_reconnect_run(&r, 100000), NST_RECONNECT_NONE);
        assert_int_equal(nst_reconnect_timeout(&r, 0), -1);
        nst_reconnect_connect_failed(&r, 1);
        assert_int_equal(r.state, NST_RECONNECT_VOID);
}

static void test_bad_limits_are_clamped(void **state) {
        struct nst_reconnect r;
        nst_reconnect_init(&r, 1, 0, -5, 3, 0);
        assert_true(r.min_backoff >= 1);
        assert_true(r.max_backoff >= r.min_backoff);
        assert_true(r.stable_ms >= 1000);
        nst_reconnect_run(&r, 0);
        nst_reconnect_connect_failed(&r, 0);
        assert_true(r.backoff >= 1);
}

static void test_state_names(void **state) {
        assert_string_equal(nst_reconnect_state_name(NST_RECONNECT_VOID), "VOID");
        assert_string_equal(nst_reconnect_state_name(NST_RECONNECT_BACKOFF), "BACKOFF");
        assert_string_equal(nst_reconnect_state_name(NST_RECONNECT_CONNECTING), "CONNECTING");
        assert_string_equal(nst_reconnect_state_name(NST_RECONNECT_ACTIVE), "ACTIVE");
        assert_string_equal(nst_reconnect_state_name((enum nst_reconnect_state)42), "UNKNOWN");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_first_run_connects_at_once),
                cmocka_unit_test(test_backoff_grows_to_cap),
                cmocka_unit_test(test_jitter_stays_in_bounds_and_varies),
                cmocka_unit_test(test_same_seed_same_schedule),
                cmocka_unit_test(test_hosts_rotate),
                cmocka_unit_test(test_single_host_stays),
                cmocka_unit_test(test_stable_connection_resets_backoff),
                cmocka_unit_test(test_flapping_connection_keeps_growing),
                cmocka_unit_test(test_timeout_counts_down),
                cmocka_unit_test(test_disconnect_while_connecting_is_a_failure),
                cmocka_unit_test(test_no_hosts_is_void),
                cmocka_unit_test(test_bad_limits_are_clamped),
                cmocka_unit_test(test_state_names),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
