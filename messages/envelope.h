/* The oslo.messaging 2.0 envelope:
 *   {"oslo.version": "2.0", "oslo.message": "<inner JSON as a string>"}
 * Received bodies may also be bare objects (the 1.0 format). */
#ifndef NESTOR_MESSAGES_ENVELOPE_H
#define NESTOR_MESSAGES_ENVELOPE_H

#include <json.h>
#include <stddef.h>

#include "messages/error.h"

#define NST_MAX_MESSAGE_BYTES_DEFAULT (16u * 1024u * 1024u)

/* Decodes an AMQP body into the inner message object (owned by caller).
 * Checks, in order, each failing with a message that names the problem:
 * size <= max_bytes, valid UTF-8, well-formed JSON, top level is an object,
 * oslo.version (when present) is a string with major 2 and minor 0,
 * oslo.message is a string holding a JSON object or is itself an object.
 * A body without both envelope keys is returned as-is (1.0 format). */
int nst_envelope_decode(const char *body, size_t len, size_t max_bytes, json_object **ret_inner,
                        struct nst_error *err);

/* Wraps inner into a 2.0 envelope. Returns a malloc'd NUL-terminated body
 * (owned by caller) and its length. */
int nst_envelope_encode(json_object *inner, char **ret_body, size_t *ret_len,
                        struct nst_error *err);

#endif
