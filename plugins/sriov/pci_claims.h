/* The "pci-claims" interface: what the sriov plugin offers the plugin that
 * builds guests (libvirt). Header only: the two plugins share no code, the
 * libvirt plugin finds the implementation with
 * nst_host_lookup(host, NST_PCI_CLAIMS_IFACE) after init.
 *
 * Ownership of a claim: the sriov plugin holds the device for an instance
 * from claim() until release(); the libvirt plugin records every claim in
 * the instance's metadata (all fields below) so that restore() can re-take
 * them after either agent restarts. Nothing is ever handed out twice: a
 * device, a MAC or a WWPN belongs to one instance at a time.
 *
 * The requests (the guest spec's pci_requests array) belong to the sriov
 * plugin; see docs/sriov.md:
 *   {"alias": "<[pci] alias name>", "count": n}
 *   {"vnic_type": "direct"|"direct-physical", "physical_network": "physnet1",
 *    "id": "<port id>", "mac": "fa:16:3e:..", "vlan": 0-4094, "trusted": bool,
 *    "spoofchk": bool, "link_state": "auto"|"enable"|"disable",
 *    "min_tx_rate": Mbps, "max_tx_rate": Mbps, "numa_policy": "..."}
 * plus "wwnn"/"wwpn" on a count-1 alias request for a Fibre Channel VF. */
#ifndef NESTOR_PLUGINS_SRIOV_PCI_CLAIMS_H
#define NESTOR_PLUGINS_SRIOV_PCI_CLAIMS_H

#include <json.h>
#include <stddef.h>

#include "messages/error.h"

#define NST_PCI_CLAIMS_IFACE "pci-claims"
#define NST_PCI_CLAIMS_MAX 32 /* devices per instance */

enum nst_pci_claim_form {
        NST_PCI_FORM_HOSTDEV,   /* <hostdev mode='subsystem' type='pci' managed='yes'> */
        NST_PCI_FORM_INTERFACE, /* <interface type='hostdev' managed='yes'> with MAC and VLAN */
};

struct nst_pci_claim {
        char request[64];       /* the request's id: the port id, or "<alias>#<k>" */
        char address[13];       /* dddd:bb:ss.f */
        enum nst_pci_claim_form form;
        char mac[18];           /* interface form, else "" */
        int vlan;               /* interface form: 0-4094; -1 none */
        char wwnn[17], wwpn[17];/* Fibre Channel functions (NPIV), else "" */
        char vhba[64];          /* the vHBA node device made for it, else "" */
};

struct nst_pci_claims {
        void *self;
        /* Claims every request for instance (a uuid), all or nothing; also
         * programs VF settings and creates vHBAs. numa_nodes: the host NUMA
         * nodes the guest is placed on (n 0: no placement). *ret owned
         * (free()). Errors: InvalidInput (a malformed request),
         * PciAllocationFailed (cannot be met; nothing is held). */
        int (*claim)(void *self, const char *instance, json_object *requests,
                     const int *numa_nodes, size_t n_numa_nodes, struct nst_pci_claim **ret,
                     size_t *ret_n, struct nst_error *err);
        /* Undoes claim(): VF settings reset, vHBAs destroyed, devices freed.
         * An instance holding nothing is success. */
        int (*release)(void *self, const char *instance, struct nst_error *err);
        /* Re-takes claims recorded in an instance's metadata (idempotent).
         * PciAllocationFailed when one of them belongs to someone else. */
        int (*restore)(void *self, const char *instance, const struct nst_pci_claim *claims,
                       size_t n, struct nst_error *err);
};

/* A claim as JSON (get_info, pci_list_devices): empty fields left out. */
static inline json_object *nst_pci_claim_to_json(const struct nst_pci_claim *c) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "kind", json_object_new_string("pci"));
        json_object_object_add(o, "id", c->request[0] ? json_object_new_string(c->request) : NULL);
        json_object_object_add(o, "address", json_object_new_string(c->address));
        json_object_object_add(o, "form", json_object_new_string(
                                                  c->form == NST_PCI_FORM_INTERFACE ? "interface"
                                                                                    : "hostdev"));
        if (c->mac[0])
                json_object_object_add(o, "mac", json_object_new_string(c->mac));
        if (c->vlan >= 0)
                json_object_object_add(o, "vlan", json_object_new_int(c->vlan));
        if (c->wwnn[0])
                json_object_object_add(o, "wwnn", json_object_new_string(c->wwnn));
        if (c->wwpn[0])
                json_object_object_add(o, "wwpn", json_object_new_string(c->wwpn));
        if (c->vhba[0])
                json_object_object_add(o, "vhba", json_object_new_string(c->vhba));
        return o;
}

#endif
