/* Publishes oslo notifications (messagingv2 envelope, versioned payloads)
 * through the outbox, so any thread may notify and the I/O thread publishes
 * with publisher confirms. Like oslo's publisher, it asks the I/O thread to
 * declare and bind a queue named after the routing key first, so
 * notifications sent before a consumer exists are kept.
 *
 * Every payload object gets a top-level "nestor_event" block next to
 * nova_object.*, never inside nova_object.data, which keeps exactly the
 * fields of its versioned schema (obj_from_primitive only reads the
 * nova_object.* keys): {"key": <event_type>, "message": <sentence from the
 * message catalog>, "locale": <locale of that sentence>}. */
#ifndef NESTOR_AGENT_NOTIFIER_H
#define NESTOR_AGENT_NOTIFIER_H

#include <json.h>
#include <stdbool.h>

#include "agent/outbox.h"
#include "messages/error.h"
#include "messages/notification.h"

struct nst_notifier_config {
        const char *exchange;       /* control_exchange */
        const char *const *topics;  /* [notifications] topics, NULL-terminated */
        const char *publisher_id;   /* nestor-compute:<host> */
        bool enabled;               /* driver != noop */
};

struct nst_notifier;

int nst_notifier_new(const struct nst_notifier_config *c, struct nst_outbox *outbox,
                     struct nst_notifier **ret);
void nst_notifier_free(struct nst_notifier *n);

/* Loads the message catalog for locale from catalog_dir (messages/catalog.h)
 * and uses it from then on; until then messages are in English. Logs a
 * warning when the locale has no catalog file. Call before notifications
 * are published: the catalog is not swapped under concurrent publishers.
 * Errors: ConfigError (malformed catalog), MemoryError. */
int nst_notifier_set_locale(struct nst_notifier *n, const char *locale, const char *catalog_dir,
                            struct nst_error *err);

/* payload taken, context borrowed (may be NULL). One message per topic. */
int nst_notifier_publish(struct nst_notifier *n, const char *event_type,
                         enum nst_priority priority, json_object *payload, json_object *context,
                         struct nst_error *err);

#endif
