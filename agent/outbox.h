/* What worker threads hand to the I/O thread: messages to publish. A
 * mutex-protected FIFO plus an eventfd the I/O thread polls. */
#ifndef NESTOR_AGENT_OUTBOX_H
#define NESTOR_AGENT_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum nst_outbox_kind {
        NST_OUT_PUBLISH, /* publish body to exchange/routing key */
        NST_OUT_CALL_DONE, /* a call finished: stop its call-monitor heartbeats */
};

struct nst_outbox_item {
        struct nst_outbox_item *next;
        enum nst_outbox_kind kind;
        char *exchange;       /* "" for the default exchange */
        char *routing_key;
        char *body;           /* envelope-encoded, owned */
        size_t body_len;
        bool mandatory;
        bool declare_queue;   /* notifications: declare+bind a queue named routing_key first */
        bool declare_fanout;  /* fanout casts: declare `exchange` as oslo's fanout exchange first */
        uint64_t call_id;     /* non-zero: this item ends that call's heartbeats */
        bool transient;       /* best effort: dropped, not kept, while there is no connection,
                               * and not republished after a reconnect (heartbeats, reports) */
        uint64_t seq;         /* I/O thread bookkeeping: publisher-confirm delivery tag */
};

struct nst_outbox;

int nst_outbox_new(struct nst_outbox **ret);
void nst_outbox_free(struct nst_outbox *o);
/* The fd to poll for POLLIN; readable when items are waiting. */
int nst_outbox_fd(const struct nst_outbox *o);
/* Takes ownership of item (allocated with nst_outbox_item_new). */
void nst_outbox_push(struct nst_outbox *o, struct nst_outbox_item *item);
/* Removes and returns all items in FIFO order (a linked list), clearing the
 * eventfd. NULL when empty. */
struct nst_outbox_item *nst_outbox_take_all(struct nst_outbox *o);
/* Wakes the poller without an item (used for shutdown). */
void nst_outbox_wake(struct nst_outbox *o);

struct nst_outbox_item *nst_outbox_item_publish(const char *exchange, const char *routing_key,
                                                char *body, size_t body_len, bool mandatory);
void nst_outbox_item_free(struct nst_outbox_item *item);

#endif
