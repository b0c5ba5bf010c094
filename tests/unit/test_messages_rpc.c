/* RPC requests and replies (rpc.md sections 7, 8 and 10), checked against the
 * real captured bodies and by building then decoding our own. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "messages/envelope.h"
#include "messages/json_util.h"
#include "messages/rpc_message.h"
#include "unit/oslo_captures.h"

static json_object *unwrap(const char *body, size_t len) {
        json_object *inner = NULL;
        struct nst_error err = NST_ERROR_INIT;
        if (nst_envelope_decode(body, len, NST_MAX_MESSAGE_BYTES_DEFAULT, &inner, &err) < 0)
                fail_msg("envelope: %s", err.message);
        return inner;
}
#define UNWRAP(lit) unwrap(lit, sizeof(lit) - 1)

static json_object *parse(const char *text) {
        json_object *o = NULL;
        struct nst_error err = NST_ERROR_INIT;
        if (nst_json_parse(text, strlen(text), &o, &err) < 0)
                fail_msg("bad test JSON: %s", err.message);
        return o;
}

static bool is_hex32(const char *s) {
        if (!s || strlen(s) != 32)
                return false;
        for (; *s; s++)
                if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
                        return false;
        return true;
}

static const char *ctx_str(const struct nst_rpc_request *req, const char *key) {
        json_object *v;
        assert_true(json_object_object_get_ex(req->context, key, &v));
        return json_object_get_string(v);
}

/* ---- request decode ---- */

static void test_decode_capture_call(void **state) {
        json_object *inner = UNWRAP(CAPTURE_1A_REQUEST);
        struct nst_rpc_request req;
        struct nst_error err = NST_ERROR_INIT;

        assert_int_equal(nst_rpc_request_decode(inner, &req, NULL, NULL, &err), 0);
        assert_false(nst_error_is_set(&err));
        assert_ptr_equal(req.raw, inner);
        assert_string_equal(req.method, "ping");
        assert_true(json_object_is_type(req.args, json_type_object));
        assert_int_equal(json_object_object_length(req.args), 0);
        assert_string_equal(req.version, "6.0");
        assert_null(req.namespace_);
        assert_string_equal(req.msg_id, "2e5107be9cc74dd29acfb520eacee8ae");
        assert_string_equal(req.reply_q, "reply_c1b1e606a55a44c58102e5620365dbfa");
        assert_true(req.timeout == 0.0);
        assert_string_equal(req.unique_id, "73b5620bf5914a468981b8ccfdc92e24");
        assert_int_equal(json_object_object_length(req.context), 4);
        assert_string_equal(ctx_str(&req, "user_id"), "u-probe");
        assert_string_equal(ctx_str(&req, "project_id"), "p-probe");
        assert_true(json_object_get_boolean(json_object_object_get(req.context, "is_admin")));
        assert_string_equal(req.request_id, "req-11111111-2222-3333-4444-555555555555");

        /* The request holds its own reference: the caller's can go first. */
        json_object_put(inner);
        assert_string_equal(req.method, "ping");
        nst_rpc_request_done(&req);
        assert_null(req.raw);
        assert_null(req.method);
        nst_rpc_request_done(&req); /* idempotent */
}

static void test_decode_bare_with_timeout(void **state) {
        json_object *inner = UNWRAP(CAPTURE_B_SLOW_REQUEST);
        struct nst_rpc_request req;

        assert_int_equal(nst_rpc_request_decode(inner, &req, NULL, NULL, NULL), 0);
        assert_string_equal(req.method, "slow");
        assert_int_equal(json_object_get_int(json_object_object_get(req.args, "seconds")), 3);
        assert_true(req.timeout == 2.0);
        assert_string_equal(req.msg_id, "d4867276c1ac4f2295eea1f5e1f8f801");
        assert_string_equal(req.reply_q, "probe_rawreply");
        nst_rpc_request_done(&req);
        json_object_put(inner);
}

static void test_decode_cast_and_defaults(void **state) {
        /* A cast: no routing; no args, version or unique id. */
        json_object *inner =
                parse("{\"method\": \"sink\", \"namespace\": null, \"_timeout\": 1.5}");
        struct nst_rpc_request req;

        assert_int_equal(nst_rpc_request_decode(inner, &req, NULL, NULL, NULL), 0);
        assert_null(req.msg_id);
        assert_null(req.reply_q);
        assert_null(req.version);
        assert_null(req.namespace_);
        assert_null(req.unique_id);
        assert_null(req.request_id);
        assert_true(req.timeout == 1.5);
        assert_true(json_object_is_type(req.args, json_type_object));
        assert_int_equal(json_object_object_length(req.args), 0);
        assert_int_equal(json_object_object_length(req.context), 0);
        nst_rpc_request_done(&req);
        json_object_put(inner);

        /* null args read as {}; an empty _msg_id is a cast, as in oslo. */
        inner = parse("{\"method\": \"m\", \"args\": null, \"namespace\": \"baseapi\", "
                      "\"_msg_id\": \"\", \"_context_request_id\": 7, \"_context_\": 1}");
        assert_int_equal(nst_rpc_request_decode(inner, &req, NULL, NULL, NULL), 0);
        assert_int_equal(json_object_object_length(req.args), 0);
        assert_string_equal(req.namespace_, "baseapi");
        assert_null(req.msg_id);
        assert_null(req.request_id); /* not a string */
        assert_int_equal(json_object_object_length(req.context), 2);
        assert_true(json_object_object_get_ex(req.context, "", NULL));
        nst_rpc_request_done(&req);
        json_object_put(inner);
}

/* Decoding must fail with ValueError and exactly `message`, leave req zeroed,
 * and hand back the routing it found. */
static void decode_fails(const char *text, const char *message, const char *msg_id,
                         const char *reply_q) {
        json_object *inner = parse(text);
        struct nst_rpc_request req;
        struct nst_rpc_request zero = {0};
        struct nst_error err = NST_ERROR_INIT;
        char *mid = (char *)"unset", *rq = (char *)"unset";

        memset(&req, 0xa5, sizeof(req));
        assert_int_equal(nst_rpc_request_decode(inner, &req, &mid, &rq, &err), -EINVAL);
        assert_memory_equal(&req, &zero, sizeof(req));
        assert_int_equal(err.code, -EINVAL);
        assert_string_equal(err.cls, "ValueError");
        assert_string_equal(err.module, "builtins");
        assert_string_equal(err.message, message);
        if (msg_id)
                assert_string_equal(mid, msg_id);
        else
                assert_null(mid);
        if (reply_q)
                assert_string_equal(rq, reply_q);
        else
                assert_null(rq);
        free(mid);
        free(rq);

        /* Routing outputs and err are optional. */
        assert_int_equal(nst_rpc_request_decode(inner, &req, NULL, NULL, NULL), -EINVAL);
        json_object_put(inner);
}

static void test_decode_errors(void **state) {
        decode_fails("{\"_msg_id\": \"m1\", \"_reply_q\": \"q1\", \"args\": {}}",
                     "request: 'method' is missing", "m1", "q1");
        decode_fails("{\"method\": 5, \"_msg_id\": \"m1\", \"_reply_q\": \"q1\"}",
                     "request: 'method' must be a string, got int", "m1", "q1");
        decode_fails("{\"method\": null, \"_msg_id\": \"m1\"}",
                     "request: 'method' must be a string, got null", "m1", NULL);
        decode_fails("{\"method\": \"\", \"_reply_q\": \"q1\"}", "request: 'method' is empty", NULL,
                     "q1");
        decode_fails("{\"method\": \"ping\\u0000x\", \"_msg_id\": \"m1\", \"_reply_q\": \"q1\"}",
                     "request: 'method' must not contain NUL characters", "m1", "q1");
        decode_fails(
                "{\"method\": \"ping\", \"args\": [1], \"_msg_id\": \"m1\", \"_reply_q\": \"q1\"}",
                "request: 'args' must be an object, got list", "m1", "q1");
        decode_fails("{\"method\": \"ping\", \"args\": \"x\"}",
                     "request: 'args' must be an object, got string", NULL, NULL);
        decode_fails("{\"method\": \"ping\", \"version\": 6.0, \"_msg_id\": \"m1\", \"_reply_q\": "
                     "\"q1\"}",
                     "request: 'version' must be a string, got float", "m1", "q1");
        decode_fails("{\"method\": \"ping\", \"namespace\": {}}",
                     "request: 'namespace' must be a string, got object", NULL, NULL);
        decode_fails(
                "{\"method\": \"ping\", \"_timeout\": \"2\", \"_msg_id\": \"m1\", \"_reply_q\": "
                "\"q1\"}",
                "request: '_timeout' must be a number or null, got string", "m1", "q1");
        decode_fails("{\"method\": \"ping\", \"_timeout\": true}",
                     "request: '_timeout' must be a number or null, got bool", NULL, NULL);
        decode_fails("{\"method\": \"ping\", \"_timeout\": -1}",
                     "request: '_timeout' must be a non-negative number, got -1", NULL, NULL);
        decode_fails("{\"method\": \"ping\", \"_unique_id\": 1}",
                     "request: '_unique_id' must be a string, got int", NULL, NULL);
        /* Unusable routing cannot be returned. */
        decode_fails("{\"method\": \"ping\", \"_msg_id\": 12, \"_reply_q\": \"q1\"}",
                     "request: '_msg_id' must be a string, got int", NULL, NULL);
        decode_fails("{\"method\": \"ping\", \"_msg_id\": \"m1\", \"_reply_q\": []}",
                     "request: '_reply_q' must be a string, got list", "m1", NULL);
}

static void test_decode_not_an_object(void **state) {
        json_object *arr = json_object_new_array();
        struct nst_rpc_request req;
        struct nst_error err = NST_ERROR_INIT;
        char *mid = NULL;

        assert_int_equal(nst_rpc_request_decode(arr, &req, &mid, NULL, &err), -EINVAL);
        assert_string_equal(err.message, "request must be a JSON object, got list");
        assert_string_equal(err.cls, "ValueError");
        assert_null(mid);
        assert_int_equal(nst_rpc_request_decode(NULL, &req, NULL, NULL, &err), -EINVAL);
        assert_string_equal(err.message, "request must be a JSON object, got null");
        json_object_put(arr);
}

/* ---- request build ---- */

static void test_build_call_roundtrip(void **state) {
        json_object *args = parse("{\"x\": 1, \"path\": \"/a/b\"}");
        json_object *ctx =
                parse("{\"user_id\": \"u\", \"request_id\": \"req-1\", \"roles\": [\"a\"]}");
        json_object *msg = NULL;
        struct nst_rpc_request req;

        assert_int_equal(nst_rpc_request_build("ping", args, "6.0", "baseapi", ctx, "m1", "q1", 2,
                                               &msg, NULL),
                         0);
        /* Same key order as oslo's, so captures and ours read alike. */
        const char *expected_head =
                "{\"method\":\"ping\",\"args\":{\"x\":1,\"path\":\"/a/b\"},\"version\":\"6.0\","
                "\"namespace\":\"baseapi\",\"_msg_id\":\"m1\",\"_reply_q\":\"q1\",\"_timeout\":2,"
                "\"_unique_id\":\"";
        const char *text = nst_json_to_string(msg, NULL);
        assert_memory_equal(text, expected_head, strlen(expected_head));
        const char *tail = "\",\"_context_user_id\":\"u\",\"_context_request_id\":\"req-1\","
                           "\"_context_roles\":[\"a\"]}";
        assert_string_equal(text + strlen(expected_head) + 32, tail);

        assert_int_equal(nst_rpc_request_decode(msg, &req, NULL, NULL, NULL), 0);
        assert_string_equal(req.method, "ping");
        assert_true(json_object_equal(req.args, args));
        assert_string_equal(req.version, "6.0");
        assert_string_equal(req.namespace_, "baseapi");
        assert_string_equal(req.msg_id, "m1");
        assert_string_equal(req.reply_q, "q1");
        assert_true(req.timeout == 2.0);
        assert_true(is_hex32(req.unique_id));
        assert_true(json_object_equal(req.context, ctx));
        assert_string_equal(req.request_id, "req-1");
        nst_rpc_request_done(&req);

        /* Borrowed inputs stay the caller's. */
        assert_int_equal(json_object_object_length(args), 2);
        json_object_put(msg);
        json_object_put(args);
        json_object_put(ctx);
}

static void test_build_cast_and_timeouts(void **state) {
        json_object *msg = NULL, *v;

        assert_int_equal(
                nst_rpc_request_build("sink", NULL, NULL, NULL, NULL, NULL, NULL, 30, &msg, NULL),
                0);
        assert_int_equal(json_object_object_length(msg), 3);
        assert_false(json_object_object_get_ex(msg, "_msg_id", NULL));
        assert_false(json_object_object_get_ex(msg, "_reply_q", NULL));
        assert_false(json_object_object_get_ex(msg, "_timeout", NULL));
        assert_false(json_object_object_get_ex(msg, "version", NULL));
        assert_false(json_object_object_get_ex(msg, "namespace", NULL));
        assert_int_equal(json_object_object_length(json_object_object_get(msg, "args")), 0);
        const char *first_uid = json_object_get_string(json_object_object_get(msg, "_unique_id"));
        assert_true(is_hex32(first_uid));

        json_object *msg2 = NULL;
        assert_int_equal(
                nst_rpc_request_build("sink", NULL, NULL, NULL, NULL, "m", "q", 0, &msg2, NULL), 0);
        assert_true(json_object_object_get_ex(msg2, "_timeout", &v));
        assert_null(v); /* no call-monitor */
        assert_string_not_equal(json_object_get_string(json_object_object_get(msg2, "_unique_id")),
                                first_uid);
        json_object_put(msg2);

        assert_int_equal(
                nst_rpc_request_build("sink", NULL, NULL, NULL, NULL, "m", "q", 2.5, &msg2, NULL),
                0);
        assert_true(json_object_object_get_ex(msg2, "_timeout", &v));
        assert_true(json_object_is_type(v, json_type_double));
        assert_true(json_object_get_double(v) == 2.5);
        json_object_put(msg2);
        json_object_put(msg);
}

static void test_build_rejects(void **state) {
        struct nst_error err = NST_ERROR_INIT;
        json_object *msg = NULL;
        json_object *arr = json_object_new_array();

        assert_int_equal(
                nst_rpc_request_build(NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, &msg, &err),
                -EINVAL);
        assert_string_equal(err.cls, "InvalidInput");
        assert_int_equal(
                nst_rpc_request_build("", NULL, NULL, NULL, NULL, NULL, NULL, 0, &msg, &err),
                -EINVAL);
        assert_int_equal(
                nst_rpc_request_build("m", arr, NULL, NULL, NULL, NULL, NULL, 0, &msg, &err),
                -EINVAL);
        assert_string_equal(err.message, "request m: args must be an object, got list");
        assert_int_equal(
                nst_rpc_request_build("m", NULL, NULL, NULL, arr, NULL, NULL, 0, &msg, &err),
                -EINVAL);
        assert_string_equal(err.message, "context must be an object, got list");
        assert_int_equal(
                nst_rpc_request_build("m", NULL, NULL, NULL, NULL, "id", NULL, 0, &msg, &err),
                -EINVAL);
        assert_string_equal(err.message, "request m: a call needs both a msg_id and a reply queue");
        assert_null(msg);
        json_object_put(arr);
}

/* ---- replies ---- */

static void test_reply_build_exact(void **state) {
        json_object *result = json_object_new_string("pong");
        json_object *msg = NULL;

        assert_int_equal(nst_rpc_reply_build("m1", result, NULL, true, &msg, NULL), 0);
        const char *head =
                "{\"result\":\"pong\",\"failure\":null,\"ending\":true,\"_msg_id\":\"m1\","
                "\"_unique_id\":\"";
        const char *text = nst_json_to_string(msg, NULL);
        assert_memory_equal(text, head, strlen(head));
        assert_string_equal(text + strlen(head) + 32, "\"}");
        assert_true(is_hex32(json_object_get_string(json_object_object_get(msg, "_unique_id"))));
        json_object_put(msg);
        json_object_put(result);

        /* A heartbeat: null result, ending false. */
        assert_int_equal(nst_rpc_reply_build("m1", NULL, NULL, false, &msg, NULL), 0);
        head = "{\"result\":null,\"failure\":null,\"ending\":false,\"_msg_id\":\"m1\",";
        assert_memory_equal(nst_json_to_string(msg, NULL), head, strlen(head));
        json_object_put(msg);

        struct nst_error err = NST_ERROR_INIT;
        msg = NULL;
        assert_int_equal(nst_rpc_reply_build(NULL, NULL, NULL, true, &msg, &err), -EINVAL);
        assert_string_equal(err.cls, "InvalidInput");
        assert_null(msg);
}

static void test_reply_roundtrip(void **state) {
        json_object *result = parse("{\"hello\": [1, \"two\", null]}");
        json_object *msg = NULL, *inner;
        struct nst_rpc_reply reply;
        char *body;
        size_t len;

        assert_int_equal(nst_rpc_reply_build("abc", result, NULL, true, &msg, NULL), 0);
        assert_int_equal(nst_envelope_encode(msg, &body, &len, NULL), 0);
        inner = unwrap(body, len);
        assert_int_equal(nst_rpc_reply_decode(inner, &reply, NULL), 0);
        json_object_put(inner);
        assert_string_equal(reply.msg_id, "abc");
        assert_true(reply.ending);
        assert_false(reply.failed);
        assert_false(nst_error_is_set(&reply.failure));
        assert_true(json_object_equal(reply.result, result));
        nst_rpc_reply_done(&reply);
        assert_null(reply.raw);
        free(body);
        json_object_put(msg);
        json_object_put(result);
}

static void test_failure_reply(void **state) {
        struct nst_error failure = NST_ERROR_INIT;
        json_object *msg = NULL, *v, *inner;
        struct nst_rpc_reply reply;
        char *body;
        size_t len;

        nst_error_set(&failure, -EINVAL, "ValueError", "bad value: %s", "x/y");
        assert_int_equal(nst_rpc_reply_build("m2", NULL, &failure, true, &msg, NULL), 0);
        assert_true(json_object_object_get_ex(msg, "result", &v));
        assert_null(v);
        assert_true(json_object_object_get_ex(msg, "failure", &v));
        assert_true(json_object_is_type(v, json_type_string));
        /* Exactly oslo's keys, in oslo's order. */
        assert_string_equal(json_object_get_string(v),
                            "{\"class\":\"ValueError\",\"module\":\"builtins\",\"message\":\"bad "
                            "value: x/y\",\"tb\":[],\"args\":[\"bad value: x/y\"],\"kwargs\":{}}");
        json_object *parsed = parse(json_object_get_string(v));
        assert_int_equal(json_object_object_length(parsed), 6);
        json_object_put(parsed);

        /* Through the wire and back, as the client sees it. */
        assert_int_equal(nst_envelope_encode(msg, &body, &len, NULL), 0);
        inner = unwrap(body, len);
        assert_int_equal(nst_rpc_reply_decode(inner, &reply, NULL), 0);
        assert_true(reply.failed);
        assert_true(reply.ending);
        assert_null(reply.result);
        assert_int_equal(reply.failure.code, -EREMOTEIO);
        assert_string_equal(reply.failure.cls, "ValueError");
        assert_string_equal(reply.failure.module, "builtins");
        assert_string_equal(reply.failure.message, "bad value: x/y");
        nst_rpc_reply_done(&reply);
        json_object_put(inner);
        free(body);
        json_object_put(msg);

        /* Nestor's own classes and explicit modules survive; a failure
         * drops the result, as oslo does. */
        json_object *result = json_object_new_int(1);
        nst_error_set(&failure, -ENOENT, "InstanceNotFound", "Instance abc could not be found.");
        assert_int_equal(nst_rpc_reply_build("m3", result, &failure, true, &msg, NULL), 0);
        assert_true(json_object_object_get_ex(msg, "result", &v));
        assert_null(v);
        parsed = parse(json_object_get_string(json_object_object_get(msg, "failure")));
        assert_string_equal(json_object_get_string(json_object_object_get(parsed, "module")),
                            "nestor.exception");
        json_object_put(parsed);
        json_object_put(msg);
        nst_error_set_module(&failure, -ENOENT, "nova.exception", "InstanceNotFound", "gone");
        assert_int_equal(nst_rpc_reply_build("m3", NULL, &failure, true, &msg, NULL), 0);
        assert_int_equal(nst_rpc_reply_decode(msg, &reply, NULL), 0);
        assert_string_equal(reply.failure.module, "nova.exception");
        assert_string_equal(reply.failure.cls, "InstanceNotFound");
        nst_rpc_reply_done(&reply);
        json_object_put(msg);
        json_object_put(result);
}

static void test_decode_capture_replies(void **state) {
        struct nst_rpc_reply reply;
        json_object *inner = UNWRAP(CAPTURE_1B_REPLY);

        assert_int_equal(nst_rpc_reply_decode(inner, &reply, NULL), 0);
        json_object_put(inner);
        assert_string_equal(reply.msg_id, "f5ad0a3264b6460097018100ee2c8c2e");
        assert_string_equal(json_object_get_string(reply.result), "pong");
        assert_true(reply.ending);
        assert_false(reply.failed);
        nst_rpc_reply_done(&reply);

        inner = UNWRAP(CAPTURE_1C_FAILURE);
        assert_int_equal(nst_rpc_reply_decode(inner, &reply, NULL), 0);
        json_object_put(inner);
        assert_string_equal(reply.msg_id, "41c74e0f91ef4d6bbe7b34160c6e1ee3");
        assert_true(reply.failed);
        assert_true(reply.ending);
        assert_null(reply.result);
        assert_int_equal(reply.failure.code, -EREMOTEIO);
        assert_string_equal(reply.failure.cls, "ValueError");
        assert_string_equal(reply.failure.module, "builtins");
        assert_string_equal(reply.failure.message, "boom from probe-host: {'x': 1}");
        nst_rpc_reply_done(&reply);

        inner = UNWRAP(CAPTURE_C_FAILURE);
        assert_int_equal(nst_rpc_reply_decode(inner, &reply, NULL), 0);
        json_object_put(inner);
        assert_true(reply.failed);
        assert_string_equal(reply.failure.message, "boom from C");
        nst_rpc_reply_done(&reply);
}

static void test_decode_reply_edge_cases(void **state) {
        struct nst_rpc_reply reply;
        struct nst_error err = NST_ERROR_INIT;
        json_object *inner;

        /* Missing ending is false, missing result is null. */
        inner = parse("{\"_msg_id\": \"m\", \"failure\": null}");
        assert_int_equal(nst_rpc_reply_decode(inner, &reply, NULL), 0);
        assert_false(reply.ending);
        assert_null(reply.result);
        assert_false(reply.failed);
        nst_rpc_reply_done(&reply);
        json_object_put(inner);

        /* A call-monitor heartbeat. */
        inner = parse(
                "{\"result\": null, \"failure\": null, \"ending\": false, \"_msg_id\": \"m\"}");
        assert_int_equal(nst_rpc_reply_decode(inner, &reply, NULL), 0);
        assert_false(reply.ending);
        assert_false(reply.failed);
        assert_string_equal(reply.msg_id, "m");
        nst_rpc_reply_done(&reply);
        json_object_put(inner);

        /* An unreadable failure is still a failure, not a hang. */
        inner = parse("{\"_msg_id\": \"m\", \"failure\": \"not json\", \"ending\": true}");
        assert_int_equal(nst_rpc_reply_decode(inner, &reply, NULL), 0);
        assert_true(reply.failed);
        assert_string_equal(reply.failure.cls, "RemoteError");
        assert_string_equal(reply.failure.message, "unreadable failure: not json");
        nst_rpc_reply_done(&reply);
        json_object_put(inner);

        /* A failure object without a class. */
        inner = parse("{\"failure\": \"{\\\"message\\\": \\\"m\\\"}\", \"ending\": true}");
        assert_int_equal(nst_rpc_reply_decode(inner, &reply, NULL), 0);
        assert_null(reply.msg_id);
        assert_true(reply.failed);
        assert_string_equal(reply.failure.cls, "RemoteError");
        assert_string_equal(reply.failure.message, "m");
        nst_rpc_reply_done(&reply);
        json_object_put(inner);

        inner = parse("{\"_msg_id\": 5}");
        assert_int_equal(nst_rpc_reply_decode(inner, &reply, &err), -EINVAL);
        assert_string_equal(err.cls, "ValueError");
        assert_string_equal(err.message, "reply: '_msg_id' must be a string, got int");
        assert_null(reply.raw);
        json_object_put(inner);

        inner = json_object_new_string("x");
        assert_int_equal(nst_rpc_reply_decode(inner, &reply, &err), -EINVAL);
        assert_string_equal(err.message, "reply must be a JSON object, got string");
        json_object_put(inner);
}

static void check_salvage(const char *body, const char *msg_id, const char *reply_q) {
        char *m = NULL, *q = NULL;
        if (!msg_id) {
                assert_int_equal(nst_rpc_salvage_route(body, strlen(body), &m, &q), -ENOENT);
                assert_null(m);
                assert_null(q);
                return;
        }
        assert_int_equal(nst_rpc_salvage_route(body, strlen(body), &m, &q), 0);
        assert_string_equal(m, msg_id);
        assert_string_equal(q, reply_q);
        free(m);
        free(q);
}

static void test_salvage_route(void **state) {
        /* Enveloped (escaped keys), with invalid UTF-8 elsewhere in the body. */
        check_salvage("{\"oslo.version\": \"2.0\", \"oslo.message\": \"{\\\"method\\\": "
                      "\\\"p\xff\\\", \\\"_msg_id\\\": \\\"abc123\\\", "
                      "\\\"_reply_q\\\": \\\"reply_9f\\\"}\"}",
                      "abc123", "reply_9f");
        /* Bare form, broken JSON after the keys. */
        check_salvage("{\"_reply_q\":\"reply_x.y-z\", \"_msg_id\" : \"m1\", \"args\": [",
                      "m1", "reply_x.y-z");
        /* An empty body (librabbitmq hands over a NULL pointer). */
        char *m = NULL, *q = NULL;
        assert_int_equal(nst_rpc_salvage_route(NULL, 0, &m, &q), -ENOENT);
        /* Missing one of the two, or values that are not identifiers. */
        check_salvage("{\"_msg_id\": \"m1\"}", NULL, NULL);
        check_salvage("{\"_msg_id\": \"m1\", \"_reply_q\": \"a b\"}", NULL, NULL);
        check_salvage("{\"_msg_id\": 5, \"_reply_q\": \"q\"}", NULL, NULL);
        check_salvage("{\"_msg_id\": \"\", \"_reply_q\": \"q\"}", NULL, NULL);
        /* A key mentioned inside a value is skipped in favour of the real one. */
        check_salvage("{\"x\": \"_msg_id\", \"_msg_id\": \"m2\", \"_reply_q\": \"q2\"}", "m2",
                      "q2");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_decode_capture_call),
                cmocka_unit_test(test_decode_bare_with_timeout),
                cmocka_unit_test(test_decode_cast_and_defaults),
                cmocka_unit_test(test_decode_errors),
                cmocka_unit_test(test_decode_not_an_object),
                cmocka_unit_test(test_build_call_roundtrip),
                cmocka_unit_test(test_build_cast_and_timeouts),
                cmocka_unit_test(test_build_rejects),
                cmocka_unit_test(test_reply_build_exact),
                cmocka_unit_test(test_reply_roundtrip),
                cmocka_unit_test(test_failure_reply),
                cmocka_unit_test(test_decode_capture_replies),
                cmocka_unit_test(test_decode_reply_edge_cases),
                cmocka_unit_test(test_salvage_route),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
