/* What this host can give a guest, as the domain builder needs it, and the
 * probe that finds out.
 *
 * Sources, in order: /proc/cpuinfo (vendor, vmx/svm), /dev/kvm and
 * /sys/module/kvm_{intel,amd,pvm} (KVM and its nested parameter),
 * virConnectGetCapabilities (machine types, memory), the domain capabilities
 * for q35 (CPU modes, firmware, Hyper-V hints) and
 * virConnectCompareHypervisorCPU with vmx/svm required. Every libvirt source
 * is optional: the test driver and older daemons lack some, and a missing
 * answer is "unknown" (-1), which the builder does not hold against a guest.
 *
 * Nesting is usable only when virt_type is kvm, the CPU has vmx (Intel) or
 * svm (AMD), the kvm module's nested parameter is on and libvirt does not
 * call the CPU incompatible with the flag required. */
#ifndef NESTOR_PLUGINS_LIBVIRT_HOST_CAPS_H
#define NESTOR_PLUGINS_LIBVIRT_HOST_CAPS_H

#include <json.h>
#include <libvirt/libvirt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "messages/error.h"

enum nst_virt_type { NST_VIRT_QEMU = 0, NST_VIRT_KVM };
enum nst_cpu_vendor { NST_VENDOR_UNKNOWN = 0, NST_VENDOR_INTEL, NST_VENDOR_AMD };

/* A growable list of owned strings. */
struct nst_strv {
        char **v;
        size_t n;
};
int nst_strv_add(struct nst_strv *l, const char *s); /* no-op when already present */
bool nst_strv_contains(const struct nst_strv *l, const char *s);
void nst_strv_clear(struct nst_strv *l);

struct nst_host_caps {
        enum nst_virt_type virt_type;
        bool virt_type_configured;     /* forced by config rather than detected */
        bool kvm_device;               /* /dev/kvm opens read-write */
        char kvm_module[16];           /* kvm_intel, kvm_amd, kvm_pvm or "" */
        enum nst_cpu_vendor vendor;
        bool cpu_vmx, cpu_svm, cpu_hypervisor; /* /proc/cpuinfo flags */
        int nested_param;              /* kvm_{intel,amd} nested: 1, 0, -1 = absent */
        int kvm_arch_caps_msr;         /* KVM offers IA32_ARCH_CAPABILITIES: 1/0/-1 */
        int compare_nested;            /* libvirt's compare with vmx/svm: 1 ok, 0 no, -1 unknown */
        int compare_emulated;          /* same for TCG with svm */

        bool nesting_usable;
        char nesting_feature[8];       /* vmx or svm for this vendor ("" unknown) */
        char nesting_reason[256];      /* why (not), for the operator */
        char emulated_feature[8];      /* "svm" when TCG can emulate nesting, else "" */

        bool domcaps_known;
        int mode_host_passthrough, mode_host_model, mode_maximum, mode_custom; /* 1/0/-1 */
        char host_model[64];           /* what host-model expands to */
        struct nst_strv machines;      /* machine types and aliases for virt_type (x86_64) */
        int efi;                       /* firmware auto-selection offers efi: 1/0/-1 */
        int secure_boot;               /* a secure-boot loader exists (q35): 1/0/-1 */
        struct nst_strv loaders;       /* OVMF code paths */
        struct nst_strv hyperv;        /* Hyper-V features domcaps lists (a hint only) */

        struct nst_strv cpu_disable;   /* disabled for host-model/host-passthrough/maximum */
        char cpu_disable_reason[256];

        uint64_t memory_mb;            /* 0 = unknown */
        unsigned cpus;
        char driver[32];               /* virConnectGetType: QEMU, TEST, ... */
        unsigned long libvirt_version, hypervisor_version;
};

struct nst_host_probe_opts {
        const char *root;       /* prefix for /proc, /sys and /dev (tests); NULL = "/" */
        const char *virt_type;  /* "kvm", "qemu", or NULL/"auto": kvm when /dev/kvm works */
        const char *const *cpu_disable; /* configured features to disable, added to detected */
        size_t n_cpu_disable;
        bool no_detect_cpu_disable;     /* only use the configured list */
};

int nst_host_caps_new(struct nst_host_caps **ret, struct nst_error *err);
void nst_host_caps_free(struct nst_host_caps *caps);
NST_DEFINE_CLEANUP(struct nst_host_caps, nst_host_caps_free)

/* Probes everything. conn may be NULL (files only). Fails only on bad
 * options or out of memory; missing sources are recorded as unknown. */
int nst_host_caps_probe(virConnectPtr conn, const struct nst_host_probe_opts *opts,
                        struct nst_host_caps **ret, struct nst_error *err);

/* The steps of the probe, separately testable with canned inputs. */
int nst_host_caps_read_host(struct nst_host_caps *caps, const struct nst_host_probe_opts *opts,
                            struct nst_error *err);
int nst_host_caps_parse_capabilities(struct nst_host_caps *caps, const char *xml,
                                     struct nst_error *err);
int nst_host_caps_parse_domcaps(struct nst_host_caps *caps, const char *xml,
                                struct nst_error *err);
/* Derives nesting_usable/reason/features and the CPU features to disable. */
int nst_host_caps_finish(struct nst_host_caps *caps, const struct nst_host_probe_opts *opts,
                         struct nst_error *err);

/* An owned JSON description (the get_host_capabilities result). */
json_object *nst_host_caps_to_json(const struct nst_host_caps *caps);

const char *nst_virt_type_name(enum nst_virt_type t);
const char *nst_cpu_vendor_name(enum nst_cpu_vendor v);

#endif
