/* The replication RPO scheduler (plugins/replication/repl_sched.h) driving a
 * simulated fleet: a discrete-event simulation, no I/O, no real transfers.
 *
 * N replications, RPOs drawn from {1 min, 5 min, 15 min, 1 h, 4 h, 24 h},
 * each with its own changed-data rate (log-uniform over three decades,
 * scaled so that together they offer LOAD x the link's bandwidth). A cycle
 * starting at t ships everything changed since the last point, and its
 * point is t. Cycles share one link fairly (processor sharing): each cycle
 * first spends a fixed 0.1 s of overhead (job setup), then transfers at
 * bandwidth / (cycles transferring at the moment). Every point starts at a
 * random age in [0, rpo/2], so the run begins in steady state rather than
 * with N full copies.
 *
 * Reported per run: cycles run, RPO violations (episodes in which a
 * replication's newest point was older than its RPO, measured by the
 * simulation; the scheduler's RAISED count is printed beside it and must
 * agree), the worst point age / RPO, the scheduler's CPU cost per call
 * (take_due, finished, poll, next_event) and the run's wall time. The last
 * line of each run is a one-line summary for docs/benchmarks.md.
 *
 * Usage: bench_repl_sched [N [HOURS [LOAD [MAX_RUNNING]]]]
 *   defaults: 5000 replications, 24 h, and two runs at loads 0.5 and 0.9;
 *   MAX_RUNNING defaults to a value derived from the expected cycle rate. */
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "plugins/replication/repl_sched.h"

#define SEC INT64_C(1000)
#define MIN (60 * SEC)
#define HOUR (60 * MIN)
#define START_MS (1000 * HOUR) /* any time far from 0, which means "no point" */
#define OVERHEAD_MS 100
#define BANDWIDTH_BYTES_PER_MS 1.25e6 /* 10 Gbit/s */
#define DONE_BYTES 0.5                 /* fluid rounding: less than this is nothing */
/* How often the owner refreshes every idle replication's changed-bytes hint
 * (the plugin's sweep of libvirt checkpoint sizes). */
#define HINT_PERIOD_MS (5 * MIN)

static const int64_t rpo_choices[] = {MIN, 5 * MIN, 15 * MIN, HOUR, 4 * HOUR, 24 * HOUR};

struct rep {
        int64_t rpo_ms;
        double rate;            /* changed bytes per ms */
        int64_t last_point_ms;
        /* the running cycle */
        bool running, transferring;
        int64_t start_ms;
        double bytes, remaining;
};

struct run {
        size_t n;
        double hours, load;
        unsigned max_running;
        struct rep *reps;
        uint32_t *active;       /* indexes of running cycles */
        size_t n_active;
        uint64_t rng;

        uint64_t cycles, violations, raised, cleared;
        double worst_ratio;
        uint64_t class_violations[6];
        double class_worst[6];
        double ns_take, ns_finished, ns_poll, ns_next;
        uint64_t calls_take, calls_poll, calls_next;
};

static double now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static double uniform(struct run *r) {
        r->rng ^= r->rng << 13;
        r->rng ^= r->rng >> 7;
        r->rng ^= r->rng << 17;
        return (double)(r->rng >> 11) / 9007199254740992.0;
}

static void die(const char *what) {
        fprintf(stderr, "bench_repl_sched: %s\n", what);
        exit(1);
}

/* Enough slots for the cycles' fixed overhead with room to spare: slots
 * hold a cycle for its whole duration, overhead included. */
static unsigned default_max_running(const struct run *r) {
        double cycles_per_ms = 0;
        for (size_t i = 0; i < r->n; i++)
                cycles_per_ms += 1.0 / (0.7 * (double)r->reps[i].rpo_ms);
        double overhead_slots = cycles_per_ms * OVERHEAD_MS;
        return 16 + (unsigned)ceil(8 * overhead_slots);
}

static void setup(struct run *r, struct nst_sched **ret) {
        r->reps = calloc(r->n, sizeof(*r->reps));
        if (!r->reps)
                die("out of memory");
        double total_rate = 0;
        for (size_t i = 0; i < r->n; i++) {
                struct rep *p = &r->reps[i];
                p->rpo_ms = rpo_choices[(size_t)(uniform(r) * 6) % 6];
                p->rate = pow(1000.0, uniform(r));
                total_rate += p->rate;
                p->last_point_ms = START_MS - (int64_t)(uniform(r) * 0.5 * (double)p->rpo_ms);
        }
        double scale = r->load * BANDWIDTH_BYTES_PER_MS / total_rate;
        for (size_t i = 0; i < r->n; i++)
                r->reps[i].rate *= scale;
        if (!r->max_running)
                r->max_running = default_max_running(r);
        r->active = calloc(r->max_running, sizeof(*r->active));
        if (!r->active)
                die("out of memory");

        struct nst_sched_config c;
        nst_sched_config_default(&c);
        c.max_running = r->max_running;
        if (nst_sched_new(&c, ret) < 0)
                die("nst_sched_new failed");
        for (size_t i = 0; i < r->n; i++)
                if (nst_sched_add(*ret, i, r->reps[i].rpo_ms, r->reps[i].last_point_ms,
                                  START_MS) < 0)
                        die("nst_sched_add failed");
}

/* A point's age reached age_ms before it was replaced (or the run ended). */
static size_t rpo_class(int64_t rpo_ms) {
        size_t c = 0;
        while (c < 5 && rpo_choices[c] != rpo_ms)
                c++;
        return c;
}

static void account_age(struct run *r, const struct rep *p, int64_t age_ms) {
        double ratio = (double)age_ms / (double)p->rpo_ms;
        size_t c = rpo_class(p->rpo_ms);
        if (ratio > r->worst_ratio)
                r->worst_ratio = ratio;
        if (ratio > r->class_worst[c])
                r->class_worst[c] = ratio;
        if (age_ms > p->rpo_ms) {
                r->violations++;
                r->class_violations[c]++;
        }
}

static int64_t next_completion(const struct run *r, int64_t now) {
        size_t transferring = 0;
        for (size_t k = 0; k < r->n_active; k++)
                transferring += r->reps[r->active[k]].transferring;
        int64_t t = INT64_MAX;
        for (size_t k = 0; k < r->n_active; k++) {
                const struct rep *p = &r->reps[r->active[k]];
                int64_t done;
                if (!p->transferring)
                        done = p->start_ms + OVERHEAD_MS;
                else
                        done = now + (int64_t)ceil(p->remaining * (double)transferring /
                                                   BANDWIDTH_BYTES_PER_MS);
                if (done < t)
                        t = done;
        }
        return t;
}

/* The link is shared fairly by the cycles past their overhead. */
static void advance(struct run *r, int64_t from, int64_t to) {
        size_t transferring = 0;
        for (size_t k = 0; k < r->n_active; k++)
                transferring += r->reps[r->active[k]].transferring;
        if (!transferring || to <= from)
                return;
        double share = BANDWIDTH_BYTES_PER_MS * (double)(to - from) / (double)transferring;
        for (size_t k = 0; k < r->n_active; k++) {
                struct rep *p = &r->reps[r->active[k]];
                if (p->transferring)
                        p->remaining -= share;
        }
}

static void complete_cycles(struct run *r, struct nst_sched *s, int64_t now) {
        for (size_t k = 0; k < r->n_active;) {
                uint32_t i = r->active[k];
                struct rep *p = &r->reps[i];
                if (!p->transferring && now >= p->start_ms + OVERHEAD_MS) {
                        p->transferring = true;
                        p->remaining = p->bytes;
                }
                if (!p->transferring || p->remaining >= DONE_BYTES) {
                        k++;
                        continue;
                }
                account_age(r, p, now - p->last_point_ms);
                p->last_point_ms = p->start_ms;
                p->running = p->transferring = false;
                r->active[k] = r->active[--r->n_active];
                r->cycles++;
                double t0 = now_ns();
                nst_sched_finished(s, i, true, p->start_ms, now - p->start_ms,
                                   (uint64_t)p->bytes, now);
                r->ns_finished += now_ns() - t0;
        }
}

static void start_cycles(struct run *r, struct nst_sched *s, int64_t now) {
        uint64_t ids[64];
        size_t n;
        do {
                double t0 = now_ns();
                n = nst_sched_take_due(s, now, ids, 64);
                r->ns_take += now_ns() - t0;
                r->calls_take++;
                for (size_t k = 0; k < n; k++) {
                        struct rep *p = &r->reps[ids[k]];
                        if (p->running || r->n_active >= r->max_running)
                                die("the scheduler started a running cycle or too many");
                        p->running = true;
                        p->transferring = false;
                        p->start_ms = now;
                        p->bytes = p->rate * (double)(now - p->last_point_ms);
                        r->active[r->n_active++] = (uint32_t)ids[k];
                }
        } while (n == 64);
}

static void on_violation(void *userdata, uint64_t id, enum nst_sched_violation what,
                         int64_t age_ms) {
        struct run *r = userdata;
        if (what == NST_SCHED_VIOLATION_RAISED)
                r->raised++;
        else
                r->cleared++;
}

static void refresh_hints(struct run *r, struct nst_sched *s, int64_t now) {
        for (size_t i = 0; i < r->n; i++) {
                const struct rep *p = &r->reps[i];
                if (!p->running)
                        nst_sched_hint_changed(
                                s, i, (uint64_t)(p->rate * (double)(now - p->last_point_ms)));
        }
}

static void simulate(struct run *r, struct nst_sched *s) {
        int64_t now = START_MS, end = START_MS + (int64_t)(r->hours * (double)HOUR);
        int64_t next_hints = START_MS;
        while (now < end) {
                if (now >= next_hints) {
                        refresh_hints(r, s, now);
                        next_hints = now + HINT_PERIOD_MS;
                }
                double t0 = now_ns();
                int64_t wait = nst_sched_next_event_ms(s, now);
                r->ns_next += now_ns() - t0;
                r->calls_next++;
                int64_t t = wait == INT64_MAX ? INT64_MAX : now + wait;
                int64_t done = next_completion(r, now);
                if (done < t)
                        t = done;
                if (next_hints < t)
                        t = next_hints;
                if (t > end)
                        t = end;
                advance(r, now, t);
                now = t;
                complete_cycles(r, s, now);
                start_cycles(r, s, now);
                t0 = now_ns();
                nst_sched_poll(s, now, on_violation, r);
                r->ns_poll += now_ns() - t0;
                r->calls_poll++;
        }
        for (size_t i = 0; i < r->n; i++)
                if (end - r->reps[i].last_point_ms > r->reps[i].rpo_ms)
                        account_age(r, &r->reps[i], end - r->reps[i].last_point_ms);
}

static void report(const struct run *r, double wall_s) {
        double cycles = r->cycles ? (double)r->cycles : 1;
        printf("N=%zu hours=%g load=%.2f max_running=%u\n", r->n, r->hours, r->load,
               r->max_running);
        printf("  cycles run              %" PRIu64 "\n", r->cycles);
        printf("  RPO violations          %" PRIu64 " (scheduler raised %" PRIu64
               ", cleared %" PRIu64 ")\n", r->violations, r->raised, r->cleared);
        printf("  worst point age / RPO   %.3f\n", r->worst_ratio);
        printf("  by RPO (violations, worst age/RPO):");
        for (size_t c = 0; c < 6; c++)
                printf(" %" PRId64 "m: %" PRIu64 ", %.2f;", rpo_choices[c] / MIN,
                       r->class_violations[c], r->class_worst[c]);
        printf("\n");
        printf("  ns per take_due call    %.0f (%" PRIu64 " calls)\n",
               r->ns_take / (double)r->calls_take, r->calls_take);
        printf("  ns per finished         %.0f\n", r->ns_finished / cycles);
        printf("  ns per poll             %.0f\n", r->ns_poll / (double)r->calls_poll);
        printf("  ns per next_event_ms    %.0f\n", r->ns_next / (double)r->calls_next);
        printf("  scheduler ns per cycle  %.0f (all four calls)\n",
               (r->ns_take + r->ns_finished + r->ns_poll + r->ns_next) / cycles);
        printf("  wall time               %.2f s\n", wall_s);
        printf("SUMMARY | %zu | %g h | %.0f %% | %u | %" PRIu64 " | %" PRIu64 " | %.3f | %.0f | "
               "%.0f | %.2f s |\n",
               r->n, r->hours, r->load * 100, r->max_running, r->cycles, r->violations,
               r->worst_ratio, r->ns_take / (double)r->calls_take, r->ns_finished / cycles,
               wall_s);
}

static int run_one(size_t n, double hours, double load, unsigned max_running) {
        struct run r = {.n = n, .hours = hours, .load = load, .max_running = max_running,
                        .rng = UINT64_C(0x2545f4914f6cdd1d)};
        struct nst_sched *s = NULL;
        double t0 = now_ns();
        setup(&r, &s);
        simulate(&r, s);
        double wall_s = (now_ns() - t0) / 1e9;
        report(&r, wall_s);
        /* One episode can span several stale points (a cycle longer than the
         * rpo commits a point that is already old). */
        bool consistent = r.raised <= r.violations && (r.violations == 0) == (r.raised == 0);
        nst_sched_free(s);
        free(r.reps);
        free(r.active);
        if (!consistent) {
                fprintf(stderr, "bench_repl_sched: the scheduler's RAISED count does not match "
                                "the simulation's violations\n");
                return 1;
        }
        return 0;
}

int main(int argc, char **argv) {
        size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 5000;
        double hours = argc > 2 ? strtod(argv[2], NULL) : 24;
        unsigned max_running = argc > 4 ? (unsigned)strtoul(argv[4], NULL, 10) : 0;
        if (n == 0 || n > UINT32_MAX || !(hours > 0)) {
                fprintf(stderr, "usage: bench_repl_sched [N [HOURS [LOAD [MAX_RUNNING]]]]\n");
                return 2;
        }
        printf("SUMMARY | replications | simulated | load | max_running | cycles | "
               "violations | worst age/RPO | ns/take_due | ns/finished | wall |\n");
        if (argc > 3)
                return run_one(n, hours, strtod(argv[3], NULL), max_running);
        int rc = run_one(n, hours, 0.5, max_running);
        return run_one(n, hours, 0.9, max_running) || rc;
}
