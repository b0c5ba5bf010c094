/* The small parts of messages/: errors, json helpers, UTF-8, versions, ids
 * and notifications. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "messages/envelope.h"
#include "messages/error.h"
#include "messages/ids.h"
#include "messages/json_util.h"
#include "messages/notification.h"
#include "messages/version.h"
#include "unit/oslo_captures.h"

static json_object *parse(const char *text) {
        json_object *o = NULL;
        struct nst_error err = NST_ERROR_INIT;
        if (nst_json_parse(text, strlen(text), &o, &err) < 0)
                fail_msg("bad test JSON: %s", err.message);
        return o;
}

/* ---- error ---- */

static void test_error_modules(void **state) {
        static const char *const builtins[] = {
                "ValueError",        "TypeError",    "KeyError",
                "IndexError",        "RuntimeError", "NotImplementedError",
                "AttributeError",    "LookupError",  "OSError",
                "IOError",           "TimeoutError", "PermissionError",
                "FileNotFoundError", "MemoryError",  "Exception",
                "AssertionError",
        };
        for (size_t i = 0; i < NST_ARRAY_SIZE(builtins); i++)
                assert_string_equal(nst_error_module_for(builtins[i]), "builtins");
        assert_string_equal(nst_error_module_for("NoSuchMethod"), "oslo_messaging.rpc.dispatcher");
        assert_string_equal(nst_error_module_for("UnsupportedVersion"),
                            "oslo_messaging.rpc.dispatcher");
        assert_string_equal(nst_error_module_for("InvalidInput"), "nestor.exception");
        assert_string_equal(nst_error_module_for("InstanceNotFound"), "nestor.exception");
        assert_string_equal(nst_error_module_for("valueerror"), "nestor.exception");
        assert_string_equal(nst_error_module_for("ValueErrorX"), "nestor.exception");
        assert_string_equal(nst_error_module_for(NULL), "nestor.exception");
}

static void test_error_set(void **state) {
        struct nst_error err = NST_ERROR_INIT;

        assert_false(nst_error_is_set(&err));
        assert_false(nst_error_is_set(NULL));
        assert_int_equal(nst_error_set(&err, -EINVAL, "InvalidInput", "disk %s: size %d", "vda", 0),
                         -EINVAL);
        assert_true(nst_error_is_set(&err));
        assert_int_equal(err.code, -EINVAL);
        assert_string_equal(err.cls, "InvalidInput");
        assert_string_equal(err.module, "nestor.exception");
        assert_string_equal(err.message, "disk vda: size 0");

        assert_int_equal(nst_error_set(&err, -ENOENT, "KeyError", "k"), -ENOENT);
        assert_string_equal(err.module, "builtins");

        assert_int_equal(nst_error_set_module(&err, -ENOENT, "nova.exception", "InstanceNotFound",
                                              "Instance %s could not be found.", "abc"),
                         -ENOENT);
        assert_string_equal(err.module, "nova.exception");
        assert_string_equal(err.cls, "InstanceNotFound");
        assert_string_equal(err.message, "Instance abc could not be found.");

        /* No error struct: the code still comes back. */
        assert_int_equal(nst_error_set(NULL, -EIO, "OSError", "x"), -EIO);
        /* A non-negative code must never read as success. */
        assert_int_equal(nst_error_set(&err, 0, "OSError", "x"), -EINVAL);
        assert_int_equal(err.code, -EINVAL);
        assert_int_equal(nst_error_set(&err, EIO, "OSError", "x"), -EINVAL);

        nst_error_clear(&err);
        assert_false(nst_error_is_set(&err));
        assert_int_equal(err.code, 0);
        assert_string_equal(err.message, "");
        nst_error_clear(NULL);
}

static void test_error_truncation(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        char big[5000];

        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        nst_error_set(&err, -EINVAL, big, "%s", big);
        assert_int_equal(strlen(err.cls), NST_ERROR_CLASS_MAX - 1);
        assert_int_equal(strlen(err.message), NST_ERROR_MESSAGE_MAX - 1);

        /* Cutting "é" (2 bytes) at an odd offset must not leave half of it. */
        char accents[1201];
        for (size_t i = 0; i < 600; i++)
                memcpy(accents + 2 * i, "\xc3\xa9", 2);
        accents[1200] = '\0';
        nst_error_set(&err, -EINVAL, "ValueError", "a%s", accents);
        assert_true(nst_utf8_valid(err.message, strlen(err.message)));
        assert_true(strlen(err.message) >= NST_ERROR_MESSAGE_MAX - 2);

        /* Peer bytes quoted in a message cannot make the reply invalid UTF-8. */
        nst_error_set(&err, -EINVAL, "ValueError", "method %s", "a\xff\xc3(b\xed\xa0\x80");
        assert_string_equal(err.message, "method a?\?(b???");
}

static void test_error_prefix(void **state) {
        struct nst_error err = NST_ERROR_INIT;

        nst_error_set(&err, -ENOENT, "KeyError", "no such key");
        assert_int_equal(nst_error_prefix(&err, "plugin %s", "libvirt"), -ENOENT);
        assert_string_equal(err.message, "plugin libvirt: no such key");
        assert_string_equal(err.cls, "KeyError");
        assert_string_equal(err.module, "builtins");
        assert_int_equal(err.code, -ENOENT);

        nst_error_prefix(&err, "while %s", "starting");
        assert_string_equal(err.message, "while starting: plugin libvirt: no such key");

        /* A long prefix truncates, never overflows. */
        char big[3000];
        memset(big, 'p', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        nst_error_prefix(&err, "%s", big);
        assert_int_equal(strlen(err.message), NST_ERROR_MESSAGE_MAX - 1);

        /* Prefixing nothing still yields a failing code. */
        struct nst_error empty = NST_ERROR_INIT;
        assert_true(nst_error_prefix(&empty, "ctx") < 0);
        assert_string_equal(empty.message, "ctx");
        assert_true(nst_error_is_set(&empty));
        assert_true(nst_error_prefix(NULL, "ctx") < 0);
}

/* ---- json_util ---- */

static void test_json_getters(void **state) {
        json_object *o = parse("{\"s\": \"str\", \"i\": 42, \"b\": true, \"o\": {}, \"n\": null, "
                               "\"f\": 1.5, \"z\": \"a\\u0000b\", \"big\": 18446744073709551615, "
                               "\"neg\": -9223372036854775808}");
        struct nst_error err = NST_ERROR_INIT;
        const char *s = "untouched";
        int64_t i = 7;
        bool b = false;
        json_object *obj = NULL;

        assert_int_equal(nst_json_opt_string(o, "s", "cfg", &s, &err), 0);
        assert_string_equal(s, "str");
        assert_int_equal(nst_json_opt_int64(o, "i", "cfg", &i, &err), 0);
        assert_int_equal(i, 42);
        assert_int_equal(nst_json_opt_int64(o, "neg", "cfg", &i, &err), 0);
        assert_true(i == INT64_MIN);
        assert_int_equal(nst_json_opt_bool(o, "b", "cfg", &b, &err), 0);
        assert_true(b);
        assert_int_equal(nst_json_opt_object(o, "o", "cfg", &obj, &err), 0);
        assert_ptr_equal(obj, json_object_object_get(o, "o"));
        assert_false(nst_error_is_set(&err));

        /* Missing and null leave the output alone. */
        s = "untouched";
        i = 7;
        assert_int_equal(nst_json_opt_string(o, "missing", "cfg", &s, &err), 0);
        assert_int_equal(nst_json_opt_string(o, "n", "cfg", &s, &err), 0);
        assert_string_equal(s, "untouched");
        assert_int_equal(nst_json_opt_int64(o, "n", "cfg", &i, &err), 0);
        assert_int_equal(i, 7);
        assert_int_equal(nst_json_opt_object(NULL, "x", "cfg", &obj, &err), 0);
        assert_false(nst_error_is_set(&err));

        /* Wrong types name what, the key and the type. */
        assert_int_equal(nst_json_opt_string(o, "i", "request", &s, &err), -EINVAL);
        assert_string_equal(err.cls, "InvalidInput");
        assert_string_equal(err.message, "request: 'i' must be a string, got int");
        assert_string_equal(s, "untouched");
        assert_int_equal(nst_json_opt_int64(o, "f", "cfg", &i, &err), -EINVAL);
        assert_string_equal(err.message, "cfg: 'f' must be an integer, got float");
        assert_int_equal(nst_json_opt_int64(o, "big", "cfg", &i, &err), -ERANGE);
        assert_string_equal(err.message, "cfg: 'big' is out of range");
        assert_int_equal(i, 7);
        assert_int_equal(nst_json_opt_bool(o, "s", "cfg", &b, &err), -EINVAL);
        assert_string_equal(err.message, "cfg: 's' must be a boolean, got string");
        assert_int_equal(nst_json_opt_object(o, "b", "cfg", &obj, &err), -EINVAL);
        assert_string_equal(err.message, "cfg: 'b' must be an object, got bool");
        assert_int_equal(nst_json_opt_string(o, "z", "cfg", &s, &err), -EINVAL);
        assert_string_equal(err.message, "cfg: 'z' must not contain NUL characters");

        /* Required variants. */
        assert_int_equal(nst_json_req_string(o, "s", "cfg", &s, &err), 0);
        assert_string_equal(s, "str");
        assert_int_equal(nst_json_req_string(o, "nope", "request", &s, &err), -EINVAL);
        assert_string_equal(err.message, "request: 'nope' is missing");
        assert_int_equal(nst_json_req_string(o, "n", "request", &s, &err), -EINVAL);
        assert_string_equal(err.message, "request: 'n' must be a string, got null");
        assert_int_equal(nst_json_req_object(o, "o", "cfg", &obj, &err), 0);
        assert_int_equal(nst_json_req_object(o, "nope", "cfg", &obj, &err), -EINVAL);
        assert_string_equal(err.message, "cfg: 'nope' is missing");
        assert_int_equal(nst_json_req_object(o, "s", "cfg", &obj, &err), -EINVAL);
        assert_string_equal(err.message, "cfg: 's' must be an object, got string");
        assert_int_equal(nst_json_req_object(o, "s", "cfg", &obj, NULL), -EINVAL);
        json_object_put(o);
}

static void json_parse_fails(const char *text, size_t len, const char *message) {
        json_object *o = (json_object *)0x1;
        struct nst_error err = NST_ERROR_INIT;

        assert_true(nst_json_parse(text, len, &o, &err) < 0);
        assert_ptr_equal(o, (json_object *)0x1);
        assert_string_equal(err.cls, "ValueError");
        assert_string_equal(err.module, "builtins");
        assert_string_equal(err.message, message);
}

static void test_json_parse(void **state) {
        json_object *o = NULL;

        /* Values with no closing token need the end of input to be known. */
        assert_int_equal(nst_json_parse("123", 3, &o, NULL), 0);
        assert_int_equal(json_object_get_int(o), 123);
        json_object_put(o);
        assert_int_equal(nst_json_parse(" 1.5 \n", 6, &o, NULL), 0);
        assert_true(json_object_get_double(o) == 1.5);
        json_object_put(o);
        /* The buffer need not be NUL-terminated: only len bytes count. */
        assert_int_equal(nst_json_parse("[1]garbage", 3, &o, NULL), 0);
        assert_int_equal(json_object_array_length(o), 1);
        json_object_put(o);
        o = (json_object *)0x1;
        assert_int_equal(nst_json_parse("null", 4, &o, NULL), 0);
        assert_null(o);

        json_parse_fails("{\"a\": x}", 8, "unexpected character at byte 6");
        json_parse_fails("{\"a\": 1} x", 10, "unexpected character at byte 9");
        json_parse_fails("12 3", 4, "unexpected character at byte 3");
        json_parse_fails("{}\0{}", 5, "unexpected data after the JSON value at byte 2");
        json_parse_fails("", 0, "unexpected end of data at byte 0");
        json_parse_fails("[1,", 3, "unexpected end of data at byte 3");
        json_parse_fails("tru", 3, "unexpected end of data at byte 3");
        json_parse_fails("[1,]", 4, "unexpected character at byte 3");
}

static void test_json_to_string(void **state) {
        json_object *o = parse("{\"p\": \"a/b\", \"l\": [1, true, null], \"u\": \"\\u00e9\"}");
        size_t len = 0;
        const char *s = nst_json_to_string(o, &len);

        assert_string_equal(s, "{\"p\":\"a/b\",\"l\":[1,true,null],\"u\":\"\xc3\xa9\"}");
        assert_int_equal(len, strlen(s));
        assert_non_null(nst_json_to_string(o, NULL));
        json_object_put(o);
}

static void test_utf8(void **state) {
        static const struct {
                const char *s;
                size_t len;
                bool valid;
        } cases[] = {
                {"", 0, true},
                {"plain ascii", 11, true},
                {"\x00", 1, true},
                {"\xc3\xa9", 2, true},         /* é */
                {"\xe2\x82\xac", 3, true},     /* € */
                {"\xf0\x9f\x98\x80", 4, true}, /* U+1F600 */
                {"\xef\xbf\xbf", 3, true},     /* U+FFFF */
                {"\xf4\x8f\xbf\xbf", 4, true}, /* U+10FFFF */
                {"\xed\x9f\xbf", 3, true},     /* U+D7FF */
                {"\xee\x80\x80", 3, true},     /* U+E000 */
                {"\x80", 1, false},            /* lone continuation */
                {"\xbf", 1, false},
                {"\xc0\x80", 2, false},                 /* overlong NUL */
                {"\xc1\xbf", 2, false},                 /* overlong */
                {"\xe0\x80\x80", 3, false},             /* overlong */
                {"\xe0\x9f\xbf", 3, false},             /* overlong U+07FF */
                {"\xf0\x80\x80\x80", 4, false},         /* overlong */
                {"\xf0\x8f\xbf\xbf", 4, false},         /* overlong U+FFFF */
                {"\xed\xa0\x80", 3, false},             /* U+D800 */
                {"\xed\xbf\xbf", 3, false},             /* U+DFFF */
                {"\xed\xa0\xbd\xed\xb8\x80", 6, false}, /* CESU-8 pair */
                {"\xf4\x90\x80\x80", 4, false},         /* U+110000 */
                {"\xf5\x80\x80\x80", 4, false},
                {"\xff", 1, false},
                {"\xfe", 1, false},
                {"\xc3", 1, false}, /* truncated */
                {"\xe2\x82", 2, false},
                {"\xf0\x9f\x98", 3, false},
                {"\xc3(", 2, false}, /* bad continuation */
                {"\xe2(\xa1", 3, false},
                {"\xf0\x9f(\x80", 4, false},
                {"ok\xc3\xa9ok\xff", 7, false},
        };
        for (size_t i = 0; i < NST_ARRAY_SIZE(cases); i++)
                if (nst_utf8_valid(cases[i].s, cases[i].len) != cases[i].valid)
                        fail_msg("case %zu: expected %s", i, cases[i].valid ? "valid" : "invalid");
        /* The length bounds the check, not a NUL. */
        assert_true(nst_utf8_valid("ok\xff", 2));
}

/* ---- version ---- */

static void test_version_parse(void **state) {
        struct nst_version v;
        struct nst_error err = NST_ERROR_INIT;

        assert_int_equal(nst_version_parse("6.0", &v, &err), 0);
        assert_true(v.major == 6 && v.minor == 0 && v.rev == 0);
        assert_int_equal(nst_version_parse("1.22.3", &v, &err), 0);
        assert_true(v.major == 1 && v.minor == 22 && v.rev == 3);
        assert_int_equal(nst_version_parse("06.01", &v, &err), 0);
        assert_true(v.major == 6 && v.minor == 1);
        assert_int_equal(nst_version_parse(NULL, &v, &err), 0);
        assert_true(v.major == 1 && v.minor == 0 && v.rev == 0);

        static const char *const bad[] = {
                "",     "6",    "6.",   ".6",  "6.0.", "6.0.0.0",      "-6.0", "+6.0",
                " 6.0", "6.0 ", "6..0", "six", "6.x",  "4294967296.0", "6.0a",
        };
        for (size_t i = 0; i < NST_ARRAY_SIZE(bad); i++) {
                v = (struct nst_version){9, 9, 9};
                if (nst_version_parse(bad[i], &v, &err) != -EINVAL)
                        fail_msg("'%s' parsed", bad[i]);
                assert_true(v.major == 9 && v.minor == 9 && v.rev == 9);
        }
        assert_string_equal(err.message, "invalid version '6.0a' (expected X.Y or X.Y.Z)");
        assert_int_equal(nst_version_parse("x", &v, NULL), -EINVAL);
}

static bool compat(const char *impl, const char *req) {
        struct nst_version a, b;
        assert_int_equal(nst_version_parse(impl, &a, NULL), 0);
        assert_int_equal(nst_version_parse(req, &b, NULL), 0);
        return nst_version_compatible(&a, &b);
}

static void test_version_compatible(void **state) {
        assert_true(compat("6.1", "6.0"));
        assert_true(compat("6.1", "6.1"));
        assert_false(compat("6.1", "6.2"));
        assert_false(compat("6.1", "7.0"));
        assert_false(compat("6.1", "5.0"));
        assert_true(compat("6.1.2", "6.1.2"));
        assert_true(compat("6.1.2", "6.1"));
        assert_false(compat("6.1", "6.1.1"));
        assert_true(compat("6.2", "6.1.9")); /* rev only matters on equal minors */
        assert_true(compat("2.0", "2.0.0"));
}

/* ---- ids ---- */

static void test_uuids(void **state) {
        char a[NST_UUID_HEX_LEN + 1], b[NST_UUID_HEX_LEN + 1];
        char s[NST_UUID_STR_LEN + 1];

        nst_uuid_hex(a);
        nst_uuid_hex(b);
        assert_int_equal(strlen(a), 32);
        assert_int_equal(strspn(a, "0123456789abcdef"), 32);
        assert_string_not_equal(a, b);
        assert_int_equal(a[12], '4'); /* uuid4 */

        nst_uuid_str(s);
        assert_int_equal(strlen(s), 36);
        for (int i = 0; i < 36; i++) {
                if (i == 8 || i == 13 || i == 18 || i == 23)
                        assert_int_equal(s[i], '-');
                else
                        assert_non_null(strchr("0123456789abcdef", s[i]));
        }
        assert_int_equal(s[14], '4');
}

static void test_timestamp(void **state) {
        char ts[NST_TIMESTAMP_LEN];

        /* The instant of the captured notification (1d). */
        nst_timestamp_utc(1795714819036335LL, ts);
        assert_string_equal(ts, "2026-11-26 17:40:19.036335");
        nst_timestamp_utc(0, ts);
        assert_string_equal(ts, "1970-01-01 00:00:00");
        nst_timestamp_utc(1795714819000000LL, ts);
        assert_string_equal(ts, "2026-11-26 17:40:19");
        nst_timestamp_utc(5, ts);
        assert_string_equal(ts, "1970-01-01 00:00:00.000005");
        nst_timestamp_utc(-1, ts);
        assert_string_equal(ts, "1969-12-31 23:59:59.999999");
        nst_timestamp_utc(-62135596800000000LL, ts);
        assert_string_equal(ts, "0001-01-01 00:00:00");
}

/* ---- notification ---- */

static void test_priorities(void **state) {
        static const char *const upper[] = {"AUDIT", "DEBUG",    "INFO",  "WARN",
                                            "ERROR", "CRITICAL", "SAMPLE"};
        static const char *const lower[] = {"audit", "debug",    "info",  "warn",
                                            "error", "critical", "sample"};
        for (int p = NST_PRIO_AUDIT; p <= NST_PRIO_SAMPLE; p++) {
                assert_string_equal(nst_priority_upper((enum nst_priority)p), upper[p]);
                assert_string_equal(nst_priority_lower((enum nst_priority)p), lower[p]);
        }
        assert_null(nst_priority_upper((enum nst_priority)99));
        assert_null(nst_priority_lower((enum nst_priority) - 1));
}

static void test_notification_build(void **state) {
        json_object *payload = parse("{\"instance_id\": \"abc\", \"state\": \"building\"}");
        json_object *ctx = parse("{\"user_id\": \"u-probe\", \"project_id\": \"p-probe\", "
                                 "\"request_id\": \"req-1\", \"is_admin\": true}");
        json_object *msg = NULL, *v;
        struct nst_error err = NST_ERROR_INIT;

        assert_int_equal(nst_notification_build("compute.probe-host",
                                                "compute.instance.create.start", NST_PRIO_INFO,
                                                payload, ctx, &msg, &err),
                         0);
        /* Same keys in the same order as the captured oslo notification. */
        json_object *captured = NULL;
        assert_int_equal(nst_envelope_decode(CAPTURE_1D_NOTIFICATION,
                                             sizeof(CAPTURE_1D_NOTIFICATION) - 1,
                                             NST_MAX_MESSAGE_BYTES_DEFAULT, &captured, NULL),
                         0);
        struct json_object_iterator it = json_object_iter_begin(msg);
        struct json_object_iterator want = json_object_iter_begin(captured);
        struct json_object_iterator end = json_object_iter_end(captured);
        for (; !json_object_iter_equal(&want, &end);
             json_object_iter_next(&it), json_object_iter_next(&want))
                assert_string_equal(json_object_iter_peek_name(&it),
                                    json_object_iter_peek_name(&want));
        assert_int_equal(json_object_object_length(msg), json_object_object_length(captured));
        json_object_put(captured);

        const char *mid = json_object_get_string(json_object_object_get(msg, "message_id"));
        assert_int_equal(strlen(mid), 36);
        assert_int_equal(mid[8], '-');
        assert_string_equal(json_object_get_string(json_object_object_get(msg, "priority")),
                            "INFO");
        assert_ptr_equal(json_object_object_get(msg, "payload"), payload);
        const char *ts = json_object_get_string(json_object_object_get(msg, "timestamp"));
        assert_true(strlen(ts) == 26 || strlen(ts) == 19);
        assert_int_equal(ts[10], ' ');
        assert_true(strncmp(ts, "20", 2) == 0);
        const char *uid = json_object_get_string(json_object_object_get(msg, "_unique_id"));
        assert_int_equal(strspn(uid, "0123456789abcdef"), 32);
        assert_true(json_object_object_get_ex(msg, "_context_user_id", &v));
        assert_string_equal(json_object_get_string(v), "u-probe");
        json_object_put(msg);
        json_object_put(ctx);

        /* No context, NULL payload (JSON null). */
        assert_int_equal(nst_notification_build("p", "e", NST_PRIO_SAMPLE, NULL, NULL, &msg, &err),
                         0);
        assert_true(json_object_object_get_ex(msg, "payload", &v));
        assert_null(v);
        assert_string_equal(json_object_get_string(json_object_object_get(msg, "priority")),
                            "SAMPLE");
        assert_int_equal(json_object_object_length(msg), 7);
        json_object_put(msg);
}

static void test_notification_rejects(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        json_object *msg = NULL;
        json_object *arr = json_object_new_array();

        /* The payload is taken even on failure (valgrind checks it is freed). */
        assert_int_equal(nst_notification_build("p", "e", (enum nst_priority)42,
                                                json_object_new_object(), NULL, &msg, &err),
                         -EINVAL);
        assert_string_equal(err.message, "notification e: unknown priority 42");
        assert_int_equal(nst_notification_build(NULL, "e", NST_PRIO_INFO, json_object_new_object(),
                                                NULL, &msg, &err),
                         -EINVAL);
        assert_int_equal(nst_notification_build("p", "e", NST_PRIO_INFO, json_object_new_object(),
                                                arr, &msg, &err),
                         -EINVAL);
        assert_string_equal(err.cls, "InvalidInput");
        assert_string_equal(err.message, "notification e: context must be an object, got list");
        assert_null(msg);
        json_object_put(arr);
}

static void test_versioned_object(void **state) {
        json_object *data = parse("{\"uuid\": \"abc\", \"state\": \"stopped\"}");
        json_object *o = nst_versioned_object("InstanceActionPayload", "nova", "1.8", data);

        assert_non_null(o);
        assert_string_equal(nst_json_to_string(o, NULL),
                            "{\"nova_object.name\":\"InstanceActionPayload\","
                            "\"nova_object.namespace\":\"nova\",\"nova_object.version\":\"1.8\","
                            "\"nova_object.data\":{\"uuid\":\"abc\",\"state\":\"stopped\"}}");
        assert_ptr_equal(json_object_object_get(o, "nova_object.data"), data);
        json_object_put(o);
        /* data is taken even when it cannot be wrapped. */
        assert_null(nst_versioned_object(NULL, "nova", "1.0", json_object_new_object()));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_error_modules),
                cmocka_unit_test(test_error_set),
                cmocka_unit_test(test_error_truncation),
                cmocka_unit_test(test_error_prefix),
                cmocka_unit_test(test_json_getters),
                cmocka_unit_test(test_json_parse),
                cmocka_unit_test(test_json_to_string),
                cmocka_unit_test(test_utf8),
                cmocka_unit_test(test_version_parse),
                cmocka_unit_test(test_version_compatible),
                cmocka_unit_test(test_uuids),
                cmocka_unit_test(test_timestamp),
                cmocka_unit_test(test_priorities),
                cmocka_unit_test(test_notification_build),
                cmocka_unit_test(test_notification_rejects),
                cmocka_unit_test(test_versioned_object),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
