#include "agent/rpc_client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/amqp_session.h"
#include "agent/clock.h"
#include "messages/envelope.h"
#include "messages/ids.h"
#include "messages/json_util.h"
#include "messages/rpc_message.h"

#define REPLY_MAX_BYTES (64u * 1024u * 1024u)

struct nst_rpc_client {
        struct nst_amqp *session;
        char *exchange, *topic;
        char reply_q[7 + NST_UUID_HEX_LEN + 1]; /* "reply_<uuid hex>", like oslo */
};

void nst_rpc_client_free(struct nst_rpc_client *c) {
        if (!c)
                return;
        nst_amqp_free(c->session);
        free(c->exchange);
        free(c->topic);
        free(c);
}

int nst_rpc_client_new(const struct nst_transport_settings *ts, const char *topic,
                       struct nst_rpc_client **ret, struct nst_error *err) {
        struct nst_rpc_client *c = calloc(1, sizeof(*c));
        char uuid[NST_UUID_HEX_LEN + 1];
        int r = -ENOENT;

        if (!c)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        c->exchange = strdup(ts->exchange);
        c->topic = strdup(topic);
        if (!c->exchange || !c->topic) {
                nst_rpc_client_free(c);
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        for (size_t i = 0; i < ts->url.n_hosts; i++) {
                struct nst_amqp_params p = {
                        .host = &ts->url.hosts[i],
                        .vhost = ts->url.vhost,
                        .tls = ts->url.tls,
                        .tls_opts = ts->tls,
                        .heartbeat_s = ts->heartbeat_s,
                        .connect_timeout_ms = 5000,
                        .confirms = true,
                        .connection_name = "nestorctl",
                };
                nst_error_clear(err);
                r = nst_amqp_open(&p, &c->session, err);
                if (r >= 0)
                        break;
        }
        if (r < 0) {
                nst_rpc_client_free(c);
                return r;
        }
        nst_uuid_hex(uuid);
        snprintf(c->reply_q, sizeof(c->reply_q), "reply_%s", uuid);
        /* Exclusive and auto-deleted: unlike oslo's, our reply queue vanishes
         * with the process instead of lingering for 30 minutes. */
        struct nst_queue_opts q = {.auto_delete = true};
        if ((r = nst_amqp_declare_queue(c->session, c->reply_q, &q, true, NULL, err)) < 0 ||
            (r = nst_amqp_consume(c->session, c->reply_q, "reply", true, err)) < 0) {
                nst_rpc_client_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

/* Publishes and waits for the broker's confirm, handling replies that may
 * arrive first (the caller's msg_id is not yet known to them). */
static int publish_confirmed(struct nst_rpc_client *c, const char *exchange, const char *key,
                             json_object *msg, int64_t expiration_ms, struct nst_error *err) {
        _cleanup_free_ char *body = NULL;
        size_t len;
        uint64_t seq;
        int r = nst_envelope_encode(msg, &body, &len, err);
        if (r < 0)
                return r;
        struct nst_publish_opts o = {.expiration_ms = expiration_ms};
        r = nst_amqp_publish(c->session, exchange, key, body, len, &o, &seq, err);
        if (r < 0)
                return r;
        int64_t deadline = nst_now_ms() + 30000;
        for (;;) {
                struct nst_amqp_event ev;
                int64_t left = deadline - nst_now_ms();
                if (left <= 0)
                        return nst_error_set(err, -ETIMEDOUT, "MessagingTimeout",
                                             "the broker did not confirm the message");
                r = nst_amqp_next_event(c->session, (int)(left > 1000 ? 1000 : left), &ev, err);
                if (r < 0)
                        return r;
                if (ev.type == NST_AMQP_EV_ACK && ev.seq >= seq)
                        return 0;
                if (ev.type == NST_AMQP_EV_NACK && ev.seq >= seq)
                        return nst_error_set(err, -EIO, "MessageDeliveryFailure",
                                             "the broker refused the message");
        }
}

static int wait_reply(struct nst_rpc_client *c, const char *msg_id, int64_t deadline,
                      json_object **ret_result, struct nst_error *err) {
        for (;;) {
                struct nst_amqp_event ev;
                int64_t left = deadline - nst_now_ms();
                if (left <= 0)
                        return nst_error_set(err, -ETIMEDOUT, "MessagingTimeout",
                                             "Timed out waiting for a reply to message ID %s",
                                             msg_id);
                int r = nst_amqp_next_event(c->session, (int)(left > 1000 ? 1000 : left), &ev,
                                            err);
                if (r < 0)
                        return r;
                if (ev.type != NST_AMQP_EV_DELIVERY)
                        continue;

                _cleanup_json_ json_object *inner = NULL;
                struct nst_rpc_reply reply = {0};
                struct nst_error derr = NST_ERROR_INIT;
                if (nst_envelope_decode(ev.body, ev.body_len, REPLY_MAX_BYTES, &inner, &derr) <
                            0 ||
                    nst_rpc_reply_decode(inner, &reply, &derr) < 0)
                        continue; /* not ours to judge: drop like oslo does */
                if (!reply.msg_id || strcmp(reply.msg_id, msg_id) != 0 || !reply.ending) {
                        nst_rpc_reply_done(&reply); /* stale reply or a heartbeat */
                        continue;
                }
                if (reply.failed) {
                        *err = reply.failure;
                        nst_rpc_reply_done(&reply);
                        return err->code < 0 ? err->code : -EREMOTEIO;
                }
                *ret_result = reply.result ? json_object_get(reply.result) : NULL;
                nst_rpc_reply_done(&reply);
                return 0;
        }
}

static const char *routing_key(struct nst_rpc_client *c, const char *server, char *buf,
                               size_t size) {
        if (!server)
                return c->topic;
        snprintf(buf, size, "%s.%s", c->topic, server);
        return buf;
}

int nst_rpc_client_call(struct nst_rpc_client *c, const char *server, const char *method,
                        json_object *args, const char *version, json_object *context,
                        double timeout_s, json_object **ret_result, struct nst_error *err) {
        _cleanup_json_ json_object *msg = NULL;
        char msg_id[NST_UUID_HEX_LEN + 1], key[512];
        int64_t timeout_ms = (int64_t)(timeout_s * 1000.0);

        if (timeout_ms <= 0)
                return nst_error_set(err, -EINVAL, "InvalidInput", "timeout must be positive");
        nst_uuid_hex(msg_id);
        /* _timeout asks the server for call-monitor heartbeats, as nova does. */
        int r = nst_rpc_request_build(method, args, version, NULL, context, msg_id, c->reply_q,
                                      timeout_s, &msg, err);
        if (r < 0)
                return r;
        int64_t deadline = nst_now_ms() + timeout_ms;
        r = publish_confirmed(c, c->exchange, routing_key(c, server, key, sizeof(key)), msg,
                              timeout_ms, err);
        if (r < 0)
                return r;
        return wait_reply(c, msg_id, deadline, ret_result, err);
}

int nst_rpc_client_cast(struct nst_rpc_client *c, const char *server, const char *method,
                        json_object *args, const char *version, json_object *context,
                        bool fanout, struct nst_error *err) {
        _cleanup_json_ json_object *msg = NULL;
        char key[512], fanout_exchange[512];

        int r = nst_rpc_request_build(method, args, version, NULL, context, NULL, NULL, 0, &msg,
                                      err);
        if (r < 0)
                return r;
        if (fanout) {
                snprintf(fanout_exchange, sizeof(fanout_exchange), "%s_fanout", c->topic);
                return publish_confirmed(c, fanout_exchange, "", msg, 0, err);
        }
        return publish_confirmed(c, c->exchange, routing_key(c, server, key, sizeof(key)), msg, 0,
                                 err);
}
