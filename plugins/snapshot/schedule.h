/* Snapshot schedules and retention, as a pure module: no libvirt, no I/O, no
 * clock of its own. The caller passes every time in (unix seconds, UTC), so
 * the plugin's timer and the tests drive it the same way (docs/snapshot.md,
 * "Schedules and retention").
 *
 * A schedule is the JSON object `snapshot_schedule_set` receives and the
 * instance metadata stores:
 *
 *   {"interval": "6h" | "90m" | "1d" | "30s"... | 3600,      exactly one of
 *    "calendar": "hourly :15" | "daily 02:00" | "weekly sun 03:30"   these two
 *              | "monthly 1 04:00" | "mon,wed,fri 22:00",
 *    "timezone": "UTC",                       (the only one supported)
 *    "retention": {"keep_last": 7, "keep_daily": 7, "keep_weekly": 4},
 *    "memory": false, "quiesce": "preferred" | "required" | "off",
 *    "name_prefix": "auto"}
 *
 * Fire times form a fixed grid that does not depend on when the schedule last
 * ran: an interval fires at the multiples of its length since the epoch (so
 * "6h" fires at 00:00, 06:00, 12:00 and 18:00 UTC), a calendar at the wall
 * times it names. The same grid survives agent restarts and needs no state
 * but the last run time. */
#ifndef NESTOR_PLUGINS_SNAPSHOT_SCHEDULE_H
#define NESTOR_PLUGINS_SNAPSHOT_SCHEDULE_H

#include <json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "messages/error.h"

#define NST_SCHEDULE_INTERVAL_MIN 60                  /* 1 minute */
#define NST_SCHEDULE_INTERVAL_MAX (366 * 86400)       /* 366 days */
#define NST_RETENTION_KEEP_MAX 1000                   /* per rule */
#define NST_SCHEDULE_PREFIX_MAX 48                    /* name_prefix length */
/* Buffer size for nst_schedule_snapshot_name: prefix, '-', a 16-character
 * time stamp and the NUL. */
#define NST_SCHEDULE_SNAPSHOT_NAME_SIZE (NST_SCHEDULE_PREFIX_MAX + 18)
/* Times are handled up to 9999-12-31T23:59:59Z (four-digit years). */
#define NST_SCHEDULE_TIME_MAX INT64_C(253402300799)
/* nst_schedule_next() when there is no fire time left in that range. */
#define NST_SCHEDULE_NEVER INT64_MAX

struct nst_schedule; /* parsed and validated; immutable once parsed */

/* Parses and validates a schedule. Every problem is InvalidInput with a
 * message naming the field ("interval must be at least 1 minute, got 30s",
 * "calendar 'daily 25:00': ... accepted forms: ...", "retention.keep_last must
 * be at least 1", "unknown key 'intervall' (expected ...)"). Unknown keys
 * are refused at every level, so a typo never falls back to a default.
 * Defaults: timezone "UTC", keep_daily and keep_weekly 0, memory false,
 * quiesce "preferred", name_prefix "auto". spec is borrowed; *ret is owned
 * by the caller (nst_schedule_free) and set only on success. */
int nst_schedule_parse(json_object *spec, struct nst_schedule **ret, struct nst_error *err);
void nst_schedule_free(struct nst_schedule *s);
NST_DEFINE_CLEANUP(struct nst_schedule, nst_schedule_free)

/* The canonical JSON form, every field present with defaults filled in and
 * values normalised ("interval": 3600 becomes "1h", "Daily 2:00" becomes
 * "daily 02:00"). Parsing it gives the same schedule, and converting that
 * again gives the same text. Owned by the caller; NULL only when out of
 * memory. */
json_object *nst_schedule_to_json(const struct nst_schedule *s);

/* The first fire time strictly after `after`. Fire times before the epoch
 * do not exist; NST_SCHEDULE_NEVER when after >= NST_SCHEDULE_TIME_MAX. */
int64_t nst_schedule_next(const struct nst_schedule *s, int64_t after);

enum nst_schedule_due {
        NST_SCHEDULE_WAIT = 0,  /* nothing to do before *next */
        NST_SCHEDULE_RUN_NOW,   /* take one snapshot now; the one after is at *next */
};

/* What to do at `now`. created_at is when this schedule (this version of it:
 * a schedule_set replacing a schedule resets it) was set; last_run is when it
 * last ran, 0 when never.
 *
 * Only fire times after both created_at and last_run count, so a new
 * schedule does not run at once for times before it existed. If one or more
 * of them lie in (.., now], the answer is RUN_NOW, once, however many were
 * missed while the agent was down, and *next is the first fire time after
 * now. Otherwise WAIT, with *next the first fire time to come.
 *
 * A created_at or last_run later than now means the clock stepped back; it
 * is taken as now, so a clock corrected from the future does not stall the
 * schedule (a run time can then repeat: the caller sees its snapshot name
 * already taken). next may be NULL. */
enum nst_schedule_due nst_schedule_due(const struct nst_schedule *s, int64_t created_at,
                                       int64_t last_run, int64_t now, int64_t *next);

/* One snapshot a schedule took: its name and creation time (unix seconds). */
struct nst_snapshot_stamp {
        const char *name;
        int64_t created;
};

/* Which of the snapshots a schedule took to delete, in any order. Kept: the
 * newest keep_last; the newest of each of the keep_daily most recent UTC days
 * that have a snapshot; the newest of each of the keep_weekly most recent ISO
 * weeks (Monday to Sunday, UTC) that have one. The rules count independently
 * over all the snapshots (a snapshot kept by one rule still fills a slot of
 * another), and the newest snapshot is never deleted. Equal creation times
 * are ordered by name.
 *
 * ret_delete[i] is set for snaps[i] (n flags, written only on success).
 * Returns how many are to be deleted, or -EINVAL (NULL arrays with n > 0)
 * or -ENOMEM. */
int nst_retention_prune(const struct nst_schedule *s, const struct nst_snapshot_stamp *snaps,
                        size_t n, bool *ret_delete, struct nst_error *err);

/* "preferred", "required" or "off"; borrowed, static. */
const char *nst_schedule_quiesce(const struct nst_schedule *s);
bool nst_schedule_memory(const struct nst_schedule *s);

/* Name of the snapshot for a run at t: "<prefix>-YYYYMMDDTHHMMSSZ"
 * ("auto-20240301T020000Z"). t is clamped to [0, NST_SCHEDULE_TIME_MAX].
 * buf should have NST_SCHEDULE_SNAPSHOT_NAME_SIZE bytes; a smaller one gets
 * a truncated, NUL-terminated name. */
void nst_schedule_snapshot_name(const struct nst_schedule *s, int64_t t, char *buf, size_t size);

/* True when name is one nst_schedule_snapshot_name gives for this schedule's
 * prefix (a real date and time), with the time in *ret_t (may be NULL): how
 * the plugin tells the snapshots a schedule took, for retention, from the
 * others. */
bool nst_schedule_snapshot_name_match(const struct nst_schedule *s, const char *name,
                                      int64_t *ret_t);

#endif
