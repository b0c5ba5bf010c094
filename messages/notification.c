#include <errno.h>
#include <time.h>

#include "messages/ids.h"
#include "messages/internal.h"
#include "messages/json_util.h"
#include "messages/notification.h"

static const char *const priority_upper[] = {
        [NST_PRIO_AUDIT] = "AUDIT",   [NST_PRIO_DEBUG] = "DEBUG", [NST_PRIO_INFO] = "INFO",
        [NST_PRIO_WARN] = "WARN",     [NST_PRIO_ERROR] = "ERROR", [NST_PRIO_CRITICAL] = "CRITICAL",
        [NST_PRIO_SAMPLE] = "SAMPLE",
};

static const char *const priority_lower[] = {
        [NST_PRIO_AUDIT] = "audit",   [NST_PRIO_DEBUG] = "debug", [NST_PRIO_INFO] = "info",
        [NST_PRIO_WARN] = "warn",     [NST_PRIO_ERROR] = "error", [NST_PRIO_CRITICAL] = "critical",
        [NST_PRIO_SAMPLE] = "sample",
};

const char *nst_priority_upper(enum nst_priority p) {
        if ((unsigned)p >= NST_ARRAY_SIZE(priority_upper))
                return NULL;
        return priority_upper[p];
}

const char *nst_priority_lower(enum nst_priority p) {
        if ((unsigned)p >= NST_ARRAY_SIZE(priority_lower))
                return NULL;
        return priority_lower[p];
}

json_object *nst_versioned_object(const char *name, const char *ns, const char *version,
                                  json_object *data) {
        _cleanup_json_ json_object *owned = data;
        _cleanup_json_ json_object *o = NULL;

        if (!name || !ns || !version)
                return NULL;
        o = json_object_new_object();
        if (!o || nst_json_add(o, "nova_object.name", json_object_new_string(name)) < 0 ||
            nst_json_add(o, "nova_object.namespace", json_object_new_string(ns)) < 0 ||
            nst_json_add(o, "nova_object.version", json_object_new_string(version)) < 0)
                return NULL;
        data = nst_steal(&owned);
        if (json_object_object_add(o, "nova_object.data", data) < 0) {
                json_object_put(data);
                return NULL;
        }
        return nst_steal(&o);
}

int nst_notification_build(const char *publisher_id, const char *event_type,
                           enum nst_priority priority, json_object *payload, json_object *context,
                           json_object **ret, struct nst_error *err) {
        _cleanup_json_ json_object *owned = payload;
        _cleanup_json_ json_object *msg = NULL;
        char message_id[NST_UUID_STR_LEN + 1];
        char unique_id[NST_UUID_HEX_LEN + 1];
        char timestamp[NST_TIMESTAMP_LEN];
        const char *prio = nst_priority_upper(priority);
        struct timespec now;
        int r;

        if (!publisher_id || !publisher_id[0] || !event_type || !event_type[0])
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "a notification needs a publisher_id and an event_type");
        if (!prio)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "notification %s: unknown priority %d", event_type,
                                     (int)priority);

        nst_uuid_str(message_id);
        nst_uuid_hex(unique_id);
        clock_gettime(CLOCK_REALTIME, &now);
        nst_timestamp_utc((long long)now.tv_sec * 1000000 + now.tv_nsec / 1000, timestamp);

        msg = json_object_new_object();
        if (!msg || nst_json_add(msg, "message_id", json_object_new_string(message_id)) < 0 ||
            nst_json_add(msg, "publisher_id", json_object_new_string(publisher_id)) < 0 ||
            nst_json_add(msg, "event_type", json_object_new_string(event_type)) < 0 ||
            nst_json_add(msg, "priority", json_object_new_string(prio)) < 0)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        /* A NULL payload is sent as JSON null, which oslo passes through. */
        payload = nst_steal(&owned);
        if (json_object_object_add(msg, "payload", payload) < 0) {
                json_object_put(payload);
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        if (nst_json_add(msg, "timestamp", json_object_new_string(timestamp)) < 0 ||
            nst_json_add(msg, "_unique_id", json_object_new_string(unique_id)) < 0)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        r = nst_context_flatten(msg, context, err);
        if (r < 0)
                return nst_error_prefix(err, "notification %s", event_type);
        *ret = nst_steal(&msg);
        return 0;
}
