/* The libvirt plugin's entry point. For now it serves the pure core over RPC:
 * host capabilities, profiles and the domain XML a spec would get. The
 * instance lifecycle (spawn, destroy, power, events, reconnection) comes on
 * top of this (issue 3). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/plugin.h"
#include "messages/json_util.h"
#include "plugins/libvirt/domain_xml.h"
#include "plugins/libvirt/guest_spec.h"
#include "plugins/libvirt/host_caps.h"
#include "plugins/libvirt/lv_util.h"
#include "plugins/libvirt/profiles.h"

#define SECTION "libvirt"

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
};

struct lv_plugin {
        struct nst_host *host;
        pthread_mutex_t lock;
        struct nst_profile_set *profiles;   /* read-only after start */
        const char *uri;                    /* the strings are owned by the config */
        const char *virt_type;
        const char *const *cpu_disable;
        size_t n_cpu_disable;
        bool detect;
        char *instances_path;
        struct nst_host_caps *caps;         /* cached probe, under lock */
};

static int probe(struct lv_plugin *p, struct nst_host_caps **ret, struct nst_error *err) {
        nst_lv_quiet_errors();
        virConnectPtr conn = virConnectOpen(p->uri);
        if (!conn)
                return nst_lv_error(err, -EHOSTDOWN, "HypervisorUnavailable",
                                    "cannot connect to libvirt at %s", p->uri);
        struct nst_host_probe_opts opts = {
                .virt_type = p->virt_type,
                .cpu_disable = p->cpu_disable,
                .n_cpu_disable = p->n_cpu_disable,
                .no_detect_cpu_disable = !p->detect,
        };
        int r = nst_host_caps_probe(conn, &opts, ret, err);
        virConnectClose(conn);
        return r;
}

/* Takes the lock and makes sure p->caps is there (probing when refresh or
 * absent). On success the lock is held; on failure it is not. */
static int lock_caps(struct lv_plugin *p, bool refresh, struct nst_error *err) {
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

static int get_host_capabilities(struct nst_call *call, json_object *args, void *ud,
                                 json_object **ret, struct nst_error *err) {
        struct lv_plugin *p = ud;
        bool refresh = false;
        int r = nst_json_opt_bool(args, "refresh", "get_host_capabilities", &refresh, err);
        if (r < 0 || (r = lock_caps(p, refresh, err)) < 0)
                return r;
        *ret = nst_host_caps_to_json(p->caps);
        pthread_mutex_unlock(&p->lock);
        return 0;
}

static int list_profiles(struct nst_call *call, json_object *args, void *ud, json_object **ret,
                         struct nst_error *err) {
        struct lv_plugin *p = ud;
        json_object *a = json_object_new_array();
        for (size_t i = 0; i < nst_profile_set_count(p->profiles); i++)
                json_object_array_add(a, nst_profile_to_json(nst_profile_set_at(p->profiles, i)));
        *ret = a;
        return 0;
}

static const char *ctx_string(json_object *ctx, const char *key, const char *fallback) {
        json_object *v;
        if ((json_object_object_get_ex(ctx, key, &v) ||
             (fallback && json_object_object_get_ex(ctx, fallback, &v))) &&
            json_object_is_type(v, json_type_string) && json_object_get_string_len(v) > 0)
                return json_object_get_string(v);
        return NULL;
}

static int build_domain_xml(struct nst_call *call, json_object *args, void *ud,
                            json_object **ret, struct nst_error *err) {
        struct lv_plugin *p = ud;
        json_object *spec_obj = NULL;
        int r = nst_json_req_object(args, "spec", "build_domain_xml", &spec_obj, err);
        if (r < 0)
                return r;
        _cleanup_(nst_guest_spec_freep) struct nst_guest_spec *spec = NULL;
        if ((r = nst_guest_spec_parse(spec_obj, &spec, err)) < 0)
                return r;
        const struct nst_profile *profile;
        if ((r = nst_profile_set_lookup(p->profiles, spec->profile, &profile, err)) < 0)
                return r;
        /* Until the sriov plugin provides claims, PCI requests cannot be met. */
        if (spec->pci_requests && !nst_host_lookup(p->host, "pci-claims"))
                return nst_error_set(err, -ENOTSUP, "PciAllocationFailed",
                                     "spec.pci_requests: no PCI claim provider (the sriov plugin "
                                     "is not loaded)");

        json_object *ctx = nst_call_context(call);
        char created[32];
        time_t now = time(NULL);
        struct tm tm;
        strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
        struct nst_build_context bctx = {
                .instances_path = p->instances_path,
                .user_id = ctx_string(ctx, "user_id", "user"),
                .user_name = ctx_string(ctx, "user_name", NULL),
                .project_id = ctx_string(ctx, "project_id", "tenant"),
                .project_name = ctx_string(ctx, "project_name", NULL),
                .created_at = created,
        };
        if ((r = lock_caps(p, false, err)) < 0)
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
        int r = lock_caps(p, false, err);
        if (r < 0)
                return r;
        json_object *caps = nst_host_caps_to_json(p->caps);
        pthread_mutex_unlock(&p->lock);
        json_object *o = json_object_new_object();
        json_object_object_add(o, "uri", json_object_new_string(p->uri));
        json_object_object_add(o, "host_capabilities", caps);
        *ret = o;
        return 0;
}

static int init(struct nst_host *host, void **ret_priv, struct nst_error *err) {
        static const struct nst_method methods[] = {
                {"get_host_capabilities", "1.0", get_host_capabilities, NULL},
                {"list_profiles", "1.0", list_profiles, NULL},
                {"build_domain_xml", "1.0", build_domain_xml, NULL},
        };
        struct lv_plugin *p = calloc(1, sizeof(*p));
        if (!p)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        p->host = host;
        pthread_mutex_init(&p->lock, NULL);
        int r = nst_host_register_options(host, SECTION, options, NST_ARRAY_SIZE(options), err);
        for (size_t i = 0; r >= 0 && i < NST_ARRAY_SIZE(methods); i++) {
                struct nst_method m = methods[i];
                m.userdata = p;
                r = nst_host_register_method(host, NULL, &m, err);
        }
        if (r >= 0)
                r = nst_host_register_report(host, SECTION, report, p, err);
        if (r < 0) {
                pthread_mutex_destroy(&p->lock);
                free(p);
                return r;
        }
        *ret_priv = p;
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
        const char *state = nst_config_get_string(cfg, "DEFAULT", "state_path");
        if (asprintf(&p->instances_path, "%s/instances", state ? state : "/var/lib/nestor") < 0) {
                p->instances_path = NULL;
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        int r = nst_profile_set_new(&p->profiles, err);
        if (r < 0)
                return r;
        size_t n = 0;
        const char *const *adjust = nst_config_get_list(cfg, SECTION, "profile", &n);
        for (size_t i = 0; i < n; i++) {
                char what[48];
                snprintf(what, sizeof(what), "[%s] profile #%zu", SECTION, i + 1);
                if ((r = nst_profile_set_apply(p->profiles, adjust[i], what, err)) < 0)
                        return r;
        }
        /* Probed lazily: libvirtd may come up after the agent. */
        return 0;
}

static void stop(void *priv) {
        struct lv_plugin *p = priv;
        if (!p)
                return;
        nst_host_caps_free(p->caps);
        nst_profile_set_free(p->profiles);
        free(p->instances_path);
        pthread_mutex_destroy(&p->lock);
        free(p);
}

NST_PLUGIN_EXPORT const struct nst_plugin_info nst_plugin = {
        .api_version = NST_PLUGIN_API_VERSION,
        .name = "libvirt",
        .description = "libvirt guests with nested-virtualization profiles",
        .init = init,
        .start = start,
        .stop = stop,
};
