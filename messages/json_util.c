#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "messages/internal.h"
#include "messages/json_util.h"

/* Deep enough for nova's objects (instance -> flavor -> extra_specs ...),
 * shallow enough that a hostile body cannot exhaust the stack. */
#define JSON_MAX_DEPTH 64

const char *nst_json_type_name(json_object *obj) {
        switch (json_object_get_type(obj)) {
        case json_type_null:
                return "null";
        case json_type_boolean:
                return "bool";
        case json_type_double:
                return "float";
        case json_type_int:
                return "int";
        case json_type_object:
                return "object";
        case json_type_array:
                return "list";
        case json_type_string:
                return "string";
        }
        return "unknown";
}

int nst_json_add(json_object *obj, const char *key, json_object *val) {
        if (!val)
                return -ENOMEM;
        if (json_object_object_add(obj, key, val) < 0) {
                json_object_put(val);
                return -ENOMEM;
        }
        return 0;
}

/* Looks key up; *ret is NULL when the key is missing or JSON null. */
static bool lookup(json_object *obj, const char *key, json_object **ret) {
        json_object *v = NULL;

        if (!json_object_is_type(obj, json_type_object) || !json_object_object_get_ex(obj, key, &v))
                v = NULL;
        *ret = v;
        return v != NULL;
}

static int wrong_type(const char *what, const char *key, const char *expected, json_object *v,
                      struct nst_error *err) {
        return nst_error_set(err, -EINVAL, "InvalidInput", "%s: '%s' must be %s, got %s", what, key,
                             expected, nst_json_type_name(v));
}

static int missing(const char *what, const char *key, struct nst_error *err) {
        return nst_error_set(err, -EINVAL, "InvalidInput", "%s: '%s' is missing", what, key);
}

static int check_string(json_object *v, const char *what, const char *key, const char **ret,
                        struct nst_error *err) {
        if (!json_object_is_type(v, json_type_string))
                return wrong_type(what, key, "a string", v, err);
        /* Callers get a C string: an embedded NUL would silently cut it, so
         * "ping\u0000x" would dispatch as "ping". */
        const char *s = json_object_get_string(v);
        if (strlen(s) != (size_t)json_object_get_string_len(v))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s: '%s' must not contain NUL characters", what, key);
        *ret = s;
        return 0;
}

int nst_json_opt_string(json_object *obj, const char *key, const char *what, const char **ret,
                        struct nst_error *err) {
        json_object *v;

        if (!lookup(obj, key, &v))
                return 0;
        return check_string(v, what, key, ret, err);
}

int nst_json_opt_int64(json_object *obj, const char *key, const char *what, int64_t *ret,
                       struct nst_error *err) {
        json_object *v;

        if (!lookup(obj, key, &v))
                return 0;
        if (!json_object_is_type(v, json_type_int))
                return wrong_type(what, key, "an integer", v, err);
        int64_t i = json_object_get_int64(v);
        /* json-c keeps integers above INT64_MAX as uint64 and clamps here. */
        if (i == INT64_MAX && json_object_get_uint64(v) > (uint64_t)INT64_MAX)
                return nst_error_set(err, -ERANGE, "InvalidInput", "%s: '%s' is out of range", what,
                                     key);
        *ret = i;
        return 0;
}

int nst_json_opt_bool(json_object *obj, const char *key, const char *what, bool *ret,
                      struct nst_error *err) {
        json_object *v;

        if (!lookup(obj, key, &v))
                return 0;
        if (!json_object_is_type(v, json_type_boolean))
                return wrong_type(what, key, "a boolean", v, err);
        *ret = json_object_get_boolean(v);
        return 0;
}

int nst_json_opt_object(json_object *obj, const char *key, const char *what, json_object **ret,
                        struct nst_error *err) {
        json_object *v;

        if (!lookup(obj, key, &v))
                return 0;
        if (!json_object_is_type(v, json_type_object))
                return wrong_type(what, key, "an object", v, err);
        *ret = v;
        return 0;
}

int nst_json_check_keys(json_object *obj, const char *what, const char *const *allowed,
                        struct nst_error *err) {
        json_object_object_foreach(obj, key, val) {
                (void)val;
                bool ok = false;
                for (size_t i = 0; allowed && allowed[i] && !ok; i++)
                        ok = strcmp(allowed[i], key) == 0;
                if (ok)
                        continue;
                char expected[256] = "";
                size_t n = 0;
                for (size_t i = 0; allowed && allowed[i] && n < sizeof(expected); i++)
                        n += (size_t)snprintf(expected + n, sizeof(expected) - n, "%s%s",
                                              i ? ", " : "", allowed[i]);
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s: unexpected argument '%.64s' (expected %s)", what, key,
                                     n ? expected : "none");
        }
        return 0;
}

int nst_json_req_string(json_object *obj, const char *key, const char *what, const char **ret,
                        struct nst_error *err) {
        json_object *v;

        if (!lookup(obj, key, &v)) {
                /* null is present-but-wrong, which says more than "missing". */
                if (json_object_is_type(obj, json_type_object) &&
                    json_object_object_get_ex(obj, key, NULL))
                        return wrong_type(what, key, "a string", NULL, err);
                return missing(what, key, err);
        }
        return check_string(v, what, key, ret, err);
}

int nst_json_req_object(json_object *obj, const char *key, const char *what, json_object **ret,
                        struct nst_error *err) {
        json_object *v;

        if (!lookup(obj, key, &v)) {
                if (json_object_is_type(obj, json_type_object) &&
                    json_object_object_get_ex(obj, key, NULL))
                        return wrong_type(what, key, "an object", NULL, err);
                return missing(what, key, err);
        }
        if (!json_object_is_type(v, json_type_object))
                return wrong_type(what, key, "an object", v, err);
        *ret = v;
        return 0;
}

static bool only_whitespace(const char *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (p[i] != ' ' && p[i] != '\t' && p[i] != '\n' && p[i] != '\r')
                        return false;
        return true;
}

static int parse_failed(enum json_tokener_error jerr, size_t offset, struct nst_error *err) {
        return nst_error_set(err, -EBADMSG, "ValueError", "%s at byte %zu",
                             json_tokener_error_desc(jerr), offset);
}

int nst_json_parse(const char *buf, size_t len, json_object **ret, struct nst_error *err) {
        json_tokener *tok;
        json_object *obj;
        enum json_tokener_error jerr;
        size_t end;

        if (len > INT_MAX - 1)
                return nst_error_set(err, -E2BIG, "ValueError",
                                     "JSON text of %zu bytes is too large to parse", len);
        if (!buf)
                buf = "";

        tok = json_tokener_new_ex(JSON_MAX_DEPTH);
        if (!tok)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT);

        obj = json_tokener_parse_ex(tok, buf, (int)len);
        jerr = json_tokener_get_error(tok);
        end = json_tokener_get_parse_end(tok);
        if (jerr == json_tokener_continue) {
                /* A bare number has no closing token: the terminating NUL tells
                 * json-c the input ended. Everything before it was consumed. */
                obj = json_tokener_parse_ex(tok, "", 1);
                jerr = json_tokener_get_error(tok);
                end = len;
        }
        json_tokener_free(tok);

        if (jerr != json_tokener_success) {
                json_object_put(obj);
                return parse_failed(jerr, end, err);
        }
        if (end < len && !only_whitespace(buf + end, len - end)) {
                json_object_put(obj);
                return nst_error_set(err, -EBADMSG, "ValueError",
                                     "unexpected data after the JSON value at byte %zu", end);
        }
        *ret = obj;
        return 0;
}

const char *nst_json_to_string(json_object *obj, size_t *ret_len) {
        size_t len = 0;
        const char *s = json_object_to_json_string_length(
                obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);

        if (ret_len)
                *ret_len = s ? len : 0;
        return s;
}

bool nst_utf8_valid(const char *buf, size_t len) {
        const unsigned char *s = (const unsigned char *)buf;
        size_t i = 0;

        while (i < len) {
                unsigned char c = s[i];
                size_t n;
                unsigned char lo = 0x80, hi = 0xbf; /* bounds for the second byte */

                if (c < 0x80) {
                        i++;
                        continue;
                }
                if (c >= 0xc2 && c <= 0xdf) {
                        n = 2;
                } else if (c >= 0xe0 && c <= 0xef) {
                        n = 3;
                        if (c == 0xe0)
                                lo = 0xa0; /* overlong below U+0800 */
                        else if (c == 0xed)
                                hi = 0x9f; /* surrogates U+D800..U+DFFF */
                } else if (c >= 0xf0 && c <= 0xf4) {
                        n = 4;
                        if (c == 0xf0)
                                lo = 0x90; /* overlong below U+10000 */
                        else if (c == 0xf4)
                                hi = 0x8f; /* above U+10FFFF */
                } else {
                        return false; /* continuation byte, C0/C1 overlong, F5+ */
                }
                if (len - i < n)
                        return false;
                if (s[i + 1] < lo || s[i + 1] > hi)
                        return false;
                for (size_t k = 2; k < n; k++)
                        if ((s[i + k] & 0xc0) != 0x80)
                                return false;
                i += n;
        }
        return true;
}

json_object *nst_json_string_or_null(const char *s) {
        return s && s[0] ? json_object_new_string(s) : NULL;
}
