/* The replication RPO scheduler (plugins/replication/repl_sched.h): due-time
 * arithmetic with known durations, earliest-deadline-first under scarce
 * slots, min_gap, pause, request_now, failure backoff, violations reported
 * once each way, the changed-bytes hint, next_event_ms, and a randomized run
 * of 1,000 replications checked step by step against a naive model. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugins/replication/repl_sched.h"

#define SEC INT64_C(1000)
#define MIN (60 * SEC)
#define HOUR (60 * MIN)
#define T0 (1000 * HOUR) /* an arbitrary "now" far from 0 (0 means "no point") */

static struct nst_sched *new_sched(const struct nst_sched_config *c) {
        struct nst_sched *s = NULL;
        assert_int_equal(nst_sched_new(c, &s), 0);
        assert_non_null(s);
        return s;
}

/* The defaults with a flat margin (5 s), so that due times are easy to
 * write; test_margin_scales_with_rpo covers the proportional part. */
static struct nst_sched *new_default(void) {
        struct nst_sched_config c;
        nst_sched_config_default(&c);
        c.margin_rpo_fraction = 0;
        return new_sched(&c);
}

static struct nst_sched_info info_of(const struct nst_sched *s, uint64_t id) {
        struct nst_sched_info i;
        assert_int_equal(nst_sched_get(s, id, &i), 0);
        return i;
}

/* Takes exactly one due id and checks which one. */
static void take_one(struct nst_sched *s, int64_t now, uint64_t expected) {
        uint64_t ids[8];
        assert_int_equal(nst_sched_take_due(s, now, ids, 8), 1);
        assert_int_equal(ids[0], expected);
}

static void assert_nothing_due(struct nst_sched *s, int64_t now) {
        uint64_t ids[8];
        assert_int_equal(nst_sched_take_due(s, now, ids, 8), 0);
}

/* ---- violations recorded by poll ---- */

struct report {
        uint64_t id;
        enum nst_sched_violation what;
        int64_t age;
};

struct reports {
        struct report r[64];
        size_t n;
};

static void record(void *userdata, uint64_t id, enum nst_sched_violation what, int64_t age) {
        struct reports *rs = userdata;
        assert_true(rs->n < 64);
        rs->r[rs->n++] = (struct report){id, what, age};
}

static struct reports poll_at(struct nst_sched *s, int64_t now) {
        struct reports rs = {.n = 0};
        nst_sched_poll(s, now, record, &rs);
        return rs;
}

/* ---- basics ---- */

static void test_config_defaults(void **state) {
        struct nst_sched_config c;
        nst_sched_config_default(&c);
        assert_int_equal(c.max_running, 4);
        assert_int_equal(c.min_gap_ms, 10 * SEC);
        assert_int_equal(c.margin_ms, 5 * SEC);
        assert_true(c.safety == 1.5);
        assert_int_equal(c.retry_min_ms, 30 * SEC);
        assert_int_equal(c.retry_max_ms, 15 * MIN);
        assert_int_equal(c.default_duration_ms, 10 * SEC);
        assert_true(c.margin_rpo_fraction == 0.02);
}

/* margin = max(margin_ms, rpo * margin_rpo_fraction) */
static void test_margin_scales_with_rpo(void **state) {
        struct nst_sched_config c;
        nst_sched_config_default(&c);
        struct nst_sched *s = new_sched(&c);
        assert_int_equal(nst_sched_add(s, 1, HOUR, T0, T0), 0);
        assert_int_equal(nst_sched_add(s, 2, MIN, T0, T0), 0);
        /* 1 h: 72 s of margin; 1 min: 1.2 s, so the flat 5 s. */
        assert_int_equal(info_of(s, 1).next_due_ms, T0 + HOUR - 15 * SEC - 72 * SEC);
        assert_int_equal(info_of(s, 2).next_due_ms, T0 + MIN - 15 * SEC - 5 * SEC);
        nst_sched_free(s);
}

static void test_add_duplicate_and_unknown(void **state) {
        struct nst_sched *s = new_default();
        struct nst_sched_info i;
        assert_int_equal(nst_sched_add(s, 7, HOUR, 0, T0), 0);
        assert_int_equal(nst_sched_add(s, 7, MIN, T0, T0), -EEXIST);
        assert_int_equal(nst_sched_count(s), 1);
        assert_int_equal(info_of(s, 7).rpo_ms, HOUR); /* the duplicate changed nothing */
        assert_int_equal(nst_sched_get(s, 8, &i), -ENOENT);
        /* Calls naming an unknown id are no-ops. */
        nst_sched_remove(s, 8);
        nst_sched_set_rpo(s, 8, MIN, T0);
        nst_sched_set_paused(s, 8, true, T0);
        nst_sched_request_now(s, 8, T0);
        nst_sched_hint_changed(s, 8, 1);
        nst_sched_finished(s, 8, true, T0, 1, 1, T0);
        assert_int_equal(nst_sched_count(s), 1);
        nst_sched_free(s);
        nst_sched_free(NULL);
}

static void test_first_cycle_immediate(void **state) {
        struct nst_sched *s = new_default();
        assert_int_equal(nst_sched_next_event_ms(s, T0), INT64_MAX);
        assert_int_equal(nst_sched_add(s, 1, HOUR, 0, T0), 0);
        assert_int_equal(nst_sched_next_event_ms(s, T0), 0);
        assert_int_equal(info_of(s, 1).next_due_ms, T0);
        assert_int_equal(info_of(s, 1).predicted_ms, 10 * SEC); /* the default */
        take_one(s, T0, 1);
        struct nst_sched_info i = info_of(s, 1);
        assert_true(i.running);
        assert_int_equal(i.next_due_ms, INT64_MAX);
        assert_nothing_due(s, T0); /* running: not offered twice */
        nst_sched_free(s);
}

/* due = last_point + rpo - predicted * safety - margin, predicted an EWMA
 * (alpha 0.3) of the durations. */
static void test_due_time_math(void **state) {
        struct nst_sched *s = new_default();
        assert_int_equal(nst_sched_add(s, 1, HOUR, 0, T0), 0);
        take_one(s, T0, 1);
        nst_sched_finished(s, 1, true, T0, 60 * SEC, 600000000, T0 + 60 * SEC);
        struct nst_sched_info i = info_of(s, 1);
        assert_int_equal(i.last_point_ms, T0);
        assert_int_equal(i.predicted_ms, 60 * SEC);
        assert_int_equal(i.next_due_ms, T0 + HOUR - 90 * SEC - 5 * SEC);
        /* The finish asks for a poll first (a violation may have ended). */
        assert_int_equal(nst_sched_next_event_ms(s, T0 + 60 * SEC), 0);
        assert_int_equal(poll_at(s, T0 + 60 * SEC).n, 0);
        assert_int_equal(nst_sched_next_event_ms(s, T0 + 60 * SEC),
                         HOUR - 95 * SEC - 60 * SEC);

        int64_t t = i.next_due_ms;
        assert_nothing_due(s, t - 1);
        take_one(s, t, 1);
        nst_sched_finished(s, 1, true, t, 120 * SEC, 1200000000, t + 120 * SEC);
        i = info_of(s, 1);
        /* 60 + 0.3 * (120 - 60) = 78 s */
        assert_int_equal(i.predicted_ms, 78 * SEC);
        assert_int_equal(i.next_due_ms, t + HOUR - 117 * SEC - 5 * SEC);
        nst_sched_free(s);
}

/* An existing point: the default duration stands in for the estimate. */
static void test_existing_point_uses_default_duration(void **state) {
        struct nst_sched_config c;
        nst_sched_config_default(&c);
        c.default_duration_ms = 40 * SEC;
        c.margin_rpo_fraction = 0;
        struct nst_sched *s = new_sched(&c);
        assert_int_equal(nst_sched_add(s, 1, HOUR, T0 - 10 * MIN, T0), 0);
        assert_int_equal(info_of(s, 1).next_due_ms, T0 - 10 * MIN + HOUR - 60 * SEC - 5 * SEC);
        assert_int_equal(info_of(s, 1).predicted_ms, 40 * SEC);
        nst_sched_free(s);
}

/* ---- slots and order ---- */

static void test_edf_when_slots_are_scarce(void **state) {
        struct nst_sched_config c;
        nst_sched_config_default(&c);
        c.max_running = 2;
        struct nst_sched *s = new_sched(&c);
        /* All overdue; deadlines: id 1 at T0+2h, 2 at T0+1m, 3 at T0+15m, 4 at T0+5m. */
        int64_t old = T0 - 24 * HOUR;
        assert_int_equal(nst_sched_add(s, 1, 26 * HOUR, old, T0), 0);
        assert_int_equal(nst_sched_add(s, 2, 24 * HOUR + MIN, old, T0), 0);
        assert_int_equal(nst_sched_add(s, 3, 24 * HOUR + 15 * MIN, old, T0), 0);
        assert_int_equal(nst_sched_add(s, 4, 24 * HOUR + 5 * MIN, old, T0), 0);
        uint64_t ids[8];
        size_t n = nst_sched_take_due(s, T0 + 3 * HOUR, ids, 8);
        assert_int_equal(n, 2);
        assert_int_equal(ids[0], 2);
        assert_int_equal(ids[1], 4);
        /* Full: nothing more, and due cycles do not make next_event 0 (once
         * the violations are reported, nothing is left to wake up for). */
        assert_int_equal(nst_sched_take_due(s, T0 + 3 * HOUR, ids, 8), 0);
        assert_int_equal(poll_at(s, T0 + 3 * HOUR).n, 4);
        assert_int_equal(nst_sched_next_event_ms(s, T0 + 3 * HOUR), INT64_MAX);
        nst_sched_finished(s, 4, true, T0 + 3 * HOUR, SEC, 1, T0 + 3 * HOUR + SEC);
        assert_int_equal(nst_sched_next_event_ms(s, T0 + 3 * HOUR + SEC), 0);
        take_one(s, T0 + 3 * HOUR + SEC, 3);
        nst_sched_finished(s, 2, false, 0, 0, 0, T0 + 3 * HOUR + 2 * SEC);
        take_one(s, T0 + 3 * HOUR + 2 * SEC, 1);
        nst_sched_free(s);
}

static void test_max_running_and_max_param(void **state) {
        struct nst_sched *s = new_default();
        for (uint64_t id = 1; id <= 10; id++)
                assert_int_equal(nst_sched_add(s, id, HOUR, 0, T0), 0);
        uint64_t ids[16];
        assert_int_equal(nst_sched_take_due(s, T0, ids, 1), 1); /* the caller's max */
        assert_int_equal(nst_sched_next_event_ms(s, T0), 0);
        assert_int_equal(nst_sched_take_due(s, T0, ids + 1, 16), 3); /* max_running 4 */
        assert_int_equal(nst_sched_take_due(s, T0, ids, 16), 0);
        size_t running = 0;
        for (uint64_t id = 1; id <= 10; id++)
                running += info_of(s, id).running;
        assert_int_equal(running, 4);
        nst_sched_finished(s, ids[0], true, T0, SEC, 1, T0 + SEC);
        assert_int_equal(nst_sched_take_due(s, T0 + SEC, ids, 16), 1);
        nst_sched_free(s);
}

/* ---- min_gap ---- */

static void test_min_gap(void **state) {
        struct nst_sched *s = new_default();
        /* rpo 4 min, cycles of 100 s: the estimate says start at p + 85 s,
         * earlier than the last end + min_gap (p + 110 s), which still
         * leaves room before the latest start (p + 140 s). */
        assert_int_equal(nst_sched_add(s, 1, 4 * MIN, 0, T0), 0);
        take_one(s, T0, 1);
        nst_sched_finished(s, 1, true, T0, 100 * SEC, 1000, T0 + 100 * SEC);
        assert_int_equal(info_of(s, 1).next_due_ms, T0 + 110 * SEC);

        /* A long cycle: min_gap never pushes past deadline - predicted. */
        take_one(s, T0 + 110 * SEC, 1);
        nst_sched_finished(s, 1, true, T0 + 110 * SEC, 100 * SEC, 1000, T0 + 245 * SEC);
        /* predicted 100 s, deadline T0+350 s: end + gap (T0+255 s) is past
         * the latest start, T0+250 s. */
        assert_int_equal(info_of(s, 1).next_due_ms, T0 + 250 * SEC);
        nst_sched_free(s);
}

static void test_min_gap_capped_by_rpo(void **state) {
        struct nst_sched_config c;
        nst_sched_config_default(&c);
        c.min_gap_ms = 10 * MIN;
        c.margin_ms = 50 * SEC;
        struct nst_sched *s = new_sched(&c);
        assert_int_equal(nst_sched_add(s, 1, MIN, 0, T0), 0);
        take_one(s, T0, 1);
        nst_sched_finished(s, 1, true, T0, SEC, 1000, T0 + SEC);
        /* estimate: T0 + 60 - 1.5 - 50 = T0 + 8.5 s; gap capped at 15 s. */
        assert_int_equal(info_of(s, 1).next_due_ms, T0 + 16 * SEC);
        nst_sched_free(s);
}

/* ---- pause, request_now ---- */

static void test_pause_resume(void **state) {
        struct nst_sched *s = new_default();
        assert_int_equal(nst_sched_add(s, 1, MIN, 0, T0), 0);
        nst_sched_set_paused(s, 1, true, T0);
        assert_true(info_of(s, 1).paused);
        assert_nothing_due(s, T0);
        assert_int_equal(nst_sched_next_event_ms(s, T0), 0); /* a pending check */
        assert_int_equal(poll_at(s, T0).n, 0);
        assert_int_equal(nst_sched_next_event_ms(s, T0), INT64_MAX);
        /* Long past the rpo: no violation while paused. */
        assert_int_equal(poll_at(s, T0 + HOUR).n, 0);
        assert_false(info_of(s, 1).violation);
        nst_sched_request_now(s, 1, T0 + HOUR); /* ignored while paused */
        assert_nothing_due(s, T0 + HOUR);

        nst_sched_set_paused(s, 1, false, T0 + HOUR);
        assert_false(info_of(s, 1).paused);
        struct reports rs = poll_at(s, T0 + HOUR);
        assert_int_equal(rs.n, 1); /* the point is old: violation at once */
        assert_int_equal(rs.r[0].what, NST_SCHED_VIOLATION_RAISED);
        take_one(s, T0 + HOUR, 1);

        /* Paused while running: the cycle finishes, nothing new starts. */
        nst_sched_set_paused(s, 1, true, T0 + HOUR);
        rs = poll_at(s, T0 + HOUR);
        assert_int_equal(rs.n, 1);
        assert_int_equal(rs.r[0].what, NST_SCHED_VIOLATION_CLEARED);
        nst_sched_finished(s, 1, true, T0 + HOUR, SEC, 1, T0 + HOUR + SEC);
        assert_false(info_of(s, 1).running);
        assert_int_equal(info_of(s, 1).last_point_ms, T0 + HOUR);
        assert_nothing_due(s, T0 + 2 * HOUR);
        assert_int_equal(poll_at(s, T0 + 2 * HOUR).n, 0);
        nst_sched_free(s);
}

/* A cycle abandoned by a pause: no backoff and no minimum gap after the
 * resume; a failure, by contrast, backs off. */
static void test_cancelled_is_no_failure(void **state) {
        struct nst_sched *s = new_default();
        assert_int_equal(nst_sched_add(s, 1, HOUR, 0, T0), 0);
        take_one(s, T0, 1);
        nst_sched_set_paused(s, 1, true, T0 + SEC);
        nst_sched_cancelled(s, 1, T0 + SEC);
        struct nst_sched_info i = info_of(s, 1);
        assert_false(i.running);
        assert_int_equal(i.failures, 0);
        assert_nothing_due(s, T0 + HOUR);
        nst_sched_set_paused(s, 1, false, T0 + 2 * SEC);
        take_one(s, T0 + 2 * SEC, 1); /* still no point: due at once */
        nst_sched_cancelled(s, 1, T0 + 3 * SEC);
        take_one(s, T0 + 3 * SEC, 1);
        nst_sched_finished(s, 1, false, 0, 0, 0, T0 + 4 * SEC);
        assert_int_equal(info_of(s, 1).failures, 1);
        assert_nothing_due(s, T0 + 4 * SEC + 29 * SEC);
        nst_sched_cancelled(s, 1, T0 + 5 * SEC); /* not running: ignored */
        assert_int_equal(info_of(s, 1).failures, 1);

        /* A scheduled cycle abandoned by a pause runs again as soon as the
         * replication is resumed: its point is as old as when it began. */
        nst_sched_remove(s, 1);
        assert_int_equal(nst_sched_add(s, 2, HOUR, T0, T0), 0);
        int64_t due = info_of(s, 2).next_due_ms;
        assert_true(due > T0 && due < T0 + HOUR);
        assert_nothing_due(s, due - 1);
        take_one(s, due, 2);
        nst_sched_set_paused(s, 2, true, due + SEC);
        nst_sched_cancelled(s, 2, due + 2 * SEC);
        assert_nothing_due(s, due + 10 * MIN);
        nst_sched_set_paused(s, 2, false, due + 10 * MIN);
        assert_int_equal(nst_sched_next_event_ms(s, due + 10 * MIN), 0);
        take_one(s, due + 10 * MIN, 2);
        nst_sched_free(s);
}

static void test_request_now(void **state) {
        struct nst_sched_config c;
        nst_sched_config_default(&c);
        c.max_running = 1;
        struct nst_sched *s = new_sched(&c);
        assert_int_equal(nst_sched_add(s, 1, 24 * HOUR, T0, T0), 0);
        assert_int_equal(nst_sched_add(s, 2, 24 * HOUR, T0, T0), 0);
        assert_nothing_due(s, T0 + MIN);
        nst_sched_request_now(s, 1, T0 + MIN);
        assert_int_equal(info_of(s, 1).next_due_ms, T0 + MIN);
        assert_int_equal(nst_sched_next_event_ms(s, T0 + MIN), 0);
        take_one(s, T0 + MIN, 1);
        /* Still bounded by max_running. */
        nst_sched_request_now(s, 2, T0 + MIN);
        assert_nothing_due(s, T0 + MIN);
        nst_sched_request_now(s, 1, T0 + MIN); /* running: ignored */
        nst_sched_finished(s, 1, true, T0 + MIN, SEC, 1, T0 + MIN + SEC);
        take_one(s, T0 + MIN + SEC, 2);
        /* The request is consumed: no second cycle of 1 right away. */
        nst_sched_finished(s, 2, true, T0 + MIN, SEC, 1, T0 + MIN + 2 * SEC);
        assert_nothing_due(s, T0 + 2 * MIN);
        nst_sched_free(s);
}

/* ---- failures ---- */

static void test_failure_backoff_doubles_and_caps(void **state) {
        struct nst_sched *s = new_default();
        assert_int_equal(nst_sched_add(s, 1, HOUR, 0, T0), 0);
        int64_t now = T0;
        const int64_t expected[] = {30, 60, 120, 240, 480, 900, 900};
        for (size_t k = 0; k < sizeof(expected) / sizeof(expected[0]); k++) {
                take_one(s, now, 1);
                now += SEC;
                nst_sched_finished(s, 1, false, 0, 0, 0, now);
                struct nst_sched_info i = info_of(s, 1);
                assert_int_equal(i.failures, k + 1);
                assert_int_equal(i.next_due_ms, now + expected[k] * SEC);
                assert_nothing_due(s, i.next_due_ms - 1);
                now = i.next_due_ms;
        }
        take_one(s, now, 1);
        nst_sched_finished(s, 1, true, now, 10 * SEC, 1000, now + 10 * SEC);
        assert_int_equal(info_of(s, 1).failures, 0);
        assert_int_equal(info_of(s, 1).next_due_ms, now + HOUR - 15 * SEC - 5 * SEC);
        nst_sched_free(s);
}

/* The retry comes no later than the cycle would have been due anyway. */
static void test_failure_retry_not_after_normal_due(void **state) {
        struct nst_sched *s = new_default();
        assert_int_equal(nst_sched_add(s, 1, MIN, T0, T0), 0);
        nst_sched_request_now(s, 1, T0);
        take_one(s, T0, 1);
        nst_sched_finished(s, 1, false, 0, 0, 0, T0 + 10 * SEC);
        /* normal T0 + 60 - 15 - 5 = T0 + 40 s, retry T0 + 10 + 30 s: equal */
        assert_int_equal(info_of(s, 1).next_due_ms, T0 + 40 * SEC);
        nst_sched_set_rpo(s, 1, 2 * MIN, T0 + 10 * SEC);
        /* normal T0 + 100 s, retry T0 + 40 s */
        assert_int_equal(info_of(s, 1).next_due_ms, T0 + 40 * SEC);
        nst_sched_set_rpo(s, 1, MIN - 5 * SEC, T0 + 10 * SEC);
        /* normal T0 + 35 s comes first */
        assert_int_equal(info_of(s, 1).next_due_ms, T0 + 35 * SEC);
        nst_sched_free(s);
}

/* ---- violations ---- */

static void test_violation_raised_once_cleared_once(void **state) {
        struct nst_sched_config c;
        nst_sched_config_default(&c);
        c.max_running = 1;
        struct nst_sched *s = new_sched(&c);
        assert_int_equal(nst_sched_add(s, 1, MIN, T0, T0), 0);
        assert_int_equal(nst_sched_add(s, 2, HOUR, 0, T0), 0);
        take_one(s, T0, 2); /* holds the only slot */
        /* The next event is the violation start of 1 (strictly older). */
        assert_int_equal(nst_sched_next_event_ms(s, T0), MIN + 1);
        assert_int_equal(poll_at(s, T0 + MIN).n, 0);
        struct reports rs = poll_at(s, T0 + MIN + 1);
        assert_int_equal(rs.n, 1);
        assert_int_equal(rs.r[0].id, 1);
        assert_int_equal(rs.r[0].what, NST_SCHED_VIOLATION_RAISED);
        assert_int_equal(rs.r[0].age, MIN + 1);
        assert_true(info_of(s, 1).violation);
        assert_int_equal(poll_at(s, T0 + 2 * MIN).n, 0);
        assert_int_equal(poll_at(s, T0 + 3 * MIN).n, 0);
        /* Only 2's violation start (T0 + 1 h + 1 ms) is left to wake for. */
        assert_int_equal(nst_sched_next_event_ms(s, T0 + 3 * MIN), HOUR + 1 - 3 * MIN);

        nst_sched_finished(s, 2, true, T0, SEC, 1, T0 + 3 * MIN);
        take_one(s, T0 + 3 * MIN, 1);
        assert_int_equal(poll_at(s, T0 + 3 * MIN).n, 0); /* still old while it runs */
        nst_sched_finished(s, 1, true, T0 + 3 * MIN, 20 * SEC, 1, T0 + 3 * MIN + 20 * SEC);
        rs = poll_at(s, T0 + 3 * MIN + 20 * SEC);
        assert_int_equal(rs.n, 1);
        assert_int_equal(rs.r[0].what, NST_SCHED_VIOLATION_CLEARED);
        assert_int_equal(rs.r[0].age, 20 * SEC);
        assert_false(info_of(s, 1).violation);
        assert_int_equal(poll_at(s, T0 + 3 * MIN + 30 * SEC).n, 0);
        nst_sched_free(s);
}

/* A failed cycle does not clear; a violation nobody polled during is still
 * reported both ways; without a point, the age counts from the add. */
static void test_violation_edges(void **state) {
        struct nst_sched *s = new_default();
        assert_int_equal(nst_sched_add(s, 1, MIN, 0, T0), 0);
        take_one(s, T0, 1);
        nst_sched_finished(s, 1, false, 0, 0, 0, T0 + 2 * MIN);
        struct reports rs = poll_at(s, T0 + 2 * MIN);
        assert_int_equal(rs.n, 1);
        assert_int_equal(rs.r[0].what, NST_SCHED_VIOLATION_RAISED);
        assert_int_equal(rs.r[0].age, 2 * MIN);

        assert_int_equal(nst_sched_add(s, 2, MIN, T0, T0), 0);
        nst_sched_request_now(s, 2, T0 + 30 * SEC);
        take_one(s, T0 + 30 * SEC, 2);
        nst_sched_finished(s, 2, true, T0 + 30 * SEC, 45 * SEC, 1, T0 + 75 * SEC);
        rs = poll_at(s, T0 + 80 * SEC);
        assert_int_equal(rs.n, 2);
        assert_int_equal(rs.r[0].id, 2);
        assert_int_equal(rs.r[0].what, NST_SCHED_VIOLATION_RAISED);
        assert_int_equal(rs.r[0].age, 75 * SEC);
        assert_int_equal(rs.r[1].what, NST_SCHED_VIOLATION_CLEARED);
        assert_int_equal(rs.r[1].age, 50 * SEC);

        /* A larger rpo clears without a cycle; removing reports nothing. */
        nst_sched_remove(s, 2);
        nst_sched_set_rpo(s, 1, HOUR, T0 + 3 * MIN);
        rs = poll_at(s, T0 + 3 * MIN);
        assert_int_equal(rs.n, 1);
        assert_int_equal(rs.r[0].what, NST_SCHED_VIOLATION_CLEARED);
        nst_sched_set_rpo(s, 1, MIN, T0 + 3 * MIN);
        nst_sched_remove(s, 1);
        assert_int_equal(poll_at(s, T0 + 4 * MIN).n, 0);
        nst_sched_free(s);
}

/* ---- the hint ---- */

static void test_hint_scales_prediction(void **state) {
        struct nst_sched *s = new_default();
        assert_int_equal(nst_sched_add(s, 1, 4 * HOUR, 0, T0), 0);
        take_one(s, T0, 1);
        /* 1 GB in 100 s: 10 MB/s */
        nst_sched_finished(s, 1, true, T0, 100 * SEC, 1000000000, T0 + 100 * SEC);
        int64_t due = info_of(s, 1).next_due_ms;
        assert_int_equal(due, T0 + 4 * HOUR - 150 * SEC - 5 * SEC);

        nst_sched_hint_changed(s, 1, 5000000000); /* 5 GB waiting: 500 s */
        assert_int_equal(info_of(s, 1).predicted_ms, 500 * SEC);
        assert_int_equal(info_of(s, 1).next_due_ms, T0 + 4 * HOUR - 750 * SEC - 5 * SEC);
        nst_sched_hint_changed(s, 1, 1000000); /* less than usual: the EWMA floor */
        assert_int_equal(info_of(s, 1).predicted_ms, 100 * SEC);
        assert_int_equal(info_of(s, 1).next_due_ms, due);

        /* A small cycle teaches the overhead: 10 MB in 11 s = 1 s + 10 s. */
        int64_t t = due;
        take_one(s, t, 1);
        nst_sched_finished(s, 1, true, t, 11 * SEC, 100000000, t + 11 * SEC);
        nst_sched_hint_changed(s, 1, 5000000000);
        /* rate: 10000 + 0.3 * (9090.9 - 10000) = 9727.27 B/ms -> 514.02 s;
         * overhead: 11 s - 10 s = 1 s. */
        int64_t p = info_of(s, 1).predicted_ms;
        assert_true(p >= 515 * SEC - 10 && p <= 515 * SEC + 30);
        /* The hint is spent by the next successful cycle. */
        take_one(s, t + 4 * HOUR, 1);
        int64_t t2 = t + 4 * HOUR;
        nst_sched_finished(s, 1, true, t2, 11 * SEC, 100000000, t2 + 11 * SEC);
        assert_true(info_of(s, 1).predicted_ms < 100 * SEC);
        nst_sched_free(s);
}

/* A first cycle has no throughput of its own: its hint is divided by the
 * fleet's (bytes over time of every recent cycle, big ones weighing most)
 * as of the hint. */
static void test_hint_uses_fleet_rate_when_cold(void **state) {
        struct nst_sched *s = new_default();
        assert_int_equal(nst_sched_add(s, 1, 4 * HOUR, T0, T0), 0);
        nst_sched_hint_changed(s, 1, 3000000000); /* no cycle anywhere yet */
        assert_int_equal(info_of(s, 1).predicted_ms, 10 * SEC);

        assert_int_equal(nst_sched_add(s, 2, HOUR, 0, T0), 0);
        assert_int_equal(nst_sched_add(s, 3, HOUR, 0, T0), 0);
        uint64_t ids[4];
        assert_int_equal(nst_sched_take_due(s, T0, ids, 4), 2);
        /* 1 GB in 50 s, then 10 MB in 10 s (the older sum decays by 0.995):
         * 1.005 GB / 59.75 s = 16820.08 B/ms */
        nst_sched_finished(s, 2, true, T0, 50 * SEC, 1000000000, T0 + 50 * SEC);
        nst_sched_finished(s, 3, true, T0, 10 * SEC, 10000000, T0 + 50 * SEC);
        /* The rate is taken when the hint comes: the old hint is unchanged. */
        assert_int_equal(info_of(s, 1).predicted_ms, 10 * SEC);
        nst_sched_hint_changed(s, 1, 3000000000);
        /* 3 GB / 16820.08 B/ms = 178358.6 ms */
        int64_t p = info_of(s, 1).predicted_ms;
        assert_true(p >= 178358 && p <= 178359);
        nst_sched_hint_changed(s, 1, 1000); /* tiny: the default stays the floor */
        assert_int_equal(info_of(s, 1).predicted_ms, 10 * SEC);
        nst_sched_free(s);
}

/* ---- removal ---- */

static void test_remove_while_running(void **state) {
        struct nst_sched_config c;
        nst_sched_config_default(&c);
        c.max_running = 1;
        struct nst_sched *s = new_sched(&c);
        assert_int_equal(nst_sched_add(s, 1, HOUR, 0, T0), 0);
        assert_int_equal(nst_sched_add(s, 2, HOUR, 0, T0 + 1), 0);
        take_one(s, T0 + 1, 1);
        nst_sched_remove(s, 1);
        assert_int_equal(nst_sched_count(s), 1);
        nst_sched_finished(s, 1, true, T0, SEC, 1, T0 + SEC); /* harmless */
        take_one(s, T0 + SEC, 2); /* the slot came back with the removal */
        /* Added again while the old cycle ran: its late finish is ignored. */
        assert_int_equal(nst_sched_add(s, 1, HOUR, 0, T0 + 2 * SEC), 0);
        nst_sched_finished(s, 1, true, T0, SEC, 1, T0 + 3 * SEC);
        assert_int_equal(info_of(s, 1).last_point_ms, 0);
        assert_false(info_of(s, 2).paused);
        assert_nothing_due(s, T0 + 3 * SEC); /* 2 still holds the slot */
        nst_sched_free(s);
}

static void test_next_event(void **state) {
        struct nst_sched *s = new_default();
        assert_int_equal(nst_sched_add(s, 1, HOUR, T0, T0), 0);
        /* due T0 + 1h - 20 s */
        assert_int_equal(nst_sched_next_event_ms(s, T0), HOUR - 20 * SEC);
        assert_int_equal(nst_sched_next_event_ms(s, T0 + HOUR - 20 * SEC), 0);
        assert_int_equal(nst_sched_next_event_ms(s, T0 + 2 * HOUR), 0);
        assert_int_equal(nst_sched_add(s, 2, MIN, T0, T0), 0);
        assert_int_equal(nst_sched_next_event_ms(s, T0), 40 * SEC);
        nst_sched_set_rpo(s, 2, 0, T0); /* no rpo: never due, no violation */
        assert_int_equal(poll_at(s, T0).n, 0);
        assert_int_equal(nst_sched_next_event_ms(s, T0), HOUR - 20 * SEC);
        assert_int_equal(info_of(s, 2).next_due_ms, INT64_MAX);
        nst_sched_request_now(s, 2, T0 + 5);
        assert_int_equal(nst_sched_next_event_ms(s, T0), 5);
        nst_sched_remove(s, 2);
        nst_sched_remove(s, 1);
        assert_int_equal(nst_sched_next_event_ms(s, T0), INT64_MAX);
        nst_sched_free(s);
}

/* ---- randomized run against a naive model ---- */

#define R_IDS 1500 /* ids 1..R_IDS, about 1000 present at a time */
#define R_STEPS 4000

struct model {
        bool used;
        int64_t rpo, last_point, added, last_end, requested_at, missed_age;
        double dur, rate, oh;
        unsigned dur_n, rate_n, oh_n, failures;
        uint64_t hint;
        double hint_fleet_rate;
        bool has_hint, paused, running, requested, reported, missed;
};

struct world {
        struct nst_sched_config cfg;
        struct model m[R_IDS + 1];
        unsigned running;
        uint64_t rng;
        double fleet_bytes, fleet_ms;
};

static uint64_t rnd(struct world *w) {
        w->rng ^= w->rng << 13;
        w->rng ^= w->rng >> 7;
        w->rng ^= w->rng << 17;
        return w->rng;
}

static int64_t m_ceil(double x) {
        return x > 0 ? (int64_t)ceil(x) : 0;
}

static double m_predicted(const struct world *w, const struct model *m) {
        double base = m->dur_n ? m->dur : (double)w->cfg.default_duration_ms;
        double x = -1;
        if (m->has_hint && m->rate_n && m->rate > 0)
                x = (double)m->hint / m->rate + m->oh;
        else if (m->has_hint && m->hint_fleet_rate > 0)
                x = (double)m->hint / m->hint_fleet_rate;
        return x > base ? x : base;
}

static int64_t m_base(const struct model *m) {
        return m->last_point ? m->last_point : m->added;
}

static int64_t m_deadline(const struct model *m) {
        return m->rpo > 0 ? m_base(m) + m->rpo : INT64_MAX;
}

static int64_t m_due(const struct world *w, const struct model *m) {
        if (m->paused || m->running)
                return INT64_MAX;
        int64_t due = INT64_MAX;
        if (m->rpo > 0 && !m->last_point) {
                due = m->added;
        } else if (m->rpo > 0) {
                double p = m_predicted(w, m);
                int64_t margin = m_ceil((double)m->rpo * w->cfg.margin_rpo_fraction);
                if (margin < w->cfg.margin_ms)
                        margin = w->cfg.margin_ms;
                due = m_deadline(m) - m_ceil(p * w->cfg.safety) - margin;
                if (m->last_end != INT64_MIN && m->failures == 0) {
                        int64_t gap = w->cfg.min_gap_ms < m->rpo / 4 ? w->cfg.min_gap_ms
                                                                     : m->rpo / 4;
                        int64_t floor_ = m->last_end + gap, latest = m_deadline(m) - m_ceil(p);
                        int64_t bound = floor_ < latest ? floor_ : latest;
                        if (bound > due)
                                due = bound;
                }
        }
        if (m->failures) {
                int64_t b = w->cfg.retry_min_ms;
                for (unsigned k = 1; k < m->failures; k++)
                        b = b * 2 > w->cfg.retry_max_ms ? w->cfg.retry_max_ms : b * 2;
                int64_t retry = m->last_end + b;
                due = due <= m->last_end ? retry : (due < retry ? due : retry);
        }
        if (m->requested && m->requested_at < due)
                due = m->requested_at;
        return due;
}

static bool m_violated(const struct model *m, int64_t now) {
        return !m->paused && m->rpo > 0 && now - m_base(m) > m->rpo;
}

static void m_event(struct model *m, int64_t now) {
        if (!m->reported && !m->missed && m_violated(m, now)) {
                m->missed = true;
                m->missed_age = now - m_base(m);
        }
}

static void m_ewma(double *avg, unsigned *n, double x) {
        *avg = *n ? *avg + 0.3 * (x - *avg) : x;
        (*n)++;
}

static void compare_one(const struct world *w, const struct nst_sched *s, uint64_t id) {
        const struct model *m = &w->m[id];
        struct nst_sched_info i;
        if (!m->used) {
                assert_int_equal(nst_sched_get(s, id, &i), -ENOENT);
                return;
        }
        assert_int_equal(nst_sched_get(s, id, &i), 0);
        assert_int_equal(i.rpo_ms, m->rpo);
        assert_int_equal(i.last_point_ms, m->last_point);
        assert_int_equal(i.next_due_ms, m_due(w, m));
        assert_int_equal(i.predicted_ms, m_ceil(m_predicted(w, m)));
        assert_int_equal(i.running, m->running);
        assert_int_equal(i.paused, m->paused);
        assert_int_equal(i.violation, m->reported);
        assert_int_equal(i.failures, m->failures);
}

static int cmp_report(const void *a, const void *b) {
        const struct report *x = a, *y = b;
        if (x->id != y->id)
                return x->id < y->id ? -1 : 1;
        return (int)x->what - (int)y->what;
}

struct big_reports {
        struct report r[R_IDS * 2];
        size_t n;
};

static void record_big(void *userdata, uint64_t id, enum nst_sched_violation what, int64_t age) {
        struct big_reports *rs = userdata;
        assert_true(rs->n < R_IDS * 2);
        rs->r[rs->n++] = (struct report){id, what, age};
}

/* Model and scheduler report the same transitions (order aside). */
static void check_poll(struct world *w, struct nst_sched *s, int64_t now,
                       struct big_reports *got, struct big_reports *want) {
        got->n = want->n = 0;
        nst_sched_poll(s, now, record_big, got);
        for (uint64_t id = 1; id <= R_IDS; id++) {
                struct model *m = &w->m[id];
                if (!m->used)
                        continue;
                bool raise_missed = m->missed && !m->reported;
                bool was = m->reported || raise_missed, is = m_violated(m, now);
                if (raise_missed)
                        want->r[want->n++] =
                                (struct report){id, NST_SCHED_VIOLATION_RAISED, m->missed_age};
                if (is != was)
                        want->r[want->n++] = (struct report){
                                id, is ? NST_SCHED_VIOLATION_RAISED : NST_SCHED_VIOLATION_CLEARED,
                                now - m_base(m)};
                m->missed = false;
                m->reported = is;
        }
        qsort(got->r, got->n, sizeof(got->r[0]), cmp_report);
        assert_int_equal(got->n, want->n);
        for (size_t k = 0; k < got->n; k++) {
                assert_int_equal(got->r[k].id, want->r[k].id);
                assert_int_equal(got->r[k].what, want->r[k].what);
                assert_int_equal(got->r[k].age, want->r[k].age);
        }
}

/* Earliest deadline first among the due, up to the free slots. */
static void check_take(struct world *w, struct nst_sched *s, int64_t now) {
        uint64_t got[64], want[64];
        size_t max = 1 + rnd(w) % 8;
        size_t n_got = nst_sched_take_due(s, now, got, max);
        size_t n_want = 0;
        while (n_want < max && w->running < w->cfg.max_running) {
                uint64_t best = 0;
                for (uint64_t id = 1; id <= R_IDS; id++) {
                        const struct model *m = &w->m[id];
                        if (!m->used || m_due(w, m) > now)
                                continue;
                        if (!best || m_deadline(m) < m_deadline(&w->m[best]))
                                best = id;
                }
                if (!best)
                        break;
                want[n_want++] = best;
                w->m[best].running = true;
                w->m[best].requested = false;
                w->running++;
        }
        assert_int_equal(n_got, n_want);
        for (size_t k = 0; k < n_got; k++)
                assert_int_equal(got[k], want[k]);
}

static int64_t m_next_event(const struct world *w, int64_t now) {
        int64_t t = INT64_MAX;
        for (uint64_t id = 1; id <= R_IDS; id++) {
                const struct model *m = &w->m[id];
                if (!m->used)
                        continue;
                if (w->running < w->cfg.max_running && m_due(w, m) < t)
                        t = m_due(w, m);
                if (!m->paused && m->rpo > 0 && !m->reported && m_deadline(m) + 1 < t)
                        t = m_deadline(m) + 1;
        }
        return t == INT64_MAX ? INT64_MAX : t <= now ? 0 : t - now;
}

static void random_op(struct world *w, struct nst_sched *s, int64_t now) {
        static const int64_t rpos[] = {0, MIN, 5 * MIN, 15 * MIN, HOUR};
        uint64_t id = 1 + rnd(w) % R_IDS;
        struct model *m = &w->m[id];
        unsigned op = rnd(w) % 100;
        if (op < 25) { /* add */
                int64_t rpo = rpos[rnd(w) % 5];
                int64_t point = rnd(w) % 2 ? 0 : now - (int64_t)(rnd(w) % (2 * HOUR));
                int r = nst_sched_add(s, id, rpo, point, now);
                assert_int_equal(r, m->used ? -EEXIST : 0);
                if (!m->used)
                        *m = (struct model){.used = true, .rpo = rpo, .last_point = point,
                                            .added = now, .last_end = INT64_MIN};
        } else if (op < 30) {
                nst_sched_remove(s, id);
                if (m->used && m->running)
                        w->running--;
                m->used = false;
        } else if (op < 38) {
                int64_t rpo = rpos[rnd(w) % 5];
                nst_sched_set_rpo(s, id, rpo, now);
                if (m->used) {
                        m_event(m, now);
                        m->rpo = rpo;
                }
        } else if (op < 46) {
                bool paused = rnd(w) % 3 == 0;
                nst_sched_set_paused(s, id, paused, now);
                if (m->used && m->paused != paused) {
                        m_event(m, now);
                        m->paused = paused;
                        m->requested = false;
                }
        } else if (op < 52) {
                nst_sched_request_now(s, id, now);
                if (m->used && !m->paused && !m->running && !m->requested) {
                        m->requested = true;
                        m->requested_at = now;
                }
        } else if (op < 60) {
                uint64_t bytes = rnd(w) % 4000000000u;
                nst_sched_hint_changed(s, id, bytes);
                if (m->used) {
                        m->has_hint = true;
                        m->hint = bytes;
                        m->hint_fleet_rate = w->fleet_ms > 0 ? w->fleet_bytes / w->fleet_ms : 0;
                }
        } else { /* finish one running cycle, if any */
                uint64_t start = rnd(w) % R_IDS, fid = 0;
                for (uint64_t k = 0; k < R_IDS && !fid; k++) {
                        uint64_t c = 1 + (start + k) % R_IDS;
                        if (w->m[c].used && w->m[c].running)
                                fid = c;
                }
                if (!fid)
                        return;
                m = &w->m[fid];
                bool ok = rnd(w) % 4 != 0;
                int64_t dur = (int64_t)(rnd(w) % (5 * MIN));
                uint64_t bytes = rnd(w) % 3 ? rnd(w) % 2000000000u : 0;
                int64_t point = now - dur;
                nst_sched_finished(s, fid, ok, point, dur, bytes, now);
                m_event(m, now);
                m->running = false;
                w->running--;
                m->last_end = now;
                if (ok) {
                        if (point > m->last_point)
                                m->last_point = point;
                        m->failures = 0;
                        m->has_hint = false;
                        double d = dur > 0 ? (double)dur : 0;
                        m_ewma(&m->dur, &m->dur_n, d);
                        if (bytes && d > 0) {
                                w->fleet_bytes = w->fleet_bytes * 0.995 + (double)bytes;
                                w->fleet_ms = w->fleet_ms * 0.995 + d;
                                if (m->rate_n) {
                                        double o = d - (double)bytes / m->rate;
                                        m_ewma(&m->oh, &m->oh_n, o > 0 ? o : 0);
                                }
                                m_ewma(&m->rate, &m->rate_n, (double)bytes / d);
                        }
                } else {
                        m->failures++;
                }
        }
}

static void test_randomized_against_model(void **state) {
        struct world *w = calloc(1, sizeof(*w));
        struct big_reports *got = malloc(sizeof(*got)), *want = malloc(sizeof(*want));
        assert_non_null(w);
        assert_non_null(got);
        assert_non_null(want);
        nst_sched_config_default(&w->cfg);
        w->cfg.max_running = 16;
        w->rng = UINT64_C(0x9e3779b97f4a7c15);
        struct nst_sched *s = new_sched(&w->cfg);
        int64_t now = T0;
        for (uint64_t id = 1; id <= 1000; id++) {
                assert_int_equal(nst_sched_add(s, id, 15 * MIN, now - (int64_t)id * SEC, now), 0);
                w->m[id] = (struct model){.used = true, .rpo = 15 * MIN,
                                          .last_point = now - (int64_t)id * SEC, .added = now,
                                          .last_end = INT64_MIN};
        }
        for (int step = 0; step < R_STEPS; step++) {
                now += (int64_t)(rnd(w) % (20 * SEC));
                for (int k = 0; k < 4; k++)
                        random_op(w, s, now);
                check_take(w, s, now);
                check_poll(w, s, now, got, want);
                assert_int_equal(nst_sched_next_event_ms(s, now), m_next_event(w, now));
                if (step % 20 == 0) {
                        size_t count = 0;
                        for (uint64_t id = 1; id <= R_IDS; id++) {
                                compare_one(w, s, id);
                                count += w->m[id].used;
                        }
                        assert_int_equal(nst_sched_count(s), count);
                }
        }
        nst_sched_free(s);
        free(got);
        free(want);
        free(w);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_config_defaults),
                cmocka_unit_test(test_add_duplicate_and_unknown),
                cmocka_unit_test(test_first_cycle_immediate),
                cmocka_unit_test(test_due_time_math),
                cmocka_unit_test(test_existing_point_uses_default_duration),
                cmocka_unit_test(test_edf_when_slots_are_scarce),
                cmocka_unit_test(test_max_running_and_max_param),
                cmocka_unit_test(test_min_gap),
                cmocka_unit_test(test_min_gap_capped_by_rpo),
                cmocka_unit_test(test_pause_resume),
                cmocka_unit_test(test_cancelled_is_no_failure),
                cmocka_unit_test(test_request_now),
                cmocka_unit_test(test_failure_backoff_doubles_and_caps),
                cmocka_unit_test(test_failure_retry_not_after_normal_due),
                cmocka_unit_test(test_violation_raised_once_cleared_once),
                cmocka_unit_test(test_violation_edges),
                cmocka_unit_test(test_hint_scales_prediction),
                cmocka_unit_test(test_hint_uses_fleet_rate_when_cold),
                cmocka_unit_test(test_margin_scales_with_rpo),
                cmocka_unit_test(test_remove_while_running),
                cmocka_unit_test(test_next_event),
                cmocka_unit_test(test_randomized_against_model),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
