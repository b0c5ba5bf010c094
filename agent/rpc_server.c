/* The I/O thread: see rpc_server.h for what it does and why it is shaped
 * this way. Everything in this file runs on that thread except run_call()
 * and run_timer(), which run on workers and talk back only through the
 * outbox and atomic counters. */
#define NST_LOG_MODULE "rpc"

#include "agent/rpc_server.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/clock.h"
#include "agent/dedup.h"
#include "agent/log.h"
#include "agent/reconnect.h"
#include "messages/envelope.h"
#include "messages/json_util.h"
#include "messages/rpc_message.h"

#define MAX_EVENTS_PER_TURN 256
#define MAX_POLL_MS 5000
#define N_CONSUMERS 3

#define STAT_INC(s, field) __atomic_add_fetch(&(s)->stats.field, 1, __ATOMIC_RELAXED)

struct nst_call {
        struct nst_rpc_server *server;
        struct nst_rpc_request req;
        const struct nst_dispatch_entry *entry;
        uint64_t id;
        int64_t deadline_ms; /* 0: no expiration */
};

/* A call whose caller asked for call-monitor heartbeats. */
struct monitored_call {
        uint64_t id;
        char *msg_id, *reply_q;
        int64_t interval_ms, next_ms;
};

struct item_queue {
        struct nst_outbox_item *head, *tail;
        size_t n;
};

enum run_state { RUNNING, DRAINING };

struct nst_rpc_server {
        struct nst_rpc_server_config cfg;
        char *topic_server_queue;  /* "<topic>.<server>" */
        char *fanout_exchange;     /* "<topic>_fanout" */
        char *fanout_queue;        /* "<topic>_fanout_<uuid hex>", stable across reconnects */
        char *connection_name;

        struct nst_host *host;
        struct nst_worker_pool *pool;
        struct nst_outbox *outbox;

        struct nst_amqp *session;
        struct nst_reconnect reconnect;
        unsigned failures_since_up;
        char **declared_keys;      /* notification queues declared on this session */
        size_t n_declared;

        uint64_t last_delivery, acked_delivery;
        struct item_queue pending;     /* waiting for a session */
        struct item_queue unconfirmed; /* published, waiting for the broker's ack */

        struct monitored_call *monitored;
        size_t n_monitored, cap_monitored;

        struct nst_dedup dedup;
        uint64_t next_call_id;
        enum run_state state;
        int64_t drain_deadline;
        int stop_requested;        /* atomic */

        struct nst_rpc_stats stats;    /* fields updated atomically */
};

/* ---- nst_call accessors (agent/plugin.h) ---- */

json_object *nst_call_context(const struct nst_call *c) {
        return c->req.context;
}

const char *nst_call_method(const struct nst_call *c) {
        return c->req.method;
}

const char *nst_call_request_id(const struct nst_call *c) {
        return c->req.request_id;
}

bool nst_call_is_cast(const struct nst_call *c) {
        return c->req.msg_id == NULL;
}

struct nst_host *nst_call_host(const struct nst_call *c) {
        return c->server->host;
}

/* ---- item queues ---- */

static void queue_push_back(struct item_queue *q, struct nst_outbox_item *it) {
        it->next = NULL;
        if (q->tail)
                q->tail->next = it;
        else
                q->head = it;
        q->tail = it;
        q->n++;
}

static struct nst_outbox_item *queue_pop_front(struct item_queue *q) {
        struct nst_outbox_item *it = q->head;
        if (!it)
                return NULL;
        q->head = it->next;
        if (!q->head)
                q->tail = NULL;
        q->n--;
        it->next = NULL;
        return it;
}

/* Moves all of `from` in front of `to`, keeping order. */
static void queue_prepend_all(struct item_queue *to, struct item_queue *from) {
        if (!from->head)
                return;
        from->tail->next = to->head;
        to->head = from->head;
        if (!to->tail)
                to->tail = from->tail;
        to->n += from->n;
        *from = (struct item_queue){0};
}

static void queue_free_all(struct item_queue *q) {
        struct nst_outbox_item *it;
        while ((it = queue_pop_front(q)))
                nst_outbox_item_free(it);
}

/* ---- call monitor ---- */

static void monitor_add(struct nst_rpc_server *s, const struct nst_call *c, int64_t now) {
        if (s->n_monitored == s->cap_monitored) {
                size_t cap = s->cap_monitored ? s->cap_monitored * 2 : 16;
                struct monitored_call *m = realloc(s->monitored, cap * sizeof(*m));
                if (!m)
                        return; /* the caller then times out, as if we were slow */
                s->monitored = m;
                s->cap_monitored = cap;
        }
        int64_t interval = (int64_t)(c->req.timeout * 1000.0 / 2.0);
        if (interval < 250)
                interval = 250;
        struct monitored_call m = {.id = c->id,
                                   .msg_id = strdup(c->req.msg_id),
                                   .reply_q = strdup(c->req.reply_q),
                                   .interval_ms = interval,
                                   .next_ms = now + interval};
        if (!m.msg_id || !m.reply_q) {
                free(m.msg_id);
                free(m.reply_q);
                return;
        }
        s->monitored[s->n_monitored++] = m;
}

static void monitor_remove(struct nst_rpc_server *s, uint64_t id) {
        for (size_t i = 0; i < s->n_monitored; i++) {
                if (s->monitored[i].id != id)
                        continue;
                free(s->monitored[i].msg_id);
                free(s->monitored[i].reply_q);
                s->monitored[i] = s->monitored[--s->n_monitored];
                return;
        }
}

static int64_t monitor_timeout(const struct nst_rpc_server *s, int64_t now) {
        int64_t t = -1;
        for (size_t i = 0; i < s->n_monitored; i++) {
                int64_t d = s->monitored[i].next_ms - now;
                if (d < 0)
                        d = 0;
                if (t < 0 || d < t)
                        t = d;
        }
        return t;
}

/* ---- building replies ---- */

static struct nst_outbox_item *reply_item(const char *msg_id, const char *reply_q,
                                          json_object *result, const struct nst_error *failure,
                                          bool ending) {
        _cleanup_json_ json_object *msg = NULL;
        struct nst_error err = NST_ERROR_INIT;
        char *body;
        size_t len;

        if (nst_rpc_reply_build(msg_id, result, failure, ending, &msg, &err) < 0 ||
            nst_envelope_encode(msg, &body, &len, &err) < 0) {
                log_error("cannot encode a reply to %s: %s", reply_q, err.message);
                return NULL;
        }
        struct nst_outbox_item *it = nst_outbox_item_publish("", reply_q, body, len, true);
        if (!it)
                log_error("out of memory queueing a reply to %s", reply_q);
        return it;
}

/* ---- worker side ---- */

static void free_call(struct nst_call *c) {
        nst_rpc_request_done(&c->req);
        free(c);
}

/* Runs a call's handler and returns the reply to publish (NULL for a cast,
 * or when the request expired). Consumes c. */
static struct nst_outbox_item *execute_call(struct nst_call *c) {
        struct nst_rpc_server *s = c->server;
        struct nst_error err = NST_ERROR_INIT;
        struct nst_outbox_item *reply = NULL;
        json_object *result = NULL;
        bool is_call = c->req.msg_id != NULL;

        nst_log_set_request_id(c->req.request_id);
        if (c->deadline_ms && nst_now_ms() > c->deadline_ms) {
                STAT_INC(s, expired);
                log_warning("%s %s expired before a worker was free, not executed",
                            is_call ? "call" : "cast", c->req.method);
                if (c->id) {
                        /* Nothing to send, but its heartbeats must stop. */
                        reply = calloc(1, sizeof(*reply));
                        if (reply) {
                                reply->kind = NST_OUT_CALL_DONE;
                                reply->call_id = c->id;
                        }
                }
                goto out;
        }

        int r = c->entry->fn(c, c->req.args, c->entry->userdata, &result, &err);
        if (r < 0) {
                STAT_INC(s, failures);
                if (!nst_error_is_set(&err))
                        nst_error_set(&err, r, "RuntimeError", "%s failed: %s", c->req.method,
                                      strerror(-r));
                log_warning("%s %s failed: %s: %s", is_call ? "call" : "cast", c->req.method,
                            err.cls, err.message);
                json_object_put(result);
                result = NULL;
        } else {
                log_debug("%s %s done", is_call ? "call" : "cast", c->req.method);
        }

        if (is_call) {
                reply = reply_item(c->req.msg_id, c->req.reply_q, result, r < 0 ? &err : NULL,
                                   true);
                if (reply)
                        reply->call_id = c->id;
        }
        json_object_put(result);
out:
        nst_log_set_request_id(NULL);
        free_call(c);
        return reply;
}

static void run_call(void *data) {
        struct nst_call *c = data;
        struct nst_outbox *outbox = c->server->outbox;
        struct nst_outbox_item *reply = execute_call(c);
        if (reply)
                nst_outbox_push(outbox, reply);
}

/* What a worker needs to run one periodic task: copied under the timers
 * lock, so the worker never reads the task array. */
struct timer_job {
        struct nst_host *host;
        struct nst_outbox *outbox;
        int index;
        void (*fn)(void *userdata);
        void *userdata;
};

static void run_timer(void *data) {
        struct timer_job *j = data;

        j->fn(j->userdata);
        pthread_mutex_lock(&j->host->timers_lock);
        nst_timers_finished(&j->host->timers, j->index);
        pthread_mutex_unlock(&j->host->timers_lock);
        /* The I/O thread left this task out of its poll timeout while it
         * ran: wake it to schedule the next run, or it may sleep through it
         * (up to MAX_POLL_MS when nothing else happens, e.g. broker down). */
        nst_outbox_wake(j->outbox);
        free(j);
}

/* ---- session lifecycle ---- */

static void clear_declared(struct nst_rpc_server *s) {
        for (size_t i = 0; i < s->n_declared; i++)
                free(s->declared_keys[i]);
        free(s->declared_keys);
        s->declared_keys = NULL;
        s->n_declared = 0;
}

static void session_teardown(struct nst_rpc_server *s, int64_t now, const char *why) {
        if (!s->session)
                return;
        log_warning("lost the broker connection: %s; reconnecting", why);
        nst_amqp_free(s->session);
        s->session = NULL;
        clear_declared(s);
        __atomic_store_n(&s->stats.connected, 0, __ATOMIC_RELAXED);
        nst_host_set_connected(s->host, false);

        /* What the broker did not confirm goes out again on the next session;
         * heartbeats are stale by then and are dropped. */
        struct item_queue keep = {0};
        struct nst_outbox_item *it;
        while ((it = queue_pop_front(&s->unconfirmed))) {
                if (it->transient)
                        nst_outbox_item_free(it);
                else
                        queue_push_back(&keep, it);
        }
        queue_prepend_all(&s->pending, &keep);
        nst_reconnect_disconnected(&s->reconnect, now);
}

static int declare_topology(struct nst_rpc_server *s, struct nst_amqp *a, bool consume,
                            struct nst_error *err) {
        const struct nst_rpc_server_config *c = &s->cfg;
        const struct nst_queue_opts *q = &c->queues;
        struct nst_queue_opts fanout_q = {.ha = q->ha, .expires_ms = c->transient_ttl_ms};
        static const char *const tags[N_CONSUMERS] = {"1", "2", "3"};
        const char *queues[N_CONSUMERS] = {c->topic, s->topic_server_queue, s->fanout_queue};
        int r;

        r = nst_amqp_declare_exchange(a, c->exchange, "topic", q->durable || q->quorum,
                                      q->auto_delete, err);
        if (r < 0)
                return r;
        for (int i = 0; i < 2; i++) {
                r = nst_amqp_declare_queue(a, queues[i], q, false, NULL, err);
                if (r < 0)
                        return r;
                r = nst_amqp_bind(a, queues[i], c->exchange, queues[i], err);
                if (r < 0)
                        return r;
        }
        r = nst_amqp_declare_exchange(a, s->fanout_exchange, "fanout", false, true, err);
        if (r < 0)
                return r;
        r = nst_amqp_declare_queue(a, s->fanout_queue, &fanout_q, false, NULL, err);
        if (r < 0)
                return r;
        r = nst_amqp_bind(a, s->fanout_queue, s->fanout_exchange, c->topic, err);
        if (r < 0)
                return r;
        for (int i = 0; consume && i < N_CONSUMERS; i++) {
                /* Manual acks, sent on arrival like oslo's: a message the
                 * broker handed over but we never read (still in flight
                 * when the connection dies) is then requeued, not lost. */
                r = nst_amqp_consume(a, queues[i], tags[i], false, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static void session_try_connect(struct nst_rpc_server *s, int64_t now) {
        size_t idx = nst_reconnect_host(&s->reconnect);
        const struct nst_broker_host *bh = &s->cfg.url->hosts[idx];
        struct nst_amqp_params p = {
                .host = bh,
                .vhost = s->cfg.url->vhost,
                .tls = s->cfg.url->tls,
                .tls_opts = s->cfg.tls,
                .heartbeat_s = s->cfg.heartbeat_s,
                .connect_timeout_ms = s->cfg.connect_timeout_ms,
                .confirms = true,
                .connection_name = s->connection_name,
                .prefetch = s->cfg.prefetch,
        };
        struct nst_error err = NST_ERROR_INIT;
        struct nst_amqp *a = NULL;

        int r = nst_amqp_open(&p, &a, &err);
        if (r >= 0)
                r = declare_topology(s, a, s->state == RUNNING, &err);
        now = nst_now_ms();
        if (r < 0) {
                nst_amqp_free(a);
                nst_reconnect_connect_failed(&s->reconnect, now);
                /* Say it on the first failure, then once a minute or so: a
                 * broker outage must not flood the log. */
                if (s->failures_since_up++ % 20 == 0)
                        log_warning("broker %s:%d: %s (attempt %u, next in %lld ms)", bh->host,
                                    bh->port, err.message, s->failures_since_up,
                                    (long long)nst_reconnect_timeout(&s->reconnect, now));
                return;
        }

        s->session = a;
        s->last_delivery = s->acked_delivery = 0;
        s->failures_since_up = 0;
        nst_reconnect_connected(&s->reconnect, now);
        __atomic_store_n(&s->stats.connected, 1, __ATOMIC_RELAXED);
        nst_host_set_connected(s->host, true);
        if (s->reconnect.n_connects > 1)
                STAT_INC(s, reconnects);
        log_info("connected to %s:%d vhost %s (heartbeat %d s), serving %s and %s on %s",
                 bh->host, bh->port, s->cfg.url->vhost, nst_amqp_heartbeat(a), s->cfg.topic,
                 s->topic_server_queue, s->cfg.exchange);
}

/* ---- publishing ---- */

static bool key_declared(struct nst_rpc_server *s, const char *key) {
        for (size_t i = 0; i < s->n_declared; i++)
                if (strcmp(s->declared_keys[i], key) == 0)
                        return true;
        return false;
}

/* Declares the queue a notification lands in, once per session, like oslo's
 * notifier, so notifications are kept until a listener comes. */
static int declare_notification_queue(struct nst_rpc_server *s, const char *exchange,
                                      const char *key, struct nst_error *err) {
        if (key_declared(s, key))
                return 0;
        const struct nst_queue_opts *q = &s->cfg.queues;
        int r = nst_amqp_declare_exchange(s->session, exchange, "topic", q->durable || q->quorum,
                                          q->auto_delete, err);
        if (r >= 0)
                r = nst_amqp_declare_queue(s->session, key, q, false, NULL, err);
        if (r >= 0)
                r = nst_amqp_bind(s->session, key, exchange, key, err);
        if (r < 0)
                return r;
        char **keys = realloc(s->declared_keys, (s->n_declared + 1) * sizeof(*keys));
        if (!keys || !(keys[s->n_declared] = strdup(key))) {
                if (keys)
                        s->declared_keys = keys;
                return 0; /* only costs a redundant declare next time */
        }
        s->declared_keys = keys;
        s->n_declared++;
        return 0;
}

/* A fanout cast's exchange, with the flags oslo's fanout senders and
 * servers use. Before every publish, not once per session: it is
 * auto-delete, so the broker removes it whenever the last queue bound to it
 * goes (a listener stopping), and publishing to a missing exchange makes the
 * broker close the channel, taking the whole session down. */
static int declare_fanout_exchange(struct nst_rpc_server *s, const char *exchange,
                                   struct nst_error *err) {
        return nst_amqp_declare_exchange(s->session, exchange, "fanout", false, true, err);
}

static void keep_pending(struct nst_rpc_server *s, struct nst_outbox_item *it) {
        if (it->transient) {
                log_debug("no broker connection: dropped a best-effort message to %s/%s",
                          it->exchange, it->routing_key);
                nst_outbox_item_free(it);
                return;
        }
        queue_push_back(&s->pending, it);
        if (s->pending.n > s->cfg.max_pending_publishes) {
                struct nst_outbox_item *old = queue_pop_front(&s->pending);
                log_warning("broker unavailable: dropping the oldest unsent message (to %s), "
                            "%zu kept",
                            old->routing_key, s->pending.n);
                nst_outbox_item_free(old);
        }
}

/* Publishes one item or keeps it for the next session. */
static void publish_item(struct nst_rpc_server *s, struct nst_outbox_item *it, int64_t now) {
        struct nst_error err = NST_ERROR_INIT;
        int r;

        if (!s->session) {
                keep_pending(s, it);
                return;
        }
        if (it->declare_queue) {
                r = declare_notification_queue(s, it->exchange, it->routing_key, &err);
                if (r < 0)
                        goto broken;
        }
        if (it->declare_fanout) {
                r = declare_fanout_exchange(s, it->exchange, &err);
                if (r < 0)
                        goto broken;
        }
        struct nst_publish_opts o = {.mandatory = it->mandatory};
        r = nst_amqp_publish(s->session, it->exchange, it->routing_key, it->body, it->body_len,
                             &o, &it->seq, &err);
        if (r < 0)
                goto broken;
        STAT_INC(s, published);
        queue_push_back(&s->unconfirmed, it);
        return;
broken:
        keep_pending(s, it);
        session_teardown(s, now, err.message);
}

static void flush_pending(struct nst_rpc_server *s, int64_t now) {
        struct nst_outbox_item *it;
        while (s->session && (it = queue_pop_front(&s->pending)))
                publish_item(s, it, now);
}

static void confirm(struct nst_rpc_server *s, uint64_t seq, bool multiple, bool ack, int64_t now) {
        struct item_queue again = {0};

        /* Delivery tags grow with each publish, so confirmations come in
         * queue order except for a single (non-multiple) ack or nack. */
        for (struct nst_outbox_item **pp = &s->unconfirmed.head; *pp;) {
                struct nst_outbox_item *it = *pp;
                if (it->seq > seq)
                        break;
                if (!multiple && it->seq != seq) {
                        pp = &it->next;
                        continue;
                }
                *pp = it->next;
                if (s->unconfirmed.tail == it) {
                        s->unconfirmed.tail = NULL;
                        for (struct nst_outbox_item *t = s->unconfirmed.head; t; t = t->next)
                                s->unconfirmed.tail = t;
                }
                s->unconfirmed.n--;
                if (ack || it->transient) {
                        STAT_INC(s, confirmed);
                        nst_outbox_item_free(it);
                } else {
                        log_warning("broker refused (nack) a message to %s, sending it again",
                                    it->routing_key);
                        queue_push_back(&again, it);
                }
        }
        queue_prepend_all(&s->pending, &again);
        flush_pending(s, now);
}

static void drain_outbox(struct nst_rpc_server *s, int64_t now) {
        struct nst_outbox_item *it = nst_outbox_take_all(s->outbox);
        while (it) {
                struct nst_outbox_item *next = it->next;
                it->next = NULL;
                if (it->call_id)
                        monitor_remove(s, it->call_id);
                if (it->kind == NST_OUT_CALL_DONE)
                        nst_outbox_item_free(it);
                else
                        publish_item(s, it, now);
                it = next;
        }
}

static void send_heartbeats(struct nst_rpc_server *s, int64_t now) {
        for (size_t i = 0; i < s->n_monitored; i++) {
                struct monitored_call *m = &s->monitored[i];
                if (m->next_ms > now)
                        continue;
                m->next_ms = now + m->interval_ms;
                struct nst_outbox_item *it = reply_item(m->msg_id, m->reply_q, NULL, NULL, false);
                if (!it)
                        continue;
                it->transient = true;
                publish_item(s, it, now);
        }
}

/* ---- receiving ---- */

static void reply_error(struct nst_rpc_server *s, const char *msg_id, const char *reply_q,
                        const struct nst_error *failure, int64_t now) {
        if (!msg_id || !reply_q)
                return;
        struct nst_outbox_item *it = reply_item(msg_id, reply_q, NULL, failure, true);
        if (it)
                publish_item(s, it, now);
}

/* Decodes and checks one delivery. Bad messages are answered (when they
 * say where) and dropped; a good one comes back as a call to dispatch once
 * its delivery is acknowledged. */
static struct nst_call *accept_delivery(struct nst_rpc_server *s,
                                        const struct nst_amqp_event *ev, int64_t now) {
        struct nst_error err = NST_ERROR_INIT;
        _cleanup_json_ json_object *inner = NULL;
        _cleanup_free_ char *msg_id = NULL, *reply_q = NULL;
        struct nst_call *c = NULL;
        int r;

        STAT_INC(s, received);
        s->last_delivery = ev->seq;

        r = nst_envelope_decode(ev->body, ev->body_len, s->cfg.max_message_bytes, &inner, &err);
        if (r < 0) {
                STAT_INC(s, rejected);
                bool routed = nst_rpc_salvage_route(ev->body, ev->body_len, &msg_id, &reply_q) >= 0;
                log_warning("rejected a %zu-byte message on %s: %s%s", ev->body_len,
                            ev->routing_key, err.message,
                            routed ? " (answered with an error)" : " (no reply queue known)");
                reply_error(s, msg_id, reply_q, &err, now);
                return NULL;
        }
        c = calloc(1, sizeof(*c));
        if (!c) {
                log_error("out of memory receiving a message on %s", ev->routing_key);
                return NULL;
        }
        c->server = s;
        r = nst_rpc_request_decode(inner, &c->req, &msg_id, &reply_q, &err);
        if (r >= 0 && (!ev->content_type || strcmp(ev->content_type, "application/json") != 0))
                r = nst_error_set(&err, -EINVAL, "ValueError",
                                  "message content_type is %s%s%s, expected application/json",
                                  ev->content_type ? "'" : "",
                                  ev->content_type ? ev->content_type : "missing",
                                  ev->content_type ? "'" : "");
        if (r < 0) {
                STAT_INC(s, rejected);
                const char *mid = c->req.msg_id ? c->req.msg_id : msg_id;
                const char *rq = c->req.reply_q ? c->req.reply_q : reply_q;
                log_warning("rejected a message on %s: %s%s", ev->routing_key, err.message,
                            rq ? " (answered with an error)" : "");
                reply_error(s, mid, rq, &err, now);
                free_call(c);
                return NULL;
        }

        nst_log_set_request_id(c->req.request_id);
        r = nst_dispatcher_find(s->host->dispatcher, c->req.namespace_, c->req.method,
                                c->req.version, &c->entry, &err);
        if (r < 0) {
                STAT_INC(s, failures);
                log_warning("%s: %s", err.cls, err.message);
                reply_error(s, c->req.msg_id, c->req.reply_q, &err, now);
                goto drop;
        }

        c->id = ++s->next_call_id;
        if (ev->expiration_ms >= 0)
                c->deadline_ms = now + ev->expiration_ms;
        nst_log_set_request_id(NULL);
        return c;
drop:
        nst_log_set_request_id(NULL);
        free_call(c);
        return NULL;
}

/* Runs an accepted call: on this thread for the agent's own non-blocking
 * methods (two thread handoffs saved per call), else on a worker. */
static void dispatch_call(struct nst_rpc_server *s, struct nst_call *c, int64_t now) {
        struct nst_error err = NST_ERROR_INIT;

        /* Checked only now, after the ack: a request dropped because its ack
         * failed must not be remembered, or its redelivery would be lost. */
        if (c->req.unique_id && nst_dedup_seen(&s->dedup, c->req.unique_id)) {
                STAT_INC(s, duplicates);
                nst_log_set_request_id(c->req.request_id);
                log_info("dropped duplicate message %s (method %s)", c->req.unique_id,
                         c->req.method);
                nst_log_set_request_id(NULL);
                free_call(c);
                return;
        }

        if (c->req.msg_id) {
                STAT_INC(s, calls);
                /* Heartbeats only for calls a worker runs: one answered on
                 * this thread is done before a heartbeat could be due. */
                if (c->req.timeout > 0 && !c->entry->io_thread)
                        monitor_add(s, c, now);
        } else {
                STAT_INC(s, casts);
        }
        nst_log_set_request_id(c->req.request_id);
        log_debug("%s %s version %s", c->req.msg_id ? "call" : "cast", c->req.method,
                  c->req.version ? c->req.version : "1.0");
        nst_log_set_request_id(NULL);
        if (c->entry->io_thread) {
                struct nst_outbox_item *reply = execute_call(c);
                if (reply && reply->kind == NST_OUT_PUBLISH)
                        publish_item(s, reply, now);
                else
                        nst_outbox_item_free(reply);
                return;
        }
        if (nst_worker_pool_submit(s->pool, run_call, c) < 0) {
                nst_error_set(&err, -ESHUTDOWN, "RuntimeError", "the agent is shutting down");
                monitor_remove(s, c->id);
                reply_error(s, c->req.msg_id, c->req.reply_q, &err, now);
                free_call(c);
        }
}

/* Reads what the socket has, up to a bound so publishing is not starved.
 * Stops as soon as librabbitmq has nothing buffered: asking it for another
 * frame would cost a failed recv() and a poll() per wake-up, and the loop's
 * own poll() reports the next data anyway. */
static void pump_session(struct nst_rpc_server *s, int64_t now) {
        struct nst_call *batch[MAX_EVENTS_PER_TURN];
        size_t n_batch = 0;

        for (int i = 0; s->session && i < MAX_EVENTS_PER_TURN; i++) {
                struct nst_amqp_event ev;
                struct nst_error err = NST_ERROR_INIT;
                if (nst_amqp_next_event(s->session, 0, &ev, &err) < 0) {
                        session_teardown(s, now, err.message);
                        break;
                }
                switch (ev.type) {
                case NST_AMQP_EV_NONE:
                        goto done;
                case NST_AMQP_EV_DELIVERY: {
                        struct nst_call *c = accept_delivery(s, &ev, now);
                        if (c)
                                batch[n_batch++] = c;
                        break;
                }
                case NST_AMQP_EV_ACK:
                case NST_AMQP_EV_NACK:
                        confirm(s, ev.seq, ev.multiple, ev.type == NST_AMQP_EV_ACK, now);
                        break;
                case NST_AMQP_EV_RETURN:
                        STAT_INC(s, returned);
                        log_info("reply to %s came back unroutable (%s): the caller is gone",
                                 ev.routing_key, ev.reply_text ? ev.reply_text : "");
                        break;
                case NST_AMQP_EV_CANCELLED:
                        session_teardown(s, now, "the broker cancelled a consumer");
                        break;
                }
                if (!s->session || !nst_amqp_has_buffered(s->session))
                        break;
        }
done:
        /* Acknowledged before any of them runs, as oslo acks on arrival
         * (at-most-once). If the ack cannot be sent, none runs: the broker
         * still has them and redelivers them after the reconnect. */
        if (s->session && s->last_delivery > s->acked_delivery) {
                struct nst_error err = NST_ERROR_INIT;
                if (nst_amqp_ack(s->session, s->last_delivery, true, &err) < 0)
                        session_teardown(s, now, err.message);
                else
                        s->acked_delivery = s->last_delivery;
        }
        for (size_t i = 0; i < n_batch; i++) {
                if (s->session)
                        dispatch_call(s, batch[i], now);
                else
                        free_call(batch[i]);
        }
}

/* ---- the loop ---- */

static void begin_drain(struct nst_rpc_server *s, int64_t now) {
        static const char *const tags[N_CONSUMERS] = {"1", "2", "3"};
        struct nst_error err = NST_ERROR_INIT;

        s->state = DRAINING;
        s->drain_deadline = now + s->cfg.shutdown_grace_ms;
        log_info("stopping: no new requests; waiting up to %lld ms for %zu queued or running jobs",
                 (long long)s->cfg.shutdown_grace_ms, nst_worker_pool_pending(s->pool));
        for (int i = 0; s->session && i < N_CONSUMERS; i++)
                if (nst_amqp_cancel(s->session, tags[i], &err) < 0)
                        session_teardown(s, now, err.message);
        /* oslo deletes its fanout queue on a clean stop; the topic queues stay. */
        if (s->session && nst_amqp_delete_queue(s->session, s->fanout_queue, &err) < 0)
                session_teardown(s, now, err.message);
}

static bool drained(struct nst_rpc_server *s, int64_t now) {
        if (nst_worker_pool_pending(s->pool) > 0)
                return false;
        /* Idle workers may have pushed replies since the last drain. */
        drain_outbox(s, now);
        return !s->pending.head && !s->unconfirmed.head;
}

static int64_t min_timeout(int64_t a, int64_t b) {
        if (a < 0)
                return b;
        if (b < 0)
                return a;
        return a < b ? a : b;
}

int nst_rpc_server_run(struct nst_rpc_server *s) {
        for (;;) {
                int64_t now = nst_now_ms();

                if (s->state == RUNNING && __atomic_load_n(&s->stop_requested, __ATOMIC_ACQUIRE))
                        begin_drain(s, now);
                if (s->state == DRAINING) {
                        if (drained(s, now))
                                break;
                        if (now >= s->drain_deadline) {
                                log_warning("stop grace period over: %zu jobs still running, "
                                            "%zu messages unsent, %zu unconfirmed",
                                            nst_worker_pool_pending(s->pool), s->pending.n,
                                            s->unconfirmed.n);
                                return -ETIMEDOUT;
                        }
                }

                if (!s->session &&
                    nst_reconnect_run(&s->reconnect, now) == NST_RECONNECT_CONNECT) {
                        session_try_connect(s, now);
                        now = nst_now_ms();
                        flush_pending(s, now);
                }

                if (s->state == RUNNING) {
                        int idx;
                        pthread_mutex_lock(&s->host->timers_lock);
                        while ((idx = nst_timers_take_due(&s->host->timers, now)) >= 0) {
                                const struct nst_timer_task *t = &s->host->timers.tasks[idx];
                                struct timer_job *j = malloc(sizeof(*j));
                                if (j)
                                        *j = (struct timer_job){.host = s->host,
                                                                .outbox = s->outbox,
                                                                .index = idx,
                                                                .fn = t->fn,
                                                                .userdata = t->userdata};
                                if (!j || nst_worker_pool_submit(s->pool, run_timer, j) < 0) {
                                        free(j);
                                        nst_timers_finished(&s->host->timers, idx);
                                }
                        }
                        pthread_mutex_unlock(&s->host->timers_lock);
                }

                int64_t timeout = MAX_POLL_MS;
                if (s->session && nst_amqp_heartbeat(s->session) > 0)
                        timeout = min_timeout(timeout, nst_amqp_heartbeat(s->session) * 1000 / 2);
                if (!s->session)
                        timeout = min_timeout(timeout, nst_reconnect_timeout(&s->reconnect, now));
                timeout = min_timeout(timeout, monitor_timeout(s, now));
                if (s->state == RUNNING) {
                        pthread_mutex_lock(&s->host->timers_lock);
                        timeout = min_timeout(timeout, nst_timers_timeout(&s->host->timers, now));
                        pthread_mutex_unlock(&s->host->timers_lock);
                } else {
                        /* Workers finishing do not always publish (casts); poll for them. */
                        timeout = min_timeout(timeout, 50);
                }
                if (s->session && nst_amqp_has_buffered(s->session))
                        timeout = 0;

                struct pollfd fds[2] = {{.fd = nst_outbox_fd(s->outbox), .events = POLLIN}};
                nfds_t nfds = 1;
                bool polled_session = s->session != NULL;
                if (polled_session)
                        fds[nfds++] = (struct pollfd){.fd = nst_amqp_fd(s->session),
                                                      .events = POLLIN};
                int n = poll(fds, nfds, (int)timeout);
                if (n < 0 && errno != EINTR) {
                        log_error("poll: %s", strerror(errno));
                        return -errno;
                }

                now = nst_now_ms();
                /* On a timeout the library is called anyway: heartbeats are
                 * only sent (and the peer's checked) from inside it. */
                if (s->session && (n == 0 || (polled_session && fds[1].revents) ||
                                   nst_amqp_has_buffered(s->session)))
                        pump_session(s, now);
                if (n > 0 && fds[0].revents)
                        drain_outbox(s, now);
                if (s->n_monitored)
                        send_heartbeats(s, now);
                if (s->session && s->pending.head)
                        flush_pending(s, now);
        }
        return 0;
}

void nst_rpc_server_request_stop(struct nst_rpc_server *s) {
        __atomic_store_n(&s->stop_requested, 1, __ATOMIC_RELEASE);
        nst_outbox_wake(s->outbox);
}

void nst_rpc_server_stats(struct nst_rpc_server *s, struct nst_rpc_stats *ret) {
        unsigned long long *dst = (unsigned long long *)ret;
        const unsigned long long *src = (const unsigned long long *)&s->stats;
        size_t n = offsetof(struct nst_rpc_stats, connected) / sizeof(unsigned long long);
        for (size_t i = 0; i < n; i++)
                dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
        ret->connected = __atomic_load_n(&s->stats.connected, __ATOMIC_RELAXED);
}

/* ---- construction ---- */

static char *strdup_printf(const char *fmt, ...) _printf_(1, 2);
static char *strdup_printf(const char *fmt, ...) {
        va_list ap;
        char *s = NULL;
        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                s = NULL;
        va_end(ap);
        return s;
}

int nst_rpc_server_new(const struct nst_rpc_server_config *c, struct nst_host *host,
                       struct nst_worker_pool *pool, struct nst_outbox *outbox,
                       struct nst_rpc_server **ret, struct nst_error *err) {
        struct nst_rpc_server *s = calloc(1, sizeof(*s));
        char uuid[NST_UUID_HEX_LEN + 1];

        if (!s)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        s->cfg = *c;
        s->host = host;
        s->pool = pool;
        s->outbox = outbox;
        nst_uuid_hex(uuid);
        s->topic_server_queue = strdup_printf("%s.%s", c->topic, c->server);
        s->fanout_exchange = strdup_printf("%s_fanout", c->topic);
        s->fanout_queue = strdup_printf("%s_fanout_%s", c->topic, uuid);
        s->connection_name = strdup_printf("nestor-agent:%d:%s", (int)getpid(), c->server);
        if (!s->topic_server_queue || !s->fanout_exchange || !s->fanout_queue ||
            !s->connection_name) {
                nst_rpc_server_free(s);
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        if (nst_host_attach_transport(host, outbox, c->exchange) < 0) {
                nst_rpc_server_free(s);
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        nst_dedup_init(&s->dedup);
        nst_reconnect_init(&s->reconnect, c->url->n_hosts, c->min_backoff_ms, c->max_backoff_ms,
                           (unsigned)getpid() ^ (unsigned)nst_now_ms(), nst_now_ms());
        *ret = s;
        return 0;
}

void nst_rpc_server_free(struct nst_rpc_server *s) {
        if (!s)
                return;
        nst_host_detach_transport(s->host, s->outbox);
        nst_amqp_free(s->session);
        clear_declared(s);
        queue_free_all(&s->pending);
        queue_free_all(&s->unconfirmed);
        for (size_t i = 0; i < s->n_monitored; i++) {
                free(s->monitored[i].msg_id);
                free(s->monitored[i].reply_q);
        }
        free(s->monitored);
        free(s->topic_server_queue);
        free(s->fanout_exchange);
        free(s->fanout_queue);
        free(s->connection_name);
        free(s);
}
