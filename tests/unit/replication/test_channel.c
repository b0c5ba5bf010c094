/* The replication TLS channel (plugins/replication/repl_channel.h) over real
 * loopback connections: a PSK handshake that really is TLS 1.3 with the
 * identity the server looked up, frames of every shape including a 32 MiB
 * DATA payload, refusal of wrong keys, unknown identities and bad or missing
 * certificates on both sides, certificate mode with a CA made by the openssl
 * command, the rate limit, accept timeouts and a peer that closes. The
 * accepting side runs on a thread that only records results; assertions
 * stay on the main thread. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "messages/json_util.h"
#include "plugins/replication/repl_channel.h"

#define MiB (1024u * 1024u)
#define BIG_DATA (32u * MiB)
#define TIMEOUT_MS 20000

static char tmpdir[256];

/* ---- helpers ---- */

static int64_t mono_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint8_t pattern_byte(size_t i) {
        return (uint8_t)((i * 2654435761u) >> 13);
}

static uint8_t *pattern(size_t n) {
        uint8_t *p = malloc(n);
        assert_non_null(p);
        for (size_t i = 0; i < n; i++)
                p[i] = pattern_byte(i);
        return p;
}

static const uint8_t key_a[NST_RC_PSK_LEN] = "0123456789abcdef0123456789abcdef";
static const uint8_t key_b[NST_RC_PSK_LEN] = "0123456789abcdef0123456789abcdeF";

/* The server knows exactly one replication: "repl-1" with key_a. */
static int lookup_key(void *userdata, const char *identity, uint8_t key[NST_RC_PSK_LEN]) {
        int *calls = userdata;

        (*calls)++;
        if (strcmp(identity, "repl-1") != 0)
                return -ENOENT;
        memcpy(key, key_a, NST_RC_PSK_LEN);
        return 0;
}

/* SHOW_ERRORS=1 prints every checked message, to review their wording. */
static void assert_error(int r, int code, const struct nst_error *err, const char *cls,
                         const char *fragment) {
        if (getenv("SHOW_ERRORS"))
                fprintf(stderr, "  [%s] %s\n", err->cls, err->message);
        assert_int_equal(r, code);
        assert_string_equal(err->cls, cls);
        if (fragment && !strstr(err->message, fragment))
                fail_msg("'%s' lacks '%s'", err->message, fragment);
}

/* ---- the accepting side ---- */

struct acceptor {
        pthread_t tid;
        struct nst_rc_server *server;
        int timeout_ms;
        void (*serve)(struct acceptor *a); /* run on the accepted connection */
        int r;
        struct nst_error err;
        bool got_conn;
        char identity[NST_RC_IDENTITY_MAX + 1];
        char protocol[32];
        char cipher[64];
        /* What serve() found wrong, "" when all was right. */
        char failure[NST_ERROR_CLASS_MAX + NST_ERROR_MESSAGE_MAX + 32];
        uint64_t received;
        uint64_t sent;
};

/* The accepted connection, for serve() on the acceptor's thread. */
static __thread struct nst_rc_conn *served;

static void *acceptor_thread(void *arg) {
        struct acceptor *a = arg;
        struct nst_rc_conn *c = NULL;

        a->r = nst_rc_accept(a->server, a->timeout_ms, &c, &a->err);
        a->got_conn = c != NULL;
        if (a->r < 0)
                return NULL;
        snprintf(a->identity, sizeof(a->identity), "%s", nst_rc_conn_identity(c));
        snprintf(a->protocol, sizeof(a->protocol), "%s", nst_rc_conn_protocol(c));
        snprintf(a->cipher, sizeof(a->cipher), "%s", nst_rc_conn_cipher(c));
        nst_rc_set_timeout(c, TIMEOUT_MS);
        served = c;
        if (a->serve)
                a->serve(a);
        a->received = nst_rc_bytes_received(c);
        a->sent = nst_rc_bytes_sent(c);
        nst_rc_close(c);
        served = NULL;
        return NULL;
}

static void acceptor_start(struct acceptor *a, struct nst_rc_server *s, int timeout_ms,
                           void (*serve)(struct acceptor *)) {
        *a = (struct acceptor){.server = s, .timeout_ms = timeout_ms, .serve = serve};
        assert_int_equal(pthread_create(&a->tid, NULL, acceptor_thread, a), 0);
}

static void acceptor_join(struct acceptor *a) {
        assert_int_equal(pthread_join(a->tid, NULL), 0);
}

/* Echoes every frame back, checks DATA against the pattern and answers it
 * with COMMITTED, stops at BYE. */
/* Echoes control frames; a DATA frame is received the way the target does
 * (header, extent header, payload into its own buffer: nst_rc_recv_part)
 * and answered with COMMITTED {match, length}. */
static void serve_echo(struct acceptor *a) {
        uint8_t *buf = NULL, *expected = NULL, *payload = NULL;
        size_t cap = 0;

        for (;;) {
                struct nst_error err = NST_ERROR_INIT;
                struct nst_rw_header h;
                struct nst_rw_extent e;
                uint8_t head[NST_RW_EXTENT_SIZE];

                if (nst_rc_recv_header(served, &h, &err) < 0) {
                        snprintf(a->failure, sizeof(a->failure), "recv: %s", err.message);
                        break;
                }
                if (h.type != NST_RW_DATA) {
                        if (h.length > cap) {
                                free(buf);
                                buf = malloc(cap = h.length);
                        }
                        if (nst_rc_recv_part(served, buf, h.length, &err) < 0) {
                                snprintf(a->failure, sizeof(a->failure), "recv: %s",
                                         err.message);
                                break;
                        }
                        if (h.type == NST_RW_BYE)
                                break;
                        if (nst_rc_send(served, h.type, h.flags, buf, h.length, NULL, 0, &err) <
                            0) {
                                snprintf(a->failure, sizeof(a->failure), "echo: %s",
                                         err.message);
                                break;
                        }
                        continue;
                }
                if (h.length < sizeof(head) ||
                    nst_rc_recv_part(served, head, sizeof(head), &err) < 0 ||
                    nst_rw_extent_decode(head, h.length, &e, &err) < 0 ||
                    h.length != NST_RW_EXTENT_SIZE + e.length) {
                        snprintf(a->failure, sizeof(a->failure), "bad DATA frame");
                        break;
                }
                free(payload);
                payload = malloc(e.length);
                if (!payload || nst_rc_recv_part(served, payload, e.length, &err) < 0) {
                        snprintf(a->failure, sizeof(a->failure), "DATA payload: %s",
                                 err.message);
                        break;
                }
                free(expected);
                expected = pattern(e.length);
                json_object *reply = json_object_new_object();
                json_object_object_add(
                        reply, "match",
                        json_object_new_boolean(memcmp(payload, expected, e.length) == 0 &&
                                                nst_rw_digest(payload, e.length) == e.digest));
                json_object_object_add(reply, "length", json_object_new_int64(e.length));
                int r = nst_rc_send_json(served, NST_RW_COMMITTED, reply, &err);
                json_object_put(reply);
                if (r < 0) {
                        snprintf(a->failure, sizeof(a->failure), "reply: %s", err.message);
                        break;
                }
        }
        free(expected);
        free(payload);
        free(buf);
}

/* Receives frames until the peer closes, counting them. */
static void serve_drain(struct acceptor *a) {
        uint8_t *buf = NULL;
        size_t cap = 0;

        for (;;) {
                struct nst_error err = NST_ERROR_INIT;
                struct nst_rw_header h;

                if (nst_rc_recv(served, &h, &buf, &cap, &err) < 0)
                        break;
                if (h.type == NST_RW_BYE)
                        break;
        }
        free(buf);
}

static struct nst_rc_server *psk_server(int *lookups) {
        struct nst_error err = NST_ERROR_INIT;
        struct nst_rc_server *s = NULL;

        assert_int_equal(nst_rc_listen("127.0.0.1", 0, NULL, lookup_key, lookups, &s, &err), 0);
        assert_non_null(s);
        assert_true(nst_rc_server_port(s) > 0);
        assert_true(nst_rc_server_fd(s) >= 0);
        return s;
}

/* ---- PSK ---- */

static void expect_echo(struct nst_rc_conn *c, uint8_t type, uint8_t flags, const void *p,
                        size_t n, uint8_t **buf, size_t *cap) {
        struct nst_error err = NST_ERROR_INIT;
        struct nst_rw_header h;

        assert_int_equal(nst_rc_send(c, type, flags, p, n, NULL, 0, &err), 0);
        assert_int_equal(nst_rc_recv(c, &h, buf, cap, &err), 0);
        assert_int_equal(h.type, type);
        assert_int_equal(h.flags, flags);
        assert_int_equal(h.length, n);
        if (n)
                assert_memory_equal(*buf, p, n);
}

/* An ERROR frame that names no class or no reason, or is not JSON at all,
 * still reads as the peer's error. */
static void test_peer_error_payloads(void **state) {
        (void)state;
        static const struct {
                const char *payload, *cls, *message;
        } cases[] = {
                {"{\"class\":\"QuiesceFailed\",\"message\":\"fsfreeze refused\"}",
                 "QuiesceFailed", "fsfreeze refused"},
                {"{\"message\":\"paused\"}", "TargetError", "paused"},
                {"{\"class\":\"\",\"message\":\"\"}", "TargetError", "no reason given"},
                {"{}", "TargetError", "no reason given"},
                {"[1,2]", "TargetError",
                 "no reason given (an ERROR frame that is not a JSON object)"},
                {"\x01garbage", "TargetError",
                 "no reason given (an ERROR frame that is not a JSON object)"},
        };
        for (size_t i = 0; i < NST_ARRAY_SIZE(cases); i++) {
                struct nst_error peer = NST_ERROR_INIT;
                nst_rc_peer_error((const uint8_t *)cases[i].payload, strlen(cases[i].payload),
                                  "TargetError", &peer);
                assert_int_equal(peer.code, -EREMOTEIO);
                assert_string_equal(peer.cls, cases[i].cls);
                assert_string_equal(peer.message, cases[i].message);
        }
}

static void test_psk_frames_round_trip(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        int lookups = 0;
        struct nst_rc_server *s = psk_server(&lookups);
        struct nst_rc_conn *c = NULL;
        struct acceptor a;
        struct nst_rw_header h;
        uint8_t *buf = NULL, mark[NST_RW_MARK_SIZE], zero[NST_RW_EXTENT_SIZE],
                hashes[NST_RW_HASHES_HEADER_SIZE + 2 * NST_RW_HASH_SIZE], ext[NST_RW_EXTENT_SIZE];
        size_t cap = 0;
        json_object *hello = json_object_new_object(), *back = NULL, *o;

        acceptor_start(&a, s, TIMEOUT_MS, serve_echo);
        assert_int_equal(nst_rc_connect("127.0.0.1", nst_rc_server_port(s), NULL, "repl-1", key_a,
                                        TIMEOUT_MS, &c, &err),
                         0);
        assert_string_equal(nst_rc_conn_identity(c), "repl-1");
        assert_string_equal(nst_rc_conn_protocol(c), "TLSv1.3");
        /* Not ChaCha20, which OpenSSL's default order gives a SHA-256 key. */
        assert_string_equal(nst_rc_conn_cipher(c), "TLS_AES_128_GCM_SHA256");
        assert_non_null(strstr(nst_rc_conn_peer(c), "127.0.0.1:"));
        nst_rc_set_timeout(c, TIMEOUT_MS);

        /* A JSON control frame, parsed back. */
        json_object_object_add(hello, "replication", json_object_new_string("repl-1"));
        json_object_object_add(hello, "cycle", json_object_new_int(7));
        assert_int_equal(nst_rc_send_json(c, NST_RW_HELLO, hello, &err), 0);
        assert_int_equal(nst_rc_recv(c, &h, &buf, &cap, &err), 0);
        assert_int_equal(h.type, NST_RW_HELLO);
        assert_int_equal(nst_rc_parse_json(buf, h.length, &back, &err), 0);
        assert_true(json_object_object_get_ex(back, "cycle", &o));
        assert_int_equal(json_object_get_int(o), 7);
        json_object_put(back);

        nst_rw_mark_encode(mark, &(struct nst_rw_mark){.disk = 1, .offset = 1u << 30});
        expect_echo(c, NST_RW_MARK, 0, mark, sizeof(mark), &buf, &cap);
        nst_rw_extent_encode(zero, &(struct nst_rw_extent){.disk = 0, .length = 1u << 31});
        expect_echo(c, NST_RW_ZERO, 0, zero, sizeof(zero), &buf, &cap);
        memset(hashes, 0x33, sizeof(hashes));
        nst_rw_hashes_encode(hashes, &(struct nst_rw_hashes){.disk = 0, .block_size = 65536,
                                                             .first_block = 3, .count = 2});
        expect_echo(c, NST_RW_HASHES, 0, hashes, sizeof(hashes), &buf, &cap);
        expect_echo(c, NST_RW_COMMIT, 0, "{}", 2, &buf, &cap);

        /* An ERROR frame read back as the peer's error, class and message. */
        struct nst_error sent = NST_ERROR_INIT, peer = NST_ERROR_INIT;
        nst_error_set(&sent, -ENOSPC, "TargetDiskFull", "replica of vm-1: no space left");
        nst_rc_send_error(c, &sent);
        assert_int_equal(nst_rc_recv(c, &h, &buf, &cap, &err), 0);
        assert_int_equal(h.type, NST_RW_ERROR);
        nst_rc_peer_error(buf, h.length, "TargetError", &peer);
        assert_int_equal(peer.code, -EREMOTEIO);
        assert_string_equal(peer.cls, "TargetDiskFull");
        assert_string_equal(peer.message, "replica of vm-1: no space left");

        /* 32 MiB in one DATA frame: extent header and payload as two parts. */
        uint8_t *big = pattern(BIG_DATA);
        nst_rw_extent_encode(ext, &(struct nst_rw_extent){.disk = 0, .length = BIG_DATA,
                                                          .offset = 0,
                                                          .digest = nst_rw_digest(big,
                                                                                  BIG_DATA)});
        assert_int_equal(nst_rc_send(c, NST_RW_DATA, 0, ext, sizeof(ext), big, BIG_DATA, &err),
                         0);
        free(big);
        assert_int_equal(nst_rc_recv(c, &h, &buf, &cap, &err), 0);
        assert_int_equal(h.type, NST_RW_COMMITTED);
        assert_int_equal(nst_rc_parse_json(buf, h.length, &back, &err), 0);
        assert_true(json_object_object_get_ex(back, "match", &o));
        assert_true(json_object_get_boolean(o));
        assert_true(json_object_object_get_ex(back, "length", &o));
        assert_int_equal(json_object_get_int64(o), BIG_DATA);
        json_object_put(back);

        /* BYE: the server stops and closes; we see it as "closed by peer". */
        assert_int_equal(nst_rc_send(c, NST_RW_BYE, 0, "{}", 2, NULL, 0, &err), 0);
        acceptor_join(&a);
        assert_int_equal(a.r, 0);
        assert_string_equal(a.failure, "");
        assert_string_equal(a.identity, "repl-1");
        assert_string_equal(a.protocol, "TLSv1.3");
        assert_string_equal(a.cipher, "TLS_AES_128_GCM_SHA256");
        assert_true(lookups >= 1);
        assert_error(nst_rc_recv(c, &h, &buf, &cap, &err), -ECONNRESET, &err, "ChannelError",
                     "closed by peer");
        /* Both sides count the same application bytes. */
        assert_true(nst_rc_bytes_sent(c) == a.received);
        assert_true(nst_rc_bytes_received(c) == a.sent);
        assert_true(nst_rc_bytes_sent(c) > BIG_DATA);
        /* A broken connection refuses further I/O instead of touching OpenSSL. */
        assert_error(nst_rc_send(c, NST_RW_BYE, 0, "{}", 2, NULL, 0, &err), -EPIPE, &err,
                     "ChannelError", "broken");

        json_object_put(hello);
        free(buf);
        nst_rc_close(c);
        nst_rc_server_close(s);
}

/* A PSK client the server must refuse during the handshake: both sides
 * say AuthenticationFailed (the client's message contains client_says,
 * the server's server_says), and no connection reaches the server. */
static void expect_psk_refused(const char *identity, const uint8_t *key, const char *client_says,
                               const char *server_says) {
        struct nst_error err = NST_ERROR_INIT;
        int lookups = 0;
        struct nst_rc_server *s = psk_server(&lookups);
        struct nst_rc_conn *c = NULL;
        struct acceptor a;

        acceptor_start(&a, s, TIMEOUT_MS, NULL);
        assert_error(nst_rc_connect("127.0.0.1", nst_rc_server_port(s), NULL, identity, key,
                                    TIMEOUT_MS, &c, &err),
                     -EACCES, &err, "AuthenticationFailed", client_says);
        assert_null(c);
        acceptor_join(&a);
        assert_error(a.r, -EACCES, &a.err, "AuthenticationFailed", server_says);
        assert_non_null(strstr(a.err.message, "TLS handshake from 127.0.0.1:"));
        assert_false(a.got_conn);
        assert_int_equal(lookups, 1);
        nst_rc_server_close(s);
}

static void test_psk_wrong_key_refused(void **state) {
        expect_psk_refused("repl-1", key_b, "(PSK identity 'repl-1')", "PSK identity 'repl-1'");
}

static void test_psk_unknown_identity_refused(void **state) {
        expect_psk_refused("repl-2", key_a, NULL, "unknown PSK identity 'repl-2'");
}

static void test_config_errors(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        struct nst_rc_server *s = NULL;
        struct nst_rc_conn *c = NULL;
        struct nst_rc_tls_config bad = {.cert_file = "/nonexistent/cert.pem",
                                        .key_file = "/nonexistent/key.pem",
                                        .ca_file = "/nonexistent/ca.pem"};

        assert_error(nst_rc_listen("127.0.0.1", 0, NULL, NULL, NULL, &s, &err), -EINVAL, &err,
                     "ConfigError", "neither");
        assert_error(nst_rc_listen("127.0.0.1", 0, &bad, NULL, NULL, &s, &err), -EINVAL, &err,
                     "ConfigError", "/nonexistent/cert.pem: No such file or directory");
        assert_null(s);
        assert_error(nst_rc_connect("127.0.0.1", 1, NULL, NULL, NULL, 1000, &c, &err), -EINVAL,
                     &err, "ConfigError", NULL);
        assert_error(nst_rc_connect("127.0.0.1", 1, NULL, "", key_a, 1000, &c, &err), -EINVAL,
                     &err, "ConfigError", "identity");
        assert_null(c);
}

static void test_connect_refused_and_bind_error(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        int lookups = 0;
        struct nst_rc_server *s = psk_server(&lookups), *s2 = NULL;
        uint16_t port = nst_rc_server_port(s);
        struct nst_rc_conn *c = NULL;
        int r;

        /* The port is taken. */
        r = nst_rc_listen("127.0.0.1", port, NULL, lookup_key, &lookups, &s2, &err);
        assert_error(r, -EADDRINUSE, &err, "ChannelError", "127.0.0.1");
        nst_rc_server_close(s);
        /* Nothing answers any more. */
        r = nst_rc_connect("127.0.0.1", port, NULL, "repl-1", key_a, 2000, &c, &err);
        assert_error(r, -ECONNREFUSED, &err, "ChannelError", "cannot connect");
        assert_null(c);
}

/* Records the first receive error. */
static void serve_first_error(struct acceptor *a) {
        struct nst_error err = NST_ERROR_INIT;
        struct nst_rw_header h;
        uint8_t *buf = NULL;
        size_t cap = 0;

        if (nst_rc_recv(served, &h, &buf, &cap, &err) < 0)
                snprintf(a->failure, sizeof(a->failure), "%s: %s", err.cls, err.message);
        free(buf);
}

static void test_recv_timeout_and_bad_frame(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        int lookups = 0;
        struct nst_rc_server *s = psk_server(&lookups);
        struct nst_rc_conn *c = NULL;
        struct acceptor a;
        struct nst_rw_header h;
        uint8_t *buf = NULL;
        size_t cap = 0;
        int64_t t0;

        acceptor_start(&a, s, TIMEOUT_MS, serve_first_error);
        assert_int_equal(nst_rc_connect("127.0.0.1", nst_rc_server_port(s), NULL, "repl-1", key_a,
                                        TIMEOUT_MS, &c, &err),
                         0);
        /* The server says nothing: recv gives up after the timeout. */
        nst_rc_set_timeout(c, 200);
        t0 = mono_ms();
        assert_error(nst_rc_recv(c, &h, &buf, &cap, &err), -ETIMEDOUT, &err, "ChannelError",
                     "within 200 ms");
        assert_true(mono_ms() - t0 >= 190);
        /* A frame type the receiver does not know breaks the stream there. */
        nst_rc_set_timeout(c, TIMEOUT_MS);
        assert_int_equal(nst_rc_send(c, 0, 0, "x", 1, NULL, 0, &err), 0);
        acceptor_join(&a);
        if (!strstr(a.failure, "ProtocolError: ") || !strstr(a.failure, "unknown type 0") ||
            !strstr(a.failure, "from 127.0.0.1:"))
                fail_msg("server saw '%s'", a.failure);
        assert_error(nst_rc_recv(c, &h, &buf, &cap, &err), -ECONNRESET, &err, "ChannelError",
                     "closed by peer");
        free(buf);
        nst_rc_close(c);
        nst_rc_server_close(s);
}

/* ---- timeouts ---- */

static int raw_connect(uint16_t port) {
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        assert_true(fd >= 0);
        assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
        return fd;
}

struct connector {
        pthread_t tid;
        uint16_t port;
        int r;
        struct nst_error err;
};

static void *connector_thread(void *arg) {
        struct connector *k = arg;
        struct nst_rc_conn *c = NULL;
        k->r = nst_rc_connect("127.0.0.1", k->port, NULL, "repl-1", key_a, 5000, &c, &k->err);
        nst_rc_close(c);
        return NULL;
}

/* Accepting and authenticating apart: a silent peer's pending handshake
 * does not hold up the next peer's (the target runs each on its session's
 * thread). */
static void test_handshake_apart_from_accept(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        int lookups = 0;
        struct nst_rc_server *s = psk_server(&lookups);
        struct nst_rc_conn *silent = NULL, *good = NULL;

        int fd = raw_connect(nst_rc_server_port(s));
        assert_int_equal(nst_rc_accept_tcp(s, 2000, &silent, &err), 0);
        struct connector k = {.port = nst_rc_server_port(s), .err = NST_ERROR_INIT};
        assert_int_equal(pthread_create(&k.tid, NULL, connector_thread, &k), 0);
        assert_int_equal(nst_rc_accept_tcp(s, 2000, &good, &err), 0);
        int64_t t0 = mono_ms();
        assert_int_equal(nst_rc_handshake(good, 2000, &err), 0);
        assert_true(mono_ms() - t0 < 1500);
        assert_string_equal(nst_rc_conn_identity(good), "repl-1");
        assert_int_equal(pthread_join(k.tid, NULL), 0);
        assert_int_equal(k.r, 0);
        assert_error(nst_rc_handshake(silent, 200, &err), -ECONNABORTED, &err, "ChannelError",
                     "timed out after 200 ms");
        assert_error(nst_rc_handshake(good, 200, &err), -EINVAL, &err, "InvalidInput",
                     "not an accepted connection");
        nst_rc_close(silent);
        nst_rc_close(good);
        close(fd);
        assert_int_equal(lookups, 1);
        nst_rc_server_close(s);
        (void)state;
}

static void test_accept_timeouts(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        int lookups = 0, fd;
        struct nst_rc_server *s = psk_server(&lookups);
        struct nst_rc_conn *c = NULL;
        int64_t t0, elapsed;

        /* Nobody connects. */
        t0 = mono_ms();
        assert_error(nst_rc_accept(s, 200, &c, &err), -ETIMEDOUT, &err, "ChannelError",
                     "within 200 ms");
        elapsed = mono_ms() - t0;
        assert_true(elapsed >= 190 && elapsed < 2000);

        /* A peer connects and says nothing: the handshake is bounded. */
        fd = raw_connect(nst_rc_server_port(s));
        t0 = mono_ms();
        assert_error(nst_rc_accept(s, 300, &c, &err), -ECONNABORTED, &err, "ChannelError",
                     "timed out after 300 ms");
        elapsed = mono_ms() - t0;
        assert_true(elapsed >= 290 && elapsed < 2000);
        assert_null(c);
        close(fd);

        /* A peer that is not TLS at all. */
        fd = raw_connect(nst_rc_server_port(s));
        assert_int_equal(write(fd, "GET / HTTP/1.0\r\n\r\n", 18), 18);
        assert_error(nst_rc_accept(s, 2000, &c, &err), -EACCES, &err, "AuthenticationFailed",
                     NULL);
        assert_null(c);
        close(fd);
        assert_int_equal(lookups, 0);
        nst_rc_server_close(s);
}

/* ---- rate limit ---- */

static void test_bucket_explicit_clock(void **state) {
        struct nst_rc_bucket b;

        /* Unlimited. */
        nst_rc_bucket_init(&b, 0, 1000);
        assert_int_equal(nst_rc_bucket_take(&b, UINT64_C(1) << 40, 1000), 0);

        /* 1000 bytes/s starting empty: 500 bytes wait 500 ms. */
        nst_rc_bucket_init(&b, 1000, 0);
        assert_int_equal(nst_rc_bucket_take(&b, 500, 0), 500);
        /* After sleeping those 500 ms the debt is paid: the next 100 wait 100. */
        assert_int_equal(nst_rc_bucket_take(&b, 100, 500), 100);
        /* Long idle time accumulates at most the burst (100 ms worth). */
        assert_int_equal(nst_rc_bucket_take(&b, 100, 100000), 0);
        assert_int_equal(nst_rc_bucket_take(&b, 100, 100000), 100);
        /* One frame far over the rate: the bucket goes into debt. */
        nst_rc_bucket_init(&b, 1000, 0);
        assert_int_equal(nst_rc_bucket_take(&b, 10000, 0), 10000);
        assert_int_equal(nst_rc_bucket_take(&b, 1, 5000), 5001);
        assert_int_equal(nst_rc_bucket_take(&b, 1, 10001), 1);
        /* The clock going backwards neither refills nor breaks it. */
        assert_int_equal(nst_rc_bucket_take(&b, 1000, 9000), 1001);
        /* Rounding: a fraction of a millisecond rounds up. */
        nst_rc_bucket_init(&b, 3000, 0);
        assert_int_equal(nst_rc_bucket_take(&b, 1, 0), 1);

        /* Long run: 8 MiB/s, 1 MiB frames sent right after each wait. */
        int64_t now = 0;
        nst_rc_bucket_init(&b, 8 * MiB, now);
        for (int i = 0; i < 16; i++)
                now += nst_rc_bucket_take(&b, MiB, now);
        assert_true(now >= 1999 && now <= 2001);
}

static void test_rate_limit_paces_sends(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        int lookups = 0;
        struct nst_rc_server *s = psk_server(&lookups);
        struct nst_rc_conn *c = NULL;
        struct acceptor a;
        uint8_t *payload = pattern(MiB), ext[NST_RW_EXTENT_SIZE];
        int64_t t0, elapsed;

        acceptor_start(&a, s, TIMEOUT_MS, serve_drain);
        assert_int_equal(nst_rc_connect("127.0.0.1", nst_rc_server_port(s), NULL, "repl-1", key_a,
                                        TIMEOUT_MS, &c, &err),
                         0);
        nst_rc_set_rate_limit(c, 8 * MiB);
        nst_rw_extent_encode(ext, &(struct nst_rw_extent){.length = MiB});
        t0 = mono_ms();
        for (int i = 0; i < 4; i++)
                assert_int_equal(
                        nst_rc_send(c, NST_RW_DATA, 0, ext, sizeof(ext), payload, MiB, &err), 0);
        elapsed = mono_ms() - t0;
        assert_int_equal(nst_rc_send(c, NST_RW_BYE, 0, "{}", 2, NULL, 0, &err), 0);
        acceptor_join(&a);
        assert_int_equal(a.r, 0);
        /* 4 MiB at 8 MiB/s: half a second, not much more. */
        if (elapsed < 450 || elapsed > 5000)
                fail_msg("4 MiB at 8 MiB/s took %lld ms", (long long)elapsed);
        assert_true(a.received == nst_rc_bytes_sent(c));
        free(payload);
        nst_rc_close(c);
        nst_rc_server_close(s);
}

/* ---- certificates ---- */

_printf_(1, 2) static void sh(const char *fmt, ...) {
        char cmd[2048];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(cmd, sizeof(cmd), fmt, ap);
        va_end(ap);
        if (system(cmd) != 0)
                fail_msg("command failed: %s", cmd);
}

/* A CA named ca (ca.pem/ca.key) in tmpdir. */
static void make_ca(const char *ca) {
        sh("cd '%s' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
           "-keyout %s.key -out %s.pem -subj /CN=%s -days 2 2>/dev/null",
           tmpdir, ca, ca, ca);
}

/* name.pem/name.key with subject CN=cn, signed by ca. */
static void make_cert(const char *name, const char *cn, const char *ca) {
        sh("cd '%s' && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
           "-keyout %s.key -out %s.csr -subj /CN=%s 2>/dev/null && "
           "openssl x509 -req -in %s.csr -CA %s.pem -CAkey %s.key -CAcreateserial "
           "-out %s.pem -days 2 2>/dev/null",
           tmpdir, name, name, cn, name, ca, ca, name);
}

struct tls_files {
        char cert[300], key[300], ca[300];
        struct nst_rc_tls_config cfg;
};

static void tls_files(struct tls_files *f, const char *name, const char *ca) {
        snprintf(f->cert, sizeof(f->cert), "%s/%s.pem", tmpdir, name);
        snprintf(f->key, sizeof(f->key), "%s/%s.key", tmpdir, name);
        snprintf(f->ca, sizeof(f->ca), "%s/%s.pem", tmpdir, ca);
        f->cfg = (struct nst_rc_tls_config){.cert_file = f->cert, .key_file = f->key,
                                            .ca_file = f->ca};
}

static int setup_certs(void **state) {
        snprintf(tmpdir, sizeof(tmpdir), "%s/nestor-channel-XXXXXX",
                 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        if (!mkdtemp(tmpdir))
                return -1;
        make_ca("ca1");
        make_ca("ca2");
        make_cert("target", "target-node", "ca1");
        make_cert("source", "source-node", "ca1");
        make_cert("rogue", "source-node", "ca2");
        return 0;
}

static int teardown_certs(void **state) {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        return system(cmd) == 0 ? 0 : -1;
}

static struct nst_rc_server *cert_server(struct tls_files *f) {
        struct nst_error err = NST_ERROR_INIT;
        struct nst_rc_server *s = NULL;

        tls_files(f, "target", "ca1");
        if (nst_rc_listen("127.0.0.1", 0, &f->cfg, NULL, NULL, &s, &err) < 0)
                fail_msg("listen: %s", err.message);
        return s;
}

static void test_cert_mutual_auth(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        struct tls_files sf, cf;
        struct nst_rc_server *s = cert_server(&sf);
        struct nst_rc_conn *c = NULL;
        struct acceptor a;
        uint8_t *buf = NULL;
        size_t cap = 0;

        tls_files(&cf, "source", "ca1");
        acceptor_start(&a, s, TIMEOUT_MS, serve_echo);
        if (nst_rc_connect("localhost", nst_rc_server_port(s), &cf.cfg, NULL, NULL, TIMEOUT_MS,
                           &c, &err) < 0)
                fail_msg("connect: %s", err.message);
        assert_string_equal(nst_rc_conn_identity(c), "target-node");
        expect_echo(c, NST_RW_READY, 0, "{\"resume\":0}", 12, &buf, &cap);
        assert_int_equal(nst_rc_send(c, NST_RW_BYE, 0, "{}", 2, NULL, 0, &err), 0);
        acceptor_join(&a);
        assert_int_equal(a.r, 0);
        assert_string_equal(a.failure, "");
        assert_string_equal(a.identity, "source-node");
        assert_string_equal(a.protocol, "TLSv1.3");
        assert_string_equal(a.cipher, "TLS_AES_128_GCM_SHA256");
        free(buf);
        nst_rc_close(c);
        nst_rc_server_close(s);
}

static void test_cert_from_other_ca_refused(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        struct tls_files sf, cf;
        struct nst_rc_server *s = cert_server(&sf);
        struct nst_rc_conn *c = NULL;
        struct acceptor a;

        /* The rogue client trusts ca1, so only the server can refuse it. */
        tls_files(&cf, "rogue", "ca1");
        acceptor_start(&a, s, TIMEOUT_MS, NULL);
        assert_error(nst_rc_connect("127.0.0.1", nst_rc_server_port(s), &cf.cfg, NULL, NULL,
                                    TIMEOUT_MS, &c, &err),
                     -EACCES, &err, "AuthenticationFailed", NULL);
        assert_null(c);
        acceptor_join(&a);
        assert_error(a.r, -EACCES, &a.err, "AuthenticationFailed", "certificate");
        assert_false(a.got_conn);

        /* And a client that does not trust the server's CA refuses the server. */
        tls_files(&cf, "source", "ca2");
        acceptor_start(&a, s, TIMEOUT_MS, NULL);
        assert_error(nst_rc_connect("127.0.0.1", nst_rc_server_port(s), &cf.cfg, NULL, NULL,
                                    TIMEOUT_MS, &c, &err),
                     -EACCES, &err, "AuthenticationFailed", "certificate verification failed");
        assert_null(c);
        acceptor_join(&a);
        assert_int_equal(a.r, -EACCES);
        assert_false(a.got_conn);

        /* A PSK client gets nowhere with a certificate server. */
        acceptor_start(&a, s, TIMEOUT_MS, NULL);
        assert_error(nst_rc_connect("127.0.0.1", nst_rc_server_port(s), NULL, "repl-1", key_a,
                                    TIMEOUT_MS, &c, &err),
                     -EACCES, &err, "AuthenticationFailed", NULL);
        acceptor_join(&a);
        assert_int_equal(a.r, -EACCES);
        assert_false(a.got_conn);
        nst_rc_server_close(s);
}

static void test_cert_config_errors(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        struct nst_rc_server *s = NULL;
        struct tls_files f;

        /* A key that belongs to another certificate. */
        tls_files(&f, "target", "ca1");
        snprintf(f.key, sizeof(f.key), "%s/source.key", tmpdir);
        assert_error(nst_rc_listen("127.0.0.1", 0, &f.cfg, NULL, NULL, &s, &err), -EINVAL, &err,
                     "ConfigError", "private key file");
        assert_non_null(strstr(err.message, "source.key"));
        /* A CA file that is not PEM. */
        tls_files(&f, "target", "ca1");
        snprintf(f.ca, sizeof(f.ca), "%s/ca1.key.missing", tmpdir);
        assert_error(nst_rc_listen("127.0.0.1", 0, &f.cfg, NULL, NULL, &s, &err), -EINVAL, &err,
                     "ConfigError", "CA file");
        assert_null(s);
}

/* A plain OpenSSL client that trusts ca1 but has no certificate. */
static void test_cert_missing_refused(void **state) {
        struct tls_files sf;
        struct nst_rc_server *s = cert_server(&sf);
        struct acceptor a;
        struct timeval tv = {.tv_sec = 10};
        SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
        SSL *ssl;
        char byte;
        int fd;

        assert_non_null(ctx);
        assert_int_equal(SSL_CTX_load_verify_locations(ctx, sf.ca, NULL), 1);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        acceptor_start(&a, s, TIMEOUT_MS, NULL);
        fd = raw_connect(nst_rc_server_port(s));
        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
        ssl = SSL_new(ctx);
        SSL_set_fd(ssl, fd);
        /* TLS 1.3: the client's side completes; the refusal comes as an alert. */
        if (SSL_connect(ssl) == 1)
                assert_true(SSL_read(ssl, &byte, 1) <= 0);
        acceptor_join(&a);
        assert_error(a.r, -EACCES, &a.err, "AuthenticationFailed", "certificate");
        assert_false(a.got_conn);
        SSL_free(ssl);
        SSL_CTX_free(ctx);
        close(fd);
        nst_rc_server_close(s);
}

int main(void) {
        const struct CMUnitTest psk_tests[] = {
                cmocka_unit_test(test_peer_error_payloads),
                cmocka_unit_test(test_psk_frames_round_trip),
                cmocka_unit_test(test_psk_wrong_key_refused),
                cmocka_unit_test(test_psk_unknown_identity_refused),
                cmocka_unit_test(test_config_errors),
                cmocka_unit_test(test_connect_refused_and_bind_error),
                cmocka_unit_test(test_accept_timeouts),
                cmocka_unit_test(test_handshake_apart_from_accept),
                cmocka_unit_test(test_recv_timeout_and_bad_frame),
                cmocka_unit_test(test_bucket_explicit_clock),
                cmocka_unit_test(test_rate_limit_paces_sends),
        };
        const struct CMUnitTest cert_tests[] = {
                cmocka_unit_test(test_cert_mutual_auth),
                cmocka_unit_test(test_cert_from_other_ca_refused),
                cmocka_unit_test(test_cert_missing_refused),
                cmocka_unit_test(test_cert_config_errors),
        };
        int failed = cmocka_run_group_tests_name("psk", psk_tests, NULL, NULL);

        failed += cmocka_run_group_tests_name("certificates", cert_tests, setup_certs,
                                              teardown_certs);
        return failed;
}
