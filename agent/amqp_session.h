/* One AMQP 0-9-1 connection with one channel, through librabbitmq.
 *
 * Not thread-safe (librabbitmq is not): one thread owns a session. Heartbeats
 * only flow while that thread is inside the library, so the owner must call
 * nst_amqp_next_event() at least every heartbeat/2 seconds.
 *
 * Any error that returns -ECONNRESET/-EPIPE/-ETIMEDOUT/-EPROTO means the
 * session is unusable: free it and open a new one (librabbitmq's advice). */
#ifndef NESTOR_AGENT_AMQP_SESSION_H
#define NESTOR_AGENT_AMQP_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/transport_url.h"
#include "messages/error.h"

struct nst_tls_opts {
        const char *ca_file, *cert_file, *key_file; /* NULL when unset */
        bool verify_peer, verify_hostname;
};

struct nst_amqp_params {
        const struct nst_broker_host *host;
        const char *vhost;
        bool tls;
        struct nst_tls_opts tls_opts;
        int heartbeat_s;          /* requested; the broker may lower it */
        int connect_timeout_ms;
        bool confirms;            /* confirm.select on the channel */
        const char *connection_name; /* shown by rabbitmqctl list_connections */
        uint16_t prefetch;        /* basic.qos; 0 = unlimited */
};

/* Queue flags and arguments, mirroring oslo's options so declarations are
 * equivalent to what the controller declares (else the broker closes the
 * channel with PRECONDITION_FAILED). */
struct nst_queue_opts {
        bool durable;             /* amqp_durable_queues or quorum */
        bool auto_delete;         /* amqp_auto_delete */
        bool ha;                  /* rabbit_ha_queues: x-ha-policy: all */
        bool quorum;              /* rabbit_quorum_queue: x-queue-type: quorum */
        int64_t expires_ms;       /* x-expires when > 0 (transient queues) */
};

struct nst_amqp;

int nst_amqp_open(const struct nst_amqp_params *p, struct nst_amqp **ret, struct nst_error *err);
void nst_amqp_free(struct nst_amqp *a); /* closes politely when still open */

int nst_amqp_declare_exchange(struct nst_amqp *a, const char *name, const char *type,
                              bool durable, bool auto_delete, struct nst_error *err);
/* name NULL or "" lets the broker name it; *ret_name (optional) gets a
 * malloc'd copy of the final name. */
int nst_amqp_declare_queue(struct nst_amqp *a, const char *name, const struct nst_queue_opts *q,
                           bool exclusive, char **ret_name, struct nst_error *err);
int nst_amqp_bind(struct nst_amqp *a, const char *queue, const char *exchange, const char *key,
                  struct nst_error *err);
int nst_amqp_consume(struct nst_amqp *a, const char *queue, const char *tag, bool no_ack,
                     struct nst_error *err);
int nst_amqp_cancel(struct nst_amqp *a, const char *tag, struct nst_error *err);
int nst_amqp_delete_queue(struct nst_amqp *a, const char *queue, struct nst_error *err);

struct nst_publish_opts {
        bool mandatory;
        int64_t expiration_ms;    /* > 0 sets the per-message TTL */
};

/* Publishes with oslo's properties (application/json, utf-8, persistent,
 * priority 0, empty headers). With confirms on, *ret_seq gets the delivery
 * tag the broker will confirm. */
int nst_amqp_publish(struct nst_amqp *a, const char *exchange, const char *routing_key,
                     const void *body, size_t len, const struct nst_publish_opts *o,
                     uint64_t *ret_seq, struct nst_error *err);
/* Acknowledges a delivery; with multiple, every earlier unacknowledged one too. */
int nst_amqp_ack(struct nst_amqp *a, uint64_t delivery_tag, bool multiple, struct nst_error *err);

enum nst_amqp_event_type {
        NST_AMQP_EV_NONE,      /* timeout, nothing arrived */
        NST_AMQP_EV_DELIVERY,  /* a message from a consumer */
        NST_AMQP_EV_ACK,       /* publisher confirm: seq (and all before if multiple) */
        NST_AMQP_EV_NACK,
        NST_AMQP_EV_RETURN,    /* an unroutable mandatory message came back */
        NST_AMQP_EV_CANCELLED, /* the broker cancelled a consumer (queue deleted) */
};

struct nst_amqp_event {
        enum nst_amqp_event_type type;
        uint64_t seq;           /* ACK/NACK: delivery tag; DELIVERY: delivery tag */
        bool multiple;          /* ACK/NACK */
        /* DELIVERY and RETURN, valid until the next call on the session: */
        const char *body;
        size_t body_len;
        const char *content_type;   /* NULL when absent */
        const char *content_encoding;
        const char *routing_key;
        const char *consumer_tag;
        const char *reply_text;     /* RETURN */
        int64_t expiration_ms;      /* DELIVERY: the expiration property, -1 if none */
        bool redelivered;
};

/* Waits up to timeout_ms (0 = poll) for one event. Returns 0 with ev filled,
 * or a negative errno when the connection or channel failed (err says why,
 * e.g. the broker's close reason). */
int nst_amqp_next_event(struct nst_amqp *a, int timeout_ms, struct nst_amqp_event *ev,
                        struct nst_error *err);

/* For poll(): the socket, and whether librabbitmq already buffered data (in
 * which case the caller must not sleep in poll). */
int nst_amqp_fd(const struct nst_amqp *a);
bool nst_amqp_has_buffered(const struct nst_amqp *a);
/* Negotiated heartbeat in seconds (0 = none). */
int nst_amqp_heartbeat(const struct nst_amqp *a);

#endif
