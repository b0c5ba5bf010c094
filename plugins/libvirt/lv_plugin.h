/* The libvirt plugin's state and the functions its files share (plugin.c:
 * module, options, host capabilities; spawn.c: spawn and destroy;
 * lifecycle.c: the other instance methods; events.c: tables rebuilt on
 * connect, lifecycle events and notifications). Not an interface for other
 * plugins. */
#ifndef NESTOR_PLUGINS_LIBVIRT_LV_PLUGIN_H
#define NESTOR_PLUGINS_LIBVIRT_LV_PLUGIN_H

#include <json.h>
#include <libvirt/libvirt.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "agent/plugin.h"
#include "plugins/libvirt/connection.h"
#include "plugins/libvirt/domain_xml.h"
#include "plugins/libvirt/guest_spec.h"
#include "plugins/libvirt/host_caps.h"
#include "plugins/inventory/inventory_iface.h"
#include "plugins/libvirt/inventory.h"
#include "plugins/libvirt/lv_iface.h"
#include "plugins/libvirt/profiles.h"
#include "plugins/sriov/pci_claims.h"

#define NST_LV_SECTION "libvirt"
/* Lifecycle events an operation causes arrive within this time. */
#define NST_LV_EXPECT_TTL_MS 30000

struct lv_plugin;

/* A method as the plugin implements it: the call's context instead of the
 * call, so tests can drive the handlers without an RPC server. */
typedef int (*nst_lv_method_fn)(struct lv_plugin *p, json_object *ctx, json_object *args,
                                json_object **ret, struct nst_error *err);

struct lv_bound_method {
        struct lv_plugin *plugin;
        const char *name;
        nst_lv_method_fn fn;
};

struct lv_plugin {
        struct nst_host *host;
        pthread_mutex_t lock;               /* caps */
        struct nst_profile_set *profiles;   /* read-only after start */
        /* Options; the strings are owned by the config. */
        const char *uri;
        const char *virt_type;
        const char *qemu_img;
        const char *const *cpu_disable;
        size_t n_cpu_disable;
        bool detect;
        int keepalive_interval, keepalive_count;
        char *instances_path;               /* <state_path>/instances */
        char **image_dirs;                  /* [libvirt] image_dirs or <state_path>/images */
        size_t n_image_dirs;

        struct nst_host_caps *caps;         /* cached probe, under lock */
        struct nst_lv_conn *conn;
        struct nst_inventory *inv;
        struct lv_bound_method *methods;
        size_t n_methods;

        /* PCI claims (the sriov plugin), NULL when it is not enabled. */
        const struct nst_pci_claims *pci;
        struct nst_libvirt_conn_iface conn_iface; /* lent to other plugins */
        /* Other plugins' lifecycle watchers (conn_iface.watch); held while
         * they are called, so unwatch waits for a call in progress. */
        pthread_mutex_t watch_lock;
        struct lv_watcher {
                nst_lv_lifecycle_fn *fn;
                void *userdata;
        } watchers[NST_LV_MAX_WATCHERS];
        size_t n_watchers;

        /* The random part of a generated MAC (3 bytes); tests script it. */
        int (*mac_random)(void *userdata, unsigned char out[3]);
        void *mac_random_userdata;
};

/* ---- plugin.c ---- */

/* Runs a method as the RPC handler would, with ctx as the call's context
 * (tests). -ENOENT (NoSuchMethod) for an unknown name. */
int nst_lv_call(struct lv_plugin *p, const char *method, json_object *ctx, json_object *args,
                json_object **ret, struct nst_error *err);

/* Takes p->lock and makes sure p->caps is there (probing through the shared
 * connection when refresh or absent). On success the lock is held. */
int nst_lv_lock_caps(struct lv_plugin *p, bool refresh, struct nst_error *err);

/* The owner and time recorded in the metadata, from the call's context. */
void nst_lv_build_context(json_object *ctx, char created[32], struct nst_build_context *ret);
/* A string from the context (key, else fallback key), NULL when absent. */
const char *nst_lv_ctx_string(json_object *ctx, const char *key, const char *fallback);

/* PciAllocationFailed when the spec has PCI requests and no plugin
 * provides PCI claims. */
int nst_lv_check_pci(struct lv_plugin *p, const struct nst_guest_spec *spec,
                     struct nst_error *err);

/* ---- lifecycle.c: helpers for the instance methods ---- */


/* An instance named by the `instance` argument (a uuid or a name), with a
 * connection reference and Nestor's metadata. Domains without Nestor's
 * metadata are InstanceNotFound: the agent never touches them. */
struct lv_instance {
        virConnectPtr conn;
        virDomainPtr dom;
        struct nst_instance_meta *meta;
        char uuid[37];
        char name[NST_SPEC_NAME_MAX + 1];
};
int nst_lv_instance_open(struct lv_plugin *p, json_object *args, const char *method,
                         struct lv_instance *ret, struct nst_error *err);
void nst_lv_instance_close(struct lv_instance *inst);

/* Marks the instance busy with `method` (InstanceInvalidState when another
 * operation runs on it). */
int nst_lv_claim(struct lv_plugin *p, const struct lv_instance *inst, const char *method,
                 struct nst_error *err);

/* libvirt state (VIR_DOMAIN_*) as nova's power_state and vm_state strings. */
const char *nst_lv_power_state(int state);
const char *nst_lv_vm_state(int state);

/* The instance's current state (VIR_DOMAIN_*). */
int nst_lv_get_state(struct lv_plugin *p, const struct lv_instance *inst, int *ret,
                     struct nst_error *err);

/* For a nested profile: the live XML must still require the nesting
 * feature. On failure the guest is stopped (not undefined). */
int nst_lv_verify_nesting(struct lv_plugin *p, const struct lv_instance *inst,
                          struct nst_error *err);

/* Undefines dom with every clean-up flag the driver accepts. */
int nst_lv_undefine(struct lv_plugin *p, virConnectPtr conn, virDomainPtr dom, const char *what,
                    struct nst_error *err);

/* ---- spawn.c ---- */

int nst_lv_spawn(struct lv_plugin *p, json_object *ctx, json_object *args, json_object **ret,
                 struct nst_error *err);
int nst_lv_destroy(struct lv_plugin *p, json_object *ctx, json_object *args, json_object **ret,
                   struct nst_error *err);

/* ---- lifecycle.c: methods ---- */

int nst_lv_power_on(struct lv_plugin *p, json_object *ctx, json_object *args, json_object **ret,
                    struct nst_error *err);
int nst_lv_power_off(struct lv_plugin *p, json_object *ctx, json_object *args,
                     json_object **ret, struct nst_error *err);
int nst_lv_reboot(struct lv_plugin *p, json_object *ctx, json_object *args, json_object **ret,
                  struct nst_error *err);
int nst_lv_suspend(struct lv_plugin *p, json_object *ctx, json_object *args, json_object **ret,
                   struct nst_error *err);
int nst_lv_resume(struct lv_plugin *p, json_object *ctx, json_object *args, json_object **ret,
                  struct nst_error *err);
int nst_lv_get_info(struct lv_plugin *p, json_object *ctx, json_object *args, json_object **ret,
                    struct nst_error *err);
int nst_lv_list_instances(struct lv_plugin *p, json_object *ctx, json_object *args,
                          json_object **ret, struct nst_error *err);
int nst_lv_get_xml(struct lv_plugin *p, json_object *ctx, json_object *args, json_object **ret,
                   struct nst_error *err);
/* The report's instance counts: {"total": n, "by_state": {state: n}} or
 * NULL when libvirt cannot be reached. */
json_object *nst_lv_instances_report(struct lv_plugin *p);

/* ---- objects.c: instances for the inventory plugin ---- */

/* Registers the "instance" collection when the inventory plugin is there. */
int nst_lv_register_objects(struct lv_plugin *p, struct nst_error *err);

/* ---- events.c ---- */

/* Connection hooks (connection.h). */
void nst_lv_on_connected(void *userdata, virConnectPtr conn);
void nst_lv_on_lifecycle(void *userdata, virDomainPtr dom, int event, int detail);
void nst_lv_on_reboot(void *userdata, virDomainPtr dom);

/* The inventory entry for a Nestor instance from its metadata. */
void nst_lv_inv_entry(const struct nst_instance_meta *m, const char *uuid, const char *name,
                      unsigned vcpus, uint64_t memory_mb, struct nst_inv_instance *ret);

enum nst_lv_payload_kind {
        NST_LV_PAYLOAD_ACTION, /* InstanceActionPayload 1.8 */
        NST_LV_PAYLOAD_CREATE, /* InstanceCreatePayload 1.12 */
};

/* Publishes a nova-style versioned instance notification (failures are
 * logged at debug level: notifications never fail an operation). ctx (may
 * be NULL) is the call's context; fault (may be NULL) makes it an error
 * notification. */
void nst_lv_notify(struct lv_plugin *p, const char *event_type, enum nst_lv_payload_kind kind,
                   const struct nst_inv_instance *inst, const char *vm_state,
                   const char *power_state, const char *task_state, json_object *ctx,
                   const struct nst_error *fault);

#endif
