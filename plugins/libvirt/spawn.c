/* spawn and destroy: the two methods that create and remove things.
 *
 * spawn checks everything it can before creating anything (spec, profile,
 * PCI requests, host capabilities and nesting, base images, duplicate name
 * or uuid, MACs), then creates in order -- instance directory, disks,
 * definition, running guest -- and on failure undoes what it made in
 * reverse order: no domain, no directory, no MAC left taken.
 *
 * destroy works in the order that lets a retry finish the job: stop the
 * guest, release PCI claims, remove the instance directory, undefine. A
 * failure leaves a stopped domain whose next destroy continues; a directory
 * left without a domain (an agent killed mid-spawn) is removed by destroying
 * its uuid. */
#define NST_LOG_MODULE "libvirt"

#include <errno.h>
#include <libvirt/virterror.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/clock.h"
#include "agent/log.h"
#include "messages/json_util.h"
#include "plugins/libvirt/disks.h"
#include "plugins/libvirt/lv_plugin.h"
#include "plugins/libvirt/lv_util.h"

#define MAC_TRIES 64

/* ---- spawn ---- */

struct spawn {
        struct lv_plugin *p;
        json_object *ctx;
        struct nst_guest_spec *spec;
        const struct nst_profile *profile;
        struct nst_domain_plan *plan;
        struct nst_disk_plan disks;
        virConnectPtr conn;
        virDomainPtr dom;
        struct nst_inv_instance inst;  /* for notifications */
        struct nst_pci_claim *pci;     /* what the sriov plugin handed out */
        size_t n_pci;
        bool claimed, macs, pci_claimed, notified, dir, defined, started;
};

static int resolve(struct spawn *s, struct nst_error *err) {
        struct lv_plugin *p = s->p;
        int r = nst_lv_lock_caps(p, false, err);
        if (r < 0)
                return r;
        r = nst_domain_plan_resolve(s->spec, s->profile, p->caps, s->plan, err);
        pthread_mutex_unlock(&p->lock);
        return r;
}

/* InstanceExists when libvirt already has the name or the uuid. */
static int check_unique(struct spawn *s, struct nst_error *err) {
        const struct nst_guest_spec *spec = s->spec;
        virDomainPtr d = virDomainLookupByUUIDString(s->conn, spec->uuid);
        const char *which = "uuid";
        if (!d) {
                virErrorPtr e = virGetLastError();
                if (!e || e->code != VIR_ERR_NO_DOMAIN)
                        return nst_lv_conn_error(s->p->conn, s->conn, err, -EIO, "HypervisorError",
                                                 "spawn: cannot look up uuid %s", spec->uuid);
                d = virDomainLookupByName(s->conn, spec->name);
                which = "name";
        }
        if (!d) {
                virErrorPtr e = virGetLastError();
                if (e && e->code == VIR_ERR_NO_DOMAIN) {
                        virResetLastError();
                        return 0;
                }
                return nst_lv_conn_error(s->p->conn, s->conn, err, -EIO, "HypervisorError",
                                         "spawn: cannot look up name %s", spec->name);
        }
        char uuid[VIR_UUID_STRING_BUFLEN] = "?";
        const char *name = virDomainGetName(d);
        virDomainGetUUIDString(d, uuid);
        int r = nst_error_set(err, -EEXIST, "InstanceExists",
                              "spawn: a domain with this %s already exists (name %s, uuid %s)",
                              which, name ? name : "?", uuid);
        virDomainFree(d);
        return r;
}

/* Generated MACs are drawn until one was never seen on this host; given
 * ones must not be live on another instance. All are taken for the uuid. */
static int assign_macs(struct spawn *s, struct nst_error *err) {
        struct lv_plugin *p = s->p;
        struct nst_guest_spec *spec = s->spec;
        s->macs = true;
        for (size_t i = 0; i < spec->n_nics; i++) {
                struct nst_nic_spec *n = &spec->nics[i];
                if (!n->mac_generated) {
                        char owner[37];
                        if (nst_inv_mac_live(p->inv, n->mac, NULL, owner))
                                return nst_error_set(err, -EEXIST, "InvalidInput",
                                                     "spec.nics[%zu].mac: %s is in use by "
                                                     "instance %s",
                                                     i, n->mac, owner);
                        if (nst_inv_mac_add(p->inv, n->mac, spec->uuid) < 0)
                                return nst_error_set(err, -ENOMEM, "MemoryError",
                                                     "out of memory");
                        continue;
                }
                int r = -EEXIST;
                for (int t = 0; t < MAC_TRIES && r == -EEXIST; t++) {
                        unsigned char b[3];
                        if (p->mac_random(p->mac_random_userdata, b) < 0)
                                return nst_error_set(err, -EIO, "RuntimeError",
                                                     "spec.nics[%zu].mac: no random bytes", i);
                        snprintf(n->mac, sizeof(n->mac), "52:54:00:%02x:%02x:%02x", b[0], b[1],
                                 b[2]);
                        /* Explicit MACs later in the spec are not taken yet. */
                        bool clash = false;
                        for (size_t j = 0; j < spec->n_nics && !clash; j++)
                                clash = j != i && strcmp(spec->nics[j].mac, n->mac) == 0;
                        r = clash ? -EEXIST : nst_inv_mac_reserve(p->inv, n->mac, spec->uuid);
                }
                if (r < 0)
                        return nst_error_set(err, r, "RuntimeError",
                                             "spec.nics[%zu].mac: cannot find an unused MAC "
                                             "address",
                                             i);
        }
        return 0;
}

/* PCI devices last among the checks: they are the scarcest, and a claim
 * programs VFs, so nothing cheaper may fail after it. The MACs of SR-IOV
 * NICs join the instance's MACs, under the same uniqueness rule. */
static int claim_pci(struct spawn *s, struct nst_error *err) {
        struct lv_plugin *p = s->p;
        const struct nst_guest_spec *spec = s->spec;
        if (!spec->pci_requests)
                return 0;
        int r = p->pci->claim(p->pci->self, spec->uuid, spec->pci_requests, spec->numa_nodes,
                              spec->n_numa_nodes, &s->pci, &s->n_pci, err);
        if (r < 0)
                return r;
        s->pci_claimed = true;
        for (size_t i = 0; i < s->n_pci; i++) {
                const char *mac = s->pci[i].mac;
                char owner[37];
                if (!mac[0])
                        continue;
                if (nst_inv_mac_live(p->inv, mac, NULL, owner) && strcmp(owner, spec->uuid) != 0)
                        return nst_error_set(err, -EEXIST, "InvalidInput",
                                             "spec.pci_requests: MAC %s is in use by instance %s",
                                             mac, owner);
                if (nst_inv_mac_add(p->inv, mac, spec->uuid) < 0)
                        return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        return 0;
}

static int define_and_start(struct spawn *s, const char *xml, struct nst_error *err) {
        struct lv_plugin *p = s->p;
        const char *name = s->spec->name;
        s->dom = virDomainDefineXMLFlags(s->conn, xml, VIR_DOMAIN_DEFINE_VALIDATE);
        if (!s->dom) {
                virErrorPtr e = virGetLastError();
                bool refused = e && (e->code == VIR_ERR_INVALID_ARG ||
                                     e->code == VIR_ERR_NO_SUPPORT);
                if (refused)
                        s->dom = virDomainDefineXML(s->conn, xml);
        }
        if (!s->dom)
                return nst_lv_conn_error(p->conn, s->conn, err, -EIO, "HypervisorError",
                                         "spawn: libvirt refused the definition of %s", name);
        s->defined = true;
        nst_inv_expect(p->inv, s->spec->uuid, NST_INV_EV(VIR_DOMAIN_EVENT_STARTED), nst_now_ms(),
                       NST_LV_EXPECT_TTL_MS);
        if (virDomainCreate(s->dom) < 0)
                return nst_lv_conn_error(p->conn, s->conn, err, -EIO, "HypervisorError",
                                         "spawn: libvirt could not start %s", name);
        s->started = true;
        if (s->plan->n_nesting == 0)
                return 0;
        /* libvirt or QEMU may drop a CPU feature silently: the guest would
         * run but could not be the hypervisor it was made for. */
        char *live = virDomainGetXMLDesc(s->dom, 0);
        if (!live)
                return nst_lv_conn_error(p->conn, s->conn, err, -EIO, "HypervisorError",
                                         "spawn: cannot read the live XML of %s", name);
        int r = nst_domain_xml_check_live(live, err);
        free(live);
        if (r < 0)
                nst_error_prefix(err, "spawn: instance %s", name);
        return r;
}

/* Reverse order of creation; what fails here is logged, the spawn's own
 * error is what the caller gets. */
static void undo(struct spawn *s) {
        struct lv_plugin *p = s->p;
        if (!s->spec)
                return;
        const char *uuid = s->spec->uuid;
        struct nst_error e = NST_ERROR_INIT;
        if (s->dom) {
                uint32_t own = NST_INV_EV(VIR_DOMAIN_EVENT_UNDEFINED);
                if (s->started)
                        own |= NST_INV_EV(VIR_DOMAIN_EVENT_STOPPED);
                nst_inv_expect(p->inv, uuid, own, nst_now_ms(), NST_LV_EXPECT_TTL_MS);
                if (s->started && virDomainDestroy(s->dom) < 0)
                        log_warning("spawn %s failed; cannot stop it: %s", uuid,
                                    virGetLastErrorMessage());
                if (s->defined && nst_lv_undefine(p, s->conn, s->dom, s->spec->name, &e) < 0)
                        log_warning("spawn %s failed; %s", uuid, e.message);
        }
        if (s->defined && !s->started) /* the start event that will not come */
                nst_inv_unexpect(p->inv, uuid, NST_INV_EV(VIR_DOMAIN_EVENT_STARTED));
        if (s->dir && nst_instance_dir_remove(p->instances_path, uuid, &e) < 0)
                log_warning("spawn %s failed; %s", uuid, e.message);
        if (s->pci_claimed && p->pci->release(p->pci->self, uuid, &e) < 0)
                log_warning("spawn %s failed; %s", uuid, e.message);
        if (s->macs)
                nst_inv_mac_release(p->inv, uuid);
}

/* What notifications say about the instance, from the spec and the call. */
static void inventory_entry(struct spawn *s, const struct nst_build_context *b) {
        struct nst_inv_instance *k = &s->inst;
        memset(k, 0, sizeof(*k));
        snprintf(k->uuid, sizeof(k->uuid), "%s", s->spec->uuid);
        snprintf(k->name, sizeof(k->name), "%s", s->spec->name);
        snprintf(k->profile, sizeof(k->profile), "%s", s->profile->name);
        snprintf(k->user_id, sizeof(k->user_id), "%s", b->user_id ? b->user_id : "");
        snprintf(k->project_id, sizeof(k->project_id), "%s", b->project_id ? b->project_id : "");
        snprintf(k->created_at, sizeof(k->created_at), "%s", b->created_at);
        k->vcpus = s->spec->vcpus;
        k->memory_mb = s->spec->memory_mb;
}

static int run_spawn(struct spawn *s, json_object *spec_obj, json_object **ret,
                     struct nst_error *err) {
        struct lv_plugin *p = s->p;
        int r;
        if ((r = nst_guest_spec_parse(spec_obj, &s->spec, err)) < 0 ||
            (r = nst_profile_set_lookup(p->profiles, s->spec->profile, &s->profile, err)) < 0 ||
            (r = nst_lv_check_pci(p, s->spec, err)) < 0 ||
            (r = nst_lv_conn_get(p->conn, &s->conn, err)) < 0)
                return r;
        struct nst_guest_spec *spec = s->spec;
        if (!(s->plan = malloc(sizeof(*s->plan))))
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        if ((r = resolve(s, err)) < 0 ||
            (r = nst_disks_plan(p->qemu_img, spec, (const char *const *)p->image_dirs,
                                p->n_image_dirs, &s->disks, err)) < 0)
                return r;
        const char *busy = NULL;
        r = nst_inv_claim(p->inv, spec->uuid, spec->name, "spawn", &busy);
        if (r == -EBUSY)
                return nst_error_set(err, -EEXIST, "InstanceExists",
                                     "spawn: an instance with name %s or uuid %s is being "
                                     "handled (%s in progress)",
                                     spec->name, spec->uuid, busy);
        if (r < 0)
                return nst_error_set(err, r, "MemoryError", "out of memory");
        s->claimed = true;
        if ((r = check_unique(s, err)) < 0 || (r = assign_macs(s, err)) < 0 ||
            (r = claim_pci(s, err)) < 0)
                return r;

        char created[32];
        struct nst_build_context bctx;
        nst_lv_build_context(s->ctx, created, &bctx);
        bctx.instances_path = p->instances_path;
        bctx.claims = s->pci;
        bctx.n_claims = s->n_pci;
        inventory_entry(s, &bctx);
        nst_lv_notify(p, "instance.create.start", NST_LV_PAYLOAD_CREATE, &s->inst, "building",
                      "pending", "spawning", s->ctx, NULL);
        s->notified = true;

        _cleanup_free_ char *xml = NULL;
        if ((r = nst_instance_dir_create(p->instances_path, spec->uuid, err)) < 0)
                return r;
        s->dir = true;
        if ((r = nst_disks_create(p->qemu_img, p->instances_path, spec, &s->disks, err)) < 0 ||
            (r = nst_domain_xml_render(spec, s->plan, &bctx, &xml, NULL, err)) < 0 ||
            (r = define_and_start(s, xml, err)) < 0)
                return r;

        if (nst_inv_put(p->inv, &s->inst) < 0)
                log_warning("instance table full: %s (%s) is not tracked for notifications",
                            spec->name, spec->uuid);
        nst_lv_notify(p, "instance.create.end", NST_LV_PAYLOAD_CREATE, &s->inst, "active",
                      "running", NULL, s->ctx, NULL);
        json_object *o = json_object_new_object();
        json_object_object_add(o, "uuid", json_object_new_string(spec->uuid));
        json_object_object_add(o, "name", json_object_new_string(spec->name));
        json_object_object_add(o, "state", json_object_new_string("running"));
        json_object_object_add(o, "profile", json_object_new_string(s->profile->name));
        json_object_object_add(o, "virt_type",
                               json_object_new_string(nst_virt_type_name(s->plan->virt_type)));
        json_object_object_add(o, "notes", json_object_new_string(s->plan->notes));
        json_object *macs = json_object_new_array();
        for (size_t i = 0; i < spec->n_nics; i++)
                json_object_array_add(macs, json_object_new_string(spec->nics[i].mac));
        json_object_object_add(o, "macs", macs);
        json_object *pci = json_object_new_array();
        for (size_t i = 0; i < s->n_pci; i++)
                json_object_array_add(pci, nst_pci_claim_to_json(&s->pci[i]));
        json_object_object_add(o, "pci_devices", pci);
        *ret = o;
        return 0;
}

int nst_lv_spawn(struct lv_plugin *p, json_object *ctx, json_object *args, json_object **ret,
                 struct nst_error *err) {
        static const char *const allowed[] = {"spec", NULL};
        json_object *spec_obj = NULL;
        int r = nst_json_check_keys(args, "spawn", allowed, err);
        if (r < 0 || (r = nst_json_req_object(args, "spec", "spawn", &spec_obj, err)) < 0)
                return r;
        struct spawn s = {.p = p, .ctx = ctx};
        r = run_spawn(&s, spec_obj, ret, err);
        if (r < 0) {
                undo(&s);
                if (s.notified)
                        nst_lv_notify(p, "instance.create.error", NST_LV_PAYLOAD_CREATE, &s.inst,
                                      "error", "shutdown", NULL, ctx, err);
        } else {
                log_info("spawned %s (%s, profile %s)", s.spec->name, s.spec->uuid,
                         s.profile->name);
        }
        if (s.claimed)
                nst_inv_unclaim(p->inv, s.spec->uuid);
        if (s.dom)
                virDomainFree(s.dom);
        if (s.conn)
                virConnectClose(s.conn);
        nst_disk_plan_done(&s.disks);
        free(s.pci);
        free(s.plan);
        nst_guest_spec_free(s.spec);
        return r;
}

/* ---- destroy ---- */

/* The instance directory of a uuid libvirt does not know: a spawn that
 * died half-way. Removing it is the rest of that spawn's undo. */
static int destroy_orphan(struct lv_plugin *p, const char *id, json_object **ret,
                          struct nst_error *err) {
        char uuid[37];
        snprintf(uuid, sizeof(uuid), "%s", id);
        for (char *c = uuid; *c; c++)
                if (*c >= 'A' && *c <= 'F')
                        *c = (char)(*c - 'A' + 'a');
        if (!nst_instance_dir_exists(p->instances_path, uuid))
                return -ENOENT;
        virConnectPtr conn;
        int r = nst_lv_conn_get(p->conn, &conn, err);
        if (r < 0)
                return r;
        virDomainPtr d = virDomainLookupByUUIDString(conn, uuid);
        virErrorPtr e = d ? NULL : virGetLastError();
        bool absent = e && e->code == VIR_ERR_NO_DOMAIN;
        if (!d && !absent)
                r = nst_lv_conn_error(p->conn, conn, err, -EIO, "HypervisorError",
                                      "destroy: cannot look up %s", uuid);
        if (d)
                virDomainFree(d);
        virConnectClose(conn);
        if (r < 0 || !absent)
                return r < 0 ? r : -ENOENT; /* someone else's domain */
        if (nst_inv_claim(p->inv, uuid, NULL, "destroy", NULL) < 0)
                return nst_error_set(err, -EBUSY, "InstanceInvalidState",
                                     "destroy: %s is busy", uuid);
        r = nst_instance_dir_remove(p->instances_path, uuid, err);
        nst_inv_unclaim(p->inv, uuid);
        if (r < 0)
                return r;
        log_info("removed the instance directory of %s, which had no domain", uuid);
        json_object *o = json_object_new_object();
        json_object_object_add(o, "uuid", json_object_new_string(uuid));
        json_object_object_add(o, "name", NULL);
        json_object_object_add(o, "state", json_object_new_string("deleted"));
        *ret = o;
        return 0;
}

static int run_destroy(struct lv_plugin *p, json_object *ctx, struct lv_instance *inst,
                       struct nst_inv_instance *k, struct nst_error *err) {
        if (inst->meta->n_claims > 0 && !p->pci)
                return nst_error_set(err, -ENOTSUP, "PciAllocationFailed",
                                     "destroy: instance %s holds %zu PCI claim(s) and no PCI "
                                     "device plugin is enabled to release them; nothing was "
                                     "removed",
                                     inst->name, inst->meta->n_claims);
        virDomainInfo info = {0};
        virDomainGetInfo(inst->dom, &info);
        if (!nst_inv_get(p->inv, inst->uuid, k))
                nst_lv_inv_entry(inst->meta, inst->uuid, inst->name, info.nrVirtCpu,
                                 info.maxMem / 1024, k);
        nst_lv_notify(p, "instance.delete.start", NST_LV_PAYLOAD_ACTION, k,
                      nst_lv_vm_state(info.state), nst_lv_power_state(info.state), "deleting", ctx,
                      NULL);
        uint32_t own = NST_INV_EV(VIR_DOMAIN_EVENT_STOPPED) |
                       NST_INV_EV(VIR_DOMAIN_EVENT_UNDEFINED);
        nst_inv_expect(p->inv, inst->uuid, own, nst_now_ms(), NST_LV_EXPECT_TTL_MS);
        int state, r = nst_lv_get_state(p, inst, &state, err);
        if (r < 0)
                return r;
        if (state != VIR_DOMAIN_SHUTOFF && virDomainDestroy(inst->dom) < 0) {
                virErrorPtr e = virGetLastError();
                if (!e || e->code != VIR_ERR_OPERATION_INVALID)
                        return nst_lv_conn_error(p->conn, inst->conn, err, -EIO, "HypervisorError",
                                                 "destroy: cannot stop %s", inst->name);
        }
        /* The guest has let go of its devices; the record of the claims goes
         * with the definition, so they are released before it. Releasing
         * again on a retried destroy is harmless. */
        if (p->pci && (r = p->pci->release(p->pci->self, inst->uuid, err)) < 0)
                return nst_error_prefix(err, "destroy: %s", inst->name);
        if ((r = nst_instance_dir_remove(p->instances_path, inst->uuid, err)) < 0 ||
            (r = nst_lv_undefine(p, inst->conn, inst->dom, inst->name, err)) < 0)
                return r;
        nst_inv_remove(p->inv, inst->uuid);
        nst_inv_mac_release(p->inv, inst->uuid);
        nst_lv_notify(p, "instance.delete.end", NST_LV_PAYLOAD_ACTION, k, "deleted", "shutdown",
                      NULL, ctx, NULL);
        return 0;
}

int nst_lv_destroy(struct lv_plugin *p, json_object *ctx, json_object *args, json_object **ret,
                   struct nst_error *err) {
        static const char *const allowed[] = {"instance", NULL};
        struct lv_instance inst;
        int r = nst_json_check_keys(args, "destroy", allowed, err);
        if (r < 0)
                return r;
        r = nst_lv_instance_open(p, args, "destroy", &inst, err);
        if (r == -ENOENT) {
                const char *id = json_object_get_string(json_object_object_get(args, "instance"));
                struct nst_error e2 = NST_ERROR_INIT;
                int o = strlen(id) == 36 ? destroy_orphan(p, id, ret, &e2) : -ENOENT;
                if (o != -ENOENT)
                        *err = e2;
                return o == -ENOENT ? r : o;
        }
        if (r < 0)
                return r;
        if ((r = nst_lv_claim(p, &inst, "destroy", err)) < 0) {
                nst_lv_instance_close(&inst);
                return r;
        }
        struct nst_inv_instance k;
        r = run_destroy(p, ctx, &inst, &k, err);
        if (r < 0) {
                nst_inv_unexpect(p->inv, inst.uuid,
                                 NST_INV_EV(VIR_DOMAIN_EVENT_STOPPED) |
                                         NST_INV_EV(VIR_DOMAIN_EVENT_UNDEFINED));
        } else {
                json_object *o = json_object_new_object();
                json_object_object_add(o, "uuid", json_object_new_string(inst.uuid));
                json_object_object_add(o, "name", json_object_new_string(inst.name));
                json_object_object_add(o, "state", json_object_new_string("deleted"));
                *ret = o;
                log_info("destroyed %s (%s)", inst.name, inst.uuid);
        }
        nst_inv_unclaim(p->inv, inst.uuid);
        nst_lv_instance_close(&inst);
        return r;
}
