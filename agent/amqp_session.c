/* One AMQP connection and channel through librabbitmq 0.11.
 *
 * librabbitmq reports failures in three shapes (int status codes,
 * amqp_rpc_reply_t, and close methods arriving as frames); everything here is
 * folded into the tree's convention: a negative errno plus an nst_error whose
 * message carries the library's or the broker's reason. */
#define NST_LOG_MODULE "amqp"

#include "agent/amqp_session.h"

#include <amqp.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <errno.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>

#include "agent/log.h"

#define CHANNEL 1
#define FRAME_MAX 131072
#define SYNC_RPC_TIMEOUT_S 30

struct nst_amqp {
        amqp_connection_state_t conn;
        bool logged_in;
        bool channel_open;
        bool broken;              /* no further polite close is possible */
        bool confirms;
        uint64_t next_seq;        /* delivery tag of the next publish (confirm mode) */

        /* Storage behind the last event's borrowed pointers. */
        amqp_envelope_t envelope;
        bool have_envelope;
        amqp_message_t returned;
        bool have_returned;
        char *content_type, *content_encoding, *routing_key, *consumer_tag, *reply_text;
};

static char *bytes_dup(amqp_bytes_t b) {
        char *s = malloc(b.len + 1);
        if (!s)
                return NULL;
        memcpy(s, b.bytes, b.len);
        s[b.len] = '\0';
        return s;
}

static int fail_status(struct nst_error *err, int status, const char *what) {
        int code = status == AMQP_STATUS_TIMEOUT || status == AMQP_STATUS_HEARTBEAT_TIMEOUT ?
                           -ETIMEDOUT :
                           -ECONNRESET;
        return nst_error_set(err, code, "ConnectionError", "%s: %s", what,
                             amqp_error_string2(status));
}

/* Turns a synchronous reply into our convention. A server exception closes
 * the channel or the connection, so the session is marked broken; the close
 * is acknowledged so the broker does not wait for us. */
static int check_reply(struct nst_amqp *a, amqp_rpc_reply_t r, const char *what,
                       struct nst_error *err) {
        switch (r.reply_type) {
        case AMQP_RESPONSE_NORMAL:
                return 0;
        case AMQP_RESPONSE_NONE:
                a->broken = true;
                return nst_error_set(err, -EPROTO, "ConnectionError", "%s: no reply from broker",
                                     what);
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
                a->broken = true;
                return fail_status(err, r.library_error, what);
        case AMQP_RESPONSE_SERVER_EXCEPTION:
                break;
        }

        a->broken = true;
        if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
                const amqp_connection_close_t *m = r.reply.decoded;
                amqp_connection_close_ok_t ok = {0};
                (void)amqp_send_method(a->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
                return nst_error_set(err, -ECONNRESET, "ConnectionError",
                                     "%s: broker closed the connection: %u %.*s", what,
                                     m->reply_code, (int)m->reply_text.len,
                                     (const char *)m->reply_text.bytes);
        }
        if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
                const amqp_channel_close_t *m = r.reply.decoded;
                amqp_channel_close_ok_t ok = {0};
                (void)amqp_send_method(a->conn, CHANNEL, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
                a->channel_open = false;
                return nst_error_set(err, -EPROTO, "ConnectionError",
                                     "%s: broker closed the channel: %u %.*s", what,
                                     m->reply_code, (int)m->reply_text.len,
                                     (const char *)m->reply_text.bytes);
        }
        return nst_error_set(err, -EPROTO, "ConnectionError",
                             "%s: unexpected broker method 0x%08x", what, r.reply.id);
}

static void clear_event_storage(struct nst_amqp *a) {
        if (a->have_envelope) {
                amqp_destroy_envelope(&a->envelope);
                a->have_envelope = false;
        }
        if (a->have_returned) {
                amqp_destroy_message(&a->returned);
                a->have_returned = false;
        }
        free(a->content_type);
        free(a->content_encoding);
        free(a->routing_key);
        free(a->consumer_tag);
        free(a->reply_text);
        a->content_type = a->content_encoding = a->routing_key = a->consumer_tag =
                a->reply_text = NULL;
}

void nst_amqp_free(struct nst_amqp *a) {
        if (!a)
                return;
        clear_event_storage(a);
        if (a->conn) {
                if (!a->broken) {
                        if (a->channel_open)
                                (void)amqp_channel_close(a->conn, CHANNEL, AMQP_REPLY_SUCCESS);
                        if (a->logged_in)
                                (void)amqp_connection_close(a->conn, AMQP_REPLY_SUCCESS);
                }
                amqp_destroy_connection(a->conn);
        }
        free(a);
}

static int open_socket(struct nst_amqp *a, const struct nst_amqp_params *p,
                       struct nst_error *err) {
        amqp_socket_t *sock;

        if (p->tls) {
                sock = amqp_ssl_socket_new(a->conn);
                if (!sock)
                        return nst_error_set(err, -ENOMEM, "ConnectionError",
                                             "cannot create a TLS socket");
                amqp_ssl_socket_set_verify_peer(sock, p->tls_opts.verify_peer);
                amqp_ssl_socket_set_verify_hostname(sock, p->tls_opts.verify_hostname);
                if (p->tls_opts.ca_file) {
                        if (amqp_ssl_socket_set_cacert(sock, p->tls_opts.ca_file) !=
                            AMQP_STATUS_OK)
                                return nst_error_set(err, -EINVAL, "ConfigError",
                                                     "[ssl] ca_file %s cannot be loaded",
                                                     p->tls_opts.ca_file);
                } else {
                        /* librabbitmq 0.11 trusts nothing by default: without
                         * a ca_file, use the system's CA store like any TLS
                         * client would. */
                        SSL_CTX *ctx = amqp_ssl_socket_get_context(sock);
                        if (!ctx || SSL_CTX_set_default_verify_paths(ctx) != 1)
                                return nst_error_set(err, -EINVAL, "ConfigError",
                                                     "cannot load the system CA store; set "
                                                     "[ssl] ca_file");
                }
                if (p->tls_opts.cert_file && p->tls_opts.key_file &&
                    amqp_ssl_socket_set_key(sock, p->tls_opts.cert_file, p->tls_opts.key_file) !=
                            AMQP_STATUS_OK)
                        return nst_error_set(err, -EINVAL, "ConfigError",
                                             "[ssl] cert_file %s / key_file %s cannot be loaded",
                                             p->tls_opts.cert_file, p->tls_opts.key_file);
        } else {
                sock = amqp_tcp_socket_new(a->conn);
                if (!sock)
                        return nst_error_set(err, -ENOMEM, "ConnectionError",
                                             "cannot create a TCP socket");
        }

        struct timeval tv = {.tv_sec = p->connect_timeout_ms / 1000,
                             .tv_usec = (p->connect_timeout_ms % 1000) * 1000};
        int status = amqp_socket_open_noblock(sock, p->host->host, p->host->port, &tv);
        if (status != AMQP_STATUS_OK) {
                const char *hint = "";
                if (status == AMQP_STATUS_SSL_PEER_VERIFY_FAILED)
                        hint = " (is the broker's certificate signed by a CA in [ssl] ca_file?)";
                else if (status == AMQP_STATUS_SSL_HOSTNAME_VERIFY_FAILED)
                        hint = " (the certificate does not name this host; librabbitmq matches "
                               "DNS names only; see [ssl] verify_hostname)";
                a->broken = true;
                return nst_error_set(err, status == AMQP_STATUS_TIMEOUT ? -ETIMEDOUT : -ECONNREFUSED,
                                     "ConnectionError", "cannot connect to %s:%d: %s%s",
                                     p->host->host, p->host->port, amqp_error_string2(status),
                                     hint);
        }
        return 0;
}

static amqp_table_entry_t bool_entry(const char *key, bool value) {
        return (amqp_table_entry_t){.key = amqp_cstring_bytes(key),
                                    .value = {.kind = AMQP_FIELD_KIND_BOOLEAN,
                                              .value.boolean = value}};
}

static amqp_table_entry_t string_entry(const char *key, const char *value) {
        return (amqp_table_entry_t){.key = amqp_cstring_bytes(key),
                                    .value = {.kind = AMQP_FIELD_KIND_UTF8,
                                              .value.bytes = amqp_cstring_bytes(value)}};
}

static int login(struct nst_amqp *a, const struct nst_amqp_params *p, struct nst_error *err) {
        amqp_table_entry_t caps[] = {
                bool_entry("authentication_failure_close", true),
                bool_entry("consumer_cancel_notify", true),
                bool_entry("publisher_confirms", true),
        };
        amqp_table_entry_t props[] = {
                string_entry("product", "nestor"),
                string_entry("connection_name", p->connection_name ? p->connection_name : "nestor"),
                {.key = amqp_cstring_bytes("capabilities"),
                 .value = {.kind = AMQP_FIELD_KIND_TABLE,
                           .value.table = {.num_entries = NST_ARRAY_SIZE(caps), .entries = caps}}},
        };
        amqp_table_t table = {.num_entries = NST_ARRAY_SIZE(props), .entries = props};

        amqp_rpc_reply_t r = amqp_login_with_properties(
                a->conn, p->vhost ? p->vhost : "/", 0, FRAME_MAX, p->heartbeat_s, &table,
                AMQP_SASL_METHOD_PLAIN, p->host->username, p->host->password);
        char what[300];
        snprintf(what, sizeof(what), "login to %s:%d vhost %s as %s", p->host->host,
                 p->host->port, p->vhost ? p->vhost : "/", p->host->username);
        int r2 = check_reply(a, r, what, err);
        if (r2 < 0)
                return r2;
        a->logged_in = true;
        return 0;
}

int nst_amqp_open(const struct nst_amqp_params *p, struct nst_amqp **ret, struct nst_error *err) {
        struct nst_amqp *a = calloc(1, sizeof(*a));
        if (!a)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        int r;

        a->conn = amqp_new_connection();
        if (!a->conn) {
                r = nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
                goto fail;
        }
        struct timeval hs = {.tv_sec = p->connect_timeout_ms / 1000 + 1};
        (void)amqp_set_handshake_timeout(a->conn, &hs);
        struct timeval rpc = {.tv_sec = SYNC_RPC_TIMEOUT_S};
        (void)amqp_set_rpc_timeout(a->conn, &rpc);

        r = open_socket(a, p, err);
        if (r < 0)
                goto fail;
        r = login(a, p, err);
        if (r < 0)
                goto fail;

        amqp_channel_open(a->conn, CHANNEL);
        r = check_reply(a, amqp_get_rpc_reply(a->conn), "channel.open", err);
        if (r < 0)
                goto fail;
        a->channel_open = true;

        if (p->prefetch > 0) {
                amqp_basic_qos(a->conn, CHANNEL, 0, p->prefetch, 0);
                r = check_reply(a, amqp_get_rpc_reply(a->conn), "basic.qos", err);
                if (r < 0)
                        goto fail;
        }
        if (p->confirms) {
                amqp_confirm_select(a->conn, CHANNEL);
                r = check_reply(a, amqp_get_rpc_reply(a->conn), "confirm.select", err);
                if (r < 0)
                        goto fail;
                a->confirms = true;
                a->next_seq = 1;
        }
        *ret = a;
        return 0;
fail:
        nst_amqp_free(a);
        return r;
}

int nst_amqp_declare_exchange(struct nst_amqp *a, const char *name, const char *type,
                              bool durable, bool auto_delete, struct nst_error *err) {
        amqp_exchange_declare(a->conn, CHANNEL, amqp_cstring_bytes(name), amqp_cstring_bytes(type),
                              0, durable, auto_delete, 0, amqp_empty_table);
        char what[300];
        snprintf(what, sizeof(what), "declare exchange %s", name);
        return check_reply(a, amqp_get_rpc_reply(a->conn), what, err);
}

int nst_amqp_declare_queue(struct nst_amqp *a, const char *name, const struct nst_queue_opts *q,
                           bool exclusive, char **ret_name, struct nst_error *err) {
        amqp_table_entry_t args[3];
        size_t n = 0;

        if (q->expires_ms > 0)
                args[n++] = (amqp_table_entry_t){
                        .key = amqp_cstring_bytes("x-expires"),
                        .value = {.kind = AMQP_FIELD_KIND_I64, .value.i64 = q->expires_ms}};
        if (q->ha)
                args[n++] = string_entry("x-ha-policy", "all");
        if (q->quorum)
                args[n++] = string_entry("x-queue-type", "quorum");
        amqp_table_t table = {.num_entries = (int)n, .entries = args};

        amqp_queue_declare_ok_t *ok =
                amqp_queue_declare(a->conn, CHANNEL, name ? amqp_cstring_bytes(name) : amqp_empty_bytes,
                                   0, q->durable || q->quorum, exclusive, q->auto_delete, table);
        char what[300];
        snprintf(what, sizeof(what), "declare queue %s", name && *name ? name : "(server-named)");
        int r = check_reply(a, amqp_get_rpc_reply(a->conn), what, err);
        if (r < 0)
                return r;
        if (ret_name) {
                *ret_name = ok ? bytes_dup(ok->queue) : strdup(name ? name : "");
                if (!*ret_name)
                        return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        return 0;
}

int nst_amqp_bind(struct nst_amqp *a, const char *queue, const char *exchange, const char *key,
                  struct nst_error *err) {
        amqp_queue_bind(a->conn, CHANNEL, amqp_cstring_bytes(queue), amqp_cstring_bytes(exchange),
                        amqp_cstring_bytes(key), amqp_empty_table);
        char what[300];
        snprintf(what, sizeof(what), "bind queue %s to %s with key %s", queue, exchange, key);
        return check_reply(a, amqp_get_rpc_reply(a->conn), what, err);
}

int nst_amqp_consume(struct nst_amqp *a, const char *queue, const char *tag, bool no_ack,
                     struct nst_error *err) {
        amqp_basic_consume(a->conn, CHANNEL, amqp_cstring_bytes(queue), amqp_cstring_bytes(tag), 0,
                           no_ack, 0, amqp_empty_table);
        char what[300];
        snprintf(what, sizeof(what), "consume from queue %s", queue);
        return check_reply(a, amqp_get_rpc_reply(a->conn), what, err);
}

int nst_amqp_cancel(struct nst_amqp *a, const char *tag, struct nst_error *err) {
        amqp_basic_cancel(a->conn, CHANNEL, amqp_cstring_bytes(tag));
        return check_reply(a, amqp_get_rpc_reply(a->conn), "basic.cancel", err);
}

int nst_amqp_delete_queue(struct nst_amqp *a, const char *queue, struct nst_error *err) {
        amqp_queue_delete(a->conn, CHANNEL, amqp_cstring_bytes(queue), 0, 0);
        char what[300];
        snprintf(what, sizeof(what), "delete queue %s", queue);
        return check_reply(a, amqp_get_rpc_reply(a->conn), what, err);
}

int nst_amqp_publish(struct nst_amqp *a, const char *exchange, const char *routing_key,
                     const void *body, size_t len, const struct nst_publish_opts *o,
                     uint64_t *ret_seq, struct nst_error *err) {
        char expiration[24];
        amqp_basic_properties_t props = {
                ._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_CONTENT_ENCODING_FLAG |
                          AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_PRIORITY_FLAG |
                          AMQP_BASIC_HEADERS_FLAG,
                .content_type = amqp_cstring_bytes("application/json"),
                .content_encoding = amqp_cstring_bytes("utf-8"),
                .delivery_mode = AMQP_DELIVERY_PERSISTENT,
                .priority = 0,
                .headers = amqp_empty_table,
        };
        if (o && o->expiration_ms > 0) {
                snprintf(expiration, sizeof(expiration), "%lld", (long long)o->expiration_ms);
                props._flags |= AMQP_BASIC_EXPIRATION_FLAG;
                props.expiration = amqp_cstring_bytes(expiration);
        }
        amqp_bytes_t b = {.len = len, .bytes = (void *)body};
        int status = amqp_basic_publish(a->conn, CHANNEL, amqp_cstring_bytes(exchange),
                                        amqp_cstring_bytes(routing_key), o && o->mandatory, 0,
                                        &props, b);
        if (status != AMQP_STATUS_OK) {
                a->broken = true;
                return fail_status(err, status, "publish");
        }
        if (ret_seq)
                *ret_seq = a->confirms ? a->next_seq : 0;
        if (a->confirms)
                a->next_seq++;
        return 0;
}

int nst_amqp_ack(struct nst_amqp *a, uint64_t delivery_tag, bool multiple, struct nst_error *err) {
        int status = amqp_basic_ack(a->conn, CHANNEL, delivery_tag, multiple);
        if (status != AMQP_STATUS_OK) {
                a->broken = true;
                return fail_status(err, status, "basic.ack");
        }
        return 0;
}

static int64_t parse_expiration(amqp_bytes_t b) {
        char buf[24];
        if (b.len == 0 || b.len >= sizeof(buf))
                return -1;
        memcpy(buf, b.bytes, b.len);
        buf[b.len] = '\0';
        char *end;
        errno = 0;
        long long v = strtoll(buf, &end, 10);
        if (errno || *end || v < 0)
                return -1;
        return v;
}

static int fill_delivery(struct nst_amqp *a, struct nst_amqp_event *ev, struct nst_error *err) {
        const amqp_envelope_t *e = &a->envelope;
        const amqp_basic_properties_t *p = &e->message.properties;

        ev->type = NST_AMQP_EV_DELIVERY;
        ev->seq = e->delivery_tag;
        ev->redelivered = e->redelivered;
        ev->body = e->message.body.bytes;
        ev->body_len = e->message.body.len;
        ev->expiration_ms = -1;
        a->routing_key = bytes_dup(e->routing_key);
        a->consumer_tag = bytes_dup(e->consumer_tag);
        if (!a->routing_key || !a->consumer_tag)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        if (p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG) {
                a->content_type = bytes_dup(p->content_type);
                if (!a->content_type)
                        return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        if (p->_flags & AMQP_BASIC_CONTENT_ENCODING_FLAG) {
                a->content_encoding = bytes_dup(p->content_encoding);
                if (!a->content_encoding)
                        return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        if (p->_flags & AMQP_BASIC_EXPIRATION_FLAG)
                ev->expiration_ms = parse_expiration(p->expiration);
        ev->routing_key = a->routing_key;
        ev->consumer_tag = a->consumer_tag;
        ev->content_type = a->content_type;
        ev->content_encoding = a->content_encoding;
        return 0;
}

/* A frame other than a delivery is waiting: confirms, returns, closes. */
static int handle_frame(struct nst_amqp *a, struct nst_amqp_event *ev, struct nst_error *err) {
        amqp_frame_t frame;
        memset(&frame, 0, sizeof(frame));
        int status = amqp_simple_wait_frame(a->conn, &frame);
        if (status != AMQP_STATUS_OK) {
                a->broken = true;
                return fail_status(err, status, "read frame");
        }
        if (frame.frame_type != AMQP_FRAME_METHOD)
                return 0; /* stray header/body: ignore */

        switch (frame.payload.method.id) {
        case AMQP_BASIC_ACK_METHOD: {
                const amqp_basic_ack_t *m = frame.payload.method.decoded;
                ev->type = NST_AMQP_EV_ACK;
                ev->seq = m->delivery_tag;
                ev->multiple = m->multiple;
                return 0;
        }
        case AMQP_BASIC_NACK_METHOD: {
                const amqp_basic_nack_t *m = frame.payload.method.decoded;
                ev->type = NST_AMQP_EV_NACK;
                ev->seq = m->delivery_tag;
                ev->multiple = m->multiple;
                return 0;
        }
        case AMQP_BASIC_RETURN_METHOD: {
                const amqp_basic_return_t *m = frame.payload.method.decoded;
                a->reply_text = bytes_dup(m->reply_text);
                a->routing_key = bytes_dup(m->routing_key);
                amqp_rpc_reply_t r = amqp_read_message(a->conn, frame.channel, &a->returned, 0);
                if (r.reply_type != AMQP_RESPONSE_NORMAL)
                        return check_reply(a, r, "read returned message", err);
                a->have_returned = true;
                ev->type = NST_AMQP_EV_RETURN;
                ev->reply_text = a->reply_text;
                ev->routing_key = a->routing_key;
                ev->body = a->returned.body.bytes;
                ev->body_len = a->returned.body.len;
                return 0;
        }
        case AMQP_BASIC_CANCEL_METHOD: {
                const amqp_basic_cancel_t *m = frame.payload.method.decoded;
                a->consumer_tag = bytes_dup(m->consumer_tag);
                ev->type = NST_AMQP_EV_CANCELLED;
                ev->consumer_tag = a->consumer_tag;
                return 0;
        }
        case AMQP_CHANNEL_CLOSE_METHOD:
        case AMQP_CONNECTION_CLOSE_METHOD: {
                amqp_rpc_reply_t r = {.reply_type = AMQP_RESPONSE_SERVER_EXCEPTION,
                                      .reply = frame.payload.method};
                return check_reply(a, r, "connection", err);
        }
        default:
                return 0;
        }
}

int nst_amqp_next_event(struct nst_amqp *a, int timeout_ms, struct nst_amqp_event *ev,
                        struct nst_error *err) {
        *ev = (struct nst_amqp_event){.type = NST_AMQP_EV_NONE, .expiration_ms = -1};
        if (a->broken)
                return nst_error_set(err, -ECONNRESET, "ConnectionError", "connection is broken");

        clear_event_storage(a);
        amqp_maybe_release_buffers(a->conn);

        struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
        amqp_rpc_reply_t r = amqp_consume_message(a->conn, &a->envelope, &tv, 0);
        if (r.reply_type == AMQP_RESPONSE_NORMAL) {
                a->have_envelope = true;
                return fill_delivery(a, ev, err);
        }
        if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION) {
                if (r.library_error == AMQP_STATUS_TIMEOUT)
                        return 0;
                if (r.library_error == AMQP_STATUS_UNEXPECTED_STATE)
                        return handle_frame(a, ev, err);
        }
        return check_reply(a, r, "consume", err);
}

int nst_amqp_fd(const struct nst_amqp *a) {
        return amqp_get_sockfd(a->conn);
}

bool nst_amqp_has_buffered(const struct nst_amqp *a) {
        return amqp_frames_enqueued(a->conn) || amqp_data_in_buffer(a->conn);
}

int nst_amqp_heartbeat(const struct nst_amqp *a) {
        return amqp_get_heartbeat(a->conn);
}
