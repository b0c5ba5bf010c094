/* The inventory plugin: what the node has and what changed, on the bus.
 *
 * Other plugins register collections (inventory_iface.h); this plugin pulls
 * them into a versioned store (store.h) when a report is due or a query
 * asks, adds the host's own sections (topology, memory, disk, and every
 * plugin's report section), and
 *   - answers inventory_query / inventory_changes / inventory_report;
 *   - every report_interval publishes a report carrying only what changed
 *     since the last published one (a full snapshot first and after every
 *     reconnection), as a best-effort fanout cast: a report the broker never
 *     got is not queued, the next one simply starts from the last report
 *     that went out;
 *   - publishes the service liveness report (liveness.h).
 * The plugin owns no other plugin's logic: it only stores what they list. */
#define NST_LOG_MODULE "inventory"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/fs_util.h"
#include "agent/log.h"
#include "agent/plugin.h"
#include "messages/json_util.h"
#include "plugins/inventory/inventory_iface.h"
#include "plugins/inventory/liveness.h"
#include "plugins/inventory/store.h"
#include "plugins/inventory/topology.h"

#define SECTION "inventory"
#define MAX_COLLECTIONS 32
#define HOST_TYPE "host"

static const struct nst_option options[] = {
        {"report_topic", NST_OPT_STRING, "nestor-inventory",
         "Topic of the periodic inventory reports (a fanout cast of method inventory_report: "
         "any oslo RPC server on <topic> with fanout=True receives them)"},
        {"reports", NST_OPT_BOOL, "true",
         "Publish inventory reports every report_interval (queries work either way)"},
        {"change_log_size", NST_OPT_INT, "65536",
         "Changes kept for inventory_changes; an older `since` must take a full snapshot",
         1024, 16777216},
};

struct collection {
        char type[NST_STORE_NAME_MAX];
        nst_inventory_list_fn list;
        void *userdata;
};

struct inv_plugin {
        struct nst_host *host;
        struct nst_inventory_iface iface;
        struct nst_liveness *live;
        pthread_mutex_t lock;          /* everything below */
        struct nst_store *store;
        struct collection colls[MAX_COLLECTIONS];
        size_t n_colls;
        const char *state_path;
        const char *report_topic;
        bool reports;
        /* The last report that reached the broker. */
        uint64_t reported_version;
        uint64_t reported_generation;  /* connection generation it went out on */
        bool reported_any;
        uint64_t reports_sent, reports_full;
        /* What the instances use, from the last pull of "instance". */
        bool usage_known;
        int64_t vcpus_used, memory_mb_used, instances;
        double last_report_cpu_ms;
        size_t last_report_bytes;
};

/* ---- the interface other plugins use ---- */

static enum nst_store_kind store_kind(enum nst_inventory_kind k) {
        switch (k) {
        case NST_INV_KIND_INT:
                return NST_STORE_INT;
        case NST_INV_KIND_BOOL:
                return NST_STORE_BOOL;
        case NST_INV_KIND_FLOAT:
                return NST_STORE_FLOAT;
        case NST_INV_KIND_OBJECT:
                return NST_STORE_OBJECT;
        case NST_INV_KIND_ARRAY:
                return NST_STORE_ARRAY;
        case NST_INV_KIND_STRING:
                break;
        }
        return NST_STORE_STRING;
}

static int define_type(struct inv_plugin *p, const char *type,
                       const struct nst_inventory_field *fields, size_t n,
                       struct nst_error *err) {
        struct nst_store_field sf[64];
        if (n > NST_ARRAY_SIZE(sf))
                return nst_error_set(err, -E2BIG, "InvalidInput",
                                     "collection %s: at most %zu fields", type, NST_ARRAY_SIZE(sf));
        for (size_t i = 0; i < n; i++)
                sf[i] = (struct nst_store_field){fields[i].name, store_kind(fields[i].kind)};
        return nst_store_define(p->store, type, sf, n, err);
}

static int open_store(struct inv_plugin *p, struct nst_error *err);

static int register_collection(void *self, const char *type,
                               const struct nst_inventory_field *fields, size_t n_fields,
                               nst_inventory_list_fn list, void *userdata,
                               struct nst_error *err) {
        struct inv_plugin *p = self;
        pthread_mutex_lock(&p->lock);
        /* Other plugins register from their start(), which may come before
         * this plugin's: the store opens on first use (the config is
         * resolved by then). */
        int r = p->store ? 0 : open_store(p, err);
        if (r >= 0 && (p->n_colls == MAX_COLLECTIONS || strlen(type) >= NST_STORE_NAME_MAX ||
                       strcmp(type, HOST_TYPE) == 0))
                r = nst_error_set(err, -EINVAL, "InvalidInput",
                                  "collection %s: reserved, too long, or too many collections",
                                  type);
        for (size_t i = 0; r >= 0 && i < p->n_colls; i++)
                if (strcmp(p->colls[i].type, type) == 0)
                        r = nst_error_set(err, -EEXIST, "InvalidInput",
                                          "collection %s is already registered", type);
        if (r >= 0)
                r = define_type(p, type, fields, n_fields, err);
        if (r >= 0) {
                struct collection *c = &p->colls[p->n_colls++];
                snprintf(c->type, sizeof(c->type), "%s", type);
                c->list = list;
                c->userdata = userdata;
        }
        pthread_mutex_unlock(&p->lock);
        return r;
}

/* ---- pulling ---- */

/* Host objects carry their section's keys as properties (not queryable:
 * their shape is each plugin's), so a report carries the keys that
 * changed, not whole sections. */
static const struct nst_inventory_field host_fields[] = {
        {"threads", NST_INV_KIND_INT},
        {"sockets", NST_INV_KIND_INT},
        {"total_mb", NST_INV_KIND_INT},
        {"vcpus_used", NST_INV_KIND_INT},
        {"memory_mb_used", NST_INV_KIND_INT},
};

static void add_section(json_object *all, const char *id, json_object *section) {
        if (!json_object_is_type(section, json_type_object)) {
                json_object *o = json_object_new_object();
                json_object_object_add(o, "value", section);
                section = o;
        }
        json_object_object_add(all, id, section);
}

/* Sums what the instances take, as the "usage" section shows it. */
static void note_usage(struct inv_plugin *p, json_object *instances) {
        int64_t vcpus = 0, memory = 0, n = 0;
        json_object_object_foreach(instances, id, o) {
                (void)id;
                vcpus += json_object_get_int64(json_object_object_get(o, "vcpus"));
                memory += json_object_get_int64(json_object_object_get(o, "memory_mb"));
                n++;
        }
        pthread_mutex_lock(&p->lock);
        p->usage_known = true;
        p->vcpus_used = vcpus;
        p->memory_mb_used = memory;
        p->instances = n;
        pthread_mutex_unlock(&p->lock);
}

static json_object *int_or_null(bool known, int64_t v) {
        return known ? json_object_new_int64(v) : NULL;
}

/* vCPUs and memory: what the host has and what its instances take. */
static json_object *usage_section(struct inv_plugin *p, json_object *topology,
                                  json_object *memory) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "vcpus_total",
                               json_object_get(json_object_object_get(topology, "threads")));
        json_object_object_add(o, "memory_mb_total",
                               json_object_get(json_object_object_get(memory, "total_mb")));
        pthread_mutex_lock(&p->lock);
        json_object_object_add(o, "vcpus_used", int_or_null(p->usage_known, p->vcpus_used));
        json_object_object_add(o, "memory_mb_used",
                               int_or_null(p->usage_known, p->memory_mb_used));
        json_object_object_add(o, "instances", int_or_null(p->usage_known, p->instances));
        pthread_mutex_unlock(&p->lock);
        return o;
}

/* The host's sections, one object each. */
static json_object *host_objects(struct inv_plugin *p) {
        json_object *all = json_object_new_object();
        json_object *topology = nst_topology_json("/sys"), *memory = nst_memory_json(
                                                                   "/proc/meminfo");
        add_section(all, "usage", usage_section(p, topology, memory));
        add_section(all, "topology", topology);
        add_section(all, "memory", memory);
        add_section(all, "disk", nst_disk_json(p->state_path));
        json_object *report = nst_host_collect_report(p->host);
        json_object_object_foreach(report, name, section) {
                char id[NST_STORE_ID_MAX];
                snprintf(id, sizeof(id), "plugin:%s", name);
                add_section(all, id, json_object_get(section));
        }
        json_object_put(report);
        return all;
}

/* Pulls type (NULL: everything) into the store. Providers are called
 * without the lock (they take their own); a provider that fails keeps its
 * previous objects. */
static void refresh(struct inv_plugin *p, const char *type) {
        struct collection colls[MAX_COLLECTIONS];
        pthread_mutex_lock(&p->lock);
        size_t n = p->n_colls;
        memcpy(colls, p->colls, n * sizeof(*colls));
        pthread_mutex_unlock(&p->lock);
        for (size_t i = 0; i <= n; i++) {
                const char *t = i < n ? colls[i].type : HOST_TYPE;
                if (type && strcmp(type, t) != 0)
                        continue;
                struct nst_error err = NST_ERROR_INIT;
                json_object *objs = NULL;
                int r = 0;
                if (i < n)
                        r = colls[i].list(colls[i].userdata, &objs, &err);
                else
                        objs = host_objects(p);
                if (r >= 0 && strcmp(t, "instance") == 0)
                        note_usage(p, objs);
                if (r < 0) {
                        log_debug("inventory: %s not refreshed: %s", t, err.message);
                        continue;
                }
                pthread_mutex_lock(&p->lock);
                r = nst_store_sync(p->store, t, objs, &err);
                pthread_mutex_unlock(&p->lock);
                if (r < 0)
                        log_warning("inventory: %s: %s", t, err.message);
        }
}

static bool known_type(struct inv_plugin *p, const char *type) {
        if (strcmp(type, HOST_TYPE) == 0)
                return true;
        pthread_mutex_lock(&p->lock);
        bool found = false;
        for (size_t i = 0; i < p->n_colls && !found; i++)
                found = strcmp(p->colls[i].type, type) == 0;
        pthread_mutex_unlock(&p->lock);
        return found;
}

/* ---- methods ---- */

static int unknown_type(struct inv_plugin *p, const char *method, const char *type,
                        struct nst_error *err) {
        char known[512] = HOST_TYPE;
        size_t len = strlen(known);
        pthread_mutex_lock(&p->lock);
        for (size_t i = 0; i < p->n_colls && len < sizeof(known); i++)
                len += (size_t)snprintf(known + len, sizeof(known) - len, ", %s",
                                        p->colls[i].type);
        pthread_mutex_unlock(&p->lock);
        return nst_error_set(err, -EINVAL, "InvalidInput",
                             "%s: unknown type '%.64s' (this node has: %s)", method, type, known);
}

static int inventory_query(struct nst_call *call, json_object *args, void *ud, json_object **ret,
                           struct nst_error *err) {
        struct inv_plugin *p = ud;
        static const char *const allowed[] = {"type", "fields", "filter", "limit", "marker",
                                              NULL};
        const char *type = NULL, *marker = NULL;
        int64_t limit = 0;
        json_object *fields = NULL, *filter = NULL;
        int r = nst_json_check_keys(args, "inventory_query", allowed, err);
        if (r < 0 || (r = nst_json_req_string(args, "type", "inventory_query", &type, err)) < 0 ||
            (r = nst_json_opt_string(args, "marker", "inventory_query", &marker, err)) < 0 ||
            (r = nst_json_opt_int64(args, "limit", "inventory_query", &limit, err)) < 0)
                return r;
        json_object_object_get_ex(args, "fields", &fields);
        json_object_object_get_ex(args, "filter", &filter);
        if (!known_type(p, type))
                return unknown_type(p, "inventory_query", type, err);
        refresh(p, type);
        pthread_mutex_lock(&p->lock);
        r = nst_store_query(p->store, type, fields, filter, limit, marker, ret, err);
        pthread_mutex_unlock(&p->lock);
        return r < 0 ? nst_error_prefix(err, "inventory_query") : 0;
}

static int inventory_changes(struct nst_call *call, json_object *args, void *ud, json_object **ret,
                             struct nst_error *err) {
        struct inv_plugin *p = ud;
        static const char *const allowed[] = {"since", "epoch", "type", "limit", NULL};
        const char *type = NULL, *epoch = NULL;
        int64_t since = -1, limit = 0;
        int r = nst_json_check_keys(args, "inventory_changes", allowed, err);
        if (r >= 0 && !json_object_object_get_ex(args, "since", NULL))
                r = nst_error_set(err, -EINVAL, "InvalidInput",
                                  "inventory_changes: since is required (0 for everything the "
                                  "change log still holds; a version from a previous answer)");
        if (r < 0 ||
            (r = nst_json_opt_int64(args, "since", "inventory_changes", &since, err)) < 0 ||
            (r = nst_json_opt_string(args, "epoch", "inventory_changes", &epoch, err)) < 0 ||
            (r = nst_json_opt_string(args, "type", "inventory_changes", &type, err)) < 0 ||
            (r = nst_json_opt_int64(args, "limit", "inventory_changes", &limit, err)) < 0)
                return r;
        if (since < 0)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "inventory_changes: since must be >= 0, got %lld",
                                     (long long)since);
        if (type && !known_type(p, type))
                return unknown_type(p, "inventory_changes", type, err);
        refresh(p, type);
        pthread_mutex_lock(&p->lock);
        r = nst_store_changes(p->store, (uint64_t)since, epoch, type, limit, ret, err);
        pthread_mutex_unlock(&p->lock);
        return r < 0 ? nst_error_prefix(err, "inventory_changes") : 0;
}

/* The report body: a full snapshot, or the changes since the last report
 * that went out. Under p->lock. */
static int build_report(struct inv_plugin *p, bool full, json_object **ret,
                        struct nst_error *err) {
        json_object *body = NULL;
        int r;
        if (full) {
                r = nst_store_snapshot(p->store, NULL, &body, err);
        } else {
                r = nst_store_changes(p->store, p->reported_version, NULL, NULL,
                                      NST_STORE_CHANGES_LIMIT_MAX, &body, err);
                if (r == -ESTALE || (r < 0 && strcmp(err->cls, "ChangesExpired") == 0)) {
                        nst_error_clear(err);
                        full = true;
                        r = nst_store_snapshot(p->store, NULL, &body, err);
                }
        }
        if (r < 0)
                return r;
        json_object_object_add(body, "host", json_object_new_string(nst_host_name(p->host)));
        json_object_object_add(body, "full", json_object_new_boolean(full));
        if (!full)
                json_object_object_add(body, "since",
                                       json_object_new_int64((int64_t)p->reported_version));
        *ret = body;
        return 0;
}

static int inventory_report(struct nst_call *call, json_object *args, void *ud, json_object **ret,
                            struct nst_error *err) {
        struct inv_plugin *p = ud;
        static const char *const allowed[] = {"full", NULL};
        bool full = true;
        int r = nst_json_check_keys(args, "inventory_report", allowed, err);
        if (r < 0 || (r = nst_json_opt_bool(args, "full", "inventory_report", &full, err)) < 0)
                return r;
        refresh(p, NULL);
        pthread_mutex_lock(&p->lock);
        r = build_report(p, full, ret, err);
        if (r >= 0) {
                json_object *stats = json_object_new_object();
                json_object_object_add(stats, "reports_sent",
                                       json_object_new_int64((int64_t)p->reports_sent));
                json_object_object_add(stats, "full_reports_sent",
                                       json_object_new_int64((int64_t)p->reports_full));
                json_object_object_add(stats, "last_report_bytes",
                                       json_object_new_int64((int64_t)p->last_report_bytes));
                json_object_object_add(stats, "last_report_cpu_ms",
                                       json_object_new_double(p->last_report_cpu_ms));
                json_object_object_add(*ret, "stats", stats);
        }
        pthread_mutex_unlock(&p->lock);
        return r;
}

/* ---- periodic reports ---- */

static double thread_cpu_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void publish_report(void *ud) {
        struct inv_plugin *p = ud;
        double cpu0 = thread_cpu_ms();
        refresh(p, NULL);
        pthread_mutex_lock(&p->lock);
        uint64_t generation = nst_host_connection_generation(p->host);
        /* After a reconnection the consumers may have missed anything:
         * start them again from a full snapshot. */
        bool full = !p->reported_any || generation != p->reported_generation;
        uint64_t version = nst_store_version(p->store);
        struct nst_error err = NST_ERROR_INIT;
        json_object *body = NULL;
        bool nothing_new = !full && version == p->reported_version;
        int r = nothing_new ? 0 : build_report(p, full, &body, &err);
        pthread_mutex_unlock(&p->lock);
        if (nothing_new)
                return;
        if (r < 0) {
                log_warning("inventory report not built: %s", err.message);
                return;
        }
        full = json_object_get_boolean(json_object_object_get(body, "full"));
        /* A report cut by the change limit covers up to its own version;
         * the next one continues from there. */
        version = (uint64_t)json_object_get_int64(json_object_object_get(body, "version"));
        size_t bytes = strlen(json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN));
        json_object *args = json_object_new_object();
        json_object_object_add(args, "report", body);
        r = nst_host_cast(p->host, p->report_topic, true, "inventory_report", args,
                          NST_CAST_BEST_EFFORT, &err);
        double cpu = thread_cpu_ms() - cpu0;
        pthread_mutex_lock(&p->lock);
        if (r >= 0) {
                p->reported_version = version;
                p->reported_generation = generation;
                p->reported_any = true;
                p->reports_sent++;
                p->reports_full += full;
                p->last_report_bytes = bytes;
                p->last_report_cpu_ms = cpu;
        }
        pthread_mutex_unlock(&p->lock);
        if (r < 0)
                log_debug("inventory report not published (the next one catches up): %s",
                          err.message);
}

static void liveness_tick(void *ud) {
        struct inv_plugin *p = ud;
        nst_liveness_tick(p->live);
}

/* ---- module ---- */

static const struct nst_method methods[] = {
        {"inventory_query", "1.0", inventory_query, NULL},
        {"inventory_changes", "1.0", inventory_changes, NULL},
        {"inventory_report", "1.0", inventory_report, NULL},
};

static void plugin_free(struct inv_plugin *p) {
        if (!p)
                return;
        nst_liveness_free(p->live);
        nst_store_free(p->store);
        pthread_mutex_destroy(&p->lock);
        free(p);
}

static int init(struct nst_host *host, void **ret_priv, struct nst_error *err) {
        struct inv_plugin *p = calloc(1, sizeof(*p));
        if (!p)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        p->host = host;
        pthread_mutex_init(&p->lock, NULL);
        p->iface = (struct nst_inventory_iface){p, register_collection};
        int r = nst_host_register_options(host, SECTION, options, NST_ARRAY_SIZE(options), err);
        if (r >= 0)
                r = nst_host_register_options(host, SECTION, nst_liveness_options,
                                              nst_liveness_n_options, err);
        for (size_t i = 0; r >= 0 && i < NST_ARRAY_SIZE(methods); i++) {
                struct nst_method m = methods[i];
                m.userdata = p;
                r = nst_host_register_method(host, NULL, &m, err);
        }
        if (r >= 0)
                r = nst_host_provide(host, NST_INVENTORY_IFACE, &p->iface, err);
        if (r < 0) {
                plugin_free(p);
                return r;
        }
        *ret_priv = p;
        return 0;
}

/* Opens the store under state_path (once). */
static int open_store(struct inv_plugin *p, struct nst_error *err) {
        const struct nst_config *cfg = nst_host_config(p->host);
        p->state_path = nst_config_get_string(cfg, "DEFAULT", "state_path");
        /* 0711: QEMU (another user) must reach the instances' disks under it. */
        int r = nst_mkdir_p(p->state_path, 0711);
        if (r < 0)
                return nst_error_set(err, r, "StateFileError",
                                     "inventory: cannot create state_path %s: %s", p->state_path,
                                     strerror(-r));
        char path[4096];
        snprintf(path, sizeof(path), "%s/inventory.version", p->state_path);
        const struct nst_store_options so = {
                .change_log_size = (size_t)nst_config_get_int(cfg, SECTION, "change_log_size"),
        };
        if ((r = nst_store_open(path, &so, &p->store, err)) < 0)
                return r;
        return define_type(p, HOST_TYPE, host_fields, NST_ARRAY_SIZE(host_fields), err);
}

static int start(void *priv, struct nst_error *err) {
        struct inv_plugin *p = priv;
        const struct nst_config *cfg = nst_host_config(p->host);
        p->report_topic = nst_config_get_string(cfg, SECTION, "report_topic");
        p->reports = nst_config_get_bool(cfg, SECTION, "reports");
        pthread_mutex_lock(&p->lock);
        int r = p->store ? 0 : open_store(p, err);
        pthread_mutex_unlock(&p->lock);
        if (r < 0 || (r = nst_liveness_new(p->host, cfg, &p->live, err)) < 0)
                return r;
        const struct nst_liveness_timing *t = nst_liveness_timing(p->live);
        r = nst_host_register_periodic(p->host, "service_report", t->interval_ms,
                                       t->initial_delay_ms, liveness_tick, p, err);
        if (r >= 0 && p->reports)
                r = nst_host_register_periodic(p->host, "inventory_report", t->interval_ms,
                                               t->initial_delay_ms, publish_report, p, err);
        return r;
}

static void stop(void *priv) {
        plugin_free(priv);
}

NST_PLUGIN_EXPORT const struct nst_plugin_info nst_plugin = {
        .api_version = NST_PLUGIN_API_VERSION,
        .name = "inventory",
        .description = "liveness, resource reports and property queries on the bus",
        .init = init,
        .start = start,
        .stop = stop,
};
