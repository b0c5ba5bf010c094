/* json-c helpers: typed field access with errors that name the field, and a
 * cleanup attribute for json_object references.
 *
 * Ownership (json-c's rule): getters here borrow; anything returned through a
 * ret_ pointer documented as "owned" must be released with json_object_put. */
#ifndef NESTOR_MESSAGES_JSON_UTIL_H
#define NESTOR_MESSAGES_JSON_UTIL_H

#include <json.h>
#include <stdbool.h>
#include <stdint.h>

#include "messages/error.h"

static inline void nst_json_putp(json_object **o) {
        if (*o)
                json_object_put(*o);
}
#define _cleanup_json_ _cleanup_(nst_json_putp)

/* Optional getters: a missing key (or JSON null) returns 0 and leaves *ret
 * untouched; a present key of the wrong type fails with InvalidInput naming
 * `what` and the key. */
int nst_json_opt_string(json_object *obj, const char *key, const char *what, const char **ret,
                        struct nst_error *err);
int nst_json_opt_int64(json_object *obj, const char *key, const char *what, int64_t *ret,
                       struct nst_error *err);
int nst_json_opt_bool(json_object *obj, const char *key, const char *what, bool *ret,
                      struct nst_error *err);
int nst_json_opt_object(json_object *obj, const char *key, const char *what, json_object **ret,
                        struct nst_error *err);

/* InvalidInput "<what>: unexpected argument '<key>'" for the first key of obj
 * not in the NULL-terminated allowed list: a misspelled option is an error,
 * not silently ignored. */
int nst_json_check_keys(json_object *obj, const char *what, const char *const *allowed,
                        struct nst_error *err);

/* Required variants: a missing key fails with InvalidInput. */
int nst_json_req_string(json_object *obj, const char *key, const char *what, const char **ret,
                        struct nst_error *err);
int nst_json_req_object(json_object *obj, const char *key, const char *what, json_object **ret,
                        struct nst_error *err);

/* Parses exactly one JSON value from buf[0..len) (no trailing garbage, depth
 * limited). *ret is owned by the caller (NULL for the JSON text "null").
 * Errors have class ValueError, so a Python peer re-raises a real ValueError,
 * and carry json-c's reason and the byte offset. */
int nst_json_parse(const char *buf, size_t len, json_object **ret, struct nst_error *err);

/* Compact serialization without escaping '/', which is what Python emits. The
 * returned string is owned by obj (valid until obj is modified or freed). */
const char *nst_json_to_string(json_object *obj, size_t *ret_len);

/* A new JSON string, or NULL (JSON null) when s is NULL or empty: for
 * optional facts kept as C strings where "" means unknown. */
json_object *nst_json_string_or_null(const char *s);

/* True when buf[0..len) is well-formed UTF-8 (no overlongs, no surrogates). */
bool nst_utf8_valid(const char *buf, size_t len);

#endif
