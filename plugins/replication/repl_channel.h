/* The replication data channel: one TLS connection between the source and
 * the target agent, carrying repl_wire frames (docs/replication.md).
 *
 * Authentication is mutual, before any frame is exchanged:
 * - pre-shared key (default): the source connects with the replication's id
 *   as PSK identity and its 32-byte key (handed to the target over RPC when
 *   the replication was enabled); the server looks the key up through a
 *   callback and the handshake fails for an unknown identity or a wrong key;
 * - certificates, when cert_file, key_file and ca_file are all set: both
 *   sides present a certificate signed by ca_file, and the peer's must
 *   verify (SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT).
 * TLS 1.2 is the minimum (PSK: TLS 1.3 with the callbacks' SHA-256 suite).
 *
 * A connection is used by one thread at a time. Sends are paced by the
 * connection's rate limit. */
#ifndef NESTOR_PLUGINS_REPLICATION_REPL_CHANNEL_H
#define NESTOR_PLUGINS_REPLICATION_REPL_CHANNEL_H

#include <json.h>
#include <stddef.h>
#include <stdint.h>

#include "messages/error.h"
#include "plugins/replication/repl_wire.h"

#define NST_RC_PSK_LEN 32
#define NST_RC_IDENTITY_MAX 128

struct nst_rc_tls_config {
        const char *cert_file; /* all three set: certificate mode */
        const char *key_file;
        const char *ca_file;
};

/* Server side: fills key[NST_RC_PSK_LEN] for identity; negative when the
 * identity is unknown (the handshake then fails). Called on the thread
 * running the handshake (nst_rc_accept() or nst_rc_handshake()). */
typedef int (*nst_rc_psk_lookup_fn)(void *userdata, const char *identity,
                                    uint8_t key[NST_RC_PSK_LEN]);

struct nst_rc_server;
struct nst_rc_conn;

/* Binds address:port (port 0 = any; address NULL or "" = all), listens.
 * Errors: ConfigError for unusable certificate files, ChannelError for
 * bind/listen failures naming the address. */
int nst_rc_listen(const char *address, uint16_t port, const struct nst_rc_tls_config *tls,
                  nst_rc_psk_lookup_fn lookup, void *userdata, struct nst_rc_server **ret,
                  struct nst_error *err);
uint16_t nst_rc_server_port(const struct nst_rc_server *s); /* the bound port */
int nst_rc_server_fd(const struct nst_rc_server *s);        /* for poll() */
/* Waits up to timeout_ms for a connection (-ETIMEDOUT), then runs the TLS
 * handshake (bounded by timeout_ms as well). A peer that fails
 * authentication is an error (AuthenticationFailed, naming the peer address
 * and the reason) and leaves no connection. */
int nst_rc_accept(struct nst_rc_server *s, int timeout_ms, struct nst_rc_conn **ret,
                  struct nst_error *err);
/* nst_rc_accept() in two steps, so that a server can run each handshake on
 * the connection's own thread and a slow or silent peer delays nobody
 * else: nst_rc_accept_tcp() returns the next connection unauthenticated
 * (good for nothing but nst_rc_handshake() and nst_rc_close()), and
 * nst_rc_handshake() authenticates it within timeout_ms, with
 * nst_rc_accept()'s errors. s must outlive the handshake. */
int nst_rc_accept_tcp(struct nst_rc_server *s, int timeout_ms, struct nst_rc_conn **ret,
                      struct nst_error *err);
int nst_rc_handshake(struct nst_rc_conn *c, int timeout_ms, struct nst_error *err);
void nst_rc_server_close(struct nst_rc_server *s);

/* Connects to host:port (name or address; IPv4 or IPv6) and authenticates:
 * with psk != NULL as identity/psk, else with the certificates in tls.
 * ChannelError when nothing answers, AuthenticationFailed when the handshake
 * fails. */
int nst_rc_connect(const char *host, uint16_t port, const struct nst_rc_tls_config *tls,
                   const char *identity, const uint8_t *psk, int timeout_ms,
                   struct nst_rc_conn **ret, struct nst_error *err);

/* PSK identity the client used, or the subject CN of its certificate. */
const char *nst_rc_conn_identity(const struct nst_rc_conn *c);
const char *nst_rc_conn_peer(const struct nst_rc_conn *c); /* "addr:port" */
/* The negotiated protocol, e.g. "TLSv1.3" (for logs and tests). */
const char *nst_rc_conn_protocol(const struct nst_rc_conn *c);
/* The negotiated cipher suite, e.g. "TLS_AES_128_GCM_SHA256". */
const char *nst_rc_conn_cipher(const struct nst_rc_conn *c);

/* Bytes per second for sends; 0 = unlimited. */
void nst_rc_set_rate_limit(struct nst_rc_conn *c, uint64_t bytes_per_second);
/* Every send/recv waits at most timeout_ms for the peer (default 60 s). */
void nst_rc_set_timeout(struct nst_rc_conn *c, int timeout_ms);

/* Sends one frame: the header, then part1 and part2 (either may be empty)
 * as its payload. ChannelError on a broken connection, -ETIMEDOUT. */
int nst_rc_send(struct nst_rc_conn *c, uint8_t type, uint8_t flags, const void *part1,
                size_t n1, const void *part2, size_t n2, struct nst_error *err);
/* An ERROR frame, {"class", "message"} of e, best effort: the connection
 * is closed next anyway. */
void nst_rc_send_error(struct nst_rc_conn *c, const struct nst_error *e);
/* What the peer's ERROR frame (payload p, n bytes) reports, into peer with
 * code -EREMOTEIO: its class, or default_cls when it names none, and its
 * message, or "no reason given". A payload that is not a JSON object still
 * reports an error (default_cls, and that it was unreadable): the peer
 * gave up either way. */
void nst_rc_peer_error(const uint8_t *p, size_t n, const char *default_cls,
                       struct nst_error *peer);
/* A control frame with a JSON object payload. */
int nst_rc_send_json(struct nst_rc_conn *c, uint8_t type, json_object *obj,
                     struct nst_error *err);
/* Receives one frame: *buf (grown with realloc as needed, owned by the
 * caller, *cap its size) holds the payload. The header is checked with
 * nst_rw_header_decode. A closed connection is ChannelError "closed by peer". */
int nst_rc_recv(struct nst_rc_conn *c, struct nst_rw_header *ret_header, uint8_t **buf,
                size_t *cap, struct nst_error *err);
/* The same in pieces, for a receiver that puts parts of a payload in
 * different places: a frame's header, then exactly its length in one or
 * more nst_rc_recv_part calls, or all of it with nst_rc_recv_payload (into
 * *buf as nst_rc_recv does). */
int nst_rc_recv_header(struct nst_rc_conn *c, struct nst_rw_header *ret_header,
                       struct nst_error *err);
int nst_rc_recv_part(struct nst_rc_conn *c, void *p, size_t n, struct nst_error *err);
int nst_rc_recv_payload(struct nst_rc_conn *c, const struct nst_rw_header *h, uint8_t **buf,
                        size_t *cap, struct nst_error *err);
/* Parses a JSON control payload: ProtocolError unless it is a JSON object. */
int nst_rc_parse_json(const uint8_t *p, size_t n, json_object **ret, struct nst_error *err);

/* Application bytes sent and received (frame headers and payloads). */
uint64_t nst_rc_bytes_sent(const struct nst_rc_conn *c);
uint64_t nst_rc_bytes_received(const struct nst_rc_conn *c);
void nst_rc_close(struct nst_rc_conn *c); /* NULL is fine */

/* Token bucket behind the rate limit, with an explicit clock so it can be
 * tested: `take` returns how many ms to wait before n bytes may go. */
struct nst_rc_bucket {
        uint64_t rate;     /* bytes/s, 0 = unlimited */
        double tokens;
        int64_t last_ms;
};
void nst_rc_bucket_init(struct nst_rc_bucket *b, uint64_t rate, int64_t now_ms);
int64_t nst_rc_bucket_take(struct nst_rc_bucket *b, uint64_t n, int64_t now_ms);

#endif
