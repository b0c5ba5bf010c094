/* Snapshot schedules and retention (plugins/snapshot/schedule.h) under an
 * explicit clock: every form and every error of the schedule JSON, the
 * canonical form, fire times across hour/day/week/month/year boundaries and
 * leap years (checked against a minute-by-minute gmtime scan as well as by
 * hand), the run-now-or-wait decision with missed runs, and which snapshots
 * retention keeps. Times in assertions are written as ISO strings so that a
 * failure reads as a date, not as a number of seconds. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "messages/json_util.h"
#include "plugins/snapshot/schedule.h"

#define RET "\"retention\": {\"keep_last\": 7}"
#define CAL(text) "{\"calendar\": \"" text "\", " RET "}"
#define IV(value) "{\"interval\": " value ", " RET "}"

/* ---- helpers ---- */

static int64_t utc(int y, int mo, int d, int h, int mi, int s) {
        struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d,
                        .tm_hour = h, .tm_min = mi, .tm_sec = s};
        return (int64_t)timegm(&tm);
}

/* Parses "2024-03-01T02:00:00Z" (the form assertions use). */
static int64_t iso_to_t(const char *iso) {
        int y, mo, d, h, mi, s;
        if (sscanf(iso, "%d-%d-%dT%d:%d:%dZ", &y, &mo, &d, &h, &mi, &s) != 6)
                fail_msg("bad test time '%s'", iso);
        return utc(y, mo, d, h, mi, s);
}

static const char *iso(int64_t t, char *buf, size_t size) {
        struct tm tm;
        time_t tt = (time_t)t;
        if (t == NST_SCHEDULE_NEVER)
                snprintf(buf, size, "never");
        else
                strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&tt, &tm));
        return buf;
}

static void assert_time(int64_t actual, const char *expected) {
        char buf[64];
        assert_string_equal(iso(actual, buf, sizeof(buf)), expected);
}

static json_object *parse_json(const char *text) {
        json_object *o = json_tokener_parse(text);
        if (!o)
                fail_msg("test JSON does not parse: %s", text);
        return o;
}

static struct nst_schedule *sched(const char *text) {
        json_object *o = parse_json(text);
        struct nst_schedule *s = NULL;
        struct nst_error err = NST_ERROR_INIT;
        int r = nst_schedule_parse(o, &s, &err);
        json_object_put(o);
        if (r < 0)
                fail_msg("schedule refused: %s: %s\n  spec: %s", err.cls, err.message, text);
        return s;
}

/* Canonical JSON text of a schedule (caller frees). */
static char *canonical(const struct nst_schedule *s) {
        json_object *o = nst_schedule_to_json(s);
        assert_non_null(o);
        char *text = strdup(nst_json_to_string(o, NULL));
        json_object_put(o);
        return text;
}

/* The "interval" or "calendar" value of the canonical form. */
static void assert_when(const char *spec, const char *key, const char *expected) {
        struct nst_schedule *s = sched(spec);
        json_object *o = nst_schedule_to_json(s);
        json_object *v = NULL;
        if (!json_object_object_get_ex(o, key, &v))
                fail_msg("no %s in %s (spec %s)", key, json_object_to_json_string(o), spec);
        assert_string_equal(json_object_get_string(v), expected);
        json_object_put(o);
        nst_schedule_free(s);
}

/* The spec must be refused with InvalidInput and a message starting with
 * prefix; *ret must stay untouched. */
static void assert_refused(const char *text, const char *prefix) {
        json_object *o = parse_json(text);
        struct nst_schedule *s = NULL;
        struct nst_error err = NST_ERROR_INIT;
        int r = nst_schedule_parse(o, &s, &err);
        json_object_put(o);
        if (r >= 0) {
                nst_schedule_free(s);
                fail_msg("accepted, expected '%s...'\n  spec: %s", prefix, text);
        }
        assert_null(s);
        assert_int_equal(r, -EINVAL);
        assert_int_equal(err.code, -EINVAL);
        assert_string_equal(err.cls, "InvalidInput");
        assert_string_equal(err.module, "nestor.exception");
        if (strncmp(err.message, prefix, strlen(prefix)) != 0)
                fail_msg("expected '%s...'\n     got '%s'\n  spec: %s", prefix, err.message, text);
}

/* A refused calendar also lists the accepted forms. */
static void assert_calendar_refused(const char *calendar, const char *prefix) {
        char spec[256], full[512];
        snprintf(spec, sizeof(spec), "{\"calendar\": \"%s\", " RET "}", calendar);
        snprintf(full, sizeof(full), "calendar '%s': %s", calendar, prefix);
        assert_refused(spec, full);

        json_object *o = parse_json(spec);
        struct nst_schedule *s = NULL;
        struct nst_error err = NST_ERROR_INIT;
        assert_true(nst_schedule_parse(o, &s, &err) < 0);
        json_object_put(o);
        assert_non_null(strstr(err.message, "accepted forms (UTC): 'hourly :MM', 'daily HH:MM', "
                                            "'weekly DAY HH:MM', 'monthly DOM HH:MM' (DOM 1-28), "
                                            "'DAY[,DAY...] HH:MM'"));
}

static void assert_next(const char *spec, const char *after, const char *expected) {
        struct nst_schedule *s = sched(spec);
        char buf[64];
        int64_t got = nst_schedule_next(s, iso_to_t(after));
        if (strcmp(iso(got, buf, sizeof(buf)), expected) != 0)
                fail_msg("%s: next after %s is %s, expected %s", spec, after, buf, expected);
        nst_schedule_free(s);
}

/* ---- parsing: the accepted forms ---- */

static void test_interval_forms(void **state) {
        assert_when(IV("\"6h\""), "interval", "6h");
        assert_when(IV("\"90m\""), "interval", "90m");
        assert_when(IV("\"1d\""), "interval", "1d");
        assert_when(IV("3600"), "interval", "1h");
        assert_when(IV("\"1440m\""), "interval", "1d");
        assert_when(IV("\"60s\""), "interval", "1m");
        assert_when(IV("\"61s\""), "interval", "61s");
        assert_when(IV("60"), "interval", "1m");
        assert_when(IV("\"6H\""), "interval", "6h");
        assert_when(IV("\"366d\""), "interval", "366d");
        assert_when(IV("31622400"), "interval", "366d");
}

static void test_calendar_forms(void **state) {
        assert_when(CAL("hourly :15"), "calendar", "hourly :15");
        assert_when(CAL("hourly :00"), "calendar", "hourly :00");
        assert_when(CAL("daily 02:00"), "calendar", "daily 02:00");
        assert_when(CAL("daily 2:00"), "calendar", "daily 02:00");
        assert_when(CAL("daily 23:59"), "calendar", "daily 23:59");
        assert_when(CAL("weekly sun 03:30"), "calendar", "weekly sun 03:30");
        assert_when(CAL("monthly 1 04:00"), "calendar", "monthly 1 04:00");
        assert_when(CAL("monthly 28 00:00"), "calendar", "monthly 28 00:00");
        assert_when(CAL("mon,wed,fri 22:00"), "calendar", "mon,wed,fri 22:00");
        assert_when(CAL("sat 06:00"), "calendar", "sat 06:00");
        /* Normalised: case, blanks, day order. */
        assert_when(CAL("  Weekly   SUN\t03:30 "), "calendar", "weekly sun 03:30");
        assert_when(CAL("fri,Mon,wed 22:00"), "calendar", "mon,wed,fri 22:00");
        assert_when(CAL("DAILY 0:05"), "calendar", "daily 00:05");
}

static void test_defaults_and_canonical_form(void **state) {
        struct nst_schedule *s = sched(CAL("daily 02:00"));
        char *text = canonical(s);
        assert_string_equal(text, "{\"calendar\":\"daily 02:00\",\"timezone\":\"UTC\","
                                  "\"retention\":{\"keep_last\":7,\"keep_daily\":0,"
                                  "\"keep_weekly\":0},\"memory\":false,"
                                  "\"quiesce\":\"preferred\",\"name_prefix\":\"auto\"}");
        assert_string_equal(nst_schedule_quiesce(s), "preferred");
        assert_false(nst_schedule_memory(s));
        free(text);
        nst_schedule_free(s);
}

static void test_options(void **state) {
        struct nst_schedule *s = sched(
                "{\"interval\": 5400, \"timezone\": \"utc\", \"memory\": true,"
                " \"quiesce\": \"required\", \"name_prefix\": \"nightly.db_1-x\","
                " \"retention\": {\"keep_last\": 3, \"keep_daily\": 7, \"keep_weekly\": 4}}");
        assert_true(nst_schedule_memory(s));
        assert_string_equal(nst_schedule_quiesce(s), "required");
        char *text = canonical(s);
        assert_string_equal(text, "{\"interval\":\"90m\",\"timezone\":\"UTC\","
                                  "\"retention\":{\"keep_last\":3,\"keep_daily\":7,"
                                  "\"keep_weekly\":4},\"memory\":true,"
                                  "\"quiesce\":\"required\",\"name_prefix\":\"nightly.db_1-x\"}");
        free(text);
        nst_schedule_free(s);

        s = sched("{\"calendar\": \"hourly :30\", \"quiesce\": \"off\", \"memory\": false,"
                  " \"interval\": null, " RET "}");
        assert_string_equal(nst_schedule_quiesce(s), "off");
        assert_false(nst_schedule_memory(s));
        nst_schedule_free(s);
}

/* The canonical form parses to the same schedule (same text again, same
 * fire times), whatever form the input had. */
static void test_round_trip(void **state) {
        static const char *const specs[] = {
                IV("\"6h\""), IV("7200"), IV("\"61s\""), IV("\"1440m\""),
                CAL("hourly :15"), CAL("Daily 2:00"), CAL("weekly Sun 03:30"),
                CAL("monthly 28 23:59"), CAL("sun,sat,mon 00:00"),
                ("{\"calendar\": \"daily 01:00\", \"memory\": true, \"quiesce\": \"off\","
                 " \"name_prefix\": \"b\", \"timezone\": \"UTC\","
                 " \"retention\": {\"keep_last\": 1000, \"keep_daily\": 0, \"keep_weekly\": 52}}"),
        };
        for (size_t i = 0; i < NST_ARRAY_SIZE(specs); i++) {
                struct nst_schedule *a = sched(specs[i]);
                char *text_a = canonical(a);
                struct nst_schedule *b = sched(text_a);
                char *text_b = canonical(b);
                assert_string_equal(text_a, text_b);
                for (int64_t t = utc(2024, 2, 27, 0, 0, 0); t < utc(2024, 3, 5, 0, 0, 0);
                     t += 1799)
                        assert_int_equal(nst_schedule_next(a, t), nst_schedule_next(b, t));
                free(text_a);
                free(text_b);
                nst_schedule_free(a);
                nst_schedule_free(b);
        }
}

/* ---- parsing: every error ---- */

static void test_refused_structure(void **state) {
        assert_refused("[]", "a schedule must be a JSON object, got an array");
        assert_refused("{\"intervall\": \"6h\", " RET "}",
                       "unknown key 'intervall' (expected interval, calendar, timezone, "
                       "retention, memory, quiesce, name_prefix)");
        assert_refused("{\"interval\": \"6h\", \"retention\": {\"keep_last\": 7, "
                       "\"keep_monthly\": 3}}",
                       "unknown key 'retention.keep_monthly' (expected keep_last, keep_daily, "
                       "keep_weekly)");
        assert_refused("{\"interval\": \"6h\", \"calendar\": \"daily 02:00\", " RET "}",
                       "give either interval or calendar, not both");
        assert_refused("{" RET "}", "a schedule needs an interval (e.g. \"6h\") or a calendar "
                                    "(e.g. \"daily 02:00\")");
        assert_refused("{\"interval\": null, \"calendar\": null, " RET "}",
                       "a schedule needs an interval");

        struct nst_schedule *s = NULL;
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_schedule_parse(NULL, &s, &err), -EINVAL);
        assert_string_equal(err.message, "a schedule must be a JSON object, got null");
        assert_null(s);
}

static void test_refused_interval(void **state) {
        /* The whole message once, then prefixes. */
        assert_refused(IV("\"30s\""), "interval must be at least 1 minute, got '30s'");
        assert_refused(IV("59"), "interval must be at least 1 minute, got 59 seconds");
        assert_refused(IV("0"), "interval must be at least 1 minute, got 0 seconds");
        assert_refused(IV("-3600"), "interval must be at least 1 minute, got -3600 seconds");
        assert_refused(IV("\"0m\""), "interval must be at least 1 minute, got '0m'");
        assert_refused(IV("\"367d\""), "interval must be at most 366 days, got '367d'");
        assert_refused(IV("31622401"), "interval must be at most 366 days, got 31622401 seconds");
        assert_refused(IV("\"99999999999999999999999d\""),
                       "interval must be at most 366 days, got '99999999999999999999999d'");
        assert_refused(IV("\"6x\""),
                       "interval '6x' is not understood: give a number of seconds or a string "
                       "like \"90m\", \"6h\" or \"1d\" (units s, m, h, d)");
        assert_refused(IV("\"6\""), "interval '6' is not understood");
        assert_refused(IV("\"h\""), "interval 'h' is not understood");
        assert_refused(IV("\"\""), "interval '' is not understood");
        assert_refused(IV("\"6 h\""), "interval '6 h' is not understood");
        assert_refused(IV("\"-6h\""), "interval '-6h' is not understood");
        assert_refused(IV("\"1h30m\""), "interval '1h30m' is not understood");
        assert_refused(IV("1.5"), "interval must be a number of seconds or a string like \"90m\", "
                                  "\"6h\" or \"1d\" (units s, m, h, d), got a non-integer number");
        assert_refused(IV("true"), "interval must be a number of seconds or a string like");
}

static void test_refused_calendar(void **state) {
        assert_calendar_refused("daily 25:00", "time '25:00' is out of range (00:00-23:59)");
        assert_calendar_refused("daily 12:60", "time '12:60' is out of range (00:00-23:59)");
        assert_calendar_refused("daily 2pm", "'2pm' is not a time of day HH:MM");
        assert_calendar_refused("daily 02:5", "'02:5' is not a time of day HH:MM");
        assert_calendar_refused("daily 002:00", "'002:00' is not a time of day HH:MM");
        assert_calendar_refused("daily", "'daily' takes 1 word after it");
        assert_calendar_refused("daily 02:00 03:00", "'daily' takes 1 word after it");
        assert_calendar_refused("hourly 15", "hourly takes the minute as ':MM', got '15'");
        assert_calendar_refused("hourly :60", "minute ':60' is out of range (:00-:59)");
        assert_calendar_refused("hourly", "'hourly' takes 1 word after it");
        assert_calendar_refused("weekly sun", "'weekly' takes 2 words after it");
        assert_calendar_refused("weekly sunday 03:30", "unknown day 'sunday'");
        assert_calendar_refused("weekly mon,fri 03:00",
                                "weekly takes one day; for several write 'mon,fri 03:00'");
        assert_calendar_refused("monthly 31 04:00",
                                "day 31 does not exist in every month: use 1-28");
        assert_calendar_refused("monthly 29 04:00",
                                "day 29 does not exist in every month: use 1-28");
        assert_calendar_refused("monthly 30 04:00", "day 30 does not exist in every month");
        assert_calendar_refused("monthly 0 04:00", "day of the month 0 is out of range (1-28)");
        assert_calendar_refused("monthly 32 04:00", "day of the month 32 is out of range (1-28)");
        assert_calendar_refused("monthly x 04:00", "'x' is not a day of the month");
        assert_calendar_refused("monthly 04:00", "'monthly' takes 2 words after it");
        assert_calendar_refused("mon,,fri 22:00", "empty day in 'mon,,fri'");
        assert_calendar_refused("mon, 22:00", "empty day in 'mon,'");
        assert_calendar_refused("mon,mon 22:00", "day 'mon' is listed twice");
        assert_calendar_refused("mon,fry 22:00", "unknown day 'fry'");
        assert_calendar_refused("mon,wed", "'DAY[,DAY...]' takes 1 word after it");
        assert_calendar_refused("mon 24:00", "time '24:00' is out of range");
        assert_calendar_refused("yearly 01:00",
                                "unknown word 'yearly' (expected hourly, daily, weekly, monthly "
                                "or days like 'mon,wed')");
        assert_calendar_refused("02:00", "no day given (for every day: 'daily 02:00')");
        assert_calendar_refused("", "empty");
        assert_calendar_refused("   ", "empty");
        assert_calendar_refused("a b c d e", "too many words");
        assert_refused("{\"calendar\": 5, " RET "}",
                       "calendar must be a string like \"daily 02:00\", got an integer; "
                       "accepted forms (UTC):");
}

static void test_refused_retention_and_options(void **state) {
        assert_refused("{\"interval\": \"6h\"}",
                       "retention.keep_last must be at least 1 (retention is required, e.g. "
                       "{\"keep_last\": 7})");
        assert_refused("{\"interval\": \"6h\", \"retention\": {\"keep_daily\": 7}}",
                       "retention.keep_last must be at least 1 (it is missing)");
        assert_refused("{\"interval\": \"6h\", \"retention\": {\"keep_last\": 0}}",
                       "retention.keep_last must be at least 1, got 0");
        assert_refused("{\"interval\": \"6h\", \"retention\": {\"keep_last\": -2}}",
                       "retention.keep_last must be at least 1, got -2");
        assert_refused("{\"interval\": \"6h\", \"retention\": {\"keep_last\": 1, "
                       "\"keep_daily\": -1}}",
                       "retention.keep_daily must be at least 0, got -1");
        assert_refused("{\"interval\": \"6h\", \"retention\": {\"keep_last\": 1, "
                       "\"keep_weekly\": 1001}}",
                       "retention.keep_weekly must be at most 1000, got 1001");
        assert_refused("{\"interval\": \"6h\", \"retention\": {\"keep_last\": \"7\"}}",
                       "retention.keep_last must be an integer, got a string");
        assert_refused("{\"interval\": \"6h\", \"retention\": [7]}",
                       "retention must be an object like {\"keep_last\": 7, \"keep_daily\": 7, "
                       "\"keep_weekly\": 4}, got an array");

        assert_refused("{\"interval\": \"6h\", \"timezone\": \"Europe/Paris\", " RET "}",
                       "timezone 'Europe/Paris' is not supported: this version only supports "
                       "\"UTC\" (give calendar times in UTC)");
        assert_refused("{\"interval\": \"6h\", \"timezone\": 0, " RET "}",
                       "timezone must be the string \"UTC\", got an integer");
        assert_refused("{\"interval\": \"6h\", \"memory\": \"yes\", " RET "}",
                       "memory must be true or false, got a string");
        assert_refused("{\"interval\": \"6h\", \"quiesce\": \"always\", " RET "}",
                       "quiesce 'always' is not one of \"preferred\", \"required\", \"off\"");
        assert_refused("{\"interval\": \"6h\", \"quiesce\": true, " RET "}",
                       "quiesce must be \"preferred\", \"required\" or \"off\", got a boolean");

        static const char *const bad_prefixes[] = {
                "\"\"", "\"-x\"", "\".x\"", "\"a b\"", "\"a/b\"", "\"caf\\u00e9\"",
                "\"abcdefghijabcdefghijabcdefghijabcdefghijabcdefghi\"", /* 49 */
        };
        for (size_t i = 0; i < NST_ARRAY_SIZE(bad_prefixes); i++) {
                char spec[256];
                snprintf(spec, sizeof(spec), "{\"interval\": \"6h\", \"name_prefix\": %s, " RET "}",
                         bad_prefixes[i]);
                assert_refused(spec, "name_prefix '");
        }
        assert_refused("{\"interval\": \"6h\", \"name_prefix\": \"a/b\", " RET "}",
                       "name_prefix 'a/b' must be 1-48 letters, digits, '.', '_' or '-', "
                       "starting with a letter or digit");
        assert_refused("{\"interval\": \"6h\", \"name_prefix\": 3, " RET "}",
                       "name_prefix must be a string, got an integer");
        /* 48 characters is the limit, not an error. */
        nst_schedule_free(sched("{\"interval\": \"6h\", \"name_prefix\": "
                                "\"abcdefghijabcdefghijabcdefghijabcdefghijabcdefgh\", " RET "}"));
}

/* ---- fire times ---- */

static void test_next_interval(void **state) {
        assert_next(IV("\"6h\""), "2024-03-01T05:59:59Z", "2024-03-01T06:00:00Z");
        assert_next(IV("\"6h\""), "2024-03-01T06:00:00Z", "2024-03-01T12:00:00Z"); /* strictly */
        assert_next(IV("\"6h\""), "2024-02-29T23:00:00Z", "2024-03-01T00:00:00Z");
        assert_next(IV("\"90m\""), "2024-03-01T00:00:00Z", "2024-03-01T01:30:00Z");
        assert_next(IV("\"90m\""), "2024-03-01T23:59:00Z", "2024-03-02T00:00:00Z");
        assert_next(IV("\"1d\""), "2023-12-31T12:00:00Z", "2024-01-01T00:00:00Z");
        /* An interval that does not divide a day keeps its epoch grid. */
        assert_next(IV("\"7h\""), "1970-01-01T00:00:00Z", "1970-01-01T07:00:00Z");
        assert_next(IV("\"7h\""), "1970-01-02T03:00:00Z", "1970-01-02T04:00:00Z");

        /* Any after: the result is the smallest multiple strictly after it. */
        struct nst_schedule *s = sched(IV("\"61s\""));
        for (int64_t t = 1700000000; t < 1700000000 + 500; t += 7) {
                int64_t n = nst_schedule_next(s, t);
                assert_true(n > t && n - 61 <= t && n % 61 == 0);
        }
        nst_schedule_free(s);
}

static void test_next_calendar(void **state) {
        /* hour, day and year boundaries */
        assert_next(CAL("hourly :15"), "2024-03-01T10:14:59Z", "2024-03-01T10:15:00Z");
        assert_next(CAL("hourly :15"), "2024-03-01T10:15:00Z", "2024-03-01T11:15:00Z");
        assert_next(CAL("hourly :15"), "2023-12-31T23:30:00Z", "2024-01-01T00:15:00Z");
        assert_next(CAL("daily 02:00"), "2024-03-01T01:59:59Z", "2024-03-01T02:00:00Z");
        assert_next(CAL("daily 02:00"), "2024-03-01T02:00:00Z", "2024-03-02T02:00:00Z");
        assert_next(CAL("daily 02:00"), "2023-12-31T02:00:00Z", "2024-01-01T02:00:00Z");
        /* leap years: 2024 and 2000 have 29 February, 2023 and 2100 do not */
        assert_next(CAL("daily 02:00"), "2024-02-28T03:00:00Z", "2024-02-29T02:00:00Z");
        assert_next(CAL("daily 02:00"), "2024-02-29T03:00:00Z", "2024-03-01T02:00:00Z");
        assert_next(CAL("daily 02:00"), "2023-02-28T03:00:00Z", "2023-03-01T02:00:00Z");
        assert_next(CAL("daily 02:00"), "2100-02-28T03:00:00Z", "2100-03-01T02:00:00Z");
        assert_next(CAL("daily 02:00"), "2000-02-28T03:00:00Z", "2000-02-29T02:00:00Z");
        /* weeks (2024-03-02 is a Saturday) */
        assert_next(CAL("weekly sun 03:30"), "2024-03-02T12:00:00Z", "2024-03-03T03:30:00Z");
        assert_next(CAL("weekly sun 03:30"), "2024-03-03T03:00:00Z", "2024-03-03T03:30:00Z");
        assert_next(CAL("weekly sun 03:30"), "2024-03-03T03:30:00Z", "2024-03-10T03:30:00Z");
        assert_next(CAL("weekly sun 03:30"), "2024-12-30T00:00:00Z", "2025-01-05T03:30:00Z");
        assert_next(CAL("weekly thu 00:00"), "1970-01-01T00:00:00Z", "1970-01-08T00:00:00Z");
        assert_next(CAL("weekly wed 10:00"), "2024-03-06T11:00:00Z", "2024-03-13T10:00:00Z");
        assert_next(CAL("mon,wed,fri 22:00"), "2024-03-04T22:00:00Z", "2024-03-06T22:00:00Z");
        assert_next(CAL("mon,wed,fri 22:00"), "2024-03-08T21:59:59Z", "2024-03-08T22:00:00Z");
        assert_next(CAL("mon,wed,fri 22:00"), "2024-03-08T22:00:00Z", "2024-03-11T22:00:00Z");
        assert_next(CAL("sat,sun 00:00"), "2024-12-29T00:00:00Z", "2025-01-04T00:00:00Z");
        /* months */
        assert_next(CAL("monthly 1 04:00"), "2024-01-31T12:00:00Z", "2024-02-01T04:00:00Z");
        assert_next(CAL("monthly 1 04:00"), "2024-02-01T03:59:59Z", "2024-02-01T04:00:00Z");
        assert_next(CAL("monthly 1 04:00"), "2024-12-01T04:00:00Z", "2025-01-01T04:00:00Z");
        assert_next(CAL("monthly 28 04:00"), "2024-01-28T05:00:00Z", "2024-02-28T04:00:00Z");
        assert_next(CAL("monthly 28 04:00"), "2024-02-28T05:00:00Z", "2024-03-28T04:00:00Z");
        assert_next(CAL("monthly 15 00:00"), "2024-02-29T23:59:59Z", "2024-03-15T00:00:00Z");
}

static void test_next_range(void **state) {
        struct nst_schedule *daily = sched(CAL("daily 02:00"));
        struct nst_schedule *hourly = sched(IV("\"1h\""));
        assert_time(nst_schedule_next(daily, -100), "1970-01-01T02:00:00Z");
        assert_time(nst_schedule_next(hourly, INT64_MIN), "1970-01-01T00:00:00Z");
        assert_time(nst_schedule_next(daily, iso_to_t("9999-12-30T03:00:00Z")),
                    "9999-12-31T02:00:00Z");
        assert_int_equal(nst_schedule_next(daily, iso_to_t("9999-12-31T03:00:00Z")),
                         NST_SCHEDULE_NEVER);
        assert_int_equal(nst_schedule_next(daily, NST_SCHEDULE_TIME_MAX), NST_SCHEDULE_NEVER);
        assert_int_equal(nst_schedule_next(hourly, INT64_MAX), NST_SCHEDULE_NEVER);
        nst_schedule_free(daily);
        nst_schedule_free(hourly);
}

/* A calendar spelled as fields a gmtime scan can check: -1 / 0 = any. */
struct oracle {
        const char *calendar;
        int minute, hour, mday;
        unsigned wdays; /* bit tm_wday (Sunday = 0) */
};

static int64_t scan_next(const struct oracle *o, int64_t after) {
        for (int64_t t = (after / 60 + 1) * 60;; t += 60) {
                struct tm tm;
                time_t tt = (time_t)t;
                gmtime_r(&tt, &tm);
                if (tm.tm_min == o->minute && (o->hour < 0 || tm.tm_hour == o->hour) &&
                    (o->mday == 0 || tm.tm_mday == o->mday) &&
                    (o->wdays == 0 || (o->wdays & (1u << tm.tm_wday))))
                        return t;
        }
}

/* next() against a minute-by-minute scan with gmtime, from 1970 to 2400
 * (leap centuries included), at random times and right on fire times. */
static void test_next_against_gmtime_scan(void **state) {
        static const struct oracle oracles[] = {
                {"hourly :15", 15, -1, 0, 0},
                {"daily 02:00", 0, 2, 0, 0},
                {"weekly sun 03:30", 30, 3, 0, 1u << 0},
                {"monthly 1 04:00", 0, 4, 1, 0},
                {"monthly 28 23:59", 59, 23, 28, 0},
                {"mon,wed,fri 22:00", 0, 22, 0, (1u << 1) | (1u << 3) | (1u << 5)},
                {"sat,sun 00:00", 0, 0, 0, (1u << 6) | (1u << 0)},
        };
        const int64_t span = utc(2400, 1, 1, 0, 0, 0);
        uint64_t seed = 42;
        for (size_t i = 0; i < NST_ARRAY_SIZE(oracles); i++) {
                char spec[128];
                snprintf(spec, sizeof(spec), CAL("%s"), oracles[i].calendar);
                struct nst_schedule *s = sched(spec);
                for (int k = 0; k < 25; k++) {
                        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
                        int64_t after = (int64_t)((seed >> 11) % (uint64_t)span);
                        if (k % 5 == 4)
                                after = scan_next(&oracles[i], after); /* on a fire time */
                        int64_t want = scan_next(&oracles[i], after);
                        int64_t got = nst_schedule_next(s, after);
                        char a[64], w[64], g[64];
                        if (got != want)
                                fail_msg("%s after %s: got %s, expected %s", oracles[i].calendar,
                                         iso(after, a, sizeof(a)), iso(got, g, sizeof(g)),
                                         iso(want, w, sizeof(w)));
                }
                nst_schedule_free(s);
        }
}

/* ---- due ---- */

static void assert_due(const struct nst_schedule *s, const char *created, const char *last_run,
                       const char *now, enum nst_schedule_due want, const char *want_next) {
        int64_t next = -1;
        enum nst_schedule_due got = nst_schedule_due(s, iso_to_t(created),
                                                     last_run ? iso_to_t(last_run) : 0,
                                                     iso_to_t(now), &next);
        if (got != want)
                fail_msg("created %s, last run %s, now %s: %s, expected %s", created,
                         last_run ? last_run : "never", now,
                         got == NST_SCHEDULE_RUN_NOW ? "run now" : "wait",
                         want == NST_SCHEDULE_RUN_NOW ? "run now" : "wait");
        assert_time(next, want_next);
}

static void test_due_on_time_and_early(void **state) {
        struct nst_schedule *s = sched(CAL("hourly :00"));
        const char *created = "2024-03-01T09:30:00Z";
        assert_due(s, created, NULL, "2024-03-01T09:59:59Z", NST_SCHEDULE_WAIT,
                   "2024-03-01T10:00:00Z");
        assert_due(s, created, NULL, "2024-03-01T10:00:00Z", NST_SCHEDULE_RUN_NOW,
                   "2024-03-01T11:00:00Z");
        /* Ran at 10:00:02: nothing more before 11:00, and 11:00 on the dot runs. */
        assert_due(s, created, "2024-03-01T10:00:02Z", "2024-03-01T10:00:02Z", NST_SCHEDULE_WAIT,
                   "2024-03-01T11:00:00Z");
        assert_due(s, created, "2024-03-01T10:00:02Z", "2024-03-01T10:59:59Z", NST_SCHEDULE_WAIT,
                   "2024-03-01T11:00:00Z");
        assert_due(s, created, "2024-03-01T10:00:02Z", "2024-03-01T11:00:00Z",
                   NST_SCHEDULE_RUN_NOW, "2024-03-01T12:00:00Z");
        assert_int_equal(nst_schedule_due(s, iso_to_t(created), 0,
                                          iso_to_t("2024-03-01T10:00:00Z"), NULL),
                         NST_SCHEDULE_RUN_NOW);
        nst_schedule_free(s);

        s = sched(IV("\"6h\""));
        assert_due(s, created, "2024-03-01T06:00:02Z", "2024-03-01T12:00:00Z",
                   NST_SCHEDULE_RUN_NOW, "2024-03-01T18:00:00Z");
        nst_schedule_free(s);
}

static void test_due_missed_runs_run_once(void **state) {
        struct nst_schedule *s = sched(CAL("daily 02:00"));
        const char *created = "2024-02-01T00:00:00Z";
        /* Last ran 1 March; down until 4 March 09:00: 2, 3 and 4 March missed. */
        assert_due(s, created, "2024-03-01T02:00:10Z", "2024-03-04T09:00:00Z",
                   NST_SCHEDULE_RUN_NOW, "2024-03-05T02:00:00Z");
        /* Once it has run, the missed ones are gone. */
        assert_due(s, created, "2024-03-04T09:00:00Z", "2024-03-04T09:00:00Z", NST_SCHEDULE_WAIT,
                   "2024-03-05T02:00:00Z");
        assert_due(s, created, "2024-03-04T09:00:00Z", "2024-03-04T23:00:00Z", NST_SCHEDULE_WAIT,
                   "2024-03-05T02:00:00Z");
        nst_schedule_free(s);

        /* Down exactly across a fire time of an interval schedule. */
        s = sched(IV("\"15m\""));
        assert_due(s, created, "2024-03-01T10:00:00Z", "2024-03-01T10:45:00Z",
                   NST_SCHEDULE_RUN_NOW, "2024-03-01T11:00:00Z");
        nst_schedule_free(s);
}

static void test_due_never_run_uses_created_at(void **state) {
        struct nst_schedule *s = sched(CAL("daily 02:00"));
        assert_due(s, "2024-03-01T10:00:00Z", NULL, "2024-03-02T01:00:00Z", NST_SCHEDULE_WAIT,
                   "2024-03-02T02:00:00Z");
        assert_due(s, "2024-03-01T10:00:00Z", NULL, "2024-03-02T02:00:00Z",
                   NST_SCHEDULE_RUN_NOW, "2024-03-03T02:00:00Z");
        /* Created just after a fire time: that one is not owed. */
        assert_due(s, "2024-03-01T02:00:01Z", NULL, "2024-03-01T03:00:00Z", NST_SCHEDULE_WAIT,
                   "2024-03-02T02:00:00Z");
        /* Created long ago and never run (agent down): one run now. */
        assert_due(s, "2024-01-01T00:00:00Z", NULL, "2024-03-01T03:00:00Z",
                   NST_SCHEDULE_RUN_NOW, "2024-03-02T02:00:00Z");
        /* Replaced at 10:00 by a new schedule: the old last run (01:00) does
         * not make today's 02:00 owed. */
        assert_due(s, "2024-03-01T10:00:00Z", "2024-03-01T01:00:00Z", "2024-03-01T11:00:00Z",
                   NST_SCHEDULE_WAIT, "2024-03-02T02:00:00Z");
        nst_schedule_free(s);
}

static void test_due_clock_stepped_back(void **state) {
        struct nst_schedule *s = sched(CAL("hourly :00"));
        /* A last run recorded in 2030 does not stall the schedule until 2030. */
        assert_due(s, "2024-01-01T00:00:00Z", "2030-01-01T00:00:00Z", "2024-03-01T10:30:00Z",
                   NST_SCHEDULE_WAIT, "2024-03-01T11:00:00Z");
        assert_due(s, "2030-01-01T00:00:00Z", NULL, "2024-03-01T10:30:00Z", NST_SCHEDULE_WAIT,
                   "2024-03-01T11:00:00Z");
        nst_schedule_free(s);
}

/* The plugin's loop under a test clock: wake at *next, run when told,
 * record the run. Ten days give ten runs at 02:00; a three-day outage then
 * gives a single catch-up run. */
static void test_due_driven_by_a_test_clock(void **state) {
        struct nst_schedule *s = sched(CAL("daily 02:00"));
        int64_t created = iso_to_t("2024-03-01T12:00:00Z"), last_run = 0, next = 0;
        int64_t now = created;
        int runs = 0;
        while (now < iso_to_t("2024-03-11T12:00:00Z")) {
                if (nst_schedule_due(s, created, last_run, now, &next) == NST_SCHEDULE_RUN_NOW) {
                        char buf[64];
                        assert_string_equal(iso(now, buf, sizeof(buf)) + 10, "T02:00:00Z");
                        last_run = now;
                        runs++;
                }
                assert_true(next > now);
                now = next;
        }
        assert_int_equal(runs, 10);

        /* Down from 11 March 12:00 to 14 March 15:00. */
        now = iso_to_t("2024-03-14T15:00:00Z");
        int catch_up = 0;
        for (int i = 0; i < 5; i++) { /* woken several times at the same instant */
                if (nst_schedule_due(s, created, last_run, now, &next) == NST_SCHEDULE_RUN_NOW) {
                        last_run = now;
                        catch_up++;
                }
        }
        assert_int_equal(catch_up, 1);
        assert_time(next, "2024-03-15T02:00:00Z");
        nst_schedule_free(s);
}

/* ---- retention ---- */

struct snapset {
        struct nst_snapshot_stamp stamps[64];
        char names[64][NST_SCHEDULE_SNAPSHOT_NAME_SIZE];
        bool del[64];
        size_t n;
};

static void add_snap(struct snapset *set, const struct nst_schedule *s, int64_t t) {
        assert_true(set->n < NST_ARRAY_SIZE(set->stamps));
        nst_schedule_snapshot_name(s, t, set->names[set->n], sizeof(set->names[0]));
        set->stamps[set->n] = (struct nst_snapshot_stamp){set->names[set->n], t};
        set->n++;
}

/* Runs retention and checks that the kept names are exactly `kept`
 * (space-separated, any order) and the return value the deleted count. */
static void assert_kept(const struct nst_schedule *s, struct snapset *set, const char *kept) {
        struct nst_error err = NST_ERROR_INIT;
        bool preset_true[64];
        /* Every flag must be written: the same answer over false and true. */
        memset(preset_true, 1, sizeof(preset_true));
        memset(set->del, 0, sizeof(set->del));
        int r = nst_retention_prune(s, set->stamps, set->n, set->del, &err);
        assert_true(r >= 0);
        assert_int_equal(nst_retention_prune(s, set->stamps, set->n, preset_true, &err), r);
        assert_memory_equal(preset_true, set->del, set->n * sizeof(bool));
        char got[2048] = "";
        size_t n_kept = 0, n_deleted = 0;
        for (size_t i = 0; i < set->n; i++) {
                if (set->del[i]) {
                        n_deleted++;
                } else {
                        n_kept++;
                        if (!strstr(kept, set->stamps[i].name))
                                fail_msg("kept %s, expected only: %s", set->stamps[i].name, kept);
                        strcat(got, set->stamps[i].name);
                        strcat(got, " ");
                }
        }
        size_t want = 0;
        for (const char *p = kept; *p; p++)
                want += (p == kept || p[-1] == ' ') && *p != ' ';
        if (n_kept != want)
                fail_msg("kept %zu: %s\nexpected %zu: %s", n_kept, got, want, kept);
        assert_int_equal(r, (int)n_deleted);
}

static struct snapset *thirty_days(const struct nst_schedule *s) {
        struct snapset *set = calloc(1, sizeof(*set));
        for (int d = 1; d <= 30; d++)
                add_snap(set, s, utc(2024, 3, d, 2, 0, 0));
        return set;
}

static void test_retention_keep_last_only(void **state) {
        struct nst_schedule *s = sched("{\"interval\": \"1d\", \"retention\": {\"keep_last\": 3}}");
        struct snapset *set = thirty_days(s);
        assert_kept(s, set, "auto-20240328T020000Z auto-20240329T020000Z auto-20240330T020000Z");
        free(set);
        nst_schedule_free(s);

        /* Fewer snapshots than keep_last: nothing to delete. */
        s = sched("{\"interval\": \"1d\", \"retention\": {\"keep_last\": 5}}");
        set = calloc(1, sizeof(*set));
        add_snap(set, s, utc(2024, 3, 1, 2, 0, 0));
        add_snap(set, s, utc(2024, 3, 2, 2, 0, 0));
        assert_kept(s, set, "auto-20240301T020000Z auto-20240302T020000Z");
        free(set);
        nst_schedule_free(s);
}

/* 30 daily snapshots, 1-30 March 2024 (30 March is a Saturday):
 * keep_last 3 keeps 28-30, keep_daily 7 keeps 24-30, keep_weekly 4 keeps
 * the newest of the ISO weeks ending 31, 24, 17 and 10 March: 30, 24, 17
 * and 10. Nine in all. */
#define THIRTY_DAYS_KEPT                                                                          \
        "auto-20240310T020000Z auto-20240317T020000Z auto-20240324T020000Z "                      \
        "auto-20240325T020000Z auto-20240326T020000Z auto-20240327T020000Z "                      \
        "auto-20240328T020000Z auto-20240329T020000Z auto-20240330T020000Z"
#define LAST3_DAILY7_WEEKLY4                                                                      \
        "{\"calendar\": \"daily 02:00\", \"retention\": {\"keep_last\": 3, \"keep_daily\": 7,"    \
        " \"keep_weekly\": 4}}"

static void test_retention_daily_weekly(void **state) {
        struct nst_schedule *s = sched(LAST3_DAILY7_WEEKLY4);
        struct snapset *set = thirty_days(s);
        assert_kept(s, set, THIRTY_DAYS_KEPT);
        free(set);
        nst_schedule_free(s);
}

static void test_retention_unsorted_input(void **state) {
        struct nst_schedule *s = sched(LAST3_DAILY7_WEEKLY4);
        struct snapset *sorted = thirty_days(s);
        struct snapset *set = calloc(1, sizeof(*set));
        /* 7 is coprime with 30: a permutation that scatters old and new. */
        for (size_t i = 0; i < 30; i++)
                add_snap(set, s, sorted->stamps[(i * 7 + 3) % 30].created);
        assert_kept(s, set, THIRTY_DAYS_KEPT);
        /* Reversed, too. */
        set->n = 0;
        for (size_t i = 30; i-- > 0;)
                add_snap(set, s, sorted->stamps[i].created);
        assert_kept(s, set, THIRTY_DAYS_KEPT);
        free(set);
        free(sorted);
        nst_schedule_free(s);
}

/* Several snapshots a day: each day counts once, by its newest. */
static void test_retention_several_per_day(void **state) {
        struct nst_schedule *s = sched("{\"interval\": \"6h\", \"retention\": {\"keep_last\": 2,"
                                       " \"keep_daily\": 3}}");
        struct snapset *set = calloc(1, sizeof(*set));
        for (int d = 1; d <= 4; d++)
                for (int h = 0; h < 24; h += 6)
                        add_snap(set, s, utc(2024, 3, d, h, 0, 0));
        assert_kept(s, set, "auto-20240304T180000Z auto-20240304T120000Z "
                            "auto-20240303T180000Z auto-20240302T180000Z");
        free(set);
        nst_schedule_free(s);
}

/* ISO weeks run Monday to Sunday: Sunday 3 March and Monday 4 March are in
 * different weeks, Monday 4 and Sunday 10 March in the same one. */
static void test_retention_iso_weeks(void **state) {
        struct nst_schedule *s = sched("{\"interval\": \"1h\", \"retention\": {\"keep_last\": 1,"
                                       " \"keep_weekly\": 2}}");
        struct snapset *set = calloc(1, sizeof(*set));
        add_snap(set, s, utc(2024, 3, 3, 23, 0, 0));
        add_snap(set, s, utc(2024, 3, 4, 1, 0, 0));
        assert_kept(s, set, "auto-20240303T230000Z auto-20240304T010000Z");
        add_snap(set, s, utc(2024, 3, 10, 23, 59, 0));
        assert_kept(s, set, "auto-20240303T230000Z auto-20240310T235900Z");
        /* Across a year: Sunday 31 Dec 2023 and Monday 1 Jan 2024. */
        set->n = 0;
        add_snap(set, s, utc(2023, 12, 31, 12, 0, 0));
        add_snap(set, s, utc(2024, 1, 1, 12, 0, 0));
        add_snap(set, s, utc(2023, 12, 25, 12, 0, 0));
        assert_kept(s, set, "auto-20231231T120000Z auto-20240101T120000Z");
        free(set);
        nst_schedule_free(s);
}

static void test_retention_never_deletes_newest(void **state) {
        struct nst_schedule *s = sched("{\"interval\": \"1h\", \"retention\": {\"keep_last\": 1}}");
        struct snapset *set = calloc(1, sizeof(*set));
        add_snap(set, s, utc(2024, 3, 1, 0, 0, 0));
        assert_kept(s, set, "auto-20240301T000000Z");

        /* Equal times (a clock that stepped back): the greater name counts as newer. */
        set->n = 0;
        set->stamps[0] = (struct nst_snapshot_stamp){"auto-b", 100};
        set->stamps[1] = (struct nst_snapshot_stamp){"auto-c", 100};
        set->stamps[2] = (struct nst_snapshot_stamp){"auto-a", 100};
        set->n = 3;
        assert_kept(s, set, "auto-c");
        nst_schedule_free(s);

        /* Random sets under every rule mix: the newest always stays, the
         * newest keep_last always stay, the input order never matters. */
        static const char *const specs[] = {
                "{\"interval\": \"1h\", \"retention\": {\"keep_last\": 1}}",
                "{\"interval\": \"1h\", \"retention\": {\"keep_last\": 2, \"keep_daily\": 5}}",
                "{\"interval\": \"1h\", \"retention\": {\"keep_last\": 1, \"keep_weekly\": 3}}",
                ("{\"interval\": \"1h\", \"retention\": {\"keep_last\": 4, \"keep_daily\": 2,"
                 " \"keep_weekly\": 2}}"),
        };
        uint64_t seed = 7;
        for (size_t k = 0; k < NST_ARRAY_SIZE(specs); k++) {
                s = sched(specs[k]);
                for (int round = 0; round < 20; round++) {
                        size_t n = 1 + round % 40;
                        bool del[64], del_rev[64];
                        struct nst_snapshot_stamp rev[64];
                        struct nst_error err = NST_ERROR_INIT;
                        set->n = 0;
                        for (size_t i = 0; i < n; i++) {
                                seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
                                /* distinct times: i < 50 tells equal draws apart */
                                add_snap(set, s, 1700000000 +
                                                         (int64_t)((seed >> 20) % 100000) * 50 +
                                                         (int64_t)i);
                        }
                        for (size_t i = 0; i < n; i++)
                                rev[i] = set->stamps[n - 1 - i];
                        int r = nst_retention_prune(s, set->stamps, n, del, &err);
                        assert_int_equal(nst_retention_prune(s, rev, n, del_rev, &err), r);
                        size_t newest = 0;
                        for (size_t i = 0; i < n; i++) {
                                assert_int_equal(del[i], del_rev[n - 1 - i]);
                                if (strcmp(set->names[i], set->names[newest]) > 0)
                                        newest = i;
                        }
                        assert_false(del[newest]);
                        size_t n_kept = 0;
                        for (size_t i = 0; i < n; i++)
                                n_kept += !del[i];
                        assert_int_equal((size_t)r, n - n_kept);
                }
                nst_schedule_free(s);
        }
        free(set);
}

static void test_retention_arguments(void **state) {
        struct nst_schedule *s = sched(CAL("daily 02:00"));
        struct nst_error err = NST_ERROR_INIT;
        assert_int_equal(nst_retention_prune(s, NULL, 0, NULL, &err), 0);
        assert_false(nst_error_is_set(&err));
        bool del[1];
        assert_int_equal(nst_retention_prune(s, NULL, 1, del, &err), -EINVAL);
        assert_string_equal(err.cls, "InvalidInput");
        nst_schedule_free(s);

        /* Day 0 (1970-01-01) is a day like any other, before it too. */
        s = sched("{\"interval\": \"1d\", \"retention\": {\"keep_last\": 1, \"keep_daily\": 2}}");
        struct snapset *set = calloc(1, sizeof(*set));
        set->stamps[0] = (struct nst_snapshot_stamp){"day-2", -2 * 86400 + 43200};
        set->stamps[1] = (struct nst_snapshot_stamp){"day0", 43200};
        set->stamps[2] = (struct nst_snapshot_stamp){"day-1", -86400 + 43200};
        set->n = 3;
        assert_kept(s, set, "day0 day-1");
        free(set);
        nst_schedule_free(s);
}

/* ---- names ---- */

static void test_snapshot_names(void **state) {
        struct nst_schedule *s = sched(CAL("daily 02:00"));
        char name[NST_SCHEDULE_SNAPSHOT_NAME_SIZE];
        nst_schedule_snapshot_name(s, iso_to_t("2024-02-29T23:59:59Z"), name, sizeof(name));
        assert_string_equal(name, "auto-20240229T235959Z");
        nst_schedule_snapshot_name(s, -5, name, sizeof(name));
        assert_string_equal(name, "auto-19700101T000000Z");
        nst_schedule_snapshot_name(s, INT64_MAX, name, sizeof(name));
        assert_string_equal(name, "auto-99991231T235959Z");
        char small[8];
        nst_schedule_snapshot_name(s, 0, small, sizeof(small));
        assert_string_equal(small, "auto-19");

        int64_t t = 0;
        assert_true(nst_schedule_snapshot_name_match(s, "auto-20240229T235959Z", &t));
        assert_time(t, "2024-02-29T23:59:59Z");
        assert_true(nst_schedule_snapshot_name_match(s, "auto-20240301T020000Z", NULL));
        static const char *const not_ours[] = {
                "auto-20240230T000000Z", "auto-20230229T000000Z", "auto-20241301T000000Z",
                "auto-20240301T240000Z", "auto-20240301T026000Z", "auto-20240301T020060Z",
                "auto-20240301T020000",  "auto-20240301T020000ZZ", "auto-2024030lT020000Z",
                "auto20240301T020000Z",  "autox-20240301T020000Z", "nightly-20240301T020000Z",
                "auto-db-20240301T020000Z", "auto-", "", "auto-20240301 020000Z",
        };
        for (size_t i = 0; i < NST_ARRAY_SIZE(not_ours); i++)
                if (nst_schedule_snapshot_name_match(s, not_ours[i], &t))
                        fail_msg("'%s' taken for a scheduled snapshot name", not_ours[i]);
        assert_false(nst_schedule_snapshot_name_match(s, NULL, &t));
        nst_schedule_free(s);

        s = sched("{\"interval\": \"1h\", \"name_prefix\": \"db-hourly\", " RET "}");
        nst_schedule_snapshot_name(s, iso_to_t("2000-02-29T12:34:56Z"), name, sizeof(name));
        assert_string_equal(name, "db-hourly-20000229T123456Z");
        assert_true(nst_schedule_snapshot_name_match(s, name, &t));
        assert_time(t, "2000-02-29T12:34:56Z");
        assert_false(nst_schedule_snapshot_name_match(s, "auto-20000229T123456Z", &t));
        nst_schedule_free(s);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_interval_forms),
                cmocka_unit_test(test_calendar_forms),
                cmocka_unit_test(test_defaults_and_canonical_form),
                cmocka_unit_test(test_options),
                cmocka_unit_test(test_round_trip),
                cmocka_unit_test(test_refused_structure),
                cmocka_unit_test(test_refused_interval),
                cmocka_unit_test(test_refused_calendar),
                cmocka_unit_test(test_refused_retention_and_options),
                cmocka_unit_test(test_next_interval),
                cmocka_unit_test(test_next_calendar),
                cmocka_unit_test(test_next_range),
                cmocka_unit_test(test_next_against_gmtime_scan),
                cmocka_unit_test(test_due_on_time_and_early),
                cmocka_unit_test(test_due_missed_runs_run_once),
                cmocka_unit_test(test_due_never_run_uses_created_at),
                cmocka_unit_test(test_due_clock_stepped_back),
                cmocka_unit_test(test_due_driven_by_a_test_clock),
                cmocka_unit_test(test_retention_keep_last_only),
                cmocka_unit_test(test_retention_daily_weekly),
                cmocka_unit_test(test_retention_unsorted_input),
                cmocka_unit_test(test_retention_several_per_day),
                cmocka_unit_test(test_retention_iso_weeks),
                cmocka_unit_test(test_retention_never_deletes_newest),
                cmocka_unit_test(test_retention_arguments),
                cmocka_unit_test(test_snapshot_names),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
