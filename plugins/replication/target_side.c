/* The target role of the replication plugin: the replicas kept here for
 * other nodes' instances, the data channel that receives cycles into them,
 * and failover (docs/replication.md).
 *
 * A replica is a repl_store.c directory, <state_dir>/target/<uuid>/; its
 * meta holds what the source handed over when the replication was enabled
 * (source host, instance name, the pre-shared key, the source's domain
 * definition, the addresses to probe) and what happened here since
 * (failover, test failover). The listener thread accepts data channel
 * connections; each runs in a session thread that applies one cycle: the
 * point appears only when the source commits, so a broken session leaves
 * the replica at its last point with a partial cycle kept for a resume.
 *
 * Failover is refused while the source agent says the primary runs, or
 * while a probe of the primary's addresses answers, unless forced with a
 * reason. The recovered domain boots from an overlay on the chosen point
 * (the point itself stays as it was) with every NIC's link down. */
#define NST_LOG_MODULE "replication"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <libvirt/virterror.h>
#include <libxml/tree.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/clock.h"
#include "agent/fs_util.h"
#include "agent/log.h"
#include "messages/json_util.h"
#include "plugins/libvirt/disks.h"
#include "plugins/libvirt/lv_util.h"
#include "plugins/replication/repl_plugin.h"
#include "plugins/replication/repl_store.h"
#include "plugins/replication/repl_wire.h"

NST_DEFINE_CLEANUP(DIR, closedir)

struct tgt_repl {
        char id[37];
        struct nst_rs_replica *rs;
        pthread_mutex_t lock;   /* rs's points and meta (sessions commit under it) */
        bool busy;              /* a session or an operation owns rs's cycle */
        /* what the current session has received */
        char cycle[64];
        uint64_t cycle_bytes;
        int64_t cycle_started_ms;
};

struct repl_target {
        struct repl_plugin *p;
        pthread_mutex_t lock; /* items, busy flags, sessions */
        pthread_cond_t idle;
        struct tgt_repl **items;
        size_t n_items, cap_items;
        struct nst_rc_server *server;
        pthread_t listener;
        bool listening, stopping;
        unsigned sessions;
        char *dir;
        char advertise[256];
};

/* ---- registry ---- */

static struct tgt_repl *find_locked(struct repl_target *t, const char *id) {
        for (size_t i = 0; i < t->n_items; i++)
                if (strcmp(t->items[i]->id, id) == 0)
                        return t->items[i];
        return NULL;
}

static int add_locked(struct repl_target *t, struct tgt_repl *r) {
        if (t->n_items == t->cap_items) {
                size_t cap = t->cap_items ? 2 * t->cap_items : 16;
                struct tgt_repl **n = realloc(t->items, cap * sizeof(*n));
                if (!n)
                        return -ENOMEM;
                t->items = n;
                t->cap_items = cap;
        }
        t->items[t->n_items++] = r;
        return 0;
}

static void tgt_free(struct tgt_repl *r) {
        if (!r)
                return;
        nst_rs_close(r->rs);
        pthread_mutex_destroy(&r->lock);
        free(r);
}

static void remove_locked(struct repl_target *t, struct tgt_repl *r) {
        for (size_t i = 0; i < t->n_items; i++)
                if (t->items[i] == r) {
                        t->items[i] = t->items[--t->n_items];
                        break;
                }
}

static struct tgt_repl *tgt_new(struct nst_rs_replica *rs) {
        struct tgt_repl *r = calloc(1, sizeof(*r));
        if (!r)
                return NULL;
        snprintf(r->id, sizeof(r->id), "%s", nst_rs_id(rs));
        r->rs = rs;
        pthread_mutex_init(&r->lock, NULL);
        return r;
}

static const char *meta_str(const struct tgt_repl *r, const char *key) {
        const char *v = json_object_get_string(json_object_object_get(nst_rs_meta(r->rs), key));
        return v ? v : "";
}

/* Claims r for an operation that must not overlap a cycle. */
static int claim(struct repl_target *t, const char *id, const char *method, struct tgt_repl **ret,
                 struct nst_error *err) {
        pthread_mutex_lock(&t->lock);
        struct tgt_repl *r = find_locked(t, id);
        int rc = 0;
        if (!r)
                rc = nst_error_set(err, -ENOENT, "ReplicationNotFound",
                                   "%s: this host holds no replica of replication %s", method, id);
        else if (r->busy)
                rc = nst_error_set(err, -EBUSY, "ReplicaBusy",
                                   "%s: replication %s is receiving a cycle or running another "
                                   "operation; retry when it is done",
                                   method, id);
        else
                r->busy = true;
        pthread_mutex_unlock(&t->lock);
        if (rc >= 0)
                *ret = r;
        return rc;
}

static void unclaim(struct repl_target *t, struct tgt_repl *r) {
        pthread_mutex_lock(&t->lock);
        r->busy = false;
        pthread_cond_broadcast(&t->idle);
        pthread_mutex_unlock(&t->lock);
}

/* ---- the data channel ---- */

static int psk_lookup(void *ud, const char *identity, uint8_t key[NST_RC_PSK_LEN]) {
        struct repl_target *t = ud;
        pthread_mutex_lock(&t->lock);
        struct tgt_repl *r = find_locked(t, identity);
        int rc = -ENOENT;
        if (r) {
                pthread_mutex_lock(&r->lock);
                rc = repl_hex_decode(meta_str(r, "psk"), key, NST_RC_PSK_LEN);
                pthread_mutex_unlock(&r->lock);
        }
        pthread_mutex_unlock(&t->lock);
        return rc;
}

struct session {
        struct repl_target *t;
        struct nst_rc_conn *ch;
        struct tgt_repl *r;
        uint8_t *buf;
        size_t cap;
        /* Where the cycle's time went on this side, for the log. */
        int64_t t_begin, t_ready, t_commit, mark_ms;
        struct nst_rw_digester *digester; /* made at the first DATA */
};

/* HELLO: which replication and cycle; claims the replica. */
static int session_hello(struct session *s, json_object **ret_hello, struct nst_error *err) {
        struct nst_rw_header h;
        int rc = nst_rc_recv(s->ch, &h, &s->buf, &s->cap, err);
        if (rc < 0)
                return rc;
        if (h.type != NST_RW_HELLO)
                return nst_error_set(err, -EPROTO, "ProtocolError", "expected HELLO, got %s",
                                     nst_rw_type_name(h.type));
        json_object *hello = NULL;
        if ((rc = nst_rc_parse_json(s->buf, h.length, &hello, err)) < 0)
                return rc;
        *ret_hello = hello;
        const char *id = json_object_get_string(json_object_object_get(hello, "replication"));
        const char *cycle = json_object_get_string(json_object_object_get(hello, "cycle"));
        if (json_object_get_int(json_object_object_get(hello, "version")) != NST_RW_VERSION)
                return nst_error_set(err, -EPROTO, "ProtocolError",
                                     "unsupported stream version (this agent speaks %d)",
                                     NST_RW_VERSION);
        /* Pre-shared keys: the key's identity is the replication. Certificates:
         * the peer's certificate names its node (CN = its `host` option),
         * which must be the replication's source (checked once claimed). */
        bool certificates = s->t->p->o.tls.cert_file != NULL;
        if (!id || (!certificates && strcmp(id, nst_rc_conn_identity(s->ch)) != 0))
                return nst_error_set(err, -EACCES, "AuthenticationFailed",
                                     "peer %s authenticated for %s but sent a cycle of %s",
                                     nst_rc_conn_peer(s->ch), nst_rc_conn_identity(s->ch),
                                     id ? id : "(none)");
        if (!cycle || !*cycle || strlen(cycle) >= 64)
                return nst_error_set(err, -EPROTO, "ProtocolError", "HELLO without a cycle id");
        struct tgt_repl *r = NULL;
        if ((rc = claim(s->t, id, "data channel", &r, err)) < 0)
                return rc;
        s->r = r;
        if (certificates && strcmp(meta_str(r, "source_host"), nst_rc_conn_identity(s->ch)) != 0)
                return nst_error_set(err, -EACCES, "AuthenticationFailed",
                                     "peer %s presented a certificate for %s, but replication %s "
                                     "comes from %s",
                                     nst_rc_conn_peer(s->ch), nst_rc_conn_identity(s->ch), id,
                                     meta_str(r, "source_host"));
        if (json_object_object_get(nst_rs_meta(r->rs), "failover"))
                return nst_error_set(err, -EPERM, "ReplicationFailedOver",
                                     "replication %s was failed over on %s: no more cycles are "
                                     "accepted",
                                     id, s->t->p->host_name);
        json_object *disks = json_object_object_get(hello, "disks");
        size_t n = nst_rs_disk_count(r->rs);
        bool same = json_object_is_type(disks, json_type_array) &&
                    json_object_array_length(disks) == n;
        for (size_t i = 0; same && i < n; i++) {
                json_object *d = json_object_array_get_idx(disks, i);
                const struct nst_rs_disk *rd = nst_rs_disk_at(r->rs, i);
                const char *name = json_object_get_string(json_object_object_get(d, "name"));
                same = name && strcmp(name, rd->name) == 0 &&
                       (uint64_t)json_object_get_int64(json_object_object_get(d, "size")) ==
                               rd->size;
        }
        if (!same)
                return nst_error_set(err, -EINVAL, "DiskMismatch",
                                     "the cycle's disks (names or sizes) differ from the replica's"
                                     "; disable and enable the replication again after a resize");
        return 0;
}

/* Reads a frame's payload (after its header) into s->buf. */
static int recv_payload(struct session *s, const struct nst_rw_header *h, struct nst_error *err) {
        return nst_rc_recv_payload(s->ch, h, &s->buf, &s->cap, err);
}

/* The extent header that starts a DATA or ZERO payload, checked against the
 * replica: nothing of an extent is written before this passes. */
static int extent_head(struct session *s, const struct nst_rw_header *h, const uint8_t *p,
                       struct nst_rw_extent *e, struct nst_error *err) {
        int rc = nst_rw_extent_decode(p, h->length, e, err);
        if (rc < 0)
                return rc;
        size_t n_disks = nst_rs_disk_count(s->r->rs);
        uint64_t size = e->disk < n_disks ? nst_rs_disk_at(s->r->rs, e->disk)->size : 0;
        bool zero = h->type == NST_RW_ZERO;
        return nst_rw_extent_check(e, n_disks, size,
                                   zero ? NST_RW_MAX_ZERO_EXTENT : NST_RW_MAX_EXTENT, err);
}

/* b's buffer holds extent e, whose bytes have digest `digest`, when filled
 * is not an error: it is queued if the digest is e's, otherwise nothing of
 * it is written. */
static int queue_checked(struct session *s, const struct nst_rw_extent *e, struct nst_rs_wbuf *b,
                         uint64_t digest, int filled, struct nst_error *err) {
        int rc = filled;
        if (rc >= 0 && digest != e->digest)
                rc = nst_error_set(err, -EBADMSG, "IntegrityError",
                                   "extent at offset %llu of disk %u failed its integrity check; "
                                   "nothing of it was written",
                                   (unsigned long long)e->offset, e->disk);
        if (rc < 0) {
                nst_rs_write_cancel(b);
                return rc;
        }
        if ((rc = nst_rs_write_queue(s->r->rs, b, err)) >= 0)
                __atomic_add_fetch(&s->r->cycle_bytes, e->length, __ATOMIC_RELAXED);
        return rc;
}

/* Received in pieces this big, each hashed right after it is decrypted:
 * while it is still in the CPU cache, not after the whole extent. */
#define DIGEST_PIECE (256 * 1024)

/* Uncompressed DATA, the bulk of a cycle: the payload goes from the TLS
 * record straight into the store's write buffer (no copy through s->buf)
 * and is queued only once its digest matched. */
static int session_data_direct(struct session *s, const struct nst_rw_header *h,
                               struct nst_error *err) {
        uint8_t head[NST_RW_EXTENT_SIZE];
        struct nst_rw_extent e;
        int rc = nst_rc_recv_part(s->ch, head, sizeof(head), err);
        if (rc < 0 || (rc = extent_head(s, h, head, &e, err)) < 0)
                return rc;
        if (h->length - NST_RW_EXTENT_SIZE != e.length)
                return nst_error_set(err, -EPROTO, "ProtocolError",
                                     "DATA extent says %u bytes but carries %zu", e.length,
                                     (size_t)(h->length - NST_RW_EXTENT_SIZE));
        struct nst_rs_wbuf *b = NULL;
        void *data = NULL;
        if (!s->digester && !(s->digester = nst_rw_digester_new()))
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        if ((rc = nst_rs_write_prepare(s->r->rs, e.disk, e.offset, e.length, &b, &data, err)) < 0)
                return rc;
        nst_rw_digester_reset(s->digester);
        for (uint32_t done = 0; rc >= 0 && done < e.length;) {
                uint32_t n = e.length - done < DIGEST_PIECE ? e.length - done : DIGEST_PIECE;
                if ((rc = nst_rc_recv_part(s->ch, (uint8_t *)data + done, n, err)) >= 0)
                        nst_rw_digester_update(s->digester, (uint8_t *)data + done, n);
                done += n;
        }
        return queue_checked(s, &e, b, nst_rw_digester_value(s->digester), rc, err);
}

/* ZERO, and compressed DATA (decompressed straight into the store's write
 * buffer, queued once its digest matched). */
static int session_data(struct session *s, const struct nst_rw_header *h, struct nst_error *err) {
        struct nst_rw_extent e;
        int rc = recv_payload(s, h, err);
        if (rc < 0 || (rc = extent_head(s, h, s->buf, &e, err)) < 0)
                return rc;
        if (h->type == NST_RW_ZERO)
                return nst_rs_zero(s->r->rs, e.disk, e.offset, e.length, err);
        struct nst_rs_wbuf *b = NULL;
        void *data = NULL;
        if ((rc = nst_rs_write_prepare(s->r->rs, e.disk, e.offset, e.length, &b, &data, err)) < 0)
                return rc;
        rc = nst_rw_decompress(s->buf + NST_RW_EXTENT_SIZE, h->length - NST_RW_EXTENT_SIZE,
                               data, e.length, err);
        return queue_checked(s, &e, b, rc >= 0 ? nst_rw_digest(data, e.length) : 0, rc, err);
}

static int session_hashes(struct session *s, const struct nst_rw_header *h,
                          struct nst_error *err) {
        json_object *req = NULL;
        int rc = nst_rc_parse_json(s->buf, h->length, &req, err);
        if (rc < 0)
                return rc;
        int64_t disk = json_object_get_int64(json_object_object_get(req, "disk"));
        int64_t first = json_object_get_int64(json_object_object_get(req, "first"));
        int64_t count = json_object_get_int64(json_object_object_get(req, "count"));
        json_object_put(req);
        if (disk < 0 || (size_t)disk >= nst_rs_disk_count(s->r->rs) || first < 0 || count <= 0 ||
            count > 4096)
                return nst_error_set(err, -EPROTO, "ProtocolError",
                                     "HASH_REQ out of range (disk %lld, first %lld, count %lld)",
                                     (long long)disk, (long long)first, (long long)count);
        uint64_t size = nst_rs_disk_at(s->r->rs, (size_t)disk)->size;
        uint64_t nblocks = (size + NST_RS_HASH_BLOCK - 1) / NST_RS_HASH_BLOCK;
        if ((uint64_t)first + (uint64_t)count > nblocks)
                return nst_error_set(err, -EPROTO, "ProtocolError",
                                     "HASH_REQ beyond the disk's %llu blocks",
                                     (unsigned long long)nblocks);
        size_t len = NST_RW_HASHES_HEADER_SIZE + (size_t)count * NST_RW_HASH_SIZE;
        _cleanup_free_ uint8_t *out = malloc(len);
        if (!out)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        nst_rw_hashes_encode(out, &(struct nst_rw_hashes){.disk = (uint16_t)disk,
                                                          .block_size = NST_RS_HASH_BLOCK,
                                                          .first_block = (uint64_t)first,
                                                          .count = (uint32_t)count});
        if ((rc = nst_rs_hashes(s->r->rs, (unsigned)disk, (uint64_t)first, (uint32_t)count,
                                out + NST_RW_HASHES_HEADER_SIZE, err)) < 0)
                return rc;
        return nst_rc_send(s->ch, NST_RW_HASHES, 0, out, len, NULL, 0, err);
}

static json_object *point_json(const struct nst_rs_replica *rs, const struct nst_rs_point *pt) {
        char when[32];
        json_object *o = json_object_new_object();
        json_object_object_add(o, "id", json_object_new_int64((int64_t)pt->id));
        json_object_object_add(o, "time",
                               json_object_new_string(repl_iso_time(pt->time_ms, when,
                                                                    sizeof(when))));
        json_object_object_add(o, "checkpoint", nst_json_string_or_null(pt->checkpoint));
        json_object_object_add(o, "bytes", json_object_new_int64((int64_t)pt->bytes));
        json_object *kind = pt->extra ? json_object_object_get(pt->extra, "kind") : NULL;
        json_object *q = pt->extra ? json_object_object_get(pt->extra, "quiesced") : NULL;
        json_object_object_add(o, "kind", json_object_get(kind));
        json_object_object_add(o, "consistency",
                               json_object_new_string(json_object_get_boolean(q) ? "filesystem"
                                                                                 : "crash"));
        json_object *images = json_object_new_array();
        for (size_t i = 0; i < nst_rs_disk_count(rs); i++) {
                char *img = nst_rs_point_image(rs, pt->id, (unsigned)i);
                json_object_array_add(images, nst_json_string_or_null(img));
                free(img);
        }
        json_object_object_add(o, "images", images);
        return o;
}

static int session_commit(struct session *s, const struct nst_rw_header *h,
                          struct nst_error *err) {
        json_object *m = NULL;
        int rc = nst_rc_parse_json(s->buf, h->length, &m, err);
        if (rc < 0)
                return rc;
        json_object *pt = json_object_object_get(m, "point");
        const char *cp = json_object_get_string(json_object_object_get(pt, "checkpoint"));
        json_object *extra = json_object_new_object();
        json_object_object_add(extra, "kind",
                               json_object_get(json_object_object_get(pt, "kind")));
        json_object_object_add(extra, "quiesced",
                               json_object_get(json_object_object_get(pt, "quiesced")));
        struct nst_rs_point p = {
                .time_ms = json_object_get_int64(json_object_object_get(pt, "time_ms")),
                .checkpoint = (char *)(cp ? cp : ""),
                .bytes = s->r->cycle_bytes,
                .extra = extra,
        };
        int64_t keep = json_object_get_int64(json_object_object_get(m, "points_in_time"));
        uint64_t id = 0;
        s->t_commit = repl_mono_ms();
        pthread_mutex_lock(&s->r->lock);
        rc = nst_rs_cycle_commit(s->r->rs, &p, &id, err);
        struct nst_error pe = NST_ERROR_INIT;
        if (rc >= 0 && keep >= 1 && nst_rs_prune(s->r->rs, (size_t)keep, &pe) < 0)
                log_warning("replica %s: merging old points: %s", s->r->id, pe.message);
        pthread_mutex_unlock(&s->r->lock);
        json_object_put(extra);
        json_object_put(m);
        if (rc < 0)
                return rc;
        json_object *done = json_object_new_object();
        json_object_object_add(done, "point", json_object_new_int64((int64_t)id));
        rc = nst_rc_send_json(s->ch, NST_RW_COMMITTED, done, err);
        json_object_put(done);
        int64_t now = repl_mono_ms();
        log_info("replica %s: point %llu committed (%llu bytes received; cycle setup %lld ms, "
                 "receiving %lld ms of which flushing at marks %lld, commit %lld)",
                 s->r->id, (unsigned long long)id, (unsigned long long)s->r->cycle_bytes,
                 (long long)(s->t_ready - s->t_begin), (long long)(s->t_commit - s->t_ready),
                 (long long)s->mark_ms, (long long)(now - s->t_commit));
        return rc < 0 ? rc : 1;
}

/* Frames until COMMIT (returns 1), BYE (0) or an error. */
static int session_frames(struct session *s, struct nst_error *err) {
        for (;;) {
                struct nst_rw_header h;
                int rc = nst_rc_recv_header(s->ch, &h, err);
                if (rc < 0)
                        return rc;
                bool direct = h.type == NST_RW_DATA && !(h.flags & NST_RW_F_ZSTD) &&
                              h.length >= NST_RW_EXTENT_SIZE;
                if (!direct && h.type != NST_RW_DATA && h.type != NST_RW_ZERO &&
                    (rc = recv_payload(s, &h, err)) < 0)
                        return rc;
                switch (h.type) {
                case NST_RW_DATA:
                case NST_RW_ZERO:
                        rc = direct ? session_data_direct(s, &h, err) : session_data(s, &h, err);
                        break;
                case NST_RW_MARK: {
                        struct nst_rw_mark m;
                        rc = nst_rw_mark_decode(s->buf, h.length, &m, err);
                        if (rc >= 0 && m.disk >= nst_rs_disk_count(s->r->rs))
                                rc = nst_error_set(err, -EPROTO, "ProtocolError",
                                                   "MARK names disk %u of %zu", m.disk,
                                                   nst_rs_disk_count(s->r->rs));
                        int64_t t0 = repl_mono_ms();
                        if (rc >= 0)
                                rc = nst_rs_mark(s->r->rs, m.disk, m.offset, err);
                        s->mark_ms += repl_mono_ms() - t0;
                        if (rc >= 0)
                                rc = nst_rc_send(s->ch, NST_RW_MARK_ACK, 0, s->buf, h.length,
                                                 NULL, 0, err);
                        break;
                }
                case NST_RW_HASH_REQ:
                        rc = session_hashes(s, &h, err);
                        break;
                case NST_RW_COMMIT:
                        return session_commit(s, &h, err);
                case NST_RW_BYE:
                        return 0;
                case NST_RW_ERROR: {
                        struct nst_error peer;
                        nst_rc_peer_error(s->buf, h.length, "ChannelError", &peer);
                        return nst_error_set(err, -ECONNABORTED, "ChannelError",
                                             "the source abandoned the cycle: %.300s",
                                             peer.message);
                }
                default:
                        rc = nst_error_set(err, -EPROTO, "ProtocolError", "unexpected %s",
                                           nst_rw_type_name(h.type));
                }
                if (rc < 0)
                        return rc;
        }
}

static void session_run(struct session *s) {
        struct nst_error err = NST_ERROR_INIT;
        json_object *hello = NULL;
        int rc = session_hello(s, &hello, &err);
        const char *cycle = json_object_get_string(json_object_object_get(hello, "cycle"));
        struct nst_rs_resume resume = {0};
        s->t_begin = repl_mono_ms();
        if (rc >= 0)
                rc = nst_rs_cycle_begin(s->r->rs, cycle, &resume, &err);
        if (rc >= 0) {
                snprintf(s->r->cycle, sizeof(s->r->cycle), "%s", cycle);
                s->r->cycle_bytes = 0;
                s->r->cycle_started_ms = repl_now_ms();
                json_object *ready = json_object_new_object();
                json_object *res = NULL;
                if (resume.valid) {
                        res = json_object_new_object();
                        json_object_object_add(res, "disk", json_object_new_int(resume.disk));
                        json_object_object_add(res, "offset",
                                               json_object_new_int64((int64_t)resume.offset));
                        log_info("replica %s: cycle %s resumes at disk %u offset %llu", s->r->id,
                                 cycle, resume.disk, (unsigned long long)resume.offset);
                }
                json_object_object_add(ready, "resume", res);
                pthread_mutex_lock(&s->r->lock);
                json_object_object_add(ready, "points",
                                       json_object_new_int64((int64_t)nst_rs_point_count(s->r->rs)));
                pthread_mutex_unlock(&s->r->lock);
                rc = nst_rc_send_json(s->ch, NST_RW_READY, ready, &err);
                json_object_put(ready);
                s->t_ready = repl_mono_ms();
        }
        if (rc >= 0)
                rc = session_frames(s, &err);
        if (rc < 0 || rc == 0) {
                if (rc < 0) {
                        log_warning("data channel from %s (%s): %s: %s", nst_rc_conn_peer(s->ch),
                                    nst_rc_conn_identity(s->ch), err.cls, err.message);
                        if (strcmp(err.cls, "ChannelError") != 0 && err.code != -ETIMEDOUT)
                                nst_rc_send_error(s->ch, &err);
                }
                /* Keep what is durable for a resume of the same cycle. */
                if (s->r && nst_rs_cycle_open(s->r->rs))
                        nst_rs_cycle_abort(s->r->rs, true);
        }
        json_object_put(hello);
        if (s->r) {
                s->r->cycle[0] = '\0';
                unclaim(s->t, s->r);
        }
}

/* A peer gets this long to finish its TLS handshake, on its session's own
 * thread: the listener only accepts. */
#define HANDSHAKE_TIMEOUT_MS 10000

static void *session_main(void *arg) {
        pthread_setname_np(pthread_self(), "repl-session");
        struct session *s = arg;
        struct nst_error err = NST_ERROR_INIT;
        if (nst_rc_handshake(s->ch, HANDSHAKE_TIMEOUT_MS, &err) == 0) {
                nst_rc_set_timeout(s->ch, s->t->p->o.io_timeout_ms);
                session_run(s);
        } else {
                log_warning("data channel: %s", err.message);
        }
        nst_rc_close(s->ch);
        free(s->buf);
        nst_rw_digester_free(s->digester);
        struct repl_target *t = s->t;
        free(s);
        pthread_mutex_lock(&t->lock);
        t->sessions--;
        pthread_cond_broadcast(&t->idle);
        pthread_mutex_unlock(&t->lock);
        return NULL;
}

/* Write buffers stay warm for cycles this close together (RPO 1 minute). */
#define BUFFERS_IDLE_MS (2 * 60 * 1000)

static void *listener_main(void *arg) {
        pthread_setname_np(pthread_self(), "repl-listen");
        struct repl_target *t = arg;
        for (;;) {
                pthread_mutex_lock(&t->lock);
                bool stopping = t->stopping;
                pthread_mutex_unlock(&t->lock);
                if (stopping)
                        break;
                struct nst_rc_conn *c = NULL;
                struct nst_error err = NST_ERROR_INIT;
                /* Wakes every 2 s to notice stopping, and to give back write
                 * buffers no cycle took for a while. */
                nst_rs_buffers_trim(nst_now_ms(), BUFFERS_IDLE_MS);
                int rc = nst_rc_accept_tcp(t->server, 2000, &c, &err);
                if (rc == -ETIMEDOUT)
                        continue;
                if (rc < 0) {
                        log_warning("data channel: %s", err.message);
                        continue;
                }
                struct session *s = calloc(1, sizeof(*s));
                pthread_t th;
                pthread_attr_t attr;
                pthread_attr_init(&attr);
                pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
                pthread_mutex_lock(&t->lock);
                if (s) {
                        s->t = t;
                        s->ch = c;
                        t->sessions++;
                }
                pthread_mutex_unlock(&t->lock);
                if (!s || pthread_create(&th, &attr, session_main, s) != 0) {
                        log_error("data channel: cannot start a session for %s",
                                  nst_rc_conn_peer(c));
                        nst_rc_close(c);
                        if (s) {
                                free(s);
                                pthread_mutex_lock(&t->lock);
                                t->sessions--;
                                pthread_mutex_unlock(&t->lock);
                        }
                }
                pthread_attr_destroy(&attr);
        }
        return NULL;
}

/* ---- lifecycle ---- */

int repl_target_new(struct repl_plugin *p, struct repl_target **ret, struct nst_error *err) {
        struct repl_target *t = calloc(1, sizeof(*t));
        if (!t)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        t->p = p;
        pthread_mutex_init(&t->lock, NULL);
        pthread_cond_init(&t->idle, NULL);
        *ret = t;
        return 0;
}

static int load_replicas(struct repl_target *t, struct nst_error *err) {
        _cleanup_(closedirp) DIR *d = opendir(t->dir);
        if (!d)
                return nst_error_set(err, -errno, "StorageError", "cannot read %s: %s", t->dir,
                                     strerror(errno));
        struct dirent *de;
        while ((de = readdir(d))) {
                if (!repl_uuid_valid(de->d_name))
                        continue;
                char path[4096];
                snprintf(path, sizeof(path), "%s/%s", t->dir, de->d_name);
                struct nst_rs_replica *rs = NULL;
                struct nst_error e = NST_ERROR_INIT;
                if (nst_rs_open(path, &rs, &e) < 0) {
                        log_error("skipping replica %s: %s", path, e.message);
                        continue;
                }
                struct tgt_repl *r = tgt_new(rs);
                if (!r || add_locked(t, r) < 0) {
                        if (r)
                                tgt_free(r);
                        else
                                nst_rs_close(rs);
                        return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
                }
                log_info("replica %s of %s from %s: %zu point(s)", r->id,
                         meta_str(r, "instance_name"), meta_str(r, "source_host"),
                         nst_rs_point_count(rs));
        }
        return 0;
}

static bool wildcard(const char *a) {
        return !*a || strcmp(a, "0.0.0.0") == 0 || strcmp(a, "::") == 0;
}

int repl_target_start(struct repl_target *t, struct nst_error *err) {
        struct repl_plugin *p = t->p;
        if (asprintf(&t->dir, "%s/target", p->state_dir) < 0) {
                t->dir = NULL;
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        int rc = nst_mkdir_p(t->dir, 0711);
        if (rc >= 0 && chmod(t->dir, 0711) < 0)
                rc = -errno;
        if (rc < 0)
                return nst_error_set(err, rc, "StorageError", "cannot create %s: %s", t->dir,
                                     strerror(-rc));
        if ((rc = load_replicas(t, err)) < 0)
                return rc;
        rc = nst_rc_listen(p->o.listen_address, (uint16_t)p->o.listen_port, &p->o.tls, psk_lookup,
                           t, &t->server, err);
        if (rc < 0)
                return nst_error_prefix(err, "[replication] listen_address/listen_port");
        snprintf(t->advertise, sizeof(t->advertise), "%s",
                 p->o.advertise_address          ? p->o.advertise_address
                 : !wildcard(p->o.listen_address) ? p->o.listen_address
                                                  : p->host_name);
        if ((rc = -pthread_create(&t->listener, NULL, listener_main, t)) < 0)
                return nst_error_set(err, rc, "InternalError",
                                     "cannot start the data channel listener: %s", strerror(-rc));
        t->listening = true;
        log_info("replication data channel on %s port %u (advertised as %s), %s", p->o.listen_address,
                 nst_rc_server_port(t->server), t->advertise,
                 p->o.tls.cert_file ? "certificates" : "pre-shared keys");
        return 0;
}

void repl_target_free(struct repl_target *t) {
        if (!t)
                return;
        pthread_mutex_lock(&t->lock);
        t->stopping = true;
        pthread_mutex_unlock(&t->lock);
        if (t->listening)
                pthread_join(t->listener, NULL);
        pthread_mutex_lock(&t->lock);
        while (t->sessions > 0)
                pthread_cond_wait(&t->idle, &t->lock);
        pthread_mutex_unlock(&t->lock);
        nst_rc_server_close(t->server);
        for (size_t i = 0; i < t->n_items; i++)
                tgt_free(t->items[i]);
        nst_rs_buffers_trim(nst_now_ms(), 0);
        free(t->items);
        free(t->dir);
        pthread_cond_destroy(&t->idle);
        pthread_mutex_destroy(&t->lock);
        free(t);
}

/* ---- status ---- */

static json_object *status_of(const struct repl_target *t, struct tgt_repl *r, bool busy) {
        json_object *o = json_object_new_object();
        pthread_mutex_lock(&r->lock);
        json_object *meta = nst_rs_meta(r->rs);
        json_object_object_add(o, "replication", json_object_new_string(r->id));
        json_object_object_add(o, "role", json_object_new_string("target"));
        json_object_object_add(o, "instance_uuid", json_object_new_string(r->id));
        json_object_object_add(o, "instance_name",
                               json_object_new_string(meta_str(r, "instance_name")));
        json_object_object_add(o, "source_host", json_object_new_string(meta_str(r, "source_host")));
        json_object_object_add(o, "target_host", json_object_new_string(t->p->host_name));
        json_object *points = json_object_new_array();
        size_t n = nst_rs_point_count(r->rs);
        for (size_t i = 0; i < n; i++)
                json_object_array_add(points, point_json(r->rs, nst_rs_point_at(r->rs, i)));
        json_object_object_add(o, "points", points);
        json_object_object_add(o, "last_point",
                               n ? point_json(r->rs, nst_rs_point_at(r->rs, n - 1)) : NULL);
        if (n) {
                int64_t age = (repl_now_ms() - nst_rs_point_at(r->rs, n - 1)->time_ms) / 1000;
                json_object_object_add(o, "lag_seconds", json_object_new_int64(age));
        }
        json_object *disks = json_object_new_array();
        for (size_t i = 0; i < nst_rs_disk_count(r->rs); i++) {
                const struct nst_rs_disk *d = nst_rs_disk_at(r->rs, i);
                json_object *jd = json_object_new_object();
                json_object_object_add(jd, "name", json_object_new_string(d->name));
                json_object_object_add(jd, "size", json_object_new_int64((int64_t)d->size));
                json_object_object_add(jd, "seed", nst_json_string_or_null(d->seed));
                json_object_array_add(disks, jd);
        }
        json_object_object_add(o, "disks", disks);
        json_object_object_add(o, "allocated_bytes",
                               json_object_new_int64((int64_t)nst_rs_allocated_bytes(r->rs)));
        json_object_object_add(o, "failover", json_object_get(json_object_object_get(meta,
                                                                                     "failover")));
        json_object_object_add(o, "test_failover",
                               json_object_get(json_object_object_get(meta, "test_failover")));
        const char *state = json_object_object_get(meta, "failover") ? "failed-over"
                            : r->cycle[0]                           ? "receiving"
                            : n                                     ? "ok"
                                                                    : "waiting-for-initial-sync";
        json_object_object_add(o, "state", json_object_new_string(state));
        if (r->cycle[0]) {
                json_object *prog = json_object_new_object();
                json_object_object_add(prog, "cycle", json_object_new_string(r->cycle));
                json_object_object_add(prog, "bytes_received",
                                       json_object_new_int64((int64_t)__atomic_load_n(
                                               &r->cycle_bytes, __ATOMIC_RELAXED)));
                json_object_object_add(o, "progress", prog);
        }
        (void)busy;
        pthread_mutex_unlock(&r->lock);
        return o;
}

int repl_target_status(struct repl_target *t, const char *id, json_object **ret) {
        pthread_mutex_lock(&t->lock);
        struct tgt_repl *r = find_locked(t, id);
        if (r)
                *ret = status_of(t, r, r->busy);
        pthread_mutex_unlock(&t->lock);
        return r ? 0 : -ENOENT;
}

json_object *repl_target_list(struct repl_target *t) {
        json_object *a = json_object_new_array();
        pthread_mutex_lock(&t->lock);
        for (size_t i = 0; i < t->n_items; i++)
                json_object_array_add(a, status_of(t, t->items[i], t->items[i]->busy));
        pthread_mutex_unlock(&t->lock);
        return a;
}

/* ---- methods the source agent calls ---- */

static int id_arg(json_object *args, const char *method, const char *const *allowed,
                  const char **ret, struct nst_error *err) {
        int rc = nst_json_check_keys(args, method, allowed, err);
        if (rc < 0 || (rc = nst_json_req_string(args, "replication", method, ret, err)) < 0)
                return rc;
        if (!repl_uuid_valid(*ret))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s: replication must be an instance uuid (lower case), got "
                                     "'%.64s'",
                                     method, *ret);
        return 0;
}

static int parse_disks(json_object *disks, struct nst_rs_disk *out, size_t *ret_n,
                       struct nst_error *err) {
        const char *m = "replication_target_prepare";
        if (!json_object_is_type(disks, json_type_array) || json_object_array_length(disks) == 0 ||
            json_object_array_length(disks) > NST_RS_MAX_DISKS)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s: disks must be a list of 1 to %d disks", m,
                                     NST_RS_MAX_DISKS);
        size_t n = json_object_array_length(disks);
        for (size_t i = 0; i < n; i++) {
                json_object *d = json_object_array_get_idx(disks, i);
                const char *name = NULL, *seed = NULL;
                int64_t size = 0;
                int rc;
                if ((rc = nst_json_req_string(d, "name", m, &name, err)) < 0 ||
                    (rc = nst_json_opt_int64(d, "size", m, &size, err)) < 0 ||
                    (rc = nst_json_opt_string(d, "seed", m, &seed, err)) < 0)
                        return rc;
                if (!*name || strlen(name) >= NST_RS_DISK_NAME_MAX || strchr(name, '/') ||
                    size <= 0)
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "%s: disk %zu needs a name and a positive size", m,
                                             i);
                snprintf(out[i].name, sizeof(out[i].name), "%s", name);
                out[i].size = (uint64_t)size;
                out[i].seed = (char *)seed;
        }
        *ret_n = n;
        return 0;
}

static json_object *channel_address(const struct repl_target *t) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "address", json_object_new_string(t->advertise));
        json_object_object_add(o, "port", json_object_new_int(nst_rc_server_port(t->server)));
        json_object_object_add(o, "host", json_object_new_string(t->p->host_name));
        return o;
}

static json_object *event_data(struct tgt_repl *r) {
        json_object *d = json_object_new_object();
        json_object_object_add(d, "replication", json_object_new_string(r->id));
        json_object_object_add(d, "instance_uuid", json_object_new_string(r->id));
        json_object_object_add(d, "display_name",
                               json_object_new_string(meta_str(r, "instance_name")));
        json_object_object_add(d, "source_host", json_object_new_string(meta_str(r, "source_host")));
        return d;
}

/* What the agent of `source` says of the primary (replication_primary_state
 * within primary_check_timeout): 0 with *running and *migrated, or the
 * call's error when it did not answer. `text` says which, for the checks
 * and the logs. */
static int ask_primary(struct repl_plugin *p, const char *source, const char *id, bool *running,
                       bool *migrated, char *text, size_t text_size, struct nst_error *err) {
        json_object *args = json_object_new_object(), *answer = NULL;
        json_object_object_add(args, "replication", json_object_new_string(id));
        int rc = repl_call_agent(p, source, "replication_primary_state", args,
                                 p->o.primary_check_timeout_s, &answer, err);
        json_object_put(args);
        *running = *migrated = false;
        if (rc < 0) {
                snprintf(text, text_size, "agent of %.200s did not answer: %.300s", source,
                         err->message);
                return rc;
        }
        *running = json_object_get_boolean(json_object_object_get(answer, "running"));
        *migrated = json_object_get_boolean(json_object_object_get(answer, "migrated"));
        json_object_put(answer);
        snprintf(text, text_size, "agent of %.200s: the primary is %s", source,
                 *running    ? "running"
                 : *migrated ? "migrated away from it"
                             : "not running");
        return 0;
}

/* Another node asks to become the source of a replica that has one: the
 * instance moved there (a migration). The replica, its points with it, is
 * handed over unless its present source says the instance still runs there;
 * a present source that does not answer does not hold it back (its site
 * may be gone). *why says what the present source answered. */
static int handover_check(struct repl_target *t, const char *id, const char *name,
                          const char *previous, const char *source, char *why, size_t why_size,
                          bool *answered, struct nst_error *err) {
        bool running, migrated;
        struct nst_error e = NST_ERROR_INIT;
        *answered = ask_primary(t->p, previous, id, &running, &migrated, why, why_size, &e) >= 0;
        if (running)
                return nst_error_set(err, -EEXIST, "ReplicationExists",
                                     "replication_target_prepare: instance %s still runs on %s, "
                                     "the source of its replica here; %s cannot take the "
                                     "replication over (disable it on %s first)",
                                     name, previous, source, previous);
        return 0;
}

static int m_prepare(struct nst_call *call, json_object *args, void *ud, json_object **ret,
                     struct nst_error *err) {
        struct repl_target *t = ud;
        static const char *const allowed[] = {"replication",   "source_host",    "instance_name",
                                              "psk",           "disks",          "domain_xml",
                                              "points_in_time", "probe_addresses", NULL};
        const char *m = "replication_target_prepare";
        const char *id = NULL, *source = NULL, *name = NULL, *psk = NULL, *xml = NULL;
        int rc = id_arg(args, m, allowed, &id, err);
        if (rc < 0 || (rc = nst_json_req_string(args, "source_host", m, &source, err)) < 0 ||
            (rc = nst_json_req_string(args, "instance_name", m, &name, err)) < 0 ||
            (rc = nst_json_req_string(args, "psk", m, &psk, err)) < 0 ||
            (rc = nst_json_req_string(args, "domain_xml", m, &xml, err)) < 0)
                return rc;
        uint8_t key[NST_RC_PSK_LEN];
        if (repl_hex_decode(psk, key, sizeof(key)) < 0)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s: psk must be %d hex digits", m, 2 * NST_RC_PSK_LEN);
        if (strcmp(source, t->p->host_name) == 0)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s: the source is this host", m);
        struct nst_rs_disk disks[NST_RS_MAX_DISKS] = {0};
        size_t n = 0;
        if ((rc = parse_disks(json_object_object_get(args, "disks"), disks, &n, err)) < 0)
                return rc;
        json_object *meta = json_object_new_object();
        json_object_object_add(meta, "source_host", json_object_new_string(source));
        json_object_object_add(meta, "instance_name", json_object_new_string(name));
        json_object_object_add(meta, "psk", json_object_new_string(psk));
        json_object_object_add(meta, "domain_xml", json_object_new_string(xml));
        json_object *probes = json_object_object_get(args, "probe_addresses");
        json_object_object_add(meta, "probe_addresses",
                               probes ? json_object_get(probes) : json_object_new_array());
        json_object_object_add(meta, "created_ms", json_object_new_int64(repl_now_ms()));

        /* Asked before the lock is taken: an RPC of up to
         * primary_check_timeout. */
        char previous[256] = "", why[600] = "";
        bool previous_answered = false;
        pthread_mutex_lock(&t->lock);
        struct tgt_repl *r = find_locked(t, id);
        if (r && strcmp(meta_str(r, "source_host"), source) != 0)
                snprintf(previous, sizeof(previous), "%s", meta_str(r, "source_host"));
        pthread_mutex_unlock(&t->lock);
        if (*previous &&
            (rc = handover_check(t, id, name, previous, source, why, sizeof(why),
                                 &previous_answered, err)) < 0) {
                json_object_put(meta);
                return rc;
        }
        if (*previous) {
                json_object_object_add(meta, "handed_over_from", json_object_new_string(previous));
                json_object_object_add(meta, "handed_over_ms", json_object_new_int64(repl_now_ms()));
        }

        uint64_t points = 0;
        json_object *changed = NULL; /* replication.source_changed */
        pthread_mutex_lock(&t->lock);
        r = find_locked(t, id);
        if (r) {
                /* The source asks again (a retry, or it lost its record), or
                 * the instance's new host takes over (checked above against
                 * the source it had then): the same disks keep the points,
                 * with the new key. */
                bool same = strcmp(meta_str(r, "source_host"), *previous ? previous : source) == 0 &&
                            nst_rs_disk_count(r->rs) == n;
                for (size_t i = 0; same && i < n; i++)
                        same = strcmp(nst_rs_disk_at(r->rs, i)->name, disks[i].name) == 0 &&
                               nst_rs_disk_at(r->rs, i)->size == disks[i].size;
                if (!same)
                        rc = nst_error_set(err, -EEXIST, "ReplicationExists",
                                           "%s: a replica of %s from %s with other disks exists "
                                           "here; remove it first",
                                           m, id, meta_str(r, "source_host"));
                else if (r->busy)
                        rc = nst_error_set(err, -EBUSY, "ReplicaBusy",
                                           "%s: replica %s is receiving a cycle", m, id);
                if (rc >= 0) {
                        pthread_mutex_lock(&r->lock);
                        json_object *old = nst_rs_meta(r->rs);
                        json_object *fo = json_object_object_get(old, "failover");
                        if (fo)
                                json_object_object_add(meta, "failover", json_object_get(fo));
                        rc = nst_rs_set_meta(r->rs, meta, err);
                        points = nst_rs_point_count(r->rs);
                        if (rc >= 0 && *previous)
                                changed = event_data(r);
                        pthread_mutex_unlock(&r->lock);
                }
        } else {
                char dir[4096];
                snprintf(dir, sizeof(dir), "%s/%s", t->dir, id);
                struct nst_rs_replica *rs = NULL;
                rc = nst_rs_create(dir, id, disks, n, meta, &rs, err);
                /* QEMU reads the points' images when a recovered instance
                 * boots from them. */
                if (rc >= 0)
                        chmod(dir, 0711);
                if (rc >= 0) {
                        if (!(r = tgt_new(rs)) || add_locked(t, r) < 0) {
                                tgt_free(r);
                                if (!r)
                                        nst_rs_close(rs);
                                rc = nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
                        }
                }
        }
        if (rc >= 0) {
                *ret = channel_address(t);
                /* A source that finds points here compares hashes first. */
                json_object_object_add(*ret, "points", json_object_new_int64((int64_t)points));
        }
        pthread_mutex_unlock(&t->lock);
        json_object_put(meta);
        if (rc < 0) {
                json_object_put(changed);
                return rc;
        }
        if (changed) {
                log_warning("replica %s of %s handed over from %s to %s, %llu point(s) kept (%s)",
                            id, name, previous, source, (unsigned long long)points, why);
                json_object_object_add(changed, "previous_source_host",
                                       json_object_new_string(previous));
                json_object_object_add(changed, "host", json_object_new_string(t->p->host_name));
                json_object_object_add(changed, "points", json_object_new_int64((int64_t)points));
                json_object_object_add(changed, "reason", json_object_new_string(why));
                repl_notify(t->p, "replication.source_changed", changed, NULL);
                /* Best effort: the old source stops its cycles (they would
                 * be refused) and its RPO watch. */
                if (previous_answered) {
                        json_object *a = json_object_new_object(), *answer = NULL;
                        json_object_object_add(a, "replication", json_object_new_string(id));
                        json_object_object_add(a, "source_host", json_object_new_string(source));
                        struct nst_error e = NST_ERROR_INIT;
                        if (repl_call_agent(t->p, previous, "replication_source_replaced", a,
                                            t->p->o.primary_check_timeout_s, &answer, &e) < 0)
                                log_warning("replica %s: could not tell %s that %s took it over: "
                                            "%s",
                                            id, previous, source, e.message);
                        json_object_put(a);
                        json_object_put(answer);
                }
        } else {
                log_info("replica %s of %s from %s prepared (%zu disk(s))", id, name, source, n);
        }
        return 0;
}

static int m_remove(struct nst_call *call, json_object *args, void *ud, json_object **ret,
                    struct nst_error *err) {
        struct repl_target *t = ud;
        static const char *const allowed[] = {"replication", "source_host", NULL};
        const char *id = NULL, *source = NULL;
        int rc = id_arg(args, "replication_target_remove", allowed, &id, err);
        if (rc >= 0)
                rc = nst_json_opt_string(args, "source_host", "replication_target_remove", &source,
                                         err);
        struct tgt_repl *r = NULL;
        if (rc < 0 || (rc = claim(t, id, "replication_target_remove", &r, err)) < 0)
                return rc;
        json_object *meta = nst_rs_meta(r->rs);
        /* A source that was replaced (the instance moved, its new host took
         * the replica over) disables its own replication only. */
        if (source && strcmp(meta_str(r, "source_host"), source) != 0) {
                json_object *o = json_object_new_object();
                json_object_object_add(o, "replication", json_object_new_string(id));
                json_object_object_add(o, "removed", json_object_new_boolean(false));
                json_object_object_add(o, "source_host",
                                       json_object_new_string(meta_str(r, "source_host")));
                unclaim(t, r);
                *ret = o;
                log_info("replica %s kept: %s asked to remove it, its source is now %s", id,
                         source, json_object_get_string(json_object_object_get(o, "source_host")));
                return 0;
        }
        if (json_object_object_get(meta, "failover") || json_object_object_get(meta, "test_failover")) {
                unclaim(t, r);
                return nst_error_set(err, -EBUSY, "ReplicaInUse",
                                     "replica %s backs a recovered or test instance here; it "
                                     "stays until that instance is cleaned up",
                                     id);
        }
        char dir[4096];
        snprintf(dir, sizeof(dir), "%s/%s", t->dir, id);
        pthread_mutex_lock(&r->lock);
        rc = nst_rs_destroy(r->rs, err); /* frees r->rs on every path */
        r->rs = NULL;
        struct nst_error e = NST_ERROR_INIT;
        bool reopened = rc < 0 && nst_rs_open(dir, &r->rs, &e) == 0;
        pthread_mutex_unlock(&r->lock);
        pthread_mutex_lock(&t->lock);
        if (reopened)
                r->busy = false;
        else
                remove_locked(t, r);
        pthread_cond_broadcast(&t->idle);
        pthread_mutex_unlock(&t->lock);
        if (!reopened)
                tgt_free(r);
        if (rc < 0)
                return rc;
        json_object *o = json_object_new_object();
        json_object_object_add(o, "replication", json_object_new_string(id));
        json_object_object_add(o, "removed", json_object_new_boolean(true));
        *ret = o;
        log_info("replica %s removed", id);
        return 0;
}

/* ---- recovery: failover and test failover ---- */

static bool replicated(struct nst_rs_replica *rs, const char *dev, size_t *ret_i) {
        for (size_t i = 0; dev && i < nst_rs_disk_count(rs); i++)
                if (strcmp(nst_rs_disk_at(rs, i)->name, dev) == 0) {
                        *ret_i = i;
                        return true;
                }
        return false;
}

static xmlNodePtr child(xmlNodePtr n, const char *name) {
        for (xmlNodePtr c = n ? n->children : NULL; c; c = c->next)
                if (c->type == XML_ELEMENT_NODE && xmlStrEqual(c->name, BAD_CAST name))
                        return c;
        return NULL;
}

static void drop_node(xmlNodePtr n) {
        xmlUnlinkNode(n);
        xmlFreeNode(n);
}

static void set_link(xmlNodePtr iface, const char *state) {
        xmlNodePtr link = child(iface, "link");
        if (!link)
                link = xmlNewChild(iface, NULL, BAD_CAST "link", NULL);
        xmlSetProp(link, BAD_CAST "state", BAD_CAST state);
}

/* Points the replicated disks at the boot overlays, drops what cannot exist
 * here (other disks, host devices, the source's PCI claims) and puts every
 * NIC's link down. */
static int recovered_xml(const char *src_xml, struct nst_rs_replica *rs, char **paths,
                         const char *new_name, char **ret, json_object *left_out,
                         struct nst_error *err) {
        _cleanup_(xmlFreeDocp) xmlDocPtr doc = NULL;
        int rc = nst_xml_parse(src_xml, "the source's domain definition", "ReplicaCorrupt", &doc,
                               err);
        if (rc < 0)
                return rc;
        xmlNodePtr root = xmlDocGetRootElement(doc);
        if (new_name) {
                xmlNodePtr n = child(root, "name");
                if (n)
                        xmlNodeSetContent(n, BAD_CAST new_name);
                xmlNodePtr u = child(root, "uuid");
                if (u)
                        drop_node(u);
        }
        xmlNodePtr devices = child(root, "devices");
        for (xmlNodePtr c = devices ? devices->children : NULL, next; c; c = next) {
                next = c->next;
                if (c->type != XML_ELEMENT_NODE)
                        continue;
                if (xmlStrEqual(c->name, BAD_CAST "disk")) {
                        _cleanup_free_ char *dev = nst_xml_attr(child(c, "target"), "dev");
                        _cleanup_free_ char *kind = nst_xml_attr(c, "device");
                        size_t i = 0;
                        if ((!kind || strcmp(kind, "disk") == 0) && replicated(rs, dev, &i)) {
                                xmlNodePtr s;
                                while ((s = child(c, "source")))
                                        drop_node(s);
                                while ((s = child(c, "backingStore")))
                                        drop_node(s);
                                xmlSetProp(c, BAD_CAST "type", BAD_CAST "file");
                                xmlNodePtr drv = child(c, "driver");
                                if (drv)
                                        xmlSetProp(drv, BAD_CAST "type", BAD_CAST "qcow2");
                                xmlNodePtr src = xmlNewNode(NULL, BAD_CAST "source");
                                xmlSetProp(src, BAD_CAST "file", BAD_CAST paths[i]);
                                xmlAddChild(c, src);
                        } else {
                                json_object_array_add(left_out,
                                                      json_object_new_string(dev ? dev : "disk"));
                                drop_node(c);
                        }
                } else if (xmlStrEqual(c->name, BAD_CAST "interface")) {
                        _cleanup_free_ char *type = nst_xml_attr(c, "type");
                        if (type && strcmp(type, "hostdev") == 0) {
                                json_object_array_add(left_out,
                                                      json_object_new_string("sr-iov interface"));
                                drop_node(c);
                        } else {
                                set_link(c, "down");
                        }
                } else if (xmlStrEqual(c->name, BAD_CAST "hostdev")) {
                        json_object_array_add(left_out, json_object_new_string("hostdev"));
                        drop_node(c);
                }
        }
        /* The source's PCI claims are the source's: the target's sriov plugin
         * must not try to restore them. */
        _cleanup_(xmlXPathFreeContextp) xmlXPathContextPtr ctx = nst_xpath_new(doc);
        _cleanup_(xmlXPathFreeObjectp) xmlXPathObjectPtr claims =
                ctx ? nst_xpath_nodes(ctx, NULL, "//*[local-name()='claim']") : NULL;
        for (int i = 0; i < nst_xpath_count(claims); i++) {
                xmlUnlinkNode(claims->nodesetval->nodeTab[i]);
                xmlFreeNode(claims->nodesetval->nodeTab[i]);
                claims->nodesetval->nodeTab[i] = NULL;
        }
        xmlChar *out = NULL;
        int len = 0;
        xmlDocDumpMemory(doc, &out, &len);
        if (!out)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        *ret = strdup((const char *)out);
        xmlFree(out);
        return *ret ? 0 : nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
}

static void free_paths(char **paths, size_t n) {
        for (size_t i = 0; paths && i < n; i++)
                free(paths[i]);
        free(paths);
}

/* Defines and starts a domain on point `point` of r; *ret_info describes it. */
static int recover(struct repl_target *t, struct tgt_repl *r, uint64_t point, bool test,
                   json_object **ret_info, struct nst_error *err) {
        struct repl_plugin *p = t->p;
        char dest[4096];
        snprintf(dest, sizeof(dest), "%s/%s/%s", p->state_dir, test ? "test" : "recovered", r->id);
        int rc = nst_mkdir_p(dest, 0711);
        if (rc < 0)
                return nst_error_set(err, rc, "StorageError", "cannot create %s: %s", dest,
                                     strerror(-rc));
        char **paths = NULL;
        size_t n = nst_rs_disk_count(r->rs);
        pthread_mutex_lock(&r->lock);
        rc = nst_rs_export_for_boot(r->rs, point, dest, &paths, err);
        pthread_mutex_unlock(&r->lock);
        if (rc < 0)
                return rc;
        virConnectPtr conn = NULL;
        virDomainPtr dom = NULL, clash = NULL;
        char *xml = NULL, name[300];
        json_object *left_out = json_object_new_array();
        const char *src_name = meta_str(r, "instance_name");
        if ((rc = p->libvirt->get(p->libvirt->self, &conn, err)) < 0)
                goto fail;
        /* A failover keeps the instance's name and uuid unless this hypervisor
         * already has them (two sites on one libvirt, in labs). */
        clash = test ? NULL : virDomainLookupByUUIDString(conn, r->id);
        if (test)
                snprintf(name, sizeof(name), "%s-test-p%llu", src_name, (unsigned long long)point);
        else
                snprintf(name, sizeof(name), "%s-recovered", src_name);
        rc = recovered_xml(meta_str(r, "domain_xml"), r->rs, paths, test || clash ? name : NULL,
                           &xml, left_out, err);
        if (rc < 0)
                goto fail;
        if (!(dom = virDomainDefineXML(conn, xml))) {
                rc = nst_lv_error(err, -EIO, "HypervisorError", "cannot define the %s instance",
                                  test ? "test" : "recovered");
                goto fail;
        }
        if (virDomainCreate(dom) < 0) {
                rc = nst_lv_error(err, -EIO, "HypervisorError", "cannot start the %s instance",
                                  test ? "test" : "recovered");
                virDomainUndefineFlags(dom, VIR_DOMAIN_UNDEFINE_NVRAM);
                goto fail;
        }
        char uuid[VIR_UUID_STRING_BUFLEN];
        virDomainGetUUIDString(dom, uuid);
        json_object *info = json_object_new_object();
        json_object_object_add(info, "point", json_object_new_int64((int64_t)point));
        json_object_object_add(info, "domain_uuid", json_object_new_string(uuid));
        json_object_object_add(info, "domain_name", json_object_new_string(virDomainGetName(dom)));
        json_object_object_add(info, "network", json_object_new_string("disconnected"));
        json_object_object_add(info, "left_out", left_out);
        json_object_object_add(info, "dir", json_object_new_string(dest));
        json_object_object_add(info, "time_ms", json_object_new_int64(repl_now_ms()));
        left_out = NULL;
        *ret_info = info;
        rc = 0;
        goto done;
fail:;
        struct nst_error e = NST_ERROR_INIT;
        pthread_mutex_lock(&r->lock);
        if (nst_rs_release_boot(r->rs, dest, &e) < 0)
                log_warning("replica %s: %s", r->id, e.message);
        pthread_mutex_unlock(&r->lock);
done:
        json_object_put(left_out);
        free(xml);
        free_paths(paths, n);
        if (dom)
                virDomainFree(dom);
        if (clash)
                virDomainFree(clash);
        if (conn)
                virConnectClose(conn);
        return rc;
}

/* Runs the probe for one address: true when the primary answers. */
static bool probe_answers(const char *command, const char *address, char *why, size_t why_size) {
        for (const char *c = address; *c; c++)
                if (!isxdigit((unsigned char)*c) && *c != '.' && *c != ':' && *c != '-' &&
                    !isalnum((unsigned char)*c)) {
                        snprintf(why, why_size, "address '%.64s' skipped: not an address", address);
                        return false;
                }
        char buf[1024];
        snprintf(buf, sizeof(buf), "%s", command);
        const char *argv[32];
        char resolved[512];
        size_t n = 0;
        for (char *save = NULL, *tok = strtok_r(buf, " \t", &save); tok && n < 31;
             tok = strtok_r(NULL, " \t", &save))
                argv[n++] = strcmp(tok, "{address}") == 0 ? address : tok;
        argv[n] = NULL;
        if (n == 0)
                return false;
        if (argv[0][0] != '/') {
                static const char *const dirs[] = {"/usr/bin", "/bin", "/usr/sbin", "/sbin"};
                bool found = false;
                for (size_t i = 0; i < NST_ARRAY_SIZE(dirs) && !found; i++) {
                        snprintf(resolved, sizeof(resolved), "%s/%s", dirs[i], argv[0]);
                        found = access(resolved, X_OK) == 0;
                }
                if (!found) {
                        snprintf(why, why_size, "probe command %s not found", argv[0]);
                        return false;
                }
                argv[0] = resolved;
        }
        char out[512];
        int status = 0;
        struct nst_error e = NST_ERROR_INIT;
        if (nst_run(argv, out, sizeof(out), 15000, &status, &e) < 0) {
                snprintf(why, why_size, "probe of %.64s failed to run: %.300s", address, e.message);
                return false;
        }
        bool up = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        snprintf(why, why_size, "%s %s", address, up ? "answers" : "does not answer");
        return up;
}

/* 0 when the primary is neither running (per its agent) nor reachable. */
static int primary_check(struct repl_target *t, struct tgt_repl *r, json_object *checks,
                         struct nst_error *err) {
        struct repl_plugin *p = t->p;
        const char *source = meta_str(r, "source_host");
        bool running, migrated;
        char text[600];
        struct nst_error e = NST_ERROR_INIT;
        ask_primary(p, source, r->id, &running, &migrated, text, sizeof(text), &e);
        json_object_array_add(checks, json_object_new_string(text));
        if (running)
                return nst_error_set(err, -EBUSY, "PrimaryAlive",
                                     "the primary instance %s is running on %s; stop it first, "
                                     "or force with a reason",
                                     meta_str(r, "instance_name"), source);
        /* It may run on its new host, which this replica's source does not
         * know. */
        if (migrated)
                return nst_error_set(err, -EBUSY, "PrimaryMigrated",
                                     "the primary instance %s was migrated away from %s and may "
                                     "be running on another host; failover refused (force with "
                                     "a reason once it is known to be down)",
                                     meta_str(r, "instance_name"), source);
        json_object *probes = json_object_object_get(nst_rs_meta(r->rs), "probe_addresses");
        for (size_t i = 0; p->o.probe_command && i < json_object_array_length(probes); i++) {
                const char *addr = json_object_get_string(json_object_array_get_idx(probes, i));
                if (!addr)
                        continue;
                bool up = probe_answers(p->o.probe_command, addr, text, sizeof(text));
                json_object_array_add(checks, json_object_new_string(text));
                if (up)
                        return nst_error_set(err, -EBUSY, "PrimaryReachable",
                                             "the primary instance %s is reachable at %s; "
                                             "failover refused (force with a reason to override)",
                                             meta_str(r, "instance_name"), addr);
        }
        return 0;
}

static int choose_point(struct tgt_repl *r, json_object *args, const char *method,
                        uint64_t *ret, struct nst_error *err) {
        int64_t want = 0;
        int rc = nst_json_opt_int64(args, "point", method, &want, err);
        if (rc < 0)
                return rc;
        pthread_mutex_lock(&r->lock);
        size_t n = nst_rs_point_count(r->rs);
        if (n == 0)
                rc = nst_error_set(err, -ENOENT, "NoCommittedPoint",
                                   "%s: replication %s has no committed point yet: nothing to "
                                   "recover from",
                                   method, r->id);
        else if (want == 0)
                *ret = nst_rs_point_at(r->rs, n - 1)->id;
        else if (want < 0 || !nst_rs_point_find(r->rs, (uint64_t)want))
                rc = nst_error_set(err, -ENOENT, "PointNotFound",
                                   "%s: replication %s has no point %lld (points %llu to %llu)",
                                   method, r->id, (long long)want,
                                   (unsigned long long)nst_rs_point_at(r->rs, 0)->id,
                                   (unsigned long long)nst_rs_point_at(r->rs, n - 1)->id);
        else
                *ret = (uint64_t)want;
        pthread_mutex_unlock(&r->lock);
        return rc;
}

static int save_meta_key(struct tgt_repl *r, const char *key, json_object *value,
                         struct nst_error *err) {
        pthread_mutex_lock(&r->lock);
        json_object *meta = json_object_get(nst_rs_meta(r->rs));
        json_object *copy = NULL;
        json_object_deep_copy(meta, &copy, NULL);
        json_object_put(meta);
        if (value)
                json_object_object_add(copy, key, value);
        else
                json_object_object_del(copy, key);
        int rc = nst_rs_set_meta(r->rs, copy, err);
        json_object_put(copy);
        pthread_mutex_unlock(&r->lock);
        return rc;
}

static int m_failover(struct nst_call *call, json_object *args, void *ud, json_object **ret,
                      struct nst_error *err) {
        struct repl_target *t = ud;
        static const char *const allowed[] = {"replication", "point", "force", "reason", NULL};
        const char *m = "replication_failover";
        const char *id = NULL, *reason = NULL;
        bool force = false;
        int rc = id_arg(args, m, allowed, &id, err);
        if (rc < 0 || (rc = nst_json_opt_bool(args, "force", m, &force, err)) < 0 ||
            (rc = nst_json_opt_string(args, "reason", m, &reason, err)) < 0)
                return rc;
        if (force && (!reason || !*reason))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s: force needs a reason (it is logged and reported)", m);
        struct tgt_repl *r = NULL;
        if ((rc = claim(t, id, m, &r, err)) < 0)
                return rc;
        uint64_t point = 0;
        json_object *checks = json_object_new_array(), *info = NULL;
        if (json_object_object_get(nst_rs_meta(r->rs), "failover"))
                rc = nst_error_set(err, -EALREADY, "ReplicationFailedOver",
                                   "%s: replication %s was already failed over here", m, id);
        if (rc >= 0)
                rc = choose_point(r, args, m, &point, err);
        if (rc >= 0 && !force) {
                rc = primary_check(t, r, checks, err);
                if (rc < 0) {
                        json_object *d = event_data(r);
                        json_object_object_add(d, "reason", json_object_new_string(err->message));
                        json_object_object_add(d, "checks", json_object_get(checks));
                        log_warning("failover of %s refused: %s", id, err->message);
                        repl_notify(t->p, "replication.failover_refused", d, NULL);
                }
        } else if (rc >= 0) {
                log_warning("FORCED failover of replication %s (%s) to point %llu: %s", id,
                            meta_str(r, "instance_name"), (unsigned long long)point, reason);
        }
        if (rc >= 0) {
                json_object *d = event_data(r);
                json_object_object_add(d, "point_id", json_object_new_int64((int64_t)point));
                repl_notify(t->p, "replication.failover.start", d, NULL);
                rc = recover(t, r, point, false, &info, err);
                if (rc < 0) {
                        d = event_data(r);
                        repl_notify(t->p, "replication.failover.error", d, err);
                }
        }
        if (rc >= 0) {
                json_object_object_add(info, "forced", json_object_new_boolean(force));
                json_object_object_add(info, "reason", nst_json_string_or_null(reason));
                json_object_object_add(info, "checks", json_object_get(checks));
                struct nst_error e = NST_ERROR_INIT;
                if (save_meta_key(r, "failover", json_object_get(info), &e) < 0)
                        log_error("replica %s: cannot record the failover: %s", id, e.message);
                json_object *d = event_data(r);
                json_object_object_add(d, "point_id", json_object_new_int64((int64_t)point));
                json_object_object_add(d, "forced", json_object_new_boolean(force));
                json_object_object_add(d, "reason", nst_json_string_or_null(reason));
                json_object_object_add(d, "domain_name", json_object_get(json_object_object_get(
                                                                 info, "domain_name")));
                repl_notify(t->p, "replication.failover.end", d, NULL);
                log_info("replication %s failed over to point %llu as %s (network disconnected)",
                         id, (unsigned long long)point,
                         json_object_get_string(json_object_object_get(info, "domain_name")));
                *ret = info;
        }
        json_object_put(checks);
        unclaim(t, r);
        return rc;
}

static int m_test_failover(struct nst_call *call, json_object *args, void *ud,
                           json_object **ret, struct nst_error *err) {
        struct repl_target *t = ud;
        static const char *const allowed[] = {"replication", "point", NULL};
        const char *m = "replication_test_failover";
        const char *id = NULL;
        int rc = id_arg(args, m, allowed, &id, err);
        struct tgt_repl *r = NULL;
        if (rc < 0 || (rc = claim(t, id, m, &r, err)) < 0)
                return rc;
        uint64_t point = 0;
        json_object *info = NULL;
        if (json_object_object_get(nst_rs_meta(r->rs), "test_failover"))
                rc = nst_error_set(err, -EALREADY, "TestFailoverExists",
                                   "%s: a test failover of %s runs already; "
                                   "replication_test_cleanup it first",
                                   m, id);
        if (rc >= 0)
                rc = choose_point(r, args, m, &point, err);
        if (rc >= 0)
                rc = recover(t, r, point, true, &info, err);
        if (rc >= 0) {
                if ((rc = save_meta_key(r, "test_failover", json_object_get(info), err)) < 0)
                        json_object_put(info);
                else
                        *ret = info;
        }
        unclaim(t, r);
        if (rc >= 0) {
                json_object *d = event_data(r);
                json_object_object_add(d, "point_id", json_object_new_int64((int64_t)point));
                repl_notify(t->p, "replication.test_failover.end", d, NULL);
        }
        return rc;
}

static int open_recorded_domain(struct repl_target *t, json_object *info, virConnectPtr *conn,
                                virDomainPtr *dom, struct nst_error *err) {
        const char *uuid = json_object_get_string(json_object_object_get(info, "domain_uuid"));
        int rc = t->p->libvirt->get(t->p->libvirt->self, conn, err);
        if (rc < 0)
                return rc;
        if (!uuid || !(*dom = virDomainLookupByUUIDString(*conn, uuid))) {
                virConnectClose(*conn);
                *conn = NULL;
                return nst_error_set(err, -ENOENT, "InstanceNotFound",
                                     "the recovered instance %s is gone from this host",
                                     uuid ? uuid : "(unknown)");
        }
        return 0;
}

static int m_test_cleanup(struct nst_call *call, json_object *args, void *ud,
                          json_object **ret, struct nst_error *err) {
        struct repl_target *t = ud;
        static const char *const allowed[] = {"replication", NULL};
        const char *m = "replication_test_cleanup";
        const char *id = NULL;
        int rc = id_arg(args, m, allowed, &id, err);
        struct tgt_repl *r = NULL;
        if (rc < 0 || (rc = claim(t, id, m, &r, err)) < 0)
                return rc;
        json_object *info = json_object_get(json_object_object_get(nst_rs_meta(r->rs),
                                                                   "test_failover"));
        if (!info)
                rc = nst_error_set(err, -ENOENT, "TestFailoverNotFound",
                                   "%s: replication %s has no test failover", m, id);
        virConnectPtr conn = NULL;
        virDomainPtr dom = NULL;
        struct nst_error e = NST_ERROR_INIT;
        if (rc >= 0 && open_recorded_domain(t, info, &conn, &dom, &e) == 0) {
                if (virDomainIsActive(dom) == 1 && virDomainDestroy(dom) < 0)
                        rc = nst_lv_error(err, -EIO, "HypervisorError",
                                          "cannot stop the test instance");
                if (rc >= 0 && virDomainUndefineFlags(dom, VIR_DOMAIN_UNDEFINE_NVRAM) < 0)
                        rc = nst_lv_error(err, -EIO, "HypervisorError",
                                          "cannot undefine the test instance");
                virDomainFree(dom);
                virConnectClose(conn);
        }
        const char *dir = json_object_get_string(json_object_object_get(info, "dir"));
        if (rc >= 0 && dir) {
                pthread_mutex_lock(&r->lock);
                rc = nst_rs_release_boot(r->rs, dir, err);
                pthread_mutex_unlock(&r->lock);
                if (rc >= 0)
                        rmdir(dir);
        }
        if (rc >= 0)
                rc = save_meta_key(r, "test_failover", NULL, err);
        if (rc >= 0) {
                json_object *o = json_object_new_object();
                json_object_object_add(o, "replication", json_object_new_string(id));
                json_object_object_add(o, "removed", json_object_get(json_object_object_get(
                                                             info, "domain_name")));
                *ret = o;
        }
        json_object_put(info);
        unclaim(t, r);
        return rc;
}

static int m_connect_network(struct nst_call *call, json_object *args, void *ud,
                             json_object **ret, struct nst_error *err) {
        struct repl_target *t = ud;
        static const char *const allowed[] = {"replication", "test", NULL};
        const char *m = "replication_connect_network";
        const char *id = NULL;
        bool test = false;
        int rc = id_arg(args, m, allowed, &id, err);
        if (rc < 0 || (rc = nst_json_opt_bool(args, "test", m, &test, err)) < 0)
                return rc;
        struct tgt_repl *r = NULL;
        if ((rc = claim(t, id, m, &r, err)) < 0)
                return rc;
        const char *key = test ? "test_failover" : "failover";
        json_object *info = json_object_get(json_object_object_get(nst_rs_meta(r->rs), key));
        virConnectPtr conn = NULL;
        virDomainPtr dom = NULL;
        if (!info)
                rc = nst_error_set(err, -ENOENT, "NotFailedOver",
                                   "%s: replication %s has no %s instance here", m, id,
                                   test ? "test" : "recovered");
        if (rc >= 0)
                rc = open_recorded_domain(t, info, &conn, &dom, err);
        char *xml = NULL;
        if (rc >= 0 && !(xml = virDomainGetXMLDesc(dom, 0)))
                rc = nst_lv_error(err, -EIO, "HypervisorError", "cannot read the instance");
        _cleanup_(xmlFreeDocp) xmlDocPtr doc = NULL;
        if (rc >= 0)
                rc = nst_xml_parse(xml, "the instance's definition", "HypervisorError", &doc, err);
        json_object *nics = json_object_new_array();
        xmlNodePtr devices = rc >= 0 ? child(xmlDocGetRootElement(doc), "devices") : NULL;
        for (xmlNodePtr c = devices ? devices->children : NULL; rc >= 0 && c; c = c->next) {
                if (c->type != XML_ELEMENT_NODE || !xmlStrEqual(c->name, BAD_CAST "interface"))
                        continue;
                set_link(c, "up");
                xmlBufferPtr b = xmlBufferCreate();
                xmlNodeDump(b, doc, c, 0, 0);
                unsigned flags = VIR_DOMAIN_AFFECT_CONFIG;
                if (virDomainIsActive(dom) == 1)
                        flags |= VIR_DOMAIN_AFFECT_LIVE;
                if (virDomainUpdateDeviceFlags(dom, (const char *)xmlBufferContent(b), flags) < 0)
                        rc = nst_lv_error(err, -EIO, "HypervisorError",
                                          "cannot bring a NIC's link up");
                xmlBufferFree(b);
                _cleanup_free_ char *mac = nst_xml_attr(child(c, "mac"), "address");
                json_object *nic = json_object_new_object();
                json_object_object_add(nic, "mac", nst_json_string_or_null(mac));
                json_object_object_add(nic, "link", json_object_new_string("up"));
                json_object_array_add(nics, nic);
        }
        free(xml);
        if (dom)
                virDomainFree(dom);
        if (conn)
                virConnectClose(conn);
        if (rc >= 0) {
                json_object *copy = NULL;
                json_object_deep_copy(info, &copy, NULL);
                json_object_object_add(copy, "network", json_object_new_string("connected"));
                rc = save_meta_key(r, key, copy, err);
        }
        unclaim(t, r);
        json_object_put(info);
        if (rc < 0) {
                json_object_put(nics);
                return rc;
        }
        json_object *o = json_object_new_object();
        json_object_object_add(o, "replication", json_object_new_string(id));
        json_object_object_add(o, "network", json_object_new_string("connected"));
        json_object_object_add(o, "interfaces", nics);
        *ret = o;
        json_object *d = event_data(r);
        repl_notify(t->p, "replication.network_connected", d, NULL);
        return 0;
}

const struct nst_method repl_target_methods[] = {
        {"replication_target_prepare", "1.0", m_prepare, NULL},
        {"replication_target_remove", "1.0", m_remove, NULL},
        {"replication_failover", "1.0", m_failover, NULL},
        {"replication_test_failover", "1.0", m_test_failover, NULL},
        {"replication_test_cleanup", "1.0", m_test_cleanup, NULL},
        {"replication_connect_network", "1.0", m_connect_network, NULL},
};
const size_t repl_target_n_methods = NST_ARRAY_SIZE(repl_target_methods);
