/* The domain XML of a guest, from (spec, profile, host capabilities), and
 * Nestor's metadata read back from a domain XML.
 *
 * Building is two steps: resolve() stacks profile, spec and host into a
 * plan and refuses what cannot work (nesting the host cannot provide,
 * firmware that is not installed, Hyper-V enlightenments with unmet
 * dependencies, ...); render() writes the plan as XML. No I/O, no libvirt
 * call: the result is what the lifecycle code defines.
 *
 * Error classes: InvalidInput (the spec or the profile), NestingUnavailable
 * (a nested profile on a host that cannot nest, without
 * allow_emulated_nesting), HostCapabilityUnavailable (the host lacks
 * something the spec or profile needs: efi, secure boot, a machine type, a
 * CPU mode), InvalidMetadata (reading back). */
#ifndef NESTOR_PLUGINS_LIBVIRT_DOMAIN_XML_H
#define NESTOR_PLUGINS_LIBVIRT_DOMAIN_XML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "messages/error.h"
#include "plugins/libvirt/guest_spec.h"
#include "plugins/libvirt/host_caps.h"
#include "plugins/libvirt/profiles.h"
#include "plugins/sriov/pci_claims.h"

#define NST_METADATA_NS "https://nestor.dev/xmlns/instance/1"
#define NST_METADATA_PREFIX "nestor"
#define NST_DEFAULT_INSTANCES_PATH "/var/lib/nestor/instances"
#define NST_PLAN_MAX_CPU_FEATURES (NST_SPEC_MAX_CPU_FEATURES + 16)
#define NST_MAX_HOSTDEVS NST_PCI_CLAIMS_MAX
#define NST_MAX_CLAIMS 64

/* Facts from outside the spec. Every pointer may be NULL. */
struct nst_build_context {
        const char *instances_path; /* NULL: NST_DEFAULT_INSTANCES_PATH */
        const char *user_id, *user_name, *project_id, *project_name; /* the caller's context */
        const char *created_at;                                     /* ISO 8601 */
        /* PCI devices already claimed for this guest (pci_claims.h): each
         * becomes a <hostdev> or an <interface type='hostdev'> and a claim
         * record in the metadata. */
        const struct nst_pci_claim *claims;
        size_t n_claims;
};

/* What the builder decided. */
struct nst_domain_plan {
        const struct nst_profile *profile;  /* borrowed from the profile set */
        enum nst_virt_type virt_type;
        bool emulated_nesting;              /* nested profile under TCG */
        char nesting[2][8];                 /* required: vmx | svm [, npt] */
        size_t n_nesting;
        char machine[NST_SPEC_MACHINE_MAX];
        enum nst_firmware firmware;
        bool secure_boot;
        enum nst_cpu_mode cpu_mode;
        char cpu_model[NST_SPEC_MACHINE_MAX];
        struct nst_cpu_feature cpu_features[NST_PLAN_MAX_CPU_FEATURES];
        size_t n_cpu_features;
        struct nst_features features;       /* UNSET: omitted (libvirt's default) */
        enum nst_disk_bus disk_bus[NST_SPEC_MAX_DISKS];
        char disk_dev[NST_SPEC_MAX_DISKS][8];
        enum nst_nic_model nic_model[NST_SPEC_MAX_NICS];
        bool guest_agent;                   /* the qemu-guest-agent channel */
        char notes[512];                    /* adjustments the host forced, for the operator */
};

int nst_domain_plan_resolve(const struct nst_guest_spec *spec, const struct nst_profile *profile,
                            const struct nst_host_caps *caps, struct nst_domain_plan *ret,
                            struct nst_error *err);

/* *ret_xml is owned by the caller (free()); ret_len may be NULL. */
int nst_domain_xml_render(const struct nst_guest_spec *spec, const struct nst_domain_plan *plan,
                          const struct nst_build_context *ctx, char **ret_xml, size_t *ret_len,
                          struct nst_error *err);

/* resolve + render. ret_plan may be NULL. */
int nst_domain_xml_build(const struct nst_guest_spec *spec, const struct nst_profile *profile,
                         const struct nst_host_caps *caps, const struct nst_build_context *ctx,
                         char **ret_xml, struct nst_domain_plan *ret_plan, struct nst_error *err);

/* ---- reading back ---- */

struct nst_meta_nic {
        char mac[18];
        char *network, *bridge;
};

struct nst_meta_disk {
        char dev[8];
        char *path;
        char *base;  /* the image it overlays, NULL for a new empty disk */
        uint64_t size_gb;
};

struct nst_meta_claim {
        char kind[16];            /* "pci" */
        struct nst_pci_claim pci; /* as claimed; request "" when it had no id */
};

struct nst_instance_meta {
        char name[NST_SPEC_NAME_MAX + 1]; /* from the domain, when a full domain was parsed */
        char uuid[37];
        char profile[NST_SPEC_NAME_MAX + 1];
        char *user_id, *user_name, *project_id, *project_name, *created_at;
        char virt_type[8];
        bool emulated_nesting;
        char nesting[2][8];
        size_t n_nesting;
        struct nst_meta_nic *nics;
        size_t n_nics;
        struct nst_meta_disk *disks;
        size_t n_disks;
        struct nst_meta_claim *claims;
        size_t n_claims;
};

/* Parses Nestor's metadata from a full domain XML or from the bare
 * <instance> element (what virDomainGetMetadata returns). A domain without
 * Nestor's metadata fails with -ENOENT, class InvalidMetadata. */
int nst_domain_metadata_parse(const char *xml, struct nst_instance_meta **ret,
                              struct nst_error *err);
void nst_instance_meta_free(struct nst_instance_meta *m);
NST_DEFINE_CLEANUP(struct nst_instance_meta, nst_instance_meta_free)

/* Checks the live XML of a started guest still has the nesting features the
 * metadata says it requires: libvirt rewrites <cpu> with what QEMU enabled,
 * and a feature QEMU dropped shows up disabled or missing. Guests without
 * a nesting requirement pass. Failure: -ENOTSUP, class NestingUnavailable. */
int nst_domain_xml_check_live(const char *live_xml, struct nst_error *err);

#endif
