/* SR-IOV readiness report (see pci_diagnose.h). Each check says what was
 * seen, on which device, and the command or setting that fixes it. */
#include "plugins/sriov/pci_diagnose.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "messages/json_util.h"

#define PCI_IOV_CTRL_VF_ENABLE 0x0001
#define LIST_MAX 8 /* devices named in one message before "..." */

enum status { STATUS_OK, STATUS_WARNING, STATUS_ERROR };

static const char *const status_names[] = {
        [STATUS_OK] = "ok",
        [STATUS_WARNING] = "warning",
        [STATUS_ERROR] = "error",
};

struct report {
        json_object *checks;
        bool ready;
        bool oom;
};

static void add_string(struct report *r, json_object *o, const char *key, const char *value) {
        json_object *s = json_object_new_string(value);
        if (!s || json_object_object_add(o, key, s) < 0) {
                json_object_put(s);
                r->oom = true;
        }
}

/* device may be NULL (a host check); fix is NULL exactly when status is ok. */
static void add_check(struct report *r, const char *check, enum status status, const char *device,
                      const char *fix, const char *fmt, ...) _printf_(6, 7);
static void add_check(struct report *r, const char *check, enum status status, const char *device,
                      const char *fix, const char *fmt, ...) {
        if (status == STATUS_ERROR)
                r->ready = false;
        char message[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(message, sizeof(message), fmt, ap);
        va_end(ap);

        json_object *c = json_object_new_object();
        if (!c || json_object_array_add(r->checks, c) < 0) {
                json_object_put(c);
                r->oom = true;
                return;
        }
        add_string(r, c, "check", check);
        add_string(r, c, "status", status_names[status]);
        if (device)
                add_string(r, c, "device", device);
        add_string(r, c, "message", message);
        if (fix)
                add_string(r, c, "fix", fix);
}

/* ---- host ---- */

static void check_iommu(struct report *r, const struct nst_pci_host_facts *h) {
        if (h->iommu_groups)
                add_check(r, "iommu_groups", STATUS_OK, NULL, NULL,
                          "the IOMMU is on: /sys/kernel/iommu_groups has groups");
        else
                add_check(r, "iommu_groups", STATUS_ERROR, NULL,
                          "enable VT-d (Intel) or AMD-Vi/IOMMU (AMD) in the BIOS and boot with "
                          "intel_iommu=on (Intel; AMD enables its IOMMU by default)",
                          "no IOMMU groups under /sys/kernel/iommu_groups: the IOMMU is off, so "
                          "no device can be passed through to a guest");

        if (!h->cmdline_read)
                add_check(r, "iommu_cmdline", STATUS_WARNING, NULL,
                          "check that /proc/cmdline has intel_iommu=on (Intel) or iommu=pt",
                          "the kernel command line was not read");
        else if (h->iommu_cmdline)
                add_check(r, "iommu_cmdline", STATUS_OK, NULL, NULL,
                          "the kernel command line enables the IOMMU (intel_iommu=on, "
                          "amd_iommu=on or iommu=pt)");
        else if (h->iommu_groups)
                add_check(r, "iommu_cmdline", STATUS_WARNING, NULL,
                          "add intel_iommu=on iommu=pt (Intel) or iommu=pt (AMD) to "
                          "GRUB_CMDLINE_LINUX in /etc/default/grub and run update-grub, so that "
                          "a kernel with other defaults cannot turn it off",
                          "the kernel command line has none of intel_iommu=on, amd_iommu=on, "
                          "iommu=pt; the IOMMU is on anyway (AMD enables AMD-Vi by default, and "
                          "some kernels enable VT-d by default)");
        else
                add_check(r, "iommu_cmdline", STATUS_ERROR, NULL,
                          "add intel_iommu=on iommu=pt to GRUB_CMDLINE_LINUX in "
                          "/etc/default/grub, run update-grub and reboot (AMD enables AMD-Vi by "
                          "default: there, check that IOMMU is enabled in the BIOS)",
                          "the kernel command line has none of intel_iommu=on, amd_iommu=on, "
                          "iommu=pt, and the IOMMU is off");
}

static void check_vfio(struct report *r, const struct nst_pci_host_facts *h) {
        if (h->vfio_pci_driver)
                add_check(r, "vfio_driver", STATUS_OK, NULL, NULL, "the vfio-pci driver is loaded");
        else
                add_check(r, "vfio_driver", STATUS_ERROR, NULL,
                          "modprobe vfio-pci, and add vfio-pci to /etc/modules-load.d/vfio.conf "
                          "to load it at boot",
                          "the vfio-pci driver is not loaded (no /sys/bus/pci/drivers/vfio-pci): "
                          "devices cannot be handed to a guest");
}

/* "a, b, c" for up to LIST_MAX PFs, then ", ...". */
static void list_pfs(const struct nst_pci_inventory *inv, char *buf, size_t len) {
        size_t used = 0, listed = 0;
        buf[0] = '\0';
        for (size_t i = 0; i < inv->n && used < len; i++) {
                if (inv->fns[i].type != NST_PCI_TYPE_PF)
                        continue;
                const char *text = listed < LIST_MAX ? inv->fns[i].address : "...";
                int n = snprintf(buf + used, len - used, "%s%s", listed ? ", " : "", text);
                if (n < 0)
                        break;
                used += (size_t)n;
                if (++listed > LIST_MAX)
                        break;
        }
}

static size_t count_type(const struct nst_pci_inventory *inv, enum nst_pci_type t) {
        size_t n = 0;
        for (size_t i = 0; i < inv->n; i++)
                n += inv->fns[i].type == t;
        return n;
}

static void check_capable(struct report *r, const struct nst_pci_inventory *inv) {
        size_t pfs = count_type(inv, NST_PCI_TYPE_PF);
        if (pfs == 0) {
                add_check(r, "sriov_capable", STATUS_ERROR, NULL,
                          "check the card and that SR-IOV is enabled in the BIOS (and in the "
                          "card's firmware settings)",
                          "no SR-IOV capable device: none of the %zu PCI functions has the "
                          "SR-IOV capability",
                          inv->n);
                return;
        }
        char list[256];
        list_pfs(inv, list, sizeof(list));
        add_check(r, "sriov_capable", STATUS_OK, NULL, NULL,
                  "%zu SR-IOV capable function%s (PF): %s; %zu VFs", pfs, pfs == 1 ? "" : "s", list,
                  count_type(inv, NST_PCI_TYPE_VF));
}

/* ---- per PF ---- */

/* "0000:03:00.0 (ixgbe, enp3s0f0)": how an operator recognizes the port. */
static void describe(const struct nst_pci_function *f, char *buf, size_t len) {
        if (f->driver[0] && f->netdev[0])
                snprintf(buf, len, "%s (%s, %s)", f->address, f->driver, f->netdev);
        else if (f->driver[0] || f->netdev[0] || f->scsi_host[0])
                snprintf(buf, len, "%s (%s%s%s)", f->address, f->driver,
                         f->driver[0] && f->scsi_host[0] ? ", " : "", f->scsi_host);
        else
                snprintf(buf, len, "%s", f->address);
}

static int max_vfs(const struct nst_pci_function *pf) {
        if (pf->sysfs_total_vfs >= 0)
                return pf->sysfs_total_vfs;
        return pf->cap.present ? pf->cap.total_vfs : -1;
}

static void check_pf_driver(struct report *r, const struct nst_pci_function *pf, const char *who) {
        if (pf->driver[0]) {
                add_check(r, "pf_driver", STATUS_OK, pf->address, NULL, "PF %s is bound to %s", who,
                          pf->driver);
                return;
        }
        char fix[256];
        snprintf(fix, sizeof(fix),
                 "load the card's driver (modprobe it), or bind the PF with: echo %s > "
                 "/sys/bus/pci/drivers_probe",
                 pf->address);
        add_check(r, "pf_driver", STATUS_WARNING, pf->address, fix,
                  "PF %s is not bound to any driver: its VFs cannot be enabled (writing "
                  "sriov_numvfs fails with ENOENT without a PF driver)",
                  who);
}

static void check_vfs_enabled(struct report *r, const struct nst_pci_function *pf,
                              const char *who, bool any_vfs) {
        int total = max_vfs(pf);
        if (pf->sysfs_num_vfs > 0) {
                add_check(r, "vfs_enabled", STATUS_OK, pf->address, NULL,
                          "PF %s has %d of %d VFs enabled", who, pf->sysfs_num_vfs, total);
                return;
        }
        char fix[384];
        if (pf->driver[0])
                snprintf(fix, sizeof(fix),
                         "echo N > /sys/bus/pci/devices/%s/sriov_numvfs (N <= %d), and make it "
                         "permanent with a udev rule or a systemd unit",
                         pf->address, total);
        else
                snprintf(fix, sizeof(fix),
                         "bind the PF to its driver first (see pf_driver), then echo N > "
                         "/sys/bus/pci/devices/%s/sriov_numvfs (N <= %d)",
                         pf->address, total);
        /* One PF without VFs is normal (the host's own NIC); none anywhere is
         * a host that offers no VF at all. */
        add_check(r, "vfs_enabled", any_vfs ? STATUS_WARNING : STATUS_ERROR, pf->address, fix,
                  "PF %s has no VFs enabled (sriov_numvfs is %d, up to %d possible)%s", who,
                  pf->sysfs_num_vfs < 0 ? 0 : pf->sysfs_num_vfs, total,
                  any_vfs ? "" : "; no PF on this host has VFs");
}

static void check_totalvfs(struct report *r, const struct nst_pci_function *pf, const char *who) {
        if (!pf->cap.present || pf->sysfs_total_vfs < 0 || pf->sysfs_total_vfs >= pf->cap.total_vfs)
                return;
        add_check(r, "totalvfs_lowered", STATUS_WARNING, pf->address,
                  "nothing to do unless more VFs are needed: the limit comes from the driver or "
                  "the card's firmware (see the driver's module parameters and the card's NVM "
                  "settings)",
                  "PF %s: the driver lowered sriov_totalvfs to %d, below the device's TotalVFs "
                  "of %u; at most %d VFs can be enabled",
                  who, pf->sysfs_total_vfs, pf->cap.total_vfs, pf->sysfs_total_vfs);
}

static void check_vf_config(struct report *r, const struct nst_pci_function *pf, const char *who) {
        if (!pf->cap.present || pf->sysfs_num_vfs <= 0)
                return;
        bool enabled = pf->cap.ctrl & PCI_IOV_CTRL_VF_ENABLE;
        if (enabled && pf->cap.num_vfs == pf->sysfs_num_vfs)
                return;
        char fix[384];
        snprintf(fix, sizeof(fix),
                 "recreate the VFs: echo 0 > /sys/bus/pci/devices/%s/sriov_numvfs, then echo %d "
                 "> the same file; check dmesg for errors from the PF driver",
                 pf->address, pf->sysfs_num_vfs);
        if (!enabled)
                add_check(r, "vf_config", STATUS_WARNING, pf->address, fix,
                          "PF %s: sriov_numvfs is %d but VF Enable is clear in its SR-IOV "
                          "capability: the device does not answer for its VFs",
                          who, pf->sysfs_num_vfs);
        else
                add_check(r, "vf_config", STATUS_WARNING, pf->address, fix,
                          "PF %s: sriov_numvfs is %d but NumVFs in its SR-IOV capability is %u",
                          who, pf->sysfs_num_vfs, pf->cap.num_vfs);
}

static void check_vfs_found(struct report *r, const struct nst_pci_function *pf, const char *who) {
        if (pf->sysfs_num_vfs <= 0 || pf->n_vfs == (size_t)pf->sysfs_num_vfs)
                return;
        add_check(r, "vfs_found", STATUS_WARNING, pf->address,
                  "rescan once sriov_numvfs changes have settled; if it persists see the scan "
                  "warnings and dmesg",
                  "PF %s: sriov_numvfs is %d but the scan kept %zu of its VFs; the others cannot "
                  "be allocated",
                  who, pf->sysfs_num_vfs, pf->n_vfs);
}

/* "2 bound to vfio-pci, 2 to ixgbevf, 1 unbound": a PF's VFs by driver, in
 * the order drivers first appear. */
static void vf_driver_summary(const struct nst_pci_inventory *inv,
                              const struct nst_pci_function *pf, char *buf, size_t len,
                              bool *stub) {
        const char *names[LIST_MAX];
        size_t counts[LIST_MAX] = {0}, n_names = 0, other = 0;
        *stub = false;
        for (size_t k = 0; k < pf->n_vfs; k++) {
                const char *d = inv->fns[pf->vfs[k]].driver;
                *stub |= strcmp(d, "pci-stub") == 0;
                size_t j = 0;
                while (j < n_names && strcmp(names[j], d) != 0)
                        j++;
                if (j == n_names && n_names < LIST_MAX)
                        names[n_names++] = d;
                if (j < n_names)
                        counts[j]++;
                else
                        other++;
        }
        size_t used = 0;
        buf[0] = '\0';
        for (size_t j = 0; j < n_names && used < len; j++) {
                int n = snprintf(buf + used, len - used, "%s%zu %s%s", j ? ", " : "", counts[j],
                                 names[j][0] ? (j ? "to " : "bound to ") : "",
                                 names[j][0] ? names[j] : "unbound");
                if (n < 0)
                        return;
                used += (size_t)n;
        }
        if (other && used < len)
                snprintf(buf + used, len - used, ", %zu to other drivers", other);
}

static void check_vf_driver(struct report *r, const struct nst_pci_inventory *inv,
                            const struct nst_pci_function *pf, const char *who) {
        if (pf->n_vfs == 0)
                return;
        char summary[512];
        bool stub;
        vf_driver_summary(inv, pf, summary, sizeof(summary), &stub);
        if (stub)
                add_check(r, "vf_driver", STATUS_WARNING, pf->address,
                          "unbind them from pci-stub (echo <vf> > "
                          "/sys/bus/pci/drivers/pci-stub/unbind); libvirt binds VFs to vfio-pci "
                          "itself",
                          "the VFs of PF %s: %s; pci-stub is the legacy KVM assignment stub, "
                          "VFIO passthrough needs vfio-pci",
                          who, summary);
        else
                add_check(r, "vf_driver", STATUS_OK, pf->address, NULL, "the %zu VFs of PF %s: %s",
                          pf->n_vfs, who, summary);
}

static void check_groups(struct report *r, const struct nst_pci_inventory *inv,
                         const struct nst_pci_function *pf, const char *who) {
        if (!inv->facts.iommu_groups)
                return; /* already an error for the whole host */
        size_t missing = pf->iommu_group < 0;
        for (size_t k = 0; k < pf->n_vfs; k++)
                missing += inv->fns[pf->vfs[k]].iommu_group < 0;
        if (missing == 0)
                return;
        add_check(r, "iommu_group", STATUS_WARNING, pf->address,
                  "check dmesg for DMAR/AMD-Vi messages about the device; it may need a BIOS "
                  "update or a slot whose bridge supports ACS",
                  "%zu of the %zu functions of PF %s (the PF and its VFs) have no IOMMU group: "
                  "they cannot be passed through",
                  missing, pf->n_vfs + 1, who);
}

static void check_pfs(struct report *r, const struct nst_pci_inventory *inv) {
        bool any_vfs = false;
        for (size_t i = 0; i < inv->n; i++)
                any_vfs |= inv->fns[i].type == NST_PCI_TYPE_PF && inv->fns[i].sysfs_num_vfs > 0;
        for (size_t i = 0; i < inv->n; i++) {
                const struct nst_pci_function *pf = &inv->fns[i];
                if (pf->type != NST_PCI_TYPE_PF)
                        continue;
                char who[96];
                describe(pf, who, sizeof(who));
                check_pf_driver(r, pf, who);
                check_vfs_enabled(r, pf, who, any_vfs);
                check_totalvfs(r, pf, who);
                check_vf_config(r, pf, who);
                check_vfs_found(r, pf, who);
                check_vf_driver(r, inv, pf, who);
                check_groups(r, inv, pf, who);
        }
}

/* Scan warnings start "PF <address>" or "VF <address>" when about a device. */
static void warning_device(const char *w, char out[NST_PCI_ADDR_LEN]) {
        struct nst_pci_addr a;
        char addr[NST_PCI_ADDR_LEN];
        out[0] = '\0';
        if ((strncmp(w, "PF ", 3) != 0 && strncmp(w, "VF ", 3) != 0) ||
            strlen(w) < 3 + NST_PCI_ADDR_LEN - 1)
                return;
        memcpy(addr, w + 3, NST_PCI_ADDR_LEN - 1);
        addr[NST_PCI_ADDR_LEN - 1] = '\0';
        if (nst_pci_addr_parse(addr, &a) == 0)
                nst_pci_addr_format(a, out);
}

static void check_scan_warnings(struct report *r, const struct nst_pci_inventory *inv) {
        for (size_t i = 0; i < inv->n_warnings; i++) {
                char device[NST_PCI_ADDR_LEN];
                warning_device(inv->warnings[i], device);
                add_check(r, "scan", STATUS_WARNING, device[0] ? device : NULL,
                          "rescan once sriov_numvfs changes have settled; if it persists, check "
                          "dmesg and the device's physfn/virtfn links: the device is not offered "
                          "until this is resolved",
                          "%s", inv->warnings[i]);
        }
}

json_object *nst_pci_diagnose(const struct nst_pci_inventory *inv) {
        _cleanup_json_ json_object *out = json_object_new_object();
        json_object *ready = json_object_new_boolean(false);
        if (!out || !ready || json_object_object_add(out, "ready", ready) < 0) {
                json_object_put(ready);
                return NULL;
        }
        struct report r = {.checks = json_object_new_array(), .ready = true};
        if (!r.checks || json_object_object_add(out, "checks", r.checks) < 0) {
                json_object_put(r.checks);
                return NULL;
        }
        check_iommu(&r, &inv->facts);
        check_vfio(&r, &inv->facts);
        check_capable(&r, inv);
        check_pfs(&r, inv);
        check_scan_warnings(&r, inv);
        if (r.oom || !json_object_set_boolean(ready, r.ready))
                return NULL;
        return nst_steal(&out);
}
