/* The service report (see liveness.h): options, the report's JSON, and the
 * tick that publishes it through the agent's connection as a best-effort
 * fanout cast, counting the reports the broker never got. */
#define NST_LOG_MODULE "liveness"

#include "plugins/inventory/liveness.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/clock.h"
#include "agent/core_options.h"
#include "agent/log.h"
#include "build_config.h"
#include "messages/json_util.h"

#define STR_(x) #x
#define STR(x) STR_(x)
#define TOPIC_MAX 200 /* nst_host_cast's limit */

const struct nst_option nst_liveness_options[] = {
        {"report_interval", NST_OPT_INT, STR(NST_LIVENESS_DEFAULT_INTERVAL_S),
         "Seconds between two service reports (and inventory reports)", 1, 86400},
        {"initial_report_delay", NST_OPT_INT, STR(NST_LIVENESS_DEFAULT_INITIAL_DELAY_S),
         "Seconds from the agent's start to its first service report", 0, 86400},
        {"service_topic", NST_OPT_STRING, NST_LIVENESS_DEFAULT_TOPIC,
         "Topic of the service reports: a fanout cast of method service_report to exchange "
         "<service_topic>_fanout (any oslo RPC server on that topic with fanout=True gets it)"},
        {"service_down_time", NST_OPT_INT, STR(NST_LIVENESS_DEFAULT_DOWN_TIME_S),
         "Seconds without a report after which a controller calls this host down; raised to "
         "int(2.5 x report_interval) when not above report_interval, as nova does",
         1, 31536000},
        {"disabled", NST_OPT_BOOL, "false",
         "Report this host as disabled: controllers should schedule no new work to it"},
        {"disabled_reason", NST_OPT_STRING, "", "Why the host is disabled (shown by nestorctl)"},
};
const size_t nst_liveness_n_options = NST_ARRAY_SIZE(nst_liveness_options);

struct nst_liveness {
        struct nst_host *host;
        char *topic;                    /* service_topic */
        bool disabled;
        char *disabled_reason;
        struct nst_liveness_timing timing;
        int64_t started_ms;             /* monotonic, for uptime */
        int64_t started_at_us;          /* wall clock */

        pthread_mutex_t lock;           /* the counters; serializes ticks */
        uint64_t report_count;
        uint64_t reports_dropped;
        bool dropping;                  /* the last report was dropped (for the log) */
};

/* ---- the report ---- */

/* Takes value on every path; NULL value means allocation failed. */
static int add(json_object *o, const char *key, json_object *value) {
        if (!value)
                return -ENOMEM;
        if (json_object_object_add(o, key, value) < 0) {
                json_object_put(value);
                return -ENOMEM;
        }
        return 0;
}

int nst_liveness_report_json(const struct nst_liveness_facts *f, json_object **ret,
                             struct nst_error *err) {
        _cleanup_json_ json_object *o = json_object_new_object();
        char now[NST_LIVENESS_ISO_LEN], started[NST_LIVENESS_ISO_LEN];
        bool has_reason = f->disabled_reason && *f->disabled_reason;

        if (!o)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        nst_liveness_iso8601(f->now_us, now);
        nst_liveness_iso8601(f->started_at_us, started);
        int r = 0;
        r |= add(o, "host", json_object_new_string(f->host));
        r |= add(o, "binary", json_object_new_string(NST_LIVENESS_BINARY));
        r |= add(o, "topic", json_object_new_string(f->topic));
        r |= add(o, "version", json_object_new_string(f->version));
        r |= add(o, "report_count", json_object_new_int64((int64_t)f->report_count));
        r |= add(o, "reports_dropped", json_object_new_int64((int64_t)f->reports_dropped));
        r |= add(o, "uptime_s", json_object_new_int64(f->uptime_ms / 1000));
        r |= add(o, "disabled", json_object_new_boolean(f->disabled));
        if (has_reason)
                r |= add(o, "disabled_reason", json_object_new_string(f->disabled_reason));
        else
                json_object_object_add(o, "disabled_reason", NULL);
        r |= add(o, "report_interval", json_object_new_int64(f->report_interval_s));
        r |= add(o, "service_down_time", json_object_new_int64(f->service_down_time_s));
        r |= add(o, "timestamp", json_object_new_string(now));
        r |= add(o, "started_at", json_object_new_string(started));
        if (r < 0)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        *ret = nst_steal(&o);
        return 0;
}

/* ---- the object ---- */

void nst_liveness_free(struct nst_liveness *l) {
        if (!l)
                return;
        pthread_mutex_destroy(&l->lock);
        free(l->topic);
        free(l->disabled_reason);
        free(l);
}

int nst_liveness_new(struct nst_host *host, const struct nst_config *cfg,
                     struct nst_liveness **ret, struct nst_error *err) {
        const char *s = NST_LIVENESS_SECTION;
        const char *topic = nst_config_get_string(cfg, s, "service_topic");
        const char *reason = nst_config_get_string(cfg, s, "disabled_reason");
        int64_t interval = nst_config_get_int(cfg, s, "report_interval");
        int64_t down = nst_config_get_int(cfg, s, "service_down_time");

        if (!topic || !*topic || strlen(topic) > TOPIC_MAX)
                return nst_error_set(err, -EINVAL, "ConfigError",
                                     "[%s] service_topic must be 1 to %d characters", s,
                                     TOPIC_MAX);
        struct nst_liveness *l = calloc(1, sizeof(*l));
        if (!l)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        pthread_mutex_init(&l->lock, NULL);
        l->host = host;
        l->topic = strdup(topic);
        l->disabled_reason = strdup(reason ? reason : "");
        if (!l->topic || !l->disabled_reason) {
                nst_liveness_free(l);
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        l->disabled = nst_config_get_bool(cfg, s, "disabled");
        l->timing = (struct nst_liveness_timing){
                .interval_ms = interval * 1000,
                .initial_delay_ms = nst_config_get_int(cfg, s, "initial_report_delay") * 1000,
                .service_down_time_s = nst_liveness_effective_down_time(down, interval),
        };
        if (l->timing.service_down_time_s != down)
                log_warning("[%s] service_down_time (%lld s) must be above report_interval "
                            "(%lld s): reporting %lld s instead",
                            s, (long long)down, (long long)interval,
                            (long long)l->timing.service_down_time_s);
        l->started_ms = nst_now_ms();
        l->started_at_us = nst_realtime_us();
        *ret = l;
        return 0;
}

const struct nst_liveness_timing *nst_liveness_timing(const struct nst_liveness *l) {
        return &l->timing;
}

void nst_liveness_counters(struct nst_liveness *l, struct nst_liveness_counters *ret) {
        pthread_mutex_lock(&l->lock);
        *ret = (struct nst_liveness_counters){l->report_count, l->reports_dropped};
        pthread_mutex_unlock(&l->lock);
}

/* Once when reports start being dropped and once when they go out again:
 * a broker outage must not add a log line per tick. */
static void note_outcome(struct nst_liveness *l, int r, const struct nst_error *err) {
        if (r < 0 && !l->dropping)
                log_info("service report %llu not published (%s); dropping reports until it "
                         "can be", (unsigned long long)l->report_count, err->message);
        else if (r < 0)
                log_debug("service report %llu dropped: %s", (unsigned long long)l->report_count,
                          err->message);
        else if (l->dropping)
                log_info("service reports published again (%llu dropped so far)",
                         (unsigned long long)l->reports_dropped);
        l->dropping = r < 0;
}

int nst_liveness_tick_at(struct nst_liveness *l, int64_t now_ms, int64_t now_us,
                         struct nst_error *err) {
        json_object *report = NULL, *args = NULL; /* both end up owned by the cast */

        /* Held across the cast, which only queues for the I/O thread: the
         * counters in a report and its fate stay consistent. */
        pthread_mutex_lock(&l->lock);
        struct nst_liveness_facts f = {
                .host = nst_host_name(l->host),
                .topic = NST_RPC_TOPIC,
                .version = NESTOR_VERSION,
                .report_count = ++l->report_count,
                .reports_dropped = l->reports_dropped,
                .uptime_ms = now_ms - l->started_ms,
                .now_us = now_us,
                .started_at_us = l->started_at_us,
                .disabled = l->disabled,
                .disabled_reason = l->disabled_reason,
                .report_interval_s = l->timing.interval_ms / 1000,
                .service_down_time_s = l->timing.service_down_time_s,
        };
        int r = nst_liveness_report_json(&f, &report, err);
        if (r >= 0) {
                args = json_object_new_object();
                if (!args || add(args, "report", report) < 0) {
                        if (!args)
                                json_object_put(report);
                        json_object_put(args);
                        args = NULL;
                        r = nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
                }
        }
        if (r >= 0)
                r = nst_host_cast(l->host, l->topic, true, NST_LIVENESS_METHOD, args,
                                  NST_CAST_BEST_EFFORT, err);
        if (r < 0)
                l->reports_dropped++;
        note_outcome(l, r, err);
        pthread_mutex_unlock(&l->lock);
        return r;
}

void nst_liveness_tick(struct nst_liveness *l) {
        struct nst_error err = NST_ERROR_INIT;
        (void)nst_liveness_tick_at(l, nst_now_ms(), nst_realtime_us(), &err);
}
