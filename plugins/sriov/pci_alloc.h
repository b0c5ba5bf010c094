/* The PCI allocator: pools of assignable functions, claims, and the PF/VF
 * exclusivity rules, with nova's semantics (../docs/sriov.md) and none of
 * its copies.
 *
 * Devices come from an inventory plus the tags device_spec gave them
 * (nst_pci_alloc_sync). Each distinct pool key -- vendor, product, NUMA
 * node, dev_type, the tags, parent_ifname for VFs whose PF has a netdev,
 * remote_managed -- is one pool with a free list and counters. Pools are
 * tried least specific first (fewest keys), as nova does.
 *
 * Exclusivity: claiming a VF makes its PF unavailable (it leaves its pool's
 * free list); claiming a PF needs all its VFs free and takes them out of
 * their pools; freeing restores both ways. A claimed device stays claimed
 * across syncs, even if a rescan no longer sees it (a VF count changed under
 * it): it is dropped only when freed.
 *
 * Costs: claim and free are O(devices taken + VFs of the PFs touched);
 * supports() is a dry run of claim; nothing copies the inventory. Not
 * thread-safe: the plugin serializes calls. */
#ifndef NESTOR_PLUGINS_SRIOV_PCI_ALLOC_H
#define NESTOR_PLUGINS_SRIOV_PCI_ALLOC_H

#include <json.h>
#include <stdbool.h>
#include <stddef.h>

#include "messages/error.h"
#include "plugins/sriov/pci_model.h"
#include "plugins/sriov/pci_spec.h"

/* One request: `count` devices that match any of `matches`. */
struct nst_pci_request {
        const char *id;                 /* names the request in errors and grants */
        unsigned count;                 /* >= 1 */
        int dev_type;                   /* enum nst_pci_type, or -1: VF or PCI (PFs only
                                         * when asked for, as in nova) */
        const struct nst_pci_match *matches;
        size_t n_matches;               /* 0: any device of dev_type */
        enum nst_pci_numa_policy numa_policy;
};

/* Where the guest runs. n_numa_nodes == 0: no NUMA placement, no filtering
 * (nova's rule). node_socket[k] is the socket of host NUMA node k (-1 when
 * unknown), for the socket policy; may be NULL. */
struct nst_pci_placement {
        const int *numa_nodes;
        size_t n_numa_nodes;
        const int *node_socket;
        size_t n_node_socket;
};

/* One device handed out: which request it serves and where it is. */
struct nst_pci_grant {
        size_t request;                 /* index into the request array */
        struct nst_pci_addr addr;
};

enum nst_pci_dev_state {
        NST_PCI_AVAILABLE,
        NST_PCI_CLAIMED,
        NST_PCI_UNAVAILABLE,            /* PF with a claimed VF, or VF of a claimed PF */
        NST_PCI_UNASSIGNABLE,           /* no device_spec entry matches it */
        NST_PCI_MISSING,                /* claimed, and the last scan no longer saw it */
};
const char *nst_pci_dev_state_name(enum nst_pci_dev_state s);

struct nst_pci_alloc;

int nst_pci_alloc_new(struct nst_pci_alloc **ret, struct nst_error *err);
void nst_pci_alloc_free(struct nst_pci_alloc *a);
NST_DEFINE_CLEANUP(struct nst_pci_alloc, nst_pci_alloc_free)

/* Takes the devices of inv (tags[k] for inv->fns[k], NULL: unassignable).
 * New devices join their pools, vanished free ones leave, claimed ones stay
 * claimed (MISSING when vanished). Devices restored before they were seen
 * (nst_pci_alloc_restore) are claimed as they appear. The allocator keeps
 * no pointer into inv or tags after the call. */
int nst_pci_alloc_sync(struct nst_pci_alloc *a, const struct nst_pci_inventory *inv,
                       const struct nst_pci_tags *const *tags, struct nst_error *err);

/* Whether claim() would succeed now (no change). */
bool nst_pci_alloc_supports(struct nst_pci_alloc *a, const struct nst_pci_request *reqs,
                            size_t n, const struct nst_pci_placement *pl);

/* Claims every request for owner, all or nothing. *ret_grants (owned,
 * free()) gets sum(count) grants in request order. Errors: InvalidInput (a
 * count of 0, an empty owner), PciAllocationFailed naming the request that
 * could not be met and what was free for it (including "PF X is
 * unavailable: N of its VFs are claimed" when only exclusivity stood in the
 * way). */
int nst_pci_alloc_claim(struct nst_pci_alloc *a, const char *owner,
                        const struct nst_pci_request *reqs, size_t n,
                        const struct nst_pci_placement *pl, struct nst_pci_grant **ret_grants,
                        size_t *ret_n, struct nst_error *err);

/* Re-takes exactly these addresses for owner (claims recorded before a
 * restart). All or nothing: PciAllocationFailed when one is claimed by
 * another owner or when exclusivity forbids it. Addresses the inventory does
 * not have (yet) are held as MISSING claims. Restoring what owner already
 * holds is a no-op. */
int nst_pci_alloc_restore(struct nst_pci_alloc *a, const char *owner,
                          const struct nst_pci_addr *addrs, size_t n, struct nst_error *err);

/* Frees everything owner holds; returns how many devices were freed. */
size_t nst_pci_alloc_release(struct nst_pci_alloc *a, const char *owner);

/* State of one device; owner (may be NULL) gets the claim's owner or NULL,
 * valid until the next call that changes the allocator.
 * -ENOENT for an address the allocator does not know. */
int nst_pci_alloc_state(const struct nst_pci_alloc *a, struct nst_pci_addr addr,
                        enum nst_pci_dev_state *ret, const char **owner);

/* The addresses owner holds (owned array, free()); 0 when none. */
size_t nst_pci_alloc_owned(const struct nst_pci_alloc *a, const char *owner,
                           struct nst_pci_addr **ret);

/* Pools as JSON: [{"vendor_id": "8086", "product_id": "10ed", "numa_node": 0|null,
 * "dev_type": "type-VF", "tags": {...}, "parent_ifname": "..."?,
 * "remote_managed": "false", "total": n, "free": n, "claimed": n}] in
 * trial order. Owned. */
json_object *nst_pci_alloc_pools_json(const struct nst_pci_alloc *a);

/* Totals over every assignable device. */
struct nst_pci_alloc_stats {
        size_t devices, pools, available, claimed, unavailable, missing;
};
void nst_pci_alloc_stats(const struct nst_pci_alloc *a, struct nst_pci_alloc_stats *ret);

#endif
