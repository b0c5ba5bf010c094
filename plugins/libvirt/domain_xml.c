#include "plugins/libvirt/domain_xml.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugins/libvirt/lv_util.h"
#include "plugins/libvirt/xml_writer.h"

/* ---- resolve ---- */

/* Bounded copy; the sources are validated to fit. */
static void copy_str(char *dst, size_t size, const char *src) {
        size_t n = strnlen(src, size - 1);
        memcpy(dst, src, n);
        dst[n] = '\0';
}

static void note(struct nst_domain_plan *p, const char *fmt, ...) _printf_(2, 3);
static void note(struct nst_domain_plan *p, const char *fmt, ...) {
        size_t n = strlen(p->notes);
        if (n + 3 >= sizeof(p->notes))
                return;
        if (n) {
                p->notes[n++] = ';';
                p->notes[n++] = ' ';
        }
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->notes + n, sizeof(p->notes) - n, fmt, ap);
        va_end(ap);
}

static bool hv_touched(const struct nst_features *f) {
        for (size_t i = 0; i < NST_HV_COUNT; i++)
                if (f->hv[i] != NST_TRI_UNSET)
                        return true;
        return f->spinlock_retries != 0;
}

/* -1 unknown, 0 no, 1 yes: a CPU mode this host can run for virt_type. */
static int mode_available(const struct nst_host_caps *c, enum nst_virt_type vt,
                          enum nst_cpu_mode m) {
        /* libvirt refuses host-passthrough under TCG at start time. */
        if (m == NST_CPU_MODE_HOST_PASSTHROUGH && vt == NST_VIRT_QEMU)
                return 0;
        if (vt != c->virt_type) /* the domain capabilities describe the other virt type */
                return -1;
        switch (m) {
        case NST_CPU_MODE_HOST_PASSTHROUGH: return c->mode_host_passthrough;
        case NST_CPU_MODE_HOST_MODEL: return c->mode_host_model;
        case NST_CPU_MODE_MAXIMUM: return c->mode_maximum;
        case NST_CPU_MODE_CUSTOM: return c->mode_custom;
        default: return -1;
        }
}

static int add_cpu_feature(struct nst_domain_plan *p, const char *name,
                           enum nst_cpu_policy policy) {
        for (size_t i = 0; i < p->n_cpu_features; i++)
                if (strcmp(p->cpu_features[i].name, name) == 0) {
                        p->cpu_features[i].policy = policy;
                        return 0;
                }
        if (p->n_cpu_features >= NST_PLAN_MAX_CPU_FEATURES)
                return -E2BIG;
        struct nst_cpu_feature *f = &p->cpu_features[p->n_cpu_features++];
        copy_str(f->name, sizeof(f->name), name);
        f->policy = policy;
        return 0;
}

static bool is_nesting_feature(const struct nst_domain_plan *p, const char *name) {
        for (size_t i = 0; i < p->n_nesting; i++)
                if (strcmp(p->nesting[i], name) == 0)
                        return true;
        return false;
}

/* Hyper-V enlightenments QEMU's TCG accepts (measured: relaxed, vapic,
 * spinlocks and hv-time start; the full list fails on VP_INDEX). */
static bool hv_tcg_ok(enum nst_hv h) {
        return h == NST_HV_RELAXED || h == NST_HV_VAPIC || h == NST_HV_SPINLOCKS ||
               h == NST_HV_TIME;
}

static int resolve_nesting(const struct nst_guest_spec *s, const struct nst_profile *prof,
                           const struct nst_host_caps *c, struct nst_domain_plan *p,
                           struct nst_error *err) {
        p->virt_type = c->virt_type;
        if (!prof->nested)
                return 0;
        const char *feature;
        if (c->nesting_usable && c->nesting_feature[0]) {
                feature = c->nesting_feature;
        } else if (s->allow_emulated_nesting) {
                if (!c->emulated_feature[0])
                        return nst_error_set(err, -ENOTSUP, "NestingUnavailable",
                                             "profile %s needs nested virtualization: this host "
                                             "cannot provide it (%s) and QEMU's TCG cannot "
                                             "emulate it here either",
                                             prof->name, c->nesting_reason);
                feature = c->emulated_feature;
                p->virt_type = NST_VIRT_QEMU;
                p->emulated_nesting = true;
                note(p, "nesting emulated by TCG (%s): %s", feature, c->nesting_reason);
        } else {
                return nst_error_set(err, -ENOTSUP, "NestingUnavailable",
                                     "profile %s needs nested virtualization, which this host "
                                     "cannot provide: %s. Set allow_emulated_nesting to run it "
                                     "under TCG instead (much slower, AMD SVM only)",
                                     prof->name, c->nesting_reason);
        }
        copy_str(p->nesting[p->n_nesting++], sizeof(p->nesting[0]), feature);
        if (prof->nested_npt && strcmp(feature, "svm") == 0)
                copy_str(p->nesting[p->n_nesting++], sizeof(p->nesting[0]), "npt");
        return 0;
}

static int resolve_cpu(const struct nst_guest_spec *s, const struct nst_profile *prof,
                       const struct nst_host_caps *c, struct nst_domain_plan *p,
                       struct nst_error *err) {
        p->cpu_mode = s->cpu_mode ? s->cpu_mode : prof->cpu_mode;
        copy_str(p->cpu_model, sizeof(p->cpu_model), s->cpu_mode ? s->cpu_model : prof->cpu_model);
        int avail = mode_available(c, p->virt_type, p->cpu_mode);
        if (avail == 0) {
                if (s->cpu_mode)
                        return nst_error_set(err, -ENOTSUP, "HostCapabilityUnavailable",
                                             "spec.cpu_mode: %s is not available with virt_type "
                                             "%s on this host",
                                             nst_cpu_mode_name(p->cpu_mode),
                                             nst_virt_type_name(p->virt_type));
                if (p->cpu_mode == NST_CPU_MODE_CUSTOM ||
                    mode_available(c, p->virt_type, NST_CPU_MODE_HOST_MODEL) == 0)
                        return nst_error_set(err, -ENOTSUP, "HostCapabilityUnavailable",
                                             "profile %s: CPU mode %s is not available with "
                                             "virt_type %s on this host",
                                             prof->name, nst_cpu_mode_name(p->cpu_mode),
                                             nst_virt_type_name(p->virt_type));
                note(p, "cpu_mode %s -> host-model (not available with %s)",
                     nst_cpu_mode_name(p->cpu_mode), nst_virt_type_name(p->virt_type));
                p->cpu_mode = NST_CPU_MODE_HOST_MODEL;
                p->cpu_model[0] = '\0';
        }
        for (size_t i = 0; i < p->n_nesting; i++)
                if (add_cpu_feature(p, p->nesting[i], NST_CPU_POLICY_REQUIRE) < 0)
                        return -E2BIG;
        /* Host adjustments only matter where host MSRs reach the guest. */
        if (p->virt_type == NST_VIRT_KVM && p->cpu_mode != NST_CPU_MODE_CUSTOM) {
                for (size_t i = 0; i < c->cpu_disable.n; i++) {
                        if (is_nesting_feature(p, c->cpu_disable.v[i]))
                                continue;
                        if (add_cpu_feature(p, c->cpu_disable.v[i], NST_CPU_POLICY_DISABLE) < 0)
                                return -E2BIG;
                }
        }
        for (size_t i = 0; i < s->n_cpu_features; i++) {
                const struct nst_cpu_feature *f = &s->cpu_features[i];
                if (is_nesting_feature(p, f->name) && (f->policy == NST_CPU_POLICY_DISABLE ||
                                                       f->policy == NST_CPU_POLICY_FORBID))
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "spec.cpu_features[%zu]: cannot disable %s: profile "
                                             "%s requires it",
                                             i, f->name, prof->name);
                if (add_cpu_feature(p, f->name, f->policy) < 0)
                        return -E2BIG;
        }
        return 0;
}

static int resolve_firmware(const struct nst_guest_spec *s, const struct nst_profile *prof,
                            const struct nst_host_caps *c, struct nst_domain_plan *p,
                            const struct nst_features *spec_f, struct nst_error *err) {
        copy_str(p->machine, sizeof(p->machine), s->machine[0] ? s->machine : prof->machine);
        const char *mpath = s->machine[0] ? "spec.machine" : "profile machine";
        if (c->machines.n > 0 && !nst_strv_contains(&c->machines, p->machine))
                return nst_error_set(err, -ENOTSUP, "HostCapabilityUnavailable",
                                     "%s: machine type '%s' is not offered by this host's QEMU "
                                     "(see get_host_capabilities)",
                                     mpath, p->machine);
        p->firmware = s->firmware               ? s->firmware
                      : s->secure_boot == NST_TRI_ON ? NST_FIRMWARE_EFI
                                                     : prof->firmware;
        p->secure_boot = p->firmware == NST_FIRMWARE_EFI &&
                         (s->secure_boot ? s->secure_boot == NST_TRI_ON : prof->secure_boot);
        if (p->firmware == NST_FIRMWARE_EFI && c->efi == 0)
                return nst_error_set(err, -ENOTSUP, "HostCapabilityUnavailable",
                                     "%s: firmware efi needs UEFI firmware (OVMF), which this "
                                     "host does not offer",
                                     s->firmware ? "spec.firmware" : "profile firmware");
        if (!p->secure_boot)
                return 0;
        const char *spath = s->secure_boot ? "spec.secure_boot" : "profile secure_boot";
        if (!nst_machine_is_q35(p->machine))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "%s: secure boot needs a q35 machine type, not %s", spath,
                                     p->machine);
        if (c->secure_boot == 0)
                return nst_error_set(err, -ENOTSUP, "HostCapabilityUnavailable",
                                     "%s: this host has no secure-boot UEFI firmware", spath);
        if (spec_f->smm == NST_TRI_OFF)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "spec.features.smm: secure boot needs SMM on");
        p->features.smm = NST_TRI_ON;
        return 0;
}

static int resolve_hyperv(const struct nst_guest_spec *s, const struct nst_profile *prof,
                          const struct nst_host_caps *c, struct nst_domain_plan *p,
                          struct nst_error *err) {
        const struct nst_features *sf = &s->features;
        struct nst_features *f = &p->features;
        for (size_t i = 0; i < NST_HV_COUNT; i++) {
                if (f->hv[i] != NST_TRI_ON)
                        continue;
                const char *why = NULL;
                if (i == NST_HV_EVMCS && c->vendor != NST_VENDOR_INTEL)
                        why = "evmcs is Intel-only";
                else if (p->virt_type == NST_VIRT_QEMU && !hv_tcg_ok(i))
                        why = "TCG does not provide it";
                if (!why)
                        continue;
                if (sf->hv[i] == NST_TRI_ON)
                        return nst_error_set(err, -ENOTSUP, "HostCapabilityUnavailable",
                                             "spec.features.hyperv.%s: not available on this "
                                             "host (%s)",
                                             nst_hv_name(i), why);
                f->hv[i] = NST_TRI_OFF;
                note(p, "hyperv %s dropped (%s)", nst_hv_name(i), why);
        }
        if (f->hv[NST_HV_SPINLOCKS] == NST_TRI_ON && !f->spinlock_retries)
                f->spinlock_retries = 8191;
        if (hv_touched(sf))
                return nst_hyperv_check(f, "spec.features", err);
        if (nst_hyperv_check(f, "", NULL) == 0) /* the message is only formatted on error */
                return 0;
        char path[96];
        snprintf(path, sizeof(path), "profile %s: features", prof->name);
        return nst_hyperv_check(f, path, err);
}

static void disk_dev_name(char out[8], const char *prefix, unsigned idx) {
        /* libvirt's scheme: a..z, aa..az, ba.. */
        char suffix[4];
        int n = 0;
        unsigned i = idx + 1;
        while (i > 0 && n < 3) {
                i--;
                suffix[n++] = (char)('a' + i % 26);
                i /= 26;
        }
        char *o = out;
        *o++ = prefix[0];
        *o++ = prefix[1];
        while (n > 0)
                *o++ = suffix[--n];
        *o = '\0';
}

static int resolve_devices(const struct nst_guest_spec *s, const struct nst_profile *prof,
                           struct nst_domain_plan *p, struct nst_error *err) {
        unsigned counts[3] = {0}; /* vd, sd, hd */
        for (size_t i = 0; i < s->n_disks; i++) {
                enum nst_disk_bus b = s->disks[i].bus  ? s->disks[i].bus
                                      : s->disk_bus    ? s->disk_bus
                                                       : prof->disk_bus;
                if (b == NST_DISK_BUS_IDE && nst_machine_is_q35(p->machine))
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "spec.disks[%zu].bus: ide is not available on "
                                             "machine %s (use sata)",
                                             i, p->machine);
                int k = b == NST_DISK_BUS_VIRTIO ? 0 : b == NST_DISK_BUS_IDE ? 2 : 1;
                if (k == 2 && counts[2] >= 4)
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "spec.disks[%zu].bus: at most 4 ide disks", i);
                static const char *const prefixes[] = {"vd", "sd", "hd"};
                disk_dev_name(p->disk_dev[i], prefixes[k], counts[k]++);
                p->disk_bus[i] = b;
        }
        for (size_t i = 0; i < s->n_nics; i++)
                p->nic_model[i] = s->nics[i].model ? s->nics[i].model
                                  : s->nic_model   ? s->nic_model
                                                   : prof->nic_model;
        return 0;
}

int nst_domain_plan_resolve(const struct nst_guest_spec *s, const struct nst_profile *prof,
                            const struct nst_host_caps *c, struct nst_domain_plan *p,
                            struct nst_error *err) {
        /* The arrays from cpu_features on are only filled as far as they are
         * used: clearing all of them would cost more than the rest of a build. */
        memset(p, 0, offsetof(struct nst_domain_plan, cpu_features));
        p->n_cpu_features = 0;
        p->notes[0] = '\0';
        p->profile = prof;
        if (s->vcpus < prof->min_vcpus)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "spec.vcpus: profile %s needs at least %u vCPUs, got %u",
                                     prof->name, prof->min_vcpus, s->vcpus);
        if (s->memory_mb < prof->min_memory_mb)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "spec.memory_mb: profile %s needs at least %llu MiB, got "
                                     "%llu",
                                     prof->name, (unsigned long long)prof->min_memory_mb,
                                     (unsigned long long)s->memory_mb);
        if (c->memory_mb && s->memory_mb > c->memory_mb)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "spec.memory_mb: %llu MiB is more than this host's memory "
                                     "(%llu MiB)",
                                     (unsigned long long)s->memory_mb,
                                     (unsigned long long)c->memory_mb);
        p->features = prof->features;
        nst_features_overlay(&p->features, &s->features);
        p->guest_agent = s->guest_agent ? s->guest_agent == NST_TRI_ON : prof->guest_agent;
        int r;
        if ((r = resolve_nesting(s, prof, c, p, err)) < 0 ||
            (r = resolve_firmware(s, prof, c, p, &s->features, err)) < 0 ||
            (r = resolve_cpu(s, prof, c, p, err)) < 0 ||
            (r = resolve_hyperv(s, prof, c, p, err)) < 0 ||
            (r = resolve_devices(s, prof, p, err)) < 0) {
                if (r == -E2BIG)
                        return nst_error_set(err, r, "InvalidInput",
                                             "spec.cpu_features: too many CPU features");
                return r;
        }
        return 0;
}

/* ---- render ---- */

/* dir + "/" + name into buf (the caller sized buf for both); snprintf is
 * measurable at this level (see the benchmark). */
static void path_join(char *buf, const char *dir, size_t dir_len, const char *name) {
        memcpy(buf, dir, dir_len);
        buf[dir_len] = '/';
        strcpy(buf + dir_len + 1, name);
}

static void disk_path(char *buf, const char *dir, size_t dir_len, size_t index) {
        char name[32] = "disk", *p = name + 4, digits[24];
        size_t n = 0;
        do {
                digits[n++] = (char)('0' + index % 10);
                index /= 10;
        } while (index);
        while (n)
                *p++ = digits[--n];
        strcpy(p, ".qcow2");
        path_join(buf, dir, dir_len, name);
}

static const char *tri_state(enum nst_tristate t) {
        return t == NST_TRI_ON ? "on" : "off";
}

static void render_os(struct nst_xw *w, const struct nst_domain_plan *p, const char *instdir) {
        nst_xw_start(w, "os");
        if (p->firmware == NST_FIRMWARE_EFI)
                nst_xw_attr(w, "firmware", "efi"); /* never 'bios': no SeaBIOS descriptor */
        nst_xw_start(w, "type");
        nst_xw_attr(w, "arch", "x86_64");
        nst_xw_attr(w, "machine", p->machine);
        nst_xw_text(w, "hvm");
        nst_xw_end(w);
        if (p->firmware == NST_FIRMWARE_EFI) {
                /* Auto-selection from the firmware descriptors; libvirt 9.0
                 * refuses <loader secure='no'/> next to it, so no <loader>. */
                nst_xw_start(w, "firmware");
                nst_xw_start(w, "feature");
                nst_xw_attr(w, "enabled", p->secure_boot ? "yes" : "no");
                nst_xw_attr(w, "name", "secure-boot");
                nst_xw_end(w);
                if (p->secure_boot) {
                        nst_xw_start(w, "feature");
                        nst_xw_attr(w, "enabled", "yes");
                        nst_xw_attr(w, "name", "enrolled-keys");
                        nst_xw_end(w);
                }
                nst_xw_end(w);
                /* In the instance directory, so destroy removes it with the disks. */
                char nvram[NST_SPEC_PATH_MAX + 48];
                path_join(nvram, instdir, strlen(instdir), "nvram.fd");
                nst_xw_elem_text(w, "nvram", nvram);
        }
        nst_xw_elem_attr(w, "boot", "dev", "hd");
        nst_xw_end(w);
}

static void render_features(struct nst_xw *w, const struct nst_domain_plan *p) {
        const struct nst_features *f = &p->features;
        nst_xw_start(w, "features");
        if (f->acpi == NST_TRI_ON) {
                nst_xw_start(w, "acpi");
                nst_xw_end(w);
        }
        if (f->apic == NST_TRI_ON) {
                nst_xw_start(w, "apic");
                nst_xw_end(w);
        }
        bool any_hv = false;
        for (size_t i = 0; i < NST_HV_COUNT && !any_hv; i++)
                any_hv = i != NST_HV_TIME && f->hv[i] == NST_TRI_ON;
        if (any_hv) {
                nst_xw_start(w, "hyperv");
                nst_xw_attr(w, "mode", "custom");
                for (size_t i = 0; i < NST_HV_COUNT; i++) {
                        if (f->hv[i] != NST_TRI_ON || i == NST_HV_TIME ||
                            i == NST_HV_STIMER_DIRECT)
                                continue;
                        nst_xw_start(w, nst_hv_name(i));
                        nst_xw_attr(w, "state", "on");
                        if (i == NST_HV_SPINLOCKS)
                                nst_xw_attr_u64(w, "retries", f->spinlock_retries);
                        if (i == NST_HV_STIMER && f->hv[NST_HV_STIMER_DIRECT] == NST_TRI_ON)
                                nst_xw_elem_attr(w, "direct", "state", "on");
                        nst_xw_end(w);
                }
                nst_xw_end(w);
        }
        if (f->kvm_hidden == NST_TRI_ON) {
                nst_xw_start(w, "kvm");
                nst_xw_elem_attr(w, "hidden", "state", "on");
                nst_xw_end(w);
        }
        if (f->vmport != NST_TRI_UNSET)
                nst_xw_elem_attr(w, "vmport", "state", tri_state(f->vmport));
        if (f->smm != NST_TRI_UNSET)
                nst_xw_elem_attr(w, "smm", "state", tri_state(f->smm));
        if (f->vmcoreinfo == NST_TRI_ON)
                nst_xw_elem_attr(w, "vmcoreinfo", "state", "on");
        nst_xw_end(w);
}

static void render_cpu(struct nst_xw *w, const struct nst_guest_spec *s,
                       const struct nst_domain_plan *p) {
        nst_xw_start(w, "cpu");
        nst_xw_attr(w, "mode", nst_cpu_mode_name(p->cpu_mode));
        switch (p->cpu_mode) {
        case NST_CPU_MODE_HOST_PASSTHROUGH:
        case NST_CPU_MODE_MAXIMUM:
                nst_xw_attr(w, "migratable", "on");
                break;
        case NST_CPU_MODE_CUSTOM:
                nst_xw_attr(w, "match", "exact");
                nst_xw_attr(w, "check", "partial");
                break;
        default:
                /* libvirt checks the CPU before start; the live XML is checked after. */
                nst_xw_attr(w, "check", "partial");
                break;
        }
        if (p->cpu_mode == NST_CPU_MODE_CUSTOM) {
                nst_xw_start(w, "model");
                nst_xw_attr(w, "fallback", "forbid");
                nst_xw_text(w, p->cpu_model);
                nst_xw_end(w);
        }
        if (s->sockets) {
                nst_xw_start(w, "topology");
                nst_xw_attr_u64(w, "sockets", s->sockets);
                nst_xw_attr(w, "dies", "1");
                nst_xw_attr_u64(w, "cores", s->cores);
                nst_xw_attr_u64(w, "threads", s->threads);
                nst_xw_end(w);
        }
        for (size_t i = 0; i < p->n_cpu_features; i++) {
                nst_xw_start(w, "feature");
                nst_xw_attr(w, "policy", nst_cpu_policy_name(p->cpu_features[i].policy));
                nst_xw_attr(w, "name", p->cpu_features[i].name);
                nst_xw_end(w);
        }
        nst_xw_end(w);
}

static void timer(struct nst_xw *w, const char *name, const char *attr, const char *value) {
        nst_xw_start(w, "timer");
        nst_xw_attr(w, "name", name);
        nst_xw_attr(w, attr, value);
        nst_xw_end(w);
}

static void render_clock(struct nst_xw *w, const struct nst_domain_plan *p) {
        nst_xw_start(w, "clock");
        nst_xw_attr(w, "offset", p->profile->clock_localtime ? "localtime" : "utc");
        timer(w, "rtc", "tickpolicy", "catchup");
        timer(w, "pit", "tickpolicy", "delay");
        timer(w, "hpet", "present", "no");
        if (p->features.hv[NST_HV_TIME] == NST_TRI_ON)
                timer(w, "hypervclock", "present", "yes");
        nst_xw_end(w);
}

static void render_disks(struct nst_xw *w, const struct nst_guest_spec *s,
                         const struct nst_domain_plan *p, const char *instdir) {
        size_t instlen = strlen(instdir);
        bool scsi = false;
        for (size_t i = 0; i < s->n_disks; i++) {
                char path[NST_SPEC_PATH_MAX + 48];
                disk_path(path, instdir, instlen, i);
                nst_xw_start(w, "disk");
                nst_xw_attr(w, "type", "file");
                nst_xw_attr(w, "device", "disk");
                nst_xw_start(w, "driver");
                nst_xw_attr(w, "name", "qemu");
                nst_xw_attr(w, "type", "qcow2");
                nst_xw_attr(w, "discard", "unmap");
                nst_xw_end(w);
                nst_xw_elem_attr(w, "source", "file", path);
                nst_xw_start(w, "target");
                nst_xw_attr(w, "dev", p->disk_dev[i]);
                nst_xw_attr(w, "bus", nst_disk_bus_name(p->disk_bus[i]));
                nst_xw_end(w);
                nst_xw_end(w);
                scsi |= p->disk_bus[i] == NST_DISK_BUS_SCSI;
        }
        if (scsi) {
                nst_xw_start(w, "controller");
                nst_xw_attr(w, "type", "scsi");
                nst_xw_attr(w, "index", "0");
                nst_xw_attr(w, "model", p->profile->scsi_model);
                nst_xw_end(w);
        }
}

static void render_nics(struct nst_xw *w, const struct nst_guest_spec *s,
                        const struct nst_domain_plan *p) {
        for (size_t i = 0; i < s->n_nics; i++) {
                const struct nst_nic_spec *n = &s->nics[i];
                nst_xw_start(w, "interface");
                nst_xw_attr(w, "type", n->network ? "network" : "bridge");
                nst_xw_elem_attr(w, "mac", "address", n->mac);
                nst_xw_elem_attr(w, "source", n->network ? "network" : "bridge",
                                 n->network ? n->network : n->bridge);
                nst_xw_elem_attr(w, "model", "type", nst_nic_model_name(p->nic_model[i]));
                nst_xw_end(w);
        }
}

static void render_numatune(struct nst_xw *w, const struct nst_guest_spec *s) {
        if (s->n_numa_nodes == 0)
                return;
        char nodeset[NST_SPEC_MAX_NUMA_NODES * 4];
        size_t len = 0;
        for (size_t i = 0; i < s->n_numa_nodes; i++)
                len += (size_t)snprintf(nodeset + len, sizeof(nodeset) - len, "%s%d",
                                        i ? "," : "", s->numa_nodes[i]);
        nst_xw_start(w, "numatune");
        nst_xw_start(w, "memory");
        nst_xw_attr(w, "mode", "strict");
        nst_xw_attr(w, "nodeset", nodeset);
        nst_xw_end(w);
        nst_xw_end(w);
}

/* "dddd:bb:ss.f" into its four fields; false when malformed or out of range. */
static bool split_pci_address(const char *s, unsigned out[4]) {
        char tail;
        return s && strlen(s) == 12 &&
               sscanf(s, "%4x:%2x:%2x.%1x%c", &out[0], &out[1], &out[2], &out[3], &tail) == 4 &&
               s[4] == ':' && s[7] == ':' && s[10] == '.' && out[2] <= 0x1f && out[3] <= 7;
}

static void pci_source(struct nst_xw *w, const char *address, bool typed) {
        unsigned a[4] = {0};
        split_pci_address(address, a); /* checked by check_context */
        nst_xw_start(w, "source");
        nst_xw_start(w, "address");
        if (typed) /* libvirt refuses an interface's source address without it */
                nst_xw_attr(w, "type", "pci");
        nst_xw_attr_hex(w, "domain", a[0], 4);
        nst_xw_attr_hex(w, "bus", a[1], 2);
        nst_xw_attr_hex(w, "slot", a[2], 2);
        nst_xw_attr_hex(w, "function", a[3], 1);
        nst_xw_end(w);
        nst_xw_end(w);
}

/* A VF as a NIC gets its MAC and VLAN from libvirt at start; anything else
 * (a PF, a non-NIC function) is a plain PCI hostdev. */
static void render_hostdevs(struct nst_xw *w, const struct nst_build_context *ctx) {
        for (size_t i = 0; ctx && i < ctx->n_claims; i++) {
                const struct nst_pci_claim *c = &ctx->claims[i];
                if (c->form == NST_PCI_FORM_INTERFACE) {
                        nst_xw_start(w, "interface");
                        nst_xw_attr(w, "type", "hostdev");
                        nst_xw_attr(w, "managed", "yes");
                        nst_xw_elem_attr(w, "mac", "address", c->mac);
                        pci_source(w, c->address, true);
                        if (c->vlan >= 0) {
                                nst_xw_start(w, "vlan");
                                nst_xw_start(w, "tag");
                                nst_xw_attr_u64(w, "id", (uint64_t)c->vlan);
                                nst_xw_end(w);
                                nst_xw_end(w);
                        }
                        nst_xw_end(w);
                        continue;
                }
                nst_xw_start(w, "hostdev");
                nst_xw_attr(w, "mode", "subsystem");
                nst_xw_attr(w, "type", "pci");
                nst_xw_attr(w, "managed", "yes");
                pci_source(w, c->address, false);
                nst_xw_end(w);
        }
}

static void render_other_devices(struct nst_xw *w, const struct nst_domain_plan *p) {
        const struct nst_profile *prof = p->profile;
        nst_xw_start(w, "serial");
        nst_xw_attr(w, "type", "pty");
        nst_xw_elem_attr(w, "target", "port", "0");
        nst_xw_end(w);
        nst_xw_start(w, "console");
        nst_xw_attr(w, "type", "pty");
        nst_xw_start(w, "target");
        nst_xw_attr(w, "type", "serial");
        nst_xw_attr(w, "port", "0");
        nst_xw_end(w);
        nst_xw_end(w);
        if (p->guest_agent) {
                /* libvirt picks the host socket and connects to the agent. */
                nst_xw_start(w, "channel");
                nst_xw_attr(w, "type", "unix");
                nst_xw_start(w, "target");
                nst_xw_attr(w, "type", "virtio");
                nst_xw_attr(w, "name", "org.qemu.guest_agent.0");
                nst_xw_end(w);
                nst_xw_end(w);
        }
        if (prof->video != NST_VIDEO_NONE) {
                nst_xw_start(w, "video");
                nst_xw_elem_attr(w, "model", "type", nst_video_name(prof->video));
                nst_xw_end(w);
                nst_xw_start(w, "graphics");
                nst_xw_attr(w, "type", "vnc");
                nst_xw_attr(w, "autoport", "yes");
                nst_xw_start(w, "listen");
                nst_xw_attr(w, "type", "address");
                nst_xw_attr(w, "address", "127.0.0.1");
                nst_xw_end(w);
                nst_xw_end(w);
        }
        if (prof->tpm) {
                nst_xw_start(w, "tpm");
                nst_xw_attr(w, "model", "tpm-crb");
                nst_xw_start(w, "backend");
                nst_xw_attr(w, "type", "emulator");
                nst_xw_attr(w, "version", "2.0");
                nst_xw_end(w);
                nst_xw_end(w);
        }
        if (prof->rng) {
                nst_xw_start(w, "rng");
                nst_xw_attr(w, "model", "virtio");
                nst_xw_start(w, "backend");
                nst_xw_attr(w, "model", "random");
                nst_xw_text(w, "/dev/urandom");
                nst_xw_end(w);
                nst_xw_end(w);
        }
        nst_xw_elem_attr(w, "memballoon", "model", prof->memballoon ? "virtio" : "none");
}

static void owner_elem(struct nst_xw *w, const char *name, const char *id, const char *label) {
        if (!id && !label)
                return;
        nst_xw_start(w, name);
        if (id)
                nst_xw_attr(w, "id", id);
        if (label)
                nst_xw_text(w, label);
        nst_xw_end(w);
}

static void render_metadata(struct nst_xw *w, const struct nst_guest_spec *s,
                            const struct nst_domain_plan *p, const struct nst_build_context *ctx,
                            const char *instdir) {
        size_t instlen = strlen(instdir);
        nst_xw_start(w, "metadata");
        nst_xw_start(w, "nestor:instance");
        nst_xw_attr(w, "xmlns:nestor", NST_METADATA_NS);
        nst_xw_elem_text(w, "nestor:profile", p->profile->name);
        if (ctx && (ctx->user_id || ctx->user_name || ctx->project_id || ctx->project_name)) {
                nst_xw_start(w, "nestor:owner");
                owner_elem(w, "nestor:user", ctx->user_id, ctx->user_name);
                owner_elem(w, "nestor:project", ctx->project_id, ctx->project_name);
                nst_xw_end(w);
        }
        if (ctx && ctx->created_at)
                nst_xw_elem_text(w, "nestor:created", ctx->created_at);
        nst_xw_elem_attr(w, "nestor:virt", "type", nst_virt_type_name(p->virt_type));
        if (p->n_nesting) {
                nst_xw_start(w, "nestor:nesting");
                nst_xw_attr(w, "emulated", p->emulated_nesting ? "yes" : "no");
                for (size_t i = 0; i < p->n_nesting; i++)
                        nst_xw_elem_attr(w, "nestor:feature", "name", p->nesting[i]);
                nst_xw_end(w);
        }
        nst_xw_start(w, "nestor:nics");
        for (size_t i = 0; i < s->n_nics; i++) {
                nst_xw_start(w, "nestor:nic");
                nst_xw_attr(w, "mac", s->nics[i].mac);
                if (s->nics[i].network)
                        nst_xw_attr(w, "network", s->nics[i].network);
                else
                        nst_xw_attr(w, "bridge", s->nics[i].bridge);
                nst_xw_end(w);
        }
        nst_xw_end(w);
        nst_xw_start(w, "nestor:disks");
        for (size_t i = 0; i < s->n_disks; i++) {
                char path[NST_SPEC_PATH_MAX + 48];
                disk_path(path, instdir, instlen, i);
                nst_xw_start(w, "nestor:disk");
                nst_xw_attr(w, "dev", p->disk_dev[i]);
                nst_xw_attr(w, "path", path);
                if (s->disks[i].image)
                        nst_xw_attr(w, "base", s->disks[i].image);
                if (s->disks[i].size_gb)
                        nst_xw_attr_u64(w, "size_gb", s->disks[i].size_gb);
                nst_xw_end(w);
        }
        nst_xw_end(w);
        /* Claims are the sriov plugin's; this records what was handed in, so
         * that they can be restored after a restart and released by destroy. */
        nst_xw_start(w, "nestor:claims");
        for (size_t i = 0; ctx && i < ctx->n_claims; i++) {
                const struct nst_pci_claim *c = &ctx->claims[i];
                nst_xw_start(w, "nestor:claim");
                nst_xw_attr(w, "kind", "pci");
                if (c->request[0])
                        nst_xw_attr(w, "id", c->request);
                nst_xw_attr(w, "address", c->address);
                nst_xw_attr(w, "form", c->form == NST_PCI_FORM_INTERFACE ? "interface" : "hostdev");
                if (c->mac[0])
                        nst_xw_attr(w, "mac", c->mac);
                if (c->vlan >= 0)
                        nst_xw_attr_u64(w, "vlan", (uint64_t)c->vlan);
                if (c->wwnn[0])
                        nst_xw_attr(w, "wwnn", c->wwnn);
                if (c->wwpn[0])
                        nst_xw_attr(w, "wwpn", c->wwpn);
                if (c->vhba[0])
                        nst_xw_attr(w, "vhba", c->vhba);
                nst_xw_end(w);
        }
        nst_xw_end(w);
        nst_xw_end(w);
        nst_xw_end(w);
}

static int check_context(const struct nst_build_context *ctx, struct nst_error *err) {
        if (!ctx)
                return 0;
        if (ctx->n_claims > NST_MAX_HOSTDEVS)
                return nst_error_set(err, -E2BIG, "InvalidInput", "at most %d PCI devices",
                                     NST_MAX_HOSTDEVS);
        for (size_t i = 0; i < ctx->n_claims; i++) {
                const struct nst_pci_claim *c = &ctx->claims[i];
                unsigned a[4];
                if (!split_pci_address(c->address, a))
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "PCI device %zu: address '%s' is not dddd:bb:ss.f "
                                             "within range",
                                             i, c->address);
                if (c->form != NST_PCI_FORM_INTERFACE)
                        continue;
                if (!nst_mac_valid(c->mac))
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "PCI device %zu (%s): '%s' is not a unicast MAC "
                                             "address",
                                             i, c->address, c->mac);
                /* One tag or none: libvirt would turn more into a trunk, which
                 * SR-IOV VFs refuse at start. */
                if (c->vlan < -1 || c->vlan > 4094)
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "PCI device %zu (%s): VLAN %d is outside 0-4094", i,
                                             c->address, c->vlan);
        }
        if (ctx->instances_path && (ctx->instances_path[0] != '/' ||
                                    strlen(ctx->instances_path) >= NST_SPEC_PATH_MAX - 64))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "instances path must be absolute and shorter than %d bytes",
                                     NST_SPEC_PATH_MAX - 64);
        return 0;
}

int nst_domain_xml_render(const struct nst_guest_spec *s, const struct nst_domain_plan *p,
                          const struct nst_build_context *ctx, char **ret_xml, size_t *ret_len,
                          struct nst_error *err) {
        int r = check_context(ctx, err);
        if (r < 0)
                return r;
        char instdir[NST_SPEC_PATH_MAX];
        const char *base = ctx && ctx->instances_path ? ctx->instances_path
                                                      : NST_DEFAULT_INSTANCES_PATH;
        path_join(instdir, base, strlen(base), s->uuid); /* length checked by check_context */
        struct nst_xw w;
        nst_xw_init(&w, 4096);
        nst_xw_start(&w, "domain");
        nst_xw_attr(&w, "type", nst_virt_type_name(p->virt_type));
        nst_xw_elem_text(&w, "name", s->name);
        nst_xw_elem_text(&w, "uuid", s->uuid);
        render_metadata(&w, s, p, ctx, instdir);
        nst_xw_start(&w, "memory");
        nst_xw_attr(&w, "unit", "MiB");
        nst_xw_text_u64(&w, s->memory_mb);
        nst_xw_end(&w);
        nst_xw_start(&w, "vcpu");
        nst_xw_attr(&w, "placement", "static");
        nst_xw_text_u64(&w, s->vcpus);
        nst_xw_end(&w);
        render_numatune(&w, s);
        render_os(&w, p, instdir);
        render_features(&w, p);
        render_cpu(&w, s, p);
        render_clock(&w, p);
        nst_xw_elem_text(&w, "on_poweroff", "destroy");
        nst_xw_elem_text(&w, "on_reboot", "restart");
        nst_xw_elem_text(&w, "on_crash", "destroy");
        nst_xw_start(&w, "devices");
        render_disks(&w, s, p, instdir);
        render_nics(&w, s, p);
        render_hostdevs(&w, ctx);
        render_other_devices(&w, p);
        nst_xw_end(&w);
        nst_xw_end(&w);
        r = nst_xw_finish(&w, ret_xml, ret_len, err);
        nst_xw_release(&w);
        return r;
}

int nst_domain_xml_build(const struct nst_guest_spec *spec, const struct nst_profile *profile,
                         const struct nst_host_caps *caps, const struct nst_build_context *ctx,
                         char **ret_xml, struct nst_domain_plan *ret_plan, struct nst_error *err) {
        struct nst_domain_plan local;
        struct nst_domain_plan *p = ret_plan ? ret_plan : &local;
        int r = nst_domain_plan_resolve(spec, profile, caps, p, err);
        if (r < 0)
                return r;
        return nst_domain_xml_render(spec, p, ctx, ret_xml, NULL, err);
}

/* ---- metadata ---- */

static int meta_oom(struct nst_error *err) {
        return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
}

/* strdup of an attribute that may be absent; false only when out of memory. */
static bool dup_attr(xmlNodePtr n, const char *name, char **dst) {
        xmlChar *v = xmlGetNsProp(n, BAD_CAST name, NULL);
        if (!v)
                return true;
        *dst = strdup((const char *)v);
        xmlFree(v);
        return *dst != NULL;
}

static bool copy_attr(xmlNodePtr n, const char *name, char *dst, size_t len) {
        xmlChar *v = xmlGetNsProp(n, BAD_CAST name, NULL);
        if (!v)
                return false;
        bool fits = strlen((const char *)v) < len;
        if (fits)
                snprintf(dst, len, "%s", (const char *)v);
        xmlFree(v);
        return fits;
}

static int meta_list(xmlXPathContextPtr ctx, xmlNodePtr inst, const char *expr, size_t max,
                     size_t elem, void **ret, size_t *ret_n, xmlXPathObjectPtr *ret_nodes,
                     struct nst_error *err) {
        xmlXPathObjectPtr o = nst_xpath_nodes(ctx, inst, expr);
        if (!o)
                return meta_oom(err);
        size_t n = (size_t)nst_xpath_count(o);
        if (n > max) {
                xmlXPathFreeObject(o);
                return nst_error_set(err, -E2BIG, "InvalidMetadata",
                                     "Nestor metadata: more than %zu entries for %s", max, expr);
        }
        if (n && !(*ret = calloc(n, elem))) {
                xmlXPathFreeObject(o);
                return meta_oom(err);
        }
        *ret_n = n;
        *ret_nodes = o;
        return 0;
}

static int parse_meta_lists(xmlXPathContextPtr ctx, xmlNodePtr inst, struct nst_instance_meta *m,
                            struct nst_error *err) {
        xmlXPathObjectPtr o = NULL;
        int r = meta_list(ctx, inst, "n:nics/n:nic", NST_SPEC_MAX_NICS, sizeof(*m->nics),
                          (void **)&m->nics, &m->n_nics, &o, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < m->n_nics && r == 0; i++) {
                xmlNodePtr n = o->nodesetval->nodeTab[i];
                if (!copy_attr(n, "mac", m->nics[i].mac, sizeof(m->nics[i].mac)) ||
                    !nst_mac_valid(m->nics[i].mac))
                        r = nst_error_set(err, -EINVAL, "InvalidMetadata",
                                          "Nestor metadata: nic %zu has no valid mac", i);
                else if (!dup_attr(n, "network", &m->nics[i].network) ||
                         !dup_attr(n, "bridge", &m->nics[i].bridge))
                        r = meta_oom(err);
        }
        xmlXPathFreeObject(o);
        if (r < 0)
                return r;

        r = meta_list(ctx, inst, "n:disks/n:disk", NST_SPEC_MAX_DISKS, sizeof(*m->disks),
                      (void **)&m->disks, &m->n_disks, &o, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < m->n_disks && r == 0; i++) {
                xmlNodePtr n = o->nodesetval->nodeTab[i];
                char size[24] = "";
                copy_attr(n, "dev", m->disks[i].dev, sizeof(m->disks[i].dev));
                copy_attr(n, "size_gb", size, sizeof(size));
                m->disks[i].size_gb = strtoull(size, NULL, 10);
                if (!dup_attr(n, "path", &m->disks[i].path) ||
                    !dup_attr(n, "base", &m->disks[i].base))
                        r = meta_oom(err);
                else if (!m->disks[i].path)
                        r = nst_error_set(err, -EINVAL, "InvalidMetadata",
                                          "Nestor metadata: disk %zu has no path", i);
        }
        xmlXPathFreeObject(o);
        if (r < 0)
                return r;

        r = meta_list(ctx, inst, "n:claims/n:claim", NST_MAX_CLAIMS, sizeof(*m->claims),
                      (void **)&m->claims, &m->n_claims, &o, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < m->n_claims && r == 0; i++) {
                xmlNodePtr n = o->nodesetval->nodeTab[i];
                struct nst_meta_claim *c = &m->claims[i];
                char form[16] = "hostdev", vlan[8] = "";
                c->pci.vlan = -1;
                copy_attr(n, "form", form, sizeof(form));
                copy_attr(n, "vlan", vlan, sizeof(vlan));
                copy_attr(n, "id", c->pci.request, sizeof(c->pci.request));
                copy_attr(n, "mac", c->pci.mac, sizeof(c->pci.mac));
                copy_attr(n, "wwnn", c->pci.wwnn, sizeof(c->pci.wwnn));
                copy_attr(n, "wwpn", c->pci.wwpn, sizeof(c->pci.wwpn));
                copy_attr(n, "vhba", c->pci.vhba, sizeof(c->pci.vhba));
                if (vlan[0])
                        c->pci.vlan = atoi(vlan);
                c->pci.form = strcmp(form, "interface") == 0 ? NST_PCI_FORM_INTERFACE
                                                              : NST_PCI_FORM_HOSTDEV;
                if (!copy_attr(n, "kind", c->kind, sizeof(c->kind)) ||
                    !copy_attr(n, "address", c->pci.address, sizeof(c->pci.address)))
                        r = nst_error_set(err, -EINVAL, "InvalidMetadata",
                                          "Nestor metadata: claim %zu has no kind or address", i);
        }
        xmlXPathFreeObject(o);
        return r;
}

static char *opt_string(xmlXPathContextPtr ctx, xmlNodePtr node, const char *expr, bool *oom) {
        char *s = nst_xpath_string(ctx, node, expr);
        if (!s) {
                *oom = true;
                return NULL;
        }
        if (!s[0]) {
                free(s);
                return NULL;
        }
        return s;
}

static void set_ns(xmlNodePtr node, xmlNsPtr ns) {
        for (xmlNodePtr n = node; n; n = n->next) {
                if (n->type != XML_ELEMENT_NODE)
                        continue;
                if (!n->ns)
                        n->ns = ns;
                set_ns(n->children, ns);
        }
}

int nst_domain_metadata_parse(const char *xml, struct nst_instance_meta **ret,
                              struct nst_error *err) {
        _cleanup_(xmlFreeDocp) xmlDocPtr doc = NULL;
        int r = nst_xml_parse(xml, "domain XML", "InvalidMetadata", &doc, err);
        if (r < 0)
                return r;
        /* virDomainGetMetadata returns the element without its namespace:
         * give it back, so one set of expressions reads both forms. */
        xmlNodePtr root = xmlDocGetRootElement(doc);
        if (!root->ns && xmlStrcmp(root->name, BAD_CAST "instance") == 0) {
                xmlNsPtr ns = xmlNewNs(root, BAD_CAST NST_METADATA_NS, NULL);
                if (!ns)
                        return meta_oom(err);
                set_ns(root, ns);
        }
        _cleanup_(xmlXPathFreeContextp) xmlXPathContextPtr ctx = nst_xpath_new(doc);
        if (!ctx)
                return meta_oom(err);
        _cleanup_(xmlXPathFreeObjectp) xmlXPathObjectPtr inst =
                nst_xpath_nodes(ctx, NULL, "/n:instance | /domain/metadata/n:instance");
        if (nst_xpath_count(inst) != 1)
                return nst_error_set(err, -ENOENT, "InvalidMetadata",
                                     "the domain has %s Nestor metadata (%s)",
                                     nst_xpath_count(inst) ? "more than one" : "no",
                                     NST_METADATA_NS);
        xmlNodePtr node = inst->nodesetval->nodeTab[0];
        _cleanup_(nst_instance_meta_freep) struct nst_instance_meta *m = calloc(1, sizeof(*m));
        if (!m)
                return meta_oom(err);
        bool oom = false;
        _cleanup_free_ char *name = opt_string(ctx, NULL, "string(/domain/name)", &oom);
        _cleanup_free_ char *uuid = opt_string(ctx, NULL, "string(/domain/uuid)", &oom);
        _cleanup_free_ char *profile = opt_string(ctx, node, "string(n:profile)", &oom);
        _cleanup_free_ char *virt = opt_string(ctx, node, "string(n:virt/@type)", &oom);
        _cleanup_free_ char *emulated = opt_string(ctx, node, "string(n:nesting/@emulated)", &oom);
        m->user_id = opt_string(ctx, node, "string(n:owner/n:user/@id)", &oom);
        m->user_name = opt_string(ctx, node, "string(n:owner/n:user)", &oom);
        m->project_id = opt_string(ctx, node, "string(n:owner/n:project/@id)", &oom);
        m->project_name = opt_string(ctx, node, "string(n:owner/n:project)", &oom);
        m->created_at = opt_string(ctx, node, "string(n:created)", &oom);
        if (oom)
                return meta_oom(err);
        if (!profile || strlen(profile) > NST_SPEC_NAME_MAX)
                return nst_error_set(err, -EINVAL, "InvalidMetadata",
                                     "Nestor metadata: missing or invalid profile");
        snprintf(m->profile, sizeof(m->profile), "%s", profile);
        if (name)
                snprintf(m->name, sizeof(m->name), "%s", name);
        if (uuid)
                snprintf(m->uuid, sizeof(m->uuid), "%s", uuid);
        snprintf(m->virt_type, sizeof(m->virt_type), "%s", virt ? virt : "");
        m->emulated_nesting = emulated && strcmp(emulated, "yes") == 0;

        _cleanup_(xmlXPathFreeObjectp) xmlXPathObjectPtr feats =
                nst_xpath_nodes(ctx, node, "n:nesting/n:feature/@name");
        if (nst_xpath_count(feats) > 2)
                return nst_error_set(err, -E2BIG, "InvalidMetadata",
                                     "Nestor metadata: more than 2 nesting features");
        for (int i = 0; i < nst_xpath_count(feats); i++) {
                xmlChar *v = xmlNodeGetContent(feats->nodesetval->nodeTab[i]);
                if (!v)
                        return meta_oom(err);
                /* The names end up in XPath expressions (check_live). */
                bool ok = strlen((const char *)v) < sizeof(m->nesting[0]) && v[0];
                for (const xmlChar *c = v; ok && *c; c++)
                        ok = (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-';
                if (ok)
                        snprintf(m->nesting[m->n_nesting++], sizeof(m->nesting[0]), "%s",
                                 (const char *)v);
                xmlFree(v);
                if (!ok)
                        return nst_error_set(err, -EINVAL, "InvalidMetadata",
                                             "Nestor metadata: invalid nesting feature");
        }
        if ((r = parse_meta_lists(ctx, node, m, err)) < 0)
                return r;
        *ret = nst_steal(&m);
        return 0;
}

void nst_instance_meta_free(struct nst_instance_meta *m) {
        if (!m)
                return;
        free(m->user_id);
        free(m->user_name);
        free(m->project_id);
        free(m->project_name);
        free(m->created_at);
        for (size_t i = 0; i < m->n_nics; i++) {
                free(m->nics[i].network);
                free(m->nics[i].bridge);
        }
        free(m->nics);
        for (size_t i = 0; i < m->n_disks; i++) {
                free(m->disks[i].path);
                free(m->disks[i].base);
        }
        free(m->disks);
        free(m->claims);
        free(m);
}

/* ---- live check ---- */

int nst_domain_xml_check_live(const char *live_xml, struct nst_error *err) {
        _cleanup_(nst_instance_meta_freep) struct nst_instance_meta *m = NULL;
        struct nst_error e = NST_ERROR_INIT;
        int r = nst_domain_metadata_parse(live_xml, &m, &e);
        if (r == -ENOENT)
                return 0; /* not Nestor's guest: nothing required */
        if (r < 0) {
                *err = e;
                return r;
        }
        if (m->n_nesting == 0)
                return 0;
        _cleanup_(xmlFreeDocp) xmlDocPtr doc = NULL;
        if ((r = nst_xml_parse(live_xml, "live domain XML", "InvalidMetadata", &doc, err)) < 0)
                return r;
        _cleanup_(xmlXPathFreeContextp) xmlXPathContextPtr ctx = nst_xpath_new(doc);
        if (!ctx)
                return meta_oom(err);
        _cleanup_free_ char *mode = nst_xpath_string(ctx, NULL, "string(/domain/cpu/@mode)");
        _cleanup_(xmlXPathFreeObjectp) xmlXPathObjectPtr cpu =
                nst_xpath_nodes(ctx, NULL, "/domain/cpu");
        if (!mode)
                return meta_oom(err);
        if (nst_xpath_count(cpu) == 0)
                return nst_error_set(err, -ENOTSUP, "NestingUnavailable",
                                     "the running guest has no <cpu> definition: %s was dropped",
                                     m->nesting[0]);
        for (size_t i = 0; i < m->n_nesting; i++) {
                char expr[128];
                snprintf(expr, sizeof(expr), "string(/domain/cpu/feature[@name='%s']/@policy)",
                         m->nesting[i]);
                _cleanup_free_ char *policy = nst_xpath_string(ctx, NULL, expr);
                if (!policy)
                        return meta_oom(err);
                if (strcmp(policy, "disable") == 0 || strcmp(policy, "forbid") == 0)
                        return nst_error_set(err, -ENOTSUP, "NestingUnavailable",
                                             "the running guest lost CPU feature %s (the live "
                                             "XML has policy '%s'): the guest cannot run a "
                                             "hypervisor",
                                             m->nesting[i], policy);
                /* An expanded (custom) CPU may carry the feature in its model;
                 * the other modes keep the explicit require Nestor wrote. */
                if (!policy[0] && strcmp(mode, "custom") != 0)
                        return nst_error_set(err, -ENOTSUP, "NestingUnavailable",
                                             "the running guest's CPU no longer requires %s",
                                             m->nesting[i]);
        }
        return 0;
}
