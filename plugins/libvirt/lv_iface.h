/* The "libvirt-connection" interface: the libvirt plugin's one connection,
 * lent to other plugins (the sriov plugin creates NPIV vHBAs through it), so
 * a node has one libvirt client with one keepalive and one reconnect loop.
 * Header only; find it with nst_host_lookup(host, NST_LIBVIRT_CONN_IFACE). */
#ifndef NESTOR_PLUGINS_LIBVIRT_LV_IFACE_H
#define NESTOR_PLUGINS_LIBVIRT_LV_IFACE_H

#include <libvirt/libvirt.h>

#include "messages/error.h"

#define NST_LIBVIRT_CONN_IFACE "libvirt-connection"

/* A domain lifecycle event: libvirt's VIR_DOMAIN_EVENT_* and its detail,
 * for any domain, Nestor's or not. Called on libvirt's event thread, which
 * also serves the connection's keepalive: return quickly. Events that come
 * while libvirt is unreachable are lost; a watcher that must not miss a
 * state checks the domain itself when it needs to. */
typedef void nst_lv_lifecycle_fn(void *userdata, const char *uuid, int event, int detail);

#define NST_LV_MAX_WATCHERS 4

struct nst_libvirt_conn_iface {
        void *self;
        /* A new reference (virConnectClose() it when done), or
         * HypervisorUnavailable while libvirt cannot be reached. */
        int (*get)(void *self, virConnectPtr *ret, struct nst_error *err);
        /* Lifecycle events for fn until unwatch (at most NST_LV_MAX_WATCHERS
         * at once). unwatch waits for a call in progress, so userdata can go
         * right after it; neither may be called from fn. */
        int (*watch)(void *self, nst_lv_lifecycle_fn *fn, void *userdata, struct nst_error *err);
        void (*unwatch)(void *self, nst_lv_lifecycle_fn *fn, void *userdata);
};

#endif
