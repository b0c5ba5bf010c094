#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "messages/internal.h"
#include "messages/json_util.h"
#include "messages/rpc_message.h"

#define CONTEXT_PREFIX "_context_"
#define CONTEXT_PREFIX_LEN (sizeof(CONTEXT_PREFIX) - 1)

static int oom(struct nst_error *err) {
        return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
}

/* A malformed message is the peer's mistake, not a Nestor condition: report
 * it as ValueError so a Python caller gets an exception it can catch, while
 * keeping the message the json_util getters wrote. */
static int as_value_error(int r, struct nst_error *err) {
        if (r < 0 && r != -ENOMEM && err) {
                snprintf(err->cls, sizeof(err->cls), "ValueError");
                snprintf(err->module, sizeof(err->module), NST_MOD_BUILTINS);
        }
        return r;
}

int nst_context_flatten(json_object *msg, json_object *context, struct nst_error *err) {
        if (!context)
                return 0;
        if (!json_object_is_type(context, json_type_object))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "context must be an object, got %s",
                                     nst_json_type_name(context));
        json_object_object_foreach(context, key, val) {
                size_t n = strlen(key);
                _cleanup_free_ char *k = malloc(CONTEXT_PREFIX_LEN + n + 1);
                if (!k)
                        return oom(err);
                memcpy(k, CONTEXT_PREFIX, CONTEXT_PREFIX_LEN);
                memcpy(k + CONTEXT_PREFIX_LEN, key, n + 1);
                /* val may be NULL (JSON null), which json-c stores as null. */
                if (json_object_object_add(msg, k, json_object_get(val)) < 0) {
                        json_object_put(val);
                        return oom(err);
                }
        }
        return 0;
}

/* ---- requests ---- */

#define REQ "request"

static int decode_timeout(json_object *inner, double *ret, struct nst_error *err) {
        json_object *v;
        double t;

        if (!json_object_object_get_ex(inner, "_timeout", &v) || !v)
                return 0;
        if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
                return nst_error_set(err, -EINVAL, "ValueError",
                                     REQ ": '_timeout' must be a number or null, got %s",
                                     nst_json_type_name(v));
        t = json_object_get_double(v);
        /* It sets the heartbeat period (_timeout / 2): a negative or infinite
         * one would make the watchdog fire constantly or never. */
        if (!isfinite(t) || t < 0)
                return nst_error_set(err, -EINVAL, "ValueError",
                                     REQ ": '_timeout' must be a non-negative number, got %s",
                                     json_object_get_string(v));
        *ret = t;
        return 0;
}

static int collect_context(json_object *inner, json_object **ret, struct nst_error *err) {
        _cleanup_json_ json_object *ctx = json_object_new_object();

        if (!ctx)
                return oom(err);
        json_object_object_foreach(inner, key, val) {
                if (strncmp(key, CONTEXT_PREFIX, CONTEXT_PREFIX_LEN) != 0)
                        continue;
                if (json_object_object_add(ctx, key + CONTEXT_PREFIX_LEN, json_object_get(val)) <
                    0) {
                        json_object_put(val);
                        return oom(err);
                }
        }
        *ret = nst_steal(&ctx);
        return 0;
}

static int decode_request(json_object *inner, struct nst_rpc_request *q, struct nst_error *err) {
        json_object *args = NULL, *rid;
        int r;

        if (!json_object_is_type(inner, json_type_object))
                return nst_error_set(err, -EINVAL, "ValueError",
                                     REQ " must be a JSON object, got %s",
                                     nst_json_type_name(inner));

        /* Routing first, so that whatever is wrong later can still be answered. */
        /* oslo only replies when _msg_id is truthy: "" marks a cast too.
         * Each is settled as soon as it is read: a bad _reply_q must not
         * leave an empty _msg_id to answer (a reply nobody can match). */
        r = nst_json_opt_string(inner, "_msg_id", REQ, &q->msg_id, err);
        if (r < 0)
                return as_value_error(r, err);
        if (q->msg_id && !q->msg_id[0])
                q->msg_id = NULL;
        r = nst_json_opt_string(inner, "_reply_q", REQ, &q->reply_q, err);
        if (r < 0)
                return as_value_error(r, err);
        if (q->reply_q && !q->reply_q[0])
                q->reply_q = NULL;

        r = nst_json_req_string(inner, "method", REQ, &q->method, err);
        if (r < 0)
                return as_value_error(r, err);
        if (!q->method[0])
                return nst_error_set(err, -EINVAL, "ValueError", REQ ": 'method' is empty");
        r = nst_json_opt_object(inner, "args", REQ, &args, err);
        if (r < 0)
                return as_value_error(r, err);
        r = nst_json_opt_string(inner, "version", REQ, &q->version, err);
        if (r < 0)
                return as_value_error(r, err);
        r = nst_json_opt_string(inner, "namespace", REQ, &q->namespace_, err);
        if (r < 0)
                return as_value_error(r, err);
        r = decode_timeout(inner, &q->timeout, err);
        if (r < 0)
                return r;
        r = nst_json_opt_string(inner, "_unique_id", REQ, &q->unique_id, err);
        if (r < 0)
                return as_value_error(r, err);
        r = collect_context(inner, &q->context, err);
        if (r < 0)
                return r;
        if (json_object_object_get_ex(q->context, "request_id", &rid) &&
            json_object_is_type(rid, json_type_string))
                q->request_id = json_object_get_string(rid);

        if (!args) {
                /* args is borrowed from raw, so an absent (or null) one is
                 * stored there: raw now says what the method will receive. */
                args = json_object_new_object();
                if (nst_json_add(inner, "args", args) < 0)
                        return oom(err);
        }
        q->args = args;
        q->raw = json_object_get(inner);
        return 0;
}

int nst_rpc_request_decode(json_object *inner, struct nst_rpc_request *req, char **ret_msg_id,
                           char **ret_reply_q, struct nst_error *err) {
        struct nst_rpc_request q = {0};
        int r;

        memset(req, 0, sizeof(*req));
        r = decode_request(inner, &q, err);
        if (r >= 0) {
                *req = q;
                return 0;
        }
        if (ret_msg_id)
                *ret_msg_id = q.msg_id ? strdup(q.msg_id) : NULL;
        if (ret_reply_q)
                *ret_reply_q = q.reply_q ? strdup(q.reply_q) : NULL;
        json_object_put(q.context);
        return r;
}

void nst_rpc_request_done(struct nst_rpc_request *req) {
        if (!req)
                return;
        json_object_put(req->context);
        json_object_put(req->raw);
        memset(req, 0, sizeof(*req));
}

/* Python sends call_monitor_timeout as given (usually an int); json-c would
 * print 2.0 for a double, so keep whole numbers integral. */
static json_object *new_number(double v) {
        if (v == floor(v) && v >= 0 && v < 9007199254740992.0)
                return json_object_new_int64((int64_t)v);
        return json_object_new_double(v);
}

int nst_rpc_request_build(const char *method, json_object *args, const char *version,
                          const char *namespace_, json_object *context, const char *msg_id,
                          const char *reply_q, double timeout, json_object **ret,
                          struct nst_error *err) {
        _cleanup_json_ json_object *msg = NULL;
        char unique_id[NST_UUID_HEX_LEN + 1];
        int r;

        if (!method || !method[0])
                return nst_error_set(err, -EINVAL, "InvalidInput", "a request needs a method");
        if (args && !json_object_is_type(args, json_type_object))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "request %s: args must be an object, got %s", method,
                                     nst_json_type_name(args));
        if (!msg_id != !reply_q)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "request %s: a call needs both a msg_id and a reply queue",
                                     method);

        msg = json_object_new_object();
        if (!msg)
                return oom(err);
        if (nst_json_add(msg, "method", json_object_new_string(method)) < 0 ||
            nst_json_add(msg, "args", args ? json_object_get(args) : json_object_new_object()) < 0)
                return oom(err);
        if (version && nst_json_add(msg, "version", json_object_new_string(version)) < 0)
                return oom(err);
        if (namespace_ && nst_json_add(msg, "namespace", json_object_new_string(namespace_)) < 0)
                return oom(err);
        if (msg_id) {
                if (nst_json_add(msg, "_msg_id", json_object_new_string(msg_id)) < 0 ||
                    nst_json_add(msg, "_reply_q", json_object_new_string(reply_q)) < 0)
                        return oom(err);
                /* null asks for no call-monitor heartbeats. */
                if (timeout > 0 && isfinite(timeout)) {
                        if (nst_json_add(msg, "_timeout", new_number(timeout)) < 0)
                                return oom(err);
                } else if (json_object_object_add(msg, "_timeout", NULL) < 0) {
                        return oom(err);
                }
        }
        nst_uuid_hex(unique_id);
        if (nst_json_add(msg, "_unique_id", json_object_new_string(unique_id)) < 0)
                return oom(err);
        r = nst_context_flatten(msg, context, err);
        if (r < 0)
                return r;
        *ret = nst_steal(&msg);
        return 0;
}

/* ---- replies ---- */

static int array_add(json_object *arr, json_object *val) {
        if (!val)
                return -ENOMEM;
        if (json_object_array_add(arr, val) < 0) {
                json_object_put(val);
                return -ENOMEM;
        }
        return 0;
}

/* oslo's serialize_remote_exception(): a JSON object sent as a JSON string.
 * args=[message] lets Python rebuild builtins and nova exceptions with
 * Class(*args, **kwargs). */
static json_object *failure_string(const struct nst_error *f) {
        _cleanup_json_ json_object *o = json_object_new_object();
        const char *cls = f->cls[0] ? f->cls : "RuntimeError";
        const char *module = f->module[0] ? f->module : nst_error_module_for(cls);
        json_object *args;
        const char *text;
        size_t len;

        if (!o)
                return NULL;
        if (nst_json_add(o, "class", json_object_new_string(cls)) < 0 ||
            nst_json_add(o, "module", json_object_new_string(module)) < 0 ||
            nst_json_add(o, "message", json_object_new_string(f->message)) < 0 ||
            nst_json_add(o, "tb", json_object_new_array()) < 0)
                return NULL;
        args = json_object_new_array();
        if (nst_json_add(o, "args", args) < 0 ||
            array_add(args, json_object_new_string(f->message)) < 0 ||
            nst_json_add(o, "kwargs", json_object_new_object()) < 0)
                return NULL;
        text = nst_json_to_string(o, &len);
        if (!text)
                return NULL;
        return json_object_new_string_len(text, (int)len);
}

int nst_rpc_reply_build(const char *msg_id, json_object *result, const struct nst_error *failure,
                        bool ending, json_object **ret, struct nst_error *err) {
        _cleanup_json_ json_object *msg = NULL;
        char unique_id[NST_UUID_HEX_LEN + 1];

        if (!msg_id || !msg_id[0])
                return nst_error_set(err, -EINVAL, "InvalidInput", "a reply needs a msg_id");

        msg = json_object_new_object();
        if (!msg)
                return oom(err);
        /* Like oslo, a failure carries no result. */
        if (json_object_object_add(msg, "result", failure ? NULL : json_object_get(result)) < 0) {
                json_object_put(failure ? NULL : result);
                return oom(err);
        }
        if (failure) {
                if (nst_json_add(msg, "failure", failure_string(failure)) < 0)
                        return oom(err);
        } else if (json_object_object_add(msg, "failure", NULL) < 0) {
                return oom(err);
        }
        nst_uuid_hex(unique_id);
        if (nst_json_add(msg, "ending", json_object_new_boolean(ending)) < 0 ||
            nst_json_add(msg, "_msg_id", json_object_new_string(msg_id)) < 0 ||
            nst_json_add(msg, "_unique_id", json_object_new_string(unique_id)) < 0)
                return oom(err);
        *ret = nst_steal(&msg);
        return 0;
}

#define REPLY "reply"

static void copy_remote_string(json_object *obj, const char *key, char *dst, size_t size) {
        json_object *v;

        if (json_object_object_get_ex(obj, key, &v) && json_object_is_type(v, json_type_string))
                snprintf(dst, size, "%s", json_object_get_string(v));
}

/* Whatever the peer sent as a failure, the call failed: a failure we cannot
 * read still becomes an error rather than a hang until the timeout. */
static void decode_failure(json_object *f, struct nst_error *out) {
        _cleanup_json_ json_object *parsed = NULL;
        char cls[NST_ERROR_CLASS_MAX] = "RemoteError";
        char module[NST_ERROR_CLASS_MAX] = "";
        char message[NST_ERROR_MESSAGE_MAX] = "";
        json_object *obj = f;

        if (json_object_is_type(f, json_type_string)) {
                const char *s = json_object_get_string(f);
                int len = json_object_get_string_len(f);
                if (nst_json_parse(s, (size_t)len, &parsed, NULL) < 0 ||
                    !json_object_is_type(parsed, json_type_object)) {
                        nst_error_set(out, -EREMOTEIO, "RemoteError", "unreadable failure: %.*s",
                                      len, s);
                        return;
                }
                obj = parsed;
        } else if (!json_object_is_type(f, json_type_object)) {
                nst_error_set(out, -EREMOTEIO, "RemoteError",
                              "unreadable failure: a %s instead of a string",
                              nst_json_type_name(f));
                return;
        }
        copy_remote_string(obj, "class", cls, sizeof(cls));
        if (!cls[0])
                snprintf(cls, sizeof(cls), "RemoteError");
        copy_remote_string(obj, "module", module, sizeof(module));
        copy_remote_string(obj, "message", message, sizeof(message));
        nst_error_set_module(out, -EREMOTEIO, module[0] ? module : NULL, cls, "%s", message);
}

int nst_rpc_reply_decode(json_object *inner, struct nst_rpc_reply *reply, struct nst_error *err) {
        struct nst_rpc_reply p = {0};
        json_object *v;
        int r;

        memset(reply, 0, sizeof(*reply));
        if (!json_object_is_type(inner, json_type_object))
                return nst_error_set(err, -EINVAL, "ValueError",
                                     REPLY " must be a JSON object, got %s",
                                     nst_json_type_name(inner));
        r = nst_json_opt_string(inner, "_msg_id", REPLY, &p.msg_id, err);
        if (r < 0)
                return as_value_error(r, err);
        if (json_object_object_get_ex(inner, "result", &v))
                p.result = v;
        /* The Python client tests truthiness, so accept what it accepts. */
        if (json_object_object_get_ex(inner, "ending", &v) && v)
                p.ending = json_object_get_boolean(v);
        if (json_object_object_get_ex(inner, "failure", &v) && v) {
                p.failed = true;
                decode_failure(v, &p.failure);
        }
        p.raw = json_object_get(inner);
        *reply = p;
        return 0;
}

void nst_rpc_reply_done(struct nst_rpc_reply *reply) {
        if (!reply)
                return;
        json_object_put(reply->raw);
        memset(reply, 0, sizeof(*reply));
}

static bool route_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '.' || c == ':' || c == '@' || c == '-';
}

/* The string value following the first `key` in body: `key"\s*:\s*"value"`
 * where each quote may be escaped once (the double-encoded inner message). */
static char *salvage_value(const char *body, size_t len, const char *key) {
        if (!body || len == 0)
                return NULL; /* an empty AMQP body arrives as a NULL pointer */
        size_t klen = strlen(key);
        const char *end = body + len, *p = body;

        while ((p = memmem(p, (size_t)(end - p), key, klen))) {
                const char *q = p + klen;
                p += klen;
                if (q < end && *q == '\\')
                        q++;
                if (q >= end || *q++ != '"')
                        continue;
                while (q < end && (*q == ' ' || *q == '\t'))
                        q++;
                if (q >= end || *q++ != ':')
                        continue;
                while (q < end && (*q == ' ' || *q == '\t'))
                        q++;
                if (q < end && *q == '\\')
                        q++;
                if (q >= end || *q++ != '"')
                        continue;
                const char *v = q;
                while (q < end && route_char(*q) && q - v < 256)
                        q++;
                if (q == v || q - v > 255 || q >= end || (*q != '"' && *q != '\\'))
                        continue;
                return strndup(v, (size_t)(q - v));
        }
        return NULL;
}

int nst_rpc_salvage_route(const char *body, size_t len, char **ret_msg_id, char **ret_reply_q) {
        char *msg_id = salvage_value(body, len, "\"_msg_id");
        char *reply_q = msg_id ? salvage_value(body, len, "\"_reply_q") : NULL;
        if (!msg_id || !reply_q) {
                free(msg_id);
                free(reply_q);
                return -ENOENT;
        }
        *ret_msg_id = msg_id;
        *ret_reply_q = reply_q;
        return 0;
}
