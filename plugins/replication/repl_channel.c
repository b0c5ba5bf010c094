/* The replication data channel (repl_channel.h): one mutually authenticated
 * TLS connection per replication stream, carrying repl_wire frames.
 *
 * Every socket is non-blocking and every OpenSSL call runs in a poll loop, so
 * a silent or slow peer costs at most the connection's timeout: the handshake
 * is bounded as a whole, a send or receive by the time without progress.
 *
 * OpenSSL's socket BIO writes with write(), which raises SIGPIPE on a reset
 * connection. agent/main.c ignores SIGPIPE for the whole agent, but this is a
 * library (tests and tools link it too), so the TLS connection runs on a
 * small BIO of our own that sends with MSG_NOSIGNAL instead.
 *
 * TLS 1.3 subtlety in certificate mode: the client finishes its handshake
 * before the server has checked the client's certificate, so a refused client
 * would only learn it on its first read. The server therefore sends one
 * session ticket (it does so only after accepting the certificate) and
 * nst_rc_connect() waits for it, which turns a refusal into an
 * AuthenticationFailed from nst_rc_connect(). Tickets are never reused. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "messages/json_util.h"
#include "plugins/replication/repl_channel.h"

#define CHANNEL "ChannelError"
#define AUTH "AuthenticationFailed"
#define CONFIG "ConfigError"
#define DEFAULT_TIMEOUT_MS 60000
#define CLOSE_NOTIFY_MS 1000
#define LISTEN_BACKLOG 16
#define READ_AHEAD_BYTES (128 * 1024)
#define CIPHERSUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
/* Frames up to this size go out in one SSL_write (one TLS record). */
#define COALESCE_SIZE 16384
#define GATHER_SIZE (256 * 1024)
/* The rate limit lets at most this much of a second's budget accumulate. */
#define BURST_MS 100
#define PEER_MAX (INET6_ADDRSTRLEN + 16)
#define REASON_MAX 256

struct nst_rc_server {
        int fd;
        uint16_t port;
        SSL_CTX *ctx;
        bool cert_mode;
        nst_rc_psk_lookup_fn lookup;
        void *userdata;
};

struct nst_rc_conn {
        int fd;
        SSL *ssl;
        bool cert_mode;
        bool established; /* close_notify may be sent */
        bool broken;      /* OpenSSL had a fatal error: no more I/O */
        bool ticket_seen; /* client, certificate mode: the server accepted us */
        const struct nst_rc_server *server; /* accepted, until its handshake */
        uint8_t psk[NST_RC_PSK_LEN];        /* client, during the handshake only */
        char auth_note[REASON_MAX];         /* why our own callback refused the peer */
        char identity[NST_RC_IDENTITY_MAX + 1];
        char peer[PEER_MAX];
        int timeout_ms;
        struct nst_rc_bucket bucket;
        uint64_t sent;
        uint64_t received;
        uint8_t wbuf[COALESCE_SIZE];
        /* TLS records on their way to the socket: OpenSSL writes each 16 KiB
         * record to the BIO by itself, and one send() per record was most
         * of the sender's system calls; gathered, a frame goes out in
         * GATHER_SIZE pieces. Emptied before every send returns. */
        uint8_t *gather;
        size_t gather_len, gather_off;
};

/* ---- time ---- */

static int64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t deadline_after(int timeout_ms) {
        return timeout_ms < 0 ? INT64_MAX : now_ms() + timeout_ms;
}

static void sleep_ms(int64_t ms) {
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* 0 when fd is ready for events (or has an error OpenSSL will report),
 * -ETIMEDOUT at the deadline. */
static int wait_fd(int fd, short events, int64_t deadline) {
        for (;;) {
                struct pollfd p = {.fd = fd, .events = events};
                int64_t left = deadline == INT64_MAX ? -1 : deadline - now_ms();
                int r;

                if (deadline != INT64_MAX && left <= 0)
                        return -ETIMEDOUT;
                r = poll(&p, 1, left > INT32_MAX ? INT32_MAX : (int)left);
                if (r > 0)
                        return 0;
                if (r < 0 && errno != EINTR)
                        return -errno;
        }
}

/* ---- token bucket ---- */

void nst_rc_bucket_init(struct nst_rc_bucket *b, uint64_t rate, int64_t now) {
        *b = (struct nst_rc_bucket){.rate = rate, .tokens = 0, .last_ms = now};
}

int64_t nst_rc_bucket_take(struct nst_rc_bucket *b, uint64_t n, int64_t now) {
        double burst, wait;
        int64_t ms;

        if (b->rate == 0)
                return 0;
        burst = (double)b->rate * BURST_MS / 1000.0;
        if (now > b->last_ms) {
                b->tokens += (double)(now - b->last_ms) * (double)b->rate / 1000.0;
                if (b->tokens > burst)
                        b->tokens = burst;
                b->last_ms = now;
        }
        /* A frame larger than the budget puts the bucket in debt: the wait
         * pays it back, so the long-run rate holds for any frame size. */
        b->tokens -= (double)n;
        if (b->tokens >= 0)
                return 0;
        wait = -b->tokens * 1000.0 / (double)b->rate;
        ms = (int64_t)wait;
        return ms < wait ? ms + 1 : ms;
}

/* ---- a socket BIO that never raises SIGPIPE ---- */

static BIO_METHOD *nosigpipe_method;
static pthread_once_t nosigpipe_once = PTHREAD_ONCE_INIT;

/* Sends what is gathered: 0, -EAGAIN (the socket is full; call again),
 * or another negative errno. */
static int gather_flush(struct nst_rc_conn *c) {
        while (c->gather_off < c->gather_len) {
                ssize_t r = send(c->fd, c->gather + c->gather_off, c->gather_len - c->gather_off,
                                 MSG_NOSIGNAL);
                if (r < 0)
                        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR
                                       ? -EAGAIN
                                       : -errno;
                c->gather_off += (size_t)r;
        }
        c->gather_len = c->gather_off = 0;
        return 0;
}

static int bio_write(BIO *b, const char *buf, int n) {
        struct nst_rc_conn *c = BIO_get_data(b);
        int r = 0;

        BIO_clear_retry_flags(b);
        if (c->gather_len == GATHER_SIZE)
                r = gather_flush(c);
        if (r == 0) {
                size_t take = GATHER_SIZE - c->gather_len < (size_t)n ? GATHER_SIZE - c->gather_len
                                                                      : (size_t)n;
                memcpy(c->gather + c->gather_len, buf, take);
                c->gather_len += take;
                return (int)take;
        }
        if (r == -EAGAIN)
                BIO_set_retry_write(b);
        else
                errno = -r;
        return -1;
}

static int bio_read(BIO *b, char *buf, int n) {
        struct nst_rc_conn *c = BIO_get_data(b);
        ssize_t r = recv(c->fd, buf, (size_t)n, 0);

        BIO_clear_retry_flags(b);
        if (r == 0)
                BIO_set_flags(b, BIO_FLAGS_IN_EOF);
        else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
                BIO_set_retry_read(b);
        return r < 0 ? -1 : (int)r;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
        struct nst_rc_conn *c = BIO_get_data(b);
        int r;

        switch (cmd) {
        case BIO_CTRL_FLUSH:
                BIO_clear_retry_flags(b);
                r = gather_flush(c);
                if (r == -EAGAIN)
                        BIO_set_retry_write(b);
                else if (r < 0)
                        errno = -r;
                return r == 0 ? 1 : -1;
        case BIO_CTRL_EOF:
                return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0;
        default:
                return 0;
        }
}

static void nosigpipe_method_init(void) {
        BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                                     "nestor socket (MSG_NOSIGNAL)");

        if (m && BIO_meth_set_write(m, bio_write) && BIO_meth_set_read(m, bio_read) &&
            BIO_meth_set_ctrl(m, bio_ctrl)) {
                nosigpipe_method = m;
                return;
        }
        BIO_meth_free(m);
}

/* ---- diagnostics ---- */

/* The most telling reason for a failed TLS operation, then a clean queue. */
static void ssl_reason(const struct nst_rc_conn *c, int ssl_err, int sys_errno, char *buf,
                       size_t size) {
        unsigned long e = ERR_peek_error();
        long verify = c->ssl ? SSL_get_verify_result(c->ssl) : X509_V_OK;

        if (c->auth_note[0])
                snprintf(buf, size, "%s", c->auth_note);
        else if (verify != X509_V_OK)
                snprintf(buf, size, "certificate verification failed: %s",
                         X509_verify_cert_error_string(verify));
        else if (e && ERR_reason_error_string(e))
                snprintf(buf, size, "%s", ERR_reason_error_string(e));
        else if (e)
                ERR_error_string_n(e, buf, size);
        else if (ssl_err == SSL_ERROR_SYSCALL && sys_errno)
                snprintf(buf, size, "%s", strerror(sys_errno));
        else if (ssl_err == SSL_ERROR_SYSCALL || ssl_err == SSL_ERROR_ZERO_RETURN)
                snprintf(buf, size, "connection closed by peer");
        else
                snprintf(buf, size, "TLS error %d", ssl_err);
        ERR_clear_error();
}

/* True when the peer went away: a close_notify or a plain EOF. */
static bool ssl_closed_by_peer(int ssl_err, int sys_errno) {
        unsigned long e = ERR_peek_error();

        if (ssl_err == SSL_ERROR_ZERO_RETURN)
                return true;
        if (ssl_err == SSL_ERROR_SYSCALL)
                return e == 0 && (sys_errno == 0 || sys_errno == ECONNRESET ||
                                  sys_errno == EPIPE);
        return ssl_err == SSL_ERROR_SSL && ERR_GET_LIB(e) == ERR_LIB_SSL &&
               ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
}

static void format_peer(const struct sockaddr *sa, socklen_t len, char *buf, size_t size) {
        char host[INET6_ADDRSTRLEN], serv[16];
        int n;

        if (getnameinfo(sa, len, host, sizeof(host), serv, sizeof(serv),
                        NI_NUMERICHOST | NI_NUMERICSERV) != 0)
                n = snprintf(buf, size, "?");
        else if (sa->sa_family == AF_INET6)
                n = snprintf(buf, size, "[%s]:%s", host, serv);
        else
                n = snprintf(buf, size, "%s:%s", host, serv);
        if (n < 0 || (size_t)n >= size)
                buf[size - 1] = '\0'; /* cut: a peer name is for messages only */
}

/* ---- connections ---- */

static void conn_free(struct nst_rc_conn *c) {
        if (!c)
                return;
        SSL_free(c->ssl);
        if (c->fd >= 0)
                close(c->fd);
        OPENSSL_cleanse(c->psk, sizeof(c->psk));
        free(c->gather);
        free(c);
}
NST_DEFINE_CLEANUP(struct nst_rc_conn, conn_free);

/* Takes ownership of fd, also on failure. */
static int conn_new(int fd, const char *peer, SSL_CTX *ctx, bool cert_mode,
                    struct nst_rc_conn **ret, struct nst_error *err) {
        _cleanup_(conn_freep) struct nst_rc_conn *c = calloc(1, sizeof(*c));
        BIO *bio;
        int one = 1;

        if (!c) {
                close(fd);
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        c->fd = fd;
        if (!(c->gather = malloc(GATHER_SIZE)))
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        c->cert_mode = cert_mode;
        c->timeout_ms = DEFAULT_TIMEOUT_MS;
        snprintf(c->peer, sizeof(c->peer), "%s", peer);
        nst_rc_bucket_init(&c->bucket, 0, now_ms());
        /* Small control frames (MARK, MARK_ACK) are round trips. */
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

        pthread_once(&nosigpipe_once, nosigpipe_method_init);
        c->ssl = SSL_new(ctx);
        bio = nosigpipe_method ? BIO_new(nosigpipe_method) : NULL;
        if (!c->ssl || !bio) {
                BIO_free(bio);
                ERR_clear_error();
                return nst_error_set(err, -ENOMEM, CHANNEL, "cannot set up TLS for %s", peer);
        }
        BIO_set_data(bio, c);
        BIO_set_init(bio, 1);
        SSL_set_bio(c->ssl, bio, bio);
        SSL_set_app_data(c->ssl, c);
        *ret = nst_steal(&c);
        return 0;
}

/* ---- TLS contexts ---- */

static bool cert_mode_configured(const struct nst_rc_tls_config *tls) {
        return tls && tls->cert_file && tls->cert_file[0] && tls->key_file && tls->key_file[0] &&
               tls->ca_file && tls->ca_file[0];
}

static unsigned int server_psk_cb(SSL *ssl, const char *identity, unsigned char *psk,
                                  unsigned int max_psk_len) {
        struct nst_rc_conn *c = SSL_get_app_data(ssl);
        uint8_t key[NST_RC_PSK_LEN];
        size_t n;

        if (!c || !c->server || !c->server->lookup || !identity || max_psk_len < NST_RC_PSK_LEN)
                return 0;
        n = strlen(identity);
        if (n == 0 || n > NST_RC_IDENTITY_MAX) {
                snprintf(c->auth_note, sizeof(c->auth_note), "PSK identity of %zu bytes", n);
                return 0;
        }
        if (c->server->lookup(c->server->userdata, identity, key) < 0) {
                snprintf(c->auth_note, sizeof(c->auth_note), "unknown PSK identity '%.*s'", 64,
                         identity);
                return 0;
        }
        memcpy(psk, key, NST_RC_PSK_LEN);
        OPENSSL_cleanse(key, sizeof(key));
        memcpy(c->identity, identity, n + 1);
        return NST_RC_PSK_LEN;
}

static unsigned int client_psk_cb(SSL *ssl, const char *hint, char *identity,
                                  unsigned int max_identity_len, unsigned char *psk,
                                  unsigned int max_psk_len) {
        struct nst_rc_conn *c = SSL_get_app_data(ssl);
        size_t n = c ? strlen(c->identity) : 0;

        if (!c || n == 0 || n + 1 > max_identity_len || max_psk_len < NST_RC_PSK_LEN)
                return 0;
        memcpy(identity, c->identity, n + 1);
        memcpy(psk, c->psk, NST_RC_PSK_LEN);
        return NST_RC_PSK_LEN;
}

/* The server only issues a ticket once it accepted our certificate; we
 * never resume with it. */
static int client_new_session_cb(SSL *ssl, SSL_SESSION *session) {
        struct nst_rc_conn *c = SSL_get_app_data(ssl);

        if (c)
                c->ticket_seen = true;
        return 0;
}

static int load_certificates(SSL_CTX *ctx, const struct nst_rc_tls_config *tls,
                             struct nst_error *err) {
        char reason[REASON_MAX];
        const char *what = NULL, *file = NULL;
        unsigned long e;

        if (SSL_CTX_use_certificate_chain_file(ctx, tls->cert_file) != 1)
                what = "certificate file", file = tls->cert_file;
        else if (SSL_CTX_use_PrivateKey_file(ctx, tls->key_file, SSL_FILETYPE_PEM) != 1)
                what = "private key file", file = tls->key_file;
        else if (SSL_CTX_check_private_key(ctx) != 1)
                what = "private key file (does not match the certificate)", file = tls->key_file;
        else if (SSL_CTX_load_verify_locations(ctx, tls->ca_file, NULL) != 1)
                what = "CA file", file = tls->ca_file;
        if (!what)
                return 0;
        /* The first error is the root cause (e.g. the file does not exist). */
        e = ERR_peek_error();
        if (ERR_SYSTEM_ERROR(e))
                snprintf(reason, sizeof(reason), "%s", strerror(ERR_GET_REASON(e)));
        else if (e && ERR_reason_error_string(e))
                snprintf(reason, sizeof(reason), "%s", ERR_reason_error_string(e));
        else
                ERR_error_string_n(e, reason, sizeof(reason));
        ERR_clear_error();
        return nst_error_set(err, -EINVAL, CONFIG, "replication TLS %s %s: %s", what, file,
                             reason);
}

static int ctx_new(bool server, bool cert_mode, const struct nst_rc_tls_config *tls,
                   SSL_CTX **ret, struct nst_error *err) {
        SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
        static const unsigned char sid_ctx[] = "nestor-replication";
        int r;

        if (!ctx) {
                ERR_clear_error();
                return nst_error_set(err, -ENOMEM, CHANNEL, "cannot create a TLS context");
        }
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
        /* OpenSSL's default order puts AES-256-GCM-SHA384 first, and a
         * pre-shared key (SHA-256) rules that one out, which left
         * ChaCha20-Poly1305: 30 % slower than AES-128-GCM on CPUs with
         * AES-NI, where the cipher is most of the channel's CPU. */
        if (SSL_CTX_set_ciphersuites(ctx, CIPHERSUITES) != 1) {
                ERR_clear_error();
                SSL_CTX_free(ctx);
                return nst_error_set(err, -EINVAL, CHANNEL, "cannot set the TLS 1.3 cipher suites");
        }
        /* Read several records per recv(): without read-ahead OpenSSL reads
         * each record's header and body separately, two system calls per
         * 16 KiB. read_exact() only polls when OpenSSL asks for more. */
        SSL_CTX_set_read_ahead(ctx, 1);
        SSL_CTX_set_default_read_buffer_len(ctx, READ_AHEAD_BYTES);
        if (cert_mode) {
                r = load_certificates(ctx, tls, err);
                if (r < 0) {
                        SSL_CTX_free(ctx);
                        return r;
                }
                SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
                if (server) {
                        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
                        SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
                        /* Stateful tickets with no cache: nothing can be resumed. */
                        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
                        SSL_CTX_set_num_tickets(ctx, 1);
                } else {
                        SSL_CTX_set_session_cache_mode(
                                ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
                        SSL_CTX_sess_set_new_cb(ctx, client_new_session_cb);
                }
        } else if (server) {
                SSL_CTX_set_psk_server_callback(ctx, server_psk_cb);
                SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
                SSL_CTX_set_num_tickets(ctx, 0);
        } else {
                SSL_CTX_set_psk_client_callback(ctx, client_psk_cb);
                SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
                /* No trust anchors: a server that answers with a certificate
                 * instead of our key cannot verify, so it cannot pose as the
                 * target. */
                SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        }
        *ret = ctx;
        return 0;
}

/* ---- handshake ---- */

static bool psk_was_used(SSL *ssl) {
        const SSL_CIPHER *cipher = SSL_get_current_cipher(ssl);

        if (SSL_version(ssl) >= TLS1_3_VERSION)
                return SSL_session_reused(ssl) == 1;
        return cipher && SSL_CIPHER_get_auth_nid(cipher) == NID_auth_psk;
}

/* The subject CN of the verified peer certificate. */
static int peer_common_name(struct nst_rc_conn *c, struct nst_error *err) {
        X509 *cert = SSL_get1_peer_certificate(c->ssl);
        int n;

        if (!cert)
                return nst_error_set(err, -EACCES, AUTH, "peer %s presented no certificate",
                                     c->peer);
        n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, c->identity,
                                      sizeof(c->identity));
        X509_free(cert);
        ERR_clear_error();
        if (n <= 0 || (size_t)n != strlen(c->identity))
                return nst_error_set(err, -EACCES, AUTH,
                                     "peer %s: certificate subject has no usable CN", c->peer);
        return 0;
}

static int handshake_failed(struct nst_rc_conn *c, bool server, int ssl_err, int sys_errno,
                            struct nst_error *err) {
        char reason[REASON_MAX];

        ssl_reason(c, ssl_err, sys_errno, reason, sizeof(reason));
        c->broken = true;
        /* Which key was tried, when a known identity met a wrong key. */
        if (!c->cert_mode && c->identity[0])
                return nst_error_set(err, -EACCES, AUTH,
                                     "TLS handshake %s %s failed: %s (PSK identity '%s')",
                                     server ? "from" : "with", c->peer, reason, c->identity);
        return nst_error_set(err, -EACCES, AUTH, "TLS handshake %s %s failed: %s",
                             server ? "from" : "with", c->peer, reason);
}

/* Client, certificate mode, TLS 1.3: wait until the server has accepted our
 * certificate (its session ticket arrives) or refused it (an alert). */
static int wait_server_acceptance(struct nst_rc_conn *c, int64_t deadline,
                                  struct nst_error *err) {
        while (!c->ticket_seen) {
                uint8_t b;
                size_t got;
                int r, e, sys;

                ERR_clear_error();
                errno = 0;
                r = SSL_peek_ex(c->ssl, &b, 1, &got);
                if (r == 1 || c->ticket_seen)
                        break;
                sys = errno;
                e = SSL_get_error(c->ssl, r);
                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                        return handshake_failed(c, false, e, sys, err);
                if (wait_fd(c->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline) < 0) {
                        c->broken = true;
                        return nst_error_set(err, -ETIMEDOUT, CHANNEL,
                                             "TLS handshake with %s: no answer from the server "
                                             "to our certificate in time", c->peer);
                }
        }
        return 0;
}

/* Runs the handshake until the deadline and establishes who the peer is. */
static int handshake(struct nst_rc_conn *c, bool server, int64_t deadline, int timeout_ms,
                     struct nst_error *err) {
        for (;;) {
                int r, e, sys;

                ERR_clear_error();
                errno = 0;
                r = server ? SSL_accept(c->ssl) : SSL_connect(c->ssl);
                if (r == 1)
                        break;
                sys = errno;
                e = SSL_get_error(c->ssl, r);
                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                        return handshake_failed(c, server, e, sys, err);
                if (wait_fd(c->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline) < 0) {
                        c->broken = true;
                        return nst_error_set(err, server ? -ECONNABORTED : -ETIMEDOUT, CHANNEL,
                                             "TLS handshake %s %s timed out after %d ms",
                                             server ? "from" : "with", c->peer, timeout_ms);
                }
        }
        c->established = true;
        OPENSSL_cleanse(c->psk, sizeof(c->psk));
        if (c->cert_mode) {
                if (SSL_get_verify_result(c->ssl) != X509_V_OK)
                        return nst_error_set(err, -EACCES, AUTH,
                                             "peer %s: certificate verification failed: %s",
                                             c->peer,
                                             X509_verify_cert_error_string(
                                                     SSL_get_verify_result(c->ssl)));
                if (!server && SSL_version(c->ssl) >= TLS1_3_VERSION) {
                        int r = wait_server_acceptance(c, deadline, err);
                        if (r < 0)
                                return r;
                }
                return peer_common_name(c, err);
        }
        if (!psk_was_used(c->ssl) || !c->identity[0])
                return nst_error_set(err, -EACCES, AUTH,
                                     "peer %s did not authenticate with a pre-shared key",
                                     c->peer);
        return 0;
}

/* ---- server ---- */

static int bind_one(const struct addrinfo *ai, bool dual_stack, int *ret_fd) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                        ai->ai_protocol);
        int one = 1, zero = 0, r;

        if (fd < 0)
                return -errno;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (dual_stack && ai->ai_family == AF_INET6)
                (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        *ret_fd = fd;
        return 0;
}

/* Listens on address:port, or on every address (IPv6 dual stack first). */
static int listen_socket(const char *address, uint16_t port, int *ret_fd,
                         struct nst_error *err) {
        bool any = !address || !address[0];
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                                 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
        struct addrinfo *list = NULL;
        char serv[8];
        int r = -EADDRNOTAVAIL, g;

        snprintf(serv, sizeof(serv), "%u", (unsigned)port);
        hints.ai_family = any ? AF_INET6 : AF_UNSPEC;
        g = getaddrinfo(any ? NULL : address, serv, &hints, &list);
        if (g != 0 && any) {
                hints.ai_family = AF_INET;
                g = getaddrinfo(NULL, serv, &hints, &list);
        }
        if (g != 0)
                return nst_error_set(err, -EINVAL, CHANNEL, "cannot listen on %s:%u: %s",
                                     any ? "*" : address, (unsigned)port, gai_strerror(g));
        for (struct addrinfo *ai = list; ai; ai = ai->ai_next) {
                r = bind_one(ai, any, ret_fd);
                if (r == 0)
                        break;
        }
        freeaddrinfo(list);
        if (r < 0 && any) {
                /* No IPv6 on this host: all IPv4 addresses then. */
                struct addrinfo v4 = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
                struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port),
                                          .sin_addr.s_addr = htonl(INADDR_ANY)};
                v4.ai_addr = (struct sockaddr *)&sin;
                v4.ai_addrlen = sizeof(sin);
                r = bind_one(&v4, false, ret_fd);
        }
        if (r < 0)
                return nst_error_set(err, r, CHANNEL, "cannot listen on %s:%u: %s",
                                     any ? "*" : address, (unsigned)port, strerror(-r));
        return 0;
}

int nst_rc_listen(const char *address, uint16_t port, const struct nst_rc_tls_config *tls,
                  nst_rc_psk_lookup_fn lookup, void *userdata, struct nst_rc_server **ret,
                  struct nst_error *err) {
        bool cert_mode = cert_mode_configured(tls);
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        struct nst_rc_server *s;
        int r;

        if (!cert_mode && !lookup)
                return nst_error_set(err, -EINVAL, CONFIG,
                                     "replication listener: neither certificates nor a "
                                     "pre-shared key lookup configured");
        s = calloc(1, sizeof(*s));
        if (!s)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        s->fd = -1;
        s->cert_mode = cert_mode;
        s->lookup = lookup;
        s->userdata = userdata;
        r = ctx_new(true, cert_mode, tls, &s->ctx, err);
        if (r == 0)
                r = listen_socket(address, port, &s->fd, err);
        if (r == 0 && getsockname(s->fd, (struct sockaddr *)&ss, &len) < 0)
                r = nst_error_set(err, -errno, CHANNEL, "getsockname: %s", strerror(errno));
        if (r < 0) {
                nst_rc_server_close(s);
                return r;
        }
        s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
        *ret = s;
        return 0;
}

uint16_t nst_rc_server_port(const struct nst_rc_server *s) {
        return s->port;
}

int nst_rc_server_fd(const struct nst_rc_server *s) {
        return s->fd;
}

static int accept_tcp(struct nst_rc_server *s, int64_t deadline, int timeout_ms, int *ret_fd,
                      char *peer, size_t peer_size, struct nst_error *err) {
        for (;;) {
                struct sockaddr_storage ss;
                socklen_t len = sizeof(ss);
                int fd;

                if (wait_fd(s->fd, POLLIN, deadline) < 0)
                        return nst_error_set(err, -ETIMEDOUT, CHANNEL,
                                             "no replication connection on port %u within %d ms",
                                             (unsigned)s->port, timeout_ms);
                fd = accept4(s->fd, (struct sockaddr *)&ss, &len, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (fd >= 0) {
                        format_peer((struct sockaddr *)&ss, len, peer, peer_size);
                        *ret_fd = fd;
                        return 0;
                }
                /* The client gave up between poll and accept: keep waiting. */
                if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                    errno != ECONNABORTED)
                        return nst_error_set(err, -errno, CHANNEL,
                                             "accept on port %u: %s", (unsigned)s->port,
                                             strerror(errno));
        }
}

int nst_rc_accept_tcp(struct nst_rc_server *s, int timeout_ms, struct nst_rc_conn **ret,
                      struct nst_error *err) {
        char peer[PEER_MAX];
        int fd = -1;
        int r = accept_tcp(s, deadline_after(timeout_ms), timeout_ms, &fd, peer, sizeof(peer),
                           err);
        if (r < 0)
                return r;
        r = conn_new(fd, peer, s->ctx, s->cert_mode, ret, err);
        if (r < 0)
                return r;
        (*ret)->server = s; /* until the handshake: its PSK lookup */
        return 0;
}

int nst_rc_handshake(struct nst_rc_conn *c, int timeout_ms, struct nst_error *err) {
        if (!c->server)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s: not an accepted connection awaiting its handshake",
                                     c->peer);
        int r = handshake(c, true, deadline_after(timeout_ms), timeout_ms, err);
        c->server = NULL;
        return r;
}

int nst_rc_accept(struct nst_rc_server *s, int timeout_ms, struct nst_rc_conn **ret,
                  struct nst_error *err) {
        _cleanup_(conn_freep) struct nst_rc_conn *c = NULL;
        int r = nst_rc_accept_tcp(s, timeout_ms, &c, err);
        if (r < 0 || (r = nst_rc_handshake(c, timeout_ms, err)) < 0)
                return r;
        *ret = nst_steal(&c);
        return 0;
}

void nst_rc_server_close(struct nst_rc_server *s) {
        if (!s)
                return;
        if (s->fd >= 0)
                close(s->fd);
        SSL_CTX_free(s->ctx);
        free(s);
}

/* ---- client ---- */

static int connect_one(const struct addrinfo *ai, int64_t deadline, int *ret_fd) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                        ai->ai_protocol);
        int r = 0, so_err = 0;
        socklen_t len = sizeof(so_err);

        if (fd < 0)
                return -errno;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
                if (errno != EINPROGRESS)
                        r = -errno;
                else if ((r = wait_fd(fd, POLLOUT, deadline)) == 0) {
                        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_err, &len) < 0)
                                r = -errno;
                        else if (so_err)
                                r = -so_err;
                }
        }
        if (r < 0) {
                close(fd);
                return r;
        }
        *ret_fd = fd;
        return 0;
}

/* Tries every address of host in turn until the deadline. */
static int connect_tcp(const char *host, uint16_t port, int64_t deadline, int timeout_ms,
                       int *ret_fd, char *peer, size_t peer_size, struct nst_error *err) {
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                                 .ai_flags = AI_NUMERICSERV};
        struct addrinfo *list = NULL;
        char serv[8];
        int r = -EHOSTUNREACH, g;

        snprintf(serv, sizeof(serv), "%u", (unsigned)port);
        g = getaddrinfo(host, serv, &hints, &list);
        if (g != 0)
                return nst_error_set(err, -EHOSTUNREACH, CHANNEL, "cannot resolve %s: %s", host,
                                     gai_strerror(g));
        for (struct addrinfo *ai = list; ai; ai = ai->ai_next) {
                r = connect_one(ai, deadline, ret_fd);
                if (r == 0) {
                        format_peer(ai->ai_addr, ai->ai_addrlen, peer, peer_size);
                        break;
                }
                if (r == -ETIMEDOUT)
                        break;
        }
        freeaddrinfo(list);
        if (r == -ETIMEDOUT)
                return nst_error_set(err, r, CHANNEL, "connecting to %s:%u timed out after %d ms",
                                     host, (unsigned)port, timeout_ms);
        if (r < 0)
                return nst_error_set(err, r, CHANNEL, "cannot connect to %s:%u: %s", host,
                                     (unsigned)port, strerror(-r));
        return 0;
}

int nst_rc_connect(const char *host, uint16_t port, const struct nst_rc_tls_config *tls,
                   const char *identity, const uint8_t *psk, int timeout_ms,
                   struct nst_rc_conn **ret, struct nst_error *err) {
        _cleanup_(conn_freep) struct nst_rc_conn *c = NULL;
        int64_t deadline = deadline_after(timeout_ms);
        bool cert_mode = !psk;
        char peer[PEER_MAX];
        SSL_CTX *ctx = NULL;
        int fd = -1, r;

        if (psk && (!identity || !identity[0] || strlen(identity) > NST_RC_IDENTITY_MAX))
                return nst_error_set(err, -EINVAL, CONFIG,
                                     "replication PSK identity must be 1 to %d bytes",
                                     NST_RC_IDENTITY_MAX);
        if (cert_mode && !cert_mode_configured(tls))
                return nst_error_set(err, -EINVAL, CONFIG,
                                     "replication connection to %s: neither a pre-shared key "
                                     "nor cert_file, key_file and ca_file", host);
        r = ctx_new(false, cert_mode, tls, &ctx, err);
        if (r < 0)
                return r;
        r = connect_tcp(host, port, deadline, timeout_ms, &fd, peer, sizeof(peer), err);
        if (r == 0)
                r = conn_new(fd, peer, ctx, cert_mode, &c, err);
        SSL_CTX_free(ctx); /* the SSL holds its own reference */
        if (r < 0)
                return r;
        if (psk) {
                memcpy(c->psk, psk, NST_RC_PSK_LEN);
                snprintf(c->identity, sizeof(c->identity), "%s", identity);
        }
        r = handshake(c, false, deadline, timeout_ms, err);
        if (r < 0)
                return r;
        *ret = nst_steal(&c);
        return 0;
}

/* ---- connection properties ---- */

const char *nst_rc_conn_identity(const struct nst_rc_conn *c) {
        return c->identity;
}

const char *nst_rc_conn_peer(const struct nst_rc_conn *c) {
        return c->peer;
}

const char *nst_rc_conn_protocol(const struct nst_rc_conn *c) {
        return SSL_get_version(c->ssl);
}

const char *nst_rc_conn_cipher(const struct nst_rc_conn *c) {
        return SSL_get_cipher_name(c->ssl);
}

void nst_rc_set_rate_limit(struct nst_rc_conn *c, uint64_t bytes_per_second) {
        nst_rc_bucket_init(&c->bucket, bytes_per_second, now_ms());
}

void nst_rc_set_timeout(struct nst_rc_conn *c, int timeout_ms) {
        c->timeout_ms = timeout_ms;
}

uint64_t nst_rc_bytes_sent(const struct nst_rc_conn *c) {
        return c->sent;
}

uint64_t nst_rc_bytes_received(const struct nst_rc_conn *c) {
        return c->received;
}

/* ---- sending ---- */

static int io_failed(struct nst_rc_conn *c, const char *what, int ssl_err, int sys_errno,
                     bool mid_frame, struct nst_error *err) {
        char reason[REASON_MAX];
        bool closed = ssl_closed_by_peer(ssl_err, sys_errno);

        ssl_reason(c, ssl_err, sys_errno, reason, sizeof(reason));
        c->broken = true;
        if (closed)
                return nst_error_set(err, -ECONNRESET, CHANNEL, "%s %s: closed by peer%s", what,
                                     c->peer, mid_frame ? " in the middle of a frame" : "");
        return nst_error_set(err, -EPIPE, CHANNEL, "%s %s failed: %s", what, c->peer, reason);
}

static int io_timed_out(struct nst_rc_conn *c, const char *what, struct nst_error *err) {
        return nst_error_set(err, -ETIMEDOUT, CHANNEL, "%s %s: no progress within %d ms", what,
                             c->peer, c->timeout_ms);
}

static int write_all(struct nst_rc_conn *c, const void *p, size_t n, struct nst_error *err) {
        const uint8_t *at = p;

        while (n > 0) {
                size_t done = 0;
                int r, e, sys;

                ERR_clear_error();
                errno = 0;
                r = SSL_write_ex(c->ssl, at, n, &done);
                if (r == 1) {
                        at += done;
                        n -= done;
                        c->sent += done;
                        continue;
                }
                sys = errno;
                e = SSL_get_error(c->ssl, r);
                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                        return io_failed(c, "sending to", e, sys, false, err);
                if (wait_fd(c->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
                            deadline_after(c->timeout_ms)) < 0)
                        return io_timed_out(c, "sending to", err);
        }
        return 0;
}

/* The gathered records on the wire, so that a peer waits for nothing we
 * hold. */
static int flush_gathered(struct nst_rc_conn *c, struct nst_error *err) {
        for (;;) {
                int r = gather_flush(c);
                if (r == 0)
                        return 0;
                if (r != -EAGAIN)
                        return io_failed(c, "sending to", SSL_ERROR_SYSCALL, -r, false, err);
                if (wait_fd(c->fd, POLLOUT, deadline_after(c->timeout_ms)) < 0)
                        return io_timed_out(c, "sending to", err);
        }
}

/* Writes the parts in order; small neighbours share one SSL_write (one TLS
 * record), large ones go out directly without a copy. */
static int write_parts(struct nst_rc_conn *c, const void *const *parts, const size_t *sizes,
                       size_t n_parts, struct nst_error *err) {
        size_t used = 0;
        int r;

        for (size_t i = 0; i < n_parts; i++) {
                if (sizes[i] == 0)
                        continue;
                if (used + sizes[i] <= sizeof(c->wbuf)) {
                        memcpy(c->wbuf + used, parts[i], sizes[i]);
                        used += sizes[i];
                        continue;
                }
                if (used > 0) {
                        r = write_all(c, c->wbuf, used, err);
                        if (r < 0)
                                return r;
                        used = 0;
                }
                r = write_all(c, parts[i], sizes[i], err);
                if (r < 0)
                        return r;
        }
        return used > 0 ? write_all(c, c->wbuf, used, err) : 0;
}

int nst_rc_send(struct nst_rc_conn *c, uint8_t type, uint8_t flags, const void *part1,
                size_t n1, const void *part2, size_t n2, struct nst_error *err) {
        uint8_t header[NST_RW_HEADER_SIZE];
        const void *parts[] = {header, part1, part2};
        size_t sizes[] = {sizeof(header), n1, n2};
        int64_t wait;

        if (n1 > UINT32_MAX || n2 > UINT32_MAX - n1)
                return nst_error_set(err, -EMSGSIZE, "InvalidInput",
                                     "%s frame of %zu + %zu bytes is too long",
                                     nst_rw_type_name(type), n1, n2);
        if (c->broken)
                return nst_error_set(err, -EPIPE, CHANNEL,
                                     "sending to %s: the connection is broken", c->peer);
        nst_rw_header_encode(header, type, flags, (uint32_t)(n1 + n2));
        wait = nst_rc_bucket_take(&c->bucket, sizeof(header) + n1 + n2, now_ms());
        if (wait > 0)
                sleep_ms(wait);
        int r = write_parts(c, parts, sizes, NST_ARRAY_SIZE(parts), err);
        return r < 0 ? r : flush_gathered(c, err);
}

static bool is_json_type(uint8_t type) {
        switch (type) {
        case NST_RW_HELLO:
        case NST_RW_READY:
        case NST_RW_HASH_REQ:
        case NST_RW_COMMIT:
        case NST_RW_COMMITTED:
        case NST_RW_ERROR:
        case NST_RW_BYE:
                return true;
        default:
                return false;
        }
}

void nst_rc_send_error(struct nst_rc_conn *c, const struct nst_error *e) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "class", json_object_new_string(e->cls[0] ? e->cls : "Error"));
        json_object_object_add(o, "message", json_object_new_string(e->message));
        nst_rc_send_json(c, NST_RW_ERROR, o, NULL);
        json_object_put(o);
}

void nst_rc_peer_error(const uint8_t *p, size_t n, const char *default_cls,
                       struct nst_error *peer) {
        json_object *o = NULL;

        if (nst_rc_parse_json(p, n, &o, NULL) < 0) {
                nst_error_set(peer, -EREMOTEIO, default_cls,
                              "no reason given (an ERROR frame that is not a JSON object)");
                return;
        }
        const char *cls = json_object_get_string(json_object_object_get(o, "class"));
        const char *msg = json_object_get_string(json_object_object_get(o, "message"));
        nst_error_set(peer, -EREMOTEIO, cls && *cls ? cls : default_cls, "%s",
                      msg && *msg ? msg : "no reason given");
        json_object_put(o);
}

int nst_rc_send_json(struct nst_rc_conn *c, uint8_t type, json_object *obj,
                     struct nst_error *err) {
        const char *text;
        size_t len;

        if (!is_json_type(type))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s (type %u) is not a JSON control frame",
                                     nst_rw_type_name(type), (unsigned)type);
        if (!json_object_is_type(obj, json_type_object))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s frame payload must be a JSON object",
                                     nst_rw_type_name(type));
        text = nst_json_to_string(obj, &len);
        if (!text)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        if (len > NST_RW_MAX_JSON)
                return nst_error_set(err, -EMSGSIZE, "InvalidInput",
                                     "%s frame payload of %zu bytes exceeds %" PRIu32,
                                     nst_rw_type_name(type), len, NST_RW_MAX_JSON);
        return nst_rc_send(c, type, 0, text, len, NULL, 0, err);
}

/* ---- receiving ---- */

/* Reads exactly n bytes; mid_frame says whether a close here cuts a frame. */
static int read_exact(struct nst_rc_conn *c, void *p, size_t n, bool mid_frame,
                      struct nst_error *err) {
        uint8_t *at = p;
        size_t total = 0;

        while (total < n) {
                size_t done = 0;
                int r, e, sys;

                ERR_clear_error();
                errno = 0;
                r = SSL_read_ex(c->ssl, at + total, n - total, &done);
                if (r == 1) {
                        total += done;
                        c->received += done;
                        continue;
                }
                sys = errno;
                e = SSL_get_error(c->ssl, r);
                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                        return io_failed(c, "receiving from", e, sys, mid_frame || total > 0,
                                         err);
                if (wait_fd(c->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
                            deadline_after(c->timeout_ms)) < 0)
                        return io_timed_out(c, "receiving from", err);
        }
        return 0;
}

int nst_rc_recv_header(struct nst_rc_conn *c, struct nst_rw_header *ret_header,
                       struct nst_error *err) {
        uint8_t raw[NST_RW_HEADER_SIZE];
        int r;

        if (c->broken)
                return nst_error_set(err, -EPIPE, CHANNEL,
                                     "receiving from %s: the connection is broken", c->peer);
        r = read_exact(c, raw, sizeof(raw), false, err);
        if (r < 0)
                return r;
        r = nst_rw_header_decode(raw, ret_header, err);
        if (r < 0) {
                c->broken = true; /* the stream is out of step: nothing after is a frame */
                return nst_error_prefix(err, "from %s", c->peer);
        }
        return 0;
}

int nst_rc_recv_part(struct nst_rc_conn *c, void *p, size_t n, struct nst_error *err) {
        return read_exact(c, p, n, true, err);
}

int nst_rc_recv_payload(struct nst_rc_conn *c, const struct nst_rw_header *h, uint8_t **buf,
                        size_t *cap, struct nst_error *err) {
        if (!*buf || *cap < h->length) {
                size_t want = h->length > 0 ? h->length : 1;
                uint8_t *grown = realloc(*buf, want);

                if (!grown)
                        return nst_error_set(err, -ENOMEM, "MemoryError",
                                             "out of memory for a %s frame of %" PRIu32 " bytes",
                                             nst_rw_type_name(h->type), h->length);
                *buf = grown;
                *cap = want;
        }
        return read_exact(c, *buf, h->length, true, err);
}

int nst_rc_recv(struct nst_rc_conn *c, struct nst_rw_header *ret_header, uint8_t **buf,
                size_t *cap, struct nst_error *err) {
        struct nst_rw_header h;
        int r = nst_rc_recv_header(c, &h, err);

        if (r < 0 || (r = nst_rc_recv_payload(c, &h, buf, cap, err)) < 0)
                return r;
        *ret_header = h;
        return 0;
}

int nst_rc_parse_json(const uint8_t *p, size_t n, json_object **ret, struct nst_error *err) {
        json_object *obj = NULL;
        int r = nst_json_parse((const char *)p, n, &obj, err);

        if (r < 0) {
                char message[NST_ERROR_MESSAGE_MAX];

                snprintf(message, sizeof(message), "%s", err ? err->message : "");
                return nst_error_set(err, -EPROTO, "ProtocolError",
                                     "control frame payload is not valid JSON: %s", message);
        }
        if (!json_object_is_type(obj, json_type_object)) {
                json_object_put(obj);
                return nst_error_set(err, -EPROTO, "ProtocolError",
                                     "control frame payload is not a JSON object");
        }
        *ret = obj;
        return 0;
}

/* ---- closing ---- */

void nst_rc_close(struct nst_rc_conn *c) {
        if (!c)
                return;
        /* Best effort close_notify; the peer's answer is not awaited. */
        if (c->established && !c->broken) {
                int64_t deadline = deadline_after(CLOSE_NOTIFY_MS);

                for (;;) {
                        int r, e;

                        ERR_clear_error();
                        r = SSL_shutdown(c->ssl);
                        if (r >= 0) {
                                while (gather_flush(c) == -EAGAIN &&
                                       wait_fd(c->fd, POLLOUT, deadline) == 0)
                                        ;
                                break;
                        }
                        e = SSL_get_error(c->ssl, r);
                        if ((e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ) ||
                            wait_fd(c->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
                                    deadline) < 0)
                                break;
                }
                ERR_clear_error();
        }
        conn_free(c);
}
