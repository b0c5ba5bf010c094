/* The 2.0 envelope against real oslo bodies, and every way a body can be bad
 * (rpc.md section 6). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "messages/envelope.h"
#include "messages/json_util.h"
#include "unit/oslo_captures.h"

#define MAX NST_MAX_MESSAGE_BYTES_DEFAULT

static json_object *decode_ok(const char *body, size_t len) {
        json_object *inner = NULL;
        struct nst_error err = NST_ERROR_INIT;
        int r = nst_envelope_decode(body, len, MAX, &inner, &err);
        if (r < 0)
                fail_msg("decode failed: %s: %s", err.cls, err.message);
        assert_false(nst_error_is_set(&err));
        assert_true(json_object_is_type(inner, json_type_object));
        return inner;
}

#define DECODE_OK(lit) decode_ok(lit, sizeof(lit) - 1)

/* Fails with ValueError and exactly `message`; *ret_inner stays untouched. */
static void decode_fails_len(const char *body, size_t len, size_t max, const char *message) {
        json_object *sentinel = (json_object *)0x1;
        json_object *inner = sentinel;
        struct nst_error err = NST_ERROR_INIT;

        assert_true(nst_envelope_decode(body, len, max, &inner, &err) < 0);
        assert_ptr_equal(inner, sentinel);
        assert_true(err.code < 0);
        assert_string_equal(err.cls, "ValueError");
        assert_string_equal(err.module, "builtins");
        assert_string_equal(err.message, message);
        /* Without an error struct it must still fail, not crash. */
        assert_true(nst_envelope_decode(body, len, max, &inner, NULL) < 0);
        assert_ptr_equal(inner, sentinel);
}

static void decode_fails(const char *body, const char *message) {
        decode_fails_len(body, strlen(body), MAX, message);
}

/* Like decode_fails, for json-c messages where only the prefix is ours. */
static void decode_fails_prefix(const char *body, size_t len, const char *prefix) {
        json_object *inner = NULL;
        struct nst_error err = NST_ERROR_INIT;

        assert_true(nst_envelope_decode(body, len, MAX, &inner, &err) < 0);
        assert_null(inner);
        assert_string_equal(err.cls, "ValueError");
        if (strncmp(err.message, prefix, strlen(prefix)) != 0)
                fail_msg("message '%s' does not start with '%s'", err.message, prefix);
        assert_non_null(strstr(err.message, " at byte "));
}

static const char *get_str(json_object *o, const char *key) {
        json_object *v;
        assert_true(json_object_object_get_ex(o, key, &v));
        assert_true(json_object_is_type(v, json_type_string));
        return json_object_get_string(v);
}

static void test_capture_request(void **state) {
        assert_int_equal(sizeof(CAPTURE_1A_REQUEST) - 1, 457);
        json_object *inner = DECODE_OK(CAPTURE_1A_REQUEST);
        json_object *v;

        assert_int_equal(json_object_object_length(inner), 11);
        assert_string_equal(get_str(inner, "method"), "ping");
        assert_string_equal(get_str(inner, "version"), "6.0");
        assert_string_equal(get_str(inner, "_msg_id"), "2e5107be9cc74dd29acfb520eacee8ae");
        assert_string_equal(get_str(inner, "_reply_q"), "reply_c1b1e606a55a44c58102e5620365dbfa");
        assert_string_equal(get_str(inner, "_unique_id"), "73b5620bf5914a468981b8ccfdc92e24");
        assert_string_equal(get_str(inner, "_context_request_id"),
                            "req-11111111-2222-3333-4444-555555555555");
        assert_true(json_object_object_get_ex(inner, "_timeout", &v));
        assert_null(v);
        assert_true(json_object_object_get_ex(inner, "args", &v));
        assert_true(json_object_is_type(v, json_type_object));
        assert_int_equal(json_object_object_length(v), 0);
        assert_true(json_object_object_get_ex(inner, "_context_is_admin", &v));
        assert_true(json_object_get_boolean(v));
        json_object_put(inner);
}

static void test_capture_replies(void **state) {
        json_object *inner = DECODE_OK(CAPTURE_1B_REPLY);
        json_object *v;

        assert_int_equal(sizeof(CAPTURE_1B_REPLY) - 1, 207);
        assert_string_equal(get_str(inner, "result"), "pong");
        assert_string_equal(get_str(inner, "_msg_id"), "f5ad0a3264b6460097018100ee2c8c2e");
        assert_true(json_object_object_get_ex(inner, "failure", &v));
        assert_null(v);
        json_object_put(inner);

        /* The failure is a third level of JSON: still a string after decoding. */
        inner = DECODE_OK(CAPTURE_1C_FAILURE);
        assert_true(json_object_object_get_ex(inner, "result", &v));
        assert_null(v);
        const char *failure = get_str(inner, "failure");
        const char *head = "{\"class\": \"ValueError\", \"module\": \"builtins\", ";
        assert_memory_equal(failure, head, strlen(head));
        assert_string_equal(get_str(inner, "_msg_id"), "41c74e0f91ef4d6bbe7b34160c6e1ee3");
        json_object_put(inner);

        /* What json-c PLAIN produced, accepted by the real client. */
        inner = DECODE_OK(CAPTURE_C_FAILURE);
        assert_string_equal(get_str(inner, "_msg_id"), "9496c51f798f4363b02e8267eb31faee");
        json_object_put(inner);
}

static void test_capture_notifications(void **state) {
        json_object *inner = DECODE_OK(CAPTURE_1D_NOTIFICATION);
        json_object *payload;

        assert_string_equal(get_str(inner, "message_id"), "a931eaa5-bcae-4b55-b0a5-2faa2e66778c");
        assert_string_equal(get_str(inner, "priority"), "INFO");
        assert_string_equal(get_str(inner, "timestamp"), "2026-11-26 17:40:19.036335");
        assert_true(json_object_object_get_ex(inner, "payload", &payload));
        assert_string_equal(get_str(payload, "state"), "building");
        json_object_put(inner);

        /* The legacy driver sends the bare dict: returned as-is. */
        inner = DECODE_OK(CAPTURE_N2_BARE_NOTIFICATION);
        assert_int_equal(json_object_object_length(inner), 11);
        assert_string_equal(get_str(inner, "event_type"), "compute.instance.delete.end");
        json_object_put(inner);
}

static void test_bare_bodies(void **state) {
        json_object *inner = DECODE_OK(CAPTURE_B_SLOW_REQUEST);
        assert_string_equal(get_str(inner, "method"), "slow");
        json_object_put(inner);

        /* Only a dict with both keys is an envelope (oslo's deserialize_msg). */
        inner = DECODE_OK("{\"oslo.version\": \"9.9\", \"method\": \"x\"}");
        assert_string_equal(get_str(inner, "oslo.version"), "9.9");
        json_object_put(inner);
        inner = DECODE_OK("{\"oslo.message\": 5}");
        assert_int_equal(json_object_object_length(inner), 1);
        json_object_put(inner);
        inner = DECODE_OK(" {}\r\n");
        assert_int_equal(json_object_object_length(inner), 0);
        json_object_put(inner);
}

static void test_inner_forms(void **state) {
        /* Key order and spacing do not matter; 2.0.0 is compatible with 2.0. */
        json_object *inner =
                DECODE_OK("{\"oslo.message\":\"{\\\"a\\\":1}\",\"oslo.version\":\"2.0.0\"}");
        assert_int_equal(json_object_get_int(json_object_object_get(inner, "a")), 1);
        json_object_put(inner);

        /* An object instead of a string is tolerated. */
        inner = DECODE_OK("{\"oslo.version\": \"2.0\", \"oslo.message\": {\"b\": [1, 2]}}");
        assert_int_equal(json_object_array_length(json_object_object_get(inner, "b")), 2);
        json_object_put(inner);

        /* Python escapes non-ASCII, including surrogate pairs. */
        inner = DECODE_OK("{\"oslo.version\": \"2.0\", \"oslo.message\": "
                          "\"{\\\"s\\\": \\\"\\\\u00e9\\\\ud83d\\\\ude00\\\"}\"}");
        assert_string_equal(get_str(inner, "s"), "\xc3\xa9\xf0\x9f\x98\x80");
        json_object_put(inner);
}

static void test_size_limit(void **state) {
        /* The length is checked before anything is read. */
        size_t big = 17000000;
        char *body = calloc(1, big);
        assert_non_null(body);
        decode_fails_len(body, big, MAX,
                         "message body is 17000000 bytes, over max_message_bytes (16777216)");
        free(body);

        decode_fails_len("{}", 2, 1, "message body is 2 bytes, over max_message_bytes (1)");
        json_object *inner = NULL;
        assert_int_equal(nst_envelope_decode("{}", 2, 2, &inner, NULL), 0);
        json_object_put(inner);
}

static void test_invalid_utf8(void **state) {
        static const char *const bodies[] = {
                "{\"a\": \"\xff\"}",             /* never valid */
                "{\"a\": \"\xc0\xaf\"}",         /* overlong '/' */
                "{\"a\": \"\xe0\x80\xaf\"}",     /* overlong, three bytes */
                "{\"a\": \"\xed\xa0\x80\"}",     /* surrogate U+D800 */
                "{\"a\": \"\xf4\x90\x80\x80\"}", /* above U+10FFFF */
                "{\"a\": \"\xe2\x82\"}",         /* truncated sequence */
                "{\"a\": 1}\xe2\x82",            /* truncated at the end */
                "{\"oslo.version\": \"2.0\", \"oslo.message\": \"{\\\"x\\\": \\\"\x80\\\"}\"}",
        };
        for (size_t i = 0; i < NST_ARRAY_SIZE(bodies); i++)
                decode_fails(bodies[i], "message body is not valid UTF-8");
}

/* {"a": [[...]]} with `levels` containers in all. */
static char *nested(int levels) {
        char *s = malloc(2 * (size_t)levels + 8);
        size_t n = 0;

        assert_non_null(s);
        memcpy(s, "{\"a\": ", 6);
        n = 6;
        for (int i = 1; i < levels; i++)
                s[n++] = '[';
        for (int i = 1; i < levels; i++)
                s[n++] = ']';
        s[n++] = '}';
        s[n] = '\0';
        return s;
}

static void test_malformed_json(void **state) {
        decode_fails_prefix("", 0, "message body is not JSON: ");
        decode_fails_prefix("{\"a\": }", 7, "message body is not JSON: unexpected character");
        decode_fails_prefix("{\"a\": 1", 7, "message body is not JSON: unexpected end of data");
        decode_fails_prefix("{\"a\": 1,}", 9, "message body is not JSON: ");
        decode_fails_prefix("{} x", 4, "message body is not JSON: ");
        decode_fails_prefix("{}{}", 4, "message body is not JSON: ");
        /* An embedded NUL must not end the text early. */
        decode_fails_prefix("{}\0{\"a\": 1}", 11, "message body is not JSON: ");

        /* Nesting is bounded: 64 levels parse, 65 do not. */
        char *deep = nested(64);
        json_object *inner = decode_ok(deep, strlen(deep));
        json_object_put(inner);
        free(deep);
        deep = nested(65);
        decode_fails_prefix(deep, strlen(deep), "message body is not JSON: nesting too deep");
        free(deep);
}

static void test_not_an_object(void **state) {
        decode_fails("[1, 2]", "message body must be a JSON object, got array");
        decode_fails("\"text\"", "message body must be a JSON object, got string");
        decode_fails("42", "message body must be a JSON object, got int");
        decode_fails("null", "message body must be a JSON object, got null");
        decode_fails(" true ", "message body must be a JSON object, got boolean");
}

static void test_bad_envelope(void **state) {
        decode_fails("{\"oslo.version\": \"2.0\", \"oslo.message\": 5}",
                     "'oslo.message' must be a string or an object, got int");
        decode_fails("{\"oslo.version\": \"2.0\", \"oslo.message\": null}",
                     "'oslo.message' must be a string or an object, got null");
        decode_fails("{\"oslo.version\": \"2.0\", \"oslo.message\": [\"{}\"]}",
                     "'oslo.message' must be a string or an object, got array");
        decode_fails("{\"oslo.version\": \"3.0\", \"oslo.message\": \"{}\"}",
                     "unsupported oslo.version '3.0' (expected 2.0)");
        decode_fails("{\"oslo.version\": \"2.1\", \"oslo.message\": \"{}\"}",
                     "unsupported oslo.version '2.1' (expected 2.0)");
        decode_fails("{\"oslo.version\": \"2.0.1\", \"oslo.message\": \"{}\"}",
                     "unsupported oslo.version '2.0.1' (expected 2.0)");
        decode_fails("{\"oslo.version\": \"2\", \"oslo.message\": \"{}\"}",
                     "unsupported oslo.version '2' (expected 2.0)");
        decode_fails("{\"oslo.version\": 2.0, \"oslo.message\": \"{}\"}",
                     "'oslo.version' must be a string, got float");
        decode_fails("{\"oslo.version\": \"2.0\", \"oslo.message\": \"[1]\"}",
                     "'oslo.message' must hold a JSON object, got array");
        decode_fails("{\"oslo.version\": \"2.0\", \"oslo.message\": \"\\\"s\\\"\"}",
                     "'oslo.message' must hold a JSON object, got string");
        const char *truncated = "{\"oslo.version\": \"2.0\", \"oslo.message\": \"{\\\"a\\\"\"}";
        decode_fails_prefix(truncated, strlen(truncated),
                            "'oslo.message' is not JSON: unexpected end of data");
        /* "\u0000" inside the string must not cut the inner text short. */
        const char *nul = "{\"oslo.version\": \"2.0\", \"oslo.message\": \"{}\\u0000[]\"}";
        decode_fails_prefix(nul, strlen(nul), "'oslo.message' is not JSON: ");
}

static void test_encode_exact(void **state) {
        json_object *inner = json_object_new_object();
        char *body = NULL;
        size_t len = 0;

        json_object_object_add(inner, "method", json_object_new_string("ping"));
        json_object_object_add(inner, "args", json_object_new_object());
        json_object_object_add(inner, "path", json_object_new_string("/dev/sda \xc3\xa9\n"));
        assert_int_equal(nst_envelope_encode(inner, &body, &len, NULL), 0);
        /* Compact, '/' unescaped, UTF-8 kept raw: what Python and json-c agree on. */
        static const char expected[] =
                "{\"oslo.version\":\"2.0\",\"oslo.message\":\"{\\\"method\\\":\\\"ping\\\","
                "\\\"args\\\":{},\\\"path\\\":\\\"/dev/sda \xc3\xa9\\\\n\\\"}\"}";
        assert_string_equal(body, expected);
        assert_int_equal(len, sizeof(expected) - 1);

        json_object *back = decode_ok(body, len);
        assert_true(json_object_equal(back, inner));
        json_object_put(back);
        json_object_put(inner);
        free(body);
}

static void test_reencode_capture(void **state) {
        json_object *inner = DECODE_OK(CAPTURE_1C_FAILURE);
        char *body;
        size_t len;

        assert_int_equal(nst_envelope_encode(inner, &body, &len, NULL), 0);
        assert_int_equal(strlen(body), len);
        assert_true(len < sizeof(CAPTURE_1C_FAILURE) - 1); /* no ", " spacing */
        json_object *back = decode_ok(body, len);
        assert_true(json_object_equal(back, inner));
        json_object_put(back);
        json_object_put(inner);
        free(body);
}

static void test_encode_rejects(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        char *body = (char *)"untouched";
        size_t len = 7;
        json_object *arr = json_object_new_array();

        assert_int_equal(nst_envelope_encode(arr, &body, &len, &err), -EINVAL);
        assert_string_equal(err.message, "an envelope must wrap a JSON object, got array");
        assert_string_equal(body, "untouched");
        assert_int_equal(len, 7);
        assert_int_equal(nst_envelope_encode(NULL, &body, &len, NULL), -EINVAL);
        json_object_put(arr);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_capture_request),
                cmocka_unit_test(test_capture_replies),
                cmocka_unit_test(test_capture_notifications),
                cmocka_unit_test(test_bare_bodies),
                cmocka_unit_test(test_inner_forms),
                cmocka_unit_test(test_size_limit),
                cmocka_unit_test(test_invalid_utf8),
                cmocka_unit_test(test_malformed_json),
                cmocka_unit_test(test_not_an_object),
                cmocka_unit_test(test_bad_envelope),
                cmocka_unit_test(test_encode_exact),
                cmocka_unit_test(test_reencode_capture),
                cmocka_unit_test(test_encode_rejects),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
