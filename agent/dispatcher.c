/* Method table with oslo's version rules. The table is small (tens of
 * methods) and read-only while serving, so a flat array searched linearly is
 * both the simplest and the fastest structure here. */
#include "agent/dispatcher.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct nst_dispatcher {
        struct nst_dispatch_entry *entries;
        size_t n, cap;
};

int nst_dispatcher_new(struct nst_dispatcher **ret) {
        struct nst_dispatcher *d = calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        *ret = d;
        return 0;
}

static void entry_done(struct nst_dispatch_entry *e) {
        free(e->namespace_);
        free(e->name);
        free(e->version_str);
        free(e->owner);
}

void nst_dispatcher_free(struct nst_dispatcher *d) {
        if (!d)
                return;
        for (size_t i = 0; i < d->n; i++)
                entry_done(&d->entries[i]);
        free(d->entries);
        free(d);
}

static bool same_namespace(const char *a, const char *b) {
        if (!a || !b)
                return a == b;
        return strcmp(a, b) == 0;
}

static bool valid_method_name(const char *name) {
        if (!name || !*name || name[0] == '_')
                return false;
        for (const char *p = name; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                      (*p >= '0' && *p <= '9') || *p == '_'))
                        return false;
        return true;
}

int nst_dispatcher_add(struct nst_dispatcher *d, const char *namespace_, const struct nst_method *m,
                       const char *owner, struct nst_error *err) {
        struct nst_version v;
        int r;

        if (!valid_method_name(m->name))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "method name '%s' is not a valid identifier (letters, digits, "
                                     "'_', not starting with '_')",
                                     m->name ? m->name : "(null)");
        if (!m->fn)
                return nst_error_set(err, -EINVAL, "InvalidInput", "method %s has no handler",
                                     m->name);
        r = nst_version_parse(m->version, &v, err);
        if (r < 0)
                return nst_error_prefix(err, "method %s", m->name);

        for (size_t i = 0; i < d->n; i++) {
                const struct nst_dispatch_entry *e = &d->entries[i];
                if (same_namespace(e->namespace_, namespace_) && strcmp(e->name, m->name) == 0 &&
                    e->version.major == v.major)
                        return nst_error_set(err, -EEXIST, "InvalidInput",
                                             "method %s %u.x is already registered by %s",
                                             m->name, v.major, e->owner);
        }

        if (d->n == d->cap) {
                size_t cap = d->cap ? d->cap * 2 : 16;
                struct nst_dispatch_entry *n = realloc(d->entries, cap * sizeof(*n));
                if (!n)
                        return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
                d->entries = n;
                d->cap = cap;
        }
        struct nst_dispatch_entry e = {
                .namespace_ = namespace_ ? strdup(namespace_) : NULL,
                .name = strdup(m->name),
                .version = v,
                .version_str = strdup(m->version),
                .fn = m->fn,
                .userdata = m->userdata,
                .owner = strdup(owner ? owner : "agent"),
        };
        if (!e.name || !e.version_str || !e.owner || (namespace_ && !e.namespace_)) {
                entry_done(&e);
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        d->entries[d->n++] = e;
        return 0;
}

int nst_dispatcher_find(const struct nst_dispatcher *d, const char *namespace_, const char *name,
                        const char *version, const struct nst_dispatch_entry **ret,
                        struct nst_error *err) {
        struct nst_version req;
        const char *shown = version ? version : "1.0";
        bool name_known = false, endpoint_matches = false;

        if (nst_version_parse(version, &req, NULL) < 0)
                return nst_error_set(err, -EINVAL, "UnsupportedVersion",
                                     "Endpoint does not support RPC version %s. Attempted method: %s",
                                     shown, name);

        for (size_t i = 0; i < d->n; i++) {
                const struct nst_dispatch_entry *e = &d->entries[i];
                if (!same_namespace(e->namespace_, namespace_))
                        continue;
                bool compatible = nst_version_compatible(&e->version, &req);
                endpoint_matches |= compatible;
                if (strcmp(e->name, name) != 0)
                        continue;
                name_known = true;
                if (compatible && name[0] != '_') {
                        *ret = e;
                        return 0;
                }
        }
        if (!name_known && endpoint_matches)
                return nst_error_set(err, -ENOENT, "NoSuchMethod",
                                     "Endpoint does not support RPC method %s", name);
        return nst_error_set(err, -ENOTSUP, "UnsupportedVersion",
                             "Endpoint does not support RPC version %s. Attempted method: %s",
                             shown, name);
}

int nst_dispatcher_add_builtin(struct nst_dispatcher *d, const char *namespace_,
                               const struct nst_method *m, struct nst_error *err) {
        int r = nst_dispatcher_add(d, namespace_, m, "agent", err);
        if (r >= 0)
                d->entries[d->n - 1].io_thread = true;
        return r;
}

static int compare_entries(const void *a, const void *b) {
        const struct nst_dispatch_entry *x = *(const struct nst_dispatch_entry *const *)a;
        const struct nst_dispatch_entry *y = *(const struct nst_dispatch_entry *const *)b;
        int c = strcmp(x->namespace_ ? x->namespace_ : "", y->namespace_ ? y->namespace_ : "");
        return c ? c : strcmp(x->name, y->name);
}

json_object *nst_dispatcher_describe(const struct nst_dispatcher *d) {
        json_object *list = json_object_new_array();
        const struct nst_dispatch_entry **sorted = calloc(d->n ? d->n : 1, sizeof(*sorted));
        if (!list || !sorted) {
                free(sorted);
                json_object_put(list);
                return NULL;
        }
        for (size_t i = 0; i < d->n; i++)
                sorted[i] = &d->entries[i];
        qsort(sorted, d->n, sizeof(*sorted), compare_entries);
        for (size_t i = 0; i < d->n; i++) {
                json_object *o = json_object_new_object();
                json_object_object_add(o, "namespace",
                                       sorted[i]->namespace_ ?
                                               json_object_new_string(sorted[i]->namespace_) :
                                               NULL);
                json_object_object_add(o, "name", json_object_new_string(sorted[i]->name));
                json_object_object_add(o, "version", json_object_new_string(sorted[i]->version_str));
                json_object_object_add(o, "plugin", json_object_new_string(sorted[i]->owner));
                json_object_array_add(list, o);
        }
        free(sorted);
        return list;
}
