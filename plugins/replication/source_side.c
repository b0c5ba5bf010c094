/* The source role of the replication plugin: the replications of this
 * node's instances, their schedule, and the cycles that ship changed blocks
 * to the target (docs/replication.md).
 *
 * Each replication has a record, <state_dir>/source/<uuid>.json, written
 * atomically whenever something in it changes; the last checkpoint named
 * there is the one whose point the target has committed. A scheduler thread
 * asks repl_sched.c what is due and hands it to a pool of runner threads
 * (max_concurrent_cycles). A cycle:
 *   1. starts a pull-mode backup with a new checkpoint (repl_source.c),
 *      incremental from the last committed checkpoint, or full, or a
 *      hash-compare resync when there is a seed or the chain broke;
 *   2. connects to the target's data channel (repl_channel.c) with the
 *      replication's pre-shared key and says which cycle it ships;
 *   3. ships data and zero extents, asking the target to make them durable
 *      every mark_interval_mb; a broken connection is retried and resumes at
 *      the target's last mark;
 *   4. commits: the target makes the cycle a point; only then the record
 *      moves to the new checkpoint and the older ones are deleted.
 * A failed cycle deletes its new checkpoint, so the next one is a
 * differential from the last committed point: nothing is lost, nothing is
 * shipped twice more than needed. */
#define NST_LOG_MODULE "replication"

#include <dirent.h>
#include <errno.h>
#include <libvirt/virterror.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/fs_util.h"
#include "agent/log.h"
#include "messages/json_util.h"
#include "plugins/libvirt/domain_xml.h"
#include "plugins/libvirt/lv_util.h"
#include "plugins/replication/repl_plugin.h"
#include "plugins/replication/repl_presence.h"
#include "plugins/replication/repl_sched.h"
#include "plugins/replication/repl_source.h"
#include "plugins/replication/repl_wire.h"

NST_DEFINE_CLEANUP(DIR, closedir)

#define HASH_BATCH_BLOCKS 256 /* 16 MiB of 64 KiB blocks per hash exchange */
#define HASH_BLOCK (UINT32_C(64) * 1024)

struct src_repl {
        /* persisted */
        char id[37];
        char name[256];
        char target_host[256];
        char target_address[256];
        int target_port;
        int64_t rpo_s;
        char disks[NST_SRC_MAX_DISKS][32];
        size_t n_disks;
        enum nst_src_quiesce quiesce;
        unsigned points_in_time;
        bool compress;
        uint64_t bandwidth; /* bytes/s, 0 = unlimited */
        uint8_t psk[NST_RC_PSK_LEN];
        bool paused;
        bool seeded;        /* the target has seeds: the first cycle compares hashes */
        bool resync_needed; /* the checkpoint chain broke: compare hashes */
        char last_checkpoint[64];
        uint64_t checkpoint_seq;
        int64_t last_point_ms;
        uint64_t last_point_id;
        uint64_t bytes_total, wire_total, cycles_total;
        int64_t created_ms;
        /* Where the instance is (events and the checks of cycles and
         * replication_primary_state), and since when. */
        enum repl_presence presence;
        int64_t presence_ms;
        /* The instance's new host took the replica over (its target said
         * so): no more cycles from here. "" while this host is the source. */
        char replaced_by[256];
        /* runtime */
        uint64_t sched_id;
        bool running, removed, stale_checked, violation;
        /* Set (under the lock) by pause and disable while a cycle runs: the
         * cycle stops at its next extent, like a failed one on the target,
         * without counting as a failure. Why, for its error. */
        bool cancel;
        const char *cancel_why;
        char phase[32];
        char cycle_kind[16];
        char last_kind[16];
        uint64_t progress_done, progress_total;
        int64_t cycle_started_ms;
        uint64_t last_bytes, last_zeroed, last_wire;
        int64_t last_duration_ms, last_end_ms;
        bool last_quiesced;
        struct nst_error last_error;
        unsigned failures;
        /* Bytes changed since last_checkpoint as libvirt counted them at
         * pending_at_ms (0: not asked yet), the scheduler's hint. */
        uint64_t pending_bytes;
        int64_t pending_at_ms;
        /* The QEMU process (libvirt domain id) that created last_checkpoint
         * in a committed cycle, and the disk sizes it had then; NO_DOM_ID
         * when unknown (after a restart or a failed cycle). */
        unsigned verified_dom_id;
        uint64_t verified_sizes[NST_SRC_MAX_DISKS];
};

#define NO_DOM_ID ((unsigned)-1) /* what virDomainGetID returns on error */

struct repl_source {
        struct repl_plugin *p;
        pthread_mutex_t lock;
        pthread_cond_t wake; /* the scheduler thread */
        pthread_cond_t work; /* runner threads */
        struct src_repl **items;
        size_t n_items, cap_items;
        uint64_t next_sched_id;
        struct nst_sched *sched;
        uint64_t *queue;
        size_t q_len, q_cap;
        pthread_t sched_thread, hint_thread;
        pthread_t *runners;
        size_t n_runners;
        bool sched_started, hint_started, stopping, watching;
        pthread_cond_t hint_wake; /* the hint thread: stopping */
        char *dir;
};

/* The scheduler's changed-bytes hints: every HINT_INTERVAL_MS libvirt is
 * asked, for the HINT_BATCH idle replications due soonest, how many bytes
 * changed since their committed checkpoint (it knows without reading any).
 * Bounded so that thousands of replications cost a few calls a second. */
#define HINT_INTERVAL_MS 5000
#define HINT_BATCH 16

/* How long replication_disable waits for the cycle it cancels to end. */
#define DISABLE_WAIT_S 30

static const char *const quiesce_names[] = {"off", "preferred", "required"};

/* ---- records ---- */

static struct src_repl *find_locked(struct repl_source *s, const char *id) {
        for (size_t i = 0; i < s->n_items; i++)
                if (!s->items[i]->removed && strcmp(s->items[i]->id, id) == 0)
                        return s->items[i];
        return NULL;
}

static struct src_repl *find_sched_locked(struct repl_source *s, uint64_t sched_id) {
        for (size_t i = 0; i < s->n_items; i++)
                if (s->items[i]->sched_id == sched_id)
                        return s->items[i];
        return NULL;
}

static json_object *record_to_json(const struct src_repl *r) {
        json_object *o = json_object_new_object();
        char psk[2 * NST_RC_PSK_LEN + 1];
        repl_hex_encode(r->psk, NST_RC_PSK_LEN, psk);
        json_object *disks = json_object_new_array();
        for (size_t i = 0; i < r->n_disks; i++)
                json_object_array_add(disks, json_object_new_string(r->disks[i]));
        json_object_object_add(o, "replication", json_object_new_string(r->id));
        json_object_object_add(o, "instance_name", json_object_new_string(r->name));
        json_object_object_add(o, "target_host", json_object_new_string(r->target_host));
        json_object_object_add(o, "target_address", json_object_new_string(r->target_address));
        json_object_object_add(o, "target_port", json_object_new_int(r->target_port));
        json_object_object_add(o, "rpo", json_object_new_int64(r->rpo_s));
        json_object_object_add(o, "disks", disks);
        json_object_object_add(o, "quiesce", json_object_new_string(quiesce_names[r->quiesce]));
        json_object_object_add(o, "points_in_time", json_object_new_int((int)r->points_in_time));
        json_object_object_add(o, "compress", json_object_new_boolean(r->compress));
        json_object_object_add(o, "bandwidth_limit", json_object_new_int64((int64_t)r->bandwidth));
        json_object_object_add(o, "psk", json_object_new_string(psk));
        json_object_object_add(o, "paused", json_object_new_boolean(r->paused));
        json_object_object_add(o, "seeded", json_object_new_boolean(r->seeded));
        json_object_object_add(o, "resync_needed", json_object_new_boolean(r->resync_needed));
        json_object_object_add(o, "last_checkpoint", json_object_new_string(r->last_checkpoint));
        json_object_object_add(o, "checkpoint_seq", json_object_new_int64((int64_t)r->checkpoint_seq));
        json_object_object_add(o, "last_point_ms", json_object_new_int64(r->last_point_ms));
        json_object_object_add(o, "last_point_id", json_object_new_int64((int64_t)r->last_point_id));
        json_object_object_add(o, "bytes_total", json_object_new_int64((int64_t)r->bytes_total));
        json_object_object_add(o, "wire_total", json_object_new_int64((int64_t)r->wire_total));
        json_object_object_add(o, "cycles_total", json_object_new_int64((int64_t)r->cycles_total));
        json_object_object_add(o, "created_ms", json_object_new_int64(r->created_ms));
        json_object_object_add(o, "instance_presence",
                               json_object_new_string(repl_presence_name(r->presence)));
        json_object_object_add(o, "presence_since_ms", json_object_new_int64(r->presence_ms));
        if (r->replaced_by[0])
                json_object_object_add(o, "replaced_by", json_object_new_string(r->replaced_by));
        return o;
}

static int copy_field(json_object *o, const char *key, char *dst, size_t size, const char *path,
                      struct nst_error *err) {
        json_object *v = json_object_object_get(o, key);
        if (!v || !json_object_is_type(v, json_type_string) ||
            (size_t)json_object_get_string_len(v) >= size)
                return nst_error_set(err, -EBADMSG, "ReplicaCorrupt", "%s: bad or missing '%s'",
                                     path, key);
        memcpy(dst, json_object_get_string(v), (size_t)json_object_get_string_len(v) + 1);
        return 0;
}

static int64_t get_i64(json_object *o, const char *key) {
        return json_object_get_int64(json_object_object_get(o, key));
}

static int record_from_json(json_object *o, const char *path, struct src_repl *r,
                            struct nst_error *err) {
        char psk[2 * NST_RC_PSK_LEN + 1], quiesce[16];
        int rc;
        if ((rc = copy_field(o, "replication", r->id, sizeof(r->id), path, err)) < 0 ||
            (rc = copy_field(o, "instance_name", r->name, sizeof(r->name), path, err)) < 0 ||
            (rc = copy_field(o, "target_host", r->target_host, sizeof(r->target_host), path,
                             err)) < 0 ||
            (rc = copy_field(o, "target_address", r->target_address, sizeof(r->target_address),
                             path, err)) < 0 ||
            (rc = copy_field(o, "psk", psk, sizeof(psk), path, err)) < 0 ||
            (rc = copy_field(o, "quiesce", quiesce, sizeof(quiesce), path, err)) < 0 ||
            (rc = copy_field(o, "last_checkpoint", r->last_checkpoint,
                             sizeof(r->last_checkpoint), path, err)) < 0)
                return rc;
        if (!repl_uuid_valid(r->id) || repl_hex_decode(psk, r->psk, NST_RC_PSK_LEN) < 0)
                return nst_error_set(err, -EBADMSG, "ReplicaCorrupt",
                                     "%s: bad replication id or key", path);
        r->quiesce = NST_SRC_QUIESCE_OFF;
        for (size_t i = 0; i < NST_ARRAY_SIZE(quiesce_names); i++)
                if (strcmp(quiesce, quiesce_names[i]) == 0)
                        r->quiesce = (enum nst_src_quiesce)i;
        json_object *disks = json_object_object_get(o, "disks");
        if (!json_object_is_type(disks, json_type_array) || json_object_array_length(disks) == 0 ||
            json_object_array_length(disks) > NST_SRC_MAX_DISKS)
                return nst_error_set(err, -EBADMSG, "ReplicaCorrupt", "%s: bad 'disks'", path);
        r->n_disks = json_object_array_length(disks);
        for (size_t i = 0; i < r->n_disks; i++)
                snprintf(r->disks[i], sizeof(r->disks[i]), "%s",
                         json_object_get_string(json_object_array_get_idx(disks, i)));
        r->target_port = (int)get_i64(o, "target_port");
        r->rpo_s = get_i64(o, "rpo");
        r->points_in_time = (unsigned)get_i64(o, "points_in_time");
        r->compress = json_object_get_boolean(json_object_object_get(o, "compress"));
        r->bandwidth = (uint64_t)get_i64(o, "bandwidth_limit");
        r->paused = json_object_get_boolean(json_object_object_get(o, "paused"));
        r->seeded = json_object_get_boolean(json_object_object_get(o, "seeded"));
        r->resync_needed = json_object_get_boolean(json_object_object_get(o, "resync_needed"));
        r->checkpoint_seq = (uint64_t)get_i64(o, "checkpoint_seq");
        r->last_point_ms = get_i64(o, "last_point_ms");
        r->last_point_id = (uint64_t)get_i64(o, "last_point_id");
        r->bytes_total = (uint64_t)get_i64(o, "bytes_total");
        r->wire_total = (uint64_t)get_i64(o, "wire_total");
        r->cycles_total = (uint64_t)get_i64(o, "cycles_total");
        r->created_ms = get_i64(o, "created_ms");
        /* Records from before presence was kept: assumed here until seen. */
        json_object *presence = json_object_object_get(o, "instance_presence");
        int pr = presence ? repl_presence_parse(json_object_get_string(presence))
                          : REPL_PRESENCE_HERE;
        if (pr < 0)
                return nst_error_set(err, -EBADMSG, "ReplicaCorrupt",
                                     "%s: bad 'instance_presence'", path);
        r->presence = (enum repl_presence)pr;
        r->presence_ms = get_i64(o, "presence_since_ms");
        if (json_object_object_get(o, "replaced_by") &&
            (rc = copy_field(o, "replaced_by", r->replaced_by, sizeof(r->replaced_by), path,
                             err)) < 0)
                return rc;
        if (r->rpo_s < REPL_RPO_MIN_S || r->rpo_s > REPL_RPO_MAX_S)
                return nst_error_set(err, -EBADMSG, "ReplicaCorrupt", "%s: bad 'rpo'", path);
        return 0;
}

static void record_path(const struct repl_source *s, const char *id, char *buf, size_t size) {
        snprintf(buf, size, "%s/%s.json", s->dir, id);
}

/* Caller holds the lock (the record is copied into JSON under it). */
static int record_save_locked(struct repl_source *s, const struct src_repl *r,
                              struct nst_error *err) {
        char path[4096];
        record_path(s, r->id, path, sizeof(path));
        json_object *o = record_to_json(r);
        int rc = repl_write_json(path, o, err);
        json_object_put(o);
        return rc;
}

static void record_save_logged_locked(struct repl_source *s, const struct src_repl *r) {
        struct nst_error e = NST_ERROR_INIT;
        if (record_save_locked(s, r, &e) < 0)
                log_error("replication %s: cannot save its record: %s", r->id, e.message);
}

static int add_locked(struct repl_source *s, struct src_repl *r) {
        if (s->n_items == s->cap_items) {
                size_t cap = s->cap_items ? 2 * s->cap_items : 16;
                struct src_repl **n = realloc(s->items, cap * sizeof(*n));
                if (!n)
                        return -ENOMEM;
                s->items = n;
                s->cap_items = cap;
        }
        r->sched_id = ++s->next_sched_id;
        r->verified_dom_id = NO_DOM_ID;
        int rc = nst_sched_add(s->sched, r->sched_id, r->rpo_s * 1000,
                               r->cycles_total ? r->last_point_ms : 0, repl_now_ms());
        if (rc < 0)
                return rc;
        if (r->paused || r->replaced_by[0])
                nst_sched_set_paused(s->sched, r->sched_id, true, repl_now_ms());
        s->items[s->n_items++] = r;
        return 0;
}

static void drop_locked(struct repl_source *s, struct src_repl *r) {
        for (size_t i = 0; i < s->n_items; i++)
                if (s->items[i] == r) {
                        s->items[i] = s->items[--s->n_items];
                        break;
                }
        free(r);
}

/* ---- notifications ---- */

static json_object *event_data(const struct src_repl *r, const char *host) {
        json_object *d = json_object_new_object();
        json_object_object_add(d, "replication", json_object_new_string(r->id));
        json_object_object_add(d, "instance_uuid", json_object_new_string(r->id));
        json_object_object_add(d, "display_name", json_object_new_string(r->name));
        json_object_object_add(d, "source_host", json_object_new_string(host));
        json_object_object_add(d, "target_host", json_object_new_string(r->target_host));
        json_object_object_add(d, "rpo_seconds", json_object_new_int64(r->rpo_s));
        return d;
}

static int mark_replaced_locked(struct repl_source *s, struct src_repl *r, const char *by,
                                struct nst_error *err);

/* ---- where the instance is ---- */

/* Records where the instance is now; when that changed, returns the
 * notification to send once the lock is released (presence_notify). */
static json_object *presence_set_locked(struct repl_source *s, struct src_repl *r,
                                        enum repl_presence now_at, const char *seen_by) {
        if (r->presence == now_at)
                return NULL;
        enum repl_presence was = r->presence;
        r->presence = now_at;
        r->presence_ms = repl_now_ms();
        record_save_logged_locked(s, r);
        if (now_at == REPL_PRESENCE_HERE) {
                log_info("replication %s (%s): the instance runs on this host again (%s)", r->id,
                         r->name, seen_by);
                /* Cycles that failed while it was away left a backoff of up
                 * to 15 minutes: retried now instead. */
                if (r->failures && !r->paused && !r->running) {
                        nst_sched_request_now(s->sched, r->sched_id, repl_now_ms());
                        pthread_cond_broadcast(&s->wake);
                }
        } else {
                log_warning("replication %s (%s): the instance is %s (%s); cycles wait for it",
                            r->id, r->name,
                            now_at == REPL_PRESENCE_STOPPED    ? "not running on this host"
                            : now_at == REPL_PRESENCE_MIGRATED ? "migrated away from this host"
                                                               : "not defined on this host",
                            seen_by);
        }
        json_object *d = event_data(r, s->p->host_name);
        json_object_object_add(d, "presence", json_object_new_string(repl_presence_name(now_at)));
        json_object_object_add(d, "previous_presence",
                               json_object_new_string(repl_presence_name(was)));
        json_object_object_add(d, "seen_by", json_object_new_string(seen_by));
        return d;
}

static void presence_notify(struct repl_source *s, json_object *d) {
        if (!d)
                return;
        const char *now_at = json_object_get_string(json_object_object_get(d, "presence"));
        repl_notify(s->p,
                    strcmp(now_at, repl_presence_name(REPL_PRESENCE_HERE)) == 0
                            ? "replication.instance_available"
                            : "replication.instance_unavailable",
                    d, NULL);
}

/* libvirt's event thread (nst_libvirt_conn_iface.watch). */
static void on_lifecycle(void *userdata, const char *uuid, int event, int detail) {
        struct repl_source *s = userdata;
        pthread_mutex_lock(&s->lock);
        struct src_repl *r = find_locked(s, uuid);
        json_object *d = r ? presence_set_locked(s, r,
                                                 repl_presence_after_event(r->presence, event,
                                                                           detail),
                                                 "libvirt event")
                           : NULL;
        pthread_mutex_unlock(&s->lock);
        presence_notify(s, d);
}

/* Looks the instance up (*ret_dom NULL when it is not defined here) and
 * records where it is; the presence found, or a negative errno when libvirt
 * could not say. */
static int presence_check(struct repl_source *s, const char *id, virConnectPtr *ret_conn,
                          virDomainPtr *ret_dom, struct nst_error *err) {
        *ret_conn = NULL;
        *ret_dom = NULL;
        struct nst_error e = NST_ERROR_INIT;
        int rc = repl_domain_open(s->p, id, ret_conn, ret_dom, &e);
        if (rc < 0 && rc != -ENOENT) {
                *err = e;
                return rc;
        }
        int state = 0, reason = 0;
        if (rc >= 0 && virDomainGetState(*ret_dom, &state, &reason, 0) < 0) {
                rc = nst_lv_error(err, -EIO, "HypervisorError", "instance %s: cannot read its state",
                                  id);
                virDomainFree(*ret_dom);
                virConnectClose(*ret_conn);
                *ret_dom = NULL;
                *ret_conn = NULL;
                return rc;
        }
        pthread_mutex_lock(&s->lock);
        struct src_repl *r = find_locked(s, id);
        enum repl_presence was = r ? r->presence : REPL_PRESENCE_HERE;
        enum repl_presence now_at = repl_presence_from_state(was, rc >= 0, state, reason);
        json_object *d = r ? presence_set_locked(s, r, now_at, "check") : NULL;
        pthread_mutex_unlock(&s->lock);
        presence_notify(s, d);
        return (int)now_at;
}

/* ---- one cycle ---- */

struct cycle {
        struct repl_source *s;
        struct src_repl *r;   /* for progress only, under s->lock */
        struct src_repl cfg;  /* a copy taken when the cycle started */
        virConnectPtr conn;
        virDomainPtr dom;
        struct nst_src_job *job;
        struct nst_rc_conn *ch;
        char new_cp[64];
        const char *kind;
        bool quiesced;
        int64_t point_ms;
        unsigned dom_id;
        uint64_t sizes[NST_SRC_MAX_DISKS]; /* from before the job; checked against it */
        struct nst_src_extent *ext[NST_SRC_MAX_DISKS];
        size_t n_ext[NST_SRC_MAX_DISKS];
        bool resume_valid;
        uint16_t resume_disk;
        uint64_t resume_offset;
        uint16_t disk;        /* being shipped */
        uint64_t since_mark;  /* bytes since the last mark (or the stream's start) */
        int64_t mark_ms;      /* when that was */
        uint64_t shipped;     /* data bytes shipped, this cycle */
        uint64_t zeroed;      /* bytes shipped as zero ranges (no payload) */
        uint64_t wire;        /* channel bytes of closed connections */
        uint64_t target_points;
        int64_t t_hello, t_shipped; /* monotonic ms, for the log */
        uint8_t *cbuf, *rbuf, *hbuf;
        size_t cbuf_cap, rbuf_cap;
};

static void progress(struct cycle *c, const char *phase, uint64_t add) {
        pthread_mutex_lock(&c->s->lock);
        if (phase)
                snprintf(c->r->phase, sizeof(c->r->phase), "%s", phase);
        c->r->progress_done += add;
        pthread_mutex_unlock(&c->s->lock);
}

static bool retryable(const struct nst_error *e) {
        return e->code == -ETIMEDOUT || strcmp(e->cls, "ChannelError") == 0;
}

/* Asks the running cycle of r to stop (s->lock held). */
static void cancel_cycle_locked(struct src_repl *r, const char *why) {
        r->cancel_why = why;
        __atomic_store_n(&r->cancel, true, __ATOMIC_RELEASE);
}

/* CycleCancelled once pause or disable asked the running cycle to stop. */
static int check_cancel(struct cycle *c, struct nst_error *err) {
        if (!__atomic_load_n(&c->r->cancel, __ATOMIC_ACQUIRE))
                return 0;
        pthread_mutex_lock(&c->s->lock);
        const char *why = c->r->cancel_why;
        pthread_mutex_unlock(&c->s->lock);
        return nst_error_set(err, -ECANCELED, "CycleCancelled",
                             "cycle of %s abandoned: the replication was %s", c->cfg.name, why);
}

/* Reads one frame; an ERROR frame from the peer becomes err. */
static int recv_expect(struct cycle *c, uint8_t type, json_object **ret_json,
                       struct nst_error *err) {
        struct nst_rw_header h;
        int r = nst_rc_recv(c->ch, &h, &c->rbuf, &c->rbuf_cap, err);
        if (r < 0)
                return r;
        if (h.type == NST_RW_ERROR) {
                struct nst_error peer;
                nst_rc_peer_error(c->rbuf, h.length, "TargetError", &peer);
                return nst_error_set(err, peer.code, peer.cls, "target %s: %s",
                                     c->cfg.target_host, peer.message);
        }
        if (h.type != type)
                return nst_error_set(err, -EPROTO, "ProtocolError",
                                     "target %s sent %s where %s was expected",
                                     c->cfg.target_host, nst_rw_type_name(h.type),
                                     nst_rw_type_name(type));
        if (ret_json)
                return nst_rc_parse_json(c->rbuf, h.length, ret_json, err);
        return (int)h.length;
}

static int send_mark(struct cycle *c, uint16_t disk, uint64_t offset, struct nst_error *err) {
        uint8_t m[NST_RW_MARK_SIZE];
        nst_rw_mark_encode(m, &(struct nst_rw_mark){.disk = disk, .offset = offset});
        int r = nst_rc_send(c->ch, NST_RW_MARK, 0, m, sizeof(m), NULL, 0, err);
        if (r >= 0)
                r = recv_expect(c, NST_RW_MARK_ACK, NULL, err);
        if (r >= 0) {
                c->since_mark = 0;
                c->mark_ms = repl_mono_ms();
        }
        return r < 0 ? r : 0;
}

/* The target drains its writes and flushes at each mark while the stream
 * waits: often enough that a broken connection loses little, rarely enough
 * that the stalls stay a small part of the cycle. */
static bool mark_due(const struct cycle *c) {
        const struct repl_options *o = &c->s->p->o;
        return c->since_mark >= o->mark_bytes && repl_mono_ms() - c->mark_ms >= o->mark_ms;
}

static int send_zero(struct cycle *c, uint64_t offset, uint64_t length, struct nst_error *err) {
        while (length > 0) {
                uint32_t n = length > NST_RW_MAX_ZERO_EXTENT ? NST_RW_MAX_ZERO_EXTENT
                                                              : (uint32_t)length;
                uint8_t h[NST_RW_EXTENT_SIZE];
                nst_rw_extent_encode(h, &(struct nst_rw_extent){.disk = c->disk, .length = n,
                                                                .offset = offset});
                int r = nst_rc_send(c->ch, NST_RW_ZERO, 0, h, sizeof(h), NULL, 0, err);
                if (r < 0)
                        return r;
                offset += n;
                length -= n;
        }
        return 0;
}

/* digest: nst_rw_digest(data, length), computed by the caller. */
static int send_data(struct cycle *c, uint64_t offset, const void *data, uint32_t length,
                     uint64_t digest, struct nst_error *err) {
        uint8_t h[NST_RW_EXTENT_SIZE];
        nst_rw_extent_encode(h, &(struct nst_rw_extent){.disk = c->disk, .length = length,
                                                        .offset = offset, .digest = digest});
        if (c->cfg.compress) {
                size_t bound = nst_rw_compress_bound(length), clen = 0;
                if (bound > c->cbuf_cap) {
                        uint8_t *n = realloc(c->cbuf, bound);
                        if (!n)
                                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
                        c->cbuf = n;
                        c->cbuf_cap = bound;
                }
                int r = nst_rw_compress(data, length, c->cbuf, c->cbuf_cap, &clen, err);
                if (r == 0)
                        return nst_rc_send(c->ch, NST_RW_DATA, NST_RW_F_ZSTD, h, sizeof(h), c->cbuf,
                                           clen, err);
                if (r != -ENOSPC)
                        return r;
                nst_error_clear(err);
        }
        return nst_rc_send(c->ch, NST_RW_DATA, 0, h, sizeof(h), data, length, err);
}

struct stream_ctx {
        struct cycle *c;
        struct nst_error *err;
};

static int on_extent(void *ud, const struct nst_src_extent *e, const void *data,
                     uint64_t digest) {
        struct stream_ctx *x = ud;
        struct cycle *c = x->c;
        int r = check_cancel(c, x->err);
        if (r < 0)
                return r;
        r = data ? send_data(c, e->offset, data, (uint32_t)e->length, digest, x->err)
                 : send_zero(c, e->offset, e->length, x->err);
        if (r < 0)
                return r;
        if (data) {
                c->shipped += e->length;
                progress(c, NULL, e->length);
        } else {
                c->zeroed += e->length;
        }
        c->since_mark += data ? e->length : 0;
        if (mark_due(c))
                return send_mark(c, c->disk, e->offset + e->length, x->err);
        return 0;
}

static size_t first_extent_from(const struct nst_src_extent *ex, size_t n, uint64_t offset) {
        size_t lo = 0, hi = n;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (ex[mid].offset < offset)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

static bool all_zero(const uint8_t *p, size_t n) {
        return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* Seed and resync: compare 64 KiB block digests with the target's copy and
 * ship only the blocks that differ (zero blocks as zero extents). */
static int ship_disk_by_hash(struct cycle *c, uint64_t from, struct nst_error *err) {
        uint64_t size = c->sizes[c->disk];
        uint64_t nblocks = (size + HASH_BLOCK - 1) / HASH_BLOCK;
        if (!c->hbuf && !(c->hbuf = malloc((size_t)HASH_BATCH_BLOCKS * HASH_BLOCK)))
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        for (uint64_t first = from / HASH_BLOCK; first < nblocks; first += HASH_BATCH_BLOCKS) {
                uint32_t count = (uint32_t)(nblocks - first < HASH_BATCH_BLOCKS ? nblocks - first
                                                                                 : HASH_BATCH_BLOCKS);
                int r = check_cancel(c, err);
                if (r < 0)
                        return r;
                json_object *req = json_object_new_object();
                json_object_object_add(req, "disk", json_object_new_int(c->disk));
                json_object_object_add(req, "first", json_object_new_int64((int64_t)first));
                json_object_object_add(req, "count", json_object_new_int64(count));
                r = nst_rc_send_json(c->ch, NST_RW_HASH_REQ, req, err);
                json_object_put(req);
                if (r < 0 || (r = recv_expect(c, NST_RW_HASHES, NULL, err)) < 0)
                        return r;
                struct nst_rw_hashes hh;
                if ((r = nst_rw_hashes_decode(c->rbuf, (size_t)r, &hh, err)) < 0)
                        return r;
                if (hh.disk != c->disk || hh.first_block != first || hh.count != count)
                        return nst_error_set(err, -EPROTO, "ProtocolError",
                                             "target sent digests of the wrong blocks");
                uint64_t off = first * HASH_BLOCK;
                uint64_t len = size - off < (uint64_t)count * HASH_BLOCK ? size - off
                                                                          : (uint64_t)count * HASH_BLOCK;
                if ((r = nst_src_job_read(c->job, c->disk, off, c->hbuf, len, err)) < 0)
                        return r;
                for (uint32_t b = 0; b < count; b++) {
                        const uint8_t *blk = c->hbuf + (size_t)b * HASH_BLOCK;
                        uint64_t boff = off + (uint64_t)b * HASH_BLOCK;
                        uint32_t blen = (uint32_t)(size - boff < HASH_BLOCK ? size - boff
                                                                            : HASH_BLOCK);
                        uint8_t md[SHA256_DIGEST_LENGTH];
                        SHA256(blk, blen, md);
                        const uint8_t *theirs = c->rbuf + NST_RW_HASHES_HEADER_SIZE +
                                                (size_t)b * NST_RW_HASH_SIZE;
                        if (memcmp(md, theirs, NST_RW_HASH_SIZE) == 0)
                                continue;
                        bool zero = all_zero(blk, blen);
                        r = zero ? send_zero(c, boff, blen, err)
                                 : send_data(c, boff, blk, blen, nst_rw_digest(blk, blen), err);
                        if (r < 0)
                                return r;
                        *(zero ? &c->zeroed : &c->shipped) += blen;
                }
                progress(c, NULL, len);
                c->since_mark += len;
                if (mark_due(c) && (r = send_mark(c, c->disk, off + len, err)) < 0)
                        return r;
        }
        return 0;
}

static int ship(struct cycle *c, struct nst_error *err) {
        bool by_hash = strcmp(c->kind, "seed") == 0 || strcmp(c->kind, "resync") == 0;
        c->since_mark = 0;
        c->mark_ms = repl_mono_ms();
        for (size_t d = c->resume_valid ? c->resume_disk : 0; d < c->cfg.n_disks; d++) {
                c->disk = (uint16_t)d;
                uint64_t from = c->resume_valid && d == c->resume_disk ? c->resume_offset : 0;
                int r;
                if (by_hash) {
                        r = ship_disk_by_hash(c, from, err);
                } else {
                        size_t i = first_extent_from(c->ext[d], c->n_ext[d], from);
                        struct stream_ctx x = {c, err};
                        /* No extents (nothing changed) may be a NULL list. */
                        r = nst_src_job_stream(c->job, d, c->ext[d] ? c->ext[d] + i : NULL,
                                               c->n_ext[d] - i, c->s->p->o.stream_depth,
                                               nst_rw_digest, on_extent, &x, err);
                }
                if (r < 0)
                        return r;
                /* The end of a disk is a mark; the end of the last one needs
                 * none, since COMMIT, which follows, flushes everything. */
                if (d + 1 < c->cfg.n_disks && (r = send_mark(c, (uint16_t)d, c->sizes[d], err)) < 0)
                        return r;
        }
        return 0;
}

static int hello(struct cycle *c, struct nst_error *err) {
        struct repl_options *o = &c->s->p->o;
        int r = nst_rc_connect(c->cfg.target_address, (uint16_t)c->cfg.target_port, &o->tls,
                               c->cfg.id, o->tls.cert_file ? NULL : c->cfg.psk,
                               o->connect_timeout_ms, &c->ch, err);
        if (r < 0)
                return r;
        /* Certificates: the CA vouches for a node, the name says which; only
         * the replication's target may receive its disks (the target checks
         * the source's name the same way). */
        if (o->tls.cert_file && strcmp(nst_rc_conn_identity(c->ch), c->cfg.target_host) != 0)
                return nst_error_set(err, -EACCES, "AuthenticationFailed",
                                     "%s presented a certificate for %s, but replication %s goes "
                                     "to %s; nothing was sent",
                                     nst_rc_conn_peer(c->ch), nst_rc_conn_identity(c->ch),
                                     c->cfg.id, c->cfg.target_host);
        nst_rc_set_timeout(c->ch, o->io_timeout_ms);
        nst_rc_set_rate_limit(c->ch, c->cfg.bandwidth);
        json_object *h = json_object_new_object(), *disks = json_object_new_array();
        for (size_t i = 0; i < c->cfg.n_disks; i++) {
                json_object *d = json_object_new_object();
                json_object_object_add(d, "name", json_object_new_string(c->cfg.disks[i]));
                json_object_object_add(d, "size", json_object_new_int64((int64_t)c->sizes[i]));
                json_object_array_add(disks, d);
        }
        json_object_object_add(h, "version", json_object_new_int(NST_RW_VERSION));
        json_object_object_add(h, "replication", json_object_new_string(c->cfg.id));
        json_object_object_add(h, "cycle", json_object_new_string(c->new_cp));
        json_object_object_add(h, "kind", json_object_new_string(c->kind));
        json_object_object_add(h, "source_host", json_object_new_string(c->s->p->host_name));
        json_object_object_add(h, "disks", disks);
        r = nst_rc_send_json(c->ch, NST_RW_HELLO, h, err);
        json_object_put(h);
        json_object *ready = NULL;
        if (r < 0 || (r = recv_expect(c, NST_RW_READY, &ready, err)) < 0)
                return r;
        json_object *resume = json_object_object_get(ready, "resume");
        c->resume_valid = json_object_is_type(resume, json_type_object);
        if (c->resume_valid) {
                int64_t d = get_i64(resume, "disk"), off = get_i64(resume, "offset");
                if (d < 0 || (size_t)d >= c->cfg.n_disks || off < 0 ||
                    (uint64_t)off > c->sizes[d]) {
                        json_object_put(ready);
                        return nst_error_set(err, -EPROTO, "ProtocolError",
                                             "target sent an impossible resume mark");
                }
                c->resume_disk = (uint16_t)d;
                c->resume_offset = (uint64_t)off;
        }
        c->target_points = (uint64_t)get_i64(ready, "points");
        json_object_put(ready);
        if (!c->resume_valid && c->target_points == 0 && strcmp(c->kind, "incremental") == 0)
                return nst_error_set(err, -ESTALE, "ReplicaReset",
                                     "target %s has no committed point: the next cycle "
                                     "resynchronizes",
                                     c->cfg.target_host);
        return 0;
}

static int commit(struct cycle *c, uint64_t *ret_point, struct nst_error *err) {
        json_object *m = json_object_new_object(), *pt = json_object_new_object();
        json_object_object_add(pt, "time_ms", json_object_new_int64(c->point_ms));
        json_object_object_add(pt, "checkpoint", json_object_new_string(c->new_cp));
        json_object_object_add(pt, "kind", json_object_new_string(c->kind));
        json_object_object_add(pt, "quiesced", json_object_new_boolean(c->quiesced));
        json_object_object_add(pt, "bytes", json_object_new_int64((int64_t)c->shipped));
        json_object_object_add(m, "cycle", json_object_new_string(c->new_cp));
        json_object_object_add(m, "point", pt);
        json_object_object_add(m, "points_in_time",
                               json_object_new_int((int)c->cfg.points_in_time));
        int r = nst_rc_send_json(c->ch, NST_RW_COMMIT, m, err);
        json_object_put(m);
        json_object *done = NULL;
        if (r < 0 || (r = recv_expect(c, NST_RW_COMMITTED, &done, err)) < 0)
                return r;
        *ret_point = (uint64_t)get_i64(done, "point");
        json_object_put(done);
        nst_rc_send(c->ch, NST_RW_BYE, 0, NULL, 0, NULL, 0, NULL);
        return 0;
}

static void close_channel(struct cycle *c) {
        if (!c->ch)
                return;
        c->wire += nst_rc_bytes_sent(c->ch) + nst_rc_bytes_received(c->ch);
        nst_rc_close(c->ch);
        c->ch = NULL;
}

/* The connection and the target's side of the cycle (its overlays and
 * qemu-nbd) take about as long as virDomainBackupBegin, and neither needs
 * the other: the first hello runs on its own thread while the job starts. */
struct early_hello {
        struct cycle *c;
        pthread_t thread;
        bool started;
        int rc;
        struct nst_error err;
};

static void *early_hello_main(void *arg) {
        pthread_setname_np(pthread_self(), "repl-hello");
        struct early_hello *h = arg;
        h->rc = hello(h->c, &h->err);
        return NULL;
}

static void early_hello_start(struct early_hello *h, struct cycle *c) {
        *h = (struct early_hello){.c = c, .err = NST_ERROR_INIT};
        h->started = pthread_create(&h->thread, NULL, early_hello_main, h) == 0;
}

static void early_hello_join(struct early_hello *h) {
        if (h->started)
                pthread_join(h->thread, NULL);
}

/* Connects (unless early already did), ships and commits, reconnecting on
 * a broken channel. */
static int transfer(struct cycle *c, const struct early_hello *early, uint64_t *ret_point,
                    struct nst_error *err) {
        int retries = c->s->p->o.connect_retries;
        for (int attempt = 0;; attempt++) {
                nst_error_clear(err);
                int r;
                if (attempt == 0 && early->started) {
                        r = early->rc;
                        if (r < 0)
                                *err = early->err;
                } else {
                        r = hello(c, err);
                }
                c->t_hello = repl_mono_ms();
                if (r >= 0)
                        r = ship(c, err);
                c->t_shipped = repl_mono_ms();
                if (r >= 0)
                        r = commit(c, ret_point, err);
                /* The target keeps its last point and logs why. */
                if (r < 0 && err->code == -ECANCELED && c->ch)
                        nst_rc_send_error(c->ch, err);
                close_channel(c);
                if (r >= 0)
                        return 0;
                if (!retryable(err) || attempt >= retries)
                        return r;
                log_warning("replication %s: %s; reconnecting (%d of %d)", c->cfg.id,
                            err->message, attempt + 1, retries);
                progress(c, "reconnecting", 0);
                sleep((unsigned)(attempt + 1));
        }
}

static const char *choose_kind(struct cycle *c, struct nst_error *err) {
        if (c->cfg.resync_needed)
                return "resync";
        if (!c->cfg.last_checkpoint[0])
                return c->cfg.seeded ? "seed" : "full";
        /* Bitmaps break when QEMU dies without flushing them; while the
         * process that made the checkpoint in a committed cycle still runs,
         * the QMP check (35 ms) is skipped. Should the chain break anyway
         * (deleted behind Nestor's back), the backup job refuses it, says
         * CheckpointBroken, and the next cycle checks in full. */
        if (c->dom_id != NO_DOM_ID && c->dom_id == c->cfg.verified_dom_id)
                return "incremental";
        struct nst_error e = NST_ERROR_INIT;
        if (nst_src_checkpoint_check(c->dom, c->cfg.last_checkpoint, &e) == 0)
                return "incremental";
        if (strcmp(e.cls, "CheckpointBroken") != 0) {
                *err = e;
                return NULL;
        }
        log_warning("replication %s: %s; falling back to a hash-compare resync", c->cfg.id,
                    e.message);
        pthread_mutex_lock(&c->s->lock);
        c->r->resync_needed = true;
        record_save_logged_locked(c->s, c->r);
        json_object *d = event_data(c->r, c->s->p->host_name);
        pthread_mutex_unlock(&c->s->lock);
        json_object_object_add(d, "checkpoint", json_object_new_string(c->cfg.last_checkpoint));
        json_object_object_add(d, "reason", json_object_new_string(e.message));
        repl_notify(c->s->p, "replication.chain_broken", d, NULL);
        return "resync";
}

static int prepare(struct cycle *c, struct nst_error *err) {
        int r = presence_check(c->s, c->cfg.id, &c->conn, &c->dom, err);
        if (r < 0)
                return r;
        switch ((enum repl_presence)r) {
        case REPL_PRESENCE_HERE:
                break;
        case REPL_PRESENCE_STOPPED:
                return nst_error_set(err, -EAGAIN, "InstanceInvalidState",
                                     "instance %s is not running: replication waits for it",
                                     c->cfg.name);
        case REPL_PRESENCE_MIGRATED:
                return nst_error_set(err, -EAGAIN, "InstanceMigrated",
                                     "instance %s was migrated away from this host: replication "
                                     "waits for it to come back (to replicate it from its new "
                                     "host, disable it here and enable it there)",
                                     c->cfg.name);
        case REPL_PRESENCE_MISSING:
                return nst_error_set(err, -ENOENT, "InstanceNotFound",
                                     "instance %s is not defined on this host any more: "
                                     "replication waits for it (disable it if it was deleted)",
                                     c->cfg.name);
        }
        struct nst_error e = NST_ERROR_INIT;
        if (!c->cfg.stale_checked) {
                if (nst_src_abort_stale_job(c->dom, &e) < 0)
                        log_warning("replication %s: %s", c->cfg.id, e.message);
                pthread_mutex_lock(&c->s->lock);
                c->r->stale_checked = true;
                pthread_mutex_unlock(&c->s->lock);
        }
        c->dom_id = virDomainGetID(c->dom);
        if (!(c->kind = choose_kind(c, err)))
                return -EIO;
        /* A new chain leaves nothing of an older one: broken checkpoints,
         * those of an earlier replication of this instance, and the bitmaps
         * a migration brought along from the previous host, whose libvirt
         * kept their checkpoints (libvirt does not migrate them; QEMU
         * would update the orphaned bitmaps on every guest write). */
        nst_error_clear(&e);
        if (strcmp(c->kind, "incremental") != 0 && nst_src_checkpoints_prune(c->dom, NULL, &e) < 0)
                log_warning("replication %s: cleaning up older checkpoints: %s", c->cfg.id,
                            e.message);
        bool same_process = c->dom_id != NO_DOM_ID && c->dom_id == c->cfg.verified_dom_id;
        for (size_t d = 0; d < c->cfg.n_disks; d++) {
                /* Unchanged unless resized, which the job's sizes show. */
                if (same_process) {
                        c->sizes[d] = c->cfg.verified_sizes[d];
                        continue;
                }
                virDomainBlockInfo info;
                if (virDomainGetBlockInfo(c->dom, c->cfg.disks[d], &info, 0) < 0)
                        return nst_lv_error(err, -EIO, "HypervisorError",
                                            "instance %s: cannot read the size of disk %s",
                                            c->cfg.name, c->cfg.disks[d]);
                c->sizes[d] = info.capacity;
        }
        /* A checkpoint newer than the committed one is a cycle that never
         * committed (an agent killed mid-cycle): drop it. */
        nst_error_clear(&e);
        if (c->cfg.last_checkpoint[0] && strcmp(c->kind, "incremental") == 0 &&
            nst_src_checkpoints_prune(c->dom, c->cfg.last_checkpoint, &e) < 0)
                log_warning("replication %s: %s", c->cfg.id, e.message);
        pthread_mutex_lock(&c->s->lock);
        c->r->checkpoint_seq++;
        snprintf(c->new_cp, sizeof(c->new_cp), NST_SRC_CHECKPOINT_PREFIX "%llu",
                 (unsigned long long)c->r->checkpoint_seq);
        snprintf(c->r->cycle_kind, sizeof(c->r->cycle_kind), "%s", c->kind);
        r = record_save_locked(c->s, c->r, err);
        pthread_mutex_unlock(&c->s->lock);
        return r;
}

/* A replication's job files (NBD socket, scratch files) go to
 * <state>/run/<first 8 of the id>, short enough for a socket path. */
static void run_dir_path(const struct repl_source *s, const char *id, char *buf, size_t size) {
        snprintf(buf, size, "%s/run/%.8s", s->p->state_dir, id);
}

static int begin_job(struct cycle *c, struct nst_error *err) {
        char run_dir[4096];
        snprintf(run_dir, sizeof(run_dir), "%s/run", c->s->p->state_dir);
        int r = nst_mkdir_p(run_dir, 0711);
        run_dir_path(c->s, c->cfg.id, run_dir, sizeof(run_dir));
        if (r >= 0)
                r = nst_mkdir_p(run_dir, 0700);
        if (r < 0)
                return nst_error_set(err, r, "StorageError", "cannot create %s: %s", run_dir,
                                     strerror(-r));
        const char *disks[NST_SRC_MAX_DISKS];
        for (size_t i = 0; i < c->cfg.n_disks; i++)
                disks[i] = c->cfg.disks[i];
        struct nst_src_job_opts o = {
                .run_dir = run_dir,
                .incremental = strcmp(c->kind, "incremental") == 0 ? c->cfg.last_checkpoint : NULL,
                .new_checkpoint = c->new_cp,
                .disks = disks,
                .n_disks = c->cfg.n_disks,
                .quiesce = c->cfg.quiesce,
                .sizes = c->sizes,
        };
        progress(c, "starting", 0);
        c->point_ms = repl_now_ms();
        if ((r = nst_src_job_begin(c->dom, &o, &c->job, &c->quiesced, err)) < 0)
                return r;
        uint64_t total = 0;
        bool by_hash = strcmp(c->kind, "seed") == 0 || strcmp(c->kind, "resync") == 0;
        for (size_t d = 0; d < c->cfg.n_disks; d++) {
                uint64_t size = 0;
                if ((r = nst_src_job_extents(c->job, d, &c->ext[d], &c->n_ext[d], &size, err)) <
                    0)
                        return r;
                if (size != c->sizes[d])
                        return nst_error_set(err, -EAGAIN, "DiskMismatch",
                                             "disk %s changed size during the cycle's start "
                                             "(%" PRIu64 " -> %" PRIu64 " bytes)",
                                             c->cfg.disks[d], c->sizes[d], size);
                if (by_hash)
                        total += c->sizes[d];
                else
                        for (size_t i = 0; i < c->n_ext[d]; i++)
                                total += c->ext[d][i].zero ? 0 : c->ext[d][i].length;
        }
        pthread_mutex_lock(&c->s->lock);
        c->r->progress_total = total;
        c->r->progress_done = 0;
        pthread_mutex_unlock(&c->s->lock);
        progress(c, "shipping", 0);
        return 0;
}

static void cycle_end_job(struct cycle *c, bool committed) {
        close_channel(c);
        if (c->job) {
                struct nst_error e = NST_ERROR_INIT;
                if (nst_src_job_end(c->job, committed, &e) < 0)
                        log_warning("replication %s: ending the backup job: %s", c->cfg.id,
                                    e.message);
                c->job = NULL;
        }
}

/* After a commit the previous checkpoint is superseded. Deleting it
 * (60 ms: libvirt removes the bitmap and rewrites its metadata) is
 * housekeeping after the cycle, not part of it: the point is committed
 * and the job ended. Should it fail, the next cycle's prepare retries. */
/* The target refused this source: has another host taken the replica over
 * (the instance moved) while this agent was down, so that nobody told it?
 * Its replication_status says whose the replica is. */
static void check_replaced(struct repl_source *s, const struct src_repl *cfg) {
        json_object *args = json_object_new_object(), *answer = NULL;
        json_object_object_add(args, "replication", json_object_new_string(cfg->id));
        struct nst_error e = NST_ERROR_INIT;
        int rc = repl_call_agent(s->p, cfg->target_host, "replication_status", args,
                                 s->p->o.rpc_timeout_s, &answer, &e);
        json_object_put(args);
        const char *role = rc >= 0 ? json_object_get_string(json_object_object_get(answer, "role"))
                                   : NULL;
        const char *from = rc >= 0 ? json_object_get_string(json_object_object_get(
                                             answer, "source_host"))
                                   : NULL;
        if (role && strcmp(role, "target") == 0 && from && *from &&
            strlen(from) < sizeof(cfg->replaced_by) && strcmp(from, s->p->host_name) != 0) {
                pthread_mutex_lock(&s->lock);
                struct src_repl *r = find_locked(s, cfg->id);
                if (r && mark_replaced_locked(s, r, from, &e) < 0)
                        log_error("replication %s: %s", cfg->id, e.message);
                pthread_mutex_unlock(&s->lock);
        }
        json_object_put(answer);
}

static void prune_superseded(struct cycle *c) {
        struct nst_error e = NST_ERROR_INIT;
        int64_t t0 = repl_mono_ms();
        if (nst_src_checkpoints_prune(c->dom, c->new_cp, &e) < 0)
                log_warning("replication %s: deleting old checkpoints: %s", c->cfg.id,
                            e.message);
        else
                log_debug("replication %s: superseded checkpoints deleted in %lld ms", c->cfg.id,
                          (long long)(repl_mono_ms() - t0));
}

/* The next job's scratch files are made now, off its clock; a removed
 * replication's job files go. */
static void run_dir_housekeeping(struct cycle *c) {
        pthread_mutex_lock(&c->s->lock);
        bool removed = c->r->removed;
        pthread_mutex_unlock(&c->s->lock);
        char run_dir[4096];
        run_dir_path(c->s, c->cfg.id, run_dir, sizeof(run_dir));
        if (removed) {
                nst_src_run_dir_remove(run_dir);
                return;
        }
        for (size_t d = 0; d < c->cfg.n_disks && c->sizes[d] > 0; d++) {
                struct nst_error e = NST_ERROR_INIT;
                if (nst_src_scratch_prepare(run_dir, c->cfg.disks[d], c->sizes[d], &e) < 0) {
                        log_warning("replication %s: spare scratch file for %s (the next "
                                    "cycle has libvirt create it): %s",
                                    c->cfg.id, c->cfg.disks[d], e.message);
                        break;
                }
        }
}

static void cycle_free(struct cycle *c) {
        for (size_t d = 0; d < NST_SRC_MAX_DISKS; d++)
                free(c->ext[d]);
        free(c->cbuf);
        free(c->rbuf);
        free(c->hbuf);
        if (c->dom)
                virDomainFree(c->dom);
        if (c->conn)
                virConnectClose(c->conn);
}

/* Runs one cycle of r (which is marked running: its record stays). */
enum cycle_outcome { CYCLE_COMMITTED, CYCLE_FAILED, CYCLE_CANCELLED };

static enum cycle_outcome run_cycle(struct repl_source *s, struct src_repl *r,
                                    int64_t *ret_point_ms, uint64_t *ret_bytes) {
        struct cycle c = {.s = s, .r = r};
        pthread_mutex_lock(&s->lock);
        c.cfg = *r;
        r->cycle_started_ms = repl_now_ms();
        r->progress_done = r->progress_total = 0;
        snprintf(r->phase, sizeof(r->phase), "preparing");
        json_object *start_data = event_data(r, s->p->host_name);
        pthread_mutex_unlock(&s->lock);
        int64_t t0 = repl_mono_ms();
        struct nst_error err = NST_ERROR_INIT;
        uint64_t point_id = 0;
        /* Where a cycle's time goes, for the log. */
        int64_t t_prepared = 0, t_begun = 0, t_transferred = 0, t_ended = 0;
        struct early_hello early = {.started = false};
        int rc = prepare(&c, &err);
        t_prepared = repl_mono_ms();
        if (rc >= 0) {
                json_object_object_add(start_data, "kind", json_object_new_string(c.kind));
                repl_notify(s->p, "replication.sync.start", start_data, NULL);
                start_data = NULL;
                early_hello_start(&early, &c);
                rc = begin_job(&c, &err);
                early_hello_join(&early);
        }
        t_begun = repl_mono_ms();
        if (rc >= 0)
                rc = check_cancel(&c, &err);
        if (rc >= 0)
                rc = transfer(&c, &early, &point_id, &err);
        t_transferred = repl_mono_ms();
        cycle_end_job(&c, rc >= 0);
        t_ended = repl_mono_ms();
        json_object_put(start_data);
        int64_t duration = repl_mono_ms() - t0;
        bool cancelled = rc < 0 && err.code == -ECANCELED;

        pthread_mutex_lock(&s->lock);
        r->last_duration_ms = duration;
        r->last_end_ms = repl_now_ms();
        snprintf(r->phase, sizeof(r->phase), "%s", rc >= 0 || cancelled ? "idle" : "error");
        if (rc >= 0) {
                snprintf(r->last_checkpoint, sizeof(r->last_checkpoint), "%s", c.new_cp);
                r->last_point_ms = c.point_ms;
                r->last_point_id = point_id;
                r->last_bytes = c.shipped;
                r->last_zeroed = c.zeroed;
                r->last_wire = c.wire;
                r->last_quiesced = c.quiesced;
                snprintf(r->last_kind, sizeof(r->last_kind), "%s", c.kind);
                r->pending_at_ms = 0; /* counted against the old checkpoint */
                r->bytes_total += c.shipped;
                r->wire_total += c.wire;
                r->cycles_total++;
                r->seeded = false;
                r->resync_needed = false;
                r->verified_dom_id = c.dom_id;
                memcpy(r->verified_sizes, c.sizes, sizeof(r->verified_sizes));
                r->failures = 0;
                nst_error_clear(&r->last_error);
                record_save_logged_locked(s, r);
        } else if (cancelled) {
                r->verified_dom_id = NO_DOM_ID;
        } else {
                r->verified_dom_id = NO_DOM_ID; /* the next cycle checks in full */
                r->failures++;
                r->last_error = err;
                if (strcmp(err.cls, "ReplicaReset") == 0) {
                        r->resync_needed = true;
                        record_save_logged_locked(s, r);
                }
        }
        json_object *d = event_data(r, s->p->host_name);
        pthread_mutex_unlock(&s->lock);

        json_object_object_add(d, "kind", json_object_new_string(c.kind ? c.kind : "none"));
        json_object_object_add(d, "duration_ms", json_object_new_int64(duration));
        if (rc >= 0) {
                char when[32];
                json_object_object_add(d, "point_id", json_object_new_int64((int64_t)point_id));
                json_object_object_add(d, "point_time",
                                       json_object_new_string(repl_iso_time(c.point_ms, when,
                                                                            sizeof(when))));
                json_object_object_add(d, "bytes_shipped", json_object_new_int64((int64_t)c.shipped));
                json_object_object_add(d, "bytes_zeroed", json_object_new_int64((int64_t)c.zeroed));
                json_object_object_add(d, "bytes_on_wire", json_object_new_int64((int64_t)c.wire));
                json_object_object_add(d, "consistency",
                                       json_object_new_string(c.quiesced ? "filesystem"
                                                                         : "crash"));
                log_info("replication %s (%s): %s cycle committed point %llu, %llu bytes in "
                         "%lld ms (prepare %lld, backup begin %lld, connect %lld, ship %lld, "
                         "commit %lld, end %lld)",
                         c.cfg.id, c.cfg.name, c.kind, (unsigned long long)point_id,
                         (unsigned long long)c.shipped, (long long)duration,
                         (long long)(t_prepared - t0), (long long)(t_begun - t_prepared),
                         (long long)(c.t_hello - t_begun), (long long)(c.t_shipped - c.t_hello),
                         (long long)(t_transferred - c.t_shipped),
                         (long long)(t_ended - t_transferred));
                repl_notify(s->p, "replication.sync.end", d, NULL);
        } else if (cancelled) {
                log_info("replication %s: %s after %lld ms; the target keeps point %llu",
                         c.cfg.id, err.message, (long long)duration,
                         (unsigned long long)c.cfg.last_point_id);
                repl_notify(s->p, "replication.sync.error", d, &err);
        } else {
                log_error("replication %s (%s): cycle failed: %s: %s", c.cfg.id, c.cfg.name,
                          err.cls, err.message);
                repl_notify(s->p, "replication.sync.error", d, &err);
        }
        if (rc >= 0)
                prune_superseded(&c);
        else if (strcmp(err.cls, "AuthenticationFailed") == 0)
                check_replaced(s, &c.cfg);
        run_dir_housekeeping(&c);
        cycle_free(&c);
        *ret_point_ms = c.point_ms;
        *ret_bytes = c.shipped;
        return rc >= 0 ? CYCLE_COMMITTED : cancelled ? CYCLE_CANCELLED : CYCLE_FAILED;
}

/* ---- threads ---- */

static void *runner_main(void *arg) {
        pthread_setname_np(pthread_self(), "repl-cycle");
        struct repl_source *s = arg;
        pthread_mutex_lock(&s->lock);
        while (!s->stopping) {
                if (s->q_len == 0) {
                        pthread_cond_wait(&s->work, &s->lock);
                        continue;
                }
                uint64_t id = s->queue[0];
                memmove(s->queue, s->queue + 1, --s->q_len * sizeof(*s->queue));
                struct src_repl *r = find_sched_locked(s, id);
                if (!r || r->removed)
                        continue;
                r->running = true;
                pthread_mutex_unlock(&s->lock);
                int64_t t0 = repl_now_ms(), point_ms = 0;
                uint64_t bytes = 0;
                enum cycle_outcome out = run_cycle(s, r, &point_ms, &bytes);
                pthread_mutex_lock(&s->lock);
                r->running = false;
                __atomic_store_n(&r->cancel, false, __ATOMIC_RELEASE);
                if (out == CYCLE_CANCELLED)
                        nst_sched_cancelled(s->sched, id, repl_now_ms());
                else
                        nst_sched_finished(s->sched, id, out == CYCLE_COMMITTED, point_ms,
                                           repl_now_ms() - t0, bytes, repl_now_ms());
                if (r->removed)
                        drop_locked(s, r);
                pthread_cond_broadcast(&s->wake);
        }
        pthread_mutex_unlock(&s->lock);
        return NULL;
}

struct violation {
        uint64_t id;
        enum nst_sched_violation what;
        int64_t age_ms;
};
struct violations {
        struct violation v[64];
        size_t n;
};

static void on_violation(void *ud, uint64_t id, enum nst_sched_violation what, int64_t age) {
        struct violations *vs = ud;
        if (vs->n < NST_ARRAY_SIZE(vs->v))
                vs->v[vs->n++] = (struct violation){id, what, age};
}

static void report_violations(struct repl_source *s, struct violations *vs) {
        for (size_t i = 0; i < vs->n; i++) {
                struct src_repl *r = find_sched_locked(s, vs->v[i].id);
                if (!r)
                        continue;
                bool raised = vs->v[i].what == NST_SCHED_VIOLATION_RAISED;
                r->violation = raised;
                json_object *d = event_data(r, s->p->host_name);
                json_object_object_add(d, "point_age_seconds",
                                       json_object_new_int64(vs->v[i].age_ms / 1000));
                pthread_mutex_unlock(&s->lock);
                if (raised)
                        log_warning("replication %s: the last point is %lld s old, over the "
                                    "RPO",
                                    vs->v[i].id ? r->id : "", (long long)(vs->v[i].age_ms / 1000));
                repl_notify(s->p, raised ? "replication.rpo_violation"
                                         : "replication.rpo_restored",
                            d, NULL);
                pthread_mutex_lock(&s->lock);
        }
        vs->n = 0;
}

struct hint_ask {
        char id[37];
        char checkpoint[64];
        int64_t due_ms;
};

static int hint_by_due(const void *a, const void *b) {
        const struct hint_ask *x = a, *y = b;
        return (x->due_ms > y->due_ms) - (x->due_ms < y->due_ms);
}

/* One pass of hints (see HINT_BATCH). Called and returns with s->lock held;
 * libvirt is asked without it. */
static void refresh_hints_locked(struct repl_source *s, int64_t now) {
        struct hint_ask asks[HINT_BATCH];
        size_t n = 0;
        for (size_t i = 0; i < s->n_items; i++) {
                struct src_repl *r = s->items[i];
                struct nst_sched_info si;
                if (r->removed || r->running || r->paused || !r->last_checkpoint[0] ||
                    r->resync_needed || nst_sched_get(s->sched, r->sched_id, &si) < 0)
                        continue;
                struct hint_ask a = {.due_ms = si.next_due_ms};
                snprintf(a.id, sizeof(a.id), "%s", r->id);
                snprintf(a.checkpoint, sizeof(a.checkpoint), "%s", r->last_checkpoint);
                if (n < HINT_BATCH) {
                        asks[n++] = a;
                        qsort(asks, n, sizeof(*asks), hint_by_due);
                } else if (a.due_ms < asks[n - 1].due_ms) {
                        asks[n - 1] = a;
                        qsort(asks, n, sizeof(*asks), hint_by_due);
                }
        }
        if (n == 0)
                return;
        pthread_mutex_unlock(&s->lock);
        uint64_t bytes[HINT_BATCH];
        bool got[HINT_BATCH] = {false};
        for (size_t i = 0; i < n; i++) {
                virConnectPtr conn = NULL;
                virDomainPtr dom = NULL;
                struct nst_error e = NST_ERROR_INIT;
                if (repl_domain_open(s->p, asks[i].id, &conn, &dom, &e) < 0)
                        continue; /* a stopped or missing VM: its cycle will say so */
                got[i] = nst_src_changed_bytes(dom, asks[i].checkpoint, &bytes[i], &e) == 0;
                virDomainFree(dom);
                virConnectClose(conn);
        }
        pthread_mutex_lock(&s->lock);
        for (size_t i = 0; i < n; i++) {
                struct src_repl *r = got[i] ? find_locked(s, asks[i].id) : NULL;
                /* Meanwhile a cycle may have moved the checkpoint on. */
                if (!r || r->running || strcmp(r->last_checkpoint, asks[i].checkpoint) != 0)
                        continue;
                r->pending_bytes = bytes[i];
                r->pending_at_ms = now;
                nst_sched_hint_changed(s->sched, r->sched_id, bytes[i]);
        }
}

static void *sched_main(void *arg) {
        pthread_setname_np(pthread_self(), "repl-sched");
        struct repl_source *s = arg;
        struct violations vs = {0};
        pthread_mutex_lock(&s->lock);
        while (!s->stopping) {
                int64_t now = repl_now_ms();
                nst_sched_poll(s->sched, now, on_violation, &vs);
                if (vs.n)
                        report_violations(s, &vs);
                uint64_t ids[64];
                size_t n = nst_sched_take_due(s->sched, repl_now_ms(), ids, NST_ARRAY_SIZE(ids));
                for (size_t i = 0; i < n; i++) {
                        if (s->q_len == s->q_cap) {
                                size_t cap = s->q_cap ? 2 * s->q_cap : 64;
                                uint64_t *q = realloc(s->queue, cap * sizeof(*q));
                                if (!q) {
                                        nst_sched_finished(s->sched, ids[i], false, 0, 0, 0, now);
                                        continue;
                                }
                                s->queue = q;
                                s->q_cap = cap;
                        }
                        s->queue[s->q_len++] = ids[i];
                }
                if (n)
                        pthread_cond_broadcast(&s->work);
                int64_t wait = nst_sched_next_event_ms(s->sched, repl_now_ms());
                if (wait > 1000)
                        wait = 1000;
                if (wait < 20)
                        wait = 20;
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += wait / 1000;
                ts.tv_nsec += (wait % 1000) * 1000000;
                if (ts.tv_nsec >= 1000000000) {
                        ts.tv_sec++;
                        ts.tv_nsec -= 1000000000;
                }
                pthread_cond_timedwait(&s->wake, &s->lock, &ts);
        }
        pthread_mutex_unlock(&s->lock);
        return NULL;
}

/* The hints have a thread of their own: libvirt can take its time to
 * answer, and the scheduler thread must start due cycles on time. */
static void *hint_main(void *arg) {
        pthread_setname_np(pthread_self(), "repl-hint");
        struct repl_source *s = arg;
        pthread_mutex_lock(&s->lock);
        while (!s->stopping) {
                refresh_hints_locked(s, repl_now_ms());
                pthread_cond_broadcast(&s->wake); /* predictions may have moved */
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += HINT_INTERVAL_MS / 1000;
                while (!s->stopping &&
                       pthread_cond_timedwait(&s->hint_wake, &s->lock, &ts) != ETIMEDOUT)
                        ;
        }
        pthread_mutex_unlock(&s->lock);
        return NULL;
}

/* ---- lifecycle ---- */

int repl_source_new(struct repl_plugin *p, struct repl_source **ret, struct nst_error *err) {
        struct repl_source *s = calloc(1, sizeof(*s));
        if (!s)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        s->p = p;
        pthread_mutex_init(&s->lock, NULL);
        pthread_cond_init(&s->wake, NULL);
        pthread_cond_init(&s->work, NULL);
        pthread_cond_init(&s->hint_wake, NULL);
        *ret = s;
        return 0;
}

static int load_records(struct repl_source *s, struct nst_error *err) {
        _cleanup_(closedirp) DIR *d = opendir(s->dir);
        if (!d)
                return nst_error_set(err, -errno, "StorageError", "cannot read %s: %s", s->dir,
                                     strerror(errno));
        struct dirent *de;
        while ((de = readdir(d))) {
                size_t len = strlen(de->d_name);
                if (len != 36 + 5 || strcmp(de->d_name + 36, ".json") != 0)
                        continue;
                char path[4096];
                snprintf(path, sizeof(path), "%s/%s", s->dir, de->d_name);
                json_object *o = NULL;
                struct nst_error e = NST_ERROR_INIT;
                struct src_repl *r = calloc(1, sizeof(*r));
                if (!r)
                        return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
                if (repl_read_json(path, &o, &e) < 0 || record_from_json(o, path, r, &e) < 0) {
                        /* One bad record must not stop the others. */
                        log_error("skipping replication record: %s", e.message);
                        free(r);
                } else if (add_locked(s, r) < 0) {
                        free(r);
                        json_object_put(o);
                        return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
                } else {
                        log_info("replication %s (%s) to %s: resumed, last point %llu", r->id,
                                 r->name, r->target_host, (unsigned long long)r->last_point_id);
                }
                json_object_put(o);
        }
        return 0;
}

int repl_source_start(struct repl_source *s, struct nst_error *err) {
        struct nst_sched_config sc;
        nst_sched_config_default(&sc);
        sc.max_running = (unsigned)s->p->o.max_running;
        int r = nst_sched_new(&sc, &s->sched);
        if (r < 0)
                return nst_error_set(err, r, "MemoryError", "out of memory");
        if (asprintf(&s->dir, "%s/source", s->p->state_dir) < 0) {
                s->dir = NULL;
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        if ((r = nst_mkdir_p(s->dir, 0700)) < 0)
                return nst_error_set(err, r, "StorageError", "cannot create %s: %s", s->dir,
                                     strerror(-r));
        if ((r = load_records(s, err)) < 0)
                return r;
        if ((r = s->p->libvirt->watch(s->p->libvirt->self, on_lifecycle, s, err)) < 0)
                return r;
        s->watching = true;
        s->runners = calloc((size_t)s->p->o.max_running, sizeof(*s->runners));
        if (!s->runners)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        for (int i = 0; i < s->p->o.max_running; i++) {
                if ((r = -pthread_create(&s->runners[i], NULL, runner_main, s)) < 0)
                        return nst_error_set(err, r, "InternalError",
                                             "cannot start a replication thread: %s",
                                             strerror(-r));
                s->n_runners++;
        }
        if ((r = -pthread_create(&s->sched_thread, NULL, sched_main, s)) < 0)
                return nst_error_set(err, r, "InternalError",
                                     "cannot start the replication scheduler: %s", strerror(-r));
        s->sched_started = true;
        if ((r = -pthread_create(&s->hint_thread, NULL, hint_main, s)) < 0)
                return nst_error_set(err, r, "InternalError",
                                     "cannot start the replication hint thread: %s",
                                     strerror(-r));
        s->hint_started = true;
        return 0;
}

void repl_source_free(struct repl_source *s) {
        if (!s)
                return;
        if (s->watching)
                s->p->libvirt->unwatch(s->p->libvirt->self, on_lifecycle, s);
        pthread_mutex_lock(&s->lock);
        s->stopping = true;
        pthread_cond_broadcast(&s->wake);
        pthread_cond_broadcast(&s->work);
        pthread_cond_broadcast(&s->hint_wake);
        pthread_mutex_unlock(&s->lock);
        if (s->sched_started)
                pthread_join(s->sched_thread, NULL);
        if (s->hint_started)
                pthread_join(s->hint_thread, NULL);
        for (size_t i = 0; i < s->n_runners; i++)
                pthread_join(s->runners[i], NULL);
        for (size_t i = 0; i < s->n_items; i++)
                free(s->items[i]);
        free(s->items);
        free(s->runners);
        free(s->queue);
        nst_sched_free(s->sched);
        free(s->dir);
        pthread_cond_destroy(&s->wake);
        pthread_cond_destroy(&s->work);
        pthread_cond_destroy(&s->hint_wake);
        pthread_mutex_destroy(&s->lock);
        free(s);
}

/* ---- status ---- */

/* What the last failures say, in the words of the status: the data channel
 * still failing after connect_retries, or the target out of space. */
static const char *failure_state(const struct src_repl *r) {
        if (strcmp(r->last_error.cls, "ChannelError") == 0)
                return "target-unreachable";
        if (strcmp(r->last_error.cls, "InsufficientStorage") == 0)
                return "target-disk-full";
        return "error";
}

static json_object *status_locked(const struct repl_source *s, const struct src_repl *r) {
        int64_t now = repl_now_ms();
        char when[32];
        json_object *o = json_object_new_object();
        json_object_object_add(o, "replication", json_object_new_string(r->id));
        json_object_object_add(o, "role", json_object_new_string("source"));
        json_object_object_add(o, "instance_uuid", json_object_new_string(r->id));
        json_object_object_add(o, "instance_name", json_object_new_string(r->name));
        json_object_object_add(o, "source_host", json_object_new_string(s->p->host_name));
        json_object_object_add(o, "target_host", json_object_new_string(r->target_host));
        const char *state = r->replaced_by[0]                        ? "replaced"
                            : r->paused                              ? "paused"
                            : r->running                             ? "syncing"
                            : r->presence == REPL_PRESENCE_STOPPED   ? "instance-stopped"
                            : r->presence == REPL_PRESENCE_MIGRATED  ? "instance-migrated"
                            : r->presence == REPL_PRESENCE_MISSING   ? "instance-missing"
                            : r->failures                            ? failure_state(r)
                            : r->cycles_total == 0                   ? "initial-sync-pending"
                                                                     : "ok";
        json_object_object_add(o, "state", json_object_new_string(state));
        json_object_object_add(o, "replaced_by", r->replaced_by[0]
                                                         ? json_object_new_string(r->replaced_by)
                                                         : NULL);
        json_object_object_add(o, "instance_presence",
                               json_object_new_string(repl_presence_name(r->presence)));
        json_object_object_add(o, "instance_presence_since",
                               r->presence_ms ? json_object_new_string(repl_iso_time(
                                                        r->presence_ms, when, sizeof(when)))
                                              : NULL);
        json_object_object_add(o, "rpo", json_object_new_int64(r->rpo_s));
        json_object *disks = json_object_new_array();
        for (size_t i = 0; i < r->n_disks; i++)
                json_object_array_add(disks, json_object_new_string(r->disks[i]));
        json_object_object_add(o, "disks", disks);
        json_object_object_add(o, "quiesce", json_object_new_string(quiesce_names[r->quiesce]));
        json_object_object_add(o, "points_in_time", json_object_new_int((int)r->points_in_time));
        json_object_object_add(o, "compress", json_object_new_boolean(r->compress));
        /* Mbit/s, as replication_enable takes it (bytes/s inside). */
        json_object_object_add(o, "bandwidth_limit",
                               json_object_new_int64((int64_t)(r->bandwidth * 8 / 1000000)));
        json_object *last = NULL;
        if (r->cycles_total) {
                last = json_object_new_object();
                json_object_object_add(last, "id", json_object_new_int64((int64_t)r->last_point_id));
                json_object_object_add(last, "time", json_object_new_string(
                                                             repl_iso_time(r->last_point_ms, when,
                                                                           sizeof(when))));
                json_object_object_add(last, "checkpoint",
                                       json_object_new_string(r->last_checkpoint));
                json_object_object_add(last, "consistency",
                                       json_object_new_string(r->last_quiesced ? "filesystem"
                                                                               : "crash"));
        }
        json_object_object_add(o, "last_point", last);
        int64_t lag = r->cycles_total ? (now - r->last_point_ms) / 1000 : -1;
        json_object_object_add(o, "lag_seconds", lag >= 0 ? json_object_new_int64(lag) : NULL);
        json_object_object_add(o, "rpo_violation", json_object_new_boolean(r->violation));
        json_object_object_add(o, "bytes_last_cycle", json_object_new_int64((int64_t)r->last_bytes));
        json_object_object_add(o, "zero_bytes_last_cycle",
                               json_object_new_int64((int64_t)r->last_zeroed));
        json_object_object_add(o, "wire_bytes_last_cycle",
                               json_object_new_int64((int64_t)r->last_wire));
        json_object_object_add(o, "duration_ms_last_cycle",
                               json_object_new_int64(r->last_duration_ms));
        json_object_object_add(o, "kind_last_cycle", nst_json_string_or_null(r->last_kind));
        json_object_object_add(o, "bytes_total", json_object_new_int64((int64_t)r->bytes_total));
        json_object_object_add(o, "cycles_total", json_object_new_int64((int64_t)r->cycles_total));
        json_object_object_add(o, "resync_needed", json_object_new_boolean(r->resync_needed));
        json_object_object_add(o, "pending_changed_bytes",
                               r->pending_at_ms ? json_object_new_int64((int64_t)r->pending_bytes)
                                                : NULL);
        json_object *prog = NULL;
        if (r->running) {
                prog = json_object_new_object();
                json_object_object_add(prog, "phase", json_object_new_string(r->phase));
                json_object_object_add(prog, "kind", json_object_new_string(r->cycle_kind));
                json_object_object_add(prog, "bytes_done",
                                       json_object_new_int64((int64_t)r->progress_done));
                json_object_object_add(prog, "bytes_total",
                                       json_object_new_int64((int64_t)r->progress_total));
                json_object_object_add(prog, "elapsed_ms",
                                       json_object_new_int64(now - r->cycle_started_ms));
        }
        json_object_object_add(o, "progress", prog);
        struct nst_sched_info si;
        if (nst_sched_get(s->sched, r->sched_id, &si) == 0 && !r->paused && !r->running)
                json_object_object_add(o, "next_cycle_in_seconds",
                                       json_object_new_int64(si.next_due_ms > now
                                                                     ? (si.next_due_ms - now) / 1000
                                                                     : 0));
        json_object *e = NULL;
        if (nst_error_is_set(&r->last_error)) {
                e = json_object_new_object();
                json_object_object_add(e, "class", json_object_new_string(r->last_error.cls));
                json_object_object_add(e, "message", json_object_new_string(r->last_error.message));
                json_object_object_add(e, "failures", json_object_new_int((int)r->failures));
        }
        json_object_object_add(o, "last_error", e);
        return o;
}

int repl_source_status(struct repl_source *s, const char *id, json_object **ret) {
        pthread_mutex_lock(&s->lock);
        struct src_repl *r = find_locked(s, id);
        if (r)
                *ret = status_locked(s, r);
        pthread_mutex_unlock(&s->lock);
        return r ? 0 : -ENOENT;
}

json_object *repl_source_list(struct repl_source *s) {
        json_object *a = json_object_new_array();
        pthread_mutex_lock(&s->lock);
        for (size_t i = 0; i < s->n_items; i++)
                if (!s->items[i]->removed)
                        json_object_array_add(a, status_locked(s, s->items[i]));
        pthread_mutex_unlock(&s->lock);
        return a;
}

/* ---- methods ---- */

static int replication_arg(json_object *args, const char *method, const char **ret,
                           struct nst_error *err) {
        const char *id = NULL;
        int r = nst_json_req_string(args, "replication", method, &id, err);
        if (r < 0)
                return r;
        if (!repl_uuid_valid(id))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s: replication must be the instance's uuid (lower case), "
                                     "got '%.64s'",
                                     method, id);
        *ret = id;
        return 0;
}

struct enable_args {
        const char *instance, *target_host;
        int64_t rpo, points_in_time, bandwidth_mbps;
        const char *quiesce;
        bool compress;
        json_object *disks, *seeds, *probe_addresses;
};

static int parse_enable(json_object *args, struct enable_args *a, struct nst_error *err) {
        static const char *const allowed[] = {"instance",       "target_host",     "rpo",
                                              "disks",          "quiesce",         "points_in_time",
                                              "compress",       "bandwidth_limit", "seeds",
                                              "probe_addresses", NULL};
        const char *m = "replication_enable";
        int r = nst_json_check_keys(args, m, allowed, err);
        a->points_in_time = 24;
        a->rpo = 3600;
        if (r < 0 || (r = nst_json_req_string(args, "instance", m, &a->instance, err)) < 0 ||
            (r = nst_json_req_string(args, "target_host", m, &a->target_host, err)) < 0 ||
            (r = nst_json_opt_int64(args, "rpo", m, &a->rpo, err)) < 0 ||
            (r = nst_json_opt_int64(args, "points_in_time", m, &a->points_in_time, err)) < 0 ||
            (r = nst_json_opt_int64(args, "bandwidth_limit", m, &a->bandwidth_mbps, err)) < 0 ||
            (r = nst_json_opt_string(args, "quiesce", m, &a->quiesce, err)) < 0 ||
            (r = nst_json_opt_bool(args, "compress", m, &a->compress, err)) < 0 ||
            (r = nst_json_opt_object(args, "seeds", m, &a->seeds, err)) < 0)
                return r;
        a->disks = json_object_object_get(args, "disks");
        a->probe_addresses = json_object_object_get(args, "probe_addresses");
        if (a->rpo < REPL_RPO_MIN_S || a->rpo > REPL_RPO_MAX_S)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s: rpo must be between %d s (1 minute) and %d s (24 "
                                     "hours), got %lld",
                                     m, REPL_RPO_MIN_S, REPL_RPO_MAX_S, (long long)a->rpo);
        if (a->points_in_time < 1 || a->points_in_time > REPL_POINTS_MAX)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s: points_in_time must be between 1 and %d, got %lld", m,
                                     REPL_POINTS_MAX, (long long)a->points_in_time);
        if (a->bandwidth_mbps < 0 || a->bandwidth_mbps > 1000000)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s: bandwidth_limit is in Mbit/s, 0 (unlimited) to "
                                     "1000000, got %lld",
                                     m, (long long)a->bandwidth_mbps);
        if (a->disks && (!json_object_is_type(a->disks, json_type_array) ||
                         json_object_array_length(a->disks) == 0 ||
                         json_object_array_length(a->disks) > NST_SRC_MAX_DISKS))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s: disks must be a non-empty list of disk names "
                                     "(e.g. [\"vda\"])",
                                     m);
        if (a->probe_addresses && !json_object_is_type(a->probe_addresses, json_type_array))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s: probe_addresses must be a list of addresses", m);
        return 0;
}

/* Fills r's disks from the request (or every non-cdrom disk), checking
 * each exists and can carry checkpoints; sizes[] for the target. */
static int choose_disks(virDomainPtr dom, const struct enable_args *a, struct src_repl *r,
                        uint64_t *sizes, json_object **ret_target_disks, struct nst_error *err) {
        struct nst_src_disk_info *info = NULL;
        size_t n = 0;
        int rc = nst_src_list_disks(dom, &info, &n, err);
        if (rc < 0)
                return rc;
        json_object *td = json_object_new_array();
        size_t want = a->disks ? json_object_array_length(a->disks) : n;
        for (size_t i = 0; rc >= 0 && i < want; i++) {
                const char *name = NULL;
                const struct nst_src_disk_info *d = NULL;
                if (a->disks) {
                        json_object *v = json_object_array_get_idx(a->disks, i);
                        name = json_object_is_type(v, json_type_string) ? json_object_get_string(v)
                                                                        : NULL;
                        for (size_t j = 0; name && j < n; j++)
                                if (strcmp(info[j].name, name) == 0)
                                        d = &info[j];
                        if (!d) {
                                rc = nst_error_set(err, -EINVAL, "InvalidInput",
                                                   "replication_enable: instance has no disk "
                                                   "'%.32s'",
                                                   name ? name : "(not a string)");
                                break;
                        }
                        for (size_t j = 0; j < r->n_disks; j++)
                                if (strcmp(r->disks[j], name) == 0)
                                        rc = nst_error_set(err, -EINVAL, "InvalidInput",
                                                           "replication_enable: disk '%s' is "
                                                           "listed twice",
                                                           name);
                        if (rc < 0)
                                break;
                } else {
                        d = &info[i];
                        if (d->cdrom)
                                continue;
                }
                if (d->cdrom || strcmp(d->format, "qcow2") != 0) {
                        rc = nst_error_set(err, -EINVAL, "InvalidInput",
                                           "replication_enable: disk '%s' is %s: changed-block "
                                           "tracking needs a qcow2 disk",
                                           d->name, d->cdrom ? "a cdrom" : d->format);
                        break;
                }
                snprintf(r->disks[r->n_disks], sizeof(r->disks[0]), "%s", d->name);
                sizes[r->n_disks++] = d->size;
                json_object *o = json_object_new_object();
                json_object_object_add(o, "name", json_object_new_string(d->name));
                json_object_object_add(o, "size", json_object_new_int64((int64_t)d->size));
                json_object *seed = a->seeds ? json_object_object_get(a->seeds, d->name) : NULL;
                if (seed)
                        json_object_object_add(o, "seed", json_object_get(seed));
                json_object_array_add(td, o);
        }
        if (rc >= 0 && r->n_disks == 0)
                rc = nst_error_set(err, -EINVAL, "InvalidInput",
                                   "replication_enable: the instance has no disk to replicate");
        if (rc >= 0 && a->seeds) {
                json_object_object_foreach(a->seeds, key, val) {
                        bool known = false;
                        for (size_t j = 0; j < r->n_disks; j++)
                                known |= strcmp(r->disks[j], key) == 0;
                        if (!known || !json_object_is_type(val, json_type_string)) {
                                rc = nst_error_set(err, -EINVAL, "InvalidInput",
                                                   "replication_enable: seeds.%s must name a "
                                                   "replicated disk and be a path on the target",
                                                   key);
                                break;
                        }
                }
        }
        nst_src_disks_free(info, n);
        if (rc < 0) {
                json_object_put(td);
                return rc;
        }
        *ret_target_disks = td;
        return 0;
}

/* A quiesce the instance cannot do: required is refused at once (every
 * cycle would fail), preferred is said once (every point will be
 * crash-consistent). */
static int check_quiesce_possible(virDomainPtr dom, const char *method, enum nst_src_quiesce q,
                                  struct nst_error *err) {
        if (q == NST_SRC_QUIESCE_OFF)
                return 0;
        if (q == NST_SRC_QUIESCE_REQUIRED)
                return nst_lv_require_agent_channel(dom, method, err);
        int has = nst_lv_has_agent_channel(dom, err);
        if (has == 0)
                log_info("%s: no guest agent channel; its replicated points will be "
                         "crash-consistent",
                         virDomainGetName(dom));
        return has < 0 ? has : 0;
}

static int m_enable(struct nst_call *call, json_object *args, void *ud, json_object **ret,
                    struct nst_error *err) {
        struct repl_source *s = ud;
        struct repl_plugin *p = s->p;
        struct enable_args a = {0};
        int rc = parse_enable(args, &a, err);
        if (rc < 0)
                return rc;
        if (a.quiesce == NULL)
                a.quiesce = a.rpo >= 900 ? "preferred" : "off";
        struct src_repl *r = calloc(1, sizeof(*r));
        if (!r)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        _cleanup_free_ struct src_repl *owned = r;
        r->quiesce = NST_SRC_QUIESCE_REQUIRED + 1;
        for (size_t i = 0; i < NST_ARRAY_SIZE(quiesce_names); i++)
                if (strcmp(a.quiesce, quiesce_names[i]) == 0)
                        r->quiesce = (enum nst_src_quiesce)i;
        if (r->quiesce > NST_SRC_QUIESCE_REQUIRED)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "replication_enable: quiesce must be required, preferred "
                                     "or off, got '%.32s'",
                                     a.quiesce);
        if (r->quiesce != NST_SRC_QUIESCE_OFF && a.rpo < 900)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "replication_enable: quiescing needs an RPO of at least 15 "
                                     "minutes (900 s); use quiesce off for rpo %lld",
                                     (long long)a.rpo);
        if (strcmp(a.target_host, p->host_name) == 0)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "replication_enable: target_host is this host (%s); a "
                                     "replica belongs on another node",
                                     a.target_host);
        if (strlen(a.target_host) >= sizeof(r->target_host) || !*a.target_host)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "replication_enable: target_host must be 1-255 characters");

        virConnectPtr conn = NULL;
        virDomainPtr dom = NULL;
        if ((rc = repl_domain_open(p, a.instance, &conn, &dom, err)) < 0)
                return rc;
        /* Only Nestor's instances: failover rebuilds the VM from the
         * definition the libvirt plugin wrote (profile, PCI claims). */
        char *md = virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, NST_METADATA_NS, 0);
        if (!md) {
                virErrorPtr e = virGetLastError();
                rc = e && e->code == VIR_ERR_NO_DOMAIN_METADATA
                             ? nst_error_set(err, -ENOENT, "InstanceNotFound",
                                             "replication_enable: %s is not an instance managed "
                                             "by Nestor",
                                             a.instance)
                             : nst_lv_error(err, -EIO, "HypervisorError",
                                            "cannot read the metadata of %s", a.instance);
                virDomainFree(dom);
                virConnectClose(conn);
                return rc;
        }
        free(md);
        char uuid[VIR_UUID_STRING_BUFLEN];
        virDomainGetUUIDString(dom, uuid);
        snprintf(r->id, sizeof(r->id), "%s", uuid);
        snprintf(r->name, sizeof(r->name), "%s", virDomainGetName(dom));
        pthread_mutex_lock(&s->lock);
        bool exists = find_locked(s, r->id) != NULL;
        pthread_mutex_unlock(&s->lock);
        uint64_t sizes[NST_SRC_MAX_DISKS];
        json_object *target_disks = NULL;
        char *xml = NULL;
        if (exists)
                rc = nst_error_set(err, -EEXIST, "ReplicationExists",
                                   "instance %s is already replicated (replication %s); "
                                   "replication_disable it first",
                                   r->name, r->id);
        else if ((rc = check_quiesce_possible(dom, "replication_enable", r->quiesce, err)) >= 0)
                rc = choose_disks(dom, &a, r, sizes, &target_disks, err);
        if (rc >= 0 && !(xml = virDomainGetXMLDesc(dom, VIR_DOMAIN_XML_INACTIVE)))
                rc = nst_lv_error(err, -EIO, "HypervisorError", "cannot read instance %s",
                                  r->name);
        virDomainFree(dom);
        virConnectClose(conn);
        if (rc < 0) {
                free(xml);
                return rc;
        }
        if (RAND_bytes(r->psk, NST_RC_PSK_LEN) != 1) {
                free(xml);
                json_object_put(target_disks);
                return nst_error_set(err, -EIO, "InternalError", "no random bytes for the key");
        }
        snprintf(r->target_host, sizeof(r->target_host), "%s", a.target_host);
        r->rpo_s = a.rpo;
        r->points_in_time = (unsigned)a.points_in_time;
        r->compress = a.compress;
        r->bandwidth = (uint64_t)a.bandwidth_mbps * 1000000 / 8;
        r->seeded = a.seeds != NULL;
        r->created_ms = repl_now_ms();
        /* Checkpoint names unique across enables and hosts: the bitmaps of
         * an earlier replication may still be in a migrated disk's qcow2
         * without libvirt knowing them. */
        r->checkpoint_seq = (uint64_t)r->created_ms;

        /* The target prepares its replica and says where to connect. */
        char psk_hex[2 * NST_RC_PSK_LEN + 1];
        repl_hex_encode(r->psk, NST_RC_PSK_LEN, psk_hex);
        json_object *targs = json_object_new_object();
        json_object_object_add(targs, "replication", json_object_new_string(r->id));
        json_object_object_add(targs, "source_host", json_object_new_string(p->host_name));
        json_object_object_add(targs, "instance_name", json_object_new_string(r->name));
        json_object_object_add(targs, "psk", json_object_new_string(psk_hex));
        json_object_object_add(targs, "disks", target_disks);
        json_object_object_add(targs, "domain_xml", json_object_new_string(xml));
        json_object_object_add(targs, "points_in_time", json_object_new_int((int)r->points_in_time));
        json_object_object_add(targs, "probe_addresses",
                               a.probe_addresses ? json_object_get(a.probe_addresses)
                                                 : json_object_new_array());
        free(xml);
        json_object *tr = NULL;
        rc = repl_call_agent(p, r->target_host, "replication_target_prepare", targs,
                             p->o.rpc_timeout_s, &tr, err);
        json_object_put(targs);
        if (rc == -ETIMEDOUT)
                return nst_error_set(err, rc, "TargetUnreachable",
                                     "replication_enable: the agent of target host %s did not "
                                     "answer within %.0f s",
                                     r->target_host, p->o.rpc_timeout_s);
        if (rc < 0)
                return nst_error_prefix(err, "target %s refused the replica", r->target_host);
        const char *addr = json_object_get_string(json_object_object_get(tr, "address"));
        int64_t port = json_object_get_int64(json_object_object_get(tr, "port"));
        if (!addr || !*addr || strlen(addr) >= sizeof(r->target_address) || port <= 0 ||
            port > 65535) {
                json_object_put(tr);
                return nst_error_set(err, -EPROTO, "TargetError",
                                     "target %s answered without a data channel address",
                                     r->target_host);
        }
        snprintf(r->target_address, sizeof(r->target_address), "%s", addr);
        r->target_port = (int)port;
        /* The target kept points (this host took the replica over from the
         * instance's previous host, or lost its record): the first cycle
         * compares hashes with the newest and ships what differs. */
        int64_t target_points = json_object_get_int64(json_object_object_get(tr, "points"));
        if (target_points > 0 && !r->seeded)
                r->resync_needed = true;
        json_object_put(tr);

        pthread_mutex_lock(&s->lock);
        if (find_locked(s, r->id))
                rc = nst_error_set(err, -EEXIST, "ReplicationExists",
                                   "instance %s is already replicated", r->name);
        if (rc >= 0)
                rc = record_save_locked(s, r, err);
        if (rc >= 0 && (rc = add_locked(s, r)) < 0)
                nst_error_set(err, rc, "MemoryError", "out of memory");
        if (rc >= 0) {
                owned = NULL;
                *ret = status_locked(s, r);
                pthread_cond_broadcast(&s->wake);
        }
        json_object *d = rc >= 0 ? event_data(r, p->host_name) : NULL;
        pthread_mutex_unlock(&s->lock);
        if (rc < 0)
                return rc;
        log_info("replication %s (%s) to %s enabled: rpo %lld s, %zu disk(s)", r->id, r->name,
                 r->target_host, (long long)r->rpo_s, r->n_disks);
        repl_notify(p, "replication.enable.end", d, NULL);
        return 0;
}

static int with_replication(struct repl_source *s, json_object *args, const char *method,
                            struct src_repl **ret, struct nst_error *err) {
        static const char *const allowed[] = {"replication", NULL};
        const char *id = NULL;
        int r = nst_json_check_keys(args, method, allowed, err);
        if (r < 0 || (r = replication_arg(args, method, &id, err)) < 0)
                return r;
        struct src_repl *x = find_locked(s, id);
        if (!x)
                return nst_error_set(err, -ENOENT, "ReplicationNotFound",
                                     "%s: this host is not the source of replication %s", method,
                                     id);
        *ret = x;
        return 0;
}

static int mark_replaced_locked(struct repl_source *s, struct src_repl *r, const char *by,
                                struct nst_error *err) {
        if (strcmp(r->replaced_by, by) == 0)
                return 0;
        char was[sizeof(r->replaced_by)];
        memcpy(was, r->replaced_by, sizeof(was));
        snprintf(r->replaced_by, sizeof(r->replaced_by), "%s", by);
        int rc = record_save_locked(s, r, err);
        if (rc < 0) {
                memcpy(r->replaced_by, was, sizeof(was));
                return rc;
        }
        nst_sched_set_paused(s->sched, r->sched_id, true, repl_now_ms());
        pthread_cond_broadcast(&s->wake);
        log_warning("replication %s (%s): %s took the replica over; no more cycles from here "
                    "(replication_disable it)",
                    r->id, r->name, by);
        return 0;
}

static int replaced_error(const struct src_repl *r, const char *method, struct nst_error *err) {
        return nst_error_set(err, -EBUSY, "ReplicationReplaced",
                             "%s: %s replicates instance %s now (it took the replica over); "
                             "replication_disable it here",
                             method, r->replaced_by, r->name);
}

/* Called by the target when the instance's new host took the replica over
 * (replication_target_prepare): cycles from here would be refused, and the
 * RPO is no longer this host's to keep. */
static int m_replaced(struct nst_call *call, json_object *args, void *ud, json_object **ret,
                      struct nst_error *err) {
        struct repl_source *s = ud;
        static const char *const allowed[] = {"replication", "source_host", NULL};
        const char *m = "replication_source_replaced";
        const char *id = NULL, *by = NULL;
        int rc = nst_json_check_keys(args, m, allowed, err);
        if (rc < 0 || (rc = replication_arg(args, m, &id, err)) < 0 ||
            (rc = nst_json_req_string(args, "source_host", m, &by, err)) < 0)
                return rc;
        if (!*by || strlen(by) >= sizeof(((struct src_repl *)0)->replaced_by) ||
            strcmp(by, s->p->host_name) == 0)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s: source_host must name another host, got '%.64s'", m,
                                     by);
        pthread_mutex_lock(&s->lock);
        struct src_repl *r = find_locked(s, id);
        if (!r)
                rc = nst_error_set(err, -ENOENT, "ReplicationNotFound",
                                   "%s: this host is not the source of replication %s", m, id);
        if (rc >= 0)
                rc = mark_replaced_locked(s, r, by, err);
        if (rc >= 0)
                *ret = status_locked(s, r);
        pthread_mutex_unlock(&s->lock);
        return rc;
}

static int m_pause_resume(struct repl_source *s, json_object *args, bool pause,
                          json_object **ret, struct nst_error *err) {
        const char *method = pause ? "replication_pause" : "replication_resume";
        pthread_mutex_lock(&s->lock);
        struct src_repl *r = NULL;
        int rc = with_replication(s, args, method, &r, err);
        if (rc >= 0 && !pause && r->replaced_by[0])
                rc = replaced_error(r, method, err);
        if (rc >= 0 && r->paused != pause) {
                r->paused = pause;
                nst_sched_set_paused(s->sched, r->sched_id, pause, repl_now_ms());
                if ((rc = record_save_locked(s, r, err)) < 0) {
                        r->paused = !pause;
                        nst_sched_set_paused(s->sched, r->sched_id, !pause, repl_now_ms());
                } else if (pause && r->running) {
                        cancel_cycle_locked(r, "paused");
                }
                pthread_cond_broadcast(&s->wake);
        }
        if (rc >= 0)
                *ret = status_locked(s, r);
        pthread_mutex_unlock(&s->lock);
        return rc;
}

static int m_pause(struct nst_call *call, json_object *args, void *ud, json_object **ret,
                   struct nst_error *err) {
        return m_pause_resume(ud, args, true, ret, err);
}

static int m_resume(struct nst_call *call, json_object *args, void *ud, json_object **ret,
                    struct nst_error *err) {
        return m_pause_resume(ud, args, false, ret, err);
}

static int m_sync_now(struct nst_call *call, json_object *args, void *ud, json_object **ret,
                      struct nst_error *err) {
        struct repl_source *s = ud;
        pthread_mutex_lock(&s->lock);
        struct src_repl *r = NULL;
        int rc = with_replication(s, args, "replication_sync_now", &r, err);
        if (rc >= 0 && r->replaced_by[0])
                rc = replaced_error(r, "replication_sync_now", err);
        else if (rc >= 0 && r->paused)
                rc = nst_error_set(err, -EBUSY, "ReplicationPaused",
                                   "replication_sync_now: replication %s is paused; "
                                   "replication_resume it first",
                                   r->id);
        if (rc >= 0) {
                if (!r->running)
                        nst_sched_request_now(s->sched, r->sched_id, repl_now_ms());
                json_object *o = json_object_new_object();
                json_object_object_add(o, "replication", json_object_new_string(r->id));
                json_object_object_add(o, "already_running", json_object_new_boolean(r->running));
                json_object_object_add(o, "cycles_total",
                                       json_object_new_int64((int64_t)r->cycles_total));
                *ret = o;
                pthread_cond_broadcast(&s->wake);
        }
        pthread_mutex_unlock(&s->lock);
        return rc;
}

static int m_disable(struct nst_call *call, json_object *args, void *ud, json_object **ret,
                     struct nst_error *err) {
        struct repl_source *s = ud;
        struct repl_plugin *p = s->p;
        pthread_mutex_lock(&s->lock);
        struct src_repl *r = NULL;
        int rc = with_replication(s, args, "replication_disable", &r, err);
        char id[37] = "", target[256] = "";
        json_object *d = NULL;
        bool running = false, migrated = false;
        if (rc >= 0) {
                char path[4096];
                record_path(s, r->id, path, sizeof(path));
                if (unlink(path) < 0 && errno != ENOENT)
                        rc = nst_error_set(err, -errno, "StorageError", "cannot remove %s: %s",
                                           path, strerror(errno));
        }
        if (rc >= 0) {
                snprintf(id, sizeof(id), "%s", r->id);
                snprintf(target, sizeof(target), "%s", r->target_host);
                d = event_data(r, p->host_name);
                migrated = r->presence == REPL_PRESENCE_MIGRATED;
                nst_sched_remove(s->sched, r->sched_id);
                r->removed = true; /* a running cycle stops, then frees it */
                if (r->running) {
                        /* It stops at its next extent; wait (bounded) so that
                         * its checkpoint and the replica are no longer in use. */
                        uint64_t sid = r->sched_id;
                        cancel_cycle_locked(r, "disabled");
                        struct timespec ts;
                        clock_gettime(CLOCK_REALTIME, &ts);
                        ts.tv_sec += DISABLE_WAIT_S;
                        while (find_sched_locked(s, sid) &&
                               pthread_cond_timedwait(&s->wake, &s->lock, &ts) != ETIMEDOUT)
                                ;
                        running = find_sched_locked(s, sid) != NULL; /* else freed */
                } else {
                        drop_locked(s, r);
                }
        }
        pthread_mutex_unlock(&s->lock);
        if (rc < 0)
                return rc;
        if (!running) { /* else the cycle removes it when it ends */
                char run_dir[4096];
                run_dir_path(s, id, run_dir, sizeof(run_dir));
                nst_src_run_dir_remove(run_dir);
        }
        /* Checkpoints are Nestor's: they go with the replication. Not those
         * of an instance that migrated away: its disks may be in use on its
         * new host (shared storage), whose replication has its own. */
        virConnectPtr conn = NULL;
        virDomainPtr dom = NULL;
        struct nst_error e = NST_ERROR_INIT;
        if (migrated)
                log_info("replication %s: the instance migrated away; its checkpoints here are "
                         "left alone",
                         id);
        else if (repl_domain_open(p, id, &conn, &dom, &e) == 0) {
                if (nst_src_checkpoints_prune(dom, NULL, &e) < 0)
                        log_warning("replication %s: deleting its checkpoints: %s", id, e.message);
                virDomainFree(dom);
                virConnectClose(conn);
        }
        json_object *targs = json_object_new_object();
        json_object_object_add(targs, "replication", json_object_new_string(id));
        json_object_object_add(targs, "source_host", json_object_new_string(p->host_name));
        json_object *tr = NULL;
        nst_error_clear(&e);
        int trc = repl_call_agent(p, target, "replication_target_remove", targs,
                                  p->o.rpc_timeout_s, &tr, &e);
        json_object_put(targs);
        /* false: another host took the replica over, and keeps it. */
        bool removed = trc >= 0 &&
                       json_object_get_boolean(json_object_object_get(tr, "removed"));
        const char *now_from = trc >= 0 ? json_object_get_string(json_object_object_get(
                                                  tr, "source_host"))
                                        : NULL;
        if (trc < 0)
                log_warning("replication %s: target %s did not remove its replica: %s", id,
                            target, e.message);
        else if (!removed)
                log_info("replication %s: the replica on %s now belongs to %s and stays", id,
                         target, now_from ? now_from : "another source");
        json_object *o = json_object_new_object();
        json_object_object_add(o, "replication", json_object_new_string(id));
        json_object_object_add(o, "target_removed", json_object_new_boolean(removed));
        if (trc < 0)
                json_object_object_add(o, "target_error", json_object_new_string(e.message));
        else if (!removed)
                json_object_object_add(o, "target_source_host", nst_json_string_or_null(now_from));
        json_object_put(tr);
        *ret = o;
        log_info("replication %s to %s disabled", id, target);
        repl_notify(p, "replication.disable.end", d, NULL);
        return 0;
}

/* Changes the options of a running replication; the next cycle uses them. */
static int m_update(struct nst_call *call, json_object *args, void *ud, json_object **ret,
                    struct nst_error *err) {
        struct repl_source *s = ud;
        static const char *const allowed[] = {"replication", "rpo", "quiesce", "points_in_time",
                                              "compress", "bandwidth_limit", NULL};
        const char *m = "replication_update";
        const char *id = NULL, *quiesce = NULL;
        int64_t rpo = -1, points = -1, mbps = -1;
        bool compress = false;
        json_object *jc = json_object_object_get(args, "compress");
        int rc = nst_json_check_keys(args, m, allowed, err);
        if (rc < 0 || (rc = replication_arg(args, m, &id, err)) < 0 ||
            (rc = nst_json_opt_int64(args, "rpo", m, &rpo, err)) < 0 ||
            (rc = nst_json_opt_int64(args, "points_in_time", m, &points, err)) < 0 ||
            (rc = nst_json_opt_int64(args, "bandwidth_limit", m, &mbps, err)) < 0 ||
            (rc = nst_json_opt_string(args, "quiesce", m, &quiesce, err)) < 0 ||
            (rc = nst_json_opt_bool(args, "compress", m, &compress, err)) < 0)
                return rc;
        if (rpo != -1 && (rpo < REPL_RPO_MIN_S || rpo > REPL_RPO_MAX_S))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s: rpo must be between %d s (1 minute) and %d s (24 "
                                     "hours), got %lld",
                                     m, REPL_RPO_MIN_S, REPL_RPO_MAX_S, (long long)rpo);
        if (points != -1 && (points < 1 || points > REPL_POINTS_MAX))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s: points_in_time must be between 1 and %d, got %lld", m,
                                     REPL_POINTS_MAX, (long long)points);
        if (mbps != -1 && (mbps < 0 || mbps > 1000000))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s: bandwidth_limit is in Mbit/s, 0 (unlimited) to "
                                     "1000000, got %lld",
                                     m, (long long)mbps);
        int q = -1;
        for (size_t i = 0; quiesce && i < NST_ARRAY_SIZE(quiesce_names); i++)
                if (strcmp(quiesce, quiesce_names[i]) == 0)
                        q = (int)i;
        if (quiesce && q < 0)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s: quiesce must be required, preferred or off, got "
                                     "'%.32s'",
                                     m, quiesce);
        pthread_mutex_lock(&s->lock);
        bool known = find_locked(s, id) != NULL;
        pthread_mutex_unlock(&s->lock);
        if (known && q > NST_SRC_QUIESCE_OFF) {
                /* Checked where the instance is here; one that is away
                 * (migrated) is checked by its cycles. */
                virConnectPtr conn = NULL;
                virDomainPtr dom = NULL;
                if (repl_domain_open(s->p, id, &conn, &dom, NULL) >= 0) {
                        rc = check_quiesce_possible(dom, m, (enum nst_src_quiesce)q, err);
                        virDomainFree(dom);
                        virConnectClose(conn);
                        if (rc < 0)
                                return rc;
                }
        }
        pthread_mutex_lock(&s->lock);
        struct src_repl *r = find_locked(s, id);
        if (!r) {
                pthread_mutex_unlock(&s->lock);
                return nst_error_set(err, -ENOENT, "ReplicationNotFound",
                                     "%s: this host is not the source of replication %s", m, id);
        }
        int64_t new_rpo = rpo != -1 ? rpo : r->rpo_s;
        int new_q = q >= 0 ? q : (int)r->quiesce;
        if (new_q != NST_SRC_QUIESCE_OFF && new_rpo < 900) {
                pthread_mutex_unlock(&s->lock);
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s: quiescing needs an RPO of at least 15 minutes (900 s)",
                                     m);
        }
        struct src_repl before = *r;
        r->rpo_s = new_rpo;
        r->quiesce = (enum nst_src_quiesce)new_q;
        if (points != -1)
                r->points_in_time = (unsigned)points;
        if (jc)
                r->compress = compress;
        if (mbps != -1)
                r->bandwidth = (uint64_t)mbps * 1000000 / 8;
        if ((rc = record_save_locked(s, r, err)) < 0) {
                *r = before;
        } else {
                nst_sched_set_rpo(s->sched, r->sched_id, r->rpo_s * 1000, repl_now_ms());
                pthread_cond_broadcast(&s->wake);
                *ret = status_locked(s, r);
        }
        pthread_mutex_unlock(&s->lock);
        return rc;
}

/* Asked by the target before a failover: does the primary run here? */
static int m_primary_state(struct nst_call *call, json_object *args, void *ud,
                           json_object **ret, struct nst_error *err) {
        struct repl_source *s = ud;
        static const char *const allowed[] = {"replication", NULL};
        const char *id = NULL;
        int rc = nst_json_check_keys(args, "replication_primary_state", allowed, err);
        if (rc < 0 || (rc = replication_arg(args, "replication_primary_state", &id, err)) < 0)
                return rc;
        virConnectPtr conn = NULL;
        virDomainPtr dom = NULL;
        rc = presence_check(s, id, &conn, &dom, err);
        if (rc < 0)
                return rc;
        enum repl_presence at = (enum repl_presence)rc;
        json_object *o = json_object_new_object();
        json_object_object_add(o, "exists", json_object_new_boolean(dom != NULL));
        /* "running" means a QEMU process of it runs here (paused counts);
         * "migrated" that it may run on another host. */
        json_object_object_add(o, "running", json_object_new_boolean(at == REPL_PRESENCE_HERE));
        json_object_object_add(o, "migrated",
                               json_object_new_boolean(at == REPL_PRESENCE_MIGRATED));
        json_object_object_add(o, "presence", json_object_new_string(repl_presence_name(at)));
        if (dom) {
                virDomainFree(dom);
                virConnectClose(conn);
        }
        json_object_object_add(o, "host", json_object_new_string(s->p->host_name));
        *ret = o;
        return 0;
}

const struct nst_method repl_source_methods[] = {
        {"replication_enable", "1.0", m_enable, NULL},
        {"replication_disable", "1.0", m_disable, NULL},
        {"replication_pause", "1.0", m_pause, NULL},
        {"replication_resume", "1.0", m_resume, NULL},
        {"replication_sync_now", "1.0", m_sync_now, NULL},
        {"replication_update", "1.0", m_update, NULL},
        {"replication_primary_state", "1.0", m_primary_state, NULL},
        {"replication_source_replaced", "1.0", m_replaced, NULL},
};
const size_t repl_source_n_methods = NST_ARRAY_SIZE(repl_source_methods);
