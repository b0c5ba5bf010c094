/* Fixed thread pool. Workers block every signal: signals are the main loop's
 * business (signalfd), and a handler running on a worker in the middle of a
 * plugin call would be a debugging nightmare. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/worker_pool.h"

/* Linux limits thread names to 15 characters plus the terminator. */
#define THREAD_NAME_MAX 16

struct job {
        struct job *next;
        void (*fn)(void *);
        void *data;
};

struct nst_worker_pool {
        pthread_mutex_t lock;
        pthread_cond_t wake;        /* a job was queued, or draining started */
        struct job *head, *tail;
        size_t queued, running;
        bool draining;
        pthread_t *threads;
        size_t n_threads;
        char name[THREAD_NAME_MAX];
};

static void *worker_main(void *arg) {
        struct nst_worker_pool *p = arg;

        pthread_mutex_lock(&p->lock);
        for (;;) {
                while (!p->head && !p->draining)
                        pthread_cond_wait(&p->wake, &p->lock);
                struct job *j = p->head;
                if (!j)
                        break; /* draining and nothing left */
                p->head = j->next;
                if (!p->head)
                        p->tail = NULL;
                p->queued--;
                p->running++;
                pthread_mutex_unlock(&p->lock);

                j->fn(j->data);
                free(j);

                pthread_mutex_lock(&p->lock);
                p->running--;
        }
        pthread_mutex_unlock(&p->lock);
        return NULL;
}

static void stop_and_join(struct nst_worker_pool *p, size_t n_started) {
        pthread_mutex_lock(&p->lock);
        p->draining = true;
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);
        for (size_t i = 0; i < n_started; i++)
                pthread_join(p->threads[i], NULL);
}

static void destroy(struct nst_worker_pool *p) {
        /* Only reachable with jobs left when no thread ever started. */
        while (p->head) {
                struct job *j = p->head;
                p->head = j->next;
                free(j);
        }
        pthread_cond_destroy(&p->wake);
        pthread_mutex_destroy(&p->lock);
        free(p->threads);
        free(p);
}

/* Threads inherit the creator's signal mask, so block everything around
 * pthread_create and restore the caller's mask afterwards. */
static int start_threads(struct nst_worker_pool *p, size_t *ret_started) {
        sigset_t all, saved;
        size_t i;
        int r = 0;

        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &saved);
        for (i = 0; i < p->n_threads; i++) {
                r = -pthread_create(&p->threads[i], NULL, worker_main, p);
                if (r < 0)
                        break;
                char tname[THREAD_NAME_MAX], suffix[24];
                size_t slen = (size_t)snprintf(suffix, sizeof(suffix), "-%zu", i);
                /* Cut the pool name, not the index, so threads stay distinguishable. */
                size_t keep = strnlen(p->name, sizeof(tname) - 1 - slen);
                memcpy(tname, p->name, keep);
                memcpy(tname + keep, suffix, slen + 1);
                pthread_setname_np(p->threads[i], tname);
        }
        pthread_sigmask(SIG_SETMASK, &saved, NULL);
        *ret_started = i;
        return r;
}

int nst_worker_pool_new(size_t n_threads, const char *name, struct nst_worker_pool **ret) {
        /* The bound also keeps "-<index>" short enough for a thread name. */
        if (n_threads == 0 || n_threads > 4096)
                return -EINVAL;

        struct nst_worker_pool *p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->threads = calloc(n_threads, sizeof(*p->threads));
        if (!p->threads) {
                free(p);
                return -ENOMEM;
        }
        p->n_threads = n_threads;
        name = name && *name ? name : "worker";
        size_t len = strnlen(name, sizeof(p->name) - 1);
        memcpy(p->name, name, len);
        p->name[len] = '\0';
        pthread_mutex_init(&p->lock, NULL);
        pthread_cond_init(&p->wake, NULL);

        size_t started;
        int r = start_threads(p, &started);
        if (r < 0) {
                stop_and_join(p, started);
                destroy(p);
                return r;
        }
        *ret = p;
        return 0;
}

int nst_worker_pool_submit(struct nst_worker_pool *p, void (*fn)(void *), void *data) {
        if (!fn)
                return -EINVAL;
        struct job *j = malloc(sizeof(*j));
        if (!j)
                return -ENOMEM;
        *j = (struct job){.fn = fn, .data = data};

        pthread_mutex_lock(&p->lock);
        if (p->draining) {
                pthread_mutex_unlock(&p->lock);
                free(j);
                return -ESHUTDOWN;
        }
        if (p->tail)
                p->tail->next = j;
        else
                p->head = j;
        p->tail = j;
        p->queued++;
        pthread_mutex_unlock(&p->lock);
        /* Signalled after unlocking, so the woken worker does not go straight
         * back to sleep on the mutex we still hold. */
        pthread_cond_signal(&p->wake);
        return 0;
}

size_t nst_worker_pool_pending(struct nst_worker_pool *p) {
        pthread_mutex_lock(&p->lock);
        size_t n = p->queued + p->running;
        pthread_mutex_unlock(&p->lock);
        return n;
}

void nst_worker_pool_free(struct nst_worker_pool *p) {
        if (!p)
                return;
        stop_and_join(p, p->n_threads);
        destroy(p);
}
