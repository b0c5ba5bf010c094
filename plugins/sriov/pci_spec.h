/* [pci] device_spec and [pci] alias, in nova's syntax (../docs/sriov.md).
 *
 * device_spec says which functions may be handed to guests and with which
 * tags; alias names what a flavor-style request asks for. Both are parsed
 * once at start (a bad value is a ConfigError naming the option's origin,
 * "file:line") and applied to each inventory a scan produces.
 *
 * Unlike nova, nothing here reads sysfs: the PF-address and devname rules
 * ("this PF and all its VFs") are resolved against the inventory. */
#ifndef NESTOR_PLUGINS_SRIOV_PCI_SPEC_H
#define NESTOR_PLUGINS_SRIOV_PCI_SPEC_H

#include <stdbool.h>
#include <stddef.h>

#include "messages/error.h"
#include "plugins/sriov/pci_model.h"

struct nst_pci_spec_set;

/* values[i] is one option value: a JSON object or a JSON array of objects;
 * origins[i] (may be NULL) is where it came from, for messages
 * ("/etc/nestor/nestor.conf:12"). ConfigError on malformed JSON, unknown
 * address syntax, out-of-range fields, devname together with address, a bad
 * vendor/product id, remote_managed on a PF address, ... */
int nst_pci_spec_set_parse(const char *const *values, const char *const *origins, size_t n,
                           struct nst_pci_spec_set **ret, struct nst_error *err);
void nst_pci_spec_set_free(struct nst_pci_spec_set *s);
NST_DEFINE_CLEANUP(struct nst_pci_spec_set, nst_pci_spec_set_free)

/* Number of entries (a list value counts each of its objects). */
size_t nst_pci_spec_set_count(const struct nst_pci_spec_set *s);
/* "file:line #k" style description of entry i, for warnings. */
const char *nst_pci_spec_describe(const struct nst_pci_spec_set *s, size_t i);

/* Applies the specs to an inventory: ret_tags[k] gets the tags of the first
 * entry matching inv->fns[k], or NULL when no entry matches (the function is
 * not assignable). ret_tags must have inv->n slots; the tags are owned by
 * the spec set and live as long as it. ret_matches (may be NULL) gets, per
 * entry, how many functions it matched (0: "matches nothing"). */
void nst_pci_spec_set_apply(const struct nst_pci_spec_set *s, const struct nst_pci_inventory *inv,
                            const struct nst_pci_tags **ret_tags, size_t *ret_matches);

/* ---- alias ---- */

enum nst_pci_numa_policy {
        NST_PCI_NUMA_LEGACY = 0, /* nova's default */
        NST_PCI_NUMA_REQUIRED,
        NST_PCI_NUMA_PREFERRED,
        NST_PCI_NUMA_SOCKET,
};
const char *nst_pci_numa_policy_name(enum nst_pci_numa_policy p);
int nst_pci_numa_policy_parse(const char *s, enum nst_pci_numa_policy *ret);

/* One OR-ed alternative: every field that is set must equal the pool's. */
struct nst_pci_match {
        int vendor, product;       /* -1: any */
        struct nst_pci_tags tags;  /* each must be in the pool (case-insensitive values) */
};

struct nst_pci_alias {
        char name[64];
        int dev_type;              /* enum nst_pci_type, or -1 when not given */
        enum nst_pci_numa_policy numa_policy;
        bool numa_policy_set;
        struct nst_pci_match *matches; /* same-name aliases are OR-ed */
        size_t n_matches;
};

struct nst_pci_alias_set;

/* ConfigError on malformed JSON, a missing name, an unknown key, a bad
 * device_type or numa_policy, or same-name aliases that disagree on
 * device_type or numa_policy (nova refuses those too). */
int nst_pci_alias_set_parse(const char *const *values, const char *const *origins, size_t n,
                            struct nst_pci_alias_set **ret, struct nst_error *err);
void nst_pci_alias_set_free(struct nst_pci_alias_set *s);
NST_DEFINE_CLEANUP(struct nst_pci_alias_set, nst_pci_alias_set_free)
size_t nst_pci_alias_set_count(const struct nst_pci_alias_set *s);
const struct nst_pci_alias *nst_pci_alias_set_at(const struct nst_pci_alias_set *s, size_t i);
/* NULL when there is no alias of that name. */
const struct nst_pci_alias *nst_pci_alias_lookup(const struct nst_pci_alias_set *s,
                                                 const char *name);

#endif
