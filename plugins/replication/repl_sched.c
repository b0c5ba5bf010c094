/* The replication RPO scheduler (see repl_sched.h): decides when each
 * replication's next cycle starts so that its newest point never gets older
 * than its RPO, and reports RPO violations.
 *
 * It is pure: no I/O, no clock of its own, every time is a parameter. The
 * owner (the plugin's scheduling thread) asks take_due() what to start,
 * tells finished() how a cycle went, calls poll() for violation changes and
 * sleeps next_event_ms().
 *
 * Data structures, sized for tens of thousands of replications:
 *   - an id -> entry hash table (open addressing, linear probing, deletion by
 *     backward shift, so no tombstones accumulate);
 *   - the idle heap: entries waiting for their due time, keyed by due;
 *   - the ready heap: entries already due but waiting for a free slot, keyed
 *     by deadline (last_point + rpo), so the earliest deadline starts first;
 *   - the watch heap: when an entry's violation state must next be looked
 *     at, keyed by the time its violation would begin (or by the time of an
 *     event that may have changed it).
 * Each entry stores its position in every heap, so updating or removing one
 * is O(log n).
 *
 * Rules the header leaves open, decided here:
 *   - min_gap is capped at rpo / 4 and never delays a start past
 *     deadline - predicted (the latest start that still meets the RPO), so
 *     it cannot cause a violation by itself.
 *   - after a failure the retry comes at fail_time + backoff, or earlier when
 *     the normal due time is earlier; when the normal due time has already
 *     passed (the point is old) the backoff still applies, so a dead target
 *     is not hammered.
 *   - request_now is ignored while the replication is paused or running
 *     (the running cycle produces the fresh point); it overrides the
 *     estimate, min_gap and the failure backoff.
 *   - a violation that began and ended between two polls is still reported
 *     (raised, then cleared). Pausing a replication in violation reports it
 *     cleared (paused replications are never in violation); resuming one
 *     whose point is old raises it again. Removing one reports nothing.
 *   - while every slot is busy, due cycles do not count in next_event_ms:
 *     nothing can start before a finished(), after which the owner asks
 *     again.
 *   - an rpo <= 0 means none: no automatic cycles, no violations;
 *     request_now still works.
 *   - a hint on a replication with no throughput of its own yet (its first
 *     cycle, or any cycle after an agent restart) is divided by the fleet's
 *     throughput as it was when the hint came: total bytes over total time
 *     of recent cycles of every replication, so big transfers weigh most.
 *     Taken at hint time so that a replication's due time only changes
 *     with its own events (the heaps stay valid); the owner refreshes hints
 *     anyway. Without a hint, a first cycle is assumed to take
 *     default_duration_ms. */
#include "plugins/replication/repl_sched.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define EWMA_ALPHA 0.3
/* The fleet's sums decay per cycle: about the last few hundred cycles count. */
#define FLEET_DECAY 0.995
#define DEFAULT_DURATION_MS 10000
#define NOT_IN_HEAP SIZE_MAX
#define MIN_TABLE_SIZE 16

enum heap_kind { HEAP_IDLE, HEAP_READY, HEAP_WATCH, HEAP_KINDS };

struct entry {
        uint64_t id;
        int64_t rpo_ms;
        int64_t last_point_ms;  /* 0 = none yet */
        int64_t added_ms;       /* violations of a replication without a point count from here */
        int64_t last_end_ms;    /* end of the last cycle, ok or not; INT64_MIN = none */
        int64_t requested_ms;   /* when request_now came, if requested */
        int64_t due_ms;         /* key of the idle heap; INT64_MAX when not scheduled */
        int64_t watch_ms;       /* key of the watch heap */
        int64_t missed_age_ms;  /* age to report with a missed raise */

        /* Estimates; the *_samples counts say whether they exist yet. */
        double duration_ms;     /* EWMA of successful cycles' durations */
        double rate;            /* EWMA of bytes per ms over whole cycles */
        double overhead_ms;     /* EWMA of the time not explained by the rate */
        unsigned duration_samples, rate_samples, overhead_samples;
        uint64_t hint_bytes;
        double hint_fleet_rate; /* the fleet's bytes per ms when the hint came, 0 = none */

        unsigned failures;
        bool paused, running, requested, has_hint;
        bool reported;          /* a RAISED was reported and not cleared */
        bool missed_raise;      /* a violation came and went before a poll */
        size_t pos[HEAP_KINDS];
};

struct heap {
        enum heap_kind kind;
        struct entry **v;
        size_t n, cap;
};

struct nst_sched {
        struct nst_sched_config cfg;
        struct entry **table;   /* open addressing, NULL = empty slot */
        size_t table_size;      /* a power of two */
        size_t count;
        unsigned running;
        struct heap heaps[HEAP_KINDS];
        double fleet_bytes, fleet_ms;   /* decaying sums over successful cycles */
};

void nst_sched_config_default(struct nst_sched_config *c) {
        *c = (struct nst_sched_config){
                .max_running = 4,
                .min_gap_ms = 10 * 1000,
                .margin_ms = 5 * 1000,
                .safety = 1.5,
                .retry_min_ms = 30 * 1000,
                .retry_max_ms = 15 * 60 * 1000,
                .default_duration_ms = DEFAULT_DURATION_MS,
                .margin_rpo_fraction = 0.02,
        };
}

/* ---- saturating time arithmetic (times are ms, far from the limits, but a
 * huge rpo from a caller must not wrap) ---- */

static int64_t add_sat(int64_t a, int64_t b) {
        int64_t r;
        if (__builtin_add_overflow(a, b, &r))
                return b > 0 ? INT64_MAX : INT64_MIN;
        return r;
}

static int64_t sub_sat(int64_t a, int64_t b) {
        int64_t r;
        if (__builtin_sub_overflow(a, b, &r))
                return b < 0 ? INT64_MAX : INT64_MIN;
        return r;
}

static int64_t min64(int64_t a, int64_t b) {
        return a < b ? a : b;
}

static int64_t max64(int64_t a, int64_t b) {
        return a > b ? a : b;
}

/* Rounded up: a prediction errs on the early side. */
static int64_t ms_from_double(double ms) {
        if (!(ms > 0))
                return 0;
        if (ms >= 9.0e18)
                return INT64_MAX;
        return (int64_t)ceil(ms);
}

/* ---- heaps ---- */

static int64_t heap_key(enum heap_kind kind, const struct entry *e);

/* Ties go to the smaller id so that the order is deterministic. */
static bool heap_before(enum heap_kind kind, const struct entry *a, const struct entry *b) {
        int64_t ka = heap_key(kind, a), kb = heap_key(kind, b);
        return ka != kb ? ka < kb : a->id < b->id;
}

static void heap_place(struct heap *h, size_t i, struct entry *e) {
        h->v[i] = e;
        e->pos[h->kind] = i;
}

static void heap_sift_up(struct heap *h, size_t i) {
        struct entry *e = h->v[i];
        while (i > 0) {
                size_t parent = (i - 1) / 2;
                if (!heap_before(h->kind, e, h->v[parent]))
                        break;
                heap_place(h, i, h->v[parent]);
                i = parent;
        }
        heap_place(h, i, e);
}

static void heap_sift_down(struct heap *h, size_t i) {
        struct entry *e = h->v[i];
        for (;;) {
                size_t child = 2 * i + 1;
                if (child >= h->n)
                        break;
                if (child + 1 < h->n && heap_before(h->kind, h->v[child + 1], h->v[child]))
                        child++;
                if (!heap_before(h->kind, h->v[child], e))
                        break;
                heap_place(h, i, h->v[child]);
                i = child;
        }
        heap_place(h, i, e);
}

/* Capacity is reserved in nst_sched_add (every heap can hold every entry),
 * so pushing never fails. */
static void heap_push(struct heap *h, struct entry *e) {
        heap_place(h, h->n++, e);
        heap_sift_up(h, h->n - 1);
}

static void heap_remove(struct heap *h, struct entry *e) {
        size_t i = e->pos[h->kind];
        if (i == NOT_IN_HEAP)
                return;
        e->pos[h->kind] = NOT_IN_HEAP;
        struct entry *last = h->v[--h->n];
        if (i == h->n)
                return;
        heap_place(h, i, last);
        heap_sift_down(h, i);
        heap_sift_up(h, last->pos[h->kind]);
}

/* After e's key changed: puts it where it belongs, inserting it if needed. */
static void heap_update(struct heap *h, struct entry *e) {
        size_t i = e->pos[h->kind];
        if (i == NOT_IN_HEAP) {
                heap_push(h, e);
                return;
        }
        heap_sift_down(h, i);
        heap_sift_up(h, e->pos[h->kind]);
}

static struct entry *heap_top(const struct heap *h) {
        return h->n ? h->v[0] : NULL;
}

static int heap_reserve(struct heap *h, size_t n) {
        if (n <= h->cap)
                return 0;
        size_t cap = h->cap ? h->cap * 2 : MIN_TABLE_SIZE;
        while (cap < n)
                cap *= 2;
        struct entry **v = realloc(h->v, cap * sizeof(*v));
        if (!v)
                return -ENOMEM;
        h->v = v;
        h->cap = cap;
        return 0;
}

/* ---- the id table ---- */

/* splitmix64's finalizer: ids may be sequential or share low bits. */
static size_t hash_id(uint64_t id, size_t mask) {
        id ^= id >> 30;
        id *= UINT64_C(0xbf58476d1ce4e5b9);
        id ^= id >> 27;
        id *= UINT64_C(0x94d049bb133111eb);
        id ^= id >> 31;
        return (size_t)id & mask;
}

static size_t table_slot(const struct nst_sched *s, uint64_t id) {
        size_t mask = s->table_size - 1;
        size_t i = hash_id(id, mask);
        while (s->table[i] && s->table[i]->id != id)
                i = (i + 1) & mask;
        return i;
}

static struct entry *table_find(const struct nst_sched *s, uint64_t id) {
        return s->table[table_slot(s, id)];
}

static int table_grow(struct nst_sched *s) {
        size_t old_size = s->table_size;
        struct entry **old = s->table;
        struct entry **table = calloc(old_size * 2, sizeof(*table));
        if (!table)
                return -ENOMEM;
        s->table = table;
        s->table_size = old_size * 2;
        for (size_t i = 0; i < old_size; i++)
                if (old[i])
                        s->table[table_slot(s, old[i]->id)] = old[i];
        free(old);
        return 0;
}

/* Backward-shift deletion: moves later members of the probe run into the
 * hole when their home slot allows it, so lookups never need tombstones. */
static void table_delete(struct nst_sched *s, uint64_t id) {
        size_t mask = s->table_size - 1;
        size_t hole = table_slot(s, id);
        if (!s->table[hole])
                return;
        s->table[hole] = NULL;
        for (size_t i = (hole + 1) & mask; s->table[i]; i = (i + 1) & mask) {
                size_t home = hash_id(s->table[i]->id, mask);
                /* Movable when home is not cyclically within (hole, i]. */
                bool stays = hole <= i ? (home > hole && home <= i) : (home > hole || home <= i);
                if (stays)
                        continue;
                s->table[hole] = s->table[i];
                s->table[i] = NULL;
                hole = i;
        }
}

/* ---- the model: prediction, due time, deadline, violations ---- */

static double predicted_ms(const struct nst_sched *s, const struct entry *e) {
        double base = e->duration_samples ? e->duration_ms
                                          : (double)s->cfg.default_duration_ms;
        if (!e->has_hint)
                return base;
        double scaled = -1;
        if (e->rate_samples && e->rate > 0)
                scaled = (double)e->hint_bytes / e->rate + e->overhead_ms;
        else if (e->hint_fleet_rate > 0)
                scaled = (double)e->hint_bytes / e->hint_fleet_rate;
        return scaled > base ? scaled : base;
}

static int64_t point_base_ms(const struct entry *e) {
        return e->last_point_ms ? e->last_point_ms : e->added_ms;
}

static int64_t deadline_ms(const struct entry *e) {
        if (e->rpo_ms <= 0)
                return INT64_MAX;
        return add_sat(point_base_ms(e), e->rpo_ms);
}

static int64_t backoff_ms(const struct nst_sched *s, unsigned failures) {
        int64_t b = s->cfg.retry_min_ms;
        for (unsigned i = 1; i < failures && b < s->cfg.retry_max_ms; i++)
                b = add_sat(b, b);
        return min64(b, s->cfg.retry_max_ms);
}

/* When the next cycle should start from the estimate alone, INT64_MAX for
 * never (no rpo). */
static int64_t normal_due_ms(const struct nst_sched *s, const struct entry *e) {
        if (e->rpo_ms <= 0)
                return INT64_MAX;
        if (!e->last_point_ms)
                return e->added_ms;
        double predicted = predicted_ms(s, e);
        int64_t deadline = deadline_ms(e);
        int64_t margin = max64(s->cfg.margin_ms,
                               ms_from_double((double)e->rpo_ms * s->cfg.margin_rpo_fraction));
        int64_t lead = add_sat(ms_from_double(predicted * s->cfg.safety), margin);
        int64_t due = sub_sat(deadline, lead);
        if (e->last_end_ms != INT64_MIN && e->failures == 0) {
                int64_t gap = min64(s->cfg.min_gap_ms, e->rpo_ms / 4);
                int64_t latest = sub_sat(deadline, ms_from_double(predicted));
                due = max64(due, min64(add_sat(e->last_end_ms, gap), latest));
        }
        return due;
}

static int64_t due_ms(const struct nst_sched *s, const struct entry *e) {
        int64_t due = normal_due_ms(s, e);
        if (e->failures > 0) {
                int64_t retry = add_sat(e->last_end_ms, backoff_ms(s, e->failures));
                due = due <= e->last_end_ms ? retry : min64(due, retry);
        }
        if (e->requested)
                due = min64(due, e->requested_ms);
        return due;
}

static bool violated(const struct entry *e, int64_t now_ms) {
        return !e->paused && e->rpo_ms > 0 && sub_sat(now_ms, point_base_ms(e)) > e->rpo_ms;
}

static int64_t heap_key(enum heap_kind kind, const struct entry *e) {
        switch (kind) {
        case HEAP_IDLE:
                return e->due_ms;
        case HEAP_READY:
                return deadline_ms(e);
        default:
                return e->watch_ms;
        }
}

/* Recomputes e's due time and files it in the idle heap (or nowhere when it
 * cannot start); take_due moves it to the ready heap when the time comes. */
static void reschedule(struct nst_sched *s, struct entry *e) {
        heap_remove(&s->heaps[HEAP_READY], e);
        e->due_ms = e->paused || e->running ? INT64_MAX : due_ms(s, e);
        if (e->due_ms == INT64_MAX)
                heap_remove(&s->heaps[HEAP_IDLE], e);
        else
                heap_update(&s->heaps[HEAP_IDLE], e);
}

/* Watches for the moment the violation begins, when it can begin at all;
 * only events (finished, set_rpo, pause) can end one. */
static void arm_watch(struct nst_sched *s, struct entry *e) {
        if (e->paused || e->rpo_ms <= 0 || e->reported) {
                heap_remove(&s->heaps[HEAP_WATCH], e);
                return;
        }
        e->watch_ms = add_sat(deadline_ms(e), 1);
        heap_update(&s->heaps[HEAP_WATCH], e);
}

/* Before an event changes e: a violation in progress that no poll has seen
 * yet must still be reported. Then the next poll looks at e again. */
static void before_event(struct nst_sched *s, struct entry *e, int64_t now_ms) {
        if (!e->reported && !e->missed_raise && violated(e, now_ms)) {
                e->missed_raise = true;
                e->missed_age_ms = sub_sat(now_ms, point_base_ms(e));
        }
}

static void after_event(struct nst_sched *s, struct entry *e, int64_t now_ms) {
        reschedule(s, e);
        e->watch_ms = now_ms;
        heap_update(&s->heaps[HEAP_WATCH], e);
}

static void ewma(double *avg, unsigned *samples, double sample) {
        *avg = *samples ? *avg + EWMA_ALPHA * (sample - *avg) : sample;
        if (*samples < UINT32_MAX)
                (*samples)++;
}

/* The overhead sample is what the previous rate does not explain; a cycle
 * that shipped little therefore teaches the fixed cost. */
static void learn(struct nst_sched *s, struct entry *e, int64_t duration_ms, uint64_t bytes) {
        double d = duration_ms > 0 ? (double)duration_ms : 0;
        ewma(&e->duration_ms, &e->duration_samples, d);
        if (bytes == 0 || d <= 0)
                return;
        s->fleet_bytes = s->fleet_bytes * FLEET_DECAY + (double)bytes;
        s->fleet_ms = s->fleet_ms * FLEET_DECAY + d;
        if (e->rate_samples) {
                double overhead = d - (double)bytes / e->rate;
                ewma(&e->overhead_ms, &e->overhead_samples, overhead > 0 ? overhead : 0);
        }
        ewma(&e->rate, &e->rate_samples, (double)bytes / d);
}

/* ---- public API ---- */

int nst_sched_new(const struct nst_sched_config *c, struct nst_sched **ret) {
        struct nst_sched *s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->cfg = *c;
        if (s->cfg.max_running < 1)
                s->cfg.max_running = 1;
        if (!(s->cfg.safety >= 1))
                s->cfg.safety = 1;
        s->cfg.min_gap_ms = max64(s->cfg.min_gap_ms, 0);
        s->cfg.margin_ms = max64(s->cfg.margin_ms, 0);
        s->cfg.retry_min_ms = max64(s->cfg.retry_min_ms, 1);
        s->cfg.retry_max_ms = max64(s->cfg.retry_max_ms, s->cfg.retry_min_ms);
        if (!(s->cfg.margin_rpo_fraction >= 0) || s->cfg.margin_rpo_fraction > 0.5)
                s->cfg.margin_rpo_fraction = s->cfg.margin_rpo_fraction > 0.5 ? 0.5 : 0;
        if (s->cfg.default_duration_ms <= 0)
                s->cfg.default_duration_ms = DEFAULT_DURATION_MS;
        s->table_size = MIN_TABLE_SIZE;
        s->table = calloc(s->table_size, sizeof(*s->table));
        if (!s->table) {
                free(s);
                return -ENOMEM;
        }
        for (int k = 0; k < HEAP_KINDS; k++)
                s->heaps[k].kind = k;
        *ret = s;
        return 0;
}

void nst_sched_free(struct nst_sched *s) {
        if (!s)
                return;
        for (size_t i = 0; i < s->table_size; i++)
                free(s->table[i]);
        free(s->table);
        for (int k = 0; k < HEAP_KINDS; k++)
                free(s->heaps[k].v);
        free(s);
}

int nst_sched_add(struct nst_sched *s, uint64_t id, int64_t rpo_ms, int64_t last_point_ms,
                  int64_t now_ms) {
        if (table_find(s, id))
                return -EEXIST;
        /* Everything that can fail comes first, so a failed add changes nothing. */
        if ((s->count + 1) * 2 > s->table_size && table_grow(s) < 0)
                return -ENOMEM;
        for (int k = 0; k < HEAP_KINDS; k++)
                if (heap_reserve(&s->heaps[k], s->count + 1) < 0)
                        return -ENOMEM;
        struct entry *e = calloc(1, sizeof(*e));
        if (!e)
                return -ENOMEM;
        *e = (struct entry){
                .id = id,
                .rpo_ms = max64(rpo_ms, 0),
                .last_point_ms = last_point_ms,
                .added_ms = now_ms,
                .last_end_ms = INT64_MIN,
                .due_ms = INT64_MAX,
                .pos = {NOT_IN_HEAP, NOT_IN_HEAP, NOT_IN_HEAP},
        };
        s->table[table_slot(s, id)] = e;
        s->count++;
        reschedule(s, e);
        arm_watch(s, e);
        return 0;
}

void nst_sched_remove(struct nst_sched *s, uint64_t id) {
        struct entry *e = table_find(s, id);
        if (!e)
                return;
        for (int k = 0; k < HEAP_KINDS; k++)
                heap_remove(&s->heaps[k], e);
        if (e->running)
                s->running--;
        table_delete(s, id);
        s->count--;
        free(e);
}

void nst_sched_set_rpo(struct nst_sched *s, uint64_t id, int64_t rpo_ms, int64_t now_ms) {
        struct entry *e = table_find(s, id);
        if (!e)
                return;
        before_event(s, e, now_ms);
        e->rpo_ms = max64(rpo_ms, 0);
        after_event(s, e, now_ms);
}

void nst_sched_set_paused(struct nst_sched *s, uint64_t id, bool paused, int64_t now_ms) {
        struct entry *e = table_find(s, id);
        if (!e || e->paused == paused)
                return;
        before_event(s, e, now_ms);
        e->paused = paused;
        e->requested = false;
        after_event(s, e, now_ms);
}

void nst_sched_request_now(struct nst_sched *s, uint64_t id, int64_t now_ms) {
        struct entry *e = table_find(s, id);
        if (!e || e->paused || e->running || e->requested)
                return;
        e->requested = true;
        e->requested_ms = now_ms;
        reschedule(s, e);
}

void nst_sched_hint_changed(struct nst_sched *s, uint64_t id, uint64_t bytes) {
        struct entry *e = table_find(s, id);
        if (!e)
                return;
        e->has_hint = true;
        e->hint_bytes = bytes;
        e->hint_fleet_rate = s->fleet_ms > 0 ? s->fleet_bytes / s->fleet_ms : 0;
        reschedule(s, e);
}

size_t nst_sched_take_due(struct nst_sched *s, int64_t now_ms, uint64_t *ids, size_t max) {
        struct heap *idle = &s->heaps[HEAP_IDLE], *ready = &s->heaps[HEAP_READY];
        struct entry *e;
        while ((e = heap_top(idle)) && e->due_ms <= now_ms) {
                heap_remove(idle, e);
                heap_push(ready, e);
        }
        size_t n = 0;
        while (n < max && s->running < s->cfg.max_running && (e = heap_top(ready))) {
                heap_remove(ready, e);
                e->running = true;
                e->requested = false;
                e->due_ms = INT64_MAX;
                s->running++;
                ids[n++] = e->id;
        }
        return n;
}

/* The entry whose cycle ends, no longer running; NULL when none runs (a
 * cycle of an entry that was removed and added again). The caller ends
 * with after_event(). */
static struct entry *cycle_ends(struct nst_sched *s, uint64_t id, int64_t now_ms) {
        struct entry *e = table_find(s, id);
        if (!e || !e->running)
                return NULL;
        before_event(s, e, now_ms);
        e->running = false;
        s->running--;
        return e;
}

void nst_sched_cancelled(struct nst_sched *s, uint64_t id, int64_t now_ms) {
        struct entry *e = cycle_ends(s, id, now_ms);
        if (e)
                after_event(s, e, now_ms);
}

void nst_sched_finished(struct nst_sched *s, uint64_t id, bool ok, int64_t point_ms,
                        int64_t duration_ms, uint64_t bytes, int64_t now_ms) {
        struct entry *e = cycle_ends(s, id, now_ms);
        if (!e)
                return;
        e->last_end_ms = now_ms;
        if (ok) {
                if (point_ms > e->last_point_ms)
                        e->last_point_ms = point_ms;
                e->failures = 0;
                e->has_hint = false;
                learn(s, e, duration_ms, bytes);
        } else if (e->failures < UINT32_MAX) {
                e->failures++;
        }
        after_event(s, e, now_ms);
}

int64_t nst_sched_next_event_ms(const struct nst_sched *s, int64_t now_ms) {
        int64_t t = INT64_MAX;
        if (s->running < s->cfg.max_running) {
                if (s->heaps[HEAP_READY].n)
                        return 0;
                const struct entry *idle = heap_top(&s->heaps[HEAP_IDLE]);
                if (idle)
                        t = idle->due_ms;
        }
        const struct entry *watch = heap_top(&s->heaps[HEAP_WATCH]);
        if (watch)
                t = min64(t, watch->watch_ms);
        if (t == INT64_MAX)
                return INT64_MAX;
        return t <= now_ms ? 0 : sub_sat(t, now_ms);
}

void nst_sched_poll(struct nst_sched *s, int64_t now_ms, nst_sched_violation_fn fn,
                    void *userdata) {
        struct heap *watch = &s->heaps[HEAP_WATCH];
        struct entry *e;
        while ((e = heap_top(watch)) && e->watch_ms <= now_ms) {
                heap_remove(watch, e);
                uint64_t id = e->id;
                bool raise_missed = e->missed_raise && !e->reported;
                int64_t missed_age = e->missed_age_ms;
                bool was = e->reported || raise_missed;
                bool is = violated(e, now_ms);
                int64_t age = sub_sat(now_ms, point_base_ms(e));
                e->missed_raise = false;
                e->reported = is;
                arm_watch(s, e);
                /* e is not touched past this point: fn may remove it. */
                if (raise_missed)
                        fn(userdata, id, NST_SCHED_VIOLATION_RAISED, missed_age);
                if (is != was)
                        fn(userdata, id, is ? NST_SCHED_VIOLATION_RAISED
                                            : NST_SCHED_VIOLATION_CLEARED, age);
        }
}

int nst_sched_get(const struct nst_sched *s, uint64_t id, struct nst_sched_info *ret) {
        const struct entry *e = table_find(s, id);
        if (!e)
                return -ENOENT;
        *ret = (struct nst_sched_info){
                .rpo_ms = e->rpo_ms,
                .last_point_ms = e->last_point_ms,
                .next_due_ms = e->due_ms,
                .predicted_ms = ms_from_double(predicted_ms(s, e)),
                .running = e->running,
                .paused = e->paused,
                .violation = e->reported,
                .failures = e->failures,
        };
        return 0;
}

size_t nst_sched_count(const struct nst_sched *s) {
        return s->count;
}
