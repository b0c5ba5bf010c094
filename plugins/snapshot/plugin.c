/* The snapshot plugin module: [snapshot] options, the snapshot_* RPC methods
 * and their notifications. The work is done by snap_ops.c on the libvirt
 * plugin's connection (the "libvirt-connection" interface); this file binds
 * it to the agent: argument checking, instance lookup (Nestor's instances
 * only), one snapshot operation per instance at a time, and
 * instance.snapshot.start/.end/.error notifications (docs/snapshot.md). */
#define NST_LOG_MODULE "snapshot"

#include <dirent.h>
#include <errno.h>
#include <libvirt/virterror.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/log.h"
#include "agent/plugin.h"
#include "messages/json_util.h"
#include "messages/notification.h"
#include "plugins/libvirt/domain_xml.h"
#include "plugins/libvirt/lv_iface.h"
#include "plugins/libvirt/lv_util.h"
#include "plugins/libvirt/xml_writer.h"
#include "plugins/snapshot/schedule.h"
#include "plugins/snapshot/snap_ops.h"

#define SECTION "snapshot"
#define BUSY_MAX 256

static const struct nst_option options[] = {
        {"reserve_mb", NST_OPT_INT, "512",
         "Free space (MiB) a snapshot must leave on the filesystems it writes to; "
         "snapshot_create refuses with InsufficientStorage, before touching the guest, when the "
         "estimate plus this reserve exceeds the free space",
         0, 1048576},
        {"snapshot_dir", NST_OPT_STRING, "",
         "Where memory state files and Nestor's snapshot records go (<dir>/<instance uuid>/); "
         "empty: <state_path>/snapshots"},
        {"schedule_check_interval", NST_OPT_INT, "30",
         "Seconds between checks of the instances' snapshot schedules (a run missed while the "
         "agent was down runs once at the first check)",
         5, 3600},
};

struct snap_plugin {
        struct nst_host *host;
        struct nst_libvirt_conn_iface *libvirt;
        char *snapshot_dir;
        char *instances_path;
        char qemu_img[256];
        uint64_t reserve_bytes;
        pthread_mutex_t lock; /* busy */
        struct {
                char uuid[37];
                const char *op;
        } busy[BUSY_MAX];
};

/* ---- an instance for the length of one call ---- */

struct instance {
        virConnectPtr conn;
        virDomainPtr dom;
        struct nst_instance_meta *meta;
        char uuid[37];
        char name[256];
        char overlay_dir[4096];
};

static void instance_close(struct instance *i) {
        nst_instance_meta_free(i->meta);
        if (i->dom)
                virDomainFree(i->dom);
        if (i->conn)
                virConnectClose(i->conn);
        *i = (struct instance){0};
}

static bool looks_like_uuid(const char *s) {
        if (strlen(s) != 36)
                return false;
        for (int i = 0; i < 36; i++) {
                bool dash = i == 8 || i == 13 || i == 18 || i == 23;
                if (dash ? s[i] != '-' : !strchr("0123456789abcdefABCDEF", s[i]))
                        return false;
        }
        return true;
}

static int instance_open(struct snap_plugin *p, json_object *args, const char *method,
                         struct instance *ret, struct nst_error *err) {
        const char *id = NULL;
        int r = nst_json_req_string(args, "instance", method, &id, err);
        if (r < 0)
                return r;
        size_t len = strlen(id);
        if (len == 0 || len > 255 || !nst_utf8_valid(id, len))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s: instance must be a uuid or a name (1-255 characters)",
                                     method);
        struct instance inst = {0};
        if ((r = p->libvirt->get(p->libvirt->self, &inst.conn, err)) < 0)
                return r;
        if (looks_like_uuid(id))
                inst.dom = virDomainLookupByUUIDString(inst.conn, id);
        if (!inst.dom)
                inst.dom = virDomainLookupByName(inst.conn, id);
        char *md = inst.dom ? virDomainGetMetadata(inst.dom, VIR_DOMAIN_METADATA_ELEMENT,
                                                   NST_METADATA_NS, 0)
                            : NULL;
        if (!md) {
                virErrorPtr e = virGetLastError();
                if (e && (e->code == VIR_ERR_NO_DOMAIN || e->code == VIR_ERR_NO_DOMAIN_METADATA))
                        r = nst_error_set(err, -ENOENT, "InstanceNotFound",
                                          "instance %s not found on this host (only Nestor's "
                                          "instances have snapshots here)",
                                          id);
                else
                        r = nst_lv_error(err, -EIO, "HypervisorError", "cannot look up instance %s",
                                         id);
                instance_close(&inst);
                return r;
        }
        r = nst_domain_metadata_parse(md, &inst.meta, err);
        free(md);
        const char *name = virDomainGetName(inst.dom);
        if (r < 0 || !name || virDomainGetUUIDString(inst.dom, inst.uuid) < 0) {
                if (r >= 0)
                        r = nst_lv_error(err, -EIO, "HypervisorError", "cannot read instance %s",
                                         id);
                instance_close(&inst);
                return r;
        }
        snprintf(inst.name, sizeof(inst.name), "%s", name);
        snprintf(inst.overlay_dir, sizeof(inst.overlay_dir), "%s/%s", p->instances_path,
                 inst.uuid);
        *ret = inst;
        return 0;
}

static void env_of(struct snap_plugin *p, struct instance *i, struct nst_snap_env *env) {
        *env = (struct nst_snap_env){
                .conn = i->conn,
                .dom = i->dom,
                .uuid = i->uuid,
                .name = i->name,
                .snapshot_dir = p->snapshot_dir,
                .overlay_dir = i->overlay_dir,
                .qemu_img = p->qemu_img,
                .reserve_bytes = p->reserve_bytes,
        };
}

/* ---- one operation per instance ---- */

static int busy_enter(struct snap_plugin *p, const struct instance *i, const char *op,
                      struct nst_error *err) {
        int r = 0;
        int free_slot = -1;
        pthread_mutex_lock(&p->lock);
        for (int k = 0; k < BUSY_MAX && r == 0; k++) {
                if (!p->busy[k].op) {
                        if (free_slot < 0)
                                free_slot = k;
                } else if (strcmp(p->busy[k].uuid, i->uuid) == 0) {
                        r = nst_error_set(err, -EBUSY, "InstanceInvalidState",
                                          "instance %s is busy: %s is in progress", i->name,
                                          p->busy[k].op);
                }
        }
        if (r == 0 && free_slot < 0)
                r = nst_error_set(err, -EBUSY, "InstanceInvalidState",
                                  "too many snapshot operations in progress (%d)", BUSY_MAX);
        if (r == 0) {
                memcpy(p->busy[free_slot].uuid, i->uuid, sizeof(i->uuid));
                p->busy[free_slot].op = op;
        }
        pthread_mutex_unlock(&p->lock);
        return r;
}

static void busy_leave(struct snap_plugin *p, const struct instance *i) {
        pthread_mutex_lock(&p->lock);
        for (int k = 0; k < BUSY_MAX; k++)
                if (p->busy[k].op && strcmp(p->busy[k].uuid, i->uuid) == 0)
                        p->busy[k].op = NULL;
        pthread_mutex_unlock(&p->lock);
}

/* ---- arguments ---- */

static int name_arg(json_object *args, const char *method, const char **ret,
                    struct nst_error *err) {
        int r = nst_json_req_string(args, "name", method, ret, err);
        return r < 0 ? r : nst_snap_name_check(*ret, err);
}

/* ---- notifications ---- */

static const char *ctx_string(json_object *ctx, const char *a, const char *b) {
        json_object *v = NULL;
        if (ctx && json_object_object_get_ex(ctx, a, &v) && json_object_is_type(v, json_type_string))
                return json_object_get_string(v);
        if (b && ctx && json_object_object_get_ex(ctx, b, &v) &&
            json_object_is_type(v, json_type_string))
                return json_object_get_string(v);
        return NULL;
}

static void iso_now(char buf[32]) {
        time_t now = time(NULL);
        struct tm tm;
        strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
}

static json_object *flavor_payload(const virDomainInfo *info) {
        json_object *d = json_object_new_object();
        static const char *const nulls[] = {"flavorid", "name", "root_gb", "ephemeral_gb", "swap",
                                            "rxtx_factor", "vcpu_weight", "description"};
        for (size_t i = 0; i < NST_ARRAY_SIZE(nulls); i++)
                json_object_object_add(d, nulls[i], NULL);
        json_object_object_add(d, "memory_mb", json_object_new_int64((int64_t)info->maxMem / 1024));
        json_object_object_add(d, "vcpus", json_object_new_int(info->nrVirtCpu));
        json_object_object_add(d, "disabled", json_object_new_boolean(false));
        json_object_object_add(d, "is_public", json_object_new_boolean(true));
        json_object_object_add(d, "extra_specs", json_object_new_object());
        json_object_object_add(d, "projects", json_object_new_array());
        return nst_versioned_object("FlavorPayload", "nova", "1.4", d);
}

static json_object *fault_payload(const struct nst_error *fault) {
        json_object *d = json_object_new_object();
        json_object_object_add(d, "module_name", json_object_new_string(fault->module));
        json_object_object_add(d, "function_name", json_object_new_string("snapshot"));
        json_object_object_add(d, "exception", json_object_new_string(fault->cls));
        json_object_object_add(d, "exception_message", json_object_new_string(fault->message));
        json_object_object_add(d, "traceback", NULL);
        return nst_versioned_object("ExceptionPayload", "nova", "1.1", d);
}

/* nova's InstanceActionSnapshotPayload 1.9; Nestor's facts go next to the
 * nova_object.* keys under "nestor_snapshot" (nova's objects refuse unknown
 * data fields). */
static json_object *snapshot_payload(struct snap_plugin *p, const struct instance *i,
                                     const char *snapshot_id, json_object *ctx, bool end,
                                     const struct nst_error *fault, json_object *nestor) {
        const char *host = nst_host_name(p->host);
        const struct nst_instance_meta *m = i->meta;
        virDomainInfo info = {0};
        virDomainGetInfo(i->dom, &info);
        bool running = info.state == VIR_DOMAIN_RUNNING || info.state == VIR_DOMAIN_BLOCKED;
        char now[32];
        iso_now(now);
        json_object *d = json_object_new_object();
        json_object_object_add(d, "uuid", json_object_new_string(i->uuid));
        json_object_object_add(d, "user_id", nst_json_string_or_null(m ? m->user_id : NULL));
        json_object_object_add(d, "tenant_id", nst_json_string_or_null(m ? m->project_id : NULL));
        json_object_object_add(d, "reservation_id", NULL);
        json_object_object_add(d, "display_name", json_object_new_string(i->name));
        json_object_object_add(d, "display_description", NULL);
        json_object_object_add(d, "host_name", json_object_new_string(i->name));
        json_object_object_add(d, "host", json_object_new_string(host));
        json_object_object_add(d, "node", json_object_new_string(host));
        json_object_object_add(d, "os_type", NULL);
        json_object_object_add(d, "architecture", json_object_new_string("x86_64"));
        json_object_object_add(d, "availability_zone", NULL);
        json_object_object_add(d, "flavor", flavor_payload(&info));
        static const char *const nulls[] = {"image_uuid", "key_name", "kernel_id", "ramdisk_id",
                                            "launched_at", "terminated_at", "deleted_at",
                                            "progress", "block_devices", "locked_reason"};
        for (size_t k = 0; k < NST_ARRAY_SIZE(nulls); k++)
                json_object_object_add(d, nulls[k], NULL);
        json_object_object_add(d, "created_at", nst_json_string_or_null(m ? m->created_at : NULL));
        json_object_object_add(d, "updated_at", json_object_new_string(now));
        json_object_object_add(d, "state", json_object_new_string(running ? "active" : "stopped"));
        json_object_object_add(d, "power_state",
                               json_object_new_string(running                         ? "running"
                                                      : info.state == VIR_DOMAIN_PAUSED ? "paused"
                                                                                        : "shutdown"));
        json_object_object_add(d, "task_state",
                               end || fault ? NULL : json_object_new_string("image_snapshot"));
        json_object_object_add(d, "ip_addresses", json_object_new_array());
        json_object *md = json_object_new_object();
        if (m && m->profile[0])
                json_object_object_add(md, "nestor_profile", json_object_new_string(m->profile));
        json_object_object_add(d, "metadata", md);
        json_object_object_add(d, "locked", json_object_new_boolean(false));
        json_object_object_add(d, "auto_disk_config", json_object_new_string("MANUAL"));
        json_object_object_add(d, "request_id",
                               nst_json_string_or_null(ctx_string(ctx, "request_id", NULL)));
        json_object_object_add(d, "action_initiator_user",
                               nst_json_string_or_null(ctx_string(ctx, "user_id", "user")));
        json_object_object_add(d, "action_initiator_project",
                               nst_json_string_or_null(ctx_string(ctx, "project_id", "tenant")));
        json_object_object_add(d, "fault", fault ? fault_payload(fault) : NULL);
        json_object_object_add(d, "snapshot_image_id", nst_json_string_or_null(snapshot_id));
        json_object *o = nst_versioned_object("InstanceActionSnapshotPayload", "nova", "1.9", d);
        json_object_object_add(o, "nestor_snapshot", nestor);
        return o;
}

static void notify(struct snap_plugin *p, struct nst_call *call, const struct instance *i,
                   const char *phase, const char *snapshot_id, const struct nst_error *fault,
                   json_object *nestor) {
        char type[64];
        snprintf(type, sizeof(type), "instance.snapshot.%s", phase);
        json_object *ctx = call ? nst_call_context(call) : NULL; /* NULL: a schedule's run */
        json_object *payload = snapshot_payload(p, i, snapshot_id, ctx, strcmp(phase, "end") == 0,
                                                fault, nestor);
        struct nst_error err = NST_ERROR_INIT;
        log_info("%s (%s): %s", i->name, i->uuid, type);
        if (nst_host_notify(p->host, type, fault ? NST_PRIO_ERROR : NST_PRIO_INFO, payload, ctx,
                            &err) < 0)
                log_debug("notification %s for %s not sent: %s", type, i->uuid, err.message);
}

/* A uuid for snapshot_image_id (nova's field is a UUID). */
static void new_uuid(char buf[37]) {
        FILE *f = fopen("/proc/sys/kernel/random/uuid", "re");
        buf[0] = '\0';
        if (f) {
                if (!fgets(buf, 37, f))
                        buf[0] = '\0';
                fclose(f);
        }
}

/* ---- methods ---- */

static int m_create(struct nst_call *call, json_object *args, void *ud, json_object **ret,
                    struct nst_error *err) {
        static const char *const allowed[] = {"instance", "name", "description", "memory",
                                              "quiesce", "live", NULL};
        const char *method = "snapshot_create";
        struct snap_plugin *p = ud;
        struct nst_snap_create_opts o = {.live = true};
        const char *quiesce = NULL;
        int r = nst_json_check_keys(args, method, allowed, err);
        if (r < 0 || (r = name_arg(args, method, &o.name, err)) < 0 ||
            (r = nst_json_opt_string(args, "description", method, &o.description, err)) < 0 ||
            (r = nst_json_opt_bool(args, "memory", method, &o.memory, err)) < 0 ||
            (r = nst_json_opt_bool(args, "live", method, &o.live, err)) < 0 ||
            (r = nst_json_opt_string(args, "quiesce", method, &quiesce, err)) < 0 ||
            (r = nst_snap_quiesce_parse(quiesce, &o.quiesce, err)) < 0)
                return r;
        struct instance inst = {0};
        if ((r = instance_open(p, args, method, &inst, err)) < 0)
                return r;
        if ((r = busy_enter(p, &inst, method, err)) < 0) {
                instance_close(&inst);
                return r;
        }
        char id[37];
        new_uuid(id);
        json_object *start = json_object_new_object();
        json_object_object_add(start, "name", json_object_new_string(o.name));
        json_object_object_add(start, "memory", json_object_new_boolean(o.memory));
        json_object_object_add(start, "quiesce",
                               json_object_new_string(nst_snap_quiesce_str(o.quiesce)));
        notify(p, call, &inst, "start", id, NULL, start);
        struct nst_snap_env env;
        env_of(p, &inst, &env);
        r = nst_snap_create(&env, &o, ret, err);
        json_object *n = json_object_new_object();
        json_object_object_add(n, "name", json_object_new_string(o.name));
        json_object_object_add(n, "memory", json_object_new_boolean(o.memory));
        if (r < 0) {
                notify(p, call, &inst, "error", id, err, n);
        } else {
                static const char *const keys[] = {"consistency", "files", "total_size",
                                                   "duration_ms", "quiesce_note"};
                for (size_t k = 0; k < NST_ARRAY_SIZE(keys); k++) {
                        json_object *v = NULL;
                        if (json_object_object_get_ex(*ret, keys[k], &v))
                                json_object_object_add(n, keys[k], json_object_get(v));
                }
                json_object_object_add(*ret, "snapshot_image_id", json_object_new_string(id));
                notify(p, call, &inst, "end", id, NULL, n);
        }
        busy_leave(p, &inst);
        instance_close(&inst);
        return r;
}

enum op { OP_LIST, OP_GET, OP_DELETE, OP_REVERT, OP_ESTIMATE };

/* The methods that take an instance and at most a name or a flag. */
static int run_op(struct nst_call *call, json_object *args, struct snap_plugin *p, enum op op,
                  const char *method, json_object **ret, struct nst_error *err) {
        static const char *const with_name[] = {"instance", "name", NULL};
        static const char *const with_memory[] = {"instance", "memory", NULL};
        static const char *const bare[] = {"instance", NULL};
        const char *const *allowed = op == OP_LIST       ? bare
                                     : op == OP_ESTIMATE ? with_memory
                                                         : with_name;
        const char *name = NULL;
        bool memory = false;
        int r = nst_json_check_keys(args, method, allowed, err);
        if (r >= 0 && allowed == with_name)
                r = name_arg(args, method, &name, err);
        if (r >= 0 && op == OP_ESTIMATE)
                r = nst_json_opt_bool(args, "memory", method, &memory, err);
        if (r < 0)
                return r;
        struct instance inst = {0};
        if ((r = instance_open(p, args, method, &inst, err)) < 0)
                return r;
        bool mutating = op == OP_DELETE || op == OP_REVERT;
        if (mutating && (r = busy_enter(p, &inst, method, err)) < 0) {
                instance_close(&inst);
                return r;
        }
        struct nst_snap_env env;
        env_of(p, &inst, &env);
        switch (op) {
        case OP_LIST:
                r = nst_snap_list(&env, ret, err);
                break;
        case OP_GET:
                r = nst_snap_get(&env, name, ret, err);
                break;
        case OP_DELETE:
                r = nst_snap_delete(&env, name, ret, err);
                break;
        case OP_REVERT:
                r = nst_snap_revert(&env, name, ret, err);
                break;
        case OP_ESTIMATE:
                r = nst_snap_estimate(&env, memory, ret, err);
                break;
        }
        if (mutating) {
                if (r >= 0)
                        log_info("%s (%s): %s %s done", inst.name, inst.uuid, method, name);
                busy_leave(p, &inst);
        }
        instance_close(&inst);
        return r;
}

#define OP_METHOD(fn, op, method)                                                              \
        static int fn(struct nst_call *call, json_object *args, void *ud, json_object **ret,  \
                      struct nst_error *err) {                                                 \
                return run_op(call, args, ud, op, method, ret, err);                           \
        }
OP_METHOD(m_list, OP_LIST, "snapshot_list")
OP_METHOD(m_get, OP_GET, "snapshot_get")
OP_METHOD(m_delete, OP_DELETE, "snapshot_delete")
OP_METHOD(m_revert, OP_REVERT, "snapshot_revert")
OP_METHOD(m_estimate, OP_ESTIMATE, "snapshot_estimate")


/* ---- schedules: in the instance's metadata, run by a periodic check ---- */

#define SCHEDULE_NS "https://nestor.dev/xmlns/snapshot-schedule/1"
#define SCHEDULE_KEY "nestor-snapshot-schedule"

struct stored_schedule {
        struct nst_schedule *schedule;
        int64_t created_at, last_run;
};

static void stored_schedule_done(struct stored_schedule *st) {
        nst_schedule_free(st->schedule);
        *st = (struct stored_schedule){0};
}

/* Writes <schedule created= last_run=>JSON</schedule> into the persistent
 * (and, when running, live) definition. */
static int schedule_write(struct instance *i, const struct stored_schedule *st,
                          struct nst_error *err) {
        struct nst_xw w;
        nst_xw_init(&w, 512);
        nst_xw_start(&w, "schedule");
        nst_xw_attr_u64(&w, "created", (uint64_t)st->created_at);
        nst_xw_attr_u64(&w, "last_run", (uint64_t)st->last_run);
        json_object *j = nst_schedule_to_json(st->schedule);
        nst_xw_text(&w, json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
        json_object_put(j);
        nst_xw_end(&w);
        _cleanup_free_ char *xml = NULL;
        int r = nst_xw_finish(&w, &xml, NULL, err);
        if (r < 0)
                return r;
        unsigned flags = VIR_DOMAIN_AFFECT_CONFIG;
        if (virDomainIsActive(i->dom) == 1)
                flags |= VIR_DOMAIN_AFFECT_LIVE;
        if (virDomainSetMetadata(i->dom, VIR_DOMAIN_METADATA_ELEMENT, xml, "nsched", SCHEDULE_NS,
                                 flags) < 0)
                return nst_lv_error(err, -EIO, "HypervisorError",
                                    "cannot store the snapshot schedule of %s", i->name);
        return 0;
}

static int schedule_clear(struct instance *i, struct nst_error *err) {
        unsigned flags = VIR_DOMAIN_AFFECT_CONFIG;
        if (virDomainIsActive(i->dom) == 1)
                flags |= VIR_DOMAIN_AFFECT_LIVE;
        if (virDomainSetMetadata(i->dom, VIR_DOMAIN_METADATA_ELEMENT, NULL, NULL, SCHEDULE_NS,
                                 flags) < 0)
                return nst_lv_error(err, -EIO, "HypervisorError",
                                    "cannot remove the snapshot schedule of %s", i->name);
        return 0;
}

/* -ENOENT (ScheduleNotFound) when the instance has none. */
static int schedule_read(struct instance *i, struct stored_schedule *ret, struct nst_error *err) {
        _cleanup_free_ char *md = virDomainGetMetadata(i->dom, VIR_DOMAIN_METADATA_ELEMENT,
                                                       SCHEDULE_NS, VIR_DOMAIN_AFFECT_CONFIG);
        if (!md) {
                virErrorPtr e = virGetLastError();
                if (e && e->code == VIR_ERR_NO_DOMAIN_METADATA) {
                        virResetLastError();
                        return nst_error_set(err, -ENOENT, "ScheduleNotFound",
                                             "instance %s has no snapshot schedule", i->name);
                }
                return nst_lv_error(err, -EIO, "HypervisorError",
                                    "cannot read the snapshot schedule of %s", i->name);
        }
        _cleanup_(xmlFreeDocp) xmlDocPtr doc = NULL;
        _cleanup_(xmlXPathFreeContextp) xmlXPathContextPtr ctx = NULL;
        int r = nst_xml_parse_xpath(md, "snapshot schedule", "InvalidMetadata", &doc, &ctx, err);
        if (r < 0)
                return r;
        _cleanup_free_ char *created = nst_xpath_string(ctx, NULL, "string(/*/@created)");
        _cleanup_free_ char *last = nst_xpath_string(ctx, NULL, "string(/*/@last_run)");
        _cleanup_free_ char *text = nst_xpath_string(ctx, NULL, "string(/*)");
        json_object *j = text ? json_tokener_parse(text) : NULL;
        *ret = (struct stored_schedule){0};
        r = j ? nst_schedule_parse(j, &ret->schedule, err)
              : nst_error_set(err, -EINVAL, "InvalidMetadata",
                              "the snapshot schedule of %s is not readable", i->name);
        json_object_put(j);
        if (r < 0)
                return r;
        ret->created_at = created ? strtoll(created, NULL, 10) : 0;
        ret->last_run = last ? strtoll(last, NULL, 10) : 0;
        return 0;
}

static json_object *schedule_json(const struct stored_schedule *st, int64_t now) {
        json_object *o = json_object_new_object();
        int64_t next = 0;
        nst_schedule_due(st->schedule, st->created_at, st->last_run, now, &next);
        json_object_object_add(o, "schedule", nst_schedule_to_json(st->schedule));
        json_object_object_add(o, "created_at", json_object_new_int64(st->created_at));
        json_object_object_add(o, "last_run", st->last_run ? json_object_new_int64(st->last_run)
                                                            : NULL);
        json_object_object_add(o, "next_run", json_object_new_int64(next));
        return o;
}

/* A schedule that requires quiesce on an instance without a guest agent
 * channel would fail every run: refused when it is set. */
static int check_schedule_quiesce(const struct instance *i, const struct stored_schedule *st,
                                  struct nst_error *err) {
        if (strcmp(nst_schedule_quiesce(st->schedule), "required") != 0)
                return 0;
        return nst_lv_require_agent_channel(i->dom, "snapshot_schedule_set", err);
}

static int m_schedule_set(struct nst_call *call, json_object *args, void *ud, json_object **ret,
                          struct nst_error *err) {
        static const char *const allowed[] = {"instance", "schedule", NULL};
        const char *method = "snapshot_schedule_set";
        struct snap_plugin *p = ud;
        json_object *spec = NULL;
        struct stored_schedule st = {0};
        int r = nst_json_check_keys(args, method, allowed, err);
        if (r < 0 || (r = nst_json_req_object(args, "schedule", method, &spec, err)) < 0 ||
            (r = nst_schedule_parse(spec, &st.schedule, err)) < 0)
                return r;
        struct instance inst = {0};
        if ((r = instance_open(p, args, method, &inst, err)) >= 0 &&
            (r = check_schedule_quiesce(&inst, &st, err)) >= 0) {
                st.created_at = time(NULL);
                if (nst_schedule_memory(st.schedule) && virDomainIsActive(inst.dom) != 1)
                        log_info("%s: memory snapshots of this schedule run while it is on",
                                 inst.name);
                r = schedule_write(&inst, &st, err);
                if (r >= 0) {
                        *ret = schedule_json(&st, st.created_at);
                        log_info("%s (%s): snapshot schedule set", inst.name, inst.uuid);
                }
        }
        instance_close(&inst);
        stored_schedule_done(&st);
        return r;
}

static int m_schedule_get(struct nst_call *call, json_object *args, void *ud, json_object **ret,
                          struct nst_error *err) {
        static const char *const allowed[] = {"instance", NULL};
        struct snap_plugin *p = ud;
        struct stored_schedule st = {0};
        struct instance inst = {0};
        int r = nst_json_check_keys(args, "snapshot_schedule_get", allowed, err);
        if (r >= 0 && (r = instance_open(p, args, "snapshot_schedule_get", &inst, err)) >= 0 &&
            (r = schedule_read(&inst, &st, err)) >= 0)
                *ret = schedule_json(&st, time(NULL));
        instance_close(&inst);
        stored_schedule_done(&st);
        return r;
}

static int m_schedule_delete(struct nst_call *call, json_object *args, void *ud,
                             json_object **ret, struct nst_error *err) {
        static const char *const allowed[] = {"instance", NULL};
        struct snap_plugin *p = ud;
        struct stored_schedule st = {0};
        struct instance inst = {0};
        int r = nst_json_check_keys(args, "snapshot_schedule_delete", allowed, err);
        if (r >= 0 && (r = instance_open(p, args, "snapshot_schedule_delete", &inst, err)) >= 0 &&
            (r = schedule_read(&inst, &st, err)) >= 0 && (r = schedule_clear(&inst, err)) >= 0)
                log_info("%s (%s): snapshot schedule removed", inst.name, inst.uuid);
        instance_close(&inst);
        stored_schedule_done(&st);
        return r;
}

/* Deletes what retention no longer keeps among the schedule's snapshots
 * (snapshots taken by hand are never touched). */
static void prune(struct snap_plugin *p, struct instance *i, const struct stored_schedule *st) {
        struct nst_snap_env env;
        env_of(p, i, &env);
        struct nst_error err = NST_ERROR_INIT;
        _cleanup_json_ json_object *list = NULL;
        if (nst_snap_list(&env, &list, &err) < 0) {
                log_warning("%s: retention not applied: %s", i->name, err.message);
                return;
        }
        json_object *snaps = json_object_is_type(list, json_type_array)
                                     ? list
                                     : json_object_object_get(list, "snapshots");
        size_t n = json_object_array_length(snaps), k = 0;
        struct nst_snapshot_stamp *stamps = calloc(n ? n : 1, sizeof(*stamps));
        bool *del = calloc(n ? n : 1, sizeof(*del));
        for (size_t j = 0; stamps && del && j < n; j++) {
                const char *name = json_object_get_string(
                        json_object_object_get(json_object_array_get_idx(snaps, j), "name"));
                int64_t t;
                if (name && nst_schedule_snapshot_name_match(st->schedule, name, &t))
                        stamps[k++] = (struct nst_snapshot_stamp){name, t};
        }
        if (stamps && del && nst_retention_prune(st->schedule, stamps, k, del, &err) > 0)
                for (size_t j = 0; j < k; j++) {
                        json_object *out = NULL;
                        if (!del[j])
                                continue;
                        if (nst_snap_delete(&env, stamps[j].name, &out, &err) < 0)
                                log_warning("%s: retention could not delete %s: %s", i->name,
                                            stamps[j].name, err.message);
                        else
                                log_info("%s: retention deleted %s", i->name, stamps[j].name);
                        json_object_put(out);
                }
        free(stamps);
        free(del);
}

/* One scheduled run: a snapshot with the schedule's options, last_run
 * recorded (also when it failed: a failing schedule retries at its next
 * time, not in a loop), then retention. */
static void run_schedule(struct snap_plugin *p, struct instance *i, struct stored_schedule *st,
                         int64_t now) {
        struct nst_error err = NST_ERROR_INIT;
        if (busy_enter(p, i, "scheduled snapshot", &err) < 0) {
                log_info("%s: scheduled snapshot postponed: %s", i->name, err.message);
                return;
        }
        char name[NST_SCHEDULE_SNAPSHOT_NAME_SIZE];
        nst_schedule_snapshot_name(st->schedule, now, name, sizeof(name));
        struct nst_snap_create_opts o = {.name = name, .live = true,
                                         .memory = nst_schedule_memory(st->schedule)};
        if (o.memory && virDomainIsActive(i->dom) != 1)
                o.memory = false; /* a stopped instance has no memory to save */
        nst_snap_quiesce_parse(nst_schedule_quiesce(st->schedule), &o.quiesce, NULL);
        char id[37];
        new_uuid(id);
        json_object *start = json_object_new_object();
        json_object_object_add(start, "name", json_object_new_string(name));
        json_object_object_add(start, "scheduled", json_object_new_boolean(true));
        notify(p, NULL, i, "start", id, NULL, start);
        struct nst_snap_env env;
        env_of(p, i, &env);
        _cleanup_json_ json_object *out = NULL;
        int r = nst_snap_create(&env, &o, &out, &err);
        json_object *end = json_object_new_object();
        json_object_object_add(end, "name", json_object_new_string(name));
        json_object_object_add(end, "scheduled", json_object_new_boolean(true));
        notify(p, NULL, i, r < 0 ? "error" : "end", id, r < 0 ? &err : NULL, end);
        if (r < 0)
                log_warning("%s: scheduled snapshot %s failed: %s", i->name, name, err.message);
        else
                log_info("%s: scheduled snapshot %s taken", i->name, name);
        st->last_run = now;
        if (schedule_write(i, st, &err) < 0)
                log_warning("%s: %s", i->name, err.message);
        if (r >= 0)
                prune(p, i, st);
        busy_leave(p, i);
}

/* Snapshot records and memory files of an instance that no longer exists
 * (destroyed through the libvirt plugin, or undefined behind Nestor's
 * back) can never be reverted to: they are removed. known: the uuids of
 * every domain libvirt has. */
static void sweep_orphans(struct snap_plugin *p, char (*known)[VIR_UUID_STRING_BUFLEN],
                          size_t n_known) {
        DIR *d = opendir(p->snapshot_dir);
        if (!d)
                return;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (strlen(de->d_name) != 36 || de->d_name[8] != '-')
                        continue;
                bool alive = false;
                for (size_t i = 0; i < n_known && !alive; i++)
                        alive = strcmp(known[i], de->d_name) == 0;
                if (alive)
                        continue;
                char dir[4096];
                snprintf(dir, sizeof(dir), "%s/%s", p->snapshot_dir, de->d_name);
                DIR *sd = opendir(dir);
                struct dirent *f;
                while (sd && (f = readdir(sd))) {
                        if (f->d_name[0] == '.')
                                continue;
                        char path[4352];
                        snprintf(path, sizeof(path), "%s/%s", dir, f->d_name);
                        if (unlink(path) < 0)
                                log_warning("cannot remove %s: %s", path, strerror(errno));
                }
                if (sd)
                        closedir(sd);
                if (rmdir(dir) == 0)
                        log_info("removed the snapshot records of instance %s, which no longer "
                                 "exists",
                                 de->d_name);
        }
        closedir(d);
}

static void check_schedules(void *ud) {
        struct snap_plugin *p = ud;
        virConnectPtr conn = NULL;
        if (p->libvirt->get(p->libvirt->self, &conn, NULL) < 0)
                return;
        virDomainPtr *doms = NULL;
        int n = virConnectListAllDomains(conn, &doms, 0);
        char(*known)[VIR_UUID_STRING_BUFLEN] = n > 0 ? calloc((size_t)n, sizeof(*known)) : NULL;
        size_t n_known = 0;
        for (int k = 0; k < n; k++) {
                char uuid[VIR_UUID_STRING_BUFLEN];
                struct instance inst = {0};
                struct stored_schedule st = {0};
                int64_t now = time(NULL), next = 0;
                json_object *args = json_object_new_object();
                if (virDomainGetUUIDString(doms[k], uuid) == 0) {
                        if (known)
                                memcpy(known[n_known++], uuid, sizeof(uuid));
                        json_object_object_add(args, "instance", json_object_new_string(uuid));
                        if (instance_open(p, args, "schedule", &inst, NULL) == 0 &&
                            schedule_read(&inst, &st, NULL) == 0 &&
                            nst_schedule_due(st.schedule, st.created_at, st.last_run, now,
                                             &next) == NST_SCHEDULE_RUN_NOW)
                                run_schedule(p, &inst, &st, now);
                }
                json_object_put(args);
                stored_schedule_done(&st);
                instance_close(&inst);
                virDomainFree(doms[k]);
        }
        /* Only with a complete list of domains: a failed listing must not
         * look like every instance is gone. */
        if (n >= 0 && (n == 0 || known) && n_known == (size_t)n)
                sweep_orphans(p, known, n_known);
        free(known);
        free(doms);
        virResetLastError();
        virConnectClose(conn);
}

static const struct nst_method methods[] = {
        {"snapshot_create", "1.0", m_create, NULL},
        {"snapshot_list", "1.0", m_list, NULL},
        {"snapshot_get", "1.0", m_get, NULL},
        {"snapshot_revert", "1.0", m_revert, NULL},
        {"snapshot_delete", "1.0", m_delete, NULL},
        {"snapshot_estimate", "1.0", m_estimate, NULL},
        {"snapshot_schedule_set", "1.0", m_schedule_set, NULL},
        {"snapshot_schedule_get", "1.0", m_schedule_get, NULL},
        {"snapshot_schedule_delete", "1.0", m_schedule_delete, NULL},
};

/* ---- module ---- */

static void plugin_free(struct snap_plugin *p) {
        if (!p)
                return;
        pthread_mutex_destroy(&p->lock);
        free(p->snapshot_dir);
        free(p->instances_path);
        free(p);
}

static int init(struct nst_host *host, void **ret_priv, struct nst_error *err) {
        struct snap_plugin *p = calloc(1, sizeof(*p));
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
        if (r < 0) {
                plugin_free(p);
                return r;
        }
        *ret_priv = p;
        return 0;
}

static int start(void *priv, struct nst_error *err) {
        struct snap_plugin *p = priv;
        const struct nst_config *cfg = nst_host_config(p->host);
        p->libvirt = nst_host_lookup(p->host, NST_LIBVIRT_CONN_IFACE);
        if (!p->libvirt)
                return nst_error_set(err, -EINVAL, "ConfigError",
                                     "the snapshot plugin needs the libvirt plugin's connection: "
                                     "list libvirt before snapshot in [DEFAULT] enabled_plugins "
                                     "(e.g. enabled_plugins = libvirt, snapshot)");
        const char *state = nst_config_get_string(cfg, "DEFAULT", "state_path");
        const char *dir = nst_config_get_string(cfg, SECTION, "snapshot_dir");
        if (!state || state[0] != '/')
                return nst_error_set(err, -EINVAL, "ConfigError",
                                     "[DEFAULT] state_path must be an absolute path");
        if (dir && dir[0] && dir[0] != '/')
                return nst_error_set(err, -EINVAL, "ConfigError",
                                     "[%s] snapshot_dir must be an absolute path, got '%s'",
                                     SECTION, dir);
        if ((dir && dir[0] ? asprintf(&p->snapshot_dir, "%s", dir)
                           : asprintf(&p->snapshot_dir, "%s/snapshots", state)) < 0 ||
            asprintf(&p->instances_path, "%s/instances", state) < 0)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        size_t len = strlen(p->snapshot_dir);
        while (len > 1 && p->snapshot_dir[len - 1] == '/')
                p->snapshot_dir[--len] = '\0';
        p->reserve_bytes = (uint64_t)nst_config_get_int(cfg, SECTION, "reserve_mb") * 1024 * 1024;
        const char *qemu_img = nst_config_get_string(cfg, "libvirt", "qemu_img");
        snprintf(p->qemu_img, sizeof(p->qemu_img), "%s",
                 qemu_img && qemu_img[0] == '/' ? qemu_img : "/usr/bin/qemu-img");
        /* The directories QEMU's files live in must be traversable by it. */
        if ((mkdir(state, 0755) < 0 && errno != EEXIST) ||
            (mkdir(p->snapshot_dir, 0711) < 0 && errno != EEXIST))
                return nst_error_set(err, -errno, "ConfigError", "[%s] snapshot_dir %s: %s",
                                     SECTION, p->snapshot_dir, strerror(errno));
        log_info("snapshots: memory files and records in %s, reserve %lld MiB", p->snapshot_dir,
                 (long long)(p->reserve_bytes >> 20));
        int64_t every = nst_config_get_int(cfg, SECTION, "schedule_check_interval") * 1000;
        return nst_host_register_periodic(p->host, "snapshot_schedules", every, every,
                                          check_schedules, p, err);
}

static void stop(void *priv) {
        plugin_free(priv);
}

NST_PLUGIN_EXPORT const struct nst_plugin_info nst_plugin = {
        .api_version = NST_PLUGIN_API_VERSION,
        .name = "snapshot",
        .description = "Snapshots of instances: disk-only and memory, sized before they are taken",
        .init = init,
        .start = start,
        .stop = stop,
};
