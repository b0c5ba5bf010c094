/* Broker reconnection as a state machine with an explicit clock, in the
 * manner of Open vSwitch's lib/reconnect: no I/O, no clock reads, so unit
 * tests drive it by passing `now` (milliseconds, monotonic).
 *
 * The owner calls nst_reconnect_run() each loop turn and performs the action
 * it returns; it reports outcomes with connected/connect_failed/disconnected.
 * Backoff after a failure grows exponentially from min_backoff to
 * max_backoff, with jitter, and resets once a connection stayed up for
 * stable_ms. Each attempt moves to the next broker host (round-robin). */
#ifndef NESTOR_AGENT_RECONNECT_H
#define NESTOR_AGENT_RECONNECT_H

#include <stddef.h>
#include <stdint.h>

enum nst_reconnect_state {
        NST_RECONNECT_VOID,       /* not enabled */
        NST_RECONNECT_BACKOFF,    /* waiting before the next attempt */
        NST_RECONNECT_CONNECTING, /* the owner is connecting */
        NST_RECONNECT_ACTIVE,     /* connected */
};

enum nst_reconnect_action {
        NST_RECONNECT_NONE,
        NST_RECONNECT_CONNECT, /* start connecting to host index nst_reconnect_host() */
};

struct nst_reconnect {
        enum nst_reconnect_state state;
        int64_t state_entered;   /* ms */
        int64_t backoff;         /* current backoff, ms */
        int64_t deadline;        /* when BACKOFF ends */
        int64_t min_backoff, max_backoff, stable_ms;
        size_t n_hosts, host;    /* host index of the current/next attempt */
        unsigned attempts;       /* consecutive failed attempts */
        unsigned seed;           /* jitter PRNG state */
        unsigned long long n_connects, n_disconnects;
};

/* Starts in BACKOFF with a zero deadline, so the first run() connects. */
void nst_reconnect_init(struct nst_reconnect *r, size_t n_hosts, int64_t min_backoff_ms,
                        int64_t max_backoff_ms, unsigned seed, int64_t now);

enum nst_reconnect_action nst_reconnect_run(struct nst_reconnect *r, int64_t now);
void nst_reconnect_connected(struct nst_reconnect *r, int64_t now);
void nst_reconnect_connect_failed(struct nst_reconnect *r, int64_t now);
void nst_reconnect_disconnected(struct nst_reconnect *r, int64_t now);

/* Milliseconds until run() has something to do (0 = now, -1 = never). */
int64_t nst_reconnect_timeout(const struct nst_reconnect *r, int64_t now);
size_t nst_reconnect_host(const struct nst_reconnect *r);
const char *nst_reconnect_state_name(enum nst_reconnect_state s);

#endif
