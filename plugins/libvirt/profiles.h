/* Guest profiles: what a guest that is itself a hypervisor needs from its VM.
 *
 * A profile picks machine type, firmware, CPU mode and whether vmx/svm is
 * required, disk bus and NIC model the guest has drivers for, hypervisor
 * features (vmport, smm, Hyper-V enlightenments), clock and a few devices.
 * The built-in ones (plain, nested-kvm, nested-esxi, nested-hyperv) follow
 * docs/libvirt.md; operators adjust them or add their own with the
 * [libvirt] profile option, one JSON object per occurrence:
 *
 *   profile = {"name": "nested-esxi", "nic_model": "e1000e"}
 *   profile = {"name": "esxi6", "base": "nested-esxi", "machine": "pc", "firmware": "bios"}
 *
 * Layering, lowest first: built-in profile, operator adjustments (in file
 * order), the spec's explicit fields, then what the host forces (vmx vs svm,
 * evmcs only on Intel, ...; see domain_xml.h). */
#ifndef NESTOR_PLUGINS_LIBVIRT_PROFILES_H
#define NESTOR_PLUGINS_LIBVIRT_PROFILES_H

#include <json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "messages/error.h"
#include "plugins/libvirt/guest_spec.h"

#define NST_PROFILES_MAX 32

enum nst_video { NST_VIDEO_NONE = 0, NST_VIDEO_VGA, NST_VIDEO_VIRTIO, NST_VIDEO_QXL };

struct nst_profile {
        char name[NST_SPEC_NAME_MAX + 1];
        char description[160];
        char machine[NST_SPEC_MACHINE_MAX];   /* "q35", "pc" or a versioned type */
        enum nst_firmware firmware;
        bool secure_boot;                     /* efi only; implies smm and enrolled keys */
        enum nst_cpu_mode cpu_mode;
        char cpu_model[NST_SPEC_MACHINE_MAX]; /* cpu_mode custom only */
        bool nested;                          /* the guest is a hypervisor: require vmx/svm */
        bool nested_npt;                      /* with svm, also require npt (nested paging) */
        enum nst_disk_bus disk_bus;
        char scsi_model[24];                  /* controller model when a disk is on scsi */
        enum nst_nic_model nic_model;
        struct nst_features features;         /* UNSET: leave it to libvirt's default */
        bool clock_localtime;                 /* Windows keeps the RTC in local time */
        enum nst_video video;                 /* NONE: no video device and no graphics */
        bool memballoon;
        bool tpm;                             /* TPM 2.0 CRB, emulated (swtpm) */
        bool rng;                             /* virtio-rng */
        bool guest_agent;                     /* virtio-serial port for qemu-guest-agent */
        unsigned min_vcpus;
        uint64_t min_memory_mb;
};

struct nst_profile_set;

/* A set holding the built-in profiles. */
int nst_profile_set_new(struct nst_profile_set **ret, struct nst_error *err);
void nst_profile_set_free(struct nst_profile_set *set);
NST_DEFINE_CLEANUP(struct nst_profile_set, nst_profile_set_free)

/* Applies one operator adjustment (JSON text, see above). `what` names the
 * source in messages, e.g. "[libvirt] profile #2". Errors are InvalidInput;
 * on error the set is unchanged. A name that exists is adjusted in place
 * (or rebuilt from "base" when given); a new name starts from "base",
 * default "plain". */
int nst_profile_set_apply(struct nst_profile_set *set, const char *json_text, const char *what,
                          struct nst_error *err);

/* NULL when unknown. The profile is owned by the set. */
const struct nst_profile *nst_profile_set_find(const struct nst_profile_set *set,
                                               const char *name);
/* Like find, failing with InvalidInput "spec.profile: unknown profile 'x'
 * (expected plain, nested-kvm, ...)". */
int nst_profile_set_lookup(const struct nst_profile_set *set, const char *name,
                           const struct nst_profile **ret, struct nst_error *err);
size_t nst_profile_set_count(const struct nst_profile_set *set);
const struct nst_profile *nst_profile_set_at(const struct nst_profile_set *set, size_t i);

/* A JSON description of the profile (owned by the caller), for operators. */
json_object *nst_profile_to_json(const struct nst_profile *p);

/* Checks a profile is self-consistent (Hyper-V dependencies, secure boot
 * needs efi + q35 + smm, custom needs a model, ...). */
int nst_profile_check(const struct nst_profile *p, const char *path, struct nst_error *err);

/* Copies every field src sets onto dst. */
void nst_features_overlay(struct nst_features *dst, const struct nst_features *src);

/* Enforces QEMU's Hyper-V dependency rules (docs/system/i386/hyperv.rst):
 * synic needs vpindex; stimer needs vpindex, synic and time; stimer_direct
 * needs stimer; tlbflush and ipi need vpindex; evmcs needs vapic. libvirt
 * 9.0 and QEMU 7.2 accept broken combinations, so Nestor refuses them.
 * Also spinlocks retries >= 4095. path prefixes the message. */
int nst_hyperv_check(const struct nst_features *f, const char *path, struct nst_error *err);

const char *nst_video_name(enum nst_video v);

/* True for q35 machine types ("q35", "pc-q35-7.2"). */
bool nst_machine_is_q35(const char *machine);

#endif
