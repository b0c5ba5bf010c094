/* The service report: its JSON as a pure function of explicit facts and
 * clocks, the options and nova's service_down_time rule, and the tick:
 * a best-effort fanout cast on the agent's outbox, dropped and counted while
 * the broker is away, with report_count going on after a reconnection. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/clock.h"
#include "agent/config.h"
#include "agent/host.h"
#include "agent/outbox.h"
#include "build_config.h"
#include "messages/envelope.h"
#include "messages/json_util.h"
#include "messages/rpc_message.h"
#include "plugins/inventory/liveness.h"

/* 2024-05-01T12:00:00Z */
#define MAY_1_NOON_US (1714564800LL * 1000000)

/* ---- helpers ---- */

static const char *str(json_object *o, const char *key) {
        json_object *v = json_object_object_get(o, key);
        assert_true(json_object_is_type(v, json_type_string));
        return json_object_get_string(v);
}

static int64_t num(json_object *o, const char *key) {
        json_object *v = json_object_object_get(o, key);
        assert_true(json_object_is_type(v, json_type_int));
        return json_object_get_int64(v);
}

static struct nst_config *config(const char *text) {
        struct nst_config *cfg;
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_config_new(&cfg), 0);
        assert_int_equal(nst_config_load_string(cfg, "test.conf", text, &err), 0);
        assert_int_equal(nst_config_register(cfg, NST_LIVENESS_SECTION, nst_liveness_options,
                                             nst_liveness_n_options, &err),
                         0);
        if (nst_config_resolve(cfg, &err) < 0)
                fail_msg("config: %s", err.message);
        return cfg;
}

struct fixture {
        struct nst_config *cfg;
        struct nst_host *host;
        struct nst_outbox *outbox;
        struct nst_liveness *live;
};

static struct fixture *fixture_new(const char *conf) {
        struct fixture *f = calloc(1, sizeof(*f));
        struct nst_error err = NST_ERROR_INIT;
        assert_non_null(f);
        f->cfg = config(conf);
        assert_int_equal(nst_host_new(f->cfg, "node1", &f->host), 0);
        assert_int_equal(nst_outbox_new(&f->outbox), 0);
        assert_int_equal(nst_host_attach_transport(f->host, f->outbox, "nestor"), 0);
        nst_host_set_connected(f->host, true);
        assert_int_equal(nst_liveness_new(f->host, f->cfg, &f->live, &err), 0);
        return f;
}

static int teardown(void **state) {
        struct fixture *f = *state;
        nst_liveness_free(f->live);
        nst_host_detach_transport(f->host, f->outbox);
        nst_host_free(f->host);
        nst_outbox_free(f->outbox);
        nst_config_free(f->cfg);
        free(f);
        return 0;
}

static int setup_default(void **state) {
        *state = fixture_new("");
        return 0;
}

static int setup_custom(void **state) {
        *state = fixture_new("[inventory]\n"
                             "report_interval = 1\n"
                             "initial_report_delay = 0\n"
                             "service_topic = ops-services\n"
                             "service_down_time = 3\n"
                             "disabled = true\n"
                             "disabled_reason = firmware upgrade\n");
        return 0;
}

/* Takes the one message the tick queued and returns its args.report (owned). */
static json_object *take_report(struct fixture *f, const char *want_exchange) {
        struct nst_error err = NST_ERROR_INIT;
        struct nst_outbox_item *it = nst_outbox_take_all(f->outbox);
        _cleanup_json_ json_object *inner = NULL;
        struct nst_rpc_request req = {0};

        assert_non_null(it);
        assert_null(it->next);
        assert_string_equal(it->exchange, want_exchange);
        assert_string_equal(it->routing_key, "");
        assert_true(it->declare_fanout);
        assert_true(it->transient);
        assert_int_equal(nst_envelope_decode(it->body, it->body_len, 1 << 20, &inner, &err), 0);
        assert_int_equal(nst_rpc_request_decode(inner, &req, NULL, NULL, &err), 0);
        assert_string_equal(req.method, "service_report");
        assert_null(req.msg_id);
        assert_int_equal(json_object_object_length(req.args), 1);
        json_object *report = json_object_get(json_object_object_get(req.args, "report"));
        assert_non_null(report);
        nst_rpc_request_done(&req);
        nst_outbox_item_free(it);
        return report;
}

/* ---- the pure parts ---- */

static void test_iso8601(void **state) {
        char buf[NST_LIVENESS_ISO_LEN];

        nst_liveness_iso8601(MAY_1_NOON_US + 123456, buf);
        assert_string_equal(buf, "2024-05-01T12:00:00.123456Z");
        nst_liveness_iso8601(0, buf);
        assert_string_equal(buf, "1970-01-01T00:00:00.000000Z");
        nst_liveness_iso8601(-1, buf);
        assert_string_equal(buf, "1969-12-31T23:59:59.999999Z");
}

static void test_report_json(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        json_object *o = NULL;
        struct nst_liveness_facts f = {
                .host = "node7",
                .topic = "compute",
                .version = "9.8.7",
                .report_count = 42,
                .reports_dropped = 3,
                .uptime_ms = 125999,
                .now_us = MAY_1_NOON_US + 500000,
                .started_at_us = MAY_1_NOON_US - 126000000,
                .disabled = true,
                .disabled_reason = "maintenance",
                .report_interval_s = 10,
                .service_down_time_s = 60,
        };

        assert_int_equal(nst_liveness_report_json(&f, &o, &err), 0);
        assert_int_equal(json_object_object_length(o), 13);
        assert_string_equal(str(o, "host"), "node7");
        assert_string_equal(str(o, "binary"), "nestor-agent");
        assert_string_equal(str(o, "topic"), "compute");
        assert_string_equal(str(o, "version"), "9.8.7");
        assert_int_equal(num(o, "report_count"), 42);
        assert_int_equal(num(o, "reports_dropped"), 3);
        assert_int_equal(num(o, "uptime_s"), 125); /* whole seconds, rounded down */
        assert_true(json_object_get_boolean(json_object_object_get(o, "disabled")));
        assert_string_equal(str(o, "disabled_reason"), "maintenance");
        assert_int_equal(num(o, "report_interval"), 10);
        assert_int_equal(num(o, "service_down_time"), 60);
        assert_string_equal(str(o, "timestamp"), "2024-05-01T12:00:00.500000Z");
        assert_string_equal(str(o, "started_at"), "2024-05-01T11:57:54.000000Z");
        json_object_put(o);

        /* No reason: JSON null, not an empty string. */
        f.disabled = false;
        f.disabled_reason = "";
        assert_int_equal(nst_liveness_report_json(&f, &o, &err), 0);
        json_object *reason;
        assert_true(json_object_object_get_ex(o, "disabled_reason", &reason));
        assert_null(reason);
        assert_false(json_object_get_boolean(json_object_object_get(o, "disabled")));
        json_object_put(o);
}

static void test_effective_down_time(void **state) {
        assert_int_equal(nst_liveness_effective_down_time(60, 10), 60);
        assert_int_equal(nst_liveness_effective_down_time(3, 1), 3);
        assert_int_equal(nst_liveness_effective_down_time(10, 10), 25);
        assert_int_equal(nst_liveness_effective_down_time(30, 45), 112); /* int(112.5) */
        assert_int_equal(nst_liveness_effective_down_time(1, 1), 2);
}

/* ---- options ---- */

static void test_default_options(void **state) {
        struct fixture *f = *state;
        const struct nst_liveness_timing *t = nst_liveness_timing(f->live);

        assert_int_equal(t->interval_ms, 10000);
        assert_int_equal(t->initial_delay_ms, 5000);
        assert_int_equal(t->service_down_time_s, 60);
        assert_string_equal(nst_config_get_string(f->cfg, "inventory", "service_topic"),
                            "nestor-services");
        assert_false(nst_config_get_bool(f->cfg, "inventory", "disabled"));
}

static void test_down_time_raised(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        struct nst_config *cfg = config("[inventory]\nreport_interval = 30\n"
                                        "service_down_time = 30\n");
        struct nst_host *host;
        struct nst_liveness *l;

        assert_int_equal(nst_host_new(cfg, "node1", &host), 0);
        assert_int_equal(nst_liveness_new(host, cfg, &l, &err), 0);
        assert_int_equal(nst_liveness_timing(l)->interval_ms, 30000);
        assert_int_equal(nst_liveness_timing(l)->service_down_time_s, 75);
        nst_liveness_free(l);
        nst_host_free(host);
        nst_config_free(cfg);
}

static void test_bad_options(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        struct nst_config *cfg;

        /* An empty topic would make every report fail: refuse to start. */
        cfg = config("[inventory]\nservice_topic =\n");
        struct nst_host *host;
        struct nst_liveness *l = NULL;
        assert_int_equal(nst_host_new(cfg, "node1", &host), 0);
        assert_int_equal(nst_liveness_new(host, cfg, &l, &err), -EINVAL);
        assert_string_equal(err.cls, "ConfigError");
        assert_string_equal(err.message, "[inventory] service_topic must be 1 to 200 characters");
        assert_null(l);
        nst_host_free(host);
        nst_config_free(cfg);

        /* report_interval has a minimum of 1 s. */
        assert_int_equal(nst_config_new(&cfg), 0);
        assert_int_equal(nst_config_load_string(cfg, "x.conf", "[inventory]\nreport_interval = 0\n",
                                                &err),
                         0);
        assert_int_equal(nst_config_register(cfg, NST_LIVENESS_SECTION, nst_liveness_options,
                                             nst_liveness_n_options, &err),
                         0);
        assert_int_equal(nst_config_resolve(cfg, &err), -EINVAL);
        assert_non_null(strstr(err.message, "report_interval"));
        nst_config_free(cfg);
}

/* ---- ticks ---- */

static void test_tick_publishes(void **state) {
        struct fixture *f = *state;
        struct nst_error err = NST_ERROR_INIT;
        int64_t now_ms = nst_now_ms() + 7000; /* 7 s after the object was made */

        assert_int_equal(nst_liveness_tick_at(f->live, now_ms, MAY_1_NOON_US, &err), 0);
        json_object *r = take_report(f, "ops-services_fanout");
        assert_string_equal(str(r, "host"), "node1");
        assert_string_equal(str(r, "binary"), "nestor-agent");
        assert_string_equal(str(r, "topic"), "compute");
        assert_string_equal(str(r, "version"), NESTOR_VERSION);
        assert_int_equal(num(r, "report_count"), 1);
        assert_int_equal(num(r, "reports_dropped"), 0);
        assert_int_equal(num(r, "uptime_s"), 7);
        assert_true(json_object_get_boolean(json_object_object_get(r, "disabled")));
        assert_string_equal(str(r, "disabled_reason"), "firmware upgrade");
        assert_int_equal(num(r, "report_interval"), 1);
        assert_int_equal(num(r, "service_down_time"), 3);
        assert_string_equal(str(r, "timestamp"), "2024-05-01T12:00:00.000000Z");
        /* started_at is the wall clock when the object was made: now-ish. */
        char now_iso[NST_LIVENESS_ISO_LEN];
        nst_liveness_iso8601(nst_realtime_us(), now_iso);
        assert_memory_equal(str(r, "started_at"), now_iso, 10); /* same day, barring midnight */
        json_object_put(r);

        assert_int_equal(nst_liveness_tick_at(f->live, now_ms + 1000, MAY_1_NOON_US + 1000000,
                                              &err),
                         0);
        r = take_report(f, "ops-services_fanout");
        assert_int_equal(num(r, "report_count"), 2);
        assert_int_equal(num(r, "uptime_s"), 8);
        assert_string_equal(str(r, "timestamp"), "2024-05-01T12:00:01.000000Z");
        json_object_put(r);
}

static void test_dropped_while_disconnected(void **state) {
        struct fixture *f = *state;
        struct nst_error err = NST_ERROR_INIT;
        struct nst_liveness_counters c;
        int64_t t = nst_now_ms();

        assert_int_equal(nst_liveness_tick_at(f->live, t, MAY_1_NOON_US, &err), 0);
        json_object_put(take_report(f, "nestor-services_fanout"));

        /* The broker goes away: nothing is queued, every tick is counted. */
        nst_host_set_connected(f->host, false);
        assert_int_equal(nst_liveness_tick_at(f->live, t + 10000, MAY_1_NOON_US, &err),
                         -ENOTCONN);
        assert_string_equal(err.cls, "MessageDeliveryFailure");
        assert_int_equal(nst_liveness_tick_at(f->live, t + 20000, MAY_1_NOON_US, &err),
                         -ENOTCONN);
        assert_null(nst_outbox_take_all(f->outbox));
        nst_liveness_counters(f->live, &c);
        assert_int_equal(c.report_count, 3);
        assert_int_equal(c.reports_dropped, 2);

        /* Back: the next report carries the current state and the gap. */
        nst_host_set_connected(f->host, true);
        assert_int_equal(nst_liveness_tick_at(f->live, t + 30000, MAY_1_NOON_US + 30000000, &err),
                         0);
        json_object *r = take_report(f, "nestor-services_fanout");
        assert_int_equal(num(r, "report_count"), 4);
        assert_int_equal(num(r, "reports_dropped"), 2);
        assert_int_equal(num(r, "uptime_s"), 30);
        assert_string_equal(str(r, "timestamp"), "2024-05-01T12:00:30.000000Z");
        json_object_put(r);

        /* Without any transport at all (the agent is stopping): dropped too. */
        nst_host_detach_transport(f->host, f->outbox);
        nst_liveness_tick(f->live);
        nst_liveness_counters(f->live, &c);
        assert_int_equal(c.report_count, 5);
        assert_int_equal(c.reports_dropped, 3);
        assert_null(nst_outbox_take_all(f->outbox));
}

#define N_THREADS 4
#define N_TICKS 100

static void *tick_many(void *data) {
        for (int i = 0; i < N_TICKS; i++)
                nst_liveness_tick(data);
        return NULL;
}

static int compare_int64(const void *a, const void *b) {
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
        return (x > y) - (x < y);
}

/* Ticks from several workers: every report has its own number, none lost. */
static void test_concurrent_ticks(void **state) {
        struct fixture *f = *state;
        pthread_t threads[N_THREADS];
        int64_t counts[N_THREADS * N_TICKS];
        size_t n = 0;

        for (int i = 0; i < N_THREADS; i++)
                assert_int_equal(pthread_create(&threads[i], NULL, tick_many, f->live), 0);
        for (int i = 0; i < N_THREADS; i++)
                assert_int_equal(pthread_join(threads[i], NULL), 0);

        struct nst_outbox_item *it = nst_outbox_take_all(f->outbox);
        while (it) {
                struct nst_outbox_item *next = it->next;
                struct nst_error err = NST_ERROR_INIT;
                _cleanup_json_ json_object *inner = NULL;
                assert_int_equal(nst_envelope_decode(it->body, it->body_len, 1 << 20, &inner,
                                                     &err),
                                 0);
                json_object *report = json_object_object_get(
                        json_object_object_get(inner, "args"), "report");
                assert_true(n < NST_ARRAY_SIZE(counts));
                counts[n++] = num(report, "report_count");
                nst_outbox_item_free(it);
                it = next;
        }
        assert_int_equal(n, N_THREADS * N_TICKS);
        qsort(counts, n, sizeof(counts[0]), compare_int64);
        for (size_t i = 0; i < n; i++)
                assert_int_equal(counts[i], (int64_t)i + 1);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_iso8601),
                cmocka_unit_test(test_report_json),
                cmocka_unit_test(test_effective_down_time),
                cmocka_unit_test_setup_teardown(test_default_options, setup_default, teardown),
                cmocka_unit_test(test_down_time_raised),
                cmocka_unit_test(test_bad_options),
                cmocka_unit_test_setup_teardown(test_tick_publishes, setup_custom, teardown),
                cmocka_unit_test_setup_teardown(test_dropped_while_disconnected, setup_default,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_concurrent_ticks, setup_default, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
