/* When each replication's next cycle starts (docs/replication.md): pure, with
 * an explicit clock, so thousands of replications are tested and benchmarked
 * with simulated transfers.
 *
 * A replication's point must never be older than its RPO. A cycle that
 * starts at t produces a point at about t (the backup's point in time) and
 * ends at t + duration; the next cycle must produce its point before
 * last_point + rpo, and the scheduler starts it at
 *   due = last_point + rpo - predicted_duration * safety - margin
 * where predicted_duration is a moving estimate of recent cycle durations,
 * scaled by changed bytes when a hint is given (libvirt reports the bytes
 * changed since a checkpoint before anything is read). Cycles never start
 * closer together than min_gap, and at most max_running run at once; when
 * more are due the earliest deadline (last_point + rpo) goes first. A failed
 * cycle is retried with exponential backoff (retry_min .. retry_max).
 *
 * Violations: a replication whose last point is older than its RPO is in
 * violation; nst_sched_poll reports the transitions (raised/cleared) once
 * each. Not thread-safe: the owner locks. */
#ifndef NESTOR_PLUGINS_REPLICATION_REPL_SCHED_H
#define NESTOR_PLUGINS_REPLICATION_REPL_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nst_sched_config {
        unsigned max_running;    /* cycles at once, >= 1 */
        int64_t min_gap_ms;      /* between two cycles of one replication */
        int64_t margin_ms;       /* started this much earlier than needed */
        double safety;           /* multiplier on the predicted duration, >= 1 */
        int64_t retry_min_ms, retry_max_ms;
        /* Assumed duration before a replication's first cycle completes;
         * <= 0 means the default (10 s). Added after the fields above so a
         * config built field by field keeps its meaning. */
        int64_t default_duration_ms;
        /* The margin is at least this fraction of the rpo (0.02: 72 s for a
         * 1 h rpo): a long cycle's duration varies by minutes with what else
         * shares the link, a flat margin_ms cannot cover that. */
        double margin_rpo_fraction;
};
void nst_sched_config_default(struct nst_sched_config *c);

struct nst_sched;
int nst_sched_new(const struct nst_sched_config *c, struct nst_sched **ret); /* -ENOMEM */
void nst_sched_free(struct nst_sched *s);

/* last_point_ms: time of the last committed point, 0 = none (due now).
 * -EEXIST when id is already there. */
int nst_sched_add(struct nst_sched *s, uint64_t id, int64_t rpo_ms, int64_t last_point_ms,
                  int64_t now_ms);
void nst_sched_remove(struct nst_sched *s, uint64_t id);
void nst_sched_set_rpo(struct nst_sched *s, uint64_t id, int64_t rpo_ms, int64_t now_ms);
/* Paused replications never start (a running cycle finishes) and are not
 * reported as violations while paused. */
void nst_sched_set_paused(struct nst_sched *s, uint64_t id, bool paused, int64_t now_ms);
/* Due now regardless of the estimate (replication_sync_now); still bounded
 * by max_running. */
void nst_sched_request_now(struct nst_sched *s, uint64_t id, int64_t now_ms);
/* Changed bytes known to be waiting (scales the prediction). */
void nst_sched_hint_changed(struct nst_sched *s, uint64_t id, uint64_t bytes);

/* Up to max ids whose cycle should start now (earliest deadline first);
 * they are marked running. Returns how many. */
size_t nst_sched_take_due(struct nst_sched *s, int64_t now_ms, uint64_t *ids, size_t max);
/* A cycle was abandoned on request (pause, disable): as if it had not
 * run, neither a failure (no backoff) nor a cycle end (no minimum gap). */
void nst_sched_cancelled(struct nst_sched *s, uint64_t id, int64_t now_ms);
/* A cycle ended. ok: point_ms is the new point's time, bytes what it
 * shipped, duration_ms how long it ran. !ok: retried with backoff. */
void nst_sched_finished(struct nst_sched *s, uint64_t id, bool ok, int64_t point_ms,
                        int64_t duration_ms, uint64_t bytes, int64_t now_ms);

/* Milliseconds until the next cycle is due or a violation begins
 * (INT64_MAX when nothing is scheduled); 0 when something is due now. */
int64_t nst_sched_next_event_ms(const struct nst_sched *s, int64_t now_ms);

enum nst_sched_violation { NST_SCHED_VIOLATION_RAISED = 1, NST_SCHED_VIOLATION_CLEARED = 2 };
typedef void (*nst_sched_violation_fn)(void *userdata, uint64_t id,
                                       enum nst_sched_violation what, int64_t point_age_ms);
/* Reports violations that began or ended since the last poll. */
void nst_sched_poll(struct nst_sched *s, int64_t now_ms, nst_sched_violation_fn fn,
                    void *userdata);

struct nst_sched_info {
        int64_t rpo_ms, last_point_ms, next_due_ms, predicted_ms;
        bool running, paused, violation;
        unsigned failures;
};
/* -ENOENT for an unknown id. */
int nst_sched_get(const struct nst_sched *s, uint64_t id, struct nst_sched_info *ret);
size_t nst_sched_count(const struct nst_sched *s);

#endif
