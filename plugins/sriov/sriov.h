/* The sriov plugin's state and its claim service: the current inventory,
 * the allocator synced from it, and the claims table (which instance holds
 * which device, MAC and WWPN).
 *
 * sriov.c: life cycle, rescans, the claims table. claims.c: requests (JSON)
 * into allocator requests, claim/release/restore with VF settings and
 * vHBAs. plugin.c: options, RPC methods, the report, the "pci-claims"
 * interface. One mutex guards the state: claims are rare next to the
 * time a guest takes to boot, and a rescan only holds it for the sync. */
#ifndef NESTOR_PLUGINS_SRIOV_SRIOV_H
#define NESTOR_PLUGINS_SRIOV_SRIOV_H

#include <json.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "messages/error.h"
#include "plugins/libvirt/lv_iface.h"
#include "plugins/sriov/pci_alloc.h"
#include "plugins/sriov/pci_claims.h"
#include "plugins/sriov/pci_model.h"
#include "plugins/sriov/pci_spec.h"
#include "plugins/sriov/vf_config.h"

#define NST_SRIOV_DEFAULT_MAC_PREFIX "fa:16:3e"
#define NST_SRIOV_DEFAULT_WWN_OUI "001a4a"

/* One device an instance holds. */
struct sriov_claim {
        struct nst_pci_claim c;
        bool vf_programmed;     /* VF settings were applied: reset them on release */
};

struct sriov_owner {
        char uuid[37];
        struct sriov_claim *claims;
        size_t n;
};

struct sriov_config {
        char sysfs_root[PATH_MAX];
        char cmdline_path[PATH_MAX]; /* "" when not checked */
        unsigned char mac_prefix[3];
        char wwn_oui[7];
        char npiv_parent[64];        /* "" : the FC function's own fc host */
};

struct sriov {
        pthread_mutex_t lock;
        struct sriov_config cfg;
        struct nst_pci_spec_set *specs;    /* owned */
        struct nst_pci_alias_set *aliases; /* owned */
        struct nst_vf_backend *vf;         /* owned */
        const struct nst_libvirt_conn_iface *libvirt; /* borrowed, may be NULL */
        /* Random bytes (MACs, WWNs); tests script it. */
        int (*random)(void *userdata, void *buf, size_t n);
        void *random_userdata;

        /* Under lock. */
        struct nst_pci_inventory *inv;     /* the last scan, NULL before the first */
        const struct nst_pci_tags **tags;  /* per inv->fns[k] */
        size_t *spec_matches;              /* per device_spec entry */
        struct nst_pci_alloc *alloc;
        struct sriov_owner *owners;
        size_t n_owners, cap_owners;
        uint64_t scans;
        char last_scan_error[NST_ERROR_MESSAGE_MAX];
};

/* s is zeroed by the caller; init creates the lock and the (empty)
 * allocator, so restore() works before the first scan. cfg, specs, aliases
 * and vf are filled by the caller before the first rescan or claim; done
 * frees them too. */
int nst_sriov_init(struct sriov *s, struct nst_error *err);
void nst_sriov_done(struct sriov *s);

/* Scans sysfs (outside the lock) and syncs the allocator. *ret_summary
 * (may be NULL) gets {"devices", "pfs", "vfs", "added", "removed",
 * "missing_claimed", "warnings"}. A failed scan leaves the previous
 * inventory in place. */
int nst_sriov_rescan(struct sriov *s, json_object **ret_summary, struct nst_error *err);

/* The pci-claims operations (pci_claims.h). */
int nst_sriov_claim(struct sriov *s, const char *owner, json_object *requests,
                    const int *numa_nodes, size_t n_numa_nodes, struct nst_pci_claim **ret,
                    size_t *ret_n, struct nst_error *err);
int nst_sriov_release(struct sriov *s, const char *owner, struct nst_error *err);
int nst_sriov_restore(struct sriov *s, const char *owner, const struct nst_pci_claim *claims,
                      size_t n, struct nst_error *err);

/* ---- used by claims.c and plugin.c, under s->lock ---- */

/* NULL when owner holds nothing. */
struct sriov_owner *nst_sriov_owner(struct sriov *s, const char *owner);
/* Adds (or replaces) owner's claims; the array is copied. */
int nst_sriov_owner_set(struct sriov *s, const char *owner, const struct sriov_claim *claims,
                        size_t n);
void nst_sriov_owner_drop(struct sriov *s, const char *owner);
/* The claim holding a MAC / WWPN (lower case), or NULL; *owner (may be
 * NULL) gets its holder. */
const struct sriov_claim *nst_sriov_find_mac(const struct sriov *s, const char *mac,
                                             const char **owner);
const struct sriov_claim *nst_sriov_find_wwpn(const struct sriov *s, const char *wwpn,
                                              const char **owner);
/* The claim record of a device, or NULL. */
const struct sriov_claim *nst_sriov_find_address(const struct sriov *s, const char *address,
                                                 const char **owner);

#endif
