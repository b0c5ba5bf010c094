/* Liveness: the periodic service report that tells controllers this agent
 * is up, the way nova-compute's report_count/last_seen_up does.
 *
 * Every report_interval the agent publishes, as a best-effort oslo fanout
 * cast to exchange "<service_topic>_fanout" on the control exchange's
 * vhost, method "service_report" with args {"report": {...}} (see
 * nst_liveness_report_json for the fields). Any oslo RPC server with
 * Target(topic=service_topic, fanout=True) and an endpoint
 * service_report(ctxt, report) receives a copy; with no listener the
 * broker drops it. A controller records when it last saw each host and
 * calls it down after service_down_time without a report (nestorctl
 * services does exactly that).
 *
 * While the broker is away reports are dropped, not queued: report_count
 * keeps counting every tick, reports_dropped counts the ones that could not
 * be handed to the connection, and the first report after a reconnection
 * carries the current state.
 *
 * The inventory plugin owns an nst_liveness and calls nst_liveness_tick()
 * from a periodic task registered with nst_liveness_timing(). */
#ifndef NESTOR_PLUGINS_INVENTORY_LIVENESS_H
#define NESTOR_PLUGINS_INVENTORY_LIVENESS_H

#include <json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "agent/config.h"
#include "agent/plugin.h"
#include "messages/error.h"

/* Shared with nestorctl services, which reads the same options. */
#define NST_LIVENESS_SECTION "inventory"
#define NST_LIVENESS_METHOD "service_report"
#define NST_LIVENESS_BINARY "nestor-agent"
#define NST_LIVENESS_DEFAULT_TOPIC "nestor-services"
#define NST_LIVENESS_DEFAULT_INTERVAL_S 10
#define NST_LIVENESS_DEFAULT_INITIAL_DELAY_S 5
#define NST_LIVENESS_DEFAULT_DOWN_TIME_S 60

/* The options of section NST_LIVENESS_SECTION: report_interval,
 * initial_report_delay, service_topic, service_down_time, disabled,
 * disabled_reason. Register them from the plugin's init(). */
extern const struct nst_option nst_liveness_options[];
extern const size_t nst_liveness_n_options;

/* nova's rule: a service_down_time not above report_interval would call
 * every host down between two reports, so it becomes int(2.5 x interval). */
static inline int64_t nst_liveness_effective_down_time(int64_t down_time_s, int64_t interval_s) {
        return down_time_s > interval_s ? down_time_s : interval_s * 5 / 2;
}

/* Everything one report says. Clocks are explicit so the JSON is a pure
 * function of this struct. */
struct nst_liveness_facts {
        const char *host;
        const char *topic;              /* the agent's RPC topic */
        const char *version;            /* the agent's version */
        uint64_t report_count;          /* this report's number: 1, 2, ... since start */
        uint64_t reports_dropped;       /* earlier reports that never reached the broker */
        int64_t uptime_ms;
        int64_t now_us;                 /* wall clock, microseconds since the epoch (UTC) */
        int64_t started_at_us;          /* wall clock at start */
        bool disabled;
        const char *disabled_reason;    /* NULL or "" when none */
        int64_t report_interval_s;
        int64_t service_down_time_s;    /* effective value */
};

/* {"host", "binary": "nestor-agent", "topic", "version", "report_count",
 *  "reports_dropped", "uptime_s", "disabled", "disabled_reason" (null when
 *  none), "report_interval", "service_down_time", "timestamp", "started_at"}
 * with timestamps as ISO 8601 UTC ("2024-05-01T12:00:00.123456Z").
 * *ret is owned by the caller. */
int nst_liveness_report_json(const struct nst_liveness_facts *f, json_object **ret,
                             struct nst_error *err);

/* "YYYY-MM-DDTHH:MM:SS.ffffffZ" from a wall clock reading in microseconds
 * (inline: nestorctl uses it without linking the plugin). */
#define NST_LIVENESS_ISO_LEN 40
static inline void nst_liveness_iso8601(int64_t unix_us, char out[NST_LIVENESS_ISO_LEN]) {
        /* Floor division: instants before 1970 still get usec in [0, 1e6). */
        int64_t sec = unix_us / 1000000, usec = unix_us % 1000000;
        if (usec < 0) {
                usec += 1000000;
                sec--;
        }
        time_t t = (time_t)sec;
        struct tm tm;
        if (!gmtime_r(&t, &tm)) {
                snprintf(out, NST_LIVENESS_ISO_LEN, "1970-01-01T00:00:00.000000Z");
                return;
        }
        size_t n = strftime(out, NST_LIVENESS_ISO_LEN, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(out + n, NST_LIVENESS_ISO_LEN - n, ".%06dZ", (int)usec);
}

/* When the periodic task runs. */
struct nst_liveness_timing {
        int64_t interval_ms;            /* report_interval */
        int64_t initial_delay_ms;       /* initial_report_delay */
        int64_t service_down_time_s;    /* effective */
};

struct nst_liveness_counters {
        uint64_t report_count;          /* ticks so far */
        uint64_t reports_dropped;
};

struct nst_liveness;

/* Reads the options (registered and resolved) and notes the start time.
 * Logs a warning when service_down_time had to be raised. host is borrowed
 * and must outlive the object. Errors: ConfigError for an empty or too long
 * service_topic. */
int nst_liveness_new(struct nst_host *host, const struct nst_config *cfg,
                     struct nst_liveness **ret, struct nst_error *err);
void nst_liveness_free(struct nst_liveness *l);

const struct nst_liveness_timing *nst_liveness_timing(const struct nst_liveness *l);

/* Builds and publishes one report (never blocks on the broker). Safe from
 * any thread; concurrent ticks are serialized. */
void nst_liveness_tick(struct nst_liveness *l);
/* The same with explicit clocks (monotonic ms, wall clock us); returns 0
 * when the report was handed to the connection, else the negative errno of
 * the failure (-ENOTCONN while the broker is away) with err filled. */
int nst_liveness_tick_at(struct nst_liveness *l, int64_t now_ms, int64_t now_us,
                         struct nst_error *err);

void nst_liveness_counters(struct nst_liveness *l, struct nst_liveness_counters *ret);

#endif
