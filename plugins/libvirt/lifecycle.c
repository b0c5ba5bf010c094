/* The instance methods other than spawn and destroy: power_on, power_off,
 * reboot, suspend, resume, get_info, list_instances, get_xml, and the
 * helpers every instance method shares (argument checks, finding an
 * instance, states, the nesting check after a start, undefine).
 *
 * Only domains carrying Nestor's metadata are instances: anything else on
 * the host is invisible to these methods. One mutating operation at a time
 * runs per instance (InstanceInvalidState otherwise), as nova's task_state
 * does. Lifecycle notifications come from libvirt's events (events.c),
 * except reboot's, which reboot sends itself. */
#define NST_LOG_MODULE "libvirt"

#include <errno.h>
#include <libvirt/virterror.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/clock.h"
#include "agent/log.h"
#include "messages/json_util.h"
#include "plugins/libvirt/lv_plugin.h"
#include "plugins/libvirt/lv_util.h"

#define POLL_MS 200
#define DEFAULT_TIMEOUT_S 60
#define MAX_TIMEOUT_S 3600

/* ---- helpers ---- */

static bool looks_like_uuid(const char *s) {
        if (strlen(s) != 36)
                return false;
        for (int i = 0; i < 36; i++) {
                bool dash = i == 8 || i == 13 || i == 18 || i == 23;
                bool hex = (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') ||
                           (s[i] >= 'A' && s[i] <= 'F');
                if (dash ? s[i] != '-' : !hex)
                        return false;
        }
        return true;
}

static bool printable(const char *s) {
        size_t n = strlen(s);
        if (n == 0 || n > 255)
                return false;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
                        return false;
        return true;
}

static int lookup(struct lv_plugin *p, virConnectPtr conn, const char *id, virDomainPtr *ret,
                  struct nst_error *err) {
        virDomainPtr dom = NULL;
        if (looks_like_uuid(id))
                dom = virDomainLookupByUUIDString(conn, id);
        /* A name may look like a uuid: fall back to the name. */
        if (!dom)
                dom = virDomainLookupByName(conn, id);
        if (dom) {
                *ret = dom;
                return 0;
        }
        virErrorPtr e = virGetLastError();
        if (e && e->code == VIR_ERR_NO_DOMAIN)
                return nst_error_set(err, -ENOENT, "InstanceNotFound",
                                     "instance %s not found on this host", id);
        return nst_lv_conn_error(p->conn, conn, err, -EIO, "HypervisorError",
                                 "cannot look up instance %s", id);
}

int nst_lv_instance_open(struct lv_plugin *p, json_object *args, const char *method,
                         struct lv_instance *ret, struct nst_error *err) {
        const char *id = NULL;
        int r = nst_json_req_string(args, "instance", method, &id, err);
        if (r < 0)
                return r;
        if (!printable(id))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s: instance must be a uuid or a name (1-255 printable "
                                     "characters)",
                                     method);
        struct lv_instance inst = {0};
        if ((r = nst_lv_conn_get(p->conn, &inst.conn, err)) < 0)
                return r;
        if ((r = lookup(p, inst.conn, id, &inst.dom, err)) < 0) {
                nst_lv_instance_close(&inst);
                return r;
        }
        char *md = virDomainGetMetadata(inst.dom, VIR_DOMAIN_METADATA_ELEMENT, NST_METADATA_NS, 0);
        if (!md) {
                virErrorPtr e = virGetLastError();
                if (e && (e->code == VIR_ERR_NO_DOMAIN_METADATA || e->code == VIR_ERR_NO_DOMAIN))
                        r = nst_error_set(err, -ENOENT, "InstanceNotFound",
                                          "%s is not an instance managed by Nestor", id);
                else
                        r = nst_lv_conn_error(p->conn, inst.conn, err, -EIO, "HypervisorError",
                                              "cannot read the metadata of %s", id);
                nst_lv_instance_close(&inst);
                return r;
        }
        r = nst_domain_metadata_parse(md, &inst.meta, err);
        free(md);
        const char *name = virDomainGetName(inst.dom);
        if (r < 0 || virDomainGetUUIDString(inst.dom, inst.uuid) < 0 || !name) {
                if (r >= 0)
                        r = nst_lv_conn_error(p->conn, inst.conn, err, -EIO, "HypervisorError",
                                              "cannot read instance %s", id);
                nst_lv_instance_close(&inst);
                return r;
        }
        snprintf(inst.name, sizeof(inst.name), "%s", name);
        *ret = inst;
        return 0;
}

void nst_lv_instance_close(struct lv_instance *inst) {
        nst_instance_meta_free(inst->meta);
        if (inst->dom)
                virDomainFree(inst->dom);
        if (inst->conn)
                virConnectClose(inst->conn);
        *inst = (struct lv_instance){0};
}

int nst_lv_claim(struct lv_plugin *p, const struct lv_instance *inst, const char *method,
                 struct nst_error *err) {
        const char *op = NULL;
        int r = nst_inv_claim(p->inv, inst->uuid, NULL, method, &op);
        if (r == -EBUSY)
                return nst_error_set(err, -EBUSY, "InstanceInvalidState",
                                     "%s: instance %s is busy: %s is in progress", method,
                                     inst->name, op);
        if (r < 0)
                return nst_error_set(err, r, "MemoryError", "out of memory");
        return 0;
}

const char *nst_lv_power_state(int state) {
        /* nova.compute.power_state.STATE_MAP, as nova's libvirt driver maps it. */
        switch (state) {
        case VIR_DOMAIN_RUNNING:
        case VIR_DOMAIN_BLOCKED:
                return "running";
        case VIR_DOMAIN_PAUSED:
                return "paused";
        case VIR_DOMAIN_SHUTDOWN:
        case VIR_DOMAIN_SHUTOFF:
                return "shutdown";
        case VIR_DOMAIN_CRASHED:
                return "crashed";
        case VIR_DOMAIN_PMSUSPENDED:
                return "suspended";
        default:
                return "pending";
        }
}

const char *nst_lv_vm_state(int state) {
        switch (state) {
        case VIR_DOMAIN_RUNNING:
        case VIR_DOMAIN_BLOCKED:
        case VIR_DOMAIN_SHUTDOWN:
                return "active";
        case VIR_DOMAIN_PAUSED:
        case VIR_DOMAIN_PMSUSPENDED:
                return "suspended";
        case VIR_DOMAIN_SHUTOFF:
                return "stopped";
        case VIR_DOMAIN_CRASHED:
                return "error";
        default:
                return "building";
        }
}

int nst_lv_get_state(struct lv_plugin *p, const struct lv_instance *inst, int *ret,
                     struct nst_error *err) {
        int state = VIR_DOMAIN_NOSTATE, reason = 0;
        if (virDomainGetState(inst->dom, &state, &reason, 0) < 0) {
                virErrorPtr e = virGetLastError();
                if (e && e->code == VIR_ERR_NO_DOMAIN)
                        return nst_error_set(err, -ENOENT, "InstanceNotFound",
                                             "instance %s disappeared", inst->name);
                return nst_lv_conn_error(p->conn, inst->conn, err, -EIO, "HypervisorError",
                                         "cannot read the state of %s", inst->name);
        }
        *ret = state;
        return 0;
}

static bool is_active(int state) {
        return state != VIR_DOMAIN_SHUTOFF && state != VIR_DOMAIN_CRASHED &&
               state != VIR_DOMAIN_NOSTATE;
}

int nst_lv_verify_nesting(struct lv_plugin *p, const struct lv_instance *inst,
                          struct nst_error *err) {
        if (!inst->meta || inst->meta->n_nesting == 0)
                return 0;
        char *xml = virDomainGetXMLDesc(inst->dom, 0);
        if (!xml)
                return nst_lv_conn_error(p->conn, inst->conn, err, -EIO, "HypervisorError",
                                         "cannot read the live XML of %s", inst->name);
        int r = nst_domain_xml_check_live(xml, err);
        free(xml);
        if (r < 0) {
                /* A guest that cannot do what its profile promises must not run. */
                nst_inv_expect(p->inv, inst->uuid, NST_INV_EV(VIR_DOMAIN_EVENT_STOPPED),
                               nst_now_ms(), NST_LV_EXPECT_TTL_MS);
                if (virDomainDestroy(inst->dom) < 0)
                        log_warning("cannot stop %s after the nesting check failed: %s",
                                    inst->name, virGetLastErrorMessage());
                nst_error_prefix(err, "instance %s", inst->name);
        }
        return r;
}

static bool flags_refused(void) {
        virErrorPtr e = virGetLastError();
        return e && (e->code == VIR_ERR_INVALID_ARG || e->code == VIR_ERR_NO_SUPPORT ||
                     e->code == VIR_ERR_ARGUMENT_UNSUPPORTED);
}

int nst_lv_undefine(struct lv_plugin *p, virConnectPtr conn, virDomainPtr dom, const char *what,
                    struct nst_error *err) {
        /* Everything libvirt keeps beside the definition goes with it. Drivers
         * refuse flags they do not know (the test driver takes only the
         * snapshot one), so fall back step by step. */
        static const unsigned attempts[] = {
                VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
                        VIR_DOMAIN_UNDEFINE_NVRAM | VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA |
                        VIR_DOMAIN_UNDEFINE_TPM,
                VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
                        VIR_DOMAIN_UNDEFINE_NVRAM,
                VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA,
                0,
        };
        for (size_t i = 0; i < NST_ARRAY_SIZE(attempts); i++) {
                if (virDomainUndefineFlags(dom, attempts[i]) == 0)
                        return 0;
                if (!flags_refused())
                        break;
        }
        virErrorPtr e = virGetLastError();
        if (e && e->code == VIR_ERR_NO_DOMAIN)
                return 0; /* gone already: what a retry wants */
        return nst_lv_conn_error(p->conn, conn, err, -EIO, "HypervisorError",
                                 "cannot undefine %s", what);
}

static json_object *result(const struct lv_instance *inst, int state) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "uuid", json_object_new_string(inst->uuid));
        json_object_object_add(o, "name", json_object_new_string(inst->name));
        json_object_object_add(o, "state", json_object_new_string(nst_lv_power_state(state)));
        return o;
}

static int invalid_state(const char *method, const struct lv_instance *inst, int state,
                         const char *need, struct nst_error *err) {
        return nst_error_set(err, -EINVAL, "InstanceInvalidState",
                             "%s: instance %s is %s; it must be %s", method, inst->name,
                             nst_lv_power_state(state), need);
}

/* Waits until the guest is off or timeout_ms passed. *ret_off: it is off. */
static int wait_off(struct lv_plugin *p, const struct lv_instance *inst, int64_t timeout_ms,
                    bool *ret_off, struct nst_error *err) {
        int64_t deadline = nst_now_ms() + timeout_ms;
        for (;;) {
                int state = VIR_DOMAIN_NOSTATE, r = nst_lv_get_state(p, inst, &state, err);
                if (r < 0)
                        return r;
                if (!is_active(state) || nst_now_ms() >= deadline) {
                        *ret_off = !is_active(state);
                        return 0;
                }
                struct timespec ts = {0, POLL_MS * 1000000L};
                nanosleep(&ts, NULL);
        }
}

/* Stops the guest at once; a guest that stopped meanwhile is fine. */
static int force_off(struct lv_plugin *p, const struct lv_instance *inst, const char *method,
                     struct nst_error *err) {
        if (virDomainDestroy(inst->dom) == 0)
                return 0;
        virErrorPtr e = virGetLastError();
        if (e && e->code == VIR_ERR_OPERATION_INVALID)
                return 0; /* "domain is not running" */
        return nst_lv_conn_error(p->conn, inst->conn, err, -EIO, "HypervisorError",
                                 "%s: cannot stop %s", method, inst->name);
}

/* ACPI shutdown, then (graceful or not) forced off after timeout_s. */
static int shut_down(struct lv_plugin *p, const struct lv_instance *inst, const char *method,
                     int64_t timeout_s, bool *ret_forced, struct nst_error *err) {
        bool off = false;
        int r;
        /* A paused guest cannot react to the power button. */
        int state = VIR_DOMAIN_NOSTATE;
        if ((r = nst_lv_get_state(p, inst, &state, err)) < 0)
                return r;
        if (timeout_s > 0 && state == VIR_DOMAIN_RUNNING) {
                if (virDomainShutdown(inst->dom) == 0) {
                        if ((r = wait_off(p, inst, timeout_s * 1000, &off, err)) < 0)
                                return r;
                } else if (nst_lv_conn_lost(inst->conn)) {
                        return nst_lv_conn_error(p->conn, inst->conn, err, -EIO,
                                                 "HypervisorError", "%s: cannot shut down %s",
                                                 method, inst->name);
                }
        }
        *ret_forced = !off;
        return off ? 0 : force_off(p, inst, method, err);
}

static int opt_timeout(json_object *args, const char *method, int64_t *ret,
                       struct nst_error *err) {
        int64_t t = DEFAULT_TIMEOUT_S;
        int r = nst_json_opt_int64(args, "timeout", method, &t, err);
        if (r < 0)
                return r;
        if (t < 0 || t > MAX_TIMEOUT_S)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s: timeout must be 0-%d seconds, got %lld", method,
                                     MAX_TIMEOUT_S, (long long)t);
        *ret = t;
        return 0;
}

/* Opens and claims the instance a mutating method works on. */
static int begin(struct lv_plugin *p, json_object *args, const char *method,
                 const char *const *allowed, struct lv_instance *inst, struct nst_error *err) {
        int r = nst_json_check_keys(args, method, allowed, err);
        if (r < 0 || (r = nst_lv_instance_open(p, args, method, inst, err)) < 0)
                return r;
        if ((r = nst_lv_claim(p, inst, method, err)) < 0)
                nst_lv_instance_close(inst);
        return r;
}

static void end(struct lv_plugin *p, struct lv_instance *inst) {
        nst_inv_unclaim(p->inv, inst->uuid);
        nst_lv_instance_close(inst);
}

/* ---- methods ---- */

static int start_guest(struct lv_plugin *p, const struct lv_instance *inst, const char *method,
                       struct nst_error *err) {
        if (virDomainCreate(inst->dom) < 0)
                return nst_lv_conn_error(p->conn, inst->conn, err, -EIO, "HypervisorError",
                                         "%s: libvirt could not start %s", method, inst->name);
        return nst_lv_verify_nesting(p, inst, err);
}

int nst_lv_power_on(struct lv_plugin *p, json_object *ctx, json_object *args, json_object **ret,
                    struct nst_error *err) {
        static const char *const allowed[] = {"instance", NULL};
        struct lv_instance inst;
        int state, r = begin(p, args, "power_on", allowed, &inst, err);
        if (r < 0)
                return r;
        if ((r = nst_lv_get_state(p, &inst, &state, err)) >= 0) {
                if (is_active(state))
                        r = invalid_state("power_on", &inst, state, "shut down", err);
                else if ((r = start_guest(p, &inst, "power_on", err)) >= 0)
                        *ret = result(&inst, VIR_DOMAIN_RUNNING);
        }
        end(p, &inst);
        return r;
}

int nst_lv_power_off(struct lv_plugin *p, json_object *ctx, json_object *args,
                     json_object **ret, struct nst_error *err) {
        static const char *const allowed[] = {"instance", "timeout", NULL};
        int64_t timeout = 0;
        struct lv_instance inst;
        int state, r = opt_timeout(args, "power_off", &timeout, err);
        if (r < 0 || (r = begin(p, args, "power_off", allowed, &inst, err)) < 0)
                return r;
        bool forced = false;
        if ((r = nst_lv_get_state(p, &inst, &state, err)) >= 0) {
                if (!is_active(state))
                        r = invalid_state("power_off", &inst, state, "running or paused", err);
                else if ((r = shut_down(p, &inst, "power_off", timeout, &forced, err)) >= 0) {
                        *ret = result(&inst, VIR_DOMAIN_SHUTOFF);
                        json_object_object_add(*ret, "forced", json_object_new_boolean(forced));
                }
        }
        end(p, &inst);
        return r;
}

int nst_lv_reboot(struct lv_plugin *p, json_object *ctx, json_object *args, json_object **ret,
                  struct nst_error *err) {
        static const char *const allowed[] = {"instance", "hard", "timeout", NULL};
        bool hard = false;
        int64_t timeout = 0;
        struct lv_instance inst;
        int state, r = nst_json_opt_bool(args, "hard", "reboot", &hard, err);
        if (r < 0 || (r = opt_timeout(args, "reboot", &timeout, err)) < 0 ||
            (r = begin(p, args, "reboot", allowed, &inst, err)) < 0)
                return r;
        if ((r = nst_lv_get_state(p, &inst, &state, err)) < 0)
                goto out;
        /* Soft needs a guest that can hear the power button; hard (like
         * nova's) also brings back a paused or stopped guest. */
        if (!hard && state != VIR_DOMAIN_RUNNING) {
                r = invalid_state("reboot", &inst, state, "running for a soft reboot", err);
                goto out;
        }
        /* nova's soft reboot: shut down, start again; hard when the guest
         * does not shut down in time. The stop/start events are this
         * operation's: it reports instance.reboot.end itself. */
        uint32_t own = NST_INV_EV(VIR_DOMAIN_EVENT_STOPPED) | NST_INV_EV(VIR_DOMAIN_EVENT_STARTED);
        nst_inv_expect(p->inv, inst.uuid, own, nst_now_ms(), NST_LV_EXPECT_TTL_MS);
        bool forced = hard;
        if (is_active(state))
                r = hard ? force_off(p, &inst, "reboot", err)
                         : shut_down(p, &inst, "reboot", timeout, &forced, err);
        if (r >= 0)
                r = start_guest(p, &inst, "reboot", err);
        if (r < 0) {
                nst_inv_unexpect(p->inv, inst.uuid, own);
                goto out;
        }
        struct nst_inv_instance k;
        virDomainInfo info = {0};
        virDomainGetInfo(inst.dom, &info);
        nst_lv_inv_entry(inst.meta, inst.uuid, inst.name, info.nrVirtCpu, info.maxMem / 1024, &k);
        nst_lv_notify(p, "instance.reboot.end", NST_LV_PAYLOAD_ACTION, &k, "active", "running",
                      NULL, ctx, NULL);
        *ret = result(&inst, VIR_DOMAIN_RUNNING);
        json_object_object_add(*ret, "hard", json_object_new_boolean(forced));
out:
        end(p, &inst);
        return r;
}

static int pause_resume(struct lv_plugin *p, json_object *args, bool pause, json_object **ret,
                        struct nst_error *err) {
        static const char *const allowed[] = {"instance", NULL};
        const char *method = pause ? "suspend" : "resume";
        struct lv_instance inst;
        int state, r = begin(p, args, method, allowed, &inst, err);
        if (r < 0)
                return r;
        if ((r = nst_lv_get_state(p, &inst, &state, err)) >= 0) {
                int need = pause ? VIR_DOMAIN_RUNNING : VIR_DOMAIN_PAUSED;
                if (state != need)
                        r = invalid_state(method, &inst, state, pause ? "running" : "paused",
                                          err);
                else if ((pause ? virDomainSuspend(inst.dom) : virDomainResume(inst.dom)) < 0)
                        r = nst_lv_conn_error(p->conn, inst.conn, err, -EIO, "HypervisorError",
                                              "%s: libvirt could not %s %s", method, method,
                                              inst.name);
                else
                        *ret = result(&inst, pause ? VIR_DOMAIN_PAUSED : VIR_DOMAIN_RUNNING);
        }
        end(p, &inst);
        return r;
}

int nst_lv_suspend(struct lv_plugin *p, json_object *ctx, json_object *args, json_object **ret,
                   struct nst_error *err) {
        return pause_resume(p, args, true, ret, err);
}

int nst_lv_resume(struct lv_plugin *p, json_object *ctx, json_object *args, json_object **ret,
                  struct nst_error *err) {
        return pause_resume(p, args, false, ret, err);
}

static json_object *jstr(const char *s) {
        return s ? json_object_new_string(s) : NULL;
}

static json_object *meta_json(const struct nst_instance_meta *m) {
        json_object *o = json_object_new_object();
        json_object *owner = json_object_new_object();
        json_object_object_add(owner, "user_id", jstr(m->user_id));
        json_object_object_add(owner, "user_name", jstr(m->user_name));
        json_object_object_add(owner, "project_id", jstr(m->project_id));
        json_object_object_add(owner, "project_name", jstr(m->project_name));
        json_object_object_add(o, "owner", owner);
        json_object_object_add(o, "created_at", jstr(m->created_at));
        json_object_object_add(o, "virt_type", jstr(m->virt_type[0] ? m->virt_type : NULL));
        json_object *nest = json_object_new_array();
        for (size_t i = 0; i < m->n_nesting; i++)
                json_object_array_add(nest, json_object_new_string(m->nesting[i]));
        json_object_object_add(o, "nesting_features", nest);
        json_object_object_add(o, "emulated_nesting", json_object_new_boolean(m->emulated_nesting));
        json_object *nics = json_object_new_array();
        for (size_t i = 0; i < m->n_nics; i++) {
                json_object *n = json_object_new_object();
                json_object_object_add(n, "mac", json_object_new_string(m->nics[i].mac));
                if (m->nics[i].network)
                        json_object_object_add(n, "network", jstr(m->nics[i].network));
                if (m->nics[i].bridge)
                        json_object_object_add(n, "bridge", jstr(m->nics[i].bridge));
                json_object_array_add(nics, n);
        }
        json_object_object_add(o, "nics", nics);
        json_object *disks = json_object_new_array();
        for (size_t i = 0; i < m->n_disks; i++) {
                const struct nst_meta_disk *md = &m->disks[i];
                json_object *d = json_object_new_object();
                json_object_object_add(d, "dev", json_object_new_string(md->dev));
                json_object_object_add(d, "path", jstr(md->path));
                json_object_object_add(d, "base", jstr(md->base));
                json_object_object_add(d, "size_gb", md->size_gb ? json_object_new_int64(
                                                                           (int64_t)md->size_gb)
                                                                 : NULL);
                json_object_array_add(disks, d);
        }
        json_object_object_add(o, "disks", disks);
        json_object *claims = json_object_new_array();
        for (size_t i = 0; i < m->n_claims; i++)
                json_object_array_add(claims, nst_pci_claim_to_json(&m->claims[i].pci));
        json_object_object_add(o, "claims", claims);
        return o;
}

int nst_lv_get_info(struct lv_plugin *p, json_object *ctx, json_object *args, json_object **ret,
                    struct nst_error *err) {
        static const char *const allowed[] = {"instance", NULL};
        struct lv_instance inst;
        int r = nst_json_check_keys(args, "get_info", allowed, err);
        if (r < 0 || (r = nst_lv_instance_open(p, args, "get_info", &inst, err)) < 0)
                return r;
        virDomainInfo info;
        if (virDomainGetInfo(inst.dom, &info) < 0) {
                r = nst_lv_conn_error(p->conn, inst.conn, err, -EIO, "HypervisorError",
                                      "get_info: cannot read %s", inst.name);
                nst_lv_instance_close(&inst);
                return r;
        }
        json_object *o = result(&inst, info.state);
        json_object_object_add(o, "vm_state", json_object_new_string(nst_lv_vm_state(info.state)));
        json_object_object_add(o, "profile", json_object_new_string(inst.meta->profile));
        json_object_object_add(o, "vcpus", json_object_new_int(info.nrVirtCpu));
        json_object_object_add(o, "memory_mb",
                               json_object_new_int64((int64_t)(info.maxMem / 1024)));
        json_object_object_add(o, "cpu_time_ns", json_object_new_int64((int64_t)info.cpuTime));
        json_object_object_add(o, "metadata", meta_json(inst.meta));
        *ret = o;
        nst_lv_instance_close(&inst);
        return 0;
}

/* Calls fn for every Nestor instance with its state. Domains that vanish
 * meanwhile are skipped. */
static int each_instance(struct lv_plugin *p, virConnectPtr conn,
                         void (*fn)(void *ud, virDomainPtr dom, const char *profile, int state),
                         void *ud, struct nst_error *err) {
        virDomainPtr *doms = NULL;
        int n = virConnectListAllDomains(conn, &doms, 0);
        if (n < 0)
                return nst_lv_conn_error(p->conn, conn, err, -EIO, "HypervisorError",
                                         "cannot list domains");
        for (int i = 0; i < n; i++) {
                char *md = virDomainGetMetadata(doms[i], VIR_DOMAIN_METADATA_ELEMENT,
                                                NST_METADATA_NS, 0);
                struct nst_instance_meta *m = NULL;
                int state, reason;
                if (md && nst_domain_metadata_parse(md, &m, NULL) == 0 &&
                    virDomainGetState(doms[i], &state, &reason, 0) == 0)
                        fn(ud, doms[i], m->profile, state);
                nst_instance_meta_free(m);
                free(md);
                virDomainFree(doms[i]);
        }
        free(doms);
        virResetLastError();
        return 0;
}

static void add_listed(void *ud, virDomainPtr dom, const char *profile, int state) {
        char uuid[VIR_UUID_STRING_BUFLEN];
        const char *name = virDomainGetName(dom);
        if (!name || virDomainGetUUIDString(dom, uuid) < 0)
                return;
        json_object *o = json_object_new_object();
        json_object_object_add(o, "uuid", json_object_new_string(uuid));
        json_object_object_add(o, "name", json_object_new_string(name));
        json_object_object_add(o, "state", json_object_new_string(nst_lv_power_state(state)));
        json_object_object_add(o, "profile", json_object_new_string(profile));
        json_object_array_add(ud, o);
}

int nst_lv_list_instances(struct lv_plugin *p, json_object *ctx, json_object *args,
                          json_object **ret, struct nst_error *err) {
        static const char *const allowed[] = {NULL};
        virConnectPtr conn;
        int r = nst_json_check_keys(args, "list_instances", allowed, err);
        if (r < 0 || (r = nst_lv_conn_get(p->conn, &conn, err)) < 0)
                return r;
        json_object *list = json_object_new_array();
        r = each_instance(p, conn, add_listed, list, err);
        virConnectClose(conn);
        if (r < 0) {
                json_object_put(list);
                return r;
        }
        *ret = list;
        return 0;
}

static void count_state(void *ud, virDomainPtr dom, const char *profile, int state) {
        json_object *by = ud, *v;
        const char *s = nst_lv_power_state(state);
        int n = json_object_object_get_ex(by, s, &v) ? json_object_get_int(v) : 0;
        json_object_object_add(by, s, json_object_new_int(n + 1));
}

/* Counted from the instance table (kept by spawn, destroy and events) and
 * one state query per domain: a report every few seconds must not parse
 * every domain's XML. */
json_object *nst_lv_instances_report(struct lv_plugin *p) {
        virConnectPtr conn;
        if (nst_lv_conn_get(p->conn, &conn, NULL) < 0)
                return NULL;
        virDomainPtr *doms = NULL;
        int n = virConnectListAllDomains(conn, &doms, 0);
        virConnectClose(conn);
        if (n < 0)
                return NULL;
        json_object *by = json_object_new_object();
        for (int i = 0; i < n; i++) {
                char uuid[VIR_UUID_STRING_BUFLEN];
                int state, reason;
                if (virDomainGetUUIDString(doms[i], uuid) == 0 && nst_inv_get(p->inv, uuid, NULL) &&
                    virDomainGetState(doms[i], &state, &reason, 0) == 0)
                        count_state(by, doms[i], NULL, state);
                virDomainFree(doms[i]);
        }
        free(doms);
        virResetLastError();
        int total = 0;
        json_object_object_foreach(by, k, v) {
                (void)k;
                total += json_object_get_int(v);
        }
        json_object *o = json_object_new_object();
        json_object_object_add(o, "total", json_object_new_int(total));
        json_object_object_add(o, "by_state", by);
        return o;
}

int nst_lv_get_xml(struct lv_plugin *p, json_object *ctx, json_object *args, json_object **ret,
                   struct nst_error *err) {
        static const char *const allowed[] = {"instance", "inactive", NULL};
        bool inactive = false;
        struct lv_instance inst;
        int r = nst_json_check_keys(args, "get_xml", allowed, err);
        if (r < 0 || (r = nst_json_opt_bool(args, "inactive", "get_xml", &inactive, err)) < 0 ||
            (r = nst_lv_instance_open(p, args, "get_xml", &inst, err)) < 0)
                return r;
        char *xml = virDomainGetXMLDesc(inst.dom, inactive ? VIR_DOMAIN_XML_INACTIVE : 0);
        if (!xml)
                r = nst_lv_conn_error(p->conn, inst.conn, err, -EIO, "HypervisorError",
                                      "get_xml: cannot read %s", inst.name);
        else
                *ret = json_object_new_string(xml);
        free(xml);
        nst_lv_instance_close(&inst);
        return r;
}
