/* What the plugin learns from libvirt rather than from calls: the tables
 * rebuilt on every connection, and domain lifecycle events turned into
 * nova-style versioned notifications (InstanceActionPayload 1.8, the
 * InstancePayload keys of nova's versioned notifications, null where Nestor
 * has no such fact). Events an operation causes and reports itself (spawn's
 * start, destroy's stop and undefine, reboot's stop and start) are expected
 * in the inventory and consumed here silently. Runs on the event thread. */
#define NST_LOG_MODULE "libvirt"

#include <errno.h>
#include <libvirt/virterror.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/clock.h"
#include "agent/log.h"
#include "messages/notification.h"
#include "plugins/libvirt/lv_plugin.h"
#include "messages/json_util.h"
#include "plugins/libvirt/lv_util.h"

/* ---- tables rebuilt on connect ---- */

static void copy(char *dst, size_t size, const char *src) {
        snprintf(dst, size, "%s", src ? src : "");
}

void nst_lv_inv_entry(const struct nst_instance_meta *m, const char *uuid, const char *name,
                      unsigned vcpus, uint64_t memory_mb, struct nst_inv_instance *ret) {
        memset(ret, 0, sizeof(*ret));
        copy(ret->uuid, sizeof(ret->uuid), uuid);
        copy(ret->name, sizeof(ret->name), name);
        copy(ret->profile, sizeof(ret->profile), m->profile);
        copy(ret->user_id, sizeof(ret->user_id), m->user_id);
        copy(ret->project_id, sizeof(ret->project_id), m->project_id);
        copy(ret->created_at, sizeof(ret->created_at), m->created_at);
        ret->vcpus = vcpus;
        ret->memory_mb = memory_mb;
}

/* An instance undefined without destroy: its MACs and PCI devices are free
 * again (the record of the claims went with the definition). */
static void forget_instance(struct lv_plugin *p, const char *uuid) {
        struct nst_error err = NST_ERROR_INIT;
        nst_inv_remove(p->inv, uuid);
        nst_inv_mac_release(p->inv, uuid);
        if (p->pci && p->pci->release(p->pci->self, uuid, &err) < 0)
                log_warning("instance %s: cannot release its PCI devices: %s", uuid, err.message);
}

/* The PCI devices an instance was given are its own again after a restart
 * of the agent (or of libvirtd): nobody else may be handed them. */
static void restore_claims(struct lv_plugin *p, const char *uuid, const char *name,
                           const struct nst_instance_meta *m) {
        if (m->n_claims == 0)
                return;
        if (!p->pci) {
                log_warning("instance %s (%s) holds %zu PCI device(s) but no PCI device plugin "
                            "is enabled: they are not protected from other claims",
                            name, uuid, m->n_claims);
                return;
        }
        struct nst_pci_claim claims[NST_MAX_CLAIMS];
        size_t n = 0;
        for (size_t i = 0; i < m->n_claims && n < NST_MAX_CLAIMS; i++)
                if (strcmp(m->claims[i].kind, "pci") == 0)
                        claims[n++] = m->claims[i].pci;
        struct nst_error err = NST_ERROR_INIT;
        if (p->pci->restore(p->pci->self, uuid, claims, n, &err) < 0)
                log_error("instance %s (%s): cannot restore its PCI claims: %s", name, uuid,
                          err.message);
}

/* One domain's MACs (every domain's: a generated MAC must not collide with
 * a guest Nestor does not manage) and, for Nestor's, its inventory entry. */
static void record_domain(struct lv_plugin *p, const char *xml) {
        _cleanup_(xmlFreeDocp) xmlDocPtr doc = NULL;
        if (nst_xml_parse(xml, "domain XML", "InvalidMetadata", &doc, NULL) < 0)
                return;
        _cleanup_(xmlXPathFreeContextp) xmlXPathContextPtr ctx = nst_xpath_new(doc);
        if (!ctx)
                return;
        _cleanup_free_ char *uuid = nst_xpath_string(ctx, NULL, "string(/domain/uuid)");
        _cleanup_free_ char *name = nst_xpath_string(ctx, NULL, "string(/domain/name)");
        _cleanup_free_ char *vcpus = nst_xpath_string(ctx, NULL, "string(/domain/vcpu)");
        _cleanup_free_ char *mem = nst_xpath_string(ctx, NULL, "string(/domain/memory)");
        if (!uuid || !name || !vcpus || !mem)
                return;
        struct nst_error err = NST_ERROR_INIT;
        _cleanup_(nst_instance_meta_freep) struct nst_instance_meta *m = NULL;
        bool nestor = nst_domain_metadata_parse(xml, &m, &err) == 0;
        _cleanup_(xmlXPathFreeObjectp) xmlXPathObjectPtr macs =
                nst_xpath_nodes(ctx, NULL, "/domain/devices/interface/mac/@address");
        for (int i = 0; i < nst_xpath_count(macs); i++) {
                xmlChar *v = xmlNodeGetContent(macs->nodesetval->nodeTab[i]);
                if (v)
                        nst_inv_mac_add(p->inv, (const char *)v, nestor ? uuid : NULL);
                xmlFree(v);
        }
        if (!nestor)
                return;
        restore_claims(p, uuid, name, m);
        /* libvirt writes <memory> in KiB. */
        struct nst_inv_instance k;
        nst_lv_inv_entry(m, uuid, name, (unsigned)strtoul(vcpus, NULL, 10),
                         strtoull(mem, NULL, 10) / 1024, &k);
        nst_inv_put(p->inv, &k);
}

void nst_lv_on_connected(void *userdata, virConnectPtr conn) {
        struct lv_plugin *p = userdata;
        virDomainPtr *doms = NULL;
        int n = virConnectListAllDomains(conn, &doms, 0);
        if (n < 0) {
                log_warning("cannot list libvirt domains to rebuild the instance tables: %s",
                            virGetLastErrorMessage());
                return;
        }
        nst_inv_mark(p->inv);
        bool complete = true;
        for (int i = 0; i < n; i++) {
                char *xml = virDomainGetXMLDesc(doms[i], 0);
                if (xml) {
                        record_domain(p, xml);
                } else {
                        virErrorPtr e = virGetLastError();
                        complete &= e && e->code == VIR_ERR_NO_DOMAIN; /* gone meanwhile */
                }
                free(xml);
                virDomainFree(doms[i]);
        }
        free(doms);
        virResetLastError();
        /* Undefined while the agent was not connected: the event is lost,
         * the notification is not. Only from a complete scan. */
        struct nst_inv_instance gone;
        while (complete && nst_inv_sweep_one(p->inv, &gone)) {
                log_info("instance %s (%s) disappeared while disconnected", gone.name, gone.uuid);
                forget_instance(p, gone.uuid);
                nst_lv_notify(p, "instance.delete.end", NST_LV_PAYLOAD_ACTION, &gone, "deleted",
                              "shutdown", NULL, NULL, NULL);
        }
        log_info("libvirt: %zu Nestor instance(s) and %zu MAC address(es) known",
                 nst_inv_count(p->inv), nst_inv_mac_count(p->inv));
}

/* ---- notifications ---- */

static void iso_now(char buf[32]) {
        time_t now = time(NULL);
        struct tm tm;
        strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
}

static json_object *flavor_payload(const struct nst_inv_instance *k) {
        /* Nestor has no flavors: only the sizes are known. */
        json_object *d = json_object_new_object();
        json_object_object_add(d, "flavorid", NULL);
        json_object_object_add(d, "name", NULL);
        json_object_object_add(d, "memory_mb",
                               k->memory_mb ? json_object_new_int64((int64_t)k->memory_mb) : NULL);
        json_object_object_add(d, "vcpus", k->vcpus ? json_object_new_int((int)k->vcpus) : NULL);
        json_object_object_add(d, "root_gb", NULL);
        json_object_object_add(d, "ephemeral_gb", NULL);
        json_object_object_add(d, "swap", NULL);
        json_object_object_add(d, "rxtx_factor", NULL);
        json_object_object_add(d, "vcpu_weight", NULL);
        json_object_object_add(d, "disabled", json_object_new_boolean(false));
        json_object_object_add(d, "is_public", json_object_new_boolean(true));
        json_object_object_add(d, "extra_specs", json_object_new_object());
        json_object_object_add(d, "projects", json_object_new_array());
        json_object_object_add(d, "description", NULL);
        return nst_versioned_object("FlavorPayload", "nova", "1.4", d);
}

static json_object *fault_payload(const struct nst_error *fault, const char *function) {
        json_object *d = json_object_new_object();
        json_object_object_add(d, "module_name", json_object_new_string(fault->module));
        json_object_object_add(d, "function_name", json_object_new_string(function));
        json_object_object_add(d, "exception", json_object_new_string(fault->cls));
        json_object_object_add(d, "exception_message", json_object_new_string(fault->message));
        json_object_object_add(d, "traceback", NULL);
        return nst_versioned_object("ExceptionPayload", "nova", "1.1", d);
}

static json_object *instance_payload(struct lv_plugin *p, const char *event_type,
                                     enum nst_lv_payload_kind kind,
                                     const struct nst_inv_instance *k, const char *vm_state,
                                     const char *power_state, const char *task_state,
                                     json_object *ctx, const struct nst_error *fault) {
        const char *host = nst_host_name(p->host);
        bool deleted = strcmp(event_type, "instance.delete.end") == 0;
        char now[32];
        iso_now(now);
        json_object *d = json_object_new_object();
        json_object_object_add(d, "uuid", json_object_new_string(k->uuid));
        json_object_object_add(d, "user_id", nst_json_string_or_null(k->user_id));
        json_object_object_add(d, "tenant_id", nst_json_string_or_null(k->project_id));
        json_object_object_add(d, "reservation_id", NULL);
        json_object_object_add(d, "display_name", nst_json_string_or_null(k->name));
        json_object_object_add(d, "display_description", NULL);
        json_object_object_add(d, "host_name", nst_json_string_or_null(k->name));
        json_object_object_add(d, "host", json_object_new_string(host));
        json_object_object_add(d, "node", json_object_new_string(host));
        json_object_object_add(d, "os_type", NULL);
        json_object_object_add(d, "architecture", json_object_new_string("x86_64"));
        json_object_object_add(d, "availability_zone", NULL);
        json_object_object_add(d, "flavor", flavor_payload(k));
        json_object_object_add(d, "image_uuid", NULL);
        json_object_object_add(d, "key_name", NULL);
        json_object_object_add(d, "kernel_id", NULL);
        json_object_object_add(d, "ramdisk_id", NULL);
        json_object_object_add(d, "created_at", nst_json_string_or_null(k->created_at));
        json_object_object_add(d, "launched_at", NULL);
        json_object_object_add(d, "terminated_at", deleted ? json_object_new_string(now) : NULL);
        json_object_object_add(d, "deleted_at", deleted ? json_object_new_string(now) : NULL);
        json_object_object_add(d, "updated_at", json_object_new_string(now));
        json_object_object_add(d, "state", nst_json_string_or_null(vm_state));
        json_object_object_add(d, "power_state", nst_json_string_or_null(power_state));
        json_object_object_add(d, "task_state", nst_json_string_or_null(task_state));
        json_object_object_add(d, "progress", NULL);
        json_object_object_add(d, "ip_addresses", json_object_new_array());
        json_object_object_add(d, "block_devices", NULL);
        /* The guest's profile is the one Nestor fact nova has no field for. */
        json_object *md = json_object_new_object();
        if (k->profile[0])
                json_object_object_add(md, "nestor_profile", json_object_new_string(k->profile));
        json_object_object_add(d, "metadata", md);
        json_object_object_add(d, "locked", json_object_new_boolean(false));
        json_object_object_add(d, "locked_reason", NULL);
        json_object_object_add(d, "auto_disk_config", json_object_new_string("MANUAL"));
        json_object_object_add(d, "request_id",
                               nst_json_string_or_null(nst_lv_ctx_string(ctx, "request_id", NULL)));
        json_object_object_add(d, "action_initiator_user",
                               nst_json_string_or_null(nst_lv_ctx_string(ctx, "user_id", "user")));
        json_object_object_add(d, "action_initiator_project",
                               nst_json_string_or_null(nst_lv_ctx_string(ctx, "project_id", "tenant")));
        const char *fn = strncmp(event_type, "instance.", 9) == 0 ? event_type + 9 : event_type;
        char function[32];
        snprintf(function, sizeof(function), "%.*s", (int)strcspn(fn, "."), fn);
        json_object_object_add(d, "fault", fault ? fault_payload(fault, function) : NULL);
        if (kind == NST_LV_PAYLOAD_CREATE) {
                json_object_object_add(d, "keypairs", json_object_new_array());
                json_object_object_add(d, "tags", json_object_new_array());
                json_object_object_add(d, "trusted_image_certificates", NULL);
                json_object_object_add(d, "instance_name", nst_json_string_or_null(k->name));
                return nst_versioned_object("InstanceCreatePayload", "nova", "1.12", d);
        }
        return nst_versioned_object("InstanceActionPayload", "nova", "1.8", d);
}

void nst_lv_notify(struct lv_plugin *p, const char *event_type, enum nst_lv_payload_kind kind,
                   const struct nst_inv_instance *inst, const char *vm_state,
                   const char *power_state, const char *task_state, json_object *ctx,
                   const struct nst_error *fault) {
        json_object *payload = instance_payload(p, event_type, kind, inst, vm_state, power_state,
                                                task_state, ctx, fault);
        struct nst_error err = NST_ERROR_INIT;
        if (nst_host_notify(p->host, event_type, fault ? NST_PRIO_ERROR : NST_PRIO_INFO, payload,
                            ctx, &err) < 0)
                log_debug("notification %s for %s not sent: %s", event_type, inst->uuid,
                          err.message);
}

/* ---- lifecycle events ---- */

struct event_map {
        const char *type;
        const char *vm_state, *power_state;
};

static bool map_event(int event, int detail, struct event_map *m) {
        switch (event) {
        case VIR_DOMAIN_EVENT_STARTED:
                *m = (struct event_map){"instance.power_on.end", "active", "running"};
                return true;
        case VIR_DOMAIN_EVENT_STOPPED:
                if (detail == VIR_DOMAIN_EVENT_STOPPED_CRASHED)
                        *m = (struct event_map){"instance.power_off.end", "error", "crashed"};
                else
                        *m = (struct event_map){"instance.power_off.end", "stopped", "shutdown"};
                return true;
        case VIR_DOMAIN_EVENT_SUSPENDED:
                *m = (struct event_map){"instance.suspend.end", "suspended", "paused"};
                return true;
        case VIR_DOMAIN_EVENT_PMSUSPENDED:
                *m = (struct event_map){"instance.suspend.end", "suspended", "suspended"};
                return true;
        case VIR_DOMAIN_EVENT_RESUMED:
                *m = (struct event_map){"instance.resume.end", "active", "running"};
                return true;
        case VIR_DOMAIN_EVENT_UNDEFINED:
                *m = (struct event_map){"instance.delete.end", "deleted", "shutdown"};
                return true;
        default:
                /* DEFINED (spawn reports create.*), SHUTDOWN (in progress:
                 * STOPPED follows), CRASHED (STOPPED follows: on_crash destroy). */
                return false;
        }
}

void nst_lv_on_lifecycle(void *userdata, virDomainPtr dom, int event, int detail) {
        struct lv_plugin *p = userdata;
        char uuid[VIR_UUID_STRING_BUFLEN];
        struct event_map m;
        if (virDomainGetUUIDString(dom, uuid) < 0)
                return;
        /* Every event, also those Nestor's own operations expect. */
        pthread_mutex_lock(&p->watch_lock);
        for (size_t i = 0; i < p->n_watchers; i++)
                p->watchers[i].fn(p->watchers[i].userdata, uuid, event, detail);
        pthread_mutex_unlock(&p->watch_lock);
        if (!map_event(event, detail, &m))
                return;
        /* QEMU starts a guest paused and then resumes it: that RESUMED is
         * part of the start (the guest is still "running, booted"). */
        int st, reason;
        if (event == VIR_DOMAIN_EVENT_RESUMED && virDomainGetState(dom, &st, &reason, 0) == 0 &&
            st == VIR_DOMAIN_RUNNING && reason == VIR_DOMAIN_RUNNING_BOOTED)
                return;
        /* Checked first: an operation's own event must be consumed even when
         * it comes before the instance is in the table. */
        if (nst_inv_expected(p->inv, uuid, NST_INV_EV(event), nst_now_ms()))
                return;
        struct nst_inv_instance k;
        if (!nst_inv_get(p->inv, uuid, &k))
                return; /* not Nestor's */
        if (event == VIR_DOMAIN_EVENT_UNDEFINED) {
                /* Undefined behind Nestor's back (e.g. virsh): forget it. */
                forget_instance(p, uuid);
        }
        log_info("instance %s (%s): %s", k.name, uuid, m.type);
        nst_lv_notify(p, m.type, NST_LV_PAYLOAD_ACTION, &k, m.vm_state, m.power_state, NULL, NULL,
                      NULL);
}

void nst_lv_on_reboot(void *userdata, virDomainPtr dom) {
        struct lv_plugin *p = userdata;
        char uuid[VIR_UUID_STRING_BUFLEN];
        if (virDomainGetUUIDString(dom, uuid) < 0 ||
            nst_inv_expected(p->inv, uuid, NST_INV_EV_REBOOT, nst_now_ms()))
                return;
        struct nst_inv_instance k;
        if (nst_inv_get(p->inv, uuid, &k))
                nst_lv_notify(p, "instance.reboot.end", NST_LV_PAYLOAD_ACTION, &k, "active",
                              "running", NULL, NULL, NULL);
}
