/* The pool runs every job exactly once, really in parallel, on threads that
 * are named and deaf to signals, and drains its queue on shutdown. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/worker_pool.h"

#define WAIT_S 10

static struct timespec deadline_in(int seconds) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += seconds;
        return ts;
}

static void test_bad_arguments(void **state) {
        struct nst_worker_pool *p = NULL;
        assert_int_equal(nst_worker_pool_new(0, "x", &p), -EINVAL);
        assert_null(p);
        assert_int_equal(nst_worker_pool_new(1, NULL, &p), 0);
        assert_int_equal(nst_worker_pool_submit(p, NULL, NULL), -EINVAL);
        assert_int_equal(nst_worker_pool_pending(p), 0);
        nst_worker_pool_free(p);
        nst_worker_pool_free(NULL);
}

#define N_JOBS 5000
static int ran[N_JOBS];

static void count_job(void *data) {
        __atomic_add_fetch((int *)data, 1, __ATOMIC_RELAXED);
}

static void test_every_job_runs_once(void **state) {
        struct nst_worker_pool *p;
        memset(ran, 0, sizeof(ran));
        assert_int_equal(nst_worker_pool_new(8, "once", &p), 0);
        for (int i = 0; i < N_JOBS; i++)
                assert_int_equal(nst_worker_pool_submit(p, count_job, &ran[i]), 0);
        nst_worker_pool_free(p);
        for (int i = 0; i < N_JOBS; i++)
                assert_int_equal(ran[i], 1);
}

/* A rendezvous of all workers: it completes only if that many jobs run at the
 * same time. The timed wait turns a serial pool into a failure, not a hang. */
struct rendezvous {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        int parties, arrived, met;
        char names[16][16];
        bool signals_blocked[16];
};

static void rendezvous_job(void *data) {
        struct rendezvous *rv = data;
        sigset_t mask;
        char name[16] = "";

        pthread_getname_np(pthread_self(), name, sizeof(name));
        pthread_sigmask(SIG_BLOCK, NULL, &mask);

        pthread_mutex_lock(&rv->lock);
        int me = rv->arrived++;
        memcpy(rv->names[me], name, sizeof(name));
        rv->signals_blocked[me] = sigismember(&mask, SIGTERM) && sigismember(&mask, SIGINT) &&
                                  sigismember(&mask, SIGHUP) && sigismember(&mask, SIGUSR1) &&
                                  sigismember(&mask, SIGCHLD);
        pthread_cond_broadcast(&rv->cond);
        struct timespec until = deadline_in(WAIT_S);
        int r = 0;
        while (rv->arrived < rv->parties && r != ETIMEDOUT)
                r = pthread_cond_timedwait(&rv->cond, &rv->lock, &until);
        if (rv->arrived >= rv->parties)
                rv->met++;
        pthread_mutex_unlock(&rv->lock);
}

static void run_rendezvous(const char *pool_name, struct rendezvous *rv) {
        struct nst_worker_pool *p;
        sigset_t before, after;

        pthread_mutex_init(&rv->lock, NULL);
        pthread_cond_init(&rv->cond, NULL);
        /* The creating thread's mask must come back unchanged. */
        sigemptyset(&before);
        sigaddset(&before, SIGUSR2);
        pthread_sigmask(SIG_SETMASK, &before, NULL);
        assert_int_equal(nst_worker_pool_new((size_t)rv->parties, pool_name, &p), 0);
        pthread_sigmask(SIG_SETMASK, NULL, &after);
        assert_true(sigismember(&after, SIGUSR2));
        assert_false(sigismember(&after, SIGTERM));
        assert_false(sigismember(&after, SIGINT));
        sigemptyset(&before);
        pthread_sigmask(SIG_SETMASK, &before, NULL);

        for (int i = 0; i < rv->parties; i++)
                assert_int_equal(nst_worker_pool_submit(p, rendezvous_job, rv), 0);
        nst_worker_pool_free(p);
        assert_int_equal(rv->arrived, rv->parties);
        assert_int_equal(rv->met, rv->parties);
        for (int i = 0; i < rv->parties; i++)
                assert_true(rv->signals_blocked[i]);
        pthread_cond_destroy(&rv->cond);
        pthread_mutex_destroy(&rv->lock);
}

static bool has_name(const struct rendezvous *rv, const char *name) {
        for (int i = 0; i < rv->parties; i++)
                if (strcmp(rv->names[i], name) == 0)
                        return true;
        return false;
}

static void test_runs_concurrently_on_named_threads(void **state) {
        struct rendezvous rv = {.parties = 4};
        run_rendezvous("rpc", &rv);
        assert_true(has_name(&rv, "rpc-0"));
        assert_true(has_name(&rv, "rpc-1"));
        assert_true(has_name(&rv, "rpc-2"));
        assert_true(has_name(&rv, "rpc-3"));
}

static void test_long_name_keeps_index(void **state) {
        struct rendezvous rv = {.parties = 12};
        run_rendezvous("averyveryverylongpoolname", &rv);
        assert_true(has_name(&rv, "averyveryvery-0"));
        assert_true(has_name(&rv, "averyveryver-11"));
        for (int i = 0; i < rv.parties; i++)
                assert_true(strlen(rv.names[i]) <= 15);
}

/* A gate jobs wait on, so the test controls when they finish. */
struct gate {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool open;
        int entered;
};

static void gate_job(void *data) {
        struct gate *g = data;
        pthread_mutex_lock(&g->lock);
        g->entered++;
        pthread_cond_broadcast(&g->cond);
        struct timespec until = deadline_in(WAIT_S);
        while (!g->open)
                if (pthread_cond_timedwait(&g->cond, &g->lock, &until) == ETIMEDOUT)
                        break;
        pthread_mutex_unlock(&g->lock);
}

static void gate_wait_entered(struct gate *g, int n) {
        struct timespec until = deadline_in(WAIT_S);
        pthread_mutex_lock(&g->lock);
        while (g->entered < n)
                assert_int_not_equal(pthread_cond_timedwait(&g->cond, &g->lock, &until),
                                     ETIMEDOUT);
        pthread_mutex_unlock(&g->lock);
}

static void gate_open(struct gate *g) {
        pthread_mutex_lock(&g->lock);
        g->open = true;
        pthread_cond_broadcast(&g->cond);
        pthread_mutex_unlock(&g->lock);
}

static void test_pending_counts_queued_and_running(void **state) {
        struct gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0};
        struct nst_worker_pool *p;
        int counter = 0;

        assert_int_equal(nst_worker_pool_new(2, "pend", &p), 0);
        assert_int_equal(nst_worker_pool_pending(p), 0);
        assert_int_equal(nst_worker_pool_submit(p, gate_job, &g), 0);
        assert_int_equal(nst_worker_pool_submit(p, gate_job, &g), 0);
        gate_wait_entered(&g, 2);
        /* Both threads busy: these wait in the queue. */
        for (int i = 0; i < 3; i++)
                assert_int_equal(nst_worker_pool_submit(p, count_job, &counter), 0);
        assert_int_equal(nst_worker_pool_pending(p), 5);
        assert_int_equal(__atomic_load_n(&counter, __ATOMIC_RELAXED), 0);

        gate_open(&g);
        for (int i = 0; i < WAIT_S * 1000 && nst_worker_pool_pending(p) > 0; i++)
                usleep(1000);
        assert_int_equal(nst_worker_pool_pending(p), 0);
        assert_int_equal(__atomic_load_n(&counter, __ATOMIC_RELAXED), 3);
        nst_worker_pool_free(p);
}

struct seq {
        int log[200];
        int n;
};
struct seq_job {
        struct seq *s;
        int id;
};

static void seq_job_fn(void *data) {
        struct seq_job *j = data;
        j->s->log[j->s->n++] = j->id; /* one worker: no race */
}

static void test_fifo_order(void **state) {
        struct seq s = {.n = 0};
        struct seq_job jobs[200];
        struct nst_worker_pool *p;
        struct gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0};

        assert_int_equal(nst_worker_pool_new(1, "fifo", &p), 0);
        /* Hold the only worker so everything below is queued before it runs. */
        assert_int_equal(nst_worker_pool_submit(p, gate_job, &g), 0);
        gate_wait_entered(&g, 1);
        for (int i = 0; i < 200; i++) {
                jobs[i] = (struct seq_job){&s, i};
                assert_int_equal(nst_worker_pool_submit(p, seq_job_fn, &jobs[i]), 0);
        }
        gate_open(&g);
        nst_worker_pool_free(p);
        assert_int_equal(s.n, 200);
        for (int i = 0; i < 200; i++)
                assert_int_equal(s.log[i], i);
}

/* Shutdown: what is queued still runs, and a job that tries to queue more
 * once draining started is refused. */
struct drain_ctx {
        struct nst_worker_pool *p;
        struct gate *g;
        int extra_ran;
        int accepted;
        int result;
};

static void extra_job(void *data) {
        struct drain_ctx *c = data;
        __atomic_add_fetch(&c->extra_ran, 1, __ATOMIC_RELAXED);
}

static void resubmitting_job(void *data) {
        struct drain_ctx *c = data;
        gate_job(c->g);
        int r = 0;
        for (int i = 0; i < WAIT_S * 1000; i++) {
                r = nst_worker_pool_submit(c->p, extra_job, c);
                if (r < 0)
                        break;
                c->accepted++;
                usleep(1000);
        }
        c->result = r;
}

static void *free_in_thread(void *arg) {
        nst_worker_pool_free(arg);
        return NULL;
}

static void test_shutdown_drains_and_refuses(void **state) {
        struct gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0};
        struct drain_ctx c = {.g = &g};
        static int queued[300];
        pthread_t t;

        memset(queued, 0, sizeof(queued));
        assert_int_equal(nst_worker_pool_new(2, "drain", &c.p), 0);
        assert_int_equal(nst_worker_pool_submit(c.p, resubmitting_job, &c), 0);
        gate_wait_entered(&g, 1);
        for (int i = 0; i < 300; i++)
                assert_int_equal(nst_worker_pool_submit(c.p, count_job, &queued[i]), 0);

        /* free() blocks until the drain is over, so it runs on its own thread. */
        assert_int_equal(pthread_create(&t, NULL, free_in_thread, c.p), 0);
        gate_open(&g);
        assert_int_equal(pthread_join(t, NULL), 0);

        assert_int_equal(c.result, -ESHUTDOWN);
        for (int i = 0; i < 300; i++)
                assert_int_equal(queued[i], 1);
        /* Jobs accepted before draining started ran too. */
        assert_int_equal(c.extra_ran, c.accepted);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_bad_arguments),
                cmocka_unit_test(test_every_job_runs_once),
                cmocka_unit_test(test_runs_concurrently_on_named_threads),
                cmocka_unit_test(test_long_name_keeps_index),
                cmocka_unit_test(test_pending_counts_queued_and_running),
                cmocka_unit_test(test_fifo_order),
                cmocka_unit_test(test_shutdown_drains_and_refuses),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
