/* The "libvirt-connection" interface: the libvirt plugin's one connection,
 * lent to other plugins (the sriov plugin creates NPIV vHBAs through it), so
 * a node has one libvirt client with one keepalive and one reconnect loop.
 * Header only; find it with nst_host_lookup(host, NST_LIBVIRT_CONN_IFACE). */
#ifndef NESTOR_PLUGINS_LIBVIRT_LV_IFACE_H
#define NESTOR_PLUGINS_LIBVIRT_LV_IFACE_H

#include <libvirt/libvirt.h>

#include "messages/error.h"

#define NST_LIBVIRT_CONN_IFACE "libvirt-connection"

struct nst_libvirt_conn_iface {
        void *self;
        /* A new reference (virConnectClose() it when done), or
         * HypervisorUnavailable while libvirt cannot be reached. */
        int (*get)(void *self, virConnectPtr *ret, struct nst_error *err);
};

#endif
