/* The libvirt plugin's entry point: options, the shared connection, host
 * capabilities, profiles, the domain XML a spec would get, the method table
 * (the instance lifecycle lives in spawn.c and lifecycle.c) and the state
 * report. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sys/random.h>

#include "agent/plugin.h"
#include "messages/json_util.h"
#include "plugins/libvirt/domain_xml.h"
#include "plugins/libvirt/guest_spec.h"
#include "plugins/libvirt/host_caps.h"
#include "plugins/libvirt/lv_plugin.h"
#include "plugins/libvirt/lv_util.h"
#include "plugins/libvirt/profiles.h"

#define SECTION NST_LV_SECTION
/* Reconnection backoff to libvirtd: a restarted daemon is back within
 * seconds, a long outage is polled without flooding the log. */
#define RECONNECT_MIN_MS 500
#define RECONNECT_MAX_MS 15000

static const char *const virt_types[] = {"auto", "kvm", "qemu", NULL};

static const struct nst_option options[] = {
        {"uri", NST_OPT_STRING, "test:///default",
         "libvirt connection URI (qemu:///system on a compute node)"},
        {"virt_type", NST_OPT_ENUM, "auto",
         "Domain type: auto (kvm when /dev/kvm works, else qemu/TCG), kvm or qemu",
         .choices = virt_types},
        {"cpu_disabled_features", NST_OPT_LIST, "",
         "CPU features disabled for host-model/host-passthrough guests on this host, added to "
         "the detected ones (e.g. arch-capabilities)"},
        {"detect_cpu_disabled_features", NST_OPT_BOOL, "true",
         "Detect CPU features this host cannot give a host-model/host-passthrough guest"},
        {"profile", NST_OPT_MULTI, NULL,
         "Adjust or add a guest profile: a JSON object, e.g. {\"name\": \"nested-esxi\", "
         "\"nic_model\": \"e1000e\"} (repeatable; see docs/libvirt.md)"},
        {"image_dirs", NST_OPT_LIST, "",
         "Directories base images may come from (empty: <state_path>/images); a spec path "
         "resolving elsewhere is refused"},
        {"qemu_img", NST_OPT_STRING, "/usr/bin/qemu-img",
         "qemu-img binary that creates instance disks (absolute path)"},
        {"keepalive_interval", NST_OPT_INT, "5",
         "Seconds between libvirt keepalive probes (0 disables keepalive)", 0, 3600},
        {"keepalive_count", NST_OPT_INT, "5",
         "Unanswered keepalive probes before the libvirt connection counts as lost", 1, 100},
};

static int probe(struct lv_plugin *p, struct nst_host_caps **ret, struct nst_error *err) {
        virConnectPtr conn;
        int r = nst_lv_conn_get(p->conn, &conn, err);
        if (r < 0)
                return r;
        struct nst_host_probe_opts opts = {
                .virt_type = p->virt_type,
                .cpu_disable = p->cpu_disable,
                .n_cpu_disable = p->n_cpu_disable,
                .no_detect_cpu_disable = !p->detect,
        };
        r = nst_host_caps_probe(conn, &opts, ret, err);
        virConnectClose(conn);
        return r;
}

int nst_lv_lock_caps(struct lv_plugin *p, bool refresh, struct nst_error *err) {
        pthread_mutex_lock(&p->lock);
        if (p->caps && !refresh)
                return 0;
        pthread_mutex_unlock(&p->lock);
        struct nst_host_caps *fresh = NULL;
        int r = probe(p, &fresh, err);
        if (r < 0)
                return r;
        pthread_mutex_lock(&p->lock);
        nst_host_caps_free(p->caps);
        p->caps = fresh;
        return 0;
}

static int get_host_capabilities(struct lv_plugin *p, json_object *ctx, json_object *args,
                                 json_object **ret, struct nst_error *err) {
        static const char *const allowed[] = {"refresh", NULL};
        bool refresh = false;
        int r = nst_json_check_keys(args, "get_host_capabilities", allowed, err);
        if (r < 0 || (r = nst_json_opt_bool(args, "refresh", "get_host_capabilities", &refresh,
                                            err)) < 0 ||
            (r = nst_lv_lock_caps(p, refresh, err)) < 0)
                return r;
        *ret = nst_host_caps_to_json(p->caps);
        pthread_mutex_unlock(&p->lock);
        return 0;
}

static int list_profiles(struct lv_plugin *p, json_object *ctx, json_object *args,
                         json_object **ret, struct nst_error *err) {
        static const char *const allowed[] = {NULL};
        int r = nst_json_check_keys(args, "list_profiles", allowed, err);
        if (r < 0)
                return r;
        json_object *a = json_object_new_array();
        for (size_t i = 0; i < nst_profile_set_count(p->profiles); i++)
                json_object_array_add(a, nst_profile_to_json(nst_profile_set_at(p->profiles, i)));
        *ret = a;
        return 0;
}

const char *nst_lv_ctx_string(json_object *ctx, const char *key, const char *fallback) {
        json_object *v;
        if (ctx && (json_object_object_get_ex(ctx, key, &v) ||
                    (fallback && json_object_object_get_ex(ctx, fallback, &v))) &&
            json_object_is_type(v, json_type_string) && json_object_get_string_len(v) > 0)
                return json_object_get_string(v);
        return NULL;
}

void nst_lv_build_context(json_object *ctx, char created[32], struct nst_build_context *ret) {
        time_t now = time(NULL);
        struct tm tm;
        strftime(created, 32, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
        *ret = (struct nst_build_context){
                .user_id = nst_lv_ctx_string(ctx, "user_id", "user"),
                .user_name = nst_lv_ctx_string(ctx, "user_name", NULL),
                .project_id = nst_lv_ctx_string(ctx, "project_id", "tenant"),
                .project_name = nst_lv_ctx_string(ctx, "project_name", NULL),
                .created_at = created,
        };
}

int nst_lv_check_pci(struct lv_plugin *p, const struct nst_guest_spec *spec,
                     struct nst_error *err) {
        if (!spec->pci_requests || p->pci)
                return 0;
        return nst_error_set(err, -ENOTSUP, "PciAllocationFailed",
                             "spec.pci_requests: no PCI device plugin is enabled (add sriov to "
                             "[DEFAULT] enabled_plugins)");
}

static int build_domain_xml(struct lv_plugin *p, json_object *ctx, json_object *args,
                            json_object **ret, struct nst_error *err) {
        static const char *const allowed[] = {"spec", NULL};
        json_object *spec_obj = NULL;
        int r = nst_json_check_keys(args, "build_domain_xml", allowed, err);
        if (r < 0 || (r = nst_json_req_object(args, "spec", "build_domain_xml", &spec_obj,
                                              err)) < 0)
                return r;
        _cleanup_(nst_guest_spec_freep) struct nst_guest_spec *spec = NULL;
        if ((r = nst_guest_spec_parse(spec_obj, &spec, err)) < 0)
                return r;
        const struct nst_profile *profile;
        if ((r = nst_profile_set_lookup(p->profiles, spec->profile, &profile, err)) < 0 ||
            (r = nst_lv_check_pci(p, spec, err)) < 0)
                return r;

        char created[32];
        struct nst_build_context bctx;
        nst_lv_build_context(ctx, created, &bctx);
        bctx.instances_path = p->instances_path;
        if ((r = nst_lv_lock_caps(p, false, err)) < 0)
                return r;
        _cleanup_free_ char *xml = NULL;
        struct nst_domain_plan *plan = malloc(sizeof(*plan));
        if (!plan) {
                pthread_mutex_unlock(&p->lock);
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        r = nst_domain_xml_build(spec, profile, p->caps, &bctx, &xml, plan, err);
        pthread_mutex_unlock(&p->lock);
        if (r >= 0) {
                json_object *o = json_object_new_object();
                json_object_object_add(o, "xml", json_object_new_string(xml));
                json_object_object_add(o, "name", json_object_new_string(spec->name));
                json_object_object_add(o, "uuid", json_object_new_string(spec->uuid));
                json_object_object_add(o, "profile", json_object_new_string(profile->name));
                json_object_object_add(o, "virt_type",
                                       json_object_new_string(nst_virt_type_name(plan->virt_type)));
                json_object_object_add(o, "notes", json_object_new_string(plan->notes));
                *ret = o;
        }
        free(plan);
        return r;
}

static int report(void *ud, json_object **ret, struct nst_error *err) {
        struct lv_plugin *p = ud;
        json_object *o = json_object_new_object();
        json_object_object_add(o, "uri", json_object_new_string(p->uri));
        json_object_object_add(o, "connection", nst_lv_conn_status(p->conn));
        /* libvirtd being away is what the report must show, not hide. */
        struct nst_error e = NST_ERROR_INIT;
        if (nst_lv_lock_caps(p, false, &e) == 0) {
                json_object_object_add(o, "host_capabilities", nst_host_caps_to_json(p->caps));
                pthread_mutex_unlock(&p->lock);
        } else {
                json_object_object_add(o, "host_capabilities", NULL);
                json_object_object_add(o, "error", json_object_new_string(e.message));
        }
        json_object_object_add(o, "instances", nst_lv_instances_report(p));
        *ret = o;
        return 0;
}

static const struct {
        const char *name;
        nst_lv_method_fn fn;
} methods[] = {
        {"get_host_capabilities", get_host_capabilities},
        {"list_profiles", list_profiles},
        {"build_domain_xml", build_domain_xml},
        {"spawn", nst_lv_spawn},
        {"destroy", nst_lv_destroy},
        {"power_on", nst_lv_power_on},
        {"power_off", nst_lv_power_off},
        {"reboot", nst_lv_reboot},
        {"suspend", nst_lv_suspend},
        {"resume", nst_lv_resume},
        {"get_info", nst_lv_get_info},
        {"list_instances", nst_lv_list_instances},
        {"get_xml", nst_lv_get_xml},
};

static int dispatch(struct nst_call *call, json_object *args, void *ud, json_object **ret,
                    struct nst_error *err) {
        const struct lv_bound_method *m = ud;
        return m->fn(m->plugin, nst_call_context(call), args, ret, err);
}

int nst_lv_call(struct lv_plugin *p, const char *method, json_object *ctx, json_object *args,
                json_object **ret, struct nst_error *err) {
        for (size_t i = 0; i < p->n_methods; i++)
                if (strcmp(p->methods[i].name, method) == 0)
                        return p->methods[i].fn(p, ctx, args, ret, err);
        return nst_error_set(err, -ENOENT, "NoSuchMethod", "no method %s", method);
}

static int default_mac_random(void *ud, unsigned char out[3]) {
        return getrandom(out, 3, 0) == 3 ? 0 : -EIO;
}

static void plugin_free(struct lv_plugin *p) {
        nst_lv_conn_stop(p->conn);
        nst_inventory_free(p->inv);
        nst_host_caps_free(p->caps);
        nst_profile_set_free(p->profiles);
        free(p->instances_path);
        for (size_t i = 0; i < p->n_image_dirs; i++)
                free(p->image_dirs[i]);
        free(p->image_dirs);
        free(p->methods);
        pthread_mutex_destroy(&p->watch_lock);
        pthread_mutex_destroy(&p->lock);
        free(p);
}

static int lend_connection(void *self, virConnectPtr *ret, struct nst_error *err) {
        struct lv_plugin *p = self;
        if (!p->conn)
                return nst_error_set(err, -ENOTCONN, "HypervisorUnavailable",
                                     "the libvirt plugin has not started");
        return nst_lv_conn_get(p->conn, ret, err);
}

static int watch_lifecycle(void *self, nst_lv_lifecycle_fn *fn, void *userdata,
                           struct nst_error *err) {
        struct lv_plugin *p = self;
        pthread_mutex_lock(&p->watch_lock);
        int r = 0;
        if (p->n_watchers == NST_LV_MAX_WATCHERS)
                r = nst_error_set(err, -ENOSPC, "ConfigError",
                                  "the libvirt plugin takes at most %d lifecycle watchers",
                                  NST_LV_MAX_WATCHERS);
        else
                p->watchers[p->n_watchers++] = (struct lv_watcher){fn, userdata};
        pthread_mutex_unlock(&p->watch_lock);
        return r;
}

static void unwatch_lifecycle(void *self, nst_lv_lifecycle_fn *fn, void *userdata) {
        struct lv_plugin *p = self;
        pthread_mutex_lock(&p->watch_lock);
        for (size_t i = 0; i < p->n_watchers; i++)
                if (p->watchers[i].fn == fn && p->watchers[i].userdata == userdata) {
                        p->watchers[i] = p->watchers[--p->n_watchers];
                        break;
                }
        pthread_mutex_unlock(&p->watch_lock);
}

static int init(struct nst_host *host, void **ret_priv, struct nst_error *err) {
        struct lv_plugin *p = calloc(1, sizeof(*p));
        if (!p)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        p->host = host;
        p->mac_random = default_mac_random;
        pthread_mutex_init(&p->lock, NULL);
        pthread_mutex_init(&p->watch_lock, NULL);
        p->n_methods = NST_ARRAY_SIZE(methods);
        p->methods = calloc(p->n_methods, sizeof(*p->methods));
        if (!p->methods) {
                plugin_free(p);
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        int r = nst_host_register_options(host, SECTION, options, NST_ARRAY_SIZE(options), err);
        for (size_t i = 0; r >= 0 && i < p->n_methods; i++) {
                p->methods[i] = (struct lv_bound_method){p, methods[i].name, methods[i].fn};
                struct nst_method m = {methods[i].name, "1.0", dispatch, &p->methods[i]};
                r = nst_host_register_method(host, NULL, &m, err);
        }
        if (r >= 0)
                r = nst_host_register_report(host, SECTION, report, p, err);
        p->conn_iface = (struct nst_libvirt_conn_iface){p, lend_connection, watch_lifecycle,
                                                        unwatch_lifecycle};
        if (r >= 0)
                r = nst_host_provide(host, NST_LIBVIRT_CONN_IFACE, &p->conn_iface, err);
        if (r < 0) {
                plugin_free(p);
                return r;
        }
        *ret_priv = p;
        return 0;
}

static int start_dirs(struct lv_plugin *p, const struct nst_config *cfg, struct nst_error *err) {
        const char *state = nst_config_get_string(cfg, "DEFAULT", "state_path");
        if (!state || state[0] != '/')
                return nst_error_set(err, -EINVAL, "ConfigError",
                                     "[DEFAULT] state_path must be an absolute path");
        if (asprintf(&p->instances_path, "%s/instances", state) < 0) {
                p->instances_path = NULL;
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        size_t n = 0;
        const char *const *dirs = nst_config_get_list(cfg, SECTION, "image_dirs", &n);
        p->image_dirs = calloc(n ? n : 1, sizeof(*p->image_dirs));
        if (!p->image_dirs)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        for (size_t i = 0; i < n; i++) {
                if (dirs[i][0] != '/')
                        return nst_error_set(err, -EINVAL, "ConfigError",
                                             "[%s] image_dirs: '%s' is not an absolute path",
                                             SECTION, dirs[i]);
                if (!(p->image_dirs[p->n_image_dirs++] = strdup(dirs[i])))
                        return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        if (n == 0 && asprintf(&p->image_dirs[p->n_image_dirs++], "%s/images", state) < 0) {
                p->image_dirs[--p->n_image_dirs] = NULL;
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        p->qemu_img = nst_config_get_string(cfg, SECTION, "qemu_img");
        if (!p->qemu_img || p->qemu_img[0] != '/')
                return nst_error_set(err, -EINVAL, "ConfigError",
                                     "[%s] qemu_img must be an absolute path", SECTION);
        return 0;
}

static int start(void *priv, struct nst_error *err) {
        struct lv_plugin *p = priv;
        const struct nst_config *cfg = nst_host_config(p->host);
        p->uri = nst_config_get_string(cfg, SECTION, "uri");
        p->virt_type = nst_config_get_string(cfg, SECTION, "virt_type");
        p->cpu_disable = nst_config_get_list(cfg, SECTION, "cpu_disabled_features",
                                             &p->n_cpu_disable);
        p->detect = nst_config_get_bool(cfg, SECTION, "detect_cpu_disabled_features");
        p->keepalive_interval = (int)nst_config_get_int(cfg, SECTION, "keepalive_interval");
        p->keepalive_count = (int)nst_config_get_int(cfg, SECTION, "keepalive_count");
        int r = start_dirs(p, cfg, err);
        if (r < 0 || (r = nst_profile_set_new(&p->profiles, err)) < 0)
                return r;
        size_t n = 0;
        const char *const *adjust = nst_config_get_list(cfg, SECTION, "profile", &n);
        for (size_t i = 0; i < n; i++) {
                char what[48];
                snprintf(what, sizeof(what), "[%s] profile #%zu", SECTION, i + 1);
                if ((r = nst_profile_set_apply(p->profiles, adjust[i], what, err)) < 0)
                        return r;
        }
        if ((r = nst_inventory_new(&p->inv)) < 0)
                return nst_error_set(err, r, "MemoryError", "out of memory");
        /* Before connecting: the first connect restores recorded claims. */
        p->pci = nst_host_lookup(p->host, NST_PCI_CLAIMS_IFACE);
        if ((r = nst_lv_register_objects(p, err)) < 0)
                return r;
        /* Host capabilities are probed lazily: libvirtd may come up after the
         * agent; the connection keeps trying in the background. */
        const struct nst_lv_conn_opts copts = {
                .uri = p->uri,
                .keepalive_interval = p->keepalive_interval,
                .keepalive_count = (unsigned)p->keepalive_count,
                .min_backoff_ms = RECONNECT_MIN_MS,
                .max_backoff_ms = RECONNECT_MAX_MS,
        };
        const struct nst_lv_conn_hooks hooks = {
                .userdata = p,
                .connected = nst_lv_on_connected,
                .lifecycle = nst_lv_on_lifecycle,
                .reboot = nst_lv_on_reboot,
        };
        return nst_lv_conn_start(&copts, &hooks, &p->conn, err);
}

static void stop(void *priv) {
        if (priv)
                plugin_free(priv);
}

NST_PLUGIN_EXPORT const struct nst_plugin_info nst_plugin = {
        .api_version = NST_PLUGIN_API_VERSION,
        .name = "libvirt",
        .description = "libvirt guests with nested-virtualization profiles",
        .init = init,
        .start = start,
        .stop = stop,
};
