/* oslo notifications (messagingv2 driver) in nova's versioned shape. */
#ifndef NESTOR_MESSAGES_NOTIFICATION_H
#define NESTOR_MESSAGES_NOTIFICATION_H

#include <json.h>

#include "messages/error.h"

enum nst_priority {
        NST_PRIO_AUDIT,
        NST_PRIO_DEBUG,
        NST_PRIO_INFO,
        NST_PRIO_WARN,
        NST_PRIO_ERROR,
        NST_PRIO_CRITICAL,
        NST_PRIO_SAMPLE,
};

const char *nst_priority_upper(enum nst_priority p); /* "INFO" */
const char *nst_priority_lower(enum nst_priority p); /* "info", for routing keys */

/* Wraps data as a versioned object: {"nova_object.name": name,
 * "nova_object.namespace": ns, "nova_object.version": version,
 * "nova_object.data": data}. Takes ownership of data. */
json_object *nst_versioned_object(const char *name, const char *ns, const char *version,
                                  json_object *data);

/* Builds the inner notification message: message_id (uuid with dashes),
 * publisher_id, event_type, priority (upper case), payload, timestamp
 * (now, UTC, Python's format), _unique_id, and _context_* from context.
 * `payload` is taken (ownership); `context` is borrowed and may be NULL. */
int nst_notification_build(const char *publisher_id, const char *event_type,
                           enum nst_priority priority, json_object *payload,
                           json_object *context, json_object **ret, struct nst_error *err);

#endif
