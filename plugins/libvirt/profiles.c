#include "plugins/libvirt/profiles.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "messages/json_util.h"

struct nst_profile_set {
        struct nst_profile p[NST_PROFILES_MAX];
        size_t n;
};

#define ON NST_TRI_ON
#define OFF NST_TRI_OFF

/* The built-in profiles: the recommendations of the research notes
 * (docs/libvirt.md has the table and the reasons). */
static void builtin_plain(struct nst_profile *p) {
        *p = (struct nst_profile){
                .name = "plain",
                .description = "An ordinary VM with virtio devices",
                .machine = "q35",
                .firmware = NST_FIRMWARE_BIOS,
                .cpu_mode = NST_CPU_MODE_HOST_MODEL,
                .disk_bus = NST_DISK_BUS_VIRTIO,
                .scsi_model = "virtio-scsi",
                .nic_model = NST_NIC_MODEL_VIRTIO,
                .features = {.acpi = ON, .apic = ON, .vmcoreinfo = ON},
                .video = NST_VIDEO_NONE,
                .memballoon = true,
                .rng = true,
                /* Quiesced snapshots and replication need the agent's port;
                 * a guest without qemu-ga only sees an unused serial port. */
                .guest_agent = true,
                .min_vcpus = 1,
        };
        for (size_t i = 0; i < NST_HV_COUNT; i++)
                p->features.hv[i] = OFF;
        p->features.kvm_hidden = OFF;
}

static void builtin_nested_kvm(struct nst_profile *p) {
        builtin_plain(p);
        snprintf(p->name, sizeof(p->name), "nested-kvm");
        snprintf(p->description, sizeof(p->description),
                 "A KVM hypervisor (e.g. a devstack compute node) inside the VM");
        /* devstack's nested guide: host-passthrough, vmx/svm required. */
        p->cpu_mode = NST_CPU_MODE_HOST_PASSTHROUGH;
        p->nested = true;
        p->min_vcpus = 2;
}

static void builtin_nested_esxi(struct nst_profile *p) {
        builtin_plain(p);
        snprintf(p->name, sizeof(p->name), "nested-esxi");
        snprintf(p->description, sizeof(p->description),
                 "VMware ESXi 7/8 inside the VM: no virtio anywhere");
        p->firmware = NST_FIRMWARE_EFI;
        p->secure_boot = false;
        p->cpu_mode = NST_CPU_MODE_HOST_PASSTHROUGH;
        p->nested = true;
        p->nested_npt = true;         /* ESXi needs RVI (NPT) on AMD */
        p->disk_bus = NST_DISK_BUS_SATA; /* ESXi's AHCI driver */
        snprintf(p->scsi_model, sizeof(p->scsi_model), "vmpvscsi");
        p->nic_model = NST_NIC_MODEL_VMXNET3;
        p->features.vmcoreinfo = NST_TRI_UNSET;
        p->features.vmport = OFF;     /* keep ESXi from trusting QEMU's partial VMware backdoor */
        p->video = NST_VIDEO_VGA;     /* the DCUI */
        p->memballoon = false;        /* ESXi has no virtio-balloon driver */
        p->rng = false;
        p->guest_agent = false;       /* nor virtio-serial, nor a guest agent */
        p->min_vcpus = 2;
        p->min_memory_mb = 4096;
}

static void builtin_nested_hyperv(struct nst_profile *p) {
        builtin_plain(p);
        snprintf(p->name, sizeof(p->name), "nested-hyperv");
        snprintf(p->description, sizeof(p->description),
                 "Windows with Hyper-V (Server 2022, Windows 11 VBS) inside the VM");
        p->firmware = NST_FIRMWARE_EFI;
        p->secure_boot = true;
        p->cpu_mode = NST_CPU_MODE_HOST_PASSTHROUGH;
        p->nested = true;
        p->nested_npt = true;
        p->disk_bus = NST_DISK_BUS_SATA;     /* Windows' inbox AHCI driver */
        p->nic_model = NST_NIC_MODEL_E1000E; /* inbox driver */
        p->features.vmcoreinfo = NST_TRI_UNSET;
        p->features.vmport = OFF;
        p->features.smm = ON;
        /* QEMU's recommendation for Hyper-V guests; reset is avoided and
         * evmcs is dropped on AMD hosts by the builder. */
        static const enum nst_hv on[] = {
                NST_HV_RELAXED, NST_HV_VAPIC,     NST_HV_SPINLOCKS,       NST_HV_VPINDEX,
                NST_HV_RUNTIME, NST_HV_SYNIC,     NST_HV_STIMER,          NST_HV_STIMER_DIRECT,
                NST_HV_FREQUENCIES, NST_HV_REENLIGHTENMENT, NST_HV_TLBFLUSH, NST_HV_IPI,
                NST_HV_EVMCS,   NST_HV_TIME,
        };
        for (size_t i = 0; i < NST_ARRAY_SIZE(on); i++)
                p->features.hv[on[i]] = ON;
        p->features.spinlock_retries = 8191;
        p->clock_localtime = true;
        p->video = NST_VIDEO_VGA;
        p->tpm = true;
        p->rng = false;
        p->guest_agent = false; /* inbox drivers only: no virtio-serial */
        p->min_vcpus = 2;
        p->min_memory_mb = 4096;
}

static const char *const video_names[] = {
        [NST_VIDEO_NONE] = "none",
        [NST_VIDEO_VGA] = "vga",
        [NST_VIDEO_VIRTIO] = "virtio",
        [NST_VIDEO_QXL] = "qxl",
};

const char *nst_video_name(enum nst_video v) {
        return (size_t)v < NST_ARRAY_SIZE(video_names) ? video_names[v] : "none";
}

bool nst_machine_is_q35(const char *m) {
        return strcmp(m, "q35") == 0 || strncmp(m, "pc-q35-", 7) == 0;
}

int nst_profile_set_new(struct nst_profile_set **ret, struct nst_error *err) {
        struct nst_profile_set *s = calloc(1, sizeof(*s));
        if (!s)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        builtin_plain(&s->p[s->n++]);
        builtin_nested_kvm(&s->p[s->n++]);
        builtin_nested_esxi(&s->p[s->n++]);
        builtin_nested_hyperv(&s->p[s->n++]);
        *ret = s;
        return 0;
}

void nst_profile_set_free(struct nst_profile_set *set) {
        free(set);
}

const struct nst_profile *nst_profile_set_find(const struct nst_profile_set *set,
                                               const char *name) {
        for (size_t i = 0; i < set->n; i++)
                if (strcmp(set->p[i].name, name) == 0)
                        return &set->p[i];
        return NULL;
}

static const char *names_list(const struct nst_profile_set *set, char *buf, size_t len) {
        size_t off = 0;
        buf[0] = '\0';
        for (size_t i = 0; i < set->n; i++) {
                int k = snprintf(buf + off, len - off, "%s%s", i ? ", " : "", set->p[i].name);
                if (k < 0 || (size_t)k >= len - off)
                        break;
                off += (size_t)k;
        }
        return buf;
}

int nst_profile_set_lookup(const struct nst_profile_set *set, const char *name,
                           const struct nst_profile **ret, struct nst_error *err) {
        const struct nst_profile *p = nst_profile_set_find(set, name);
        if (!p) {
                char list[512];
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "spec.profile: unknown profile '%.64s' (expected %s)", name,
                                     names_list(set, list, sizeof(list)));
        }
        *ret = p;
        return 0;
}

size_t nst_profile_set_count(const struct nst_profile_set *set) {
        return set->n;
}

const struct nst_profile *nst_profile_set_at(const struct nst_profile_set *set, size_t i) {
        return i < set->n ? &set->p[i] : NULL;
}

void nst_features_overlay(struct nst_features *dst, const struct nst_features *src) {
        enum nst_tristate *d[] = {&dst->acpi, &dst->apic, &dst->vmcoreinfo,
                                  &dst->vmport, &dst->smm, &dst->kvm_hidden};
        const enum nst_tristate s[] = {src->acpi, src->apic, src->vmcoreinfo,
                                       src->vmport, src->smm, src->kvm_hidden};
        for (size_t i = 0; i < NST_ARRAY_SIZE(s); i++)
                if (s[i] != NST_TRI_UNSET)
                        *d[i] = s[i];
        for (size_t i = 0; i < NST_HV_COUNT; i++)
                if (src->hv[i] != NST_TRI_UNSET)
                        dst->hv[i] = src->hv[i];
        if (src->spinlock_retries)
                dst->spinlock_retries = src->spinlock_retries;
}

static const struct {
        enum nst_hv feature;
        enum nst_hv needs[4];
        size_t n;
} hv_rules[] = {
        {NST_HV_SYNIC, {NST_HV_VPINDEX}, 1},
        {NST_HV_STIMER, {NST_HV_VPINDEX, NST_HV_SYNIC, NST_HV_TIME}, 3},
        {NST_HV_STIMER_DIRECT, {NST_HV_STIMER, NST_HV_VPINDEX, NST_HV_SYNIC, NST_HV_TIME}, 4},
        {NST_HV_TLBFLUSH, {NST_HV_VPINDEX}, 1},
        {NST_HV_IPI, {NST_HV_VPINDEX}, 1},
        {NST_HV_EVMCS, {NST_HV_VAPIC}, 1},
};

int nst_hyperv_check(const struct nst_features *f, const char *path, struct nst_error *err) {
        for (size_t i = 0; i < NST_ARRAY_SIZE(hv_rules); i++) {
                if (f->hv[hv_rules[i].feature] != NST_TRI_ON)
                        continue;
                char missing[128] = "";
                size_t off = 0;
                for (size_t k = 0; k < hv_rules[i].n; k++) {
                        enum nst_hv need = hv_rules[i].needs[k];
                        if (f->hv[need] == NST_TRI_ON)
                                continue;
                        int w = snprintf(missing + off, sizeof(missing) - off, "%s%s",
                                         off ? ", " : "", nst_hv_name(need));
                        if (w > 0 && (size_t)w < sizeof(missing) - off)
                                off += (size_t)w;
                }
                if (off == 0)
                        continue;
                char all[128] = "";
                size_t aoff = 0;
                for (size_t k = 0; k < hv_rules[i].n; k++) {
                        int w = snprintf(all + aoff, sizeof(all) - aoff, "%s%s", aoff ? ", " : "",
                                         nst_hv_name(hv_rules[i].needs[k]));
                        if (w > 0 && (size_t)w < sizeof(all) - aoff)
                                aoff += (size_t)w;
                }
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s.hyperv.%s: requires %s, which %s off (Hyper-V "
                                     "dependency: %s needs %s)",
                                     path, nst_hv_name(hv_rules[i].feature), missing,
                                     strchr(missing, ',') ? "are" : "is",
                                     nst_hv_name(hv_rules[i].feature), all);
        }
        if (f->hv[NST_HV_SPINLOCKS] == NST_TRI_ON && f->spinlock_retries &&
            f->spinlock_retries < NST_HV_SPINLOCKS_MIN)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s.hyperv.spinlocks: retries must be at least %d, got %u",
                                     path, NST_HV_SPINLOCKS_MIN, f->spinlock_retries);
        return 0;
}

int nst_profile_check(const struct nst_profile *p, const char *path, struct nst_error *err) {
        char fpath[128];
        snprintf(fpath, sizeof(fpath), "%s.features", path);
        int r = nst_hyperv_check(&p->features, fpath, err);
        if (r < 0)
                return r;
        if (p->secure_boot) {
                if (p->firmware != NST_FIRMWARE_EFI)
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "%s.secure_boot: needs firmware efi", path);
                if (!nst_machine_is_q35(p->machine))
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "%s.secure_boot: needs a q35 machine type, not %s",
                                             path, p->machine);
                if (p->features.smm == NST_TRI_OFF)
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "%s.features.smm: secure boot needs SMM on", path);
        }
        if (p->cpu_mode == NST_CPU_MODE_CUSTOM && !p->cpu_model[0])
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s.cpu_model: required when cpu_mode is custom", path);
        if (p->disk_bus == NST_DISK_BUS_IDE && nst_machine_is_q35(p->machine))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s.disk_bus: ide is not available on q35 machines (use "
                                     "sata)",
                                     path);
        if (p->min_vcpus > NST_SPEC_MAX_VCPUS)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s.min_vcpus: at most %d", path, NST_SPEC_MAX_VCPUS);
        return 0;
}

/* ---- operator adjustments ---- */

static int parse_json_text(const char *text, const char *what, json_object **ret,
                           struct nst_error *err) {
        json_tokener *tok = json_tokener_new_ex(16);
        if (!tok)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        size_t len = strlen(text);
        json_object *o = json_tokener_parse_ex(tok, text, (int)len);
        enum json_tokener_error e = json_tokener_get_error(tok);
        size_t end = json_tokener_get_parse_end(tok);
        json_tokener_free(tok);
        while (o && end < len && (text[end] == ' ' || text[end] == '\t' || text[end] == '\n' ||
                                  text[end] == '\r'))
                end++;
        if (!o || e != json_tokener_success || end != len) {
                json_object_put(o);
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s: not one JSON object (%s at offset %zu)", what,
                                     o || e == json_tokener_success ? "trailing text"
                                                                    : json_tokener_error_desc(e),
                                     end);
        }
        *ret = o;
        return 0;
}

static int str_field(json_object *o, const char *key, const char *path, const char **ret,
                     struct nst_error *err) {
        json_object *v;
        if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
                return 0;
        if (!json_object_is_type(v, json_type_string))
                return nst_error_set(err, -EINVAL, "InvalidInput", "%s.%s: must be a string",
                                     path, key);
        *ret = json_object_get_string(v);
        return 1;
}

static int bool_field(json_object *o, const char *key, const char *path, bool *ret,
                      struct nst_error *err) {
        json_object *v;
        if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
                return 0;
        if (!json_object_is_type(v, json_type_boolean))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s.%s: must be true or false", path, key);
        *ret = json_object_get_boolean(v);
        return 1;
}

static int uint_field(json_object *o, const char *key, const char *path, uint64_t max,
                      uint64_t *ret, struct nst_error *err) {
        json_object *v;
        if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
                return 0;
        int64_t x = json_object_get_int64(v);
        if (!json_object_is_type(v, json_type_int) || x < 0 || (uint64_t)x > max)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s.%s: must be an integer between 0 and %llu", path, key,
                                     (unsigned long long)max);
        *ret = (uint64_t)x;
        return 1;
}

static int enum_field(json_object *o, const char *key, const char *path, const char *what,
                      int (*from_name)(const char *), const char *expected, int *ret,
                      struct nst_error *err) {
        const char *s = NULL;
        int r = str_field(o, key, path, &s, err);
        if (r <= 0)
                return r;
        int v = from_name(s);
        if (v < 0)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s.%s: unknown %s '%.64s' (expected %s)", path, key, what, s,
                                     expected);
        *ret = v;
        return 1;
}

static int video_from_name(const char *s) {
        for (size_t i = 0; i < NST_ARRAY_SIZE(video_names); i++)
                if (strcmp(video_names[i], s) == 0)
                        return (int)i;
        return -1;
}

static int clock_from_name(const char *s) {
        return strcmp(s, "utc") == 0 ? 0 : strcmp(s, "localtime") == 0 ? 1 : -1;
}

static int scsi_from_name(const char *s) {
        static const char *const models[] = {"virtio-scsi", "vmpvscsi", "lsilogic",
                                             "lsisas1068"};
        for (size_t i = 0; i < NST_ARRAY_SIZE(models); i++)
                if (strcmp(models[i], s) == 0)
                        return (int)i;
        return -1;
}

static bool valid_profile_name(const char *s) {
        size_t n = strlen(s);
        if (n == 0 || n > NST_SPEC_NAME_MAX)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      (i > 0 && (c == '-' || c == '_' || c == '.'))))
                        return false;
        }
        return true;
}

static int apply_fields(json_object *o, const char *path, struct nst_profile *p,
                        struct nst_error *err) {
        const char *s = NULL;
        int r, v;
        uint64_t u;
        if ((r = str_field(o, "description", path, &s, err)) < 0)
                return r;
        if (r > 0)
                snprintf(p->description, sizeof(p->description), "%s", s);
        if ((r = str_field(o, "machine", path, &s, err)) < 0)
                return r;
        if (r > 0) {
                if (!nst_spec_valid_machine(s))
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "%s.machine: '%.64s' is not a machine type name",
                                             path, s);
                snprintf(p->machine, sizeof(p->machine), "%s", s);
        }
        if ((r = enum_field(o, "firmware", path, "firmware", nst_firmware_from_name, "bios, efi",
                            &v, err)) < 0)
                return r;
        if (r > 0)
                p->firmware = v;
        if ((r = bool_field(o, "secure_boot", path, &p->secure_boot, err)) < 0)
                return r;
        if ((r = enum_field(o, "cpu_mode", path, "CPU mode", nst_cpu_mode_from_name,
                            "host-model, host-passthrough, maximum, custom", &v, err)) < 0)
                return r;
        if (r > 0)
                p->cpu_mode = v;
        if ((r = str_field(o, "cpu_model", path, &s, err)) < 0)
                return r;
        if (r > 0) {
                if (!nst_spec_valid_machine(s))
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "%s.cpu_model: '%.64s' is not a CPU model name", path,
                                             s);
                snprintf(p->cpu_model, sizeof(p->cpu_model), "%s", s);
        }
        if ((r = bool_field(o, "nested", path, &p->nested, err)) < 0 ||
            (r = bool_field(o, "nested_npt", path, &p->nested_npt, err)) < 0)
                return r;
        if ((r = enum_field(o, "disk_bus", path, "disk bus", nst_disk_bus_from_name,
                            "virtio, sata, scsi, ide", &v, err)) < 0)
                return r;
        if (r > 0)
                p->disk_bus = v;
        if ((r = enum_field(o, "scsi_model", path, "SCSI controller model", scsi_from_name,
                            "virtio-scsi, vmpvscsi, lsilogic, lsisas1068", &v, err)) < 0)
                return r;
        if (r > 0)
                snprintf(p->scsi_model, sizeof(p->scsi_model), "%s",
                         json_object_get_string(json_object_object_get(o, "scsi_model")));
        if ((r = enum_field(o, "nic_model", path, "NIC model", nst_nic_model_from_name,
                            "virtio, e1000, e1000e, vmxnet3, rtl8139", &v, err)) < 0)
                return r;
        if (r > 0)
                p->nic_model = v;
        json_object *features;
        if (json_object_object_get_ex(o, "features", &features) &&
            !json_object_is_type(features, json_type_null)) {
                char fpath[160];
                snprintf(fpath, sizeof(fpath), "%s.features", path);
                if ((r = nst_features_parse(features, fpath, &p->features, err)) < 0)
                        return r;
                if (p->features.hv[NST_HV_SPINLOCKS] == NST_TRI_ON && !p->features.spinlock_retries)
                        p->features.spinlock_retries = 8191;
        }
        if ((r = enum_field(o, "clock", path, "clock offset", clock_from_name, "utc, localtime",
                            &v, err)) < 0)
                return r;
        if (r > 0)
                p->clock_localtime = v == 1;
        if ((r = enum_field(o, "video", path, "video model", video_from_name,
                            "none, vga, virtio, qxl", &v, err)) < 0)
                return r;
        if (r > 0)
                p->video = v;
        if ((r = bool_field(o, "memballoon", path, &p->memballoon, err)) < 0 ||
            (r = bool_field(o, "tpm", path, &p->tpm, err)) < 0 ||
            (r = bool_field(o, "rng", path, &p->rng, err)) < 0 ||
            (r = bool_field(o, "guest_agent", path, &p->guest_agent, err)) < 0)
                return r;
        if ((r = uint_field(o, "min_vcpus", path, NST_SPEC_MAX_VCPUS, &u, err)) < 0)
                return r;
        if (r > 0)
                p->min_vcpus = (unsigned)u;
        if ((r = uint_field(o, "min_memory_mb", path, NST_SPEC_MAX_MEMORY_MB, &u, err)) < 0)
                return r;
        if (r > 0)
                p->min_memory_mb = u;
        return 0;
}

int nst_profile_set_apply(struct nst_profile_set *set, const char *json_text, const char *what,
                          struct nst_error *err) {
        static const char *const keys[] = {
                "name",      "base",      "description", "machine",    "firmware",
                "secure_boot", "cpu_mode", "cpu_model",  "nested",     "nested_npt",
                "disk_bus",  "scsi_model", "nic_model",  "features",   "clock",
                "video",     "memballoon", "tpm",        "rng",        "guest_agent",
                "min_vcpus", "min_memory_mb", NULL,
        };
        _cleanup_json_ json_object *o = NULL;
        int r = parse_json_text(json_text, what, &o, err);
        if (r < 0)
                return r;
        if (!json_object_is_type(o, json_type_object))
                return nst_error_set(err, -EINVAL, "InvalidInput", "%s: must be a JSON object",
                                     what);
        json_object_object_foreach(o, key, val) {
                (void)val;
                bool known = false;
                for (size_t i = 0; keys[i] && !known; i++)
                        known = strcmp(keys[i], key) == 0;
                if (!known)
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "%s: unknown key '%.64s' (expected name, base, "
                                             "description, machine, firmware, secure_boot, "
                                             "cpu_mode, cpu_model, nested, nested_npt, disk_bus, "
                                             "scsi_model, nic_model, features, clock, video, "
                                             "memballoon, tpm, rng, guest_agent, min_vcpus, "
                                             "min_memory_mb)",
                                             what, key);
        }
        const char *name = NULL, *base = NULL;
        if ((r = str_field(o, "name", what, &name, err)) < 0 ||
            (r = str_field(o, "base", what, &base, err)) < 0)
                return r;
        if (!name)
                return nst_error_set(err, -EINVAL, "InvalidInput", "%s.name: required", what);
        if (!valid_profile_name(name))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s.name: '%.64s' is not a valid profile name (lower case "
                                     "letters, digits, '-', '_', '.')",
                                     what, name);
        const struct nst_profile *existing = nst_profile_set_find(set, name);
        const struct nst_profile *from = existing;
        if (base || !existing) {
                from = nst_profile_set_find(set, base ? base : "plain");
                if (!from) {
                        char list[512];
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "%s.base: unknown profile '%.64s' (expected %s)",
                                             what, base, names_list(set, list, sizeof(list)));
                }
        }
        if (!existing && set->n >= NST_PROFILES_MAX)
                return nst_error_set(err, -E2BIG, "InvalidInput", "%s: at most %d profiles",
                                     what, NST_PROFILES_MAX);
        struct nst_profile p = *from;
        snprintf(p.name, sizeof(p.name), "%s", name);
        char path[128];
        snprintf(path, sizeof(path), "profile '%s'", name);
        if ((r = apply_fields(o, path, &p, err)) < 0 || (r = nst_profile_check(&p, path, err)) < 0)
                return nst_error_prefix(err, "%s", what);
        if (existing)
                set->p[existing - set->p] = p;
        else
                set->p[set->n++] = p;
        return 0;
}

/* ---- JSON view ---- */

static void add_str(json_object *o, const char *k, const char *v) {
        json_object_object_add(o, k, json_object_new_string(v));
}

static void add_bool(json_object *o, const char *k, bool v) {
        json_object_object_add(o, k, json_object_new_boolean(v));
}

json_object *nst_profile_to_json(const struct nst_profile *p) {
        json_object *o = json_object_new_object();
        add_str(o, "name", p->name);
        add_str(o, "description", p->description);
        add_str(o, "machine", p->machine);
        add_str(o, "firmware", nst_firmware_name(p->firmware));
        add_bool(o, "secure_boot", p->secure_boot);
        add_str(o, "cpu_mode", nst_cpu_mode_name(p->cpu_mode));
        if (p->cpu_model[0])
                add_str(o, "cpu_model", p->cpu_model);
        add_bool(o, "nested", p->nested);
        add_bool(o, "nested_npt", p->nested_npt);
        add_str(o, "disk_bus", nst_disk_bus_name(p->disk_bus));
        add_str(o, "scsi_model", p->scsi_model);
        add_str(o, "nic_model", nst_nic_model_name(p->nic_model));
        json_object *f = json_object_new_object();
        const struct {
                const char *k;
                enum nst_tristate v;
        } fs[] = {{"acpi", p->features.acpi},     {"apic", p->features.apic},
                  {"vmcoreinfo", p->features.vmcoreinfo}, {"vmport", p->features.vmport},
                  {"smm", p->features.smm},       {"kvm_hidden", p->features.kvm_hidden}};
        for (size_t i = 0; i < NST_ARRAY_SIZE(fs); i++)
                if (fs[i].v != NST_TRI_UNSET)
                        add_bool(f, fs[i].k, fs[i].v == NST_TRI_ON);
        json_object *hv = json_object_new_object();
        for (size_t i = 0; i < NST_HV_COUNT; i++) {
                if (p->features.hv[i] != NST_TRI_ON)
                        continue;
                if (i == NST_HV_SPINLOCKS && p->features.spinlock_retries)
                        json_object_object_add(hv, nst_hv_name(i),
                                               json_object_new_int64(p->features.spinlock_retries));
                else
                        add_bool(hv, nst_hv_name(i), true);
        }
        json_object_object_add(f, "hyperv", hv);
        json_object_object_add(o, "features", f);
        add_str(o, "clock", p->clock_localtime ? "localtime" : "utc");
        add_str(o, "video", nst_video_name(p->video));
        add_bool(o, "memballoon", p->memballoon);
        add_bool(o, "tpm", p->tpm);
        add_bool(o, "rng", p->rng);
        add_bool(o, "guest_agent", p->guest_agent);
        json_object_object_add(o, "min_vcpus", json_object_new_int64(p->min_vcpus));
        json_object_object_add(o, "min_memory_mb",
                               json_object_new_int64((int64_t)p->min_memory_mb));
        return o;
}
