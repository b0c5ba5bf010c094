#include "agent/notifier.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "messages/envelope.h"
#include "messages/json_util.h"

struct nst_notifier {
        char *exchange;
        char **topics;
        size_t n_topics;
        char *publisher_id;
        bool enabled;
        struct nst_outbox *outbox;
};

void nst_notifier_free(struct nst_notifier *n) {
        if (!n)
                return;
        for (size_t i = 0; i < n->n_topics; i++)
                free(n->topics[i]);
        free(n->topics);
        free(n->exchange);
        free(n->publisher_id);
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
        if (!n->exchange || !n->publisher_id || !n->topics) {
                nst_notifier_free(n);
                return -ENOMEM;
        }
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

int nst_notifier_publish(struct nst_notifier *n, const char *event_type,
                         enum nst_priority priority, json_object *payload, json_object *context,
                         struct nst_error *err) {
        _cleanup_json_ json_object *msg = NULL;
        int r;

        if (!n->enabled) {
                json_object_put(payload);
                return 0;
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
