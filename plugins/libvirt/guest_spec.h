/* The guest spec a controller sends to `spawn`, parsed and validated into C.
 *
 * Parsing is pure (no I/O besides random numbers for a missing uuid or MAC):
 * every rule that needs the host (profile names, nesting, host memory, image
 * files) is checked later, by the profile resolution and the domain builder.
 * Every error is class InvalidInput and names the field path, e.g.
 * "spec.disks[1].bus: unknown disk bus 'floppy' (expected virtio, sata, scsi, ide)".
 * Unknown keys are rejected at every level: a typo must not silently fall back
 * to a default. */
#ifndef NESTOR_PLUGINS_LIBVIRT_GUEST_SPEC_H
#define NESTOR_PLUGINS_LIBVIRT_GUEST_SPEC_H

#include <json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "messages/error.h"

#define NST_SPEC_NAME_MAX 64           /* domain name and profile name */
#define NST_SPEC_MAX_DISKS 64
#define NST_SPEC_MAX_NICS 32
#define NST_SPEC_MAX_VCPUS 256
#define NST_SPEC_MAX_MEMORY_MB (16ULL * 1024 * 1024) /* 16 TiB */
#define NST_SPEC_MAX_DISK_GB 65536ULL
#define NST_SPEC_MAX_PCI_REQUESTS 16
#define NST_SPEC_MAX_NUMA_NODES 8
#define NST_SPEC_MAX_NUMA_NODE 63
#define NST_SPEC_MAX_CPU_FEATURES 64
#define NST_SPEC_PATH_MAX 1024
#define NST_SPEC_MACHINE_MAX 64
#define NST_SPEC_FEATURE_NAME_MAX 48
#define NST_HV_SPINLOCKS_MIN 4095      /* libvirt rejects fewer retries at define time */

/* A setting a layer (profile, operator override, spec) may leave to the layer below. */
enum nst_tristate { NST_TRI_UNSET = 0, NST_TRI_OFF, NST_TRI_ON };

enum nst_disk_bus {
        NST_DISK_BUS_UNSET = 0,
        NST_DISK_BUS_VIRTIO,
        NST_DISK_BUS_SATA,
        NST_DISK_BUS_SCSI,
        NST_DISK_BUS_IDE,
};

enum nst_nic_model {
        NST_NIC_MODEL_UNSET = 0,
        NST_NIC_MODEL_VIRTIO,
        NST_NIC_MODEL_E1000,
        NST_NIC_MODEL_E1000E,
        NST_NIC_MODEL_VMXNET3,
        NST_NIC_MODEL_RTL8139,
};

enum nst_firmware { NST_FIRMWARE_UNSET = 0, NST_FIRMWARE_BIOS, NST_FIRMWARE_EFI };

enum nst_cpu_mode {
        NST_CPU_MODE_UNSET = 0,
        NST_CPU_MODE_HOST_MODEL,
        NST_CPU_MODE_HOST_PASSTHROUGH,
        NST_CPU_MODE_MAXIMUM,
        NST_CPU_MODE_CUSTOM,
};

enum nst_cpu_policy {
        NST_CPU_POLICY_REQUIRE = 0,
        NST_CPU_POLICY_DISABLE,
        NST_CPU_POLICY_FORCE,
        NST_CPU_POLICY_OPTIONAL,
        NST_CPU_POLICY_FORBID,
};

/* Hyper-V enlightenments, by their QEMU names. NST_HV_TIME is hv-time, which
 * libvirt spells <clock><timer name='hypervclock'/>; it is here because the
 * other enlightenments depend on it. */
enum nst_hv {
        NST_HV_RELAXED = 0,
        NST_HV_VAPIC,
        NST_HV_SPINLOCKS,
        NST_HV_VPINDEX,
        NST_HV_RUNTIME,
        NST_HV_SYNIC,
        NST_HV_STIMER,
        NST_HV_STIMER_DIRECT,
        NST_HV_RESET,
        NST_HV_FREQUENCIES,
        NST_HV_REENLIGHTENMENT,
        NST_HV_TLBFLUSH,
        NST_HV_IPI,
        NST_HV_EVMCS,
        NST_HV_TIME,
        NST_HV_COUNT,
};

/* Hypervisor features (<features> plus hv-time). Every field may be UNSET so
 * that layers stack: spec over operator override over built-in profile. */
struct nst_features {
        enum nst_tristate acpi, apic, vmcoreinfo, vmport, smm, kvm_hidden;
        enum nst_tristate hv[NST_HV_COUNT];
        uint32_t spinlock_retries; /* 0 = unset */
};

struct nst_cpu_feature {
        char name[NST_SPEC_FEATURE_NAME_MAX];
        enum nst_cpu_policy policy;
};

struct nst_disk_spec {
        char *image;           /* base image to overlay as qcow2; NULL: a new empty disk */
        uint64_t size_gb;      /* new disk size; with image, the overlay's size (0 = base's) */
        enum nst_disk_bus bus; /* UNSET: spec.disk_bus, else the profile's */
};

struct nst_nic_spec {
        char *network;           /* exactly one of network and bridge is set */
        char *bridge;
        enum nst_nic_model model; /* UNSET: spec.nic_model, else the profile's */
        char mac[18];            /* always set: given, or generated (52:54:00:xx:xx:xx) */
        bool mac_generated;
};

struct nst_guest_spec {
        char name[NST_SPEC_NAME_MAX + 1];
        char uuid[37];           /* lower-case canonical form; generated when absent */
        bool uuid_generated;
        unsigned vcpus;
        unsigned sockets, cores, threads; /* all 0 when no topology was given */
        uint64_t memory_mb;
        struct nst_disk_spec *disks;
        size_t n_disks;
        struct nst_nic_spec *nics;
        size_t n_nics;
        char profile[NST_SPEC_NAME_MAX + 1]; /* "plain" when absent */
        enum nst_firmware firmware;
        enum nst_tristate secure_boot;
        json_object *pci_requests; /* owned reference to an array of objects, or NULL */
        /* Host NUMA nodes the guest's memory is bound to (numatune strict);
         * PCI NUMA policies are checked against them. */
        int numa_nodes[NST_SPEC_MAX_NUMA_NODES];
        size_t n_numa_nodes;
        bool allow_emulated_nesting;
        enum nst_tristate guest_agent; /* UNSET: the profile's */

        /* Explicit overrides of the profile's choices (UNSET/empty = profile's). */
        char machine[NST_SPEC_MACHINE_MAX];
        enum nst_cpu_mode cpu_mode;
        char cpu_model[NST_SPEC_MACHINE_MAX];
        struct nst_cpu_feature *cpu_features;
        size_t n_cpu_features;
        enum nst_disk_bus disk_bus;
        enum nst_nic_model nic_model;
        struct nst_features features;
};

/* Parses obj (borrowed, must be an object) into a new spec owned by the
 * caller. Errors are InvalidInput naming the field path. */
int nst_guest_spec_parse(json_object *obj, struct nst_guest_spec **ret, struct nst_error *err);
void nst_guest_spec_free(struct nst_guest_spec *spec);
NST_DEFINE_CLEANUP(struct nst_guest_spec, nst_guest_spec_free)

/* Parses a features object ({"vmport": false, "hyperv": {"synic": true}, ...})
 * into f, on top of what f already holds. path names obj in messages
 * ("spec.features", "profile 'esxi6'.features"). Also used for profiles. */
int nst_features_parse(json_object *obj, const char *path, struct nst_features *f,
                       struct nst_error *err);

/* Checks every base image exists as a regular file and lies under one of the
 * n allowed directories once symlinks are resolved. Missing files fail with
 * class ImageNotFound, escapes with InvalidInput. */
int nst_guest_spec_check_images(const struct nst_guest_spec *spec, const char *const *allowed_dirs,
                                size_t n, struct nst_error *err);

/* Names and parsers shared with profiles and the builder. Parsers return -1
 * for an unknown name. */
const char *nst_disk_bus_name(enum nst_disk_bus b);
int nst_disk_bus_from_name(const char *s);
const char *nst_nic_model_name(enum nst_nic_model m);
int nst_nic_model_from_name(const char *s);
const char *nst_firmware_name(enum nst_firmware f);
int nst_firmware_from_name(const char *s);
const char *nst_cpu_mode_name(enum nst_cpu_mode m);
int nst_cpu_mode_from_name(const char *s);
const char *nst_cpu_policy_name(enum nst_cpu_policy p);
const char *nst_hv_name(enum nst_hv h);      /* the spec/config key: "stimer_direct", "time" */
int nst_hv_from_name(const char *s);

/* Validators shared with profiles: machine type and CPU names are
 * [A-Za-z0-9._-]; a CPU feature string is "+name", "-name" or "name". */
bool nst_spec_valid_machine(const char *s);
int nst_cpu_feature_parse(const char *s, const char *path, struct nst_cpu_feature *ret,
                          struct nst_error *err);

/* True for "aa:bb:cc:dd:ee:ff" (hex, either case) that is unicast and not
 * all zeros. */
bool nst_mac_valid(const char *s);

#endif
