/* Worker threads push, the I/O thread polls the eventfd and takes the whole
 * list at once, so it holds the lock once per wakeup rather than per item.
 *
 * The eventfd is written on the empty -> non-empty transition only, so a
 * burst of pushes costs one write. Both system calls happen outside the lock
 * (a woken I/O thread must not then block on the pusher's mutex), in an order
 * that loses no wakeup: take_all clears the eventfd *before* taking the list,
 * so a push that lands after the take finds the list empty and signals
 * again. The price is an occasional spurious wakeup with nothing to take. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "agent/outbox.h"

struct nst_outbox {
        pthread_mutex_t lock;
        struct nst_outbox_item *head, *tail;
        int efd;
};

static void signal_fd(int efd) {
        uint64_t one = 1;
        ssize_t n;
        /* EAGAIN would mean the counter is at its 2^64-2 limit: already readable. */
        do
                n = write(efd, &one, sizeof(one));
        while (n < 0 && errno == EINTR);
}

static void clear_fd(int efd) {
        uint64_t v;
        ssize_t n;
        do
                n = read(efd, &v, sizeof(v));
        while (n < 0 && errno == EINTR);
}

int nst_outbox_new(struct nst_outbox **ret) {
        struct nst_outbox *o = calloc(1, sizeof(*o));
        if (!o)
                return -ENOMEM;
        o->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (o->efd < 0) {
                int r = -errno;
                free(o);
                return r;
        }
        pthread_mutex_init(&o->lock, NULL);
        *ret = o;
        return 0;
}

void nst_outbox_free(struct nst_outbox *o) {
        if (!o)
                return;
        struct nst_outbox_item *it = o->head;
        while (it) {
                struct nst_outbox_item *next = it->next;
                nst_outbox_item_free(it);
                it = next;
        }
        close(o->efd);
        pthread_mutex_destroy(&o->lock);
        free(o);
}

int nst_outbox_fd(const struct nst_outbox *o) {
        return o->efd;
}

void nst_outbox_push(struct nst_outbox *o, struct nst_outbox_item *item) {
        if (!item)
                return;
        item->next = NULL;
        pthread_mutex_lock(&o->lock);
        bool was_empty = !o->tail;
        if (o->tail)
                o->tail->next = item;
        else
                o->head = item;
        o->tail = item;
        pthread_mutex_unlock(&o->lock);
        if (was_empty)
                signal_fd(o->efd);
}

struct nst_outbox_item *nst_outbox_take_all(struct nst_outbox *o) {
        clear_fd(o->efd);
        pthread_mutex_lock(&o->lock);
        struct nst_outbox_item *list = o->head;
        o->head = o->tail = NULL;
        pthread_mutex_unlock(&o->lock);
        return list;
}

void nst_outbox_wake(struct nst_outbox *o) {
        pthread_mutex_lock(&o->lock);
        signal_fd(o->efd);
        pthread_mutex_unlock(&o->lock);
}

struct nst_outbox_item *nst_outbox_item_publish(const char *exchange, const char *routing_key,
                                                char *body, size_t body_len, bool mandatory) {
        struct nst_outbox_item *it = calloc(1, sizeof(*it));
        if (!it)
                goto fail;
        it->kind = NST_OUT_PUBLISH;
        it->exchange = strdup(exchange ? exchange : "");
        it->routing_key = strdup(routing_key ? routing_key : "");
        if (!it->exchange || !it->routing_key)
                goto fail;
        it->body = body;
        it->body_len = body_len;
        it->mandatory = mandatory;
        return it;
fail:
        /* Callers hand the body over unconditionally; on failure it is ours to drop. */
        nst_outbox_item_free(it);
        free(body);
        return NULL;
}

void nst_outbox_item_free(struct nst_outbox_item *item) {
        if (!item)
                return;
        free(item->exchange);
        free(item->routing_key);
        free(item->body);
        free(item);
}
