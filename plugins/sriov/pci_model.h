/* PCI functions as the sriov plugin sees them: addresses, the discovered
 * inventory (one scan of sysfs), and device-spec tags.
 *
 * An inventory is immutable once built: a rescan builds a new one and the
 * allocator (pci_alloc.h) syncs from it, so readers never see a half-built
 * table. Functions are sorted by address; PF <-> VF links are indices into
 * the same array. */
#ifndef NESTOR_PLUGINS_SRIOV_PCI_MODEL_H
#define NESTOR_PLUGINS_SRIOV_PCI_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "messages/error.h"
#include "messages/util.h"

/* "dddd:bb:ss.f" plus NUL. */
#define NST_PCI_ADDR_LEN 13
#define NST_PCI_NONE ((size_t)-1)
#define NST_PCI_MAX_NUMA 64

struct nst_pci_addr {
        uint16_t domain;
        uint8_t bus, slot, function; /* slot <= 0x1f, function <= 7 */
};

/* One 32-bit key per address (for hashing and ordering). */
static inline uint32_t nst_pci_addr_key(struct nst_pci_addr a) {
        return (uint32_t)a.domain << 16 | (uint32_t)a.bus << 8 | (uint32_t)a.slot << 3 |
               a.function;
}

/* Strict "dddd:bb:ss.f" (hex, either case). -EINVAL when malformed or out of
 * range. */
int nst_pci_addr_parse(const char *s, struct nst_pci_addr *ret);
void nst_pci_addr_format(struct nst_pci_addr a, char out[NST_PCI_ADDR_LEN]);

enum nst_pci_type {
        NST_PCI_TYPE_PCI, /* no SR-IOV: passthrough of the whole function */
        NST_PCI_TYPE_PF,  /* has the SR-IOV capability (sriov_totalvfs > 0) */
        NST_PCI_TYPE_VF,  /* has a physfn link */
};
/* "type-PCI", "type-PF", "type-VF" (nova's names). */
const char *nst_pci_type_name(enum nst_pci_type t);
/* -EINVAL for anything else. */
int nst_pci_type_parse(const char *s, enum nst_pci_type *ret);

/* PCI base classes the plugin cares about (class_code >> 16). */
#define NST_PCI_CLASS_NETWORK 0x02
#define NST_PCI_CLASS_SERIAL_BUS 0x0c /* with subclass 0x04: Fibre Channel */
static inline bool nst_pci_is_fc(uint32_t class_code) {
        return (class_code >> 8) == 0x0c04;
}

/* The SR-IOV extended capability as config space has it (PF only). */
struct nst_sriov_cap {
        bool present;
        uint16_t ctrl;           /* IOVCtl: bit 0 VF Enable */
        uint16_t initial_vfs, total_vfs, num_vfs;
        uint16_t offset, stride, vf_device;
};

struct nst_pci_function {
        struct nst_pci_addr addr;
        char address[NST_PCI_ADDR_LEN];
        uint16_t vendor, device; /* from sysfs: a VF's config space reads ffff */
        uint16_t subsys_vendor, subsys_device;
        uint32_t class_code;     /* base << 16 | sub << 8 | prog-if */
        int numa_node;           /* -1: unknown */
        int iommu_group;         /* -1: none (no IOMMU, or not enabled) */
        char driver[32];         /* "" when unbound */
        char netdev[16];         /* first entry of net/, "" when none */
        char scsi_host[32];      /* FC: "scsi_hostN" for a hostN/ below it, else "" */
        enum nst_pci_type type;

        /* PF only. */
        struct nst_sriov_cap cap;
        int sysfs_total_vfs;     /* sriov_totalvfs (drivers may lower it), -1 absent */
        int sysfs_num_vfs;       /* sriov_numvfs, -1 absent */
        size_t *vfs;             /* indices of its VFs, by VF number (virtfnN) */
        size_t n_vfs;

        /* VF only. */
        size_t parent;           /* index of the PF, NST_PCI_NONE otherwise */
        int vf_number;           /* N of the PF's virtfnN link, -1 otherwise */
};

/* What the host provides for SR-IOV, beyond the functions. */
struct nst_pci_host_facts {
        bool iommu_groups;       /* <root>/kernel/iommu_groups has entries */
        bool vfio_pci_driver;    /* <root>/bus/pci/drivers/vfio-pci or module/vfio_pci */
        bool cmdline_read;       /* the kernel command line could be read */
        bool iommu_cmdline;      /* it has intel_iommu=on, amd_iommu=on or iommu=pt */
        /* NUMA nodes from <root>/devices/system/node/nodeN; node_socket[N] is
         * the physical_package_id of the node's first CPU, -1 unknown. */
        size_t n_numa_nodes;     /* highest node number + 1, 0 when none */
        int node_socket[NST_PCI_MAX_NUMA];
};

struct nst_pci_inventory {
        struct nst_pci_function *fns; /* sorted by address */
        size_t n;
        struct nst_pci_host_facts facts;
        /* Index by address: open addressing, index_cap a power of two,
         * empty slots hold NST_PCI_NONE in index_vals. */
        uint32_t *index_keys;
        size_t *index_vals;
        size_t index_cap;
        char **warnings;         /* what the scan skipped and why (owned) */
        size_t n_warnings;
};

/* Builds the address index after fns is filled and sorted (-ENOMEM). */
int nst_pci_inventory_index(struct nst_pci_inventory *inv);
/* NST_PCI_NONE when the address is not in the inventory. O(1). */
size_t nst_pci_inventory_find(const struct nst_pci_inventory *inv, struct nst_pci_addr a);
/* Frees everything inv owns, and inv itself (heap-allocated). */
void nst_pci_inventory_free(struct nst_pci_inventory *inv);
NST_DEFINE_CLEANUP(struct nst_pci_inventory, nst_pci_inventory_free)

/* Tags from the [pci] device_spec entry that matched a function: key/value
 * strings, keys lower-case, sorted by key. Values are kept as given except
 * booleans ("trusted", "remote_managed"), which are "true"/"false". */
struct nst_pci_tag {
        char *key, *value;
};
struct nst_pci_tags {
        struct nst_pci_tag *tags;
        size_t n;
};
/* NULL when absent. */
const char *nst_pci_tags_get(const struct nst_pci_tags *t, const char *key);

#endif
