/* The plugin host: registries behind agent/plugin.h and module loading. */
#define NST_LOG_MODULE "host"

#include "agent/host.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "agent/clock.h"
#include "agent/log.h"
#include "messages/envelope.h"
#include "messages/json_util.h"
#include "messages/rpc_message.h"

int nst_host_new(struct nst_config *cfg, const char *host_name, struct nst_host **ret) {
        struct nst_host *h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        h->cfg = cfg;
        h->started_ms = nst_now_ms();
        h->host_name = strdup(host_name);
        pthread_mutex_init(&h->timers_lock, NULL);
        nst_timers_init(&h->timers);
        if (!h->host_name || nst_dispatcher_new(&h->dispatcher) < 0) {
                nst_host_free(h);
                return -ENOMEM;
        }
        *ret = h;
        return 0;
}

static void unload_from(struct nst_host *h, size_t first) {
        while (h->n_plugins > first) {
                struct nst_host_plugin *p = &h->plugins[--h->n_plugins];
                if (p->live && p->info->stop)
                        p->info->stop(p->priv);
                if (p->dl)
                        dlclose(p->dl);
        }
}

void nst_host_free(struct nst_host *h) {
        if (!h)
                return;
        nst_host_stop_plugins(h);
        unload_from(h, 0);
        free(h->plugins);
        for (size_t i = 0; i < h->n_reports; i++)
                free(h->reports[i].section);
        free(h->reports);
        for (size_t i = 0; i < h->n_ifaces; i++)
                free(h->ifaces[i].name);
        free(h->ifaces);
        nst_timers_done(&h->timers);
        pthread_mutex_destroy(&h->timers_lock);
        nst_dispatcher_free(h->dispatcher);
        free(h->cast_exchange);
        free(h->host_name);
        free(h);
}

static int grow(void **array, size_t n, size_t elem) {
        /* Arrays here only grow during start-up, so doubling is not worth it. */
        void *p = realloc(*array, (n + 1) * elem);
        if (!p)
                return -ENOMEM;
        *array = p;
        return 0;
}

static int init_plugin(struct nst_host *h, const struct nst_plugin_info *info, void *dl,
                       struct nst_error *err) {
        if (info->api_version != NST_PLUGIN_API_VERSION)
                return nst_error_set(err, -EINVAL, "PluginError",
                                     "plugin %s was built for plugin API %u, this agent has %u",
                                     info->name, info->api_version, NST_PLUGIN_API_VERSION);
        for (size_t i = 0; i < h->n_plugins; i++)
                if (strcmp(h->plugins[i].info->name, info->name) == 0)
                        return nst_error_set(err, -EEXIST, "PluginError",
                                             "plugin %s is loaded twice", info->name);
        if (grow((void **)&h->plugins, h->n_plugins, sizeof(*h->plugins)) < 0)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");

        void *priv = NULL;
        h->initializing = info->name;
        int r = info->init ? info->init(h, &priv, err) : 0;
        h->initializing = NULL;
        if (r < 0)
                return nst_error_prefix(err, "plugin %s", info->name);
        h->plugins[h->n_plugins++] = (struct nst_host_plugin){.info = info, .dl = dl, .priv = priv,
                                                    .live = true};
        return 0;
}

int nst_host_add_builtin(struct nst_host *h, const struct nst_plugin_info *info,
                         struct nst_error *err) {
        return init_plugin(h, info, NULL, err);
}

static int load_one(struct nst_host *h, const char *dir, const char *name, struct nst_error *err) {
        char path[PATH_MAX];
        struct stat st;

        for (const char *p = name; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' ||
                      *p == '-'))
                        return nst_error_set(err, -EINVAL, "ConfigError",
                                             "enabled_plugins: '%s' is not a plugin name", name);
        if ((size_t)snprintf(path, sizeof(path), "%s/%s.so", dir, name) >= sizeof(path))
                return nst_error_set(err, -ENAMETOOLONG, "ConfigError", "plugin_dir is too long");
        /* Only regular files: a symlink planted in the plugin directory must
         * not redirect what the agent executes. */
        if (lstat(path, &st) < 0)
                return nst_error_set(err, -errno, "PluginError", "plugin %s: %s: %s", name, path,
                                     strerror(errno));
        if (!S_ISREG(st.st_mode))
                return nst_error_set(err, -EINVAL, "PluginError",
                                     "plugin %s: %s is not a regular file", name, path);

        void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!dl)
                return nst_error_set(err, -ELIBBAD, "PluginError",
                                     "plugin %s: %s (ldd(1) shows missing libraries)", name,
                                     dlerror());
        const struct nst_plugin_info *info = dlsym(dl, "nst_plugin");
        if (!info) {
                dlclose(dl);
                return nst_error_set(err, -ELIBBAD, "PluginError",
                                     "plugin %s: %s does not export nst_plugin", name, path);
        }
        if (!info->name || strcmp(info->name, name) != 0) {
                dlclose(dl);
                return nst_error_set(err, -EINVAL, "PluginError",
                                     "plugin %s: module calls itself '%s'", name,
                                     info->name ? info->name : "(null)");
        }
        int r = init_plugin(h, info, dl, err);
        if (r < 0)
                dlclose(dl);
        return r;
}

int nst_host_load_plugins(struct nst_host *h, const char *dir, const char *const *names,
                          size_t n, struct nst_error *err) {
        size_t first = h->n_plugins;
        for (size_t i = 0; i < n; i++) {
                int r = load_one(h, dir, names[i], err);
                if (r < 0) {
                        unload_from(h, first);
                        return r;
                }
                log_info("loaded plugin %s from %s", names[i], dir);
        }
        return 0;
}

/* The notifier exists by the time plugins start: giving it the configured
 * locale ([DEFAULT] locale, catalog_dir) here, before any plugin runs, puts
 * the first notification already in that locale and fails start-up on a
 * malformed catalog. */
static int localize_notifier(struct nst_host *h, struct nst_error *err) {
        for (size_t i = 0; i < h->n_plugins; i++)
                if (h->plugins[i].started)
                        return 0; /* done by the first call; publishers may be running */
        return nst_notifier_set_locale(h->notifier,
                                       nst_config_get_string(h->cfg, "DEFAULT", "locale"),
                                       nst_config_get_string(h->cfg, "DEFAULT", "catalog_dir"),
                                       err);
}

int nst_host_start_plugins(struct nst_host *h, struct nst_error *err) {
        if (h->notifier) {
                int r = localize_notifier(h, err);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < h->n_plugins; i++) {
                struct nst_host_plugin *p = &h->plugins[i];
                if (p->started)
                        continue;
                int r = p->info->start ? p->info->start(p->priv, err) : 0;
                if (r < 0) {
                        nst_error_prefix(err, "plugin %s", p->info->name);
                        nst_host_stop_plugins(h);
                        return r;
                }
                p->started = true;
        }
        return 0;
}

void nst_host_stop_plugins(struct nst_host *h) {
        for (size_t i = h->n_plugins; i-- > 0;) {
                struct nst_host_plugin *p = &h->plugins[i];
                if (!p->live)
                        continue;
                p->live = p->started = false;
                if (p->info->stop)
                        p->info->stop(p->priv);
                p->priv = NULL;
        }
}

static const char *owner(const struct nst_host *h) {
        return h->initializing ? h->initializing : "agent";
}

int nst_host_register_method(struct nst_host *h, const char *namespace_,
                             const struct nst_method *m, struct nst_error *err) {
        return nst_dispatcher_add(h->dispatcher, namespace_, m, owner(h), err);
}

int nst_host_register_options(struct nst_host *h, const char *section,
                              const struct nst_option *opts, size_t n, struct nst_error *err) {
        return nst_config_register(h->cfg, section, opts, n, err);
}

int nst_host_register_periodic(struct nst_host *h, const char *name, int64_t interval_ms,
                               int64_t initial_delay_ms, void (*fn)(void *userdata),
                               void *userdata, struct nst_error *err) {
        if (interval_ms <= 0 || initial_delay_ms < 0 || !fn)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "periodic task %s: interval must be > 0 and a handler given",
                                     name);
        pthread_mutex_lock(&h->timers_lock);
        int r = nst_timers_add(&h->timers, name, interval_ms, initial_delay_ms, fn, userdata,
                               nst_now_ms());
        pthread_mutex_unlock(&h->timers_lock);
        if (r < 0)
                return nst_error_set(err, r, "MemoryError", "cannot add periodic task %s", name);
        return 0;
}

int nst_host_register_report(struct nst_host *h, const char *section, nst_report_fn fn,
                             void *userdata, struct nst_error *err) {
        for (size_t i = 0; i < h->n_reports; i++)
                if (strcmp(h->reports[i].section, section) == 0)
                        return nst_error_set(err, -EEXIST, "InvalidInput",
                                             "report section %s is already registered", section);
        if (grow((void **)&h->reports, h->n_reports, sizeof(*h->reports)) < 0)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        char *s = strdup(section);
        if (!s)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        h->reports[h->n_reports++] =
                (struct nst_host_report){.section = s, .fn = fn, .userdata = userdata};
        return 0;
}

int nst_host_provide(struct nst_host *h, const char *iface, void *impl, struct nst_error *err) {
        if (nst_host_lookup(h, iface))
                return nst_error_set(err, -EEXIST, "InvalidInput",
                                     "interface %s is already provided", iface);
        if (grow((void **)&h->ifaces, h->n_ifaces, sizeof(*h->ifaces)) < 0)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        char *s = strdup(iface);
        if (!s)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        h->ifaces[h->n_ifaces++] = (struct nst_host_iface){.name = s, .impl = impl};
        return 0;
}

void *nst_host_lookup(struct nst_host *h, const char *iface) {
        for (size_t i = 0; i < h->n_ifaces; i++)
                if (strcmp(h->ifaces[i].name, iface) == 0)
                        return h->ifaces[i].impl;
        return NULL;
}

const struct nst_config *nst_host_config(const struct nst_host *h) {
        return h->cfg;
}

const char *nst_host_name(const struct nst_host *h) {
        return h->host_name;
}

int nst_host_notify(struct nst_host *h, const char *event_type, enum nst_priority priority,
                    json_object *payload, json_object *context, struct nst_error *err) {
        if (!h->notifier) {
                json_object_put(payload);
                return nst_error_set(err, -ENOTCONN, "RuntimeError",
                                     "notifications are not available before the agent starts");
        }
        return nst_notifier_publish(h->notifier, event_type, priority, payload, context, err);
}

/* ---- casts through the agent's connection ---- */

#define CAST_TOPIC_MAX 200 /* "<topic>_fanout" must stay an AMQP short string */

int nst_host_attach_transport(struct nst_host *h, struct nst_outbox *outbox,
                              const char *exchange) {
        char *copy = strdup(exchange);
        if (!copy)
                return -ENOMEM;
        free(h->cast_exchange);
        h->cast_exchange = copy;
        __atomic_store_n(&h->outbox, outbox, __ATOMIC_RELEASE);
        return 0;
}

void nst_host_detach_transport(struct nst_host *h, struct nst_outbox *outbox) {
        if (h->outbox != outbox)
                return;
        __atomic_store_n(&h->outbox, NULL, __ATOMIC_RELEASE);
        __atomic_store_n(&h->connected, 0, __ATOMIC_RELEASE);
        free(h->cast_exchange);
        h->cast_exchange = NULL;
}

void nst_host_set_connected(struct nst_host *h, bool connected) {
        /* The generation goes up before the flag, so a plugin that sees the
         * connection up never pairs it with the previous generation. */
        if (connected)
                __atomic_add_fetch(&h->connection_generation, 1, __ATOMIC_ACQ_REL);
        __atomic_store_n(&h->connected, connected ? 1 : 0, __ATOMIC_RELEASE);
}

uint64_t nst_host_connection_generation(const struct nst_host *h) {
        return __atomic_load_n(&h->connection_generation, __ATOMIC_ACQUIRE);
}

static int check_cast(const char *topic, const char *method, json_object *args, unsigned flags,
                      struct nst_error *err) {
        if (!topic || !*topic || strlen(topic) > CAST_TOPIC_MAX)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "cast: the topic must be 1 to %d bytes", CAST_TOPIC_MAX);
        if (!method || !*method)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "cast to %s: the method name is empty", topic);
        if (args && !json_object_is_type(args, json_type_object))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "cast %s to %s: args must be a JSON object", method, topic);
        if (flags & ~NST_CAST_BEST_EFFORT)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "cast %s to %s: unknown flags 0x%x", method, topic,
                                     flags & ~NST_CAST_BEST_EFFORT);
        return 0;
}

int nst_host_cast(struct nst_host *h, const char *topic, bool fanout, const char *method,
                  json_object *args, unsigned flags, struct nst_error *err) {
        /* args is taken on every path; the request holds its own reference. */
        _cleanup_json_ json_object *owned_args __attribute__((unused)) = args;
        _cleanup_json_ json_object *msg = NULL;
        bool best_effort = flags & NST_CAST_BEST_EFFORT;
        char exchange[CAST_TOPIC_MAX + sizeof("_fanout")];
        char *body;
        size_t len;

        int r = check_cast(topic, method, args, flags, err);
        if (r < 0)
                return r;
        struct nst_outbox *outbox = __atomic_load_n(&h->outbox, __ATOMIC_ACQUIRE);
        if (!outbox)
                return nst_error_set(err, -ENOTCONN, "MessageDeliveryFailure",
                                     "cast %s to %s: the agent has no broker transport", method,
                                     topic);
        if (best_effort && !__atomic_load_n(&h->connected, __ATOMIC_ACQUIRE)) {
                log_debug("not connected to the broker: best-effort cast %s to %s dropped",
                          method, topic);
                return nst_error_set(err, -ENOTCONN, "MessageDeliveryFailure",
                                     "cast %s to %s dropped: not connected to the broker",
                                     method, topic);
        }

        r = nst_rpc_request_build(method, args, NULL, NULL, NULL, NULL, NULL, 0, &msg, err);
        if (r < 0)
                return r;
        r = nst_envelope_encode(msg, &body, &len, err);
        if (r < 0)
                return r;
        if (fanout)
                snprintf(exchange, sizeof(exchange), "%s_fanout", topic);
        /* oslo's fanout casts carry an empty routing key (the exchange ignores it). */
        struct nst_outbox_item *it = nst_outbox_item_publish(fanout ? exchange : h->cast_exchange,
                                                             fanout ? "" : topic, body, len,
                                                             false);
        if (!it)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        it->declare_fanout = fanout;
        it->transient = best_effort;
        nst_outbox_push(outbox, it);
        return 0;
}

json_object *nst_host_collect_report(struct nst_host *h) {
        json_object *report = json_object_new_object();
        if (!report)
                return NULL;
        for (size_t i = 0; i < h->n_reports; i++) {
                struct nst_error err = NST_ERROR_INIT;
                json_object *section = NULL;
                if (h->reports[i].fn(h->reports[i].userdata, &section, &err) < 0) {
                        /* One broken contributor must not hide the others. */
                        log_warning("report section %s failed: %s", h->reports[i].section,
                                    err.message);
                        section = json_object_new_object();
                        json_object_object_add(section, "error",
                                               json_object_new_string(err.message));
                }
                json_object_object_add(report, h->reports[i].section, section);
        }
        return report;
}

json_object *nst_host_describe_plugins(const struct nst_host *h) {
        json_object *list = json_object_new_array();
        for (size_t i = 0; list && i < h->n_plugins; i++) {
                const struct nst_plugin_info *info = h->plugins[i].info;
                json_object *o = json_object_new_object();
                json_object_object_add(o, "name", json_object_new_string(info->name));
                json_object_object_add(o, "description",
                                       json_object_new_string(info->description ?
                                                                      info->description :
                                                                      ""));
                json_object_array_add(list, o);
        }
        return list;
}
