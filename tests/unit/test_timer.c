/* Periodic tasks keep a fixed rate, never stack and never burst, whatever
 * the loop's lateness: checked with a hand-driven clock. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "agent/timer.h"

static void noop(void *userdata) {
        (void)userdata;
}

/* Takes and finishes everything due at now; returns how many ran. */
static int run_due(struct nst_timers *t, int64_t now, int *which) {
        int idx, n = 0;
        while ((idx = nst_timers_take_due(t, now)) >= 0) {
                if (which)
                        which[n] = idx;
                n++;
                t->tasks[idx].fn(t->tasks[idx].userdata);
                nst_timers_finished(t, idx);
        }
        return n;
}

static void test_empty(void **state) {
        struct nst_timers t;
        nst_timers_init(&t);
        assert_int_equal(nst_timers_timeout(&t, 0), -1);
        assert_int_equal(nst_timers_take_due(&t, 1000), -1);
        nst_timers_done(&t);
        nst_timers_done(&t);
}

static void test_add_validates(void **state) {
        struct nst_timers t;
        nst_timers_init(&t);
        assert_int_equal(nst_timers_add(&t, "x", 0, 0, noop, NULL, 0), -EINVAL);
        assert_int_equal(nst_timers_add(&t, "x", -5, 0, noop, NULL, 0), -EINVAL);
        assert_int_equal(nst_timers_add(&t, "x", 10, 0, NULL, NULL, 0), -EINVAL);
        assert_int_equal(t.n, 0);
        assert_int_equal(nst_timers_add(&t, NULL, 10, 0, noop, NULL, 0), 0);
        assert_string_equal(t.tasks[0].name, "");
        nst_timers_done(&t);
}

static void test_initial_delay_then_fixed_rate(void **state) {
        struct nst_timers t;
        int calls = 0;
        nst_timers_init(&t);
        assert_int_equal(nst_timers_add(&t, "report", 1000, 250, noop, &calls, 10000), 0);
        assert_string_equal(t.tasks[0].name, "report");
        assert_int_equal(nst_timers_timeout(&t, 10000), 250);
        assert_int_equal(nst_timers_take_due(&t, 10249), -1);
        assert_int_equal(nst_timers_timeout(&t, 10249), 1);

        /* Starts a little late each time: the grid does not drift. */
        assert_int_equal(nst_timers_take_due(&t, 10260), 0);
        assert_true(t.tasks[0].running);
        assert_int_equal(t.tasks[0].next_due, 11250);
        assert_int_equal(nst_timers_take_due(&t, 10260), -1);
        nst_timers_finished(&t, 0);
        assert_false(t.tasks[0].running);
        assert_int_equal(nst_timers_timeout(&t, 10300), 950);

        assert_int_equal(run_due(&t, 11250, NULL), 1);
        assert_int_equal(t.tasks[0].next_due, 12250);
        assert_int_equal(run_due(&t, 12900, NULL), 1);
        assert_int_equal(t.tasks[0].next_due, 13250);
        assert_int_equal(nst_timers_timeout(&t, 12900), 350);
        /* Overdue: timeout is 0, not negative. */
        assert_int_equal(nst_timers_timeout(&t, 99999), 0);
        nst_timers_done(&t);
}

static void test_zero_or_negative_delay_is_due_now(void **state) {
        struct nst_timers t;
        nst_timers_init(&t);
        assert_int_equal(nst_timers_add(&t, "a", 100, 0, noop, NULL, 500), 0);
        assert_int_equal(nst_timers_add(&t, "b", 100, -30, noop, NULL, 500), 1);
        assert_int_equal(nst_timers_timeout(&t, 500), 0);
        assert_int_equal(run_due(&t, 500, NULL), 2);
        assert_int_equal(t.tasks[0].next_due, 600);
        assert_int_equal(t.tasks[1].next_due, 600);
        nst_timers_done(&t);
}

static void test_late_loop_runs_once_no_burst(void **state) {
        struct nst_timers t;
        nst_timers_init(&t);
        nst_timers_add(&t, "p", 100, 100, noop, NULL, 0);
        /* The loop wakes 5.5 periods late: one run, the next on the grid ahead. */
        assert_int_equal(run_due(&t, 650, NULL), 1);
        assert_int_equal(t.tasks[0].next_due, 700);
        assert_int_equal(nst_timers_timeout(&t, 650), 50);
        /* Exactly on a grid point: that slot is the one being run now. */
        assert_int_equal(run_due(&t, 900, NULL), 1);
        assert_int_equal(t.tasks[0].next_due, 1000);
        nst_timers_done(&t);
}

static void test_running_task_is_skipped_not_stacked(void **state) {
        struct nst_timers t;
        nst_timers_init(&t);
        nst_timers_add(&t, "slow", 100, 0, noop, NULL, 0);
        assert_int_equal(nst_timers_take_due(&t, 0), 0);
        assert_int_equal(t.tasks[0].next_due, 100);
        /* Still running: it does not bound the poll timeout... */
        assert_int_equal(nst_timers_timeout(&t, 50), -1);
        /* ...and its slots pass without it. */
        assert_int_equal(nst_timers_take_due(&t, 100), -1);
        assert_int_equal(nst_timers_take_due(&t, 250), -1);
        assert_int_equal(t.tasks[0].next_due, 300);
        assert_int_equal(nst_timers_take_due(&t, 260), -1);
        nst_timers_finished(&t, 0);
        /* Finished at 260: the skipped slots are not made up for. */
        assert_int_equal(nst_timers_take_due(&t, 260), -1);
        assert_int_equal(nst_timers_timeout(&t, 260), 40);
        assert_int_equal(nst_timers_take_due(&t, 300), 0);
        assert_int_equal(t.tasks[0].next_due, 400);
        nst_timers_finished(&t, 0);
        nst_timers_done(&t);
}

static void test_running_task_missed_by_loop_runs_once(void **state) {
        struct nst_timers t;
        nst_timers_init(&t);
        nst_timers_add(&t, "slow", 100, 0, noop, NULL, 0);
        assert_int_equal(nst_timers_take_due(&t, 0), 0);
        /* The loop did not look while it ran (slots 100, 200 passed). */
        nst_timers_finished(&t, 0);
        assert_int_equal(nst_timers_take_due(&t, 250), 0);
        assert_int_equal(t.tasks[0].next_due, 300);
        assert_int_equal(nst_timers_take_due(&t, 250), -1);
        nst_timers_finished(&t, 0);
        nst_timers_done(&t);
}

static void test_several_tasks_timeout_and_order(void **state) {
        struct nst_timers t;
        int which[8];
        char name[16];

        nst_timers_init(&t);
        /* More than the initial capacity, to cover growth. */
        for (int i = 0; i < 20; i++) {
                snprintf(name, sizeof(name), "t%d", i);
                assert_int_equal(nst_timers_add(&t, name, 1000 + i, 1000 - 10 * i, noop, NULL, 0),
                                 i);
        }
        for (int i = 0; i < 20; i++) {
                snprintf(name, sizeof(name), "t%d", i);
                assert_string_equal(t.tasks[i].name, name);
        }
        assert_int_equal(nst_timers_timeout(&t, 0), 1000 - 190);
        /* 805: t19 (810) not due yet. */
        assert_int_equal(run_due(&t, 805, NULL), 0);
        /* The most overdue comes first. */
        assert_int_equal(run_due(&t, 835, which), 3);
        assert_int_equal(which[0], 19);
        assert_int_equal(which[1], 18);
        assert_int_equal(which[2], 17);
        assert_int_equal(nst_timers_timeout(&t, 835), 840 - 835);

        /* A running task does not hide others from the timeout. */
        assert_int_equal(nst_timers_take_due(&t, 840), 16);
        assert_int_equal(nst_timers_timeout(&t, 840), 10);
        nst_timers_finished(&t, 16);
        nst_timers_done(&t);
}

static void test_finished_ignores_bad_index(void **state) {
        struct nst_timers t;
        nst_timers_init(&t);
        nst_timers_add(&t, "a", 10, 0, noop, NULL, 0);
        nst_timers_finished(&t, -1);
        nst_timers_finished(&t, 1);
        nst_timers_finished(&t, 0);
        assert_false(t.tasks[0].running);
        nst_timers_done(&t);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_empty),
                cmocka_unit_test(test_add_validates),
                cmocka_unit_test(test_initial_delay_then_fixed_rate),
                cmocka_unit_test(test_zero_or_negative_delay_is_due_now),
                cmocka_unit_test(test_late_loop_runs_once_no_burst),
                cmocka_unit_test(test_running_task_is_skipped_not_stacked),
                cmocka_unit_test(test_running_task_missed_by_loop_runs_once),
                cmocka_unit_test(test_several_tasks_timeout_and_order),
                cmocka_unit_test(test_finished_ignores_bad_index),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
