/* Broker reconnection state machine (see reconnect.h).
 *
 * Policy choices:
 *  - The backoff doubles per failure from min_backoff up to max_backoff; each
 *    wait is jittered down to [75%, 100%] of it, never above, so max_backoff
 *    is a hard cap and a fleet of agents restarted together does not hammer
 *    a recovering broker in lockstep.
 *  - stable_ms = 10 * min_backoff (at least 1 s). A connection that lived that
 *    long proves the broker works again, so its loss is treated as a fresh
 *    incident: reconnect at once and forget the backoff. A shorter life
 *    (broker accepting then dropping us, e.g. a failing vhost or an
 *    overloaded node) keeps growing the backoff, or a flap would turn into a
 *    tight reconnect loop.
 *  - Every failure and every disconnect moves to the next host, so a dead
 *    node of a cluster costs one attempt, not a whole backoff series. */
#include "agent/reconnect.h"

#define STABLE_FACTOR 10
#define STABLE_MIN_MS 1000

/* xorshift32: jitter needs no quality, only reproducibility under test. */
static uint32_t next_random(struct nst_reconnect *r) {
        uint32_t x = r->seed;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        r->seed = x;
        return x;
}

static int64_t jittered(struct nst_reconnect *r, int64_t backoff) {
        /* Subtract up to 1024/4096 = 25%. */
        uint32_t cut = next_random(r) % 1025;
        return backoff - (int64_t)(((uint64_t)backoff * cut) / 4096);
}

static void enter(struct nst_reconnect *r, enum nst_reconnect_state s, int64_t now) {
        r->state = s;
        r->state_entered = now;
}

static void next_host(struct nst_reconnect *r) {
        if (r->n_hosts > 0)
                r->host = (r->host + 1) % r->n_hosts;
}

static void back_off(struct nst_reconnect *r, int64_t now) {
        if (r->backoff <= 0)
                r->backoff = r->min_backoff;
        else if (r->backoff > r->max_backoff - r->backoff)
                r->backoff = r->max_backoff;
        else
                r->backoff *= 2;
        r->deadline = now + jittered(r, r->backoff);
        enter(r, NST_RECONNECT_BACKOFF, now);
}

void nst_reconnect_init(struct nst_reconnect *r, size_t n_hosts, int64_t min_backoff_ms,
                        int64_t max_backoff_ms, unsigned seed, int64_t now) {
        if (min_backoff_ms < 1)
                min_backoff_ms = 1;
        if (max_backoff_ms < min_backoff_ms)
                max_backoff_ms = min_backoff_ms;
        int64_t stable = min_backoff_ms * STABLE_FACTOR;

        *r = (struct nst_reconnect){
                .min_backoff = min_backoff_ms,
                .max_backoff = max_backoff_ms,
                .stable_ms = stable < STABLE_MIN_MS ? STABLE_MIN_MS : stable,
                .n_hosts = n_hosts,
                /* xorshift has a fixed point at 0. */
                .seed = seed ? seed : 0x9e3779b9u,
                .deadline = now,
        };
        enter(r, n_hosts > 0 ? NST_RECONNECT_BACKOFF : NST_RECONNECT_VOID, now);
}

enum nst_reconnect_action nst_reconnect_run(struct nst_reconnect *r, int64_t now) {
        if (r->state != NST_RECONNECT_BACKOFF || now < r->deadline)
                return NST_RECONNECT_NONE;
        enter(r, NST_RECONNECT_CONNECTING, now);
        return NST_RECONNECT_CONNECT;
}

void nst_reconnect_connected(struct nst_reconnect *r, int64_t now) {
        if (r->state == NST_RECONNECT_VOID)
                return;
        r->attempts = 0;
        r->n_connects++;
        enter(r, NST_RECONNECT_ACTIVE, now);
}

void nst_reconnect_connect_failed(struct nst_reconnect *r, int64_t now) {
        if (r->state == NST_RECONNECT_VOID)
                return;
        r->attempts++;
        next_host(r);
        back_off(r, now);
}

void nst_reconnect_disconnected(struct nst_reconnect *r, int64_t now) {
        switch (r->state) {
        case NST_RECONNECT_ACTIVE:
                r->n_disconnects++;
                next_host(r);
                if (now - r->state_entered >= r->stable_ms) {
                        r->backoff = 0;
                        r->deadline = now;
                        enter(r, NST_RECONNECT_BACKOFF, now);
                } else {
                        back_off(r, now);
                }
                break;
        case NST_RECONNECT_CONNECTING:
                /* The owner gave up mid-connect: that is a failed attempt. */
                nst_reconnect_connect_failed(r, now);
                break;
        case NST_RECONNECT_VOID:
        case NST_RECONNECT_BACKOFF:
                break;
        }
}

int64_t nst_reconnect_timeout(const struct nst_reconnect *r, int64_t now) {
        if (r->state != NST_RECONNECT_BACKOFF)
                return -1;
        return r->deadline > now ? r->deadline - now : 0;
}

size_t nst_reconnect_host(const struct nst_reconnect *r) {
        return r->host;
}

const char *nst_reconnect_state_name(enum nst_reconnect_state s) {
        switch (s) {
        case NST_RECONNECT_VOID:
                return "VOID";
        case NST_RECONNECT_BACKOFF:
                return "BACKOFF";
        case NST_RECONNECT_CONNECTING:
                return "CONNECTING";
        case NST_RECONNECT_ACTIVE:
                return "ACTIVE";
        }
        return "UNKNOWN";
}
