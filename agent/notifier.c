#define NST_LOG_MODULE "notifier"

#include "agent/notifier.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/log.h"
#include "messages/catalog.h"
#include "messages/envelope.h"
#include "messages/json_util.h"

struct nst_notifier {
        char *exchange;
        char **topics;
        size_t n_topics;
        char *publisher_id;
        const char *host;          /* in publisher_id, after "<source>:" */
        bool enabled;
        struct nst_outbox *outbox;
        struct nst_catalog *catalog;
};

void nst_notifier_free(struct nst_notifier *n) {
        if (!n)
                return;
        for (size_t i = 0; i < n->n_topics; i++)
                free(n->topics[i]);
        free(n->topics);
        free(n->exchange);
        free(n->publisher_id);
        nst_catalog_free(n->catalog);
        free(n);
}

int nst_notifier_new(const struct nst_notifier_config *c, struct nst_outbox *outbox,
                     struct nst_notifier **ret) {
        struct nst_notifier *n = calloc(1, sizeof(*n));
        if (!n)
                return -ENOMEM;
        n->outbox = outbox;
        n->enabled = c->enabled;
        n->exchange = strdup(c->exchange);
        n->publisher_id = strdup(c->publisher_id);
        size_t count = 0;
        while (c->topics && c->topics[count])
                count++;
        n->topics = calloc(count ? count : 1, sizeof(char *));
        /* English until nst_notifier_set_locale(): loading it fails only on ENOMEM. */
        if (!n->exchange || !n->publisher_id || !n->topics ||
            nst_catalog_load(NULL, NULL, &n->catalog, NULL) < 0) {
                nst_notifier_free(n);
                return -ENOMEM;
        }
        const char *colon = strchr(n->publisher_id, ':');
        n->host = colon ? colon + 1 : n->publisher_id;
        for (; n->n_topics < count; n->n_topics++) {
                n->topics[n->n_topics] = strdup(c->topics[n->n_topics]);
                if (!n->topics[n->n_topics]) {
                        nst_notifier_free(n);
                        return -ENOMEM;
                }
        }
        *ret = n;
        return 0;
}

int nst_notifier_set_locale(struct nst_notifier *n, const char *locale, const char *catalog_dir,
                            struct nst_error *err) {
        struct nst_catalog *c;
        int r = nst_catalog_load(locale, catalog_dir, &c, err);
        if (r < 0)
                return r;
        if (nst_catalog_warning(c))
                log_warning("%s", nst_catalog_warning(c));
        nst_catalog_free(n->catalog);
        n->catalog = c;
        return 0;
}

/* Adds v under key, taking v in every case (NULL: its allocation failed). */
static int add(json_object *o, const char *key, json_object *v) {
        if (!v || json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

/* The "nestor_event" block: the event's stable key and its sentence. Added
 * at the payload's top level, never inside nova_object.data. */
static int add_event_block(const struct nst_notifier *n, const char *event_type,
                           json_object *payload, struct nst_error *err) {
        _cleanup_free_ char *message = NULL;
        _cleanup_json_ json_object *block = NULL;
        const char *locale;

        if (!event_type || !json_object_is_type(payload, json_type_object))
                return 0; /* nothing to attach it to */
        if (nst_catalog_render(n->catalog, event_type, payload, n->host, &message, &locale) < 0 ||
            !(block = json_object_new_object()) ||
            add(block, "key", json_object_new_string(event_type)) < 0 ||
            add(block, "message", json_object_new_string(message)) < 0 ||
            add(block, "locale", json_object_new_string(locale)) < 0 ||
            add(payload, "nestor_event", nst_steal(&block)) < 0)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        return 0;
}

int nst_notifier_publish(struct nst_notifier *n, const char *event_type,
                         enum nst_priority priority, json_object *payload, json_object *context,
                         struct nst_error *err) {
        _cleanup_json_ json_object *msg = NULL;
        int r;

        if (!n->enabled) {
                json_object_put(payload);
                return 0;
        }
        r = add_event_block(n, event_type, payload, err);
        if (r < 0) {
                json_object_put(payload);
                return r;
        }
        r = nst_notification_build(n->publisher_id, event_type, priority, payload, context, &msg,
                                   err);
        if (r < 0)
                return r;

        for (size_t i = 0; i < n->n_topics; i++) {
                char *body;
                size_t len;
                char key[256];

                r = nst_envelope_encode(msg, &body, &len, err);
                if (r < 0)
                        return r;
                snprintf(key, sizeof(key), "%s.%s", n->topics[i], nst_priority_lower(priority));
                struct nst_outbox_item *item =
                        nst_outbox_item_publish(n->exchange, key, body, len, false);
                if (!item)
                        return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
                item->declare_queue = true;
                nst_outbox_push(n->outbox, item);
        }
        return 0;
}
