/* PCI discovery for the sriov plugin: one scan of sysfs builds an immutable
 * inventory (pci_model.h) of every PCI function, its SR-IOV role and the
 * PF <-> VF links, plus the host facts that decide whether passthrough can
 * work at all (IOMMU, vfio-pci, kernel command line, NUMA -> socket).
 *
 * libpci enumerates the functions and reads ids, class, NUMA node, IOMMU
 * group, driver and the SR-IOV capability; what libpci does not know (VF
 * counts in sysfs, virtfnN/physfn links, netdevs, FC hosts) is read from the
 * device directories directly.
 *
 * libpci reports fatal errors through a callback that must not return, so a
 * scan longjmps out of it, frees what it had, and starts again: VFs appear and
 * vanish while sriov_numvfs is written. Scans are serialized process-wide
 * (libpci's callbacks carry no user pointer); any thread may call. */
#ifndef NESTOR_PLUGINS_SRIOV_PCI_SCAN_H
#define NESTOR_PLUGINS_SRIOV_PCI_SCAN_H

#include "messages/error.h"
#include "plugins/sriov/pci_model.h"

/* The whole scan is tried this many times at most (one try, then retries)
 * when a device vanishes or libpci fails in the middle of it. */
#define NST_PCI_SCAN_RETRIES 3

struct nst_pci_scan_options {
        const char *sysfs_root;   /* "/sys" (also when NULL), or a fixture's ROOT/sys */
        const char *cmdline_path; /* "/proc/cmdline"; NULL: not read (facts.cmdline_read false) */
};

/* One full scan into a new inventory (*ret, owned by the caller: free with
 * nst_pci_inventory_free). Functions are sorted by address and indexed; a
 * PF's vfs[] are sorted by VF number and hold only VFs present in the
 * inventory (holes from dangling virtfn links are dropped, never
 * NST_PCI_NONE); every VF has a parent. Things left out are explained in
 * inv->warnings.
 *
 * Fails with class "PciDiscoveryFailed" naming the path and the reason (an
 * unreadable sysfs root, or libpci's message after the last retry), or
 * MemoryError. */
int nst_pci_scan(const struct nst_pci_scan_options *o, struct nst_pci_inventory **ret,
                 struct nst_error *err);

#endif
