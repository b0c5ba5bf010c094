/* Snapshot schedules: the JSON form, the grid of fire times, the run-now-or-
 * wait decision and retention (see schedule.h).
 *
 * Calendar arithmetic is done on day numbers (days since 1970-01-01) with
 * the proleptic Gregorian conversions below rather than with gmtime/timegm:
 * it is exact for every year we accept, needs no locale or TZ environment,
 * and makes "the next 1st of a month" or "the next Wednesday" a few integer
 * operations. Only UTC exists here, so there is no DST to get wrong. */
#include "plugins/snapshot/schedule.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MINUTE_S 60
#define HOUR_S 3600
#define DAY_S 86400
#define WEEK_DAYS 7
#define CALENDAR_TEXT_MAX 128

#define INTERVAL_FORMS                                                                            \
        "a number of seconds or a string like \"90m\", \"6h\" or \"1d\" (units s, m, h, d)"
#define CALENDAR_FORMS                                                                            \
        "accepted forms (UTC): 'hourly :MM', 'daily HH:MM', 'weekly DAY HH:MM', "                 \
        "'monthly DOM HH:MM' (DOM 1-28), 'DAY[,DAY...] HH:MM' "                                   \
        "(DAY: mon, tue, wed, thu, fri, sat, sun)"

enum quiesce { QUIESCE_PREFERRED = 0, QUIESCE_REQUIRED, QUIESCE_OFF };
static const char *const quiesce_names[] = {"preferred", "required", "off"};

/* Monday is day 0, as in ISO 8601. */
static const char *const day_names[WEEK_DAYS] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};

enum calendar_kind { CAL_HOURLY, CAL_DAILY, CAL_WEEKLY, CAL_MONTHLY, CAL_DAYS };

struct calendar {
        enum calendar_kind kind;
        unsigned days;  /* CAL_WEEKLY, CAL_DAYS: bit d set for weekday d */
        int dom;        /* CAL_MONTHLY: 1-28, a day every month has */
        int hour;       /* unused by CAL_HOURLY */
        int minute;
};

struct nst_schedule {
        int64_t interval;  /* seconds; 0 for a calendar schedule */
        struct calendar cal;
        int keep_last, keep_daily, keep_weekly;
        bool memory;
        enum quiesce quiesce;
        char prefix[NST_SCHEDULE_PREFIX_MAX + 1];
};

/* ---- errors ---- */

_printf_(2, 3) static int invalid(struct nst_error *err, const char *fmt, ...) {
        char msg[NST_ERROR_MESSAGE_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        return nst_error_set(err, -EINVAL, "InvalidInput", "%s", msg);
}

/* "calendar '<text>': <what>; accepted forms: ...". */
_printf_(3, 4) static int bad_calendar(struct nst_error *err, const char *text, const char *fmt,
                                       ...) {
        char what[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        return invalid(err, "calendar '%.64s': %s; " CALENDAR_FORMS, text, what);
}

static int no_memory(struct nst_error *err) {
        return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
}

static const char *json_kind(json_object *v) {
        switch (json_object_get_type(v)) {
        case json_type_null: return "null";
        case json_type_boolean: return "a boolean";
        case json_type_double: return "a non-integer number";
        case json_type_int: return "an integer";
        case json_type_object: return "an object";
        case json_type_array: return "an array";
        case json_type_string: return "a string";
        }
        return "?";
}

/* ---- JSON access ---- */

/* Looks key up; JSON null counts as absent. */
static json_object *field(json_object *obj, const char *key) {
        json_object *v = NULL;
        if (!json_object_object_get_ex(obj, key, &v) || json_object_is_type(v, json_type_null))
                return NULL;
        return v;
}

/* Refuses keys not in allowed[] (NULL-terminated): a typo must not fall
 * back to a default silently. path is "" or "retention.". */
static int check_keys(json_object *obj, const char *path, const char *const *allowed,
                      const char *allowed_text, struct nst_error *err) {
        json_object_object_foreach(obj, key, val) {
                (void)val;
                bool known = false;
                for (const char *const *a = allowed; *a && !known; a++)
                        known = strcmp(*a, key) == 0;
                if (!known)
                        return invalid(err, "unknown key '%s%.64s' (expected %s)", path, key,
                                       allowed_text);
        }
        return 0;
}

/* ---- day numbers ---- */

static int64_t floor_div(int64_t a, int64_t b) {
        int64_t q = a / b;
        return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d) {
        y -= m <= 2;
        int64_t era = floor_div(y, 400);
        int64_t yoe = y - era * 400;
        int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
        int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *ret_y, int *ret_m, int *ret_d) {
        z += 719468;
        int64_t era = floor_div(z, 146097);
        int64_t doe = z - era * 146097;
        int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        int64_t mp = (5 * doy + 2) / 153;
        int m = (int)(mp < 10 ? mp + 3 : mp - 9);
        *ret_d = (int)(doy - (153 * mp + 2) / 5 + 1);
        *ret_m = m;
        *ret_y = yoe + era * 400 + (m <= 2);
}

/* Monday = 0; 1970-01-01 was a Thursday. */
static int weekday_of_day(int64_t day) {
        return (int)(day + 3 - floor_div(day + 3, WEEK_DAYS) * WEEK_DAYS);
}

static int64_t day_of(int64_t t) {
        return floor_div(t, DAY_S);
}

/* Monday-to-Sunday weeks numbered from the one holding the epoch. */
static int64_t iso_week_of(int64_t t) {
        return floor_div(day_of(t) + 3, WEEK_DAYS);
}

/* ---- parsing: interval ---- */

/* "<digits><unit>", saturating at just above the maximum so that a huge
 * number is reported as too long rather than wrapping. */
static bool parse_interval_text(const char *s, int64_t *ret) {
        const int64_t cap = (int64_t)NST_SCHEDULE_INTERVAL_MAX + 1;
        int64_t v = 0;
        const char *p = s;
        for (; isdigit((unsigned char)*p); p++) {
                v = v * 10 + (*p - '0');
                if (v > cap)
                        v = cap;
        }
        if (p == s || p[0] == '\0' || p[1] != '\0')
                return false;
        int64_t unit;
        switch (tolower((unsigned char)*p)) {
        case 's': unit = 1; break;
        case 'm': unit = MINUTE_S; break;
        case 'h': unit = HOUR_S; break;
        case 'd': unit = DAY_S; break;
        default: return false;
        }
        *ret = v * unit > cap ? cap : v * unit;
        return true;
}

static int parse_interval(json_object *v, int64_t *ret, struct nst_error *err) {
        char given[64];
        int64_t seconds;
        if (json_object_is_type(v, json_type_int)) {
                seconds = json_object_get_int64(v);
                snprintf(given, sizeof(given), "%lld seconds", (long long)seconds);
        } else if (json_object_is_type(v, json_type_string)) {
                const char *s = json_object_get_string(v);
                if (!parse_interval_text(s, &seconds))
                        return invalid(err,
                                       "interval '%.32s' is not understood: give " INTERVAL_FORMS,
                                       s);
                snprintf(given, sizeof(given), "'%.32s'", s);
        } else {
                return invalid(err, "interval must be " INTERVAL_FORMS ", got %s", json_kind(v));
        }
        if (seconds < NST_SCHEDULE_INTERVAL_MIN)
                return invalid(err, "interval must be at least 1 minute, got %s", given);
        if (seconds > NST_SCHEDULE_INTERVAL_MAX)
                return invalid(err, "interval must be at most 366 days, got %s", given);
        *ret = seconds;
        return 0;
}

/* ---- parsing: calendar ---- */

/* Reads min..max decimal digits at *p, advancing it; -1 when there are
 * fewer or more. */
static int read_number(const char **p, int min_digits, int max_digits) {
        int v = 0, n = 0;
        for (; isdigit((unsigned char)**p); (*p)++) {
                if (++n > max_digits)
                        return -1;
                v = v * 10 + (**p - '0');
        }
        return n >= min_digits ? v : -1;
}

static bool looks_like_time(const char *tok) {
        return isdigit((unsigned char)tok[0]) && strchr(tok, ':');
}

/* "HH:MM" (or "H:MM"), 00:00-23:59. */
static int parse_time_of_day(const char *text, const char *tok, struct calendar *c,
                             struct nst_error *err) {
        const char *p = tok;
        int h = read_number(&p, 1, 2);
        int m = -1;
        if (h >= 0 && *p == ':') {
                p++;
                m = read_number(&p, 2, 2);
        }
        if (h < 0 || m < 0 || *p)
                return bad_calendar(err, text, "'%.16s' is not a time of day HH:MM", tok);
        if (h > 23 || m > 59)
                return bad_calendar(err, text, "time '%.16s' is out of range (00:00-23:59)", tok);
        c->hour = h;
        c->minute = m;
        return 0;
}

static int parse_minute(const char *text, const char *tok, struct calendar *c,
                        struct nst_error *err) {
        const char *p = tok + 1;
        int m = tok[0] == ':' ? read_number(&p, 2, 2) : -1;
        if (m < 0 || *p)
                return bad_calendar(err, text, "hourly takes the minute as ':MM', got '%.16s'",
                                    tok);
        if (m > 59)
                return bad_calendar(err, text, "minute '%.16s' is out of range (:00-:59)", tok);
        c->minute = m;
        return 0;
}

static int day_index(const char *name, size_t len) {
        for (int d = 0; d < WEEK_DAYS; d++)
                if (len == 3 && strncmp(day_names[d], name, 3) == 0)
                        return d;
        return -1;
}

/* "mon" or "mon,wed,fri" (each day once) into a bit set. */
static int parse_days(const char *text, const char *tok, unsigned *ret, struct nst_error *err) {
        unsigned days = 0;
        for (const char *p = tok;; p++) {
                size_t len = strcspn(p, ",");
                if (len == 0)
                        return bad_calendar(err, text, "empty day in '%.32s'", tok);
                int d = day_index(p, len);
                if (d < 0)
                        return bad_calendar(err, text, "unknown day '%.*s'",
                                            (int)(len > 16 ? 16 : len), p);
                if (days & (1u << d))
                        return bad_calendar(err, text, "day '%s' is listed twice", day_names[d]);
                days |= 1u << d;
                p += len;
                if (!*p)
                        break;
        }
        *ret = days;
        return 0;
}

static int parse_day_of_month(const char *text, const char *tok, struct calendar *c,
                              struct nst_error *err) {
        const char *p = tok;
        int dom = read_number(&p, 1, 2);
        if (dom < 0 || *p)
                return bad_calendar(err, text, "'%.16s' is not a day of the month", tok);
        if (dom >= 29 && dom <= 31)
                return bad_calendar(err, text,
                                    "day %d does not exist in every month: use 1-28 (1 for the "
                                    "start of a month)",
                                    dom);
        if (dom < 1 || dom > 31)
                return bad_calendar(err, text, "day of the month %d is out of range (1-28)", dom);
        c->dom = dom;
        return 0;
}

/* Checks the number of words a form takes. */
static int expect_words(const char *text, size_t n, size_t want, const char *form,
                        struct nst_error *err) {
        if (n != want)
                return bad_calendar(err, text, "'%s' takes %zu word%s after it", form, want - 1,
                                    want == 2 ? "" : "s");
        return 0;
}

static int parse_calendar_words(const char *text, char **w, size_t n, struct calendar *c,
                                struct nst_error *err) {
        int r;
        if (strcmp(w[0], "hourly") == 0) {
                c->kind = CAL_HOURLY;
                if ((r = expect_words(text, n, 2, "hourly", err)) < 0)
                        return r;
                return parse_minute(text, w[1], c, err);
        }
        if (strcmp(w[0], "daily") == 0) {
                c->kind = CAL_DAILY;
                if ((r = expect_words(text, n, 2, "daily", err)) < 0)
                        return r;
                return parse_time_of_day(text, w[1], c, err);
        }
        if (strcmp(w[0], "weekly") == 0) {
                c->kind = CAL_WEEKLY;
                if ((r = expect_words(text, n, 3, "weekly", err)) < 0)
                        return r;
                if (strchr(w[1], ','))
                        return bad_calendar(err, text,
                                            "weekly takes one day; for several write '%.32s %.8s'",
                                            w[1], w[2]);
                if ((r = parse_days(text, w[1], &c->days, err)) < 0)
                        return r;
                return parse_time_of_day(text, w[2], c, err);
        }
        if (strcmp(w[0], "monthly") == 0) {
                c->kind = CAL_MONTHLY;
                if ((r = expect_words(text, n, 3, "monthly", err)) < 0)
                        return r;
                if ((r = parse_day_of_month(text, w[1], c, err)) < 0)
                        return r;
                return parse_time_of_day(text, w[2], c, err);
        }
        if (n == 1 && looks_like_time(w[0]))
                return bad_calendar(err, text, "no day given (for every day: 'daily %.8s')", w[0]);
        if (!strchr(w[0], ',') && day_index(w[0], strlen(w[0])) < 0)
                return bad_calendar(err, text,
                                    "unknown word '%.16s' (expected hourly, daily, weekly, "
                                    "monthly or days like 'mon,wed')",
                                    w[0]);
        c->kind = CAL_DAYS;
        if ((r = expect_words(text, n, 2, "DAY[,DAY...]", err)) < 0)
                return r;
        if ((r = parse_days(text, w[0], &c->days, err)) < 0)
                return r;
        return parse_time_of_day(text, w[1], c, err);
}

/* Words are separated by blanks; case does not matter ("Daily 2:00"). */
static int parse_calendar(json_object *v, struct calendar *c, struct nst_error *err) {
        if (!json_object_is_type(v, json_type_string))
                return invalid(err, "calendar must be a string like \"daily 02:00\", got %s; "
                               CALENDAR_FORMS, json_kind(v));
        const char *text = json_object_get_string(v);
        char buf[CALENDAR_TEXT_MAX];
        size_t len = strlen(text);
        if (len >= sizeof(buf))
                return bad_calendar(err, text, "too long");
        for (size_t i = 0; i <= len; i++)
                buf[i] = (char)tolower((unsigned char)text[i]);

        char *words[4], *save = NULL;
        size_t n = 0;
        for (char *t = strtok_r(buf, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
                if (n == NST_ARRAY_SIZE(words))
                        return bad_calendar(err, text, "too many words");
                words[n++] = t;
        }
        if (n == 0)
                return bad_calendar(err, text, "empty");
        return parse_calendar_words(text, words, n, c, err);
}

/* ---- parsing: the rest ---- */

static int parse_timezone(json_object *spec, struct nst_error *err) {
        json_object *v = field(spec, "timezone");
        if (!v)
                return 0;
        if (!json_object_is_type(v, json_type_string))
                return invalid(err, "timezone must be the string \"UTC\", got %s", json_kind(v));
        if (strcasecmp(json_object_get_string(v), "UTC") != 0)
                return invalid(err,
                               "timezone '%.64s' is not supported: this version only supports "
                               "\"UTC\" (give calendar times in UTC)",
                               json_object_get_string(v));
        return 0;
}

static int parse_keep(json_object *retention, const char *key, int min, int *ret,
                      struct nst_error *err) {
        json_object *v = field(retention, key);
        if (!v)
                return 0;
        if (!json_object_is_type(v, json_type_int))
                return invalid(err, "retention.%s must be an integer, got %s", key, json_kind(v));
        int64_t x = json_object_get_int64(v);
        if (x < min)
                return invalid(err, "retention.%s must be at least %d, got %lld", key, min,
                               (long long)x);
        if (x > NST_RETENTION_KEEP_MAX)
                return invalid(err, "retention.%s must be at most %d, got %lld", key,
                               NST_RETENTION_KEEP_MAX, (long long)x);
        *ret = (int)x;
        return 0;
}

static int parse_retention(json_object *spec, struct nst_schedule *s, struct nst_error *err) {
        static const char *const keys[] = {"keep_last", "keep_daily", "keep_weekly", NULL};
        json_object *v = field(spec, "retention");
        int r;
        if (!v)
                return invalid(err, "retention.keep_last must be at least 1 (retention is "
                                    "required, e.g. {\"keep_last\": 7})");
        if (!json_object_is_type(v, json_type_object))
                return invalid(err, "retention must be an object like {\"keep_last\": 7, "
                                    "\"keep_daily\": 7, \"keep_weekly\": 4}, got %s",
                               json_kind(v));
        if ((r = check_keys(v, "retention.", keys, "keep_last, keep_daily, keep_weekly", err)) <
            0)
                return r;
        if (!field(v, "keep_last"))
                return invalid(err, "retention.keep_last must be at least 1 (it is missing)");
        if ((r = parse_keep(v, "keep_last", 1, &s->keep_last, err)) < 0 ||
            (r = parse_keep(v, "keep_daily", 0, &s->keep_daily, err)) < 0 ||
            (r = parse_keep(v, "keep_weekly", 0, &s->keep_weekly, err)) < 0)
                return r;
        return 0;
}

static int parse_quiesce(json_object *spec, enum quiesce *ret, struct nst_error *err) {
        json_object *v = field(spec, "quiesce");
        if (!v)
                return 0;
        const char *s = json_object_is_type(v, json_type_string) ? json_object_get_string(v)
                                                                 : NULL;
        for (size_t i = 0; s && i < NST_ARRAY_SIZE(quiesce_names); i++) {
                if (strcmp(s, quiesce_names[i]) == 0) {
                        *ret = (enum quiesce)i;
                        return 0;
                }
        }
        if (!s)
                return invalid(err,
                               "quiesce must be \"preferred\", \"required\" or \"off\", got %s",
                               json_kind(v));
        return invalid(err, "quiesce '%.32s' is not one of \"preferred\", \"required\", \"off\"",
                       s);
}

static int parse_memory(json_object *spec, bool *ret, struct nst_error *err) {
        json_object *v = field(spec, "memory");
        if (!v)
                return 0;
        if (!json_object_is_type(v, json_type_boolean))
                return invalid(err, "memory must be true or false, got %s", json_kind(v));
        *ret = json_object_get_boolean(v);
        return 0;
}

static bool prefix_char(char c, bool first) {
        return isalnum((unsigned char)c) || (!first && (c == '.' || c == '_' || c == '-'));
}

/* The prefix ends up in libvirt snapshot names and memory file names: keep
 * it to characters that are safe in both. */
static int parse_prefix(json_object *spec, char *ret, struct nst_error *err) {
        json_object *v = field(spec, "name_prefix");
        if (!v)
                return 0;
        if (!json_object_is_type(v, json_type_string))
                return invalid(err, "name_prefix must be a string, got %s", json_kind(v));
        const char *s = json_object_get_string(v);
        size_t len = (size_t)json_object_get_string_len(v);
        bool ok = len >= 1 && len <= NST_SCHEDULE_PREFIX_MAX && strlen(s) == len;
        for (size_t i = 0; ok && i < len; i++)
                ok = prefix_char(s[i], i == 0);
        if (!ok)
                return invalid(err,
                               "name_prefix '%.64s' must be 1-%d letters, digits, '.', '_' or "
                               "'-', starting with a letter or digit",
                               s, NST_SCHEDULE_PREFIX_MAX);
        memcpy(ret, s, len + 1);
        return 0;
}

static int parse_when(json_object *spec, struct nst_schedule *s, struct nst_error *err) {
        json_object *interval = field(spec, "interval"), *calendar = field(spec, "calendar");
        if (interval && calendar)
                return invalid(err, "give either interval or calendar, not both");
        if (!interval && !calendar)
                return invalid(err, "a schedule needs an interval (e.g. \"6h\") or a calendar "
                                    "(e.g. \"daily 02:00\")");
        if (interval)
                return parse_interval(interval, &s->interval, err);
        return parse_calendar(calendar, &s->cal, err);
}

int nst_schedule_parse(json_object *spec, struct nst_schedule **ret, struct nst_error *err) {
        static const char *const keys[] = {"interval", "calendar", "timezone", "retention",
                                           "memory",   "quiesce",  "name_prefix", NULL};
        int r;
        if (!spec || !json_object_is_type(spec, json_type_object))
                return invalid(err, "a schedule must be a JSON object, got %s",
                               spec ? json_kind(spec) : "null");
        if ((r = check_keys(spec, "", keys,
                            "interval, calendar, timezone, retention, memory, quiesce, "
                            "name_prefix",
                            err)) < 0)
                return r;

        _cleanup_free_ struct nst_schedule *s = calloc(1, sizeof(*s));
        if (!s)
                return no_memory(err);
        s->quiesce = QUIESCE_PREFERRED;
        strcpy(s->prefix, "auto");
        if ((r = parse_when(spec, s, err)) < 0 || (r = parse_timezone(spec, err)) < 0 ||
            (r = parse_retention(spec, s, err)) < 0 ||
            (r = parse_memory(spec, &s->memory, err)) < 0 ||
            (r = parse_quiesce(spec, &s->quiesce, err)) < 0 ||
            (r = parse_prefix(spec, s->prefix, err)) < 0)
                return r;
        *ret = nst_steal(&s);
        return 0;
}

void nst_schedule_free(struct nst_schedule *s) {
        free(s);
}

/* ---- canonical JSON ---- */

/* The largest unit that divides the interval: 3600 -> "1h", 5400 -> "90m". */
static void format_interval(int64_t seconds, char *buf, size_t size) {
        static const struct { int64_t len; char unit; } units[] = {
                {DAY_S, 'd'}, {HOUR_S, 'h'}, {MINUTE_S, 'm'}, {1, 's'}};
        for (size_t i = 0; i < NST_ARRAY_SIZE(units); i++) {
                if (seconds % units[i].len == 0) {
                        snprintf(buf, size, "%lld%c", (long long)(seconds / units[i].len),
                                 units[i].unit);
                        return;
                }
        }
}

static void format_calendar(const struct calendar *c, char *buf, size_t size) {
        char days[32] = "";
        size_t len = 0;
        for (int d = 0; d < WEEK_DAYS; d++)
                if (c->days & (1u << d))
                        len += (size_t)snprintf(days + len, sizeof(days) - len, "%s%s",
                                                len ? "," : "", day_names[d]);
        switch (c->kind) {
        case CAL_HOURLY:
                snprintf(buf, size, "hourly :%02d", c->minute);
                break;
        case CAL_DAILY:
                snprintf(buf, size, "daily %02d:%02d", c->hour, c->minute);
                break;
        case CAL_WEEKLY:
                snprintf(buf, size, "weekly %s %02d:%02d", days, c->hour, c->minute);
                break;
        case CAL_MONTHLY:
                snprintf(buf, size, "monthly %d %02d:%02d", c->dom, c->hour, c->minute);
                break;
        case CAL_DAYS:
                snprintf(buf, size, "%s %02d:%02d", days, c->hour, c->minute);
                break;
        }
}

/* Adds val (owned) under key; false, with val released, when either is out
 * of memory. */
static bool add(json_object *obj, const char *key, json_object *val) {
        if (!val)
                return false;
        if (json_object_object_add(obj, key, val) < 0) {
                json_object_put(val);
                return false;
        }
        return true;
}

static json_object *retention_to_json(const struct nst_schedule *s) {
        json_object *o = json_object_new_object();
        if (!o)
                return NULL;
        if (!add(o, "keep_last", json_object_new_int(s->keep_last)) ||
            !add(o, "keep_daily", json_object_new_int(s->keep_daily)) ||
            !add(o, "keep_weekly", json_object_new_int(s->keep_weekly))) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

json_object *nst_schedule_to_json(const struct nst_schedule *s) {
        char when[CALENDAR_TEXT_MAX];
        json_object *o = json_object_new_object();
        if (!o)
                return NULL;
        if (s->interval)
                format_interval(s->interval, when, sizeof(when));
        else
                format_calendar(&s->cal, when, sizeof(when));
        if (!add(o, s->interval ? "interval" : "calendar", json_object_new_string(when)) ||
            !add(o, "timezone", json_object_new_string("UTC")) ||
            !add(o, "retention", retention_to_json(s)) ||
            !add(o, "memory", json_object_new_boolean(s->memory)) ||
            !add(o, "quiesce", json_object_new_string(quiesce_names[s->quiesce])) ||
            !add(o, "name_prefix", json_object_new_string(s->prefix))) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

/* ---- fire times ---- */

/* First t = period * k + offset (0 <= offset < period) with t > after. */
static int64_t next_in_period(int64_t period, int64_t offset, int64_t after) {
        int64_t t = floor_div(after, period) * period + offset;
        return t > after ? t : t + period;
}

static int64_t next_on_days(unsigned days, int64_t time_of_day, int64_t after) {
        int64_t day = day_of(after);
        /* Eight days: today's time may have passed and today be the only day. */
        for (int k = 0; k <= WEEK_DAYS; k++) {
                int64_t t = (day + k) * DAY_S + time_of_day;
                if ((days & (1u << weekday_of_day(day + k))) && t > after)
                        return t;
        }
        return NST_SCHEDULE_NEVER; /* no day set: parsing does not allow it */
}

static int64_t next_monthly(int dom, int64_t time_of_day, int64_t after) {
        int64_t y;
        int m, d;
        civil_from_days(day_of(after), &y, &m, &d);
        int64_t t = days_from_civil(y, m, dom) * DAY_S + time_of_day;
        if (t > after)
                return t;
        if (++m > 12) {
                m = 1;
                y++;
        }
        return days_from_civil(y, m, dom) * DAY_S + time_of_day;
}

static int64_t next_calendar(const struct calendar *c, int64_t after) {
        int64_t time_of_day = (int64_t)c->hour * HOUR_S + (int64_t)c->minute * MINUTE_S;
        switch (c->kind) {
        case CAL_HOURLY:
                return next_in_period(HOUR_S, (int64_t)c->minute * MINUTE_S, after);
        case CAL_DAILY:
                return next_in_period(DAY_S, time_of_day, after);
        case CAL_WEEKLY:
        case CAL_DAYS:
                return next_on_days(c->days, time_of_day, after);
        case CAL_MONTHLY:
                return next_monthly(c->dom, time_of_day, after);
        }
        return NST_SCHEDULE_NEVER;
}

int64_t nst_schedule_next(const struct nst_schedule *s, int64_t after) {
        if (after >= NST_SCHEDULE_TIME_MAX)
                return NST_SCHEDULE_NEVER;
        if (after < -1)
                after = -1; /* the first fire time at or after the epoch */
        int64_t t = s->interval ? next_in_period(s->interval, 0, after)
                                : next_calendar(&s->cal, after);
        return t > NST_SCHEDULE_TIME_MAX ? NST_SCHEDULE_NEVER : t;
}

enum nst_schedule_due nst_schedule_due(const struct nst_schedule *s, int64_t created_at,
                                       int64_t last_run, int64_t now, int64_t *next) {
        int64_t since = last_run > created_at ? last_run : created_at;
        if (since > now)
                since = now;
        int64_t fire = nst_schedule_next(s, since);
        if (fire <= now) {
                if (next)
                        *next = nst_schedule_next(s, now);
                return NST_SCHEDULE_RUN_NOW;
        }
        if (next)
                *next = fire;
        return NST_SCHEDULE_WAIT;
}

/* ---- retention ---- */

struct ranked {
        int64_t created;
        const char *name;
        size_t index; /* in the caller's array */
};

static int newest_first(const void *a, const void *b) {
        const struct ranked *x = a, *y = b;
        if (x->created != y->created)
                return x->created < y->created ? 1 : -1;
        return strcmp(y->name, x->name);
}

/* Keeps the first (newest) snapshot of each of the first `count` buckets,
 * r being sorted newest first so equal buckets are adjacent. */
static void keep_newest_per_bucket(const struct ranked *r, size_t n, int count,
                                   int64_t (*bucket)(int64_t), bool *keep) {
        int kept = 0;
        int64_t last = 0;
        for (size_t i = 0; i < n && kept < count; i++) {
                int64_t b = bucket(r[i].created);
                if (kept > 0 && b == last)
                        continue;
                keep[i] = true;
                last = b;
                kept++;
        }
}

int nst_retention_prune(const struct nst_schedule *s, const struct nst_snapshot_stamp *snaps,
                        size_t n, bool *ret_delete, struct nst_error *err) {
        if (n == 0)
                return 0;
        if (!snaps || !ret_delete)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "retention: no snapshot list given for %zu snapshots", n);
        _cleanup_free_ struct ranked *r = calloc(n, sizeof(*r));
        _cleanup_free_ bool *keep = calloc(n, sizeof(*keep));
        if (!r || !keep)
                return no_memory(err);
        for (size_t i = 0; i < n; i++)
                r[i] = (struct ranked){snaps[i].created, snaps[i].name ? snaps[i].name : "", i};
        qsort(r, n, sizeof(*r), newest_first);

        for (size_t i = 0; i < n && i < (size_t)s->keep_last; i++)
                keep[i] = true;
        keep_newest_per_bucket(r, n, s->keep_daily, day_of, keep);
        keep_newest_per_bucket(r, n, s->keep_weekly, iso_week_of, keep);
        keep[0] = true; /* whatever the rules say */

        int deleted = 0;
        for (size_t i = 0; i < n; i++) {
                ret_delete[r[i].index] = !keep[i];
                deleted += !keep[i];
        }
        return deleted;
}

/* ---- options and names ---- */

const char *nst_schedule_quiesce(const struct nst_schedule *s) {
        return quiesce_names[s->quiesce];
}

bool nst_schedule_memory(const struct nst_schedule *s) {
        return s->memory;
}

void nst_schedule_snapshot_name(const struct nst_schedule *s, int64_t t, char *buf, size_t size) {
        if (t < 0)
                t = 0;
        if (t > NST_SCHEDULE_TIME_MAX)
                t = NST_SCHEDULE_TIME_MAX;
        int64_t y, secs = t - day_of(t) * DAY_S;
        int m, d;
        civil_from_days(day_of(t), &y, &m, &d);
        snprintf(buf, size, "%s-%04lld%02d%02dT%02d%02d%02dZ", s->prefix, (long long)y, m, d,
                 (int)(secs / HOUR_S), (int)(secs % HOUR_S / MINUTE_S), (int)(secs % MINUTE_S));
}

/* Reads exactly `digits` digits at *p, whatever follows them. */
static int read_fixed(const char **p, int digits) {
        int v = 0;
        for (int i = 0; i < digits; i++, (*p)++) {
                if (!isdigit((unsigned char)**p))
                        return -1;
                v = v * 10 + (**p - '0');
        }
        return v;
}

bool nst_schedule_snapshot_name_match(const struct nst_schedule *s, const char *name,
                                      int64_t *ret_t) {
        size_t plen = strlen(s->prefix);
        if (!name || strncmp(name, s->prefix, plen) != 0 || name[plen] != '-' ||
            strlen(name + plen + 1) != 16)
                return false;
        const char *p = name + plen + 1;
        int y = read_fixed(&p, 4), mo = read_fixed(&p, 2), d = read_fixed(&p, 2);
        if (*p++ != 'T')
                return false;
        int h = read_fixed(&p, 2), mi = read_fixed(&p, 2), sec = read_fixed(&p, 2);
        if (*p != 'Z' || y < 0 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 ||
            mi > 59 || sec < 0 || sec > 59)
                return false;
        int64_t day = days_from_civil(y, mo, d);
        int64_t cy;
        int cm, cd;
        civil_from_days(day, &cy, &cm, &cd);
        if (cm != mo || cd != d) /* 30 February and the like */
                return false;
        if (ret_t)
                *ret_t = day * DAY_S + h * HOUR_S + mi * MINUTE_S + sec;
        return true;
}
