/* Readiness of a host for SR-IOV passthrough, from one inventory
 * (pci_scan.h), in words an operator can act on. No I/O: everything comes
 * from the inventory, so the report describes exactly what the scan saw. */
#ifndef NESTOR_PLUGINS_SRIOV_PCI_DIAGNOSE_H
#define NESTOR_PLUGINS_SRIOV_PCI_DIAGNOSE_H

#include <json.h>

#include "plugins/sriov/pci_model.h"

/* Owned JSON (json_object_put), NULL only when out of memory:
 * {"ready": bool, "checks": [{"check": name, "status": "ok"|"warning"|"error",
 *   "device": "0000:03:00.0" (when about one device), "message": "...",
 *   "fix": "..." (when not ok)}]}
 * ready is false when any check is an error.
 *
 * Host checks, always present: "iommu_groups", "iommu_cmdline", "vfio_driver",
 * "sriov_capable". Per PF, in address order: "pf_driver" and "vfs_enabled"
 * always; "vf_driver" when it has VFs; "totalvfs_lowered", "vf_config"
 * (sriov_numvfs vs the capability's VF Enable/NumVFs), "vfs_found" (VFs
 * missing from the scan) and "iommu_group" (functions without a group) only
 * when something is off. Then one "scan" warning per inventory warning.
 *
 * Errors are what stops passthrough on the whole host: no IOMMU groups, the
 * IOMMU not enabled, vfio-pci absent, no SR-IOV function, or no PF with VFs
 * (then every PF without VFs is an error). A single PF without VFs or without
 * a driver is a warning: hosts often keep an SR-IOV capable NIC for their own
 * traffic. */
json_object *nst_pci_diagnose(const struct nst_pci_inventory *inv);

#endif
