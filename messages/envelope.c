#include <errno.h>
#include <limits.h>
#include <string.h>

#include "messages/envelope.h"
#include "messages/internal.h"
#include "messages/json_util.h"
#include "messages/version.h"

#define VERSION_KEY "oslo.version"
#define MESSAGE_KEY "oslo.message"
#define ENVELOPE_VERSION "2.0"

/* oslo checks version_is_compatible("2.0", v): major 2, nothing above 2.0. */
static int check_envelope_version(json_object *v, struct nst_error *err) {
        static const struct nst_version ours = {2, 0, 0};
        struct nst_version theirs;

        if (!json_object_is_type(v, json_type_string))
                return nst_error_set(err, -EPROTO, "ValueError",
                                     "'" VERSION_KEY "' must be a string, got %s",
                                     nst_json_type_name(v));
        const char *s = json_object_get_string(v);
        if (strlen(s) != (size_t)json_object_get_string_len(v) ||
            nst_version_parse(s, &theirs, NULL) < 0 || !nst_version_compatible(&ours, &theirs))
                return nst_error_set(
                        err, -EPROTO, "ValueError",
                        "unsupported " VERSION_KEY " '%s' (expected " ENVELOPE_VERSION ")", s);
        return 0;
}

/* The inner message is JSON text inside a JSON string. Its length comes from
 * json-c, not strlen: a "\u0000" in it must fail as trailing data rather than
 * silently end the text. */
static int parse_inner(json_object *m, json_object **ret, struct nst_error *err) {
        const char *s = json_object_get_string(m);
        size_t len = (size_t)json_object_get_string_len(m);
        json_object *inner = NULL;
        int r;

        /* json-c turns lone surrogate escapes into U+FFFD, so this only fires
         * for bytes it let through, but the inner text must meet the same bar
         * as the body. */
        if (!nst_utf8_valid(s, len))
                return nst_error_set(err, -EBADMSG, "ValueError",
                                     "'" MESSAGE_KEY "' is not valid UTF-8");
        r = nst_json_parse(s, len, &inner, err);
        if (r < 0)
                return nst_error_prefix(err, "'" MESSAGE_KEY "' is not JSON");
        if (!json_object_is_type(inner, json_type_object)) {
                r = nst_error_set(err, -EBADMSG, "ValueError",
                                  "'" MESSAGE_KEY "' must hold a JSON object, got %s",
                                  json_type_to_name(json_object_get_type(inner)));
                json_object_put(inner);
                return r;
        }
        *ret = inner;
        return 0;
}

int nst_envelope_decode(const char *body, size_t len, size_t max_bytes, json_object **ret_inner,
                        struct nst_error *err) {
        _cleanup_json_ json_object *outer = NULL;
        json_object *version, *message;
        int r;

        if (len > max_bytes)
                return nst_error_set(err, -EMSGSIZE, "ValueError",
                                     "message body is %zu bytes, over max_message_bytes (%zu)", len,
                                     max_bytes);
        if (!body)
                body = "";
        /* json-c passes invalid UTF-8 inside strings through untouched. */
        if (!nst_utf8_valid(body, len))
                return nst_error_set(err, -EBADMSG, "ValueError",
                                     "message body is not valid UTF-8");
        r = nst_json_parse(body, len, &outer, err);
        if (r < 0)
                return nst_error_prefix(err, "message body is not JSON");
        if (!json_object_is_type(outer, json_type_object))
                return nst_error_set(err, -EBADMSG, "ValueError",
                                     "message body must be a JSON object, got %s",
                                     json_type_to_name(json_object_get_type(outer)));

        /* Like oslo's deserialize_msg: only a dict with both keys is an
         * envelope; anything else is a 1.0 message used as-is. */
        if (!json_object_object_get_ex(outer, VERSION_KEY, &version) ||
            !json_object_object_get_ex(outer, MESSAGE_KEY, &message)) {
                *ret_inner = nst_steal(&outer);
                return 0;
        }
        r = check_envelope_version(version, err);
        if (r < 0)
                return r;
        if (json_object_is_type(message, json_type_string))
                return parse_inner(message, ret_inner, err);
        if (json_object_is_type(message, json_type_object)) {
                *ret_inner = json_object_get(message);
                return 0;
        }
        return nst_error_set(err, -EBADMSG, "ValueError",
                             "'" MESSAGE_KEY "' must be a string or an object, got %s",
                             json_type_to_name(json_object_get_type(message)));
}

int nst_envelope_encode(json_object *inner, char **ret_body, size_t *ret_len,
                        struct nst_error *err) {
        _cleanup_json_ json_object *outer = NULL;
        const char *text, *body;
        size_t text_len, body_len;
        char *copy;

        if (!json_object_is_type(inner, json_type_object))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "an envelope must wrap a JSON object, got %s",
                                     json_type_to_name(json_object_get_type(inner)));
        text = nst_json_to_string(inner, &text_len);
        if (!text)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        if (text_len > INT_MAX)
                return nst_error_set(err, -E2BIG, "InvalidInput",
                                     "message of %zu bytes is too large to send", text_len);

        outer = json_object_new_object();
        if (!outer ||
            nst_json_add(outer, VERSION_KEY, json_object_new_string(ENVELOPE_VERSION)) < 0 ||
            nst_json_add(outer, MESSAGE_KEY, json_object_new_string_len(text, (int)text_len)) < 0)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        body = nst_json_to_string(outer, &body_len);
        if (!body)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        copy = malloc(body_len + 1);
        if (!copy)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        memcpy(copy, body, body_len + 1);
        *ret_body = copy;
        *ret_len = body_len;
        return 0;
}
