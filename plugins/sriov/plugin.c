/* The sriov plugin module: [pci] options, the pci_* RPC methods, periodic
 * rescans, the report section, and the "pci-claims" interface the libvirt
 * plugin's spawn and destroy use. The logic lives in sriov.c / claims.c and
 * the modules they use; this file only binds them to the agent. */
#define NST_LOG_MODULE "sriov"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agent/log.h"
#include "agent/plugin.h"
#include "messages/json_util.h"
#include "plugins/inventory/inventory_iface.h"
#include "plugins/sriov/npiv.h"
#include "plugins/sriov/pci_diagnose.h"
#include "plugins/sriov/sriov.h"

#define SECTION "pci"

static const struct nst_option options[] = {
        {"device_spec", NST_OPT_MULTI, "",
         "Which PCI functions guests may get, and their tags (nova's syntax; repeatable): a JSON "
         "object or list, e.g. {\"address\": \"0000:03:00.0\", \"physical_network\": "
         "\"physnet1\"} (a PF address covers the PF and its VFs) or {\"vendor_id\": \"8086\", "
         "\"product_id\": \"10ed\", \"trusted\": \"true\"}"},
        {"alias", NST_OPT_MULTI, "",
         "A name for flavor-style requests (repeatable), e.g. {\"name\": \"vf\", \"vendor_id\": "
         "\"8086\", \"product_id\": \"10ed\", \"device_type\": \"type-VF\", \"numa_policy\": "
         "\"preferred\"}"},
        {"sysfs_root", NST_OPT_STRING, "/sys",
         "Where sysfs is (a fake tree for tests and demonstrations; libpci reads "
         "<sysfs_root>/bus/pci)"},
        {"rescan_interval", NST_OPT_INT, "60",
         "Seconds between rescans of the PCI devices (VF counts change when an operator writes "
         "sriov_numvfs); 0 disables",
         0, 86400},
        {"mac_prefix", NST_OPT_STRING, NST_SRIOV_DEFAULT_MAC_PREFIX,
         "First three bytes of the MACs generated for SR-IOV ports (unicast)"},
        {"wwn_oui", NST_OPT_STRING, NST_SRIOV_DEFAULT_WWN_OUI,
         "IEEE OUI in the NAA type 5 WWNN/WWPNs generated for Fibre Channel VFs (NPIV)"},
        {"npiv_parent", NST_OPT_STRING, "",
         "Node device (e.g. scsi_host1) vHBAs are created on; empty: the Fibre Channel "
         "function's own fc host"},
        {"vf_config", NST_OPT_STRING, "netlink",
         "How VF trust, spoof checking, link state and rates are set: netlink, or "
         "record:<path> to append what would be set to a JSON-lines file (no SR-IOV hardware)"},
};

struct sriov_plugin {
        struct nst_host *host;
        struct sriov s;
        struct nst_pci_claims iface;
        bool initialized;
};

/* ---- helpers ---- */

static json_object *hex4(unsigned v) {
        char b[8];
        snprintf(b, sizeof(b), "%04x", v & 0xffff);
        return json_object_new_string(b);
}

static json_object *string_or_null(const char *s) {
        return s && s[0] ? json_object_new_string(s) : NULL;
}

static json_object *tags_json(const struct nst_pci_tags *t) {
        if (!t)
                return NULL;
        json_object *o = json_object_new_object();
        for (size_t i = 0; i < t->n; i++)
                json_object_object_add(o, t->tags[i].key, json_object_new_string(t->tags[i].value));
        return o;
}

/* ---- pci_list_devices ---- */

static const char *const device_fields[] = {
        "address",   "vendor_id", "product_id", "class",     "type",     "numa_node",
        "iommu_group", "driver",  "netdev",     "parent",    "vf_number", "total_vfs",
        "num_vfs",   "vfs",       "state",      "owner",     "tags",     "claim",
        NULL,
};

static json_object *device_field(struct sriov *s, size_t k, const char *field) {
        const struct nst_pci_function *f = &s->inv->fns[k];
        enum nst_pci_dev_state st = NST_PCI_UNASSIGNABLE;
        const char *owner = NULL;
        if (strcmp(field, "address") == 0)
                return json_object_new_string(f->address);
        if (strcmp(field, "vendor_id") == 0)
                return hex4(f->vendor);
        if (strcmp(field, "product_id") == 0)
                return hex4(f->device);
        if (strcmp(field, "class") == 0) {
                char b[8];
                snprintf(b, sizeof(b), "%06x", f->class_code & 0xffffff);
                return json_object_new_string(b);
        }
        if (strcmp(field, "type") == 0)
                return json_object_new_string(nst_pci_type_name(f->type));
        if (strcmp(field, "numa_node") == 0)
                return f->numa_node < 0 ? NULL : json_object_new_int(f->numa_node);
        if (strcmp(field, "iommu_group") == 0)
                return f->iommu_group < 0 ? NULL : json_object_new_int(f->iommu_group);
        if (strcmp(field, "driver") == 0)
                return string_or_null(f->driver);
        if (strcmp(field, "netdev") == 0)
                return string_or_null(f->netdev);
        if (strcmp(field, "parent") == 0)
                return f->parent == NST_PCI_NONE
                               ? NULL
                               : json_object_new_string(s->inv->fns[f->parent].address);
        if (strcmp(field, "vf_number") == 0)
                return f->vf_number < 0 ? NULL : json_object_new_int(f->vf_number);
        if (strcmp(field, "total_vfs") == 0)
                return f->type == NST_PCI_TYPE_PF ? json_object_new_int(f->sysfs_total_vfs) : NULL;
        if (strcmp(field, "num_vfs") == 0)
                return f->type == NST_PCI_TYPE_PF ? json_object_new_int(f->sysfs_num_vfs) : NULL;
        if (strcmp(field, "vfs") == 0) {
                if (f->type != NST_PCI_TYPE_PF)
                        return NULL;
                json_object *a = json_object_new_array();
                for (size_t i = 0; i < f->n_vfs; i++)
                        json_object_array_add(a, json_object_new_string(
                                                         s->inv->fns[f->vfs[i]].address));
                return a;
        }
        if (strcmp(field, "tags") == 0)
                return tags_json(s->tags[k]);
        nst_pci_alloc_state(s->alloc, f->addr, &st, &owner);
        if (strcmp(field, "state") == 0)
                return json_object_new_string(nst_pci_dev_state_name(st));
        if (strcmp(field, "owner") == 0)
                return string_or_null(owner);
        const struct sriov_claim *c = nst_sriov_find_address(s, f->address, NULL);
        return c ? nst_pci_claim_to_json(&c->c) : NULL; /* "claim" */
}

static int parse_fields(json_object *args, const char **fields, size_t *n,
                        struct nst_error *err) {
        json_object *a;
        *n = 0;
        if (!json_object_object_get_ex(args, "fields", &a) || !a) {
                for (; device_fields[*n]; (*n)++)
                        fields[*n] = device_fields[*n];
                return 0;
        }
        if (!json_object_is_type(a, json_type_array) || json_object_array_length(a) == 0)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "pci_list_devices: fields must be a non-empty list of names");
        for (size_t i = 0; i < json_object_array_length(a); i++) {
                const char *name = json_object_get_string(json_object_array_get_idx(a, i));
                size_t k = 0;
                while (name && device_fields[k] && strcmp(device_fields[k], name) != 0)
                        k++;
                if (!name || !device_fields[k])
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "pci_list_devices: unknown field '%.64s' (known: "
                                             "address, vendor_id, product_id, class, type, "
                                             "numa_node, iommu_group, driver, netdev, parent, "
                                             "vf_number, total_vfs, num_vfs, vfs, state, owner, "
                                             "tags, claim)",
                                             name ? name : "(not a string)");
                if (*n < NST_ARRAY_SIZE(device_fields))
                        fields[(*n)++] = device_fields[k];
        }
        return 0;
}

static const char *const filter_keys[] = {"type",  "vendor_id", "product_id", "state", "parent",
                                          "owner", "driver",    "numa_node",  "address", NULL};

static int check_filter(json_object *filter, struct nst_error *err) {
        if (!filter)
                return 0;
        if (!json_object_is_type(filter, json_type_object))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "pci_list_devices: filter must be an object");
        json_object_object_foreach(filter, key, val) {
                size_t k = 0;
                while (filter_keys[k] && strcmp(filter_keys[k], key) != 0)
                        k++;
                if (!filter_keys[k])
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "pci_list_devices: cannot filter on '%.64s' (use "
                                             "type, vendor_id, product_id, state, parent, owner, "
                                             "driver, numa_node or address)",
                                             key);
                if (val && !json_object_is_type(val, json_type_string) &&
                    !json_object_is_type(val, json_type_int))
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "pci_list_devices: filter.%s must be a string, an "
                                             "integer or null",
                                             key);
        }
        return 0;
}

static bool matches_filter(struct sriov *s, size_t k, json_object *filter) {
        if (!filter)
                return true;
        json_object_object_foreach(filter, key, want) {
                _cleanup_json_ json_object *have = device_field(s, k, key);
                if (!want || !have) {
                        if (want != have && (want || have))
                                return false;
                        continue;
                }
                if (strcasecmp(json_object_get_string(want), json_object_get_string(have)) != 0)
                        return false;
        }
        return true;
}

static int pci_list_devices(struct nst_call *call, json_object *args, void *ud, json_object **ret,
                            struct nst_error *err) {
        struct sriov_plugin *p = ud;
        static const char *const allowed[] = {"fields", "filter", NULL};
        const char *fields[NST_ARRAY_SIZE(device_fields)];
        size_t n_fields;
        json_object *filter = NULL;
        json_object_object_get_ex(args, "filter", &filter);
        int r = nst_json_check_keys(args, "pci_list_devices", allowed, err);
        if (r < 0 || (r = parse_fields(args, fields, &n_fields, err)) < 0 ||
            (r = check_filter(filter, err)) < 0)
                return r;
        struct sriov *s = &p->s;
        json_object *a = json_object_new_array();
        pthread_mutex_lock(&s->lock);
        for (size_t k = 0; s->inv && k < s->inv->n; k++) {
                if (!matches_filter(s, k, filter))
                        continue;
                json_object *o = json_object_new_object();
                for (size_t i = 0; i < n_fields; i++)
                        json_object_object_add(o, fields[i], device_field(s, k, fields[i]));
                json_object_array_add(a, o);
        }
        pthread_mutex_unlock(&s->lock);
        *ret = a;
        return 0;
}

/* ---- pci_pools, pci_diagnose, pci_rescan ---- */

static int pci_pools(struct nst_call *call, json_object *args, void *ud, json_object **ret,
                     struct nst_error *err) {
        struct sriov_plugin *p = ud;
        int r = nst_json_check_keys(args, "pci_pools", NULL, err);
        if (r < 0)
                return r;
        pthread_mutex_lock(&p->s.lock);
        *ret = nst_pci_alloc_pools_json(p->s.alloc);
        pthread_mutex_unlock(&p->s.lock);
        return 0;
}

static json_object *check(const char *name, const char *status, const char *message,
                          const char *fix) {
        json_object *c = json_object_new_object();
        json_object_object_add(c, "check", json_object_new_string(name));
        json_object_object_add(c, "status", json_object_new_string(status));
        json_object_object_add(c, "message", json_object_new_string(message));
        if (fix)
                json_object_object_add(c, "fix", json_object_new_string(fix));
        return c;
}

/* The host's readiness (pci_diagnose.c) plus what only the plugin knows:
 * the last scan and the device_spec entries. */
static int pci_diagnose(struct nst_call *call, json_object *args, void *ud, json_object **ret,
                        struct nst_error *err) {
        struct sriov_plugin *p = ud;
        int r = nst_json_check_keys(args, "pci_diagnose", NULL, err);
        if (r < 0)
                return r;
        struct sriov *s = &p->s;
        pthread_mutex_lock(&s->lock);
        if (!s->inv) {
                json_object *o = json_object_new_object();
                json_object *checks = json_object_new_array();
                json_object_array_add(checks, check("scan", "error",
                                                    s->last_scan_error[0] ? s->last_scan_error
                                                                          : "no scan yet",
                                                    "check [pci] sysfs_root and that sysfs is "
                                                    "mounted"));
                json_object_object_add(o, "ready", json_object_new_boolean(false));
                json_object_object_add(o, "checks", checks);
                pthread_mutex_unlock(&s->lock);
                *ret = o;
                return 0;
        }
        json_object *o = nst_pci_diagnose(s->inv);
        json_object *checks = json_object_object_get(o, "checks");
        size_t n_specs = nst_pci_spec_set_count(s->specs), assignable = 0;
        for (size_t i = 0; i < n_specs; i++) {
                if (s->spec_matches[i] > 0)
                        continue;
                char msg[512];
                snprintf(msg, sizeof(msg), "%s: [pci] device_spec matches no device",
                         nst_pci_spec_describe(s->specs, i));
                json_object_array_add(checks, check("device_spec", "warning", msg,
                                                    "compare it with pci_list_devices (address, "
                                                    "vendor_id, product_id, netdev)"));
        }
        for (size_t k = 0; k < s->inv->n; k++)
                assignable += s->tags[k] != NULL;
        if (n_specs == 0 || assignable == 0)
                json_object_array_add(checks, check("device_spec", "warning",
                                                    n_specs == 0 ? "no [pci] device_spec: no "
                                                                   "device can be given to guests"
                                                                 : "no device is assignable",
                                                    "add [pci] device_spec entries for the VFs "
                                                    "or PFs guests may get"));
        if (s->last_scan_error[0])
                json_object_array_add(checks, check("scan", "warning", s->last_scan_error,
                                                    "the previous scan's devices are in use"));
        pthread_mutex_unlock(&s->lock);
        *ret = o;
        return 0;
}

static int pci_rescan(struct nst_call *call, json_object *args, void *ud, json_object **ret,
                      struct nst_error *err) {
        struct sriov_plugin *p = ud;
        int r = nst_json_check_keys(args, "pci_rescan", NULL, err);
        return r < 0 ? r : nst_sriov_rescan(&p->s, ret, err);
}

/* ---- objects for the inventory plugin ---- */

static const struct nst_inventory_field device_object_fields[] = {
        {"address", NST_INV_KIND_STRING},   {"vendor_id", NST_INV_KIND_STRING},
        {"product_id", NST_INV_KIND_STRING}, {"class", NST_INV_KIND_STRING},
        {"type", NST_INV_KIND_STRING},      {"numa_node", NST_INV_KIND_INT},
        {"driver", NST_INV_KIND_STRING},    {"netdev", NST_INV_KIND_STRING},
        {"parent", NST_INV_KIND_STRING},    {"state", NST_INV_KIND_STRING},
        {"owner", NST_INV_KIND_STRING},     {"tags", NST_INV_KIND_OBJECT},
};

static const struct nst_inventory_field pool_object_fields[] = {
        {"vendor_id", NST_INV_KIND_STRING}, {"product_id", NST_INV_KIND_STRING},
        {"numa_node", NST_INV_KIND_INT},    {"dev_type", NST_INV_KIND_STRING},
        {"tags", NST_INV_KIND_OBJECT},      {"parent_ifname", NST_INV_KIND_STRING},
        {"remote_managed", NST_INV_KIND_STRING}, {"total", NST_INV_KIND_INT},
        {"free", NST_INV_KIND_INT},         {"claimed", NST_INV_KIND_INT},
};

static int list_devices(void *ud, json_object **ret, struct nst_error *err) {
        struct sriov *s = &((struct sriov_plugin *)ud)->s;
        json_object *all = json_object_new_object();
        pthread_mutex_lock(&s->lock);
        for (size_t k = 0; s->inv && k < s->inv->n; k++) {
                json_object *o = json_object_new_object();
                for (size_t i = 0; i < NST_ARRAY_SIZE(device_object_fields); i++)
                        json_object_object_add(o, device_object_fields[i].name,
                                               device_field(s, k, device_object_fields[i].name));
                json_object_object_add(all, s->inv->fns[k].address, o);
        }
        pthread_mutex_unlock(&s->lock);
        *ret = all;
        return 0;
}

/* A pool's id: its key, as nova keys pools. */
static void pool_id(json_object *pool, char *buf, size_t size) {
        size_t len = 0;
        static const char *const keys[] = {"vendor_id", "product_id", "numa_node", "dev_type",
                                           "parent_ifname", "remote_managed"};
        for (size_t i = 0; i < NST_ARRAY_SIZE(keys) && len < size; i++) {
                json_object *v = json_object_object_get(pool, keys[i]);
                len += (size_t)snprintf(buf + len, size - len, "%s%s", i ? ":" : "",
                                        v ? json_object_get_string(v) : "-");
        }
        json_object_object_foreach(json_object_object_get(pool, "tags"), key, val) {
                if (len < size)
                        len += (size_t)snprintf(buf + len, size - len, ":%s=%s", key,
                                                json_object_get_string(val));
        }
}

static int list_pools(void *ud, json_object **ret, struct nst_error *err) {
        struct sriov *s = &((struct sriov_plugin *)ud)->s;
        pthread_mutex_lock(&s->lock);
        _cleanup_json_ json_object *pools = nst_pci_alloc_pools_json(s->alloc);
        pthread_mutex_unlock(&s->lock);
        json_object *all = json_object_new_object();
        for (size_t i = 0; i < json_object_array_length(pools); i++) {
                json_object *pool = json_object_array_get_idx(pools, i);
                char id[512];
                pool_id(pool, id, sizeof(id));
                json_object_object_add(all, id, json_object_get(pool));
        }
        *ret = all;
        return 0;
}

static int register_objects(struct sriov_plugin *p, struct nst_error *err) {
        const struct nst_inventory_iface *inv = nst_host_lookup(p->host, NST_INVENTORY_IFACE);
        if (!inv)
                return 0;
        int r = inv->register_collection(inv->self, "pci_device", device_object_fields,
                                         NST_ARRAY_SIZE(device_object_fields), list_devices, p,
                                         err);
        if (r >= 0)
                r = inv->register_collection(inv->self, "pci_pool", pool_object_fields,
                                             NST_ARRAY_SIZE(pool_object_fields), list_pools, p,
                                             err);
        return r;
}

/* ---- binding ---- */

static const struct nst_method methods[] = {
        {"pci_list_devices", "1.0", pci_list_devices, NULL},
        {"pci_pools", "1.0", pci_pools, NULL},
        {"pci_diagnose", "1.0", pci_diagnose, NULL},
        {"pci_rescan", "1.0", pci_rescan, NULL},
};

static void periodic_rescan(void *ud) {
        struct sriov_plugin *p = ud;
        struct nst_error err = NST_ERROR_INIT;
        if (nst_sriov_rescan(&p->s, NULL, &err) < 0)
                log_warning("periodic PCI rescan failed (keeping the previous scan): %s",
                            err.message);
}

static int report(void *ud, json_object **ret, struct nst_error *err) {
        struct sriov_plugin *p = ud;
        struct nst_pci_alloc_stats st;
        pthread_mutex_lock(&p->s.lock);
        nst_pci_alloc_stats(p->s.alloc, &st);
        json_object *o = json_object_new_object();
        json_object_object_add(o, "devices", json_object_new_int64(p->s.inv ? (int64_t)p->s.inv->n
                                                                            : 0));
        json_object_object_add(o, "assignable", json_object_new_int64((int64_t)st.devices));
        json_object_object_add(o, "available", json_object_new_int64((int64_t)st.available));
        json_object_object_add(o, "claimed", json_object_new_int64((int64_t)st.claimed));
        json_object_object_add(o, "unavailable", json_object_new_int64((int64_t)st.unavailable));
        json_object_object_add(o, "missing", json_object_new_int64((int64_t)st.missing));
        json_object_object_add(o, "pools", nst_pci_alloc_pools_json(p->s.alloc));
        pthread_mutex_unlock(&p->s.lock);
        *ret = o;
        return 0;
}

static int iface_claim(void *self, const char *instance, json_object *requests,
                       const int *numa_nodes, size_t n_numa_nodes, struct nst_pci_claim **ret,
                       size_t *ret_n, struct nst_error *err) {
        return nst_sriov_claim(self, instance, requests, numa_nodes, n_numa_nodes, ret, ret_n,
                               err);
}

static int iface_release(void *self, const char *instance, struct nst_error *err) {
        return nst_sriov_release(self, instance, err);
}

static int iface_restore(void *self, const char *instance, const struct nst_pci_claim *claims,
                         size_t n, struct nst_error *err) {
        return nst_sriov_restore(self, instance, claims, n, err);
}

static void plugin_free(struct sriov_plugin *p) {
        if (!p)
                return;
        if (p->initialized)
                nst_sriov_done(&p->s);
        free(p);
}

static int init(struct nst_host *host, void **ret_priv, struct nst_error *err) {
        struct sriov_plugin *p = calloc(1, sizeof(*p));
        if (!p)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        p->host = host;
        p->iface = (struct nst_pci_claims){&p->s, iface_claim, iface_release, iface_restore};
        /* The state exists from init on: the libvirt plugin may start first
         * and restore recorded claims before this plugin's first scan (they
         * are held until the scan brings their devices). */
        int r = nst_sriov_init(&p->s, err);
        if (r < 0) {
                free(p);
                return r;
        }
        p->initialized = true;
        r = nst_host_register_options(host, SECTION, options, NST_ARRAY_SIZE(options), err);
        for (size_t i = 0; r >= 0 && i < NST_ARRAY_SIZE(methods); i++) {
                struct nst_method m = methods[i];
                m.userdata = p;
                r = nst_host_register_method(host, NULL, &m, err);
        }
        if (r >= 0)
                r = nst_host_register_report(host, SECTION, report, p, err);
        if (r >= 0)
                r = nst_host_provide(host, NST_PCI_CLAIMS_IFACE, &p->iface, err);
        if (r < 0) {
                plugin_free(p);
                return r;
        }
        *ret_priv = p;
        return 0;
}

static int parse_mac_prefix(const char *s, unsigned char out[3], struct nst_error *err) {
        unsigned b[3];
        char tail;
        if (!s || strlen(s) != 8 || sscanf(s, "%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &tail) != 3 ||
            s[2] != ':' || s[5] != ':')
                return nst_error_set(err, -EINVAL, "ConfigError",
                                     "[%s] mac_prefix: '%s' is not three bytes xx:xx:xx", SECTION,
                                     s ? s : "");
        if (b[0] & 1)
                return nst_error_set(err, -EINVAL, "ConfigError",
                                     "[%s] mac_prefix: %s is a multicast prefix (the first "
                                     "byte's low bit is set)",
                                     SECTION, s);
        for (size_t i = 0; i < 3; i++)
                out[i] = (unsigned char)b[i];
        return 0;
}

static int read_config(struct sriov_plugin *p, struct nst_error *err) {
        const struct nst_config *cfg = nst_host_config(p->host);
        struct sriov_config *c = &p->s.cfg;
        const char *root = nst_config_get_string(cfg, SECTION, "sysfs_root");
        if (!root || root[0] != '/' || strlen(root) >= sizeof(c->sysfs_root) - 32)
                return nst_error_set(err, -EINVAL, "ConfigError",
                                     "[%s] sysfs_root must be an absolute path", SECTION);
        snprintf(c->sysfs_root, sizeof(c->sysfs_root), "%s", root);
        /* /sys pairs with /proc; a fake <dir>/sys with <dir>/proc. */
        size_t len = strlen(root);
        while (len > 1 && root[len - 1] == '/')
                len--;
        if (len >= 4 && strncmp(root + len - 4, "/sys", 4) == 0)
                snprintf(c->cmdline_path, sizeof(c->cmdline_path), "%.*s/proc/cmdline",
                         (int)(len - 4), root);
        const char *oui = nst_config_get_string(cfg, SECTION, "wwn_oui");
        char probe[NST_WWN_LEN];
        if (nst_wwn_generate_naa5(oui, 0, probe, err) < 0)
                return nst_error_prefix(err, "[%s] wwn_oui", SECTION);
        memcpy(c->wwn_oui, probe + 1, 6);
        c->wwn_oui[6] = '\0';
        const char *parent = nst_config_get_string(cfg, SECTION, "npiv_parent");
        snprintf(c->npiv_parent, sizeof(c->npiv_parent), "%s", parent ? parent : "");
        int r = parse_mac_prefix(nst_config_get_string(cfg, SECTION, "mac_prefix"), c->mac_prefix,
                                 err);
        if (r < 0 ||
            (r = nst_vf_backend_from_spec(nst_config_get_string(cfg, SECTION, "vf_config"),
                                          &p->s.vf, err)) < 0)
                return r < 0 && strstr(err->message, "vf_config") == NULL
                               ? nst_error_prefix(err, "[%s] vf_config", SECTION)
                               : r;
        size_t n;
        const char *const *specs = nst_config_get_list(cfg, SECTION, "device_spec", &n);
        if ((r = nst_pci_spec_set_parse(specs, nst_config_get_origins(cfg, SECTION, "device_spec"),
                                        n, &p->s.specs, err)) < 0)
                return r;
        const char *const *aliases = nst_config_get_list(cfg, SECTION, "alias", &n);
        return nst_pci_alias_set_parse(aliases, nst_config_get_origins(cfg, SECTION, "alias"), n,
                                       &p->s.aliases, err);
}

static int start(void *priv, struct nst_error *err) {
        struct sriov_plugin *p = priv;
        int r = read_config(p, err); /* what it made is freed at stop */
        if (r < 0 || (r = register_objects(p, err)) < 0)
                return r;
        p->s.libvirt = nst_host_lookup(p->host, NST_LIBVIRT_CONN_IFACE);
        /* A host without SR-IOV still scans fine (nothing assignable); a
         * failed scan is logged and retried, claims say why they fail. */
        struct nst_error e = NST_ERROR_INIT;
        if (nst_sriov_rescan(&p->s, NULL, &e) < 0)
                log_error("PCI scan failed (retried every rescan_interval): %s", e.message);
        int64_t every = nst_config_get_int(nst_host_config(p->host), SECTION, "rescan_interval");
        if (every > 0)
                return nst_host_register_periodic(p->host, "pci_rescan", every * 1000, every * 1000,
                                                  periodic_rescan, p, err);
        return 0;
}

static void stop(void *priv) {
        plugin_free(priv);
}

NST_PLUGIN_EXPORT const struct nst_plugin_info nst_plugin = {
        .api_version = NST_PLUGIN_API_VERSION,
        .name = "sriov",
        .description = "SR-IOV physical and virtual functions as PCI passthrough resources",
        .init = init,
        .start = start,
        .stop = stop,
};
