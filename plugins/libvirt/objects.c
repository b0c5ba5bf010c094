/* The libvirt plugin's objects for the inventory plugin (inventory_iface.h):
 * one "instance" per Nestor domain, from the instance table events keep
 * current and the domain's state; no XML is parsed per refresh. */
#define NST_LOG_MODULE "libvirt"

#include <errno.h>
#include <libvirt/virterror.h>
#include <stdlib.h>

#include "agent/log.h"
#include "plugins/inventory/inventory_iface.h"
#include "plugins/libvirt/lv_plugin.h"

static const struct nst_inventory_field instance_fields[] = {
        {"uuid", NST_INV_KIND_STRING},       {"name", NST_INV_KIND_STRING},
        {"profile", NST_INV_KIND_STRING},    {"state", NST_INV_KIND_STRING},
        {"power_state", NST_INV_KIND_STRING}, {"vcpus", NST_INV_KIND_INT},
        {"memory_mb", NST_INV_KIND_INT},     {"user_id", NST_INV_KIND_STRING},
        {"project_id", NST_INV_KIND_STRING}, {"created_at", NST_INV_KIND_STRING},
        {"host", NST_INV_KIND_STRING},
};

static json_object *string_or_null(const char *s) {
        return s && s[0] ? json_object_new_string(s) : NULL;
}

static json_object *instance_object(struct lv_plugin *p, const struct nst_inv_instance *k,
                                    int state) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "uuid", json_object_new_string(k->uuid));
        json_object_object_add(o, "name", json_object_new_string(k->name));
        json_object_object_add(o, "profile", string_or_null(k->profile));
        json_object_object_add(o, "state", json_object_new_string(nst_lv_vm_state(state)));
        json_object_object_add(o, "power_state", json_object_new_string(nst_lv_power_state(state)));
        json_object_object_add(o, "vcpus", json_object_new_int64(k->vcpus));
        json_object_object_add(o, "memory_mb", json_object_new_int64((int64_t)k->memory_mb));
        json_object_object_add(o, "user_id", string_or_null(k->user_id));
        json_object_object_add(o, "project_id", string_or_null(k->project_id));
        json_object_object_add(o, "created_at", string_or_null(k->created_at));
        json_object_object_add(o, "host", json_object_new_string(nst_host_name(p->host)));
        return o;
}

static int list_instances(void *ud, json_object **ret, struct nst_error *err) {
        struct lv_plugin *p = ud;
        virConnectPtr conn;
        int r = nst_lv_conn_get(p->conn, &conn, err);
        if (r < 0)
                return r;
        virDomainPtr *doms = NULL;
        int n = virConnectListAllDomains(conn, &doms, 0);
        if (n < 0) {
                r = nst_lv_conn_error(p->conn, conn, err, -EIO, "HypervisorError",
                                      "cannot list domains");
                virConnectClose(conn);
                return r;
        }
        json_object *all = json_object_new_object();
        for (int i = 0; i < n; i++) {
                char uuid[VIR_UUID_STRING_BUFLEN];
                struct nst_inv_instance k;
                int state, reason;
                /* Only Nestor's instances; one that vanished meanwhile is
                 * left out (its deletion is the next report's news). */
                if (virDomainGetUUIDString(doms[i], uuid) == 0 && nst_inv_get(p->inv, uuid, &k) &&
                    virDomainGetState(doms[i], &state, &reason, 0) == 0)
                        json_object_object_add(all, uuid, instance_object(p, &k, state));
                virDomainFree(doms[i]);
        }
        free(doms);
        virResetLastError();
        virConnectClose(conn);
        *ret = all;
        return 0;
}

int nst_lv_register_objects(struct lv_plugin *p, struct nst_error *err) {
        const struct nst_inventory_iface *inv = nst_host_lookup(p->host, NST_INVENTORY_IFACE);
        if (!inv)
                return 0;
        return inv->register_collection(inv->self, "instance", instance_fields,
                                        NST_ARRAY_SIZE(instance_fields), list_instances, p, err);
}
