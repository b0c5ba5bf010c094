/* Helpers shared by the messages/ sources only. Not installed, not exported
 * from libnestor-messages: the public surface stays the per-module headers. */
#ifndef NESTOR_MESSAGES_INTERNAL_H
#define NESTOR_MESSAGES_INTERNAL_H

#include <json.h>

#include "messages/error.h"

#define NST_HIDDEN __attribute__((visibility("hidden")))

/* Adds val under key, taking ownership of val in every case. A NULL val means
 * allocation failed upstream, so callers can pass json_object_new_*()
 * directly; use json_object_object_add() itself to store a JSON null.
 * Returns 0 or -ENOMEM. */
NST_HIDDEN int nst_json_add(json_object *obj, const char *key, json_object *val);

/* A JSON value's type as a Python client would call it ("int", "list", ...),
 * for messages about fields of a request. */
NST_HIDDEN const char *nst_json_type_name(json_object *obj);

/* Copies every key of context into msg as "_context_<key>" (values shared by
 * reference). context may be NULL; otherwise it must be an object. */
NST_HIDDEN int nst_context_flatten(json_object *msg, json_object *context, struct nst_error *err);

#endif
